//! The small operations a transformer runs around its matmuls: normalisation, rotary
//! position embedding, activations, softmax, add/mul with broadcast, embedding lookup, casts,
//! argmax and top-k.
//!
//! Elements are `f32`, `f16` or `bf16` (indices and token ids `u32`); every op computes in f32.
//! Matrices are row-major and contiguous, and every operand must hold exactly the elements its
//! shape names (take a view to use part of a buffer). An input may be the output itself:
//! the result is as if every input were read before any output was written.

use super::{float, optional, same_device, submit, supported_raw, Operand};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::{llm as rules, OpError};
use knpu_driver_abi::{self as abi, SizedStruct};

pub use knpu_driver_abi::ops::{Activation, BinaryOp, Broadcast, RopeStyle};

/// An operand of a launcher: its name, its memory and the shape it must have.
type Arg<'s> = (&'static str, &'s dyn Operand, &'s [usize]);

/// Checks each operand's device and shape, in order.
fn check(stream: &Stream, operands: &[Arg<'_>]) -> Result<()> {
    for &(name, s, dims) in operands {
        s.check_shape(stream, name, dims)?;
    }
    Ok(())
}

/// A rule's verdict as `Error::InvalidValue`, followed by the values it judged.
fn rule<R>(verdict: std::result::Result<R, OpError>, values: impl FnOnce() -> String) -> Result<R> {
    verdict.map_err(|e| Error::invalid(format!("{e} ({})", values())))
}

/// Queues `params` for `kernel` (`what` in errors) once the device is known to run it on
/// every dtype in `dtypes`, and notes every operand's use. An op without `work` passes the
/// same checks and queues nothing.
fn queue<P>(
    stream: &Stream,
    (kernel, what): (u32, &str),
    dtypes: &[u32],
    work: bool,
    params: &P,
    used: &[Option<&dyn Operand>],
) -> Result<()> {
    for &dtype in dtypes {
        supported_raw(stream, kernel, dtype, what)?;
    }
    if !work {
        return Ok(());
    }
    submit(stream, kernel, params, used)
}

/// Queues RMS normalisation of the rows of `x` (`[rows, cols]`):
/// `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight` (`weight` is `[cols]`).
pub fn rms_norm<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    weight: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    let (x, w, o) = (
        x.as_device_slice(),
        weight.as_device_slice(),
        out.as_device_slice_mut(),
    );
    float::<T>("x")?;
    let dims = [rows, cols];
    check(
        stream,
        &[
            ("x", &x, &dims),
            ("weight", &w, &[cols]),
            ("out", &o, &dims),
        ],
    )?;
    rule(rules::check_eps(eps), || format!("got {eps}"))?;
    let mut p = abi::KnpuRmsNormParams::sized();
    (p.dtype, p.rows, p.cols, p.eps) = (T::ABI, rows as u64, cols as u64, eps);
    (p.x, p.weight, p.out) = (x.addr(), w.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_RMS_NORM, "rms_norm");
    let used = [Some(&x as &dyn Operand), Some(&w), Some(&o)];
    queue(stream, kernel, &[T::ABI], !x.is_empty(), &p, &used)
}

/// Queues layer normalisation of the rows of `x` (`[rows, cols]`):
/// `out[r, :] = (x[r, :] - mean) / sqrt(var + eps) · weight + bias` (`weight`, `bias` `[cols]`).
#[allow(clippy::too_many_arguments)] // the shape and eps are the op's own arguments
pub fn layer_norm<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    weight: &impl AsDeviceSlice<T>,
    bias: Option<&dyn AsDeviceSlice<T>>,
    out: &mut impl AsDeviceSliceMut<T>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    let (x, w, o) = (
        x.as_device_slice(),
        weight.as_device_slice(),
        out.as_device_slice_mut(),
    );
    let b = bias.map(|b| b.as_device_slice());
    float::<T>("x")?;
    let dims = [rows, cols];
    check(stream, &[("x", &x, &dims), ("weight", &w, &[cols])])?;
    if let Some(b) = &b {
        b.check_shape(stream, "bias", &[cols])?;
    }
    o.check_shape(stream, "out", &dims)?;
    rule(rules::check_eps(eps), || format!("got {eps}"))?;
    let mut p = abi::KnpuLayerNormParams::sized();
    (p.dtype, p.rows, p.cols, p.eps) = (T::ABI, rows as u64, cols as u64, eps);
    (p.x, p.weight, p.out) = (x.addr(), w.addr(), o.addr());
    p.bias = b.as_ref().map_or(0, |b| b.addr());
    let kernel = (abi::KNPU_KERNEL_LAYER_NORM, "layer_norm");
    let used = [Some(&x as &dyn Operand), Some(&w), optional(&b), Some(&o)];
    queue(stream, kernel, &[T::ABI], !x.is_empty(), &p, &used)
}

