//! The quantised kernels (0x300-0x3FF): quantise, dequantise, quantised matmul, the W8A8
//! int8 GEMM and embedding lookup from quantised tables. Quantised data is raw bytes laid out
//! as GGUF stores it; the format table is [`QuantFormat`]'s.

use super::extent::live;
use super::RowScales;
use super::{
    check_reserved, float_size, product, ActQuant, Activation, Extent, Extents, OpError,
    QuantFormat,
};
use crate::sys::*;

/// The longest reduction the W8A8 GEMM sums exactly in i32.
pub const W8A8_MAX_K: u64 = 1 << 17;

/// The per-row scale operand `operand` of `format` at `addr` (0: none) for `rows` rows:
/// [`OpError::Rule`] when given for a format whose blocks carry their scales, or missing for
/// one that requires them (unless there are no rows).
pub fn scales_extent(
    operand: &'static str,
    format: QuantFormat,
    addr: u64,
    rows: u64,
    output: bool,
) -> Result<Option<Extent>, OpError> {
    match (format.row_scales(), addr) {
        (RowScales::None, 0) | (RowScales::Optional, 0) => Ok(None),
        (RowScales::None, _) => Err(OpError::Rule {
            operand,
            rule: "this format's blocks carry their own scales; pass no scale tensor",
        }),
        (RowScales::Required, 0) if rows > 0 => Err(OpError::Rule {
            operand,
            rule: "this format needs one f32 scale per row",
        }),
        (RowScales::Required, 0) => Ok(None),
        (_, addr) => Extent::new(operand, addr, rows, 4, output).map(Some),
    }
}

/// Whether a quantised matmul of `format` weights with row length `k` takes the integer path
/// under `act_quant`; [`OpError::Unsupported`] when INT8 is asked of a format without one
/// (FP8, or I8 with `k % 32 != 0`).
pub fn qmatmul_uses_int8(
    format: QuantFormat,
    act_quant: ActQuant,
    k: u64,
) -> Result<bool, OpError> {
    let int_capable = match format {
        QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => false,
        QuantFormat::I8 => k.is_multiple_of(32),
        _ => true,
    };
    match act_quant {
        ActQuant::Float => Ok(false),
        ActQuant::Auto => Ok(int_capable),
        ActQuant::Int8 if int_capable => Ok(true),
        ActQuant::Int8 => Err(OpError::Unsupported {
            operand: "act_quant",
            what: "INT8 activations with FP8 weights or I8 weights whose k is not a multiple of 32",
        }),
    }
}

/// Validates KNPU_KERNEL_QUANTIZE: extents `src`, `dst`, then `scales` when given.
pub fn validate_quantize(p: &KnpuQuantizeParams) -> Result<Extents, OpError> {
    let format = QuantFormat::try_from(p.format)?;
    check_reserved(p.reserved)?;
    let rb = format.row_bytes_of("dst", p.k)?;
    let mut e = Extents::default();
    let src = product("src", &[p.rows, p.k])?;
    e.push(Extent::input("src", p.src, src, 4)?);
    let dst = product("dst", &[p.rows, rb])?;
    e.push(Extent::output("dst", p.dst, dst, 1)?);
    e.push_opt(scales_extent("scales", format, p.scales, p.rows, true)?);
    e.outputs_disjoint_from_all()?;
    Ok(e)
}

/// Validates KNPU_KERNEL_DEQUANTIZE: extents `src`, `scales` when given, then `dst`.
pub fn validate_dequantize(p: &KnpuDequantizeParams) -> Result<Extents, OpError> {
    let format = QuantFormat::try_from(p.format)?;
    check_reserved(p.reserved)?;
    let rb = format.row_bytes_of("src", p.k)?;
    let mut e = Extents::default();
    let src = product("src", &[p.rows, rb])?;
    e.push(Extent::input("src", p.src, src, 1)?);
    e.push_opt(scales_extent("scales", format, p.scales, p.rows, false)?);
    let dst = product("dst", &[p.rows, p.k])?;
    e.push(Extent::output("dst", p.dst, dst, 4)?);
    e.outputs_disjoint_from_all()?;
    Ok(e)
}

/// The end of a matmul's extents (QMATMUL, W8A8_GEMM): the f32 `bias` of `n` when given
/// (empty when there is no work) and the `[m, n]` output `y` of `y_size`-byte elements;
/// then the check that the outputs overlap no operand.
fn push_bias_and_y(
    e: &mut Extents,
    (m, n): (u64, u64),
    bias: u64,
    y: u64,
    y_size: u64,
) -> Result<(), OpError> {
    if bias != 0 {
        e.push(Extent::input("bias", bias, live(m > 0 && n > 0, n), 4)?);
    }
    let elems = product("y", &[m, n])?;
    e.push(Extent::output("y", y, elems, y_size)?);
    e.outputs_disjoint_from_all()
}

