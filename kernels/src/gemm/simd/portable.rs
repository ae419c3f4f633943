//! The portable path: plain Rust over `[f32; 8]` "vectors", correct on any target. The
//! compiler vectorises what it can for the baseline instruction set; this path exists for
//! hosts without AVX2 and as the template a new instruction set starts from.

use super::Simd;
use crate::gemm::element::Element;

/// Plain Rust, any target.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

const L: usize = 8;

// SAFETY: no method executes anything but baseline instructions; pointer contracts are the
// trait's.
unsafe impl Simd for Portable {
    type V = [f32; L];
    const LANES: usize = L;
    const MR: usize = 4;
    const NR: usize = 8;
    const KC: usize = 256;
    const MC: usize = 64;
    const NC: usize = 2048;
    const GEMV_NB: usize = 32;

    #[inline(always)]
    unsafe fn zero() -> [f32; L] {
        [0.0; L]
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; L] {
        [x; L]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; L] {
        // SAFETY: the caller guarantees 8 readable floats at `p`.
        unsafe { core::ptr::read_unaligned(p as *const [f32; L]) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; L]) {
        // SAFETY: the caller guarantees 8 writable floats at `p`.
        unsafe { core::ptr::write_unaligned(p as *mut [f32; L], v) }
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; L], b: [f32; L], c: [f32; L]) -> [f32; L] {
        // Separate multiply and add: a true fused multiply-add is a slow library call on
        // targets without one, and the tolerance of every caller allows either.
        core::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn add(a: [f32; L], b: [f32; L]) -> [f32; L] {
        core::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; L], b: [f32; L]) -> [f32; L] {
        core::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn hsum(v: [f32; L]) -> f32 {
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }
    #[inline(always)]
    unsafe fn load_elem<T: Element>(p: *const T) -> [f32; L] {
        // SAFETY: the caller guarantees 8 readable elements at `p`.
        let v = unsafe { core::ptr::read_unaligned(p as *const [T; L]) };
        core::array::from_fn(|i| v[i].to_f32())
    }
    #[inline(always)]
    unsafe fn store_elem<T: Element>(p: *mut T, v: [f32; L]) {
        let out: [T; L] = core::array::from_fn(|i| T::from_f32(v[i]));
        // SAFETY: the caller guarantees 8 writable elements at `p`.
        unsafe { core::ptr::write_unaligned(p as *mut [T; L], out) }
    }

    simd_entry_points!(
        Portable,
        attrs = [#[inline(always)]],
        mr = 4,
        nv = 1,
        ragged = [1, 2, 3],
    );
}
