//! The software NPU: a knpu driver that runs on the host CPU and behaves like hardware.
//!
//! It has its own device memory (a separate address space resolved through an allocation
//! table, so bad addresses are device faults), DMA-style copy commands, in-order queues on
//! worker threads, timeline semaphores, a compute pool shared by all queues, a timing model,
//! per-command profiling and fault injection. It implements the driver ABI of
//! `ffi/include/knpu_driver.h` and nothing else: the runtime reaches it through [`api`]
//! (static linking) or through the exported `knpu_driver_get_api` (as a plugin), the same
//! table either way.
//!
//! # Semantics where the header leaves a choice
//!
//! - Configuration (read once, at first use): `KNPU_SIM_DEVICES` (default 1, at most 64),
//!   `KNPU_SIM_MEMORY` per device (default 4G; suffixes K/M/G/T; backed lazily, so the
//!   default costs nothing), `KNPU_SIM_CORES` (compute pool threads, default the host's),
//!   `KNPU_SIM_FAIL_ALLOC=N` (the N-th allocation of each device fails), and the timing
//!   profile `KNPU_SIM_PEAK_F32_MFLOPS`, `KNPU_SIM_PEAK_F16_MFLOPS`, `KNPU_SIM_PEAK_INT8_MOPS`,
//!   `KNPU_SIM_MEMORY_BANDWIDTH_MBPS`, `KNPU_SIM_DMA_BANDWIDTH_MBPS`. A bad value is reported
//!   on stderr and replaced by its default.
//! - Addresses: device `i` allocates upward from `(i + 1) << 44`, 256-byte aligned, with a
//!   64 KiB unmapped gap after each allocation; addresses are not reused until that range is
//!   exhausted, so a stale address faults (and the message says "freed" for the last 4096
//!   frees).
//! - Limits: 64 queues per device (`queue_create` beyond that: OUT_OF_MEMORY, the header's
//!   "host resource exhausted"); kernel parameter structs up to 192 bytes are copied without
//!   a heap allocation (larger ones are copied to the heap).
//! - Priority: a LOW queue's kernels use at most half of the compute pool, so NORMAL and HIGH
//!   queues always find free cores; NORMAL and HIGH behave alike (the pool is shared FIFO,
//!   nothing is preempted).
//! - Aliasing in kernels: an operand at the same address as the output is an in-place
//!   update; an operand that partially overlaps the output is copied first, so results are as
//!   if all inputs were read before any output was written.
//! - Submit-time validation: malformed commands (unknown type, non-zero flags, null host
//!   pointer with a non-zero size, bad fill pattern size or a size that is not a multiple of
//!   it, misaligned timestamp destination, bad kernel parameters) make `queue_submit` return
//!   INVALID_VALUE, an unknown kernel id or unsupported dtype NOT_SUPPORTED, an unknown
//!   semaphore or peer device INVALID_HANDLE; nothing of a refused submission runs and its
//!   host functions are not called. Device addresses are checked when the command runs.
//!   The command array's stride is the first command's `struct_size` (all must agree), so a
//!   caller built against a later minor with a larger `KnpuCommand` is read correctly.
//! - Device loss: every call that creates work or objects on the device (alloc, submit,
//!   queue and semaphore creation, memory info, fault injection, host signal) returns
//!   DEVICE_LOST; its semaphores fail at once with DEVICE_LOST; queued submissions fail
//!   without running (a queue blocked on a wait notices within a few milliseconds). Releasing
//!   calls (`mem_free`, `queue_destroy`, `semaphore_destroy`) and queries (name, attributes,
//!   clock, profile) keep working, so callers can clean up.
//! - Profiling keeps at most 2^20 records per device; older ones are dropped first.
//!   `modeled_ns` comes from the timing profile: copies and fills by bytes over the DMA or
//!   memory bandwidth, kernels by the larger of their memory and compute time.
//!
//! This file holds the table and its `extern "C"` functions: each validates its handles and
//! pointers, catches panics (a panic never crosses the C boundary; it becomes
//! `KNPU_STATUS_INTERNAL`) and forwards to the module that owns the concept.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod command;
pub mod config;
pub mod device;
pub mod driver;
pub mod exec;
pub mod fault;
pub mod handle;
pub mod kernels;
pub mod memory;
pub mod profile;
pub mod queue;
pub mod semaphore;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use knpu_driver_abi::*;

