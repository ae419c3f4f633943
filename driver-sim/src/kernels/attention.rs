//! KNPU_KERNEL_ATTENTION, KNPU_KERNEL_PAGED_ATTENTION, KNPU_KERNEL_KV_APPEND and
//! KNPU_KERNEL_PAGED_KV_APPEND: fused attention and key/value cache appends over F32, F16 or
//! BF16 tensors, computed by `knpu_kernels::attention`.
//!
//! Every operand's byte extent is computed from its descriptor (overflow-checked) and resolved
//! through the memory table before the kernel runs, so an address outside a live allocation is
//! an ILLEGAL_ADDRESS fault naming the operand. What only the data can tell (key lengths past
//! the cache, block table entries outside it) is checked by the kernel before it writes
//! anything and becomes a KERNEL_FAULT with the kernel's message.
//!
//! Aliasing of device ranges: an input that overlaps an output is copied first, so the result
//! is as if every input were read before any output was written. Outputs that overlap each
//! other are a KERNEL_FAULT: no order of writes would make that well defined.

use knpu_driver_abi::ops::{attention as defs, Extent, Extents, OpError};
use knpu_driver_abi::*;
use knpu_kernels::attention::{
    attention, kv_append, paged_attention, paged_kv_append, AttentionInputs, AttentionParams,
    AttnElement, AttnMask, AttnTensor, NewKv, PagedAttentionInputs, PagedAttentionParams,
    PagedKvCache,
};

use super::{fault, read, with_float, Cost, Kernel, KernelContext, Peak};
use crate::exec::Fault;

fn to_usize(operand: &'static str, v: u64) -> Result<usize, OpError> {
    usize::try_from(v).map_err(|_| OpError::Overflow { operand })
}

fn tensor(operand: &'static str, d: &KnpuAttnTensor) -> Result<AttnTensor, OpError> {
    let u = |v| to_usize(operand, v);
    Ok(AttnTensor {
        batch: u(d.batch)?,
        seq: u(d.seq)?,
        heads: u(d.heads)?,
        head_dim: u(d.head_dim)?,
        batch_stride: u(d.batch_stride)?,
        seq_stride: u(d.seq_stride)?,
        head_stride: u(d.head_stride)?,
    })
}

fn cache(d: &KnpuPagedKvCache) -> Result<PagedKvCache, OpError> {
    let u = |v| to_usize("k_cache", v);
    Ok(PagedKvCache {
        num_blocks: u(d.num_blocks)?,
        block_size: u(d.block_size)?,
        kv_heads: u(d.kv_heads)?,
        head_dim: u(d.head_dim)?,
        block_stride: u(d.block_stride)?,
        slot_stride: u(d.slot_stride)?,
        head_stride: u(d.head_stride)?,
    })
}

fn mask(window: u64, scale: f32) -> Result<AttnMask, OpError> {
    Ok(AttnMask {
        causal: false,
        window: (window != 0)
            .then(|| to_usize("window", window))
            .transpose()?,
        scale: (scale != 0.0).then_some(scale),
    })
}

fn must(e: &Extents, name: &'static str) -> Extent {
    *e.get(name)
        .expect("the op definition lists every required operand")
}

/// Rejects outputs that overlap each other: no order of writes would make that well defined.
fn disjoint_outputs(outs: &[Extent]) -> Result<(), Fault> {
    for (i, a) in outs.iter().enumerate() {
        for b in &outs[i + 1..] {
            if a.overlaps(b) {
                return Err(Fault::new(
                    KNPU_STATUS_KERNEL_FAULT,
                    format!("outputs `{}` and `{}` overlap", a.operand, b.operand),
                ));
            }
        }
    }
    Ok(())
}

/// Multiply-adds of attention with these sizes, saturating.
fn attention_work(batch: usize, q_heads: usize, q_len: usize, kv_len: usize, d: usize) -> u64 {
    [batch, q_heads, q_len, kv_len, d]
        .iter()
        .fold(1u64, |acc, &x| acc.saturating_mul(x as u64))
}

fn bytes_of(es: &[Option<Extent>]) -> u64 {
    es.iter()
        .flatten()
        .fold(0u64, |acc, e| acc.saturating_add(e.bytes))
}

