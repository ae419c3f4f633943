//! AVX-512 VNNI kernels: the integer quantised-matmul row kernel and the W8A8 microkernel.
//!
//! Weight bytes are decoded to one 512-bit vector per 64 values, in the order
//! [`XPrep`](super::xprep::XPrep) lays out activations; `vpdpbusd` (unsigned weight codes by
//! signed activations) sums each 4-byte lane, starting from the lane's offset correction, and
//! lane sums are scaled in f32 by the activation block scale and the weight scale.

use super::{F_I8, F_Q4_0, F_Q4_1, F_Q4_K, F_Q6_K, F_Q8_0};
use crate::quant::qmatmul::{groups, KernelArgs};
use crate::x86::f16_one;
use std::arch::x86_64::*;

/// Runs the integer row kernel (see [`KernelArgs`]).
///
/// # Safety
/// - the host supports AVX-512 F/BW/VL, AVX-512 VNNI, FMA and F16C;
/// - `a` was validated: `a.w` holds `nrows` rows of `rb` bytes of a `k`-long row in
///   `a.format` (an integer format), `a.wscale` (if any) has `nrows` entries, rows
///   `x0..x0 + mr` (`mr <= 8`) exist in `a.xp`, and `out` has `mr * nrows` entries.
pub(crate) unsafe fn kernel(a: &KernelArgs<'_>, out: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { super::dispatch_rows!(rows, a, out) }
}

/// Two f16 values (little-endian bytes at `p` and `q`) widened, in lanes 0 and 1.
///
/// # Safety
/// Two bytes are readable at each pointer.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,f16c")]
unsafe fn f16_pair(p: *const u8, q: *const u8) -> __m128 {
    // SAFETY: the caller guarantees two readable bytes at each pointer.
    let (a, b) = unsafe {
        (
            p.cast::<u16>().read_unaligned(),
            q.cast::<u16>().read_unaligned(),
        )
    };
    _mm_cvtph_ps(_mm_cvtsi32_si128((a as u32 | ((b as u32) << 16)) as i32))
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn halves(lo: f32, hi: f32) -> __m512 {
    _mm512_insertf32x8::<1>(_mm512_set1_ps(lo), _mm256_set1_ps(hi))
}

/// One decoded group: weight codes, per-lane weight scales, per-lane minimum terms.
type Group = (__m512i, __m512, __m512);

/// Weight bytes per task up to which Q4_K takes rows in blocks (about one core's L2).
const Q4_K_BLOCKED_BYTES: usize = 1 << 20;

/// Runs the kernel over all rows, in blocks of `R` weight rows whose sums are reduced together
/// (`R` shrinks as `MR` grows, so the accumulators stay in registers).
///
/// The formats a decode streams from memory (Q4_0, Q4_1, Q8_0) prefetch their weights in
/// software a fixed distance ahead ([`Prefetch`](super::Prefetch)), and for Q4_0 and Q4_1
/// (the most arithmetic per byte) the rows of a block interleave: they share each activation
/// load and keep `R` independent accumulator chains. Without the prefetch, interleaved rows
/// streamed from DRAM ran slower than rows one after the other (the hardware prefetchers
/// follow a single stream best); with it, interleaving is the faster order at every size.
/// Q8_0 takes rows one after the other. The other formats do more arithmetic per byte and
/// do not prefetch (it cost Q4_K 10-25% on weights in cache); Q4_K interleaves up to
/// [`Q4_K_BLOCKED_BYTES`] of weights. Measured with `knpu bench quant --only gemv` and
/// `--only decode` (`docs/perf-notes/quant.md`).
///
/// # Safety
/// As [`kernel`].
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,fma,f16c")]
unsafe fn rows<const F: u8, const MR: usize>(a: &KernelArgs<'_>, out: &mut [f32]) {
    let mut r0 = 0;
    let blocked = matches!(F, F_Q4_0 | F_Q4_1) || (F == F_Q4_K && a.w.len() <= Q4_K_BLOCKED_BYTES);
    let mut pf = if matches!(F, F_Q4_0 | F_Q4_1 | F_Q8_0) {
        super::Prefetch::new(a.w)
    } else {
        super::Prefetch::none()
    };
    macro_rules! run {
        ($r:literal) => {
            while a.nrows - r0 >= $r {
                // SAFETY: rows r0..r0 + R lie within 0..nrows; the rest is forwarded.
                unsafe {
                    if blocked {
                        block::<F, MR, $r, true>(a, r0, out, &mut pf)
                    } else {
                        block::<F, MR, $r, false>(a, r0, out, &mut pf)
                    }
                };
                r0 += $r;
            }
        };
    }
    if MR <= 2 {
        run!(4);
    }
    if MR <= 4 {
        run!(2);
    }
    run!(1);
}

/// Horizontal sums of `v[0..R]` (`R` = 1, 2 or 4) written to `out[0..R]`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn reduce_store<const R: usize>(v: &[__m512; R], out: &mut [f32]) {
    if R == 4 {
        // Pairwise interleave-and-add: each step halves the vectors per row and doubles the
        // rows per vector, ending with the four sums in one 128-bit lane.
        let t01 = _mm512_add_ps(
            _mm512_unpacklo_ps(v[0], v[1]),
            _mm512_unpackhi_ps(v[0], v[1]),
        );
        let t23 = _mm512_add_ps(
            _mm512_unpacklo_ps(v[2], v[3]),
            _mm512_unpackhi_ps(v[2], v[3]),
        );
        let t = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(
                _mm512_castps_pd(t01),
                _mm512_castps_pd(t23),
            )),
            _mm512_castpd_ps(_mm512_unpackhi_pd(
                _mm512_castps_pd(t01),
                _mm512_castps_pd(t23),
            )),
        );
        let h = _mm256_add_ps(_mm512_castps512_ps256(t), _mm512_extractf32x8_ps::<1>(t));
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let mut s = [0.0f32; 4];
        // SAFETY: `s` has room for four f32.
        unsafe { _mm_storeu_ps(s.as_mut_ptr(), q) };
        out[..4].copy_from_slice(&s);
    } else {
        for (o, v) in out.iter_mut().zip(v) {
            *o = _mm512_reduce_add_ps(*v);
        }
    }
}

