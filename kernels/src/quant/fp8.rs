//! FP8 conversions: E4M3 (OCP "E4M3FN") and E5M2, exact in both directions.
//!
//! Decoding is exact (every FP8 value is an f32). Encoding rounds to nearest, ties to even,
//! subnormals included, as `ml_dtypes` does. NaN keeps its sign and becomes the canonical
//! FP8 NaN (`S.1111.111` for E4M3, `S.11111.10` for E5M2); decoded NaNs are the quiet f32
//! NaN with the code's sign. Overflow is chosen by [`Overflow`]: `Ieee` matches `ml_dtypes`
//! (E5M2: ±Inf; E4M3, which has no infinity: NaN), `Saturate` clamps every non-NaN value,
//! infinities included, to the largest finite magnitude (448 or 57344).

use crate::KernelError;

/// Which FP8 encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp8Kind {
    /// 4 exponent bits (bias 7), 3 mantissa bits, no infinities, largest finite 448.
    E4M3,
    /// 5 exponent bits (bias 15), 2 mantissa bits, IEEE infinities and NaNs, largest 57344.
    E5M2,
}

/// What encoding does with a value beyond the largest finite FP8 magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// As `ml_dtypes` casts: E5M2 gives ±Inf, E4M3 gives NaN (it has no infinity).
    Ieee,
    /// Clamp to ±largest finite value; infinities too. NaN stays NaN.
    Saturate,
}

/// The constants that define an FP8 encoding.
struct Layout {
    mant_bits: u32,
    bias: i32,
    /// The code of the largest finite magnitude.
    max_code: u8,
    nan_code: u8,
}

impl Fp8Kind {
    const fn layout(self) -> Layout {
        match self {
            Fp8Kind::E4M3 => Layout {
                mant_bits: 3,
                bias: 7,
                max_code: 0x7E,
                nan_code: 0x7F,
            },
            Fp8Kind::E5M2 => Layout {
                mant_bits: 2,
                bias: 15,
                max_code: 0x7B,
                nan_code: 0x7E,
            },
        }
    }
    /// The largest finite value.
    pub fn max_finite(self) -> f32 {
        decode(self, self.layout().max_code)
    }
}

/// Decodes one FP8 code.
pub fn decode(kind: Fp8Kind, code: u8) -> f32 {
    let sign = ((code as u32) >> 7) << 31;
    let Layout {
        mant_bits: m_bits,
        bias,
        ..
    } = kind.layout();
    let e = ((code & 0x7F) >> m_bits) as i32;
    let m = (code as u32) & ((1 << m_bits) - 1);
    let is_nan = match kind {
        Fp8Kind::E4M3 => code & 0x7F == 0x7F,
        Fp8Kind::E5M2 => e == 0x1F && m != 0,
    };
    if is_nan {
        return f32::from_bits(sign | 0x7FC0_0000);
    }
    if kind == Fp8Kind::E5M2 && e == 0x1F {
        return f32::from_bits(sign | 0x7F80_0000);
    }
    if e == 0 {
        // Subnormal: m units of 2^(1 - bias - mantissa bits); exact in f32.
        let v = m as f32 * f32::from_bits(((127 + 1 - bias - m_bits as i32) as u32) << 23);
        return f32::from_bits(sign | v.to_bits());
    }
    let exp = (e - bias + 127) as u32;
    f32::from_bits(sign | (exp << 23) | (m << (23 - m_bits)))
}

/// Encodes one f32 value, rounding to nearest even.
pub fn encode(kind: Fp8Kind, x: f32, overflow: Overflow) -> u8 {
    let bits = x.to_bits();
    let sign = ((bits >> 31) as u8) << 7;
    let abs = bits & 0x7FFF_FFFF;
    let Layout {
        mant_bits: m_bits,
        bias,
        max_code,
        nan_code,
    } = kind.layout();
    if abs > 0x7F80_0000 {
        return sign | nan_code;
    }
    let min_normal_exp = 1 - bias;
    let code = if abs < ((min_normal_exp + 127) as u32) << 23 {
        // Below the smallest normal: count units of the smallest subnormal. Scaling by a power
        // of two is exact, and the result (at most 2^m_bits) is an exact f32 integer.
        let scale = f32::from_bits(((127 - min_normal_exp + m_bits as i32) as u32) << 23);
        (f32::from_bits(abs) * scale).round_ties_even() as u32
    } else if abs == 0x7F80_0000 {
        u32::MAX
    } else {
        let shift = 23 - m_bits;
        let rounded = abs + ((1 << (shift - 1)) - 1) + ((abs >> shift) & 1);
        (rounded >> shift) - (((127 - bias) as u32) << m_bits)
    };
    if code > max_code as u32 {
        return match (overflow, kind) {
            (Overflow::Saturate, _) => sign | max_code,
            (Overflow::Ieee, Fp8Kind::E4M3) => sign | 0x7F,
            (Overflow::Ieee, Fp8Kind::E5M2) => sign | 0x7C,
        };
    }
    sign | code as u8
}

/// The 256 decoded values of `kind`, computed once.
pub fn decode_table(kind: Fp8Kind) -> &'static [f32; 256] {
    use std::sync::OnceLock;
    static E4M3: OnceLock<[f32; 256]> = OnceLock::new();
    static E5M2: OnceLock<[f32; 256]> = OnceLock::new();
    let cell = match kind {
        Fp8Kind::E4M3 => &E4M3,
        Fp8Kind::E5M2 => &E5M2,
    };
    cell.get_or_init(|| std::array::from_fn(|c| decode(kind, c as u8)))
}

/// Encodes `src` into `dst` element by element.
pub fn encode_slice(
    kind: Fp8Kind,
    overflow: Overflow,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), KernelError> {
    super::check_len("dst", src.len(), dst.len())?;
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = encode(kind, v, overflow);
    }
    Ok(())
}

/// Decodes `src` into `dst` element by element.
pub fn decode_slice(kind: Fp8Kind, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    super::check_len("dst", src.len(), dst.len())?;
    let table = decode_table(kind);
    for (o, &c) in dst.iter_mut().zip(src) {
        *o = table[c as usize];
    }
    Ok(())
}
