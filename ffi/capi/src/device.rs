//! Devices: count, the per-thread current device, attributes, properties, the capability
//! query, synchronisation, memory information and statistics, and versions.

use crate::error::{call, invalid, out_ptr, write_out, Result};
use crate::header::*;
use knpu::{Attribute, Device};
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint};

thread_local! {
    /// This thread's current device (knpuSetDevice), as in CUDA.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The device with C ordinal `ordinal`.
pub(crate) fn device_at(ordinal: c_int) -> Result<Device> {
    let i =
        usize::try_from(ordinal).map_err(|_| invalid(format!("device {ordinal} is negative")))?;
    knpu::device(i)
}

/// This thread's current device.
pub(crate) fn current() -> Result<Device> {
    knpu::device(CURRENT.with(Cell::get))
}

fn attribute(raw: knpuDeviceAttr) -> Result<Attribute> {
    Ok(match raw {
        knpuDevAttrTotalMemory => Attribute::TotalMemory,
        knpuDevAttrComputeCores => Attribute::ComputeCores,
        knpuDevAttrAllocationAlignment => Attribute::AllocationAlignment,
        knpuDevAttrMaxStreams => Attribute::MaxQueues,
        knpuDevAttrPeakF32Mflops => Attribute::PeakF32Mflops,
        knpuDevAttrPeakF16Mflops => Attribute::PeakF16Mflops,
        knpuDevAttrPeakInt8Mops => Attribute::PeakInt8Mops,
        knpuDevAttrMemoryBandwidthMbps => Attribute::MemoryBandwidthMbps,
        knpuDevAttrDmaBandwidthMbps => Attribute::DmaBandwidthMbps,
        knpuDevAttrPeerCopy => Attribute::PeerCopy,
        knpuDevAttrFaultInjection => Attribute::FaultInjection,
        other => return Err(invalid(format!("unknown device attribute {other}"))),
    })
}

/// Reads the `structSize` a caller set in a growable struct and checks it.
///
/// # Safety
/// - `p`, when not NULL, points to a readable `T` of at least `structSize` bytes.
unsafe fn struct_size<T>(p: *mut T, what: &str) -> Result<usize> {
    let p = out_ptr(p, what)?;
    // SAFETY: non-null and aligned; every growable struct of knpu.h starts with a size_t
    // structSize that the caller set.
    let size = unsafe { (p as *const usize).read() };
    if size < std::mem::size_of::<usize>() {
        return Err(invalid(format!(
            "{what}->structSize is {size}; set it to sizeof the struct ({} for this header)",
            std::mem::size_of::<T>()
        )));
    }
    Ok(size)
}

/// Copies the fields of `full` that fit in the caller's `structSize` bytes.
///
/// # Safety
/// - `p` points to at least `size` writable bytes (the caller's promise with structSize).
unsafe fn fill_prefix<T>(p: *mut T, size: usize, full: &T) {
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `full` is a whole T; `p` has at least `n` writable bytes; they do not overlap
    // (`full` is our local).
    unsafe { std::ptr::copy_nonoverlapping(full as *const T as *const u8, p as *mut u8, n) };
}

fn copy_str(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    dst[n] = 0;
}

/// Sets `*count` to the number of devices.
///
/// # Safety
/// - `count` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuGetDeviceCount(count: *mut c_int) -> knpuError_t {
    call(|| {
        let n = knpu::devices().len() as c_int;
        // SAFETY: the caller's promise on `count`.
        unsafe { write_out(count, "count", n) }
    })
}

/// Makes `device` this thread's current device.
#[no_mangle]
pub extern "C" fn knpuSetDevice(device: c_int) -> knpuError_t {
    call(|| {
        let d = device_at(device)?;
        CURRENT.with(|c| c.set(d.ordinal()));
        Ok(())
    })
}

/// Sets `*device` to this thread's current device.
///
/// # Safety
/// - `device` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuGetDevice(device: *mut c_int) -> knpuError_t {
    call(|| {
        let d = CURRENT.with(Cell::get) as c_int;
        // SAFETY: the caller's promise on `device`.
        unsafe { write_out(device, "device", d) }
    })
}

/// Reads one device attribute.
///
/// # Safety
/// - `value` is NULL or points to a writable `int64_t`.
#[no_mangle]
pub unsafe extern "C" fn knpuDeviceGetAttribute(
    value: *mut i64,
    attr: knpuDeviceAttr,
    device: c_int,
) -> knpuError_t {
    call(|| {
        out_ptr(value, "value")?;
        let a = attribute(attr)?;
        let v = device_at(device)?.attribute(a)?;
        // SAFETY: the caller's promise on `value`.
        unsafe { write_out(value, "value", v) }
    })
}