/// Weight rows `r0..r0 + R` against activation rows `x0..x0 + MR`, the rows' units
/// interleaved (`INTERLEAVE`) or one row after the other.
///
/// # Safety
/// As [`kernel`], and `r0 + R <= a.nrows`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,fma,f16c")]
// Accumulators are indexed [activation row][weight row]; index loops read plainest here.
#[allow(clippy::needless_range_loop)]
unsafe fn block<const F: u8, const MR: usize, const R: usize, const INTERLEAVE: bool>(
    a: &KernelArgs<'_>,
    r0: usize,
    out: &mut [f32],
    pf: &mut super::Prefetch,
) {
    let xp = a.xp;
    // Weight bytes per 64 values (approximate for the k-quants): where a unit starts.
    let gb = a.rb * 64 / a.k;
    let lanes_row = xp.kp / 4;
    let ng = groups(a.k);
    let corr = matches!(F, F_Q8_0 | F_Q4_0 | F_Q6_K | F_I8);
    let mins = matches!(F, F_Q4_1 | F_Q4_K);
    let per_unit = if F == F_Q6_K { 4 } else { 1 };
    let zero = _mm512_setzero_ps();
    let mut gs: [Group; 4] = [(_mm512_setzero_si512(), zero, zero); 4];
    // SAFETY: rows r0..r0 + R < nrows, so their `rb` bytes lie in `a.w`.
    let rowp = |j: usize| unsafe { a.w.as_ptr().add((r0 + j) * a.rb) };
    let mut acc = [[zero; R]; MR];
    // Minimum terms (Q4_1) add into their own accumulators: two independent chains.
    let mut acc_m = [[zero; R]; MR];
    // Interleaved: every unit of the R rows before the next unit. Otherwise one row after
    // the other (a single sequential stream), only the final reduction shared.
    let passes = if INTERLEAVE { 1 } else { R };
    for pass in 0..passes {
        let js = if INTERLEAVE { 0..R } else { pass..pass + 1 };
        let mut g0 = 0;
        if matches!(F, F_Q4_0 | F_Q4_1) {
            // Whole quads of blocks first (Layout::Quad): two code vectors per 128 values whose
            // integer dot products add before the one scaling step.
            let nq = a.k / 128;
            // Q4_1: the minimums of four quads (16 blocks) gather in one vector of f16 words per
            // weight row and meet the activation block sums once per four quads.
            let mut mwords = [_mm512_setzero_si512(); R];
            for q in 0..nq {
                // The rows of a block are contiguous, so one prefetch call per unit, ahead of
                // the last row taken, covers every row's bytes (here and in the loops below):
                // calling it per row cost weights in cache 5-15% for no gain from DRAM.
                pf.reach(rowp(js.end - 1).wrapping_add(2 * gb * q));
                for j in js.clone() {
                    // SAFETY: blocks 4q..4q + 4 lie within the row (4q + 4 <= k / 32).
                    let (wa, wb, sl) = unsafe {
                        if F == F_Q4_1 {
                            dec_q4_quad::<true>(rowp(j), q, &mut mwords[j])
                        } else {
                            dec_q4_quad::<false>(rowp(j), q, &mut mwords[j])
                        }
                    };
                    for i in 0..MR {
                        let xi = a.x0 + i;
                        let lb = xi * lanes_row + 32 * q;
                        // SAFETY: positions 128q..128q + 128 and slots 32q..32q + 16 of row `xi`
                        // are within its padded length.
                        unsafe {
                            let xq = xp.qx.as_ptr().add(xi * xp.kp + 128 * q);
                            let start = if corr {
                                _mm512_loadu_si512(xp.corr.as_ptr().add(lb).cast())
                            } else {
                                _mm512_setzero_si512()
                            };
                            let dot = _mm512_dpbusd_epi32(start, wa, _mm512_loadu_si512(xq.cast()));
                            let dot =
                                _mm512_dpbusd_epi32(dot, wb, _mm512_loadu_si512(xq.add(64).cast()));
                            let f = _mm512_mul_ps(
                                _mm512_cvtepi32_ps(dot),
                                _mm512_loadu_ps(xp.dx.as_ptr().add(lb)),
                            );
                            acc[i][j] = _mm512_fmadd_ps(f, sl, acc[i][j]);
                        }
                    }
                }
                if F == F_Q4_1 && (q % 4 == 3 || q + 1 == nq) {
                    // Block sums of quads 4t..4t + 4 sit in slots 128t + 16..128t + 32 (the
                    // unused upper half of quad 4t's slots); words of missing quads are zero.
                    let t = q / 4;
                    for j in js.clone() {
                        let mf = _mm512_cvtph_ps(_mm512_castsi512_si256(mwords[j]));
                        mwords[j] = _mm512_setzero_si512();
                        for i in 0..MR {
                            let xi = a.x0 + i;
                            // SAFETY: slot 128t + 32 <= 32 (4t + 1) <= 32 nq lies in row `xi`.
                            let bs = unsafe {
                                _mm512_loadu_ps(xp.msum.as_ptr().add(xi * lanes_row + 128 * t + 16))
                            };
                            acc_m[i][j] = _mm512_fmadd_ps(mf, bs, acc_m[i][j]);
                        }
                    }
                }
            }
            g0 = 2 * nq;
        }
        if F == F_Q4_K {
            // One activation scale per super-block (Layout::Wide): sub-block scales multiply
            // the integer lane sums (`vpmaddwd` against (scale, 0) pairs; a lane sum of four
            // 4-bit by 8-bit products fits 16 bits), one conversion per super-block. The
            // minimum terms go to their own (256-bit) accumulators, so the two chains of
            // dependent adds per super-block run side by side.
            let mut acc_h = [[_mm256_setzero_ps(); R]; MR];
            for sb in 0..a.k / 256 {
                pf.reach(rowp(js.end - 1).wrapping_add(144 * sb));
                for j in js.clone() {
                    // SAFETY: super-block `sb` lies within the row.
                    let (ws, scl, d, mf) = unsafe { dec_q4_k_wide(rowp(j).add(144 * sb)) };
                    for i in 0..MR {
                        let xi = a.x0 + i;
                        let lb = xi * lanes_row + 64 * sb;
                        // SAFETY: positions 256sb..256sb + 256 and slots 64sb..64sb + 16 of row
                        // `xi` are within its padded length.
                        unsafe {
                            let xq = xp.qx.as_ptr().add(xi * xp.kp + 256 * sb);
                            let mut isum = _mm512_setzero_si512();
                            for gi in 0..4 {
                                let dot = _mm512_dpbusd_epi32(
                                    _mm512_setzero_si512(),
                                    ws[gi],
                                    _mm512_loadu_si512(xq.add(64 * gi).cast()),
                                );
                                isum = _mm512_dpwssd_epi32(isum, dot, scl[gi]);
                            }
                            let s = _mm512_set1_ps(d * *xp.dx.as_ptr().add(lb));
                            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, acc[i][j]);
                            acc_h[i][j] = _mm256_fnmadd_ps(
                                mf,
                                _mm256_loadu_ps(xp.msum.as_ptr().add(lb)),
                                acc_h[i][j],
                            );
                        }
                    }
                }
            }
            for i in 0..MR {
                for j in js.clone() {
                    acc_m[i][j] = _mm512_zextps256_ps512(acc_h[i][j]);
                }
            }
            g0 = ng;
        }
        while g0 < ng {
            // Every fourth unit: a call per unit cost Q8_0 weights in cache 5-10%, and the
            // distance ahead is many units long.
            if g0 % 4 == 0 {
                pf.reach(rowp(js.end - 1).wrapping_add(gb * g0));
            }
            for j in js.clone() {
                let row = rowp(j);
                // SAFETY: each decoder reads only the bytes of unit `g0 / per_unit` of this row,
                // which exist since the row holds `k` values (a multiple of the block size).
                unsafe {
                    match F {
                        F_Q8_0 => gs[0] = dec_q8_0(row, g0, a.k),
                        F_Q4_0 => gs[0] = dec_q4::<false>(row, g0, a.k),
                        F_Q4_1 => gs[0] = dec_q4::<true>(row, g0, a.k),
                        F_Q6_K => dec_q6_k(row.add(210 * (g0 / 4)), &mut gs),
                        // Q4_K rows were consumed whole by the super-block loop above.
                        _ => {
                            let rscale = a.wscale.map_or(1.0, |s| s[r0 + j]);
                            gs[0] = dec_i8(row, g0, a.k, rscale)
                        }
                    }
                }
                for (u, &(w, sl, ml)) in gs.iter().enumerate().take(per_unit) {
                    let g = g0 + u;
                    for i in 0..MR {
                        let xi = a.x0 + i;
                        let lb = xi * lanes_row + 16 * g;
                        // SAFETY: row `xi` of the activations has `kp >= 64 * ng` bytes and
                        // `kp / 4` lanes in each lane array, so group `g < ng` is in bounds.
                        unsafe {
                            let xv =
                                _mm512_loadu_si512(xp.qx.as_ptr().add(xi * xp.kp + 64 * g).cast());
                            let start = if corr {
                                _mm512_loadu_si512(xp.corr.as_ptr().add(lb).cast())
                            } else {
                                _mm512_setzero_si512()
                            };
                            let dot = _mm512_dpbusd_epi32(start, w, xv);
                            let f = _mm512_mul_ps(
                                _mm512_cvtepi32_ps(dot),
                                _mm512_loadu_ps(xp.dx.as_ptr().add(lb)),
                            );
                            acc[i][j] = _mm512_fmadd_ps(f, sl, acc[i][j]);
                            if mins {
                                acc_m[i][j] = _mm512_fmadd_ps(
                                    ml,
                                    _mm512_loadu_ps(xp.msum.as_ptr().add(lb)),
                                    acc_m[i][j],
                                );
                            }
                        }
                    }
                }
            }
            g0 += per_unit;
        }
    }
    for i in 0..MR {
        let mut v = acc[i];
        if mins {
            for (v, m) in v.iter_mut().zip(&acc_m[i]) {
                *v = _mm512_add_ps(*v, *m);
            }
        }
        let o = i * a.nrows + r0;
        reduce_store::<R>(&v, &mut out[o..o + R]);
    }
}