use crate::driver::{driver, Driver};
use crate::memory::AllocError;
use crate::queue::Queue;
use crate::semaphore::Semaphore;

/// The driver's name in the API table.
pub const DRIVER_NAME: &CStr = c"sim";

struct Table(KnpuDriverApi);

// SAFETY: the table is immutable; its pointers are to static strings and functions.
unsafe impl Sync for Table {}

static API: Table = Table(KnpuDriverApi {
    struct_size: std::mem::size_of::<KnpuDriverApi>(),
    abi_major: KNPU_DRIVER_ABI_MAJOR,
    abi_minor: KNPU_DRIVER_ABI_MINOR,
    driver_name: DRIVER_NAME.as_ptr(),
    driver_version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char,
    device_count: Some(device_count),
    device_get: Some(device_get),
    device_get_name: Some(device_get_name),
    device_get_attribute: Some(device_get_attribute),
    device_supports_kernel: Some(device_supports_kernel),
    device_memory_info: Some(device_memory_info),
    device_inject_fault: Some(device_inject_fault),
    mem_alloc: Some(mem_alloc),
    mem_free: Some(mem_free),
    queue_create: Some(queue_create),
    queue_destroy: Some(queue_destroy),
    queue_submit: Some(queue_submit),
    semaphore_create: Some(semaphore_create),
    semaphore_destroy: Some(semaphore_destroy),
    semaphore_query: Some(semaphore_query),
    semaphore_wait: Some(semaphore_wait),
    semaphore_signal: Some(semaphore_signal),
    semaphore_get_error: Some(semaphore_get_error),
    device_set_profiling: Some(device_set_profiling),
    device_read_profile: Some(device_read_profile),
    device_get_clock: Some(device_get_clock),
    command_list_create: Some(command_list_create),
    command_list_update: Some(command_list_update),
    command_list_destroy: Some(command_list_destroy),
});

/// The driver's API table, for a runtime that links the simulator statically.
pub fn api() -> &'static KnpuDriverApi {
    &API.0
}

/// The plugin entry point: the API table, or null when the loader's ABI major differs.
#[no_mangle]
pub extern "C" fn knpu_driver_get_api(
    loader_abi_major: u32,
    _loader_abi_minor: u32,
) -> *const KnpuDriverApi {
    if loader_abi_major != KNPU_DRIVER_ABI_MAJOR {
        return std::ptr::null();
    }
    api()
}

type Status = Result<(), KnpuStatus>;

/// Runs `f`, turning a panic into INTERNAL.
fn guard(f: impl FnOnce() -> Status) -> KnpuStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => KNPU_STATUS_SUCCESS,
        Ok(Err(status)) => status,
        Err(_) => KNPU_STATUS_INTERNAL,
    }
}

/// Writes `value` to an out-parameter; INVALID_VALUE when it is null.
///
/// # Safety
/// - `out` must be null or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) -> Status {
    if out.is_null() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    // SAFETY: non-null, and the caller guarantees it writable.
    unsafe { out.write(value) };
    Ok(())
}

fn device_of(d: KnpuDriverDevice) -> Result<&'static Arc<device::Device>, KnpuStatus> {
    driver().device(d as usize)
}

fn queue_of(q: KnpuQueue) -> Result<Arc<Queue>, KnpuStatus> {
    driver()
        .queues
        .get(q as usize)
        .ok_or(KNPU_STATUS_INVALID_HANDLE)
}

fn semaphore_of(s: KnpuSemaphore) -> Result<Arc<Semaphore>, KnpuStatus> {
    driver()
        .semaphores
        .get(s as usize)
        .ok_or(KNPU_STATUS_INVALID_HANDLE)
}

