//! The quantised kernels (kernel ids 0x300-0x3FF): quantise, dequantise, quantised matmul,
//! the W8A8 int8 GEMM and embedding lookup from quantised tables, computed by
//! `knpu_kernels::quant`.
//!
//! Quantised data is raw bytes laid out as GGUF stores it; `parse` checks at submit that the
//! format number is known, that every row length is a multiple of the format's block size,
//! that per-row scales are given exactly when the format takes them, and computes every
//! operand's byte extent with overflow checks. Outputs may not overlap any other operand
//! (INVALID_VALUE at submit). `run` resolves every extent through the memory table, so an
//! address outside a live allocation is an ILLEGAL_ADDRESS fault naming the operand and the
//! address, and then calls the kernel (on the compute pool for large problems).

use half::{bf16, f16};
use knpu_driver_abi::*;
use knpu_kernels::quant::{
    self, row_bytes, ActElem, ActQuant, Activation, QMatmulParams, QWeights, QuantFormat,
    RowScales, W8A8Params,
};
use knpu_kernels::{KernelError, Parallelism};

use super::{read_params, KernelContext, KernelDef};
use crate::config::TimingProfile;
use crate::exec::Fault;
use crate::profile::{compute_ns, transfer_ns};

/// A parsed, validated parameter struct of one quantised kernel.
trait Op: Sized {
    /// Validates the parameter bytes.
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus>;
    /// Bytes the kernel moves, operations it does, and whether they are int8 operations.
    fn cost(&self) -> (u64, u64, bool);
    /// Runs the kernel.
    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault>;
}

const fn def<O: Op>(id: u32, name: &'static str, supports_dtype: fn(u32) -> bool) -> KernelDef {
    KernelDef {
        id,
        name,
        supports_dtype,
        validate: validate::<O>,
        run: run::<O>,
        model_ns: model_ns::<O>,
    }
}

/// The registry entries. QUANTIZE and DEQUANTIZE take F32 values.
pub const QUANTIZE: KernelDef = def::<Quantize>(KNPU_KERNEL_QUANTIZE, "quantize", is_f32);
/// See [`QUANTIZE`].
pub const DEQUANTIZE: KernelDef = def::<Dequantize>(KNPU_KERNEL_DEQUANTIZE, "dequantize", is_f32);
/// See [`QUANTIZE`]; x and y are F32, F16 or BF16.
pub const QMATMUL: KernelDef = def::<QMatmul>(KNPU_KERNEL_QMATMUL, "qmatmul", is_float);
/// See [`QUANTIZE`]; codes are I8, y is F32, F16 or BF16.
pub const W8A8_GEMM: KernelDef = def::<W8A8Gemm>(KNPU_KERNEL_W8A8_GEMM, "w8a8_gemm", is_w8a8);
/// See [`QUANTIZE`]; out is F32, F16 or BF16.
pub const QEMBEDDING: KernelDef = def::<QEmbedding>(KNPU_KERNEL_QEMBEDDING, "qembedding", is_float);

fn is_f32(dtype: u32) -> bool {
    dtype == KNPU_DTYPE_F32
}

fn is_float(dtype: u32) -> bool {
    float_size(dtype).is_ok()
}

fn is_w8a8(dtype: u32) -> bool {
    dtype == KNPU_DTYPE_I8 || is_float(dtype)
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
    let (moved, ops, int8) = op.cost();
    let peak = if int8 {
        t.peak_int8_mops
    } else {
        t.peak_f32_mflops
    };
    transfer_ns(moved, t.memory_bandwidth_mbps).max(compute_ns(ops, peak))
}

/// The element size of F32, F16 or BF16; NOT_SUPPORTED for any other dtype.
fn float_size(dtype: u32) -> Result<u64, KnpuStatus> {
    match dtype {
        KNPU_DTYPE_F32 => Ok(4),
        KNPU_DTYPE_F16 | KNPU_DTYPE_BF16 => Ok(2),
        _ => Err(KNPU_STATUS_NOT_SUPPORTED),
    }
}

