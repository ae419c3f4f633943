//! Elementwise add and multiply of two `[rows, cols]` tensors, or of a `[rows, cols]` tensor
//! and a `[cols]` row vector broadcast over every row (a bias, a scale).

use super::simd::{map, simd_entry, with_f32_out, Simd};
use super::{check_len, f32_row, for_flat_blocks, for_row_blocks, start_rows, Element, Scratch};
use crate::{Exec, Isa, KernelError};

/// How the second operand `b` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    /// `b` has the shape of `a`: `[rows, cols]`.
    None,
    /// `b` is one row `[cols]`, applied to every row of `a`.
    Row,
}

#[derive(Clone, Copy)]
enum BinOp {
    Add,
    Mul,
}

/// `out = a + b` over `[rows, cols]`, with `b` laid out as `bcast` says.
pub fn add<T: Element>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    rows: usize,
    cols: usize,
    bcast: Broadcast,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let shape = BinShape { rows, cols, bcast };
    binary(exec.into(), BinOp::Add, Some(a), b, out, shape)
}

/// `out = a * b` over `[rows, cols]`, with `b` laid out as `bcast` says.
pub fn mul<T: Element>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    rows: usize,
    cols: usize,
    bcast: Broadcast,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let shape = BinShape { rows, cols, bcast };
    binary(exec.into(), BinOp::Mul, Some(a), b, out, shape)
}

/// `x += b` in place over `[rows, cols]` (a residual add), with `b` laid out as `bcast` says.
pub fn add_inplace<T: Element>(
    x: &mut [T],
    b: &[T],
    rows: usize,
    cols: usize,
    bcast: Broadcast,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let shape = BinShape { rows, cols, bcast };
    binary(exec.into(), BinOp::Add, None, b, x, shape)
}

/// `x *= b` in place over `[rows, cols]`, with `b` laid out as `bcast` says.
pub fn mul_inplace<T: Element>(
    x: &mut [T],
    b: &[T],
    rows: usize,
    cols: usize,
    bcast: Broadcast,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let shape = BinShape { rows, cols, bcast };
    binary(exec.into(), BinOp::Mul, None, b, x, shape)
}

/// The operands' layout: `[rows, cols]`, with `b` laid out as `bcast` says.
#[derive(Clone, Copy)]
struct BinShape {
    rows: usize,
    cols: usize,
    bcast: Broadcast,
}

/// `out = a op b`; `a = None` means in place (`out` is also the first operand).
fn binary<T: Element>(
    exec: Exec,
    op: BinOp,
    a: Option<&[T]>,
    b: &[T],
    out: &mut [T],
    shape: BinShape,
) -> Result<(), KernelError> {
    let BinShape { rows, cols, bcast } = shape;
    let (isa, par, n) = start_rows(exec, rows, cols)?;
    if let Some(a) = a {
        check_len("a", n, a.len())?;
    }
    check_len("b", if bcast == Broadcast::Row { cols } else { n }, b.len())?;
    check_len(if a.is_some() { "out" } else { "x" }, n, out.len())?;
    match bcast {
        // Same shape: one flat array, split evenly whatever the row count.
        Broadcast::None => for_flat_blocks(par, &mut out[..n], |start, block| {
            let r = start..start + block.len();
            flat_entry(isa, op, a.map(|a| &a[r.clone()]), &b[r], block);
        }),
        Broadcast::Row => {
            if cols == 0 {
                return Ok(());
            }
            for_row_blocks(par, rows, cols, &mut out[..n], |first, block| {
                let start = first * cols;
                let xs = a.map(|a| &a[start..start + block.len()]);
                row_entry(isa, op, xs, &b[..cols], block, cols);
            })
        }
    }
    Ok(())
}

#[inline(always)]
fn apply<S: Simd>(s: S, op: BinOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        BinOp::Add => map!(s, [a, b], out, |x, y| s.add(x, y)),
        BinOp::Mul => map!(s, [a, b], out, |x, y| s.mul(x, y)),
    }
}

/// Elements converted per step for f16/bf16.
const CHUNK: usize = 2048;

#[inline(always)]
fn flat_block<S: Simd, T: Element>(s: S, op: BinOp, a: Option<&[T]>, b: &[T], out: &mut [T]) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    for (c, oc) in out.chunks_mut(CHUNK).enumerate() {
        let r = c * CHUNK..c * CHUNK + oc.len();
        let ac = match a {
            Some(a) => f32_row(isa, &a[r.clone()], &mut sc.a),
            None => widen_copy(isa, oc, &mut sc.a),
        };
        let bc = f32_row(isa, &b[r], &mut sc.b);
        with_f32_out!(isa, oc, &mut sc.out, |o| apply(s, op, ac, bc, o));
    }
}

#[inline(always)]
fn row_block<S: Simd, T: Element>(
    s: S,
    op: BinOp,
    a: Option<&[T]>,
    b: &[T],
    out: &mut [T],
    cols: usize,
) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    let bw = f32_row(isa, b, &mut sc.b);
    for (r, or) in out.chunks_exact_mut(cols).enumerate() {
        let ar = match a {
            Some(a) => f32_row(isa, &a[r * cols..(r + 1) * cols], &mut sc.a),
            None => widen_copy(isa, or, &mut sc.a),
        };
        with_f32_out!(isa, or, &mut sc.out, |o| apply(s, op, ar, bw, o));
    }
}

/// A copy of `x` as f32 in `scratch`: the in-place ops read their first operand from it, since
/// the output row is the same memory.
#[inline(always)]
fn widen_copy<'a, T: Element>(isa: Isa, x: &[T], scratch: &'a mut Vec<f32>) -> &'a [f32] {
    scratch.resize(x.len(), 0.0);
    T::widen(isa, x, scratch);
    &scratch[..x.len()]
}

simd_entry!(fn flat_entry = flat_block<T: Element>(op: BinOp, a: Option<&[T]>, b: &[T], out: &mut [T]));
simd_entry!(fn row_entry = row_block<T: Element>(
    op: BinOp,
    a: Option<&[T]>,
    b: &[T],
    out: &mut [T],
    cols: usize,
));
