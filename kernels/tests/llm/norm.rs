use crate::common::*;
use knpu_kernels::llm::{layer_norm, rms_norm, Element, NormWeights};
use knpu_kernels::{isa, Exec};

fn rms<T: Element>() {
    let mut rng = Rng::new(1);
    for (rows, cols) in shapes() {
        let x: Vec<T> = random(&mut rng, rows * cols, -3.0, 3.0);
        let w: Vec<T> = random(&mut rng, cols, -2.0, 2.0);
        let eps = 1e-5;
        let (xf, wf) = (to_f64(&x), to_f64(&w));
        let mut want = vec![0.0; rows * cols];
        for r in 0..rows {
            let row = &xf[r * cols..(r + 1) * cols];
            let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            for c in 0..cols {
                want[r * cols + c] = row[c] * inv * wf[c];
            }
        }
        let scale: Vec<f64> = want.iter().map(|v| v.abs()).collect();
        for isa in isa::supported() {
            let mut out = vec![T::from_f32(f32::NAN); rows * cols];
            let exec = Exec::new(isa, par_for(rows * cols));
            rms_norm(&x, &w, &mut out, rows, cols, eps, exec).unwrap();
            // f32 sum of squares over up to 4097 terms plus a few roundings.
            check(
                &out,
                &want,
                &scale,
                5e-6,
                &format!("rms_norm {} {isa:?} {rows}x{cols}", name::<T>()),
            );
        }
    }
}

fn layer<T: Element>() {
    let mut rng = Rng::new(2);
    for (rows, cols) in shapes() {
        // A common offset much larger than the spread: the centring must not lose it.
        let x: Vec<T> = random(&mut rng, rows * cols, 90.0, 110.0);
        let w: Vec<T> = random(&mut rng, cols, -2.0, 2.0);
        let b: Vec<T> = random(&mut rng, cols, -1.0, 1.0);
        let eps = 1e-5;
        let (xf, wf, bf) = (to_f64(&x), to_f64(&w), to_f64(&b));
        for with_bias in [true, false] {
            let mut want = vec![0.0; rows * cols];
            let mut scale = vec![0.0; rows * cols];
            for r in 0..rows {
                let row = &xf[r * cols..(r + 1) * cols];
                let mean = row.iter().sum::<f64>() / cols as f64;
                let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cols as f64;
                let inv = 1.0 / (var + eps as f64).sqrt();
                for c in 0..cols {
                    let bias = if with_bias { bf[c] } else { 0.0 };
                    let t = (row[c] - mean) * inv * wf[c];
                    want[r * cols + c] = t + bias;
                    // x - mean carries the rounding of the mean, relative to |x|.
                    scale[r * cols + c] = t.abs() + bias.abs() + (wf[c] * inv * row[c]).abs();
                }
            }
            for isa in isa::supported() {
                let mut out = vec![T::from_f32(f32::NAN); rows * cols];
                let weights = NormWeights {
                    weight: &w,
                    bias: with_bias.then_some(&b[..]),
                };
                let exec = Exec::new(isa, par_for(rows * cols));
                layer_norm(&x, weights, &mut out, rows, cols, eps, exec).unwrap();
                let ctx = format!(
                    "layer_norm {} {isa:?} {rows}x{cols} bias={with_bias}",
                    name::<T>()
                );
                check(&out, &want, &scale, 1e-5, &ctx);
            }
        }
    }
}

#[test]
fn rms_norm_matches_f64() {
    for_dtypes!(rms);
}

#[test]
fn layer_norm_matches_f64() {
    for_dtypes!(layer);
}
