//! KNPU_KERNEL_ELEMENTWISE (`KnpuElementwiseParams`): `out = op(a, b)` over `count`
//! contiguous F32, F16 or BF16 elements, computed in f32.

use super::{float_size, product, ElementwiseOp, Extent, Extents, OpError};
use crate::sys::*;

/// Validates an elementwise parameter struct: extents `a`, `b` when the op reads it, `out`.
pub fn validate(p: &KnpuElementwiseParams) -> Result<(ElementwiseOp, Extents), OpError> {
    let op = ElementwiseOp::try_from(p.op)?;
    let size = float_size("a", p.dtype)?;
    product("a", &[p.count, size])?;
    let mut e = Extents::default();
    e.push(Extent::new("a", p.a, p.count, size, false)?);
    if op.needs_b() {
        e.push(Extent::new("b", p.b, p.count, size, false)?);
    }
    e.push(Extent::new("out", p.out, p.count, size, true)?);
    Ok((op, e))
}
