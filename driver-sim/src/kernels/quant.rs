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

use knpu_driver_abi::ops::quant as defs;
use knpu_driver_abi::ops::{self as abi_ops, Extent, Extents, OpError};
use knpu_driver_abi::*;
use knpu_kernels::quant::{
    self, ActElem, ActQuant, Activation, QMatmulParams, QWeights, QuantFormat, W8A8Params,
};
use knpu_kernels::Parallelism;

use super::{fault, read, with_float, Cost, Kernel, KernelContext, Peak};
use crate::exec::Fault;

fn is_f32(dtype: u32) -> bool {
    dtype == KNPU_DTYPE_F32
}

/// The kernel crate's format for an ABI format. Both enums list the header's formats; the
/// kernels keep their own copy because they know nothing of the ABI.
fn kernel_format(f: abi_ops::QuantFormat) -> QuantFormat {
    use abi_ops::QuantFormat as A;
    match f {
        A::Q8_0 => QuantFormat::Q8_0,
        A::Q4_0 => QuantFormat::Q4_0,
        A::Q4_1 => QuantFormat::Q4_1,
        A::Q4_K => QuantFormat::Q4_K,
        A::Q6_K => QuantFormat::Q6_K,
        A::I8 => QuantFormat::I8,
        A::F8E4M3 => QuantFormat::F8E4M3,
        A::F8E5M2 => QuantFormat::F8E5M2,
    }
}

/// Operand `name` of validated extents, or an empty input at address 0 when it was not
/// given.
fn get(e: &Extents, name: &'static str) -> Option<Extent> {
    e.get(name).copied()
}

/// A required operand of validated extents.
fn must(e: &Extents, name: &'static str) -> Extent {
    *e.get(name)
        .expect("the op definition lists every required operand")
}

