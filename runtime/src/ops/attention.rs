//! Attention and key/value caches: fused scaled-dot-product attention (causal, sliding
//! window, grouped-query), over strided tensors or a paged cache, and appends to both kinds of
//! cache.
//!
//! Tensors are views with the logical shape `[batch, seq, heads, head_dim]` and element
//! strides ([`AttnTensor`]), so PyTorch's `[batch, seq, heads, head_dim]` (flash-attn) and
//! `[batch, heads, seq, head_dim]` (`scaled_dot_product_attention`) memory both work without a
//! copy. Everything the launcher can see — shapes, strides, buffer lengths, dtypes — is checked
//! before queueing. Values that live in device memory (key lengths, block table entries) are
//! checked by the kernel before it writes anything; a bad one fails the stream's next
//! `synchronize` with `Error::KernelFault`, after which the stream is usable again.

use super::{float, optional, same_device, submit, supported, Operand};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::attention as rules;
use knpu_driver_abi::{self as abi, SizedStruct};

/// The attention shapes are the kernels' own types, so a layout is described one way from the
/// kernels up to Python and C.
pub use knpu_kernels::attention::{AttnMask, AttnTensor, PagedKvCache};

/// `[batch …, seq …, heads …, head_dim …]`, for error messages.
fn describe(t: &AttnTensor) -> String {
    format!(
        "[batch {}, seq {}, heads {}, head_dim {}]",
        t.batch, t.seq, t.heads, t.head_dim
    )
}

