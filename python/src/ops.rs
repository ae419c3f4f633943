//! Op functions of `import knpu`: `matmul` and `@`, arithmetic with broadcasting, casts.
//!
//! Every op is queued on the current stream of its first operand's device and returns at
//! once. Shapes come from `knpu::tensor` (numpy's broadcasting and `matmul` rules), and the
//! runtime's launchers check operands, dtypes and devices before anything is queued, so
//! this module only lays operands out as the launchers take them and picks the typed
//! launcher for the storage.

use crate::errors::{not_supported, to_py, IntoPyResult};
use crate::storage::{Buf, Storage, Typed};
use crate::tensor::{encode, Tensor};
use knpu::ops::{self, ElementwiseOp, Gemm, GemmEpilogue};
use knpu::tensor::{broadcast_shapes, fill_strided, matmul_shapes, MatrixBatch};
use knpu::{DataType, Layout};
use pyo3::prelude::*;
use std::sync::Arc;

/// An output in fresh storage: not shared yet, so a launcher writes it through `&mut`.
pub struct Fresh {
    pub storage: Storage,
    pub layout: Layout,
    pub dtype: DataType,
}

impl Fresh {
    /// Fresh contiguous storage of `shape` values of `dtype` on `stream`'s device.
    pub fn new(stream: &knpu::Stream, shape: &[usize], dtype: DataType) -> PyResult<Fresh> {
        let layout = Layout::from_values(shape, dtype).py()?;
        let storage = Storage::alloc(stream, dtype, layout.numel()).py()?;
        Ok(Fresh {
            storage,
            layout,
            dtype,
        })
    }

    /// The written output as a tensor.
    pub fn finish(self) -> Tensor {
        Tensor {
            storage: Arc::new(self.storage),
            layout: self.layout,
            dtype: self.dtype,
        }
    }

    /// The output written into `out` (same shape) when given, else returned as is.
    pub fn into_out(
        self,
        py: Python<'_>,
        stream: &knpu::Stream,
        out: Option<&Bound<'_, Tensor>>,
    ) -> PyResult<Py<Tensor>> {
        let py_out = match out {
            None => return Py::new(py, self.finish()),
            Some(o) => o,
        };
        let o = py_out.get();
        if o.values_shape() != self.layout.values_shape(self.dtype) {
            return Err(to_py(knpu::Error::Shape {
                operand: "out",
                expected: format!("{:?}", self.layout.values_shape(self.dtype)),
                actual: format!("{:?}", o.values_shape()),
            }));
        }
        o.copy_from(stream, &self.finish())?;
        Ok(py_out.clone().unbind())
    }
}

/// The units `offset..offset + numel` of a contiguous tensor, as a typed device slice.
macro_rules! elems {
    ($buf:expr, $t:expr) => {
        $buf.slice($t.layout.offset()..$t.layout.offset() + $t.layout.numel())
            .py()?
    };
}

/// `t` broadcast to `shape` and laid out contiguously (copied only when it is not already).
fn dense(t: &Tensor, shape: &[usize]) -> PyResult<Tensor> {
    let l = t.layout.broadcast_to(shape).py()?;
    let repeats = l
        .shape()
        .iter()
        .zip(l.strides())
        .any(|(&d, &s)| d > 1 && s == 0);
    let v = t.with_layout(l);
    if v.layout.is_contiguous() && !repeats {
        Ok(v)
    } else {
        v.copied()
    }
}

fn refuse_blocks(t: &Tensor, op: &str) -> PyResult<()> {
    if t.dtype.is_block() {
        return Err(not_supported(format!(
            "{op} of a {} tensor (quantised blocks go through knpu.qmatmul and \
             knpu.dequantize)",
            t.dtype
        )));
    }
    Ok(())
}

/// A GEMM operand read in place when its layout allows, else a contiguous copy.
fn gemm_operand(t: &Tensor, layout: Layout) -> PyResult<(Tensor, MatrixBatch)> {
    let v = t.with_layout(layout);
    if let Some(m) = v.layout.matrix_batch() {
        return Ok((v, m));
    }
    let c = v.copied()?;
    let m = c
        .layout
        .matrix_batch()
        .ok_or_else(|| crate::errors::invalid("a contiguous layout is no matrix batch"))?;
    Ok((c, m))
}

/// The epilogue activation named `name` as the op definitions spell it (`"relu"`,
/// `"gelu_erf"`, `"gelu_tanh"`, `"silu"`), plus `"gelu"` as PyTorch spells the exact GELU.
fn activation(name: Option<&str>) -> PyResult<ops::Activation> {
    let name = match name {
        None => return Ok(ops::Activation::None),
        Some("gelu") => return Ok(ops::Activation::GeluErf),
        Some(n) => n,
    };
    ops::Activation::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = ops::Activation::ALL.iter().map(|a| a.name()).collect();
        crate::errors::invalid(format!(
            "unknown activation {name:?}: expected None, \"gelu\" or one of {known:?}"
        ))
    })
}

/// Runs `$e` with `$x` bound to a float buffer, or fails naming the operand's dtype.
macro_rules! float_buf {
    ($b:expr, $dt:expr, $what:expr, $x:ident => $e:expr) => {
        match $b {
            Buf::F32($x) => $e,
            Buf::F16($x) => $e,
            Buf::BF16($x) => $e,
            _ => {
                return Err(to_py(knpu::Error::Dtype {
                    operand: $what,
                    expected: "float32, float16 or bfloat16".into(),
                    actual: $dt.name().into(),
                }))
            }
        }
    };
}

