//! `knpu.dtype` objects: one per [`knpu::DataType`], compared by identity as in PyTorch.

use crate::errors::invalid;
use knpu::DataType;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// A tensor element type, such as `knpu.float32`, or a quantised block type such as
/// `knpu.q4_0` (whose storage unit is a block of `block_size` values in `itemsize` bytes).
#[pyclass(module = "knpu._knpu", name = "dtype", frozen)]
pub struct DType {
    pub inner: DataType,
}

#[pymethods]
impl DType {
    /// The name, e.g. `"float32"` or `"q4_k"`.
    #[getter]
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// Bytes per storage unit: an element, or a block of a block type.
    #[getter]
    fn itemsize(&self) -> usize {
        self.inner.unit_bytes()
    }

    /// Values per storage unit (1 except for block types).
    #[getter]
    fn block_size(&self) -> usize {
        self.inner.block_elems()
    }

    /// Whether this is a quantised block type.
    #[getter]
    fn is_block(&self) -> bool {
        self.inner.is_block()
    }

    /// Whether this is a floating-point type.
    #[getter]
    fn is_floating_point(&self) -> bool {
        self.inner.is_float()
    }

    fn __repr__(&self) -> String {
        format!("knpu.{}", self.inner.name())
    }

    fn __str__(&self) -> String {
        format!("knpu.{}", self.inner.name())
    }

    fn __hash__(&self) -> u64 {
        DataType::ALL
            .iter()
            .position(|d| *d == self.inner)
            .unwrap_or(0) as u64
    }
}

static DTYPES: PyOnceLock<Vec<Py<DType>>> = PyOnceLock::new();

fn all(py: Python<'_>) -> PyResult<&Vec<Py<DType>>> {
    DTYPES.get_or_try_init(py, || {
        DataType::ALL
            .iter()
            .map(|&d| Py::new(py, DType { inner: d }))
            .collect()
    })
}

/// The one Python object of `d`.
pub fn object(py: Python<'_>, d: DataType) -> PyResult<Py<DType>> {
    let i = DataType::ALL
        .iter()
        .position(|x| *x == d)
        .ok_or_else(|| invalid(format!("dtype {d} has no Python object")))?;
    Ok(all(py)?[i].clone_ref(py))
}

/// Adds `knpu.float32` and the other dtype objects to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for (d, obj) in DataType::ALL.iter().zip(all(m.py())?) {
        m.add(d.name(), obj.clone_ref(m.py()))?;
    }
    Ok(())
}

/// The dtype a user passed: a `knpu.dtype`, a name (`"float32"`, `"f32"`), or anything
/// `numpy.dtype()` accepts (`numpy.float32`).
pub fn resolve(obj: &Bound<'_, PyAny>) -> PyResult<DataType> {
    if let Ok(d) = obj.cast::<DType>() {
        return Ok(d.get().inner);
    }
    if let Ok(s) = obj.extract::<String>() {
        return DataType::from_name(&s).ok_or_else(|| invalid(format!("unknown dtype {s:?}")));
    }
    let np = obj.py().import("numpy")?;
    let name: String = np
        .call_method1("dtype", (obj,))
        .and_then(|d| d.getattr("name"))
        .and_then(|n| n.extract())
        .map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "dtype must be a knpu.dtype, a name or a numpy dtype, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
    DataType::from_name(&name).ok_or_else(|| {
        crate::errors::not_supported(format!("numpy dtype {name} has no knpu dtype"))
    })
}

/// The numpy dtype name that holds `d` on the host: its own for the types numpy has, the
/// raw bits (`uint16` for bfloat16, `uint8` for 8-bit floats and block bytes) otherwise.
pub fn numpy_name(d: DataType) -> &'static str {
    match d {
        DataType::BF16 => "uint16",
        DataType::F8E4M3 | DataType::F8E5M2 => "uint8",
        d if d.is_block() => "uint8",
        d => d.name(),
    }
}
