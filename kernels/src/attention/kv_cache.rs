//! Key/value caches: appending new positions to a contiguous per-sequence cache or to a paged
//! cache, and checking block tables.
//!
//! A contiguous cache is an [`AttnTensor`] whose `seq` is the capacity; a paged cache is a
//! [`PagedKvCache`] (blocks of `block_size` positions) plus a block table per sequence, the
//! layout vLLM serves with. Both are described, never owned: the caller keeps the lengths and
//! advances them after an append.

use super::{bad_shape, check_len, AttnElement, AttnTensor, PagedKvCache};
use crate::error::KernelError;

/// Checks that the first `ceil(kv_lens[b] / block_size)` entries of each sequence's row of
/// `table` name blocks of `cache`.
pub(crate) fn check_block_table(
    cache: &PagedKvCache,
    table: &[u32],
    max_blocks: usize,
    kv_lens: &[u32],
    batch: usize,
) -> Result<(), KernelError> {
    for (b, &len) in kv_lens[..batch].iter().enumerate() {
        let used = (len as usize).div_ceil(cache.block_size);
        if used == 0 {
            continue;
        }
        let row = b * max_blocks;
        check_len("block_table", row + used, table.len())?;
        for (i, &blk) in table[row..row + used].iter().enumerate() {
            if blk as usize >= cache.num_blocks {
                return Err(bad_shape(format!(
                    "block_table[{b}][{i}] = {blk} is outside the cache's {} blocks",
                    cache.num_blocks
                )));
            }
        }
    }
    Ok(())
}

/// Checks the new keys and values against a cache of `heads` heads of `head_dim` and the
/// sequence lengths; returns their shape and slices.
fn check_new<'a, T: AttnElement>(
    new: NewKv<'a, T>,
    heads: usize,
    head_dim: usize,
    seq_lens: &[u32],
) -> Result<(AttnTensor, &'a [T], &'a [T]), KernelError> {
    let shape = new.shape;
    if shape.heads != heads || shape.head_dim != head_dim {
        return Err(bad_shape(format!(
            "new keys have {} heads of {} elements but the cache holds {} heads of {}",
            shape.heads, shape.head_dim, heads, head_dim
        )));
    }
    let need = shape.required_len()?;
    check_len("k_new", need, new.k.len())?;
    check_len("v_new", need, new.v.len())?;
    check_len("seq_lens", shape.batch, seq_lens.len())?;
    Ok((shape, new.k, new.v))
}

fn copy_head<T: AttnElement>(dst: &mut [T], at: usize, src: &[T], from: usize, d: usize) {
    dst[at..at + d].copy_from_slice(&src[from..from + d]);
}

/// Keys and values to append to a cache, both laid out as `shape` says
/// (`[batch, seq, heads, head_dim]`, `seq` new positions per sequence).
#[derive(Debug, Clone, Copy)]
pub struct NewKv<'a, T> {
    /// The layout of `k` and `v`.
    pub shape: AttnTensor,
    /// The new keys.
    pub k: &'a [T],
    /// The new values.
    pub v: &'a [T],
}

/// Appends `new.shape.seq` positions of keys and values for every sequence to a contiguous cache:
/// sequence `b`'s new position `t` is written at cache position `seq_lens[b] + t`.
///
/// `cache` (capacity `cache.seq`) describes both `k_cache` and `v_cache`; `new.shape`
/// describes `new.k` and `new.v`. Fails, writing nothing, when a sequence would pass the capacity.
pub fn kv_append<T: AttnElement>(
    cache: &AttnTensor,
    k_cache: &mut [T],
    v_cache: &mut [T],
    new: NewKv<'_, T>,
    seq_lens: &[u32],
) -> Result<(), KernelError> {
    if cache.batch != new.shape.batch {
        return Err(bad_shape(format!(
            "new keys have batch {} but the cache has {}",
            new.shape.batch, cache.batch
        )));
    }
    let (new, k_new, v_new) = check_new(new, cache.heads, cache.head_dim, seq_lens)?;
    let need = cache.required_len()?;
    check_len("k_cache", need, k_cache.len())?;
    check_len("v_cache", need, v_cache.len())?;
    cache.check_no_overlap("k_cache")?;
    for (b, &len) in seq_lens[..new.batch].iter().enumerate() {
        if len as usize + new.seq > cache.seq {
            return Err(bad_shape(format!(
                "sequence {b} has {len} positions; {} more pass the cache capacity {}",
                new.seq, cache.seq
            )));
        }
    }
    let d = cache.head_dim;
    for (b, &len) in seq_lens[..new.batch].iter().enumerate() {
        let base = len as usize;
        for t in 0..new.seq {
            for h in 0..new.heads {
                let at = cache.offset(b, base + t, h);
                let from = new.offset(b, t, h);
                copy_head(k_cache, at, k_new, from, d);
                copy_head(v_cache, at, v_new, from, d);
            }
        }
    }
    Ok(())
}

/// Appends `new.shape.seq` positions of keys and values for every sequence to a paged cache:
/// sequence `b`'s new position `t` goes to position `p = seq_lens[b] + t`, that is block
/// `block_table[b * max_blocks_per_seq + p / block_size]`, slot `p % block_size`.
///
/// Fails, writing nothing, when a position passes the table's capacity or its block entry is
/// outside the cache.
pub fn paged_kv_append<T: AttnElement>(
    cache: &PagedKvCache,
    k_cache: &mut [T],
    v_cache: &mut [T],
    new: NewKv<'_, T>,
    block_table: &[u32],
    max_blocks_per_seq: usize,
    seq_lens: &[u32],
) -> Result<(), KernelError> {
    if cache.block_size == 0 {
        return Err(bad_shape("cache block_size is 0".into()));
    }
    let (new, k_new, v_new) = check_new(new, cache.kv_heads, cache.head_dim, seq_lens)?;
    let need = cache.required_len()?;
    check_len("k_cache", need, k_cache.len())?;
    check_len("v_cache", need, v_cache.len())?;
    super::no_overlap(
        &[
            (cache.num_blocks, cache.block_stride),
            (cache.block_size, cache.slot_stride),
            (cache.kv_heads, cache.head_stride),
            (cache.head_dim, 1),
        ],
        "k_cache",
    )?;
    let cap = max_blocks_per_seq.saturating_mul(cache.block_size);
    let mut ends = Vec::with_capacity(new.batch);
    for (b, &len) in seq_lens[..new.batch].iter().enumerate() {
        let end = len as usize + new.seq;
        if end > cap {
            return Err(bad_shape(format!(
                "sequence {b} has {len} positions; {} more pass the block table's capacity \
                 {cap} ({max_blocks_per_seq} blocks of {})",
                new.seq, cache.block_size
            )));
        }
        ends.push(end as u32);
    }
    check_block_table(cache, block_table, max_blocks_per_seq, &ends, new.batch)?;
    let d = cache.head_dim;
    for b in 0..new.batch {
        for t in 0..new.seq {
            let pos = seq_lens[b] as usize + t;
            let blk = block_table[b * max_blocks_per_seq + pos / cache.block_size] as usize;
            let slot = pos % cache.block_size;
            for h in 0..new.heads {
                let at =
                    blk * cache.block_stride + slot * cache.slot_stride + h * cache.head_stride;
                let from = new.offset(b, t, h);
                copy_head(k_cache, at, k_new, from, d);
                copy_head(v_cache, at, v_new, from, d);
            }
        }
    }
    Ok(())
}