/// Decodes group `g` (blocks `2g` and `2g + 1`, or `2g` alone at the row's end) of a Q8_0
/// row: each block's 32 codes by a 256-bit load, its f16 scale by a scalar load. A version
/// with two overlapping 512-bit loads and two word permutes per pair ran fewer instructions
/// but 5-30% slower with two threads (`knpu bench quant --only gemv`, AMD EPYC Zen 4).
///
/// # Safety
/// - blocks `2g` (and `2g + 1` when `64g + 64 <= k`) of the Q8_0 row at `row` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,f16c")]
unsafe fn dec_q8_0(row: *const u8, g: usize, k: usize) -> Group {
    // SAFETY: per the contract, only bytes of the present blocks are read.
    unsafe {
        let b0 = row.add(68 * g);
        let flip = _mm512_set1_epi8(0x80u8 as i8);
        if 64 * g + 64 <= k {
            let b1 = b0.add(34);
            let w = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(b0.add(2).cast())),
                _mm256_loadu_si256(b1.add(2).cast()),
            );
            let sl = _mm512_permutexvar_ps(
                _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                _mm512_castps128_ps512(f16_pair(b0, b1)),
            );
            (_mm512_xor_si512(w, flip), sl, _mm512_setzero_ps())
        } else {
            let w = _mm512_zextsi256_si512(_mm256_xor_si256(
                _mm256_loadu_si256(b0.add(2).cast()),
                _mm256_set1_epi8(0x80u8 as i8),
            ));
            (w, halves(f16_one(b0), 0.0), _mm512_setzero_ps())
        }
    }
}

