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

use half::{bf16, f16};
use knpu_driver_abi::*;
use knpu_kernels::attention::{
    attention, kv_append, paged_attention, paged_kv_append, AttentionInputs, AttentionParams,
    AttnElement, AttnMask, AttnTensor, NewKv, PagedAttentionInputs, PagedAttentionParams,
    PagedKvCache,
};

use super::{read_params, KernelContext, KernelDef};
use crate::config::TimingProfile;
use crate::exec::Fault;
use crate::profile::{compute_ns, transfer_ns};

/// The registry entry of KNPU_KERNEL_ATTENTION.
pub const ATTENTION: KernelDef = KernelDef {
    id: KNPU_KERNEL_ATTENTION,
    name: "attention",
    supports_dtype,
    validate: |b| parse_attention(b).map(|_| ()),
    run: run_attention,
    model_ns: model_attention,
};

/// The registry entry of KNPU_KERNEL_PAGED_ATTENTION.
pub const PAGED_ATTENTION: KernelDef = KernelDef {
    id: KNPU_KERNEL_PAGED_ATTENTION,
    name: "paged_attention",
    supports_dtype,
    validate: |b| parse_paged_attention(b).map(|_| ()),
    run: run_paged_attention,
    model_ns: model_paged_attention,
};

/// The registry entry of KNPU_KERNEL_KV_APPEND.
pub const KV_APPEND: KernelDef = KernelDef {
    id: KNPU_KERNEL_KV_APPEND,
    name: "kv_append",
    supports_dtype,
    validate: |b| parse_kv_append(b).map(|_| ()),
    run: run_kv_append,
    model_ns: model_kv_append,
};

/// The registry entry of KNPU_KERNEL_PAGED_KV_APPEND.
pub const PAGED_KV_APPEND: KernelDef = KernelDef {
    id: KNPU_KERNEL_PAGED_KV_APPEND,
    name: "paged_kv_append",
    supports_dtype,
    validate: |b| parse_paged_kv_append(b).map(|_| ()),
    run: run_paged_kv_append,
    model_ns: model_paged_kv_append,
};

fn supports_dtype(dtype: u32) -> bool {
    elem_size(dtype).is_some()
}

fn elem_size(dtype: u32) -> Option<u64> {
    match dtype {
        KNPU_DTYPE_F32 => Some(4),
        KNPU_DTYPE_F16 | KNPU_DTYPE_BF16 => Some(2),
        _ => None,
    }
}

/// A byte range of device memory an operand occupies.
#[derive(Debug, Clone, Copy)]
struct Range {
    name: &'static str,
    addr: u64,
    bytes: u64,
}

impl Range {
    /// `elems` elements of `size` bytes at `addr`; a non-empty range must start at a nonzero
    /// address aligned to its element size.
    fn new(name: &'static str, addr: u64, elems: usize, size: u64) -> Result<Range, KnpuStatus> {
        let bytes = (elems as u64)
            .checked_mul(size)
            .ok_or(KNPU_STATUS_INVALID_VALUE)?;
        if bytes > 0
            && (addr == 0 || !addr.is_multiple_of(size) || addr.checked_add(bytes).is_none())
        {
            return Err(KNPU_STATUS_INVALID_VALUE);
        }
        Ok(Range { name, addr, bytes })
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.bytes > 0
            && other.bytes > 0
            && self.addr < other.addr + other.bytes
            && other.addr < self.addr + self.bytes
    }
}

fn to_usize(v: u64) -> Result<usize, KnpuStatus> {
    usize::try_from(v).map_err(|_| KNPU_STATUS_INVALID_VALUE)
}

fn tensor(d: &KnpuAttnTensor) -> Result<AttnTensor, KnpuStatus> {
    Ok(AttnTensor {
        batch: to_usize(d.batch)?,
        seq: to_usize(d.seq)?,
        heads: to_usize(d.heads)?,
        head_dim: to_usize(d.head_dim)?,
        batch_stride: to_usize(d.batch_stride)?,
        seq_stride: to_usize(d.seq_stride)?,
        head_stride: to_usize(d.head_stride)?,
    })
}

