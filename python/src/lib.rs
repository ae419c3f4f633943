//! `knpu._knpu`: the native part of `import knpu` (the public names are re-exported by
//! `py_src/knpu/__init__.py`).
//!
//! A thin shell over the `knpu` runtime crate: shapes, strides, dtypes and DLPack come from
//! `knpu::tensor`, errors from the runtime's one error type. It must never crash the
//! interpreter: every failure is a Python exception, and every wait releases the GIL.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod device;
mod dlpack;
mod dtype;
mod errors;
mod graph;
mod kvcache;
mod ops;
mod sample;
mod storage;
mod tensor;

use pyo3::prelude::*;

#[pymodule]
fn _knpu(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    dtype::register(m)?;
    m.add_class::<dtype::DType>()?;
    m.add_class::<device::Device>()?;
    m.add_class::<device::Stream>()?;
    m.add_class::<device::Event>()?;
    m.add_class::<tensor::Tensor>()?;
    m.add_class::<graph::Graph>()?;
    m.add_class::<kvcache::KVCache>()?;
    m.add_class::<kvcache::PagedKVCache>()?;
    m.add_function(wrap_pyfunction!(device::device_count, m)?)?;
    m.add_function(wrap_pyfunction!(device::set_device, m)?)?;
    m.add_function(wrap_pyfunction!(device::current_device, m)?)?;
    m.add_function(wrap_pyfunction!(device::synchronize, m)?)?;
    m.add(
        "current_stream",
        wrap_pyfunction!(device::current_stream_py, m)?,
    )?;
    m.add_function(wrap_pyfunction!(device::default_stream, m)?)?;
    m.add_function(wrap_pyfunction!(device::memory_stats, m)?)?;
    m.add_function(wrap_pyfunction!(device::memory_summary, m)?)?;
    m.add_function(wrap_pyfunction!(device::empty_cache, m)?)?;
    m.add_function(wrap_pyfunction!(device::reset_peak_memory_stats, m)?)?;
    m.add_function(wrap_pyfunction!(device::memory_allocated, m)?)?;
    m.add_function(wrap_pyfunction!(device::memory_reserved, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::asarray, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::empty, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::zeros, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::ones, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::full, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::arange, m)?)?;
    m.add_function(wrap_pyfunction!(dlpack::from_dlpack, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::matmul, m)?)?;
    m.add_function(wrap_pyfunction!(tensor::cast, m)?)?;
    ops::py::register(m)?;
    ops::py_quant::register(m)?;
    sample::register(m)?;
    m.add_function(wrap_pyfunction!(ops::py_attention::attention, m)?)?;
    Ok(())
}
