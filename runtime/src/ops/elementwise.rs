//! Elementwise kernels: `out = a op b` over equal-length vectors.

use super::{same_device, supported};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi as abi;

/// An elementwise operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ElementwiseOp {
    /// `out = a + b`
    Add,
    /// `out = a * b`
    Mul,
    /// `out = a - b`
    Sub,
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
    let (raw_op, alpha, needs_b) = match op {
        ElementwiseOp::Add => (abi::KNPU_ELEMENTWISE_ADD, 1.0, true),
        ElementwiseOp::Mul => (abi::KNPU_ELEMENTWISE_MUL, 1.0, true),
        ElementwiseOp::Sub => (abi::KNPU_ELEMENTWISE_SUB, 1.0, true),
        ElementwiseOp::Axpy(alpha) => (abi::KNPU_ELEMENTWISE_AXPY, alpha, true),
        ElementwiseOp::Scale(alpha) => (abi::KNPU_ELEMENTWISE_SCALE, alpha, false),
    };
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
    supported::<T>(stream, abi::KNPU_KERNEL_ELEMENTWISE, "elementwise")?;
    if a.is_empty() {
        return Ok(());
    }
    // SAFETY: KnpuElementwiseParams starts with struct_size and holds only integers.
    let mut p: abi::KnpuElementwiseParams = unsafe { abi::sized_zeroed() };
    p.op = raw_op;
    p.dtype = T::ABI;
    p.count = a.len() as u64;
    p.a = a.addr();
    p.b = b_addr;
    p.out = o.addr();
    p.alpha = alpha;
    let v = stream.launch_kernel(abi::KNPU_KERNEL_ELEMENTWISE, &p)?;
    a.note_use(stream, v);
    if let Some(b) = b {
        b.note_use(stream, v);
    }
    o.note_use(stream, v);
    Ok(())
}

/// Queues `out = a + b`.
pub fn add<T: DType>(
    stream: &Stream,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    elementwise(stream, ElementwiseOp::Add, a, Some(b), out)
}

/// Queues `out = a * b`.
pub fn mul<T: DType>(
    stream: &Stream,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    elementwise(stream, ElementwiseOp::Mul, a, Some(b), out)
}

/// Queues `out = a - b`.
pub fn sub<T: DType>(
    stream: &Stream,
    a: &impl AsDeviceSlice<T>,
    b: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    elementwise(stream, ElementwiseOp::Sub, a, Some(b), out)
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
