//! KNPU_KERNEL_ELEMENTWISE: `out = op(a, b)` over `count` contiguous F32, F16 or BF16
//! elements, computed in f32 by `knpu_kernels::elementwise`.
//!
//! Aliasing of device ranges: an operand whose address equals `out` is an in-place update
//! and reads the output as it goes (`Input::Out`). An operand that overlaps `out` at another
//! offset is copied to a temporary first, so the result is as if every input were read
//! before any output was written. Inputs may overlap each other freely.

use half::{bf16, f16};
use knpu_driver_abi::*;
use knpu_kernels::elementwise::{elementwise, Element, ElementwiseOp, Input};

use super::{read_params, KernelContext, KernelDef};
use crate::config::TimingProfile;
use crate::exec::Fault;
use crate::profile::{compute_ns, transfer_ns};

/// The registry entry.
pub const KERNEL: KernelDef = KernelDef {
    id: KNPU_KERNEL_ELEMENTWISE,
    name: "elementwise",
    supports_dtype,
    validate,
    run,
    model_ns,
};

fn supports_dtype(dtype: u32) -> bool {
    elem_size(dtype).is_some()
}

fn elem_size(dtype: u32) -> Option<u64> {
    match dtype {
        KNPU_DTYPE_F32 => Some(4),
        KNPU_DTYPE_F16 | KNPU_DTYPE_BF16 => Some(2),
        _ => None,
    }
}

fn op_of(op: u32) -> Option<ElementwiseOp> {
    Some(match op {
        KNPU_ELEMENTWISE_ADD => ElementwiseOp::Add,
        KNPU_ELEMENTWISE_MUL => ElementwiseOp::Mul,
        KNPU_ELEMENTWISE_SUB => ElementwiseOp::Sub,
        KNPU_ELEMENTWISE_AXPY => ElementwiseOp::Axpy,
        KNPU_ELEMENTWISE_SCALE => ElementwiseOp::Scale,
        _ => return None,
    })
}

/// Validated parameters.
struct Params {
    op: ElementwiseOp,
    dtype: u32,
    count: u64,
    bytes: u64,
    a: u64,
    b: Option<u64>,
    out: u64,
    alpha: f32,
}

fn parse(bytes: &[u8]) -> Result<Params, KnpuStatus> {
    // SAFETY: KnpuElementwiseParams starts with struct_size and holds only integers and a
    // float, so every bit pattern is valid.
    let p: KnpuElementwiseParams =
        unsafe { read_params(bytes, field_end!(KnpuElementwiseParams, alpha)) }?;
    let op = op_of(p.op).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    let size = elem_size(p.dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    let total = p.count.checked_mul(size).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    if usize::try_from(p.count).is_err() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    let b = op.needs_b().then_some(p.b);
    let addresses = [Some(p.a), b, Some(p.out)];
    for addr in addresses.into_iter().flatten() {
        if p.count > 0 && (addr == 0 || addr % size != 0) {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
    }
    Ok(Params {
        op,
        dtype: p.dtype,
        count: p.count,
        bytes: total,
        a: p.a,
        b,
        out: p.out,
        alpha: p.alpha,
    })
}

fn validate(bytes: &[u8]) -> Result<(), KnpuStatus> {
    parse(bytes).map(|_| ())
}

fn model_ns(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(p) = parse(bytes) else { return 0 };
    let operands = if p.b.is_some() { 3 } else { 2 };
    let flops = p.count * if p.op == ElementwiseOp::Axpy { 2 } else { 1 };
    let peak = if p.dtype == KNPU_DTYPE_F32 {
        t.peak_f32_mflops
    } else {
        t.peak_f16_mflops
    };
    transfer_ns(operands * p.bytes, t.memory_bandwidth_mbps).max(compute_ns(flops, peak))
}

fn run(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    let p = parse(bytes).map_err(|s| Fault::new(s, "bad elementwise parameters"))?;
    match p.dtype {
        KNPU_DTYPE_F32 => run_typed::<f32>(ctx, &p),
        KNPU_DTYPE_F16 => run_typed::<f16>(ctx, &p),
        KNPU_DTYPE_BF16 => run_typed::<bf16>(ctx, &p),
        other => Err(Fault::new(
            KNPU_STATUS_NOT_SUPPORTED,
            format!("dtype {other} is not supported"),
        )),
    }
}

/// An input operand: the output itself, a private copy, or a range of device memory.
enum Operand<T> {
    Out,
    Copy(Vec<T>),
    Device(*const T),
}

fn run_typed<T: Element>(ctx: &KernelContext<'_>, p: &Params) -> Result<(), Fault> {
    if p.count == 0 {
        return Ok(());
    }
    let n = p.count as usize;
    let out_ptr = ctx.resolve("out", p.out, p.bytes)? as *mut T;
    let operand = |name: &str, addr: u64| -> Result<Operand<T>, Fault> {
        let ptr = ctx.resolve(name, addr, p.bytes)? as *const T;
        if addr == p.out {
            return Ok(Operand::Out);
        }
        if addr < p.out + p.bytes && p.out < addr + p.bytes {
            // SAFETY: `ptr` is `n` elements of a live allocation, aligned (addresses were
            // checked to be multiples of the element size, backings are 64-byte aligned).
            let src = unsafe { std::slice::from_raw_parts(ptr, n) };
            return Ok(Operand::Copy(src.to_vec()));
        }
        Ok(Operand::Device(ptr))
    };
    let a = operand("a", p.a)?;
    let b = p.b.map(|addr| operand("b", addr)).transpose()?;
    // SAFETY: a resolved, aligned range of `n` elements; no input slice overlaps it.
    let out = unsafe { std::slice::from_raw_parts_mut(out_ptr, n) };
    let (a_in, b_in) = (input(&a, n), b.as_ref().map(|b| input(b, n)));
    ctx.run(n, |par| elementwise(p.op, p.alpha, a_in, b_in, out, par))
        .map_err(|e| Fault::new(KNPU_STATUS_KERNEL_FAULT, e.to_string()))
}

fn input<T>(o: &Operand<T>, n: usize) -> Input<'_, T> {
    match o {
        Operand::Out => Input::Out,
        Operand::Copy(v) => Input::Slice(v),
        // SAFETY: a resolved, aligned range of `n` elements that does not overlap `out`
        // (overlaps became Out or Copy). Commands on other queues may use the same memory
        // concurrently only if the submitter ordered them, as on any device.
        Operand::Device(ptr) => Input::Slice(unsafe { std::slice::from_raw_parts(*ptr, n) }),
    }
}
