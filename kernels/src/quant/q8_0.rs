//! GGUF Q8_0: blocks of 32 values, an f16 scale and 32 signed bytes (34 bytes a block).

use super::{blocks, f16_at, f16_bytes};

pub(crate) const BLOCK: usize = 32;
pub(crate) const BYTES: usize = 34;

/// Quantises whole blocks (`src.len()` a multiple of 32) the way ggml's reference does:
/// `d = max|x| / 127`, `q = round_half_away(x / d)`, `d` stored as f16.
pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, out) in blocks(src, BLOCK, dst, BYTES) {
        let amax = x.iter().fold(0.0f32, |m, &v| nan_max(m, v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out[..2].copy_from_slice(&f16_bytes(d));
        for (o, &v) in out[2..].iter_mut().zip(x) {
            *o = (v * id).round() as i8 as u8;
        }
    }
}

/// The larger of two values, NaN if either is (as numpy's `max` reduction behaves).
#[inline]
pub(crate) fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// Dequantises whole blocks: `x = q * d` in f32.
pub(crate) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks(src, BYTES, dst, BLOCK) {
        let d = f16_at(b, 0);
        for (o, &q) in out.iter_mut().zip(&b[2..]) {
            *o = q as i8 as f32 * d;
        }
    }
}
