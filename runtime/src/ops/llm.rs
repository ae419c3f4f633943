//! The small operations a transformer runs around its matmuls: normalisation, rotary
//! position embedding, activations, softmax, add/mul with broadcast, embedding lookup, casts,
//! argmax and top-k.
//!
//! Elements are `f32`, `f16` or `bf16` (indices and token ids `u32`); every op computes in f32.
//! Matrices are row-major and contiguous, and every operand must hold exactly the elements its
//! shape names (take a view to use part of a buffer). An input may be the output itself:
//! the result is as if every input were read before any output was written.

use super::{same_device, supported};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::{self as defs, llm as rules, product};
use knpu_driver_abi::{self as abi, SizedStruct};

pub use knpu_driver_abi::ops::{Activation, BinaryOp, Broadcast, RopeStyle};

/// Checks that `T` is a storage type of the LLM ops.
fn float<T: DType>(operand: &'static str) -> Result<()> {
    defs::float_size(operand, T::ABI)?;
    Ok(())
}

/// The elements of operand `name` of shape `dims`, or InvalidValue naming the operand when
/// the product overflows.
fn count(name: &'static str, dims: &[usize]) -> Result<usize> {
    // Shapes here have at most four dimensions; widened on the stack (no allocation).
    let mut wide = [0u64; 4];
    debug_assert!(dims.len() <= wide.len());
    for (w, &d) in wide.iter_mut().zip(dims) {
        *w = d as u64;
    }
    let n = product(name, &wide[..dims.len()])
        .map_err(|e| Error::invalid(format!("{e}: shape {}", shape(dims))))?;
    Ok(n as usize)
}

