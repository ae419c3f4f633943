use crate::common::*;
use knpu_kernels::llm::{softmax, Element};
use knpu_kernels::{isa, Exec};

fn reference(x: &[f64], rows: usize, cols: usize, scale: f64) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row
            .iter()
            .map(|v| v * scale)
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v * scale - m).exp()).sum();
        for c in 0..cols {
            out[r * cols + c] = (row[c] * scale - m).exp() / sum;
        }
    }
    out
}

fn run<T: Element>() {
    let mut rng = Rng::new(3);
    for (rows, cols) in shapes() {
        for scale in [1.0f32, 0.125, -0.5] {
            let x: Vec<T> = random(&mut rng, rows * cols, -16.0, 16.0);
            let want = reference(&to_f64(&x), rows, cols, scale as f64);
            let s: Vec<f64> = want.iter().map(|v| v.abs()).collect();
            let case = format!("softmax {} {rows}x{cols} scale {scale}", name::<T>());
            for isa in isa::supported() {
                let mut out = vec![T::from_f32(f32::NAN); rows * cols];
                let exec = Exec::new(isa, par_for(rows * cols));
                softmax(&x, &mut out, rows, cols, scale, exec).unwrap();
                check(&out, &want, &s, 1e-5, &format!("{case} {isa:?}"));
            }
        }
    }
}

#[test]
fn softmax_matches_f64() {
    for_dtypes!(run);
}

#[test]
fn softmax_special_values() {
    let inf = f32::INFINITY;
    for isa in isa::supported() {
        // -inf entries get exactly 0; a huge finite row does not overflow.
        let x = [1.0, f32::NEG_INFINITY, 1.0, 3e38, 3e38, -3e38];
        let mut out = [0.0f32; 6];
        let exec = Exec::new(isa, knpu_kernels::Parallelism::None);
        softmax(&x, &mut out, 2, 3, 1.0, exec).unwrap();
        assert_eq!(&out[..3], &[0.5, 0.0, 0.5], "{isa:?}");
        assert_eq!(&out[3..], &[0.5, 0.5, 0.0], "{isa:?}");
        // NaN, +inf and all -inf rows are NaN throughout.
        let x = [1.0, f32::NAN, 2.0, inf, 1.0, 0.0, -inf, -inf, -inf];
        let mut out = [0.0f32; 9];
        softmax(&x, &mut out, 3, 3, 1.0, exec).unwrap();
        assert!(out.iter().all(|v| v.is_nan()), "{isa:?} {out:?}");
    }
}
