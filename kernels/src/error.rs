//! The error every kernel returns when its arguments do not describe a valid problem.
//!
//! Kernels validate shapes, strides and slice lengths before they touch memory, so a bad
//! argument is an error, never an out-of-bounds read.

/// A kernel's arguments were rejected before any work was done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// A slice is shorter than its shape and strides require.
    SliceTooShort {
        /// Which operand (for example `"a"`, `"c"`, `"q"`).
        operand: &'static str,
        /// Elements the shape and strides address.
        required: usize,
        /// Elements the slice has.
        actual: usize,
    },
    /// A stride or leading dimension is smaller than the shape allows.
    BadStride {
        /// Which operand.
        operand: &'static str,
        /// What is wrong, in words.
        detail: String,
    },
    /// Shapes of two operands do not agree, or a size is not allowed.
    BadShape {
        /// What is wrong, in words.
        detail: String,
    },
    /// The kernel does not support this combination of types or options.
    Unsupported {
        /// What is not supported, in words.
        detail: String,
    },
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::SliceTooShort {
                operand,
                required,
                actual,
            } => write!(
                f,
                "operand `{operand}` needs {required} elements but its slice has {actual}"
            ),
            KernelError::BadStride { operand, detail } => {
                write!(f, "operand `{operand}` has a bad stride: {detail}")
            }
            KernelError::BadShape { detail } => write!(f, "bad shape: {detail}"),
            KernelError::Unsupported { detail } => write!(f, "unsupported: {detail}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// `Ok` when a slice of `actual` elements holds the `required` elements `operand`'s shape
/// addresses; the one length check every kernel family uses.
pub(crate) fn check_len(
    operand: &'static str,
    required: usize,
    actual: usize,
) -> Result<(), KernelError> {
    if actual < required {
        Err(KernelError::SliceTooShort {
            operand,
            required,
            actual,
        })
    } else {
        Ok(())
    }
}
