//! `knpu.KVCache` and `knpu.PagedKVCache`: key/value caches that own their device memory,
//! with `append` and `attention` over the runtime's cache launchers.
//!
//! A cache owns its key and value storage (a launcher that writes a cache takes it mutably),
//! so the caches are objects rather than tensors; `keys()` and `values()` copy them out.
//! New keys and values and queries use attention's `[batch, heads, seq, head_dim]` order;
//! sequence lengths and block tables are uint32 tensors the caller keeps and advances.

use crate::device::{current_stream, resolve};
use crate::errors::{to_py, wrong_dtype, IntoPyResult};
use crate::ops::{from, in_place_or_copied, typed, typed_mut, u32_slice, Fresh};
use crate::storage::{Storage, Typed};
use crate::tensor::Tensor;
use knpu::ops::{self, AttnMask, AttnTensor, PagedKvCache};
use knpu::{DataType, Layout};
use parking_lot::Mutex;
use pyo3::prelude::*;

/// The cache's storage: keys then values.
struct Kv {
    k: Storage,
    v: Storage,
}

/// Zero-filled `k` and `v` storage of `units` elements on the current stream of `device`.
fn alloc(
    device: Option<&Bound<'_, PyAny>>,
    dtype: Option<&Bound<'_, PyAny>>,
    units: usize,
) -> PyResult<(knpu::Stream, DataType, Kv)> {
    let dev = resolve(device)?;
    let stream = current_stream(&dev)?;
    let dtype = dtype
        .map(crate::dtype::resolve)
        .transpose()?
        .unwrap_or(DataType::F32);
    let k = Storage::alloc(&stream, dtype, units).py()?;
    let v = Storage::alloc(&stream, dtype, units).py()?;
    for s in [&k, &v] {
        crate::with_buf!(&s.buf, b => knpu::tensor::fill_strided(
            &stream, b, &Layout::contiguous(&[units]).py()?, dtype.unit_bytes(), 0))
        .py()?;
    }
    Ok((stream, dtype, Kv { k, v }))
}

/// The new keys and values of an append: both `[batch, heads, seq, head_dim]` of one shape
/// and of the cache's dtype; their views and the shape they share.
fn new_kv(dtype: DataType, k: &Tensor, v: &Tensor) -> PyResult<(Tensor, Tensor, AttnTensor)> {
    let (tk, ak) = bhsd(k, "k")?;
    let (tv, av) = bhsd(v, "v")?;
    if av != ak {
        return Err(to_py(knpu::Error::Shape {
            operand: "v",
            expected: format!("{:?} (as k)", tk.values_shape()),
            actual: format!("{:?}", tv.values_shape()),
        }));
    }
    check_dtype(dtype, &tk, "k")?;
    check_dtype(dtype, &tv, "v")?;
    Ok((tk, tv, ak))
}

fn count(dims: &[usize]) -> PyResult<usize> {
    Layout::contiguous(dims).py().map(|l| l.numel())
}

/// A `[batch, heads, seq, head_dim]` operand: its strided view, contiguous if it had to be
/// copied.
fn bhsd(t: &Tensor, name: &'static str) -> PyResult<(Tensor, AttnTensor)> {
    let shape = t.values_shape();
    if shape.len() != 4 {
        return Err(to_py(knpu::Error::Shape {
            operand: name,
            expected: "[batch, heads, seq, head_dim]".into(),
            actual: format!("{shape:?}"),
        }));
    }
    let t = t.with_layout(t.layout.clone());
    in_place_or_copied(t, Layout::attn_bhsd, "attention operand")
}

fn check_dtype(cache: DataType, t: &Tensor, name: &'static str) -> PyResult<()> {
    if t.dtype != cache {
        return Err(wrong_dtype(
            name,
            format!("{cache} (as the cache)"),
            t.dtype.name(),
        ));
    }
    Ok(())
}

macro_rules! float_dispatch {
    ($dt:expr, $f:ident($($args:expr),*)) => {
        match $dt {
            DataType::F32 => $f::<f32>($($args),*),
            DataType::F16 => $f::<half::f16>($($args),*),
            DataType::BF16 => $f::<half::bf16>($($args),*),
            other => Err(wrong_dtype("cache", "float32, float16 or bfloat16", other.name())),
        }
    };
}

