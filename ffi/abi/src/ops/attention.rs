//! Attention and key/value caches (0x200-0x2FF): fused attention over strided K/V or a paged
//! cache, and appends to both kinds of cache. Tensors are `KnpuAttnTensor` views with logical
//! shape `[batch, seq, heads, head_dim]` and element strides; `head_dim` is contiguous.

use super::{check_reserved, float_size, product, rule, strided_span, Extent, Extents, OpError};
use crate::sys::*;

/// The `(extent, stride)` axes of a tensor view.
pub fn tensor_axes(t: &KnpuAttnTensor) -> [(u64, u64); 4] {
    [
        (t.batch, t.batch_stride),
        (t.seq, t.seq_stride),
        (t.heads, t.head_stride),
        (t.head_dim, 1),
    ]
}

/// The `(extent, stride)` axes of a paged cache.
pub fn cache_axes(c: &KnpuPagedKvCache) -> [(u64, u64); 4] {
    [
        (c.num_blocks, c.block_stride),
        (c.block_size, c.slot_stride),
        (c.kv_heads, c.head_stride),
        (c.head_dim, 1),
    ]
}

/// Elements a buffer must hold for a view (0 for an empty one).
pub fn tensor_elems(operand: &'static str, t: &KnpuAttnTensor) -> Result<u64, OpError> {
    strided_span(operand, &tensor_axes(t))
}

/// Elements a paged cache buffer must hold.
pub fn cache_elems(operand: &'static str, c: &KnpuPagedKvCache) -> Result<u64, OpError> {
    strided_span(operand, &cache_axes(c))
}

/// Whether no two distinct indices of the axes map to one element (needed of outputs that
/// parallel tasks write): sorted by stride, each axis must step past everything the smaller
/// axes cover.
pub fn distinct_elements(axes: [(u64, u64); 4]) -> bool {
    if axes.iter().any(|&(n, _)| n == 0) {
        return true;
    }
    let mut axes = axes;
    axes.sort_unstable_by_key(|&(_, s)| s);
    let mut covered = 1u64;
    for (n, s) in axes {
        if n <= 1 {
            continue;
        }
        if s < covered {
            return false;
        }
        covered = s.saturating_mul(n);
    }
    true
}

/// The heads rule of grouped-query attention: `kv_heads` divides `q_heads`.
///
/// As for an empty tensor in PyTorch, zero heads are a valid, empty problem: `q_heads == 0`
/// accepts any `kv_heads`, 0 included (nothing is computed); `kv_heads == 0` with query heads
/// is an error.
pub fn check_heads(operand: &'static str, q_heads: u64, kv_heads: u64) -> Result<(), OpError> {
    let divides = match kv_heads {
        0 => q_heads == 0,
        kv => q_heads.is_multiple_of(kv),
    };
    rule(
        divides,
        operand,
        "the number of key/value heads must divide the number of query heads",
    )
}

/// The mask of an attention: only the CAUSAL flag, a finite scale (0: `1/sqrt(head_dim)`).
/// A window of 0 in the struct means none.
pub fn check_mask(flags: u32, scale: f32) -> Result<(), OpError> {
    if flags & !KNPU_ATTENTION_CAUSAL != 0 {
        return Err(OpError::UnknownValue {
            field: "flags",
            value: flags,
        });
    }
    super::llm::check_softmax_scale(scale)
}

/// `q` and `out`: the same logical shape, `head_dim > 0`, and an output whose elements are
/// distinct.
pub fn check_q_out(q: &KnpuAttnTensor, out: &KnpuAttnTensor) -> Result<(), OpError> {
    rule(q.head_dim != 0, "q", "head_dim must be positive")?;
    rule(
        (q.batch, q.seq, q.heads, q.head_dim) == (out.batch, out.seq, out.heads, out.head_dim),
        "out",
        "out must have the shape of q",
    )?;
    check_distinct("out", &tensor_axes(out))
}

fn check_distinct(operand: &'static str, axes: &[(u64, u64); 4]) -> Result<(), OpError> {
    rule(
        distinct_elements(*axes),
        operand,
        "the strides map several elements to one address",
    )
}

fn tensor(
    name: &'static str,
    addr: u64,
    t: &KnpuAttnTensor,
    size: u64,
    output: bool,
) -> Result<Extent, OpError> {
    Extent::new(name, addr, tensor_elems(name, t)?, size, output)
}

fn lse(p_lse: u64, q: &KnpuAttnTensor) -> Result<Option<Extent>, OpError> {
    if p_lse == 0 {
        return Ok(None);
    }
    let n = product("lse", &[q.batch, q.heads, q.seq])?;
    Extent::new("lse", p_lse, n, 4, true).map(Some)
}

/// KNPU_KERNEL_ATTENTION: extents `q`, `k`, `v`, `out`, `lse` and `kv_lens` when given.
pub fn validate_attention(p: &KnpuAttentionParams) -> Result<Extents, OpError> {
    let size = float_size("q", p.dtype)?;
    check_mask(p.flags, p.scale)?;
    let (q, k, v) = (&p.q_desc, &p.k_desc, &p.v_desc);
    check_q_out(q, &p.out_desc)?;
    rule(
        (k.batch, k.head_dim) == (q.batch, q.head_dim),
        "k",
        "k must have q's batch and head_dim",
    )?;
    check_heads("k", q.heads, k.heads)?;
    rule(
        (v.batch, v.seq, v.heads, v.head_dim) == (k.batch, k.seq, k.heads, k.head_dim),
        "v",
        "v must have the shape of k",
    )?;
    let mut e = Extents::default();
    e.push(tensor("q", p.q, q, size, false)?);
    e.push(tensor("k", p.k, k, size, false)?);
    e.push(tensor("v", p.v, v, size, false)?);
    e.push(tensor("out", p.out, &p.out_desc, size, true)?);
    e.push_opt(lse(p.lse, q)?);
    if p.kv_lens != 0 {
        e.push(Extent::new("kv_lens", p.kv_lens, q.batch, 4, false)?);
    }
    Ok(e)
}

