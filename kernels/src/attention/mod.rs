//! Fused attention: `softmax(scale * Q K^T + mask) V` in tiles with an online softmax.
//!
//! The `seq x seq` score matrix is never materialised: each task keeps one tile of scores, one
//! block of query rows and its output accumulator, so memory grows with the sequence only
//! through the inputs and outputs ([`attention_scratch_bytes`] reports the rest). Query heads
//! that share a key/value head (grouped-query and multi-query attention) are processed
//! together against each key tile, so K and V are read once per group and never copied.
//!
//! Tensors are described by [`AttnTensor`]: a shape `[batch, seq, heads, head_dim]` plus
//! element strides for batch, sequence and head, so `[batch, seq, heads, head_dim]` and
//! `[batch, heads, seq, head_dim]` memory (and slices of larger buffers) work without copies.
//! Keys and values come either from such a tensor (a contiguous per-sequence cache) or from a
//! paged cache ([`PagedKvCache`] plus a block table per sequence), see [`paged_attention`].
//!
//! Masks: causal with the query block ending at the last key (query `i` of `q_len` sees keys
//! `<= kv_len - q_len + i`, which serves chunked prefill and decode), per-sequence key lengths
//! for padded batches, and a sliding window. A row that sees no key yields zeros (and a
//! log-sum-exp of `-inf`), never NaN.
//!
//! When there are fewer (sequence, kv head, query block) units than threads, as in decode, the
//! key range of each unit is split across tasks and the partial results are merged by their
//! log-sum-exp (`decode.rs`).
//!
//! This module validates everything (shapes, strides, slice lengths, cache lengths and block
//! tables) before any work; the tile kernels under `simd/` trust what it checked.

mod decode;
mod flash;
mod kv_cache;
mod simd;

pub use kv_cache::{kv_append, paged_kv_append, NewKv};

use crate::error::KernelError;
use crate::isa::Exec;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// The element types attention runs on: `f32`, `f16` and `bf16`, all accumulated in `f32`.
pub trait AttnElement: Copy + Send + Sync + 'static + private::Sealed {
    /// The type's name as benchmark records spell it (`"f32"`, `"f16"`, `"bf16"`).
    const NAME: &'static str;
    /// Widens one value to `f32`.
    fn to_f32(self) -> f32;
    /// Rounds an `f32` to this type (round to nearest even).
    fn from_f32(v: f32) -> Self;
    /// The slice as its storage format, so tiles are read in place (f32) or widened by the
    /// instruction-set path's converter (f16, bf16 bits).
    fn view(src: &[Self]) -> ElemSlice<'_>;
}

/// A slice of attention elements by storage format.
#[derive(Debug, Clone, Copy)]
pub enum ElemSlice<'a> {
    /// IEEE single precision.
    F32(&'a [f32]),
    /// IEEE half precision, as bits.
    F16(&'a [u16]),
    /// bfloat16, as bits.
    Bf16(&'a [u16]),
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

impl AttnElement for f32 {
    const NAME: &'static str = "f32";
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn view(src: &[Self]) -> ElemSlice<'_> {
        ElemSlice::F32(src)
    }
}

/// The 16-bit floats: conversions from `half`, viewed as their bits.
macro_rules! half_attn_element {
    ($($t:ident => $name:literal, $view:ident;)*) => {$(
        impl AttnElement for $t {
            const NAME: &'static str = $name;
            fn to_f32(self) -> f32 {
                $t::to_f32(self)
            }
            fn from_f32(v: f32) -> Self {
                $t::from_f32(v)
            }
            fn view(src: &[Self]) -> ElemSlice<'_> {
                ElemSlice::$view(src.reinterpret_cast())
            }
        }
    )*};
}

half_attn_element! {
    f16 => "f16", F16;
    bf16 => "bf16", Bf16;
}

/// A strided 4-D attention tensor: logical shape `[batch, seq, heads, head_dim]`, element
/// strides for the first three axes; `head_dim` is contiguous (stride 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnTensor {
    /// Number of sequences.
    pub batch: usize,
    /// Positions per sequence (for a cache: its capacity).
    pub seq: usize,
    /// Number of heads.
    pub heads: usize,
    /// Elements per head vector.
    pub head_dim: usize,
    /// Elements between consecutive sequences.
    pub batch_stride: usize,
    /// Elements between consecutive positions.
    pub seq_stride: usize,
    /// Elements between consecutive heads.
    pub head_stride: usize,
}

