//! The portable path of the LLM ops' vector abstraction: eight `f32` lanes in an array, plain
//! Rust any compiler can vectorise.

use super::Simd;
use crate::Isa;

/// The portable path: eight lanes in an array.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

const PL: usize = 8;

impl Simd for Portable {
    const LANES: usize = PL;
    type V = [f32; PL];
    #[inline(always)]
    fn isa(self) -> Isa {
        Isa::Portable
    }
    #[inline(always)]
    fn splat(self, x: f32) -> [f32; PL] {
        [x; PL]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> [f32; PL] {
        let mut v = [0.0; PL];
        v.copy_from_slice(&s[..PL]);
        v
    }
    #[inline(always)]
    fn store(self, v: [f32; PL], s: &mut [f32]) {
        s[..PL].copy_from_slice(&v);
    }
    #[inline(always)]
    fn load_part(self, s: &[f32], fill: f32) -> [f32; PL] {
        let mut v = [fill; PL];
        let n = s.len().min(PL);
        v[..n].copy_from_slice(&s[..n]);
        v
    }
    #[inline(always)]
    fn store_part(self, v: [f32; PL], s: &mut [f32]) {
        let n = s.len().min(PL);
        s[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    fn add(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn sub(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    fn mul(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn div(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i] / b[i])
    }
    #[inline(always)]
    fn fma(self, a: [f32; PL], b: [f32; PL], c: [f32; PL]) -> [f32; PL] {
        // Unfused: `mul_add` is a library call on targets without FMA.
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn max(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn min(self, a: [f32; PL], b: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| if a[i] < b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn abs(self, a: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i].abs())
    }
    #[inline(always)]
    fn round(self, a: [f32; PL]) -> [f32; PL] {
        // Adding and subtracting 1.5·2^23 rounds to an integer (ties to even) for |a| < 2^22,
        // which covers every use here, without the library call `round_ties_even` becomes on
        // targets lacking a rounding instruction.
        const MAGIC: f32 = 12_582_912.0;
        std::array::from_fn(|i| (a[i] + MAGIC) - MAGIC)
    }
    #[inline(always)]
    fn ldexp(self, p: [f32; PL], n: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| {
            let n1 = (n[i] * 0.5 + 12_582_912.0) - 12_582_912.0;
            let n2 = n[i] - n1;
            p[i] * pow2i_scalar(n1) * pow2i_scalar(n2)
        })
    }
    #[inline(always)]
    fn lt_select(self, a: [f32; PL], b: [f32; PL], t: [f32; PL], f: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| if a[i] < b[i] { t[i] } else { f[i] })
    }
    #[inline(always)]
    fn reduce_add(self, a: [f32; PL]) -> f32 {
        ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
    }
    #[inline(always)]
    fn reduce_max(self, a: [f32; PL]) -> f32 {
        a.iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    #[inline(always)]
    fn not_le_mask(self, a: [f32; PL], b: [f32; PL]) -> u32 {
        (0..PL).fold(0, |m, i| {
            m | (u32::from(a[i] > b[i] || a[i].is_nan() || b[i].is_nan()) << i)
        })
    }
    #[inline(always)]
    fn swap_pairs(self, a: [f32; PL]) -> [f32; PL] {
        std::array::from_fn(|i| a[i ^ 1])
    }
}

/// `2^n` for integral `n` in [-126, 127].
///
/// Integer arithmetic on the bits of `n + 1.5·2^23` (whose low bits hold `n`) instead of
/// `n as i32`, whose saturating semantics do not vectorise.
#[inline(always)]
fn pow2i_scalar(n: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let k = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    f32::from_bits(k.wrapping_add(127) << 23)
}