fn shape(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Checks that operand `s` is on the stream's device and holds exactly `dims` elements.
fn operand<T>(
    stream: &Stream,
    name: &'static str,
    s: &DeviceSlice<'_, T>,
    dims: &[usize],
) -> Result<()> {
    same_device(stream, name, s)?;
    if s.len() != count(name, dims)? {
        return Err(Error::Shape {
            operand: name,
            expected: shape(dims),
            actual: shape(&[s.len()]),
        });
    }
    Ok(())
}

/// Queues `params` for `kernel` and notes every operand's use.
fn launch<P>(stream: &Stream, kernel: u32, params: &P, used: &[&dyn NoteUse]) -> Result<()> {
    let v = stream.launch_kernel(kernel, params)?;
    for u in used {
        u.note(stream, v);
    }
    Ok(())
}

/// An operand whose use by queued work must be noted.
trait NoteUse {
    fn note(&self, stream: &Stream, value: u64);
}

impl<T> NoteUse for DeviceSlice<'_, T> {
    fn note(&self, stream: &Stream, value: u64) {
        self.note_use(stream, value);
    }
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
    operand(stream, "x", &x, &[rows, cols])?;
    operand(stream, "weight", &w, &[cols])?;
    operand(stream, "out", &o, &[rows, cols])?;
    rules::check_eps(eps).map_err(|e| Error::invalid(format!("{e} (got {eps})")))?;
    supported::<T>(stream, abi::KNPU_KERNEL_RMS_NORM, "rms_norm")?;
    if x.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuRmsNormParams::sized();
    p.dtype = T::ABI;
    p.rows = rows as u64;
    p.cols = cols as u64;
    p.x = x.addr();
    p.weight = w.addr();
    p.out = o.addr();
    p.eps = eps;
    launch(stream, abi::KNPU_KERNEL_RMS_NORM, &p, &[&x, &w, &o])
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
    operand(stream, "x", &x, &[rows, cols])?;
    operand(stream, "weight", &w, &[cols])?;
    if let Some(b) = &b {
        operand(stream, "bias", b, &[cols])?;
    }
    operand(stream, "out", &o, &[rows, cols])?;
    rules::check_eps(eps).map_err(|e| Error::invalid(format!("{e} (got {eps})")))?;
    supported::<T>(stream, abi::KNPU_KERNEL_LAYER_NORM, "layer_norm")?;
    if x.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuLayerNormParams::sized();
    p.dtype = T::ABI;
    p.rows = rows as u64;
    p.cols = cols as u64;
    p.x = x.addr();
    p.weight = w.addr();
    p.bias = b.as_ref().map_or(0, |b| b.addr());
    p.out = o.addr();
    p.eps = eps;
    match &b {
        Some(b) => launch(stream, abi::KNPU_KERNEL_LAYER_NORM, &p, &[&x, &w, b, &o]),
        None => launch(stream, abi::KNPU_KERNEL_LAYER_NORM, &p, &[&x, &w, &o]),
    }
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
    operand(stream, "x", &x, &dims)?;
    operand(stream, "out", &o, &dims)?;
    let pos = match rope.positions {
        RopePositions::PerRow(p) => {
            let p = p.as_device_slice();
            operand(stream, "positions", &p, &[rows])?;
            Some(p)
        }
        RopePositions::Start(start) => {
            rules::check_start_position(start, rows as u64).map_err(|e| {
                Error::invalid(format!("{e}: positions from {start} for {rows} rows"))
            })?;
            None
        }
    };
    rules::check_rope(rope.rotary_dim as u64, head_dim as u64, rope.base).map_err(|e| {
        Error::invalid(format!(
            "{e} (rotary_dim {}, head_dim {head_dim}, base {})",
            rope.rotary_dim, rope.base
        ))
    })?;
    supported::<T>(stream, abi::KNPU_KERNEL_ROPE, "rope")?;
    if x.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuRopeParams::sized();
    p.dtype = T::ABI;
    p.style = rope.style.raw();
    p.rows = rows as u64;
    p.heads = heads as u64;
    p.head_dim = head_dim as u64;
    p.rotary_dim = rope.rotary_dim as u64;
    p.x = x.addr();
    p.out = o.addr();
    p.base = rope.base;
    match &pos {
        Some(pos) => {
            p.positions = pos.addr();
            launch(stream, abi::KNPU_KERNEL_ROPE, &p, &[&x, pos, &o])
        }
        None => {
            if let RopePositions::Start(start) = rope.positions {
                p.start_position = start;
            }
            launch(stream, abi::KNPU_KERNEL_ROPE, &p, &[&x, &o])
        }
    }
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
    operand(stream, "x", &x, &[x.len()])?;
    operand(stream, "out", &o, &[x.len()])?;
    rules::elementwise_activation(act.raw())?;
    supported::<T>(stream, abi::KNPU_KERNEL_ACTIVATION, "activation")?;
    if x.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuActivationParams::sized();
    p.dtype = T::ABI;
    p.activation = act.raw();
    p.len = x.len() as u64;
    p.x = x.addr();
    p.out = o.addr();
    launch(stream, abi::KNPU_KERNEL_ACTIVATION, &p, &[&x, &o])
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
    operand(stream, "gate", &g, &[g.len()])?;
    operand(stream, "up", &u, &[g.len()])?;
    operand(stream, "out", &o, &[g.len()])?;
    supported::<T>(stream, abi::KNPU_KERNEL_SWIGLU, "swiglu")?;
    if g.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuSwigluParams::sized();
    p.dtype = T::ABI;
    p.len = g.len() as u64;
    p.gate = g.addr();
    p.up = u.addr();
    p.out = o.addr();
    launch(stream, abi::KNPU_KERNEL_SWIGLU, &p, &[&g, &u, &o])
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
    operand(stream, "x", &x, &[rows, cols])?;
    operand(stream, "out", &o, &[rows, cols])?;
    if !scale.is_finite() {
        return Err(Error::invalid(format!(
            "softmax scale {scale} must be finite"
        )));
    }
    supported::<T>(stream, abi::KNPU_KERNEL_SOFTMAX, "softmax")?;
    if x.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuSoftmaxParams::sized();
    p.dtype = T::ABI;
    p.rows = rows as u64;
    p.cols = cols as u64;
    p.x = x.addr();
    p.out = o.addr();
    p.scale = scale;
    launch(stream, abi::KNPU_KERNEL_SOFTMAX, &p, &[&x, &o])
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
    operand(stream, "a", &a, &[rows, cols])?;
    match broadcast {
        Broadcast::None => operand(stream, "b", &b, &[rows, cols])?,
        Broadcast::Row => operand(stream, "b", &b, &[cols])?,
    }
    operand(stream, "out", &o, &[rows, cols])?;
    super::sample::require_minor(stream, op.since_minor(), op.name())?;
    supported::<T>(stream, abi::KNPU_KERNEL_BINARY, "binary")?;
    if a.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuBinaryParams::sized();
    p.op = op.raw();
    p.dtype = T::ABI;
    p.broadcast = broadcast.raw();
    p.rows = rows as u64;
    p.cols = cols as u64;
    p.a = a.addr();
    p.b = b.addr();
    p.out = o.addr();
    launch(stream, abi::KNPU_KERNEL_BINARY, &p, &[&a, &b, &o])
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
    operand(stream, "table", &t, &[vocab, dim])?;
    same_device(stream, "ids", &i)?;
    operand(stream, "out", &o, &[i.len(), dim])?;
    supported::<T>(stream, abi::KNPU_KERNEL_EMBEDDING, "embedding")?;
    supported::<O>(stream, abi::KNPU_KERNEL_EMBEDDING, "embedding")?;
    if o.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuEmbeddingParams::sized();
    p.table_dtype = T::ABI;
    p.out_dtype = O::ABI;
    p.vocab = vocab as u64;
    p.dim = dim as u64;
    p.tokens = i.len() as u64;
    p.table = t.addr();
    p.ids = i.addr();
    p.out = o.addr();
    launch(stream, abi::KNPU_KERNEL_EMBEDDING, &p, &[&t, &i, &o])
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
    operand(stream, "src", &s, &[s.len()])?;
    operand(stream, "dst", &d, &[s.len()])?;
    supported::<S>(stream, abi::KNPU_KERNEL_CAST, "cast")?;
    supported::<D>(stream, abi::KNPU_KERNEL_CAST, "cast")?;
    if s.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuCastParams::sized();
    p.src_dtype = S::ABI;
    p.dst_dtype = D::ABI;
    p.len = s.len() as u64;
    p.src = s.addr();
    p.dst = d.addr();
    launch(stream, abi::KNPU_KERNEL_CAST, &p, &[&s, &d])
}

