//! Quantised weights: GGUF blocks (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), int8 with per-row scales
//! and FP8 (E4M3, E5M2), with quantise/dequantise kernels, quantised matmul and embedding.
//!
//! Weights travel as raw bytes exactly as a GGUF file stores them (little-endian f16 scales),
//! one row of `k` values after another, so a driver holding device memory as byte slices can
//! call these kernels without copying or repacking. Every entry validates the row length
//! against the format's block size and every slice length before reading, so a truncated or
//! misdescribed tensor is a [`KernelError`], never a read past a buffer.
//!
//! Non-finite scales in a quantised file are not rejected: they follow IEEE arithmetic
//! (a NaN scale makes its block NaN, an Inf scale makes it ±Inf, or NaN where a code is 0),
//! exactly as the reference `gguf` dequantiser does.

mod act;
pub mod embedding;
pub mod fp8;
pub mod int8;
mod kquants;
mod prefill;
mod q4;
mod q8_0;
pub mod qmatmul;
mod simd;
mod xprep;

use crate::KernelError;

pub use act::{ActElem, Activation};
pub use embedding::embedding;
pub use int8::{w8a8_gemm, ScaledI8, W8A8Params};
pub use qmatmul::{qmatmul, ActQuant, QMatmulParams, QWeights};

/// A weight storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum QuantFormat {
    /// GGUF Q8_0: blocks of 32, an f16 scale `d` and 32 `i8`; `x = d * q` (34 bytes).
    Q8_0,
    /// GGUF Q4_0: blocks of 32, an f16 scale `d` and 16 bytes of nibbles; `x = d * (q - 8)`
    /// (18 bytes). Low nibbles hold elements 0..16, high nibbles 16..32.
    Q4_0,
    /// GGUF Q4_1: blocks of 32, f16 `d` and `m`, 16 bytes of nibbles; `x = d * q + m` (20 bytes).
    Q4_1,
    /// GGUF Q4_K: super-blocks of 256 (144 bytes): f16 `d`, f16 `dmin`, 12 bytes of packed
    /// 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of nibbles;
    /// `x = d * sc[j] * q - dmin * m[j]`.
    Q4_K,
    /// GGUF Q6_K: super-blocks of 256 (210 bytes): 128 bytes of low nibbles, 64 bytes of high
    /// 2-bit pairs, 16 `i8` scales (one per 16 values), f16 `d`; `x = d * sc[i] * (q - 32)`.
    Q6_K,
    /// `i8` per value with one f32 scale per row (per output channel), held apart from the
    /// bytes; `x = scale[row] * q`.
    I8,
    /// FP8 E4M3 (OCP "E4M3FN": no infinities, NaN is `S.1111.111`, largest finite 448), one
    /// byte per value, optional f32 scale per row.
    F8E4M3,
    /// FP8 E5M2 (IEEE-like: infinities and NaNs, largest finite 57344), one byte per value,
    /// optional f32 scale per row.
    F8E5M2,
}

impl QuantFormat {
    /// Every format, in declaration order.
    pub const ALL: [QuantFormat; 8] = [
        QuantFormat::Q8_0,
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q4_K,
        QuantFormat::Q6_K,
        QuantFormat::I8,
        QuantFormat::F8E4M3,
        QuantFormat::F8E5M2,
    ];

    /// Values per block; a row length must be a multiple of it.
    pub fn block_elems(self) -> usize {
        match self {
            QuantFormat::Q8_0 | QuantFormat::Q4_0 | QuantFormat::Q4_1 => 32,
            QuantFormat::Q4_K | QuantFormat::Q6_K => 256,
            QuantFormat::I8 | QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => 1,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantFormat::Q8_0 => 34,
            QuantFormat::Q4_0 => 18,
            QuantFormat::Q4_1 => 20,
            QuantFormat::Q4_K => 144,
            QuantFormat::Q6_K => 210,
            QuantFormat::I8 | QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => 1,
        }
    }

    /// The name used in benchmark records and messages (`"q4_k"`, `"f8e4m3"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4_0 => "q4_0",
            QuantFormat::Q4_1 => "q4_1",
            QuantFormat::Q4_K => "q4_k",
            QuantFormat::Q6_K => "q6_k",
            QuantFormat::I8 => "i8",
            QuantFormat::F8E4M3 => "f8e4m3",
            QuantFormat::F8E5M2 => "f8e5m2",
        }
    }

    /// Parses a name as [`QuantFormat::name`] spells it (case-insensitive).
    pub fn from_name(name: &str) -> Option<QuantFormat> {
        let n = name.trim().to_ascii_lowercase();
        QuantFormat::ALL.into_iter().find(|f| f.name() == n)
    }

    /// Whether the format keeps its scales in a separate per-row f32 tensor: required for
    /// [`QuantFormat::I8`], optional for the FP8 formats, refused for GGUF blocks.
    pub fn row_scales(self) -> RowScales {
        match self {
            QuantFormat::I8 => RowScales::Required,
            QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => RowScales::Optional,
            _ => RowScales::None,
        }
    }
}