/// Copies `text` NUL-terminated into `buf`, truncated to `capacity` bytes.
///
/// # Safety
/// - `buf` must be null (with `capacity` 0) or writable for `capacity` bytes.
unsafe fn put_str(buf: *mut c_char, capacity: usize, text: &[u8]) -> Status {
    if capacity == 0 {
        return Ok(());
    }
    if buf.is_null() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    let n = text.len().min(capacity - 1);
    // SAFETY: n + 1 <= capacity bytes at `buf`, writable by the caller's guarantee; `text`
    // is a separate Rust buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, n);
        buf.add(n).write(0);
    }
    Ok(())
}

// The functions of the table. Safety, for all of them: every pointer argument is null or
// valid for the access the header describes; handles are validated here and may be anything.

unsafe extern "C" fn device_count(count: *mut u32) -> KnpuStatus {
    // SAFETY: `count` is null or writable (table contract).
    guard(|| unsafe { put(count, driver().devices.len() as u32) })
}

unsafe extern "C" fn device_get(index: u32, device: *mut KnpuDriverDevice) -> KnpuStatus {
    guard(|| {
        if index as usize >= driver().devices.len() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        // SAFETY: `device` is null or writable (table contract).
        unsafe { put(device, Driver::device_handle(index) as KnpuDriverDevice) }
    })
}

unsafe extern "C" fn device_get_name(
    device: KnpuDriverDevice,
    name: *mut c_char,
    capacity: usize,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        // SAFETY: `name` is null or writable for `capacity` bytes (table contract).
        unsafe { put_str(name, capacity, d.name.as_bytes()) }
    })
}

unsafe extern "C" fn device_get_attribute(
    device: KnpuDriverDevice,
    attribute: u32,
    value: *mut i64,
) -> KnpuStatus {
    guard(|| {
        let v = device_of(device)?
            .attribute(attribute)
            .ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
        // SAFETY: `value` is null or writable (table contract).
        unsafe { put(value, v) }
    })
}

unsafe extern "C" fn device_supports_kernel(
    device: KnpuDriverDevice,
    kernel_id: u32,
    dtype: u32,
    supported: *mut i32,
) -> KnpuStatus {
    guard(|| {
        let s = device_of(device)?.supports_kernel(kernel_id, dtype);
        // SAFETY: `supported` is null or writable (table contract).
        unsafe { put(supported, s as i32) }
    })
}

unsafe extern "C" fn device_memory_info(
    device: KnpuDriverDevice,
    free_bytes: *mut u64,
    total_bytes: *mut u64,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        d.check_alive()?;
        if free_bytes.is_null() || total_bytes.is_null() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let total = d.memory.total();
        // SAFETY: both non-null and writable (table contract).
        unsafe {
            put(free_bytes, total - d.memory.allocated())?;
            put(total_bytes, total)
        }
    })
}

unsafe extern "C" fn device_inject_fault(
    device: KnpuDriverDevice,
    fault: *const KnpuFaultInjection,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        d.check_alive()?;
        // SAFETY: the caller passes null or a struct of at least struct_size readable bytes.
        let f = unsafe { command::read_versioned(fault, field_end!(KnpuFaultInjection, count)) }?;
        match f.kind {
            KNPU_FAULT_NONE => d.faults.clear(),
            KNPU_FAULT_FAIL_ALLOC if f.count > 0 => d.faults.arm_alloc(f.count),
            KNPU_FAULT_KERNEL if f.count > 0 => d.faults.arm_kernel(f.kernel_id, f.count),
            KNPU_FAULT_LOSE_DEVICE => driver().lose_device(d),
            _ => return Err(KNPU_STATUS_INVALID_VALUE),
        }
        Ok(())
    })
}

unsafe extern "C" fn mem_alloc(
    device: KnpuDriverDevice,
    size: u64,
    address: *mut KnpuDeviceAddress,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        d.check_alive()?;
        if size == 0 || address.is_null() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        if d.faults.allocation_fails() {
            return Err(KNPU_STATUS_OUT_OF_MEMORY);
        }
        let a = d.memory.alloc(size).map_err(|e| match e {
            AllocError::OutOfMemory { .. } | AllocError::HostExhausted { .. } => {
                KNPU_STATUS_OUT_OF_MEMORY
            }
        })?;
        // SAFETY: non-null and writable (table contract).
        unsafe { put(address, a) }
    })
}

