//! Device and host memory: allocation, free, copies and fills on raw device pointers.
//!
//! C holds device memory as `void *` device addresses. Every allocation made through the
//! library is kept here, in an ordered map from base address to the runtime buffer that
//! owns it, so any pointer — `d_a + 16` included — finds its allocation with one range
//! lookup, and a pointer outside every live allocation, or a range past its end, is refused
//! before anything is queued. Work is then queued through the runtime's typed slices of
//! that buffer, so the runtime's stream-ordered reuse and cross-stream use tracking apply
//! to C callers exactly as to Rust ones. Device memory is never dereferenced here.

use crate::device::{current, device_at};
use crate::error::{call, invalid, out_ptr, write_out, Result};
use crate::header::*;
use crate::stream::stream_arg;
use knpu::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, Error, Stream};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

/// One live allocation.
pub(crate) struct Alloc {
    device: usize,
    base: u64,
    size: u64,
    /// The runtime buffer; locked only while work on it is being queued.
    buf: Mutex<DeviceBuffer<u8>>,
}

static ALLOCATIONS: Mutex<BTreeMap<u64, Arc<Alloc>>> = Mutex::new(BTreeMap::new());
/// Host allocations of knpuMallocHost: address to size.
static HOST: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
const HOST_ALIGN: usize = 64;

/// The allocation containing `addr`, and the offset of `addr` in it.
fn lookup(addr: u64) -> Option<(Arc<Alloc>, u64)> {
    let map = ALLOCATIONS.lock();
    let (_, a) = map.range(..=addr).next_back()?;
    (addr < a.base + a.size).then(|| (a.clone(), addr - a.base))
}

/// A device range: `count` bytes from `ptr`, inside one live allocation.
pub(crate) struct Range {
    alloc: Arc<Alloc>,
    offset: usize,
}

impl Range {
    /// The device that owns the range's allocation.
    pub(crate) fn device(&self) -> usize {
        self.alloc.device
    }

    /// A reference that keeps the range's allocation (its runtime buffer) alive, even after
    /// knpuFree removes it from the table.
    pub(crate) fn keep_alive(&self) -> Arc<Alloc> {
        self.alloc.clone()
    }
}

/// Resolves `count` bytes at device pointer `ptr`.
pub(crate) fn resolve(ptr: *const c_void, count: usize, what: &str) -> Result<Range> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    let addr = ptr as u64;
    let (alloc, offset) = lookup(addr).ok_or_else(|| {
        invalid(format!(
            "{what} {addr:#x} is not inside any live device allocation"
        ))
    })?;
    if (count as u64)
        .checked_add(offset)
        .is_none_or(|end| end > alloc.size)
    {
        return Err(invalid(format!(
            "{what} {addr:#x} + {count} bytes runs {} bytes past the end of allocation {:#x} \
             ({} bytes)",
            (count as u64).saturating_add(offset) - alloc.size,
            alloc.base,
            alloc.size
        )));
    }
    Ok(Range {
        alloc,
        offset: offset as usize,
    })
}

/// An op's device operand: its pointer, its name in errors, its element size, and the bytes
/// the op uses (`None`: from the pointer to the end of its allocation).
pub(crate) struct Operand<'p> {
    pub(crate) ptr: *const c_void,
    pub(crate) what: &'p str,
    pub(crate) elem_bytes: usize,
    pub(crate) bytes: Option<usize>,
}

