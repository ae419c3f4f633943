//! `knpublas.h`: GEMM in the style of cuBLAS, on the runtime's GEMM launcher.
//!
//! The one rule this layer adds is the column-major mapping: cuBLAS's column-major
//! `C = op(A) op(B)` is, read row-major, `C^T = op(B)^T op(A)^T`, so the launcher gets B as its
//! `a`, A as its `b`, `n` as its `m` and `m` as its `n`, with the transposes, leading
//! dimensions and batch strides following their matrices. Besides that it makes only
//! cuBLAS's own argument checks (negative sizes, leading dimensions below the stored rows,
//! enum values); every shape, extent and dtype rule is the launcher's, and its errors come
//! back with the operands named as the caller knows them.
//!
//! Statuses are cuBLAS's; the runtime error behind a failure is also this thread's knpu
//! last error, so its message is at `knpuGetErrorString(knpuGetLastError())`.

use crate::error::{call, invalid, out_ptr, write_out, Result};
use crate::handles::Table;
use crate::header::*;
use crate::memory::{allocations, resolve_in};
use crate::stream::STREAMS;
use knpu::ops::{self, Gemm, GemmDtypes};
use knpu::{Device, Error, Stream};
use std::ffi::{c_char, c_int, c_longlong, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A knpublas handle: its device and the stream set on it.
struct Context {
    device: Device,
    /// The `knpuStream_t` set by knpublasSetStream (0: the device's default stream). Kept
    /// as the raw handle and looked up at each call, so a destroyed stream is refused.
    stream: AtomicU64,
}

static HANDLES: Table<Arc<Context>> = Table::new(5, "knpublas");

/// A knpublas call's status for the runtime error code it ended with.
fn status_of(code: knpuError_t) -> knpublasStatus_t {
    match code {
        knpuSuccess => KNPUBLAS_STATUS_SUCCESS,
        knpuErrorInvalidHandle => KNPUBLAS_STATUS_NOT_INITIALIZED,
        knpuErrorOutOfMemory => KNPUBLAS_STATUS_ALLOC_FAILED,
        knpuErrorInvalidValue | knpuErrorShape | knpuErrorDeviceMismatch => {
            KNPUBLAS_STATUS_INVALID_VALUE
        }
        knpuErrorNotSupported | knpuErrorDtype => KNPUBLAS_STATUS_NOT_SUPPORTED,
        knpuErrorInternal => KNPUBLAS_STATUS_INTERNAL_ERROR,
        _ => KNPUBLAS_STATUS_EXECUTION_FAILED,
    }
}

/// Runs a knpublas call's body through [`call`] (panics caught, last error set).
fn blas(body: impl FnOnce() -> Result<()>) -> knpublasStatus_t {
    status_of(call(body))
}

fn context(handle: knpublasHandle_t) -> Result<Arc<Context>> {
    HANDLES.get(handle as u64)
}

impl Context {
    /// The stream work is queued on now.
    fn stream(&self) -> Result<Stream> {
        let raw = self.stream.load(Ordering::Acquire);
        if raw == 0 {
            return Ok(self.device.default_stream()?.clone());
        }
        STREAMS.get(raw)
    }
}

/// The stream a handle's work is queued on now, looked up without keeping the handle.
fn handle_stream(handle: knpublasHandle_t) -> Result<Stream> {
    HANDLES.with(handle as u64, |ctx| ctx.stream())?
}

/// Creates a handle on the current device.
///
/// # Safety
/// - `handle` is NULL or points to a writable `knpublasHandle_t`.
#[no_mangle]
pub unsafe extern "C" fn knpublasCreate(handle: *mut knpublasHandle_t) -> knpublasStatus_t {
    blas(|| {
        out_ptr(handle, "handle")?;
        let device = crate::device::current().map_err(|e| Error::InvalidHandle {
            detail: format!("knpublasCreate found no usable current device: {e}"),
        })?;
        let h = HANDLES.insert(Arc::new(Context {
            device,
            stream: AtomicU64::new(0),
        }));
        // SAFETY: checked by out_ptr; the caller promised a writable handle.
        unsafe { write_out(handle, "handle", h as knpublasHandle_t) }
    })
}

/// Destroys a handle.
#[no_mangle]
pub extern "C" fn knpublasDestroy(handle: knpublasHandle_t) -> knpublasStatus_t {
    blas(|| HANDLES.remove(handle as u64).map(drop))
}

/// Sets the handle's stream.
#[no_mangle]
pub extern "C" fn knpublasSetStream(
    handle: knpublasHandle_t,
    streamId: knpuStream_t,
) -> knpublasStatus_t {
    blas(|| {
        let ctx = context(handle)?;
        if !streamId.is_null() {
            let s = STREAMS
                .get(streamId as u64)
                .map_err(|e| invalid(format!("streamId: {e}")))?;
            let (sd, hd) = (s.device().ordinal(), ctx.device.ordinal());
            if sd != hd {
                return Err(invalid(format!(
                    "streamId is a stream of device {sd}; the handle was created on device {hd}"
                )));
            }
        }
        ctx.stream.store(streamId as u64, Ordering::Release);
        Ok(())
    })
}

/// The handle's stream.
///
/// # Safety
/// - `streamId` is NULL or points to a writable `knpuStream_t`.
#[no_mangle]
pub unsafe extern "C" fn knpublasGetStream(
    handle: knpublasHandle_t,
    streamId: *mut knpuStream_t,
) -> knpublasStatus_t {
    blas(|| {
        let raw = context(handle)?.stream.load(Ordering::Acquire);
        // SAFETY: the caller's promise on `streamId`.
        unsafe { write_out(streamId, "streamId", raw as knpuStream_t) }
    })
}

/// The status's name.
#[no_mangle]
pub extern "C" fn knpublasGetStatusName(status: knpublasStatus_t) -> *const c_char {
    status_text(status).0.as_ptr()
}

/// A description of the status.
#[no_mangle]
pub extern "C" fn knpublasGetStatusString(status: knpublasStatus_t) -> *const c_char {
    status_text(status).1.as_ptr()
}

fn status_text(status: knpublasStatus_t) -> (&'static CStr, &'static CStr) {
    match status {
        KNPUBLAS_STATUS_SUCCESS => (c"KNPUBLAS_STATUS_SUCCESS", c"success"),
        KNPUBLAS_STATUS_NOT_INITIALIZED => (
            c"KNPUBLAS_STATUS_NOT_INITIALIZED",
            c"the handle is NULL, unknown or destroyed",
        ),
        KNPUBLAS_STATUS_ALLOC_FAILED => (
            c"KNPUBLAS_STATUS_ALLOC_FAILED",
            c"device memory is exhausted",
        ),
        KNPUBLAS_STATUS_INVALID_VALUE => (
            c"KNPUBLAS_STATUS_INVALID_VALUE",
            c"an argument is out of range or inconsistent",
        ),
        KNPUBLAS_STATUS_EXECUTION_FAILED => (
            c"KNPUBLAS_STATUS_EXECUTION_FAILED",
            c"the device could not run the work",
        ),
        KNPUBLAS_STATUS_INTERNAL_ERROR => (
            c"KNPUBLAS_STATUS_INTERNAL_ERROR",
            c"internal error in knpu or a driver",
        ),
        KNPUBLAS_STATUS_NOT_SUPPORTED => (
            c"KNPUBLAS_STATUS_NOT_SUPPORTED",
            c"the types, compute type or option are not supported",
        ),
        _ => (c"KNPUBLAS_STATUS_UNKNOWN", c"unknown status code"),
    }
}

/// An element type of the *Ex functions.
#[derive(Clone, Copy)]
enum Elem {
    F32,
    F16,
    Bf16,
}

impl Elem {
    fn from_raw(t: knpuDataType_t, what: &str) -> Result<Elem> {
        match t {
            KNPU_R_32F => Ok(Elem::F32),
            KNPU_R_16F => Ok(Elem::F16),
            KNPU_R_16BF => Ok(Elem::Bf16),
            other => Err(Error::NotSupported {
                detail: format!(
                    "{what} {other} is not a type knpublas knows (KNPU_R_32F, KNPU_R_16F, \
                     KNPU_R_16BF)"
                ),
            }),
        }
    }

    /// The `KnpuDtype` number.
    fn abi(self) -> u32 {
        match self {
            Elem::F32 => knpu::abi::KNPU_DTYPE_F32,
            Elem::F16 => knpu::abi::KNPU_DTYPE_F16,
            Elem::Bf16 => knpu::abi::KNPU_DTYPE_BF16,
        }
    }
}

/// A GEMM call in cuBLAS's terms (column-major), before the mapping.
struct BlasGemm {
    transa: knpublasOperation_t,
    transb: knpublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    a: *const c_void,
    a_type: Elem,
    lda: c_int,
    stride_a: c_longlong,
    b: *const c_void,
    b_type: Elem,
    ldb: c_int,
    stride_b: c_longlong,
    beta: *const c_void,
    c: *mut c_void,
    c_type: Elem,
    ldc: c_int,
    stride_c: c_longlong,
    batch: c_int,
}

/// Whether an operation transposes; KNPUBLAS_OP_C is KNPUBLAS_OP_T for real types.
fn transposed(op: knpublasOperation_t, what: &str) -> Result<bool> {
    match op {
        KNPUBLAS_OP_N => Ok(false),
        KNPUBLAS_OP_T | KNPUBLAS_OP_C => Ok(true),
        other => Err(invalid(format!(
            "{what} {other} is not a knpublasOperation_t"
        ))),
    }
}

/// Reads a host scalar (`alpha`, `beta`): not NULL, aligned.
fn scalar(p: *const c_void, what: &str) -> Result<f32> {
    let p = out_ptr(p as *mut f32, what)?;
    // SAFETY: non-null and aligned (checked); the caller passes a pointer to a float.
    Ok(unsafe { p.read() })
}

/// cuBLAS's own argument check of a leading dimension: at least max(1, rows as stored).
fn check_ld(name: &str, ld: c_int, rows: c_int, rows_name: &str) -> Result<()> {
    if ld < rows.max(1) {
        return Err(invalid(format!(
            "{name} = {ld} is less than max(1, {rows_name} = {rows}), the rows of the \
             column-major matrix as stored"
        )));
    }
    Ok(())
}

fn stride(s: c_longlong, name: &str) -> Result<usize> {
    usize::try_from(s).map_err(|_| Error::NotSupported {
        detail: format!("{name} = {s}: knpublas takes batch strides >= 0"),
    })
}

/// Names the runtime's operands as the caller knows them (its `a` is the caller's B), or
/// says in which view a message names them.
fn column_major(mut e: Error) -> Error {
    let swap = |operand: &'static str| match operand {
        "a" => "B",
        "b" => "A",
        "c" => "C",
        other => other,
    };
    let view = "in the row-major view C^T = op(B)^T op(A)^T, whose m is n, whose n is m, \
                whose a is B and whose b is A";
    match &mut e {
        Error::Shape {
            operand, expected, ..
        }
        | Error::Dtype {
            operand, expected, ..
        } => {
            *operand = swap(operand);
            *expected = format!("{expected} ({view})");
        }
        Error::DeviceMismatch { operand, .. } => *operand = swap(operand),
        // The launcher's other refusals (a misaligned operand, overlapping batches of C)
        // name its operands and fields in the row-major view: say which view that is.
        Error::InvalidValue { detail } => *detail = format!("{detail} ({view})"),
        _ => {}
    }
    e
}

