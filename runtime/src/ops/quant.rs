//! Quantised weights on the device: quantise, dequantise, quantised matmul
//! (`y = act(x W^T + bias)` with `W` stored in a [`QuantFormat`]), the W8A8 int8 GEMM and
//! embedding lookup from quantised tables.
//!
//! Quantised data lives in device byte buffers (`DeviceBuffer<u8>` or views of one) laid out
//! exactly as GGUF stores it: rows of `k` values one after another, each row `k /
//! block_elems` blocks of `block_bytes` bytes ([`QuantFormat::row_bytes`]). Row lengths must
//! be a multiple of the format's block size. [`QuantFormat::I8`] keeps one f32 scale per row
//! in a separate tensor, which it requires; the FP8 formats take one optionally; the GGUF
//! block formats carry their scales inside the blocks and refuse a separate tensor.
//!
//! Every launcher checks every operand (device, dtype, exact length for its shape, block
//! alignment, scales) before anything is queued; matrices are row-major and contiguous (take
//! a view to use part of a buffer).

use super::gemm::Activation;
use super::{float, optional, same_device, submit, supported, Operand};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::quant::scales_extent;
use knpu_driver_abi::ops::OpError;
use knpu_driver_abi::{self as abi, SizedStruct};

pub use knpu_driver_abi::ops::{ActQuant, QuantFormat, RowScales};

