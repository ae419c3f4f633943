//! The LLM ops (0x400-0x4FF): normalisation, rotary embedding, activations, softmax, binary
//! ops with broadcast, embedding lookup, casts, argmax and top-k. Storage is F32, F16 or
//! BF16 (indices and token ids U32); matrices are row-major and contiguous. Inputs may
//! overlap outputs (the result is as if every input were read first); outputs of one kernel
//! may not overlap each other.

use super::extent::live;
use super::RopeStyle;
use super::{float_size, product, rule, Activation, BinaryOp, Broadcast, Extent, Extents, OpError};
use crate::sys::*;

/// `eps` of a normalisation: finite and `>= 0`.
pub fn check_eps(eps: f32) -> Result<(), OpError> {
    rule(
        eps.is_finite() && eps >= 0.0,
        "eps",
        "eps must be finite and >= 0",
    )
}

/// The rotated width and frequency base of a rotary embedding: `rotary_dim` even and at
/// most `head_dim`, `base` finite and positive.
pub fn check_rope(rotary_dim: u64, head_dim: u64, base: f32) -> Result<(), OpError> {
    if !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
        return Err(OpError::Rule {
            operand: "rotary_dim",
            rule: "rotary_dim must be even and at most head_dim",
        });
    }
    if !(base.is_finite() && base > 0.0) {
        return Err(OpError::Rule {
            operand: "base",
            rule: "the frequency base must be finite and positive",
        });
    }
    Ok(())
}

/// Positions `start .. start + rows` of a rotary embedding without a position tensor must
/// not overflow.
pub fn check_start_position(start: u64, rows: u64) -> Result<(), OpError> {
    start
        .checked_add(rows)
        .map(|_| ())
        .ok_or(OpError::Overflow {
            operand: "start_position",
        })
}

/// The scale of a softmax: finite.
pub fn check_softmax_scale(scale: f32) -> Result<(), OpError> {
    rule(
        scale.is_finite(),
        "scale",
        "the softmax scale must be finite",
    )
}

/// A `[rows, cols]` input reduced along its rows (argmax, top-k): at least one column when
/// there are rows, and every column index fits a u32. Returns `rows * cols`.
pub fn check_reduced(rows: u64, cols: u64) -> Result<u64, OpError> {
    if rows > 0 && cols == 0 {
        return Err(OpError::Rule {
            operand: "cols",
            rule: "a row reduction needs at least one column",
        });
    }
    rule(
        cols <= u64::from(u32::MAX),
        "cols",
        "column indices must fit u32",
    )?;
    product("x", &[rows, cols])
}

/// `k` of a top-k: at most `cols`.
pub fn check_top_k(k: u64, cols: u64) -> Result<(), OpError> {
    rule(k <= cols, "k", "k must be at most cols")
}

/// The activation of KNPU_KERNEL_ACTIVATION: SILU, GELU_ERF or GELU_TANH.
pub fn elementwise_activation(raw: u32) -> Result<Activation, OpError> {
    match Activation::try_from(raw)? {
        a @ (Activation::Silu | Activation::GeluErf | Activation::GeluTanh) => Ok(a),
        _ => Err(OpError::Unsupported {
            operand: "activation",
            what: "an activation other than silu, gelu_erf or gelu_tanh",
        }),
    }
}

/// KNPU_KERNEL_RMS_NORM: extents `x`, `weight`, `out`.
pub fn validate_rms_norm(p: &KnpuRmsNormParams) -> Result<Extents, OpError> {
    norm_extents(p.dtype, p.rows, p.cols, p.eps, [p.x, p.weight, 0, p.out])
}

/// KNPU_KERNEL_LAYER_NORM: extents `x`, `weight`, `bias` when given, `out`.
pub fn validate_layer_norm(p: &KnpuLayerNormParams) -> Result<Extents, OpError> {
    norm_extents(
        p.dtype,
        p.rows,
        p.cols,
        p.eps,
        [p.x, p.weight, p.bias, p.out],
    )
}

