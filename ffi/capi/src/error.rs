//! Error codes at the boundary: the per-thread last error, names and messages, and
//! [`call`], which every exported function runs its body through.
//!
//! Codes are the runtime's stable [`knpu::Error::code`]s, so nothing here maps one error to
//! another. A panic is caught here and becomes `knpuErrorInternal`; it never unwinds into C.

use crate::header::*;
use knpu::Error;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of an exported function's body.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    /// What knpuGetLastError returns (cleared by it).
    static LAST: Cell<knpuError_t> = const { Cell::new(knpuSuccess) };
    /// The most recent failure's code and message (not cleared by knpuGetLastError, so
    /// `knpuGetErrorString(knpuGetLastError())` still finds the message).
    static MESSAGE: RefCell<(knpuError_t, CString)> = RefCell::new((knpuSuccess, CString::default()));
}

/// Runs an exported function's body: its error, or a caught panic, becomes the returned
/// code and this thread's last error.
pub(crate) fn call(body: impl FnOnce() -> Result<()>) -> knpuError_t {
    status(|| body().map(|()| knpuSuccess))
}

/// As [`call`], for bodies that return a non-error status themselves (knpuErrorNotReady from
/// a query is an answer, not a failure, so it does not become the last error).
pub(crate) fn status(body: impl FnOnce() -> Result<knpuError_t>) -> knpuError_t {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => fail(&e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            fail(&Error::Internal {
                detail: format!("panic inside libknpu: {what}"),
            })
        }
    }
}

fn fail(e: &Error) -> knpuError_t {
    let code = e.code() as knpuError_t;
    let text = format!("{}: {e}", name(code).to_string_lossy()).replace('\0', " ");
    let text = CString::new(text).unwrap_or_default();
    let _ = LAST.try_with(|l| l.set(code));
    let _ = MESSAGE.try_with(|m| *m.borrow_mut() = (code, text));
    code
}

/// An `InvalidValue` error.
pub(crate) fn invalid(detail: impl Into<String>) -> Error {
    Error::InvalidValue {
        detail: detail.into(),
    }
}

/// Checks an output pointer: not NULL, aligned for `T`.
pub(crate) fn out_ptr<T>(p: *mut T, what: &str) -> Result<*mut T> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(invalid(format!(
            "{what} ({p:p}) is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    Ok(p)
}

/// Writes `value` through an output pointer checked by [`out_ptr`].
///
/// # Safety
/// - `p`, when not NULL, points to writable memory for a `T` (the C caller's promise).
pub(crate) unsafe fn write_out<T>(p: *mut T, what: &str, value: T) -> Result<()> {
    let p = out_ptr(p, what)?;
    // SAFETY: non-null and aligned (checked), writable by the caller's promise.
    unsafe { p.write(value) };
    Ok(())
}

fn name(code: knpuError_t) -> &'static CStr {
    match code {
        knpuSuccess => c"knpuSuccess",
        knpuErrorInvalidValue => c"knpuErrorInvalidValue",
        knpuErrorInvalidHandle => c"knpuErrorInvalidHandle",
        knpuErrorOutOfMemory => c"knpuErrorOutOfMemory",
        knpuErrorNotSupported => c"knpuErrorNotSupported",
        knpuErrorIllegalAddress => c"knpuErrorIllegalAddress",
        knpuErrorKernelFault => c"knpuErrorKernelFault",
        knpuErrorDeviceLost => c"knpuErrorDeviceLost",
        knpuErrorTimeout => c"knpuErrorTimeout",
        knpuErrorAbiMismatch => c"knpuErrorAbiMismatch",
        knpuErrorInternal => c"knpuErrorInternal",
        knpuErrorDependencyFailed => c"knpuErrorDependencyFailed",
        knpuErrorDriverLoad => c"knpuErrorDriverLoad",
        knpuErrorNotReady => c"knpuErrorNotReady",
        knpuErrorShape => c"knpuErrorShape",
        knpuErrorDtype => c"knpuErrorDtype",
        knpuErrorDeviceMismatch => c"knpuErrorDeviceMismatch",
        knpuErrorStreamCapture => c"knpuErrorStreamCapture",
        knpuErrorGraphUpdate => c"knpuErrorGraphUpdate",
        _ => c"knpuErrorUnknown",
    }
}

fn description(code: knpuError_t) -> &'static CStr {
    match code {
        knpuSuccess => c"no error",
        knpuErrorInvalidValue => {
            c"invalid value: an argument is out of range, NULL, or a device pointer outside a live allocation"
        }
        knpuErrorInvalidHandle => c"invalid handle: NULL, unknown or destroyed",
        knpuErrorOutOfMemory => c"out of device memory",
        knpuErrorNotSupported => c"not supported by this device or driver",
        knpuErrorIllegalAddress => {
            c"illegal address: queued work addressed memory outside every live allocation"
        }
        knpuErrorKernelFault => c"a kernel failed while it ran",
        knpuErrorDeviceLost => c"the device was lost",
        knpuErrorTimeout => c"a wait timed out",
        knpuErrorAbiMismatch => c"a driver speaks another driver ABI major",
        knpuErrorInternal => c"internal error in knpu or a driver",
        knpuErrorDependencyFailed => c"work did not run because work it waited on failed",
        knpuErrorDriverLoad => c"a driver library could not be loaded",
        knpuErrorNotReady => c"the work has not completed yet",
        knpuErrorShape => c"an operand's shape does not fit the operation",
        knpuErrorDtype => c"an operand's element type does not fit the operation",
        knpuErrorDeviceMismatch => c"operands belong to different devices",
        knpuErrorStreamCapture => c"not allowed during a stream capture, or the capture failed",
        knpuErrorGraphUpdate => c"the graph update could not be applied",
        _ => c"unknown error code",
    }
}