/// # Safety
/// - the 64 values of group `g` (or 32 at the row's end) of the I8 row at `row` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
unsafe fn dec_i8(row: *const u8, g: usize, k: usize, s: f32) -> Group {
    // SAFETY: per the contract.
    unsafe {
        let p = row.add(64 * g);
        if 64 * g + 64 <= k {
            let w = _mm512_xor_si512(_mm512_loadu_si512(p.cast()), _mm512_set1_epi8(0x80u8 as i8));
            (w, _mm512_set1_ps(s), _mm512_setzero_ps())
        } else {
            let w = _mm256_xor_si256(_mm256_loadu_si256(p.cast()), _mm256_set1_epi8(0x80u8 as i8));
            (
                _mm512_zextsi256_si512(w),
                halves(s, 0.0),
                _mm512_setzero_ps(),
            )
        }
    }
}

/// # Safety
/// - blocks `2g` (and `2g + 1` when `64g + 64 <= k`) of the Q4_0/Q4_1 row at `row` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,f16c")]
unsafe fn dec_q4<const Q4_1: bool>(row: *const u8, g: usize, k: usize) -> Group {
    let (bs, qo) = if Q4_1 { (20, 4) } else { (18, 2) };
    let nib = _mm_set1_epi8(0x0F);
    // SAFETY: per the contract, only bytes of the present blocks are read.
    unsafe {
        let b0 = row.add(2 * bs * g);
        if 64 * g + 64 <= k {
            // The pair's 36 or 40 bytes in one masked load (bytes past them are not read);
            // one word permute lays out [b0 codes, b1 codes] twice (the upper copy then
            // shifted to the high nibbles), one more the f16 scales (and minimums) per lane.
            let z = _mm512_maskz_loadu_epi8(u64::MAX >> (64 - 2 * bs), b0.cast());
            let (cidx, sidx) = if Q4_1 {
                (
                    _mm512_set_epi16(
                        19, 18, 17, 16, 15, 14, 13, 12, 9, 8, 7, 6, 5, 4, 3, 2, 19, 18, 17, 16, 15,
                        14, 13, 12, 9, 8, 7, 6, 5, 4, 3, 2,
                    ),
                    _mm512_set_epi16(
                        11, 11, 11, 11, 1, 1, 1, 1, 11, 11, 11, 11, 1, 1, 1, 1, 10, 10, 10, 10, 0,
                        0, 0, 0, 10, 10, 10, 10, 0, 0, 0, 0,
                    ),
                )
            } else {
                (
                    _mm512_set_epi16(
                        17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1, 17, 16, 15, 14, 13,
                        12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1,
                    ),
                    _mm512_set_epi16(
                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 9,
                        9, 9, 9, 0, 0, 0, 0,
                    ),
                )
            };
            let codes = _mm512_and_si512(
                _mm512_srlv_epi64(
                    _mm512_permutexvar_epi16(cidx, z),
                    _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4),
                ),
                _mm512_set1_epi8(0x0F),
            );
            let sw = _mm512_permutexvar_epi16(sidx, z);
            let sl = _mm512_cvtph_ps(_mm512_castsi512_si256(sw));
            let ml = if Q4_1 {
                _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(sw))
            } else {
                _mm512_setzero_ps()
            };
            (codes, sl, ml)
        } else {
            let q = _mm_loadu_si128(b0.add(qo).cast());
            let y = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_and_si128(q, nib)),
                _mm_and_si128(_mm_srli_epi16::<4>(q), nib),
            );
            let ml = if Q4_1 {
                halves(f16_one(b0.add(2)), 0.0)
            } else {
                _mm512_setzero_ps()
            };
            (_mm512_zextsi256_si512(y), halves(f16_one(b0), 0.0), ml)
        }
    }
}

