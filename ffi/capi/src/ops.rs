//! `knpu_ops.h`: every op of the runtime beyond GEMM, as descriptor calls on a stream.
//!
//! Each call is the same three steps, and adds no rule of its own:
//! 1. the descriptor's fields and the device pointers fill the op's driver-ABI parameter
//!    struct, and the op definition (`knpu_driver_abi::ops`) validates it, which checks every
//!    field and returns the byte extent of every operand;
//! 2. each operand is resolved against the live allocations with exactly that extent (module
//!    `memory`), so a pointer outside them, or an operand past the end of its allocation, is
//!    refused before anything is queued;
//! 3. the runtime's typed launcher (`knpu::ops`) runs on views of those bytes, after the
//!    element types are dispatched to Rust types.
//!
//! The enums of the header carry the ABI's numbers (checked by the `header_matches_exports`
//! test), so they reach the op definitions unchanged. Adding an op is one exported function:
//! fill its parameter struct, validate, and call its launcher inside [`launch`].

use crate::error::{call, invalid, Result};
use crate::header::*;
use crate::memory::{with_operands, Operand, Written, MAX_OPERANDS};
use crate::stream::stream_arg;
use half::{bf16, f16};
use knpu::abi::ops::{self as defs, attention as attn_rules, llm, quant, sample, Extent, Extents};
use knpu::abi::{self, SizedStruct};
use knpu::ops::{
    self, ActQuant, Activation, AttentionArgs, AttnMask, AttnTensor, BinaryOp, Broadcast,
    PagedAttentionArgs, PagedKvCache, QMatmul, QWeights, QuantFormat, Rope, RopePositions,
    SampleParams, W8A8Gemm,
};
use knpu::{AsDeviceSlice, AsDeviceSliceMut, DType, DeviceSlice, Error, Stream};
use std::ffi::c_void;

/// Reads an op descriptor: not NULL, aligned, and `structSize` at least the struct this
/// library knows (a caller's newer, longer struct is read up to what this library knows).
///
/// # Safety
/// - `desc`, when not NULL, points to `structSize` readable bytes (the C caller's promise).
unsafe fn read_desc<T: Copy>(desc: *const T, name: &str) -> Result<T> {
    let p = crate::error::out_ptr(desc as *mut T, "desc")?;
    // SAFETY: non-null and aligned (checked); every descriptor starts with `size_t
    // structSize`, readable by the caller's promise.
    let size = unsafe { p.cast::<usize>().read() };
    let want = std::mem::size_of::<T>();
    if size < want {
        return Err(invalid(format!(
            "desc->structSize is {size}, less than sizeof({name}) = {want}; set it with \
             KNPU_OPS_DESC_INIT({name})"
        )));
    }
    // SAFETY: as above; the caller's struct holds at least `want` bytes.
    Ok(unsafe { p.read() })
}

/// A device pointer as the device address the parameter structs hold (NULL is 0, "not
/// given" for an optional operand).
fn addr(p: *const c_void) -> u64 {
    p as u64
}

/// A size of the ABI as a host size (the crate is 64-bit only).
fn us(v: u64) -> usize {
    v as usize
}

/// The operands of one validated op: a view of exactly each operand's extent.
struct Views<'v, 'a> {
    extents: &'v [Extent],
    views: &'v [DeviceSlice<'a, u8>],
}

impl<'a> Views<'_, 'a> {
    /// Operand `name` (given, or the op definition would have refused the call).
    fn get<T: DType>(&self, name: &str) -> Result<DeviceSlice<'a, T>> {
        self.opt(name)?.ok_or_else(|| Error::Internal {
            detail: format!("the op definition returned no extent for operand `{name}`"),
        })
    }

    /// Optional operand `name`: `None` when it was not given.
    fn opt<T: DType>(&self, name: &str) -> Result<Option<DeviceSlice<'a, T>>> {
        self.opt_u64_or(name, |v| v.cast::<T>())
    }

    /// Optional operand `name` of `u64`s (a counter, which is no tensor element type).
    fn opt_u64(&self, name: &str) -> Result<Option<DeviceSlice<'a, u64>>> {
        self.opt_u64_or(name, |v| v.cast::<u64>())
    }

    fn opt_u64_or<T>(
        &self,
        name: &str,
        cast: impl FnOnce(DeviceSlice<'a, u8>) -> Result<DeviceSlice<'a, T>>,
    ) -> Result<Option<DeviceSlice<'a, T>>> {
        match self.extents.iter().position(|e| e.operand == name) {
            Some(i) => Ok(Some(cast(self.views[i])?)),
            None => Ok(None),
        }
    }
}

