//! The AVX2 + FMA path: 8-lane vectors, a 6 x 16 register tile (12 of the 16 ymm registers
//! accumulate), `vcvtph2ps` (F16C) widening for f16 and a shift for bf16. It uses no AVX-512
//! instruction, so it runs on any x86-64 with AVX2, FMA and F16C.
//!
//! Everything here runs only after the safe layer has checked that the host has AVX2, FMA
//! and F16C.

use core::arch::x86_64::*;

use super::Simd;
use crate::gemm::element::{Dtype, Element};

/// The AVX2 + FMA + F16C instruction set.
#[derive(Clone, Copy)]
pub(crate) struct Avx2;

// SAFETY: every method uses AVX, AVX2, FMA or F16C instructions only; the trait's contract
// makes callers check the host first.
unsafe impl Simd for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    const MR: usize = 6;
    const NR: usize = 16;
    const KC: usize = 256;
    const MC: usize = 72;
    const NC: usize = 3072;
    const GEMV_NB: usize = 32;

    #[inline(always)]
    unsafe fn zero() -> __m256 {
        // SAFETY: AVX is present (trait contract).
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        // SAFETY: AVX is present (trait contract).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable floats at `p`.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the caller guarantees 8 writable floats at `p`.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA is present (trait contract).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (trait contract).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (trait contract).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: AVX is present (trait contract).
        unsafe { crate::x86::hsum256(v) }
    }
    #[inline(always)]
    unsafe fn load_elem<T: Element>(p: *const T) -> __m256 {
        // SAFETY: `T::DTYPE` names `T` exactly (sealed trait), so the casts read 8 elements of
        // the right width, which the caller guarantees are readable.
        unsafe {
            match T::DTYPE {
                Dtype::F32 => _mm256_loadu_ps(p as *const f32),
                Dtype::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                Dtype::Bf16 => {
                    let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
                }
            }
        }
    }
    #[inline(always)]
    unsafe fn store_elem<T: Element>(p: *mut T, v: __m256) {
        // SAFETY: as in `load_elem`, with 8 writable elements at `p`.
        unsafe {
            match T::DTYPE {
                Dtype::F32 => _mm256_storeu_ps(p as *mut f32, v),
                Dtype::F16 => _mm_storeu_si128(
                    p as *mut __m128i,
                    _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
                ),
                Dtype::Bf16 => {
                    let bits = _mm256_castps_si256(v);
                    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
                    let rounded =
                        _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
                    let rounded = _mm256_srli_epi32::<16>(rounded);
                    // A NaN keeps its sign and top payload bits and is made quiet.
                    let quiet =
                        _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x40));
                    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                    let out = _mm256_blendv_epi8(rounded, quiet, nan);
                    // Values are below 0x10000, so the unsigned-saturating pack is exact; it
                    // interleaves 128-bit lanes, which the permute undoes.
                    let packed = _mm256_packus_epi32(out, out);
                    let packed = _mm256_permute4x64_epi64::<0b1000>(packed);
                    _mm_storeu_si128(p as *mut __m128i, _mm256_castsi256_si128(packed));
                }
            }
        }
    }

    simd_entry_points!(
        Avx2,
        attrs = [#[target_feature(enable = "avx2,fma,f16c")]],
        mr = 6,
        nv = 2,
        ragged = [1, 2, 3, 4, 5],
    );
}
