//! `KNPU_TRACE=path.json`: a Chrome/Perfetto trace of every command the devices ran.
//!
//! When the variable is set, each device's driver profiler is switched on as the device
//! opens; records are drained at every stream synchronize and when the process exits (or
//! [`flush`] is called), and written as Chrome trace events: one complete event per command,
//! on a track per device (process) and queue (thread), with the modeled duration beside
//! the measured one. Tracing never changes what work does.

use crate::device::Device;
use crate::error::{Error, Result};
use knpu_driver_abi as abi;
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::OnceLock;

struct Tracer {
    path: String,
    devices: Mutex<Vec<Device>>,
    records: Mutex<Vec<(usize, abi::KnpuCommandRecord)>>,
}

static TRACER: OnceLock<Option<Tracer>> = OnceLock::new();

fn tracer() -> Option<&'static Tracer> {
    TRACER
        .get_or_init(|| {
            let path = std::env::var("KNPU_TRACE").ok().filter(|p| !p.is_empty())?;
            extern "C" fn at_exit() {
                let _ = flush();
            }
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe { libc::atexit(at_exit) };
            Some(Tracer {
                path,
                devices: Mutex::new(Vec::new()),
                records: Mutex::new(Vec::new()),
            })
        })
        .as_ref()
}

/// Switches on the profiler of a newly opened device when tracing.
pub(crate) fn on_device_open(device: &Device) {
    if let Some(t) = tracer() {
        if device
            .inner
            .driver
            .set_profiling(device.inner.raw, true)
            .is_ok()
        {
            t.devices.lock().push(device.clone());
        }
    }
}

/// Moves a device's profiler records into the trace.
pub(crate) fn collect(device: &Device) {
    let Some(t) = TRACER.get().and_then(Option::as_ref) else {
        return;
    };
    let mut buf = Vec::new();
    if device
        .inner
        .driver
        .read_profile(device.inner.raw, &mut buf)
        .is_ok()
        && !buf.is_empty()
    {
        t.records
            .lock()
            .extend(buf.into_iter().map(|r| (device.ordinal(), r)));
    }
}

fn kind_name(r: &abi::KnpuCommandRecord) -> String {
    match r.type_ {
        abi::KNPU_COMMAND_COPY_HOST_TO_DEVICE => "copy host to device".into(),
        abi::KNPU_COMMAND_COPY_DEVICE_TO_HOST => "copy device to host".into(),
        abi::KNPU_COMMAND_COPY_DEVICE_TO_DEVICE => "copy device to device".into(),
        abi::KNPU_COMMAND_COPY_PEER => "copy peer".into(),
        abi::KNPU_COMMAND_FILL => "fill".into(),
        abi::KNPU_COMMAND_KERNEL => format!("kernel {}", r.kernel_id),
        abi::KNPU_COMMAND_HOST_FUNCTION => "host function".into(),
        abi::KNPU_COMMAND_TIMESTAMP => "timestamp".into(),
        other => format!("command {other}"),
    }
}

/// Writes the trace collected so far to the `KNPU_TRACE` path (a no-op when not tracing).
pub fn flush() -> Result<()> {
    let Some(t) = TRACER.get().and_then(Option::as_ref) else {
        return Ok(());
    };
    let devices: Vec<Device> = t.devices.lock().clone();
    for d in &devices {
        collect(d);
    }
    let records = t.records.lock();
    let mut out = String::from("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
    for d in &devices {
        let _ = writeln!(
            out,
            "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{},\"args\":{{\"name\":\"device {} ({})\"}}}},",
            d.ordinal(),
            d.ordinal(),
            d.name().replace('"', "'")
        );
    }
    for (i, (dev, r)) in records.iter().enumerate() {
        let sep = if i + 1 == records.len() { "" } else { "," };
        let _ = writeln!(
            out,
            "{{\"name\":\"{}\",\"cat\":\"{}\",\"ph\":\"X\",\"pid\":{},\"tid\":{},\"ts\":{:.3},\"dur\":{:.3},\"args\":{{\"queue\":{},\"bytes\":{},\"status\":{},\"modeled_us\":{:.3}}}}}{}",
            kind_name(r),
            if r.type_ == abi::KNPU_COMMAND_KERNEL { "kernel" } else { "command" },
            dev,
            r.queue_id,
            r.start_ns as f64 / 1e3,
            r.end_ns.saturating_sub(r.start_ns) as f64 / 1e3,
            r.queue_id,
            r.bytes,
            r.status,
            r.modeled_ns as f64 / 1e3,
            sep
        );
    }
    out.push_str("]}\n");
    std::fs::write(&t.path, out).map_err(|e| Error::InvalidValue {
        detail: format!("cannot write KNPU_TRACE file `{}`: {e}", t.path),
    })
}