/// Runs `body` with a byte view of each operand: exactly its `bytes`, or from its pointer to
/// the end of its allocation (whole elements only) so that the runtime's op checks the
/// operand's extent against the memory really there. An operand of 0 bytes may be NULL or
/// outside every allocation (the op does not touch it): it gets an empty view at the start of
/// another operand's allocation, and at least one operand must be non-empty. Each allocation
/// is locked once, in address order (two operands may share one allocation, and two threads
/// may lock the same ones), while the work is queued.
pub(crate) fn with_operands<R>(
    operands: &[Operand<'_>],
    body: impl FnOnce(&[DeviceSlice<'_, u8>]) -> Result<R>,
) -> Result<R> {
    let mut ranges = Vec::with_capacity(operands.len());
    for o in operands {
        ranges.push(match o.bytes {
            Some(0) => resolve(o.ptr, 0, o.what).ok(),
            Some(n) => Some(resolve(o.ptr, n, o.what)?),
            None => Some(resolve(o.ptr, 0, o.what)?),
        });
    }
    let Some(any) = ranges.iter().flatten().next().map(|r| r.alloc.clone()) else {
        return Err(Error::Internal {
            detail: "an op with no operand to queue on".into(),
        });
    };
    let mut allocs: Vec<&Arc<Alloc>> = ranges.iter().flatten().map(|r| &r.alloc).collect();
    allocs.sort_by_key(|a| a.base);
    allocs.dedup_by_key(|a| a.base);
    let guards: Vec<_> = allocs.iter().map(|a| (a.base, a.buf.lock())).collect();
    let buffer = |alloc: &Arc<Alloc>| {
        guards
            .iter()
            .find(|(base, _)| *base == alloc.base)
            .map(|(_, buf)| buf)
            .expect("every operand's allocation is locked")
    };
    let views = ranges
        .iter()
        .zip(operands)
        .map(|(r, o)| match (r, o.bytes) {
            (None, _) => buffer(&any).slice(0..0),
            (Some(r), Some(n)) => buffer(&r.alloc).slice(r.offset..r.offset + n),
            (Some(r), None) => {
                let rest = r.alloc.size as usize - r.offset;
                buffer(&r.alloc).slice(r.offset..r.offset + rest - rest % o.elem_bytes.max(1))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    body(&views)
}

/// A written operand: the runtime's launchers take outputs through `AsDeviceSliceMut`. An
/// output may share an allocation with an input (distinct ranges, or in place where the op
/// allows it), so it is held as a shared view; the device memory is never touched on the
/// host.
pub(crate) struct Written<'a, T>(pub(crate) DeviceSlice<'a, T>);

impl<T> AsDeviceSlice<T> for Written<'_, T> {
    fn as_device_slice(&self) -> DeviceSlice<'_, T> {
        self.0
    }
}

impl<T> AsDeviceSliceMut<T> for Written<'_, T> {
    fn as_device_slice_mut(&mut self) -> DeviceSlice<'_, T> {
        self.0
    }
}

/// Where one side of a copy is.
enum Side {
    Host(usize),
    Device(Range),
}

/// Resolves one side of a copy; `device` is what the copy kind says (None: infer).
fn side(ptr: *const c_void, count: usize, device: Option<bool>, what: &str) -> Result<Side> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    let is_device = lookup(ptr as u64).is_some();
    match device {
        Some(true) | None if is_device => Ok(Side::Device(resolve(ptr, count, what)?)),
        Some(true) => Err(invalid(format!(
            "{what} {ptr:p} is not inside any live device allocation (the copy kind says it \
             is device memory)"
        ))),
        Some(false) if is_device => Err(invalid(format!(
            "{what} {ptr:p} is device memory, but the copy kind says host memory"
        ))),
        _ => Ok(Side::Host(ptr as usize)),
    }
}

fn kind_sides(kind: knpuMemcpyKind) -> Result<(Option<bool>, Option<bool>)> {
    Ok(match kind {
        knpuMemcpyHostToHost => (Some(false), Some(false)),
        knpuMemcpyHostToDevice => (Some(true), Some(false)),
        knpuMemcpyDeviceToHost => (Some(false), Some(true)),
        knpuMemcpyDeviceToDevice => (Some(true), Some(true)),
        knpuMemcpyDefault => (None, None),
        other => return Err(invalid(format!("unknown knpuMemcpyKind {other}"))),
    })
}

/// Raw host addresses a queued host-to-host copy uses.
#[derive(Clone, Copy)]
struct HostCopy {
    dst: usize,
    src: usize,
    count: usize,
}

impl HostCopy {
    fn run(self) {
        // SAFETY: the C caller keeps both ranges valid until the copy has run (knpu.h);
        // `copy` allows overlap.
        unsafe { std::ptr::copy(self.src as *const u8, self.dst as *mut u8, self.count) }
    }
}

