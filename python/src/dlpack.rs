//! The DLPack protocol: `Tensor.__dlpack__` and `knpu.from_dlpack`.
//!
//! Exports are versioned capsules (`"dltensor_versioned"`) when the consumer asks for
//! DLPack 1.x through `max_version`, unversioned (`"dltensor"`) otherwise. A capsule that
//! was consumed is renamed `"used_..."`, so a second import fails instead of freeing twice.
//! knpu tensors import without a copy (the capsule's keep-alive is the storage); host
//! (`kDLCPU`) tensors import by copying to the device.

use crate::device::{current_stream, resolve};
use crate::errors::{invalid, not_supported, IntoPyResult};
use crate::storage::Storage;
use crate::tensor::Tensor;
use knpu::tensor::dlpack::{
    self, device_type, DLManagedTensor, DLManagedTensorVersioned, DLTensor,
};
use knpu::Layout;
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ffi::{c_void, CStr};
use std::sync::Arc;

const VERSIONED: &CStr = c"dltensor_versioned";
const UNVERSIONED: &CStr = c"dltensor";
const USED_VERSIONED: &CStr = c"used_dltensor_versioned";
const USED_UNVERSIONED: &CStr = c"used_dltensor";

unsafe extern "C" fn release_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls a capsule's destructor with the GIL held and a live capsule. A
    // capsule that still has its first name was never consumed, so it owns the tensor.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED.as_ptr()) == 1 {
            let m = ffi::PyCapsule_GetPointer(capsule, VERSIONED.as_ptr())
                as *mut DLManagedTensorVersioned;
            if let Some(d) = (*m).deleter {
                d(m);
            }
        }
    }
}

unsafe extern "C" fn release_unversioned(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `release_versioned`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, UNVERSIONED.as_ptr()) == 1 {
            let m =
                ffi::PyCapsule_GetPointer(capsule, UNVERSIONED.as_ptr()) as *mut DLManagedTensor;
            if let Some(d) = (*m).deleter {
                d(m);
            }
        }
    }
}

/// Makes the tensor's queued writes visible to work the consumer queues on `stream`.
fn order_for_consumer(
    py: Python<'_>,
    t: &Tensor,
    stream: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let current = t.stream()?;
    match stream {
        Some(s) if !s.is_none() => {
            if let Ok(st) = s.cast::<crate::device::Stream>() {
                let e = knpu::Event::new(current.device());
                e.record(&current).py()?;
                return st.get().inner.wait_event(&e).py();
            }
            let id: i64 = s.extract().map_err(|_| {
                PyTypeError::new_err("stream must be None, an int stream id or a knpu.Stream")
            })?;
            if id == -1 || id as u64 == current.id() {
                return Ok(());
            }
            py.detach(move || current.synchronize()).py()
        }
        _ => py.detach(move || current.synchronize()).py(),
    }
}

/// `Tensor.__dlpack__`.
pub fn export<'py>(
    py: Python<'py>,
    t: &Tensor,
    stream: Option<&Bound<'py, PyAny>>,
    max_version: Option<(u32, u32)>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    let own = (device_type::EXT_DEV, t.rt_device().ordinal() as i32);
    if let Some(dev) = dl_device.filter(|d| *d != own) {
        if dev != (device_type::CPU, 0) {
            return Err(PyBufferError::new_err(format!(
                "a knpu tensor on {own:?} cannot be exported to DLPack device {dev:?}"
            )));
        }
        if copy == Some(false) {
            return Err(PyBufferError::new_err(
                "exporting to the host (kDLCPU) needs a copy, and copy=False forbids it",
            ));
        }
        let arr = t.numpy(py)?;
        let kw = PyDict::new(py);
        if let Some(v) = max_version {
            kw.set_item("max_version", v)?;
        }
        return arr.call_method("__dlpack__", (), Some(&kw));
    }
    if t.dtype.to_dlpack().is_none() {
        return Err(PyBufferError::new_err(format!(
            "DLPack cannot describe {} blocks; export the raw bytes with .numpy()",
            t.dtype
        )));
    }
    let copied = copy == Some(true);
    let t = if copied {
        t.copied()?
    } else {
        t.with_layout(t.layout.clone())
    };
    order_for_consumer(py, &t, stream)?;
    let exp = dlpack::Export {
        dtype: t.dtype,
        layout: t.layout.clone(),
        device: dlpack::DLDevice {
            device_type: own.0,
            device_id: own.1,
        },
        data: t.storage.address() as usize as *mut c_void,
        owner: Box::new(t.storage.clone()),
        flags: if copied { dlpack::FLAG_IS_COPIED } else { 0 },
    };
    let versioned = max_version.is_some_and(|(major, _)| major >= 1);
    // SAFETY: the capsule takes the managed tensor; its destructor releases it unless a
    // consumer renamed the capsule (and took ownership).
    let raw = unsafe {
        if versioned {
            let m = dlpack::export_versioned(exp).py()?;
            ffi::PyCapsule_New(
                m as *mut c_void,
                VERSIONED.as_ptr(),
                Some(release_versioned),
            )
        } else {
            let m = dlpack::export_unversioned(exp).py()?;
            ffi::PyCapsule_New(
                m as *mut c_void,
                UNVERSIONED.as_ptr(),
                Some(release_unversioned),
            )
        }
    };
    // SAFETY: `raw` is a new reference or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// A tensor of the data a `DLTensor` describes: the knpu storage `owner` without a copy, or