/// Decodes quad `q` (blocks `4q..4q + 4`) of a Q4_0/Q4_1 row: low-nibble codes, high-nibble
/// codes and lane scales (lane `L` belongs to block `4q + L / 4` in both). For Q4_1 the four
/// f16 minimums are merged into words `4 (q % 4)..4 (q % 4) + 4` of `mins` (one vector serves
/// four quads; see [`XPrep`](super::xprep::XPrep)'s block sums).
///
/// The quad's bytes (72 or 80) are read with two overlapping 64-byte loads; one two-source
/// permute gathers the four blocks' 16 code bytes, one more their f16 scales, four copies
/// each, for the conversion to f32.
///
/// # Safety
/// - the four blocks are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,f16c")]
unsafe fn dec_q4_quad<const Q4_1: bool>(
    row: *const u8,
    q: usize,
    mins: &mut __m512i,
) -> (__m512i, __m512i, __m512) {
    // SAFETY: all reads lie within the quad's 72 (Q4_0) or 80 (Q4_1) bytes: the second load
    // ends at the quad's last byte.
    unsafe {
        let nib = _mm512_set1_epi8(0x0F);
        let (z, sw) = if Q4_1 {
            // Blocks of 20 bytes: codes of block i are dwords 5i + 1..5i + 5; the second load
            // starts at byte 16 (dword 4), so dword d >= 16 is index d + 12 there. Scale and
            // minimum of block i are words 10i and 10i + 1.
            let b = row.add(80 * q);
            let z0 = _mm512_loadu_si512(b.cast());
            let z1 = _mm512_loadu_si512(b.add(16).cast());
            let idx = _mm512_setr_epi32(1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 28, 29, 30, 31);
            let widx = _mm512_setr_epi32(
                0,
                0,
                10 | (10 << 16),
                10 | (10 << 16),
                20 | (20 << 16),
                20 | (20 << 16),
                30 | (30 << 16),
                30 | (30 << 16),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            );
            let midx = _mm512_set1_epi64(1 | (11 << 16) | (21 << 32) | (31 << 48));
            *mins = _mm512_mask_permutexvar_epi16(*mins, 0xF << (4 * (q % 4)), midx, z0);
            (
                _mm512_permutex2var_epi32(z0, idx, z1),
                _mm512_permutexvar_epi16(widx, z0),
            )
        } else {
            // Blocks of 18 bytes: codes of block i are words 9i + 1..9i + 9; the second load
            // starts at byte 8 (word 4), so block 3 (words 28..36) is indices 56..64 there.
            // The scale of block i is word 9i.
            let b = row.add(72 * q);
            let z0 = _mm512_loadu_si512(b.cast());
            let z1 = _mm512_loadu_si512(b.add(8).cast());
            let idx = _mm512_set_epi16(
                63, 62, 61, 60, 59, 58, 57, 56, 26, 25, 24, 23, 22, 21, 20, 19, 17, 16, 15, 14, 13,
                12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1,
            );
            let widx = _mm512_setr_epi32(
                0,
                0,
                9 | (9 << 16),
                9 | (9 << 16),
                18 | (18 << 16),
                18 | (18 << 16),
                27 | (27 << 16),
                27 | (27 << 16),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            );
            (
                _mm512_permutex2var_epi16(z0, idx, z1),
                _mm512_permutexvar_epi16(widx, z0),
            )
        };
        let wa = _mm512_and_si512(z, nib);
        let wb = _mm512_and_si512(_mm512_srli_epi16::<4>(z), nib);
        (wa, wb, _mm512_cvtph_ps(_mm512_castsi512_si256(sw)))
    }
}

