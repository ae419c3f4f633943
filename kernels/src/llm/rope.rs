//! Rotary position embedding (RoPE) over `[rows, heads, head_dim]` tensors (one row per
//! token), in the interleaved (GPT-J) and half-split (GPT-NeoX / Llama) layouts.
//!
//! Pair `i` of a head (`i < rotary_dim / 2`) turns by `pos · base^(-2i / rotary_dim)`; the
//! elements from `rotary_dim` to `head_dim` pass through unchanged. Angles and their sines
//! and cosines are computed in f64 once per row and shared by its heads, so large positions
//! lose no precision; the rotation itself is f32.

use super::simd::{dispatch, Simd};
use super::{check_isa, check_len, elements, for_row_blocks, Element};
use crate::{Isa, KernelError, Parallelism};

/// Which elements of a head form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// GPT-J: pairs `(2i, 2i + 1)`.
    Interleaved,
    /// GPT-NeoX / Llama (`rotate_half`): pairs `(i, i + rotary_dim / 2)`.
    NeoX,
}

/// The rotation every row shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    /// The pair layout.
    pub style: RopeStyle,
    /// Rotated elements at the start of each head: even, at most `head_dim` (0 rotates
    /// nothing).
    pub rotary_dim: usize,
    /// The frequency base θ (10000 in the original, 500000 in Llama 3, ...): finite, > 0.
    pub base: f32,
}

/// The position of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePositions<'a> {
    /// Row `r` is at position `start + r` (a contiguous run of tokens).
    Start(u64),
    /// Row `r` is at position `positions[r]` (at least `rows` entries).
    PerRow(&'a [u32]),
}

/// Applies RoPE to `x` in place: `x` is `[rows, heads, head_dim]` row-major.
pub fn rope_inplace<T: Element>(
    x: &mut [T],
    rows: usize,
    heads: usize,
    head_dim: usize,
    params: &RopeParams,
    positions: RopePositions<'_>,
    par: Parallelism,
) -> Result<(), KernelError> {
    rope_inplace_with_isa(
        crate::isa::active(),
        x,
        rows,
        heads,
        head_dim,
        params,
        positions,
        par,
    )
}

/// [`rope_inplace`] on a given instruction-set path.
#[allow(clippy::too_many_arguments)]
pub fn rope_inplace_with_isa<T: Element>(
    isa: Isa,
    x: &mut [T],
    rows: usize,
    heads: usize,
    head_dim: usize,
    params: &RopeParams,
    positions: RopePositions<'_>,
    par: Parallelism,
) -> Result<(), KernelError> {
    let cols = validate(isa, rows, heads, head_dim, params, positions)?;
    let n = elements(rows, cols)?;
    check_len("x", x.len(), n)?;
    run(
        isa,
        &mut x[..n],
        rows,
        heads,
        head_dim,
        params,
        positions,
        par,
    );
    Ok(())
}

/// Applies RoPE to `x` into `out` (both `[rows, heads, head_dim]` row-major); elements past
/// `rotary_dim` in each head are copied.
#[allow(clippy::too_many_arguments)]
pub fn rope<T: Element>(
    x: &[T],
    out: &mut [T],
    rows: usize,
    heads: usize,
    head_dim: usize,
    params: &RopeParams,
    positions: RopePositions<'_>,
    par: Parallelism,
) -> Result<(), KernelError> {
    rope_with_isa(
        crate::isa::active(),
        x,
        out,
        rows,
        heads,
        head_dim,
        params,
        positions,
        par,
    )
}

/// [`rope`] on a given instruction-set path.
#[allow(clippy::too_many_arguments)]
pub fn rope_with_isa<T: Element>(
    isa: Isa,
    x: &[T],
    out: &mut [T],
    rows: usize,
    heads: usize,
    head_dim: usize,
    params: &RopeParams,
    positions: RopePositions<'_>,
    par: Parallelism,
) -> Result<(), KernelError> {
    let cols = validate(isa, rows, heads, head_dim, params, positions)?;
    let n = elements(rows, cols)?;
    check_len("x", x.len(), n)?;
    check_len("out", out.len(), n)?;
    out[..n].copy_from_slice(&x[..n]);
    run(
        isa,
        &mut out[..n],
        rows,
        heads,
        head_dim,
        params,
        positions,
        par,
    );
    Ok(())
}

fn validate(
    isa: Isa,
    rows: usize,
    heads: usize,
    head_dim: usize,
    params: &RopeParams,
    positions: RopePositions<'_>,
) -> Result<usize, KernelError> {
    check_isa(isa)?;
    if params.rotary_dim % 2 != 0 || params.rotary_dim > head_dim {
        return Err(KernelError::BadShape {
            detail: format!(
                "rotary_dim {} must be even and at most head_dim {head_dim}",
                params.rotary_dim
            ),
        });
    }
    if !(params.base.is_finite() && params.base > 0.0) {
        return Err(KernelError::BadShape {
            detail: format!("rope base {} must be finite and positive", params.base),
        });
    }
    if let RopePositions::PerRow(p) = positions {
        check_len("positions", p.len(), rows)?;
    }
    elements(heads, head_dim)
}