/// `knpu.matmul(a, b, *, bias=None, activation=None, out=None)`.
pub fn matmul(
    py: Python<'_>,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    act: Option<&str>,
    out: Option<&Bound<'_, Tensor>>,
) -> PyResult<Py<Tensor>> {
    refuse_blocks(a, "matmul")?;
    refuse_blocks(b, "matmul")?;
    let s = matmul_shapes(&a.values_shape(), &b.values_shape()).py()?;
    let act = activation(act)?;
    let stream = a.stream()?;
    let out_dtype = match out {
        Some(o) => o.get().dtype,
        None if a.dtype == b.dtype => a.dtype,
        None => DataType::F32,
    };
    let full = |r: usize, c: usize| {
        let mut v = s.batch.clone();
        v.extend([r, c]);
        v
    };
    let la = if s.a_vector {
        a.layout.unsqueeze(0).py()?
    } else {
        a.layout.clone()
    };
    let lb = if s.b_vector {
        b.layout.unsqueeze(1).py()?
    } else {
        b.layout.clone()
    };
    let (ta, ma) = gemm_operand(a, la.broadcast_to(&full(s.m, s.k)).py()?)?;
    let (tb, mb) = gemm_operand(b, lb.broadcast_to(&full(s.k, s.n)).py()?)?;
    let bias = match bias {
        Some(t) => Some(t.contiguous_tensor()?),
        None => None,
    };
    let mut fresh = Fresh::new(&stream, &s.out, out_dtype)?;
    let mut g = Gemm::new(s.m, s.n, s.k);
    if ma.transposed {
        g = g.transpose_a();
    }
    if mb.transposed {
        g = g.transpose_b();
    }
    let g = g
        .ld(ma.ld, mb.ld, s.n)
        .batched(ma.batch, ma.batch_stride, mb.batch_stride, s.m * s.n);
    let bias_buf = match &bias {
        None => None,
        Some(t) => match &t.storage.buf {
            Buf::F32(x) => Some(elems!(x, t)),
            _ => {
                return Err(to_py(knpu::Error::Dtype {
                    operand: "bias",
                    expected: "float32".into(),
                    actual: t.dtype.name().into(),
                }))
            }
        },
    };
    float_buf!(&ta.storage.buf, ta.dtype, "a", x => {
        float_buf!(&tb.storage.buf, tb.dtype, "b", y => {
            float_buf!(&mut fresh.storage.buf, out_dtype, "out", z => {
                let mut ep = GemmEpilogue::new().activation(act);
                ep.bias = bias_buf;
                ops::gemm(
                    &stream,
                    &g,
                    &x.slice(ma.offset..).py()?,
                    &y.slice(mb.offset..).py()?,
                    z,
                    &ep,
                )
                .py()?
            })
        })
    });
    fresh.into_out(py, &stream, out)
}

/// An arithmetic operator of `knpu.Tensor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl Arith {
    fn symbol(self) -> &'static str {
        match self {
            Arith::Add => "+",
            Arith::Sub => "-",
            Arith::Mul => "*",
            Arith::Div => "/",
        }
    }
}

/// The typed buffer of an operand whose dtype was checked to be `T`'s.
fn typed<T: Typed>(b: &Buf) -> PyResult<&knpu::DeviceBuffer<T>> {
    T::of(b).ok_or_else(|| crate::errors::invalid("operand storage differs from its dtype"))
}

fn typed_mut<T: Typed>(b: &mut Buf) -> PyResult<&mut knpu::DeviceBuffer<T>> {
    T::of_mut(b).ok_or_else(|| crate::errors::invalid("output storage differs from its dtype"))
}

/// Runs `$f::<T>($args)` for the element type `T` of `$dt`, or fails for types stored as
/// raw bytes (8-bit floats and quantised blocks), which no elementwise launcher takes.
macro_rules! dispatch {
    ($dt:expr, $what:expr, $f:ident($($args:expr),*)) => {
        match $dt {
            DataType::F32 => $f::<f32>($($args),*),
            DataType::F16 => $f::<half::f16>($($args),*),
            DataType::BF16 => $f::<half::bf16>($($args),*),
            DataType::F64 => $f::<f64>($($args),*),
            DataType::I8 => $f::<i8>($($args),*),
            DataType::U8 => $f::<u8>($($args),*),
            DataType::I32 => $f::<i32>($($args),*),
            DataType::U32 => $f::<u32>($($args),*),
            DataType::I64 => $f::<i64>($($args),*),
            other => Err(not_supported(format!("{} on {other} tensors", $what))),
        }
    };
}

/// `a op b` for two tensors, broadcast as numpy broadcasts.
pub fn arith_tensors(a: &Tensor, b: &Tensor, op: Arith) -> PyResult<Tensor> {
    refuse_blocks(a, op.symbol())?;
    refuse_blocks(b, op.symbol())?;
    let eop = match op {
        Arith::Add => ElementwiseOp::Add,
        Arith::Sub => ElementwiseOp::Sub,
        Arith::Mul => ElementwiseOp::Mul,
        Arith::Div => ElementwiseOp::Div,
    };
    if a.dtype != b.dtype {
        return Err(to_py(knpu::Error::Dtype {
            operand: "b",
            expected: format!("{} (as a; convert with .to())", a.dtype),
            actual: b.dtype.name().into(),
        }));
    }
    if a.rt_device() != b.rt_device() {
        return Err(to_py(knpu::Error::DeviceMismatch {
            operand: "b",
            expected: a.rt_device().ordinal(),
            actual: b.rt_device().ordinal(),
        }));
    }
    let shape = broadcast_shapes(&a.values_shape(), &b.values_shape()).py()?;
    let stream = a.stream()?;
    let (da, db) = (dense(a, &shape)?, dense(b, &shape)?);
    let mut fresh = Fresh::new(&stream, &shape, a.dtype)?;
    dispatch!(
        a.dtype,
        format!("`{}`", op.symbol()),
        two(&stream, eop, &da, &db, &mut fresh)
    )?;
    Ok(fresh.finish())
}

fn two<T: Typed>(
    stream: &knpu::Stream,
    op: ElementwiseOp,
    da: &Tensor,
    db: &Tensor,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let (x, y) = (typed::<T>(&da.storage.buf)?, typed::<T>(&db.storage.buf)?);
    let (sa, sb) = (elems!(x, da), elems!(y, db));
    ops::elementwise(
        stream,
        op,
        &sa,
        Some(&sb),
        typed_mut::<T>(&mut fresh.storage.buf)?,
    )
    .py()
}

