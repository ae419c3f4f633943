//! Streams: creation with flags and priority, destruction, synchronisation, queries, waits
//! on events, and host functions. A NULL stream is the current device's default stream.

use crate::device::current;
use crate::error::{call, invalid, out_ptr, status, write_out, Result};
use crate::event::EVENTS;
use crate::handles::Table;
use crate::header::*;
use knpu::{Priority, Stream};
use std::ffi::{c_int, c_uint, c_void};

/// Live streams created through the library.
pub(crate) static STREAMS: Table<Stream> = Table::new(1, "stream");

/// The stream a `knpuStream_t` names (NULL: the current device's default stream).
pub(crate) fn stream_arg(h: knpuStream_t) -> Result<Stream> {
    if h.is_null() {
        return Ok(current()?.default_stream()?.clone());
    }
    STREAMS.get(h as u64)
}

fn create(stream: *mut knpuStream_t, flags: c_uint, priority: Priority) -> Result<()> {
    out_ptr(stream, "stream")?;
    if flags & !knpuStreamNonBlocking != 0 {
        return Err(invalid(format!("unknown stream flags {flags:#x}")));
    }
    let s = Stream::with_priority(&current()?, priority)?;
    let h = STREAMS.insert(s) as knpuStream_t;
    // SAFETY: checked by out_ptr; the caller promised a writable handle.
    unsafe { write_out(stream, "stream", h) }
}

/// A C priority (lower is higher, clamped to [-1, 1]) as the runtime's.
fn priority(p: c_int) -> Priority {
    match p {
        i32::MIN..=-1 => Priority::High,
        0 => Priority::Normal,
        _ => Priority::Low,
    }
}

/// Creates a stream.
///
/// # Safety
/// - `stream` is NULL or points to a writable `knpuStream_t`.
#[no_mangle]
pub unsafe extern "C" fn knpuStreamCreate(stream: *mut knpuStream_t) -> knpuError_t {
    call(|| create(stream, 0, Priority::Normal))
}

/// Creates a stream with flags.
///
/// # Safety
/// - As [`knpuStreamCreate`].
#[no_mangle]
pub unsafe extern "C" fn knpuStreamCreateWithFlags(
    stream: *mut knpuStream_t,
    flags: c_uint,
) -> knpuError_t {
    call(|| create(stream, flags, Priority::Normal))
}

/// Creates a stream with flags and a priority.
///
/// # Safety
/// - As [`knpuStreamCreate`].
#[no_mangle]
pub unsafe extern "C" fn knpuStreamCreateWithPriority(
    stream: *mut knpuStream_t,
    flags: c_uint,
    priority_value: c_int,
) -> knpuError_t {
    call(|| create(stream, flags, priority(priority_value)))
}

/// The range of stream priorities: least (low) 1, greatest (high) -1.
///
/// # Safety
/// - Each pointer is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuDeviceGetStreamPriorityRange(
    leastPriority: *mut c_int,
    greatestPriority: *mut c_int,
) -> knpuError_t {
    call(|| {
        if leastPriority.is_null() && greatestPriority.is_null() {
            return Err(invalid("leastPriority and greatestPriority are both NULL"));
        }
        if !leastPriority.is_null() {
            // SAFETY: the caller's promise.
            unsafe { write_out(leastPriority, "leastPriority", 1) }?;
        }
        if !greatestPriority.is_null() {
            // SAFETY: the caller's promise.
            unsafe { write_out(greatestPriority, "greatestPriority", -1) }?;
        }
        Ok(())
    })
}

/// A stream's priority.
///
/// # Safety
/// - `priority` is NULL or points to a writable `int`.
#[no_mangle]
pub unsafe extern "C" fn knpuStreamGetPriority(
    stream: knpuStream_t,
    priority: *mut c_int,
) -> knpuError_t {
    call(|| {
        let s = stream_arg(stream)?;
        let p = match s.priority() {
            Priority::High => -1,
            Priority::Normal => 0,
            Priority::Low => 1,
        };
        // SAFETY: the caller's promise.
        unsafe { write_out(priority, "priority", p) }
    })
}

/// Releases a stream handle; queued work still runs.
#[no_mangle]
pub extern "C" fn knpuStreamDestroy(stream: knpuStream_t) -> knpuError_t {
    call(|| STREAMS.remove(stream as u64).map(drop))
}

/// Waits for a stream's work.
#[no_mangle]
pub extern "C" fn knpuStreamSynchronize(stream: knpuStream_t) -> knpuError_t {
    call(|| stream_arg(stream)?.synchronize())
}

/// Whether a stream's work has finished (knpuErrorNotReady if not).
#[no_mangle]
pub extern "C" fn knpuStreamQuery(stream: knpuStream_t) -> knpuError_t {
    status(|| {
        Ok(match stream_arg(stream)?.query()? {
            true => knpuSuccess,
            false => knpuErrorNotReady,
        })
    })
}

/// Makes a stream's later work wait for an event.
#[no_mangle]
pub extern "C" fn knpuStreamWaitEvent(
    stream: knpuStream_t,
    event: knpuEvent_t,
    flags: c_uint,
) -> knpuError_t {
    call(|| {
        let s = stream_arg(stream)?;
        let e = EVENTS.get(event as u64)?;
        if flags != 0 {
            return Err(invalid(format!(
                "knpuStreamWaitEvent flags must be 0, got {flags:#x}"
            )));
        }
        s.wait_event(&e)
    })
}

/// A C host function and its argument.
#[derive(Clone, Copy)]
pub(crate) struct HostCall {
    f: unsafe extern "C" fn(*mut c_void),
    data: *mut c_void,
}

// SAFETY: knpu.h documents that host functions run on a driver thread, so the caller hands
// `data` to another thread knowingly; the library never touches it.
unsafe impl Send for HostCall {}
// SAFETY: as above; the library only passes the pointer along.
unsafe impl Sync for HostCall {}

impl HostCall {
    pub(crate) fn new(f: knpuHostFn_t, data: *mut c_void) -> Result<HostCall> {
        let f = f.ok_or_else(|| invalid("fn is NULL"))?;
        Ok(HostCall { f, data })
    }

    pub(crate) fn run(self) {
        // SAFETY: the C caller gave a function that takes this argument.
        unsafe { (self.f)(self.data) }
    }
}

/// Queues a host function on a stream.
#[no_mangle]
pub extern "C" fn knpuLaunchHostFunc(
    stream: knpuStream_t,
    fn_: knpuHostFn_t,
    userData: *mut c_void,
) -> knpuError_t {
    call(|| {
        let s = stream_arg(stream)?;
        let host = HostCall::new(fn_, userData)?;
        s.launch_host_fn(move || host.run())
    })
}
