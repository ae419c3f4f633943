//! Rotary position embedding (RoPE) over `[rows, heads, head_dim]` tensors (one row per
//! token), in the interleaved (GPT-J) and half-split (GPT-NeoX / Llama) layouts.
//!
//! Pair `i` of a head (`i < rotary_dim / 2`) turns by `pos · base^(-2i / rotary_dim)`; the
//! elements from `rotary_dim` to `head_dim` pass through unchanged. Angles and their sines
//! and cosines are computed in f64 once per row and shared by its heads, so large positions
//! lose no precision; the rotation itself is f32.

use super::simd::{simd_entry, Simd};
use super::{check_len, elements, for_row_blocks, Element};
use crate::{Exec, Isa, KernelError, Parallelism};

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

/// The shape of a RoPE operand: `rows` tokens of `heads` heads of `head_dim` values, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeShape {
    /// Rows (tokens).
    pub rows: usize,
    /// Heads per row.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

/// Applies RoPE to `x` in place: `x` is `[rows, heads, head_dim]` row-major.
pub fn rope_inplace<T: Element>(
    x: &mut [T],
    shape: RopeShape,
    params: &RopeParams,
    positions: RopePositions<'_>,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let (isa, par, n) = validate(exec.into(), shape, params, positions, x.len())?;
    run(isa, None, &mut x[..n], shape, params, positions, par);
    Ok(())
}

/// Applies RoPE to `x` into `out` (both `[rows, heads, head_dim]` row-major); elements past
/// `rotary_dim` in each head are copied.
pub fn rope<T: Element>(
    x: &[T],
    out: &mut [T],
    shape: RopeShape,
    params: &RopeParams,
    positions: RopePositions<'_>,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let (isa, par, n) = validate(exec.into(), shape, params, positions, x.len())?;
    check_len("out", n, out.len())?;
    run(
        isa,
        Some(&x[..n]),
        &mut out[..n],
        shape,
        params,
        positions,
        par,
    );
    Ok(())
}

/// Checks a RoPE call whose input `x` holds `x_len` elements; returns the path, the
/// parallelism and the elements of `x` the shape covers.
fn validate(
    exec: Exec,
    shape: RopeShape,
    params: &RopeParams,
    positions: RopePositions<'_>,
    x_len: usize,
) -> Result<(Isa, Parallelism, usize), KernelError> {
    let RopeShape {
        rows,
        heads,
        head_dim,
    } = shape;
    let Exec { isa, par } = exec;
    isa.require()?;
    if !params.rotary_dim.is_multiple_of(2) || params.rotary_dim > head_dim {
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
    match positions {
        RopePositions::PerRow(p) => check_len("positions", rows, p.len())?,
        RopePositions::Start(start) => {
            if start.checked_add(rows as u64).is_none() {
                return Err(KernelError::BadShape {
                    detail: format!("positions {start} + {rows} rows overflow u64"),
                });
            }
        }
    }
    let n = elements(rows, elements(heads, head_dim)?)?;
    check_len("x", n, x_len)?;
    Ok((isa, par, n))
}

fn run<T: Element>(
    isa: Isa,
    src: Option<&[T]>,
    x: &mut [T],
    shape: RopeShape,
    params: &RopeParams,
    positions: RopePositions<'_>,
    par: Parallelism,
) {
    let RopeShape {
        rows,
        heads,
        head_dim,
    } = shape;
    let cols = heads * head_dim;
    if params.rotary_dim == 0 || cols == 0 {
        if let Some(src) = src {
            x.copy_from_slice(src);
        }
        return;
    }
    let half = params.rotary_dim / 2;
    // θ_i = base^(-2i / rotary_dim) as powers of one ratio: one `powf` per call, and the
    // repeated products stay within i·1e-16 of the exact powers.
    let ratio = (params.base as f64).powf(-2.0 / params.rotary_dim as f64);
    let inv_freq: Vec<f64> = std::iter::successors(Some(1.0f64), |f| Some(f * ratio))
        .take(half)
        .collect();
    for_row_blocks(par, rows, cols, x, |first, block| {
        let mut tables = Tables::new(&inv_freq);
        let mut row32 = Vec::new();
        for (r, xr) in block.chunks_exact_mut(cols).enumerate() {
            let row = first + r;
            if let Some(src) = src {
                // Copy row by row so the rotation reads it from cache.
                xr.copy_from_slice(&src[row * cols..(row + 1) * cols]);
            }
            let pos = match positions {
                RopePositions::Start(s) => s + row as u64,
                RopePositions::PerRow(p) => u64::from(p[row]),
            };
            tables.fill(params.style, pos);
            match T::as_f32_mut(xr) {
                Some(xr) => rotate_entry(isa, xr, &tables, params.style, heads, head_dim, half),
                None => {
                    row32.resize(cols, 0.0);
                    T::widen(isa, xr, &mut row32);
                    rotate_entry(
                        isa,
                        &mut row32,
                        &tables,
                        params.style,
                        heads,
                        head_dim,
                        half,
                    );
                    T::narrow(isa, &row32, xr);
                }
            }
        }
    });
}

/// Per-row cos/sin tables in the layout the rotation reads.
///
/// Consecutive positions (the common case: a prompt, or `Start`) step the f64 angles by
/// rotation, cos((p+1)θ) = cos(pθ)cos θ - sin(pθ)sin θ, instead of calling `sin_cos` for every
/// pair of every row; the angles are recomputed exactly every [`RESEED`] rows, so the
/// recurrence's error (about 1e-16 per step) never reaches f32 precision.
struct Tables<'a> {
    inv_freq: &'a [f64],
    /// cos and sin of one step of each frequency (computed when first needed).
    step: Vec<(f64, f64)>,
    /// cos and sin of the current position's angles.
    cur: Vec<(f64, f64)>,
    /// The position `cur` holds, and steps taken since it was computed exactly.
    pos: Option<(u64, usize)>,
    /// NeoX: `cos_i` (`half` entries). Interleaved: `cos_i` twice per pair.
    cos: Vec<f32>,
    /// NeoX: `sin_i`. Interleaved: `-sin_i, +sin_i` per pair.
    sin: Vec<f32>,
}