/// Decodes a Q4_K super-block for the wide path: the four code vectors (groups of
/// [`XPrep`](super::xprep::XPrep)'s order), their sub-block scales as 16-bit (scale, 0) pairs
/// per lane, `d`, and `dmin * m[j]` in lane `j` of a 256-bit vector.
///
/// The 6-bit scales and mins are unpacked with 32-bit integer operations on the three packed
/// words (in general-purpose registers, off the vector pipes; see
/// [`q4_k_scale_words`](crate::quant::kquants::q4_k_scale_words)), then spread over the lanes with
/// one in-lane byte shuffle per code vector.
///
/// # Safety
/// - the 144 bytes of the Q4_K super-block at `b` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,f16c")]
unsafe fn dec_q4_k_wide(b: *const u8) -> ([__m512i; 4], [__m512i; 4], f32, __m256) {
    // SAFETY: reads lie within the super-block's 144 bytes.
    unsafe {
        let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(b.cast::<i32>().read_unaligned()));
        let d = _mm_cvtss_f32(dd);
        let (sc, mn) = crate::quant::kquants::q4_k_scale_words(&*(b.add(4) as *const [u8; 12]));
        let scx = _mm512_broadcast_i32x4(_mm_cvtsi64_si128(sc as i64));
        let mnv = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mn as i64)));
        let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
        let mf = _mm256_mul_ps(mnv, dmin);
        let nib = _mm512_set1_epi8(0x0F);
        let z0 = _mm512_loadu_si512(b.add(16).cast());
        let z1 = _mm512_loadu_si512(b.add(80).cast());
        let ws = [
            _mm512_and_si512(z0, nib),
            _mm512_and_si512(_mm512_srli_epi16::<4>(z0), nib),
            _mm512_and_si512(z1, nib),
            _mm512_and_si512(_mm512_srli_epi16::<4>(z1), nib),
        ];
        // Group `gi` pairs sub-blocks (0,2), (1,3), (4,6), (5,7): lanes 0..8 take the first,
        // lanes 8..16 the second; each lane is (scale byte, 0, 0, 0).
        let pick = |a: u8, c: u8| {
            // Index bytes 0x80 give zero bytes.
            let (ea, ec) = (
                (0x8080_8000 | a as u32) as i32,
                (0x8080_8000 | c as u32) as i32,
            );
            _mm512_shuffle_epi8(
                scx,
                _mm512_setr_epi32(
                    ea, ea, ea, ea, ea, ea, ea, ea, ec, ec, ec, ec, ec, ec, ec, ec,
                ),
            )
        };
        let scl = [pick(0, 2), pick(1, 3), pick(4, 6), pick(5, 7)];
        (ws, scl, d, mf)
    }
}