/// Queues a copy between resolved sides on `s`.
///
/// # Safety
/// - Host sides stay valid until the copy has run (the C caller's promise).
unsafe fn queue_copy(s: &Stream, dst: Side, src: Side, count: usize) -> Result<()> {
    match (dst, src) {
        (Side::Host(d), Side::Host(sr)) => {
            let copy = HostCopy {
                dst: d,
                src: sr,
                count,
            };
            s.launch_host_fn(move || copy.run())
        }
        (Side::Device(d), Side::Host(h)) => {
            let mut buf = d.alloc.buf.lock();
            let mut dst = buf.slice_mut(d.offset..d.offset + count)?;
            // SAFETY: the caller keeps the host source valid until the copy has run.
            let src = unsafe { std::slice::from_raw_parts(h as *const u8, count) };
            // SAFETY: as above.
            unsafe { s.memcpy_htod_async(&mut dst, src) }.map(|_| ())
        }
        (Side::Host(h), Side::Device(sr)) => {
            let buf = sr.alloc.buf.lock();
            let src = buf.slice(sr.offset..sr.offset + count)?;
            // SAFETY: the caller keeps the host destination valid and unread until the copy
            // has run.
            let dst = unsafe { std::slice::from_raw_parts_mut(h as *mut u8, count) };
            // SAFETY: as above.
            unsafe { s.memcpy_dtoh_async(dst, &src) }.map(|_| ())
        }
        (Side::Device(d), Side::Device(sr)) if Arc::ptr_eq(&d.alloc, &sr.alloc) => {
            let mut buf = d.alloc.buf.lock();
            s.copy_within(&mut *buf, sr.offset, d.offset, count)
        }
        (Side::Device(d), Side::Device(sr)) => {
            // Lock in address order so two threads copying between the same pair in
            // opposite directions cannot deadlock.
            let (mut dbuf, sbuf) = if d.alloc.base < sr.alloc.base {
                let dbuf = d.alloc.buf.lock();
                (dbuf, sr.alloc.buf.lock())
            } else {
                let sbuf = sr.alloc.buf.lock();
                (d.alloc.buf.lock(), sbuf)
            };
            let mut dst = dbuf.slice_mut(d.offset..d.offset + count)?;
            let src = sbuf.slice(sr.offset..sr.offset + count)?;
            if d.alloc.device == sr.alloc.device {
                s.memcpy_dtod(&mut dst, &src)
            } else {
                s.memcpy_peer(&mut dst, &src)
            }
        }
    }
}

/// Queues `count` bytes of copy of `kind` on `s` (also used to record graph nodes).
///
/// # Safety
/// - Host memory named by `dst`/`src` stays valid until the copy has run.
pub(crate) unsafe fn queue_memcpy(
    s: &Stream,
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: knpuMemcpyKind,
) -> Result<()> {
    let (dst_dev, src_dev) = kind_sides(kind)?;
    let d = side(dst, count, dst_dev, "dst")?;
    let sr = side(src, count, src_dev, "src")?;
    if count == 0 {
        return Ok(());
    }
    // SAFETY: the caller's promise on host memory.
    unsafe { queue_copy(s, d, sr, count) }
}

/// Queues a fill of `count` bytes at `ptr` on `s`.
pub(crate) fn queue_memset(s: &Stream, ptr: *mut c_void, value: c_int, count: usize) -> Result<()> {
    let r = resolve(ptr, count, "devPtr")?;
    if count == 0 {
        return Ok(());
    }
    let mut buf = r.alloc.buf.lock();
    let mut dst = buf.slice_mut(r.offset..r.offset + count)?;
    s.memset_bytes(&mut dst, value as u8)
}

/// Fails when `s` is capturing: blocking calls cannot be captured.
fn check_blocking(s: &Stream, what: &str) -> Result<()> {
    if s.is_capturing() {
        return Err(Error::Capture {
            detail: format!("{what} waits for its work, so it cannot run on a capturing stream"),
        });
    }
    Ok(())
}

/// The stream a synchronous call runs on: the default stream of the device that owns the
/// first device side, else the current device's.
fn blocking_stream(device: Option<usize>) -> Result<Stream> {
    let d = match device {
        Some(i) => knpu::device(i)?,
        None => current()?,
    };
    Ok(d.default_stream()?.clone())
}

fn alloc_on(s: &Stream, size: usize, device_alloc: bool) -> Result<*mut c_void> {
    if size == 0 {
        return Ok(std::ptr::null_mut());
    }
    let buf = if device_alloc {
        s.device().alloc::<u8>(size)?
    } else {
        s.alloc::<u8>(size)?
    };
    let base = buf.device_address();
    let alloc = Arc::new(Alloc {
        device: s.device().ordinal(),
        base,
        size: size as u64,
        buf: Mutex::new(buf),
    });
    ALLOCATIONS.lock().insert(base, alloc);
    Ok(base as *mut c_void)
}

fn free(ptr: *mut c_void) -> Result<()> {
    if ptr.is_null() {
        return Ok(());
    }
    let addr = ptr as u64;
    let removed = ALLOCATIONS.lock().remove(&addr);
    match removed {
        // Dropping the buffer returns it to the allocator ordered after the work queued on
        // it (the runtime tracks every stream that used it).
        Some(a) => {
            drop(a);
            Ok(())
        }
        None => Err(invalid(match lookup(addr) {
            Some((a, off)) => format!(
                "{addr:#x} is {off} bytes inside allocation {:#x}; free takes the pointer the \
                 allocation returned",
                a.base
            ),
            None => format!("{addr:#x} is not a live device allocation (freed already?)"),
        })),
    }
}