fn cache(d: &KnpuPagedKvCache) -> Result<PagedKvCache, KnpuStatus> {
    Ok(PagedKvCache {
        num_blocks: to_usize(d.num_blocks)?,
        block_size: to_usize(d.block_size)?,
        kv_heads: to_usize(d.kv_heads)?,
        head_dim: to_usize(d.head_dim)?,
        block_stride: to_usize(d.block_stride)?,
        slot_stride: to_usize(d.slot_stride)?,
        head_stride: to_usize(d.head_stride)?,
    })
}

/// The range of a tensor described by `t`.
fn tensor_range(
    name: &'static str,
    addr: u64,
    t: &AttnTensor,
    size: u64,
) -> Result<Range, KnpuStatus> {
    let elems = t.required_len().map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
    Range::new(name, addr, elems, size)
}

/// `a * b * c` elements, overflow-checked.
fn product(dims: &[usize]) -> Result<usize, KnpuStatus> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(KNPU_STATUS_INVALID_VALUE)
}

/// An optional array of `elems` 4-byte values (address 0: absent).
fn optional_range(
    name: &'static str,
    addr: u64,
    elems: usize,
) -> Result<Option<Range>, KnpuStatus> {
    if addr == 0 {
        Ok(None)
    } else {
        Range::new(name, addr, elems, 4).map(Some)
    }
}

fn mask(flags: u32, window: u64, scale: f32) -> Result<AttnMask, KnpuStatus> {
    if flags & !KNPU_ATTENTION_CAUSAL != 0 || !scale.is_finite() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    Ok(AttnMask {
        causal: flags & KNPU_ATTENTION_CAUSAL != 0,
        window: (window != 0).then(|| to_usize(window)).transpose()?,
        scale: (scale != 0.0).then_some(scale),
    })
}

/// Validated KNPU_KERNEL_ATTENTION parameters.
struct Attention {
    dtype: u32,
    params: AttentionParams,
    q: Range,
    k: Range,
    v: Range,
    out: Range,
    lse: Option<Range>,
    kv_lens: Option<Range>,
}

