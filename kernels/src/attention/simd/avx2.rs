//! AVX2 + FMA tile operations, the same scheme as the AVX-512 path on 8-lane registers and
//! without any AVX-512 instruction (hosts without AVX-512 run this).
//!
//! Callers reach these only through [`super::TileKernels`], which checks the bounds listed in
//! each function's `# Safety` section, and only after `isa::detected()` reported AVX2 + FMA.

use super::{exp_offset, Ahead, Pv, PvBlock, QkDot, Rows, Running};
use std::arch::x86_64::*;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, `exp` is flushed to an exact 0 (so masked scores add nothing at all).
const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.37;

/// `exp(x)` for 8 lanes with about 2 ulp error; `-inf` and anything below [`EXP_MIN`] give 0.
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_MIN));
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN)),
        _mm256_set1_ps(EXP_MAX),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_2e-3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.666_666_5e-1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5));
    let r2 = _mm256_mul_ps(r, r);
    y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    // n is in [-126, 127] after the clamp, so 2^n is a normal float built from its exponent.
    let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e));
    _mm256_andnot_ps(tiny, _mm256_mul_ps(y, pow2n))
}

/// One block of scores: `MK` keys by 16 query rows (two vectors).
///
/// # Safety
/// - `q` must be readable at `p * rp + 16` floats for every `p < d`.
/// - `k` must be readable at `m * ks + p` for `m < MK`, `p < d`.
/// - `s` must be writable at `m * rp + 16` floats for `m < MK`.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn qk_block<const MK: usize>(
    q: *const f32,
    rp: usize,
    d: usize,
    k: *const f32,
    ks: usize,
    s: *mut f32,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MK];
    for p in 0..d {
        // SAFETY: `p < d`: 16 query floats the caller made readable.
        let (q0, q1) = unsafe {
            (
                _mm256_loadu_ps(q.add(p * rp)),
                _mm256_loadu_ps(q.add(p * rp + 8)),
            )
        };
        for m in 0..MK {
            // SAFETY: `m < MK`, `p < d`: a key element the caller made readable.
            let kb = _mm256_set1_ps(unsafe { *k.add(m * ks + p) });
            acc[m][0] = _mm256_fmadd_ps(kb, q0, acc[m][0]);
            acc[m][1] = _mm256_fmadd_ps(kb, q1, acc[m][1]);
        }
    }
    for m in 0..MK {
        // SAFETY: within the `MK x 16` block the caller made writable.
        unsafe {
            _mm256_storeu_ps(s.add(m * rp), acc[m][0]);
            _mm256_storeu_ps(s.add(m * rp + 8), acc[m][1]);
        }
    }
}

/// Scores for `nk` keys, every key against every padded query row.
///
/// # Safety
/// - `rp % 16 == 0`, `qt.len() >= d * rp`, `st.len() >= nk * rp`.
/// - When `nk > 0`: `koff + (nk - 1) * ks + d <= k.len()`.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn qk(qt: &[f32], rp: usize, d: usize, keys: Rows<&[f32]>, st: &mut [f32]) {
    let (k, koff, ks, nk) = keys.parts();
    let (qp, sp) = (qt.as_ptr(), st.as_mut_ptr());
    // SAFETY: `koff` is within `k` when `nk > 0` (caller); with `nk == 0` nothing is read.
    let kp = unsafe { k.as_ptr().add(if nk > 0 { koff } else { 0 }) };
    for r0 in (0..rp).step_by(16) {
        let mut j = 0;
        while j < nk {
            // SAFETY: rows `r0..r0 + 16 <= rp` of `qt` and `st`, keys `j..j + mk <= nk`.
            unsafe {
                let (q, kk, s) = (qp.add(r0), kp.add(j * ks), sp.add(j * rp + r0));
                if nk - j >= 6 {
                    qk_block::<6>(q, rp, d, kk, ks, s);
                    j += 6;
                } else {
                    qk_block::<1>(q, rp, d, kk, ks, s);
                    j += 1;
                }
            }
        }
    }
}

