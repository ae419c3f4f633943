//! The LLM ops (kernel ids 0x400-0x4FF): normalisation, rotary embedding, activations,
//! softmax, add/mul with broadcast, embedding lookup, casts, argmax and top-k, computed by
//! `knpu_kernels::llm` in f32 over F32, F16 or BF16 storage.
//!
//! Each op is a parameter type implementing [`Op`]: `parse` checks the struct (sizes, dtypes,
//! shapes, overflow, address alignment) at submit, `run` resolves every operand through the
//! memory table and calls the kernel. An input that overlaps an output is copied first, so
//! the result is as if every input were read before any output was written; outputs of one
//! kernel may not overlap each other. A kernel error (an embedding id past the vocabulary)
//! is a KERNEL_FAULT carrying the kernel's message.

use half::{bf16, f16};
use knpu_driver_abi::*;
use knpu_kernels::llm::{self, Broadcast, GeluApprox, RopeParams, RopePositions, RopeStyle};
use knpu_kernels::KernelError;

use super::{read_params, KernelContext, KernelDef};
use crate::config::TimingProfile;
use crate::exec::Fault;
use crate::profile::{compute_ns, transfer_ns};

/// A parsed, validated parameter struct of one op.
trait Op: Sized {
    /// Validates the parameter bytes.
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus>;
    /// Bytes the op moves, floating-point operations it does, and its compute dtype.
    fn cost(&self) -> (u64, u64, u32);
    /// Runs the op.
    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault>;
}

const fn def<O: Op>(id: u32, name: &'static str) -> KernelDef {
    KernelDef {
        id,
        name,
        supports_dtype,
        validate: validate::<O>,
        run: run::<O>,
        model_ns: model_ns::<O>,
    }
}

/// The registry entries.
pub const RMS_NORM: KernelDef = def::<RmsNorm>(KNPU_KERNEL_RMS_NORM, "rms_norm");
/// See [`RMS_NORM`].
pub const LAYER_NORM: KernelDef = def::<LayerNorm>(KNPU_KERNEL_LAYER_NORM, "layer_norm");
/// See [`RMS_NORM`].
pub const ROPE: KernelDef = def::<Rope>(KNPU_KERNEL_ROPE, "rope");
/// See [`RMS_NORM`].
pub const ACTIVATION: KernelDef = def::<Activation>(KNPU_KERNEL_ACTIVATION, "activation");
/// See [`RMS_NORM`].
pub const SWIGLU: KernelDef = def::<Swiglu>(KNPU_KERNEL_SWIGLU, "swiglu");
/// See [`RMS_NORM`].
pub const SOFTMAX: KernelDef = def::<Softmax>(KNPU_KERNEL_SOFTMAX, "softmax");
/// See [`RMS_NORM`].
pub const BINARY: KernelDef = def::<Binary>(KNPU_KERNEL_BINARY, "binary");
/// See [`RMS_NORM`].
pub const EMBEDDING: KernelDef = def::<Embedding>(KNPU_KERNEL_EMBEDDING, "embedding");
/// See [`RMS_NORM`].
pub const CAST: KernelDef = def::<Cast>(KNPU_KERNEL_CAST, "cast");
/// See [`RMS_NORM`].
pub const ARGMAX: KernelDef = def::<Argmax>(KNPU_KERNEL_ARGMAX, "argmax");
/// See [`RMS_NORM`].
pub const TOP_K: KernelDef = def::<TopK>(KNPU_KERNEL_TOP_K, "top_k");

fn supports_dtype(dtype: u32) -> bool {
    elem_size(dtype).is_some()
}

fn validate<O: Op>(bytes: &[u8]) -> Result<(), KnpuStatus> {
    O::parse(bytes).map(|_| ())
}

fn run<O: Op>(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    O::parse(bytes)
        .map_err(|s| Fault::new(s, "bad parameters"))?
        .run(ctx)
}

fn model_ns<O: Op>(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(op) = O::parse(bytes) else { return 0 };
    let (moved, flops, dtype) = op.cost();
    let peak = if dtype == KNPU_DTYPE_F32 {
        t.peak_f32_mflops
    } else {
        t.peak_f16_mflops
    };
    transfer_ns(moved, t.memory_bandwidth_mbps).max(compute_ns(flops, peak))
}

