//! GGUF k-quants Q4_K and Q6_K: super-blocks of 256 values with sub-block scales.
//!
//! Q4_K (144 bytes): f16 `d`, f16 `dmin`, 12 bytes packing eight 6-bit scales and eight
//! 6-bit mins, then 128 bytes of nibbles: byte `l` of 32-byte chunk `c` holds value `l` of
//! sub-block `2c` (low nibble) and of sub-block `2c + 1` (high nibble).
//!
//! Q6_K (210 bytes): `ql[128]`, `qh[64]`, `scales[16]` (`i8`, one per 16 values), f16 `d`.
//! In half `h` (values `128h..128h+128`), value `128h + 32s + l` has its low four bits in
//! `ql[64h + l + 32(s & 1)]` (low nibble for `s < 2`, high otherwise) and its top two bits at
//! bit `2s` of `qh[32h + l]`; it decodes as `d * scales[v / 16] * (q - 32)`.

use super::q8_0::nan_max;
use super::{blocks, f16_at, f16_bytes};

pub(crate) const BLOCK: usize = 256;
pub(crate) const Q4_K_BYTES: usize = 144;
pub(crate) const Q6_K_BYTES: usize = 210;

/// Unpacks the eight 6-bit scales and mins of a Q4_K super-block (the 12 packed bytes `s`)
/// as two little-endian words of eight bytes, with 32-bit integer operations.
///
/// Scales and mins 0..4 are the low six bits of bytes 0..4 and 4..8; scales and mins 4..8 take
/// their low four bits from the nibbles of bytes 8..12 and their top two from the top bits of
/// bytes 0..8.
#[inline(always)]
pub(crate) fn q4_k_scale_words(s: &[u8; 12]) -> (u64, u64) {
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const TOP2: u32 = 0x3030_3030;
    let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (w0, w1, w2) = (w(0), w(4), w(8));
    let sc = (w0 & LOW6) as u64 | ((((w2 & LOW4) | ((w0 >> 2) & TOP2)) as u64) << 32);
    let mn = (w1 & LOW6) as u64 | (((((w2 >> 4) & LOW4) | ((w1 >> 2) & TOP2)) as u64) << 32);
    (sc, mn)
}

/// Unpacks the eight 6-bit scales and mins of a Q4_K super-block.
#[inline]
pub(crate) fn q4_k_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let packed: &[u8; 12] = s[..12].try_into().expect("12 packed scale bytes");
    let (sc, mn) = q4_k_scale_words(packed);
    (sc.to_le_bytes(), mn.to_le_bytes())
}

fn pack_q4_k_scales(sc: &[u8; 8], mn: &[u8; 8], s: &mut [u8]) {
    for j in 0..4 {
        s[j] = (sc[j] & 0x3F) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (mn[j] & 0x3F) | ((mn[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
    }
}

fn nearest_u6(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        v.round().clamp(0.0, 63.0) as u8
    }
}

/// Quantises whole Q4_K super-blocks: each sub-block of 32 gets scale `(max - min) / 15` and
/// min `-min(0, min)`; the super-block scales `d`, `dmin` map the largest to 63.
pub(crate) fn quantize_q4_k(src: &[f32], dst: &mut [u8]) {
    for (x, out) in blocks(src, BLOCK, dst, Q4_K_BYTES) {
        let mut scale = [0.0f32; 8];
        let mut mins = [0.0f32; 8];
        for j in 0..8 {
            let sub = &x[32 * j..32 * j + 32];
            let mx = sub.iter().fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v));
            let mn = sub.iter().fold(0.0f32, |m, &v| -nan_max(-m, -v));
            mins[j] = -mn;
            scale[j] = (mx - mn).max(0.0) / 15.0;
        }
        let max_scale = scale.iter().fold(0.0f32, |m, &v| nan_max(m, v));
        let max_min = mins.iter().fold(0.0f32, |m, &v| nan_max(m, v));
        let d = half::f16::from_f32(max_scale / 63.0).to_f32();
        let dmin = half::f16::from_f32(max_min / 63.0).to_f32();
        let mut sc = [0u8; 8];
        let mut mq = [0u8; 8];
        for j in 0..8 {
            sc[j] = if d > 0.0 { nearest_u6(scale[j] / d) } else { 0 };
            mq[j] = if dmin > 0.0 {
                nearest_u6(mins[j] / dmin)
            } else {
                0
            };
        }
        out[0..2].copy_from_slice(&f16_bytes(d));
        out[2..4].copy_from_slice(&f16_bytes(dmin));
        pack_q4_k_scales(&sc, &mq, &mut out[4..16]);
        let mut q = [0u8; BLOCK];
        for j in 0..8 {
            let ds = d * sc[j] as f32;
            let dm = dmin * mq[j] as f32;
            let inv = if ds > 0.0 { 1.0 / ds } else { 0.0 };
            for l in 0..32 {
                let v = ((x[32 * j + l] + dm) * inv).round();
                q[32 * j + l] = if v.is_nan() {
                    0
                } else {
                    v.clamp(0.0, 15.0) as u8
                };
            }
        }
        for c in 0..4 {
            for l in 0..32 {
                out[16 + 32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
            }
        }
    }
}

/// Dequantises whole Q4_K super-blocks as the reference does: `ds = d * sc`, `dm = dmin * m`,
/// `x = ds * q - dm` (each an f32 product or difference, no fused step).
pub(crate) fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks(src, Q4_K_BYTES, dst, BLOCK) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let (sc, mn) = q4_k_scales(&b[4..16]);
        let qs = &b[16..];
        for c in 0..4 {
            let (ds0, dm0) = (d * sc[2 * c] as f32, dmin * mn[2 * c] as f32);
            let (ds1, dm1) = (d * sc[2 * c + 1] as f32, dmin * mn[2 * c + 1] as f32);
            for l in 0..32 {
                let byte = qs[32 * c + l];
                out[64 * c + l] = ds0 * (byte & 0x0F) as f32 - dm0;
                out[64 * c + 32 + l] = ds1 * (byte >> 4) as f32 - dm1;
            }
        }
    }
}