impl BlasGemm {
    /// The error for the first negative size.
    #[cold]
    fn negative(&self) -> Error {
        let sizes = [
            ("m", self.m),
            ("n", self.n),
            ("k", self.k),
            ("batchCount", self.batch),
        ];
        match sizes.into_iter().find(|&(_, v)| v < 0) {
            Some((name, v)) => invalid(format!("{name} = {v} is negative")),
            None => Error::Internal {
                detail: "a size was refused as negative but none is".into(),
            },
        }
    }

    /// Checks what cuBLAS checks, maps the call to the runtime's row-major launcher and
    /// queues it on `stream`, the handle's.
    fn run(self, stream: Stream) -> Result<()> {
        let ta = transposed(self.transa, "transa")?;
        let tb = transposed(self.transb, "transb")?;
        if self.m < 0 || self.n < 0 || self.k < 0 || self.batch < 0 {
            return Err(self.negative());
        }
        let (a_rows, a_rows_name) = if ta { (self.k, "k") } else { (self.m, "m") };
        let (b_rows, b_rows_name) = if tb { (self.n, "n") } else { (self.k, "k") };
        check_ld("lda", self.lda, a_rows, a_rows_name)?;
        check_ld("ldb", self.ldb, b_rows, b_rows_name)?;
        check_ld("ldc", self.ldc, self.m, "m")?;
        let alpha = scalar(self.alpha, "alpha")?;
        let beta = scalar(self.beta, "beta")?;
        let (stride_a, stride_b, stride_c) = (
            stride(self.stride_a, "strideA")?,
            stride(self.stride_b, "strideB")?,
            stride(self.stride_c, "strideC")?,
        );
        if self.m == 0 || self.n == 0 || self.batch == 0 {
            return Ok(());
        }
        let g = Gemm {
            m: self.n as usize,
            n: self.m as usize,
            k: self.k as usize,
            trans_a: tb,
            trans_b: ta,
            lda: self.ldb as usize,
            ldb: self.lda as usize,
            ldc: self.ldc as usize,
            batch: self.batch as usize,
            stride_a: stride_b,
            stride_b: stride_a,
            stride_c,
            alpha,
            beta,
        };
        let dtypes = GemmDtypes {
            a: self.b_type.abi(),
            b: self.a_type.abi(),
            c: self.c_type.abi(),
        };
        // Each matrix runs from its pointer to the end of its allocation: the launcher
        // checks the extent its shape needs against that.
        let [b, a, c] = {
            let table = allocations();
            [
                resolve_in(&table, self.b, 0, "B")?,
                resolve_in(&table, self.a, 0, "A")?,
                resolve_in(&table, self.c, 0, "C")?,
            ]
        };
        ops::gemm_bytes(&stream, &g, dtypes, b.operand(), a.operand(), c.operand())
            .map_err(column_major)
    }
}