/// The rules both norms share: `x` and `out` are `[rows, cols]` of float `dtype`, `weight`
/// and `bias` (0: none) one row of it. `addrs` are `x`, `weight`, `bias`, `out`.
fn norm_extents(
    dtype: u32,
    rows: u64,
    cols: u64,
    eps: f32,
    addrs: [u64; 4],
) -> Result<Extents, OpError> {
    let [x, weight, bias, out] = addrs;
    let size = float_size("x", dtype)?;
    let n = product("x", &[rows, cols])?;
    check_eps(eps)?;
    let row = live(n > 0, cols);
    let mut e = Extents::default();
    e.push(Extent::input("x", x, n, size)?);
    e.push(Extent::input("weight", weight, row, size)?);
    if bias != 0 {
        e.push(Extent::input("bias", bias, row, size)?);
    }
    e.push(Extent::output("out", out, n, size)?);
    Ok(e)
}

/// KNPU_KERNEL_ROPE: extents `x`, `positions` when given, `out`.
pub fn validate_rope(p: &KnpuRopeParams) -> Result<(RopeStyle, Extents), OpError> {
    let size = float_size("x", p.dtype)?;
    let style = RopeStyle::try_from(p.style)?;
    let n = product("x", &[p.rows, p.heads, p.head_dim])?;
    check_rope(p.rotary_dim, p.head_dim, p.base)?;
    let mut e = Extents::default();
    e.push(Extent::input("x", p.x, n, size)?);
    if p.positions != 0 {
        e.push(Extent::input("positions", p.positions, p.rows, 4)?);
    } else {
        check_start_position(p.start_position, p.rows)?;
    }
    e.push(Extent::output("out", p.out, n, size)?);
    Ok((style, e))
}

/// KNPU_KERNEL_ACTIVATION: extents `x`, `out`.
pub fn validate_activation(p: &KnpuActivationParams) -> Result<(Activation, Extents), OpError> {
    let size = float_size("x", p.dtype)?;
    let act = elementwise_activation(p.activation)?;
    let mut e = Extents::default();
    e.push(Extent::input("x", p.x, p.len, size)?);
    e.push(Extent::output("out", p.out, p.len, size)?);
    Ok((act, e))
}

/// KNPU_KERNEL_SWIGLU: extents `gate`, `up`, `out`.
pub fn validate_swiglu(p: &KnpuSwigluParams) -> Result<Extents, OpError> {
    let size = float_size("gate", p.dtype)?;
    let mut e = Extents::default();
    e.push(Extent::input("gate", p.gate, p.len, size)?);
    e.push(Extent::input("up", p.up, p.len, size)?);
    e.push(Extent::output("out", p.out, p.len, size)?);
    Ok(e)
}

/// KNPU_KERNEL_SOFTMAX: extents `x`, `out`.
pub fn validate_softmax(p: &KnpuSoftmaxParams) -> Result<Extents, OpError> {
    let size = float_size("x", p.dtype)?;
    let n = product("x", &[p.rows, p.cols])?;
    check_softmax_scale(p.scale)?;
    let mut e = Extents::default();
    e.push(Extent::input("x", p.x, n, size)?);
    e.push(Extent::output("out", p.out, n, size)?);
    Ok(e)
}

/// The elements of `b` when `a` has `n` elements in rows of `cols`.
#[inline]
fn b_elems_of(broadcast: Broadcast, n: u64, cols: u64) -> u64 {
    match broadcast {
        Broadcast::None => n,
        Broadcast::Row => live(n > 0, cols),
    }
}

/// A KNPU_KERNEL_BINARY parameter struct that passed its rules, held compactly (addresses
/// and element counts, no [`Extents`] list and no operand names) so that a launcher or a
/// driver that decodes one on every launch moves a few words; [`BinaryOperands::a`],
/// [`BinaryOperands::b`] and [`BinaryOperands::out`] give the checked extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryOperands {
    /// The op.
    pub op: BinaryOp,
    /// How `b` maps onto `a`'s rows.
    pub broadcast: Broadcast,
    /// Bytes per element.
    elem_size: u64,
    /// Elements of `a` and `out` (`rows * cols`).
    elems: u64,
    /// Elements of `b`.
    b_elems: u64,
    addrs: [u64; 3],
}

