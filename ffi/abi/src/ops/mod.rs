//! The op definitions: for every kernel id, the rules its parameter struct must satisfy.
//!
//! This is the one place where each op's dtypes, shape and stride rules, byte extents, enums
//! and format tables are written. The runtime's launchers check their arguments with it
//! before they queue anything, the software NPU validates submitted parameter structs with
//! it, and the C API, Python and the benches convert enums through it. A driver may add its
//! own limits (a dtype it does not run, a size it cannot sum exactly), never relax these.
//!
//! The shape of the API, per op family:
//! - an enum per ABI enum (`QuantFormat`, `Activation`, `RopeStyle`, `Broadcast`, ...) with
//!   `TryFrom<u32>` (an unknown number is [`OpError::UnknownValue`]), `raw()` for the
//!   header's number, `name()` and `from_name()`;
//! - a validation function per parameter struct (`gemm::validate(&KnpuGemmParams)`,
//!   `quant::validate_qmatmul(&KnpuQMatmulParams)`, ...) returning `Result<Extents, OpError>`
//!   (with the decoded enums where the op has them): every shape product and byte extent is
//!   computed with overflow checks, and [`Extents`] lists the byte extent of every operand
//!   the op touches, by operand name, without allocating;
//! - the rules those functions are made of, public so that a launcher can check its own
//!   arguments with the same code (`gemm::matrix_elems`, `attention::check_heads`,
//!   `llm::check_rope`, `quant::scales_extent`, ...);
//! - [`OpError`] names the operand or field at fault and maps to one `KnpuStatus`.
//!
//! Nothing here allocates, so launchers may validate on their hot path.

pub mod attention;
pub mod elementwise;
mod enums;
mod extent;
pub mod gemm;
pub mod llm;
pub mod quant;
pub mod sample;

pub use enums::{
    ActQuant, Activation, BinaryOp, Broadcast, ElementwiseOp, QuantFormat, RopeStyle, RowScales,
};
pub use extent::{Extent, Extents, MAX_OPERANDS};

use crate::sys::*;

/// Why a parameter struct breaks its op's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpError {
    /// An enum field holds a number the header does not define.
    UnknownValue {
        /// The field, e.g. `"format"`.
        field: &'static str,
        /// The number found.
        value: u32,
    },
    /// An operand's dtype is not one the op takes.
    Dtype {
        /// The operand.
        operand: &'static str,
        /// The `KnpuDtype` number found.
        dtype: u32,
        /// The dtypes the op takes there, e.g. `"f32, f16 or bf16"`.
        expected: &'static str,
    },
    /// A shape product or byte extent overflows 64 bits or the host's address space.
    Overflow {
        /// The operand whose extent overflows.
        operand: &'static str,
    },
    /// A shape, stride or scalar breaks a rule of the op.
    Rule {
        /// The operand or field at fault.
        operand: &'static str,
        /// The rule, e.g. `"row length must be a multiple of the block size"`.
        rule: &'static str,
    },
    /// A non-empty operand's address is 0 or not a multiple of its element size.
    Address {
        /// The operand.
        operand: &'static str,
        /// The address found.
        addr: u64,
    },
    /// Two operands overlap where the op forbids it.
    Overlap {
        /// The output.
        output: &'static str,
        /// The operand it overlaps.
        other: &'static str,
    },
    /// The combination is valid ABI but the op does not define it (for example INT8
    /// activation quantisation of FP8 weights).
    Unsupported {
        /// The operand or field.
        operand: &'static str,
        /// What is not supported.
        what: &'static str,
    },
    /// The parameter struct is shorter than the op requires or its `struct_size` is wrong.
    StructSize,
}

impl OpError {
    /// The status a driver returns for this error at submit.
    pub fn status(&self) -> KnpuStatus {
        match self {
            OpError::Dtype { .. } | OpError::Unsupported { .. } => KNPU_STATUS_NOT_SUPPORTED,
            _ => KNPU_STATUS_INVALID_VALUE,
        }
    }

    /// The operand or field the error names, if any.
    pub fn operand(&self) -> Option<&'static str> {
        match *self {
            OpError::UnknownValue { field, .. } => Some(field),
            OpError::Dtype { operand, .. }
            | OpError::Overflow { operand }
            | OpError::Rule { operand, .. }
            | OpError::Address { operand, .. }
            | OpError::Unsupported { operand, .. } => Some(operand),
            OpError::Overlap { output, .. } => Some(output),
            OpError::StructSize => None,
        }
    }
}