fn compute_type(t: knpublasComputeType_t) -> Result<()> {
    if t != KNPUBLAS_COMPUTE_32F {
        return Err(Error::NotSupported {
            detail: format!(
                "computeType {t}: knpublas computes in f32 only (KNPUBLAS_COMPUTE_32F)"
            ),
        });
    }
    Ok(())
}

fn algo(a: knpublasGemmAlgo_t) -> Result<()> {
    if a != KNPUBLAS_GEMM_DEFAULT && a != KNPUBLAS_GEMM_DEFAULT_TENSOR_OP {
        return Err(invalid(format!(
            "algo {a} is not KNPUBLAS_GEMM_DEFAULT or KNPUBLAS_GEMM_DEFAULT_TENSOR_OP"
        )));
    }
    Ok(())
}

/// `C = alpha op(A) op(B) + beta C` in f32, column-major.
///
/// # Safety
/// - `alpha` and `beta` are NULL or point to readable floats. A, B and C are device
///   pointers, checked by the library.
#[no_mangle]
pub unsafe extern "C" fn knpublasSgemm(
    handle: knpublasHandle_t,
    transa: knpublasOperation_t,
    transb: knpublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const f32,
    A: *const f32,
    lda: c_int,
    B: *const f32,
    ldb: c_int,
    beta: *const f32,
    C: *mut f32,
    ldc: c_int,
) -> knpublasStatus_t {
    // SAFETY: the caller's promises are this function's.
    unsafe {
        knpublasSgemmStridedBatched(
            handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1,
        )
    }
}

