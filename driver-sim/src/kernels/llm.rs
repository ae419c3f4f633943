//! The LLM ops (kernel ids 0x400-0x4FF) other than the binary ops (those are in
//! `super::elementwise`): normalisation, rotary embedding, activations, softmax, embedding
//! lookup, casts, argmax and top-k, computed by `knpu_kernels::llm` in f32 over F32, F16 or
//! BF16 storage.
//!
//! `parse` checks each struct with the op definitions (`knpu_driver_abi::ops::llm`); `run`
//! resolves every operand and calls the kernel. An input that overlaps an output is copied
//! first, so the result is as if every input were read before any output was written;
//! outputs of one kernel may not overlap each other. A kernel error (an embedding id past
//! the vocabulary) is a KERNEL_FAULT carrying the kernel's message.

use knpu_driver_abi::ops::llm as defs;
use knpu_driver_abi::ops::{self as abi_ops, Extent, OpError, RopeStyle};
use knpu_driver_abi::*;
use knpu_kernels::llm::{self, GeluApprox, RopeParams, RopePositions};

use super::{fault, read, with_float, Cost, Kernel, KernelContext, Peak};
use crate::exec::Fault;

/// Operand `i` of validated extents (the op definitions list them in struct order).
fn nth(e: &abi_ops::Extents, i: usize) -> Extent {
    e.as_slice()[i]
}

/// The cost of an op over `elems` elements with `per_elem` operations each.
fn cost(bytes: u64, elems: u64, per_elem: u64, dtype: u32) -> Cost {
    Cost {
        bytes,
        ops: elems.saturating_mul(per_elem),
        peak: Peak::of_dtype(dtype),
    }
}

// ---- RMS_NORM, LAYER_NORM ---------------------------------------------------------------

pub(crate) struct RmsNorm {
    p: KnpuRmsNormParams,
    x: Extent,
    weight: Extent,
    out: Extent,
}

