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

/// The GEMM epilogue activation named `name`.
fn activation(name: Option<&str>) -> PyResult<ops::Activation> {
    Ok(match name {
        None | Some("none") => ops::Activation::None,
        Some("relu") => ops::Activation::Relu,
        Some("gelu") | Some("gelu_erf") => ops::Activation::GeluErf,
        Some("gelu_tanh") => ops::Activation::GeluTanh,
        Some("silu") => ops::Activation::Silu,
        Some(other) => {
            return Err(crate::errors::invalid(format!(
                "unknown activation {other:?}: expected None, \"relu\", \"gelu\", \
                 \"gelu_tanh\" or \"silu\""
            )))
        }
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
        Arith::Div => {
            return Err(not_supported(
                "dividing a tensor by a tensor (the device has no division kernel; dividing \
                 by a number works)",
            ))
        }
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
            return Err(not_supported(
                "dividing a number by a tensor (the device has no division kernel)",
            ))
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