fn check_block_size(c: &KnpuPagedKvCache) -> Result<(), OpError> {
    rule(c.block_size != 0, "k_cache", "block_size must be positive")
}

/// KNPU_KERNEL_PAGED_ATTENTION: extents `q`, `k_cache`, `v_cache`, `out`, `lse` when given,
/// `kv_lens`, `block_table`.
pub fn validate_paged_attention(p: &KnpuPagedAttentionParams) -> Result<Extents, OpError> {
    let size = float_size("q", p.dtype)?;
    check_mask(p.flags, p.scale)?;
    let (q, c) = (&p.q_desc, &p.cache);
    check_q_out(q, &p.out_desc)?;
    rule(
        c.head_dim == q.head_dim,
        "k_cache",
        "the cache must have q's head_dim",
    )?;
    check_heads("k_cache", q.heads, c.kv_heads)?;
    check_block_size(c)?;
    let cache = cache_elems("k_cache", c)?;
    let mut e = Extents::default();
    e.push(tensor("q", p.q, q, size, false)?);
    e.push(Extent::new("k_cache", p.k_cache, cache, size, false)?);
    e.push(Extent::new("v_cache", p.v_cache, cache, size, false)?);
    e.push(tensor("out", p.out, &p.out_desc, size, true)?);
    e.push_opt(lse(p.lse, q)?);
    e.push(Extent::new("kv_lens", p.kv_lens, q.batch, 4, false)?);
    let table = product("block_table", &[q.batch, p.max_blocks_per_seq])?;
    e.push(Extent::new("block_table", p.block_table, table, 4, false)?);
    Ok(e)
}

/// KNPU_KERNEL_KV_APPEND: extents `k_cache`, `v_cache`, `k_new`, `v_new`, `seq_lens`.
pub fn validate_kv_append(p: &KnpuKvAppendParams) -> Result<Extents, OpError> {
    let size = float_size("k_cache", p.dtype)?;
    check_reserved(p.reserved)?;
    let (c, n) = (&p.cache_desc, &p.new_desc);
    rule(
        (n.batch, n.heads, n.head_dim) == (c.batch, c.heads, c.head_dim),
        "k_new",
        "new keys must have the cache's batch, heads and head_dim",
    )?;
    rule(
        n.seq <= c.seq,
        "k_new",
        "more new positions than the cache holds",
    )?;
    check_distinct("k_cache", &tensor_axes(c))?;
    let mut e = Extents::default();
    e.push(tensor("k_cache", p.k_cache, c, size, true)?);
    e.push(tensor("v_cache", p.v_cache, c, size, true)?);
    e.push(tensor("k_new", p.k_new, n, size, false)?);
    e.push(tensor("v_new", p.v_new, n, size, false)?);
    e.push(Extent::new("seq_lens", p.seq_lens, n.batch, 4, false)?);
    Ok(e)
}

/// KNPU_KERNEL_PAGED_KV_APPEND: extents `k_cache`, `v_cache`, `k_new`, `v_new`,
/// `block_table`, `seq_lens`.
pub fn validate_paged_kv_append(p: &KnpuPagedKvAppendParams) -> Result<Extents, OpError> {
    let size = float_size("k_cache", p.dtype)?;
    check_reserved(p.reserved)?;
    let (c, n) = (&p.cache, &p.new_desc);
    check_block_size(c)?;
    rule(
        (n.heads, n.head_dim) == (c.kv_heads, c.head_dim),
        "k_new",
        "new keys must have the cache's kv_heads and head_dim",
    )?;
    rule(
        n.seq <= p.max_blocks_per_seq.saturating_mul(c.block_size),
        "k_new",
        "more new positions than the block table holds",
    )?;
    check_distinct("k_cache", &cache_axes(c))?;
    let cache = cache_elems("k_cache", c)?;
    let mut e = Extents::default();
    e.push(Extent::new("k_cache", p.k_cache, cache, size, true)?);
    e.push(Extent::new("v_cache", p.v_cache, cache, size, true)?);
    e.push(tensor("k_new", p.k_new, n, size, false)?);
    e.push(tensor("v_new", p.v_new, n, size, false)?);
    let table = product("block_table", &[n.batch, p.max_blocks_per_seq])?;
    e.push(Extent::new("block_table", p.block_table, table, 4, false)?);
    e.push(Extent::new("seq_lens", p.seq_lens, n.batch, 4, false)?);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_rule_accepts_the_empty_problem_only() {
        assert!(check_heads("k", 0, 0).is_ok());
        assert!(check_heads("k", 0, 4).is_ok());
        assert!(check_heads("k", 8, 2).is_ok());
        assert!(check_heads("k", 4, 0).is_err());
        assert!(check_heads("k", 4, 3).is_err());
    }

    #[test]
    fn distinct_elements_of_views() {
        assert!(distinct_elements([(2, 64), (4, 16), (2, 8), (8, 1)]));
        assert!(!distinct_elements([(2, 64), (4, 4), (2, 8), (8, 1)]));
        assert!(distinct_elements([(0, 0), (4, 0), (2, 0), (8, 1)]));
    }
}
