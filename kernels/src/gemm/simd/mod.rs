//! The vector operations GEMM is written in, one implementation per instruction set.
//!
//! The packing, microkernel, epilogue and GEMV loops are generic over [`Simd`] and marked
//! `#[inline(always)]`; each instruction set instantiates them inside its own
//! `#[target_feature]` entry points (`avx512.rs`, `avx2.rs`, `portable.rs`), so
//! the whole loop nest is compiled for that instruction set and nothing else. This module
//! must never be reached with a `Simd` whose instructions the host lacks: the safe layer in
//! `mod.rs` checks [`crate::Isa::is_supported`] first.

#[macro_use]
mod entry;
pub(crate) mod portable;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use crate::gemm::blocked::{Job, Task};
use crate::gemm::element::Element;
use crate::gemm::gemv::{GemvJob, GemvTask};
use crate::gemm::microkernel::MicroArgs;

/// One instruction set's vector type, operations and GEMM blocking.
///
/// # Safety
///
/// Every method may execute instructions of the implementing instruction set. Callers must
/// have checked that the host supports it. Pointer arguments must be valid for the number of
/// elements each method names (`LANES` for full-vector loads and stores).
pub(crate) unsafe trait Simd: Copy + Send + Sync + 'static {
    /// The `f32` vector.
    type V: Copy;
    /// `f32` lanes per vector (at most 16).
    const LANES: usize;
    /// Rows of the register tile (microkernel height).
    const MR: usize;
    /// Columns of the register tile, a multiple of `LANES`.
    const NR: usize;
    /// Depth of a packed panel (the L1/L2 block along k).
    const KC: usize;
    /// Rows of a packed A block (sized for L2).
    const MC: usize;
    /// Columns of a packed B block (sized for L3).
    const NC: usize;
    /// Columns a GEMV task covers per register block (a multiple of `LANES`).
    const GEMV_NB: usize;

    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// Loads `LANES` floats (any alignment).
    unsafe fn load(p: *const f32) -> Self::V;
    /// Stores `LANES` floats (any alignment).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of all lanes.
    unsafe fn hsum(v: Self::V) -> f32;
    /// Loads `LANES` elements of `T` and widens them to `f32`.
    unsafe fn load_elem<T: Element>(p: *const T) -> Self::V;
    /// Rounds `LANES` floats to `T` and stores them.
    unsafe fn store_elem<T: Element>(p: *mut T, v: Self::V);

    /// The microkernel on a packed A sliver (`args.a_rs`, `args.a_cs` are ignored).
    ///
    /// # Safety
    /// As [`super::microkernel::tile`] with `PACKED`: `a` holds `kc * MR` floats.
    unsafe fn microkernel(args: &MicroArgs);

    /// The microkernel reading A in place through `args.a_rs` and `args.a_cs`.
    ///
    /// # Safety
    /// As [`super::microkernel::tile`].
    unsafe fn microkernel_strided(args: &MicroArgs);

    /// The strided microkernel for `1 <= rows < MR` rows: a ragged last row sliver read in
    /// place, with no zero padding and no wasted multiplications. Only `rows` rows of `out`
    /// are written.
    ///
    /// # Safety
    /// As [`super::microkernel::tile`] with `MR = rows`; `1 <= rows < MR`.
    unsafe fn microkernel_strided_rows(args: &MicroArgs, rows: usize);

    /// Runs one task of a blocked GEMM (see `blocked.rs`) compiled for this instruction set.
    ///
    /// # Safety
    /// `job` was validated by the safe layer and no other running task writes the same part
    /// of C.
    unsafe fn gemm_task<TA: Element, TB: Element, TC: Element>(job: &Job<TA, TB, TC>, t: &Task);

    /// Runs one task of a GEMV-shaped problem (see `gemv.rs`).
    ///
    /// # Safety
    /// As for [`Simd::gemm_task`].
    unsafe fn gemv_task<TB: Element, TC: Element>(job: &GemvJob<TB, TC>, t: &GemvTask);

    /// Loads `n <= LANES` elements of `T`, zero in the other lanes.
    #[inline(always)]
    unsafe fn load_elem_partial<T: Element>(p: *const T, n: usize) -> Self::V {
        let mut buf = [T::default(); 16];
        // SAFETY: the caller guarantees `n` readable elements at `p`; `buf` has 16 >= n.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            Self::load_elem(buf.as_ptr())
        }
    }

    /// Rounds the first `n <= LANES` lanes to `T` and stores them.
    #[inline(always)]
    unsafe fn store_elem_partial<T: Element>(p: *mut T, v: Self::V, n: usize) {
        let mut buf = [T::default(); 16];
        // SAFETY: `buf` holds 16 >= LANES elements; the caller guarantees `n` writable at `p`.
        unsafe {
            Self::store_elem(buf.as_mut_ptr(), v);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }

    /// Widens `n` contiguous elements of `T` at `src` to `f32` at `dst`.
    #[inline(always)]
    unsafe fn widen_run<T: Element>(src: *const T, n: usize, dst: *mut f32) {
        let mut i = 0;
        // SAFETY: the caller guarantees `n` elements at both ends; every access is below `n`.
        unsafe {
            while i + Self::LANES <= n {
                Self::store(dst.add(i), Self::load_elem(src.add(i)));
                i += Self::LANES;
            }
            while i < n {
                *dst.add(i) = (*src.add(i)).to_f32();
                i += 1;
            }
        }
    }
}