/// `C = alpha op(A) op(B) + beta C` with run-time element types, column-major.
///
/// # Safety
/// - As [`knpublasSgemm`].
#[no_mangle]
pub unsafe extern "C" fn knpublasGemmEx(
    handle: knpublasHandle_t,
    transa: knpublasOperation_t,
    transb: knpublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    A: *const c_void,
    Atype: knpuDataType_t,
    lda: c_int,
    B: *const c_void,
    Btype: knpuDataType_t,
    ldb: c_int,
    beta: *const c_void,
    C: *mut c_void,
    Ctype: knpuDataType_t,
    ldc: c_int,
    computeType: knpublasComputeType_t,
    algo_: knpublasGemmAlgo_t,
) -> knpublasStatus_t {
    // SAFETY: the caller's promises are this function's.
    unsafe {
        knpublasGemmStridedBatchedEx(
            handle,
            transa,
            transb,
            m,
            n,
            k,
            alpha,
            A,
            Atype,
            lda,
            0,
            B,
            Btype,
            ldb,
            0,
            beta,
            C,
            Ctype,
            ldc,
            0,
            1,
            computeType,
            algo_,
        )
    }
}

/// `batchCount` f32 GEMMs, operands `stride*` elements apart, column-major.
///
/// # Safety
/// - As [`knpublasSgemm`].
#[no_mangle]
pub unsafe extern "C" fn knpublasSgemmStridedBatched(
    handle: knpublasHandle_t,
    transa: knpublasOperation_t,
    transb: knpublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const f32,
    A: *const f32,
    lda: c_int,
    strideA: c_longlong,
    B: *const f32,
    ldb: c_int,
    strideB: c_longlong,
    beta: *const f32,
    C: *mut f32,
    ldc: c_int,
    strideC: c_longlong,
    batchCount: c_int,
) -> knpublasStatus_t {
    blas(|| {
        let stream = handle_stream(handle)?;
        BlasGemm {
            transa,
            transb,
            m,
            n,
            k,
            alpha: alpha.cast(),
            a: A.cast(),
            a_type: Elem::F32,
            lda,
            stride_a: strideA,
            b: B.cast(),
            b_type: Elem::F32,
            ldb,
            stride_b: strideB,
            beta: beta.cast(),
            c: C.cast(),
            c_type: Elem::F32,
            ldc,
            stride_c: strideC,
            batch: batchCount,
        }
        .run(stream)
    })
}