/// Allocates device memory on the current device.
///
/// # Safety
/// - `devPtr` is NULL or points to a writable `void *`.
#[no_mangle]
pub unsafe extern "C" fn knpuMalloc(devPtr: *mut *mut c_void, size: usize) -> knpuError_t {
    call(|| {
        out_ptr(devPtr, "devPtr")?;
        let s = current()?.default_stream()?.clone();
        let p = alloc_on(&s, size, true)?;
        // SAFETY: the caller's promise on `devPtr`.
        unsafe { write_out(devPtr, "devPtr", p) }
    })
}

/// Frees device memory.
#[no_mangle]
pub extern "C" fn knpuFree(devPtr: *mut c_void) -> knpuError_t {
    call(|| free(devPtr))
}

/// Allocates device memory ordered on a stream.
///
/// # Safety
/// - `devPtr` is NULL or points to a writable `void *`.
#[no_mangle]
pub unsafe extern "C" fn knpuMallocAsync(
    devPtr: *mut *mut c_void,
    size: usize,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        out_ptr(devPtr, "devPtr")?;
        let s = stream_arg(stream)?;
        let p = alloc_on(&s, size, false)?;
        // SAFETY: the caller's promise on `devPtr`.
        unsafe { write_out(devPtr, "devPtr", p) }
    })
}

/// Frees device memory ordered on a stream.
#[no_mangle]
pub extern "C" fn knpuFreeAsync(devPtr: *mut c_void, stream: knpuStream_t) -> knpuError_t {
    call(|| {
        stream_arg(stream)?;
        free(devPtr)
    })
}

/// Allocates host memory.
///
/// # Safety
/// - `ptr` is NULL or points to a writable `void *`.
#[no_mangle]
pub unsafe extern "C" fn knpuMallocHost(ptr: *mut *mut c_void, size: usize) -> knpuError_t {
    call(|| {
        out_ptr(ptr, "ptr")?;
        let p = if size == 0 {
            std::ptr::null_mut()
        } else {
            let layout = std::alloc::Layout::from_size_align(size, HOST_ALIGN)
                .map_err(|e| invalid(format!("host allocation of {size} bytes: {e}")))?;
            // SAFETY: the layout has a non-zero size.
            let p = unsafe { std::alloc::alloc(layout) };
            if p.is_null() {
                return Err(Error::OutOfMemory {
                    device: usize::MAX,
                    requested: size as u64,
                    allocated: 0,
                    reserved: 0,
                    free: 0,
                    total: 0,
                });
            }
            HOST.lock().insert(p as usize, size);
            p as *mut c_void
        };
        // SAFETY: the caller's promise on `ptr`.
        unsafe { write_out(ptr, "ptr", p) }
    })
}

/// Frees host memory from knpuMallocHost.
#[no_mangle]
pub extern "C" fn knpuFreeHost(ptr: *mut c_void) -> knpuError_t {
    call(|| {
        if ptr.is_null() {
            return Ok(());
        }
        let size = HOST.lock().remove(&(ptr as usize)).ok_or_else(|| {
            invalid(format!(
                "{ptr:p} is not a live knpuMallocHost allocation (freed already?)"
            ))
        })?;
        let layout = std::alloc::Layout::from_size_align(size, HOST_ALIGN)
            .map_err(|e| invalid(e.to_string()))?;
        // SAFETY: `ptr` came from `alloc` with this layout (the table says so) and is
        // removed from the table, so it is freed once.
        unsafe { std::alloc::dealloc(ptr as *mut u8, layout) };
        Ok(())
    })
}

/// Copies and waits.
///
/// # Safety
/// - Host memory named by `dst`/`src` is valid for `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn knpuMemcpy(
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: knpuMemcpyKind,
) -> knpuError_t {
    call(|| {
        let (dst_dev, src_dev) = kind_sides(kind)?;
        let d = side(dst, count, dst_dev, "dst")?;
        let sr = side(src, count, src_dev, "src")?;
        if count == 0 {
            return Ok(());
        }
        let device = match (&d, &sr) {
            (Side::Device(r), _) | (_, Side::Device(r)) => Some(r.alloc.device),
            _ => None,
        };
        if device.is_none() {
            HostCopy {
                dst: dst as usize,
                src: src as usize,
                count,
            }
            .run();
            return Ok(());
        }
        let s = blocking_stream(device)?;
        check_blocking(&s, "knpuMemcpy")?;
        // SAFETY: we wait for the copy below, so host memory outlives it.
        unsafe { queue_copy(&s, d, sr, count) }?;
        s.synchronize()
    })
}

