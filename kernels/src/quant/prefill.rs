//! The prefill (`m > 8`) integer path for formats built from 32-value blocks (Q4_0, Q4_1,
//! Q8_0 and Q4_K's sub-blocks) on AVX-512 VNNI: a register-blocked microkernel.
//!
//! Every such block stores unsigned codes `c` with a scale `d`, an integer offset `o` shared by
//! the format and a minimum term `mn`, so a weight is `d (c - o) + mn` (Q4_0: `o = 8`; Q8_0:
//! codes are the signed bytes plus 128, `o = 128`; Q4_1: `mn = m`; Q4_K: `d = d * sc[j]`,
//! `mn = -dmin * m[j]`). Against activations quantised to 8-bit blocks of 32 (`x = dx q`),
//! one block contributes
//!
//! `d dx (sum(c q) - o sum(q)) + mn dx sum(q)`.
//!
//! Weight rows are packed in tiles of [`NR`] rows: per block, 8 steps of 4 bytes, each step
//! 32 rows x 4 codes (two 64-byte vectors), plus the 32 scales and minimum terms. The
//! microkernel holds `MR x 32` integer sums (one `vpdpbusd` per broadcast 4-byte run of an
//! activation row and 16 weight rows, started from `-o sum(q)`) and converts and scales them
//! once per block into `MR x 32` f32 accumulators.

use super::xprep::quantize_row;
use super::{f16_at, split_rows, ActElem, QuantFormat};

/// Weight rows per packed tile (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Activation rows per microkernel call.
pub(crate) const MR: usize = 4;
/// Packed code bytes per block of a tile.
const TILE_BLOCK: usize = 32 * NR;

/// Whether `format` takes this path.
pub(crate) fn supported(format: QuantFormat) -> bool {
    matches!(
        format,
        QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q8_0 | QuantFormat::Q4_K
    )
}

/// The integer offset of `format`'s codes as packed.
fn offset(format: QuantFormat) -> i32 {
    match format {
        QuantFormat::Q4_0 => 8,
        QuantFormat::Q8_0 => 128,
        _ => 0,
    }
}

fn has_mins(format: QuantFormat) -> bool {
    matches!(format, QuantFormat::Q4_1 | QuantFormat::Q4_K)
}

/// Activations in natural order, 8-bit blocks of 32.
pub(crate) struct XBlocks {
    /// Row length.
    pub k: usize,
    /// Blocks per row (`k / 32`).
    pub nb: usize,
    /// `m x k` codes.
    pub q: Vec<i8>,
    /// `m x nb` block scales.
    pub dx: Vec<f32>,
    /// `m x nb`: `-offset * sum(q)`.
    pub corr: Vec<i32>,
    /// `m x nb`: `dx * sum(q)`.
    pub xs: Vec<f32>,
}

impl XBlocks {
    /// Quantises the `m` rows of `x` (length `k`, a multiple of 32) for `format`'s weights.
    pub(crate) fn new<TX: ActElem>(
        format: QuantFormat,
        x: &[TX],
        m: usize,
        k: usize,
        par: crate::Parallelism,
    ) -> XBlocks {
        debug_assert!(k.is_multiple_of(32));
        let nb = k / 32;
        let mut xb = XBlocks {
            k,
            nb,
            q: vec![0; m * k],
            dx: vec![0.0; m * nb],
            corr: vec![0; m * nb],
            xs: vec![0.0; m * nb],
        };
        let off = offset(format);
        let one_row = |i: usize,
                       (q, dx, corr, xs): (&mut [i8], &mut [f32], &mut [i32], &mut [f32]),
                       xf: &mut Vec<f32>| {
            quantize_row(&x[i * k..(i + 1) * k], 32, xf, q, dx);
            for (b, blk) in q.chunks_exact(32).enumerate() {
                let s: i32 = blk.iter().map(|&v| v as i32).sum();
                corr[b] = -off * s;
                xs[b] = dx[b] * s as f32;
            }
        };
        // Rows in groups of 16 per task, on the compute team when threads are granted.
        const GROUP_ROWS: usize = 16;
        let bufs = (&mut *xb.q, &mut *xb.dx, &mut *xb.corr, &mut *xb.xs);
        let mut groups: Vec<_> = split_rows(bufs, GROUP_ROWS * k, GROUP_ROWS * nb).collect();
        crate::par::for_each_mut(&mut groups, par.threads(), |g, (q, dx, corr, xs)| {
            let mut xf = vec![0.0f32; k];
            for (j, row) in split_rows((q, dx, corr, xs), k, nb).enumerate() {
                one_row(g * GROUP_ROWS + j, row, &mut xf);
            }
        });
        xb
    }
}

