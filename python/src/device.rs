//! Devices, the current device and stream of each thread, streams, events and memory.

use crate::errors::{invalid, IntoPyResult};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static CURRENT_DEVICE: RefCell<usize> = const { RefCell::new(0) };
    /// The stream each device's work goes to on this thread, when not its default stream.
    static CURRENT_STREAM: RefCell<HashMap<usize, knpu::Stream>> = RefCell::new(HashMap::new());
}

/// The runtime device with this ordinal.
pub fn runtime_device(index: usize) -> PyResult<knpu::Device> {
    knpu::device(index).py()
}

/// This thread's current device ordinal.
pub fn current_index() -> usize {
    CURRENT_DEVICE.with(|c| *c.borrow())
}

/// The device an optional `device` argument names: a `Device`, an int, or the current one.
pub fn resolve(device: Option<&Bound<'_, PyAny>>) -> PyResult<knpu::Device> {
    match device {
        None => runtime_device(current_index()),
        Some(d) if d.is_none() => runtime_device(current_index()),
        Some(d) => {
            if let Ok(dev) = d.cast::<Device>() {
                return Ok(dev.get().inner.clone());
            }
            if let Ok(i) = d.extract::<i64>() {
                let i = usize::try_from(i).map_err(|_| invalid(format!("no device {i}")))?;
                return runtime_device(i);
            }
            if let Ok(s) = d.extract::<String>() {
                let idx = match s.strip_prefix("knpu") {
                    Some("") => Some(current_index()),
                    Some(rest) => rest.strip_prefix(':').and_then(|n| n.parse().ok()),
                    None => None,
                };
                return match idx {
                    Some(i) => runtime_device(i),
                    None => Err(invalid(format!(
                        "device string {s:?} is not \"knpu\" or \"knpu:N\""
                    ))),
                };
            }
            Err(pyo3::exceptions::PyTypeError::new_err(
                "device must be a knpu.Device, an int or a \"knpu:N\" string",
            ))
        }
    }
}

/// This thread's current stream on `device`.
pub fn current_stream(device: &knpu::Device) -> PyResult<knpu::Stream> {
    if let Some(s) = CURRENT_STREAM.with(|c| c.borrow().get(&device.ordinal()).cloned()) {
        return Ok(s);
    }
    device.default_stream().cloned().py()
}

/// Makes `stream` current on its device for this thread (`None`: the default stream);
/// returns the one it replaces.
pub fn set_current_stream(device: usize, stream: Option<knpu::Stream>) -> Option<knpu::Stream> {
    CURRENT_STREAM.with(|c| {
        let mut c = c.borrow_mut();
        match stream {
            Some(s) => c.insert(device, s),
            None => c.remove(&device),
        }
    })
}