fn elem_size(dtype: u32) -> Option<u64> {
    match dtype {
        KNPU_DTYPE_F32 => Some(4),
        KNPU_DTYPE_F16 | KNPU_DTYPE_BF16 => Some(2),
        _ => None,
    }
}

/// The element size of a storage dtype, NOT_SUPPORTED for any other.
fn float_size(dtype: u32) -> Result<u64, KnpuStatus> {
    elem_size(dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)
}

/// `a * b`, INVALID_VALUE if it overflows or does not fit `usize`.
fn product(a: u64, b: u64) -> Result<u64, KnpuStatus> {
    let n = a.checked_mul(b).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    usize::try_from(n).map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
    Ok(n)
}

/// One device operand: `elems` elements of `size` bytes at `addr`.
#[derive(Clone, Copy)]
struct Operand {
    name: &'static str,
    addr: u64,
    elems: u64,
    size: u64,
}

impl Operand {
    /// Checks the operand's byte extent and address: nonzero and aligned when it holds
    /// elements.
    fn new(name: &'static str, addr: u64, elems: u64, size: u64) -> Result<Operand, KnpuStatus> {
        product(elems, size)?;
        if elems > 0 && (addr == 0 || !addr.is_multiple_of(size)) {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        Ok(Operand {
            name,
            addr,
            elems,
            size,
        })
    }

    fn bytes(&self) -> u64 {
        self.elems * self.size
    }

    /// Whether the byte ranges of `self` and `other` intersect (both already resolved, so
    /// neither end overflows).
    fn overlaps(&self, other: &Operand) -> bool {
        self.bytes() > 0
            && other.bytes() > 0
            && self.addr < other.addr + other.bytes()
            && other.addr < self.addr + self.bytes()
    }
}

/// Rejects outputs of one kernel that overlap each other.
fn disjoint_outputs(outputs: &[Operand]) -> Result<(), KnpuStatus> {
    for (i, a) in outputs.iter().enumerate() {
        for b in &outputs[i + 1..] {
            let (a_end, b_end) = (
                a.addr.saturating_add(a.bytes()),
                b.addr.saturating_add(b.bytes()),
            );
            if a.bytes() > 0 && b.bytes() > 0 && a.addr < b_end && b.addr < a_end {
                return Err(KNPU_STATUS_INVALID_VALUE);
            }
        }
    }
    Ok(())
}

/// An input's elements: in device memory, or copied because an output overlaps them.
enum Src<T> {
    Device(*const T, usize),
    Copy(Vec<T>),
}

impl<T> Src<T> {
    fn slice(&self) -> &[T] {
        match self {
            // SAFETY: a resolved range of `n` elements of a live allocation, aligned (the
            // address is a multiple of the element size, backings are 64-byte aligned), that
            // no output of this kernel overlaps (those became `Copy`). Commands on other
            // queues use the same memory concurrently only if the submitter ordered them so.
            Src::Device(ptr, n) => unsafe { std::slice::from_raw_parts(*ptr, *n) },
            Src::Copy(v) => v,
        }
    }
}

/// Resolves input `op` as elements of `T` (of `op.size` bytes), copying it when it overlaps
/// one of `outputs`.
fn input<T: Copy>(
    ctx: &KernelContext<'_>,
    op: Operand,
    outputs: &[Operand],
) -> Result<Src<T>, Fault> {
    debug_assert_eq!(std::mem::size_of::<T>() as u64, op.size);
    let n = op.elems as usize;
    if n == 0 {
        return Ok(Src::Copy(Vec::new()));
    }
    let ptr = ctx.resolve(op.name, op.addr, op.bytes())? as *const T;
    for out in outputs {
        ctx.resolve(out.name, out.addr, out.bytes())?;
    }
    if outputs.iter().any(|o| o.overlaps(&op)) {
        // SAFETY: as in `Src::slice`; the slice lives only for this copy, before any output
        // is written.
        let src = unsafe { std::slice::from_raw_parts(ptr, n) };
        return Ok(Src::Copy(src.to_vec()));
    }
    Ok(Src::Device(ptr, n))
}

/// Resolves output `op` as a mutable slice of `T`.
///
/// # Safety
/// - No other slice of the caller may cover the range while the result lives: inputs that
///   overlap it were read through [`input`] with `op` among its outputs, and outputs of one
///   kernel were checked disjoint at parse.
// The slice points into device memory, not into `ctx`; exclusivity is the caller's obligation.
#[allow(clippy::mut_from_ref)]
unsafe fn output<'a, T: Copy>(
    ctx: &'a KernelContext<'_>,
    op: Operand,
) -> Result<&'a mut [T], Fault> {
    debug_assert_eq!(std::mem::size_of::<T>() as u64, op.size);
    let n = op.elems as usize;
    if n == 0 {
        return Ok(&mut []);
    }
    let ptr = ctx.resolve(op.name, op.addr, op.bytes())? as *mut T;
    // SAFETY: a resolved, aligned range of `n` elements of a live allocation; exclusive by
    // the caller's guarantee.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
}

