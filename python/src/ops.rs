//! Op functions of `import knpu`: `matmul` and `@`, arithmetic with broadcasting, casts.
//!
//! Every op is queued on the current stream of its first operand's device and returns at
//! once. Shapes come from `knpu::tensor` (numpy's broadcasting and `matmul` rules), and the
//! runtime's launchers check operands, dtypes and devices before anything is queued, so
//! this module only lays operands out as the launchers take them and picks the typed
//! launcher for the storage.

use crate::errors::{not_supported, to_py, wrong_dtype, IntoPyResult};
use crate::storage::{Buf, Storage, Typed};
use crate::tensor::{encode, Tensor};
use knpu::ops::{self, BinaryOp, Broadcast, ElementwiseOp, Gemm, GemmEpilogue};
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

/// `t` and what `view` reads of its layout: `t` itself when its layout allows, else a
/// contiguous copy (`what` names the view in the error should even that fail).
pub(crate) fn in_place_or_copied<V>(
    t: Tensor,
    view: impl Fn(&Layout) -> Option<V>,
    what: &str,
) -> PyResult<(Tensor, V)> {
    if let Some(v) = view(&t.layout) {
        return Ok((t, v));
    }
    let c = t.copied()?;
    let v = view(&c.layout)
        .ok_or_else(|| crate::errors::invalid(format!("a contiguous layout is no {what}")))?;
    Ok((c, v))
}

