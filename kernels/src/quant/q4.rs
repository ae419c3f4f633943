//! GGUF Q4_0 and Q4_1: blocks of 32 values in 16 bytes of nibbles (low nibbles hold values
//! 0..16, high nibbles 16..32) with an f16 scale (and, for Q4_1, an f16 minimum).

use super::q8_0::nan_max;
use super::{blocks, f16_at, f16_bytes};

pub(crate) const BLOCK: usize = 32;
pub(crate) const Q4_0_BYTES: usize = 18;
pub(crate) const Q4_1_BYTES: usize = 20;

fn pack_nibbles(q: &[u8; 32], out: &mut [u8]) {
    for j in 0..16 {
        out[j] = q[j] | (q[j + 16] << 4);
    }
}

/// Quantises whole Q4_0 blocks as ggml's reference does: the value of largest magnitude `v`
/// (first one on ties) gives `d = v / -8`, `q = min(15, trunc(x / d + 8.5))`.
pub(crate) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, out) in blocks(src, BLOCK, dst, Q4_0_BYTES) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if v.is_nan() {
                max = f32::NAN;
                break;
            }
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let mut q = [0u8; 32];
        for (qi, &v) in q.iter_mut().zip(x) {
            *qi = ((v * id + 8.5).trunc() as u8).min(15);
        }
        out[..2].copy_from_slice(&f16_bytes(d));
        pack_nibbles(&q, &mut out[2..]);
    }
}

/// Quantises whole Q4_1 blocks as ggml's reference does: `d = (max - min) / 15`,
/// `q = min(15, trunc((x - min) / d + 0.5))`, `d` and `min` stored as f16.
pub(crate) fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    for (x, out) in blocks(src, BLOCK, dst, Q4_1_BYTES) {
        let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v));
        let min = x.iter().fold(f32::INFINITY, |m, &v| -nan_max(-m, -v));
        let d = (max - min) / 15.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let mut q = [0u8; 32];
        for (qi, &v) in q.iter_mut().zip(x) {
            *qi = (((v - min) * id + 0.5).trunc() as u8).min(15);
        }
        out[..2].copy_from_slice(&f16_bytes(d));
        out[2..4].copy_from_slice(&f16_bytes(min));
        pack_nibbles(&q, &mut out[4..]);
    }
}

/// Dequantises whole Q4_0 blocks: `x = d * (q - 8)`.
pub(crate) fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks(src, Q4_0_BYTES, dst, BLOCK) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            out[j] = d * ((b[2 + j] & 0x0F) as i32 - 8) as f32;
            out[j + 16] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
        }
    }
}

/// Dequantises whole Q4_1 blocks: `x = d * q + m` (a product, then a sum: no fused step).
pub(crate) fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks(src, Q4_1_BYTES, dst, BLOCK) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        for j in 0..16 {
            out[j] = d * (b[4 + j] & 0x0F) as f32 + m;
            out[j + 16] = d * (b[4 + j] >> 4) as f32 + m;
        }
    }
}
