//! `knpu.sample` and `knpu.Generator`: token ids drawn on the device (greedy, temperature,
//! top-k, top-p), with the random counter in device memory so a captured graph draws fresh
//! numbers on every replay.

use std::collections::HashMap;

use knpu::ops::{self, SampleParams};
use knpu::{DataType, DeviceBuffer};
use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;
use crate::ops::{typed, typed_mut, Fresh, Rows};
use crate::storage::Typed;
use crate::tensor::Tensor;

/// A random generator for [`sample`]: a seed and a 64-bit counter that lives in device
/// memory. Every sampling launch reads the counter and adds one to it on the device, so a
/// captured graph that samples draws new numbers on every replay, and the same seed and
/// counter give the same ids.
#[pyclass(module = "knpu._knpu", frozen)]
pub struct Generator {
    seed: Mutex<u64>,
    counter: Mutex<DeviceBuffer<u64>>,
}

impl Generator {
    fn create(device: &knpu::Device, seed: u64) -> PyResult<Generator> {
        let stream = crate::device::current_stream(device)?;
        let counter = stream.from_slice(&[0u64]).py()?;
        // Launches on any stream may read the counter next.
        stream.synchronize().py()?;
        Ok(Generator {
            seed: Mutex::new(seed),
            counter: Mutex::new(counter),
        })
    }

    fn device(&self) -> knpu::Device {
        self.counter.lock().device().clone()
    }

    /// Waits, without the GIL, for the work queued on the counter's device.
    fn settle(&self, py: Python<'_>) -> PyResult<()> {
        let device = self.device();
        py.detach(move || device.synchronize()).py()
    }
}

#[pymethods]
impl Generator {
    /// `knpu.Generator(seed=0, *, device=None)`: a generator on `device` (the current one by
    /// default) with its counter at 0.
    #[new]
    #[pyo3(signature = (seed=0, *, device=None))]
    fn new(seed: u64, device: Option<&Bound<'_, PyAny>>) -> PyResult<Generator> {
        Generator::create(&crate::device::resolve(device)?, seed)
    }

    /// The seed.
    #[getter]
    fn seed(&self) -> u64 {
        *self.seed.lock()
    }

    /// The counter: how many sampling launches have used this generator since it was made
    /// or reseeded (waits for queued work on the counter's stream).
    #[getter]
    fn counter(&self, py: Python<'_>) -> PyResult<u64> {
        self.settle(py)?;
        self.counter.lock().to_vec().py().map(|v| v[0])
    }

    /// Sets the seed and resets the counter to 0, so the draws start over. A graph captured
    /// before keeps the seed it was captured with and sees the reset counter.
    fn manual_seed(&self, py: Python<'_>, seed: u64) -> PyResult<()> {
        self.settle(py)?;
        self.counter.lock().copy_from_host(&[0]).py()?;
        *self.seed.lock() = seed;
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "knpu.Generator(seed={}, device=knpu:{})",
            self.seed(),
            self.device().ordinal()
        )
    }
}

/// The default generator of each device (seed 0), made on first use.
static DEFAULTS: Mutex<Option<HashMap<usize, Py<Generator>>>> = Mutex::new(None);

fn default_generator(py: Python<'_>, device: &knpu::Device) -> PyResult<Py<Generator>> {
    let mut d = DEFAULTS.lock();
    let map = d.get_or_insert_with(HashMap::new);
    if let Some(g) = map.get(&device.ordinal()) {
        return Ok(g.clone_ref(py));
    }
    let g = Py::new(py, Generator::create(device, 0)?)?;
    map.insert(device.ordinal(), g.clone_ref(py));
    Ok(g)
}

/// `knpu.sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, generator=None, out=None)`:
/// one token id (int32) per row of `logits` (`[..., vocab]`, float32, float16 or bfloat16),
/// drawn on the device: `temperature=0` is greedy (the argmax); otherwise the logits are
/// divided by `temperature`, cut to the `top_k` largest (0: all) and to the smallest set
/// whose probability reaches `top_p`, and one id is drawn with `generator` (the device's
/// default generator when `None`).
#[pyfunction]
#[pyo3(signature = (logits, *, temperature=1.0, top_k=0, top_p=1.0, generator=None, out=None))]
pub fn sample(
    py: Python<'_>,
    logits: PyRef<'_, Tensor>,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    generator: Option<Py<Generator>>,
    out: Option<&Bound<'_, Tensor>>,
) -> PyResult<Py<Tensor>> {
    if logits.layout.ndim() == 0 {
        return Err(crate::errors::invalid(
            "sample needs logits with a last dimension (the vocabulary)",
        ));
    }
    let r = Rows::of(&logits, "sample")?;
    let generator = match generator {
        Some(g) => g,
        None => default_generator(py, r.x.rt_device())?,
    };
    let g = generator.get();
    let params = SampleParams {
        temperature,
        top_k,
        top_p,
        seed: g.seed(),
    };
    let mut fresh = r.fresh(&r.shape[..r.shape.len() - 1], DataType::I32)?;
    let mut counter = g.counter.lock();
    match r.x.dtype {
        DataType::F32 => sample_t::<f32>(&r, &mut fresh, &params, &mut counter),
        DataType::F16 => sample_t::<half::f16>(&r, &mut fresh, &params, &mut counter),
        DataType::BF16 => sample_t::<half::bf16>(&r, &mut fresh, &params, &mut counter),
        other => Err(crate::errors::wrong_dtype(
            "logits",
            "float32, float16 or bfloat16",
            other.name(),
        )),
    }?;
    drop(counter);
    fresh.into_out(py, &r.stream, out)
}

fn sample_t<T: Typed>(
    r: &Rows,
    fresh: &mut Fresh,
    params: &SampleParams,
    counter: &mut DeviceBuffer<u64>,
) -> PyResult<()> {
    let sx = typed::<T>(&r.x.storage.buf)?;
    let sx = sx
        .slice(r.x.layout.offset()..r.x.layout.offset() + r.x.layout.numel())
        .py()?;
    let out = typed_mut::<i32>(&mut fresh.storage.buf)?;
    // Greedy launches need no counter.
    let counter: Option<&mut dyn knpu::AsDeviceSliceMut<u64>> = if params.temperature == 0.0 {
        None
    } else {
        Some(counter)
    };
    ops::sample(&r.stream, &sx, out, r.rows, r.cols, params, counter).py()
}

/// Adds `sample` and `Generator` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Generator>()?;
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    Ok(())
}