impl Kernel for RmsNorm {
    const ID: u32 = KNPU_KERNEL_RMS_NORM;
    const NAME: &'static str = "rms_norm";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuRmsNormParams = read(bytes)?;
        let e = defs::validate_rms_norm(&p)?;
        Ok(RmsNorm {
            p,
            x: nth(&e, 0),
            weight: nth(&e, 1),
            out: nth(&e, 2),
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.x.bytes * 2 + self.weight.bytes;
        cost(bytes, self.x.elems(), 4, self.p.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.bytes == 0 {
            return Ok(());
        }
        let outs = [self.out];
        with_float!(self.p.dtype, T => {
            let x = ctx.input::<T>(&self.x, &outs)?;
            let w = ctx.input::<T>(&self.weight, &outs)?;
            // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<T>(&self.out) }?;
            let (rows, cols) = (self.p.rows as usize, self.p.cols as usize);
            ctx.run(out.len(), |par| {
                llm::rms_norm(x.slice(), w.slice(), out, rows, cols, self.p.eps, par)
            })
            .map_err(fault(Self::NAME))
        })
    }
}

pub(crate) struct LayerNorm {
    p: KnpuLayerNormParams,
    x: Extent,
    weight: Extent,
    bias: Option<Extent>,
    out: Extent,
}

impl Kernel for LayerNorm {
    const ID: u32 = KNPU_KERNEL_LAYER_NORM;
    const NAME: &'static str = "layer_norm";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuLayerNormParams = read(bytes)?;
        let e = defs::validate_layer_norm(&p)?;
        Ok(LayerNorm {
            p,
            x: nth(&e, 0),
            weight: nth(&e, 1),
            bias: e.get("bias").copied(),
            out: *e.get("out").expect("layer_norm has an output"),
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.x.bytes * 2 + self.weight.bytes * 2;
        cost(bytes, self.x.elems(), 7, self.p.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.bytes == 0 {
            return Ok(());
        }
        let outs = [self.out];
        with_float!(self.p.dtype, T => {
            let x = ctx.input::<T>(&self.x, &outs)?;
            let w = ctx.input::<T>(&self.weight, &outs)?;
            let b = self.bias.map(|b| ctx.input::<T>(&b, &outs)).transpose()?;
            // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<T>(&self.out) }?;
            let (rows, cols) = (self.p.rows as usize, self.p.cols as usize);
            let bias = b.as_ref().map(|b| b.slice());
            ctx.run(out.len(), |par| {
                let weights = llm::NormWeights {
                    weight: w.slice(),
                    bias,
                };
                llm::layer_norm(x.slice(), weights, out, rows, cols, self.p.eps, par)
            })
            .map_err(fault(Self::NAME))
        })
    }
}

// ---- ROPE -------------------------------------------------------------------------------

pub(crate) struct Rope {
    p: KnpuRopeParams,
    params: RopeParams,
    x: Extent,
    positions: Option<Extent>,
    out: Extent,
}

impl Kernel for Rope {
    const ID: u32 = KNPU_KERNEL_ROPE;
    const NAME: &'static str = "rope";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuRopeParams = read(bytes)?;
        let (style, e) = defs::validate_rope(&p)?;
        let style = match style {
            RopeStyle::Interleaved => llm::RopeStyle::Interleaved,
            RopeStyle::NeoX => llm::RopeStyle::NeoX,
        };
        Ok(Rope {
            params: RopeParams {
                style,
                rotary_dim: p.rotary_dim as usize,
                base: p.base,
            },
            x: nth(&e, 0),
            positions: e.get("positions").copied(),
            out: *e.get("out").expect("rope has an output"),
            p,
        })
    }

    fn cost(&self) -> Cost {
        cost(self.x.bytes * 2, self.x.elems(), 3, self.p.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.bytes == 0 {
            return Ok(());
        }
        let outs = [self.out];
        let pos = self
            .positions
            .map(|p| ctx.input::<u32>(&p, &outs))
            .transpose()?;
        let positions = match &pos {
            Some(p) => RopePositions::PerRow(p.slice()),
            None => RopePositions::Start(self.p.start_position),
        };
        with_float!(self.p.dtype, T => {
            let x = ctx.input::<T>(&self.x, &outs)?;
            // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<T>(&self.out) }?;
            let (rows, heads, dim) =
                (self.p.rows as usize, self.p.heads as usize, self.p.head_dim as usize);
            ctx.run(out.len(), |par| {
                let shape = llm::RopeShape {
                    rows,
                    heads,
                    head_dim: dim,
                };
                llm::rope(x.slice(), out, shape, &self.params, positions, par)
            })
            .map_err(fault(Self::NAME))
        })
    }
}

// ---- ACTIVATION, SWIGLU -----------------------------------------------------------------

pub(crate) struct Activation {
    dtype: u32,
    act: abi_ops::Activation,
    x: Extent,
    out: Extent,
}

impl Kernel for Activation {
    const ID: u32 = KNPU_KERNEL_ACTIVATION;
    const NAME: &'static str = "activation";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuActivationParams = read(bytes)?;
        let (act, e) = defs::validate_activation(&p)?;
        Ok(Activation {
            dtype: p.dtype,
            act,
            x: nth(&e, 0),
            out: nth(&e, 1),
        })
    }

    fn cost(&self) -> Cost {
        cost(self.x.bytes * 2, self.x.elems(), 20, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.bytes == 0 {
            return Ok(());
        }
        let len = self.x.elems() as usize;
        with_float!(self.dtype, T => {
            let x = ctx.input::<T>(&self.x, &[self.out])?;
            let x = x.slice();
            // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<T>(&self.out) }?;
            ctx.run(len, |par| match self.act {
                abi_ops::Activation::GeluErf => llm::gelu(x, out, len, GeluApprox::Erf, par),
                abi_ops::Activation::GeluTanh => llm::gelu(x, out, len, GeluApprox::Tanh, par),
                _ => llm::silu(x, out, len, par),
            })
            .map_err(fault(Self::NAME))
        })
    }
}

pub(crate) struct Swiglu {
    dtype: u32,
    gate: Extent,
    up: Extent,
    out: Extent,
}

impl Kernel for Swiglu {
    const ID: u32 = KNPU_KERNEL_SWIGLU;
    const NAME: &'static str = "swiglu";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuSwigluParams = read(bytes)?;
        let e = defs::validate_swiglu(&p)?;
        Ok(Swiglu {
            dtype: p.dtype,
            gate: nth(&e, 0),
            up: nth(&e, 1),
            out: nth(&e, 2),
        })
    }

    fn cost(&self) -> Cost {
        cost(self.gate.bytes * 3, self.gate.elems(), 12, self.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.gate.bytes == 0 {
            return Ok(());
        }
        let len = self.gate.elems() as usize;
        let outs = [self.out];
        with_float!(self.dtype, T => {
            let gate = ctx.input::<T>(&self.gate, &outs)?;
            let up = ctx.input::<T>(&self.up, &outs)?;
            // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<T>(&self.out) }?;
            ctx.run(len, |par| llm::swiglu(gate.slice(), up.slice(), out, len, par))
                .map_err(fault(Self::NAME))
        })
    }
}

// ---- SOFTMAX ----------------------------------------------------------------------------

pub(crate) struct Softmax {
    p: KnpuSoftmaxParams,
    x: Extent,
    out: Extent,
}

impl Kernel for Softmax {
    const ID: u32 = KNPU_KERNEL_SOFTMAX;
    const NAME: &'static str = "softmax";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuSoftmaxParams = read(bytes)?;
        let e = defs::validate_softmax(&p)?;
        Ok(Softmax {
            p,
            x: nth(&e, 0),
            out: nth(&e, 1),
        })
    }

    fn cost(&self) -> Cost {
        cost(self.x.bytes * 2, self.x.elems(), 12, self.p.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.bytes == 0 {
            return Ok(());
        }
        with_float!(self.p.dtype, T => {
            let x = ctx.input::<T>(&self.x, &[self.out])?;
            // SAFETY: T matches the dtype's size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<T>(&self.out) }?;
            let (rows, cols) = (self.p.rows as usize, self.p.cols as usize);
            ctx.run(out.len(), |par| {
                llm::softmax(x.slice(), out, rows, cols, self.p.scale, par)
            })
            .map_err(fault(Self::NAME))
        })
    }
}

// ---- EMBEDDING, CAST --------------------------------------------------------------------

pub(crate) struct Embedding {
    p: KnpuEmbeddingParams,
    table: Extent,
    ids: Extent,
    out: Extent,
}

impl Kernel for Embedding {
    const ID: u32 = KNPU_KERNEL_EMBEDDING;
    const NAME: &'static str = "embedding";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuEmbeddingParams = read(bytes)?;
        let e = defs::validate_embedding(&p)?;
        Ok(Embedding {
            p,
            table: nth(&e, 0),
            ids: nth(&e, 1),
            out: nth(&e, 2),
        })
    }

    fn cost(&self) -> Cost {
        let read = self.out.elems() * self.table.elem_size;
        cost(
            read + self.out.bytes + self.ids.bytes,
            0,
            0,
            self.p.out_dtype,
        )
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.out.bytes == 0 {
            return Ok(());
        }
        let outs = [self.out];
        let ids = ctx.input::<u32>(&self.ids, &outs)?;
        let ids = ids.slice();
        let p = &self.p;
        let (vocab, dim, tokens) = (p.vocab as usize, p.dim as usize, p.tokens as usize);
        with_float!(p.table_dtype, T => {
            let table = ctx.input::<T>(&self.table, &outs)?;
            let table = table.slice();
            with_float!(p.out_dtype, O => {
                // SAFETY: O matches the out dtype's size; inputs overlapping `out` were
                // copied and `out` is the only output.
                let out = unsafe { ctx.output::<O>(&self.out) }?;
                ctx.run(out.len(), |par| {
                    llm::embedding(table, vocab, dim, ids, tokens, out, par)
                })
                .map_err(fault(Self::NAME))
            })
        })
    }
}

pub(crate) struct Cast {
    p: KnpuCastParams,
    src: Extent,
    dst: Extent,
}

impl Kernel for Cast {
    const ID: u32 = KNPU_KERNEL_CAST;
    const NAME: &'static str = "cast";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuCastParams = read(bytes)?;
        let e = defs::validate_cast(&p)?;
        Ok(Cast {
            p,
            src: nth(&e, 0),
            dst: nth(&e, 1),
        })
    }

    fn cost(&self) -> Cost {
        cost(self.src.bytes + self.dst.bytes, 0, 0, self.p.dst_dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.src.bytes == 0 {
            return Ok(());
        }
        let len = self.src.elems() as usize;
        with_float!(self.p.src_dtype, S => {
            let src = ctx.input::<S>(&self.src, &[self.dst])?;
            let src = src.slice();
            with_float!(self.p.dst_dtype, D => {
                // SAFETY: D matches the dst dtype's size; inputs overlapping `dst` were
                // copied and `dst` is the only output.
                let dst = unsafe { ctx.output::<D>(&self.dst) }?;
                ctx.run(len, |par| llm::cast(src, dst, len, par))
                    .map_err(fault(Self::NAME))
            })
        })
    }
}

// ---- ARGMAX, TOP_K ----------------------------------------------------------------------

pub(crate) struct Argmax {
    p: KnpuArgmaxParams,
    x: Extent,
    out: Extent,
}

impl Kernel for Argmax {
    const ID: u32 = KNPU_KERNEL_ARGMAX;
    const NAME: &'static str = "argmax";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuArgmaxParams = read(bytes)?;
        let e = defs::validate_argmax(&p)?;
        Ok(Argmax {
            p,
            x: nth(&e, 0),
            out: nth(&e, 1),
        })
    }

    fn cost(&self) -> Cost {
        cost(
            self.x.bytes + self.out.bytes,
            self.x.elems(),
            1,
            self.p.dtype,
        )
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.x.bytes == 0 {
            return Ok(());
        }
        with_float!(self.p.dtype, T => {
            let x = ctx.input::<T>(&self.x, &[self.out])?;
            // SAFETY: u32 matches the index size; inputs overlapping `out` were copied and
            // `out` is the only output.
            let out = unsafe { ctx.output::<u32>(&self.out) }?;
            let (rows, cols) = (self.p.rows as usize, self.p.cols as usize);
            ctx.run(self.x.elems() as usize, |par| llm::argmax(x.slice(), out, rows, cols, par))
                .map_err(fault(Self::NAME))
        })
    }
}

pub(crate) struct TopK {
    p: KnpuTopKParams,
    x: Extent,
    values: Extent,
    indices: Extent,
}

impl Kernel for TopK {
    const ID: u32 = KNPU_KERNEL_TOP_K;
    const NAME: &'static str = "top_k";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuTopKParams = read(bytes)?;
        let e = defs::validate_top_k(&p)?;
        Ok(TopK {
            p,
            x: nth(&e, 0),
            values: nth(&e, 1),
            indices: nth(&e, 2),
        })
    }

    fn cost(&self) -> Cost {
        let bytes = self.x.bytes + self.values.bytes + self.indices.bytes;
        cost(bytes, self.x.elems(), 2, self.p.dtype)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.values.bytes == 0 {
            return Ok(());
        }
        let outs = [self.values, self.indices];
        with_float!(self.p.dtype, T => {
            let x = ctx.input::<T>(&self.x, &outs)?;
            // SAFETY: T and u32 match the operands' element sizes; inputs overlapping an
            // output were copied; the outputs were checked disjoint at parse.
            let values = unsafe { ctx.output::<T>(&self.values) }?;
            // SAFETY: as above.
            let indices = unsafe { ctx.output::<u32>(&self.indices) }?;
            let (rows, cols, k) = (self.p.rows as usize, self.p.cols as usize, self.p.k as usize);
            ctx.run(self.x.elems() as usize, |par| {
                llm::top_k(x.slice(), values, indices, rows, cols, k, par)
            })
            .map_err(fault(Self::NAME))
        })
    }
}