fn parse_attention(bytes: &[u8]) -> Result<Attention, KnpuStatus> {
    // SAFETY: KnpuAttentionParams starts with struct_size and holds only integers and a float,
    // so every bit pattern is valid.
    let p: KnpuAttentionParams =
        unsafe { read_params(bytes, field_end!(KnpuAttentionParams, scale)) }?;
    let size = elem_size(p.dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    let params = AttentionParams {
        q: tensor(&p.q_desc)?,
        k: tensor(&p.k_desc)?,
        v: tensor(&p.v_desc)?,
        out: tensor(&p.out_desc)?,
        mask: mask(p.flags, p.window, p.scale)?,
    };
    let q = &params.q;
    Ok(Attention {
        dtype: p.dtype,
        q: tensor_range("q", p.q, &params.q, size)?,
        k: tensor_range("k", p.k, &params.k, size)?,
        v: tensor_range("v", p.v, &params.v, size)?,
        out: tensor_range("out", p.out, &params.out, size)?,
        lse: optional_range("lse", p.lse, product(&[q.batch, q.heads, q.seq])?)?,
        kv_lens: optional_range("kv_lens", p.kv_lens, q.batch)?,
        params,
    })
}

/// Validated KNPU_KERNEL_PAGED_ATTENTION parameters.
struct PagedAttention {
    dtype: u32,
    params: PagedAttentionParams,
    q: Range,
    k_cache: Range,
    v_cache: Range,
    out: Range,
    lse: Option<Range>,
    kv_lens: Range,
    block_table: Range,
}

fn parse_paged_attention(bytes: &[u8]) -> Result<PagedAttention, KnpuStatus> {
    // SAFETY: KnpuPagedAttentionParams starts with struct_size and holds only integers and a
    // float, so every bit pattern is valid.
    let p: KnpuPagedAttentionParams =
        unsafe { read_params(bytes, field_end!(KnpuPagedAttentionParams, scale)) }?;
    let size = elem_size(p.dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    let params = PagedAttentionParams {
        q: tensor(&p.q_desc)?,
        out: tensor(&p.out_desc)?,
        cache: cache(&p.cache)?,
        max_blocks_per_seq: to_usize(p.max_blocks_per_seq)?,
        mask: mask(p.flags, p.window, p.scale)?,
    };
    let q = &params.q;
    let cache_elems = params
        .cache
        .required_len()
        .map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
    Ok(PagedAttention {
        dtype: p.dtype,
        q: tensor_range("q", p.q, &params.q, size)?,
        k_cache: Range::new("k_cache", p.k_cache, cache_elems, size)?,
        v_cache: Range::new("v_cache", p.v_cache, cache_elems, size)?,
        out: tensor_range("out", p.out, &params.out, size)?,
        lse: optional_range("lse", p.lse, product(&[q.batch, q.heads, q.seq])?)?,
        kv_lens: Range::new("kv_lens", p.kv_lens, q.batch, 4)?,
        block_table: Range::new(
            "block_table",
            p.block_table,
            product(&[q.batch, params.max_blocks_per_seq])?,
            4,
        )?,
        params,
    })
}

/// Validated KNPU_KERNEL_KV_APPEND parameters.
struct KvAppend {
    dtype: u32,
    cache: AttnTensor,
    new: AttnTensor,
    k_cache: Range,
    v_cache: Range,
    k_new: Range,
    v_new: Range,
    seq_lens: Range,
}

fn parse_kv_append(bytes: &[u8]) -> Result<KvAppend, KnpuStatus> {
    // SAFETY: KnpuKvAppendParams starts with struct_size and holds only integers, so every bit
    // pattern is valid.
    let p: KnpuKvAppendParams =
        unsafe { read_params(bytes, field_end!(KnpuKvAppendParams, seq_lens)) }?;
    let size = elem_size(p.dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    if p.reserved != 0 {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    let cache = tensor(&p.cache_desc)?;
    let new = tensor(&p.new_desc)?;
    Ok(KvAppend {
        dtype: p.dtype,
        k_cache: tensor_range("k_cache", p.k_cache, &cache, size)?,
        v_cache: tensor_range("v_cache", p.v_cache, &cache, size)?,
        k_new: tensor_range("k_new", p.k_new, &new, size)?,
        v_new: tensor_range("v_new", p.v_new, &new, size)?,
        seq_lens: Range::new("seq_lens", p.seq_lens, new.batch, 4)?,
        cache,
        new,
    })
}

/// Validated KNPU_KERNEL_PAGED_KV_APPEND parameters.
struct PagedKvAppend {
    dtype: u32,
    cache: PagedKvCache,
    new: AttnTensor,
    max_blocks_per_seq: usize,
    k_cache: Range,
    v_cache: Range,
    k_new: Range,
    v_new: Range,
    block_table: Range,
    seq_lens: Range,
}

fn parse_paged_kv_append(bytes: &[u8]) -> Result<PagedKvAppend, KnpuStatus> {
    // SAFETY: KnpuPagedKvAppendParams starts with struct_size and holds only integers, so every
    // bit pattern is valid.
    let p: KnpuPagedKvAppendParams =
        unsafe { read_params(bytes, field_end!(KnpuPagedKvAppendParams, seq_lens)) }?;
    let size = elem_size(p.dtype).ok_or(KNPU_STATUS_NOT_SUPPORTED)?;
    if p.reserved != 0 {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    let cache = cache(&p.cache)?;
    let new = tensor(&p.new_desc)?;
    let max_blocks_per_seq = to_usize(p.max_blocks_per_seq)?;
    let cache_elems = cache
        .required_len()
        .map_err(|_| KNPU_STATUS_INVALID_VALUE)?;
    Ok(PagedKvAppend {
        dtype: p.dtype,
        k_cache: Range::new("k_cache", p.k_cache, cache_elems, size)?,
        v_cache: Range::new("v_cache", p.v_cache, cache_elems, size)?,
        k_new: tensor_range("k_new", p.k_new, &new, size)?,
        v_new: tensor_range("v_new", p.v_new, &new, size)?,
        block_table: Range::new(
            "block_table",
            p.block_table,
            product(&[new.batch, max_blocks_per_seq])?,
            4,
        )?,
        seq_lens: Range::new("seq_lens", p.seq_lens, new.batch, 4)?,
        cache,
        new,
        max_blocks_per_seq,
    })
}

/// An input operand: device memory read in place, or a private copy when it overlaps an
/// output.
enum Input<T> {
    Device(*const T, usize),
    Copy(Vec<T>),
}

impl<T> Input<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            // SAFETY: a resolved, aligned range of `n` elements that overlaps no output
            // (overlaps became copies). Commands on other queues may use the same memory
            // concurrently only if the submitter ordered them, as on any device.
            Input::Device(ptr, n) => unsafe { std::slice::from_raw_parts(*ptr, *n) },
            Input::Copy(v) => v,
        }
    }
}

/// Resolves input `r` of `T`s, copying it when it overlaps one of `outputs`.
fn input<T: Copy>(
    ctx: &KernelContext<'_>,
    r: &Range,
    outputs: &[Range],
) -> Result<Input<T>, Fault> {
    let n = (r.bytes / std::mem::size_of::<T>() as u64) as usize;
    if r.bytes == 0 {
        return Ok(Input::Copy(Vec::new()));
    }
    let ptr = ctx.resolve(r.name, r.addr, r.bytes)? as *const T;
    if outputs.iter().any(|o| o.overlaps(r)) {
        // SAFETY: `ptr` is `n` elements of a live allocation, aligned (addresses were checked
        // to be multiples of the element size, backings are 64-byte aligned); it is only read
        // here, before any output is written.
        let src = unsafe { std::slice::from_raw_parts(ptr, n) };
        return Ok(Input::Copy(src.to_vec()));
    }
    Ok(Input::Device(ptr, n))
}

/// Resolves the outputs, rejecting outputs that overlap each other.
fn outputs(ctx: &KernelContext<'_>, outs: &[Range]) -> Result<Vec<*mut u8>, Fault> {
    for (i, a) in outs.iter().enumerate() {
        for b in &outs[i + 1..] {
            if a.overlaps(b) {
                return Err(Fault::new(
                    KNPU_STATUS_KERNEL_FAULT,
                    format!("outputs `{}` and `{}` overlap", a.name, b.name),
                ));
            }
        }
    }
    outs.iter()
        .map(|r| {
            if r.bytes == 0 {
                Ok(std::ptr::NonNull::<u64>::dangling().as_ptr() as *mut u8)
            } else {
                ctx.resolve(r.name, r.addr, r.bytes)
            }
        })
        .collect()
}

/// # Safety
/// - `ptr` is a resolved (or, for 0 bytes, dangling and aligned) range of `r.bytes` bytes,
///   aligned for `T`, that no other live slice overlaps.
unsafe fn output_slice<'a, T>(ptr: *mut u8, r: &Range) -> &'a mut [T] {
    let n = (r.bytes / std::mem::size_of::<T>() as u64) as usize;
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(ptr as *mut T, n) }
}

fn kernel_fault(kernel: &str, e: knpu_kernels::KernelError) -> Fault {
    Fault::new(KNPU_STATUS_KERNEL_FAULT, format!("{kernel}: {e}"))
}

fn bad_params(kernel: &str, s: KnpuStatus) -> Fault {
    Fault::new(s, format!("bad {kernel} parameters"))
}

/// Runs `f` with the element type of `dtype`.
macro_rules! by_dtype {
    ($dtype:expr, $f:ident, $($arg:expr),*) => {
        match $dtype {
            KNPU_DTYPE_F32 => $f::<f32>($($arg),*),
            KNPU_DTYPE_F16 => $f::<f16>($($arg),*),
            KNPU_DTYPE_BF16 => $f::<bf16>($($arg),*),
            other => Err(Fault::new(
                KNPU_STATUS_NOT_SUPPORTED,
                format!("dtype {other} is not supported"),
            )),
        }
    };
}

/// Multiply-adds of attention with these sizes, saturating.
fn attention_work(batch: usize, q_heads: usize, q_len: usize, kv_len: usize, d: usize) -> u64 {
    [batch, q_heads, q_len, kv_len, d]
        .iter()
        .fold(1u64, |acc, &x| acc.saturating_mul(x as u64))
}

fn run_attention(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    let p = parse_attention(bytes).map_err(|s| bad_params("attention", s))?;
    by_dtype!(p.dtype, attention_typed, ctx, &p)
}

fn attention_typed<T: AttnElement>(ctx: &KernelContext<'_>, p: &Attention) -> Result<(), Fault> {
    let outs: Vec<Range> = std::iter::once(p.out).chain(p.lse).collect();
    let ptrs = outputs(ctx, &outs)?;
    let q = input::<T>(ctx, &p.q, &outs)?;
    let k = input::<T>(ctx, &p.k, &outs)?;
    let v = input::<T>(ctx, &p.v, &outs)?;
    let kv_lens = p
        .kv_lens
        .map(|r| input::<u32>(ctx, &r, &outs))
        .transpose()?;
    // SAFETY: resolved ranges aligned for their types (checked at parse); outputs overlap
    // neither each other (checked by `outputs`) nor the inputs (overlapping inputs were copied).
    let out = unsafe { output_slice::<T>(ptrs[0], &p.out) };
    // SAFETY: as above; lse is F32 with a 4-byte-aligned address.
    let lse = p.lse.map(|r| unsafe { output_slice::<f32>(ptrs[1], &r) });
    let a = &p.params;
    let work = attention_work(a.q.batch, a.q.heads, a.q.seq, a.k.seq, a.q.head_dim);
    let (q, k, v) = (q.as_slice(), k.as_slice(), v.as_slice());
    let kv_lens = kv_lens.as_ref().map(|l| l.as_slice());
    ctx.run(work.min(usize::MAX as u64) as usize, |par| {
        attention(a, AttentionInputs { q, k, v, kv_lens }, out, lse, par)
    })
    .map_err(|e| kernel_fault("attention", e))
}

fn run_paged_attention(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    let p = parse_paged_attention(bytes).map_err(|s| bad_params("paged_attention", s))?;
    by_dtype!(p.dtype, paged_attention_typed, ctx, &p)
}

fn paged_attention_typed<T: AttnElement>(
    ctx: &KernelContext<'_>,
    p: &PagedAttention,
) -> Result<(), Fault> {
    let outs: Vec<Range> = std::iter::once(p.out).chain(p.lse).collect();
    let ptrs = outputs(ctx, &outs)?;
    let q = input::<T>(ctx, &p.q, &outs)?;
    let kc = input::<T>(ctx, &p.k_cache, &outs)?;
    let vc = input::<T>(ctx, &p.v_cache, &outs)?;
    let table = input::<u32>(ctx, &p.block_table, &outs)?;
    let kv_lens = input::<u32>(ctx, &p.kv_lens, &outs)?;
    // SAFETY: resolved ranges aligned for their types (checked at parse); outputs overlap
    // neither each other (checked by `outputs`) nor the inputs (overlapping inputs were copied).
    let out = unsafe { output_slice::<T>(ptrs[0], &p.out) };
    // SAFETY: as above; lse is F32 with a 4-byte-aligned address.
    let lse = p.lse.map(|r| unsafe { output_slice::<f32>(ptrs[1], &r) });
    let a = &p.params;
    let cap = a.max_blocks_per_seq.saturating_mul(a.cache.block_size);
    let work = attention_work(a.q.batch, a.q.heads, a.q.seq, cap, a.q.head_dim);
    let (q, kc, vc) = (q.as_slice(), kc.as_slice(), vc.as_slice());
    let (table, kv_lens) = (table.as_slice(), kv_lens.as_slice());
    ctx.run(work.min(usize::MAX as u64) as usize, |par| {
        paged_attention(
            a,
            PagedAttentionInputs {
                q,
                k_cache: kc,
                v_cache: vc,
                block_table: table,
                kv_lens,
            },
            out,
            lse,
            par,
        )
    })
    .map_err(|e| kernel_fault("paged_attention", e))
}

fn run_kv_append(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    let p = parse_kv_append(bytes).map_err(|s| bad_params("kv_append", s))?;
    by_dtype!(p.dtype, kv_append_typed, ctx, &p)
}

fn kv_append_typed<T: AttnElement>(ctx: &KernelContext<'_>, p: &KvAppend) -> Result<(), Fault> {
    let outs = [p.k_cache, p.v_cache];
    let ptrs = outputs(ctx, &outs)?;
    let k_new = input::<T>(ctx, &p.k_new, &outs)?;
    let v_new = input::<T>(ctx, &p.v_new, &outs)?;
    let seq_lens = input::<u32>(ctx, &p.seq_lens, &outs)?;
    // SAFETY: resolved, aligned ranges that overlap neither each other nor the inputs.
    let (kc, vc) = unsafe {
        (
            output_slice::<T>(ptrs[0], &p.k_cache),
            output_slice::<T>(ptrs[1], &p.v_cache),
        )
    };
    kv_append(
        &p.cache,
        kc,
        vc,
        NewKv {
            shape: p.new,
            k: k_new.as_slice(),
            v: v_new.as_slice(),
        },
        seq_lens.as_slice(),
    )
    .map_err(|e| kernel_fault("kv_append", e))
}

fn run_paged_kv_append(ctx: &KernelContext<'_>, bytes: &[u8]) -> Result<(), Fault> {
    let p = parse_paged_kv_append(bytes).map_err(|s| bad_params("paged_kv_append", s))?;
    by_dtype!(p.dtype, paged_kv_append_typed, ctx, &p)
}

fn paged_kv_append_typed<T: AttnElement>(
    ctx: &KernelContext<'_>,
    p: &PagedKvAppend,
) -> Result<(), Fault> {
    let outs = [p.k_cache, p.v_cache];
    let ptrs = outputs(ctx, &outs)?;
    let k_new = input::<T>(ctx, &p.k_new, &outs)?;
    let v_new = input::<T>(ctx, &p.v_new, &outs)?;
    let table = input::<u32>(ctx, &p.block_table, &outs)?;
    let seq_lens = input::<u32>(ctx, &p.seq_lens, &outs)?;
    // SAFETY: resolved, aligned ranges that overlap neither each other nor the inputs.
    let (kc, vc) = unsafe {
        (
            output_slice::<T>(ptrs[0], &p.k_cache),
            output_slice::<T>(ptrs[1], &p.v_cache),
        )
    };
    paged_kv_append(
        &p.cache,
        kc,
        vc,
        NewKv {
            shape: p.new,
            k: k_new.as_slice(),
            v: v_new.as_slice(),
        },
        table.as_slice(),
        p.max_blocks_per_seq,
        seq_lens.as_slice(),
    )
    .map_err(|e| kernel_fault("paged_kv_append", e))
}

fn peak(dtype: u32, t: &TimingProfile) -> u64 {
    if dtype == KNPU_DTYPE_F32 {
        t.peak_f32_mflops
    } else {
        t.peak_f16_mflops
    }
}

fn total_bytes(ranges: &[Option<Range>]) -> u64 {
    ranges
        .iter()
        .flatten()
        .fold(0u64, |acc, r| acc.saturating_add(r.bytes))
}

fn model_attention(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(p) = parse_attention(bytes) else {
        return 0;
    };
    let a = &p.params;
    let flops =
        attention_work(a.q.batch, a.q.heads, a.q.seq, a.k.seq, a.q.head_dim).saturating_mul(4);
    let moved = total_bytes(&[Some(p.q), Some(p.k), Some(p.v), Some(p.out), p.lse]);
    transfer_ns(moved, t.memory_bandwidth_mbps).max(compute_ns(flops, peak(p.dtype, t)))
}

fn model_paged_attention(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(p) = parse_paged_attention(bytes) else {
        return 0;
    };
    let a = &p.params;
    let cap = a.max_blocks_per_seq.saturating_mul(a.cache.block_size);
    let flops = attention_work(a.q.batch, a.q.heads, a.q.seq, cap, a.q.head_dim).saturating_mul(4);
    let moved = total_bytes(&[Some(p.q), Some(p.out), p.lse])
        .saturating_add(transfer_bytes_of_keys(a, p.dtype));
    transfer_ns(moved, t.memory_bandwidth_mbps).max(compute_ns(flops, peak(p.dtype, t)))
}

/// Bytes of keys and values a paged attention reads at most: the table's capacity per
/// sequence, not the whole cache.
fn transfer_bytes_of_keys(a: &PagedAttentionParams, dtype: u32) -> u64 {
    let size = elem_size(dtype).unwrap_or(4);
    [
        a.q.batch,
        a.max_blocks_per_seq,
        a.cache.block_size,
        a.cache.kv_heads,
        a.cache.head_dim,
    ]
    .iter()
    .fold(2 * size, |acc, &x| acc.saturating_mul(x as u64))
}

fn model_kv_append(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(p) = parse_kv_append(bytes) else {
        return 0;
    };
    transfer_ns(
        total_bytes(&[Some(p.k_new), Some(p.v_new)]).saturating_mul(2),
        t.memory_bandwidth_mbps,
    )
}

fn model_paged_kv_append(bytes: &[u8], t: &TimingProfile) -> u64 {
    let Ok(p) = parse_paged_kv_append(bytes) else {
        return 0;
    };
    transfer_ns(
        total_bytes(&[Some(p.k_new), Some(p.v_new)]).saturating_mul(2),
        t.memory_bandwidth_mbps,
    )
}