impl AttnTensor {
    /// A dense tensor stored as `[batch, seq, heads, head_dim]` (flash-attn's layout).
    ///
    /// Strides saturate rather than overflow, so this never panics; a view too large for
    /// memory is then refused by [`AttnTensor::required_len`] and by every entry point.
    pub fn bshd(batch: usize, seq: usize, heads: usize, head_dim: usize) -> AttnTensor {
        AttnTensor {
            batch,
            seq,
            heads,
            head_dim,
            batch_stride: seq.saturating_mul(heads).saturating_mul(head_dim),
            seq_stride: heads.saturating_mul(head_dim),
            head_stride: head_dim,
        }
    }

    /// A dense tensor stored as `[batch, heads, seq, head_dim]` (PyTorch's
    /// `scaled_dot_product_attention` layout). Strides saturate as in [`AttnTensor::bshd`].
    pub fn bhsd(batch: usize, seq: usize, heads: usize, head_dim: usize) -> AttnTensor {
        AttnTensor {
            batch,
            seq,
            heads,
            head_dim,
            batch_stride: heads.saturating_mul(seq).saturating_mul(head_dim),
            seq_stride: head_dim,
            head_stride: seq.saturating_mul(head_dim),
        }
    }

    /// The element offset of `[b, s, h, 0]`.
    pub(crate) fn offset(&self, b: usize, s: usize, h: usize) -> usize {
        b * self.batch_stride + s * self.seq_stride + h * self.head_stride
    }

    /// The `(extent, stride)` of each axis, outermost first.
    fn axes(&self) -> [(usize, usize); 4] {
        [
            (self.batch, self.batch_stride),
            (self.seq, self.seq_stride),
            (self.heads, self.head_stride),
            (self.head_dim, 1),
        ]
    }

    /// Elements a slice must have to hold every addressed element (0 for an empty tensor).
    pub fn required_len(&self) -> Result<usize, KernelError> {
        span(&self.axes(), "tensor")
    }

    /// Rejects strides under which two distinct elements share memory (needed for outputs
    /// that parallel tasks write).
    pub(crate) fn check_no_overlap(&self, operand: &'static str) -> Result<(), KernelError> {
        no_overlap(&self.axes(), operand)
    }
}

/// `1 + sum (extent - 1) * stride`, checked for overflow; 0 when any extent is 0.
pub(crate) fn span(dims: &[(usize, usize)], operand: &'static str) -> Result<usize, KernelError> {
    if dims.iter().any(|&(n, _)| n == 0) {
        return Ok(0);
    }
    let mut last = 0usize;
    for &(n, s) in dims {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| KernelError::BadStride {
                operand,
                detail: "shape times strides overflows usize".into(),
            })?;
    }
    last.checked_add(1).ok_or_else(|| KernelError::BadStride {
        operand,
        detail: "shape times strides overflows usize".into(),
    })
}

/// Checks that `(extent, stride)` axes never map two indices to one element: sorted by stride,
/// each axis must step past everything the smaller axes cover.
pub(crate) fn no_overlap(
    dims: &[(usize, usize)],
    operand: &'static str,
) -> Result<(), KernelError> {
    if dims.iter().any(|&(n, _)| n == 0) {
        return Ok(());
    }
    let mut axes: Vec<(usize, usize)> = dims.iter().copied().filter(|&(n, _)| n > 1).collect();
    axes.sort_by_key(|&(_, s)| s);
    let mut covered = 1usize;
    for (n, s) in axes {
        if s < covered {
            return Err(KernelError::BadStride {
                operand,
                detail: format!(
                    "stride {s} is smaller than the {covered} elements the inner axes span, \
                     so outputs would overlap"
                ),
            });
        }
        covered = s.saturating_mul(n);
    }
    Ok(())
}