/// A GEMM operand read in place when its layout allows, else a contiguous copy.
fn gemm_operand(t: &Tensor, layout: Layout) -> PyResult<(Tensor, MatrixBatch)> {
    in_place_or_copied(t.with_layout(layout), Layout::matrix_batch, "matrix batch")
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
                return Err(wrong_dtype(
                    $what,
                    "float32, float16 or bfloat16",
                    $dt.name(),
                ))
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
    // Operands whose shape is already the full one (no batch broadcast) keep their layout.
    let fit = |l: Layout, want: Vec<usize>| -> PyResult<Layout> {
        if l.shape() == want.as_slice() {
            Ok(l)
        } else {
            l.broadcast_to(&want).py()
        }
    };
    let (ta, ma) = gemm_operand(a, fit(la, full(s.m, s.k))?)?;
    let (tb, mb) = gemm_operand(b, fit(lb, full(s.k, s.n))?)?;
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
            _ => return Err(wrong_dtype("bias", "float32", t.dtype.name())),
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
pub(crate) fn typed<T: Typed>(b: &Buf) -> PyResult<&knpu::DeviceBuffer<T>> {
    T::of(b).ok_or_else(|| crate::errors::invalid("operand storage differs from its dtype"))
}

/// The typed buffer of an output whose dtype was checked to be `T`'s.
pub(crate) fn typed_mut<T: Typed>(b: &mut Buf) -> PyResult<&mut knpu::DeviceBuffer<T>> {
    T::of_mut(b).ok_or_else(|| crate::errors::invalid("output storage differs from its dtype"))
}

/// Runs `$f::<T>($args)` for the float element type `T` of `$dt` (the binary kernel's
/// types), or fails naming the op and dtype.
macro_rules! float_dispatch {
    ($dt:expr, $what:expr, $f:ident($($args:expr),*)) => {
        match $dt {
            DataType::F32 => $f::<f32>($($args),*),
            DataType::F16 => $f::<half::f16>($($args),*),
            DataType::BF16 => $f::<half::bf16>($($args),*),
            other => Err(not_supported(format!(
                "{} on {other} tensors (the device computes it for float32, float16 and \
                 bfloat16)",
                $what
            ))),
        }
    };
}

/// Runs `$f::<T>($args)` for the element type `T` of `$dt`, or fails for types stored as
/// raw bytes (8-bit floats and quantised blocks), which no elementwise launcher takes.
macro_rules! dispatch {
    ($dt:expr, $what:expr, $f:ident($($args:expr),*)) => {
        match $dt {
            dt @ (DataType::F32 | DataType::F16 | DataType::BF16) => {
                float_dispatch!(dt, $what, $f($($args),*))
            }
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

/// `t` itself when contiguous, else a contiguous copy put in `slot`.
fn in_place<'a>(t: &'a Tensor, slot: &'a mut Option<Tensor>) -> PyResult<&'a Tensor> {
    if t.layout.is_contiguous() {
        return Ok(t);
    }
    Ok(slot.insert(t.copied()?))
}

/// The binary kernel's operation for `op`.
fn binary_op(op: Arith) -> BinaryOp {
    match op {
        Arith::Add => BinaryOp::Add,
        Arith::Sub => BinaryOp::Sub,
        Arith::Mul => BinaryOp::Mul,
        Arith::Div => BinaryOp::Div,
    }
}

/// Where `t` (of shape `own`) stops repeating when broadcast to `shape`: the `k` such that
/// `own`, padded with leading 1s, is 1 over `shape[..k]` and equals `shape[k..]`. Then `t`
/// holds one row of `prod(shape[k..])` values that the broadcast repeats
/// `prod(shape[..k])` times, which is the binary kernel's row broadcast; `k == 0` means
/// `t` is not broadcast at all. `None`: the broadcast repeats inner dimensions (a column
/// `[n, 1]` against `[n, m]`, or `[a, 1, c]` against `[a, b, c]`), which no form of the
/// kernel expresses.
fn repeat_split(own: &[usize], shape: &[usize]) -> Option<usize> {
    let pad = shape.len() - own.len();
    let dim = |i: usize| if i < pad { 1 } else { own[i - pad] };
    let mut k = shape.len();
    while k > 0 && dim(k - 1) == shape[k - 1] {
        k -= 1;
    }
    (0..k).all(|i| dim(i) == 1).then_some(k)
}

/// `a op b` for two tensors, broadcast as numpy broadcasts.
///
/// The binary kernel takes `a` and the output as `[rows, cols]` and `b` either whole or as
/// one row of `cols` values repeated over the rows, so a broadcast that repeats leading
/// dimensions only (a row, a scalar, `[c, d]` against `[a, b, c, d]`) is read in place. `a`
/// and `b` swap for the operators that commute when only `a` repeats. Any other broadcast
/// (an inner dimension repeated: a column `[n, 1]`, `[a, 1, c]`; or `a` repeated under `-`)
/// copies the operand to the full shape first.
pub fn arith_tensors(a: &Tensor, b: &Tensor, op: Arith) -> PyResult<Tensor> {
    refuse_blocks(a, op.symbol())?;
    refuse_blocks(b, op.symbol())?;
    let bop = binary_op(op);
    if a.dtype != b.dtype {
        return Err(wrong_dtype(
            "b",
            format!("{} (as a; convert with .to())", a.dtype),
            b.dtype.name(),
        ));
    }
    if a.rt_device() != b.rt_device() {
        return Err(to_py(knpu::Error::DeviceMismatch {
            operand: "b",
            expected: a.rt_device().ordinal(),
            actual: b.rt_device().ordinal(),
        }));
    }
    let (sa, sb) = (a.values_shape(), b.values_shape());
    let shape = if sa == sb {
        sa.clone()
    } else {
        broadcast_shapes(&sa, &sb).py()?
    };
    let (ka, kb) = (repeat_split(&sa, &shape), repeat_split(&sb, &shape));
    let commutes = matches!(op, Arith::Add | Arith::Mul);
    // `x` is read whole, `y` as rows of `shape[k..]` (whole when `k == 0`); copies, when
    // needed, live in the slots.
    let (mut slot_x, mut slot_y) = (None, None);
    let (x, y, k) = match (ka, kb) {
        (Some(0), Some(k)) => (in_place(a, &mut slot_x)?, in_place(b, &mut slot_y)?, k),
        (Some(k), Some(0)) if commutes => (in_place(b, &mut slot_x)?, in_place(a, &mut slot_y)?, k),
        (_, Some(k)) => (
            &*slot_x.insert(dense(a, &shape)?),
            in_place(b, &mut slot_y)?,
            k,
        ),
        (_, None) => (
            &*slot_x.insert(dense(a, &shape)?),
            &*slot_y.insert(dense(b, &shape)?),
            0,
        ),
    };
    let rows = shape[..k].iter().product::<usize>();
    let cols = shape[k..].iter().product::<usize>();
    let broadcast = if k == 0 {
        Broadcast::None
    } else {
        Broadcast::Row
    };
    let stream = a.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, a.dtype)?;
    let grid = Grid {
        rows,
        cols,
        broadcast,
    };
    float_dispatch!(
        a.dtype,
        format!("`{}`", op.symbol()),
        binary_t(&stream, bop, x, y, &mut fresh, grid)
    )?;
    Ok(fresh.finish())
}

/// How the binary kernel reads its operands: `a` and the output as `[rows, cols]`, `b` as
/// `broadcast` says.
#[derive(Clone, Copy)]
struct Grid {
    rows: usize,
    cols: usize,
    broadcast: Broadcast,
}

fn binary_t<T: Typed>(
    stream: &knpu::Stream,
    op: BinaryOp,
    x: &Tensor,
    y: &Tensor,
    fresh: &mut Fresh,
    grid: Grid,
) -> PyResult<()> {
    let (xs, ys) = (typed::<T>(&x.storage.buf)?, typed::<T>(&y.storage.buf)?);
    ops::binary(
        stream,
        op,
        &elems!(xs, x),
        &elems!(ys, y),
        typed_mut::<T>(&mut fresh.storage.buf)?,
        grid.rows,
        grid.cols,
        grid.broadcast,
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
    let mut slot = None;
    let da = in_place(a, &mut slot)?;
    let mut fresh = Fresh::new(&stream, &shape, a.dtype)?;
    let what = || format!("`{}`", op.symbol());
    match (op, reflected) {
        (Arith::Mul, _) => dispatch!(
            a.dtype,
            what(),
            elementwise_t(
                &stream,
                ElementwiseOp::Scale(x as f32),
                da,
                None,
                &mut fresh
            )
        )?,
        (Arith::Div, false) => dispatch!(
            a.dtype,
            what(),
            elementwise_t(
                &stream,
                ElementwiseOp::Scale((1.0 / x) as f32),
                da,
                None,
                &mut fresh
            )
        )?,
        (Arith::Div, true) => {
            // v / a: the number filled to a's shape, divided by a on the device (no form of
            // the binary kernel divides a broadcast operand by a tensor).
            let filled = filled(&stream, &shape, a.dtype, x, v.py())?;
            dispatch!(
                a.dtype,
                what(),
                elementwise_t(&stream, ElementwiseOp::Div, &filled, Some(da), &mut fresh)
            )?
        }
        (Arith::Sub, true) => {
            // v - a = -1 * a + c with c the number at full size: no form of the binary
            // kernel subtracts a tensor from a broadcast operand.
            let filled = filled(&stream, &shape, a.dtype, x, v.py())?;
            dispatch!(
                a.dtype,
                what(),
                elementwise_t(
                    &stream,
                    ElementwiseOp::Axpy(-1.0),
                    da,
                    Some(&filled),
                    &mut fresh
                )
            )?
        }
        (Arith::Add | Arith::Sub, _) => {
            // The number as a one-value row that the binary kernel repeats over `a`.
            let one_value = filled(&stream, &[], a.dtype, x, v.py())?;
            let grid = Grid {
                rows: da.layout.numel(),
                cols: 1,
                broadcast: Broadcast::Row,
            };
            float_dispatch!(
                a.dtype,
                what(),
                binary_t(&stream, binary_op(op), da, &one_value, &mut fresh, grid)
            )?
        }
    }
    Ok(fresh.finish())
}

/// A fresh contiguous tensor of `shape` with every value `x` (rounded to `dtype`).
fn filled(
    stream: &knpu::Stream,
    shape: &[usize],
    dtype: DataType,
    x: f64,
    py: Python<'_>,
) -> PyResult<Tensor> {
    let t = Fresh::new(stream, shape, dtype)?.finish();
    let pattern = encode(dtype, &x.into_pyobject(py)?.into_any())?;
    crate::with_buf!(&t.storage.buf, b => fill_strided(
        stream, b, &t.layout, dtype.unit_bytes(), pattern))
    .py()?;
    Ok(t)
}

/// `ops::elementwise` over `a`, and `b` when the op reads one, into `fresh`.
fn elementwise_t<T: Typed>(
    stream: &knpu::Stream,
    op: ElementwiseOp,
    a: &Tensor,
    b: Option<&Tensor>,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let sa = elems!(typed::<T>(&a.storage.buf)?, a);
    let sb = match b {
        Some(b) => Some(elems!(typed::<T>(&b.storage.buf)?, b)),
        None => None,
    };
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    let sb = sb.as_ref().map(|b| b as &dyn knpu::AsDeviceSlice<T>);
    ops::elementwise(stream, op, &sa, sb, out).py()
}

/// A contiguous view (or copy) of `t`, refusing quantised blocks for `op`.
pub(crate) fn plain(t: &Tensor, op: &str) -> PyResult<Tensor> {
    refuse_blocks(t, op)?;
    t.contiguous_tensor()
}

/// The two dimensions of 2-D tensor `t`, operand `operand`; any other rank is a shape error
/// that says the `expected` shape.
fn dims2(t: &Tensor, operand: &'static str, expected: &str) -> PyResult<(usize, usize)> {
    match t.values_shape()[..] {
        [rows, cols] => Ok((rows, cols)),
        ref other => Err(to_py(knpu::Error::Shape {
            operand,
            expected: expected.into(),
            actual: format!("{other:?}"),
        })),
    }
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

/// A contiguous tensor seen as `[rows, cols]` rows over its last dimension, with the stream
/// its op is queued on: what every row-wise op (norms, softmax, argmax, top-k) starts from.
pub(crate) struct Rows {
    pub x: Tensor,
    pub shape: Vec<usize>,
    pub rows: usize,
    pub cols: usize,
    pub stream: knpu::Stream,
}

impl Rows {
    /// `x` (a contiguous view or copy) as rows, for `op`.
    pub fn of(x: &Tensor, op: &str) -> PyResult<Rows> {
        let x = plain(x, op)?;
        let shape = x.values_shape();
        let (rows, cols) = knpu::tensor::rows_cols(&shape).py()?;
        let stream = x.stream()?;
        Ok(Rows {
            x,
            shape,
            rows,
            cols,
            stream,
        })
    }

    /// `x` as rows for `op`, which reduces dimension `dim`: refused unless `dim` is the last
    /// (the kernels reduce the last dimension).
    fn reducing(x: &Tensor, dim: isize, op: &str) -> PyResult<Rows> {
        let n = x.layout.ndim() as isize;
        if dim != -1 && dim != n - 1 {
            return Err(not_supported(format!(
                "{op} over dimension {dim} of a {n}-D tensor (the kernel reduces the last \
                 dimension; move it there with .transpose())"
            )));
        }
        Rows::of(x, op)
    }

    /// Fresh storage of `shape` values of `dtype` on this stream's device.
    pub fn fresh(&self, shape: &[usize], dtype: DataType) -> PyResult<Fresh> {
        Fresh::new(&self.stream, shape, dtype)
    }
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
    let r = Rows::of(x, what)?;
    let w = plain(weight, what)?;
    let b = bias.map(|b| plain(b, what)).transpose()?;
    same_device(&r.x, &[("weight", &w)])?;
    if let Some(b) = &b {
        same_device(&r.x, &[("bias", b)])?;
    }
    for (name, o) in [("weight", Some(&w)), ("bias", b.as_ref())] {
        if let Some(o) = o {
            if o.dtype != r.x.dtype {
                return Err(wrong_dtype(name, r.x.dtype.name(), o.dtype.name()));
            }
        }
    }
    let mut fresh = r.fresh(&r.shape, r.x.dtype)?;
    let weights = (&w, b.as_ref());
    dispatch!(r.x.dtype, what, norm_t(&r, weights, &mut fresh, eps, layer))?;
    Ok(fresh.finish())
}

fn norm_t<T: Typed>(
    r: &Rows,
    (w, b): (&Tensor, Option<&Tensor>),
    fresh: &mut Fresh,
    eps: f32,
    layer: bool,
) -> PyResult<()> {
    let sx = elems!(typed::<T>(&r.x.storage.buf)?, r.x);
    let sw = elems!(typed::<T>(&w.storage.buf)?, w);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    let (rows, cols) = (r.rows, r.cols);
    if layer {
        let sb = match b {
            Some(b) => Some(elems!(typed::<T>(&b.storage.buf)?, b)),
            None => None,
        };
        let sb_dyn = sb.as_ref().map(|s| s as &dyn knpu::AsDeviceSlice<T>);
        ops::layer_norm(&r.stream, &sx, &sw, sb_dyn, out, rows, cols, eps).py()
    } else {
        ops::rms_norm(&r.stream, &sx, &sw, out, rows, cols, eps).py()
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
        return Err(wrong_dtype("up", g.dtype.name(), u.dtype.name()));
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

/// A softmax of `scale * x` over the last dimension.
pub fn softmax(x: &Tensor, dim: isize, scale: f32) -> PyResult<Tensor> {
    let r = Rows::reducing(x, dim, "softmax")?;
    let mut fresh = r.fresh(&r.shape, r.x.dtype)?;
    dispatch!(r.x.dtype, "softmax", softmax_t(&r, &mut fresh, scale))?;
    Ok(fresh.finish())
}

fn softmax_t<T: Typed>(r: &Rows, fresh: &mut Fresh, scale: f32) -> PyResult<()> {
    let sx = elems!(typed::<T>(&r.x.storage.buf)?, r.x);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    ops::softmax(&r.stream, &sx, out, r.rows, r.cols, scale).py()
}

/// The index (uint32) of the largest value along the last dimension.
pub fn argmax(x: &Tensor, dim: isize) -> PyResult<Tensor> {
    let r = Rows::reducing(x, dim, "argmax")?;
    let mut fresh = r.fresh(&r.shape[..r.shape.len() - 1], DataType::U32)?;
    dispatch!(r.x.dtype, "argmax", argmax_t(&r, &mut fresh))?;
    Ok(fresh.finish())
}

fn argmax_t<T: Typed>(r: &Rows, fresh: &mut Fresh) -> PyResult<()> {
    let sx = elems!(typed::<T>(&r.x.storage.buf)?, r.x);
    let out = typed_mut::<u32>(&mut fresh.storage.buf)?;
    ops::argmax(&r.stream, &sx, out, r.rows, r.cols).py()
}

/// The `k` largest values along the last dimension, descending, and their uint32 indices.
pub fn topk(x: &Tensor, k: usize, dim: isize) -> PyResult<(Tensor, Tensor)> {
    let r = Rows::reducing(x, dim, "topk")?;
    let mut out_shape = r.shape.clone();
    if let Some(last) = out_shape.last_mut() {
        *last = k;
    }
    let mut values = r.fresh(&out_shape, r.x.dtype)?;
    let mut indices = r.fresh(&out_shape, DataType::U32)?;
    dispatch!(r.x.dtype, "topk", topk_t(&r, &mut values, &mut indices, k))?;
    Ok((values.finish(), indices.finish()))
}

fn topk_t<T: Typed>(r: &Rows, values: &mut Fresh, indices: &mut Fresh, k: usize) -> PyResult<()> {
    let sx = elems!(typed::<T>(&r.x.storage.buf)?, r.x);
    let v = typed_mut::<T>(&mut values.storage.buf)?;
    let i = typed_mut::<u32>(&mut indices.storage.buf)?;
    ops::top_k(&r.stream, &sx, v, i, r.rows, r.cols, k).py()
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
    let (vocab, dim) = dims2(&t, "table", "[vocab, dim]")?;
    let mut shape = ids.values_shape();
    shape.push(dim);
    let out_dtype = out_dtype.unwrap_or(t.dtype);
    let stream = t.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, out_dtype)?;
    let sid = match &ids.storage.buf {
        Buf::U32(b) => elems!(b, ids),
        _ => return Err(wrong_dtype("ids", "uint32", ids.dtype.name())),
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
            _ => return Err(wrong_dtype("positions", "uint32", p.dtype.name())),
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
    in_place_or_copied(t, Layout::attn_bhsd, "attention operand")
}

/// `softmax(scale * q k^T + mask) v` with `q` `[batch, q_heads, q_len, head_dim]` and `k`,
/// `v` `[batch, kv_heads, kv_len, head_dim]` (or the same without `batch`). Sequence `b`
/// attends to its first `kv_lens[b]` keys when `kv_lens` (uint32 `[batch]`) is given.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    scale: Option<f32>,
    window: Option<usize>,
    kv_lens: Option<&Tensor>,
) -> PyResult<Tensor> {
    let (tq, aq) = attn_operand(q, "q")?;
    let (tk, ak) = attn_operand(k, "k")?;
    let (tv, av) = attn_operand(v, "v")?;
    same_device(&tq, &[("k", &tk), ("v", &tv)])?;
    for (name, o) in [("k", &tk), ("v", &tv)] {
        if o.dtype != tq.dtype {
            return Err(wrong_dtype(name, tq.dtype.name(), o.dtype.name()));
        }
    }
    if let Some(l) = kv_lens {
        same_device(&tq, &[("kv_lens", l)])?;
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
        attention_t(&stream, &args, &tq, &tk, &tv, kv_lens, &mut fresh)
    )?;
    Ok(fresh.finish())
}

fn attention_t<T: Typed>(
    stream: &knpu::Stream,
    args: &ops::AttentionArgs,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv_lens: Option<&Tensor>,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let (sq, sk, sv) = (from::<T>(q)?, from::<T>(k)?, from::<T>(v)?);
    let lens = kv_lens.map(|t| u32_slice(t, "kv_lens")).transpose()?;
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    ops::attention(
        stream,
        args,
        &sq,
        &sk,
        &sv,
        out,
        None,
        lens.as_ref().map(|l| l as &dyn knpu::AsDeviceSlice<u32>),
    )
    .py()
}

/// A contiguous uint32 operand (key counts, sequence lengths, block tables) as a slice.
pub(crate) fn u32_slice<'a>(
    t: &'a Tensor,
    name: &'static str,
) -> PyResult<knpu::DeviceSlice<'a, u32>> {
    match &t.storage.buf {
        Buf::U32(b) if t.layout.is_contiguous() => Ok(elems!(b, t)),
        _ => Err(wrong_dtype(name, "contiguous uint32", t.dtype.name())),
    }
}

/// The `[batch, kv_len]` extents `attention` sees for `q` and `k` (3-D operands have batch 1).
fn attn_batch_kv(q: &Tensor, k: &Tensor) -> (usize, usize) {
    let (qs, ks) = (q.values_shape(), k.values_shape());
    let batch = if qs.len() == 4 { qs[0] } else { 1 };
    let kv_len = if ks.len() >= 3 { ks[ks.len() - 2] } else { 0 };
    (batch, kv_len)
}

/// Per-sequence key counts for `knpu.attention`, as a uint32 `[batch]` tensor on `q`'s
/// device: `kv_lens` (a uint32 tensor used in place; an int32 tensor or a host sequence
/// checked and copied), or the lengths of a boolean key-padding `mask` of prefix form.
fn attention_lens(
    py: Python<'_>,
    q: &Tensor,
    k: &Tensor,
    kv_lens: Option<&Bound<'_, PyAny>>,
    mask: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Tensor>> {
    let (batch, kv_len) = attn_batch_kv(q, k);
    let np = py.import("numpy")?;
    let host_lens: Vec<u32> = match (kv_lens, mask) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(crate::errors::invalid(
                "give the key lengths either as kv_lens= or as mask=, not both",
            ))
        }
        (Some(l), None) => {
            if let Ok(t) = l.cast::<Tensor>() {
                let t = t.get();
                if t.values_shape() != [batch] {
                    return Err(to_py(knpu::Error::Shape {
                        operand: "kv_lens",
                        expected: format!("[{batch}] (one key count per sequence)"),
                        actual: format!("{:?}", t.values_shape()),
                    }));
                }
                match t.dtype {
                    DataType::U32 => return Ok(Some(t.with_layout(t.layout.clone()))),
                    DataType::I32 => {}
                    other => return Err(wrong_dtype("kv_lens", "uint32 or int32", other.name())),
                }
            }
            // An int32 tensor is copied to the host to be checked (numpy refuses to read a
            // device tensor implicitly).
            let arr = match l.cast::<Tensor>() {
                Ok(t) => t.call_method0("numpy")?,
                Err(_) => np.call_method1("asarray", (l,))?,
            };
            let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
            let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
            if shape != [batch] {
                return Err(to_py(knpu::Error::Shape {
                    operand: "kv_lens",
                    expected: format!("[{batch}] (one key count per sequence)"),
                    actual: format!("{shape:?}"),
                }));
            }
            if kind != "i" && kind != "u" && !(batch == 0 && kind == "f") {
                return Err(wrong_dtype(
                    "kv_lens",
                    "integers",
                    arr.getattr("dtype")?.getattr("name")?.extract::<String>()?,
                ));
            }
            let vals: Vec<i64> = arr
                .call_method1("astype", ("int64",))?
                .call_method0("tolist")?
                .extract()?;
            let mut out = Vec::with_capacity(vals.len());
            for (b, &n) in vals.iter().enumerate() {
                if n < 0 || n as u64 > kv_len as u64 {
                    return Err(crate::errors::invalid(format!(
                        "kv_lens[{b}] = {n} is outside 0..={kv_len} (the keys k holds)"
                    )));
                }
                out.push(n as u32);
            }
            out
        }
        (None, Some(m)) => mask_lens(&np, m, batch, kv_len)?,
    };
    let arr = np.call_method1("asarray", (host_lens, "uint32"))?;
    crate::tensor::upload(py, &arr, None, q.rt_device()).map(Some)
}

/// Key counts from a boolean key-padding mask `[batch, kv_len]` (or `[batch, 1, 1, kv_len]`)
/// whose rows are each a run of `True` followed by `False`.
fn mask_lens(
    np: &Bound<'_, PyModule>,
    mask: &Bound<'_, PyAny>,
    batch: usize,
    kv_len: usize,
) -> PyResult<Vec<u32>> {
    const SUPPORTED: &str = "knpu.attention supports mask= only as a boolean key-padding mask \
        of shape [batch, kv_len] (or [batch, 1, 1, kv_len]) whose rows are each a prefix of \
        True (True = attend), i.e. per-sequence key lengths (also accepted as kv_lens=), with \
        causal= and window= for the other masks";
    if let Ok(t) = mask.cast::<Tensor>() {
        return Err(not_supported(format!(
            "a {} mask tensor (knpu has no boolean dtype: pass the mask as a host boolean \
             array, or the key counts as kv_lens=): {SUPPORTED}",
            t.get().dtype
        )));
    }
    let arr = np.call_method1("asarray", (mask,))?;
    let dtype: String = arr.getattr("dtype")?.getattr("name")?.extract()?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    if dtype != "bool" {
        return Err(not_supported(format!("a {dtype} mask: {SUPPORTED}")));
    }
    let rows_ok = match shape.as_slice() {
        [b, l] => (*b, *l) == (batch, kv_len),
        [b, 1, 1, l] => (*b, *l) == (batch, kv_len),
        _ => false,
    };
    if !rows_ok {
        return Err(not_supported(format!(
            "a mask of shape {shape:?} for batch {batch} and {kv_len} keys: {SUPPORTED}"
        )));
    }
    let bytes: Vec<u8> = np
        .call_method1("ascontiguousarray", (arr,))?
        .call_method0("tobytes")?
        .extract()?;
    let mut lens = Vec::with_capacity(batch);
    for b in 0..batch {
        let row = &bytes[b * kv_len..(b + 1) * kv_len];
        let n = row.iter().take_while(|&&x| x != 0).count();
        if row[n..].iter().any(|&x| x != 0) {
            return Err(not_supported(format!(
                "mask row {b} is not a prefix of True (a key after a masked one is attended): \
                 {SUPPORTED}"
            )));
        }
        lens.push(n as u32);
    }
    Ok(lens)
}

/// The units of `t` from its offset on, as attention's strided views read them.
pub(crate) fn from<T: Typed>(t: &Tensor) -> PyResult<knpu::DeviceSlice<'_, T>> {
    typed::<T>(&t.storage.buf)?.slice(t.layout.offset()..).py()
}

/// The Python attention function.
pub mod py_attention {
    use super::*;

    /// `knpu.attention(q, k, v, *, causal=False, scale=None, mask=None, window=None,
    /// kv_lens=None)`.
    ///
    /// `kv_lens` gives each sequence's number of keys (keys past it are padding): a uint32
    /// `[batch]` tensor used in place (a count past `kv_len` fails the kernel, reported at the
    /// next synchronisation), or an int32 tensor or a sequence of ints, checked on the host.
    /// `mask` may be a boolean key-padding mask `[batch, kv_len]` (or `[batch, 1, 1, kv_len]`),
    /// True = attend, each row a prefix of True: it is turned into `kv_lens`. Any other mask
    /// raises `NotSupportedError`. A sequence with no key gives zeros.
    #[pyfunction]
    #[pyo3(signature = (q, k, v, *, causal=false, scale=None, mask=None, window=None, kv_lens=None))]
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        py: Python<'_>,
        q: PyRef<'_, Tensor>,
        k: PyRef<'_, Tensor>,
        v: PyRef<'_, Tensor>,
        causal: bool,
        scale: Option<f32>,
        mask: Option<&Bound<'_, PyAny>>,
        window: Option<usize>,
        kv_lens: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Tensor> {
        let mask = mask.filter(|m| !m.is_none());
        let kv_lens = kv_lens.filter(|l| !l.is_none());
        let lens = attention_lens(py, &q, &k, kv_lens, mask)?;
        super::attention(&q, &k, &v, causal, scale, window, lens.as_ref())
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
        _ => Err(wrong_dtype(
            "w",
            "a quantised type (q4_0, q4_1, q8_0, q4_k, q6_k, float8_e4m3, float8_e5m2 or int8)",
            t.dtype.name(),
        )),
    }
}

/// An f32 operand (scales, biases) as a slice.
fn f32_slice<'a>(t: &'a Tensor, name: &'static str) -> PyResult<knpu::DeviceSlice<'a, f32>> {
    match &t.storage.buf {
        Buf::F32(b) => Ok(elems!(b, t)),
        _ => Err(wrong_dtype(name, "float32", t.dtype.name())),
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
        _ => return Err(wrong_dtype("dtype", "a quantised type", dtype.name())),
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
    let format = quant_format(q.dtype)
        .ok_or_else(|| wrong_dtype("q", "a quantised type", q.dtype.name()))?;
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
    let format = quant_format(w.dtype)
        .ok_or_else(|| wrong_dtype("w", "a quantised type", w.dtype.name()))?;
    let (n, k) = dims2(&w, "w", "[n, k]")?;
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
            return Err(wrong_dtype(name, "int8", t.dtype.name()));
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
    let (vocab, dim) = dims2(&t, "table", "[vocab, dim]")?;
    let mut shape = ids.values_shape();
    shape.push(dim);
    let stream = t.stream()?;
    let mut fresh = Fresh::new(&stream, &shape, out_dtype)?;
    let data = quant_bytes(&t)?;
    let qw = ops::QWeights::new(format, &data, vocab, dim);
    let sid = match &ids.storage.buf {
        Buf::U32(b) => elems!(b, ids),
        _ => return Err(wrong_dtype("ids", "uint32", ids.dtype.name())),
    };
    float_buf!(&mut fresh.storage.buf, out_dtype, "out", z => {
        ops::qembedding(&stream, &qw, &sid, z).py()?
    });
    Ok(fresh.finish())
}

fn invalid_format(dtype: DataType) -> PyErr {
    wrong_dtype("table", "a quantised type", dtype.name())
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