/// Returns and clears this thread's last error.
#[no_mangle]
pub extern "C" fn knpuGetLastError() -> knpuError_t {
    LAST.try_with(|l| l.replace(knpuSuccess))
        .unwrap_or(knpuSuccess)
}

/// Returns this thread's last error without clearing it.
#[no_mangle]
pub extern "C" fn knpuPeekAtLastError() -> knpuError_t {
    LAST.try_with(Cell::get).unwrap_or(knpuSuccess)
}

/// The code's name; static storage.
#[no_mangle]
pub extern "C" fn knpuGetErrorName(error: knpuError_t) -> *const c_char {
    name(error).as_ptr()
}

/// The most recent failure's message when it had this code, else a static description.
#[no_mangle]
pub extern "C" fn knpuGetErrorString(error: knpuError_t) -> *const c_char {
    let detailed = MESSAGE
        .try_with(|m| {
            let m = m.borrow();
            // The CString's heap block stays put until the next failure on this thread
            // replaces it, which is the lifetime knpu.h documents.
            (m.0 == error && error != knpuSuccess && !m.1.as_bytes().is_empty())
                .then(|| m.1.as_ptr())
        })
        .ok()
        .flatten();
    detailed.unwrap_or_else(|| description(error).as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of each runtime code: its header constant must carry the runtime's name.
    #[test]
    fn every_runtime_code_has_its_header_name() {
        let s = || String::new();
        let all = [
            Error::InvalidValue { detail: s() },
            Error::InvalidHandle { detail: s() },
            Error::OutOfMemory {
                device: 0,
                requested: 0,
                allocated: 0,
                reserved: 0,
                free: 0,
                total: 0,
            },
            Error::NotSupported { detail: s() },
            Error::IllegalAddress { message: s() },
            Error::KernelFault { message: s() },
            Error::DeviceLost { message: s() },
            Error::Timeout { detail: s() },
            Error::AbiMismatch {
                driver: s(),
                driver_major: 0,
                driver_minor: 0,
                runtime_major: 0,
                runtime_minor: 0,
            },
            Error::Internal { detail: s() },
            Error::DependencyFailed { message: s() },
            Error::DriverLoad {
                path: s(),
                reason: s(),
            },
            Error::NotReady { detail: s() },
            Error::Shape {
                operand: "x",
                expected: s(),
                actual: s(),
            },
            Error::Dtype {
                operand: "x",
                expected: s(),
                actual: s(),
            },
            Error::DeviceMismatch {
                operand: "x",
                expected: 0,
                actual: 1,
            },
            Error::Capture { detail: s() },
            Error::GraphUpdate {
                result: knpu::GraphUpdateResult::TopologyChanged,
                node: None,
                detail: s(),
            },
        ];
        for e in &all {
            let header = name(e.code()).to_str().unwrap();
            let expected = match e.name() {
                "Capture" => "knpuErrorStreamCapture".to_string(),
                n => format!("knpuError{n}"),
            };
            assert_eq!(header, expected, "code {}", e.code());
        }
    }

    #[test]
    fn a_failure_sets_the_last_error_and_its_message() {
        let code = call(|| Err(invalid("the answer is 42")));
        assert_eq!(code, knpuErrorInvalidValue);
        assert_eq!(knpuPeekAtLastError(), knpuErrorInvalidValue);
        assert_eq!(knpuGetLastError(), knpuErrorInvalidValue);
        assert_eq!(knpuGetLastError(), knpuSuccess);
        // SAFETY: knpuGetErrorString returns a NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(knpuGetErrorString(code)) };
        assert!(msg.to_str().unwrap().contains("42"), "{msg:?}");
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let code = call(|| panic!("boom at the boundary"));
        assert_eq!(code, knpuErrorInternal);
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(knpuGetErrorString(code)) };
        assert!(msg.to_str().unwrap().contains("boom at the boundary"));
    }
}