/// The position of each row of a rotary embedding.
#[derive(Clone, Copy)]
pub enum RopePositions<'a> {
    /// Row `r` is at position `start + r`.
    Start(u64),
    /// Row `r` is at position `positions[r]` (`[rows]` on the device).
    PerRow(&'a dyn AsDeviceSlice<u32>),
}

/// A rotary embedding: layout, rotated width, frequency base and positions.
#[derive(Clone, Copy)]
pub struct Rope<'a> {
    /// The pair layout.
    pub style: RopeStyle,
    /// Rotated elements at the start of each head: even, at most `head_dim`.
    pub rotary_dim: usize,
    /// The frequency base θ: finite, > 0.
    pub base: f32,
    /// Each row's position.
    pub positions: RopePositions<'a>,
}

/// Queues a rotary position embedding of `x` (`[rows, heads, head_dim]`) into `out` (same
/// shape): pair `i` of each head turns by `pos · base^(-2i / rotary_dim)`; elements past
/// `rotary_dim` are copied.
pub fn rope<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
    rows: usize,
    heads: usize,
    head_dim: usize,
    rope: &Rope<'_>,
) -> Result<()> {
    let (x, o) = (x.as_device_slice(), out.as_device_slice_mut());
    let dims = [rows, heads, head_dim];
    float::<T>("x")?;
    check(stream, &[("x", &x, &dims), ("out", &o, &dims)])?;
    let mut p = abi::KnpuRopeParams::sized();
    let pos = match rope.positions {
        RopePositions::PerRow(positions) => {
            let positions = positions.as_device_slice();
            positions.check_shape(stream, "positions", &[rows])?;
            p.positions = positions.addr();
            Some(positions)
        }
        RopePositions::Start(start) => {
            let verdict = rules::check_start_position(start, rows as u64);
            rule(verdict, || {
                format!("positions from {start} for {rows} rows")
            })?;
            p.start_position = start;
            None
        }
    };
    let (rotary_dim, base) = (rope.rotary_dim, rope.base);
    rule(
        rules::check_rope(rotary_dim as u64, head_dim as u64, base),
        || format!("rotary_dim {rotary_dim}, head_dim {head_dim}, base {base}"),
    )?;
    (p.dtype, p.style, p.base) = (T::ABI, rope.style.raw(), base);
    (p.rows, p.heads) = (rows as u64, heads as u64);
    (p.head_dim, p.rotary_dim) = (head_dim as u64, rotary_dim as u64);
    (p.x, p.out) = (x.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_ROPE, "rope");
    let used = [Some(&x as &dyn Operand), optional(&pos), Some(&o)];
    queue(stream, kernel, &[T::ABI], !x.is_empty(), &p, &used)
}

/// Queues `out[i] = act(x[i])`; `x` and `out` have the same length. `act` is
/// [`Activation::Silu`], [`Activation::GeluErf`] or [`Activation::GeluTanh`]; any other is
/// `Error::NotSupported`.
pub fn activation<T: DType>(
    stream: &Stream,
    act: Activation,
    x: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let (x, o) = (x.as_device_slice(), out.as_device_slice_mut());
    float::<T>("x")?;
    let dims = [x.len()];
    check(stream, &[("x", &x, &dims), ("out", &o, &dims)])?;
    rules::elementwise_activation(act.raw())?;
    let mut p = abi::KnpuActivationParams::sized();
    (p.dtype, p.activation, p.len) = (T::ABI, act.raw(), x.len() as u64);
    (p.x, p.out) = (x.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_ACTIVATION, "activation");
    let used = [Some(&x as &dyn Operand), Some(&o)];
    queue(stream, kernel, &[T::ABI], !x.is_empty(), &p, &used)
}

/// Queues `out = silu(x)`.
pub fn silu<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    activation(stream, Activation::Silu, x, out)
}

