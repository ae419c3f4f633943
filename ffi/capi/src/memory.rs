//! Device and host memory: allocation, free, copies and fills on raw device pointers.
//!
//! C holds device memory as `void *` device addresses. Every allocation made through the
//! library is kept here, in a table sorted by base address holding the runtime buffer that
//! owns it, so any pointer — `d_a + 16` included — finds its allocation with one binary
//! search, and a pointer outside every live allocation, or a range past its end, is refused
//! before anything is queued. Work is then queued through views of that buffer (or, for
//! GEMM, the buffer and an offset in it), so the runtime's stream-ordered reuse and
//! cross-stream use tracking apply to C callers exactly as to Rust ones. Device memory is
//! never dereferenced here.

use crate::device::{current, device_at};
use crate::error::{call, invalid, out_ptr, write_out, Result};
use crate::header::*;
use crate::stream::stream_arg;
use knpu::ops::ByteOperand;
use knpu::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice, Error, Stream};
use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

/// One live allocation.
///
/// Its runtime buffer is shared, not locked: queueing work needs only a shared reference
/// (each view names its bytes, and the buffer keeps its own list of the streams that use
/// it), so launches and copies from any number of threads take no lock of it. What a shared
/// buffer must not do on the host, it cannot: device memory is never dereferenced here.
pub(crate) struct Alloc {
    device: usize,
    base: u64,
    size: u64,
    buf: DeviceBuffer<u8>,
}

/// Live allocations, sorted by base address (they never overlap): a binary search finds the
/// one containing any address.
static ALLOCATIONS: Mutex<AllocMap> = Mutex::new(Vec::new());
/// Host allocations of knpuMallocHost: address to size.
static HOST: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
const HOST_ALIGN: usize = 64;

/// The table of live allocations.
pub(crate) type AllocMap = Vec<Arc<Alloc>>;

/// The allocation containing `addr`, and the offset of `addr` in it.
fn lookup(addr: u64) -> Option<(Arc<Alloc>, u64)> {
    lookup_in(&ALLOCATIONS.lock(), addr)
}

/// As [`lookup`], in an already locked table.
fn lookup_in(map: &AllocMap, addr: u64) -> Option<(Arc<Alloc>, u64)> {
    let i = map.partition_point(|a| a.base <= addr).checked_sub(1)?;
    let a = &map[i];
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
    resolve_in(&ALLOCATIONS.lock(), ptr, count, what)
}

/// As [`resolve`], in an already locked table.
pub(crate) fn resolve_in(
    map: &AllocMap,
    ptr: *const c_void,
    count: usize,
    what: &str,
) -> Result<Range> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    let addr = ptr as u64;
    let (alloc, offset) = lookup_in(map, addr).ok_or_else(|| {
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

/// The most operands an op has (the op definitions' limit).
pub(crate) const MAX_OPERANDS: usize = knpu::abi::ops::MAX_OPERANDS;

impl Range {
    /// A byte view of `bytes` bytes from the range's start (`None`: to the end of the
    /// allocation, rounded down to whole elements of `elem_bytes`).
    fn view(&self, bytes: Option<usize>, elem_bytes: usize) -> Result<DeviceSlice<'_, u8>> {
        let end = match bytes {
            Some(bytes) => self.offset + bytes,
            None => {
                let rest = self.alloc.size as usize - self.offset;
                self.offset + rest - rest % elem_bytes.max(1)
            }
        };
        self.alloc.buf.slice(self.offset..end)
    }
}

/// The allocation table, locked: an op resolves all its pointers (with [`resolve_in`])
/// under one lock of it.
pub(crate) fn allocations() -> MutexGuard<'static, AllocMap> {
    ALLOCATIONS.lock()
}

impl Range {
    /// The range as a launcher operand: its allocation's buffer and its offset in it.
    pub(crate) fn operand(&self) -> ByteOperand<'_> {
        ByteOperand {
            buffer: &self.alloc.buf,
            offset: self.offset,
        }
    }
}

