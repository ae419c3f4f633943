//! The fused epilogue: what happens to a finished tile before it is stored.
//!
//! `D = act(alpha * op(A) op(B) + beta * C + bias) + residual`, applied row by row to a
//! register tile that has just been written to an L1 buffer, so no extra pass over C is made.
//! When k is split into several blocks, the blocks before the last only accumulate
//! (`beta * C` on the first, plain sums after); bias, activation and residual are applied once,
//! with the last block.
//!
//! The activations are written in plain lane-wise `f32` arithmetic without library calls, so
//! the compiler vectorises them for the instruction set of the caller. Their error is below
//! 2e-7 absolute (plus rounding of the formulas below) for GELU and SiLU.

use super::element::Element;
use super::simd::Simd;
use super::Activation;

/// Where the value before this k-block comes from.
#[derive(Clone, Copy)]
pub(crate) enum Prev<TC> {
    /// Nothing: the first k-block with `beta == 0`, so C is never read (as in BLAS).
    Zero,
    /// The first k-block: `beta * C`.
    Out {
        /// The row of C.
        p: *const TC,
        /// The scale.
        beta: f32,
    },
    /// A later k-block: the `f32` partial sum so far.
    Acc(*const f32),
}

/// Where the result goes.
#[derive(Clone, Copy)]
pub(crate) enum Dest<TC> {
    /// An intermediate `f32` partial sum (more k-blocks follow).
    Acc(*mut f32),
    /// The final output row: bias, activation and residual are applied, then it is rounded.
    Out(*mut TC),
}

/// The per-row pieces of the epilogue, already offset to the row and first column.
#[derive(Clone, Copy)]
pub(crate) struct RowEpi<TC> {
    /// Bias per column, or null.
    pub bias: *const f32,
    /// The activation.
    pub act: Activation,
    /// The residual row, or null.
    pub residual: *const TC,
}

/// Applies one k-block's update to `n` columns of one row.
///
/// `acc` (null when there is no product, k == 0 or alpha == 0) is the row of the register tile.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - Every non-null pointer (in `acc`, `prev`, `dest`, `epi`) is valid for `n` elements.
#[inline(always)]
pub(crate) unsafe fn row<S: Simd, TC: Element>(
    n: usize,
    acc: *const f32,
    alpha: f32,
    prev: Prev<TC>,
    dest: Dest<TC>,
    epi: &RowEpi<TC>,
) {
    let lanes = S::LANES;
    let mut j = 0;
    // SAFETY: every access is at `j + l` with `l < len <= n - j`; partial loads and stores
    // touch only `len` elements.
    unsafe {
        let alpha_v = S::splat(alpha);
        while j < n {
            let len = lanes.min(n - j);
            let full = len == lanes;
            macro_rules! ld {
                ($t:ty, $p:expr) => {
                    if full {
                        S::load_elem::<$t>($p.add(j))
                    } else {
                        S::load_elem_partial::<$t>($p.add(j), len)
                    }
                };
            }
            let mut x = if acc.is_null() {
                S::zero()
            } else {
                S::mul(alpha_v, ld!(f32, acc))
            };
            match prev {
                Prev::Zero => {}
                Prev::Out { p, beta } => x = S::fma(S::splat(beta), ld!(TC, p), x),
                Prev::Acc(p) => x = S::add(x, ld!(f32, p)),
            }
            match dest {
                Dest::Acc(d) => {
                    if full {
                        S::store(d.add(j), x)
                    } else {
                        S::store_elem_partial::<f32>(d.add(j), x, len)
                    }
                }
                Dest::Out(d) => {
                    if !epi.bias.is_null() {
                        x = S::add(x, ld!(f32, epi.bias));
                    }
                    if epi.act != Activation::None {
                        let mut buf = [0.0f32; 16];
                        S::store(buf.as_mut_ptr(), x);
                        activate(epi.act, &mut buf[..lanes]);
                        x = S::load(buf.as_ptr());
                    }
                    if !epi.residual.is_null() {
                        x = S::add(x, ld!(TC, epi.residual));
                    }
                    if full {
                        S::store_elem::<TC>(d.add(j), x)
                    } else {
                        S::store_elem_partial::<TC>(d.add(j), x, len)
                    }
                }
            }
            j += lanes;
        }
    }
}

/// Applies `act` to every element of `x` in place.
#[inline(always)]
pub(crate) fn activate(act: Activation, x: &mut [f32]) {
    match act {
        Activation::None => {}
        Activation::Relu => x.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::GeluErf => x.iter_mut().for_each(|v| *v = gelu_erf(*v)),
        Activation::GeluTanh => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        Activation::Silu => x.iter_mut().for_each(|v| *v = silu(*v)),
    }
}

/// `max(x, 0)` that keeps NaN (a plain `max` would turn NaN into 0).
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// `0.5 x (1 + erf(x / sqrt 2))`.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + tanh(u))
}

/// `x / (1 + exp(-x))`.
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `tanh(u) = 1 - 2 / (exp(2u) + 1)`: saturates to +-1 and keeps NaN; absolute error ~1e-7.
#[inline(always)]
fn tanh(u: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * u) + 1.0)
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), odd in `x`.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let ax = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * ax);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-ax * ax);
    y.copysign(x)
}

/// `exp(x)` for the activations: clamped to [-87.3, 88.0] (the results there are below the
/// smallest normal or far beyond any activation's use), NaN stays NaN; relative error ~2e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds a float below 2^22 to an integer held in the mantissa.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * core::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The integer n sits in the low mantissa bits of `shifted`; move it to the exponent.
    let ni = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.173;
        }
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn activations_keep_nan_and_saturate() {
        for f in [relu, gelu_erf, gelu_tanh, silu] {
            assert!(f(f32::NAN).is_nan());
            assert_eq!(f(f32::INFINITY), f32::INFINITY);
        }
        assert!(silu(-200.0).abs() < 1e-30);
        assert_eq!(gelu_tanh(-20.0).abs(), 0.0);
        assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-6);
    }
}