/// host memory copied to `device`.
fn import(
    py: Python<'_>,
    t: &DLTensor,
    owner: Option<&(dyn std::any::Any + Send)>,
) -> PyResult<Tensor> {
    // SAFETY: the producer's capsule is alive and unconsumed while this runs, so its shape
    // and strides arrays are valid for `ndim` values.
    let (dtype, layout, shift) = unsafe { dlpack::describe(t) }.py()?;
    match t.device.device_type {
        device_type::EXT_DEV => {
            let storage = owner
                .and_then(|o| o.downcast_ref::<Arc<Storage>>())
                .ok_or_else(|| {
                    not_supported("importing kDLExtDev tensors that another library exported")
                })?;
            let base = (t.data as usize as i128) + shift as i128 - storage.address() as i128;
            let unit = dtype.unit_bytes() as i128;
            if base < 0 || base % unit != 0 {
                return Err(invalid("DLPack data pointer is not inside its storage"));
            }
            let layout = Layout::new(
                layout.shape().to_vec(),
                layout.strides().to_vec(),
                layout.offset() + (base / unit) as usize,
            )
            .py()?;
            Ok(Tensor {
                storage: storage.clone(),
                layout,
                dtype,
            })
        }
        device_type::CPU => {
            let device = resolve(None)?;
            let stream = current_stream(&device)?;
            let unit = dtype.unit_bytes();
            let out = Layout::contiguous(layout.shape()).py()?;
            let result_layout = out.clone();
            let base = (t.data as usize as isize + shift as isize) as usize;
            let storage = py
                .detach(move || -> knpu::Result<Storage> {
                    let mut bytes = vec![0u8; out.numel() * unit];
                    Layout::for_each_run(&out, &layout, |d, s, len| {
                        // SAFETY: the producer keeps the host data alive until its deleter
                        // runs, after this copy; `describe` checked the units it spans.
                        let src = unsafe {
                            std::slice::from_raw_parts((base + s * unit) as *const u8, len * unit)
                        };
                        bytes[d * unit..(d + len) * unit].copy_from_slice(src);
                        Ok(())
                    })?;
                    let mut st = Storage::alloc(&stream, dtype, out.numel())?;
                    st.upload(&stream, 0, &bytes)?;
                    Ok(st)
                })
                .py()?;
            Ok(Tensor {
                storage: Arc::new(storage),
                layout: result_layout,
                dtype,
            })
        }
        other => Err(not_supported(format!(
            "importing DLPack tensors of device type {other} (knpu takes kDLCPU and its own)"
        ))),
    }
}

/// The managed tensor that capsule `ptr`, named `name`, holds.
///
/// # Safety
/// - `ptr` is a live capsule named `name`.
unsafe fn capsule_pointer<M>(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
    name: &CStr,
) -> PyResult<*mut M> {
    // SAFETY: the caller's promise.
    let m = unsafe { ffi::PyCapsule_GetPointer(ptr, name.as_ptr()) } as *mut M;
    if m.is_null() {
        return Err(PyErr::fetch(py));
    }
    Ok(m)
}

