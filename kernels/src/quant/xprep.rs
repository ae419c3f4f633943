//! Activations quantised on the fly for the integer dot-product paths.
//!
//! Each row of `x` is quantised to 8-bit blocks of 32 (`d = max|x| / 127`,
//! `q = round(x / d)`, as ggml's Q8_0), then laid out in the order the weight decoder
//! produces bytes, so one 64-byte load of activations meets one 64-byte vector of weights.
//! Beside the bytes, per 4-byte lane (the unit `vpdpbusd` sums): the block scale `dx`, the
//! integer correction `-offset * sum(q)` for formats whose codes are stored with an offset
//! (Q4_0: 8, Q6_K: 32, Q8_0/I8 on the AVX-512 path: 128), and `dx * sum(q)` for formats
//! with a per-block minimum (Q4_1, Q4_K). Rows are padded with zeros to a multiple of 64.

use super::{ActElem, QuantFormat};

/// Values per group: one 512-bit vector of weight bytes.
pub(crate) const GROUP: usize = 64;
/// 4-byte lanes per group.
pub(crate) const LANES: usize = 16;

/// Quantised activations for `m` rows of length `k`, in the weight format's order.
pub(crate) struct XPrep {
    /// Padded row length (a multiple of [`GROUP`]).
    pub kp: usize,
    /// `m x kp` bytes.
    pub qx: Vec<i8>,
    /// `m x kp/4` block scales per lane.
    pub dx: Vec<f32>,
    /// `m x kp/4`: `-offset * lane sum` (offset formats) or unused.
    pub corr: Vec<i32>,
    /// `m x kp/4`: `dx * lane sum` (formats with a minimum) or unused.
    pub msum: Vec<f32>,
}

/// The stored-code offset the AVX-512 path corrects for (codes are fed to `vpdpbusd` as
/// unsigned bytes).
pub(crate) fn code_offset(format: QuantFormat) -> i32 {
    match format {
        QuantFormat::Q4_0 => 8,
        QuantFormat::Q6_K => 32,
        QuantFormat::Q8_0 | QuantFormat::I8 => 128,
        _ => 0,
    }
}

pub(crate) fn has_mins(format: QuantFormat) -> bool {
    matches!(format, QuantFormat::Q4_1 | QuantFormat::Q4_K)
}

/// The natural index (within a row) of the value at position `p` of the weight order.
fn natural_index(format: QuantFormat, k: usize, p: usize) -> usize {
    match format {
        QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
            // Pairs of blocks: [b0 lo, b1 lo, b0 hi, b1 hi]; a lone last block stays natural.
            let pair = p / 64;
            if 64 * pair + 64 > k {
                return p;
            }
            let r = p % 64;
            let (blk, e) = match r / 16 {
                0 => (0, r),
                1 => (1, r - 16),
                2 => (0, r - 16),
                _ => (1, r - 32),
            };
            64 * pair + 32 * blk + e
        }
        QuantFormat::Q4_K => {
            // Groups of 64 pair sub-blocks (0,2), (1,3), (4,6), (5,7) of each super-block.
            let sb = p / 256;
            let r = p % 256;
            let gi = r / 64;
            let half = (r % 64) / 32;
            let sub = (gi / 2) * 4 + (gi % 2) + 2 * half;
            256 * sb + 32 * sub + r % 32
        }
        _ => p,
    }
}

impl XPrep {
    /// Quantises `m` rows of `x` (row length `k`, a multiple of 32) for `format`'s weights.
    pub(crate) fn new<TX: ActElem>(format: QuantFormat, x: &[TX], m: usize, k: usize) -> XPrep {
        debug_assert!(k % 32 == 0);
        let kp = k.div_ceil(GROUP) * GROUP;
        let lanes = kp / 4;
        let mut qx = vec![0i8; m * kp];
        let mut dx = vec![0.0f32; m * lanes];
        let mut corr = vec![0i32; m * lanes];
        let mut msum = vec![0.0f32; m * lanes];
        let offset = code_offset(format);
        let mins = has_mins(format);
        let perm: Vec<usize> = (0..k).map(|p| natural_index(format, k, p)).collect();
        let mut nat_q = vec![0i8; k];
        let mut nat_d = vec![0.0f32; k / 32];
        let mut xf = vec![0.0f32; 32];
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            for (b, chunk) in row.chunks_exact(32).enumerate() {
                for (f, &v) in xf.iter_mut().zip(chunk) {
                    *f = v.to_f32();
                }
                // A non-finite activation cannot be coded: its block's scale becomes NaN, so
                // every output it touches is NaN rather than silently finite.
                let finite = xf.iter().all(|v| v.is_finite());
                let amax = xf.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d == 0.0 || !finite { 0.0 } else { 1.0 / d };
                nat_d[b] = if finite { d } else { f32::NAN };
                for (q, &v) in nat_q[32 * b..32 * b + 32].iter_mut().zip(&xf) {
                    *q = (v * id).round().clamp(-127.0, 127.0) as i8;
                }
            }
            let qrow = &mut qx[i * kp..i * kp + k];
            for (q, &src) in qrow.iter_mut().zip(&perm) {
                *q = nat_q[src];
            }
            for l in 0..k / 4 {
                let s: i32 = qrow[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum();
                let d = nat_d[perm[4 * l] / 32];
                dx[i * lanes + l] = d;
                corr[i * lanes + l] = -offset * s;
                if mins {
                    msum[i * lanes + l] = d * s as f32;
                }
            }
        }
        XPrep {
            kp,
            qx,
            dx,
            corr,
            msum,
        }
    }
}