/// The kernel format of a `KnpuQuantFormat` number; INVALID_VALUE for an unknown one.
fn format_of(raw: u32) -> Result<QuantFormat, KnpuStatus> {
    Ok(match raw {
        KNPU_QUANT_Q8_0 => QuantFormat::Q8_0,
        KNPU_QUANT_Q4_0 => QuantFormat::Q4_0,
        KNPU_QUANT_Q4_1 => QuantFormat::Q4_1,
        KNPU_QUANT_Q4_K => QuantFormat::Q4_K,
        KNPU_QUANT_Q6_K => QuantFormat::Q6_K,
        KNPU_QUANT_I8 => QuantFormat::I8,
        KNPU_QUANT_F8E4M3 => QuantFormat::F8E4M3,
        KNPU_QUANT_F8E5M2 => QuantFormat::F8E5M2,
        _ => return Err(KNPU_STATUS_INVALID_VALUE),
    })
}

fn activation_of(raw: u32) -> Result<Activation, KnpuStatus> {
    Ok(match raw {
        KNPU_ACTIVATION_NONE => Activation::None,
        KNPU_ACTIVATION_RELU => Activation::Relu,
        KNPU_ACTIVATION_GELU_ERF => Activation::GeluErf,
        KNPU_ACTIVATION_GELU_TANH => Activation::GeluTanh,
        KNPU_ACTIVATION_SILU => Activation::Silu,
        _ => return Err(KNPU_STATUS_INVALID_VALUE),
    })
}

fn act_quant_of(raw: u32) -> Result<ActQuant, KnpuStatus> {
    Ok(match raw {
        KNPU_ACT_QUANT_AUTO => ActQuant::Auto,
        KNPU_ACT_QUANT_INT8 => ActQuant::Int8,
        KNPU_ACT_QUANT_FLOAT => ActQuant::Float,
        _ => return Err(KNPU_STATUS_INVALID_VALUE),
    })
}

/// `a * b` as a `usize`, INVALID_VALUE on overflow.
fn product(a: u64, b: u64) -> Result<u64, KnpuStatus> {
    let n = a.checked_mul(b).ok_or(KNPU_STATUS_INVALID_VALUE)?;
    usize::try_from(n).map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
    Ok(n)
}

/// Bytes of one row of `k` values in `format`; INVALID_VALUE when `k` is not a multiple of
/// the block size or the row does not fit `usize`.
fn row_size(format: QuantFormat, k: u64) -> Result<u64, KnpuStatus> {
    let k = usize::try_from(k).map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
    row_bytes(format, k)
        .map(|b| b as u64)
        .map_err(|_| KNPU_STATUS_INVALID_VALUE)
}

/// One device operand: `bytes` bytes at `addr`, holding elements of `size` bytes.
#[derive(Clone, Copy, Debug)]
struct Operand {
    name: &'static str,
    addr: u64,
    bytes: u64,
    size: u64,
}

impl Operand {
    /// `elems` elements of `size` bytes at `addr`: the extent must not overflow, and when it
    /// is not empty the address must be nonzero, aligned to `size` and not wrap.
    fn new(name: &'static str, addr: u64, elems: u64, size: u64) -> Result<Operand, KnpuStatus> {
        let bytes = product(elems, size)?;
        if bytes > 0
            && (addr == 0 || !addr.is_multiple_of(size) || addr.checked_add(bytes).is_none())
        {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        Ok(Operand {
            name,
            addr,
            bytes,
            size,
        })
    }

    fn elems(&self) -> usize {
        (self.bytes / self.size) as usize
    }

    fn overlaps(&self, other: &Operand) -> bool {
        self.bytes > 0
            && other.bytes > 0
            && self.addr < other.addr + other.bytes
            && other.addr < self.addr + self.bytes
    }

    /// Resolves the operand as a shared slice of `T`.
    ///
    /// # Safety
    /// - `size_of::<T>() == self.size` and every bit pattern is a valid `T`;
    /// - no mutable slice of the kernel covers this range while the result lives (outputs
    ///   were checked disjoint from every other operand at parse).
    unsafe fn input<'a, T>(&self, ctx: &'a KernelContext<'_>) -> Result<&'a [T], Fault> {
        debug_assert_eq!(std::mem::size_of::<T>() as u64, self.size);
        if self.bytes == 0 {
            return Ok(&[]);
        }
        let ptr = ctx.resolve(self.name, self.addr, self.bytes)? as *const T;
        // SAFETY: a resolved range of `elems` elements of a live allocation, aligned to the
        // element size (checked at parse; backings are 64-byte aligned); nothing writes it
        // during the kernel by the caller's guarantee. Commands on other queues use the
        // same memory concurrently only if the submitter ordered them so, as on any device.
        Ok(unsafe { std::slice::from_raw_parts(ptr, self.elems()) })
    }

    /// Resolves the operand as a mutable slice of `T`.
    ///
    /// # Safety
    /// As [`Operand::input`], and no other slice of the kernel covers this range.
    // The slice points into device memory, not into `ctx`; exclusivity is the caller's duty.
    #[allow(clippy::mut_from_ref)]
    unsafe fn output<'a, T>(&self, ctx: &'a KernelContext<'_>) -> Result<&'a mut [T], Fault> {
        debug_assert_eq!(std::mem::size_of::<T>() as u64, self.size);
        if self.bytes == 0 {
            return Ok(&mut []);
        }
        let ptr = ctx.resolve(self.name, self.addr, self.bytes)? as *mut T;
        // SAFETY: a resolved, aligned range of `elems` elements of a live allocation that no
        // other slice of this kernel covers (the caller's guarantee).
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, self.elems()) })
    }
}