/// A kernel error as a KERNEL_FAULT naming the op.
fn fault(op: &'static str) -> impl Fn(KernelError) -> Fault {
    move |e| Fault::new(KNPU_STATUS_KERNEL_FAULT, format!("{op}: {e}"))
}

/// Runs `$body` with `$T` the storage type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            KNPU_DTYPE_F32 => {
                type $T = f32;
                $body
            }
            KNPU_DTYPE_F16 => {
                type $T = f16;
                $body
            }
            KNPU_DTYPE_BF16 => {
                type $T = bf16;
                $body
            }
            other => Err(Fault::new(
                KNPU_STATUS_NOT_SUPPORTED,
                format!("dtype {other} is not supported"),
            )),
        }
    };
}

// ---- RMS_NORM ---------------------------------------------------------------------------

struct RmsNorm {
    dtype: u32,
    rows: u64,
    cols: u64,
    x: Operand,
    weight: Operand,
    out: Operand,
    eps: f32,
}

impl Op for RmsNorm {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuRmsNormParams starts with struct_size and holds only integers and a
        // float, so every bit pattern is valid.
        let p: KnpuRmsNormParams =
            unsafe { read_params(bytes, field_end!(KnpuRmsNormParams, eps)) }?;
        let size = float_size(p.dtype)?;
        let n = product(p.rows, p.cols)?;
        if !(p.eps.is_finite() && p.eps >= 0.0) {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        Ok(RmsNorm {
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
            x: Operand::new("x", p.x, n, size)?,
            weight: Operand::new("weight", p.weight, if n > 0 { p.cols } else { 0 }, size)?,
            out: Operand::new("out", p.out, n, size)?,
            eps: p.eps,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        let moved = self.x.bytes() * 2 + self.weight.bytes();
        (moved, self.x.elems * 4, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.elems == 0 {
            return Ok(());
        }
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &[self.out])?;
            let x = x.slice();
            let w = input::<T>(ctx, self.weight, &[self.out])?;
            let w = w.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            let (rows, cols) = (self.rows as usize, self.cols as usize);
            ctx.run(self.x.elems as usize, |par| {
                llm::rms_norm(x, w, out, rows, cols, self.eps, par)
            })
            .map_err(fault("rms_norm"))
        })
    }
}

// ---- LAYER_NORM -------------------------------------------------------------------------

struct LayerNorm {
    dtype: u32,
    rows: u64,
    cols: u64,
    x: Operand,
    weight: Operand,
    bias: Option<Operand>,
    out: Operand,
    eps: f32,
}

