//! Kernel families through `knpu::ops`, each compared with a plain host computation. An op
//! the device reports unsupported (the runtime's `NotSupported` at the call) skips the case.

use half::{bf16, f16};
use knpu::ops::{self, QuantFormat};
use knpu::{Error, Stream};

use super::{pattern, values};
use crate::{case_list, Case, CaseResult, Feature, RuntimeContext, Unsupported};

pub(super) fn cases() -> Vec<Case> {
    let mut all = case_list!(Runtime, Feature::KernelElementwise;
        elementwise_f32, elementwise_half_precision);
    all.extend(case_list!(Runtime, Feature::KernelGemm; matmul_f32));
    all.extend(case_list!(Runtime, Feature::KernelLlm; rms_norm_and_softmax_f32));
    all.extend(case_list!(Runtime, Feature::KernelQuant; q8_0_round_trip));
    all
}

/// Turns the runtime's refusal of an op the device lacks into a skip; any other error is a
/// failure.
pub(crate) fn supported(r: knpu::Result<()>) -> Result<(), Unsupported> {
    match r {
        Ok(()) => Ok(()),
        Err(e @ Error::NotSupported { .. }) => Err(Unsupported::new(e.to_string())),
        Err(e) => panic!("the launch failed: {e}"),
    }
}

/// A host computation of an op, element by element.
type Reference = fn(f32, f32) -> f32;

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w} (tolerance {tol})"
        );
    }
}

fn elementwise_f32(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    for n in [1usize, 7, 1000, 100_003] {
        let x = pattern(n);
        let y: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32).collect();
        let a = s.from_slice(&x).unwrap();
        let b = s.from_slice(&y).unwrap();
        let mut o = s.alloc::<f32>(n).unwrap();
        let exact: [(&str, Reference); 3] = [
            ("add", |a, b| a + b),
            ("mul", |a, b| a * b),
            ("sub", |a, b| a - b),
        ];
        for (name, f) in exact {
            supported(match name {
                "add" => ops::add(&s, &a, &b, &mut o),
                "mul" => ops::mul(&s, &a, &b, &mut o),
                _ => ops::sub(&s, &a, &b, &mut o),
            })?;
            let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| f(*a, *b)).collect();
            assert_eq!(o.to_vec().unwrap(), want, "{name}, n = {n}");
        }
        supported(ops::axpy(&s, 3.0, &a, &b, &mut o))?;
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| 3.0 * a + b).collect();
        close(&o.to_vec().unwrap(), &want, 1e-6, "axpy");
        supported(ops::scale(&s, 2.5, &a, &mut o))?;
        let want: Vec<f32> = x.iter().map(|a| 2.5 * a).collect();
        close(&o.to_vec().unwrap(), &want, 1e-6, "scale");
    }
    Ok(())
}

fn elementwise_half_precision(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    add_small_integers(&s, "bf16 add", bf16::from_f32, bf16::to_f32)?;
    add_small_integers(&s, "f16 add", f16::from_f32, f16::to_f32)
}

/// `0..50` added to itself in `T`: small integers, exact in bf16 and f16, and so are their
/// sums.
fn add_small_integers<T>(s: &Stream, what: &str, from: fn(f32) -> T, to: fn(T) -> f32) -> CaseResult
where
    T: knpu::DType + PartialEq + std::fmt::Debug,
{
    let h: Vec<T> = (0..50).map(|i| from(i as f32)).collect();
    let a = s.from_slice(&h).unwrap();
    let mut o = s.alloc::<T>(50).unwrap();
    supported(ops::add(s, &a, &a, &mut o))?;
    let want: Vec<T> = h.iter().map(|&v| from(to(v) * 2.0)).collect();
    assert_eq!(o.to_vec().unwrap(), want, "{what}");
    Ok(())
}

fn matmul_f32(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 33, 64), (64, 1, 129)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 * 0.25).collect();
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        let da = s.from_slice(&a).unwrap();
        let db = s.from_slice(&b).unwrap();
        let mut dc = s.alloc::<f32>(m * n).unwrap();
        supported(ops::matmul(&s, &da, &db, &mut dc, m, n, k))?;
        close(
            &dc.to_vec().unwrap(),
            &want,
            1e-5,
            &format!("matmul {m}x{n}x{k}"),
        );
    }
    Ok(())
}

fn rms_norm_and_softmax_f32(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let (rows, cols) = (3, 67);
    let x = values(rows * cols, |i| ((i * 13) % 29) as f32 * 0.1 - 1.4);
    let w = values(cols, |i| 0.5 + (i % 5) as f32 * 0.25);
    let dx = s.from_slice(&x).unwrap();
    let dw = s.from_slice(&w).unwrap();
    let mut out = s.alloc::<f32>(rows * cols).unwrap();
    let eps = 1e-5;
    supported(ops::rms_norm(&s, &dx, &dw, &mut out, rows, cols, eps))?;
    let mut want = vec![0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let ms = row.iter().map(|v| v * v).sum::<f32>() / cols as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for c in 0..cols {
            want[r * cols + c] = row[c] * inv * w[c];
        }
    }
    close(&out.to_vec().unwrap(), &want, 1e-5, "rms_norm");
    supported(ops::softmax(&s, &dx, &mut out, rows, cols, 0.5))?;
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let max = row.iter().fold(f32::MIN, |m, v| m.max(0.5 * v));
        let e: Vec<f32> = row.iter().map(|v| (0.5 * v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        for c in 0..cols {
            want[r * cols + c] = e[c] / sum;
        }
    }
    close(&out.to_vec().unwrap(), &want, 1e-5, "softmax");
    Ok(())
}

fn q8_0_round_trip(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let (rows, k) = (3, 64);
    let format = QuantFormat::Q8_0;
    let x = values(rows * k, |i| ((i * 37) % 101) as f32 / 50.0 - 1.0);
    let src = s.from_slice(&x).unwrap();
    let bytes = rows * format.row_bytes(k).unwrap();
    let mut q = s.alloc::<u8>(bytes).unwrap();
    supported(ops::quantize(&s, format, rows, k, &src, &mut q, None))?;
    let mut back = s.alloc::<f32>(rows * k).unwrap();
    supported(ops::dequantize(&s, format, rows, k, &q, None, &mut back))?;
    // Q8_0 keeps 8 bits per value under a per-block scale of max|x| / 127.
    let got = back.to_vec().unwrap();
    for (i, (g, w)) in got.iter().zip(&x).enumerate() {
        assert!((g - w).abs() <= 1.0 / 127.0 + 1e-3, "value {i}: {g} vs {w}");
    }
    Ok(())
}