/// Rejects an output that overlaps any other operand.
fn disjoint(outputs: &[Operand], all: &[Operand]) -> Result<(), KnpuStatus> {
    for o in outputs {
        for a in all {
            if !std::ptr::eq(o, a) && o.overlaps(a) {
                return Err(KNPU_STATUS_INVALID_VALUE);
            }
        }
    }
    Ok(())
}

/// The per-row scale operand of `format` at `addr` (0: none) for `rows` rows: refused for
/// formats whose blocks carry their scales, required (when there are rows) for I8.
fn scales_operand(
    name: &'static str,
    format: QuantFormat,
    addr: u64,
    rows: u64,
) -> Result<Option<Operand>, KnpuStatus> {
    match (format.row_scales(), addr) {
        (RowScales::None, 0) | (RowScales::Optional, 0) => Ok(None),
        (RowScales::None, _) => Err(KNPU_STATUS_INVALID_VALUE),
        (RowScales::Required, 0) if rows > 0 => Err(KNPU_STATUS_INVALID_VALUE),
        (RowScales::Required, 0) => Ok(None),
        (_, addr) => Ok(Some(Operand::new(name, addr, rows, 4)?)),
    }
}

/// A kernel error as a fault naming the kernel: NOT_SUPPORTED for an unsupported case,
/// KERNEL_FAULT otherwise (a token id past the vocabulary).
fn fault(op: &'static str) -> impl Fn(KernelError) -> Fault {
    move |e| {
        let status = match e {
            KernelError::Unsupported { .. } => KNPU_STATUS_NOT_SUPPORTED,
            _ => KNPU_STATUS_KERNEL_FAULT,
        };
        Fault::new(status, format!("{op}: {e}"))
    }
}