impl Op for LayerNorm {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuLayerNormParams starts with struct_size and holds only integers and a
        // float, so every bit pattern is valid.
        let p: KnpuLayerNormParams =
            unsafe { read_params(bytes, field_end!(KnpuLayerNormParams, eps)) }?;
        let size = float_size(p.dtype)?;
        let n = product(p.rows, p.cols)?;
        if !(p.eps.is_finite() && p.eps >= 0.0) {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let row = if n > 0 { p.cols } else { 0 };
        let bias = (p.bias != 0)
            .then(|| Operand::new("bias", p.bias, row, size))
            .transpose()?;
        Ok(LayerNorm {
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
            x: Operand::new("x", p.x, n, size)?,
            weight: Operand::new("weight", p.weight, row, size)?,
            bias,
            out: Operand::new("out", p.out, n, size)?,
            eps: p.eps,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        let moved = self.x.bytes() * 2 + self.weight.bytes() * 2;
        (moved, self.x.elems * 7, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.elems == 0 {
            return Ok(());
        }
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &[self.out])?;
            let x = x.slice();
            let w = input::<T>(ctx, self.weight, &[self.out])?;
            let w = w.slice();
            let b = self.bias.map(|b| input::<T>(ctx, b, &[self.out])).transpose()?;
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            let (rows, cols) = (self.rows as usize, self.cols as usize);
            let bias = b.as_ref().map(|b| b.slice());
            ctx.run(self.x.elems as usize, |par| {
                llm::layer_norm(x, llm::NormWeights { weight: w, bias }, out, rows, cols, self.eps, par)
            })
            .map_err(fault("layer_norm"))
        })
    }
}

// ---- ROPE -------------------------------------------------------------------------------

struct Rope {
    dtype: u32,
    rows: u64,
    heads: u64,
    head_dim: u64,
    params: RopeParams,
    x: Operand,
    out: Operand,
    positions: Option<Operand>,
    start: u64,
}

impl Op for Rope {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuRopeParams starts with struct_size and holds only integers and a float,
        // so every bit pattern is valid.
        let p: KnpuRopeParams = unsafe { read_params(bytes, field_end!(KnpuRopeParams, base)) }?;
        let size = float_size(p.dtype)?;
        let style = match p.style {
            KNPU_ROPE_INTERLEAVED => RopeStyle::Interleaved,
            KNPU_ROPE_NEOX => RopeStyle::NeoX,
            _ => return Err(KNPU_STATUS_INVALID_VALUE),
        };
        let n = product(product(p.rows, p.heads)?, p.head_dim)?;
        if !p.rotary_dim.is_multiple_of(2)
            || p.rotary_dim > p.head_dim
            || !(p.base.is_finite() && p.base > 0.0)
        {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let positions = (p.positions != 0)
            .then(|| Operand::new("positions", p.positions, p.rows, 4))
            .transpose()?;
        if positions.is_none() && p.start_position.checked_add(p.rows).is_none() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        Ok(Rope {
            dtype: p.dtype,
            rows: p.rows,
            heads: p.heads,
            head_dim: p.head_dim,
            params: RopeParams {
                style,
                rotary_dim: p.rotary_dim as usize,
                base: p.base,
            },
            x: Operand::new("x", p.x, n, size)?,
            out: Operand::new("out", p.out, n, size)?,
            positions,
            start: p.start_position,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        (self.x.bytes() * 2, self.x.elems * 3, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.elems == 0 {
            return Ok(());
        }
        let pos = self
            .positions
            .map(|p| input::<u32>(ctx, p, &[self.out]))
            .transpose()?;
        let positions = match &pos {
            Some(p) => RopePositions::PerRow(p.slice()),
            None => RopePositions::Start(self.start),
        };
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &[self.out])?;
            let x = x.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            let (rows, heads, dim) = (self.rows as usize, self.heads as usize, self.head_dim as usize);
            ctx.run(self.x.elems as usize, |par| {
                llm::rope(x, out, llm::RopeShape { rows, heads, head_dim: dim }, &self.params, positions, par)
            })
            .map_err(fault("rope"))
        })
    }
}

// ---- ACTIVATION, SWIGLU -----------------------------------------------------------------

#[derive(Clone, Copy)]
enum Act {
    Silu,
    Gelu(GeluApprox),
}

struct Activation {
    dtype: u32,
    act: Act,
    x: Operand,
    out: Operand,
}

