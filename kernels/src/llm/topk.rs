//! Argmax and top-k over the last axis, so sampling can run where the logits are.
//!
//! Order: values compare as numbers, except that NaN counts as larger than +inf (every NaN
//! equal to every other) and -0.0 equals +0.0. Equal values are ranked by lower index first.
//! So argmax returns the first NaN of a row that has one (as numpy and PyTorch do), and top-k
//! lists NaNs first.

use super::simd::{simd_entry, Simd};
use super::{check_lens, elements, f32_row, for_row_blocks_work, start_rows, Element, Scratch};
use crate::{Exec, Isa, KernelError};

/// `out[r]` = the index of the largest value in row `r` of `x` (`[rows, cols]` row-major),
/// the lowest such index on ties; see the module docs for NaN.
///
/// `cols` must be at least 1 when `rows > 0` and fit a `u32` index.
pub fn argmax<T: Element>(
    x: &[T],
    out: &mut [u32],
    rows: usize,
    cols: usize,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let (isa, par, n) = start_rows(exec, rows, cols)?;
    check_lens(&[("x", n, x.len()), ("out", rows, out.len())])?;
    check_index_range(rows, cols)?;
    if rows == 0 {
        return Ok(());
    }
    for_row_blocks_work(par, rows, 1, n, &mut out[..rows], |first, block| {
        let xs = &x[first * cols..(first + block.len()) * cols];
        argmax_entry(isa, xs, block, cols);
    });
    Ok(())
}

/// The `k` largest values of each row of `x` (`[rows, cols]`) in descending order, into
/// `values` and `indices` (`[rows, k]` each); ties go to the lower index, see the module docs
/// for NaN. `k` may be 0 (nothing is written) but not larger than `cols`.
pub fn top_k<T: Element>(
    x: &[T],
    values: &mut [T],
    indices: &mut [u32],
    rows: usize,
    cols: usize,
    k: usize,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let (isa, par, n) = start_rows(exec, rows, cols)?;
    if k > cols {
        return Err(KernelError::BadShape {
            detail: format!("top-k with k = {k} over rows of {cols} elements"),
        });
    }
    let nk = elements(rows, k)?;
    check_lens(&[
        ("x", n, x.len()),
        ("values", nk, values.len()),
        ("indices", nk, indices.len()),
    ])?;
    check_index_range(rows, cols)?;
    if rows == 0 || k == 0 {
        return Ok(());
    }
    let values = &mut values[..nk];
    for_row_blocks_work(par, rows, k, n, &mut indices[..nk], |first, block| {
        let xs = &x[first * cols..(first + block.len() / k) * cols];
        let mut sc = Scratch::default();
        let mut best = Vec::with_capacity(k);
        for (r, idx) in block.chunks_exact_mut(k).enumerate() {
            let xr = &xs[r * cols..(r + 1) * cols];
            if k == 1 {
                let row = f32_row(isa, xr, &mut sc.a);
                idx[0] = argmax_row_entry(isa, row) as u32;
            } else {
                top_k_row(isa, xr, k, &mut sc.a, &mut best, idx);
            }
        }
    });
    // Gather the values after the (possibly parallel) index pass: a copy of rows * k.
    for (r, (v, i)) in values
        .chunks_exact_mut(k)
        .zip(indices.chunks_exact(k))
        .enumerate()
    {
        for (v, &i) in v.iter_mut().zip(i) {
            *v = x[r * cols + i as usize];
        }
    }
    Ok(())
}

fn check_index_range(rows: usize, cols: usize) -> Result<(), KernelError> {
    if rows > 0 && cols == 0 {
        return Err(KernelError::BadShape {
            detail: format!("argmax/top-k over {rows} empty rows"),
        });
    }
    if cols > u32::MAX as usize + 1 {
        return Err(KernelError::Unsupported {
            detail: format!("rows of {cols} elements: indices are u32"),
        });
    }
    Ok(())
}

#[inline(always)]
fn argmax_block<S: Simd, T: Element>(s: S, x: &[T], out: &mut [u32], cols: usize) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    for (xr, o) in x.chunks_exact(cols).zip(out.iter_mut()) {
        let xr = f32_row(isa, xr, &mut sc.a);
        *o = argmax_row(s, xr) as u32;
    }
}