/// `a op v` (or `v op a` when `reflected`) for a tensor and a number.
pub fn arith_scalar(
    a: &Tensor,
    v: &Bound<'_, PyAny>,
    op: Arith,
    reflected: bool,
) -> PyResult<Tensor> {
    refuse_blocks(a, op.symbol())?;
    let x: f64 = v.extract()?;
    let stream = a.stream()?;
    let shape = a.values_shape();
    let da = dense(a, &shape)?;
    let mut fresh = Fresh::new(&stream, &shape, a.dtype)?;
    let what = format!("`{}`", op.symbol());
    match (op, reflected) {
        (Arith::Mul, _) => dispatch!(
            a.dtype,
            what,
            one(&stream, ElementwiseOp::Scale(x as f32), &da, &mut fresh)
        )?,
        (Arith::Div, false) => dispatch!(
            a.dtype,
            what,
            one(
                &stream,
                ElementwiseOp::Scale((1.0 / x) as f32),
                &da,
                &mut fresh
            )
        )?,
        (Arith::Div, true) => {
            // v / a: the number filled to a's shape, divided by a on the device.
            let filled = Fresh::new(&stream, &shape, a.dtype)?.finish();
            let pattern = encode(a.dtype, &x.into_pyobject(v.py())?.into_any())?;
            crate::with_buf!(&filled.storage.buf, b => fill_strided(
                &stream, b, &filled.layout, a.dtype.unit_bytes(), pattern))
            .py()?;
            dispatch!(
                a.dtype,
                what,
                two(&stream, ElementwiseOp::Div, &filled, &da, &mut fresh)
            )?
        }
        (Arith::Add | Arith::Sub, _) => {
            // out = alpha * a + c, with c filled with the number (negated for `a - v`).
            let (alpha, c) = match (op, reflected) {
                (Arith::Sub, false) => (1.0, -x),
                (Arith::Sub, true) => (-1.0, x),
                _ => (1.0, x),
            };
            let filled = Fresh::new(&stream, &shape, a.dtype)?.finish();
            let pattern = encode(a.dtype, &c.into_pyobject(v.py())?.into_any())?;
            crate::with_buf!(&filled.storage.buf, b => fill_strided(
                &stream, b, &filled.layout, a.dtype.unit_bytes(), pattern))
            .py()?;
            dispatch!(
                a.dtype,
                what,
                two(
                    &stream,
                    ElementwiseOp::Axpy(alpha),
                    &da,
                    &filled,
                    &mut fresh
                )
            )?
        }
    }
    Ok(fresh.finish())
}

fn one<T: Typed>(
    stream: &knpu::Stream,
    op: ElementwiseOp,
    da: &Tensor,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let x = typed::<T>(&da.storage.buf)?;
    let sa = elems!(x, da);
    ops::elementwise(
        stream,
        op,
        &sa,
        None,
        typed_mut::<T>(&mut fresh.storage.buf)?,
    )
    .py()
}

/// A contiguous view (or copy) of `t`, refusing quantised blocks for `op`.
pub(crate) fn plain(t: &Tensor, op: &str) -> PyResult<Tensor> {
    refuse_blocks(t, op)?;
    t.contiguous_tensor()
}

/// `t` and `others` on one device, or a `DeviceMismatchError` naming the operand.
fn same_device(t: &Tensor, others: &[(&'static str, &Tensor)]) -> PyResult<()> {
    for (name, o) in others {
        if o.rt_device() != t.rt_device() {
            return Err(to_py(knpu::Error::DeviceMismatch {
                operand: name,
                expected: t.rt_device().ordinal(),
                actual: o.rt_device().ordinal(),
            }));
        }
    }
    Ok(())
}

/// A row-wise normalisation (RMS or layer norm) of `x` over its last dimension.
pub fn norm(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    eps: f32,
    layer: bool,
) -> PyResult<Tensor> {
    let what = if layer { "layer_norm" } else { "rms_norm" };
    let x = plain(x, what)?;
    let w = plain(weight, what)?;
    let b = bias.map(|b| plain(b, what)).transpose()?;
    same_device(&x, &[("weight", &w)])?;
    if let Some(b) = &b {
        same_device(&x, &[("bias", b)])?;
    }
    for (name, o) in [("weight", Some(&w)), ("bias", b.as_ref())] {
        if let Some(o) = o {
            if o.dtype != x.dtype {
                return Err(to_py(knpu::Error::Dtype {
                    operand: name,
                    expected: x.dtype.name().into(),
                    actual: o.dtype.name().into(),
                }));
            }
        }
    }
    let shape = x.values_shape();
    let (rows, cols) = knpu::tensor::rows_cols(&shape).py()?;
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, x.dtype)?;
    dispatch!(
        x.dtype,
        what,
        norm_t(
            &stream,
            &x,
            &w,
            b.as_ref(),
            &mut fresh,
            rows,
            cols,
            eps,
            layer
        )
    )?;
    Ok(fresh.finish())
}

#[allow(clippy::too_many_arguments)]
fn norm_t<T: Typed>(
    stream: &knpu::Stream,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    fresh: &mut Fresh,
    rows: usize,
    cols: usize,
    eps: f32,
    layer: bool,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&x.storage.buf)?, x);
    let sw = elems!(typed::<T>(&w.storage.buf)?, w);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    if layer {
        let sb = match b {
            Some(b) => Some(elems!(typed::<T>(&b.storage.buf)?, b)),
            None => None,
        };
        let sb_dyn = sb.as_ref().map(|s| s as &dyn knpu::AsDeviceSlice<T>);
        ops::layer_norm(stream, &sx, &sw, sb_dyn, out, rows, cols, eps).py()
    } else {
        ops::rms_norm(stream, &sx, &sw, out, rows, cols, eps).py()
    }
}

/// An elementwise activation of `x` (`silu`, `gelu`).
pub fn activation_op(x: &Tensor, act: ops::llm::Activation, what: &str) -> PyResult<Tensor> {
    let x = plain(x, what)?;
    let shape = x.values_shape();
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, x.dtype)?;
    dispatch!(x.dtype, what, act_t(&stream, act, &x, &mut fresh))?;
    Ok(fresh.finish())
}

fn act_t<T: Typed>(
    stream: &knpu::Stream,
    act: ops::llm::Activation,
    x: &Tensor,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&x.storage.buf)?, x);
    ops::activation(stream, act, &sx, typed_mut::<T>(&mut fresh.storage.buf)?).py()
}

/// `silu(gate) * up` elementwise; `gate` and `up` have one shape.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> PyResult<Tensor> {
    let (g, u) = (plain(gate, "swiglu")?, plain(up, "swiglu")?);
    same_device(&g, &[("up", &u)])?;
    if g.values_shape() != u.values_shape() {
        return Err(to_py(knpu::Error::Shape {
            operand: "up",
            expected: format!("{:?} (as gate)", g.values_shape()),
            actual: format!("{:?}", u.values_shape()),
        }));
    }
    if g.dtype != u.dtype {
        return Err(to_py(knpu::Error::Dtype {
            operand: "up",
            expected: g.dtype.name().into(),
            actual: u.dtype.name().into(),
        }));
    }
    let shape = g.values_shape();
    let stream = g.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, g.dtype)?;
    dispatch!(g.dtype, "swiglu", swiglu_t(&stream, &g, &u, &mut fresh))?;
    Ok(fresh.finish())
}