/// Resolves every operand of `extents` and runs `body` (the launcher) on `stream` with views
/// of them. An op whose every operand is empty touches no memory and queues nothing.
fn launch(
    stream: knpuStream_t,
    extents: &Extents,
    body: impl FnOnce(&Stream, &Views<'_, '_>) -> Result<()>,
) -> Result<()> {
    let s = stream_arg(stream)?;
    let extents = extents.as_slice();
    if extents.iter().all(|e| e.bytes == 0) {
        return Ok(());
    }
    let operands: [Operand<'_>; MAX_OPERANDS] = std::array::from_fn(|i| match extents.get(i) {
        Some(e) => Operand {
            ptr: e.addr as *const c_void,
            what: e.operand,
            elem_bytes: us(e.elem_size),
            bytes: Some(us(e.bytes)),
        },
        None => Operand {
            ptr: std::ptr::null(),
            what: "",
            elem_bytes: 1,
            bytes: Some(0),
        },
    });
    // Operands past the op's own are empty and NULL: they resolve to nothing.
    with_operands(&operands, |views| body(&s, &Views { extents, views }))
}

/// Runs `$body` with `$t` the Rust type of float dtype `$raw` (already accepted by the op
/// definition's validation; any other is the definition's own dtype error).
macro_rules! with_float {
    ($raw:expr, $operand:literal, $t:ident, $body:expr) => {
        match $raw {
            abi::KNPU_DTYPE_F32 => {
                type $t = f32;
                $body
            }
            abi::KNPU_DTYPE_F16 => {
                type $t = f16;
                $body
            }
            abi::KNPU_DTYPE_BF16 => {
                type $t = bf16;
                $body
            }
            other => Err(defs::float_size($operand, other)
                .err()
                .map_or_else(|| invalid(format!("dtype {other}")), Error::from)),
        }
    };
}

fn attn_tensor(t: &knpuAttnTensor) -> AttnTensor {
    AttnTensor {
        batch: us(t.batch),
        seq: us(t.seq),
        heads: us(t.heads),
        head_dim: us(t.headDim),
        batch_stride: us(t.batchStride),
        seq_stride: us(t.seqStride),
        head_stride: us(t.headStride),
    }
}

fn abi_tensor(t: &knpuAttnTensor) -> abi::KnpuAttnTensor {
    abi::KnpuAttnTensor {
        batch: t.batch,
        seq: t.seq,
        heads: t.heads,
        head_dim: t.headDim,
        batch_stride: t.batchStride,
        seq_stride: t.seqStride,
        head_stride: t.headStride,
    }
}

fn paged_cache(c: &knpuPagedKvCache) -> PagedKvCache {
    PagedKvCache {
        num_blocks: us(c.numBlocks),
        block_size: us(c.blockSize),
        kv_heads: us(c.kvHeads),
        head_dim: us(c.headDim),
        block_stride: us(c.blockStride),
        slot_stride: us(c.slotStride),
        head_stride: us(c.headStride),
    }
}

fn abi_cache(c: &knpuPagedKvCache) -> abi::KnpuPagedKvCache {
    abi::KnpuPagedKvCache {
        num_blocks: c.numBlocks,
        block_size: c.blockSize,
        kv_heads: c.kvHeads,
        head_dim: c.headDim,
        block_stride: c.blockStride,
        slot_stride: c.slotStride,
        head_stride: c.headStride,
    }
}

/// The mask of the ABI's encoding (window 0: none, scale 0: 1/sqrt(head_dim)).
fn mask(flags: u32, window: u64, scale: f32) -> AttnMask {
    AttnMask {
        causal: flags & abi::KNPU_ATTENTION_CAUSAL != 0,
        window: (window != 0).then_some(us(window)),
        scale: (scale != 0.0).then_some(scale),
    }
}