/// A paged key/value cache: `num_blocks` blocks of `block_size` positions, each position
/// holding `kv_heads` vectors of `head_dim` elements; sequences own blocks through a block
/// table: sequence `b`'s position `p` lives in block
/// `block_table[b * max_blocks_per_seq + p / block_size]`, slot `p % block_size`. Strides are in
/// elements; `head_dim` is contiguous. vLLM's `[num_blocks, block_size, heads, head_dim]` is
/// [`PagedKvCache::dense`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedKvCache {
    /// Blocks in the cache.
    pub num_blocks: usize,
    /// Positions per block.
    pub block_size: usize,
    /// Key/value heads per position.
    pub kv_heads: usize,
    /// Elements per head vector.
    pub head_dim: usize,
    /// Elements between consecutive blocks.
    pub block_stride: usize,
    /// Elements between consecutive positions of a block.
    pub slot_stride: usize,
    /// Elements between consecutive heads.
    pub head_stride: usize,
}

impl PagedKvCache {
    /// A dense cache stored as `[num_blocks, block_size, kv_heads, head_dim]`; strides
    /// saturate as in [`AttnTensor::bshd`].
    pub fn dense(
        num_blocks: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> PagedKvCache {
        PagedKvCache {
            num_blocks,
            block_size,
            kv_heads,
            head_dim,
            block_stride: block_size.saturating_mul(kv_heads).saturating_mul(head_dim),
            slot_stride: kv_heads.saturating_mul(head_dim),
            head_stride: head_dim,
        }
    }

    /// Elements a cache slice must have.
    pub fn required_len(&self) -> Result<usize, KernelError> {
        span(
            &[
                (self.num_blocks, self.block_stride),
                (self.block_size, self.slot_stride),
                (self.kv_heads, self.head_stride),
                (self.head_dim, 1),
            ],
            "cache",
        )
    }
}

/// Masking and scaling options shared by every attention entry point.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttnMask {
    /// Query `i` of `q_len` sees only keys `j <= kv_len - q_len + i` (its position; bottom-right
    /// aligned, which serves chunked prefill and decode).
    pub causal: bool,
    /// Sliding window `w`: a query at position `p` sees keys `j > p - w` (and, when not
    /// causal, `j < p + w`). `Some(0)` is rejected.
    pub window: Option<usize>,
    /// Softmax scale; `None` means `1 / sqrt(head_dim)`. Must be finite and nonzero.
    pub scale: Option<f32>,
}

/// An attention problem over contiguous (strided) K and V.
///
/// `q` and `out` are `[batch, q_len, q_heads, head_dim]`; `k` and `v` are
/// `[batch, kv_len, kv_heads, head_dim]` with `kv_heads` dividing `q_heads` (query head `h`
/// reads key/value head `h / (q_heads / kv_heads)`). With per-sequence key lengths, sequence
/// `b` uses the first `kv_lens[b] <= kv_len` keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Queries.
    pub q: AttnTensor,
    /// Keys.
    pub k: AttnTensor,
    /// Values.
    pub v: AttnTensor,
    /// Output, same shape as `q`.
    pub out: AttnTensor,
    /// Masks and scale.
    pub mask: AttnMask,
}

impl AttentionParams {
    /// Queries and output laid out as `q`, keys and values as `kv`.
    pub fn new(q: AttnTensor, kv: AttnTensor, mask: AttnMask) -> AttentionParams {
        AttentionParams {
            q,
            k: kv,
            v: kv,
            out: q,
            mask,
        }
    }

    /// Dense `[batch, seq, heads, head_dim]` tensors for every operand (flash-attn's layout;
    /// for PyTorch's `[batch, heads, seq, head_dim]`, [`AttentionParams::new`] with
    /// [`AttnTensor::bhsd`] operands).
    pub fn bshd(
        batch: usize,
        q_len: usize,
        kv_len: usize,
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
        mask: AttnMask,
    ) -> AttentionParams {
        AttentionParams::new(
            AttnTensor::bshd(batch, q_len, q_heads, head_dim),
            AttnTensor::bshd(batch, kv_len, kv_heads, head_dim),
            mask,
        )
    }
}