/// The argmax of a non-empty row in one pass: a vector compare against the best value so far
/// skips every vector that cannot hold a better one (greater, or NaN); candidates are checked
/// in index order, so ties keep the lowest index and the first NaN ends the search.
#[inline(always)]
fn argmax_row<S: Simd>(s: S, x: &[f32]) -> usize {
    let l = S::LANES;
    let n = x.len();
    let mut best = 0;
    let mut bv = x[0];
    if bv.is_nan() {
        return 0;
    }
    let mut vb = s.splat(bv);
    let mut i = 1;
    while i + l <= n {
        let mut bits = s.not_le_mask(s.load(&x[i..]), vb);
        if bits != 0 {
            while bits != 0 {
                let j = i + bits.trailing_zeros() as usize;
                if x[j].is_nan() {
                    return j;
                }
                if x[j] > bv {
                    bv = x[j];
                    best = j;
                }
                bits &= bits - 1;
            }
            vb = s.splat(bv);
        }
        i += l;
    }
    for (j, &v) in x.iter().enumerate().skip(i) {
        if v.is_nan() {
            return j;
        }
        if v > bv {
            bv = v;
            best = j;
        }
    }
    best
}

/// A key that orders (value, index) pairs as this module ranks them: larger is better.
#[inline(always)]
fn rank_key(v: f32, i: usize) -> u64 {
    let ord = if v.is_nan() {
        u32::MAX
    } else {
        // +0.0 for -0.0, then the usual sign-magnitude to unsigned order map.
        let b = (v + 0.0).to_bits();
        if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        }
    };
    (u64::from(ord) << 32) | u64::from(u32::MAX - i as u32)
}

#[inline(always)]
fn key_index(key: u64) -> u32 {
    u32::MAX - key as u32
}

/// Top-k of one row into `idx` (length k >= 2).
fn top_k_row<T: Element>(
    isa: Isa,
    xr: &[T],
    k: usize,
    scratch: &mut Vec<f32>,
    best: &mut Vec<u64>,
    idx: &mut [u32],
) {
    let row = f32_row(isa, xr, scratch);
    best.clear();
    if k * 8 >= row.len() {
        // Large k: rank everything.
        best.extend(row.iter().enumerate().map(|(i, &v)| rank_key(v, i)));
        best.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        best.truncate(k);
    } else {
        // Small k: keep the k best seen so far, sorted descending; most elements fail the
        // comparison with the current k-th and cost one compare.
        best.extend(row[..k].iter().enumerate().map(|(i, &v)| rank_key(v, i)));
        best.sort_unstable_by(|a, b| b.cmp(a));
        top_k_scan_entry(isa, row, k, best);
    }
    best.sort_unstable_by(|a, b| b.cmp(a));
    for (o, &key) in idx.iter_mut().zip(best.iter()) {
        *o = key_index(key);
    }
}

/// Offers `row[i]`, `i >= k`, to `best` (the k best so far, sorted descending).
///
/// A vector compare against the current k-th value skips every vector with no candidate:
/// a later element can only enter if it is greater than that value, or NaN (an equal value
/// has a higher index, so ranks lower). Candidates are then ranked exactly.
#[inline(always)]
fn top_k_scan<S: Simd>(s: S, row: &[f32], k: usize, best: &mut Vec<u64>) {
    let l = S::LANES;
    let n = row.len();
    let mut worst = best[k - 1];
    let mut wv = s.splat(row[key_index(worst) as usize]);
    let mut offer = |j: usize, worst: &mut u64| {
        let key = rank_key(row[j], j);
        if key > *worst {
            let pos = best.partition_point(|&b| b > key);
            best.pop();
            best.insert(pos, key);
            *worst = best[k - 1];
        }
    };
    let mut i = k;
    while i + l <= n {
        let mut bits = s.not_le_mask(s.load(&row[i..]), wv);
        if bits != 0 {
            while bits != 0 {
                offer(i + bits.trailing_zeros() as usize, &mut worst);
                bits &= bits - 1;
            }
            wv = s.splat(row[key_index(worst) as usize]);
        }
        i += l;
    }
    for j in i..n {
        offer(j, &mut worst);
    }
}

simd_entry!(fn top_k_scan_entry = top_k_scan<>(row: &[f32], k: usize, best: &mut Vec<u64>));
simd_entry!(fn argmax_entry = argmax_block<T: Element>(x: &[T], out: &mut [u32], cols: usize));
simd_entry!(fn argmax_row_entry = argmax_row<>(x: &[f32]) -> usize);