impl Op for Activation {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuActivationParams starts with struct_size and holds only integers, so
        // every bit pattern is valid.
        let p: KnpuActivationParams =
            unsafe { read_params(bytes, field_end!(KnpuActivationParams, out)) }?;
        let size = float_size(p.dtype)?;
        let act = match p.activation {
            KNPU_ACTIVATION_SILU => Act::Silu,
            KNPU_ACTIVATION_GELU_ERF => Act::Gelu(GeluApprox::Erf),
            KNPU_ACTIVATION_GELU_TANH => Act::Gelu(GeluApprox::Tanh),
            _ => return Err(KNPU_STATUS_INVALID_VALUE),
        };
        Ok(Activation {
            dtype: p.dtype,
            act,
            x: Operand::new("x", p.x, p.len, size)?,
            out: Operand::new("out", p.out, p.len, size)?,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        (self.x.bytes() * 2, self.x.elems * 20, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.elems == 0 {
            return Ok(());
        }
        let len = self.x.elems as usize;
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &[self.out])?;
            let x = x.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            ctx.run(len, |par| match self.act {
                Act::Silu => llm::silu(x, out, len, par),
                Act::Gelu(approx) => llm::gelu(x, out, len, approx, par),
            })
            .map_err(fault("activation"))
        })
    }
}

struct Swiglu {
    dtype: u32,
    gate: Operand,
    up: Operand,
    out: Operand,
}

