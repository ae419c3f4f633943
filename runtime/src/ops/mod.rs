//! Typed launchers of device kernels.
//!
//! Each launcher validates every operand — device, length or shape, dtype, and whether the
//! device runs the kernel — before anything is queued, so a mistake is an error at the call
//! and never a device fault or a silent fallback. Launchers return once the kernel is queued.

mod elementwise;
mod gemm;

pub use elementwise::{add, axpy, div, elementwise, mul, scale, sub, ElementwiseOp};
pub use gemm::{
    gemm, gemm_bytes, matmul, Activation, Gemm, GemmDtypes, GemmEpilogue, GemmResidual,
};

// Attention and key/value caches.
mod attention;
pub use attention::{
    attention, kv_append, paged_attention, paged_kv_append, AttentionArgs, AttnMask, AttnTensor,
    PagedAttentionArgs, PagedKvCache,
};

// LLM ops (`llm::Activation` is the same enum as GEMM's epilogue `Activation`).
pub mod llm;
pub use llm::{
    activation, argmax, binary, cast, embedding, layer_norm, rms_norm, rope, silu, softmax, swiglu,
    top_k, BinaryOp, Broadcast, Rope, RopePositions, RopeStyle,
};

// Sampling token ids on the device (driver ABI 2.1).
mod sample;
pub use sample::{sample, SampleParams, TokenId};

// Quantised weights (`QuantFormat`, `RowScales` and `ActQuant` are the op definitions' own,
// re-exported).
pub mod quant;
pub use quant::{
    dequantize, qembedding, qmatmul, quantize, w8a8_gemm, ActQuant, QMatmul, QWeights, QuantFormat,
    RowScales, W8A8Gemm,
};

use knpu_driver_abi::ops::{dtype_name, OpError};

use crate::buffer::{DeviceBuffer, DeviceSlice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;

/// An operand in untyped device memory, for front ends that hold memory as bytes (the C
/// API): the buffer that holds it and the byte offset at which it starts. The operand may use
/// the buffer from there to its end; the launcher checks the extent its shape needs against
/// that room, so the caller resolves only which buffer an address belongs to.
#[derive(Clone, Copy)]
pub struct ByteOperand<'a> {
    /// The buffer holding the operand.
    pub buffer: &'a DeviceBuffer<u8>,
    /// Bytes from the buffer's start to the operand's first element.
    pub offset: usize,
}

/// Checks that an operand lives on the stream's device.
pub(crate) fn same_device<T>(
    stream: &Stream,
    operand: &'static str,
    s: &DeviceSlice<'_, T>,
) -> Result<()> {
    if s.device() != stream.device() {
        return Err(Error::DeviceMismatch {
            operand,
            expected: stream.device().ordinal(),
            actual: s.device().ordinal(),
        });
    }
    Ok(())
}

/// Device memory a launch uses, whatever its element type: one launcher notes the use of
/// operands of several element types through one list.
pub(crate) trait Operand {
    /// Checks that it lives on the stream's device and holds exactly `dims` elements
    /// (`Error::Shape` naming `name` otherwise).
    fn check_shape(&self, stream: &Stream, name: &'static str, dims: &[usize]) -> Result<()>;

    /// Notes that queued work which completes at `value` on `stream` uses it.
    fn note(&self, stream: &Stream, value: u64);
}

impl<T> Operand for DeviceSlice<'_, T> {
    fn check_shape(&self, stream: &Stream, name: &'static str, dims: &[usize]) -> Result<()> {
        same_device(stream, name, self)?;
        if self.len() != elements(name, dims)? {
            return Err(Error::Shape {
                operand: name,
                expected: shape(dims),
                actual: shape(&[self.len()]),
            });
        }
        Ok(())
    }

    fn note(&self, stream: &Stream, value: u64) {
        self.note_use(stream, value);
    }
}

/// The elements of operand `name` of shape `dims`, or `Error::InvalidValue` naming the
/// operand when the product overflows.
fn elements(name: &'static str, dims: &[usize]) -> Result<usize> {
    // Shapes here have at most four dimensions; widened on the stack (no allocation).
    let mut wide = [0u64; 4];
    debug_assert!(dims.len() <= wide.len());
    for (w, &d) in wide.iter_mut().zip(dims) {
        *w = d as u64;
    }
    let n = knpu_driver_abi::ops::product(name, &wide[..dims.len()])
        .map_err(|e| Error::invalid(format!("{e}: shape {}", shape(dims))))?;
    Ok(n as usize)
}

/// `dims` written as a shape, `[2, 3]`.
fn shape(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Checks that `T` is a float storage type (f32, f16 or bf16) for operand `operand`.
pub(crate) fn float<T: DType>(operand: &'static str) -> Result<()> {
    knpu_driver_abi::ops::float_size(operand, T::ABI)?;
    Ok(())
}

/// Queues `params` for `kernel` and notes the use of every operand in `used` (`None`: an
/// optional operand that was not given).
pub(crate) fn submit<P>(
    stream: &Stream,
    kernel: u32,
    params: &P,
    used: &[Option<&dyn Operand>],
) -> Result<()> {
    let value = stream.launch_kernel(kernel, params)?;
    for u in used.iter().flatten() {
        u.note(stream, value);
    }
    Ok(())
}

/// An optional operand as an entry of [`submit`]'s use list.
pub(crate) fn optional<'s, T>(s: &'s Option<DeviceSlice<'_, T>>) -> Option<&'s dyn Operand> {
    s.as_ref().map(|s| s as &dyn Operand)
}

/// Checks that the stream's device runs `kernel` on `T`.
pub(crate) fn supported<T: DType>(stream: &Stream, kernel: u32, what: &str) -> Result<()> {
    supported_raw(stream, kernel, T::ABI, what)
}

/// Checks that the stream's device runs `kernel` on `KnpuDtype` number `dtype`.
pub(crate) fn supported_raw(stream: &Stream, kernel: u32, dtype: u32, what: &str) -> Result<()> {
    if !stream.device().supports_kernel(kernel, dtype)? {
        return Err(Error::NotSupported {
            detail: format!(
                "device {} ({}) has no {what} kernel for {}",
                stream.device().ordinal(),
                stream.device().name(),
                dtype_name(dtype)
            ),
        });
    }
    Ok(())
}

/// An op definition's verdict as the runtime's error: a dtype the op does not take is
/// `Error::Dtype`, a valid but unsupported combination `Error::NotSupported`, anything else
/// (overflow, a broken shape rule, an unknown enum value) `Error::InvalidValue` naming the
/// operand.
impl From<OpError> for Error {
    fn from(e: OpError) -> Error {
        match e {
            OpError::Dtype {
                operand,
                dtype,
                expected,
            } => Error::Dtype {
                operand,
                expected: expected.into(),
                actual: dtype_name(dtype).into(),
            },
            OpError::Unsupported { .. } => Error::NotSupported {
                detail: e.to_string(),
            },
            _ => Error::invalid(e.to_string()),
        }
    }
}
