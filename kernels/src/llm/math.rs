//! Vectorised transcendental functions for the LLM ops, written once against the `Simd`
//! abstraction so each instruction-set path gets the same algorithm.
//!
//! Accuracy on f32 (measured against f64 in this module's tests):
//! - `exp`: relative error below 3e-7 wherever the result is a normal f32; results that
//!   underflow (x < -87.3) round gradually to subnormals and zero, x > 88.72 gives +inf,
//!   NaN stays NaN.
//! - `gelu_erf_phi` (the normal CDF Φ(x) = (1 + erf(x/√2)) / 2 as GELU needs it): relative
//!   error below 1e-6 for every x where Φ(x) is a normal f32, including the far left tail,
//!   where Φ is computed as erfc/2 directly rather than as 1 + erf (which would cancel).
//!
//! GELU's tanh form needs no tanh: 0.5·x·(1 + tanh(y)) = x / (1 + e^(-2y)) exactly, which
//! has no cancellation for negative x, so `exp` serves both SiLU and tanh-GELU.
//!
//! `exp` uses Cody–Waite range reduction x = n·ln2 + r, |r| <= ln2/2, a degree-7 Taylor
//! polynomial for e^r and a scale by 2^n. The erfc tail uses the form
//! erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2), with a degree-10 polynomial P fitted for
//! this crate by least squares on Chebyshev nodes of t in (0, 0.817] (z >= 0.45) against a
//! 40-digit erfc; -z² is carried as an exact sum of two floats so the exponent keeps full
//! precision for large z.

use super::simd::Simd;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for |n| < 2^15.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// Taylor coefficients 1/k! for e^r, k = 0..=7.
const EXP_C: [f32; 8] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

#[inline(always)]
fn exp_poly<S: Simd>(s: S, r: S::V) -> S::V {
    let mut p = s.splat(EXP_C[7]);
    for &c in EXP_C[..7].iter().rev() {
        p = s.fma(p, r, s.splat(c));
    }
    p
}

/// e^x per lane.
#[inline(always)]
pub(crate) fn exp<S: Simd>(s: S, x: S::V) -> S::V {
    // `max`/`min` return their second operand on NaN, so NaN passes through the clamp.
    let x = s.min(s.splat(89.0), s.max(s.splat(-104.0), x));
    let n = s.round(s.mul(x, s.splat(LOG2E)));
    let r = s.fma(n, s.splat(-LN2_HI), x);
    let r = s.fma(n, s.splat(-LN2_LO), r);
    s.ldexp(exp_poly(s, r), n)
}

/// e^(hi + lo) per lane for hi in [-110, 0] and |lo| < 4, keeping the precision of the sum.
#[inline(always)]
fn exp2sum<S: Simd>(s: S, hi: S::V, lo: S::V) -> S::V {
    let hi = s.max(s.splat(-110.0), hi);
    let n = s.round(s.mul(s.add(hi, lo), s.splat(LOG2E)));
    let r = s.fma(n, s.splat(-LN2_HI), hi);
    let r = s.add(r, lo);
    let r = s.fma(n, s.splat(-LN2_LO), r);
    s.ldexp(exp_poly(s, r), n)
}

/// `a * a - p` exactly (p = fl(a * a)), by Veltkamp splitting: no FMA needed.
#[inline(always)]
fn square_lo<S: Simd>(s: S, a: S::V, p: S::V) -> S::V {
    let c = s.mul(a, s.splat(4097.0));
    let ah = s.sub(c, s.sub(c, a));
    let al = s.sub(a, ah);
    let t = s.add(s.sub(s.mul(ah, ah), p), s.mul(s.add(ah, ah), al));
    s.add(t, s.mul(al, al))
}

/// Coefficients of P(t), lowest degree first: erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2).
const ERFC_P: [f32; 11] = [
    -1.265_512_1,
    1.000_001_6,
    0.374_930_7,
    0.084_429_8,
    -0.093_893_14,
    -0.118_102_17,
    -0.096_321_86,
    -0.195_598_74,
    0.829_474,
    -0.727_071_8,
    0.207_791_06,
];

