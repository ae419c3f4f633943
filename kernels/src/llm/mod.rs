//! The small operations a transformer runs around its matmuls: normalisation, rotary
//! position embedding, activations, softmax, elementwise add/mul, embedding lookup, dtype
//! casts, argmax, top-k and sampling.
//!
//! Every op is generic over its element type ([`Element`]: `f32`, `f16`, `bf16`) and computes
//! in f32 whatever the storage type. Each takes, last, `exec: impl Into<Exec>`: a
//! [`Parallelism`] runs on the path [`isa::active`](crate::isa::active) picks, an
//! [`Exec`] names the path as well (tests force every path in
//! [`isa::supported`](crate::isa::supported)). Shapes are explicit;
//! slices may be longer than a shape needs but never shorter. Arguments are validated before
//! any element is written, so a bad call returns a [`KernelError`] and leaves outputs
//! untouched.
//!
//! These ops are bound by memory bandwidth, so the SIMD paths aim at one pass over memory per
//! input and output: a row is brought into cache once and reused by the passes a reduction
//! needs. f16 and bf16 rows are widened to f32 in a per-task scratch row, computed, and
//! narrowed once. With [`Parallelism::Rayon`] rows (or blocks of elements) are split across the
//! current rayon pool when the problem has more than [`PAR_MIN_ELEMENTS`] elements; smaller
//! problems run on the caller's thread, where waking a pool would cost more than it saves.
//!
//! # Accuracy
//!
//! Checked by `kernels/tests/llm` against f64 references over awkward shapes on every path,
//! for f32 storage (f16 and bf16 outputs may add half an ulp of their type, 2^-11 and 2^-8
//! relative, on top):
//!
//! | op | bound on \|got - exact\| |
//! |----|---------------------------|
//! | `rms_norm` | 5e-6 · \|exact\| |
//! | `layer_norm` | 1e-5 · (\|normalised term\| + \|bias\| + \|w·x/σ\|) (centring rounds relative to x) |
//! | `softmax` | 1e-5 · \|exact\| |
//! | `rope`, `rope_inplace` | 1e-6 · (\|x₁\| + \|x₂\|) of the rotated pair; unrotated elements exact |
//! | `silu`, `swiglu` | 1e-6 · \|exact\| |
//! | `gelu` (erf) | 2e-6 · \|exact\|, the negative tail included |
//! | `gelu` (tanh) | 5e-7 · \|exact\| · (1 + \|2y\|), y the tanh argument (exp's conditioning) |
//! | `add`, `mul` (and in place) | one f32 rounding |
//! | `cast`, `embedding` | exact conversion, round to nearest even (NaN stays NaN) |
//! | `argmax`, `top_k` | exact, in the order [`topk`] documents |
//! | `sample` | the id the rule in [`sample`](mod@sample) picks, probabilities in f64 |
//!
//! This module never allocates device memory and knows nothing of devices: it works on host
//! slices only.

pub mod activation;
pub mod cast;
pub mod elementwise;
pub mod embedding;
mod math;
pub mod norm;
pub mod rope;
pub mod sample;
pub mod softmax;
pub mod topk;

mod simd;

pub use activation::{gelu, silu, swiglu, GeluApprox};
pub use cast::{cast, f32_to_i32, i32_to_f32};
pub use elementwise::{add, add_inplace, mul, mul_inplace, Broadcast};
pub use embedding::embedding;
pub use norm::{layer_norm, rms_norm, NormWeights};
pub use rope::{rope, rope_inplace, RopeParams, RopePositions, RopeShape, RopeStyle};
pub use sample::{sample, SampleParams};
pub use softmax::softmax;
pub use topk::{argmax, top_k};

use crate::{Exec, Isa, KernelError, Parallelism};
use half::{bf16, f16};

/// Problems with more elements than this are split across the rayon pool when the caller
/// grants [`Parallelism::Rayon`]; smaller ones run on the caller's thread.
pub const PAR_MIN_ELEMENTS: usize = 64 * 1024;