/// Queues fused attention.
///
/// # Safety
/// - `desc` is NULL or points to a readable descriptor of `structSize` bytes. Device
///   pointers are checked by the library.
#[no_mangle]
pub unsafe extern "C" fn knpuAttention(
    desc: *const knpuAttentionDesc,
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    out: *mut c_void,
    lse: *mut f32,
    kvLens: *const u32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuAttentionDesc") }?;
        let mut p = abi::KnpuAttentionParams::sized();
        (p.dtype, p.flags, p.window, p.scale) = (d.dtype, d.flags, d.window, d.scale);
        (p.q_desc, p.k_desc) = (abi_tensor(&d.q), abi_tensor(&d.k));
        (p.v_desc, p.out_desc) = (abi_tensor(&d.v), abi_tensor(&d.out));
        (p.q, p.k, p.v, p.out) = (addr(q), addr(k), addr(v), addr(out.cast_const()));
        (p.lse, p.kv_lens) = (addr(lse.cast_const().cast()), addr(kvLens.cast()));
        let e = attn_rules::validate_attention(&p)?;
        let args = AttentionArgs {
            q: attn_tensor(&d.q),
            k: attn_tensor(&d.k),
            v: attn_tensor(&d.v),
            out: attn_tensor(&d.out),
            mask: mask(d.flags, d.window, d.scale),
        };
        launch(stream, &e, |s, io| {
            let mut lse = io.opt::<f32>("lse")?.map(Written);
            let lens = io.opt::<u32>("kv_lens")?;
            with_float!(d.dtype, "q", T, {
                ops::attention::<T>(
                    s,
                    &args,
                    &io.get::<T>("q")?,
                    &io.get::<T>("k")?,
                    &io.get::<T>("v")?,
                    &mut Written(io.get::<T>("out")?),
                    lse.as_mut().map(|l| l as &mut dyn AsDeviceSliceMut<f32>),
                    lens.as_ref().map(|l| l as &dyn AsDeviceSlice<u32>),
                )
            })
        })
    })
}

/// Queues attention over a paged cache.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuPagedAttention(
    desc: *const knpuPagedAttentionDesc,
    q: *const c_void,
    kCache: *const c_void,
    vCache: *const c_void,
    blockTable: *const u32,
    kvLens: *const u32,
    out: *mut c_void,
    lse: *mut f32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuPagedAttentionDesc") }?;
        let mut p = abi::KnpuPagedAttentionParams::sized();
        (p.dtype, p.flags, p.window, p.scale) = (d.dtype, d.flags, d.window, d.scale);
        (p.q_desc, p.out_desc, p.cache) =
            (abi_tensor(&d.q), abi_tensor(&d.out), abi_cache(&d.cache));
        p.max_blocks_per_seq = d.maxBlocksPerSeq;
        (p.q, p.k_cache, p.v_cache, p.out) =
            (addr(q), addr(kCache), addr(vCache), addr(out.cast_const()));
        (p.lse, p.kv_lens, p.block_table) = (
            addr(lse.cast_const().cast()),
            addr(kvLens.cast()),
            addr(blockTable.cast()),
        );
        let e = attn_rules::validate_paged_attention(&p)?;
        let args = PagedAttentionArgs {
            q: attn_tensor(&d.q),
            out: attn_tensor(&d.out),
            cache: paged_cache(&d.cache),
            max_blocks_per_seq: us(d.maxBlocksPerSeq),
            mask: mask(d.flags, d.window, d.scale),
        };
        launch(stream, &e, |s, io| {
            let mut lse = io.opt::<f32>("lse")?.map(Written);
            with_float!(d.dtype, "q", T, {
                ops::paged_attention::<T>(
                    s,
                    &args,
                    &io.get::<T>("q")?,
                    &io.get::<T>("k_cache")?,
                    &io.get::<T>("v_cache")?,
                    &io.get::<u32>("block_table")?,
                    &io.get::<u32>("kv_lens")?,
                    &mut Written(io.get::<T>("out")?),
                    lse.as_mut().map(|l| l as &mut dyn AsDeviceSliceMut<f32>),
                )
            })
        })
    })
}