/// Taylor coefficients of erf(z)/z in powers of z²: (2/√π)·(-1)^k / (k!·(2k + 1)).
const ERF_T: [f32; 8] = [
    std::f32::consts::FRAC_2_SQRT_PI,
    -0.376_126_4,
    0.112_837_92,
    -0.026_866_17,
    0.005_223_977,
    -8.548_328e-4,
    1.205_533_7e-4,
    -1.492_565_6e-5,
];

/// Below this |x| (z = |x|/√2 < 0.5) Φ uses the erf Taylor series, above it the erfc tail.
const PHI_SPLIT: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Φ(x) = (1 + erf(x/√2)) / 2, the standard normal CDF, per lane (GELU's erf form is x·Φ(x)).
#[inline(always)]
pub(crate) fn gelu_erf_phi<S: Simd>(s: S, x: S::V) -> S::V {
    let half = s.splat(0.5);
    let ax = s.abs(x);
    // Near zero: 1/2 + erf(z)/2 with z = x/√2; |z| < 0.5, where the series converges fast.
    let z = s.mul(x, s.splat(std::f32::consts::FRAC_1_SQRT_2));
    let z2 = s.mul(z, z);
    let mut p = s.splat(ERF_T[7]);
    for &c in ERF_T[..7].iter().rev() {
        p = s.fma(p, z2, s.splat(c));
    }
    let near = s.fma(s.mul(p, z), half, half);
    // Tail: q = erfc(|x|/√2)/2 = Φ(-|x|); Φ(x) = q for x < 0, 1 - q for x > 0.
    let xc = s.min(s.splat(20.0), ax);
    let za = s.mul(xc, s.splat(std::f32::consts::FRAC_1_SQRT_2));
    let t = s.div(s.splat(1.0), s.fma(za, half, s.splat(1.0)));
    let mut pt = s.splat(ERFC_P[10]);
    for &c in ERFC_P[..10].iter().rev() {
        pt = s.fma(pt, t, s.splat(c));
    }
    // -z² = -(x²)/2 = -(hh + hl)/2 exactly.
    let hh = s.mul(xc, xc);
    let hl = square_lo(s, xc, hh);
    let e = exp2sum(s, s.mul(hh, s.splat(-0.5)), s.fma(hl, s.splat(-0.5), pt));
    let q = s.mul(s.mul(t, e), half);
    let zero = s.splat(0.0);
    let tail = s.lt_select(x, zero, q, s.sub(s.splat(1.0), q));
    let phi = s.lt_select(ax, s.splat(PHI_SPLIT), near, tail);
    // NaN lanes went down the tail; carry them through explicitly (-|x| < inf fails only
    // for NaN).
    s.lt_select(s.sub(zero, ax), s.splat(f32::INFINITY), phi, s.add(phi, x))
}

/// σ(x) = 1 / (1 + e^(-x)) multiplied by `y`: `y / (1 + e^(-x))`.
#[inline(always)]
pub(crate) fn mul_sigmoid<S: Simd>(s: S, y: S::V, x: S::V) -> S::V {
    let e = exp(s, s.sub(s.splat(0.0), x));
    s.div(y, s.add(s.splat(1.0), e))
}

#[cfg(test)]
mod tests {
    use super::super::simd::{map, simd_entry, Simd};
    use crate::isa;

    #[inline(always)]
    fn exp_map<S: Simd>(s: S, x: &[f32], out: &mut [f32]) {
        map!(s, [x], out, |v| super::exp(s, v))
    }

    #[inline(always)]
    fn phi_map<S: Simd>(s: S, x: &[f32], out: &mut [f32]) {
        map!(s, [x], out, |v| super::gelu_erf_phi(s, v))
    }

    simd_entry!(fn exp_entry = exp_map<>(x: &[f32], out: &mut [f32]));
    simd_entry!(fn phi_entry = phi_map<>(x: &[f32], out: &mut [f32]));

    /// erfc in f64 to ~1e-14: series below 3, continued fraction above.
    pub(crate) fn erfc64(x: f64) -> f64 {
        if x < 0.0 {
            return 2.0 - erfc64(-x);
        }
        if x < 3.0 {
            let mut term = x;
            let mut sum = x;
            let mut k = 0.0;
            while term.abs() > 1e-17 * sum.abs() {
                k += 1.0;
                term *= -x * x / k;
                sum += term / (2.0 * k + 1.0);
            }
            1.0 - sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = x;
            for k in (1..80).rev() {
                f = x + (k as f64 / 2.0) / f;
            }
            (-x * x).exp() / std::f64::consts::PI.sqrt() / f
        }
    }

    fn grid() -> Vec<f32> {
        let mut v = Vec::new();
        let mut x = -110.0f32;
        while x < 95.0 {
            v.push(x);
            x += 0.0137;
        }
        v.extend([0.0, -0.0, 1e-30, -1e-30, 1e-7, 88.7, 88.72, -87.3, -103.0]);
        v
    }

    #[test]
    fn exp_matches_f64() {
        let x = grid();
        for isa in isa::supported() {
            let mut out = vec![0.0; x.len()];
            exp_entry(isa, &x, &mut out);
            for (&xi, &yi) in x.iter().zip(&out) {
                let r = (xi as f64).exp();
                if r > f32::MAX as f64 {
                    assert_eq!(yi, f32::INFINITY, "{isa:?} exp({xi})");
                } else if r >= f32::MIN_POSITIVE as f64 {
                    let rel = ((yi as f64 - r) / r).abs();
                    assert!(
                        rel < 3e-7,
                        "{isa:?} exp({xi}) = {yi}, want {r}, rel {rel:e}"
                    );
                } else {
                    assert!(
                        (yi as f64 - r).abs() <= 2.0 * 1.5e-45,
                        "{isa:?} exp({xi}) = {yi}"
                    );
                }
            }
            let mut o = [0.0f32; 3];
            exp_entry(isa, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], &mut o);
            assert!(
                o[0].is_nan() && o[1] == f32::INFINITY && o[2] == 0.0,
                "{isa:?} {o:?}"
            );
        }
    }

    #[test]
    fn phi_matches_f64() {
        let mut x: Vec<f32> = (-14000..14000).map(|i| i as f32 * 0.001).collect();
        let split = std::f32::consts::FRAC_1_SQRT_2;
        let below = f32::from_bits(split.to_bits() - 1);
        x.extend([below, split, -split, 1e-30, -1e-20, 30.0, -30.0]);
        for isa in isa::supported() {
            let mut out = vec![0.0; x.len()];
            phi_entry(isa, &x, &mut out);
            for (&xi, &yi) in x.iter().zip(&out) {
                let r = 0.5 * erfc64(-(xi as f64) / std::f64::consts::SQRT_2);
                if r < f32::MIN_POSITIVE as f64 {
                    assert!(
                        (yi as f64) < 2.0 * f32::MIN_POSITIVE as f64,
                        "{isa:?} phi({xi})"
                    );
                    continue;
                }
                let rel = ((yi as f64 - r) / r).abs();
                assert!(
                    rel < 1e-6,
                    "{isa:?} phi({xi}) = {yi}, want {r}, rel {rel:e}"
                );
            }
            let mut o = [0.0f32; 3];
            phi_entry(isa, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY], &mut o);
            assert!(o[0].is_nan() && o[1] == 1.0 && o[2] == 0.0, "{isa:?} {o:?}");
        }
    }

    #[test]
    fn reference_erfc_is_right() {
        // Known values: erfc(0.5), erfc(1), erfc(3), erfc(5).
        for (x, want) in [
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_034_8e-12),
        ] {
            assert!(
                (erfc64(x) - want).abs() < 1e-14 * want.max(1e-3),
                "erfc64({x})"
            );
        }
    }
}