/// The storage type of an op's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: the top half of an f32.
    Bf16,
}

impl DType {
    /// The lower-case name used in benchmark records and messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An element type the LLM ops store: `f32`, `f16` or `bf16` (sealed).
///
/// Ops compute in f32: rows are widened with [`Element::widen`] and narrowed with
/// [`Element::narrow`] (round to nearest even), both vectorised on the given path.
pub trait Element:
    sealed::Sealed + bytemuck::Pod + Send + Sync + std::fmt::Debug + 'static
{
    /// This type's tag.
    const DTYPE: DType;
    /// Converts one value to f32 (exact).
    fn to_f32(self) -> f32;
    /// Converts one f32 to this type, rounding to nearest even (NaN stays NaN).
    fn from_f32(v: f32) -> Self;
    /// Widens `src` into `dst[..src.len()]` on path `isa`.
    ///
    /// # Panics
    /// If `dst` is shorter than `src` (callers validate first).
    fn widen(isa: Isa, src: &[Self], dst: &mut [f32]);
    /// Narrows `src` into `dst[..src.len()]` on path `isa`, rounding to nearest even.
    ///
    /// # Panics
    /// If `dst` is shorter than `src` (callers validate first).
    fn narrow(isa: Isa, src: &[f32], dst: &mut [Self]);
    /// `s` itself when this type is f32: lets f32 ops skip the scratch row.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    /// `s` itself when this type is f32.
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
    fn widen(_isa: Isa, src: &[f32], dst: &mut [f32]) {
        dst[..src.len()].copy_from_slice(src);
    }
    fn narrow(_isa: Isa, src: &[f32], dst: &mut [f32]) {
        dst[..src.len()].copy_from_slice(src);
    }
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
}

/// `Element` for a 16-bit float type: conversions through the vectorised casts of [`cast`].
macro_rules! half_element {
    ($t:ident, $tag:ident, $widen:ident, $narrow:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$tag;
            #[inline]
            fn to_f32(self) -> f32 {
                $t::to_f32(self)
            }
            #[inline]
            fn from_f32(v: f32) -> Self {
                $t::from_f32(v)
            }
            fn widen(isa: Isa, src: &[$t], dst: &mut [f32]) {
                cast::$widen(isa, src, &mut dst[..src.len()]);
            }
            fn narrow(isa: Isa, src: &[f32], dst: &mut [$t]) {
                cast::$narrow(isa, src, &mut dst[..src.len()]);
            }
            fn as_f32(_: &[$t]) -> Option<&[f32]> {
                None
            }
            fn as_f32_mut(_: &mut [$t]) -> Option<&mut [f32]> {
                None
            }
        }
    };
}
half_element!(f16, F16, f16_to_f32, f32_to_f16);
half_element!(bf16, Bf16, bf16_to_f32, f32_to_bf16);

/// `rows * cols`, or an error if it overflows.
pub(crate) fn elements(rows: usize, cols: usize) -> Result<usize, KernelError> {
    rows.checked_mul(cols).ok_or_else(|| KernelError::BadShape {
        detail: format!("{rows} x {cols} elements overflow usize"),
    })
}

pub(crate) use crate::error::check_len;