unsafe extern "C" fn mem_free(device: KnpuDriverDevice, address: KnpuDeviceAddress) -> KnpuStatus {
    guard(|| {
        // Freeing works on a lost device too, so callers can release what they hold.
        let d = device_of(device)?;
        if d.memory.free(address) {
            Ok(())
        } else {
            Err(KNPU_STATUS_INVALID_VALUE)
        }
    })
}

unsafe extern "C" fn queue_create(
    device: KnpuDriverDevice,
    priority: i32,
    queue: *mut KnpuQueue,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        d.check_alive()?;
        if queue.is_null()
            || !(KNPU_QUEUE_PRIORITY_LOW..=KNPU_QUEUE_PRIORITY_HIGH).contains(&priority)
        {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let q = Queue::spawn(driver(), d, priority)?;
        let h = driver().queues.insert(q);
        // SAFETY: non-null and writable (table contract).
        unsafe { put(queue, h as KnpuQueue) }
    })
}

unsafe extern "C" fn queue_destroy(queue: KnpuQueue) -> KnpuStatus {
    guard(|| {
        let q = driver()
            .queues
            .remove(queue as usize)
            .ok_or(KNPU_STATUS_INVALID_HANDLE)?;
        q.shut_down();
        Ok(())
    })
}

unsafe extern "C" fn queue_submit(queue: KnpuQueue, submit: *const KnpuSubmitInfo) -> KnpuStatus {
    guard(|| {
        let q = queue_of(queue)?;
        q.device.check_alive()?;
        // SAFETY: `submit` is null or a valid KnpuSubmitInfo with its arrays (table
        // contract); `build` validates everything it can.
        let s = unsafe { command::build(driver(), submit) }?;
        if s.list_device.is_some_and(|d| d != q.device.index) {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        q.submit(s)
    })
}

unsafe extern "C" fn command_list_create(
    device: KnpuDriverDevice,
    commands: *const KnpuCommand,
    count: u32,
    list: *mut KnpuCommandList,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        d.check_alive()?;
        if list.is_null() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        // SAFETY: the caller passes `count` commands (table contract); they are validated.
        let cmds = unsafe { command::commands_from(driver(), commands, count) }?;
        let h = driver()
            .command_lists
            .insert(Arc::new(command::CommandList {
                device: d.index,
                body: parking_lot::Mutex::new(Arc::new(command::ListBody(cmds))),
            }));
        // SAFETY: non-null and writable (table contract).
        unsafe { put(list, h as KnpuCommandList) }
    })
}

unsafe extern "C" fn command_list_update(
    list: KnpuCommandList,
    index: u32,
    command: *const KnpuCommand,
) -> KnpuStatus {
    guard(|| {
        let l = driver()
            .command_lists
            .get(list as usize)
            .ok_or(KNPU_STATUS_INVALID_HANDLE)?;
        // SAFETY: the caller passes one command (table contract); it is validated.
        let mut new = unsafe { command::commands_from(driver(), command, 1) }?;
        let mut body = l.body.lock();
        let slot = index as usize;
        if slot >= body.0.len() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        // Copy on write: pending submissions keep the body they were given.
        let mut cmds = body.0.clone();
        cmds[slot] = new.pop().ok_or(KNPU_STATUS_INVALID_VALUE)?;
        *body = Arc::new(command::ListBody(cmds));
        Ok(())
    })
}

unsafe extern "C" fn command_list_destroy(list: KnpuCommandList) -> KnpuStatus {
    guard(|| {
        driver()
            .command_lists
            .remove(list as usize)
            .map(drop)
            .ok_or(KNPU_STATUS_INVALID_HANDLE)
    })
}

unsafe extern "C" fn semaphore_create(
    device: KnpuDriverDevice,
    initial_value: u64,
    semaphore: *mut KnpuSemaphore,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        d.check_alive()?;
        if semaphore.is_null() || initial_value == SEMAPHORE_FAILED {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let h = driver()
            .semaphores
            .insert(Arc::new(Semaphore::new(d.index, initial_value)));
        // SAFETY: non-null and writable (table contract).
        unsafe { put(semaphore, h as KnpuSemaphore) }
    })
}