/// Bytes one row of `k` values of `format` takes, for operand `operand`: the format's block
/// rule from the op definitions, with a message naming the operand and the block size.
fn row_bytes_of(format: QuantFormat, operand: &'static str, k: usize) -> Result<usize> {
    match format.row_bytes_of(operand, k as u64) {
        Ok(bytes) => usize::try_from(bytes).map_err(|_| OpError::Overflow { operand }.into()),
        Err(OpError::Rule { .. }) => Err(Error::invalid(format!(
            "operand `{operand}`: row length {k} is not a multiple of the {} block size {}",
            format.name(),
            format.block_elems()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A quantised matrix on the device: `n` rows of `k` values in `format`, with per-row scales
/// where the format takes them. Used as the weights of [`qmatmul`] (`[n, k]`, one row per
/// output) and as the table of [`qembedding`] (`[vocab, dim]`).
#[derive(Clone, Copy)]
pub struct QWeights<'a> {
    /// Storage format.
    pub format: QuantFormat,
    /// Exactly `n * format.row_bytes(k)` bytes.
    pub data: DeviceSlice<'a, u8>,
    /// `n` f32 scales: required for I8, optional for FP8, refused otherwise.
    pub scales: Option<DeviceSlice<'a, f32>>,
    /// Rows.
    pub n: usize,
    /// Values per row.
    pub k: usize,
}

impl<'a> QWeights<'a> {
    /// `n` rows of `k` values of `format` in `data`, without a scale tensor.
    pub fn new(
        format: QuantFormat,
        data: &'a impl AsDeviceSlice<u8>,
        n: usize,
        k: usize,
    ) -> QWeights<'a> {
        QWeights {
            format,
            data: data.as_device_slice(),
            scales: None,
            n,
            k,
        }
    }

    /// Adds the per-row scale tensor (`n` f32 values).
    pub fn scales(mut self, scales: &'a impl AsDeviceSlice<f32>) -> QWeights<'a> {
        self.scales = Some(scales.as_device_slice());
        self
    }

    /// Checks device, block alignment, byte length and scales; returns the row size.
    fn check(
        &self,
        stream: &Stream,
        data_name: &'static str,
        scales_name: &'static str,
    ) -> Result<usize> {
        same_device(stream, data_name, &self.data)?;
        if let Some(s) = &self.scales {
            same_device(stream, scales_name, s)?;
        }
        let rb = row_bytes_of(self.format, data_name, self.k)?;
        check_bytes(data_name, self.format, self.n, self.k, rb, self.data.len())?;
        check_scales(scales_name, self.format, self.scales.as_ref(), self.n)?;
        Ok(rb)
    }
}

/// `a * b`, InvalidValue naming operand `what` on overflow.
fn mul(a: usize, b: usize, what: &'static str) -> Result<usize> {
    Ok(abi::ops::product(what, &[a as u64, b as u64])? as usize)
}

/// Checks that quantised operand `name` holds exactly `rows` rows of `rb` bytes.
fn check_bytes(
    name: &'static str,
    format: QuantFormat,
    rows: usize,
    k: usize,
    rb: usize,
    len: usize,
) -> Result<()> {
    let need = mul(rows, rb, name)?;
    if len != need {
        return Err(Error::Shape {
            operand: name,
            expected: format!(
                "{rows} rows of {k} {} values ({rb} bytes each): {need} bytes",
                format.name()
            ),
            actual: format!("{len} bytes"),
        });
    }
    Ok(())
}

/// Checks a per-row scale tensor against the format's rule and the row count.
fn check_scales(
    name: &'static str,
    format: QuantFormat,
    scales: Option<&DeviceSlice<'_, f32>>,
    rows: usize,
) -> Result<()> {
    // The rule only looks at whether an address is given; any nonzero stands for "given".
    let given = scales.map_or(0, |s| s.addr().max(4));
    scales_extent(name, format, given, rows as u64, false)
        .map_err(|e| Error::invalid(format!("{e} ({} data, {rows} rows)", format.name())))?;
    match scales {
        Some(s) if s.len() != rows => Err(Error::Shape {
            operand: name,
            expected: format!("[{rows}] (one scale per row)"),
            actual: format!("[{}]", s.len()),
        }),
        _ => Ok(()),
    }
}

/// [`check_plain`] for a `[rows, cols]` matrix operand whose dimensions are named (`m`,
/// `k`, ...) in the expected shape.
fn check_matrix<T>(
    stream: &Stream,
    name: &'static str,
    s: &DeviceSlice<'_, T>,
    [(rows_name, rows), (cols_name, cols)]: [(&str, usize); 2],
) -> Result<()> {
    let elems = mul(rows, cols, name)?;
    let dims = format!("[{rows_name}={rows}, {cols_name}={cols}]");
    check_plain(stream, name, s, elems, &dims)
}

/// Checks that plain operand `s` is on the stream's device and holds exactly `elems`
/// elements (`dims` names the shape in the message).
fn check_plain<T>(
    stream: &Stream,
    name: &'static str,
    s: &DeviceSlice<'_, T>,
    elems: usize,
    dims: &str,
) -> Result<()> {
    same_device(stream, name, s)?;
    if s.len() != elems {
        return Err(Error::Shape {
            operand: name,
            expected: dims.to_string(),
            actual: format!("[{}]", s.len()),
        });
    }
    Ok(())
}

/// Queues quantisation of `rows` rows of `k` f32 values from `src` (`[rows, k]`) into `dst`
/// (exactly `rows * format.row_bytes(k)` bytes).
///
/// `scales` (`[rows]` f32) receives each row's scale: required for [`QuantFormat::I8`]
/// (`max|x| / 127`), optional for FP8 (written as 1), refused for the GGUF block formats.
/// Errors at the call: `Error::InvalidValue` when `k` is not a multiple of the format's block
/// size or the scale rule is broken, `Error::Shape` naming a wrong-sized operand,
/// `Error::DeviceMismatch`. `rows == 0` queues nothing.
pub fn quantize(
    stream: &Stream,
    format: QuantFormat,
    rows: usize,
    k: usize,
    src: &impl AsDeviceSlice<f32>,
    dst: &mut impl AsDeviceSliceMut<u8>,
    scales: Option<&mut dyn AsDeviceSliceMut<f32>>,
) -> Result<()> {
    let (src, dst) = (src.as_device_slice(), dst.as_device_slice_mut());
    let scales = scales.map(|s| s.as_device_slice_mut());
    let rb = row_bytes_of(format, "dst", k)?;
    check_plain(
        stream,
        "src",
        &src,
        mul(rows, k, "src")?,
        &format!("[{rows}, {k}]"),
    )?;
    same_device(stream, "dst", &dst)?;
    check_bytes("dst", format, rows, k, rb, dst.len())?;
    if let Some(s) = &scales {
        same_device(stream, "scales", s)?;
    }
    check_scales("scales", format, scales.as_ref(), rows)?;
    supported::<f32>(stream, abi::KNPU_KERNEL_QUANTIZE, "quantize")?;
    if rows == 0 {
        return Ok(());
    }
    let mut p = abi::KnpuQuantizeParams::sized();
    p.format = format.raw();
    p.rows = rows as u64;
    p.k = k as u64;
    p.src = src.addr();
    p.dst = dst.addr();
    p.scales = scales.as_ref().map_or(0, |s| s.addr());
    let scales = scales.as_ref().map(|s| s as &dyn Operand);
    submit(
        stream,
        abi::KNPU_KERNEL_QUANTIZE,
        &p,
        &[Some(&src), Some(&dst), scales],
    )
}

/// Queues dequantisation of `rows` rows of `k` values in `format` from `src` (exactly
/// `rows * format.row_bytes(k)` bytes) into f32 `dst` (`[rows, k]`).
///
/// `scales` (`[rows]` f32) follows the format's rule ([`QuantFormat::row_scales`]). Errors
/// at the call as for [`quantize`]. `rows == 0` queues nothing.
pub fn dequantize(
    stream: &Stream,
    format: QuantFormat,
    rows: usize,
    k: usize,
    src: &impl AsDeviceSlice<u8>,
    scales: Option<&dyn AsDeviceSlice<f32>>,
    dst: &mut impl AsDeviceSliceMut<f32>,
) -> Result<()> {
    let (src, dst) = (src.as_device_slice(), dst.as_device_slice_mut());
    let scales = scales.map(|s| s.as_device_slice());
    let w = QWeights {
        format,
        data: src,
        scales,
        n: rows,
        k,
    };
    w.check(stream, "src", "scales")?;
    check_plain(
        stream,
        "dst",
        &dst,
        mul(rows, k, "dst")?,
        &format!("[{rows}, {k}]"),
    )?;
    supported::<f32>(stream, abi::KNPU_KERNEL_DEQUANTIZE, "dequantize")?;
    if rows == 0 {
        return Ok(());
    }
    let mut p = abi::KnpuDequantizeParams::sized();
    p.format = format.raw();
    p.rows = rows as u64;
    p.k = k as u64;
    p.src = src.addr();
    p.scales = scales.as_ref().map_or(0, |s| s.addr());
    p.dst = dst.addr();
    let scales = scales.as_ref().map(|s| s as &dyn Operand);
    submit(
        stream,
        abi::KNPU_KERNEL_DEQUANTIZE,
        &p,
        &[Some(&src), scales, Some(&dst)],
    )
}

/// Rows, epilogue and arithmetic of a quantised matmul. [`QMatmul::new`] gives `y = x W^T`
/// with integer dot products where the format has them; the builder methods add a bias, an
/// activation or choose the arithmetic.
#[derive(Clone, Copy)]
pub struct QMatmul<'a> {
    /// Rows of `x` and `y` (tokens).
    pub m: usize,
    /// `n` f32 values added to every row of `y`.
    pub bias: Option<DeviceSlice<'a, f32>>,
    /// Applied after the bias.
    pub activation: Activation,
    /// Integer or f32 arithmetic.
    pub act_quant: ActQuant,
}

impl<'a> QMatmul<'a> {
    /// `y = x W^T` for `m` rows of `x`.
    pub fn new(m: usize) -> QMatmul<'a> {
        QMatmul {
            m,
            bias: None,
            activation: Activation::None,
            act_quant: ActQuant::Auto,
        }
    }

    /// Chooses integer or f32 arithmetic.
    pub fn act_quant(mut self, act_quant: ActQuant) -> QMatmul<'a> {
        self.act_quant = act_quant;
        self
    }
}

/// Queues `y = act(x W^T + bias)`: `x` is `[m, k]` (f32, f16 or bf16), `w` holds `[n, k]`
/// quantised rows (one per output, the `nn.Linear` layout), `y` is `[m, n]` (f32, f16 or
/// bf16). Arithmetic is f32 and `y` is rounded once; with integer arithmetic `x` is first
/// quantised to 8-bit blocks of 32 (at most `max|x_block| / 254` of rounding per value).
///
/// Errors at the call: `Error::InvalidValue` when `k` is not a multiple of the format's
/// block size (naming `w` and the block size) or the scale rule is broken (`w_scales`
/// given for a GGUF format, missing for I8), `Error::Shape` naming a wrong-sized operand
/// (`x`, `w` in bytes, `w_scales`, `bias`, `y`), `Error::Dtype` for an `x` or `y` other than
/// f32/f16/bf16, `Error::NotSupported` for [`ActQuant::Int8`] on a format without integer
/// dot products, `Error::DeviceMismatch`. `m == 0` or `n == 0` queues nothing.
pub fn qmatmul<TX: DType, TY: DType>(
    stream: &Stream,
    q: &QMatmul<'_>,
    x: &impl AsDeviceSlice<TX>,
    w: &QWeights<'_>,
    y: &mut impl AsDeviceSliceMut<TY>,
) -> Result<()> {
    let (x, y) = (x.as_device_slice(), y.as_device_slice_mut());
    let (m, n, k) = (q.m, w.n, w.k);
    float::<TX>("x")?;
    float::<TY>("y")?;
    w.check(stream, "w", "w_scales")?;
    check_matrix(stream, "x", &x, [("m", m), ("k", k)])?;
    check_matrix(stream, "y", &y, [("m", m), ("n", n)])?;
    if let Some(b) = &q.bias {
        check_plain(stream, "bias", b, n, &format!("[n={n}]"))?;
    }
    knpu_driver_abi::ops::quant::qmatmul_uses_int8(w.format, q.act_quant, k as u64).map_err(
        |_| Error::NotSupported {
            detail: format!(
                "{} weights with k = {k} have no integer dot-product path",
                w.format.name()
            ),
        },
    )?;
    supported::<TX>(stream, abi::KNPU_KERNEL_QMATMUL, "qmatmul")?;
    supported::<TY>(stream, abi::KNPU_KERNEL_QMATMUL, "qmatmul")?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let mut p = abi::KnpuQMatmulParams::sized();
    p.format = w.format.raw();
    p.x_dtype = TX::ABI;
    p.y_dtype = TY::ABI;
    p.activation = q.activation.raw();
    p.act_quant = q.act_quant.raw();
    p.m = m as u64;
    p.n = n as u64;
    p.k = k as u64;
    p.x = x.addr();
    p.w = w.data.addr();
    p.w_scales = w.scales.as_ref().map_or(0, |s| s.addr());
    p.bias = q.bias.as_ref().map_or(0, |b| b.addr());
    p.y = y.addr();
    let used = [
        Some(&x as &dyn Operand),
        Some(&w.data),
        optional(&w.scales),
        optional(&q.bias),
        Some(&y),
    ];
    submit(stream, abi::KNPU_KERNEL_QMATMUL, &p, &used)
}

/// Shape and epilogue of a W8A8 GEMM: `y[i, j] = act(x_scales[i] w_scales[j] Σ xq[i, l]
/// wq[j, l] + bias[j])`.
#[derive(Clone, Copy)]
pub struct W8A8Gemm<'a> {
    /// Rows of `xq` and `y`.
    pub m: usize,
    /// Rows of `wq` (outputs).
    pub n: usize,
    /// The reduction length: at most 131072 (i32 sums stay exact).
    pub k: usize,
    /// `n` f32 values added to every row of `y`.
    pub bias: Option<DeviceSlice<'a, f32>>,
    /// Applied after the bias.
    pub activation: Activation,
}