/// A knpu device. `Device()` is the current device; `with knpu.Device(i):` makes `i`
/// current for the block.
#[pyclass(module = "knpu._knpu", frozen, eq)]
pub struct Device {
    pub inner: knpu::Device,
    previous: parking_lot::Mutex<Vec<usize>>,
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Device {
    /// The Python object of a runtime device.
    pub fn wrap(inner: knpu::Device) -> Device {
        Device {
            inner,
            previous: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

const ATTRIBUTES: &[(&str, knpu::Attribute)] = &[
    ("total_memory", knpu::Attribute::TotalMemory),
    ("compute_cores", knpu::Attribute::ComputeCores),
    ("allocation_alignment", knpu::Attribute::AllocationAlignment),
    ("max_queues", knpu::Attribute::MaxQueues),
    ("peak_f32_mflops", knpu::Attribute::PeakF32Mflops),
    ("peak_f16_mflops", knpu::Attribute::PeakF16Mflops),
    ("peak_int8_mops", knpu::Attribute::PeakInt8Mops),
    (
        "memory_bandwidth_mbps",
        knpu::Attribute::MemoryBandwidthMbps,
    ),
    ("dma_bandwidth_mbps", knpu::Attribute::DmaBandwidthMbps),
    ("peer_copy", knpu::Attribute::PeerCopy),
    ("fault_injection", knpu::Attribute::FaultInjection),
];

/// Kernel ids by the names users write in `Device.supports`.
const KERNELS: &[(&str, u32)] = &[
    ("elementwise", knpu::abi::KNPU_KERNEL_ELEMENTWISE),
    ("matmul", knpu::abi::KNPU_KERNEL_GEMM),
    ("gemm", knpu::abi::KNPU_KERNEL_GEMM),
    ("attention", knpu::abi::KNPU_KERNEL_ATTENTION),
    ("paged_attention", knpu::abi::KNPU_KERNEL_PAGED_ATTENTION),
    ("kv_append", knpu::abi::KNPU_KERNEL_KV_APPEND),
    ("paged_kv_append", knpu::abi::KNPU_KERNEL_PAGED_KV_APPEND),
    ("rms_norm", knpu::abi::KNPU_KERNEL_RMS_NORM),
    ("layer_norm", knpu::abi::KNPU_KERNEL_LAYER_NORM),
    ("rope", knpu::abi::KNPU_KERNEL_ROPE),
    ("activation", knpu::abi::KNPU_KERNEL_ACTIVATION),
    ("swiglu", knpu::abi::KNPU_KERNEL_SWIGLU),
    ("softmax", knpu::abi::KNPU_KERNEL_SOFTMAX),
    ("binary", knpu::abi::KNPU_KERNEL_BINARY),
    ("embedding", knpu::abi::KNPU_KERNEL_EMBEDDING),
    ("cast", knpu::abi::KNPU_KERNEL_CAST),
    ("argmax", knpu::abi::KNPU_KERNEL_ARGMAX),
    ("topk", knpu::abi::KNPU_KERNEL_TOP_K),
    ("sample", knpu::abi::KNPU_KERNEL_SAMPLE),
    ("quantize", knpu::abi::KNPU_KERNEL_QUANTIZE),
    ("dequantize", knpu::abi::KNPU_KERNEL_DEQUANTIZE),
    ("qmatmul", knpu::abi::KNPU_KERNEL_QMATMUL),
    ("w8a8_gemm", knpu::abi::KNPU_KERNEL_W8A8_GEMM),
];

#[pymethods]
impl Device {
    #[new]
    #[pyo3(signature = (index=None))]
    fn new(index: Option<&Bound<'_, PyAny>>) -> PyResult<Device> {
        Ok(Device::wrap(resolve(index)?))
    }

    /// The device ordinal.
    #[getter]
    fn index(&self) -> usize {
        self.inner.ordinal()
    }

    /// The device type, always `"knpu"`.
    #[getter]
    fn r#type(&self) -> &'static str {
        "knpu"
    }

    /// The driver's name for the device.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    /// Every attribute the driver reports, by name.
    #[getter]
    fn properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", self.inner.name())?;
        for (name, a) in ATTRIBUTES {
            if let Ok(v) = self.inner.attribute(*a) {
                d.set_item(*name, v)?;
            }
        }
        Ok(d)
    }

    /// `(free, total)` bytes of device memory, as the driver reports them.
    fn memory_info(&self) -> PyResult<(u64, u64)> {
        self.inner.memory_info().py()
    }

    /// Whether the device runs op `op` (a name such as `"matmul"`, or a kernel id) on `dtype`.
    fn supports(&self, op: &Bound<'_, PyAny>, dtype: &Bound<'_, PyAny>) -> PyResult<bool> {
        let kernel = match op.extract::<u32>() {
            Ok(id) => id,
            Err(_) => {
                let name: String = op.extract()?;
                KERNELS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, id)| *id)
                    .ok_or_else(|| {
                        let names: Vec<_> = KERNELS.iter().map(|(n, _)| *n).collect();
                        invalid(format!("unknown op {name:?}; known: {}", names.join(", ")))
                    })?
            }
        };
        let dt = crate::dtype::resolve(dtype)?;
        match dt.abi() {
            Some(raw) => self.inner.supports_kernel(kernel, raw).py(),
            // Block types are the weights of the quantised kernels.
            None => Ok(
                (knpu::abi::KNPU_KERNEL_QUANTIZE..=knpu::abi::KNPU_KERNEL_QEMBEDDING)
                    .contains(&kernel)
                    && self
                        .inner
                        .supports_kernel(kernel, knpu::abi::KNPU_DTYPE_F32)
                        .py()?,
            ),
        }
    }