// ---- ATTENTION --------------------------------------------------------------------------

/// Validated KNPU_KERNEL_ATTENTION parameters.
pub(crate) struct Attention {
    dtype: u32,
    params: AttentionParams,
    q: Extent,
    k: Extent,
    v: Extent,
    out: Extent,
    lse: Option<Extent>,
    kv_lens: Option<Extent>,
}

impl Kernel for Attention {
    const ID: u32 = KNPU_KERNEL_ATTENTION;
    const NAME: &'static str = "attention";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuAttentionParams = read(bytes)?;
        let e = defs::validate_attention(&p)?;
        let mut m = mask(p.window, p.scale)?;
        m.causal = p.flags & KNPU_ATTENTION_CAUSAL != 0;
        Ok(Attention {
            dtype: p.dtype,
            params: AttentionParams {
                q: tensor("q", &p.q_desc)?,
                k: tensor("k", &p.k_desc)?,
                v: tensor("v", &p.v_desc)?,
                out: tensor("out", &p.out_desc)?,
                mask: m,
            },
            q: must(&e, "q"),
            k: must(&e, "k"),
            v: must(&e, "v"),
            out: must(&e, "out"),
            lse: e.get("lse").copied(),
            kv_lens: e.get("kv_lens").copied(),
        })
    }

    fn cost(&self) -> Cost {
        let a = &self.params;
        let ops = attention_work(a.q.batch, a.q.heads, a.q.seq, a.k.seq, a.q.head_dim);
        Cost {
            bytes: bytes_of(&[
                Some(self.q),
                Some(self.k),
                Some(self.v),
                Some(self.out),
                self.lse,
            ]),
            ops: ops.saturating_mul(4),
            peak: Peak::of_dtype(self.dtype),
        }
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        with_float!(self.dtype, T => self.run_typed::<T>(ctx))
    }
}

impl Attention {
    fn run_typed<T: AttnElement>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let all = [self.out, self.lse.unwrap_or(self.out)];
        let outs = &all[..1 + usize::from(self.lse.is_some())];
        disjoint_outputs(outs)?;
        let q = ctx.input::<T>(&self.q, outs)?;
        let k = ctx.input::<T>(&self.k, outs)?;
        let v = ctx.input::<T>(&self.v, outs)?;
        let kv_lens = self
            .kv_lens
            .map(|r| ctx.input::<u32>(&r, outs))
            .transpose()?;
        // SAFETY: T matches the dtype's size; the outputs overlap neither each other
        // (checked above) nor the inputs (overlapping inputs were copied).
        let out = unsafe { ctx.output::<T>(&self.out) }?;
        // SAFETY: as above; lse is F32.
        let lse = self
            .lse
            .map(|r| unsafe { ctx.output::<f32>(&r) })
            .transpose()?;
        let a = &self.params;
        let work = attention_work(a.q.batch, a.q.heads, a.q.seq, a.k.seq, a.q.head_dim);
        let (q, k, v) = (q.slice(), k.slice(), v.slice());
        let kv_lens = kv_lens.as_ref().map(|l| l.slice());
        ctx.run(work.min(usize::MAX as u64) as usize, |par| {
            attention(a, AttentionInputs { q, k, v, kv_lens }, out, lse, par)
        })
        .map_err(fault(Self::NAME))
    }
}

// ---- PAGED_ATTENTION --------------------------------------------------------------------

/// Validated KNPU_KERNEL_PAGED_ATTENTION parameters.
pub(crate) struct PagedAttention {
    dtype: u32,
    params: PagedAttentionParams,
    q: Extent,
    k_cache: Extent,
    v_cache: Extent,
    out: Extent,
    lse: Option<Extent>,
    kv_lens: Extent,
    block_table: Extent,
}

