//! KNPU_BINARY_DIV of KNPU_KERNEL_BINARY (since ABI 2.1): `out = a / b` in f32 (IEEE: x / 0
//! is ±inf, 0 / 0 NaN), `b` optionally one row broadcast over `a`'s rows. The kernel crate
//! has no division, so the widened elements are divided here, one pass over memory.

use knpu_driver_abi::ops::Extent;
use knpu_kernels::llm::Element;
use knpu_kernels::Parallelism;

use super::KernelContext;
use crate::exec::Fault;

/// Runs `out = a / b` over validated extents; `row` when `b` is one row of `cols` elements.
pub(super) fn run<T: Element>(
    ctx: &KernelContext<'_>,
    a: &Extent,
    b: &Extent,
    out: &Extent,
    cols: usize,
    row: bool,
) -> Result<(), Fault> {
    let outs = [*out];
    // An input that overlaps `out` (in place included) is copied first.
    let a = ctx.input::<T>(a, &outs)?;
    let b = ctx.input::<T>(b, &outs)?;
    // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and `out` is
    // the only output.
    let o = unsafe { ctx.output::<T>(out) }?;
    let (a, b) = (a.slice(), b.slice());
    let divide = |o: &mut [T], a: &[T], b: &[T]| {
        for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
            *o = T::from_f32(a.to_f32() / b.to_f32());
        }
    };
    ctx.run(o.len(), |par| {
        let rows_of = |o: &mut [T], first: usize| {
            let a = &a[first..first + o.len()];
            if row {
                for (o, a) in o.chunks_mut(cols).zip(a.chunks(cols)) {
                    divide(o, a, b);
                }
            } else {
                divide(o, a, &b[first..first + o.len()]);
            }
        };
        match par {
            Parallelism::None => rows_of(o, 0),
            _ => {
                use rayon::prelude::*;
                // Blocks of whole rows, so a broadcast row lines up with every block.
                let block = cols * (o.len() / cols).div_ceil(par.threads().max(1)).max(1);
                o.par_chunks_mut(block)
                    .enumerate()
                    .for_each(|(i, o)| rows_of(o, i * block));
            }
        }
    });
    Ok(())
}