fn swiglu_t<T: Typed>(
    stream: &knpu::Stream,
    g: &Tensor,
    u: &Tensor,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let sg = elems!(typed::<T>(&g.storage.buf)?, g);
    let su = elems!(typed::<T>(&u.storage.buf)?, u);
    ops::swiglu(stream, &sg, &su, typed_mut::<T>(&mut fresh.storage.buf)?).py()
}

/// Refuses a reduction over any dimension but the last.
fn last_dim(x: &Tensor, dim: isize, what: &str) -> PyResult<()> {
    let n = x.layout.ndim() as isize;
    if dim != -1 && dim != n - 1 {
        return Err(not_supported(format!(
            "{what} over dimension {dim} of a {n}-D tensor (the kernel reduces the last \
             dimension; move it there with .transpose())"
        )));
    }
    Ok(())
}

/// A softmax of `scale * x` over the last dimension.
pub fn softmax(x: &Tensor, dim: isize, scale: f32) -> PyResult<Tensor> {
    last_dim(x, dim, "softmax")?;
    let x = plain(x, "softmax")?;
    let shape = x.values_shape();
    let (rows, cols) = knpu::tensor::rows_cols(&shape).py()?;
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, x.dtype)?;
    dispatch!(
        x.dtype,
        "softmax",
        softmax_t(&stream, &x, &mut fresh, rows, cols, scale)
    )?;
    Ok(fresh.finish())
}

fn softmax_t<T: Typed>(
    stream: &knpu::Stream,
    x: &Tensor,
    fresh: &mut Fresh,
    rows: usize,
    cols: usize,
    scale: f32,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&x.storage.buf)?, x);
    ops::softmax(
        stream,
        &sx,
        typed_mut::<T>(&mut fresh.storage.buf)?,
        rows,
        cols,
        scale,
    )
    .py()
}

/// The index (uint32) of the largest value along the last dimension.
pub fn argmax(x: &Tensor, dim: isize) -> PyResult<Tensor> {
    last_dim(x, dim, "argmax")?;
    let x = plain(x, "argmax")?;
    let shape = x.values_shape();
    let (rows, cols) = knpu::tensor::rows_cols(&shape).py()?;
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &shape[..shape.len() - 1], DataType::U32)?;
    dispatch!(
        x.dtype,
        "argmax",
        argmax_t(&stream, &x, &mut fresh, rows, cols)
    )?;
    Ok(fresh.finish())
}

fn argmax_t<T: Typed>(
    stream: &knpu::Stream,
    x: &Tensor,
    fresh: &mut Fresh,
    rows: usize,
    cols: usize,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&x.storage.buf)?, x);
    ops::argmax(
        stream,
        &sx,
        typed_mut::<u32>(&mut fresh.storage.buf)?,
        rows,
        cols,
    )
    .py()
}

/// The `k` largest values along the last dimension, descending, and their uint32 indices.
pub fn topk(x: &Tensor, k: usize, dim: isize) -> PyResult<(Tensor, Tensor)> {
    last_dim(x, dim, "topk")?;
    let x = plain(x, "topk")?;
    let shape = x.values_shape();
    let (rows, cols) = knpu::tensor::rows_cols(&shape).py()?;
    let mut out_shape = shape.clone();
    if let Some(last) = out_shape.last_mut() {
        *last = k;
    }
    let stream = x.stream()?;
    let mut values = Fresh::new(&stream, &out_shape, x.dtype)?;
    let mut indices = Fresh::new(&stream, &out_shape, DataType::U32)?;
    dispatch!(
        x.dtype,
        "topk",
        topk_t(&stream, &x, &mut values, &mut indices, rows, cols, k)
    )?;
    Ok((values.finish(), indices.finish()))
}

fn topk_t<T: Typed>(
    stream: &knpu::Stream,
    x: &Tensor,
    values: &mut Fresh,
    indices: &mut Fresh,
    rows: usize,
    cols: usize,
    k: usize,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&x.storage.buf)?, x);
    let v = typed_mut::<T>(&mut values.storage.buf)?;
    let i = typed_mut::<u32>(&mut indices.storage.buf)?;
    ops::top_k(stream, &sx, v, i, rows, cols, k).py()
}

/// Rows `ids` (uint32, any shape) of `table` (`[vocab, dim]`, float or quantised blocks),
/// as `out_dtype`.
pub fn embedding(ids: &Tensor, table: &Tensor, out_dtype: Option<DataType>) -> PyResult<Tensor> {
    if table.dtype.is_block() {
        return qembedding(ids, table, out_dtype.unwrap_or(DataType::F32));
    }
    let ids = plain(ids, "embedding")?;
    let t = plain(table, "embedding")?;
    same_device(&t, &[("ids", &ids)])?;
    let tshape = t.values_shape();
    if tshape.len() != 2 {
        return Err(to_py(knpu::Error::Shape {
            operand: "table",
            expected: "[vocab, dim]".into(),
            actual: format!("{tshape:?}"),
        }));
    }
    let (vocab, dim) = (tshape[0], tshape[1]);
    let mut shape = ids.values_shape();
    shape.push(dim);
    let out_dtype = out_dtype.unwrap_or(t.dtype);
    let stream = t.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, out_dtype)?;
    let sid = match &ids.storage.buf {
        Buf::U32(b) => elems!(b, ids),
        _ => {
            return Err(to_py(knpu::Error::Dtype {
                operand: "ids",
                expected: "uint32".into(),
                actual: ids.dtype.name().into(),
            }))
        }
    };
    float_buf!(&t.storage.buf, t.dtype, "table", x => {
        float_buf!(&mut fresh.storage.buf, out_dtype, "out", z => {
            ops::embedding(&stream, &elems!(x, t), vocab, dim, &sid, z).py()?
        })
    });
    Ok(fresh.finish())
}

