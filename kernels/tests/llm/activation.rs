use crate::common::*;
use knpu_kernels::llm::{gelu, silu, swiglu, Element, GeluApprox};
use knpu_kernels::{isa, Exec};

/// erfc in f64 to ~1e-14, written apart from the kernel's own: below 3 as one minus erf's
/// series of positive terms (`erf x = 2/sqrt(pi) e^(-x^2) sum 2^n x^(2n+1) / (2n+1)!!`),
/// from 3 up by the continued fraction, evaluated from its 80th level down.
fn erfc64(x: f64) -> f64 {
    let sqrt_pi = std::f64::consts::PI.sqrt();
    if x < 0.0 {
        return 2.0 - erfc64(-x);
    }
    if x >= 3.0 {
        let fraction = (1..80).rev().fold(x, |f, k| x + (k as f64 / 2.0) / f);
        return (-x * x).exp() / sqrt_pi / fraction;
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term > 1e-17 * sum {
        n += 1.0;
        term *= 2.0 * x * x / (2.0 * n + 1.0);
        sum += term;
    }
    1.0 - 2.0 / sqrt_pi * (-x * x).exp() * sum
}

fn silu64(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn inputs<T: Element>(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<T> {
    let mut v: Vec<T> = random(rng, n, lo, hi);
    // Some exact specials in range.
    for (i, s) in [0.0f32, -0.0, 1e-30, -1e-30].into_iter().enumerate() {
        if i < n {
            v[i] = T::from_f32(s);
        }
    }
    v
}

fn run<T: Element>() {
    let mut rng = Rng::new(5);
    for &n in SIZES.iter().chain(&[100_000]) {
        let x: Vec<T> = inputs(&mut rng, n, -20.0, 20.0);
        let xf = to_f64(&x);
        let near: Vec<T> = inputs(&mut rng, n, -5.0, 5.0);
        let nf = to_f64(&near);
        let up: Vec<T> = random(&mut rng, n, -3.0, 3.0);
        let uf = to_f64(&up);
        let par = par_for(n);
        for isa in isa::supported() {
            let ctx = |op: &str| format!("{op} {} {isa:?} n={n}", name::<T>());
            let mut out = vec![T::from_f32(f32::NAN); n];

            silu(&x, &mut out, n, Exec::new(isa, par)).unwrap();
            let want: Vec<f64> = xf.iter().map(|&v| silu64(v)).collect();
            let s: Vec<f64> = want.iter().map(|v| v.abs()).collect();
            check(&out, &want, &s, 1e-6, &ctx("silu"));

            swiglu(&x, &up, &mut out, n, Exec::new(isa, par)).unwrap();
            let want: Vec<f64> = xf.iter().zip(&uf).map(|(&g, &u)| silu64(g) * u).collect();
            let s: Vec<f64> = want.iter().map(|v| v.abs()).collect();
            check(&out, &want, &s, 1e-6, &ctx("swiglu"));

            gelu(&x, &mut out, n, GeluApprox::Erf, Exec::new(isa, par)).unwrap();
            let want: Vec<f64> = xf
                .iter()
                .map(|&v| v * 0.5 * erfc64(-v / std::f64::consts::SQRT_2))
                .collect();
            let s: Vec<f64> = want.iter().map(|v| v.abs()).collect();
            check(&out, &want, &s, 2e-6, &ctx("gelu erf"));

            // The f64 tanh form itself cancels for x << 0, so the reference stays in [-5, 5].
            // The f32 result is relative to the rounding of the exp argument 2y, so the error
            // bound grows with |2y| (the condition number of exp there).
            gelu(&near, &mut out, n, GeluApprox::Tanh, Exec::new(isa, par)).unwrap();
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let y = |v: f64| c * (v + 0.044715 * v * v * v);
            let want: Vec<f64> = nf.iter().map(|&v| 0.5 * v * (1.0 + y(v).tanh())).collect();
            let s: Vec<f64> = want
                .iter()
                .zip(&nf)
                .map(|(w, &v)| w.abs() * (1.0 + (2.0 * y(v)).abs()))
                .collect();
            check(&out, &want, &s, 5e-7, &ctx("gelu tanh"));
        }
    }
}

#[test]
fn activations_match_f64() {
    for_dtypes!(run);
}

#[test]
fn activations_of_large_inputs() {
    // Far tails: no overflow to NaN for finite inputs.
    let x = [-1e30f32, -200.0, -90.0, 90.0, 200.0, 1e30];
    for isa in isa::supported() {
        let mut out = [0.0f32; 6];
        silu(
            &x,
            &mut out,
            6,
            Exec::new(isa, knpu_kernels::Parallelism::None),
        )
        .unwrap();
        assert!(
            out[..3]
                .iter()
                .all(|&v| v == 0.0 || (v < 0.0 && v > -1e-30)),
            "{isa:?} {out:?}"
        );
        assert_eq!(&out[3..], &x[3..], "{isa:?}");
        for approx in [GeluApprox::Erf, GeluApprox::Tanh] {
            gelu(
                &x,
                &mut out,
                6,
                approx,
                Exec::new(isa, knpu_kernels::Parallelism::None),
            )
            .unwrap();
            assert!(
                out[..3].iter().all(|&v| v == 0.0),
                "{isa:?} {approx:?} {out:?}"
            );
            assert_eq!(&out[3..], &x[3..], "{isa:?} {approx:?}");
        }
    }
}