impl core::fmt::Display for OpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpError::UnknownValue { field, value } => {
                write!(f, "field `{field}`: {value} is not a defined value")
            }
            OpError::Dtype {
                operand,
                dtype,
                expected,
            } => write!(
                f,
                "operand `{operand}`: dtype {} is not {expected}",
                dtype_name(*dtype)
            ),
            OpError::Overflow { operand } => {
                write!(
                    f,
                    "operand `{operand}`: its size overflows the address space"
                )
            }
            OpError::Rule { operand, rule } => write!(f, "operand `{operand}`: {rule}"),
            OpError::Address { operand, addr } => write!(
                f,
                "operand `{operand}`: address {addr:#x} is 0 or not aligned to its element size"
            ),
            OpError::Overlap { output, other } => {
                write!(f, "output `{output}` overlaps operand `{other}`")
            }
            OpError::Unsupported { operand, what } => {
                write!(f, "operand `{operand}`: {what} is not supported")
            }
            OpError::StructSize => write!(f, "the parameter struct's struct_size is wrong"),
        }
    }
}

impl std::error::Error for OpError {}

/// The name of a `KnpuDtype` number (`"unknown"` for others).
pub fn dtype_name(dtype: u32) -> &'static str {
    match dtype {
        KNPU_DTYPE_F32 => "f32",
        KNPU_DTYPE_F16 => "f16",
        KNPU_DTYPE_BF16 => "bf16",
        KNPU_DTYPE_F64 => "f64",
        KNPU_DTYPE_I8 => "i8",
        KNPU_DTYPE_U8 => "u8",
        KNPU_DTYPE_I32 => "i32",
        KNPU_DTYPE_U32 => "u32",
        KNPU_DTYPE_I64 => "i64",
        _ => "unknown",
    }
}

/// Bytes per element of a `KnpuDtype` number, `None` for an unknown one.
#[inline]
pub fn dtype_size(dtype: u32) -> Option<u64> {
    Some(match dtype {
        KNPU_DTYPE_F64 | KNPU_DTYPE_I64 => 8,
        KNPU_DTYPE_F32 | KNPU_DTYPE_I32 | KNPU_DTYPE_U32 => 4,
        KNPU_DTYPE_F16 | KNPU_DTYPE_BF16 => 2,
        KNPU_DTYPE_I8 | KNPU_DTYPE_U8 => 1,
        _ => return None,
    })
}

/// What the float ops take: F32, F16 or BF16 (computed in f32).
pub const FLOAT_DTYPES: &str = "f32, f16 or bf16";

/// Whether `dtype` is a storage dtype of the float ops (F32, F16 or BF16).
#[inline]
pub fn is_float(dtype: u32) -> bool {
    matches!(dtype, KNPU_DTYPE_F32 | KNPU_DTYPE_F16 | KNPU_DTYPE_BF16)
}

/// The element size of float operand `operand` of dtype `dtype`, or [`OpError::Dtype`].
#[inline]
pub fn float_size(operand: &'static str, dtype: u32) -> Result<u64, OpError> {
    if is_float(dtype) {
        dtype_size(dtype).ok_or(OpError::Overflow { operand })
    } else {
        Err(OpError::Dtype {
            operand,
            dtype,
            expected: FLOAT_DTYPES,
        })
    }
}

/// `Ok` when `holds`, else [`OpError::Rule`]: `operand` breaks `rule`.
pub fn rule(holds: bool, operand: &'static str, rule: &'static str) -> Result<(), OpError> {
    if holds {
        Ok(())
    } else {
        Err(OpError::Rule { operand, rule })
    }
}

/// A reserved field: 0.
pub fn check_reserved(value: u32) -> Result<(), OpError> {
    rule(value == 0, "reserved", "reserved fields must be 0")
}

/// The product of `dims` for operand `operand`: [`OpError::Overflow`] when it overflows or
/// does not fit the host's `usize`.
#[inline]
pub fn product(operand: &'static str, dims: &[u64]) -> Result<u64, OpError> {
    let n = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or(OpError::Overflow { operand })?;
    usize::try_from(n).map_err(|_| OpError::Overflow { operand })?;
    Ok(n)
}

/// Elements a strided view with `(extent, stride)` axes addresses: `1 + sum (extent - 1) *
/// stride`, 0 when any extent is 0; [`OpError::Overflow`] naming `operand` on overflow.
pub fn strided_span(operand: &'static str, axes: &[(u64, u64)]) -> Result<u64, OpError> {
    if axes.iter().any(|&(n, _)| n == 0) {
        return Ok(0);
    }
    let last = axes.iter().try_fold(0u64, |last, &(n, stride)| {
        (n - 1).checked_mul(stride)?.checked_add(last)
    });
    let elems = last
        .and_then(|l| l.checked_add(1))
        .ok_or(OpError::Overflow { operand })?;
    usize::try_from(elems).map_err(|_| OpError::Overflow { operand })?;
    Ok(elems)
}