/// A packed tile of up to [`NR`] weight rows (missing rows are zero).
pub(crate) struct Tile {
    /// `nb x 8 steps x NR rows x 4` codes.
    pub codes: Vec<u8>,
    /// `nb x NR` block scales.
    pub dw: Vec<f32>,
    /// `nb x NR` minimum terms.
    pub mw: Vec<f32>,
}

impl Tile {
    pub(crate) fn new(nb: usize) -> Tile {
        Tile {
            codes: vec![0; nb * TILE_BLOCK],
            dw: vec![0.0; nb * NR],
            mw: vec![0.0; nb * NR],
        }
    }

    /// Packs `rows` (`nr <= NR` rows of `rb` bytes, `k = 32 nb` values each).
    pub(crate) fn pack(
        &mut self,
        format: QuantFormat,
        rows: &[u8],
        rb: usize,
        nr: usize,
        nb: usize,
    ) {
        debug_assert!(nr <= NR && rows.len() >= nr * rb);
        let word =
            |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let codes: &mut [u32] = bytemuck::cast_slice_mut(&mut self.codes[..nb * TILE_BLOCK]);
        for r in 0..NR {
            if r >= nr {
                for b in 0..nb {
                    for s in 0..8 {
                        codes[b * 8 * NR + s * NR + r] = 0;
                    }
                    self.dw[b * NR + r] = 0.0;
                    self.mw[b * NR + r] = 0.0;
                }
                continue;
            }
            let row = &rows[r * rb..(r + 1) * rb];
            let mut put = |b: usize, w: [u32; 8], d: f32, mn: f32| {
                for (s, v) in w.into_iter().enumerate() {
                    codes[b * 8 * NR + s * NR + r] = v;
                }
                self.dw[b * NR + r] = d;
                self.mw[b * NR + r] = mn;
            };
            const NIB: u32 = 0x0F0F_0F0F;
            match format {
                QuantFormat::Q8_0 => {
                    for b in 0..nb {
                        let bb = &row[34 * b..34 * b + 34];
                        let w = std::array::from_fn(|s| word(bb, 2 + 4 * s) ^ 0x8080_8080);
                        put(b, w, f16_at(bb, 0), 0.0);
                    }
                }
                QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
                    let (bs, qo) = if format == QuantFormat::Q4_0 {
                        (18, 2)
                    } else {
                        (20, 4)
                    };
                    for b in 0..nb {
                        let bb = &row[bs * b..bs * b + bs];
                        let w = std::array::from_fn(|s| {
                            let v = word(bb, qo + 4 * (s % 4));
                            if s < 4 {
                                v & NIB
                            } else {
                                (v >> 4) & NIB
                            }
                        });
                        let mn = if format == QuantFormat::Q4_1 {
                            f16_at(bb, 2)
                        } else {
                            0.0
                        };
                        put(b, w, f16_at(bb, 0), mn);
                    }
                }
                QuantFormat::Q4_K => {
                    for sb in 0..nb / 8 {
                        let bb = &row[144 * sb..144 * sb + 144];
                        let (d, dmin) = (f16_at(bb, 0), f16_at(bb, 2));
                        let (sc, mn) = super::kquants::q4_k_scales(&bb[4..16]);
                        for j in 0..8 {
                            let base = 16 + 32 * (j / 2);
                            let shift = 4 * (j % 2);
                            let w =
                                std::array::from_fn(|s| (word(bb, base + 4 * s) >> shift) & NIB);
                            put(8 * sb + j, w, d * sc[j] as f32, -(dmin * mn[j] as f32));
                        }
                    }
                }
                _ => unreachable!("format checked by `supported`"),
            }
        }
    }
}