/// Fills a device's properties (as many fields as the caller's `structSize` holds).
///
/// # Safety
/// - `prop` is NULL or points to writable memory of `prop->structSize` bytes, with
///   `structSize` set.
#[no_mangle]
pub unsafe extern "C" fn knpuGetDeviceProperties(
    prop: *mut knpuDeviceProp,
    device: c_int,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `prop`.
        let size = unsafe { struct_size(prop, "prop") }?;
        let d = device_at(device)?;
        let attr = |a| {
            d.attribute(a).or_else(|e| match e {
                knpu::Error::NotSupported { .. } => Ok(0),
                e => Err(e),
            })
        };
        // SAFETY: knpuDeviceProp is integers and char arrays; all zeros is a valid value.
        let mut p: knpuDeviceProp = unsafe { std::mem::zeroed() };
        p.structSize = size;
        copy_str(&mut p.name, d.name());
        copy_str(&mut p.driverName, d.driver().name());
        copy_str(&mut p.driverVersion, d.driver().version());
        p.ordinal = d.ordinal() as c_int;
        p.computeCores = attr(Attribute::ComputeCores)? as c_int;
        p.totalGlobalMem = attr(Attribute::TotalMemory)? as u64;
        p.allocationAlignment = attr(Attribute::AllocationAlignment)? as u64;
        p.maxStreams = attr(Attribute::MaxQueues)? as c_int;
        p.peerCopy = attr(Attribute::PeerCopy)? as c_int;
        p.peakF32Mflops = attr(Attribute::PeakF32Mflops)?;
        p.peakF16Mflops = attr(Attribute::PeakF16Mflops)?;
        p.peakInt8Mops = attr(Attribute::PeakInt8Mops)?;
        p.memoryBandwidthMbps = attr(Attribute::MemoryBandwidthMbps)?;
        p.dmaBandwidthMbps = attr(Attribute::DmaBandwidthMbps)?;
        let (major, minor) = d.driver().abi_version();
        p.driverAbiMajor = major as c_int;
        p.driverAbiMinor = minor as c_int;
        // SAFETY: the caller promised `size` writable bytes.
        unsafe { fill_prefix(prop, size, &p) };
        Ok(())
    })
}

/// Whether a device runs a kernel id with a dtype.
///
/// # Safety
/// - `supported` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuDeviceSupportsKernel(
    device: c_int,
    kernelId: c_uint,
    dtype: c_uint,
    supported: *mut c_int,
) -> knpuError_t {
    call(|| {
        out_ptr(supported, "supported")?;
        let yes = device_at(device)?.supports_kernel(kernelId, dtype)?;
        // SAFETY: the caller's promise on `supported`.
        unsafe { write_out(supported, "supported", yes as c_int) }
    })
}

/// Waits for every stream of the current device.
#[no_mangle]
pub extern "C" fn knpuDeviceSynchronize() -> knpuError_t {
    call(|| current()?.synchronize())
}

/// Free and total device memory of the current device.
///
/// # Safety
/// - `free` and `total` are NULL or point to writable `size_t`s.
#[no_mangle]
pub unsafe extern "C" fn knpuMemGetInfo(free: *mut usize, total: *mut usize) -> knpuError_t {
    call(|| {
        out_ptr(free, "free")?;
        out_ptr(total, "total")?;
        let (f, t) = current()?.memory_info()?;
        // SAFETY: the caller's promise on both pointers.
        unsafe {
            write_out(free, "free", f as usize)?;
            write_out(total, "total", t as usize)
        }
    })
}

/// The caching allocator's statistics for a device.
///
/// # Safety
/// - `stats` is NULL or points to writable memory of `stats->structSize` bytes, with
///   `structSize` set.
#[no_mangle]
pub unsafe extern "C" fn knpuDeviceGetMemoryStats(
    stats: *mut knpuMemoryStats,
    device: c_int,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `stats`.
        let size = unsafe { struct_size(stats, "stats") }?;
        let m = device_at(device)?.memory_stats();
        let s = knpuMemoryStats {
            structSize: size,
            allocatedBytes: m.allocated_bytes,
            peakAllocatedBytes: m.peak_allocated_bytes,
            requestedBytes: m.requested_bytes,
            reservedBytes: m.reserved_bytes,
            peakReservedBytes: m.peak_reserved_bytes,
            activeBlocks: m.active_blocks,
            cachedBlocks: m.cached_blocks,
            segments: m.segments,
            numAllocs: m.num_allocs,
            numFrees: m.num_frees,
            numSegmentAllocs: m.num_segment_allocs,
            numSegmentFrees: m.num_segment_frees,
            numAllocRetries: m.num_alloc_retries,
            numOoms: m.num_ooms,
        };
        // SAFETY: the caller promised `size` writable bytes.
        unsafe { fill_prefix(stats, size, &s) };
        Ok(())
    })
}

/// Resets a device's peak memory figures.
#[no_mangle]
pub extern "C" fn knpuDeviceResetPeakMemoryStats(device: c_int) -> knpuError_t {
    call(|| {
        device_at(device)?.reset_peak_memory_stats();
        Ok(())
    })
}

/// Returns the current device's cached free segments to the driver.
#[no_mangle]
pub extern "C" fn knpuDeviceEmptyCache() -> knpuError_t {
    call(|| current()?.empty_cache())
}

/// The C API's version, 1000 * major + 10 * minor.
///
/// # Safety
/// - `runtimeVersion` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuRuntimeGetVersion(runtimeVersion: *mut c_int) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise.
        unsafe { write_out(runtimeVersion, "runtimeVersion", KNPU_API_VERSION as c_int) }
    })
}

/// The driver ABI version of the current device's driver.
///
/// # Safety
/// - `driverVersion` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuDriverGetVersion(driverVersion: *mut c_int) -> knpuError_t {
    call(|| {
        out_ptr(driverVersion, "driverVersion")?;
        let (major, minor) = current()?.driver().abi_version();
        let v = (1000 * major + 10 * minor) as c_int;
        // SAFETY: the caller's promise.
        unsafe { write_out(driverVersion, "driverVersion", v) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soname_major_is_the_headers() {
        assert_eq!(
            env!("KNPU_API_VERSION_MAJOR"),
            KNPU_API_VERSION_MAJOR.to_string()
        );
    }
}