/// Queues a copy on a stream.
///
/// # Safety
/// - Host memory named by `dst`/`src` stays valid until the copy has run.
#[no_mangle]
pub unsafe extern "C" fn knpuMemcpyAsync(
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: knpuMemcpyKind,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        let s = stream_arg(stream)?;
        // SAFETY: the caller's promise on host memory.
        unsafe { queue_memcpy(&s, dst, src, count, kind) }
    })
}

fn peer_ranges(
    dst: *mut c_void,
    dst_device: c_int,
    src: *const c_void,
    src_device: c_int,
    count: usize,
) -> Result<(Range, Range)> {
    let dd = device_at(dst_device)?.ordinal();
    let sd = device_at(src_device)?.ordinal();
    let d = resolve(dst, count, "dst")?;
    let s = resolve(src, count, "src")?;
    for (what, r, want) in [("dst", &d, dd), ("src", &s, sd)] {
        if r.alloc.device != want {
            return Err(invalid(format!(
                "{what} is memory of device {}, not of device {want}",
                r.alloc.device
            )));
        }
    }
    Ok((d, s))
}

/// Copies between devices and waits.
#[no_mangle]
pub extern "C" fn knpuMemcpyPeer(
    dst: *mut c_void,
    dstDevice: c_int,
    src: *const c_void,
    srcDevice: c_int,
    count: usize,
) -> knpuError_t {
    call(|| {
        let (d, sr) = peer_ranges(dst, dstDevice, src, srcDevice, count)?;
        if count == 0 {
            return Ok(());
        }
        let s = blocking_stream(Some(d.alloc.device))?;
        check_blocking(&s, "knpuMemcpyPeer")?;
        // SAFETY: no host memory.
        unsafe { queue_copy(&s, Side::Device(d), Side::Device(sr), count) }?;
        s.synchronize()
    })
}

/// Queues a copy between devices on a stream of the destination device.
#[no_mangle]
pub extern "C" fn knpuMemcpyPeerAsync(
    dst: *mut c_void,
    dstDevice: c_int,
    src: *const c_void,
    srcDevice: c_int,
    count: usize,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        let (d, sr) = peer_ranges(dst, dstDevice, src, srcDevice, count)?;
        let s = if stream.is_null() {
            device_at(dstDevice)?.default_stream()?.clone()
        } else {
            stream_arg(stream)?
        };
        if count == 0 {
            return Ok(());
        }
        // SAFETY: no host memory.
        unsafe { queue_copy(&s, Side::Device(d), Side::Device(sr), count) }
    })
}

/// Fills device memory and waits.
#[no_mangle]
pub extern "C" fn knpuMemset(devPtr: *mut c_void, value: c_int, count: usize) -> knpuError_t {
    call(|| {
        let r = resolve(devPtr, count, "devPtr")?;
        if count == 0 {
            return Ok(());
        }
        let s = blocking_stream(Some(r.alloc.device))?;
        check_blocking(&s, "knpuMemset")?;
        queue_memset(&s, devPtr, value, count)?;
        s.synchronize()
    })
}

/// Queues a fill on a stream.
#[no_mangle]
pub extern "C" fn knpuMemsetAsync(
    devPtr: *mut c_void,
    value: c_int,
    count: usize,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        let s = stream_arg(stream)?;
        queue_memset(&s, devPtr, value, count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_pointers_resolve_and_overruns_are_refused() {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` is a writable pointer.
        assert_eq!(unsafe { knpuMalloc(&mut p, 100) }, knpuSuccess);
        let base = p as usize;
        let r = resolve((base + 16) as *const c_void, 84, "p").unwrap();
        assert_eq!(r.offset, 16);
        assert!(resolve((base + 16) as *const c_void, 85, "p").is_err());
        assert!(resolve((base + 100) as *const c_void, 1, "p").is_err());
        assert!(resolve((base - 1) as *const c_void, 1, "p").is_err());
        assert_eq!(knpuFree((base + 16) as *mut c_void), knpuErrorInvalidValue);
        assert_eq!(knpuFree(p), knpuSuccess);
        assert!(resolve(p, 1, "p").is_err());
        assert_eq!(knpuFree(p), knpuErrorInvalidValue);
    }
}