/// Queues an append to a contiguous key/value cache.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuKvAppend(
    desc: *const knpuKvAppendDesc,
    kCache: *mut c_void,
    vCache: *mut c_void,
    kNew: *const c_void,
    vNew: *const c_void,
    seqLens: *const u32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuKvAppendDesc") }?;
        let mut p = abi::KnpuKvAppendParams::sized();
        p.dtype = d.dtype;
        (p.cache_desc, p.new_desc) = (abi_tensor(&d.cache), abi_tensor(&d.newKv));
        (p.k_cache, p.v_cache) = (addr(kCache.cast_const()), addr(vCache.cast_const()));
        (p.k_new, p.v_new, p.seq_lens) = (addr(kNew), addr(vNew), addr(seqLens.cast()));
        let e = attn_rules::validate_kv_append(&p)?;
        let (cache, new) = (attn_tensor(&d.cache), attn_tensor(&d.newKv));
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "k_cache", T, {
                ops::kv_append::<T>(
                    s,
                    &cache,
                    &mut Written(io.get::<T>("k_cache")?),
                    &mut Written(io.get::<T>("v_cache")?),
                    &new,
                    &io.get::<T>("k_new")?,
                    &io.get::<T>("v_new")?,
                    &io.get::<u32>("seq_lens")?,
                )
            })
        })
    })
}

/// Queues an append to a paged key/value cache.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuPagedKvAppend(
    desc: *const knpuPagedKvAppendDesc,
    kCache: *mut c_void,
    vCache: *mut c_void,
    kNew: *const c_void,
    vNew: *const c_void,
    blockTable: *const u32,
    seqLens: *const u32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuPagedKvAppendDesc") }?;
        let mut p = abi::KnpuPagedKvAppendParams::sized();
        p.dtype = d.dtype;
        (p.cache, p.new_desc) = (abi_cache(&d.cache), abi_tensor(&d.newKv));
        p.max_blocks_per_seq = d.maxBlocksPerSeq;
        (p.k_cache, p.v_cache) = (addr(kCache.cast_const()), addr(vCache.cast_const()));
        (p.k_new, p.v_new) = (addr(kNew), addr(vNew));
        (p.block_table, p.seq_lens) = (addr(blockTable.cast()), addr(seqLens.cast()));
        let e = attn_rules::validate_paged_kv_append(&p)?;
        let (cache, new) = (paged_cache(&d.cache), attn_tensor(&d.newKv));
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "k_cache", T, {
                ops::paged_kv_append::<T>(
                    s,
                    &cache,
                    &mut Written(io.get::<T>("k_cache")?),
                    &mut Written(io.get::<T>("v_cache")?),
                    &new,
                    &io.get::<T>("k_new")?,
                    &io.get::<T>("v_new")?,
                    &io.get::<u32>("block_table")?,
                    us(d.maxBlocksPerSeq),
                    &io.get::<u32>("seq_lens")?,
                )
            })
        })
    })
}

/// Queues RMS normalisation.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuRmsNorm(
    desc: *const knpuNormDesc,
    x: *const c_void,
    weight: *const c_void,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuNormDesc") }?;
        let mut p = abi::KnpuRmsNormParams::sized();
        (p.dtype, p.rows, p.cols, p.eps) = (d.dtype, d.rows, d.cols, d.eps);
        (p.x, p.weight, p.out) = (addr(x), addr(weight), addr(out.cast_const()));
        let e = llm::validate_rms_norm(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "x", T, {
                ops::rms_norm::<T>(
                    s,
                    &io.get::<T>("x")?,
                    &io.get::<T>("weight")?,
                    &mut Written(io.get::<T>("out")?),
                    us(d.rows),
                    us(d.cols),
                    d.eps,
                )
            })
        })
    })
}

/// Queues layer normalisation.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuLayerNorm(
    desc: *const knpuNormDesc,
    x: *const c_void,
    weight: *const c_void,
    bias: *const c_void,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuNormDesc") }?;
        let mut p = abi::KnpuLayerNormParams::sized();
        (p.dtype, p.rows, p.cols, p.eps) = (d.dtype, d.rows, d.cols, d.eps);
        (p.x, p.weight, p.bias) = (addr(x), addr(weight), addr(bias));
        p.out = addr(out.cast_const());
        let e = llm::validate_layer_norm(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "x", T, {
                let bias = io.opt::<T>("bias")?;
                ops::layer_norm::<T>(
                    s,
                    &io.get::<T>("x")?,
                    &io.get::<T>("weight")?,
                    bias.as_ref().map(|b| b as &dyn AsDeviceSlice<T>),
                    &mut Written(io.get::<T>("out")?),
                    us(d.rows),
                    us(d.cols),
                    d.eps,
                )
            })
        })
    })
}

