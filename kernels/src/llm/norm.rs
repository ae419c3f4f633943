//! RMSNorm and LayerNorm over the last axis of a `[rows, cols]` row-major tensor.
//!
//! Both reduce a row in f32 with several independent vector accumulators, then make a second
//! pass (LayerNorm: a second and third) over the row while it is still in cache.

use super::simd::{dispatch, Simd};
use super::{
    check_isa, check_len, elements, f32_row, for_row_blocks, with_f32_out, Element, Scratch,
};
use crate::{Isa, KernelError, Parallelism};

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
    par: Parallelism,
) -> Result<(), KernelError> {
    rms_norm_with_isa(crate::isa::active(), x, weight, out, rows, cols, eps, par)
}

/// [`rms_norm`] on a given instruction-set path.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_with_isa<T: Element>(
    isa: Isa,
    x: &[T],
    weight: &[T],
    out: &mut [T],
    rows: usize,
    cols: usize,
    eps: f32,
    par: Parallelism,
) -> Result<(), KernelError> {
    check_isa(isa)?;
    let n = elements(rows, cols)?;
    check_len("x", x.len(), n)?;
    check_len("weight", weight.len(), cols)?;
    check_len("out", out.len(), n)?;
    let w = widen_vec(isa, &weight[..cols]);
    for_row_blocks(par, rows, cols, &mut out[..n], |first, block| {
        let xs = &x[first * cols..first * cols + block.len()];
        dispatch!(isa, rms_block(isa, xs, &w, block, cols, eps));
    });
    Ok(())
}

/// LayerNorm: `out[r, c] = (x[r, c] - mean_r) / sqrt(var_r + eps) * weight[c] + bias[c]`,
/// with the mean and (biased) variance of row `r`; no bias when `bias` is `None`.
///
/// `x` and `out` are `[rows, cols]` row-major, `weight` and `bias` are `[cols]`. The variance
/// is computed in a second pass over the centred row, so large means do not cancel.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm<T: Element>(
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
    rows: usize,
    cols: usize,
    eps: f32,
    par: Parallelism,
) -> Result<(), KernelError> {
    layer_norm_with_isa(
        crate::isa::active(),
        x,
        weight,
        bias,
        out,
        rows,
        cols,
        eps,
        par,
    )
}

/// [`layer_norm`] on a given instruction-set path.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_with_isa<T: Element>(
    isa: Isa,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
    rows: usize,
    cols: usize,
    eps: f32,
    par: Parallelism,
) -> Result<(), KernelError> {
    check_isa(isa)?;
    let n = elements(rows, cols)?;
    check_len("x", x.len(), n)?;
    check_len("weight", weight.len(), cols)?;
    if let Some(b) = bias {
        check_len("bias", b.len(), cols)?;
    }
    check_len("out", out.len(), n)?;
    let w = widen_vec(isa, &weight[..cols]);
    let b = bias.map(|b| widen_vec(isa, &b[..cols]));
    let b = b.as_deref();
    for_row_blocks(par, rows, cols, &mut out[..n], |first, block| {
        let xs = &x[first * cols..first * cols + block.len()];
        dispatch!(isa, layer_block(isa, xs, &w, b, block, cols, eps));
    });
    Ok(())
}

/// `src` widened to an owned f32 vector.
pub(crate) fn widen_vec<T: Element>(isa: Isa, src: &[T]) -> Vec<f32> {
    let mut v = vec![0.0; src.len()];
    T::widen(isa, src, &mut v);
    v
}

/// Sum of `f(x)` over a row with four accumulators; `fill` pads the tail (f(fill) must be 0).
#[inline(always)]
pub(crate) fn row_sum<S: Simd>(s: S, x: &[f32], fill: f32, f: impl Fn(S::V, S::V) -> S::V) -> f32 {
    let l = S::LANES;
    let n = x.len();
    let mut acc = [s.splat(0.0); 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = f(s.load(&x[i + k * l..]), *a);
        }
        i += 4 * l;
    }
    while i + l <= n {
        acc[0] = f(s.load(&x[i..]), acc[0]);
        i += l;
    }
    if i < n {
        acc[1] = f(s.load_part(&x[i..], fill), acc[1]);
    }
    s.reduce_add(s.add(s.add(acc[0], acc[1]), s.add(acc[2], acc[3])))
}

/// Applies `f(x, w, b)` lane-wise over a row into `out` (`w`, `b` as long as `x`).
#[inline(always)]
pub(crate) fn row_map3<S: Simd>(
    s: S,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(S::V, S::V, S::V) -> S::V,
) {
    let l = S::LANES;
    let n = x.len();
    let mut i = 0;
    while i + l <= n {
        s.store(
            f(s.load(&x[i..]), s.load(&w[i..]), s.load(&b[i..])),
            &mut out[i..],
        );
        i += l;
    }
    if i < n {
        let v = f(
            s.load_part(&x[i..], 0.0),
            s.load_part(&w[i..], 0.0),
            s.load_part(&b[i..], 0.0),
        );
        s.store_part(v, &mut out[i..n]);
    }
}

#[inline(always)]
fn rms_block<S: Simd, T: Element>(
    s: S,
    isa: Isa,
    x: &[T],
    w: &[f32],
    out: &mut [T],
    cols: usize,
    eps: f32,
) {
    let mut sc = Scratch::default();
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let xr = f32_row(isa, xr, &mut sc.a);
        with_f32_out(isa, or, &mut sc.out, |o| {
            let ss = row_sum(s, xr, 0.0, |v, a| s.fma(v, v, a));
            let inv = 1.0 / (ss / cols as f32 + eps).sqrt();
            let vi = s.splat(inv);
            // `w` stands in for the unused third operand.
            row_map3(s, xr, w, w, o, |v, wv, _| s.mul(s.mul(v, vi), wv));
        });
    }
}

#[inline(always)]
fn layer_block<S: Simd, T: Element>(
    s: S,
    isa: Isa,
    x: &[T],
    w: &[f32],
    b: Option<&[f32]>,
    out: &mut [T],
    cols: usize,
    eps: f32,
) {
    let mut sc = Scratch::default();
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let xr = f32_row(isa, xr, &mut sc.a);
        with_f32_out(isa, or, &mut sc.out, |o| {
            let mean = row_sum(s, xr, 0.0, |v, a| s.add(v, a)) / cols as f32;
            let vm = s.splat(mean);
            // Pad with the mean so the tail lanes add nothing.
            let var = row_sum(s, xr, mean, |v, a| {
                let d = s.sub(v, vm);
                s.fma(d, d, a)
            }) / cols as f32;
            let vi = s.splat(1.0 / (var + eps).sqrt());
            match b {
                Some(b) => row_map3(s, xr, w, b, o, |v, wv, bv| {
                    s.fma(s.mul(s.sub(v, vm), vi), wv, bv)
                }),
                None => row_map3(s, xr, w, w, o, |v, wv, _| {
                    s.mul(s.mul(s.sub(v, vm), vi), wv)
                }),
            }
        });
    }
}