/// Queues `out[i] = silu(gate[i]) · up[i]`; all three have the same length.
pub fn swiglu<T: DType>(
    stream: &Stream,
    gate: &impl AsDeviceSlice<T>,
    up: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let (g, u, o) = (
        gate.as_device_slice(),
        up.as_device_slice(),
        out.as_device_slice_mut(),
    );
    float::<T>("gate")?;
    let dims = [g.len()];
    check(
        stream,
        &[("gate", &g, &dims), ("up", &u, &dims), ("out", &o, &dims)],
    )?;
    let mut p = abi::KnpuSwigluParams::sized();
    (p.dtype, p.len) = (T::ABI, g.len() as u64);
    (p.gate, p.up, p.out) = (g.addr(), u.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_SWIGLU, "swiglu");
    let used = [Some(&g as &dyn Operand), Some(&u), Some(&o)];
    queue(stream, kernel, &[T::ABI], !g.is_empty(), &p, &used)
}

/// Queues a softmax of each row of `scale · x` (`[rows, cols]`) into `out`.
pub fn softmax<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<()> {
    let (x, o) = (x.as_device_slice(), out.as_device_slice_mut());
    float::<T>("x")?;
    let dims = [rows, cols];
    check(stream, &[("x", &x, &dims), ("out", &o, &dims)])?;
    rule(rules::check_softmax_scale(scale), || format!("got {scale}"))?;
    let mut p = abi::KnpuSoftmaxParams::sized();
    (p.dtype, p.rows, p.cols, p.scale) = (T::ABI, rows as u64, cols as u64, scale);
    (p.x, p.out) = (x.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_SOFTMAX, "softmax");
    let used = [Some(&x as &dyn Operand), Some(&o)];
    queue(stream, kernel, &[T::ABI], !x.is_empty(), &p, &used)
}

/// Queues `out = a op b` over `[rows, cols]`, `b` laid out as `broadcast` says.
#[allow(clippy::too_many_arguments)] // the shape and broadcast are the op's own arguments
pub fn binary<T: DType>(
    stream: &Stream,
    op: BinaryOp,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
    rows: usize,
    cols: usize,
    broadcast: Broadcast,
) -> Result<()> {
    let (a, b, o) = (
        a.as_device_slice(),
        b.as_device_slice(),
        out.as_device_slice_mut(),
    );
    float::<T>("a")?;
    let dims = [rows, cols];
    let b_dims: &[usize] = match broadcast {
        Broadcast::None => &dims,
        Broadcast::Row => &dims[1..],
    };
    check(
        stream,
        &[("a", &a, &dims), ("b", &b, b_dims), ("out", &o, &dims)],
    )?;
    super::sample::require_minor(stream, op.since_minor(), op.name())?;
    let mut p = abi::KnpuBinaryParams::sized();
    (p.op, p.dtype, p.broadcast) = (op.raw(), T::ABI, broadcast.raw());
    (p.rows, p.cols) = (rows as u64, cols as u64);
    (p.a, p.b, p.out) = (a.addr(), b.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_BINARY, "binary");
    let used = [Some(&a as &dyn Operand), Some(&b), Some(&o)];
    queue(stream, kernel, &[T::ABI], !a.is_empty(), &p, &used)
}

/// Queues an embedding lookup: `out[t, :] = table[ids[t], :]` converted from `T` to `O`;
/// `table` is `[vocab, dim]`, `out` is `[ids.len(), dim]`. An id `>= vocab` is found by the
/// device: the stream's next synchronisation returns [`Error::KernelFault`] naming it, and
/// `out` is left unwritten.
pub fn embedding<T: DType, O: DType>(
    stream: &Stream,
    table: &impl AsDeviceSlice<T>,
    vocab: usize,
    dim: usize,
    ids: &impl AsDeviceSlice<u32>,
    out: &mut impl AsDeviceSliceMut<O>,
) -> Result<()> {
    let (t, i, o) = (
        table.as_device_slice(),
        ids.as_device_slice(),
        out.as_device_slice_mut(),
    );
    float::<T>("table")?;
    float::<O>("out")?;
    t.check_shape(stream, "table", &[vocab, dim])?;
    same_device(stream, "ids", &i)?;
    o.check_shape(stream, "out", &[i.len(), dim])?;
    let mut p = abi::KnpuEmbeddingParams::sized();
    (p.table_dtype, p.out_dtype) = (T::ABI, O::ABI);
    (p.vocab, p.dim, p.tokens) = (vocab as u64, dim as u64, i.len() as u64);
    (p.table, p.ids, p.out) = (t.addr(), i.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_EMBEDDING, "embedding");
    let dtypes = [T::ABI, O::ABI];
    let used = [Some(&t as &dyn Operand), Some(&i), Some(&o)];
    queue(stream, kernel, &dtypes, !o.is_empty(), &p, &used)
}