/// Checks the shape of a row reduction: `cols >= 1` when there are rows, and every column
/// index fits a `u32`.
fn reduced(rows: usize, cols: usize) -> Result<()> {
    rules::check_reduced(rows as u64, cols as u64)
        .map_err(|e| Error::invalid(format!("{e} ({rows} rows of {cols} columns)")))?;
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
    operand(stream, "x", &x, &[rows, cols])?;
    operand(stream, "out", &o, &[rows])?;
    reduced(rows, cols)?;
    supported::<T>(stream, abi::KNPU_KERNEL_ARGMAX, "argmax")?;
    if x.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuArgmaxParams::sized();
    p.dtype = T::ABI;
    p.rows = rows as u64;
    p.cols = cols as u64;
    p.x = x.addr();
    p.out = o.addr();
    launch(stream, abi::KNPU_KERNEL_ARGMAX, &p, &[&x, &o])
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
    operand(stream, "x", &x, &[rows, cols])?;
    operand(stream, "values", &v, &[rows, k])?;
    operand(stream, "indices", &i, &[rows, k])?;
    reduced(rows, cols)?;
    rules::check_top_k(k as u64, cols as u64)
        .map_err(|e| Error::invalid(format!("{e} (k {k}, cols {cols})")))?;
    supported::<T>(stream, abi::KNPU_KERNEL_TOP_K, "top_k")?;
    if v.is_empty() {
        return Ok(());
    }
    let mut p = abi::KnpuTopKParams::sized();
    p.dtype = T::ABI;
    p.rows = rows as u64;
    p.cols = cols as u64;
    p.k = k as u64;
    p.x = x.addr();
    p.values = v.addr();
    p.indices = i.addr();
    launch(stream, abi::KNPU_KERNEL_TOP_K, &p, &[&x, &v, &i])
}
