//! The element types GEMM reads and writes: `f32`, `f16` and `bf16`.
//!
//! Inputs are widened to `f32` while they are packed and every product accumulates in `f32`;
//! an `f16` or `bf16` output is rounded once, when the finished tile is stored.

use half::{bf16, f16};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// The storage type of a GEMM operand, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top half of a binary32).
    Bf16,
}

impl Dtype {
    /// The lower-case name used in benchmark records (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// A type GEMM can read (A, B, C, residual) and write (C): `f32`, `f16` or `bf16`.
///
/// The trait is sealed: kernels rely on `DTYPE` naming the exact type, so they can read a
/// `*const Self` as `*const f32`, `*const u16` and so on.
pub trait Element: Copy + Send + Sync + Default + PartialEq + 'static + sealed::Sealed {
    /// The type as a value.
    const DTYPE: Dtype;
    /// Widens to `f32` (exact for all three types).
    fn to_f32(self) -> f32;
    /// Rounds from `f32` to nearest even (NaN stays NaN, overflow becomes infinity).
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f16 {
    const DTYPE: Dtype = Dtype::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Element for bf16 {
    const DTYPE: Dtype = Dtype::Bf16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