/// Validates KNPU_KERNEL_QMATMUL: extents `x`, `w`, `w_scales` and `bias` when given, then
/// `y`; inputs are empty when `y` is.
pub fn validate_qmatmul(p: &KnpuQMatmulParams) -> Result<Extents, OpError> {
    let format = QuantFormat::try_from(p.format)?;
    Activation::try_from(p.activation)?;
    let act_quant = ActQuant::try_from(p.act_quant)?;
    check_reserved(p.reserved)?;
    let x_size = float_size("x", p.x_dtype)?;
    let y_size = float_size("y", p.y_dtype)?;
    let rb = format.row_bytes_of("w", p.k)?;
    qmatmul_uses_int8(format, act_quant, p.k)?;
    let work = p.m > 0 && p.n > 0;
    let mut e = Extents::default();
    let x = live(work, product("x", &[p.m, p.k])?);
    e.push(Extent::input("x", p.x, x, x_size)?);
    e.push(Extent::input(
        "w",
        p.w,
        live(work, product("w", &[p.n, rb])?),
        1,
    )?);
    let w_scales = scales_extent("w_scales", format, p.w_scales, live(work, p.n), false)?;
    e.push_opt(w_scales);
    push_bias_and_y(&mut e, (p.m, p.n), p.bias, p.y, y_size)?;
    Ok(e)
}

/// Validates KNPU_KERNEL_W8A8_GEMM: extents `xq`, `x_scales`, `wq`, `w_scales`, `bias` when
/// given, then `y`; inputs are empty when `y` is.
pub fn validate_w8a8_gemm(p: &KnpuW8A8GemmParams) -> Result<Extents, OpError> {
    Activation::try_from(p.activation)?;
    let y_size = float_size("y", p.y_dtype)?;
    if p.k > W8A8_MAX_K {
        return Err(OpError::Unsupported {
            operand: "k",
            what: "a reduction longer than 131072 (not exact in i32)",
        });
    }
    let work = p.m > 0 && p.n > 0;
    let mut e = Extents::default();
    let xq = live(work, product("xq", &[p.m, p.k])?);
    e.push(Extent::input("xq", p.xq, xq, 1)?);
    e.push(Extent::input("x_scales", p.x_scales, live(work, p.m), 4)?);
    e.push(Extent::input(
        "wq",
        p.wq,
        live(work, product("wq", &[p.n, p.k])?),
        1,
    )?);
    e.push(Extent::input("w_scales", p.w_scales, live(work, p.n), 4)?);
    push_bias_and_y(&mut e, (p.m, p.n), p.bias, p.y, y_size)?;
    Ok(e)
}

/// Validates KNPU_KERNEL_QEMBEDDING: extents `table`, `scales` when given, `ids`, then
/// `out`; inputs are empty when `out` is.
pub fn validate_qembedding(p: &KnpuQEmbeddingParams) -> Result<Extents, OpError> {
    let format = QuantFormat::try_from(p.format)?;
    let out_size = float_size("out", p.out_dtype)?;
    let rb = format.row_bytes_of("table", p.dim)?;
    let n = product("out", &[p.tokens, p.dim])?;
    let work = n > 0;
    let mut e = Extents::default();
    let table = product("table", &[p.vocab, rb])?;
    e.push(Extent::input("table", p.table, live(work, table), 1)?);
    let scales = scales_extent("scales", format, p.scales, live(work, p.vocab), false)?;
    e.push_opt(scales);
    e.push(Extent::input("ids", p.ids, live(work, p.tokens), 4)?);
    e.push(Extent::output("out", p.out, n, out_size)?);
    e.outputs_disjoint_from_all()?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SizedStruct;

    #[test]
    fn quantize_rules() {
        let mut p = KnpuQuantizeParams::sized();
        (p.format, p.rows, p.k, p.src, p.dst) = (KNPU_QUANT_Q4_K, 2, 512, 0x1000, 0x10_0000);
        let e = validate_quantize(&p).unwrap();
        assert_eq!(e.get("dst").unwrap().bytes, 2 * 288);
        p.scales = 0x20_0000;
        assert!(matches!(
            validate_quantize(&p),
            Err(OpError::Rule {
                operand: "scales",
                ..
            })
        ));
        (p.format, p.dst) = (KNPU_QUANT_I8, 0x1004);
        assert!(matches!(
            validate_quantize(&p),
            Err(OpError::Overlap {
                output: "dst",
                other: "src"
            })
        ));
        p.format = 42;
        assert!(matches!(
            validate_quantize(&p),
            Err(OpError::UnknownValue { .. })
        ));
    }

    #[test]
    fn overflow_names_the_operand() {
        let mut p = KnpuQMatmulParams::sized();
        (p.format, p.m, p.n, p.k) = (KNPU_QUANT_Q8_0, 1 << 40, 1 << 40, 32);
        (p.x, p.w, p.y) = (0x1000, 0x2000, 0x3000);
        assert!(matches!(
            validate_qmatmul(&p),
            Err(OpError::Overflow { .. })
        ));
    }
}