/// Queues a rotary position embedding.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuRope(
    desc: *const knpuRopeDesc,
    x: *const c_void,
    positions: *const u32,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuRopeDesc") }?;
        let mut p = abi::KnpuRopeParams::sized();
        (p.dtype, p.style, p.rows, p.heads) = (d.dtype, d.style, d.rows, d.heads);
        (p.head_dim, p.rotary_dim, p.base) = (d.headDim, d.rotaryDim, d.base);
        p.start_position = d.startPosition;
        (p.x, p.positions, p.out) = (addr(x), addr(positions.cast()), addr(out.cast_const()));
        let (style, e) = llm::validate_rope(&p)?;
        launch(stream, &e, |s, io| {
            let pos = io.opt::<u32>("positions")?;
            let rope = Rope {
                style,
                rotary_dim: us(d.rotaryDim),
                base: d.base,
                positions: match &pos {
                    Some(p) => RopePositions::PerRow(p),
                    None => RopePositions::Start(d.startPosition),
                },
            };
            with_float!(d.dtype, "x", T, {
                ops::rope::<T>(
                    s,
                    &io.get::<T>("x")?,
                    &mut Written(io.get::<T>("out")?),
                    us(d.rows),
                    us(d.heads),
                    us(d.headDim),
                    &rope,
                )
            })
        })
    })
}

/// Queues an activation function.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuActivation(
    desc: *const knpuActivationDesc,
    x: *const c_void,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuActivationDesc") }?;
        let mut p = abi::KnpuActivationParams::sized();
        (p.dtype, p.activation, p.len) = (d.dtype, d.activation, d.len);
        (p.x, p.out) = (addr(x), addr(out.cast_const()));
        let (act, e) = llm::validate_activation(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "x", T, {
                ops::activation::<T>(
                    s,
                    act,
                    &io.get::<T>("x")?,
                    &mut Written(io.get::<T>("out")?),
                )
            })
        })
    })
}

/// Queues SwiGLU.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuSwiglu(
    desc: *const knpuSwigluDesc,
    gate: *const c_void,
    up: *const c_void,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuSwigluDesc") }?;
        let mut p = abi::KnpuSwigluParams::sized();
        (p.dtype, p.len) = (d.dtype, d.len);
        (p.gate, p.up, p.out) = (addr(gate), addr(up), addr(out.cast_const()));
        let e = llm::validate_swiglu(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "gate", T, {
                ops::swiglu::<T>(
                    s,
                    &io.get::<T>("gate")?,
                    &io.get::<T>("up")?,
                    &mut Written(io.get::<T>("out")?),
                )
            })
        })
    })
}

/// Queues a row softmax.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuSoftmax(
    desc: *const knpuSoftmaxDesc,
    x: *const c_void,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuSoftmaxDesc") }?;
        let mut p = abi::KnpuSoftmaxParams::sized();
        (p.dtype, p.rows, p.cols, p.scale) = (d.dtype, d.rows, d.cols, d.scale);
        (p.x, p.out) = (addr(x), addr(out.cast_const()));
        let e = llm::validate_softmax(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "x", T, {
                ops::softmax::<T>(
                    s,
                    &io.get::<T>("x")?,
                    &mut Written(io.get::<T>("out")?),
                    us(d.rows),
                    us(d.cols),
                    d.scale,
                )
            })
        })
    })
}