impl Kernel for PagedAttention {
    const ID: u32 = KNPU_KERNEL_PAGED_ATTENTION;
    const NAME: &'static str = "paged_attention";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuPagedAttentionParams = read(bytes)?;
        let e = defs::validate_paged_attention(&p)?;
        let mut m = mask(p.window, p.scale)?;
        m.causal = p.flags & KNPU_ATTENTION_CAUSAL != 0;
        Ok(PagedAttention {
            dtype: p.dtype,
            params: PagedAttentionParams {
                q: tensor("q", &p.q_desc)?,
                out: tensor("out", &p.out_desc)?,
                cache: cache(&p.cache)?,
                max_blocks_per_seq: to_usize("max_blocks_per_seq", p.max_blocks_per_seq)?,
                mask: m,
            },
            q: must(&e, "q"),
            k_cache: must(&e, "k_cache"),
            v_cache: must(&e, "v_cache"),
            out: must(&e, "out"),
            lse: e.get("lse").copied(),
            kv_lens: must(&e, "kv_lens"),
            block_table: must(&e, "block_table"),
        })
    }

    fn cost(&self) -> Cost {
        let a = &self.params;
        let cap = a.max_blocks_per_seq.saturating_mul(a.cache.block_size);
        let ops = attention_work(a.q.batch, a.q.heads, a.q.seq, cap, a.q.head_dim);
        // Keys and values read at most: the table's capacity per sequence, not the cache.
        let size = self.q.elem_size;
        let keys = [
            a.q.batch,
            a.max_blocks_per_seq,
            a.cache.block_size,
            a.cache.kv_heads,
            a.cache.head_dim,
        ]
        .iter()
        .fold(2 * size, |acc, &x| acc.saturating_mul(x as u64));
        Cost {
            bytes: bytes_of(&[Some(self.q), Some(self.out), self.lse]).saturating_add(keys),
            ops: ops.saturating_mul(4),
            peak: Peak::of_dtype(self.dtype),
        }
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        with_float!(self.dtype, T => self.run_typed::<T>(ctx))
    }
}

impl PagedAttention {
    fn run_typed<T: AttnElement>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let all = [self.out, self.lse.unwrap_or(self.out)];
        let outs = &all[..1 + usize::from(self.lse.is_some())];
        disjoint_outputs(outs)?;
        let q = ctx.input::<T>(&self.q, outs)?;
        let kc = ctx.input::<T>(&self.k_cache, outs)?;
        let vc = ctx.input::<T>(&self.v_cache, outs)?;
        let table = ctx.input::<u32>(&self.block_table, outs)?;
        let kv_lens = ctx.input::<u32>(&self.kv_lens, outs)?;
        // SAFETY: T matches the dtype's size; the outputs overlap neither each other
        // (checked above) nor the inputs (overlapping inputs were copied).
        let out = unsafe { ctx.output::<T>(&self.out) }?;
        // SAFETY: as above; lse is F32.
        let lse = self
            .lse
            .map(|r| unsafe { ctx.output::<f32>(&r) })
            .transpose()?;
        let a = &self.params;
        let cap = a.max_blocks_per_seq.saturating_mul(a.cache.block_size);
        let work = attention_work(a.q.batch, a.q.heads, a.q.seq, cap, a.q.head_dim);
        let (q, kc, vc) = (q.slice(), kc.slice(), vc.slice());
        let (table, kv_lens) = (table.slice(), kv_lens.slice());
        ctx.run(work.min(usize::MAX as u64) as usize, |par| {
            let inputs = PagedAttentionInputs {
                q,
                k_cache: kc,
                v_cache: vc,
                block_table: table,
                kv_lens,
            };
            paged_attention(a, inputs, out, lse, par)
        })
        .map_err(fault(Self::NAME))
    }
}

// ---- KV_APPEND, PAGED_KV_APPEND ---------------------------------------------------------

/// The cost of an append: new keys and values read and written once.
fn append_cost(k_new: &Extent, v_new: &Extent) -> Cost {
    Cost {
        bytes: bytes_of(&[Some(*k_new), Some(*v_new)]).saturating_mul(2),
        ops: 0,
        peak: Peak::F32,
    }
}

/// Validated KNPU_KERNEL_KV_APPEND parameters.
pub(crate) struct KvAppend {
    dtype: u32,
    cache: AttnTensor,
    new: AttnTensor,
    k_cache: Extent,
    v_cache: Extent,
    k_new: Extent,
    v_new: Extent,
    seq_lens: Extent,
}