/// The online-softmax step over a score tile (see [`super::TileKernels::softmax`]).
///
/// # Safety
/// - `rp % 16 == 0`, `st.len() >= nk * rp`, and `m`, `l`, `alpha` hold at least `rp` floats.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax(st: &mut [f32], rp: usize, nk: usize, run: Running<'_>) {
    let Running { m, l, alpha } = run;
    let sp = st.as_mut_ptr();
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in (0..rp).step_by(8) {
        // SAFETY: `c + 8 <= rp` floats of `m`, `l`, `alpha`, and rows `j < nk` of `st`, all
        // within the caller's bounds.
        unsafe {
            let m_old = _mm256_loadu_ps(m.as_ptr().add(c));
            let mut mx = m_old;
            for j in 0..nk {
                mx = _mm256_max_ps(mx, _mm256_loadu_ps(sp.add(j * rp + c)));
            }
            let none = _mm256_cmp_ps::<_CMP_EQ_OQ>(mx, neg_inf);
            let m_use = _mm256_andnot_ps(none, mx);
            let a = exp8(_mm256_sub_ps(m_old, m_use));
            let mut sum = _mm256_setzero_ps();
            for j in 0..nk {
                let ptr = sp.add(j * rp + c);
                let p = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr), m_use));
                _mm256_storeu_ps(ptr, p);
                sum = _mm256_add_ps(sum, p);
            }
            let l_old = _mm256_loadu_ps(l.as_ptr().add(c));
            _mm256_storeu_ps(l.as_mut_ptr().add(c), _mm256_fmadd_ps(l_old, a, sum));
            _mm256_storeu_ps(m.as_mut_ptr().add(c), mx);
            _mm256_storeu_ps(alpha.as_mut_ptr().add(c), a);
        }
    }
}

/// One block of the output update: `MR` rows by `NV` vectors of columns; the last vector's
/// value loads use `tail` (lanes whose mask is clear read as 0).
///
/// # Safety
/// - `p` must be readable at `j * pj + r * pr` for `j < nk`, `r < MR`.
/// - `v` must be readable at `j * vs + c` for `j < nk` and every column `c` whose lane is set
///   (all lanes of the first `NV - 1` vectors, the `tail` lanes of the last).
/// - `o` must be readable and writable at `r * dp + 8 * NV` floats for `r < MR`; `a` at `MR`.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn pv_block<const MR: usize, const NV: usize>(blk: PvBlock<f32>, tail: __m256i, pf: Ahead) {
    let (p, pj, pr, nk) = (blk.p, blk.pj, blk.pr, blk.nk);
    let (v, vs, o, dp, a) = (blk.v, blk.vs, blk.o, blk.dp, blk.a);
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    for r in 0..MR {
        // SAFETY: `r < MR`: an alpha and an output row the caller made accessible.
        unsafe {
            let ar = _mm256_set1_ps(*a.add(r));
            for c in 0..NV {
                acc[r][c] = _mm256_mul_ps(ar, _mm256_loadu_ps(o.add(r * dp + 8 * c)));
            }
        }
    }
    for j in 0..nk {
        let mut vv = [_mm256_setzero_ps(); NV];
        // SAFETY: value row `j < nk`, full vectors then the masked tail (caller's bounds).
        unsafe {
            let row = v.add(j * vs);
            if j < pf.rows {
                for c in 0..NV {
                    let at = row.wrapping_add(pf.off + 8 * c) as *const i8;
                    _mm_prefetch::<_MM_HINT_T1>(at);
                }
            }
            for c in 0..NV - 1 {
                vv[c] = _mm256_loadu_ps(row.add(8 * c));
            }
            vv[NV - 1] = _mm256_maskload_ps(row.add(8 * (NV - 1)), tail);
        }
        for r in 0..MR {
            // SAFETY: probability `(j, r)` with `j < nk`, `r < MR` (caller's bounds).
            let pb = _mm256_set1_ps(unsafe { *p.add(j * pj + r * pr) });
            for c in 0..NV {
                acc[r][c] = _mm256_fmadd_ps(pb, vv[c], acc[r][c]);
            }
        }
    }
    for r in 0..MR {
        for c in 0..NV {
            // SAFETY: output row `r < MR`, within the block the caller made writable.
            unsafe { _mm256_storeu_ps(o.add(r * dp + 8 * c), acc[r][c]) };
        }
    }
}