impl Op for Swiglu {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuSwigluParams starts with struct_size and holds only integers, so every
        // bit pattern is valid.
        let p: KnpuSwigluParams = unsafe { read_params(bytes, field_end!(KnpuSwigluParams, out)) }?;
        let size = float_size(p.dtype)?;
        Ok(Swiglu {
            dtype: p.dtype,
            gate: Operand::new("gate", p.gate, p.len, size)?,
            up: Operand::new("up", p.up, p.len, size)?,
            out: Operand::new("out", p.out, p.len, size)?,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        (self.gate.bytes() * 3, self.gate.elems * 12, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.gate.elems == 0 {
            return Ok(());
        }
        let len = self.gate.elems as usize;
        with_dtype!(self.dtype, T => {
            let gate = input::<T>(ctx, self.gate, &[self.out])?;
            let gate = gate.slice();
            let up = input::<T>(ctx, self.up, &[self.out])?;
            let up = up.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            ctx.run(len, |par| llm::swiglu(gate, up, out, len, par))
                .map_err(fault("swiglu"))
        })
    }
}

// ---- SOFTMAX ----------------------------------------------------------------------------

struct Softmax {
    dtype: u32,
    rows: u64,
    cols: u64,
    x: Operand,
    out: Operand,
    scale: f32,
}

impl Op for Softmax {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuSoftmaxParams starts with struct_size and holds only integers and a
        // float, so every bit pattern is valid.
        let p: KnpuSoftmaxParams =
            unsafe { read_params(bytes, field_end!(KnpuSoftmaxParams, scale)) }?;
        let size = float_size(p.dtype)?;
        let n = product(p.rows, p.cols)?;
        if !p.scale.is_finite() {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        Ok(Softmax {
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
            x: Operand::new("x", p.x, n, size)?,
            out: Operand::new("out", p.out, n, size)?,
            scale: p.scale,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        (self.x.bytes() * 2, self.x.elems * 12, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.elems == 0 {
            return Ok(());
        }
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &[self.out])?;
            let x = x.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            let (rows, cols) = (self.rows as usize, self.cols as usize);
            ctx.run(self.x.elems as usize, |par| {
                llm::softmax(x, out, rows, cols, self.scale, par)
            })
            .map_err(fault("softmax"))
        })
    }
}

// ---- BINARY -----------------------------------------------------------------------------

struct Binary {
    add: bool,
    dtype: u32,
    bcast: Broadcast,
    rows: u64,
    cols: u64,
    a: Operand,
    b: Operand,
    out: Operand,
}

impl Op for Binary {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuBinaryParams starts with struct_size and holds only integers, so every
        // bit pattern is valid.
        let p: KnpuBinaryParams = unsafe { read_params(bytes, field_end!(KnpuBinaryParams, out)) }?;
        let size = float_size(p.dtype)?;
        let add = match p.op {
            KNPU_BINARY_ADD => true,
            KNPU_BINARY_MUL => false,
            _ => return Err(KNPU_STATUS_INVALID_VALUE),
        };
        let n = product(p.rows, p.cols)?;
        let (bcast, b_elems) = match p.broadcast {
            KNPU_BROADCAST_NONE => (Broadcast::None, n),
            KNPU_BROADCAST_ROW => (Broadcast::Row, if n > 0 { p.cols } else { 0 }),
            _ => return Err(KNPU_STATUS_INVALID_VALUE),
        };
        Ok(Binary {
            add,
            dtype: p.dtype,
            bcast,
            rows: p.rows,
            cols: p.cols,
            a: Operand::new("a", p.a, n, size)?,
            b: Operand::new("b", p.b, b_elems, size)?,
            out: Operand::new("out", p.out, n, size)?,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        let moved = self.a.bytes() * 2 + self.b.bytes();
        (moved, self.a.elems, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.a.elems == 0 {
            return Ok(());
        }
        with_dtype!(self.dtype, T => {
            let a = input::<T>(ctx, self.a, &[self.out])?;
            let a = a.slice();
            let b = input::<T>(ctx, self.b, &[self.out])?;
            let b = b.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<T>(ctx, self.out) }?;
            let (rows, cols) = (self.rows as usize, self.cols as usize);
            ctx.run(self.a.elems as usize, |par| {
                if self.add {
                    llm::add(a, b, out, rows, cols, self.bcast, par)
                } else {
                    llm::mul(a, b, out, rows, cols, self.bcast, par)
                }
            })
            .map_err(fault("binary"))
        })
    }
}

// ---- EMBEDDING --------------------------------------------------------------------------

struct Embedding {
    table_dtype: u32,
    out_dtype: u32,
    vocab: u64,
    dim: u64,
    tokens: u64,
    table: Operand,
    ids: Operand,
    out: Operand,
}

impl Op for Embedding {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuEmbeddingParams starts with struct_size and holds only integers, so
        // every bit pattern is valid.
        let p: KnpuEmbeddingParams =
            unsafe { read_params(bytes, field_end!(KnpuEmbeddingParams, out)) }?;
        let table_size = float_size(p.table_dtype)?;
        let out_size = float_size(p.out_dtype)?;
        let n = product(p.tokens, p.dim)?;
        let table_elems = if n > 0 { product(p.vocab, p.dim)? } else { 0 };
        Ok(Embedding {
            table_dtype: p.table_dtype,
            out_dtype: p.out_dtype,
            vocab: p.vocab,
            dim: p.dim,
            tokens: p.tokens,
            table: Operand::new("table", p.table, table_elems, table_size)?,
            ids: Operand::new("ids", p.ids, if n > 0 { p.tokens } else { 0 }, 4)?,
            out: Operand::new("out", p.out, n, out_size)?,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        let read = self.out.elems * self.table.size;
        (
            read + self.out.bytes() + self.ids.bytes(),
            0,
            self.out_dtype,
        )
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.out.elems == 0 {
            return Ok(());
        }
        let ids = input::<u32>(ctx, self.ids, &[self.out])?;
        let ids = ids.slice();
        let (vocab, dim, tokens) = (self.vocab as usize, self.dim as usize, self.tokens as usize);
        with_dtype!(self.table_dtype, T => {
            let table = input::<T>(ctx, self.table, &[self.out])?;
            let table = table.slice();
            with_dtype!(self.out_dtype, O => {
                // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
                let out = unsafe { output::<O>(ctx, self.out) }?;
                ctx.run(self.out.elems as usize, |par| {
                    llm::embedding(table, vocab, dim, ids, tokens, out, par)
                })
                .map_err(fault("embedding"))
            })
        })
    }
}

// ---- CAST -------------------------------------------------------------------------------

struct Cast {
    src_dtype: u32,
    dst_dtype: u32,
    src: Operand,
    dst: Operand,
}

impl Op for Cast {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuCastParams starts with struct_size and holds only integers, so every
        // bit pattern is valid.
        let p: KnpuCastParams = unsafe { read_params(bytes, field_end!(KnpuCastParams, dst)) }?;
        let src_size = float_size(p.src_dtype)?;
        let dst_size = float_size(p.dst_dtype)?;
        Ok(Cast {
            src_dtype: p.src_dtype,
            dst_dtype: p.dst_dtype,
            src: Operand::new("src", p.src, p.len, src_size)?,
            dst: Operand::new("dst", p.dst, p.len, dst_size)?,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        (self.src.bytes() + self.dst.bytes(), 0, self.dst_dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.src.elems == 0 {
            return Ok(());
        }
        let len = self.src.elems as usize;
        with_dtype!(self.src_dtype, S => {
            let src = input::<S>(ctx, self.src, &[self.dst])?;
            let src = src.slice();
            with_dtype!(self.dst_dtype, D => {
                // SAFETY: inputs overlapping `dst` were copied; `dst` is the only output.
                let dst = unsafe { output::<D>(ctx, self.dst) }?;
                ctx.run(len, |par| llm::cast(src, dst, len, par))
                    .map_err(fault("cast"))
            })
        })
    }
}

// ---- ARGMAX, TOP_K ----------------------------------------------------------------------

/// Checks a `[rows, cols]` input reduced along rows: cols at least 1 when there are rows,
/// and every index fits a u32.
fn check_reduced(rows: u64, cols: u64) -> Result<u64, KnpuStatus> {
    if (rows > 0 && cols == 0) || cols > u64::from(u32::MAX) {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    product(rows, cols)
}

struct Argmax {
    dtype: u32,
    rows: u64,
    cols: u64,
    x: Operand,
    out: Operand,
}

impl Op for Argmax {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuArgmaxParams starts with struct_size and holds only integers, so every
        // bit pattern is valid.
        let p: KnpuArgmaxParams = unsafe { read_params(bytes, field_end!(KnpuArgmaxParams, out)) }?;
        let size = float_size(p.dtype)?;
        let n = check_reduced(p.rows, p.cols)?;
        Ok(Argmax {
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
            x: Operand::new("x", p.x, n, size)?,
            out: Operand::new("out", p.out, p.rows, 4)?,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        (self.x.bytes() + self.out.bytes(), self.x.elems, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.elems == 0 {
            return Ok(());
        }
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &[self.out])?;
            let x = x.slice();
            // SAFETY: inputs overlapping `out` were copied; `out` is the only output.
            let out = unsafe { output::<u32>(ctx, self.out) }?;
            let (rows, cols) = (self.rows as usize, self.cols as usize);
            ctx.run(self.x.elems as usize, |par| llm::argmax(x, out, rows, cols, par))
                .map_err(fault("argmax"))
        })
    }
}

struct TopK {
    dtype: u32,
    rows: u64,
    cols: u64,
    k: u64,
    x: Operand,
    values: Operand,
    indices: Operand,
}

impl Op for TopK {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuTopKParams starts with struct_size and holds only integers, so every bit
        // pattern is valid.
        let p: KnpuTopKParams = unsafe { read_params(bytes, field_end!(KnpuTopKParams, indices)) }?;
        let size = float_size(p.dtype)?;
        let n = check_reduced(p.rows, p.cols)?;
        if p.k > p.cols {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let nk = product(p.rows, p.k)?;
        let values = Operand::new("values", p.values, nk, size)?;
        let indices = Operand::new("indices", p.indices, nk, 4)?;
        disjoint_outputs(&[values, indices])?;
        Ok(TopK {
            dtype: p.dtype,
            rows: p.rows,
            cols: p.cols,
            k: p.k,
            x: Operand::new("x", p.x, n, size)?,
            values,
            indices,
        })
    }

    fn cost(&self) -> (u64, u64, u32) {
        let moved = self.x.bytes() + self.values.bytes() + self.indices.bytes();
        (moved, self.x.elems * 2, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.values.elems == 0 {
            return Ok(());
        }
        let outs = [self.values, self.indices];
        with_dtype!(self.dtype, T => {
            let x = input::<T>(ctx, self.x, &outs)?;
            let x = x.slice();
            // SAFETY: inputs overlapping an output were copied; the outputs were checked
            // disjoint at parse.
            let values = unsafe { output::<T>(ctx, self.values) }?;
            // SAFETY: as above.
            let indices = unsafe { output::<u32>(ctx, self.indices) }?;
            let (rows, cols, k) = (self.rows as usize, self.cols as usize, self.k as usize);
            ctx.run(self.x.elems as usize, |par| {
                llm::top_k(x, values, indices, rows, cols, k, par)
            })
            .map_err(fault("top_k"))
        })
    }
}
