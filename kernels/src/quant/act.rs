//! Element types for activations and outputs, and the matmul epilogue (bias, activation).

use half::{bf16, f16};

/// An activation or output element: f32, f16 or bf16. Values widen to f32 for arithmetic
/// and round to nearest even on the way back.
pub trait ActElem: Copy + Send + Sync + 'static {
    /// The name used in messages and benchmark records.
    const NAME: &'static str;
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
    /// Narrows from f32, rounding to nearest even.
    fn from_f32(v: f32) -> Self;
}

/// `ActElem` for the storage types, named as they are spelled and converted as the LLM ops
/// convert them ([`Element`](crate::llm::Element)).
macro_rules! act_elem {
    ($($t:ident),*) => {$(
        impl ActElem for $t {
            const NAME: &'static str = stringify!($t);
            #[inline]
            fn to_f32(self) -> f32 {
                crate::llm::Element::to_f32(self)
            }
            #[inline]
            fn from_f32(v: f32) -> Self {
                crate::llm::Element::from_f32(v)
            }
        }
    )*};
}
act_elem!(f32, f16, bf16);

/// The activation applied after the bias in a matmul epilogue: GEMM's, one enum for every
/// matmul.
pub use crate::gemm::Activation;

impl Activation {
    /// Applies the activation to one value (in f64 internally for the transcendental ones,
    /// so the result is the correctly rounded f32 of the formula up to a few ulps).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => {
                if x > 0.0 || x.is_nan() {
                    x
                } else {
                    0.0
                }
            }
            Activation::GeluErf => {
                let v = x as f64;
                (0.5 * v * (1.0 + erf(v * std::f64::consts::FRAC_1_SQRT_2))) as f32
            }
            Activation::GeluTanh => {
                let v = x as f64;
                let c = (2.0 / std::f64::consts::PI).sqrt();
                (0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())) as f32
            }
            Activation::Silu => {
                let v = x as f64;
                (v / (1.0 + (-v).exp())) as f32
            }
        }
    }
}

/// The error function to about 1e-16 relative (W. J. Cody's rational approximations are
/// overkill here; this uses the series below 2.5 and a continued fraction above).
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        // Maclaurin series: erf(a) = 2/sqrt(pi) * sum (-1)^n a^(2n+1) / (n! (2n+1)).
        let a2 = a * a;
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0f64;
        // At a = 2.5 the terms fall below 1e-17 of the sum within 60 steps; the bound keeps the
        // loop finite for a = 0 (all terms 0).
        for _ in 0..80 {
            n += 1.0;
            term *= -a2 / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if a < 6.0 {
        // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))), evaluated
        // from the tail.
        let mut f = a;
        let mut k = 60.0f64;
        while k >= 1.0 {
            f = a + (k / 2.0) / f;
            k -= 1.0;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    } else {
        1.0
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Applies bias (per column) and activation to one output row and stores it. The activation
/// is matched once per row, so each loop below is a straight line the compiler vectorises.
#[inline]
pub(crate) fn store_row<TY: ActElem>(
    acc: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [TY],
) {
    match act {
        Activation::None => store_with(acc, bias, out, |v| v),
        Activation::Relu => store_with(acc, bias, out, |v| Activation::Relu.apply(v)),
        Activation::GeluErf => store_with(acc, bias, out, |v| Activation::GeluErf.apply(v)),
        Activation::GeluTanh => store_with(acc, bias, out, |v| Activation::GeluTanh.apply(v)),
        Activation::Silu => store_with(acc, bias, out, |v| Activation::Silu.apply(v)),
    }
}

#[inline(always)]
fn store_with<TY: ActElem>(
    acc: &[f32],
    bias: Option<&[f32]>,
    out: &mut [TY],
    f: impl Fn(f32) -> f32,
) {
    match bias {
        Some(b) => {
            for ((o, &a), &bv) in out.iter_mut().zip(acc).zip(b) {
                *o = TY::from_f32(f(a + bv));
            }
        }
        None => {
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = TY::from_f32(f(a));
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun table 7.1.
        for (x, e) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!((erf(x) - e).abs() < 1e-13, "erf({x}) = {}", erf(x));
        }
    }
}