/// Quantises whole Q6_K super-blocks: each 16-value group gets scale `max|x| / 31`, the
/// super-block scale `d` maps the largest to 127.
pub(crate) fn quantize_q6_k(src: &[f32], dst: &mut [u8]) {
    for (x, out) in blocks(src, BLOCK, dst, Q6_K_BYTES) {
        let mut scale = [0.0f32; 16];
        for (i, s) in scale.iter_mut().enumerate() {
            let amax = x[16 * i..16 * i + 16]
                .iter()
                .fold(0.0f32, |m, &v| nan_max(m, v.abs()));
            *s = amax / 31.0;
        }
        let max_scale = scale.iter().fold(0.0f32, |m, &v| nan_max(m, v));
        let d = half::f16::from_f32(max_scale / 127.0).to_f32();
        let mut sc = [0i8; 16];
        for i in 0..16 {
            let v = if d > 0.0 { (scale[i] / d).round() } else { 0.0 };
            sc[i] = if v.is_nan() {
                0
            } else {
                v.clamp(-128.0, 127.0) as i8
            };
        }
        let mut q = [0u8; BLOCK];
        for i in 0..16 {
            let ds = d * sc[i] as f32;
            let inv = if ds != 0.0 { 1.0 / ds } else { 0.0 };
            for l in 0..16 {
                let v = (x[16 * i + l] * inv).round();
                let v = if v.is_nan() {
                    0.0
                } else {
                    v.clamp(-32.0, 31.0)
                };
                q[16 * i + l] = (v as i32 + 32) as u8;
            }
        }
        let (ql, rest) = out.split_at_mut(128);
        let (qh, rest) = rest.split_at_mut(64);
        let (scales, dbytes) = rest.split_at_mut(16);
        for h in 0..2 {
            let q = &q[128 * h..128 * h + 128];
            for l in 0..32 {
                ql[64 * h + l] = (q[l] & 0x0F) | ((q[64 + l] & 0x0F) << 4);
                ql[64 * h + 32 + l] = (q[32 + l] & 0x0F) | ((q[96 + l] & 0x0F) << 4);
                qh[32 * h + l] = (q[l] >> 4)
                    | ((q[32 + l] >> 4) << 2)
                    | ((q[64 + l] >> 4) << 4)
                    | ((q[96 + l] >> 4) << 6);
            }
        }
        for (o, &s) in scales.iter_mut().zip(&sc) {
            *o = s as u8;
        }
        dbytes.copy_from_slice(&f16_bytes(d));
    }
}

/// The 6-bit code (0..64) of value `128h + 32s + l` of a Q6_K super-block.
#[inline]
pub(crate) fn q6_k_code(ql: &[u8], qh: &[u8], h: usize, s: usize, l: usize) -> u8 {
    let lo = ql[64 * h + l + 32 * (s & 1)];
    let lo = if s < 2 { lo & 0x0F } else { lo >> 4 };
    let hi = (qh[32 * h + l] >> (2 * s)) & 3;
    lo | (hi << 4)
}

/// Dequantises whole Q6_K super-blocks as the reference does: `ds = d * sc`,
/// `x = ds * (q - 32)`.
pub(crate) fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks(src, Q6_K_BYTES, dst, BLOCK) {
        let (ql, rest) = b.split_at(128);
        let (qh, rest) = rest.split_at(64);
        let d = f16_at(rest, 16);
        let mut ds = [0.0f32; 16];
        for i in 0..16 {
            ds[i] = d * rest[i] as i8 as f32;
        }
        for h in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let v = 128 * h + 32 * s + l;
                    let q = q6_k_code(ql, qh, h, s, l) as i32 - 32;
                    out[v] = ds[v / 16] * q as f32;
                }
            }
        }
    }
}
