//! KNPU_KERNEL_GEMM: `D = act(alpha * op(A) op(B) + beta * C + bias) + residual`, batched
//! and strided, computed by `knpu_kernels::gemm` (f32 accumulation).
//!
//! Dtypes: A and B of the same dtype (F32, F16 or BF16) with C of any of the three, and A
//! F32 with B F16 or BF16 and C F32. The capability query answers for one dtype (every one
//! of the three is an input dtype of some supported combination); the full combination is
//! checked at submit and an unsupported one is NOT_SUPPORTED.
//!
//! Every operand's extent — the bytes its shape, leading dimension and batch stride
//! address — is computed with overflow checks at submit and resolved through the memory
//! table when the kernel runs, so an address outside a live allocation is an
//! ILLEGAL_ADDRESS fault naming the operand.
//!
//! Aliasing of device ranges: an input (A, B, bias, residual) whose extent overlaps C's is
//! copied to a private buffer first, so the result is as if every input were read before C
//! was written; this makes an in-place residual (`residual == c`, `beta == 0`) work. Inputs
//! may overlap each other freely.

use half::{bf16, f16};
use knpu_driver_abi::*;
use knpu_kernels::gemm::{gemm, Activation, Element, Epilogue, GemmDesc, Residual, Transpose};
use knpu_kernels::KernelError;

use super::{read_params, KernelContext, KernelDef};
use crate::config::TimingProfile;
use crate::exec::Fault;
use crate::profile::{compute_ns, transfer_ns};