impl BinaryOperands {
    /// Whether `b` has `a`'s shape, so the op is one pass over three equal, contiguous
    /// vectors (no broadcast).
    #[inline]
    pub fn same_shape(&self) -> bool {
        self.broadcast == Broadcast::None
    }

    #[inline]
    fn extent(&self, i: usize, operand: &'static str, elems: u64, output: bool) -> Extent {
        Extent {
            operand,
            addr: self.addrs[i],
            bytes: elems * self.elem_size,
            elem_size: self.elem_size,
            output,
        }
    }

    /// Operand `a`, `[rows, cols]`.
    #[inline]
    pub fn a(&self) -> Extent {
        self.extent(0, "a", self.elems, false)
    }

    /// Operand `b`: `[rows, cols]`, or one row of `cols` under [`Broadcast::Row`].
    #[inline]
    pub fn b(&self) -> Extent {
        self.extent(1, "b", self.b_elems, false)
    }

    /// The output, `[rows, cols]`.
    #[inline]
    pub fn out(&self) -> Extent {
        self.extent(2, "out", self.elems, true)
    }
}

/// KNPU_KERNEL_BINARY: checks `p` and decodes it into its op, broadcast and operands.
#[inline]
pub fn decode_binary(p: &KnpuBinaryParams) -> Result<BinaryOperands, OpError> {
    let size = float_size("a", p.dtype)?;
    let op = BinaryOp::try_from(p.op)?;
    let broadcast = Broadcast::try_from(p.broadcast)?;
    let n = product("a", &[p.rows, p.cols])?;
    let b_elems = b_elems_of(broadcast, n, p.cols);
    // The extents' rules (overflow, address and alignment), checked once here; the
    // accessors rebuild the same values without checks.
    Extent::input("a", p.a, n, size)?;
    Extent::input("b", p.b, b_elems, size)?;
    Extent::output("out", p.out, n, size)?;
    Ok(BinaryOperands {
        op,
        broadcast,
        elem_size: size,
        elems: n,
        b_elems,
        addrs: [p.a, p.b, p.out],
    })
}

/// KNPU_KERNEL_BINARY: extents `a`, `b`, `out` ([`decode_binary`] as an [`Extents`] list).
pub fn validate_binary(p: &KnpuBinaryParams) -> Result<(BinaryOp, Broadcast, Extents), OpError> {
    let d = decode_binary(p)?;
    let mut e = Extents::default();
    e.push(d.a());
    e.push(d.b());
    e.push(d.out());
    Ok((d.op, d.broadcast, e))
}

/// KNPU_KERNEL_EMBEDDING: extents `table`, `ids`, `out`.
pub fn validate_embedding(p: &KnpuEmbeddingParams) -> Result<Extents, OpError> {
    let table_size = float_size("table", p.table_dtype)?;
    let out_size = float_size("out", p.out_dtype)?;
    let n = product("out", &[p.tokens, p.dim])?;
    let table = if n > 0 {
        product("table", &[p.vocab, p.dim])?
    } else {
        0
    };
    let mut e = Extents::default();
    e.push(Extent::input("table", p.table, table, table_size)?);
    e.push(Extent::input("ids", p.ids, live(n > 0, p.tokens), 4)?);
    e.push(Extent::output("out", p.out, n, out_size)?);
    Ok(e)
}

/// KNPU_KERNEL_CAST: extents `src`, `dst`.
pub fn validate_cast(p: &KnpuCastParams) -> Result<Extents, OpError> {
    let src_size = float_size("src", p.src_dtype)?;
    let dst_size = float_size("dst", p.dst_dtype)?;
    let mut e = Extents::default();
    e.push(Extent::input("src", p.src, p.len, src_size)?);
    e.push(Extent::output("dst", p.dst, p.len, dst_size)?);
    Ok(e)
}

