//! Sampling one token id per row of logits: greedy, temperature, top-k and top-p (nucleus),
//! so a decoder's chosen id is the only value that leaves the device.
//!
//! The rule, per row of `[rows, vocab]` logits (the driver ABI's KNPU_KERNEL_SAMPLE):
//! temperature 0 is greedy (the row's [`argmax`](super::argmax), lowest index on ties).
//! Otherwise `z = x / temperature` with NaN counted as -inf; keep the `top_k` largest `z`
//! (0: all; ties to the lower index); `p = softmax(kept z)` (if the largest kept `z` is +inf,
//! the +inf entries share all the probability; if it is -inf, the row's argmax is chosen);
//! order the kept entries by `p` descending (ties to the lower index) and keep the shortest
//! prefix whose sum reaches `top_p` (at least one entry); finally walk the kept entries in
//! ascending index order summing their renormalised `p`, and choose the first index at which
//! the sum exceeds the row's uniform number `u` (the last kept index with non-zero `p` when
//! rounding leaves `u` above the total).
//!
//! The uniform numbers are an input, one per row: the caller draws them (a driver from its
//! counter-based generator), so this module holds no random state. Probabilities are computed
//! in f64 on a portable scalar path: there are few rows, and a row of a 50k vocabulary costs
//! one pass, a selection (`select_nth_unstable`) for top-k and a sort of only the candidates
//! the nucleus needs (grown by doubling), never a sort of the whole row unless the nucleus
//! spans it.

use std::cmp::Ordering;

use super::{check_len, elements, f32_row, for_row_blocks_work, topk, Element};
use crate::{Exec, KernelError};

/// The scalars of a sampling launch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    /// Divides the logits; 0 is greedy. Finite and `>= 0`.
    pub temperature: f32,
    /// Keep only the `top_k` largest logits; 0 keeps all. At most `vocab`.
    pub top_k: usize,
    /// Keep the shortest prefix of the sorted probabilities whose sum reaches `top_p`;
    /// 1 keeps all. In `(0, 1]`.
    pub top_p: f32,
}