/// Queues a binary op with broadcast.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuBinary(
    desc: *const knpuBinaryDesc,
    a: *const c_void,
    b: *const c_void,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuBinaryDesc") }?;
        let mut p = abi::KnpuBinaryParams::sized();
        (p.dtype, p.op, p.broadcast, p.rows, p.cols) = (d.dtype, d.op, d.broadcast, d.rows, d.cols);
        (p.a, p.b, p.out) = (addr(a), addr(b), addr(out.cast_const()));
        let (op, broadcast, e): (BinaryOp, Broadcast, _) = llm::validate_binary(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.dtype, "a", T, {
                ops::binary::<T>(
                    s,
                    op,
                    &io.get::<T>("a")?,
                    &io.get::<T>("b")?,
                    &mut Written(io.get::<T>("out")?),
                    us(d.rows),
                    us(d.cols),
                    broadcast,
                )
            })
        })
    })
}

/// Queues an embedding lookup from a float table.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuEmbedding(
    desc: *const knpuEmbeddingDesc,
    table: *const c_void,
    ids: *const u32,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuEmbeddingDesc") }?;
        let mut p = abi::KnpuEmbeddingParams::sized();
        (p.table_dtype, p.out_dtype) = (d.tableDtype, d.outDtype);
        (p.vocab, p.dim, p.tokens) = (d.vocab, d.dim, d.tokens);
        (p.table, p.ids, p.out) = (addr(table), addr(ids.cast()), addr(out.cast_const()));
        let e = llm::validate_embedding(&p)?;
        launch(stream, &e, |s, io| {
            let ids = io.get::<u32>("ids")?;
            with_float!(d.tableDtype, "table", T, {
                let table = io.get::<T>("table")?;
                with_float!(d.outDtype, "out", O, {
                    ops::embedding::<T, O>(
                        s,
                        &table,
                        us(d.vocab),
                        us(d.dim),
                        &ids,
                        &mut Written(io.get::<O>("out")?),
                    )
                })
            })
        })
    })
}

/// Queues an embedding lookup from a quantised table.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuQEmbedding(
    desc: *const knpuQEmbeddingDesc,
    table: *const c_void,
    scales: *const f32,
    ids: *const u32,
    out: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuQEmbeddingDesc") }?;
        let mut p = abi::KnpuQEmbeddingParams::sized();
        (p.format, p.out_dtype) = (d.format, d.outDtype);
        (p.vocab, p.dim, p.tokens) = (d.vocab, d.dim, d.tokens);
        (p.table, p.scales) = (addr(table), addr(scales.cast()));
        (p.ids, p.out) = (addr(ids.cast()), addr(out.cast_const()));
        let e = quant::validate_qembedding(&p)?;
        let format = QuantFormat::try_from(d.format)?;
        launch(stream, &e, |s, io| {
            let w = QWeights {
                format,
                data: io.get::<u8>("table")?,
                scales: io.opt::<f32>("scales")?,
                n: us(d.vocab),
                k: us(d.dim),
            };
            let ids = io.get::<u32>("ids")?;
            with_float!(d.outDtype, "out", T, {
                ops::qembedding::<T>(s, &w, &ids, &mut Written(io.get::<T>("out")?))
            })
        })
    })
}

/// Queues a cast.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuCast(
    desc: *const knpuCastDesc,
    src: *const c_void,
    dst: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuCastDesc") }?;
        let mut p = abi::KnpuCastParams::sized();
        (p.src_dtype, p.dst_dtype, p.len) = (d.srcDtype, d.dstDtype, d.len);
        (p.src, p.dst) = (addr(src), addr(dst.cast_const()));
        let e = llm::validate_cast(&p)?;
        launch(stream, &e, |s, io| {
            with_float!(d.srcDtype, "src", S, {
                let src = io.get::<S>("src")?;
                with_float!(d.dstDtype, "dst", D, {
                    ops::cast::<S, D>(s, &src, &mut Written(io.get::<D>("dst")?))
                })
            })
        })
    })
}

/// Queues an argmax of each row.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuArgmax(
    desc: *const knpuReduceDesc,
    x: *const c_void,
    out: *mut u32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuReduceDesc") }?;
        let mut p = abi::KnpuArgmaxParams::sized();
        (p.dtype, p.rows, p.cols) = (d.dtype, d.rows, d.cols);
        (p.x, p.out) = (addr(x), addr(out.cast_const().cast()));
        let e = llm::validate_argmax(&p)?;
        launch(stream, &e, |s, io| {
            let mut out = Written(io.get::<u32>("out")?);
            with_float!(d.dtype, "x", T, {
                ops::argmax::<T>(s, &io.get::<T>("x")?, &mut out, us(d.rows), us(d.cols))
            })
        })
    })
}