/// Rows between exact recomputations of the angles.
const RESEED: usize = 32;

impl<'a> Tables<'a> {
    fn new(inv_freq: &'a [f64]) -> Tables<'a> {
        Tables {
            inv_freq,
            step: Vec::new(),
            cur: Vec::with_capacity(inv_freq.len()),
            pos: None,
            cos: Vec::new(),
            sin: Vec::new(),
        }
    }

    fn fill(&mut self, style: RopeStyle, pos: u64) {
        match self.pos {
            Some((p, n)) if p.checked_add(1) == Some(pos) && n < RESEED => {
                if self.step.is_empty() {
                    self.step.extend(self.inv_freq.iter().map(|f| {
                        let (s, c) = f.sin_cos();
                        (c, s)
                    }));
                }
                for (c, st) in self.cur.iter_mut().zip(&self.step) {
                    *c = (c.0 * st.0 - c.1 * st.1, c.1 * st.0 + c.0 * st.1);
                }
                self.pos = Some((pos, n + 1));
            }
            Some((p, _)) if p == pos => {}
            _ => {
                self.cur.clear();
                self.cur.extend(self.inv_freq.iter().map(|&f| {
                    let (s, c) = (pos as f64 * f).sin_cos();
                    (c, s)
                }));
                self.pos = Some((pos, 0));
            }
        }
        self.cos.clear();
        self.sin.clear();
        for &(c, s) in &self.cur {
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
    t: &Tables<'_>,
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
                while i < half {
                    // Full vectors, then one partial vector for the tail.
                    let m = (half - i).min(l);
                    let (x1, x2, c, sn) = if m == l {
                        (
                            s.load(&a[i..]),
                            s.load(&b[i..]),
                            s.load(&t.cos[i..]),
                            s.load(&t.sin[i..]),
                        )
                    } else {
                        (
                            s.load_part(&a[i..half], 0.0),
                            s.load_part(&b[i..half], 0.0),
                            s.load_part(&t.cos[i..half], 0.0),
                            s.load_part(&t.sin[i..half], 0.0),
                        )
                    };
                    let r1 = s.sub(s.mul(x1, c), s.mul(x2, sn));
                    let r2 = s.fma(x1, sn, s.mul(x2, c));
                    if m == l {
                        s.store(r1, &mut a[i..]);
                        s.store(r2, &mut b[i..]);
                    } else {
                        s.store_part(r1, &mut a[i..half]);
                        s.store_part(r2, &mut b[i..half]);
                    }
                    i += l;
                }
            }
        }
    }
}

simd_entry!(fn rotate_entry = rotate_row<>(
    x: &mut [f32],
    t: &Tables<'_>,
    style: RopeStyle,
    heads: usize,
    head_dim: usize,
    half: usize,
));
