//! Events: creation with flags, record, query, synchronisation, timing, destruction.

use crate::device::current;
use crate::error::{call, invalid, out_ptr, status, write_out, Result};
use crate::handles::Table;
use crate::header::*;
use crate::stream::stream_arg;
use knpu::{Error, Event};
use std::ffi::c_uint;
use std::sync::Arc;

/// Live events created through the library.
pub(crate) static EVENTS: Table<Arc<Event>> = Table::new(2, "event");

fn create(event: *mut knpuEvent_t, flags: c_uint) -> Result<()> {
    out_ptr(event, "event")?;
    let known = knpuEventBlockingSync | knpuEventDisableTiming | knpuEventInterprocess;
    if flags & !known != 0 {
        return Err(invalid(format!("unknown event flags {flags:#x}")));
    }
    if flags & knpuEventInterprocess != 0 {
        return Err(Error::NotSupported {
            detail: "interprocess events".into(),
        });
    }
    let timing = flags & knpuEventDisableTiming == 0;
    let e = Event::with_timing(&current()?, timing);
    let h = EVENTS.insert(Arc::new(e)) as knpuEvent_t;
    // SAFETY: checked by out_ptr; the caller promised a writable handle.
    unsafe { write_out(event, "event", h) }
}

/// Creates an event with timing.
///
/// # Safety
/// - `event` is NULL or points to a writable `knpuEvent_t`.
#[no_mangle]
pub unsafe extern "C" fn knpuEventCreate(event: *mut knpuEvent_t) -> knpuError_t {
    call(|| create(event, knpuEventDefault))
}

/// Creates an event with flags.
///
/// # Safety
/// - As [`knpuEventCreate`].
#[no_mangle]
pub unsafe extern "C" fn knpuEventCreateWithFlags(
    event: *mut knpuEvent_t,
    flags: c_uint,
) -> knpuError_t {
    call(|| create(event, flags))
}

/// Records an event on a stream.
#[no_mangle]
pub extern "C" fn knpuEventRecord(event: knpuEvent_t, stream: knpuStream_t) -> knpuError_t {
    call(|| {
        let e = EVENTS.get(event as u64)?;
        e.record(&stream_arg(stream)?)
    })
}

/// Whether an event's work has finished (knpuErrorNotReady if not).
#[no_mangle]
pub extern "C" fn knpuEventQuery(event: knpuEvent_t) -> knpuError_t {
    status(|| {
        Ok(match EVENTS.get(event as u64)?.query()? {
            true => knpuSuccess,
            false => knpuErrorNotReady,
        })
    })
}

/// Waits for an event's work.
#[no_mangle]
pub extern "C" fn knpuEventSynchronize(event: knpuEvent_t) -> knpuError_t {
    call(|| EVENTS.get(event as u64)?.synchronize())
}

/// Milliseconds between two events.
///
/// # Safety
/// - `ms` is NULL or points to a writable `float`.
#[no_mangle]
pub unsafe extern "C" fn knpuEventElapsedTime(
    ms: *mut f32,
    start: knpuEvent_t,
    end: knpuEvent_t,
) -> knpuError_t {
    call(|| {
        out_ptr(ms, "ms")?;
        let a = EVENTS.get(start as u64)?;
        let b = EVENTS.get(end as u64)?;
        let t = Event::elapsed_ms(&a, &b)? as f32;
        // SAFETY: the caller's promise.
        unsafe { write_out(ms, "ms", t) }
    })
}

/// Releases an event handle.
#[no_mangle]
pub extern "C" fn knpuEventDestroy(event: knpuEvent_t) -> knpuError_t {
    call(|| EVENTS.remove(event as u64).map(drop))
}