impl<'a> W8A8Gemm<'a> {
    /// `y = (xq sx) (wq sw)^T` for `xq` `[m, k]` and `wq` `[n, k]`.
    pub fn new(m: usize, n: usize, k: usize) -> W8A8Gemm<'a> {
        W8A8Gemm {
            m,
            n,
            k,
            bias: None,
            activation: Activation::None,
        }
    }
}

/// The epilogue builder methods of an op with a `bias` and an `activation` field.
macro_rules! epilogue_builders {
    ($($op:ident),+) => {$(
        impl<'a> $op<'a> {
            /// Adds `bias` (`n` f32 values) to every row.
            pub fn bias(mut self, bias: &'a impl AsDeviceSlice<f32>) -> $op<'a> {
                self.bias = Some(bias.as_device_slice());
                self
            }

            /// Applies `activation` after the bias.
            pub fn activation(mut self, activation: Activation) -> $op<'a> {
                self.activation = activation;
                self
            }
        }
    )+};
}

epilogue_builders!(QMatmul, W8A8Gemm);

/// The longest reduction [`w8a8_gemm`] sums exactly.
pub const W8A8_MAX_K: usize = abi::ops::quant::W8A8_MAX_K as usize;

/// Queues the W8A8 GEMM `g` over int8 codes: `xq` `[m, k]` with one scale per row
/// (`x_scales`, `[m]`), `wq` `[n, k]` with one scale per output (`w_scales`, `[n]`), into `y`
/// `[m, n]` (f32, f16 or bf16).
///
/// Errors at the call: `Error::Shape` naming a wrong-sized operand, `Error::Dtype` for a `y`
/// other than f32/f16/bf16, `Error::NotSupported` for `k` above [`W8A8_MAX_K`],
/// `Error::DeviceMismatch`. `m == 0` or `n == 0` queues nothing.
pub fn w8a8_gemm<TY: DType>(
    stream: &Stream,
    g: &W8A8Gemm<'_>,
    xq: &impl AsDeviceSlice<i8>,
    x_scales: &impl AsDeviceSlice<f32>,
    wq: &impl AsDeviceSlice<i8>,
    w_scales: &impl AsDeviceSlice<f32>,
    y: &mut impl AsDeviceSliceMut<TY>,
) -> Result<()> {
    let (xq, xs, wq, ws, y) = (
        xq.as_device_slice(),
        x_scales.as_device_slice(),
        wq.as_device_slice(),
        w_scales.as_device_slice(),
        y.as_device_slice_mut(),
    );
    let (m, n, k) = (g.m, g.n, g.k);
    float::<TY>("y")?;
    check_matrix(stream, "xq", &xq, [("m", m), ("k", k)])?;
    check_plain(stream, "x_scales", &xs, m, &format!("[m={m}]"))?;
    check_matrix(stream, "wq", &wq, [("n", n), ("k", k)])?;
    check_plain(stream, "w_scales", &ws, n, &format!("[n={n}]"))?;
    check_matrix(stream, "y", &y, [("m", m), ("n", n)])?;
    if let Some(b) = &g.bias {
        check_plain(stream, "bias", b, n, &format!("[n={n}]"))?;
    }
    if k > W8A8_MAX_K {
        return Err(Error::NotSupported {
            detail: format!("w8a8_gemm needs k <= {W8A8_MAX_K} for exact i32 sums, got {k}"),
        });
    }
    supported::<i8>(stream, abi::KNPU_KERNEL_W8A8_GEMM, "w8a8_gemm")?;
    supported::<TY>(stream, abi::KNPU_KERNEL_W8A8_GEMM, "w8a8_gemm")?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let mut p = abi::KnpuW8A8GemmParams::sized();
    p.y_dtype = TY::ABI;
    p.activation = g.activation.raw();
    p.m = m as u64;
    p.n = n as u64;
    p.k = k as u64;
    p.xq = xq.addr();
    p.x_scales = xs.addr();
    p.wq = wq.addr();
    p.w_scales = ws.addr();
    p.bias = g.bias.as_ref().map_or(0, |b| b.addr());
    p.y = y.addr();
    let used = [
        Some(&xq as &dyn Operand),
        Some(&xs),
        Some(&wq),
        Some(&ws),
        optional(&g.bias),
        Some(&y),
    ];
    submit(stream, abi::KNPU_KERNEL_W8A8_GEMM, &p, &used)
}