/// A rotary position embedding of `x` (`[..., heads, head_dim]`, rows being the leading
/// dimensions) at positions `start + row`, or `positions` (uint32, one per row).
pub fn rope(
    x: &Tensor,
    positions: Option<&Tensor>,
    start: u64,
    base: f32,
    rotary_dim: Option<usize>,
    style: &str,
) -> PyResult<Tensor> {
    let x = plain(x, "rope")?;
    let shape = x.values_shape();
    let (rows_heads, head_dim) = knpu::tensor::rows_cols(&shape).py()?;
    let (rows, heads) = knpu::tensor::rows_cols(&shape[..shape.len() - 1]).py()?;
    debug_assert_eq!(rows * heads, rows_heads);
    let style = ops::RopeStyle::from_name(style).ok_or_else(|| {
        let known: Vec<&str> = ops::RopeStyle::ALL.iter().map(|r| r.name()).collect();
        crate::errors::invalid(format!(
            "unknown rope style {style:?}: expected one of {known:?}"
        ))
    })?;
    let pos = match positions {
        Some(p) => {
            let p = plain(p, "rope")?;
            same_device(&x, &[("positions", &p)])?;
            Some(p)
        }
        None => None,
    };
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, x.dtype)?;
    let spos = match &pos {
        None => None,
        Some(p) => match &p.storage.buf {
            Buf::U32(b) => Some(elems!(b, p)),
            _ => {
                return Err(to_py(knpu::Error::Dtype {
                    operand: "positions",
                    expected: "uint32".into(),
                    actual: p.dtype.name().into(),
                }))
            }
        },
    };
    let r = ops::Rope {
        style,
        rotary_dim: rotary_dim.unwrap_or(head_dim),
        base,
        positions: match &spos {
            Some(s) => ops::RopePositions::PerRow(s),
            None => ops::RopePositions::Start(start),
        },
    };
    dispatch!(
        x.dtype,
        "rope",
        rope_t(&stream, &x, &mut fresh, rows, heads, head_dim, &r)
    )?;
    Ok(fresh.finish())
}

fn rope_t<T: Typed>(
    stream: &knpu::Stream,
    x: &Tensor,
    fresh: &mut Fresh,
    rows: usize,
    heads: usize,
    head_dim: usize,
    r: &ops::Rope<'_>,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&x.storage.buf)?, x);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    ops::rope(stream, &sx, out, rows, heads, head_dim, r).py()
}

/// The Python functions of this module.
pub mod py {
    use super::*;
    use pyo3::types::PyTuple;

    /// `knpu.rms_norm(x, weight, *, eps=1e-6)`: `x / sqrt(mean(x²) + eps) * weight` over
    /// the last dimension.
    #[pyfunction]
    #[pyo3(signature = (x, weight, *, eps=1e-6))]
    pub fn rms_norm(x: PyRef<'_, Tensor>, weight: PyRef<'_, Tensor>, eps: f32) -> PyResult<Tensor> {
        norm(&x, &weight, None, eps, false)
    }

    /// `knpu.layer_norm(x, weight, bias=None, *, eps=1e-5)` over the last dimension.
    #[pyfunction]
    #[pyo3(signature = (x, weight, bias=None, *, eps=1e-5))]
    pub fn layer_norm(
        x: PyRef<'_, Tensor>,
        weight: PyRef<'_, Tensor>,
        bias: Option<PyRef<'_, Tensor>>,
        eps: f32,
    ) -> PyResult<Tensor> {
        norm(&x, &weight, bias.as_deref(), eps, true)
    }

    /// `knpu.silu(x)`: `x * sigmoid(x)`.
    #[pyfunction]
    pub fn silu(x: PyRef<'_, Tensor>) -> PyResult<Tensor> {
        activation_op(&x, ops::llm::Activation::Silu, "silu")
    }

    /// `knpu.gelu(x, *, approximate="none")`: the exact GELU, or its `"tanh"` approximation.
    #[pyfunction]
    #[pyo3(signature = (x, *, approximate="none"))]
    pub fn gelu(x: PyRef<'_, Tensor>, approximate: &str) -> PyResult<Tensor> {
        let act = match approximate {
            "none" => ops::llm::Activation::GeluErf,
            "tanh" => ops::llm::Activation::GeluTanh,
            other => {
                return Err(crate::errors::invalid(format!(
                    "unknown GELU approximation {other:?}: expected \"none\" or \"tanh\""
                )))
            }
        };
        activation_op(&x, act, "gelu")
    }

    /// `knpu.swiglu(gate, up)`: `silu(gate) * up`.
    #[pyfunction]
    pub fn swiglu(gate: PyRef<'_, Tensor>, up: PyRef<'_, Tensor>) -> PyResult<Tensor> {
        super::swiglu(&gate, &up)
    }

    /// `knpu.softmax(x, dim=-1, *, scale=1.0)`: softmax of `scale * x` along the last
    /// dimension.
    #[pyfunction]
    #[pyo3(signature = (x, dim=-1, *, scale=1.0), text_signature = "(x, dim=-1, *, scale=1.0)")]
    pub fn softmax(x: PyRef<'_, Tensor>, dim: isize, scale: f32) -> PyResult<Tensor> {
        super::softmax(&x, dim, scale)
    }

    /// `knpu.argmax(x, dim=-1)`: uint32 indices of the largest values (lowest on ties).
    #[pyfunction]
    #[pyo3(signature = (x, dim=-1), text_signature = "(x, dim=-1)")]
    pub fn argmax(x: PyRef<'_, Tensor>, dim: isize) -> PyResult<Tensor> {
        super::argmax(&x, dim)
    }

