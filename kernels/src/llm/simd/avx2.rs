//! The AVX2 + FMA + F16C path of the LLM ops' vector abstraction: eight lanes in `__m256`.

use super::Simd;
use std::arch::x86_64::*;

/// The AVX2 + FMA + F16C path. Only `new_unchecked` makes one.
#[derive(Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The AVX2 token.
    ///
    /// # Safety
    /// - The host must support AVX2, FMA and F16C.
    #[inline(always)]
    pub(crate) unsafe fn new_unchecked() -> Avx2 {
        Avx2(())
    }
}

// The methods below are safe to call because a token exists only inside a function
// compiled for its path, on a host that supports its instructions; loads and stores check
// their slice lengths first.

impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;
    #[inline(always)]
    fn isa(self) -> crate::Isa {
        crate::Isa::Avx2
    }
    super::one_instruction! { __m256;
        add(a, b) => _mm256_add_ps;
        sub(a, b) => _mm256_sub_ps;
        mul(a, b) => _mm256_mul_ps;
        div(a, b) => _mm256_div_ps;
        fma(a, b, c) => _mm256_fmadd_ps;
        max(a, b) => _mm256_max_ps;
        min(a, b) => _mm256_min_ps;
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m256 {
        let s = &s[..8];
        // SAFETY: `s` has 8 readable f32s; AVX is present (token).
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m256, s: &mut [f32]) {
        let s = &mut s[..8];
        // SAFETY: `s` has 8 writable f32s; AVX is present (token).
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_part(self, s: &[f32], fill: f32) -> __m256 {
        let mut buf = [fill; 8];
        let n = s.len().min(8);
        buf[..n].copy_from_slice(&s[..n]);
        self.load(&buf)
    }
    #[inline(always)]
    fn store_part(self, v: __m256, s: &mut [f32]) {
        let mut buf = [0.0; 8];
        self.store(v, &mut buf);
        let n = s.len().min(8);
        s[..n].copy_from_slice(&buf[..n]);
    }
    #[inline(always)]
    fn abs(self, a: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[inline(always)]
    fn round(self, a: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn ldexp(self, p: __m256, n: __m256) -> __m256 {
        // SAFETY: AVX and AVX2 are present (token).
        unsafe {
            let half = _mm256_set1_ps(0.5);
            let n1 = self.round(_mm256_mul_ps(n, half));
            let n2 = _mm256_sub_ps(n, n1);
            let bias = _mm256_set1_epi32(127);
            let p1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n1),
                bias,
            )));
            let p2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n2),
                bias,
            )));
            _mm256_mul_ps(_mm256_mul_ps(p, p1), p2)
        }
    }
    #[inline(always)]
    fn lt_select(self, a: __m256, b: __m256, t: __m256, f: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_blendv_ps(f, t, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
    }
    #[inline(always)]
    fn reduce_add(self, a: __m256) -> f32 {
        // SAFETY: AVX is present (token).
        unsafe { crate::x86::hsum256(a) }
    }
    #[inline(always)]
    fn reduce_max(self, a: __m256) -> f32 {
        let mut buf = [0.0; 8];
        self.store(a, &mut buf);
        buf.iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    #[inline(always)]
    fn not_le_mask(self, a: __m256, b: __m256) -> u32 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLE_UQ>(a, b)) as u32 }
    }
    #[inline(always)]
    fn swap_pairs(self, a: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_permute_ps::<0b10_11_00_01>(a) }
    }
}