/// Runs the microkernel for activation rows `i0..i0 + mr` (`mr <= MR`) against `tile`,
/// writing `out[i * NR + j]` (pre-epilogue dot of row `i0 + i` with tile row `j`).
///
/// # Safety
/// - the host supports AVX-512 F/DQ/BW/VL, VNNI and FMA;
/// - `tile` was made with `xb.nb` blocks, rows `i0..i0 + mr` exist in `xb`, `mr` is `1..=MR`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn run(
    format: QuantFormat,
    xb: &XBlocks,
    tile: &Tile,
    i0: usize,
    mr: usize,
    out: &mut [f32; MR * NR],
) {
    macro_rules! go {
        ($mins:expr, $corr:expr) => {
            // SAFETY: forwarded from this function's contract.
            unsafe {
                match mr {
                    1 => micro::<1, $mins, $corr>(xb, tile, i0, out),
                    2 => micro::<2, $mins, $corr>(xb, tile, i0, out),
                    3 => micro::<3, $mins, $corr>(xb, tile, i0, out),
                    _ => micro::<4, $mins, $corr>(xb, tile, i0, out),
                }
            }
        };
    }
    match (has_mins(format), offset(format) != 0) {
        (true, _) => go!(true, false),
        (false, true) => go!(false, true),
        (false, false) => go!(false, false),
    }
}

/// # Safety
/// As [`run`], with `M == mr`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,fma")]
unsafe fn micro<const M: usize, const MINS: bool, const CORR: bool>(
    xb: &XBlocks,
    tile: &Tile,
    i0: usize,
    out: &mut [f32; MR * NR],
) {
    use std::arch::x86_64::*;
    let (k, nb) = (xb.k, xb.nb);
    debug_assert!((i0 + M) * k <= xb.q.len() && tile.codes.len() >= nb * TILE_BLOCK);
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    // SAFETY: rows i0..i0 + M of `xb` hold k codes and nb lane values each; the tile holds
    // nb blocks of TILE_BLOCK codes and NR scales (both by the contract), and every offset
    // below stays within those.
    unsafe {
        let xq = xb.q.as_ptr().add(i0 * k);
        let xbase = i0 * nb;
        for b in 0..nb {
            let mut c = [[_mm512_setzero_si512(); 2]; M];
            if CORR {
                for (i, ci) in c.iter_mut().enumerate() {
                    let v = _mm512_set1_epi32(*xb.corr.as_ptr().add(xbase + i * nb + b));
                    *ci = [v, v];
                }
            }
            let wp = tile.codes.as_ptr().add(b * TILE_BLOCK);
            for s in 0..8 {
                let w0 = _mm512_loadu_si512(wp.add(128 * s).cast());
                let w1 = _mm512_loadu_si512(wp.add(128 * s + 64).cast());
                for (i, ci) in c.iter_mut().enumerate() {
                    let xv = _mm512_set1_epi32(
                        xq.add(i * k + 32 * b + 4 * s)
                            .cast::<i32>()
                            .read_unaligned(),
                    );
                    ci[0] = _mm512_dpbusd_epi32(ci[0], w0, xv);
                    ci[1] = _mm512_dpbusd_epi32(ci[1], w1, xv);
                }
            }
            let d0 = _mm512_loadu_ps(tile.dw.as_ptr().add(b * NR));
            let d1 = _mm512_loadu_ps(tile.dw.as_ptr().add(b * NR + 16));
            for (i, (ai, ci)) in acc.iter_mut().zip(&c).enumerate() {
                let dx = _mm512_set1_ps(*xb.dx.as_ptr().add(xbase + i * nb + b));
                ai[0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ci[0]), d0), dx, ai[0]);
                ai[1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ci[1]), d1), dx, ai[1]);
            }
            if MINS {
                let m0 = _mm512_loadu_ps(tile.mw.as_ptr().add(b * NR));
                let m1 = _mm512_loadu_ps(tile.mw.as_ptr().add(b * NR + 16));
                for (i, ai) in acc.iter_mut().enumerate() {
                    let xs = _mm512_set1_ps(*xb.xs.as_ptr().add(xbase + i * nb + b));
                    ai[0] = _mm512_fmadd_ps(m0, xs, ai[0]);
                    ai[1] = _mm512_fmadd_ps(m1, xs, ai[1]);
                }
            }
        }
        for (i, ai) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(i * NR), ai[0]);
            _mm512_storeu_ps(out.as_mut_ptr().add(i * NR + 16), ai[1]);
        }
    }
}
