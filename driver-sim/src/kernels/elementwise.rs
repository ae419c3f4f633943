//! The elementwise family: KNPU_KERNEL_BINARY (`out = a op b` for ADD, SUB, MUL and DIV, the
//! last in `super::divide`; `b` optionally one row broadcast over `a`'s rows) and
//! KNPU_KERNEL_ELEMENTWISE (AXPY and SCALE, the ops with a scalar), over F32, F16 or BF16 computed in f32 by
//! `knpu_kernels::elementwise` and `knpu_kernels::llm`.
//!
//! Aliasing of device ranges: an operand that is exactly the output (same address and size)
//! is an in-place update and the kernel reads the output as it goes (`Input::Out`). Any
//! other input that overlaps the output is copied first (the shared operand rule), so the
//! result is as if every input were read before any output was written.

use knpu_driver_abi::ops::llm::{decode_binary, BinaryOperands};
use knpu_driver_abi::ops::ElementwiseOp as AbiOp;
use knpu_driver_abi::ops::{elementwise as defs, BinaryOp, Broadcast, Extent, OpError};
use knpu_driver_abi::*;
use knpu_kernels::elementwise::{elementwise, Element, ElementwiseOp, Input};
use knpu_kernels::{llm, Parallelism};

use super::{fault, read, with_float, Cost, Kernel, KernelContext, Peak};
use crate::exec::Fault;

/// An input as the elementwise kernel takes it: `None` when it is the output itself (read in
/// place), else its elements by the shared operand rule.
fn in_place_input<T: Copy>(
    ctx: &KernelContext<'_>,
    e: &Extent,
    out: &Extent,
) -> Result<Option<super::Input<T>>, Fault> {
    if e.addr == out.addr && e.bytes == out.bytes {
        ctx.resolve(e.operand, e.addr, e.bytes)?;
        return Ok(None);
    }
    ctx.input(e, std::slice::from_ref(out)).map(Some)
}

fn kernel_input<T>(i: &Option<super::Input<T>>) -> Input<'_, T> {
    match i {
        None => Input::Out,
        Some(s) => Input::Slice(s.slice()),
    }
}

/// Runs `op` over `out` with in-place aware inputs `a` and `b` (`b` absent for SCALE).
fn run_elementwise<T: Element>(
    ctx: &KernelContext<'_>,
    op: ElementwiseOp,
    alpha: f32,
    a: &Extent,
    b: Option<&Extent>,
    out: &Extent,
    name: &'static str,
) -> Result<(), Fault> {
    let a = in_place_input::<T>(ctx, a, out)?;
    let b = b.map(|b| in_place_input::<T>(ctx, b, out)).transpose()?;
    // SAFETY: T matches the dtype's size; inputs that overlap `out` other than in place were
    // copied, and `out` is the only output.
    let o = unsafe { ctx.output::<T>(out) }?;
    let (a, b) = (kernel_input(&a), b.as_ref().map(kernel_input));
    ctx.run(o.len(), |par| elementwise(op, alpha, a, b, o, par))
        .map_err(fault(name))
}

// ---- ELEMENTWISE (AXPY, SCALE) ----------------------------------------------------------

/// A validated KNPU_KERNEL_ELEMENTWISE launch.
pub(crate) struct Elementwise {
    op: ElementwiseOp,
    dtype: u32,
    a: Extent,
    b: Option<Extent>,
    out: Extent,
    alpha: f32,
}

impl Kernel for Elementwise {
    const ID: u32 = KNPU_KERNEL_ELEMENTWISE;
    const NAME: &'static str = "elementwise";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuElementwiseParams = read(bytes)?;
        let (op, e) = defs::validate(&p)?;
        Ok(Elementwise {
            op: match op {
                AbiOp::Axpy => ElementwiseOp::Axpy,
                AbiOp::Scale => ElementwiseOp::Scale,
            },
            dtype: p.dtype,
            a: e.as_slice()[0],
            b: e.get("b").copied(),
            out: *e.get("out").expect("elementwise has an output"),
            alpha: p.alpha,
        })
    }

    fn cost(&self) -> Cost {
        let operands = if self.b.is_some() { 3 } else { 2 };
        let per = if self.op == ElementwiseOp::Axpy { 2 } else { 1 };
        Cost {
            bytes: operands * self.out.bytes,
            ops: self.out.elems() * per,
            peak: Peak::of_dtype(self.dtype),
        }
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.out.bytes == 0 {
            return Ok(());
        }
        let (a, b, out) = (&self.a, self.b.as_ref(), &self.out);
        with_float!(self.dtype, T => {
            run_elementwise::<T>(ctx, self.op, self.alpha, a, b, out, Self::NAME)
        })
    }
}

// ---- BINARY (ADD, SUB, MUL) -------------------------------------------------------------

/// A validated KNPU_KERNEL_BINARY launch.
pub(crate) struct Binary {
    d: BinaryOperands,
    dtype: u32,
    rows: u64,
    cols: u64,
}

impl Kernel for Binary {
    const ID: u32 = KNPU_KERNEL_BINARY;
    const NAME: &'static str = "binary";

    #[inline]
    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuBinaryParams = read(bytes)?;
        Ok(Binary {
            d: decode_binary(&p)?,
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
        })
    }

    fn cost(&self) -> Cost {
        Cost {
            bytes: self.d.a().bytes * 2 + self.d.b().bytes,
            ops: self.d.a().elems(),
            peak: Peak::of_dtype(self.dtype),
        }
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.d.a().bytes == 0 {
            return Ok(());
        }
        with_float!(self.dtype, T => self.run_typed::<T>(ctx))
    }
}

impl Binary {
    fn run_typed<T: Element + llm::Element>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let d = &self.d;
        let (a, b, out) = (d.a(), d.b(), d.out());
        let op = match d.op {
            BinaryOp::Add => ElementwiseOp::Add,
            BinaryOp::Mul => ElementwiseOp::Mul,
            BinaryOp::Sub => ElementwiseOp::Sub,
            BinaryOp::Div => {
                let row = d.broadcast == Broadcast::Row;
                return super::divide::run::<T>(ctx, &a, &b, &out, self.cols as usize, row);
            }
        };
        if d.same_shape() {
            return run_elementwise::<T>(ctx, op, 1.0, &a, Some(&b), &out, Self::NAME);
        }
        // One row of `b` over every row of `a`.
        let outs = [out];
        let a = ctx.input::<T>(&a, &outs)?;
        let b = ctx.input::<T>(&b, &outs)?;
        // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and `out`
        // is the only output.
        let out = unsafe { ctx.output::<T>(&outs[0]) }?;
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        let (a, b) = (a.slice(), b.slice());
        let bc = llm::Broadcast::Row;
        ctx.run(out.len(), |par| match d.op {
            BinaryOp::Add => llm::add(a, b, out, rows, cols, bc, par),
            BinaryOp::Mul => llm::mul(a, b, out, rows, cols, bc, par),
            // SUB (DIV returned above).
            _ => out
                .chunks_mut(cols)
                .zip(a.chunks(cols))
                .try_for_each(|(o, a)| {
                    let (a, b) = (Input::Slice(a), Some(Input::Slice(b)));
                    elementwise(op, 1.0, a, b, o, Parallelism::None)
                }),
        })
        .map_err(fault(Self::NAME))
    }
}