/// The registry entry.
pub const KERNEL: KernelDef = KernelDef {
    id: KNPU_KERNEL_GEMM,
    name: "gemm",
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

/// Whether the executor has a path for A, B and C of these dtypes (each already known to be
/// F32, F16 or BF16).
fn supports_combination(a: u32, b: u32, c: u32) -> bool {
    a == b || (a == KNPU_DTYPE_F32 && c == KNPU_DTYPE_F32)
}

fn activation_of(raw: u32) -> Option<Activation> {
    Some(match raw {
        KNPU_ACTIVATION_NONE => Activation::None,
        KNPU_ACTIVATION_RELU => Activation::Relu,
        KNPU_ACTIVATION_GELU_ERF => Activation::GeluErf,
        KNPU_ACTIVATION_GELU_TANH => Activation::GeluTanh,
        KNPU_ACTIVATION_SILU => Activation::Silu,
        _ => return None,
    })
}

fn transpose_of(raw: u32) -> Option<Transpose> {
    match raw {
        0 => Some(Transpose::No),
        1 => Some(Transpose::Yes),
        _ => None,
    }
}

/// A device range an operand's shape addresses: `bytes` from `addr` (`bytes == 0` for an
/// operand the kernel does not touch).
#[derive(Debug, Clone, Copy)]
struct Extent {
    addr: u64,
    elems: usize,
    bytes: u64,
}

impl Extent {
    fn overlaps(&self, other: &Extent) -> bool {
        self.bytes > 0
            && other.bytes > 0
            && self.addr < other.addr + other.bytes
            && other.addr < self.addr + self.bytes
    }
}

/// Validated parameters.
struct Params {
    dtypes: (u32, u32, u32),
    desc: GemmDesc,
    activation: Activation,
    a: Extent,
    b: Extent,
    c: Extent,
    bias: Option<Extent>,
    residual: Option<(Extent, usize, usize)>,
}

fn to_usize(v: u64) -> Result<usize, KnpuStatus> {
    usize::try_from(v).map_err(|_| KNPU_STATUS_INVALID_VALUE)
}

/// Elements a `rows x cols` matrix with leading dimension `ld`, repeated `batch` times
/// `stride` apart, addresses; INVALID_VALUE on overflow or `ld < cols`.
fn span(
    rows: usize,
    cols: usize,
    ld: usize,
    batch: usize,
    stride: usize,
) -> Result<usize, KnpuStatus> {
    if ld < cols {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    if rows == 0 || cols == 0 || batch == 0 {
        return Ok(0);
    }
    (batch - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add((rows - 1).checked_mul(ld)?))
        .and_then(|v| v.checked_add(cols))
        .ok_or(KNPU_STATUS_INVALID_VALUE)
}

/// The extent of `elems` elements of `size` bytes at `addr`: non-zero, aligned and not
/// wrapping the address space when `elems > 0`.
fn extent(addr: u64, elems: usize, size: u64) -> Result<Extent, KnpuStatus> {
    let bytes = (elems as u64)
        .checked_mul(size)
        .ok_or(KNPU_STATUS_INVALID_VALUE)?;
    if bytes > 0 && (addr == 0 || !addr.is_multiple_of(size) || addr.checked_add(bytes).is_none()) {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    Ok(Extent { addr, elems, bytes })
}

fn parse(bytes: &[u8]) -> Result<Params, KnpuStatus> {
    // SAFETY: KnpuGemmParams starts with struct_size and holds only integers and floats, so
    // every bit pattern is valid.
    let p: KnpuGemmParams =
        unsafe { read_params(bytes, field_end!(KnpuGemmParams, stride_residual)) }?;
    let size_a = elem_size(p.a_dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    let size_b = elem_size(p.b_dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    let size_c = elem_size(p.c_dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    if !supports_combination(p.a_dtype, p.b_dtype, p.c_dtype) {
        return Err(KNPU_STATUS_NOT_SUPPORTED);
    }
    let trans_a = transpose_of(p.trans_a).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    let trans_b = transpose_of(p.trans_b).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    let activation = activation_of(p.activation).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    let desc = GemmDesc {
        m: to_usize(p.m)?,
        n: to_usize(p.n)?,
        k: to_usize(p.k)?,
        alpha: p.alpha,
        beta: p.beta,
        trans_a,
        trans_b,
        lda: to_usize(p.lda)?,
        ldb: to_usize(p.ldb)?,
        ldc: to_usize(p.ldc)?,
        batch: to_usize(p.batch_count)?,
        stride_a: to_usize(p.stride_a)?,
        stride_b: to_usize(p.stride_b)?,
        stride_c: to_usize(p.stride_c)?,
    };
    let d = &desc;
    let (ar, ac) = match trans_a {
        Transpose::No => (d.m, d.k),
        Transpose::Yes => (d.k, d.m),
    };
    let (br, bc) = match trans_b {
        Transpose::No => (d.k, d.n),
        Transpose::Yes => (d.n, d.k),
    };
    // An empty output means no work: nothing is read, so no input needs an extent.
    let work = d.m > 0 && d.n > 0 && d.batch > 0;
    let live = |elems: usize| if work { elems } else { 0 };
    let a = extent(p.a, live(span(ar, ac, d.lda, d.batch, d.stride_a)?), size_a)?;
    let b = extent(p.b, live(span(br, bc, d.ldb, d.batch, d.stride_b)?), size_b)?;
    let c = extent(p.c, span(d.m, d.n, d.ldc, d.batch, d.stride_c)?, size_c)?;
    if d.batch > 1 && work && d.stride_c < (d.m - 1) * d.ldc + d.n {
        // Batches of C would overlap: the kernel writes them in parallel.
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    let bias = match p.bias {
        0 => None,
        addr => Some(extent(addr, live(d.n), 4)?),
    };
    let residual = match p.residual {
        0 => None,
        addr => {
            let ld = to_usize(p.ld_residual)?;
            let stride = to_usize(p.stride_residual)?;
            let elems = span(d.m, d.n, ld, d.batch, stride)?;
            Some((extent(addr, live(elems), size_c)?, ld, stride))
        }
    };
    Ok(Params {
        dtypes: (p.a_dtype, p.b_dtype, p.c_dtype),
        desc,
        activation,
        a,
        b,
        c,
        bias,
        residual,
    })
}

fn validate(bytes: &[u8]) -> Result<(), KnpuStatus> {
    parse(bytes).map(|_| ())
}

fn model_ns(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(p) = parse(bytes) else { return 0 };
    let flops = p.desc.flops().min(u64::MAX as f64) as u64;
    let (a, b, _) = p.dtypes;
    let peak = if a != KNPU_DTYPE_F32 && b != KNPU_DTYPE_F32 {
        t.peak_f16_mflops
    } else {
        t.peak_f32_mflops
    };
    // C is read (beta != 0) and written; inputs are read once at best.
    let c_moves = if p.desc.beta != 0.0 { 2 } else { 1 };
    let moved =
        p.a.bytes
            .saturating_add(p.b.bytes)
            .saturating_add(p.c.bytes.saturating_mul(c_moves))
            .saturating_add(p.bias.map_or(0, |e| e.bytes))
            .saturating_add(p.residual.map_or(0, |(e, _, _)| e.bytes));
    compute_ns(flops, peak).max(transfer_ns(moved, t.memory_bandwidth_mbps))
}

fn run(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    let p = parse(bytes).map_err(|s| Fault::new(s, "bad gemm parameters"))?;
    match p.dtypes {
        (KNPU_DTYPE_F32, KNPU_DTYPE_F32, KNPU_DTYPE_F32) => run_typed::<f32, f32, f32>(ctx, &p),
        (KNPU_DTYPE_F32, KNPU_DTYPE_F32, KNPU_DTYPE_F16) => run_typed::<f32, f32, f16>(ctx, &p),
        (KNPU_DTYPE_F32, KNPU_DTYPE_F32, KNPU_DTYPE_BF16) => run_typed::<f32, f32, bf16>(ctx, &p),
        (KNPU_DTYPE_F16, KNPU_DTYPE_F16, KNPU_DTYPE_F32) => run_typed::<f16, f16, f32>(ctx, &p),
        (KNPU_DTYPE_F16, KNPU_DTYPE_F16, KNPU_DTYPE_F16) => run_typed::<f16, f16, f16>(ctx, &p),
        (KNPU_DTYPE_F16, KNPU_DTYPE_F16, KNPU_DTYPE_BF16) => run_typed::<f16, f16, bf16>(ctx, &p),
        (KNPU_DTYPE_BF16, KNPU_DTYPE_BF16, KNPU_DTYPE_F32) => run_typed::<bf16, bf16, f32>(ctx, &p),
        (KNPU_DTYPE_BF16, KNPU_DTYPE_BF16, KNPU_DTYPE_F16) => run_typed::<bf16, bf16, f16>(ctx, &p),
        (KNPU_DTYPE_BF16, KNPU_DTYPE_BF16, KNPU_DTYPE_BF16) => {
            run_typed::<bf16, bf16, bf16>(ctx, &p)
        }
        (KNPU_DTYPE_F32, KNPU_DTYPE_F16, KNPU_DTYPE_F32) => run_typed::<f32, f16, f32>(ctx, &p),
        (KNPU_DTYPE_F32, KNPU_DTYPE_BF16, KNPU_DTYPE_F32) => run_typed::<f32, bf16, f32>(ctx, &p),
        (a, b, c) => Err(Fault::new(
            KNPU_STATUS_NOT_SUPPORTED,
            format!("gemm dtypes (a {a}, b {b}, c {c}) are not supported"),
        )),
    }
}

/// An input's elements: straight from device memory, or a private copy when its range
/// overlaps C's.
enum Input<T> {
    Device(*const T, usize),
    Copy(Vec<T>),
}

impl<T> Input<T> {
    fn slice(&self) -> &[T] {
        match self {
            // SAFETY: a resolved range of `len` elements inside a live allocation, aligned
            // (addresses are multiples of the element size and backings 64-byte aligned),
            // that does not overlap C (overlapping inputs became copies). Other queues may
            // write the same memory concurrently only if the submitter failed to order
            // them, as on any device.
            Input::Device(ptr, len) => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Input::Copy(v) => v,
        }
    }
}

fn input<T: Copy>(
    ctx: &KernelContext<'_>,
    name: &str,
    e: &Extent,
    c: &Extent,
) -> Result<Input<T>, Fault> {
    if e.bytes == 0 {
        return Ok(Input::Device(
            std::ptr::NonNull::<T>::dangling().as_ptr(),
            0,
        ));
    }
    let ptr = ctx.resolve(name, e.addr, e.bytes)? as *const T;
    let device = Input::Device(ptr, e.elems);
    if e.overlaps(c) {
        return Ok(Input::Copy(device.slice().to_vec()));
    }
    Ok(device)
}

fn fault_of(e: KernelError) -> Fault {
    let status = match e {
        KernelError::Unsupported { .. } => KNPU_STATUS_NOT_SUPPORTED,
        KernelError::SliceTooShort { .. }
        | KernelError::BadStride { .. }
        | KernelError::BadShape { .. } => KNPU_STATUS_INVALID_VALUE,
        _ => KNPU_STATUS_KERNEL_FAULT,
    };
    Fault::new(status, format!("gemm: {e}"))
}

fn run_typed<TA: Element, TB: Element, TC: Element>(
    ctx: &KernelContext<'_>,
    p: &Params,
) -> Result<(), Fault> {
    let d = &p.desc;
    if p.c.bytes == 0 {
        return Ok(());
    }
    let c_ptr = ctx.resolve("c", p.c.addr, p.c.bytes)? as *mut TC;
    let a = input::<TA>(ctx, "a", &p.a, &p.c)?;
    let b = input::<TB>(ctx, "b", &p.b, &p.c)?;
    let bias = p
        .bias
        .map(|e| input::<f32>(ctx, "bias", &e, &p.c))
        .transpose()?;
    let residual = p
        .residual
        .map(|(e, ld, stride)| {
            Ok::<_, Fault>((input::<TC>(ctx, "residual", &e, &p.c)?, ld, stride))
        })
        .transpose()?;
    // SAFETY: a resolved, aligned range of `p.c.elems` elements of a live allocation; no
    // input slice overlaps it (overlapping inputs were copied above).
    let c = unsafe { std::slice::from_raw_parts_mut(c_ptr, p.c.elems) };
    let epilogue = Epilogue {
        bias: bias.as_ref().map(Input::slice),
        activation: p.activation,
        residual: residual.as_ref().map(|(r, ld, stride)| Residual {
            data: r.slice(),
            ld: *ld,
            batch_stride: *stride,
        }),
    };
    let work =
        d.m.saturating_mul(d.n)
            .saturating_mul(d.k)
            .saturating_mul(d.batch);
    let (a, b) = (a.slice(), b.slice());
    ctx.run(work, |par| gemm(d, a, b, c, &epilogue, par))
        .map_err(fault_of)
}
