//! The AVX-512 path: 16-lane vectors, a 12 x 32 register tile (24 of the 32 zmm registers
//! accumulate), F16C-style `vcvtph2ps` widening for f16 and a shift for bf16.
//!
//! Everything here runs only after the safe layer has checked that the host has AVX-512
//! F/BW/DQ/VL, FMA and F16C.

use core::arch::x86_64::*;

use super::Simd;
use crate::gemm::element::{Dtype, Element};

/// The AVX-512 instruction set.
#[derive(Clone, Copy)]
pub(crate) struct Avx512;

// SAFETY: every method uses AVX-512F/BW/DQ/VL, FMA or F16C instructions only; the trait's
// contract makes callers check the host first.
unsafe impl Simd for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    const MR: usize = 12;
    const NR: usize = 32;
    // Deep k-blocks (measured best at 1024 on Zen 4): each C tile is updated fewer times,
    // and the B sliver (128 KiB) streams from L2 fast enough for the FMA rate.
    const KC: usize = 1024;
    const MC: usize = 48;
    const NC: usize = 3072;
    const GEMV_NB: usize = 64;

    #[inline(always)]
    unsafe fn zero() -> __m512 {
        // SAFETY: AVX-512F is present (trait contract).
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        // SAFETY: AVX-512F is present (trait contract).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees 16 readable floats at `p`.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: the caller guarantees 16 writable floats at `p`.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (trait contract).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (trait contract).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (trait contract).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        // SAFETY: AVX-512F is present (trait contract).
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    unsafe fn load_elem<T: Element>(p: *const T) -> __m512 {
        // SAFETY: `T::DTYPE` names `T` exactly (sealed trait), so the casts read 16 elements
        // of the right width, which the caller guarantees are readable.
        unsafe {
            match T::DTYPE {
                Dtype::F32 => _mm512_loadu_ps(p as *const f32),
                Dtype::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
                Dtype::Bf16 => {
                    let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn store_elem<T: Element>(p: *mut T, v: __m512) {
        // SAFETY: as in `load_elem`, with 16 writable elements at `p`.
        unsafe {
            match T::DTYPE {
                Dtype::F32 => _mm512_storeu_ps(p as *mut f32, v),
                Dtype::F16 => _mm256_storeu_si256(
                    p as *mut __m256i,
                    _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
                ),
                Dtype::Bf16 => {
                    let bits = _mm512_castps_si512(v);
                    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
                    let rounded =
                        _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
                    let rounded = _mm512_srli_epi32::<16>(rounded);
                    // A NaN keeps its sign and top payload bits and is made quiet, so
                    // rounding can never turn it into an infinity.
                    let quiet =
                        _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    let out = _mm512_mask_blend_epi32(nan, rounded, quiet);
                    _mm256_storeu_si256(p as *mut __m256i, _mm512_cvtepi32_epi16(out));
                }
            }
        }
    }

    simd_entry_points!(
        Avx512,
        attrs = [#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]],
        mr = 12,
        nv = 2,
        ragged = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
}