    /// Waits for all work on the device (releases the GIL).
    fn synchronize(&self, py: Python<'_>) -> PyResult<()> {
        let d = self.inner.clone();
        py.detach(move || d.synchronize()).py()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        let me = slf.get();
        me.previous.lock().push(current_index());
        CURRENT_DEVICE.with(|c| *c.borrow_mut() = me.inner.ordinal());
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        if let Some(prev) = self.previous.lock().pop() {
            CURRENT_DEVICE.with(|c| *c.borrow_mut() = prev);
        }
    }

    fn __index__(&self) -> usize {
        self.inner.ordinal()
    }

    fn __hash__(&self) -> u64 {
        self.inner.ordinal() as u64
    }

    fn __repr__(&self) -> String {
        format!(
            "knpu.Device({}, name={:?})",
            self.inner.ordinal(),
            self.inner.name()
        )
    }

    fn __str__(&self) -> String {
        format!("knpu:{}", self.inner.ordinal())
    }
}

/// The number of devices of every loaded driver.
#[pyfunction]
pub fn device_count() -> usize {
    knpu::devices().len()
}

/// Makes device `device` current for this thread.
#[pyfunction]
pub fn set_device(device: &Bound<'_, PyAny>) -> PyResult<()> {
    let d = resolve(Some(device))?;
    CURRENT_DEVICE.with(|c| *c.borrow_mut() = d.ordinal());
    Ok(())
}

/// This thread's current device ordinal.
#[pyfunction]
pub fn current_device() -> usize {
    current_index()
}

/// Waits for all work on `device` (default: the current device); releases the GIL.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn synchronize(py: Python<'_>, device: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let d = resolve(device)?;
    py.detach(move || d.synchronize()).py()
}

fn priority_of(p: i32) -> knpu::Priority {
    match p {
        p if p < 0 => knpu::Priority::High,
        0 => knpu::Priority::Normal,
        _ => knpu::Priority::Low,
    }
}

/// An in-order queue of device work. `with stream:` makes it current on its device.
#[pyclass(module = "knpu._knpu", frozen, eq)]
pub struct Stream {
    pub inner: knpu::Stream,
    previous: parking_lot::Mutex<Vec<Option<knpu::Stream>>>,
}

impl PartialEq for Stream {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id() == other.inner.id()
    }
}