/// KNPU_KERNEL_ARGMAX: extents `x`, `out`.
pub fn validate_argmax(p: &KnpuArgmaxParams) -> Result<Extents, OpError> {
    let size = float_size("x", p.dtype)?;
    let n = check_reduced(p.rows, p.cols)?;
    let mut e = Extents::default();
    e.push(Extent::input("x", p.x, n, size)?);
    e.push(Extent::output("out", p.out, p.rows, 4)?);
    Ok(e)
}

/// KNPU_KERNEL_TOP_K: extents `x`, `values`, `indices` (the two outputs may not overlap).
pub fn validate_top_k(p: &KnpuTopKParams) -> Result<Extents, OpError> {
    let size = float_size("x", p.dtype)?;
    let n = check_reduced(p.rows, p.cols)?;
    check_top_k(p.k, p.cols)?;
    let nk = product("values", &[p.rows, p.k])?;
    let values = Extent::output("values", p.values, nk, size)?;
    let indices = Extent::output("indices", p.indices, nk, 4)?;
    if values.overlaps(&indices) {
        return Err(OpError::Overlap {
            output: "values",
            other: "indices",
        });
    }
    let mut e = Extents::default();
    e.push(Extent::input("x", p.x, n, size)?);
    e.push(values);
    e.push(indices);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SizedStruct;

    #[test]
    fn rules_name_their_field() {
        let mut p = KnpuRopeParams::sized();
        (p.rows, p.heads, p.head_dim, p.rotary_dim, p.base) = (2, 2, 8, 3, 10000.0);
        (p.x, p.out) = (0x1000, 0x2000);
        assert!(matches!(
            validate_rope(&p),
            Err(OpError::Rule {
                operand: "rotary_dim",
                ..
            })
        ));
        p.rotary_dim = 8;
        p.start_position = u64::MAX;
        assert_eq!(
            validate_rope(&p).unwrap_err(),
            OpError::Overflow {
                operand: "start_position"
            }
        );
        let mut t = KnpuTopKParams::sized();
        (t.rows, t.cols, t.k, t.x, t.values, t.indices) = (1, 4, 2, 0x1000, 0x2000, 0x2004);
        assert!(matches!(validate_top_k(&t), Err(OpError::Overlap { .. })));
        let mut a = KnpuActivationParams::sized();
        a.activation = KNPU_ACTIVATION_RELU;
        assert_eq!(
            validate_activation(&a).unwrap_err().status(),
            KNPU_STATUS_NOT_SUPPORTED
        );
    }

    #[test]
    fn decoded_binary_operands_are_the_checked_extents() {
        let mut p = KnpuBinaryParams::sized();
        (p.op, p.dtype, p.rows, p.cols) = (KNPU_BINARY_ADD, KNPU_DTYPE_F16, 3, 5);
        (p.a, p.b, p.out) = (0x1000, 0x2000, 0x3000);
        for (broadcast, b_elems) in [(KNPU_BROADCAST_NONE, 15), (KNPU_BROADCAST_ROW, 5)] {
            p.broadcast = broadcast;
            let d = decode_binary(&p).unwrap();
            assert_eq!(d.same_shape(), broadcast == KNPU_BROADCAST_NONE);
            assert_eq!(d.a(), Extent::new("a", 0x1000, 15, 2, false).unwrap());
            assert_eq!(d.b(), Extent::new("b", 0x2000, b_elems, 2, false).unwrap());
            assert_eq!(d.out(), Extent::new("out", 0x3000, 15, 2, true).unwrap());
            let (_, _, e) = validate_binary(&p).unwrap();
            assert_eq!(e.as_slice(), &[d.a(), d.b(), d.out()]);
        }
        // Every rule still applies: a misaligned operand, an overflowing shape.
        p.b = 0x2001;
        assert_eq!(
            decode_binary(&p).unwrap_err(),
            OpError::Address {
                operand: "b",
                addr: 0x2001
            }
        );
        p.b = 0x2000;
        p.rows = u64::MAX;
        assert_eq!(
            decode_binary(&p).unwrap_err(),
            OpError::Overflow { operand: "a" }
        );
    }
}
