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