/// Runs `body` with a byte view of each operand: exactly its `bytes`, or from its pointer to
/// the end of its allocation (whole elements only) so that the runtime's op checks the
/// operand's extent against the memory really there. An operand of 0 bytes may be NULL or
/// outside every allocation (the op does not touch it): it gets an empty view at the start of
/// another operand's allocation, and at least one operand must be non-empty.
///
/// Every operand is resolved under one lock of the allocation table; each resolved range
/// holds a reference to its allocation, so a concurrent knpuFree cannot release the memory
/// before the work queued here is tracked by its buffer. Launches are the hot path of the C
/// API, so nothing here allocates and no allocation is locked.
pub(crate) fn with_operands<const N: usize, R>(
    operands: &[Operand<'_>; N],
    body: impl FnOnce(&[DeviceSlice<'_, u8>; N]) -> Result<R>,
) -> Result<R> {
    let mut ranges: [Option<Range>; N] = [const { None }; N];
    {
        let map = ALLOCATIONS.lock();
        for (slot, o) in ranges.iter_mut().zip(operands) {
            *slot = match o.bytes {
                // An empty operand is not touched: any pointer will do, even a bad one.
                Some(0) if !o.ptr.is_null() => {
                    lookup_in(&map, o.ptr as u64).map(|(alloc, offset)| Range {
                        alloc,
                        offset: offset as usize,
                    })
                }
                Some(0) => None,
                Some(bytes) => Some(resolve_in(&map, o.ptr, bytes, o.what)?),
                None => Some(resolve_in(&map, o.ptr, 0, o.what)?),
            };
        }
    }
    let Some(first) = ranges.iter().flatten().next() else {
        return Err(Error::Internal {
            detail: "an op with no operand to queue on".into(),
        });
    };
    let empty = first.alloc.buf.slice(0..0)?;
    let mut views = [empty; N];
    for ((view, r), o) in views.iter_mut().zip(&ranges).zip(operands) {
        if let Some(r) = r {
            *view = r.view(o.bytes, o.elem_bytes)?;
        }
    }
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
            let mut dst = Written(d.view(Some(count), 1)?);
            // SAFETY: the caller keeps the host source valid until the copy has run.
            let src = unsafe { std::slice::from_raw_parts(h as *const u8, count) };
            // SAFETY: as above.
            unsafe { s.memcpy_htod_async(&mut dst, src) }.map(|_| ())
        }
        (Side::Host(h), Side::Device(sr)) => {
            let src = sr.view(Some(count), 1)?;
            // SAFETY: the caller keeps the host destination valid and unread until the copy
            // has run.
            let dst = unsafe { std::slice::from_raw_parts_mut(h as *mut u8, count) };
            // SAFETY: as above.
            unsafe { s.memcpy_dtoh_async(dst, &src) }.map(|_| ())
        }
        (Side::Device(d), Side::Device(sr)) => {
            // Within one allocation the ranges may overlap: the device copies as memmove.
            let mut dst = Written(d.view(Some(count), 1)?);
            let src = sr.view(Some(count), 1)?;
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
    s.memset_bytes(&mut Written(r.view(Some(count), 1)?), value as u8)
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
        buf,
    });
    let mut map = ALLOCATIONS.lock();
    let at = map.partition_point(|a| a.base < base);
    map.insert(at, alloc);
    Ok(base as *mut c_void)
}

fn free(ptr: *mut c_void) -> Result<()> {
    if ptr.is_null() {
        return Ok(());
    }
    let addr = ptr as u64;
    let removed = {
        let mut map = ALLOCATIONS.lock();
        map.binary_search_by_key(&addr, |a| a.base)
            .ok()
            .map(|i| map.remove(i))
    };
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

    fn malloc(size: usize) -> *mut c_void {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: `p` is a writable pointer.
        assert_eq!(unsafe { knpuMalloc(&mut p, size) }, knpuSuccess);
        p
    }

    fn operand(ptr: *const c_void, bytes: Option<usize>) -> Operand<'static> {
        Operand {
            ptr,
            what: "x",
            elem_bytes: 4,
            bytes,
        }
    }

    #[test]
    fn operands_in_any_order_and_sharing_allocations_get_their_own_views() {
        let (a, b) = (malloc(64), malloc(64));
        let (lo, hi) = if (a as u64) < (b as u64) {
            (a, b)
        } else {
            (b, a)
        };
        let at = |p: *mut c_void, off: usize| (p as usize + off) as *const c_void;
        let ops = [
            operand(at(hi, 8), Some(16)),
            operand(at(lo, 0), None),
            operand(at(hi, 32), Some(8)),
            operand(std::ptr::null(), Some(0)),
            operand(at(lo, 4), Some(4)),
        ];
        let addrs = with_operands(&ops, |v| {
            Ok(v.iter().map(|s| (s.addr(), s.len())).collect::<Vec<_>>())
        })
        .unwrap();
        assert_eq!(addrs[0], (hi as u64 + 8, 16));
        assert_eq!(addrs[1], (lo as u64, 64));
        assert_eq!(addrs[2], (hi as u64 + 32, 8));
        assert_eq!(addrs[3].1, 0);
        assert_eq!(addrs[4], (lo as u64 + 4, 4));
        // A bad operand is refused before anything else.
        let bad = [operand(at(lo, 60), Some(8))];
        assert!(with_operands(&bad, |_| Ok(())).is_err());
        let none = [operand(std::ptr::null(), Some(0))];
        assert!(with_operands(&none, |_| Ok(())).is_err());
        assert_eq!(knpuFree(a), knpuSuccess);
        assert_eq!(knpuFree(b), knpuSuccess);
    }
}