impl Stream {
    /// The Python object of a runtime stream.
    pub fn wrap(inner: knpu::Stream) -> Stream {
        Stream {
            inner,
            previous: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

#[pymethods]
impl Stream {
    /// A new stream on `device` (default: current). Lower `priority` runs first, as in
    /// PyTorch: negative is high, 0 normal, positive low.
    #[new]
    #[pyo3(signature = (device=None, priority=0))]
    fn new(device: Option<&Bound<'_, PyAny>>, priority: i32) -> PyResult<Stream> {
        let d = resolve(device)?;
        Ok(Stream::wrap(
            knpu::Stream::with_priority(&d, priority_of(priority)).py()?,
        ))
    }

    /// The stream's device.
    #[getter]
    fn device(&self) -> Device {
        Device::wrap(self.inner.device().clone())
    }

    /// A number unique to this stream in the process (what `__dlpack__(stream=...)` takes).
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id()
    }

    /// -1 (high), 0 (normal) or 1 (low).
    #[getter]
    fn priority(&self) -> i32 {
        match self.inner.priority() {
            knpu::Priority::High => -1,
            knpu::Priority::Normal => 0,
            knpu::Priority::Low => 1,
        }
    }

    /// Waits until all queued work is done (releases the GIL); raises the fault of any
    /// failed work.
    fn synchronize(&self, py: Python<'_>) -> PyResult<()> {
        let s = self.inner.clone();
        py.detach(move || s.synchronize()).py()
    }

    /// Whether all queued work is done.
    fn query(&self, py: Python<'_>) -> PyResult<bool> {
        let s = self.inner.clone();
        py.detach(move || s.query()).py()
    }

    /// Makes later work on this stream wait for `event`.
    fn wait_event(&self, event: &Event) -> PyResult<()> {
        let e = event.get()?;
        self.inner.wait_event(&e).py()
    }

    /// Makes later work on this stream wait for the work queued on `stream` so far.
    fn wait_stream(&self, stream: &Stream) -> PyResult<()> {
        let e = knpu::Event::new(stream.inner.device());
        e.record(&stream.inner).py()?;
        self.inner.wait_event(&e).py()
    }

    /// Records `event` (default: a new one) on this stream and returns it.
    #[pyo3(signature = (event=None))]
    fn record_event(&self, event: Option<Py<Event>>, py: Python<'_>) -> PyResult<Py<Event>> {
        let ev = match event {
            Some(e) => e,
            None => Py::new(py, Event::create(false))?,
        };
        ev.get().record_on(&self.inner)?;
        Ok(ev)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        let me = slf.get();
        let d = me.inner.device().ordinal();
        let prev = set_current_stream(d, Some(me.inner.clone()));
        me.previous.lock().push(prev);
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        if let Some(prev) = self.previous.lock().pop() {
            set_current_stream(self.inner.device().ordinal(), prev);
        }
    }

    fn __hash__(&self) -> u64 {
        self.inner.id()
    }

    fn __repr__(&self) -> String {
        format!(
            "knpu.Stream(id={}, device={}, priority={})",
            self.inner.id(),
            self.inner.device().ordinal(),
            self.priority()
        )
    }
}

/// This thread's current stream on `device` (default: the current device).
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn current_stream_py(device: Option<&Bound<'_, PyAny>>) -> PyResult<Stream> {
    let d = resolve(device)?;
    Ok(Stream::wrap(current_stream(&d)?))
}

/// The default stream of `device` (default: the current device).
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn default_stream(device: Option<&Bound<'_, PyAny>>) -> PyResult<Stream> {
    let d = resolve(device)?;
    Ok(Stream::wrap(d.default_stream().py()?.clone()))
}

/// A marker in a stream's work: record it, wait for it, time between two of them.
/// Its device is that of the first stream it is recorded on.
#[pyclass(module = "knpu._knpu", frozen)]
pub struct Event {
    timing: bool,
    inner: parking_lot::Mutex<Option<std::sync::Arc<knpu::Event>>>,
}

impl Event {
    fn create(timing: bool) -> Event {
        Event {
            timing,
            inner: parking_lot::Mutex::new(None),
        }
    }

    fn get(&self) -> PyResult<std::sync::Arc<knpu::Event>> {
        self.inner
            .lock()
            .clone()
            .ok_or_else(|| invalid("the event was never recorded"))
    }

    fn record_on(&self, stream: &knpu::Stream) -> PyResult<()> {
        let mut slot = self.inner.lock();
        let ev = match slot.as_ref() {
            Some(e) if e.device() == stream.device() => e.clone(),
            Some(e) => {
                return Err(crate::errors::to_py(knpu::Error::DeviceMismatch {
                    operand: "stream",
                    expected: e.device().ordinal(),
                    actual: stream.device().ordinal(),
                }))
            }
            None => {
                let e = std::sync::Arc::new(knpu::Event::with_timing(stream.device(), self.timing));
                *slot = Some(e.clone());
                e
            }
        };
        drop(slot);
        ev.record(stream).py()
    }
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (enable_timing=false))]
    fn new(enable_timing: bool) -> Event {
        Event::create(enable_timing)
    }

    /// Whether `elapsed_time` works with this event.
    #[getter]
    fn enable_timing(&self) -> bool {
        self.timing
    }

    /// Records the event at the current end of `stream` (default: the current stream).
    #[pyo3(signature = (stream=None))]
    fn record(&self, stream: Option<&Stream>) -> PyResult<()> {
        let s = match stream {
            Some(s) => s.inner.clone(),
            None => current_stream(&resolve(None)?)?,
        };
        self.record_on(&s)
    }

    /// Makes later work on `stream` (default: the current stream) wait for this event.
    #[pyo3(signature = (stream=None))]
    fn wait(&self, stream: Option<&Stream>) -> PyResult<()> {
        let e = self.get()?;
        let s = match stream {
            Some(s) => s.inner.clone(),
            None => current_stream(e.device())?,
        };
        s.wait_event(&e).py()
    }

    /// Whether the recorded work is done (True for an event never recorded).
    fn query(&self, py: Python<'_>) -> PyResult<bool> {
        match self.inner.lock().clone() {
            None => Ok(true),
            Some(e) => py.detach(move || e.query()).py(),
        }
    }

    /// Waits for the recorded work (releases the GIL).
    fn synchronize(&self, py: Python<'_>) -> PyResult<()> {
        match self.inner.lock().clone() {
            None => Ok(()),
            Some(e) => py.detach(move || e.synchronize()).py(),
        }
    }