/// Runs `$body` with `$T` the storage type of float dtype `$dtype`.
macro_rules! with_float {
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

/// Splits rows `0..rows` into contiguous chunks over the granted threads and runs `f(r0, r1)`
/// on each (inline for one thread).
fn for_row_chunks(rows: usize, par: Parallelism, f: impl Fn(usize, usize) + Sync) {
    let tasks = par.threads().min(rows).max(1);
    if tasks == 1 {
        f(0, rows);
        return;
    }
    let per = rows.div_ceil(tasks);
    rayon::scope(|s| {
        let f = &f;
        for t in 0..tasks {
            let (r0, r1) = ((t * per).min(rows), ((t + 1) * per).min(rows));
            if r0 < r1 {
                s.spawn(move |_| f(r0, r1));
            }
        }
    });
}

/// A mutable slice shared by tasks that write disjoint row ranges of it.
struct Rows<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks take disjoint ranges through `Rows::range`, and the slice it was made from
// outlives the scope the tasks run in.
unsafe impl<T: Send> Sync for Rows<T> {}

impl<T> Rows<T> {
    fn new(s: &mut [T]) -> Rows<T> {
        Rows {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// Elements `a..b`.
    ///
    /// # Safety
    /// `a <= b <= len`, and no other live slice covers `a..b`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, a: usize, b: usize) -> &mut [T] {
        debug_assert!(a <= b && b <= self.len);
        // SAFETY: in bounds and exclusive by this function's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(a), b - a) }
    }
}

// ---- QUANTIZE ---------------------------------------------------------------------------

struct Quantize {
    format: QuantFormat,
    rows: u64,
    k: u64,
    row_bytes: u64,
    src: Operand,
    dst: Operand,
    scales: Option<Operand>,
}

impl Op for Quantize {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuQuantizeParams starts with struct_size and holds only integers, so every
        // bit pattern is valid.
        let p: KnpuQuantizeParams =
            unsafe { read_params(bytes, field_end!(KnpuQuantizeParams, scales)) }?;
        let format = format_of(p.format)?;
        if p.reserved != 0 {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let rb = row_size(format, p.k)?;
        let src = Operand::new("src", p.src, product(p.rows, p.k)?, 4)?;
        let dst = Operand::new("dst", p.dst, product(p.rows, rb)?, 1)?;
        let scales = scales_operand("scales", format, p.scales, p.rows)?;
        let mut all = vec![src, dst];
        all.extend(scales);
        disjoint(&all[1..], &all)?;
        Ok(Quantize {
            format,
            rows: p.rows,
            k: p.k,
            row_bytes: rb,
            src,
            dst,
            scales,
        })
    }

    fn cost(&self) -> (u64, u64, bool) {
        let moved = self.src.bytes + self.dst.bytes + self.scales.map_or(0, |s| s.bytes);
        (moved, self.rows * self.k * 4, false)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.rows == 0 {
            return Ok(());
        }
        let (rows, k, rb) = (self.rows as usize, self.k as usize, self.row_bytes as usize);
        // SAFETY: f32 and u8 match the operands' element sizes; outputs (dst, scales) were
        // checked disjoint from every other operand at parse.
        let (src, dst, scales) = unsafe {
            (
                self.src.input::<f32>(ctx)?,
                self.dst.output::<u8>(ctx)?,
                self.scales.map(|s| s.output::<f32>(ctx)).transpose()?,
            )
        };
        let (dst, scales) = (Rows::new(dst), scales.map(Rows::new));
        let format = self.format;
        let result = std::sync::Mutex::new(Ok(()));
        ctx.run(rows * k, |par| {
            for_row_chunks(rows, par, |r0, r1| {
                // SAFETY: row chunks are disjoint, so the byte and scale ranges are too.
                let (d, s) = unsafe {
                    (
                        dst.range(r0 * rb, r1 * rb),
                        scales.as_ref().map(|s| s.range(r0, r1)),
                    )
                };
                let r = quant::quantize(format, r1 - r0, k, &src[r0 * k..r1 * k], d, s);
                if r.is_err() {
                    *result.lock().unwrap_or_else(|e| e.into_inner()) = r;
                }
            })
        });
        result
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .map_err(fault("quantize"))
    }
}

// ---- DEQUANTIZE -------------------------------------------------------------------------

struct Dequantize {
    format: QuantFormat,
    rows: u64,
    k: u64,
    row_bytes: u64,
    src: Operand,
    scales: Option<Operand>,
    dst: Operand,
}

impl Op for Dequantize {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuDequantizeParams starts with struct_size and holds only integers, so
        // every bit pattern is valid.
        let p: KnpuDequantizeParams =
            unsafe { read_params(bytes, field_end!(KnpuDequantizeParams, dst)) }?;
        let format = format_of(p.format)?;
        if p.reserved != 0 {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let rb = row_size(format, p.k)?;
        let src = Operand::new("src", p.src, product(p.rows, rb)?, 1)?;
        let scales = scales_operand("scales", format, p.scales, p.rows)?;
        let dst = Operand::new("dst", p.dst, product(p.rows, p.k)?, 4)?;
        let mut all = vec![dst, src];
        all.extend(scales);
        disjoint(&all[..1], &all)?;
        Ok(Dequantize {
            format,
            rows: p.rows,
            k: p.k,
            row_bytes: rb,
            src,
            scales,
            dst,
        })
    }

    fn cost(&self) -> (u64, u64, bool) {
        let moved = self.src.bytes + self.dst.bytes + self.scales.map_or(0, |s| s.bytes);
        (moved, self.rows * self.k * 2, false)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.rows == 0 {
            return Ok(());
        }
        let (rows, k, rb) = (self.rows as usize, self.k as usize, self.row_bytes as usize);
        // SAFETY: u8 and f32 match the operands' element sizes; dst was checked disjoint from
        // every other operand at parse.
        let (src, scales, dst) = unsafe {
            (
                self.src.input::<u8>(ctx)?,
                self.scales.map(|s| s.input::<f32>(ctx)).transpose()?,
                self.dst.output::<f32>(ctx)?,
            )
        };
        let dst = Rows::new(dst);
        let format = self.format;
        let result = std::sync::Mutex::new(Ok(()));
        ctx.run(rows * k, |par| {
            for_row_chunks(rows, par, |r0, r1| {
                // SAFETY: row chunks are disjoint, so the output ranges are too.
                let d = unsafe { dst.range(r0 * k, r1 * k) };
                let r = quant::dequantize(
                    format,
                    r1 - r0,
                    k,
                    &src[r0 * rb..r1 * rb],
                    scales.map(|s| &s[r0..r1]),
                    d,
                );
                if r.is_err() {
                    *result.lock().unwrap_or_else(|e| e.into_inner()) = r;
                }
            })
        });
        result
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .map_err(fault("dequantize"))
    }
}

// ---- QMATMUL ----------------------------------------------------------------------------

struct QMatmul {
    format: QuantFormat,
    x_dtype: u32,
    y_dtype: u32,
    params: QMatmulParams,
    int8: bool,
    n: u64,
    k: u64,
    x: Operand,
    w: Operand,
    w_scales: Option<Operand>,
    bias: Option<Operand>,
    y: Operand,
}

impl Op for QMatmul {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuQMatmulParams starts with struct_size and holds only integers, so every
        // bit pattern is valid.
        let p: KnpuQMatmulParams = unsafe { read_params(bytes, field_end!(KnpuQMatmulParams, y)) }?;
        let format = format_of(p.format)?;
        let activation = activation_of(p.activation)?;
        let act_quant = act_quant_of(p.act_quant)?;
        if p.reserved != 0 {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        let x_size = float_size(p.x_dtype)?;
        let y_size = float_size(p.y_dtype)?;
        let m = usize::try_from(p.m).map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
        let rb = row_size(format, p.k)?;
        // The kernel's integer path: every GGUF format, and I8 with whole blocks of 32.
        let int_capable = match format {
            QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => false,
            QuantFormat::I8 => p.k.is_multiple_of(32),
            _ => true,
        };
        let int8 = match act_quant {
            ActQuant::Float => false,
            ActQuant::Auto => int_capable,
            ActQuant::Int8 if int_capable => true,
            ActQuant::Int8 => return Err(KNPU_STATUS_NOT_SUPPORTED),
        };
        // An empty output reads nothing.
        let work = p.m > 0 && p.n > 0;
        let live = |v: u64| if work { v } else { 0 };
        let x = Operand::new("x", p.x, live(product(p.m, p.k)?), x_size)?;
        let w = Operand::new("w", p.w, live(product(p.n, rb)?), 1)?;
        let w_scales = scales_operand("w_scales", format, p.w_scales, live(p.n))?;
        let bias = match p.bias {
            0 => None,
            addr => Some(Operand::new("bias", addr, live(p.n), 4)?),
        };
        let y = Operand::new("y", p.y, product(p.m, p.n)?, y_size)?;
        let mut all = vec![y, x, w];
        all.extend(w_scales);
        all.extend(bias);
        disjoint(&all[..1], &all)?;
        Ok(QMatmul {
            format,
            x_dtype: p.x_dtype,
            y_dtype: p.y_dtype,
            params: QMatmulParams {
                m,
                activation,
                act_quant,
            },
            int8,
            n: p.n,
            k: p.k,
            x,
            w,
            w_scales,
            bias,
            y,
        })
    }

    fn cost(&self) -> (u64, u64, bool) {
        let moved = self.x.bytes
            + self.w.bytes
            + self.y.bytes
            + self.w_scales.map_or(0, |s| s.bytes)
            + self.bias.map_or(0, |b| b.bytes);
        let ops = (self.params.m as u64)
            .saturating_mul(self.n)
            .saturating_mul(self.k)
            .saturating_mul(2);
        (moved, ops, self.int8)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.y.bytes == 0 {
            return Ok(());
        }
        with_float!(self.x_dtype, X => with_float!(self.y_dtype, Y => self.run_typed::<X, Y>(ctx)))
    }
}

impl QMatmul {
    fn run_typed<X: ActElem, Y: ActElem>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        // SAFETY: X, Y, u8 and f32 match the operands' element sizes (X and Y were chosen by
        // their dtypes) and every bit pattern is valid for each; y was checked disjoint from
        // every other operand at parse.
        let (x, w, w_scales, bias, y) = unsafe {
            (
                self.x.input::<X>(ctx)?,
                self.w.input::<u8>(ctx)?,
                self.w_scales.map(|s| s.input::<f32>(ctx)).transpose()?,
                self.bias.map(|b| b.input::<f32>(ctx)).transpose()?,
                self.y.output::<Y>(ctx)?,
            )
        };
        let weights = QWeights {
            format: self.format,
            data: w,
            scales: w_scales,
            n: self.n as usize,
            k: self.k as usize,
        };
        let work = (self.params.m as u64)
            .saturating_mul(self.n)
            .saturating_mul(self.k);
        ctx.run(work.min(usize::MAX as u64) as usize, |par| {
            quant::qmatmul(&self.params, x, &weights, bias, y, par)
        })
        .map_err(fault("qmatmul"))
    }
}

// ---- W8A8_GEMM --------------------------------------------------------------------------

/// The longest reduction the W8A8 GEMM sums exactly in i32.
const W8A8_MAX_K: u64 = 1 << 17;

struct W8A8Gemm {
    y_dtype: u32,
    params: W8A8Params,
    xq: Operand,
    x_scales: Operand,
    wq: Operand,
    w_scales: Operand,
    bias: Option<Operand>,
    y: Operand,
}

impl Op for W8A8Gemm {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuW8A8GemmParams starts with struct_size and holds only integers, so
        // every bit pattern is valid.
        let p: KnpuW8A8GemmParams =
            unsafe { read_params(bytes, field_end!(KnpuW8A8GemmParams, y)) }?;
        let activation = activation_of(p.activation)?;
        let y_size = float_size(p.y_dtype)?;
        if p.k > W8A8_MAX_K {
            return Err(KNPU_STATUS_NOT_SUPPORTED);
        }
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| KNPU_STATUS_INVALID_VALUE);
        let work = p.m > 0 && p.n > 0;
        let live = |v: u64| if work { v } else { 0 };
        let xq = Operand::new("xq", p.xq, live(product(p.m, p.k)?), 1)?;
        let x_scales = Operand::new("x_scales", p.x_scales, live(p.m), 4)?;
        let wq = Operand::new("wq", p.wq, live(product(p.n, p.k)?), 1)?;
        let w_scales = Operand::new("w_scales", p.w_scales, live(p.n), 4)?;
        let bias = match p.bias {
            0 => None,
            addr => Some(Operand::new("bias", addr, live(p.n), 4)?),
        };
        let y = Operand::new("y", p.y, product(p.m, p.n)?, y_size)?;
        let mut all = vec![y, xq, x_scales, wq, w_scales];
        all.extend(bias);
        disjoint(&all[..1], &all)?;
        Ok(W8A8Gemm {
            y_dtype: p.y_dtype,
            params: W8A8Params {
                m: to_usize(p.m)?,
                n: to_usize(p.n)?,
                k: to_usize(p.k)?,
                activation,
            },
            xq,
            x_scales,
            wq,
            w_scales,
            bias,
            y,
        })
    }

    fn cost(&self) -> (u64, u64, bool) {
        let moved = self.xq.bytes
            + self.x_scales.bytes
            + self.wq.bytes
            + self.w_scales.bytes
            + self.bias.map_or(0, |b| b.bytes)
            + self.y.bytes;
        let p = &self.params;
        let ops = (p.m as u64)
            .saturating_mul(p.n as u64)
            .saturating_mul(p.k as u64)
            .saturating_mul(2);
        (moved, ops, true)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.y.bytes == 0 {
            return Ok(());
        }
        with_float!(self.y_dtype, Y => self.run_typed::<Y>(ctx))
    }
}

