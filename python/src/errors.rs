//! `knpu.KnpuError` and its subclasses, and the one mapping from runtime errors to them.
//!
//! The classes are made at import with Python's `type()`, so that a class can derive from a
//! builtin as well (`OutOfMemoryError` is also a `MemoryError`, `InvalidValueError` also a
//! `ValueError`). Every raised instance carries `.code` (the runtime's stable numeric code,
//! shared with the C ABI) and `.name` (its stable name).

use pyo3::exceptions::{PyException, PyMemoryError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use std::collections::HashMap;

/// Class name, base class names (`KnpuError`'s subclasses or builtins), docstring, and the
/// runtime error names (`knpu::Error::name`) raised as this class.
const CLASSES: &[(&str, &[&str], &str, &[&str])] = &[
    (
        "KnpuError",
        &["RuntimeError"],
        "Base class of every knpu runtime error.",
        &[],
    ),
    (
        "InvalidValueError",
        &["KnpuError", "ValueError"],
        "An argument is out of range or inconsistent.",
        &["InvalidValue"],
    ),
    (
        "ShapeError",
        &["InvalidValueError"],
        "An operand's shape does not fit.",
        &["Shape"],
    ),
    (
        "DtypeError",
        &["InvalidValueError"],
        "An operand's dtype does not fit.",
        &["Dtype"],
    ),
    (
        "DeviceMismatchError",
        &["InvalidValueError"],
        "Operands live on different devices.",
        &["DeviceMismatch"],
    ),
    (
        "InvalidHandleError",
        &["KnpuError"],
        "A handle is unknown or already destroyed.",
        &["InvalidHandle"],
    ),
    (
        "OutOfMemoryError",
        &["KnpuError", "MemoryError"],
        "Device memory is exhausted even after the caching allocator released its cache.",
        &["OutOfMemory"],
    ),
    (
        "NotSupportedError",
        &["KnpuError"],
        "The device does not support this function, dtype or option.",
        &["NotSupported"],
    ),
    (
        "IllegalAddressError",
        &["KnpuError"],
        "Work addressed device memory outside every allocation.",
        &["IllegalAddress"],
    ),
    (
        "KernelFaultError",
        &["KnpuError"],
        "A kernel failed while it ran.",
        &["KernelFault"],
    ),
    (
        "DeviceLostError",
        &["KnpuError"],
        "The device is gone; later calls on it fail.",
        &["DeviceLost"],
    ),
    (
        "KnpuTimeoutError",
        &["KnpuError", "TimeoutError"],
        "A wait ended at its timeout.",
        &["Timeout"],
    ),
    (
        "DependencyFailedError",
        &["KnpuError"],
        "Work did not run because work it waited on failed.",
        &["DependencyFailed"],
    ),
    (
        "NotReadyError",
        &["KnpuError"],
        "The work asked about has not completed yet.",
        &["NotReady"],
    ),
    (
        "CaptureError",
        &["KnpuError"],
        "A call is not allowed during a graph capture, or the capture failed.",
        &["Capture"],
    ),
    (
        "GraphUpdateError",
        &["KnpuError"],
        "A graph update could not be applied.",
        &["GraphUpdate"],
    ),
    (
        "DriverError",
        &["KnpuError"],
        "A driver could not be loaded or speaks another ABI.",
        &["DriverLoad", "AbiMismatch"],
    ),
    (
        "InternalError",
        &["KnpuError"],
        "A bug in knpu or a driver.",
        &["Internal"],
    ),
];

static TYPES: PyOnceLock<HashMap<&'static str, Py<PyType>>> = PyOnceLock::new();

fn builtin<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyType> {
    match name {
        "RuntimeError" => py.get_type::<PyRuntimeError>(),
        "ValueError" => py.get_type::<PyValueError>(),
        "MemoryError" => py.get_type::<PyMemoryError>(),
        "TimeoutError" => py.get_type::<PyTimeoutError>(),
        _ => py.get_type::<PyException>(),
    }
}

fn types(py: Python<'_>) -> PyResult<&HashMap<&'static str, Py<PyType>>> {
    TYPES.get_or_try_init(py, || {
        let make = py.get_type::<PyType>();
        let mut made: HashMap<&'static str, Py<PyType>> = HashMap::new();
        for &(name, bases, doc, _) in CLASSES {
            let bases = bases
                .iter()
                .map(|b| {
                    made.get(b)
                        .map(|t| t.bind(py).clone())
                        .unwrap_or_else(|| builtin(py, b))
                })
                .collect::<Vec<_>>();
            let ns = PyDict::new(py);
            ns.set_item("__module__", "knpu")?;
            ns.set_item("__doc__", doc)?;
            ns.set_item("code", 0u32)?;
            ns.set_item("name", name)?;
            let t = make.call1((name, PyTuple::new(py, bases)?, ns))?;
            made.insert(name, t.cast_into::<PyType>()?.unbind());
        }
        Ok(made)
    })
}

/// Adds every class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for (name, t) in types(m.py())? {
        m.add(*name, t.bind(m.py()))?;
    }
    Ok(())
}

/// The class of `e`, found by the runtime's stable name of its code; a name no class lists
/// (a variant newer than this table) is an `InternalError`.
fn class_of(e: &knpu::Error) -> &'static str {
    let name = e.name();
    CLASSES
        .iter()
        .find(|c| c.3.contains(&name))
        .map_or("InternalError", |c| c.0)
}

/// The Python exception of a runtime error: its class, message, `.code` and `.name`.
pub fn to_py(e: knpu::Error) -> PyErr {
    Python::attach(|py| {
        let made = || -> PyResult<PyErr> {
            let t = types(py)?[class_of(&e)].bind(py);
            let inst = t.call1((e.to_string(),))?;
            inst.setattr("code", e.code())?;
            inst.setattr("name", e.name())?;
            Ok(PyErr::from_value(inst))
        };
        made().unwrap_or_else(|err| err)
    })
}

/// `Result` into `PyResult`.
pub trait IntoPyResult<T> {
    /// Maps the error with [`to_py`].
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for knpu::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// An `InvalidValueError` with `detail`.
pub fn invalid(detail: impl Into<String>) -> PyErr {
    to_py(knpu::Error::InvalidValue {
        detail: detail.into(),
    })
}

/// The runtime's dtype error: operand `operand` is of dtype `actual` where `expected` is
/// needed.
pub fn wrong_dtype(
    operand: &'static str,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> PyErr {
    to_py(knpu::Error::Dtype {
        operand,
        expected: expected.into(),
        actual: actual.into(),
    })
}

/// A `NotSupportedError` with `detail`.
pub fn not_supported(detail: impl Into<String>) -> PyErr {
    to_py(knpu::Error::NotSupported {
        detail: detail.into(),
    })
}