/// Whether a format takes a separate per-row scale tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowScales {
    /// Scales live inside the blocks; passing a scale tensor is an error.
    None,
    /// A scale per row may be given; without one every scale is 1.
    Optional,
    /// A scale per row must be given.
    Required,
}

/// Bytes one row of `k` values takes in `format`; an error if `k` is not a multiple of the
/// block size.
pub fn row_bytes(format: QuantFormat, k: usize) -> Result<usize, KernelError> {
    let be = format.block_elems();
    if !k.is_multiple_of(be) {
        return Err(KernelError::BadShape {
            detail: format!(
                "row length {k} is not a multiple of the {} block size {be}",
                format.name()
            ),
        });
    }
    (k / be)
        .checked_mul(format.block_bytes())
        .ok_or_else(|| KernelError::BadShape {
            detail: format!("row length {k} overflows"),
        })
}

/// `src` and `dst` walked in step, whole blocks of `src_block` and `dst_block` elements: how a
/// quantiser or dequantiser pairs each block with its output.
pub(crate) fn blocks<'a, S, D>(
    src: &'a [S],
    src_block: usize,
    dst: &'a mut [D],
    dst_block: usize,
) -> impl Iterator<Item = (&'a [S], &'a mut [D])> {
    src.chunks_exact(src_block)
        .zip(dst.chunks_exact_mut(dst_block))
}

/// Four row-major buffers cut in step into pieces (of one row, or a group of rows): `q` has
/// `q_len` values a piece, `a`, `b` and `c` have `len` each. Activation preparation keeps
/// its codes and three per-lane arrays this way.
pub(crate) fn split_rows<'a, Q, A, B, C>(
    (q, a, b, c): (&'a mut [Q], &'a mut [A], &'a mut [B], &'a mut [C]),
    q_len: usize,
    len: usize,
) -> impl Iterator<Item = (&'a mut [Q], &'a mut [A], &'a mut [B], &'a mut [C])> {
    q.chunks_mut(q_len)
        .zip(a.chunks_mut(len))
        .zip(b.chunks_mut(len))
        .zip(c.chunks_mut(len))
        .map(|(((q, a), b), c)| (q, a, b, c))
}

pub(crate) fn mul_checked(a: usize, b: usize, what: &str) -> Result<usize, KernelError> {
    a.checked_mul(b).ok_or_else(|| KernelError::BadShape {
        detail: format!("{what}: {a} x {b} overflows"),
    })
}

pub(crate) use crate::error::check_len;

/// Checks that a matmul's bias, when given, has one entry per output column (`n`).
pub(crate) fn check_bias(bias: Option<&[f32]>, n: usize) -> Result<(), KernelError> {
    match bias {
        Some(b) if b.len() != n => Err(KernelError::BadShape {
            detail: format!("bias has {} entries for {n} outputs", b.len()),
        }),
        _ => Ok(()),
    }
}

/// Checks a per-row scale tensor against the format's rule; returns it when present.
pub(crate) fn check_row_scales(
    format: QuantFormat,
    scales: Option<&[f32]>,
    rows: usize,
) -> Result<Option<&[f32]>, KernelError> {
    match (format.row_scales(), scales) {
        (RowScales::None, Some(_)) => Err(KernelError::BadShape {
            detail: format!(
                "{} blocks carry their own scales; no separate scale tensor is allowed",
                format.name()
            ),
        }),
        (RowScales::Required, None) => Err(KernelError::BadShape {
            detail: format!("{} weights need one scale per row", format.name()),
        }),
        (_, Some(s)) => {
            if s.len() != rows {
                return Err(KernelError::BadShape {
                    detail: format!(
                        "scale tensor has {} entries for {rows} rows ({} takes one per row)",
                        s.len(),
                        format.name()
                    ),
                });
            }
            Ok(Some(s))
        }
        (_, None) => Ok(None),
    }
}