impl SampleParams {
    /// Whether these parameters choose the argmax without a random number.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Writes to `out[r]` one id drawn from row `r` of `logits` (`[rows, vocab]` row-major) with
/// the uniform number `uniforms[r]` in `[0, 1)` (unused, and may be empty, when greedy), by
/// the rule in the module docs.
pub fn sample<T: Element>(
    logits: &[T],
    uniforms: &[f64],
    out: &mut [u32],
    rows: usize,
    vocab: usize,
    params: &SampleParams,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    isa.require()?;
    check_params(params, vocab)?;
    let n = elements(rows, vocab)?;
    check_len("logits", n, logits.len())?;
    check_len("out", rows, out.len())?;
    if params.is_greedy() {
        return topk::argmax(logits, out, rows, vocab, Exec { isa, par });
    }
    check_len("uniforms", rows, uniforms.len())?;
    if let Some(u) = uniforms[..rows].iter().find(|u| !(0.0..1.0).contains(*u)) {
        return Err(KernelError::BadShape {
            detail: format!("uniform number {u} is not in [0, 1)"),
        });
    }
    if rows == 0 {
        return Ok(());
    }
    if vocab == 0 || vocab > u32::MAX as usize + 1 {
        return Err(KernelError::BadShape {
            detail: format!("sampling from rows of {vocab} ids (1 ..= 2^32 allowed)"),
        });
    }
    for_row_blocks_work(par, rows, 1, n, &mut out[..rows], |first, block| {
        let mut scratch = Vec::new();
        let mut cand = Vec::with_capacity(vocab);
        for (i, o) in block.iter_mut().enumerate() {
            let r = first + i;
            let row = f32_row(isa, &logits[r * vocab..(r + 1) * vocab], &mut scratch);
            *o = sample_row(row, uniforms[r], params, &mut cand);
        }
    });
    Ok(())
}

fn check_params(p: &SampleParams, vocab: usize) -> Result<(), KernelError> {
    let bad = |detail: String| Err(KernelError::BadShape { detail });
    if !(p.temperature.is_finite() && p.temperature >= 0.0) {
        return bad(format!(
            "temperature {} must be finite and >= 0",
            p.temperature
        ));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad(format!("top_p {} must be in (0, 1]", p.top_p));
    }
    if p.top_k > vocab {
        return bad(format!(
            "top_k {} exceeds the vocabulary of {vocab}",
            p.top_k
        ));
    }
    Ok(())
}

/// Descending by key, ties to the lower index.
fn by_key_desc(a: &(f64, u32), b: &(f64, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The greedy choice of a row: its first NaN, else its first largest value.
fn argmax_row(row: &[f32]) -> u32 {
    if let Some(i) = row.iter().position(|v| v.is_nan()) {
        return i as u32;
    }
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// One row's draw; `cand` is scratch of `(key, index)` pairs.
fn sample_row(row: &[f32], u: f64, p: &SampleParams, cand: &mut Vec<(f64, u32)>) -> u32 {
    let inv = f64::from(p.temperature);
    cand.clear();
    // NaN counts as -inf; `+ 0.0` makes -0 equal +0 under `total_cmp`.
    cand.extend(row.iter().enumerate().map(|(i, &x)| {
        let z = if x.is_nan() {
            f64::NEG_INFINITY
        } else {
            f64::from(x) / inv + 0.0
        };
        (z, i as u32)
    }));
    // Whether `cand` is no longer in index order.
    let mut permuted = false;
    let k = if p.top_k == 0 { row.len() } else { p.top_k };
    if k < cand.len() {
        cand.select_nth_unstable_by(k - 1, by_key_desc);
        cand.truncate(k);
        permuted = true;
    }
    let top = cand.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
    if top == f64::NEG_INFINITY {
        return argmax_row(row);
    }
    // Weights: exp(z - top), or the +inf entries alone when the top is +inf.
    for c in cand.iter_mut() {
        c.0 = if top == f64::INFINITY {
            f64::from(u8::from(c.0 == f64::INFINITY))
        } else {
            (c.0 - top).exp()
        };
    }
    if p.top_p < 1.0 {
        let total: f64 = cand.iter().map(|c| c.0).sum();
        let keep = nucleus(cand, f64::from(p.top_p) * total);
        cand.truncate(keep);
        permuted = true;
    }
    if permuted {
        cand.sort_unstable_by_key(|c| c.1);
    }
    let total: f64 = cand.iter().map(|c| c.0).sum();
    let target = u * total;
    let mut sum = 0.0;
    for &(w, i) in cand.iter() {
        sum += w;
        if target < sum {
            return i;
        }
    }
    cand.iter()
        .rev()
        .find(|c| c.0 > 0.0)
        .map_or(cand[0].1, |c| c.1)
}

/// Orders the front of `cand` (weights) by weight descending, ties to the lower index, far
/// enough to find the shortest prefix whose sum reaches `threshold`, and returns its length.
/// Sorts 64 candidates first and doubles the sorted front until the prefix reaches the
/// threshold, so a peaked distribution costs one selection and a small sort.
fn nucleus(cand: &mut [(f64, u32)], threshold: f64) -> usize {
    let len = cand.len();
    let (mut start, mut end) = (0, len.min(64));
    let mut sum = 0.0;
    loop {
        let rest = &mut cand[start..];
        if end < len {
            rest.select_nth_unstable_by(end - start - 1, by_key_desc);
        }
        rest[..end - start].sort_unstable_by(by_key_desc);
        for (i, c) in cand[start..end].iter().enumerate() {
            sum += c.0;
            if sum >= threshold {
                return start + i + 1;
            }
        }
        if end == len {
            return len;
        }
        (start, end) = (end, (end * 2).min(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_grows_past_its_first_block() {
        // 200 equal weights: reaching 0.9 of the total needs 180 of them, past the first 64.
        let mut cand: Vec<(f64, u32)> = (0..200).map(|i| (1.0, 199 - i)).collect();
        assert_eq!(nucleus(&mut cand, 180.0), 180);
        // The kept prefix is the 180 lowest indices (ties to the lower index).
        let mut kept: Vec<u32> = cand[..180].iter().map(|c| c.1).collect();
        kept.sort_unstable();
        assert_eq!(kept, (0..180).collect::<Vec<_>>());
    }
}