/// Queues `dst[i] = src[i]` converted from `S` to `D` (round to nearest even); same lengths.
pub fn cast<S: DType, D: DType>(
    stream: &Stream,
    src: &impl AsDeviceSlice<S>,
    dst: &mut impl AsDeviceSliceMut<D>,
) -> Result<()> {
    let (s, d) = (src.as_device_slice(), dst.as_device_slice_mut());
    float::<S>("src")?;
    float::<D>("dst")?;
    let dims = [s.len()];
    check(stream, &[("src", &s, &dims), ("dst", &d, &dims)])?;
    let mut p = abi::KnpuCastParams::sized();
    (p.src_dtype, p.dst_dtype, p.len) = (S::ABI, D::ABI, s.len() as u64);
    (p.src, p.dst) = (s.addr(), d.addr());
    let kernel = (abi::KNPU_KERNEL_CAST, "cast");
    let used = [Some(&s as &dyn Operand), Some(&d)];
    queue(stream, kernel, &[S::ABI, D::ABI], !s.is_empty(), &p, &used)
}

/// Checks the shape of a row reduction: `cols >= 1` when there are rows, and every column
/// index fits a `u32`.
fn reduced(rows: usize, cols: usize) -> Result<()> {
    rule(rules::check_reduced(rows as u64, cols as u64), || {
        format!("{rows} rows of {cols} columns")
    })?;
    Ok(())
}

/// Queues `out[r] = ` the index of the largest value of row `r` of `x` (`[rows, cols]`),
/// the lowest index on ties.
pub fn argmax<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<u32>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let (x, o) = (x.as_device_slice(), out.as_device_slice_mut());
    float::<T>("x")?;
    check(stream, &[("x", &x, &[rows, cols]), ("out", &o, &[rows])])?;
    reduced(rows, cols)?;
    let mut p = abi::KnpuArgmaxParams::sized();
    (p.dtype, p.rows, p.cols) = (T::ABI, rows as u64, cols as u64);
    (p.x, p.out) = (x.addr(), o.addr());
    let kernel = (abi::KNPU_KERNEL_ARGMAX, "argmax");
    let used = [Some(&x as &dyn Operand), Some(&o)];
    queue(stream, kernel, &[T::ABI], !x.is_empty(), &p, &used)
}

/// Queues the `k` largest values of each row of `x` (`[rows, cols]`) in descending order (ties
/// to the lower index) into `values` and their column indices into `indices` (`[rows, k]`
/// each); `k <= cols`.
pub fn top_k<T: DType>(
    stream: &Stream,
    x: &impl AsDeviceSlice<T>,
    values: &mut impl AsDeviceSliceMut<T>,
    indices: &mut impl AsDeviceSliceMut<u32>,
    rows: usize,
    cols: usize,
    k: usize,
) -> Result<()> {
    let (x, v, i) = (
        x.as_device_slice(),
        values.as_device_slice_mut(),
        indices.as_device_slice_mut(),
    );
    float::<T>("x")?;
    let out_dims = [rows, k];
    check(
        stream,
        &[
            ("x", &x, &[rows, cols]),
            ("values", &v, &out_dims),
            ("indices", &i, &out_dims),
        ],
    )?;
    reduced(rows, cols)?;
    rule(rules::check_top_k(k as u64, cols as u64), || {
        format!("k {k}, cols {cols}")
    })?;
    let mut p = abi::KnpuTopKParams::sized();
    (p.dtype, p.rows, p.cols, p.k) = (T::ABI, rows as u64, cols as u64, k as u64);
    (p.x, p.values, p.indices) = (x.addr(), v.addr(), i.addr());
    let kernel = (abi::KNPU_KERNEL_TOP_K, "top_k");
    let used = [Some(&x as &dyn Operand), Some(&v), Some(&i)];
    queue(stream, kernel, &[T::ABI], !v.is_empty(), &p, &used)
}