#[allow(clippy::too_many_arguments)]
fn run<T: Element>(
    isa: Isa,
    x: &mut [T],
    rows: usize,
    heads: usize,
    head_dim: usize,
    params: &RopeParams,
    positions: RopePositions<'_>,
    par: Parallelism,
) {
    let cols = heads * head_dim;
    if params.rotary_dim == 0 || cols == 0 {
        return;
    }
    let half = params.rotary_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| (params.base as f64).powf(-2.0 * i as f64 / params.rotary_dim as f64))
        .collect();
    for_row_blocks(par, rows, cols, x, |first, block| {
        let mut tables = Tables::default();
        let mut row32 = Vec::new();
        for (r, xr) in block.chunks_exact_mut(cols).enumerate() {
            let pos = match positions {
                RopePositions::Start(s) => s as f64 + (first + r) as f64,
                RopePositions::PerRow(p) => f64::from(p[first + r]),
            };
            tables.fill(params.style, &inv_freq, pos);
            match T::as_f32_mut(xr) {
                Some(xr) => dispatch!(
                    isa,
                    rotate_row(xr, &tables, params.style, heads, head_dim, half)
                ),
                None => {
                    row32.resize(cols, 0.0);
                    T::widen(isa, xr, &mut row32);
                    dispatch!(
                        isa,
                        rotate_row(&mut row32, &tables, params.style, heads, head_dim, half)
                    );
                    T::narrow(isa, &row32, xr);
                }
            }
        }
    });
}

/// Per-row cos/sin tables in the layout the rotation reads.
#[derive(Default)]
struct Tables {
    /// NeoX: `cos_i` (`half` entries). Interleaved: `cos_i` twice per pair.
    cos: Vec<f32>,
    /// NeoX: `sin_i`. Interleaved: `-sin_i, +sin_i` per pair.
    sin: Vec<f32>,
}

impl Tables {
    fn fill(&mut self, style: RopeStyle, inv_freq: &[f64], pos: f64) {
        self.cos.clear();
        self.sin.clear();
        for &f in inv_freq {
            let (s, c) = (pos * f).sin_cos();
            match style {
                RopeStyle::NeoX => {
                    self.cos.push(c as f32);
                    self.sin.push(s as f32);
                }
                RopeStyle::Interleaved => {
                    self.cos.extend([c as f32, c as f32]);
                    self.sin.extend([-s as f32, s as f32]);
                }
            }
        }
    }
}

#[inline(always)]
fn rotate_row<S: Simd>(
    s: S,
    x: &mut [f32],
    t: &Tables,
    style: RopeStyle,
    heads: usize,
    head_dim: usize,
    half: usize,
) {
    let l = S::LANES;
    for h in x.chunks_exact_mut(head_dim).take(heads) {
        match style {
            RopeStyle::Interleaved => {
                // out = x·cos + swap_pairs(x)·(-sin, +sin): pairs never straddle a vector
                // because vectors start at even offsets.
                let n = 2 * half;
                let mut i = 0;
                while i + l <= n {
                    let v = s.load(&h[i..]);
                    let r = s.fma(
                        v,
                        s.load(&t.cos[i..]),
                        s.mul(s.swap_pairs(v), s.load(&t.sin[i..])),
                    );
                    s.store(r, &mut h[i..]);
                    i += l;
                }
                if i < n {
                    let v = s.load_part(&h[i..n], 0.0);
                    let c = s.load_part(&t.cos[i..n], 0.0);
                    let sn = s.load_part(&t.sin[i..n], 0.0);
                    let r = s.fma(v, c, s.mul(s.swap_pairs(v), sn));
                    s.store_part(r, &mut h[i..n]);
                }
            }
            RopeStyle::NeoX => {
                let (a, b) = h[..2 * half].split_at_mut(half);
                let mut i = 0;
                let rot = |x1: S::V, x2: S::V, c: S::V, sn: S::V| {
                    (
                        s.sub(s.mul(x1, c), s.mul(x2, sn)),
                        s.fma(x1, sn, s.mul(x2, c)),
                    )
                };
                while i + l <= half {
                    let (r1, r2) = rot(
                        s.load(&a[i..]),
                        s.load(&b[i..]),
                        s.load(&t.cos[i..]),
                        s.load(&t.sin[i..]),
                    );
                    s.store(r1, &mut a[i..]);
                    s.store(r2, &mut b[i..]);
                    i += l;
                }
                if i < half {
                    let (r1, r2) = rot(
                        s.load_part(&a[i..], 0.0),
                        s.load_part(&b[i..], 0.0),
                        s.load_part(&t.cos[i..], 0.0),
                        s.load_part(&t.sin[i..], 0.0),
                    );
                    s.store_part(r1, &mut a[i..]);
                    s.store_part(r2, &mut b[i..]);
                }
            }
        }
    }
}