/// An attention problem whose K and V live in a paged cache.
///
/// `q` and `out` are `[batch, q_len, q_heads, head_dim]`. Sequence `b` has `kv_lens[b]` keys;
/// its position `p` lives in block `block_table[b * max_blocks_per_seq + p / block_size]` at
/// slot `p % block_size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PagedAttentionParams {
    /// Queries.
    pub q: AttnTensor,
    /// Output, same shape as `q`.
    pub out: AttnTensor,
    /// The layout of both the key and the value cache.
    pub cache: PagedKvCache,
    /// Row length of the block table.
    pub max_blocks_per_seq: usize,
    /// Masks and scale.
    pub mask: AttnMask,
}

/// Where a task reads keys and values from, already validated.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KvSource<'a> {
    /// A strided `[batch, seq, heads, head_dim]` tensor (the same strides for K and V).
    Contiguous { k: AttnTensor, v: AttnTensor },
    /// A paged cache and its block table.
    Paged {
        cache: PagedKvCache,
        table: &'a [u32],
        max_blocks: usize,
    },
}

/// The validated problem the tile engine runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Problem<'a> {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub q_len: usize,
    /// Keys addressable per sequence (tensor length or table capacity).
    pub kv_cap: usize,
    pub q: AttnTensor,
    pub out: AttnTensor,
    pub kv: KvSource<'a>,
    pub kv_lens: Option<&'a [u32]>,
    pub causal: bool,
    pub window: Option<usize>,
    pub scale: f32,
}

impl Problem<'_> {
    /// Keys sequence `b` has.
    pub fn kv_len(&self, b: usize) -> usize {
        self.kv_lens.map_or(self.kv_cap, |l| l[b] as usize)
    }

    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.q_heads / self.kv_heads
    }
}

fn bad_shape(detail: String) -> KernelError {
    KernelError::BadShape { detail }
}

use crate::error::check_len;

fn check_mask(mask: &AttnMask) -> Result<(), KernelError> {
    if mask.window == Some(0) {
        return Err(bad_shape(
            "a sliding window of 0 keys hides every key; use None for no window".into(),
        ));
    }
    match mask.scale {
        Some(s) if !s.is_finite() => Err(bad_shape(format!("softmax scale {s} is not finite"))),
        _ => Ok(()),
    }
}

fn check_q_out(q: &AttnTensor, out: &AttnTensor) -> Result<(), KernelError> {
    if q.head_dim == 0 {
        return Err(bad_shape("head_dim is 0".into()));
    }
    if (q.batch, q.seq, q.heads, q.head_dim) != (out.batch, out.seq, out.heads, out.head_dim) {
        return Err(bad_shape(format!(
            "out shape [{}, {}, {}, {}] differs from q shape [{}, {}, {}, {}]",
            out.batch, out.seq, out.heads, out.head_dim, q.batch, q.seq, q.heads, q.head_dim
        )));
    }
    out.check_no_overlap("out")
}

fn check_heads(q_heads: usize, kv_heads: usize) -> Result<(), KernelError> {
    if kv_heads == 0 && q_heads > 0 {
        return Err(bad_shape("kv_heads is 0 but q_heads is not".into()));
    }
    if kv_heads > 0 && !q_heads.is_multiple_of(kv_heads) {
        return Err(bad_shape(format!(
            "kv_heads ({kv_heads}) must divide q_heads ({q_heads}) for grouped-query attention"
        )));
    }
    Ok(())
}

fn check_lse(
    lse: &Option<&mut [f32]>,
    batch: usize,
    heads: usize,
    q_len: usize,
) -> Result<(), KernelError> {
    if let Some(l) = lse {
        let need = batch
            .checked_mul(heads)
            .and_then(|x| x.checked_mul(q_len))
            .ok_or_else(|| bad_shape("lse size overflows usize".into()))?;
        check_len("lse", need, l.len())?;
    }
    Ok(())
}

fn check_kv_lens(kv_lens: Option<&[u32]>, batch: usize, cap: usize) -> Result<(), KernelError> {
    if let Some(lens) = kv_lens {
        check_len("kv_lens", batch, lens.len())?;
        for (b, &l) in lens[..batch].iter().enumerate() {
            if l as usize > cap {
                return Err(bad_shape(format!(
                    "kv_lens[{b}] = {l} is past the {cap} keys the cache holds"
                )));
            }
        }
    }
    Ok(())
}

fn scale_for(mask: &AttnMask, head_dim: usize) -> f32 {
    mask.scale
        .unwrap_or_else(|| 1.0 / (head_dim.max(1) as f32).sqrt())
}