    /// Milliseconds from this event to `end` (both recorded with timing, and done).
    fn elapsed_time(&self, end: &Event, py: Python<'_>) -> PyResult<f64> {
        if !self.timing || !end.timing {
            return Err(invalid(
                "elapsed_time needs both events made with enable_timing=True",
            ));
        }
        let (a, b) = (self.get()?, end.get()?);
        py.detach(move || knpu::Event::elapsed_ms(&a, &b)).py()
    }

    fn __repr__(&self) -> String {
        format!(
            "knpu.Event(enable_timing={})",
            if self.timing { "True" } else { "False" }
        )
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &knpu::MemoryStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let items: [(&str, u64); 16] = [
        ("allocated_bytes.all.current", s.allocated_bytes),
        ("allocated_bytes.all.peak", s.peak_allocated_bytes),
        ("requested_bytes.all.current", s.requested_bytes),
        ("reserved_bytes.all.current", s.reserved_bytes),
        ("reserved_bytes.all.peak", s.peak_reserved_bytes),
        ("active.all.current", s.active_blocks),
        ("inactive_split.all.current", s.cached_blocks),
        ("inactive_split_bytes.all.current", s.cached_bytes()),
        ("segment.all.current", s.segments),
        ("allocation.all.allocated", s.num_allocs),
        ("allocation.all.freed", s.num_frees),
        ("allocation.all.current", s.num_allocs - s.num_frees),
        ("segment.all.allocated", s.num_segment_allocs),
        ("segment.all.freed", s.num_segment_frees),
        ("num_alloc_retries", s.num_alloc_retries),
        ("num_ooms", s.num_ooms),
    ];
    for (k, v) in items {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// The caching allocator's statistics for `device`, under PyTorch's key names.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn memory_stats<'py>(
    py: Python<'py>,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = resolve(device)?;
    stats_dict(py, &d.memory_stats())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A printable table of the caching allocator's state for `device`.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn memory_summary(device: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    let d = resolve(device)?;
    let s = d.memory_stats();
    let (free, total) = d.memory_info().py()?;
    let rows = [
        (
            "Allocated memory",
            human(s.allocated_bytes),
            human(s.peak_allocated_bytes),
        ),
        (
            "Requested memory",
            human(s.requested_bytes),
            String::from("-"),
        ),
        (
            "Reserved memory",
            human(s.reserved_bytes),
            human(s.peak_reserved_bytes),
        ),
        (
            "Cached (reserved, free)",
            human(s.cached_bytes()),
            String::from("-"),
        ),
        (
            "Live blocks",
            s.active_blocks.to_string(),
            String::from("-"),
        ),
        (
            "Cached blocks",
            s.cached_blocks.to_string(),
            String::from("-"),
        ),
        ("Segments", s.segments.to_string(), String::from("-")),
    ];
    let mut out = format!(
        "knpu memory summary, device {} ({}): {} free of {}\n",
        d.ordinal(),
        d.name(),
        human(free),
        human(total)
    );
    out += &format!("{:<26}{:>14}{:>14}\n", "Metric", "Current", "Peak");
    for (name, cur, peak) in rows {
        out += &format!("{name:<26}{cur:>14}{peak:>14}\n");
    }
    out += &format!(
        "{} allocations, {} frees, {} segment allocations, {} segment frees, {} retries, {} OOMs\n",
        s.num_allocs,
        s.num_frees,
        s.num_segment_allocs,
        s.num_segment_frees,
        s.num_alloc_retries,
        s.num_ooms
    );
    Ok(out)
}

/// Returns the cached, unused blocks of `device` to the driver (releases the GIL).
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn empty_cache(py: Python<'_>, device: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    let d = resolve(device)?;
    py.detach(move || d.empty_cache()).py()
}

/// Starts the peak statistics of `device` anew from the current values.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn reset_peak_memory_stats(device: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    resolve(device)?.reset_peak_memory_stats();
    Ok(())
}

/// Bytes in live tensors on `device`.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn memory_allocated(device: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    Ok(resolve(device)?.memory_stats().allocated_bytes)
}

/// Bytes the caching allocator holds from the driver on `device`.
#[pyfunction]
#[pyo3(signature = (device=None))]
pub fn memory_reserved(device: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    Ok(resolve(device)?.memory_stats().reserved_bytes)
}