unsafe extern "C" fn semaphore_destroy(semaphore: KnpuSemaphore) -> KnpuStatus {
    guard(|| {
        driver()
            .semaphores
            .remove(semaphore as usize)
            .map(drop)
            .ok_or(KNPU_STATUS_INVALID_HANDLE)
    })
}

unsafe extern "C" fn semaphore_query(semaphore: KnpuSemaphore, value: *mut u64) -> KnpuStatus {
    guard(|| {
        let s = semaphore_of(semaphore)?;
        // SAFETY: `value` is null or writable (table contract).
        unsafe { put(value, s.value()) }
    })
}

unsafe extern "C" fn semaphore_wait(
    semaphore: KnpuSemaphore,
    value: u64,
    timeout_ns: u64,
) -> KnpuStatus {
    guard(|| {
        let s = semaphore_of(semaphore)?;
        let d = driver().devices[s.device as usize].clone();
        match s.wait(value, timeout_ns, &|| d.is_lost()) {
            KNPU_STATUS_SUCCESS => Ok(()),
            e => Err(e),
        }
    })
}

unsafe extern "C" fn semaphore_signal(semaphore: KnpuSemaphore, value: u64) -> KnpuStatus {
    guard(|| {
        let s = semaphore_of(semaphore)?;
        driver().devices[s.device as usize].check_alive()?;
        match s.signal_host(value) {
            KNPU_STATUS_SUCCESS => Ok(()),
            e => Err(e),
        }
    })
}

unsafe extern "C" fn semaphore_get_error(
    semaphore: KnpuSemaphore,
    status: *mut KnpuStatus,
    message: *mut c_char,
    capacity: usize,
) -> KnpuStatus {
    guard(|| {
        let s = semaphore_of(semaphore)?;
        let (st, msg) = s
            .failure()
            .map_or((KNPU_STATUS_SUCCESS, String::new()), |f| {
                (f.status, f.message)
            });
        // SAFETY: `status` is null or writable, `message` null or writable for `capacity`
        // bytes (table contract).
        unsafe {
            put(status, st)?;
            put_str(message, capacity, msg.as_bytes())
        }
    })
}

unsafe extern "C" fn device_set_profiling(device: KnpuDriverDevice, enable: i32) -> KnpuStatus {
    guard(|| {
        device_of(device)?.profiler.set_enabled(enable != 0);
        Ok(())
    })
}

unsafe extern "C" fn device_read_profile(
    device: KnpuDriverDevice,
    records: *mut KnpuCommandRecord,
    capacity: usize,
    count: *mut usize,
) -> KnpuStatus {
    guard(|| {
        let d = device_of(device)?;
        if count.is_null() || (capacity > 0 && records.is_null()) {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let mut stride = 0;
        if capacity > 0 {
            // The caller's array stride is its sizeof(KnpuCommandRecord), stated by the first
            // record's struct_size; each record receives the fields both versions know.
            // SAFETY: non-null; the caller set struct_size of each of `capacity` records.
            stride = unsafe { std::ptr::addr_of!((*records).struct_size).read_unaligned() };
            if !has_field(stride, field_end!(KnpuCommandRecord, struct_size)) {
                return Err(KNPU_STATUS_INVALID_VALUE);
            }
        }
        let base = records as *mut u8;
        let n = d.profiler.drain(capacity, |i, rec| {
            let n = stride.min(std::mem::size_of::<KnpuCommandRecord>());
            let mut rec = *rec;
            rec.struct_size = stride;
            // SAFETY: record i of the caller's array spans `stride` writable bytes at
            // base + i * stride (i < capacity); n <= stride bytes are written.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    &rec as *const KnpuCommandRecord as *const u8,
                    base.add(i * stride),
                    n,
                )
            };
        });
        // SAFETY: non-null and writable (table contract).
        unsafe { put(count, n) }
    })
}

unsafe extern "C" fn device_get_clock(device: KnpuDriverDevice, ns: *mut u64) -> KnpuStatus {
    guard(|| {
        device_of(device)?;
        // SAFETY: `ns` is null or writable (table contract).
        unsafe { put(ns, driver().clock.now_ns()) }
    })
}
