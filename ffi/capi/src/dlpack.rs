//! DLPack export and import of device memory (`knpuTensorToDLPack`, `knpuTensorFromDLPack`).
//!
//! Every rule about dtypes, shapes, strides and offsets is the runtime's tensor module's
//! (`knpu::tensor`), the one Python uses too: an export describes the caller's arguments as a
//! `DLTensor` and lets `dlpack::describe` read it back, exactly as an import reads a foreign
//! tensor, and the managed struct is made by `dlpack::export_versioned`. The header's DLPack
//! structs are the runtime's (`header.rs` re-exports them; `header_check.rs` checks their
//! layout against `knpu.h`). This module adds only what C needs: device pointers resolved
//! against live allocations, and the allocation kept alive by the export.

use crate::error::{call, invalid, out_ptr, write_out, Result};
use crate::header::*;
use crate::memory::{resolve, Range};
use knpu::tensor::dlpack as dl;
use knpu::{DataType, Error, Layout};
use std::ffi::{c_int, c_void};

/// The memory a described tensor touches: the allocation range holding every element, the
/// dtype and layout, and the base address the layout counts from.
struct Placed {
    range: Range,
    dtype: DataType,
    layout: Layout,
    base: u64,
}

/// Reads a tensor through the runtime's rules and resolves the bytes its elements span.
///
/// # Safety
/// - `t.shape` points to `t.ndim` values; `t.strides` is NULL or points to `t.ndim` values.
unsafe fn place(t: &dl::DLTensor, what: &str) -> Result<Placed> {
    // SAFETY: the caller's promise on the arrays.
    let (dtype, layout, shift) = unsafe { dl::describe(t) }?;
    let base = (t.data as u64).checked_add_signed(shift).ok_or_else(|| {
        invalid(format!(
            "{what}: data {:p} and its strides overflow",
            t.data
        ))
    })?;
    let span = layout.span()?;
    let unit = dtype.unit_bytes();
    let first = base + (span.start * unit) as u64;
    let bytes = (span.end - span.start) * unit;
    let at = if bytes == 0 {
        base + (layout.offset() * unit) as u64
    } else {
        first
    };
    let range = resolve(at as *const c_void, bytes, what)?;
    Ok(Placed {
        range,
        dtype,
        layout,
        base,
    })
}

fn dims(p: *const i64, ndim: usize, what: &str) -> Result<*mut i64> {
    if ndim > 0 && p.is_null() {
        return Err(invalid(format!("{what} is NULL with ndim {ndim}")));
    }
    if !p.is_null() && !p.is_aligned() {
        return Err(invalid(format!("{what} ({p:p}) is not aligned to 8 bytes")));
    }
    Ok(p as *mut i64)
}

/// Exports device memory as a DLPack tensor.
///
/// # Safety
/// - `shape` and `strides`, when not NULL, point to `ndim` values; `tensor` is NULL or
///   points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn knpuTensorToDLPack(
    devPtr: *mut c_void,
    ndim: c_int,
    shape: *const i64,
    strides: *const i64,
    dtype: DLDataType,
    tensor: *mut *mut DLManagedTensorVersioned,
) -> knpuError_t {
    call(|| {
        out_ptr(tensor, "tensor")?;
        let n = usize::try_from(ndim).map_err(|_| invalid(format!("ndim {ndim} is negative")))?;
        let t = dl::DLTensor {
            data: devPtr,
            device: dl::DLDevice {
                device_type: dl::device_type::EXT_DEV,
                device_id: 0,
            },
            ndim,
            dtype,
            shape: dims(shape, n, "shape")?,
            strides: if strides.is_null() {
                std::ptr::null_mut()
            } else {
                dims(strides, n, "strides")?
            },
            byte_offset: 0,
        };
        if devPtr.is_null() {
            return Err(invalid("devPtr is NULL"));
        }
        // SAFETY: the arrays hold `ndim` values (the caller's promise, NULL checked).
        let p = unsafe { place(&t, "devPtr") }?;
        let device = p.range.device();
        let export = dl::Export {
            dtype: p.dtype,
            layout: p.layout,
            device: dl::DLDevice {
                device_type: dl::device_type::EXT_DEV,
                device_id: i32::try_from(device).map_err(|_| invalid("device index overflows"))?,
            },
            data: p.base as *mut c_void,
            owner: Box::new(p.range.keep_alive()),
            flags: 0,
        };
        let managed = dl::export_versioned(export)?;
        // SAFETY: checked by out_ptr; the caller promised a writable pointer.
        unsafe { write_out(tensor, "tensor", managed) }
    })
}

/// Imports a DLPack tensor of knpu device memory.
///
/// # Safety
/// - `tensor` is NULL or points to a live `DLManagedTensorVersioned` whose shape and strides
///   arrays hold `ndim` values; `devPtr` and `device` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn knpuTensorFromDLPack(
    tensor: *const DLManagedTensorVersioned,
    devPtr: *mut *mut c_void,
    device: *mut c_int,
) -> knpuError_t {
    call(|| {
        let m = out_ptr(tensor as *mut DLManagedTensorVersioned, "tensor")?;
        // SAFETY: non-null and aligned (checked); live by the caller's promise.
        let m = unsafe { &*m };
        if m.version.major != dl::MAJOR_VERSION {
            return Err(Error::NotSupported {
                detail: format!(
                    "DLPack major version {} (knpu reads major {})",
                    m.version.major,
                    dl::MAJOR_VERSION
                ),
            });
        }
        let t = &m.dl_tensor;
        if t.device.device_type != dl::device_type::EXT_DEV {
            return Err(Error::NotSupported {
                detail: format!(
                    "the tensor is on DLPack device type {} (device {}); knpu imports only its \
                     own memory, kDLExtDev ({})",
                    t.device.device_type,
                    t.device.device_id,
                    dl::device_type::EXT_DEV
                ),
            });
        }
        let want = usize::try_from(t.device.device_id)
            .map_err(|_| invalid(format!("device_id {} is negative", t.device.device_id)))?;
        knpu::device(want)?;
        // SAFETY: the producer's arrays hold `ndim` values (the DLPack contract).
        let p = unsafe { place(t, "the tensor's data") }?;
        if p.range.device() != want {
            return Err(invalid(format!(
                "the tensor says device {want}, but its data is memory of device {}",
                p.range.device()
            )));
        }
        let first = (t.data as u64).wrapping_add(t.byte_offset);
        if !devPtr.is_null() {
            // SAFETY: the caller's promise on `devPtr`.
            unsafe { write_out(devPtr, "devPtr", first as *mut c_void) }?;
        }
        if !device.is_null() {
            // SAFETY: the caller's promise on `device`.
            unsafe { write_out(device, "device", want as c_int) }?;
        }
        Ok(())
    })
}
