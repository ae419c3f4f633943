//! Elementwise ops over equal-length vectors: `add`, `sub`, `mul` and `div` run as the binary kernel
//! (KNPU_KERNEL_BINARY with one row), `axpy` and `scale` as KNPU_KERNEL_ELEMENTWISE.

use super::{same_device, supported};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::{BinaryOp, Broadcast, ElementwiseOp as AbiOp};
use knpu_driver_abi::{self as abi, SizedStruct};

/// An elementwise operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ElementwiseOp {
    /// `out = a + b`
    Add,
    /// `out = a * b`
    Mul,
    /// `out = a - b`
    Sub,
    /// `out = a / b` (IEEE: `x / 0` is ±inf; needs a driver of ABI 2.1)
    Div,
    /// `out = alpha * a + b`
    Axpy(f32),
    /// `out = alpha * a`
    Scale(f32),
}

/// Queues `out = op(a, b)` on `stream`; `b` is ignored (may be `None`) for `Scale`.
pub fn elementwise<T: DType>(
    stream: &Stream,
    op: ElementwiseOp,
    a: &impl AsDeviceSlice<T>,
    b: Option<&dyn AsDeviceSlice<T>>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let a = a.as_device_slice();
    let b = b.map(|b| b.as_device_slice());
    let o = out.as_device_slice_mut();
    same_device(stream, "a", &a)?;
    same_device(stream, "out", &o)?;
    // The plain binary ops are the binary kernel's; the scaled ones the elementwise kernel's.
    let (binary, scaled, alpha) = match op {
        ElementwiseOp::Add => (Some(BinaryOp::Add), AbiOp::Axpy, 1.0),
        ElementwiseOp::Mul => (Some(BinaryOp::Mul), AbiOp::Axpy, 1.0),
        ElementwiseOp::Sub => (Some(BinaryOp::Sub), AbiOp::Axpy, 1.0),
        ElementwiseOp::Div => (Some(BinaryOp::Div), AbiOp::Axpy, 1.0),
        ElementwiseOp::Axpy(alpha) => (None, AbiOp::Axpy, alpha),
        ElementwiseOp::Scale(alpha) => (None, AbiOp::Scale, alpha),
    };
    let needs_b = binary.is_some() || scaled.needs_b();
    let shape = |n: usize| format!("[{n}]");
    if o.len() != a.len() {
        return Err(Error::Shape {
            operand: "out",
            expected: shape(a.len()),
            actual: shape(o.len()),
        });
    }
    let b_addr = match (needs_b, b) {
        (true, None) => return Err(Error::invalid(format!("{op:?} needs operand `b`"))),
        (true, Some(b)) => {
            same_device(stream, "b", &b)?;
            if b.len() != a.len() {
                return Err(Error::Shape {
                    operand: "b",
                    expected: shape(a.len()),
                    actual: shape(b.len()),
                });
            }
            b.addr()
        }
        (false, _) => 0,
    };
    let kernel = match binary {
        Some(_) => abi::KNPU_KERNEL_BINARY,
        None => abi::KNPU_KERNEL_ELEMENTWISE,
    };
    if let Some(op) = binary {
        super::sample::require_minor(stream, op.since_minor(), op.name())?;
    }
    supported::<T>(stream, kernel, "elementwise")?;
    if a.is_empty() {
        return Ok(());
    }
    let v = match binary {
        Some(op) => {
            let mut p = abi::KnpuBinaryParams::sized();
            p.op = op.raw();
            p.dtype = T::ABI;
            p.broadcast = Broadcast::None.raw();
            p.rows = 1;
            p.cols = a.len() as u64;
            p.a = a.addr();
            p.b = b_addr;
            p.out = o.addr();
            stream.launch_kernel(kernel, &p)?
        }
        None => {
            let mut p = abi::KnpuElementwiseParams::sized();
            p.op = scaled.raw();
            p.dtype = T::ABI;
            p.count = a.len() as u64;
            p.a = a.addr();
            p.b = b_addr;
            p.out = o.addr();
            p.alpha = alpha;
            stream.launch_kernel(kernel, &p)?
        }
    };
    a.note_use(stream, v);
    if let Some(b) = b {
        b.note_use(stream, v);
    }
    o.note_use(stream, v);
    Ok(())
}

/// Defines launchers of the ops that combine two operands with no scalar: each queues
/// `out = a op b` through [`elementwise`].
macro_rules! two_operand_launchers {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)+) => {$(
        $(#[$doc])*
        pub fn $name<T: DType>(
            stream: &Stream,
            a: &impl AsDeviceSlice<T>,
            b: &impl AsDeviceSlice<T>,
            out: &mut impl AsDeviceSliceMut<T>,
        ) -> Result<()> {
            elementwise(stream, ElementwiseOp::$op, a, Some(b), out)
        }
    )+};
}

two_operand_launchers! {
    /// Queues `out = a + b`.
    add => Add;
    /// Queues `out = a * b`.
    mul => Mul;
    /// Queues `out = a - b`.
    sub => Sub;
    /// Queues `out = a / b` (IEEE division in f32; needs a driver of ABI 2.1).
    div => Div;
}

/// Queues `out = alpha * a + b`.
pub fn axpy<T: DType>(
    stream: &Stream,
    alpha: f32,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    elementwise(stream, ElementwiseOp::Axpy(alpha), a, Some(b), out)
}

/// Queues `out = alpha * a`.
pub fn scale<T: DType>(
    stream: &Stream,
    alpha: f32,
    a: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    elementwise(stream, ElementwiseOp::Scale(alpha), a, None, out)
}
