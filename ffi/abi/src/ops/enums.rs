//! The ABI's enums as Rust enums: one definition, converted from and to the header's numbers
//! and names here and nowhere else.

use super::OpError;
use crate::sys::*;

/// Used to count variants in `abi_enum!`.
const fn one(_: &str) -> usize {
    1
}

/// Declares an enum of the header: variants with their header number and name, `ALL`,
/// `raw()`, `name()`, `from_name()` and `TryFrom<u32>` (unknown numbers are
/// `OpError::UnknownValue` naming `$field`).
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($field:literal) {
            $( $(#[$vmeta:meta])* $var:ident = $raw:ident, $text:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $var, )*
        }

        impl $name {
            /// Every value, in the header's order.
            pub const ALL: [$name; 0 $(+ one(stringify!($var)))*] = [$($name::$var),*];

            /// The header's number.
            pub const fn raw(self) -> u32 {
                match self {
                    $( $name::$var => $raw, )*
                }
            }

            /// The lower-case name used in messages, benchmark records and by the C and
            /// Python APIs.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$var => $text, )*
                }
            }

            /// Parses a name as [`Self::name`] spells it (ASCII case-insensitive).
            pub fn from_name(name: &str) -> Option<$name> {
                let name = name.trim();
                Self::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(name))
            }
        }

        impl TryFrom<u32> for $name {
            type Error = OpError;

            #[inline]
            fn try_from(value: u32) -> Result<$name, OpError> {
                match value {
                    $( $raw => Ok($name::$var), )*
                    _ => Err(OpError::UnknownValue { field: $field, value }),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

abi_enum! {
    /// The activation of a fused epilogue, and the function of KNPU_KERNEL_ACTIVATION
    /// (`KnpuActivation`).
    #[non_exhaustive]
    #[derive(Default)]
    pub enum Activation("activation") {
        /// Identity.
        #[default]
        None = KNPU_ACTIVATION_NONE, "none";
        /// `max(x, 0)`; NaN stays NaN.
        Relu = KNPU_ACTIVATION_RELU, "relu";
        /// `0.5 x (1 + erf(x / sqrt 2))` (`torch.nn.GELU()`).
        GeluErf = KNPU_ACTIVATION_GELU_ERF, "gelu_erf";
        /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))` (`GELU(approximate="tanh")`).
        GeluTanh = KNPU_ACTIVATION_GELU_TANH, "gelu_tanh";
        /// `x * sigmoid(x)` (`torch.nn.SiLU()`).
        Silu = KNPU_ACTIVATION_SILU, "silu";
    }
}

abi_enum! {
    /// A storage format of quantised rows (`KnpuQuantFormat`); its block table is
    /// [`QuantFormat::block_elems`], [`QuantFormat::block_bytes`] and
    /// [`QuantFormat::row_scales`].
    #[allow(non_camel_case_types)] // the GGUF names
    pub enum QuantFormat("format") {
        /// GGUF Q8_0: blocks of 32 values, an f16 scale and 32 `i8` (34 bytes).
        Q8_0 = KNPU_QUANT_Q8_0, "q8_0";
        /// GGUF Q4_0: blocks of 32 values, an f16 scale and 16 bytes of nibbles (18 bytes).
        Q4_0 = KNPU_QUANT_Q4_0, "q4_0";
        /// GGUF Q4_1: blocks of 32 values, f16 scale and minimum, 16 bytes of nibbles (20
        /// bytes).
        Q4_1 = KNPU_QUANT_Q4_1, "q4_1";
        /// GGUF Q4_K: super-blocks of 256 values (144 bytes).
        Q4_K = KNPU_QUANT_Q4_K, "q4_k";
        /// GGUF Q6_K: super-blocks of 256 values (210 bytes).
        Q6_K = KNPU_QUANT_Q6_K, "q6_k";
        /// One `i8` per value and a required f32 scale per row.
        I8 = KNPU_QUANT_I8, "i8";
        /// FP8 E4M3 (OCP E4M3FN), one byte per value, optional f32 scale per row.
        F8E4M3 = KNPU_QUANT_F8E4M3, "f8e4m3";
        /// FP8 E5M2, one byte per value, optional f32 scale per row.
        F8E5M2 = KNPU_QUANT_F8E5M2, "f8e5m2";
    }
}

/// Whether a format takes a separate per-row f32 scale tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowScales {
    /// The blocks carry their scales; a scale tensor is refused.
    None,
    /// A scale per row may be given (without one every scale is 1).
    Optional,
    /// A scale per row must be given.
    Required,
}

/// One row of the header's format table: values per block, bytes per block, per-row scales.
struct FormatInfo(u64, u64, RowScales);

impl QuantFormat {
    /// The header's table, indexed by the format's number.
    const TABLE: [FormatInfo; 8] = [
        FormatInfo(32, 34, RowScales::None),   // Q8_0
        FormatInfo(32, 18, RowScales::None),   // Q4_0
        FormatInfo(32, 20, RowScales::None),   // Q4_1
        FormatInfo(256, 144, RowScales::None), // Q4_K
        FormatInfo(256, 210, RowScales::None), // Q6_K
        FormatInfo(1, 1, RowScales::Required), // I8
        FormatInfo(1, 1, RowScales::Optional), // F8E4M3
        FormatInfo(1, 1, RowScales::Optional), // F8E5M2
    ];

    const fn info(self) -> &'static FormatInfo {
        &Self::TABLE[self.raw() as usize]
    }

    /// Values per block: a row length must be a multiple of it.
    pub const fn block_elems(self) -> usize {
        self.info().0 as usize
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        self.info().1 as usize
    }

    /// Whether the format takes a separate per-row scale tensor.
    pub const fn row_scales(self) -> RowScales {
        self.info().2
    }

    /// Bytes one row of `k` values takes; [`OpError::Rule`] when `k` is not a multiple of
    /// the block size.
    pub fn row_bytes(self, k: usize) -> Result<usize, OpError> {
        let bytes = self.row_bytes_of("row", k as u64)?;
        usize::try_from(bytes).map_err(|_| OpError::Overflow { operand: "row" })
    }

    /// [`QuantFormat::row_bytes`] for operand `operand`, in the ABI's 64-bit sizes.
    pub fn row_bytes_of(self, operand: &'static str, k: u64) -> Result<u64, OpError> {
        let FormatInfo(elems, bytes, _) = *self.info();
        if !k.is_multiple_of(elems) {
            return Err(OpError::Rule {
                operand,
                rule: "row length must be a multiple of the format's block size",
            });
        }
        (k / elems)
            .checked_mul(bytes)
            .ok_or(OpError::Overflow { operand })
    }
}

abi_enum! {
    /// How KNPU_KERNEL_QMATMUL multiplies activations with the weights (`KnpuActQuant`).
    #[derive(Default)]
    pub enum ActQuant("act_quant") {
        /// Integer dot products where the format has them (activations quantised on the fly
        /// to 8-bit blocks of 32), f32 otherwise.
        #[default]
        Auto = KNPU_ACT_QUANT_AUTO, "auto";
        /// Integer dot products; unsupported for FP8 weights and for I8 weights with
        /// `k % 32 != 0`.
        Int8 = KNPU_ACT_QUANT_INT8, "int8";
        /// Dequantise each weight row to f32 and multiply in f32.
        Float = KNPU_ACT_QUANT_FLOAT, "float";
    }
}

abi_enum! {
    /// The pair layout of a rotary embedding (`KnpuRopeStyle`).
    pub enum RopeStyle("style") {
        /// GPT-J: pairs `(2i, 2i + 1)`.
        Interleaved = KNPU_ROPE_INTERLEAVED, "interleaved";
        /// GPT-NeoX / Llama: pairs `(i, i + rotary_dim / 2)`.
        NeoX = KNPU_ROPE_NEOX, "neox";
    }
}

abi_enum! {
    /// The operation of KNPU_KERNEL_BINARY (`KnpuBinaryOp`).
    pub enum BinaryOp("op") {
        /// `a + b`
        Add = KNPU_BINARY_ADD, "add";
        /// `a * b`
        Mul = KNPU_BINARY_MUL, "mul";
        /// `a - b`
        Sub = KNPU_BINARY_SUB, "sub";
        /// `a / b` (since ABI 2.1)
        Div = KNPU_BINARY_DIV, "div";
    }
}

abi_enum! {
    /// How operand `b` of KNPU_KERNEL_BINARY is laid out (`KnpuBroadcast`).
    pub enum Broadcast("broadcast") {
        /// `b` is `[rows, cols]`, like `a`.
        None = KNPU_BROADCAST_NONE, "none";
        /// `b` is one row `[cols]`, applied to every row of `a`.
        Row = KNPU_BROADCAST_ROW, "row";
    }
}

abi_enum! {
    /// The operation of KNPU_KERNEL_ELEMENTWISE (`KnpuElementwiseOp`): the ops with a scalar.
    /// Plain add, subtract and multiply are [`BinaryOp`]s.
    pub enum ElementwiseOp("op") {
        /// `out = alpha * a + b`
        Axpy = KNPU_ELEMENTWISE_AXPY, "axpy";
        /// `out = alpha * a` (b unused)
        Scale = KNPU_ELEMENTWISE_SCALE, "scale";
    }
}

impl BinaryOp {
    /// The ABI minor (of major 2) that defined the op: a driver of an older minor refuses
    /// it at submit, so a caller checks the driver's version first.
    pub const fn since_minor(self) -> u32 {
        match self {
            BinaryOp::Div => 1,
            _ => 0,
        }
    }
}

impl ElementwiseOp {
    /// Whether the op reads operand `b`.
    pub const fn needs_b(self) -> bool {
        !matches!(self, ElementwiseOp::Scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for f in QuantFormat::ALL {
            assert_eq!(QuantFormat::try_from(f.raw()), Ok(f));
            assert_eq!(QuantFormat::from_name(&f.name().to_uppercase()), Some(f));
        }
        assert_eq!(
            QuantFormat::try_from(99),
            Err(OpError::UnknownValue {
                field: "format",
                value: 99
            })
        );
        assert_eq!(QuantFormat::from_name("q5_k"), None);
        for a in Activation::ALL {
            assert_eq!(Activation::try_from(a.raw()), Ok(a));
        }
        assert_eq!(BinaryOp::try_from(KNPU_BINARY_DIV), Ok(BinaryOp::Div));
        assert_eq!(BinaryOp::from_name("div"), Some(BinaryOp::Div));
        assert_eq!(BinaryOp::Div.since_minor(), 1);
        assert_eq!(BinaryOp::Sub.since_minor(), 0);
    }

    #[test]
    fn format_table_matches_the_header() {
        assert_eq!(QuantFormat::Q4_K.row_bytes(512), Ok(288));
        assert_eq!(QuantFormat::Q8_0.row_bytes(64), Ok(68));
        assert_eq!(QuantFormat::I8.row_scales(), RowScales::Required);
        assert!(matches!(
            QuantFormat::Q6_K.row_bytes(100),
            Err(OpError::Rule { .. })
        ));
        assert!(matches!(
            QuantFormat::Q4_0.row_bytes_of("w", 33),
            Err(OpError::Rule { operand: "w", .. })
        ));
    }
}