/// Ends the consuming of capsule `ptr` once its tensor was imported (`result`): renames it
/// `used` so it never imports again, then calls the producer's deleter on its managed tensor.
///
/// # Safety
/// - `ptr` is a live capsule; `deleter`, when given, is the deleter of the managed tensor it
///   is paired with, not called yet.
unsafe fn mark_consumed<M>(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
    used: &CStr,
    deleter: Option<(unsafe extern "C" fn(*mut M), *mut M)>,
    result: PyResult<Tensor>,
) -> PyResult<Tensor> {
    // SAFETY: the caller's promise on `ptr`.
    if unsafe { ffi::PyCapsule_SetName(ptr, used.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    if let Some((d, m)) = deleter {
        // SAFETY: the caller's promise: the producer's deleter, called once.
        unsafe { d(m) };
    }
    result
}

/// Consumes a DLPack capsule: renames it `used_...`, imports it and calls its deleter.
fn consume(py: Python<'_>, capsule: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let ptr = capsule.as_ptr();
    // SAFETY: `ptr` is a live object; the capsule calls are checked for its type first.
    unsafe {
        if ffi::PyCapsule_CheckExact(ptr) == 0 {
            return Err(PyTypeError::new_err("expected a DLPack capsule"));
        }
        let name = ffi::PyCapsule_GetName(ptr);
        if name.is_null() {
            return Err(PyErr::fetch(py));
        }
        let name = CStr::from_ptr(name);
        if name == USED_VERSIONED || name == USED_UNVERSIONED {
            return Err(invalid(
                "this DLPack capsule was already consumed; a capsule imports once",
            ));
        }
        if name == VERSIONED {
            let m: *mut DLManagedTensorVersioned = capsule_pointer(py, ptr, VERSIONED)?;
            if (*m).version.major != dlpack::MAJOR_VERSION {
                return Err(PyBufferError::new_err(format!(
                    "DLPack {}.{} is not supported (knpu speaks {}.x)",
                    (*m).version.major,
                    (*m).version.minor,
                    dlpack::MAJOR_VERSION
                )));
            }
            let result = import(py, &(*m).dl_tensor, dlpack::knpu_owner_versioned(m));
            let release = (*m).deleter.map(|d| (d, m));
            return mark_consumed(py, ptr, USED_VERSIONED, release, result);
        }
        if name == UNVERSIONED {
            let m: *mut DLManagedTensor = capsule_pointer(py, ptr, UNVERSIONED)?;
            let result = import(py, &(*m).dl_tensor, dlpack::knpu_owner_unversioned(m));
            let release = (*m).deleter.map(|d| (d, m));
            return mark_consumed(py, ptr, USED_UNVERSIONED, release, result);
        }
        Err(PyTypeError::new_err(format!(
            "capsule {name:?} is not a DLPack tensor"
        )))
    }
}

/// A knpu tensor from any DLPack producer: knpu tensors are shared without a copy, host
/// (kDLCPU) tensors such as numpy arrays are copied to the current device. A capsule is
/// accepted too, once.
#[pyfunction]
pub fn from_dlpack(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    if let Ok(t) = x.cast::<Tensor>() {
        let t = t.get();
        return Ok(t.with_layout(t.layout.clone()));
    }
    // SAFETY: `x` is a live object.
    if unsafe { ffi::PyCapsule_CheckExact(x.as_ptr()) } == 1 {
        return consume(py, x);
    }
    if !x.hasattr("__dlpack__")? {
        return Err(PyTypeError::new_err(format!(
            "from_dlpack needs an object with __dlpack__ or a DLPack capsule, not {}",
            x.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    }
    let (dev_type, _): (i32, i32) = x.call_method0("__dlpack_device__")?.extract()?;
    let kw = PyDict::new(py);
    kw.set_item(
        "max_version",
        (dlpack::MAJOR_VERSION, dlpack::MINOR_VERSION),
    )?;
    if dev_type == device_type::EXT_DEV {
        kw.set_item("stream", current_stream(&resolve(None)?)?.id())?;
    }
    let capsule = match x.call_method("__dlpack__", (), Some(&kw)) {
        Ok(c) => c,
        // Producers that predate DLPack 1.0 take no max_version.
        Err(e) if e.is_instance_of::<PyTypeError>(py) => {
            kw.del_item("max_version")?;
            x.call_method("__dlpack__", (), Some(&kw))?
        }
        Err(e) => return Err(e),
    };
    consume(py, &capsule)
}