/// `batchCount` GEMMs with run-time element types, operands `stride*` elements apart.
///
/// # Safety
/// - As [`knpublasSgemm`].
#[no_mangle]
pub unsafe extern "C" fn knpublasGemmStridedBatchedEx(
    handle: knpublasHandle_t,
    transa: knpublasOperation_t,
    transb: knpublasOperation_t,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    A: *const c_void,
    Atype: knpuDataType_t,
    lda: c_int,
    strideA: c_longlong,
    B: *const c_void,
    Btype: knpuDataType_t,
    ldb: c_int,
    strideB: c_longlong,
    beta: *const c_void,
    C: *mut c_void,
    Ctype: knpuDataType_t,
    ldc: c_int,
    strideC: c_longlong,
    batchCount: c_int,
    computeType: knpublasComputeType_t,
    algo_: knpublasGemmAlgo_t,
) -> knpublasStatus_t {
    blas(|| {
        let stream = handle_stream(handle)?;
        compute_type(computeType)?;
        algo(algo_)?;
        BlasGemm {
            transa,
            transb,
            m,
            n,
            k,
            alpha,
            a: A,
            a_type: Elem::from_raw(Atype, "Atype")?,
            lda,
            stride_a: strideA,
            b: B,
            b_type: Elem::from_raw(Btype, "Btype")?,
            ldb,
            stride_b: strideB,
            beta,
            c: C,
            c_type: Elem::from_raw(Ctype, "Ctype")?,
            ldc,
            stride_c: strideC,
            batch: batchCount,
        }
        .run(stream)
    })
}