impl Kernel for KvAppend {
    const ID: u32 = KNPU_KERNEL_KV_APPEND;
    const NAME: &'static str = "kv_append";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuKvAppendParams = read(bytes)?;
        let e = defs::validate_kv_append(&p)?;
        Ok(KvAppend {
            dtype: p.dtype,
            cache: tensor("k_cache", &p.cache_desc)?,
            new: tensor("k_new", &p.new_desc)?,
            k_cache: must(&e, "k_cache"),
            v_cache: must(&e, "v_cache"),
            k_new: must(&e, "k_new"),
            v_new: must(&e, "v_new"),
            seq_lens: must(&e, "seq_lens"),
        })
    }

    fn cost(&self) -> Cost {
        append_cost(&self.k_new, &self.v_new)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        with_float!(self.dtype, T => self.run_typed::<T>(ctx))
    }
}

impl KvAppend {
    fn run_typed<T: AttnElement>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let outs = [self.k_cache, self.v_cache];
        disjoint_outputs(&outs)?;
        let k_new = ctx.input::<T>(&self.k_new, &outs)?;
        let v_new = ctx.input::<T>(&self.v_new, &outs)?;
        let seq_lens = ctx.input::<u32>(&self.seq_lens, &outs)?;
        // SAFETY: T matches the dtype's size; the caches overlap neither each other
        // (checked above) nor the inputs (overlapping inputs were copied).
        let (kc, vc) = unsafe {
            (
                ctx.output::<T>(&self.k_cache)?,
                ctx.output::<T>(&self.v_cache)?,
            )
        };
        kv_append(
            &self.cache,
            kc,
            vc,
            NewKv {
                shape: self.new,
                k: k_new.slice(),
                v: v_new.slice(),
            },
            seq_lens.slice(),
        )
        .map_err(fault(Self::NAME))
    }
}

/// Validated KNPU_KERNEL_PAGED_KV_APPEND parameters.
pub(crate) struct PagedKvAppend {
    dtype: u32,
    cache: PagedKvCache,
    new: AttnTensor,
    max_blocks_per_seq: usize,
    k_cache: Extent,
    v_cache: Extent,
    k_new: Extent,
    v_new: Extent,
    block_table: Extent,
    seq_lens: Extent,
}

impl Kernel for PagedKvAppend {
    const ID: u32 = KNPU_KERNEL_PAGED_KV_APPEND;
    const NAME: &'static str = "paged_kv_append";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuPagedKvAppendParams = read(bytes)?;
        let e = defs::validate_paged_kv_append(&p)?;
        Ok(PagedKvAppend {
            dtype: p.dtype,
            cache: cache(&p.cache)?,
            new: tensor("k_new", &p.new_desc)?,
            max_blocks_per_seq: to_usize("max_blocks_per_seq", p.max_blocks_per_seq)?,
            k_cache: must(&e, "k_cache"),
            v_cache: must(&e, "v_cache"),
            k_new: must(&e, "k_new"),
            v_new: must(&e, "v_new"),
            block_table: must(&e, "block_table"),
            seq_lens: must(&e, "seq_lens"),
        })
    }

    fn cost(&self) -> Cost {
        append_cost(&self.k_new, &self.v_new)
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        with_float!(self.dtype, T => self.run_typed::<T>(ctx))
    }
}

impl PagedKvAppend {
    fn run_typed<T: AttnElement>(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let outs = [self.k_cache, self.v_cache];
        disjoint_outputs(&outs)?;
        let k_new = ctx.input::<T>(&self.k_new, &outs)?;
        let v_new = ctx.input::<T>(&self.v_new, &outs)?;
        let table = ctx.input::<u32>(&self.block_table, &outs)?;
        let seq_lens = ctx.input::<u32>(&self.seq_lens, &outs)?;
        // SAFETY: T matches the dtype's size; the caches overlap neither each other
        // (checked above) nor the inputs (overlapping inputs were copied).
        let (kc, vc) = unsafe {
            (
                ctx.output::<T>(&self.k_cache)?,
                ctx.output::<T>(&self.v_cache)?,
            )
        };
        paged_kv_append(
            &self.cache,
            kc,
            vc,
            NewKv {
                shape: self.new,
                k: k_new.slice(),
                v: v_new.slice(),
            },
            table.slice(),
            self.max_blocks_per_seq,
            seq_lens.slice(),
        )
        .map_err(fault(Self::NAME))
    }
}