/// The output update over a probability tile (see [`super::TileKernels::pv`]).
///
/// # Safety
/// - `pt` readable at `j * pj + r * pr` for `j < nk`, `r < nr`; `alpha.len() >= nr`.
/// - `dp >= d`, `dp % 16 == 0`, `o.len() >= nr * dp`.
/// - When `nk > 0`: `voff + (nk - 1) * vs + d <= v.len()`.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pv(args: Pv<'_, &[f32]>, o: &mut [f32]) {
    let (pt, pj, pr, nr) = (args.pt, args.pj, args.pr, args.nr);
    let (d, dp, alpha, ahead) = (args.d, args.dp, args.alpha, args.ahead);
    let (v, voff, vs, nk) = args.values.parts();
    let (pp, op, ap) = (pt.as_ptr(), o.as_mut_ptr(), alpha.as_ptr());
    // SAFETY: `voff` is within `v` when `nk > 0` (caller); with `nk == 0` nothing is read.
    let vp = unsafe { v.as_ptr().add(if nk > 0 { voff } else { 0 }) };
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut r0 = 0;
    while r0 < nr {
        let mr = if nr - r0 >= 4 { 4 } else { 1 };
        let mut c0 = 0;
        while c0 < d {
            let nv = (d - c0).div_ceil(8).min(3);
            let last = (d - c0 - 8 * (nv - 1)).min(8) as i32;
            let tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(last), lane);
            // SAFETY: rows `r0..r0 + mr <= nr` of `pt`, `o` and `alpha`; columns
            // `c0..c0 + 8 nv <= dp` of `o`; value columns below `d` only (the tail mask);
            // value rows `j < nk`. All within the caller's bounds.
            unsafe {
                let pf = if r0 == 0 { ahead } else { Ahead::default() };
                let (p, vv, oo, a) = (
                    pp.add(r0 * pr),
                    vp.add(c0),
                    op.add(r0 * dp + c0),
                    ap.add(r0),
                );
                let blk = PvBlock {
                    p,
                    pj,
                    pr,
                    nk,
                    v: vv,
                    vs,
                    o: oo,
                    dp,
                    a,
                };
                match (mr, nv) {
                    (4, 1) => pv_block::<4, 1>(blk, tail, pf),
                    (4, 2) => pv_block::<4, 2>(blk, tail, pf),
                    (4, _) => pv_block::<4, 3>(blk, tail, pf),
                    (_, 1) => pv_block::<1, 1>(blk, tail, pf),
                    (_, 2) => pv_block::<1, 2>(blk, tail, pf),
                    (_, _) => pv_block::<1, 3>(blk, tail, pf),
                }
            }
            c0 += 8 * nv;
        }
        r0 += mr;
    }
}

/// Lane `i` of the result is the sum of the 8 lanes of `a[i]`.
#[target_feature(enable = "avx2,fma")]
fn sum8x8(a: &[__m256; 8]) -> __m256 {
    let t0 = _mm256_hadd_ps(a[0], a[1]);
    let t1 = _mm256_hadd_ps(a[2], a[3]);
    let t2 = _mm256_hadd_ps(a[4], a[5]);
    let t3 = _mm256_hadd_ps(a[6], a[7]);
    let u0 = _mm256_hadd_ps(t0, t1);
    let u1 = _mm256_hadd_ps(t2, t3);
    let lo = _mm256_permute2f128_ps::<0x20>(u0, u1);
    let hi = _mm256_permute2f128_ps::<0x31>(u0, u1);
    _mm256_add_ps(lo, hi)
}

/// A load mask for the first `n` (at most 8) lanes.
#[target_feature(enable = "avx2,fma")]
fn lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n.min(8) as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Dot-form scores for up to 16 rows (see [`super::TileKernels::qk_dot`]).
///
/// # Safety
/// - `dp >= d`, `dp % 16 == 0`, `q.len() >= nr * dp`, `nk <= ss`,
///   `s.len() >= (nr - 1) * ss + nk` when `nr > 0`.
/// - When `nk > 0`: `koff + (nk - 1) * ks + d <= k.len()`.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn qk_dot(args: QkDot<'_, &[f32]>, s: &mut [f32]) {
    let (q, nr, d, dp) = (args.q, args.nr, args.d, args.dp);
    let (ss, ahead) = (args.ss, args.ahead);
    let (k, koff, ks, nk) = args.keys.parts();
    if nk == 0 {
        return;
    }
    let chunks = d.div_ceil(8);
    let tail = lanes(d - 8 * (chunks - 1));
    let all = lanes(8);
    let (qp, sp) = (q.as_ptr(), s.as_mut_ptr());
    // SAFETY: `koff` is within `k` since `nk > 0` (caller).
    let kp = unsafe { k.as_ptr().add(koff) };
    for j0 in (0..nk).step_by(8) {
        let kn = (nk - j0).min(8);
        // Rows past the tile repeat its last key; their sums are never stored.
        let mut rows = [kp; 8];
        for (i, row) in rows.iter_mut().enumerate() {
            // SAFETY: key `min(j0 + i, nk - 1) < nk` is a row the caller made readable.
            *row = unsafe { kp.add((j0 + i).min(nk - 1) * ks) };
        }
        // Keys are prefetched once, with the first row.
        let pf = if j0 < ahead.rows { ahead.off } else { 0 };
        for r in 0..nr {
            let mut acc = [_mm256_setzero_ps(); 8];
            for c in 0..chunks {
                let m = if c + 1 == chunks { tail } else { all };
                // SAFETY: query row `r < nr`, column block `8 c < dp` (caller's bounds); key
                // columns `< d` only, through the mask.
                unsafe {
                    let qv = _mm256_loadu_ps(qp.add(r * dp + 8 * c));
                    for i in 0..8 {
                        let kv = _mm256_maskload_ps(rows[i].add(8 * c), m);
                        if r == 0 && pf != 0 {
                            let at = rows[i].wrapping_add(8 * c + pf) as *const i8;
                            _mm_prefetch::<_MM_HINT_T1>(at);
                        }
                        acc[i] = _mm256_fmadd_ps(qv, kv, acc[i]);
                    }
                }
            }
            let sums = sum8x8(&acc);
            // SAFETY: `r * ss + j0 + kn <= (nr - 1) * ss + nk` (caller's bounds).
            unsafe { _mm256_maskstore_ps(sp.add(r * ss + j0), lanes(kn), sums) };
        }
    }
}