/// Resolves input `e` (outputs of quantised kernels never overlap an input, checked at
/// parse, so nothing is copied).
fn input<T: Copy>(ctx: &KernelContext<'_>, e: &Extent) -> Result<super::Input<T>, Fault> {
    ctx.input::<T>(e, &[])
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

// ---- QUANTIZE, DEQUANTIZE ---------------------------------------------------------------

/// The cost of a quantised kernel.
fn cost(bytes: u64, ops: u64, int8: bool) -> Cost {
    Cost {
        bytes,
        ops,
        peak: if int8 { Peak::Int8 } else { Peak::F32 },
    }
}

pub(crate) struct Quantize {
    format: QuantFormat,
    p: KnpuQuantizeParams,
    row_bytes: usize,
    src: Extent,
    dst: Extent,
    scales: Option<Extent>,
}

impl Kernel for Quantize {
    const ID: u32 = KNPU_KERNEL_QUANTIZE;
    const NAME: &'static str = "quantize";

    fn supports_dtype(dtype: u32) -> bool {
        is_f32(dtype)
    }

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuQuantizeParams = read(bytes)?;
        let e = defs::validate_quantize(&p)?;
        let format = abi_ops::QuantFormat::try_from(p.format)?;
        Ok(Quantize {
            format: kernel_format(format),
            row_bytes: format.row_bytes_of("dst", p.k)? as usize,
            src: must(&e, "src"),
            dst: must(&e, "dst"),
            scales: get(&e, "scales"),
            p,
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.src.bytes + self.dst.bytes + self.scales.map_or(0, |s| s.bytes);
        cost(bytes, self.src.elems() * 4, false)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.p.rows == 0 {
            return Ok(());
        }
        let (rows, k, rb) = (self.p.rows as usize, self.p.k as usize, self.row_bytes);
        let src = input::<f32>(ctx, &self.src)?;
        let src = src.slice();
        // SAFETY: u8 and f32 match the operands' element sizes; outputs (dst, scales) were
        // checked disjoint from every other operand at parse.
        let (dst, scales) = unsafe {
            (
                ctx.output::<u8>(&self.dst)?,
                self.scales.map(|s| ctx.output::<f32>(&s)).transpose()?,
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
            .map_err(fault(Self::NAME))
    }
}

pub(crate) struct Dequantize {
    format: QuantFormat,
    p: KnpuDequantizeParams,
    row_bytes: usize,
    src: Extent,
    scales: Option<Extent>,
    dst: Extent,
}

impl Kernel for Dequantize {
    const ID: u32 = KNPU_KERNEL_DEQUANTIZE;
    const NAME: &'static str = "dequantize";

    fn supports_dtype(dtype: u32) -> bool {
        is_f32(dtype)
    }

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuDequantizeParams = read(bytes)?;
        let e = defs::validate_dequantize(&p)?;
        let format = abi_ops::QuantFormat::try_from(p.format)?;
        Ok(Dequantize {
            format: kernel_format(format),
            row_bytes: format.row_bytes_of("src", p.k)? as usize,
            src: must(&e, "src"),
            scales: get(&e, "scales"),
            dst: must(&e, "dst"),
            p,
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.src.bytes + self.dst.bytes + self.scales.map_or(0, |s| s.bytes);
        cost(bytes, self.dst.elems() * 2, false)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.p.rows == 0 {
            return Ok(());
        }
        let (rows, k, rb) = (self.p.rows as usize, self.p.k as usize, self.row_bytes);
        let src = input::<u8>(ctx, &self.src)?;
        let scales = self.scales.map(|s| input::<f32>(ctx, &s)).transpose()?;
        let (src, scales) = (src.slice(), scales.as_ref().map(|s| s.slice()));
        // SAFETY: f32 matches dst's element size; dst was checked disjoint from every other
        // operand at parse.
        let dst = Rows::new(unsafe { ctx.output::<f32>(&self.dst) }?);
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
            .map_err(fault(Self::NAME))
    }
}

// ---- QMATMUL ----------------------------------------------------------------------------

pub(crate) struct QMatmul {
    format: QuantFormat,
    p: KnpuQMatmulParams,
    params: QMatmulParams,
    int8: bool,
    x: Extent,
    w: Extent,
    w_scales: Option<Extent>,
    bias: Option<Extent>,
    y: Extent,
}

impl Kernel for QMatmul {
    const ID: u32 = KNPU_KERNEL_QMATMUL;
    const NAME: &'static str = "qmatmul";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuQMatmulParams = read(bytes)?;
        let e = defs::validate_qmatmul(&p)?;
        let format = abi_ops::QuantFormat::try_from(p.format)?;
        let act_quant = abi_ops::ActQuant::try_from(p.act_quant)?;
        let int8 = defs::qmatmul_uses_int8(format, act_quant, p.k)?;
        let m = usize::try_from(p.m).map_err(|_| OpError::Overflow { operand: "m" })?;
        Ok(QMatmul {
            format: kernel_format(format),
            params: QMatmulParams {
                m,
                activation: super::kernel_activation!(p.activation, Activation)?,
                act_quant: match act_quant {
                    abi_ops::ActQuant::Auto => ActQuant::Auto,
                    abi_ops::ActQuant::Int8 => ActQuant::Int8,
                    abi_ops::ActQuant::Float => ActQuant::Float,
                },
            },
            int8,
            x: must(&e, "x"),
            w: must(&e, "w"),
            w_scales: get(&e, "w_scales"),
            bias: get(&e, "bias"),
            y: must(&e, "y"),
            p,
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.x.bytes
            + self.w.bytes
            + self.y.bytes
            + self.w_scales.map_or(0, |s| s.bytes)
            + self.bias.map_or(0, |b| b.bytes);
        let ops = [self.p.m, self.p.n, self.p.k, 2]
            .iter()
            .fold(1u64, |acc, &v| acc.saturating_mul(v));
        cost(bytes, ops, self.int8)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.y.bytes == 0 {
            return Ok(());
        }
        with_float!(self.p.x_dtype, X => with_float!(self.p.y_dtype, Y => self.run_typed::<X, Y>(ctx)))
    }
}

impl QMatmul {
    fn run_typed<X: ActElem, Y: ActElem>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let x = input::<X>(ctx, &self.x)?;
        let w = input::<u8>(ctx, &self.w)?;
        let w_scales = self.w_scales.map(|s| input::<f32>(ctx, &s)).transpose()?;
        let bias = self.bias.map(|b| input::<f32>(ctx, &b)).transpose()?;
        // SAFETY: Y matches y's element size (chosen by its dtype); y was checked disjoint
        // from every other operand at parse.
        let y = unsafe { ctx.output::<Y>(&self.y) }?;
        let weights = QWeights {
            format: self.format,
            data: w.slice(),
            scales: w_scales.as_ref().map(|s| s.slice()),
            n: self.p.n as usize,
            k: self.p.k as usize,
        };
        let bias = bias.as_ref().map(|b| b.slice());
        let work = [self.p.m, self.p.n, self.p.k]
            .iter()
            .fold(1u64, |acc, &v| acc.saturating_mul(v));
        ctx.run(work.min(usize::MAX as u64) as usize, |par| {
            quant::qmatmul(&self.params, x.slice(), &weights, bias, y, par)
        })
        .map_err(fault(Self::NAME))
    }
}

// ---- W8A8_GEMM --------------------------------------------------------------------------

pub(crate) struct W8A8Gemm {
    y_dtype: u32,
    params: W8A8Params,
    xq: Extent,
    x_scales: Extent,
    wq: Extent,
    w_scales: Extent,
    bias: Option<Extent>,
    y: Extent,
}

impl Kernel for W8A8Gemm {
    const ID: u32 = KNPU_KERNEL_W8A8_GEMM;
    const NAME: &'static str = "w8a8_gemm";

    /// Codes are I8, y is F32, F16 or BF16.
    fn supports_dtype(dtype: u32) -> bool {
        dtype == KNPU_DTYPE_I8 || abi_ops::is_float(dtype)
    }

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuW8A8GemmParams = read(bytes)?;
        let e = defs::validate_w8a8_gemm(&p)?;
        let dim = |operand, v: u64| usize::try_from(v).map_err(|_| OpError::Overflow { operand });
        Ok(W8A8Gemm {
            y_dtype: p.y_dtype,
            params: W8A8Params {
                m: dim("m", p.m)?,
                n: dim("n", p.n)?,
                k: dim("k", p.k)?,
                activation: super::kernel_activation!(p.activation, Activation)?,
            },
            xq: must(&e, "xq"),
            x_scales: must(&e, "x_scales"),
            wq: must(&e, "wq"),
            w_scales: must(&e, "w_scales"),
            bias: get(&e, "bias"),
            y: must(&e, "y"),
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.xq.bytes
            + self.x_scales.bytes
            + self.wq.bytes
            + self.w_scales.bytes
            + self.bias.map_or(0, |b| b.bytes)
            + self.y.bytes;
        let p = &self.params;
        let ops = [p.m, p.n, p.k, 2]
            .iter()
            .fold(1u64, |acc, &v| acc.saturating_mul(v as u64));
        cost(bytes, ops, true)
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
        let xq = input::<i8>(ctx, &self.xq)?;
        let xs = input::<f32>(ctx, &self.x_scales)?;
        let wq = input::<i8>(ctx, &self.wq)?;
        let ws = input::<f32>(ctx, &self.w_scales)?;
        let bias = self.bias.map(|b| input::<f32>(ctx, &b)).transpose()?;
        // SAFETY: Y matches y's element size (chosen by its dtype); y was checked disjoint
        // from every other operand at parse.
        let y = unsafe { ctx.output::<Y>(&self.y) }?;
        let p = &self.params;
        let work = p.m.saturating_mul(p.n).saturating_mul(p.k);
        let bias = bias.as_ref().map(|b| b.slice());
        ctx.run(work, |par| {
            quant::w8a8_gemm(
                p,
                quant::ScaledI8 {
                    codes: xq.slice(),
                    scales: xs.slice(),
                },
                quant::ScaledI8 {
                    codes: wq.slice(),
                    scales: ws.slice(),
                },
                bias,
                y,
                par,
            )
        })
        .map_err(fault(Self::NAME))
    }
}

// ---- QEMBEDDING -------------------------------------------------------------------------

pub(crate) struct QEmbedding {
    format: QuantFormat,
    p: KnpuQEmbeddingParams,
    row_bytes: u64,
    table: Extent,
    scales: Option<Extent>,
    ids: Extent,
    out: Extent,
}

impl Kernel for QEmbedding {
    const ID: u32 = KNPU_KERNEL_QEMBEDDING;
    const NAME: &'static str = "qembedding";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuQEmbeddingParams = read(bytes)?;
        let e = defs::validate_qembedding(&p)?;
        let format = abi_ops::QuantFormat::try_from(p.format)?;
        Ok(QEmbedding {
            format: kernel_format(format),
            row_bytes: format.row_bytes_of("table", p.dim)?,
            table: must(&e, "table"),
            scales: get(&e, "scales"),
            ids: must(&e, "ids"),
            out: must(&e, "out"),
            p,
        })
    }

    fn cost(&self) -> Cost {
        let tokens = self.ids.elems();
        let bytes = tokens * self.row_bytes + self.ids.bytes + self.out.bytes;
        cost(bytes, tokens * self.p.dim * 2, false)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.out.bytes == 0 {
            return Ok(());
        }
        let table = input::<u8>(ctx, &self.table)?;
        let scales = self.scales.map(|s| input::<f32>(ctx, &s)).transpose()?;
        let ids = input::<u32>(ctx, &self.ids)?;
        let (table, scales, ids) = (
            table.slice(),
            scales.as_ref().map(|s| s.slice()),
            ids.slice(),
        );
        let (vocab, dim) = (self.p.vocab as usize, self.p.dim as usize);
        with_float!(self.p.out_dtype, O => {
            // SAFETY: O matches out's element size (chosen by its dtype); out was checked
            // disjoint from the inputs at parse.
            let out = unsafe { ctx.output::<O>(&self.out) }?;
            ctx.run(out.len(), |_| {
                let weights = quant::QWeights {
                    format: self.format,
                    data: table,
                    scales,
                    n: vocab,
                    k: dim,
                };
                quant::embedding(&weights, ids, out)
            })
            .map_err(fault(Self::NAME))
        })
    }
}