/// Queues an embedding lookup from a quantised table: `out[t, :]` (`[tokens, dim]`, f32,
/// f16 or bf16) is row `ids[t]` of `table` (`table.n` = vocabulary rows of `table.k` = dim
/// values) dequantised. Float tables use [`embedding`](super::embedding).
///
/// Errors at the call as for [`qmatmul`] (naming `table`, `scales`, `ids`, `out`). An id at
/// or past the vocabulary is a `Error::KernelFault` naming it when the stream synchronises,
/// and nothing is written then. No tokens queues nothing.
pub fn qembedding<T: DType>(
    stream: &Stream,
    table: &QWeights<'_>,
    ids: &impl AsDeviceSlice<u32>,
    out: &mut impl AsDeviceSliceMut<T>,
) -> Result<()> {
    let (ids, out) = (ids.as_device_slice(), out.as_device_slice_mut());
    let (tokens, dim) = (ids.len(), table.k);
    float::<T>("out")?;
    table.check(stream, "table", "scales")?;
    same_device(stream, "ids", &ids)?;
    check_matrix(stream, "out", &out, [("tokens", tokens), ("dim", dim)])?;
    supported::<T>(stream, abi::KNPU_KERNEL_QEMBEDDING, "qembedding")?;
    if tokens == 0 || dim == 0 {
        return Ok(());
    }
    let mut p = abi::KnpuQEmbeddingParams::sized();
    p.format = table.format.raw();
    p.out_dtype = T::ABI;
    p.vocab = table.n as u64;
    p.dim = dim as u64;
    p.tokens = tokens as u64;
    p.table = table.data.addr();
    p.scales = table.scales.as_ref().map_or(0, |s| s.addr());
    p.ids = ids.addr();
    p.out = out.addr();
    let used = [
        Some(&table.data as &dyn Operand),
        optional(&table.scales),
        Some(&ids),
        Some(&out),
    ];
    submit(stream, abi::KNPU_KERNEL_QEMBEDDING, &p, &used)
}