/// The inputs of [`attention`]: queries, keys and values laid out as the
/// [`AttentionParams`] say, and optionally each sequence's key count (keys past it are
/// padding, masked).
#[derive(Debug, Clone, Copy)]
pub struct AttentionInputs<'a, T> {
    /// Queries, `[batch, q_len, q_heads, head_dim]` through `params.q`.
    pub q: &'a [T],
    /// Keys, through `params.k`.
    pub k: &'a [T],
    /// Values, through `params.v`.
    pub v: &'a [T],
    /// Each sequence's key count, `[batch]`; `None`: every key of `k` is valid.
    pub kv_lens: Option<&'a [u32]>,
}

impl<'a, T> AttentionInputs<'a, T> {
    /// Queries, keys and values with every key valid.
    pub fn new(q: &'a [T], k: &'a [T], v: &'a [T]) -> Self {
        AttentionInputs {
            q,
            k,
            v,
            kv_lens: None,
        }
    }
}

/// The inputs of [`paged_attention`]: queries, the key and value caches, the block table
/// `[batch, max_blocks_per_seq]` and each sequence's key count.
#[derive(Debug, Clone, Copy)]
pub struct PagedAttentionInputs<'a, T> {
    /// Queries, through `params.q`.
    pub q: &'a [T],
    /// The key cache, through `params.cache`.
    pub k_cache: &'a [T],
    /// The value cache, through `params.cache`.
    pub v_cache: &'a [T],
    /// Block `i` of sequence `b` is cache block `block_table[b * max_blocks_per_seq + i]`.
    pub block_table: &'a [u32],
    /// Each sequence's key count, `[batch]`.
    pub kv_lens: &'a [u32],
}

/// Computes attention over strided K and V on the path and threads `exec` names (a
/// [`Parallelism`](crate::Parallelism) alone: the host's best instruction set; a named path
/// must be supported by the host).
///
/// `lse`, when given, receives `m + ln(sum)` of each row's scaled, masked scores as a
/// `[batch, q_heads, q_len]` array (`-inf` for a row that sees no key). `inputs.kv_lens`, when
/// given, holds each sequence's key count (padding beyond it is masked).
pub fn attention<T: AttnElement>(
    params: &AttentionParams,
    inputs: AttentionInputs<'_, T>,
    out: &mut [T],
    lse: Option<&mut [f32]>,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    let AttentionInputs { q, k, v, kv_lens } = inputs;
    let p = validate_contiguous(params, q, k, v, out, &lse, kv_lens)?;
    isa.require()?;
    flash::run(isa, &p, flash::Inputs { q, k, v }, out, lse, par);
    Ok(())
}

fn validate_contiguous<'a, T>(
    params: &AttentionParams,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &[T],
    lse: &Option<&mut [f32]>,
    kv_lens: Option<&'a [u32]>,
) -> Result<Problem<'a>, KernelError> {
    let AttentionParams {
        q: qt,
        k: kt,
        v: vt,
        out: ot,
        mask,
    } = params;
    check_mask(mask)?;
    check_q_out(qt, ot)?;
    if (kt.batch, kt.seq, kt.heads, kt.head_dim) != (vt.batch, vt.seq, vt.heads, vt.head_dim) {
        return Err(bad_shape(format!(
            "v shape [{}, {}, {}, {}] differs from k shape [{}, {}, {}, {}]",
            vt.batch, vt.seq, vt.heads, vt.head_dim, kt.batch, kt.seq, kt.heads, kt.head_dim
        )));
    }
    if kt.batch != qt.batch {
        return Err(bad_shape(format!(
            "k has batch {} but q has batch {}",
            kt.batch, qt.batch
        )));
    }
    if kt.head_dim != qt.head_dim {
        return Err(bad_shape(format!(
            "k/v head_dim {} differs from q head_dim {}",
            kt.head_dim, qt.head_dim
        )));
    }
    check_heads(qt.heads, kt.heads)?;
    check_len("q", qt.required_len()?, q.len())?;
    check_len("k", kt.required_len()?, k.len())?;
    check_len("v", vt.required_len()?, v.len())?;
    check_len("out", ot.required_len()?, out.len())?;
    check_lse(lse, qt.batch, qt.heads, qt.seq)?;
    check_kv_lens(kv_lens, qt.batch, kt.seq)?;
    Ok(Problem {
        batch: qt.batch,
        q_heads: qt.heads,
        kv_heads: kt.heads,
        head_dim: qt.head_dim,
        q_len: qt.seq,
        kv_cap: kt.seq,
        q: *qt,
        out: *ot,
        kv: KvSource::Contiguous { k: *kt, v: *vt },
        kv_lens,
        causal: mask.causal,
        window: mask.window,
        scale: scale_for(mask, qt.head_dim),
    })
}