    /// `knpu.topk(x, k, dim=-1)`: `(values, indices)` of the `k` largest values, descending.
    #[pyfunction]
    #[pyo3(signature = (x, k, dim=-1), text_signature = "(x, k, dim=-1)")]
    pub fn topk<'py>(
        py: Python<'py>,
        x: PyRef<'_, Tensor>,
        k: usize,
        dim: isize,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (v, i) = super::topk(&x, k, dim)?;
        PyTuple::new(py, [Py::new(py, v)?, Py::new(py, i)?])
    }

    /// `knpu.embedding(ids, table, *, dtype=None)`: rows `ids` (uint32) of a table
    /// `[vocab, dim]` (float, or quantised blocks such as q4_0 or q6_k), as `dtype` (a float
    /// table's own dtype by default, float32 for a quantised one).
    #[pyfunction]
    #[pyo3(signature = (ids, table, *, dtype=None))]
    pub fn embedding(
        ids: PyRef<'_, Tensor>,
        table: PyRef<'_, Tensor>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Tensor> {
        let dt = dtype.map(crate::dtype::resolve).transpose()?;
        super::embedding(&ids, &table, dt)
    }

    /// `knpu.rope(x, positions=None, *, start=0, base=10000.0, rotary_dim=None,
    /// style="neox")`: rotary embedding of `x` (`[..., heads, head_dim]`).
    #[pyfunction]
    #[pyo3(signature = (x, positions=None, *, start=0, base=10000.0, rotary_dim=None, style="neox"))]
    pub fn rope(
        x: PyRef<'_, Tensor>,
        positions: Option<PyRef<'_, Tensor>>,
        start: u64,
        base: f32,
        rotary_dim: Option<usize>,
        style: &str,
    ) -> PyResult<Tensor> {
        super::rope(&x, positions.as_deref(), start, base, rotary_dim, style)
    }

    /// Adds the functions to the module.
    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(self::rms_norm, m)?)?;
        m.add_function(wrap_pyfunction!(self::layer_norm, m)?)?;
        m.add_function(wrap_pyfunction!(self::silu, m)?)?;
        m.add_function(wrap_pyfunction!(self::gelu, m)?)?;
        m.add_function(wrap_pyfunction!(self::swiglu, m)?)?;
        m.add_function(wrap_pyfunction!(self::softmax, m)?)?;
        m.add_function(wrap_pyfunction!(self::argmax, m)?)?;
        m.add_function(wrap_pyfunction!(self::topk, m)?)?;
        m.add_function(wrap_pyfunction!(self::embedding, m)?)?;
        m.add_function(wrap_pyfunction!(self::rope, m)?)?;
        Ok(())
    }
}

/// `q`, `k` or `v` as attention reads it: in place when its layout allows, else copied.
fn attn_operand(t: &Tensor, name: &'static str) -> PyResult<(Tensor, ops::AttnTensor)> {
    refuse_blocks(t, "attention")?;
    let shape = t.values_shape();
    let t = match shape.len() {
        4 => t.with_layout(t.layout.clone()),
        3 => t.with_layout(t.layout.unsqueeze(0).py()?),
        _ => {
            return Err(to_py(knpu::Error::Shape {
                operand: name,
                expected: "[batch, heads, seq, head_dim] or [heads, seq, head_dim]".into(),
                actual: format!("{shape:?}"),
            }))
        }
    };
    if let Some(a) = t.layout.attn_bhsd() {
        return Ok((t, a));
    }
    let c = t.copied()?;
    let a = c
        .layout
        .attn_bhsd()
        .ok_or_else(|| crate::errors::invalid("a contiguous layout is no attention operand"))?;
    Ok((c, a))
}

/// `softmax(scale * q k^T + mask) v` with `q` `[batch, q_heads, q_len, head_dim]` and `k`,
/// `v` `[batch, kv_heads, kv_len, head_dim]` (or the same without `batch`).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
    window: Option<usize>,
) -> PyResult<Tensor> {
    let (tq, aq) = attn_operand(q, "q")?;
    let (tk, ak) = attn_operand(k, "k")?;
    let (tv, av) = attn_operand(v, "v")?;
    same_device(&tq, &[("k", &tk), ("v", &tv)])?;
    for (name, o) in [("k", &tk), ("v", &tv)] {
        if o.dtype != tq.dtype {
            return Err(to_py(knpu::Error::Dtype {
                operand: name,
                expected: tq.dtype.name().into(),
                actual: o.dtype.name().into(),
            }));
        }
    }
    let out_shape = q.values_shape();
    let stream = tq.stream()?;
    let mut fresh = Fresh::new(&stream, &out_shape, tq.dtype)?;
    let args = ops::AttentionArgs {
        q: aq,
        k: ak,
        v: av,
        out: ops::AttnTensor::bhsd(aq.batch, aq.seq, aq.heads, aq.head_dim),
        mask: ops::AttnMask {
            causal,
            window,
            scale,
        },
    };
    dispatch!(
        tq.dtype,
        "attention",
        attention_t(&stream, &args, &tq, &tk, &tv, &mut fresh)
    )?;
    Ok(fresh.finish())
}

fn attention_t<T: Typed>(
    stream: &knpu::Stream,
    args: &ops::AttentionArgs,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let (sq, sk, sv) = (from::<T>(q)?, from::<T>(k)?, from::<T>(v)?);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    ops::attention(stream, args, &sq, &sk, &sv, out, None, None).py()
}

/// The units of `t` from its offset on, as attention's strided views read them.
fn from<T: Typed>(t: &Tensor) -> PyResult<knpu::DeviceSlice<'_, T>> {
    typed::<T>(&t.storage.buf)?.slice(t.layout.offset()..).py()
}

/// The Python attention function.
pub mod py_attention {
    use super::*;

    /// `knpu.attention(q, k, v, *, causal=False, scale=None, mask=None, window=None)`.
    #[pyfunction]
    #[pyo3(signature = (q, k, v, *, causal=false, scale=None, mask=None, window=None))]
    pub fn attention(
        q: PyRef<'_, Tensor>,
        k: PyRef<'_, Tensor>,
        v: PyRef<'_, Tensor>,
        causal: bool,
        scale: Option<f32>,
        mask: Option<&Bound<'_, PyAny>>,
        window: Option<usize>,
    ) -> PyResult<Tensor> {
        if mask.is_some_and(|m| !m.is_none()) {
            return Err(not_supported(
                "attention with a mask tensor (the kernel takes causal=True and a sliding \
                 window=)",
            ));
        }
        super::attention(&q, &k, &v, causal, scale, window)
    }
}

/// The quantised format a tensor of `dtype` holds, if any.
fn quant_format(dtype: DataType) -> Option<ops::QuantFormat> {
    match dtype {
        DataType::I8 => Some(ops::QuantFormat::I8),
        other => other.quant_format(),
    }
}

/// A quantised operand's bytes (a contiguous view of `t` from its first unit).
fn quant_bytes(t: &Tensor) -> PyResult<knpu::DeviceSlice<'_, u8>> {
    let (off, n) = (t.layout.offset(), t.layout.numel());
    let unit = t.dtype.unit_bytes();
    match &t.storage.buf {
        Buf::Raw(b) => b.slice(off * unit..(off + n) * unit).py(),
        Buf::I8(_) => Err(not_supported(
            "int8 rows in knpu.qmatmul and knpu.dequantize (the runtime views only byte \
             storage as codes); use knpu.w8a8_gemm for int8 weights",
        )),
        _ => Err(to_py(knpu::Error::Dtype {
            operand: "w",
            expected: "a quantised type (q4_0, q4_1, q8_0, q4_k, q6_k, float8_e4m3, \
                       float8_e5m2 or int8)"
                .into(),
            actual: t.dtype.name().into(),
        })),
    }
}