/// Queues one token id drawn from each row of logits.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuSample(
    desc: *const knpuSampleDesc,
    logits: *const c_void,
    out: *mut c_void,
    rngCounter: *mut u64,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuSampleDesc") }?;
        let mut p = abi::KnpuSampleParams::sized();
        (p.dtype, p.out_dtype) = (d.dtype, d.outDtype);
        (p.rows, p.vocab, p.top_k, p.seed) = (d.rows, d.vocab, d.topK, d.seed);
        (p.temperature, p.top_p) = (d.temperature, d.topP);
        (p.logits, p.out) = (addr(logits), addr(out.cast_const()));
        p.rng_counter = addr(rngCounter.cast_const().cast());
        let e = sample::validate(&p)?;
        let params = SampleParams {
            temperature: d.temperature,
            top_k: us(d.topK),
            top_p: d.topP,
            seed: d.seed,
        };
        launch(stream, &e, |s, io| {
            let mut counter = io.opt_u64("rng_counter")?.map(Written);
            let counter = counter
                .as_mut()
                .map(|c| c as &mut dyn AsDeviceSliceMut<u64>);
            with_float!(d.dtype, "logits", T, {
                let logits = io.get::<T>("logits")?;
                let (rows, vocab) = (us(d.rows), us(d.vocab));
                match d.outDtype {
                    abi::KNPU_DTYPE_I32 => {
                        let mut ids = Written(io.get::<i32>("out")?);
                        ops::sample::<T, i32>(s, &logits, &mut ids, rows, vocab, &params, counter)
                    }
                    _ => {
                        let mut ids = Written(io.get::<u32>("out")?);
                        ops::sample::<T, u32>(s, &logits, &mut ids, rows, vocab, &params, counter)
                    }
                }
            })
        })
    })
}

/// Queues a top-k of each row.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuTopK(
    desc: *const knpuReduceDesc,
    x: *const c_void,
    values: *mut c_void,
    indices: *mut u32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuReduceDesc") }?;
        let mut p = abi::KnpuTopKParams::sized();
        (p.dtype, p.rows, p.cols, p.k) = (d.dtype, d.rows, d.cols, d.k);
        p.x = addr(x);
        (p.values, p.indices) = (addr(values.cast_const()), addr(indices.cast_const().cast()));
        let e = llm::validate_top_k(&p)?;
        launch(stream, &e, |s, io| {
            let mut indices = Written(io.get::<u32>("indices")?);
            with_float!(d.dtype, "x", T, {
                ops::top_k::<T>(
                    s,
                    &io.get::<T>("x")?,
                    &mut Written(io.get::<T>("values")?),
                    &mut indices,
                    us(d.rows),
                    us(d.cols),
                    us(d.k),
                )
            })
        })
    })
}

/// Queues quantisation.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuQuantize(
    desc: *const knpuQuantizeDesc,
    src: *const f32,
    dst: *mut c_void,
    scales: *mut f32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuQuantizeDesc") }?;
        let mut p = abi::KnpuQuantizeParams::sized();
        (p.format, p.rows, p.k) = (d.format, d.rows, d.k);
        (p.src, p.dst) = (addr(src.cast()), addr(dst.cast_const()));
        p.scales = addr(scales.cast_const().cast());
        let e = quant::validate_quantize(&p)?;
        let format = QuantFormat::try_from(d.format)?;
        launch(stream, &e, |s, io| {
            let mut scales = io.opt::<f32>("scales")?.map(Written);
            ops::quantize(
                s,
                format,
                us(d.rows),
                us(d.k),
                &io.get::<f32>("src")?,
                &mut Written(io.get::<u8>("dst")?),
                scales.as_mut().map(|x| x as &mut dyn AsDeviceSliceMut<f32>),
            )
        })
    })
}