/// Checks operand lengths in order: each `(name, needed, len)` holds at least `needed`
/// elements.
pub(crate) fn check_lens(operands: &[(&'static str, usize, usize)]) -> Result<(), KernelError> {
    for &(name, needed, len) in operands {
        check_len(name, needed, len)?;
    }
    Ok(())
}

/// Starts an op over `[rows, cols]`: checks that the chosen path runs on this machine and
/// that `rows * cols` fits; returns the path, the parallelism and `rows * cols`.
pub(crate) fn start_rows(
    exec: impl Into<Exec>,
    rows: usize,
    cols: usize,
) -> Result<(Isa, Parallelism, usize), KernelError> {
    let Exec { isa, par } = exec.into();
    isa.require()?;
    Ok((isa, par, elements(rows, cols)?))
}

/// A row of `T` seen as f32: the row itself for f32, else widened into `scratch`.
#[inline(always)]
pub(crate) fn f32_row<'a, T: Element>(
    isa: Isa,
    row: &'a [T],
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    match T::as_f32(row) {
        Some(r) => r,
        None => {
            scratch.resize(row.len(), 0.0);
            T::widen(isa, row, scratch);
            &scratch[..row.len()]
        }
    }
}

/// Whether a row of `T` is f32 (and so needs no scratch row).
#[inline(always)]
pub(crate) fn is_f32<T: Element>(_: &[T]) -> bool {
    T::DTYPE == DType::F32
}

/// Per-task scratch rows for widened inputs and outputs.
#[derive(Default)]
pub(crate) struct Scratch {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub out: Vec<f32>,
}

/// Calls `f(first_row, out_rows)` over `out`, `cols` elements per row: on the caller's thread,
/// or split into up to `par.threads()` row blocks on the current rayon pool when the problem
/// is big enough. `out` holds exactly `rows * cols` elements.
pub(crate) fn for_row_blocks<T: Send>(
    par: Parallelism,
    rows: usize,
    cols: usize,
    out: &mut [T],
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    for_row_blocks_work(par, rows, cols, rows * cols, out, f)
}

/// [`for_row_blocks`] for ops whose work is not the output size (argmax reads `work`
/// elements to write `rows`): the split depends on `work`.
pub(crate) fn for_row_blocks_work<T: Send>(
    par: Parallelism,
    rows: usize,
    cols: usize,
    work: usize,
    out: &mut [T],
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    debug_assert_eq!(out.len(), rows * cols);
    let tasks = par.threads().min(rows);
    if rows == 0 || cols == 0 {
        return;
    }
    if tasks <= 1 || work <= PAR_MIN_ELEMENTS {
        f(0, out);
        return;
    }
    let block_rows = rows.div_ceil(tasks);
    crate::par::for_each_chunk_mut(out, block_rows * cols, tasks, |first, block| {
        f(first / cols, block)
    });
}

/// Calls `f(first_index, out_block)` over a flat `out`: on the caller's thread, or split into
/// up to `par.threads()` blocks (multiples of 64 elements) when `out` is big enough.
pub(crate) fn for_flat_blocks<T: Send>(
    par: Parallelism,
    out: &mut [T],
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let n = out.len();
    let tasks = par.threads();
    if n == 0 {
        return;
    }
    if tasks <= 1 || n <= PAR_MIN_ELEMENTS {
        f(0, out);
        return;
    }
    let block = n.div_ceil(tasks).div_ceil(64) * 64;
    crate::par::for_each_chunk_mut(out, block, tasks, f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn blocks(par: Parallelism, rows: usize, cols: usize) -> (usize, Vec<usize>) {
        let calls = AtomicUsize::new(0);
        let mut out = vec![0u8; rows * cols];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            for_row_blocks(par, rows, cols, &mut out, |first, block| {
                calls.fetch_add(1, Ordering::Relaxed);
                for (r, row) in block.chunks_exact_mut(cols).enumerate() {
                    row.fill(((first + r) % 251) as u8);
                }
            })
        });
        // Every row was written once, with its own index.
        let rows_seen = out.chunks_exact(cols).map(|r| r[0] as usize).collect();
        (calls.into_inner(), rows_seen)
    }

    #[test]
    fn large_problems_split_rows_small_ones_do_not() {
        let want: Vec<usize> = (0..512).map(|r| r % 251).collect();
        assert_eq!(blocks(Parallelism::Rayon(2), 512, 4096), (2, want.clone()));
        assert_eq!(blocks(Parallelism::Rayon(0), 512, 4096), (2, want.clone()));
        assert_eq!(blocks(Parallelism::None, 512, 4096), (1, want));
        // At or below the threshold: the caller's thread only.
        assert_eq!(blocks(Parallelism::Rayon(2), 16, 4096).0, 1);
        // Never more blocks than rows.
        assert_eq!(blocks(Parallelism::Rayon(8), 3, 100_000).0, 3);
    }
}