/// A contiguous key/value cache `[batch, capacity, kv_heads, head_dim]` per tensor.
#[pyclass(module = "knpu._knpu", frozen)]
pub struct KVCache {
    kv: Mutex<Kv>,
    layout: AttnTensor,
    dtype: DataType,
    device: knpu::Device,
}

#[pymethods]
impl KVCache {
    /// A zero-filled cache of `batch` sequences of up to `capacity` positions.
    #[new]
    #[pyo3(signature = (batch, capacity, kv_heads, head_dim, *, dtype=None, device=None))]
    fn new(
        batch: usize,
        capacity: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<KVCache> {
        let units = count(&[batch, capacity, kv_heads, head_dim])?;
        let (stream, dtype, kv) = alloc(device, dtype, units)?;
        Ok(KVCache {
            kv: Mutex::new(kv),
            layout: AttnTensor::bshd(batch, capacity, kv_heads, head_dim),
            dtype,
            device: stream.device().clone(),
        })
    }

    /// `(batch, capacity, kv_heads, head_dim)`.
    #[getter]
    fn shape(&self) -> (usize, usize, usize, usize) {
        let l = &self.layout;
        (l.batch, l.seq, l.heads, l.head_dim)
    }

    /// Writes `k` and `v` (`[batch, kv_heads, new, head_dim]`) at positions
    /// `seq_lens[b]..seq_lens[b] + new` of each sequence; the caller advances `seq_lens`.
    fn append(
        &self,
        k: PyRef<'_, Tensor>,
        v: PyRef<'_, Tensor>,
        seq_lens: PyRef<'_, Tensor>,
    ) -> PyResult<()> {
        let (tk, tv, ak) = new_kv(self.dtype, &k, &v)?;
        let stream = current_stream(&self.device)?;
        let lens = u32_slice(&seq_lens, "seq_lens")?;
        let mut kv = self.kv.lock();
        float_dispatch!(
            self.dtype,
            append_t(&stream, &self.layout, &mut kv, &ak, &tk, &tv, &lens)
        )
    }

    /// Attention of `q` (`[batch, q_heads, q_len, head_dim]`) over the first `seq_lens[b]`
    /// cached positions of each sequence (causal masks align the queries with the last
    /// of them). The result is `[batch, q_heads, q_len, head_dim]`, or with
    /// `out_layout="bshd"` `[batch, q_len, q_heads, head_dim]`: the kernel writes the heads
    /// of each position side by side, the layout an output projection reads, with no
    /// transposing copy after it.
    #[pyo3(signature = (q, seq_lens, *, causal=true, scale=None, window=None, out_layout="bhsd"))]
    fn attention(
        &self,
        q: PyRef<'_, Tensor>,
        seq_lens: PyRef<'_, Tensor>,
        causal: bool,
        scale: Option<f32>,
        window: Option<usize>,
        out_layout: &str,
    ) -> PyResult<Tensor> {
        let (tq, aq) = bhsd(&q, "q")?;
        check_dtype(self.dtype, &tq, "q")?;
        let (b, s, h, d) = (aq.batch, aq.seq, aq.heads, aq.head_dim);
        let (out_shape, out) = match out_layout {
            "bhsd" => ([b, h, s, d], AttnTensor::bhsd(b, s, h, d)),
            "bshd" => ([b, s, h, d], AttnTensor::bshd(b, s, h, d)),
            other => {
                return Err(crate::errors::invalid(format!(
                    "out_layout {other:?}: expected \"bhsd\" or \"bshd\""
                )))
            }
        };
        let stream = current_stream(&self.device)?;
        let lens = u32_slice(&seq_lens, "seq_lens")?;
        let mut fresh = Fresh::new(&stream, &out_shape, self.dtype)?;
        let args = ops::AttentionArgs {
            q: aq,
            k: self.layout,
            v: self.layout,
            out,
            mask: AttnMask {
                causal,
                window,
                scale,
            },
        };
        let kv = self.kv.lock();
        float_dispatch!(
            self.dtype,
            attend_t(&stream, &args, &kv, &tq, &lens, &mut fresh)
        )?;
        Ok(fresh.finish())
    }

    /// A copy of the keys, `[batch, capacity, kv_heads, head_dim]`.
    fn keys(&self) -> PyResult<Tensor> {
        self.copy_out(true)
    }

    /// A copy of the values, `[batch, capacity, kv_heads, head_dim]`.
    fn values(&self) -> PyResult<Tensor> {
        self.copy_out(false)
    }
}

impl KVCache {
    fn copy_out(&self, keys: bool) -> PyResult<Tensor> {
        let l = &self.layout;
        let shape = [l.batch, l.seq, l.heads, l.head_dim];
        let stream = current_stream(&self.device)?;
        let out = Fresh::new(&stream, &shape, self.dtype)?.finish();
        let kv = self.kv.lock();
        let src = if keys { &kv.k } else { &kv.v };
        let layout = Layout::contiguous(&shape).py()?;
        crate::with_buf!(&out.storage.buf, d => crate::with_buf!(&src.buf, s =>
            knpu::tensor::copy_strided(&stream, d, &layout, s, &layout, self.dtype.unit_bytes())))
        .py()?;
        Ok(out)
    }
}

fn append_t<T: Typed>(
    stream: &knpu::Stream,
    cache: &AttnTensor,
    kv: &mut Kv,
    new: &AttnTensor,
    k: &Tensor,
    v: &Tensor,
    lens: &knpu::DeviceSlice<'_, u32>,
) -> PyResult<()> {
    let (sk, sv) = (from::<T>(k)?, from::<T>(v)?);
    let Kv { k: kc, v: vc } = kv;
    let (kc, vc) = (typed_mut::<T>(&mut kc.buf)?, typed_mut::<T>(&mut vc.buf)?);
    ops::kv_append(stream, cache, kc, vc, new, &sk, &sv, lens).py()
}

fn attend_t<T: Typed>(
    stream: &knpu::Stream,
    args: &ops::AttentionArgs,
    kv: &Kv,
    q: &Tensor,
    lens: &knpu::DeviceSlice<'_, u32>,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let sq = from::<T>(q)?;
    let (kc, vc) = (typed::<T>(&kv.k.buf)?, typed::<T>(&kv.v.buf)?);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    ops::attention(stream, args, &sq, kc, vc, out, None, Some(lens)).py()
}

/// A paged key/value cache: `num_blocks` blocks of `block_size` positions of `kv_heads`
/// vectors of `head_dim` (vLLM's layout), addressed through a caller's block table.
#[pyclass(module = "knpu._knpu", frozen)]
pub struct PagedKVCache {
    kv: Mutex<Kv>,
    layout: PagedKvCache,
    dtype: DataType,
    device: knpu::Device,
}

#[pymethods]
impl PagedKVCache {
    /// A zero-filled paged cache.
    #[new]
    #[pyo3(signature = (num_blocks, block_size, kv_heads, head_dim, *, dtype=None, device=None))]
    fn new(
        num_blocks: usize,
        block_size: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PagedKVCache> {
        let units = count(&[num_blocks, block_size, kv_heads, head_dim])?;
        let (stream, dtype, kv) = alloc(device, dtype, units)?;
        Ok(PagedKVCache {
            kv: Mutex::new(kv),
            layout: PagedKvCache::dense(num_blocks, block_size, kv_heads, head_dim),
            dtype,
            device: stream.device().clone(),
        })
    }

    /// `(num_blocks, block_size, kv_heads, head_dim)`.
    #[getter]
    fn shape(&self) -> (usize, usize, usize, usize) {
        let l = &self.layout;
        (l.num_blocks, l.block_size, l.kv_heads, l.head_dim)
    }

    /// Writes `k` and `v` (`[batch, kv_heads, new, head_dim]`) at positions
    /// `seq_lens[b]..` of each sequence through `block_table` (`[batch, max_blocks]`
    /// uint32); the caller advances `seq_lens`.
    fn append(
        &self,
        k: PyRef<'_, Tensor>,
        v: PyRef<'_, Tensor>,
        block_table: PyRef<'_, Tensor>,
        seq_lens: PyRef<'_, Tensor>,
    ) -> PyResult<()> {
        let (tk, tv, ak) = new_kv(self.dtype, &k, &v)?;
        let max_blocks = table_width(&block_table)?;
        let stream = current_stream(&self.device)?;
        let table = u32_slice(&block_table, "block_table")?;
        let lens = u32_slice(&seq_lens, "seq_lens")?;
        let mut kv = self.kv.lock();
        float_dispatch!(
            self.dtype,
            paged_append_t(
                &stream,
                &self.layout,
                &mut kv,
                &ak,
                &tk,
                &tv,
                &table,
                max_blocks,
                &lens
            )
        )
    }

    /// Attention of `q` (`[batch, q_heads, q_len, head_dim]`) over the first `seq_lens[b]`
    /// positions of each sequence, read through `block_table`.
    #[pyo3(signature = (q, block_table, seq_lens, *, causal=true, scale=None, window=None))]
    fn attention(
        &self,
        q: PyRef<'_, Tensor>,
        block_table: PyRef<'_, Tensor>,
        seq_lens: PyRef<'_, Tensor>,
        causal: bool,
        scale: Option<f32>,
        window: Option<usize>,
    ) -> PyResult<Tensor> {
        let (tq, aq) = bhsd(&q, "q")?;
        check_dtype(self.dtype, &tq, "q")?;
        let max_blocks = table_width(&block_table)?;
        let stream = current_stream(&self.device)?;
        let table = u32_slice(&block_table, "block_table")?;
        let lens = u32_slice(&seq_lens, "seq_lens")?;
        let mut fresh = Fresh::new(&stream, &tq.values_shape(), self.dtype)?;
        let args = ops::PagedAttentionArgs {
            q: aq,
            out: AttnTensor::bhsd(aq.batch, aq.seq, aq.heads, aq.head_dim),
            cache: self.layout,
            max_blocks_per_seq: max_blocks,
            mask: AttnMask {
                causal,
                window,
                scale,
            },
        };
        let kv = self.kv.lock();
        float_dispatch!(
            self.dtype,
            paged_attend_t(&stream, &args, &kv, &tq, &table, &lens, &mut fresh)
        )?;
        Ok(fresh.finish())
    }
}

/// The row length of a `[batch, max_blocks]` block table.
fn table_width(t: &Tensor) -> PyResult<usize> {
    match t.values_shape()[..] {
        [_, w] => Ok(w),
        ref other => Err(to_py(knpu::Error::Shape {
            operand: "block_table",
            expected: "[batch, max_blocks_per_seq]".into(),
            actual: format!("{other:?}"),
        })),
    }
}

#[allow(clippy::too_many_arguments)]
fn paged_append_t<T: Typed>(
    stream: &knpu::Stream,
    cache: &PagedKvCache,
    kv: &mut Kv,
    new: &AttnTensor,
    k: &Tensor,
    v: &Tensor,
    table: &knpu::DeviceSlice<'_, u32>,
    max_blocks: usize,
    lens: &knpu::DeviceSlice<'_, u32>,
) -> PyResult<()> {
    let (sk, sv) = (from::<T>(k)?, from::<T>(v)?);
    let Kv { k: kc, v: vc } = kv;
    let (kc, vc) = (typed_mut::<T>(&mut kc.buf)?, typed_mut::<T>(&mut vc.buf)?);
    ops::paged_kv_append(
        stream, cache, kc, vc, new, &sk, &sv, table, max_blocks, lens,
    )
    .py()
}

fn paged_attend_t<T: Typed>(
    stream: &knpu::Stream,
    args: &ops::PagedAttentionArgs,
    kv: &Kv,
    q: &Tensor,
    table: &knpu::DeviceSlice<'_, u32>,
    lens: &knpu::DeviceSlice<'_, u32>,
    fresh: &mut Fresh,
) -> PyResult<()> {
    let sq = from::<T>(q)?;
    let (kc, vc) = (typed::<T>(&kv.k.buf)?, typed::<T>(&kv.v.buf)?);
    let out = typed_mut::<T>(&mut fresh.storage.buf)?;
    ops::paged_attention(stream, args, &sq, kc, vc, table, lens, out, None).py()
}
