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

use knpu_kernels::KernelError;

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

/// The mask of the ABI's encoding (`flags`, window 0: none, scale 0: 1/sqrt(head_dim)).
fn mask(flags: u32, window: u64, scale: f32) -> Result<AttnMask, OpError> {
    Ok(AttnMask {
        causal: flags & KNPU_ATTENTION_CAUSAL != 0,
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

/// What an attention writes: `out` and, when given, `lse` (f32).
#[derive(Clone, Copy)]
struct AttnOutputs {
    out: Extent,
    lse: Option<Extent>,
}

impl AttnOutputs {
    fn of(e: &Extents) -> AttnOutputs {
        AttnOutputs {
            out: must(e, "out"),
            lse: e.get("lse").copied(),
        }
    }

    /// The extents inputs must be copied away from (`out` twice when there is no `lse`),
    /// after checking that the outputs do not overlap each other.
    fn outs(&self) -> Result<[Extent; 2], Fault> {
        let n = 1 + usize::from(self.lse.is_some());
        let all = [self.out, self.lse.unwrap_or(self.out)];
        disjoint_outputs(&all[..n])?;
        Ok(all)
    }

    /// `out` as `T` and `lse` as f32.
    ///
    /// # Safety
    /// - `T` matches `out`'s element size.
    /// - [`AttnOutputs::outs`] succeeded, every input that overlaps its extents was resolved
    ///   through [`KernelContext::input`] with them as outputs, and no other slice covers them.
    // The slices point into device memory, not into `ctx`; exclusivity is the caller's
    // obligation, as for `KernelContext::output`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn resolve<'c, T>(
        &self,
        ctx: &'c KernelContext<'_>,
    ) -> Result<(&'c mut [T], Option<&'c mut [f32]>), Fault> {
        // SAFETY: the caller's promises; `outs` checked the outputs disjoint.
        let out = unsafe { ctx.output::<T>(&self.out) }?;
        // SAFETY: as above; lse is F32.
        let lse = self
            .lse
            .map(|r| unsafe { ctx.output::<f32>(&r) })
            .transpose()?;
        Ok((out, lse))
    }
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
    outputs: AttnOutputs,
    kv_lens: Option<Extent>,
}

impl Kernel for Attention {
    const ID: u32 = KNPU_KERNEL_ATTENTION;
    const NAME: &'static str = "attention";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuAttentionParams = read(bytes)?;
        let e = defs::validate_attention(&p)?;
        Ok(Attention {
            dtype: p.dtype,
            params: AttentionParams {
                q: tensor("q", &p.q_desc)?,
                k: tensor("k", &p.k_desc)?,
                v: tensor("v", &p.v_desc)?,
                out: tensor("out", &p.out_desc)?,
                mask: mask(p.flags, p.window, p.scale)?,
            },
            q: must(&e, "q"),
            k: must(&e, "k"),
            v: must(&e, "v"),
            outputs: AttnOutputs::of(&e),
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
                Some(self.outputs.out),
                self.outputs.lse,
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
        let outs = &self.outputs.outs()?;
        let q = ctx.input::<T>(&self.q, outs)?;
        let k = ctx.input::<T>(&self.k, outs)?;
        let v = ctx.input::<T>(&self.v, outs)?;
        let kv_lens = self
            .kv_lens
            .map(|r| ctx.input::<u32>(&r, outs))
            .transpose()?;
        // SAFETY: T matches the dtype's size; every input was resolved against `outs`.
        let (out, lse) = unsafe { self.outputs.resolve::<T>(ctx) }?;
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
    outputs: AttnOutputs,
    kv_lens: Extent,
    block_table: Extent,
}

impl Kernel for PagedAttention {
    const ID: u32 = KNPU_KERNEL_PAGED_ATTENTION;
    const NAME: &'static str = "paged_attention";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuPagedAttentionParams = read(bytes)?;
        let e = defs::validate_paged_attention(&p)?;
        Ok(PagedAttention {
            dtype: p.dtype,
            params: PagedAttentionParams {
                q: tensor("q", &p.q_desc)?,
                out: tensor("out", &p.out_desc)?,
                cache: cache(&p.cache)?,
                max_blocks_per_seq: to_usize("max_blocks_per_seq", p.max_blocks_per_seq)?,
                mask: mask(p.flags, p.window, p.scale)?,
            },
            q: must(&e, "q"),
            k_cache: must(&e, "k_cache"),
            v_cache: must(&e, "v_cache"),
            outputs: AttnOutputs::of(&e),
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
            bytes: bytes_of(&[Some(self.q), Some(self.outputs.out), self.outputs.lse])
                .saturating_add(keys),
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
        let outs = &self.outputs.outs()?;
        let q = ctx.input::<T>(&self.q, outs)?;
        let kc = ctx.input::<T>(&self.k_cache, outs)?;
        let vc = ctx.input::<T>(&self.v_cache, outs)?;
        let table = ctx.input::<u32>(&self.block_table, outs)?;
        let kv_lens = ctx.input::<u32>(&self.kv_lens, outs)?;
        // SAFETY: T matches the dtype's size; every input was resolved against `outs`.
        let (out, lse) = unsafe { self.outputs.resolve::<T>(ctx) }?;
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

/// What both appends share: the new keys and values, the two caches they are written into
/// and each sequence's length.
struct Append {
    dtype: u32,
    new: AttnTensor,
    k_cache: Extent,
    v_cache: Extent,
    k_new: Extent,
    v_new: Extent,
    seq_lens: Extent,
}

/// The operands of an append as the kernel takes them: both caches, the new keys and values,
/// each sequence's length and the block table of a paged cache.
struct AppendArgs<'a, T> {
    k_cache: &'a mut [T],
    v_cache: &'a mut [T],
    new: NewKv<'a, T>,
    seq_lens: &'a [u32],
    block_table: &'a [u32],
}

impl Append {
    fn of(dtype: u32, new_desc: &KnpuAttnTensor, e: &Extents) -> Result<Append, OpError> {
        Ok(Append {
            dtype,
            new: tensor("k_new", new_desc)?,
            k_cache: must(e, "k_cache"),
            v_cache: must(e, "v_cache"),
            k_new: must(e, "k_new"),
            v_new: must(e, "v_new"),
            seq_lens: must(e, "seq_lens"),
        })
    }

    /// New keys and values read and written once.
    fn cost(&self) -> Cost {
        Cost {
            bytes: bytes_of(&[Some(self.k_new), Some(self.v_new)]).saturating_mul(2),
            ops: 0,
            peak: Peak::F32,
        }
    }

    /// Resolves the operands as `T` (and `block_table`, when given, after the new values)
    /// and runs `append` on them; a kernel error is a fault of kernel `name`.
    fn run<T: AttnElement>(
        &self,
        ctx: &KernelContext<'_>,
        name: &'static str,
        block_table: Option<&Extent>,
        append: impl FnOnce(AppendArgs<'_, T>) -> Result<(), KernelError>,
    ) -> Result<(), Fault> {
        let outs = [self.k_cache, self.v_cache];
        disjoint_outputs(&outs)?;
        let k_new = ctx.input::<T>(&self.k_new, &outs)?;
        let v_new = ctx.input::<T>(&self.v_new, &outs)?;
        let table = block_table
            .map(|t| ctx.input::<u32>(t, &outs))
            .transpose()?;
        let seq_lens = ctx.input::<u32>(&self.seq_lens, &outs)?;
        // SAFETY: T matches the dtype's size; the caches overlap neither each other
        // (checked above) nor the inputs (overlapping inputs were copied).
        let (k_cache, v_cache) = unsafe {
            (
                ctx.output::<T>(&self.k_cache)?,
                ctx.output::<T>(&self.v_cache)?,
            )
        };
        append(AppendArgs {
            k_cache,
            v_cache,
            new: NewKv {
                shape: self.new,
                k: k_new.slice(),
                v: v_new.slice(),
            },
            seq_lens: seq_lens.slice(),
            block_table: table.as_ref().map_or(&[][..], |t| t.slice()),
        })
        .map_err(fault(name))
    }
}

/// Validated KNPU_KERNEL_KV_APPEND parameters.
pub(crate) struct KvAppend {
    cache: AttnTensor,
    append: Append,
}

impl Kernel for KvAppend {
    const ID: u32 = KNPU_KERNEL_KV_APPEND;
    const NAME: &'static str = "kv_append";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuKvAppendParams = read(bytes)?;
        let e = defs::validate_kv_append(&p)?;
        Ok(KvAppend {
            cache: tensor("k_cache", &p.cache_desc)?,
            append: Append::of(p.dtype, &p.new_desc, &e)?,
        })
    }

    fn cost(&self) -> Cost {
        self.append.cost()
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        with_float!(self.append.dtype, T => {
            self.append.run::<T>(ctx, Self::NAME, None, |a| {
                kv_append(&self.cache, a.k_cache, a.v_cache, a.new, a.seq_lens)
            })
        })
    }
}

/// Validated KNPU_KERNEL_PAGED_KV_APPEND parameters.
pub(crate) struct PagedKvAppend {
    cache: PagedKvCache,
    append: Append,
    max_blocks_per_seq: usize,
    block_table: Extent,
}

impl Kernel for PagedKvAppend {
    const ID: u32 = KNPU_KERNEL_PAGED_KV_APPEND;
    const NAME: &'static str = "paged_kv_append";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuPagedKvAppendParams = read(bytes)?;
        let e = defs::validate_paged_kv_append(&p)?;
        Ok(PagedKvAppend {
            cache: cache(&p.cache)?,
            append: Append::of(p.dtype, &p.new_desc, &e)?,
            max_blocks_per_seq: to_usize("max_blocks_per_seq", p.max_blocks_per_seq)?,
            block_table: must(&e, "block_table"),
        })
    }

    fn cost(&self) -> Cost {
        self.append.cost()
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        let max_blocks = self.max_blocks_per_seq;
        with_float!(self.append.dtype, T => {
            self.append.run::<T>(ctx, Self::NAME, Some(&self.block_table), |a| {
                let (cache, table) = (&self.cache, a.block_table);
                paged_kv_append(cache, a.k_cache, a.v_cache, a.new, table, max_blocks, a.seq_lens)
            })
        })
    }
}