/// Quantises `rows` rows of `k` f32 values from `src` into `dst` in `format`.
///
/// GGUF Q8_0, Q4_0 and Q4_1 follow the reference quantiser bit for bit (the `gguf`
/// package's, which matches ggml's); Q4_K and Q6_K use a simple min/max scale search (the
/// layouts are exact, the choice of scales is ours). [`QuantFormat::I8`] writes one scale per
/// row (`max|x| / 127`, round half away from zero) into `scales`, which it requires; the FP8
/// formats round to nearest even, saturate finite overflow to the largest finite value and
/// write `scales` (if given) as 1. Non-finite inputs propagate into the block scales by IEEE
/// arithmetic.
pub fn quantize(
    format: QuantFormat,
    rows: usize,
    k: usize,
    src: &[f32],
    dst: &mut [u8],
    scales: Option<&mut [f32]>,
) -> Result<(), KernelError> {
    let rb = row_bytes(format, k)?;
    check_len("src", mul_checked(rows, k, "src")?, src.len())?;
    check_len("dst", mul_checked(rows, rb, "dst")?, dst.len())?;
    let scales = match (format.row_scales(), scales) {
        (RowScales::None, Some(_)) => {
            return Err(KernelError::BadShape {
                detail: format!("{} blocks carry their own scales", format.name()),
            })
        }
        (RowScales::Required, None) => {
            return Err(KernelError::BadShape {
                detail: format!("{} quantisation writes one scale per row", format.name()),
            })
        }
        (_, Some(s)) => {
            check_len("scales", rows, s.len())?;
            Some(s)
        }
        (_, None) => None,
    };
    if rows == 0 || k == 0 {
        if let Some(s) = scales {
            s[..rows].fill(1.0);
        }
        return Ok(());
    }
    let src = &src[..rows * k];
    let dst = &mut dst[..rows * rb];
    match format {
        QuantFormat::Q8_0 => q8_0::quantize(src, dst),
        QuantFormat::Q4_0 => q4::quantize_q4_0(src, dst),
        QuantFormat::Q4_1 => q4::quantize_q4_1(src, dst),
        QuantFormat::Q4_K => kquants::quantize_q4_k(src, dst),
        QuantFormat::Q6_K => kquants::quantize_q6_k(src, dst),
        QuantFormat::I8 => {
            let s = scales.expect("checked above");
            for (r, (row, out)) in src.chunks_exact(k).zip(dst.chunks_exact_mut(k)).enumerate() {
                s[r] = int8::quantize_row(row, out);
            }
        }
        QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => {
            let kind = fp8_kind(format);
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = fp8::encode(kind, v, fp8::Overflow::Saturate);
            }
            if let Some(s) = scales {
                s[..rows].fill(1.0);
            }
        }
    }
    Ok(())
}

pub(crate) fn fp8_kind(format: QuantFormat) -> fp8::Fp8Kind {
    match format {
        QuantFormat::F8E5M2 => fp8::Fp8Kind::E5M2,
        _ => fp8::Fp8Kind::E4M3,
    }
}

/// Dequantises `rows` rows of `k` values in `format` from `src` into f32 `dst`.
///
/// GGUF formats reproduce the reference `gguf` dequantiser bit for bit (same f32 operations
/// in the same order). `scales` is required for [`QuantFormat::I8`], optional for FP8 (each
/// row multiplied by its scale) and refused for GGUF formats.
pub fn dequantize(
    format: QuantFormat,
    rows: usize,
    k: usize,
    src: &[u8],
    scales: Option<&[f32]>,
    dst: &mut [f32],
) -> Result<(), KernelError> {
    let rb = row_bytes(format, k)?;
    check_len("src", mul_checked(rows, rb, "src")?, src.len())?;
    check_len("dst", mul_checked(rows, k, "dst")?, dst.len())?;
    let scales = check_row_scales(format, scales, rows)?;
    if rows == 0 || k == 0 {
        return Ok(());
    }
    for r in 0..rows {
        dequantize_row(
            format,
            &src[r * rb..(r + 1) * rb],
            scales.map(|s| s[r]),
            &mut dst[r * k..(r + 1) * k],
        );
    }
    Ok(())
}

/// Dequantises one row whose length the caller has already validated (`src` holds exactly
/// the row's bytes and `dst` its `k` values).
pub(crate) fn dequantize_row(format: QuantFormat, src: &[u8], scale: Option<f32>, dst: &mut [f32]) {
    match format {
        QuantFormat::Q8_0 => q8_0::dequantize(src, dst),
        QuantFormat::Q4_0 => q4::dequantize_q4_0(src, dst),
        QuantFormat::Q4_1 => q4::dequantize_q4_1(src, dst),
        QuantFormat::Q4_K => kquants::dequantize_q4_k(src, dst),
        QuantFormat::Q6_K => kquants::dequantize_q6_k(src, dst),
        QuantFormat::I8 => {
            let s = scale.unwrap_or(1.0);
            for (o, &q) in dst.iter_mut().zip(src) {
                *o = q as i8 as f32 * s;
            }
        }
        QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => {
            let table = fp8::decode_table(fp8_kind(format));
            match scale {
                Some(s) => {
                    for (o, &q) in dst.iter_mut().zip(src) {
                        *o = table[q as usize] * s;
                    }
                }
                None => {
                    for (o, &q) in dst.iter_mut().zip(src) {
                        *o = table[q as usize];
                    }
                }
            }
        }
    }
}

#[inline]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

#[inline]
pub(crate) fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}