/// # Safety
/// - the 210 bytes of the Q6_K super-block at `b` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,f16c")]
unsafe fn dec_q6_k(b: *const u8, gs: &mut [Group; 4]) {
    // SAFETY: reads lie within the super-block's 210 bytes.
    unsafe {
        let d = f16_one(b.add(208));
        let sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(192).cast())));
        let ds = _mm512_mul_ps(_mm512_set1_ps(d), sc);
        let nib = _mm512_set1_epi8(0x0F);
        let top = _mm512_set1_epi8(0x30);
        let lane = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for h in 0..2 {
            let ql = _mm512_loadu_si512(b.add(64 * h).cast());
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(128 + 32 * h).cast()));
            let lo = _mm512_or_si512(
                _mm512_and_si512(ql, nib),
                _mm512_and_si512(
                    _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2)),
                    top,
                ),
            );
            let hi = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), nib),
                _mm512_and_si512(
                    _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)),
                    top,
                ),
            );
            for (part, w) in [(0, lo), (1, hi)] {
                let base = _mm512_set1_epi32((8 * h + 4 * part) as i32);
                let sl = _mm512_permutexvar_ps(_mm512_add_epi32(lane, base), ds);
                gs[2 * h + part] = (w, sl, _mm512_setzero_ps());
            }
        }
    }
}

