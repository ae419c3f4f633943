//! RMSNorm and LayerNorm over the last axis of a `[rows, cols]` row-major tensor.
//!
//! Both reduce a row in f32 with several independent vector accumulators, then make a second
//! pass (LayerNorm: a second and third) over the row while it is still in cache.

use super::simd::{map, row_sum, simd_entry, with_f32_out, Simd};
use super::{check_len, check_lens, f32_row, for_row_blocks, start_rows, Element, Scratch};
use crate::{Exec, Isa, KernelError};

/// RMSNorm: `out[r, c] = x[r, c] / sqrt(mean_c(x[r, c]²) + eps) * weight[c]`.
///
/// `x` and `out` are `[rows, cols]` row-major, `weight` is `[cols]`. Computed in f32 whatever
/// `T` is; runs on the path [`isa::active`](crate::isa::active) picks.
pub fn rms_norm<T: Element>(
    x: &[T],
    weight: &[T],
    out: &mut [T],
    rows: usize,
    cols: usize,
    eps: f32,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let (isa, par, n) = start_rows(exec, rows, cols)?;
    check_lens(&[
        ("x", n, x.len()),
        ("weight", cols, weight.len()),
        ("out", n, out.len()),
    ])?;
    let w = widen_vec(isa, &weight[..cols]);
    for_row_blocks(par, rows, cols, &mut out[..n], |first, block| {
        let xs = &x[first * cols..first * cols + block.len()];
        rms_entry(isa, xs, &w, block, cols, eps);
    });
    Ok(())
}

/// The per-column scale and optional shift a LayerNorm applies after normalising.
#[derive(Debug, Clone, Copy)]
pub struct NormWeights<'a, T> {
    /// The scale, `[cols]`.
    pub weight: &'a [T],
    /// The shift, `[cols]`; `None`: no shift.
    pub bias: Option<&'a [T]>,
}

/// LayerNorm: `out[r, c] = (x[r, c] - mean_r) / sqrt(var_r + eps) * weight[c] + bias[c]`,
/// with the mean and (biased) variance of row `r`, `weight` and `bias` from `weights`; no
/// bias when `weights.bias` is `None`.
///
/// `x` and `out` are `[rows, cols]` row-major, `weight` and `bias` are `[cols]`. The variance
/// is computed in a second pass over the centred row, so large means do not cancel.
pub fn layer_norm<T: Element>(
    x: &[T],
    weights: NormWeights<'_, T>,
    out: &mut [T],
    rows: usize,
    cols: usize,
    eps: f32,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let NormWeights { weight, bias } = weights;
    let (isa, par, n) = start_rows(exec, rows, cols)?;
    check_lens(&[("x", n, x.len()), ("weight", cols, weight.len())])?;
    if let Some(b) = bias {
        check_len("bias", cols, b.len())?;
    }
    check_len("out", n, out.len())?;
    let w = widen_vec(isa, &weight[..cols]);
    let b = bias.map(|b| widen_vec(isa, &b[..cols]));
    let b = b.as_deref();
    for_row_blocks(par, rows, cols, &mut out[..n], |first, block| {
        let xs = &x[first * cols..first * cols + block.len()];
        layer_entry(isa, xs, &w, b, block, cols, eps);
    });
    Ok(())
}

/// `src` widened to an owned f32 vector.
pub(crate) fn widen_vec<T: Element>(isa: Isa, src: &[T]) -> Vec<f32> {
    let mut v = vec![0.0; src.len()];
    T::widen(isa, src, &mut v);
    v
}

#[inline(always)]
fn rms_block<S: Simd, T: Element>(s: S, x: &[T], w: &[f32], out: &mut [T], cols: usize, eps: f32) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let xr = f32_row(isa, xr, &mut sc.a);
        with_f32_out!(isa, or, &mut sc.out, |o| {
            let ss = row_sum!(s, xr, 0.0, |v, a| s.fma(v, v, a));
            let inv = 1.0 / (ss / cols as f32 + eps).sqrt();
            let vi = s.splat(inv);
            map!(s, [xr, w], o, |v, wv| s.mul(s.mul(v, vi), wv));
        });
    }
}

#[inline(always)]
fn layer_block<S: Simd, T: Element>(
    s: S,
    x: &[T],
    w: &[f32],
    b: Option<&[f32]>,
    out: &mut [T],
    cols: usize,
    eps: f32,
) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let xr = f32_row(isa, xr, &mut sc.a);
        with_f32_out!(isa, or, &mut sc.out, |o| {
            let mean = row_sum!(s, xr, 0.0, |v, a| s.add(v, a)) / cols as f32;
            let vm = s.splat(mean);
            // Pad with the mean so the tail lanes add nothing.
            let var = row_sum!(s, xr, mean, |v, a| {
                let d = s.sub(v, vm);
                s.fma(d, d, a)
            }) / cols as f32;
            let vi = s.splat(1.0 / (var + eps).sqrt());
            match b {
                Some(b) => map!(s, [xr, w, b], o, |v, wv, bv| {
                    s.fma(s.mul(s.sub(v, vm), vi), wv, bv)
                }),
                None => map!(s, [xr, w], o, |v, wv| s.mul(s.mul(s.sub(v, vm), vi), wv)),
            }
        });
    }
}

simd_entry!(fn rms_entry = rms_block<T: Element>(x: &[T], w: &[f32], out: &mut [T], cols: usize, eps: f32));
simd_entry!(fn layer_entry = layer_block<T: Element>(
    x: &[T],
    w: &[f32],
    b: Option<&[f32]>,
    out: &mut [T],
    cols: usize,
    eps: f32,
));
