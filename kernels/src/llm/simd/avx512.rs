//! The AVX-512 path of the LLM ops' vector abstraction: sixteen lanes in `__m512`.

use super::Simd;
use std::arch::x86_64::*;

/// The AVX-512 F/BW/DQ/VL path. Only `new_unchecked` makes one.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The AVX-512 token.
    ///
    /// # Safety
    /// - The host must support AVX-512 F/BW/DQ/VL, AVX2, FMA and F16C.
    #[inline(always)]
    pub(crate) unsafe fn new_unchecked() -> Avx512 {
        Avx512(())
    }
}

// The methods below are safe to call because a token exists only inside a function
// compiled for its path, on a host that supports its instructions; loads and stores check
// their slice lengths first.

impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;
    #[inline(always)]
    fn isa(self) -> crate::Isa {
        crate::Isa::Avx512
    }
    super::one_instruction! { __m512;
        add(a, b) => _mm512_add_ps;
        sub(a, b) => _mm512_sub_ps;
        mul(a, b) => _mm512_mul_ps;
        div(a, b) => _mm512_div_ps;
        fma(a, b, c) => _mm512_fmadd_ps;
        max(a, b) => _mm512_max_ps;
        min(a, b) => _mm512_min_ps;
        abs(a) => _mm512_abs_ps;
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m512 {
        let s = &s[..16];
        // SAFETY: `s` has 16 readable f32s; AVX-512F is present (token).
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m512, s: &mut [f32]) {
        let s = &mut s[..16];
        // SAFETY: `s` has 16 writable f32s; AVX-512F is present (token).
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn load_part(self, s: &[f32], fill: f32) -> __m512 {
        let n = s.len().min(16);
        let k: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: the mask covers only the first `n` elements, which `s` has; masked-off
        // lanes are not read (fault suppression). AVX-512F is present (token).
        unsafe { _mm512_mask_loadu_ps(_mm512_set1_ps(fill), k, s.as_ptr()) }
    }
    #[inline(always)]
    fn store_part(self, v: __m512, s: &mut [f32]) {
        let n = s.len().min(16);
        let k: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: the mask covers only the first `n` elements, which `s` has; masked-off
        // lanes are not written. AVX-512F is present (token).
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), k, v) }
    }
    #[inline(always)]
    fn round(self, a: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn ldexp(self, p: __m512, n: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token). `vscalefps` handles overflow to infinity
        // and gradual underflow itself.
        unsafe { _mm512_scalef_ps(p, n) }
    }
    #[inline(always)]
    fn lt_select(self, a: __m512, b: __m512, t: __m512, f: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), f, t) }
    }
    #[inline(always)]
    fn reduce_add(self, a: __m512) -> f32 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_reduce_add_ps(a) }
    }
    #[inline(always)]
    fn reduce_max(self, a: __m512) -> f32 {
        let mut buf = [0.0; 16];
        self.store(a, &mut buf);
        buf.iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    #[inline(always)]
    fn not_le_mask(self, a: __m512, b: __m512) -> u32 {
        // SAFETY: AVX-512F is present (token).
        unsafe { u32::from(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, b)) }
    }
    #[inline(always)]
    fn swap_pairs(self, a: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_permute_ps::<0b10_11_00_01>(a) }
    }
}