/// Computes attention with K and V read from a paged cache through a block table, on the path
/// and threads `exec` names (as [`attention`]).
///
/// `inputs.block_table` is `[batch, max_blocks_per_seq]`; `inputs.kv_lens[b]` keys of sequence
/// `b` are read, and every table entry those keys use must name a block of the cache. `lse` is
/// as in [`attention`].
pub fn paged_attention<T: AttnElement>(
    params: &PagedAttentionParams,
    inputs: PagedAttentionInputs<'_, T>,
    out: &mut [T],
    lse: Option<&mut [f32]>,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    let PagedAttentionInputs {
        q,
        k_cache,
        v_cache,
        block_table,
        kv_lens,
    } = inputs;
    let PagedAttentionParams {
        q: qt,
        out: ot,
        cache,
        max_blocks_per_seq,
        mask,
    } = params;
    check_mask(mask)?;
    check_q_out(qt, ot)?;
    if cache.head_dim != qt.head_dim {
        return Err(bad_shape(format!(
            "cache head_dim {} differs from q head_dim {}",
            cache.head_dim, qt.head_dim
        )));
    }
    if cache.block_size == 0 {
        return Err(bad_shape("cache block_size is 0".into()));
    }
    check_heads(qt.heads, cache.kv_heads)?;
    check_len("q", qt.required_len()?, q.len())?;
    check_len("out", ot.required_len()?, out.len())?;
    let cache_len = cache.required_len()?;
    check_len("k_cache", cache_len, k_cache.len())?;
    check_len("v_cache", cache_len, v_cache.len())?;
    check_lse(&lse, qt.batch, qt.heads, qt.seq)?;
    let cap = max_blocks_per_seq
        .checked_mul(cache.block_size)
        .ok_or_else(|| bad_shape("max_blocks_per_seq * block_size overflows usize".into()))?;
    check_kv_lens(Some(kv_lens), qt.batch, cap)?;
    kv_cache::check_block_table(cache, block_table, *max_blocks_per_seq, kv_lens, qt.batch)?;
    isa.require()?;
    let p = Problem {
        batch: qt.batch,
        q_heads: qt.heads,
        kv_heads: cache.kv_heads,
        head_dim: qt.head_dim,
        q_len: qt.seq,
        kv_cap: cap,
        q: *qt,
        out: *ot,
        kv: KvSource::Paged {
            cache: *cache,
            table: block_table,
            max_blocks: *max_blocks_per_seq,
        },
        kv_lens: Some(kv_lens),
        causal: mask.causal,
        window: mask.window,
        scale: scale_for(mask, qt.head_dim),
    };
    let io = flash::Inputs {
        q,
        k: k_cache,
        v: v_cache,
    };
    flash::run(isa, &p, io, out, lse, par);
    Ok(())
}

/// Bytes of working memory [`attention`] needs for a problem of this shape with `threads`
/// tasks: per-task tiles, plus split-KV partial results when the key range is split. It does
/// not grow with the sequence length except through the bounded number of splits. Each thread
/// keeps the tiles of its last call for the next one (the largest it has needed), so this
/// memory stays allocated between calls.
pub fn attention_scratch_bytes(
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    q_len: usize,
    kv_len: usize,
    threads: usize,
) -> usize {
    if kv_heads == 0 || !q_heads.is_multiple_of(kv_heads) {
        return 0;
    }
    let plan = flash::Plan::new(
        batch,
        q_heads / kv_heads,
        kv_heads,
        head_dim,
        q_len,
        kv_len,
        threads.max(1),
    );
    plan.scratch_bytes(threads.max(1))
}