impl W8A8Gemm {
    fn run_typed<Y: ActElem>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        // SAFETY: i8, f32 and Y match the operands' element sizes and every bit pattern is
        // valid for each; y was checked disjoint from every other operand at parse.
        let (xq, xs, wq, ws, bias, y) = unsafe {
            (
                self.xq.input::<i8>(ctx)?,
                self.x_scales.input::<f32>(ctx)?,
                self.wq.input::<i8>(ctx)?,
                self.w_scales.input::<f32>(ctx)?,
                self.bias.map(|b| b.input::<f32>(ctx)).transpose()?,
                self.y.output::<Y>(ctx)?,
            )
        };
        let p = &self.params;
        let work = p.m.saturating_mul(p.n).saturating_mul(p.k);
        ctx.run(work, |par| {
            quant::w8a8_gemm(
                p,
                quant::ScaledI8 {
                    codes: xq,
                    scales: xs,
                },
                quant::ScaledI8 {
                    codes: wq,
                    scales: ws,
                },
                bias,
                y,
                par,
            )
        })
        .map_err(fault("w8a8_gemm"))
    }
}

// ---- QEMBEDDING -------------------------------------------------------------------------

struct QEmbedding {
    format: QuantFormat,
    out_dtype: u32,
    vocab: u64,
    dim: u64,
    row_bytes: u64,
    table: Operand,
    scales: Option<Operand>,
    ids: Operand,
    out: Operand,
}