/// An f32 operand (scales, biases) as a slice.
fn f32_slice<'a>(t: &'a Tensor, name: &'static str) -> PyResult<knpu::DeviceSlice<'a, f32>> {
    match &t.storage.buf {
        Buf::F32(b) => Ok(elems!(b, t)),
        _ => Err(to_py(knpu::Error::Dtype {
            operand: name,
            expected: "float32".into(),
            actual: t.dtype.name().into(),
        })),
    }
}

/// `x` (float32 `[..., k]`) quantised row by row to `dtype` (a block type or an 8-bit float).
pub fn quantize(x: &Tensor, dtype: DataType) -> PyResult<Tensor> {
    let x = plain(x, "quantize")?;
    let format = match (dtype, dtype.quant_format()) {
        (_, Some(f)) => f,
        (DataType::I8, _) => {
            return Err(not_supported(
                "quantising to int8 from Python (its per-row scales need an output of their \
                 own); use a block type or an 8-bit float",
            ))
        }
        _ => {
            return Err(to_py(knpu::Error::Dtype {
                operand: "dtype",
                expected: "a quantised type".into(),
                actual: dtype.name().into(),
            }))
        }
    };
    let shape = x.values_shape();
    let (rows, k) = knpu::tensor::rows_cols(&shape).py()?;
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, dtype)?;
    let src = f32_slice(&x, "x")?;
    let dst = match &mut fresh.storage.buf {
        Buf::Raw(b) => b,
        _ => return Err(crate::errors::invalid("quantised storage is not raw bytes")),
    };
    ops::quantize(&stream, format, rows, k, &src, dst, None).py()?;
    Ok(fresh.finish())
}

/// `q` (quantised `[..., k]`) converted to float32, with its per-row `scales` where the
/// format takes them.
pub fn dequantize(q: &Tensor, scales: Option<&Tensor>) -> PyResult<Tensor> {
    let q = q.contiguous_tensor()?;
    let format = quant_format(q.dtype).ok_or_else(|| {
        to_py(knpu::Error::Dtype {
            operand: "q",
            expected: "a quantised type".into(),
            actual: q.dtype.name().into(),
        })
    })?;
    let shape = q.values_shape();
    let (rows, k) = knpu::tensor::rows_cols(&shape).py()?;
    let scales = scales.map(|s| s.contiguous_tensor()).transpose()?;
    let stream = q.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, DataType::F32)?;
    let src = quant_bytes(&q)?;
    let sc = match &scales {
        Some(s) => Some(f32_slice(s, "scales")?),
        None => None,
    };
    let out = typed_mut::<f32>(&mut fresh.storage.buf)?;
    ops::dequantize(
        &stream,
        format,
        rows,
        k,
        &src,
        sc.as_ref().map(|s| s as &dyn knpu::AsDeviceSlice<f32>),
        out,
    )
    .py()?;
    Ok(fresh.finish())
}

/// `y = act(x w^T + bias)` for float `x` `[..., k]` and quantised weights `w` `[n, k]`.
pub fn qmatmul(
    x: &Tensor,
    w: &Tensor,
    scales: Option<&Tensor>,
    bias: Option<&Tensor>,
    act: Option<&str>,
) -> PyResult<Tensor> {
    let x = plain(x, "qmatmul")?;
    let w = w.contiguous_tensor()?;
    same_device(&x, &[("w", &w)])?;
    let format = quant_format(w.dtype).ok_or_else(|| {
        to_py(knpu::Error::Dtype {
            operand: "w",
            expected: "a quantised type".into(),
            actual: w.dtype.name().into(),
        })
    })?;
    let wshape = w.values_shape();
    if wshape.len() != 2 {
        return Err(to_py(knpu::Error::Shape {
            operand: "w",
            expected: "[n, k]".into(),
            actual: format!("{wshape:?}"),
        }));
    }
    let (n, k) = (wshape[0], wshape[1]);
    let xshape = x.values_shape();
    let (m, _) = knpu::tensor::rows_cols(&xshape).py()?;
    let mut out_shape = xshape.clone();
    if let Some(last) = out_shape.last_mut() {
        *last = n;
    }
    let act = activation(act)?;
    let (scales, bias) = (
        scales.map(|s| s.contiguous_tensor()).transpose()?,
        bias.map(|b| b.contiguous_tensor()).transpose()?,
    );
    let stream = x.stream()?;
    let mut fresh = Fresh::new(&stream, &out_shape, x.dtype)?;
    let data = quant_bytes(&w)?;
    let sc = scales
        .as_ref()
        .map(|s| f32_slice(s, "scales"))
        .transpose()?;
    let bs = bias.as_ref().map(|b| f32_slice(b, "bias")).transpose()?;
    let mut qw = ops::QWeights::new(format, &data, n, k);
    qw.scales = sc;
    let mut q = ops::QMatmul::new(m).activation(act);
    q.bias = bs;
    float_buf!(&x.storage.buf, x.dtype, "x", xb => {
        float_buf!(&mut fresh.storage.buf, x.dtype, "y", yb => {
            ops::qmatmul(&stream, &q, &elems!(xb, x), &qw, yb).py()?
        })
    });
    Ok(fresh.finish())
}