/// Elements a buffer must hold for `t` by the op definition's rule; `None` on overflow.
fn tensor_len(t: &AttnTensor) -> Option<usize> {
    rules::tensor_elems("tensor", &tensor_abi(t))
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

/// Elements a cache buffer must hold for `c` by the op definition's rule; `None` on overflow.
fn cache_len(c: &PagedKvCache) -> Option<usize> {
    rules::cache_elems("cache", &cache_abi(c))
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

fn tensor_abi(t: &AttnTensor) -> abi::KnpuAttnTensor {
    abi::KnpuAttnTensor {
        batch: t.batch as u64,
        seq: t.seq as u64,
        heads: t.heads as u64,
        head_dim: t.head_dim as u64,
        batch_stride: t.batch_stride as u64,
        seq_stride: t.seq_stride as u64,
        head_stride: t.head_stride as u64,
    }
}

fn cache_abi(c: &PagedKvCache) -> abi::KnpuPagedKvCache {
    abi::KnpuPagedKvCache {
        num_blocks: c.num_blocks as u64,
        block_size: c.block_size as u64,
        kv_heads: c.kv_heads as u64,
        head_dim: c.head_dim as u64,
        block_stride: c.block_stride as u64,
        slot_stride: c.slot_stride as u64,
        head_stride: c.head_stride as u64,
    }
}

/// An attention problem over strided K and V: `q` and `out` are
/// `[batch, q_len, q_heads, head_dim]`, `k` and `v` are `[batch, kv_len, kv_heads, head_dim]`
/// with `kv_heads` dividing `q_heads` (grouped-query attention). The kernels' own description,
/// as for [`AttnTensor`]: [`AttentionArgs::bshd`] builds dense flash-attn operands,
/// [`AttentionArgs::new`] any layout (PyTorch's with [`AttnTensor::bhsd`]).
pub use knpu_kernels::attention::AttentionParams as AttentionArgs;

/// An attention problem whose K and V live in a paged cache: `q` and `out`
/// `[batch, q_len, q_heads, head_dim]`, one [`PagedKvCache`] layout for both caches, the block
/// table's row length and the mask. The kernels' own description, as for [`AttnTensor`].
pub use knpu_kernels::attention::PagedAttentionParams as PagedAttentionArgs;

fn need_len(
    operand: &'static str,
    what: &str,
    required: Option<usize>,
    actual: usize,
) -> Result<()> {
    let required = required.ok_or_else(|| {
        Error::invalid(format!(
            "operand `{operand}`: {what} overflows the address space"
        ))
    })?;
    if actual < required {
        return Err(Error::Shape {
            operand,
            expected: format!("at least {required} elements for {what}"),
            actual: format!("{actual} elements"),
        });
    }
    Ok(())
}

fn check_tensor(operand: &'static str, t: &AttnTensor, len: usize) -> Result<()> {
    need_len(
        operand,
        &format!(
            "{} with strides {:?}",
            describe(t),
            [t.batch_stride, t.seq_stride, t.head_stride]
        ),
        tensor_len(t),
        len,
    )
}

fn check_output(operand: &'static str, t: &AttnTensor) -> Result<()> {
    if !rules::distinct_elements(rules::tensor_axes(&tensor_abi(t))) {
        return Err(Error::invalid(format!(
            "operand `{operand}`: strides {:?} map several elements of {} to one address",
            [t.batch_stride, t.seq_stride, t.head_stride],
            describe(t)
        )));
    }
    Ok(())
}

fn check_mask(mask: &AttnMask) -> Result<()> {
    if mask.window == Some(0) {
        return Err(Error::invalid(
            "a sliding window of 0 keys hides every key; use None for no window",
        ));
    }
    // `Some(0.0)` would read as "default" in the ABI's encoding, so the runtime refuses it;
    // the rest of the rule is the op definition's.
    match mask.scale {
        Some(s) if rules::check_mask(0, s).is_err() || s == 0.0 => Err(Error::invalid(format!(
            "softmax scale {s} must be finite and nonzero; use None for 1/sqrt(head_dim)"
        ))),
        _ => Ok(()),
    }
}

fn check_q_out(q: &AttnTensor, out: &AttnTensor) -> Result<()> {
    if q.head_dim == 0 {
        return Err(Error::Shape {
            operand: "q",
            expected: "head_dim > 0".into(),
            actual: describe(q),
        });
    }
    if (q.batch, q.seq, q.heads, q.head_dim) != (out.batch, out.seq, out.heads, out.head_dim) {
        return Err(Error::Shape {
            operand: "out",
            expected: describe(q),
            actual: describe(out),
        });
    }
    check_output("out", out)
}

fn check_heads(operand: &'static str, q_heads: usize, kv_heads: usize, t: String) -> Result<()> {
    if rules::check_heads(operand, q_heads as u64, kv_heads as u64).is_err() {
        return Err(Error::Shape {
            operand,
            expected: format!("a number of heads dividing the {q_heads} query heads"),
            actual: t,
        });
    }
    Ok(())
}

fn check_head_dim(operand: &'static str, q: &AttnTensor, head_dim: usize, t: String) -> Result<()> {
    if head_dim != q.head_dim {
        return Err(Error::Shape {
            operand,
            expected: format!("head_dim {} (as q)", q.head_dim),
            actual: t,
        });
    }
    Ok(())
}

fn check_lse(stream: &Stream, lse: &Option<DeviceSlice<'_, f32>>, q: &AttnTensor) -> Result<()> {
    if let Some(l) = lse {
        same_device(stream, "lse", l)?;
        let need = q
            .batch
            .checked_mul(q.heads)
            .and_then(|x| x.checked_mul(q.seq));
        need_len(
            "lse",
            &format!("[batch {}, heads {}, q_len {}]", q.batch, q.heads, q.seq),
            need,
            l.len(),
        )?;
    }
    Ok(())
}

fn check_u32s(
    stream: &Stream,
    operand: &'static str,
    s: &DeviceSlice<'_, u32>,
    what: &str,
    need: Option<usize>,
) -> Result<()> {
    same_device(stream, operand, s)?;
    need_len(operand, what, need, s.len())
}

/// Checks a `[batch]` vector of u32 (key or sequence lengths).
fn check_per_batch(
    stream: &Stream,
    operand: &'static str,
    s: &DeviceSlice<'_, u32>,
    batch: usize,
) -> Result<()> {
    check_u32s(stream, operand, s, &format!("[batch {batch}]"), Some(batch))
}

/// Checks a `[batch, max_blocks_per_seq]` block table.
fn check_block_table(
    stream: &Stream,
    table: &DeviceSlice<'_, u32>,
    batch: usize,
    max_blocks_per_seq: usize,
) -> Result<()> {
    let what = format!("[batch {batch}, max_blocks_per_seq {max_blocks_per_seq}]");
    let need = batch.checked_mul(max_blocks_per_seq);
    check_u32s(stream, "block_table", table, &what, need)
}

/// Checks that every operand lives on the stream's device.
fn same_devices<T>(
    stream: &Stream,
    operands: [(&'static str, &DeviceSlice<'_, T>); 4],
) -> Result<()> {
    for (name, s) in operands {
        same_device(stream, name, s)?;
    }
    Ok(())
}

/// The element type and devices of an append's `k_cache`, `v_cache`, `k_new` and `v_new`.
fn check_append_operands<T: DType>(
    stream: &Stream,
    [kc, vc, kn, vn]: [&DeviceSlice<'_, T>; 4],
) -> Result<()> {
    float::<T>("k_cache")?;
    same_devices(
        stream,
        [
            ("k_cache", kc),
            ("v_cache", vc),
            ("k_new", kn),
            ("v_new", vn),
        ],
    )
}

/// A paged cache's layout, for error messages; `Error::Shape` when its blocks hold no slot.
fn describe_cache(cache: &PagedKvCache) -> Result<String> {
    let desc = format!(
        "[blocks {}, block_size {}, kv_heads {}, head_dim {}]",
        cache.num_blocks, cache.block_size, cache.kv_heads, cache.head_dim
    );
    if cache.block_size == 0 {
        return Err(Error::Shape {
            operand: "k_cache",
            expected: "block_size > 0".into(),
            actual: desc,
        });
    }
    Ok(desc)
}

/// Checks that both cache buffers hold `cache`'s layout.
fn check_caches<T>(
    cache: &PagedKvCache,
    desc: &str,
    k: &DeviceSlice<'_, T>,
    v: &DeviceSlice<'_, T>,
) -> Result<()> {
    need_len("k_cache", desc, cache_len(cache), k.len())?;
    need_len("v_cache", desc, cache_len(cache), v.len())
}

fn flags(mask: &AttnMask) -> u32 {
    if mask.causal {
        abi::KNPU_ATTENTION_CAUSAL
    } else {
        0
    }
}

/// Queues `out = softmax(scale * q k^T + mask) v` on `stream`.
///
/// `lse`, when given, receives each row's log-sum-exp as `[batch, q_heads, q_len]` (`-inf` for
/// a row that sees no key). `kv_lens`, when given, holds each sequence's key count (`<=`
/// `k.seq`; keys past it are padding); a count past the cache fails the kernel, reported by the
/// stream's next `synchronize` as `Error::KernelFault`.
#[allow(clippy::too_many_arguments)]
pub fn attention<T: DType>(
    stream: &Stream,
    args: &AttentionArgs,
    q: &impl AsDeviceSlice<T>,
    k: &impl AsDeviceSlice<T>,
    v: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<T>,
    lse: Option<&mut dyn AsDeviceSliceMut<f32>>,
    kv_lens: Option<&dyn AsDeviceSlice<u32>>,
) -> Result<()> {
    let (qs, ks, vs) = (
        q.as_device_slice(),
        k.as_device_slice(),
        v.as_device_slice(),
    );
    let os = out.as_device_slice_mut();
    let ls = lse.map(|l| l.as_device_slice_mut());
    let lens = kv_lens.map(|l| l.as_device_slice());
    float::<T>("q")?;
    same_devices(stream, [("q", &qs), ("k", &ks), ("v", &vs), ("out", &os)])?;
    let (qt, kt, vt, ot, mask) = (&args.q, &args.k, &args.v, &args.out, &args.mask);
    check_mask(mask)?;
    check_q_out(qt, ot)?;
    if kt.batch != qt.batch {
        return Err(Error::Shape {
            operand: "k",
            expected: format!("batch {} (as q)", qt.batch),
            actual: describe(kt),
        });
    }
    check_head_dim("k", qt, kt.head_dim, describe(kt))?;
    check_heads("k", qt.heads, kt.heads, describe(kt))?;
    if (vt.batch, vt.seq, vt.heads, vt.head_dim) != (kt.batch, kt.seq, kt.heads, kt.head_dim) {
        return Err(Error::Shape {
            operand: "v",
            expected: describe(kt),
            actual: describe(vt),
        });
    }
    check_tensor("q", qt, qs.len())?;
    check_tensor("k", kt, ks.len())?;
    check_tensor("v", vt, vs.len())?;
    check_tensor("out", ot, os.len())?;
    check_lse(stream, &ls, qt)?;
    if let Some(l) = &lens {
        check_per_batch(stream, "kv_lens", l, qt.batch)?;
    }
    supported::<T>(stream, abi::KNPU_KERNEL_ATTENTION, "attention")?;
    let mut p = abi::KnpuAttentionParams::sized();
    p.dtype = T::ABI;
    p.flags = flags(mask);
    p.q_desc = tensor_abi(qt);
    p.k_desc = tensor_abi(kt);
    p.v_desc = tensor_abi(vt);
    p.out_desc = tensor_abi(ot);
    p.q = qs.addr();
    p.k = ks.addr();
    p.v = vs.addr();
    p.out = os.addr();
    p.lse = ls.as_ref().map_or(0, |l| l.addr());
    p.kv_lens = lens.as_ref().map_or(0, |l| l.addr());
    p.window = mask.window.unwrap_or(0) as u64;
    p.scale = mask.scale.unwrap_or(0.0);
    let used: [Option<&dyn Operand>; 6] = [
        Some(&qs),
        Some(&ks),
        Some(&vs),
        Some(&os),
        optional(&ls),
        optional(&lens),
    ];
    submit(stream, abi::KNPU_KERNEL_ATTENTION, &p, &used)
}

/// Queues attention with K and V read from a paged cache through `block_table`
/// (`[batch, max_blocks_per_seq]` block numbers) for `kv_lens[b]` keys of each sequence.
///
/// A key length past the table's capacity or a used table entry outside the cache fails the
/// kernel before it writes anything, reported by the stream's next `synchronize` as
/// `Error::KernelFault`.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention<T: DType>(
    stream: &Stream,
    args: &PagedAttentionArgs,
    q: &impl AsDeviceSlice<T>,
    k_cache: &impl AsDeviceSlice<T>,
    v_cache: &impl AsDeviceSlice<T>,
    block_table: &impl AsDeviceSlice<u32>,
    kv_lens: &impl AsDeviceSlice<u32>,
    out: &mut impl AsDeviceSliceMut<T>,
    lse: Option<&mut dyn AsDeviceSliceMut<f32>>,
) -> Result<()> {
    let (qs, kc, vc) = (
        q.as_device_slice(),
        k_cache.as_device_slice(),
        v_cache.as_device_slice(),
    );
    let (table, lens) = (block_table.as_device_slice(), kv_lens.as_device_slice());
    let os = out.as_device_slice_mut();
    let ls = lse.map(|l| l.as_device_slice_mut());
    float::<T>("q")?;
    same_devices(
        stream,
        [("q", &qs), ("k_cache", &kc), ("v_cache", &vc), ("out", &os)],
    )?;
    let (qt, ot, cache, mask) = (&args.q, &args.out, &args.cache, &args.mask);
    let max_blocks_per_seq = args.max_blocks_per_seq;
    check_mask(mask)?;
    check_q_out(qt, ot)?;
    let cache_desc = describe_cache(cache)?;
    check_head_dim("k_cache", qt, cache.head_dim, cache_desc.clone())?;
    check_heads("k_cache", qt.heads, cache.kv_heads, cache_desc.clone())?;
    check_tensor("q", qt, qs.len())?;
    check_tensor("out", ot, os.len())?;
    check_caches(cache, &cache_desc, &kc, &vc)?;
    check_lse(stream, &ls, qt)?;
    check_block_table(stream, &table, qt.batch, max_blocks_per_seq)?;
    check_per_batch(stream, "kv_lens", &lens, qt.batch)?;
    supported::<T>(stream, abi::KNPU_KERNEL_PAGED_ATTENTION, "paged attention")?;
    let mut p = abi::KnpuPagedAttentionParams::sized();
    p.dtype = T::ABI;
    p.flags = flags(mask);
    p.q_desc = tensor_abi(qt);
    p.out_desc = tensor_abi(ot);
    p.cache = cache_abi(cache);
    p.max_blocks_per_seq = max_blocks_per_seq as u64;
    p.q = qs.addr();
    p.k_cache = kc.addr();
    p.v_cache = vc.addr();
    p.out = os.addr();
    p.lse = ls.as_ref().map_or(0, |l| l.addr());
    p.kv_lens = lens.addr();
    p.block_table = table.addr();
    p.window = mask.window.unwrap_or(0) as u64;
    p.scale = mask.scale.unwrap_or(0.0);
    let used: [Option<&dyn Operand>; 7] = [
        Some(&qs),
        Some(&kc),
        Some(&vc),
        Some(&os),
        Some(&table),
        Some(&lens),
        optional(&ls),
    ];
    submit(stream, abi::KNPU_KERNEL_PAGED_ATTENTION, &p, &used)
}

fn check_new(operand: &'static str, new: &AttnTensor, heads: usize, head_dim: usize) -> Result<()> {
    if new.heads != heads || new.head_dim != head_dim {
        return Err(Error::Shape {
            operand,
            expected: format!("{heads} heads of head_dim {head_dim} (as the cache)"),
            actual: describe(new),
        });
    }
    Ok(())
}

/// Queues an append of `new.seq` positions per sequence to a contiguous cache (`cache`
/// describes both `k_cache` and `v_cache`; `seq.len` is the capacity): sequence `b`'s new
/// position `t` is written at `seq_lens[b] + t`. The caller advances `seq_lens` afterwards.
///
/// A sequence whose `seq_lens[b] + new.seq` passes the capacity fails the kernel, writing
/// nothing, reported by the stream's next `synchronize` as `Error::KernelFault`.
#[allow(clippy::too_many_arguments)]
pub fn kv_append<T: DType>(
    stream: &Stream,
    cache: &AttnTensor,
    k_cache: &mut impl AsDeviceSliceMut<T>,
    v_cache: &mut impl AsDeviceSliceMut<T>,
    new: &AttnTensor,
    k_new: &impl AsDeviceSlice<T>,
    v_new: &impl AsDeviceSlice<T>,
    seq_lens: &impl AsDeviceSlice<u32>,
) -> Result<()> {
    let (kc, vc) = (k_cache.as_device_slice_mut(), v_cache.as_device_slice_mut());
    let (kn, vn) = (k_new.as_device_slice(), v_new.as_device_slice());
    let lens = seq_lens.as_device_slice();
    check_append_operands(stream, [&kc, &vc, &kn, &vn])?;
    if new.batch != cache.batch {
        return Err(Error::Shape {
            operand: "k_new",
            expected: format!("batch {} (as the cache)", cache.batch),
            actual: describe(new),
        });
    }
    check_new("k_new", new, cache.heads, cache.head_dim)?;
    if new.seq > cache.seq {
        return Err(Error::Shape {
            operand: "k_new",
            expected: format!("at most {} new positions (the cache capacity)", cache.seq),
            actual: describe(new),
        });
    }
    check_output("k_cache", cache)?;
    check_tensor("k_cache", cache, kc.len())?;
    check_tensor("v_cache", cache, vc.len())?;
    check_tensor("k_new", new, kn.len())?;
    check_tensor("v_new", new, vn.len())?;
    check_per_batch(stream, "seq_lens", &lens, new.batch)?;
    supported::<T>(stream, abi::KNPU_KERNEL_KV_APPEND, "kv append")?;
    let mut p = abi::KnpuKvAppendParams::sized();
    p.dtype = T::ABI;
    p.cache_desc = tensor_abi(cache);
    p.new_desc = tensor_abi(new);
    p.k_cache = kc.addr();
    p.v_cache = vc.addr();
    p.k_new = kn.addr();
    p.v_new = vn.addr();
    p.seq_lens = lens.addr();
    let used: [Option<&dyn Operand>; 5] = [Some(&kc), Some(&vc), Some(&kn), Some(&vn), Some(&lens)];
    submit(stream, abi::KNPU_KERNEL_KV_APPEND, &p, &used)
}
/// Queues an append of `new.seq` positions per sequence to a paged cache: sequence `b`'s new
/// position `t` goes to position `p = seq_lens[b] + t`, block
/// `block_table[b * max_blocks_per_seq + p / block_size]`, slot `p % block_size`.
///
/// A position past the table's capacity or a table entry outside the cache fails the kernel,
/// writing nothing, reported by the stream's next `synchronize` as `Error::KernelFault`.
#[allow(clippy::too_many_arguments)]
pub fn paged_kv_append<T: DType>(
    stream: &Stream,
    cache: &PagedKvCache,
    k_cache: &mut impl AsDeviceSliceMut<T>,
    v_cache: &mut impl AsDeviceSliceMut<T>,
    new: &AttnTensor,
    k_new: &impl AsDeviceSlice<T>,
    v_new: &impl AsDeviceSlice<T>,
    block_table: &impl AsDeviceSlice<u32>,
    max_blocks_per_seq: usize,
    seq_lens: &impl AsDeviceSlice<u32>,
) -> Result<()> {
    let (kc, vc) = (k_cache.as_device_slice_mut(), v_cache.as_device_slice_mut());
    let (kn, vn) = (k_new.as_device_slice(), v_new.as_device_slice());
    let (table, lens) = (block_table.as_device_slice(), seq_lens.as_device_slice());
    check_append_operands(stream, [&kc, &vc, &kn, &vn])?;
    let cache_desc = describe_cache(cache)?;
    check_new("k_new", new, cache.kv_heads, cache.head_dim)?;
    let cap = max_blocks_per_seq.saturating_mul(cache.block_size);
    if new.seq > cap {
        return Err(Error::Shape {
            operand: "k_new",
            expected: format!(
                "at most {cap} new positions ({max_blocks_per_seq} blocks of {})",
                cache.block_size
            ),
            actual: describe(new),
        });
    }
    if !rules::distinct_elements(rules::cache_axes(&cache_abi(cache))) {
        return Err(Error::invalid(format!(
            "operand `k_cache`: strides of {cache_desc} map several elements to one address"
        )));
    }
    check_caches(cache, &cache_desc, &kc, &vc)?;
    check_tensor("k_new", new, kn.len())?;
    check_tensor("v_new", new, vn.len())?;
    check_block_table(stream, &table, new.batch, max_blocks_per_seq)?;
    check_per_batch(stream, "seq_lens", &lens, new.batch)?;
    supported::<T>(stream, abi::KNPU_KERNEL_PAGED_KV_APPEND, "paged kv append")?;
    let mut p = abi::KnpuPagedKvAppendParams::sized();
    p.dtype = T::ABI;
    p.cache = cache_abi(cache);
    p.new_desc = tensor_abi(new);
    p.max_blocks_per_seq = max_blocks_per_seq as u64;
    p.k_cache = kc.addr();
    p.v_cache = vc.addr();
    p.k_new = kn.addr();
    p.v_new = vn.addr();
    p.block_table = table.addr();
    p.seq_lens = lens.addr();
    let used: [Option<&dyn Operand>; 6] = [
        Some(&kc),
        Some(&vc),
        Some(&kn),
        Some(&vn),
        Some(&table),
        Some(&lens),
    ];
    submit(stream, abi::KNPU_KERNEL_PAGED_KV_APPEND, &p, &used)
}