impl Op for QEmbedding {
    fn parse(bytes: &[u8]) -> Result<Self, KnpuStatus> {
        // SAFETY: KnpuQEmbeddingParams starts with struct_size and holds only integers, so
        // every bit pattern is valid.
        let p: KnpuQEmbeddingParams =
            unsafe { read_params(bytes, field_end!(KnpuQEmbeddingParams, out)) }?;
        let format = format_of(p.format)?;
        let out_size = float_size(p.out_dtype)?;
        let rb = row_size(format, p.dim)?;
        let n = product(p.tokens, p.dim)?;
        let live = |v: u64| if n > 0 { v } else { 0 };
        let table = Operand::new("table", p.table, live(product(p.vocab, rb)?), 1)?;
        let scales = scales_operand("scales", format, p.scales, live(p.vocab))?;
        let ids = Operand::new("ids", p.ids, live(p.tokens), 4)?;
        let out = Operand::new("out", p.out, n, out_size)?;
        let mut all = vec![out, table, ids];
        all.extend(scales);
        disjoint(&all[..1], &all)?;
        Ok(QEmbedding {
            format,
            out_dtype: p.out_dtype,
            vocab: p.vocab,
            dim: p.dim,
            row_bytes: rb,
            table,
            scales,
            ids,
            out,
        })
    }

    fn cost(&self) -> (u64, u64, bool) {
        let tokens = self.ids.bytes / 4;
        let read = tokens * self.row_bytes;
        (
            read + self.ids.bytes + self.out.bytes,
            tokens * self.dim * 2,
            false,
        )
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.out.bytes == 0 {
            return Ok(());
        }
        with_float!(self.out_dtype, O => {
            // SAFETY: u8, f32, u32 and O match the operands' element sizes and every bit
            // pattern is valid for each; out was checked disjoint from the inputs at parse.
            let (table, scales, ids, out) = unsafe {
                (
                    self.table.input::<u8>(ctx)?,
                    self.scales.map(|s| s.input::<f32>(ctx)).transpose()?,
                    self.ids.input::<u32>(ctx)?,
                    self.out.output::<O>(ctx)?,
                )
            };
            let (vocab, dim) = (self.vocab as usize, self.dim as usize);
            ctx.run(out.len(), |_| {
                quant::embedding(&quant::QWeights { format: self.format, data: table, scales, n: vocab, k: dim }, ids, out)
            })
            .map_err(fault("qembedding"))
        })
    }
}