/// The W8A8 GEMM over int8 codes: `y = act((xq sx)(wq sw)^T + bias)`.
#[allow(clippy::too_many_arguments)]
pub fn w8a8_gemm(
    xq: &Tensor,
    x_scales: &Tensor,
    wq: &Tensor,
    w_scales: &Tensor,
    bias: Option<&Tensor>,
    act: Option<&str>,
    dtype: DataType,
) -> PyResult<Tensor> {
    let xq = plain(xq, "w8a8_gemm")?;
    let wq = plain(wq, "w8a8_gemm")?;
    let (xs, ws) = (x_scales.contiguous_tensor()?, w_scales.contiguous_tensor()?);
    let bias = bias.map(|b| b.contiguous_tensor()).transpose()?;
    same_device(&xq, &[("x_scales", &xs), ("wq", &wq), ("w_scales", &ws)])?;
    let (xshape, wshape) = (xq.values_shape(), wq.values_shape());
    if xshape.len() != 2 || wshape.len() != 2 {
        return Err(to_py(knpu::Error::Shape {
            operand: if xshape.len() != 2 { "xq" } else { "wq" },
            expected: "[m, k] and [n, k]".into(),
            actual: format!("{xshape:?} and {wshape:?}"),
        }));
    }
    let (m, k, n) = (xshape[0], xshape[1], wshape[0]);
    let act = activation(act)?;
    let i8s = |t: &Tensor, name: &'static str| -> PyResult<()> {
        if t.dtype != DataType::I8 {
            return Err(to_py(knpu::Error::Dtype {
                operand: name,
                expected: "int8".into(),
                actual: t.dtype.name().into(),
            }));
        }
        Ok(())
    };
    i8s(&xq, "xq")?;
    i8s(&wq, "wq")?;
    let stream = xq.stream()?;
    let mut fresh = Fresh::new(&stream, &[m, n], dtype)?;
    let (xb, wb) = (typed::<i8>(&xq.storage.buf)?, typed::<i8>(&wq.storage.buf)?);
    let (sx, sw) = (elems!(xb, xq), elems!(wb, wq));
    let (fxs, fws) = (f32_slice(&xs, "x_scales")?, f32_slice(&ws, "w_scales")?);
    let mut g = ops::W8A8Gemm::new(m, n, k).activation(act);
    g.bias = bias.as_ref().map(|b| f32_slice(b, "bias")).transpose()?;
    float_buf!(&mut fresh.storage.buf, dtype, "y", yb => {
        ops::w8a8_gemm(&stream, &g, &sx, &fxs, &sw, &fws, yb).py()?
    });
    Ok(fresh.finish())
}

/// Rows `ids` (uint32) of a quantised block table (`[vocab, dim]`), dequantised to
/// `out_dtype`.
fn qembedding(ids: &Tensor, table: &Tensor, out_dtype: DataType) -> PyResult<Tensor> {
    let ids = plain(ids, "embedding")?;
    let t = table.contiguous_tensor()?;
    same_device(&t, &[("ids", &ids)])?;
    let format = quant_format(t.dtype).ok_or_else(|| invalid_format(t.dtype))?;
    let tshape = t.values_shape();
    if tshape.len() != 2 {
        return Err(to_py(knpu::Error::Shape {
            operand: "table",
            expected: "[vocab, dim]".into(),
            actual: format!("{tshape:?}"),
        }));
    }
    let mut shape = ids.values_shape();
    shape.push(tshape[1]);
    let stream = t.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, out_dtype)?;
    let data = quant_bytes(&t)?;
    let qw = ops::QWeights::new(format, &data, tshape[0], tshape[1]);
    let sid = match &ids.storage.buf {
        Buf::U32(b) => elems!(b, ids),
        _ => {
            return Err(to_py(knpu::Error::Dtype {
                operand: "ids",
                expected: "uint32".into(),
                actual: ids.dtype.name().into(),
            }))
        }
    };
    float_buf!(&mut fresh.storage.buf, out_dtype, "out", z => {
        ops::qembedding(&stream, &qw, &sid, z).py()?
    });
    Ok(fresh.finish())
}

fn invalid_format(dtype: DataType) -> PyErr {
    to_py(knpu::Error::Dtype {
        operand: "table",
        expected: "a quantised type".into(),
        actual: dtype.name().into(),
    })
}

/// The Python quantised-linear functions.
pub mod py_quant {
    use super::*;

    /// `knpu.quantize(x, dtype)`: float32 `x` (`[..., k]`) quantised row by row.
    #[pyfunction]
    pub fn quantize(x: PyRef<'_, Tensor>, dtype: &Bound<'_, PyAny>) -> PyResult<Tensor> {
        super::quantize(&x, crate::dtype::resolve(dtype)?)
    }

    /// `knpu.dequantize(q, *, scales=None)`: float32 values of a quantised tensor.
    #[pyfunction]
    #[pyo3(signature = (q, *, scales=None))]
    pub fn dequantize(q: PyRef<'_, Tensor>, scales: Option<PyRef<'_, Tensor>>) -> PyResult<Tensor> {
        super::dequantize(&q, scales.as_deref())
    }

    /// `knpu.qmatmul(x, w, *, scales=None, bias=None, activation=None)`: `x @ w.T` for
    /// quantised weights `w` `[n, k]`.
    #[pyfunction]
    #[pyo3(signature = (x, w, *, scales=None, bias=None, activation=None))]
    pub fn qmatmul(
        x: PyRef<'_, Tensor>,
        w: PyRef<'_, Tensor>,
        scales: Option<PyRef<'_, Tensor>>,
        bias: Option<PyRef<'_, Tensor>>,
        activation: Option<&str>,
    ) -> PyResult<Tensor> {
        super::qmatmul(&x, &w, scales.as_deref(), bias.as_deref(), activation)
    }

    /// `knpu.w8a8_gemm(xq, x_scales, wq, w_scales, *, bias=None, activation=None,
    /// dtype=knpu.float32)`.
    #[pyfunction]
    #[pyo3(signature = (xq, x_scales, wq, w_scales, *, bias=None, activation=None, dtype=None))]
    #[allow(clippy::too_many_arguments)]
    pub fn w8a8_gemm(
        xq: PyRef<'_, Tensor>,
        x_scales: PyRef<'_, Tensor>,
        wq: PyRef<'_, Tensor>,
        w_scales: PyRef<'_, Tensor>,
        bias: Option<PyRef<'_, Tensor>>,
        activation: Option<&str>,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Tensor> {
        let dt = dtype
            .map(crate::dtype::resolve)
            .transpose()?
            .unwrap_or(DataType::F32);
        super::w8a8_gemm(
            &xq,
            &x_scales,
            &wq,
            &w_scales,
            bias.as_deref(),
            activation,
            dt,
        )
    }

    /// Adds the functions to the module.
    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(self::quantize, m)?)?;
        m.add_function(wrap_pyfunction!(self::dequantize, m)?)?;
        m.add_function(wrap_pyfunction!(self::qmatmul, m)?)?;
        m.add_function(wrap_pyfunction!(self::w8a8_gemm, m)?)?;
        Ok(())
    }
}