/// Queues dequantisation.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuDequantize(
    desc: *const knpuQuantizeDesc,
    src: *const c_void,
    scales: *const f32,
    dst: *mut f32,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuQuantizeDesc") }?;
        let mut p = abi::KnpuDequantizeParams::sized();
        (p.format, p.rows, p.k) = (d.format, d.rows, d.k);
        (p.src, p.scales) = (addr(src), addr(scales.cast()));
        p.dst = addr(dst.cast_const().cast());
        let e = quant::validate_dequantize(&p)?;
        let format = QuantFormat::try_from(d.format)?;
        launch(stream, &e, |s, io| {
            let scales = io.opt::<f32>("scales")?;
            ops::dequantize(
                s,
                format,
                us(d.rows),
                us(d.k),
                &io.get::<u8>("src")?,
                scales.as_ref().map(|x| x as &dyn AsDeviceSlice<f32>),
                &mut Written(io.get::<f32>("dst")?),
            )
        })
    })
}

/// Queues a quantised matmul.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuQMatmul(
    desc: *const knpuQMatmulDesc,
    x: *const c_void,
    w: *const c_void,
    wScales: *const f32,
    bias: *const f32,
    y: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuQMatmulDesc") }?;
        let mut p = abi::KnpuQMatmulParams::sized();
        (p.format, p.x_dtype, p.y_dtype) = (d.format, d.xDtype, d.yDtype);
        (p.activation, p.act_quant) = (d.activation, d.actQuant);
        (p.m, p.n, p.k) = (d.m, d.n, d.k);
        (p.x, p.w, p.w_scales) = (addr(x), addr(w), addr(wScales.cast()));
        (p.bias, p.y) = (addr(bias.cast()), addr(y.cast_const()));
        let e = quant::validate_qmatmul(&p)?;
        let format = QuantFormat::try_from(d.format)?;
        let (activation, act_quant) = (
            Activation::try_from(d.activation)?,
            ActQuant::try_from(d.actQuant)?,
        );
        launch(stream, &e, |s, io| {
            let w = QWeights {
                format,
                data: io.get::<u8>("w")?,
                scales: io.opt::<f32>("w_scales")?,
                n: us(d.n),
                k: us(d.k),
            };
            let q = QMatmul {
                m: us(d.m),
                bias: io.opt::<f32>("bias")?,
                activation,
                act_quant,
            };
            with_float!(d.xDtype, "x", TX, {
                let x = io.get::<TX>("x")?;
                with_float!(d.yDtype, "y", TY, {
                    ops::qmatmul::<TX, TY>(s, &q, &x, &w, &mut Written(io.get::<TY>("y")?))
                })
            })
        })
    })
}

/// Queues a W8A8 GEMM.
///
/// # Safety
/// - As [`knpuAttention`].
#[no_mangle]
pub unsafe extern "C" fn knpuW8A8Gemm(
    desc: *const knpuW8A8GemmDesc,
    xq: *const i8,
    xScales: *const f32,
    wq: *const i8,
    wScales: *const f32,
    bias: *const f32,
    y: *mut c_void,
    stream: knpuStream_t,
) -> knpuError_t {
    call(|| {
        // SAFETY: the caller's promise on `desc`.
        let d = unsafe { read_desc(desc, "knpuW8A8GemmDesc") }?;
        let mut p = abi::KnpuW8A8GemmParams::sized();
        (p.y_dtype, p.activation) = (d.yDtype, d.activation);
        (p.m, p.n, p.k) = (d.m, d.n, d.k);
        (p.xq, p.x_scales) = (addr(xq.cast()), addr(xScales.cast()));
        (p.wq, p.w_scales) = (addr(wq.cast()), addr(wScales.cast()));
        (p.bias, p.y) = (addr(bias.cast()), addr(y.cast_const()));
        let e = quant::validate_w8a8_gemm(&p)?;
        let activation = Activation::try_from(d.activation)?;
        launch(stream, &e, |s, io| {
            let g = W8A8Gemm {
                m: us(d.m),
                n: us(d.n),
                k: us(d.k),
                bias: io.opt::<f32>("bias")?,
                activation,
            };
            with_float!(d.yDtype, "y", TY, {
                ops::w8a8_gemm::<TY>(
                    s,
                    &g,
                    &io.get::<i8>("xq")?,
                    &io.get::<f32>("x_scales")?,
                    &io.get::<i8>("wq")?,
                    &io.get::<f32>("w_scales")?,
                    &mut Written(io.get::<TY>("y")?),
                )
            })
        })
    })
}
