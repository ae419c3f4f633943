//! Shared helpers: a deterministic generator, conversions and tolerance checks.

use half::{bf16, f16};
use knpu_kernels::llm::{DType, Element};
use knpu_kernels::Parallelism;

/// Awkward sizes every op is tried with.
pub const SIZES: &[usize] = &[0, 1, 7, 17, 64, 65, 1000, 4097];

/// (rows, cols) shapes: every row count in a small set against every size, plus tall ones.
pub fn shapes() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for &r in &[0, 1, 7, 17, 65] {
        for &c in SIZES {
            v.push((r, c));
        }
    }
    v.extend([(1000, 7), (4097, 17), (64, 1000), (17, 4097)]);
    v
}

/// Parallelism worth testing for a problem of `n` elements: the split path when it would
/// be taken.
pub fn par_for(n: usize) -> Parallelism {
    if n > 64 * 1024 {
        Parallelism::Rayon(2)
    } else {
        Parallelism::None
    }
}

/// xorshift64*: deterministic, no dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `n` values uniform in [lo, hi), stored as `T`.
pub fn random<T: Element>(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<T> {
    (0..n).map(|_| T::from_f32(rng.uniform(lo, hi))).collect()
}

pub fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f32() as f64).collect()
}

/// Relative error of rounding a result to `T` (half an ulp), and the smallest absolute error
/// worth reporting (below the type's normal range).
pub fn storage_tol<T: Element>() -> (f64, f64) {
    match T::DTYPE {
        DType::F32 => (0.0, 1e-37),
        DType::F16 => (2f64.powi(-11), 6e-8),
        DType::Bf16 => (2f64.powi(-8), 1e-37),
    }
}

/// Asserts `|got - want| <= (rel + storage) * scale + abs` for every element, where `scale`
/// is the magnitude the error is relative to (usually `|want|`).
#[track_caller]
pub fn check<T: Element>(got: &[T], want: &[f64], scale: &[f64], rel: f64, ctx: &str) {
    let (srel, sabs) = storage_tol::<T>();
    assert_eq!(got.len(), want.len(), "{ctx}: length");
    for (i, ((g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let g = g.to_f32() as f64;
        let tol = rel * s + srel * w.abs() + sabs;
        assert!(
            (g - w).abs() <= tol || (g.is_nan() && w.is_nan()),
            "{ctx}: element {i}: got {g}, want {w} (|err| {:e} > tol {tol:e})",
            (g - w).abs()
        );
    }
}

pub fn name<T: Element>() -> &'static str {
    T::DTYPE.name()
}

/// Runs `f::<T>()` for f32, f16 and bf16.
macro_rules! for_dtypes {
    ($f:ident) => {
        $f::<f32>();
        $f::<half::f16>();
        $f::<half::bf16>();
    };
}
pub(crate) use for_dtypes;

/// Calls `$f::<S, D>()` for every pair of storage types.
macro_rules! for_dtype_pairs {
    ($f:ident) => {
        $f::<f32, f32>();
        $f::<f32, half::f16>();
        $f::<f32, half::bf16>();
        $f::<half::f16, f32>();
        $f::<half::f16, half::f16>();
        $f::<half::f16, half::bf16>();
        $f::<half::bf16, f32>();
        $f::<half::bf16, half::f16>();
        $f::<half::bf16, half::bf16>();
    };
}
pub(crate) use for_dtype_pairs;

/// Silences unused-import warnings for the half types used only through `for_dtypes!`.
pub fn _types(_: f16, _: bf16) {}
