//! The portable integer row kernel: weight groups decoded to signed codes with per-lane
//! scales and minimum terms, then plain integer dot products. Every target has it; it is also
//! the reference the SIMD paths are tested against.

use crate::quant::qmatmul::{groups, KernelArgs, GEMV_MAX_M};
use crate::quant::xprep::{GROUP, LANES};
use crate::quant::QuantFormat;

/// One decoded group on the portable path.
struct Decoded {
    /// Signed codes (offset removed).
    w: [i8; GROUP],
    /// Weight scale of each lane.
    sl: [f32; LANES],
    /// Minimum term of each lane (`m` for Q4_1, `-dmin * m` for Q4_K).
    ml: [f32; LANES],
}

/// Decodes group `g` of a weight row into signed codes (offset removed), per-lane scales and
/// per-lane minimum terms, in the order [`XPrep`] lays out activations.
fn decode_group(
    format: QuantFormat,
    row: &[u8],
    k: usize,
    g: usize,
    rscale: f32,
    out: &mut Decoded,
) {
    use crate::quant::f16_at;
    use crate::quant::kquants::{q4_k_scales, q6_k_code};
    let Decoded { w, sl, ml } = out;
    *w = [0; GROUP];
    *sl = [0.0; LANES];
    *ml = [0.0; LANES];
    match format {
        QuantFormat::Q8_0 => {
            for b in 0..2 {
                let blk = 2 * g + b;
                if 32 * blk >= k {
                    break;
                }
                let bb = &row[34 * blk..34 * blk + 34];
                let d = f16_at(bb, 0);
                for j in 0..32 {
                    w[32 * b + j] = bb[2 + j] as i8;
                }
                sl[8 * b..8 * b + 8].fill(d);
            }
        }
        QuantFormat::I8 => {
            let end = (64 * g + 64).min(k);
            for (o, &v) in w.iter_mut().zip(&row[64 * g..end]) {
                *o = v as i8;
            }
            sl[..(end - 64 * g) / 4].fill(rscale);
        }
        QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
            let (bytes, qoff, sub) = if format == QuantFormat::Q4_0 {
                (18, 2, 8)
            } else {
                (20, 4, 0)
            };
            let pair = 64 * g + 64 <= k;
            let nb = if pair { 2 } else { 1 };
            for b in 0..nb {
                let bb = &row[bytes * (2 * g + b)..bytes * (2 * g + b + 1)];
                let d = f16_at(bb, 0);
                let mn = if format == QuantFormat::Q4_1 {
                    f16_at(bb, 2)
                } else {
                    0.0
                };
                for j in 0..16 {
                    let lo = (bb[qoff + j] & 0x0F) as i8 - sub;
                    let hi = (bb[qoff + j] >> 4) as i8 - sub;
                    if pair {
                        w[16 * b + j] = lo;
                        w[32 + 16 * b + j] = hi;
                    } else {
                        w[j] = lo;
                        w[16 + j] = hi;
                    }
                }
                if pair {
                    for half in 0..2 {
                        let l0 = 8 * half + 4 * b;
                        sl[l0..l0 + 4].fill(d);
                        ml[l0..l0 + 4].fill(mn);
                    }
                } else {
                    sl[..8].fill(d);
                    ml[..8].fill(mn);
                }
            }
        }
        QuantFormat::Q4_K => {
            let (sb, gi) = (g / 4, g % 4);
            let bb = &row[144 * sb..144 * sb + 144];
            let d = f16_at(bb, 0);
            let dmin = f16_at(bb, 2);
            let (sc, mn) = q4_k_scales(&bb[4..16]);
            let z = &bb[16 + 64 * (gi / 2)..16 + 64 * (gi / 2) + 64];
            for j in 0..64 {
                w[j] = if gi % 2 == 0 { z[j] & 0x0F } else { z[j] >> 4 } as i8;
            }
            for half in 0..2 {
                let sub = (gi / 2) * 4 + gi % 2 + 2 * half;
                sl[8 * half..8 * half + 8].fill(d * sc[sub] as f32);
                ml[8 * half..8 * half + 8].fill(-(dmin * mn[sub] as f32));
            }
        }
        QuantFormat::Q6_K => {
            let (sb, gi) = (g / 4, g % 4);
            let bb = &row[210 * sb..210 * sb + 210];
            let (ql, rest) = bb.split_at(128);
            let (qh, rest) = rest.split_at(64);
            let d = f16_at(rest, 16);
            let (h, part) = (gi / 2, gi % 2);
            for (j, wj) in w.iter_mut().enumerate() {
                *wj = q6_k_code(ql, qh, h, 2 * part + j / 32, j % 32) as i8 - 32;
            }
            for (lane, s) in sl.iter_mut().enumerate() {
                *s = d * rest[8 * h + 4 * part + lane / 4] as i8 as f32;
            }
        }
        QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => unreachable!("FP8 has no integer path"),
    }
}

pub(crate) fn kernel(a: &KernelArgs<'_>, out: &mut [f32]) {
    let xp = a.xp;
    let lanes_row = xp.kp / 4;
    let mins = crate::quant::xprep::has_mins(a.format);
    let mut dec = Decoded {
        w: [0; GROUP],
        sl: [0.0; LANES],
        ml: [0.0; LANES],
    };
    let mut acc = [[0.0f32; LANES]; GEMV_MAX_M];
    for r in 0..a.nrows {
        let row = &a.w[r * a.rb..(r + 1) * a.rb];
        let rscale = a.wscale.map_or(1.0, |s| s[r]);
        for lane in acc.iter_mut().take(a.mr) {
            *lane = [0.0; LANES];
        }
        for g in 0..groups(a.k) {
            decode_group(a.format, row, a.k, g, rscale, &mut dec);
            let Decoded { w, sl, ml } = &dec;
            for (i, acc) in acc.iter_mut().enumerate().take(a.mr) {
                let xi = a.x0 + i;
                let qx = &xp.qx[xi * xp.kp + GROUP * g..xi * xp.kp + GROUP * (g + 1)];
                let lb = xi * lanes_row + LANES * g;
                for l in 0..LANES {
                    let mut dot = 0i32;
                    for t in 0..4 {
                        dot += w[4 * l + t] as i32 * qx[4 * l + t] as i32;
                    }
                    acc[l] += dot as f32 * xp.dx[lb + l] * sl[l];
                    if mins {
                        acc[l] += ml[l] * xp.msum[lb + l];
                    }
                }
            }
        }
        for i in 0..a.mr {
            out[i * a.nrows + r] = acc[i].iter().sum();
        }
    }
}