/// The W8A8 microkernel: an 8 x 32 i32 tile over `k4` steps of 4 bytes, added to `tile`
/// when `accumulate` is set, written over it otherwise.
///
/// # Safety
/// - the host supports AVX-512 F and VNNI;
/// - `a` holds `k4 * 32` bytes (8 rows x 4 per step), `b` holds `k4 * 128`.
#[target_feature(enable = "avx512f,avx512dq,avx512vnni")]
pub(crate) unsafe fn w8a8_micro(
    k4: usize,
    a: &[u8],
    b: &[i8],
    tile: &mut [i32; 256],
    accumulate: bool,
) {
    let mut c = [[_mm512_setzero_si512(); 2]; 8];
    if accumulate {
        for (r, cr) in c.iter_mut().enumerate() {
            // SAFETY: tile has 8 rows of 32 i32; row r's two halves are in bounds.
            unsafe {
                cr[0] = _mm512_loadu_si512(tile.as_ptr().add(32 * r).cast());
                cr[1] = _mm512_loadu_si512(tile.as_ptr().add(32 * r + 16).cast());
            }
        }
    }
    let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
    for _ in 0..k4 {
        // SAFETY: step `s < k4` reads a[32s..32s+32] and b[128s..128s+128], in bounds by the
        // contract.
        unsafe {
            let b0 = _mm512_loadu_si512(bp.cast());
            let b1 = _mm512_loadu_si512(bp.add(64).cast());
            for (r, cr) in c.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(ap.add(4 * r).cast::<i32>().read_unaligned());
                cr[0] = _mm512_dpbusd_epi32(cr[0], av, b0);
                cr[1] = _mm512_dpbusd_epi32(cr[1], av, b1);
            }
            ap = ap.add(32);
            bp = bp.add(128);
        }
    }
    for (r, cr) in c.iter().enumerate() {
        // SAFETY: tile has 8 rows of 32 i32; row r's two halves are in bounds.
        unsafe {
            _mm512_storeu_si512(tile.as_mut_ptr().add(32 * r).cast(), cr[0]);
            _mm512_storeu_si512(tile.as_mut_ptr().add(32 * r + 16).cast(), cr[1]);
        }
    }
}

/// Writes 32 floats to `dst` with non-temporal stores (the caller fences before the data is
/// shared).
///
/// # Safety
/// - the host supports AVX-512F;
/// - `dst` is 64-byte aligned and valid for writing 32 floats.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn stream_row32(row: &[f32; 32], dst: *mut f32) {
    // SAFETY: `row` holds 32 floats; `dst` is aligned and writable (caller).
    unsafe {
        _mm512_stream_ps(dst, _mm512_loadu_ps(row.as_ptr()));
        _mm512_stream_ps(dst.add(16), _mm512_loadu_ps(row.as_ptr().add(16)));
    }
}
