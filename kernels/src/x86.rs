//! Short x86 intrinsic sequences that more than one kernel family's x86 path uses. Each is
//! `#[inline(always)]` so it compiles inside the caller's `#[target_feature]` function with
//! that function's instructions; it never checks the host itself.

use core::arch::x86_64::*;

/// The sum of the eight lanes of `v`.
///
/// # Safety
/// - The host supports AVX (and so SSE3).
#[inline(always)]
pub(crate) unsafe fn hsum256(v: __m256) -> f32 {
    // SAFETY: AVX and SSE3 are present (the caller's obligation).
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// The little-endian f16 at `p`, widened to f32.
///
/// # Safety
/// - Two bytes at `p` are readable.
/// - The host supports F16C.
#[inline(always)]
pub(crate) unsafe fn f16_one(p: *const u8) -> f32 {
    // SAFETY: two readable bytes (the caller's obligation); F16C is present (likewise).
    unsafe {
        let a = p.cast::<u16>().read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(a as i32)))
    }
}