/// Online softmax over row-major scores (see [`super::TileKernels::softmax_rows`]).
///
/// # Safety
/// - `nk <= ss`, `s.len() >= (nr - 1) * ss + nk` when `nr > 0`; `m`, `l`, `alpha` hold `nr`.
/// - The host must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax_rows(
    s: &mut [f32],
    ss: usize,
    nr: usize,
    nk: usize,
    run: Running<'_>,
) {
    let Running { m, l, alpha } = run;
    let sp = s.as_mut_ptr();
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    for r in 0..nr {
        let mut mx = _mm256_set1_ps(m[r]);
        // SAFETY: (both loops) columns `j < nk` of row `r < nr`, through the masks.
        unsafe {
            for j in (0..nk).step_by(8) {
                let keep = lanes(nk - j);
                let x = _mm256_maskload_ps(sp.add(r * ss + j), keep);
                mx = _mm256_max_ps(mx, _mm256_blendv_ps(neg_inf, x, _mm256_castsi256_ps(keep)));
            }
        }
        let mut lanes_out = [0.0f32; 8];
        // SAFETY: 8 floats into an 8-float array.
        unsafe { _mm256_storeu_ps(lanes_out.as_mut_ptr(), mx) };
        let m_new = lanes_out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let m_use = exp_offset(m_new);
        let mu = _mm256_set1_ps(m_use);
        let mut sum = _mm256_setzero_ps();
        // SAFETY: as above.
        unsafe {
            for j in (0..nk).step_by(8) {
                let keep = lanes(nk - j);
                let ptr = sp.add(r * ss + j);
                let x = _mm256_maskload_ps(ptr, keep);
                let p = _mm256_and_ps(exp8(_mm256_sub_ps(x, mu)), _mm256_castsi256_ps(keep));
                _mm256_maskstore_ps(ptr, keep, p);
                sum = _mm256_add_ps(sum, p);
            }
        }
        // SAFETY: 8 floats into an 8-float array.
        unsafe { _mm256_storeu_ps(lanes_out.as_mut_ptr(), sum) };
        // The running maximum rarely moves after the first tiles: skip the scalar exp then.
        let a = if m[r] == m_use {
            1.0
        } else {
            (m[r] - m_use).exp()
        };
        l[r] = l[r] * a + lanes_out.iter().sum::<f32>();
        m[r] = m_new;
        alpha[r] = a;
    }
}

/// Widens rows of 16-bit values (bf16 when `BF16`, else f16), 8 lanes at a time; the last
/// `d % 8` values of a row go through the portable converter.
///
/// # Safety
/// - `dst.len() >= nk * d`; when `nk > 0`, `off + (nk - 1) * stride + d <= bits.len()`.
/// - The host must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn widen<const BF16: bool>(rows: Rows<&[u16]>, d: usize, dst: &mut [f32]) {
    let (bits, off, stride, nk) = rows.parts();
    let full = d / 8 * 8;
    let (bp, dp) = (bits.as_ptr(), dst.as_mut_ptr());
    for j in 0..nk {
        for c in (0..full).step_by(8) {
            // SAFETY: elements `c..c + 8 <= d` of source row `j < nk` and destination row `j`
            // (caller's bounds).
            unsafe {
                let h = _mm_loadu_si128(bp.add(off + j * stride + c) as *const __m128i);
                let f = if BF16 {
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                } else {
                    _mm256_cvtph_ps(h)
                };
                _mm256_storeu_ps(dp.add(j * d + c), f);
            }
        }
        for c in full..d {
            let b = bits[off + j * stride + c];
            dst[j * d + c] = if BF16 {
                f32::from_bits((b as u32) << 16)
            } else {
                half::f16::from_bits(b).to_f32()
            };
        }
    }
}
