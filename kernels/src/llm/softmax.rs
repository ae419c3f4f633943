//! Numerically stable softmax over the last axis: `out = exp(s·x - max(s·x)) / sum(...)`.

use super::math;
use super::simd::{simd_entry, with_f32_out, Simd};
use super::{check_lens, f32_row, for_row_blocks, start_rows, Element, Scratch};
use crate::{Exec, KernelError};

/// Softmax over each row of `x` (`[rows, cols]` row-major) into `out`, of `scale * x`
/// (`scale = 1.0` for the plain softmax; attention passes `1/sqrt(d)`).
///
/// The row maximum is subtracted before exponentiating, so no finite input overflows.
/// Special values follow the arithmetic: a row containing NaN or +inf, or a row whose scaled
/// values are all -inf, gives NaN everywhere (as PyTorch does); -inf entries in an otherwise
/// finite row give exactly 0. Relative error per element is below about 1e-6 (f32 output).
pub fn softmax<T: Element>(
    x: &[T],
    out: &mut [T],
    rows: usize,
    cols: usize,
    scale: f32,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let (isa, par, n) = start_rows(exec, rows, cols)?;
    check_lens(&[("x", n, x.len()), ("out", n, out.len())])?;
    for_row_blocks(par, rows, cols, &mut out[..n], |first, block| {
        let xs = &x[first * cols..first * cols + block.len()];
        softmax_entry(isa, xs, block, cols, scale);
    });
    Ok(())
}

#[inline(always)]
fn softmax_block<S: Simd, T: Element>(s: S, x: &[T], out: &mut [T], cols: usize, scale: f32) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let xr = f32_row(isa, xr, &mut sc.a);
        with_f32_out!(isa, or, &mut sc.out, |o| softmax_row(s, xr, o, scale));
    }
}

#[inline(always)]
pub(crate) fn softmax_row<S: Simd>(s: S, x: &[f32], out: &mut [f32], scale: f32) {
    let l = S::LANES;
    let n = x.len();
    let vs = s.splat(scale);
    // Pass 1: the maximum of scale * x (NaN lanes are skipped here and poison pass 2).
    let ninf = s.splat(f32::NEG_INFINITY);
    let mut m = [ninf; 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (k, a) in m.iter_mut().enumerate() {
            *a = s.max(s.mul(s.load(&x[i + k * l..]), vs), *a);
        }
        i += 4 * l;
    }
    while i + l <= n {
        m[0] = s.max(s.mul(s.load(&x[i..]), vs), m[0]);
        i += l;
    }
    if i < n {
        // Padding that scales to -inf (or NaN for scale 0, which `max` skips).
        let fill = if scale < 0.0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
        m[1] = s.max(s.mul(s.load_part(&x[i..], fill), vs), m[1]);
    }
    let mx = s.reduce_max(s.max(s.max(m[0], m[1]), s.max(m[2], m[3])));
    let vm = s.splat(mx);
    // Pass 2: e = exp(scale * x - max), stored, and summed.
    let mut acc = [s.splat(0.0); 2];
    let mut i = 0;
    while i + 2 * l <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let e = math::exp(
                s,
                s.fma(s.load(&x[i + k * l..]), vs, s.sub(s.splat(0.0), vm)),
            );
            s.store(e, &mut out[i + k * l..]);
            *a = s.add(*a, e);
        }
        i += 2 * l;
    }
    while i + l <= n {
        let e = math::exp(s, s.fma(s.load(&x[i..]), vs, s.sub(s.splat(0.0), vm)));
        s.store(e, &mut out[i..]);
        acc[0] = s.add(acc[0], e);
        i += l;
    }
    if i < n {
        let e = math::exp(
            s,
            s.fma(s.load_part(&x[i..], 0.0), vs, s.sub(s.splat(0.0), vm)),
        );
        // Zero the padding lanes before summing.
        let mut buf = [0.0f32; 16];
        s.store_part(e, &mut out[i..n]);
        buf[..n - i].copy_from_slice(&out[i..n]);
        acc[1] = s.add(acc[1], s.load_part(&buf[..n - i], 0.0));
    }
    let sum = s.reduce_add(s.add(acc[0], acc[1]));
    let vinv = s.splat(1.0 / sum);
    let mut i = 0;
    while i + l <= n {
        let v = s.mul(s.load(&out[i..]), vinv);
        s.store(v, &mut out[i..]);
        i += l;
    }
    if i < n {
        let v = s.mul(s.load_part(&out[i..n], 0.0), vinv);
        s.store_part(v, &mut out[i..n]);
    }
}

simd_entry!(fn softmax_entry = softmax_block<T: Element>(x: &[T], out: &mut [T], cols: usize, scale: f32));
