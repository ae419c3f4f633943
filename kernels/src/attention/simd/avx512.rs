//! AVX-512 tile operations: register-blocked `Q K^T` (query rows in lanes, a key broadcast per
//! FMA), a vectorised online softmax with a polynomial `exp`, and a register-blocked `P V`.
//!
//! Callers reach these only through [`super::TileKernels`], which checks the bounds listed in
//! each function's `# Safety` section, and only after `isa::detected()` reported AVX-512.

use super::{exp_offset, Ahead, KvElem, Pv, PvBlock, QkDot, Rows, Running};
use std::arch::x86_64::*;

/// 16 elements at `p` as f32; lanes outside `m` are zero and not read.
///
/// # Safety
/// - `p` readable at every lane set in `m`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn load16<E: KvElem>(p: *const E, m: __mmask16) -> __m512 {
    // SAFETY: the lanes of `m` are readable (caller).
    unsafe {
        match E::KIND {
            0 => _mm512_maskz_loadu_ps(m, p as *const f32),
            1 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16)),
            _ => widen_bf16x16(_mm256_maskz_loadu_epi16(m, p as *const i16)),
        }
    }
}

/// [`load16`] of all 16 lanes.
///
/// # Safety
/// - `p` readable at 16 elements.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn load16_full<E: KvElem>(p: *const E) -> __m512 {
    // SAFETY: 16 elements at `p` are readable (caller).
    unsafe {
        match E::KIND {
            0 => _mm512_loadu_ps(p as *const f32),
            1 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
            _ => widen_bf16x16(_mm256_loadu_si256(p as *const __m256i)),
        }
    }
}

/// 16 bfloat16 values (bits) as f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn widen_bf16x16(h: __m256i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

/// Whether vector `c` of a row (16 elements of `E` each) starts a 64-byte line, so that the
/// kernels prefetch each line once.
#[inline(always)]
fn starts_line<E>(c: usize) -> bool {
    (c * std::mem::size_of::<E>()).is_multiple_of(4)
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, `exp` is flushed to an exact 0 (so masked scores add nothing at all).
const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.37;

/// `exp(x)` for 16 lanes with about 2 ulp error; `-inf` and anything below [`EXP_MIN`] give 0.
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_MIN));
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(EXP_MIN)),
        _mm512_set1_ps(EXP_MAX),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut y = _mm512_set1_ps(1.987_569_1e-4);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.398_2e-3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.333_452e-3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.166_579_6e-2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.666_666_5e-1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5));
    let r2 = _mm512_mul_ps(r, r);
    y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_maskz_mov_ps(!tiny, _mm512_scalef_ps(y, n))
}

/// One block of scores: `MK` keys by `NV` vectors of query rows.
///
/// # Safety
/// - `q` must be readable at `p * rp + 16 * NV` floats for every `p < d`.
/// - `k` must be readable at `m * ks + p` for `m < MK`, `p < d`.
/// - `s` must be writable at `m * rp + 16 * NV` floats for `m < MK`.
/// - The host must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn qk_block<const NV: usize, const MK: usize>(
    q: *const f32,
    rp: usize,
    d: usize,
    k: *const f32,
    ks: usize,
    s: *mut f32,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MK];
    for p in 0..d {
        let mut qv = [_mm512_setzero_ps(); NV];
        for v in 0..NV {
            // SAFETY: `p < d` and `v < NV`, inside what the caller made readable.
            qv[v] = unsafe { _mm512_loadu_ps(q.add(p * rp + 16 * v)) };
        }
        for m in 0..MK {
            // SAFETY: `m < MK`, `p < d`: a key element the caller made readable.
            let kb = _mm512_set1_ps(unsafe { *k.add(m * ks + p) });
            for v in 0..NV {
                acc[m][v] = _mm512_fmadd_ps(kb, qv[v], acc[m][v]);
            }
        }
    }
    for m in 0..MK {
        for v in 0..NV {
            // SAFETY: within the `MK x 16 NV` block the caller made writable.
            unsafe { _mm512_storeu_ps(s.add(m * rp + 16 * v), acc[m][v]) };
        }
    }
}

/// Scores for `nk` keys, every key against every padded query row.
///
/// # Safety
/// - `rp % 16 == 0`, `qt.len() >= d * rp`, `st.len() >= nk * rp`.
/// - When `nk > 0`: `koff + (nk - 1) * ks + d <= k.len()`.
/// - The host must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn qk(qt: &[f32], rp: usize, d: usize, keys: Rows<&[f32]>, st: &mut [f32]) {
    let (k, koff, ks, nk) = keys.parts();
    let (qp, sp) = (qt.as_ptr(), st.as_mut_ptr());
    // SAFETY: `koff` is within `k` when `nk > 0` (caller); with `nk == 0` nothing is read.
    let kp = unsafe { k.as_ptr().add(if nk > 0 { koff } else { 0 }) };
    let mut r0 = 0;
    while r0 < rp {
        let nv = ((rp - r0) / 16).min(4);
        let nv = if nv == 3 { 2 } else { nv };
        let mut j = 0;
        // SAFETY: (all calls below) rows `r0..r0 + 16 nv <= rp` of `qt` and `st`, keys
        // `j..j + mk <= nk` of `k`, which the caller's bounds cover.
        unsafe {
            while j < nk {
                let (q, kk, s) = (qp.add(r0), kp.add(j * ks), sp.add(j * rp + r0));
                let left = nk - j;
                let mk = match nv {
                    4 if left >= 6 => {
                        qk_block::<4, 6>(q, rp, d, kk, ks, s);
                        6
                    }
                    4 if left >= 3 => {
                        qk_block::<4, 3>(q, rp, d, kk, ks, s);
                        3
                    }
                    4 => {
                        qk_block::<4, 1>(q, rp, d, kk, ks, s);
                        1
                    }
                    2 if left >= 8 => {
                        qk_block::<2, 8>(q, rp, d, kk, ks, s);
                        8
                    }
                    2 => {
                        qk_block::<2, 1>(q, rp, d, kk, ks, s);
                        1
                    }
                    _ if left >= 12 => {
                        qk_block::<1, 12>(q, rp, d, kk, ks, s);
                        12
                    }
                    _ => {
                        qk_block::<1, 1>(q, rp, d, kk, ks, s);
                        1
                    }
                };
                j += mk;
            }
        }
        r0 += 16 * nv;
    }
}

/// The online-softmax step over a score tile (see [`super::TileKernels::softmax`]).
///
/// # Safety
/// - `rp % 16 == 0`, `st.len() >= nk * rp`, and `m`, `l`, `alpha` hold at least `rp` floats.
/// - The host must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax(st: &mut [f32], rp: usize, nk: usize, run: Running<'_>) {
    let Running { m, l, alpha } = run;
    let sp = st.as_mut_ptr();
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    for c in (0..rp).step_by(16) {
        // SAFETY: `c + 16 <= rp` floats of `m`, `l`, `alpha`, and rows `j < nk` of `st`, all
        // within the caller's bounds.
        unsafe {
            let m_old = _mm512_loadu_ps(m.as_ptr().add(c));
            let mut mx = m_old;
            for j in 0..nk {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(sp.add(j * rp + c)));
            }
            let none = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(mx, neg_inf);
            let m_use = _mm512_maskz_mov_ps(!none, mx);
            let a = exp16(_mm512_sub_ps(m_old, m_use));
            let mut sum = _mm512_setzero_ps();
            for j in 0..nk {
                let ptr = sp.add(j * rp + c);
                let p = exp16(_mm512_sub_ps(_mm512_loadu_ps(ptr), m_use));
                _mm512_storeu_ps(ptr, p);
                sum = _mm512_add_ps(sum, p);
            }
            let l_old = _mm512_loadu_ps(l.as_ptr().add(c));
            _mm512_storeu_ps(l.as_mut_ptr().add(c), _mm512_fmadd_ps(l_old, a, sum));
            _mm512_storeu_ps(m.as_mut_ptr().add(c), mx);
            _mm512_storeu_ps(alpha.as_mut_ptr().add(c), a);
        }
    }
}

/// One block of the output update: `MR` rows by `NV` vectors of columns; the last vector's
/// value loads use `tail` (lanes past the head dimension read as 0).
///
/// # Safety
/// - `p` must be readable at `j * pj + r * pr` for `j < nk`, `r < MR`.
/// - `v` must be readable at `j * vs + c` for `j < nk` and every column `c` whose lane is set
///   (all lanes of the first `NV - 1` vectors, the `tail` lanes of the last).
/// - `o` must be readable and writable at `r * dp + 16 * NV` floats for `r < MR`; `a` at `MR`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::needless_range_loop)]
unsafe fn pv_block<E: KvElem, const MR: usize, const NV: usize>(
    blk: PvBlock<E>,
    tail: __mmask16,
    pf: Ahead,
) {
    let (p, pj, pr, nk) = (blk.p, blk.pj, blk.pr, blk.nk);
    let (v, vs, o, dp, a) = (blk.v, blk.vs, blk.o, blk.dp, blk.a);
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    for r in 0..MR {
        // SAFETY: `r < MR`: an alpha and an output row the caller made accessible.
        unsafe {
            let ar = _mm512_set1_ps(*a.add(r));
            for c in 0..NV {
                acc[r][c] = _mm512_mul_ps(ar, _mm512_loadu_ps(o.add(r * dp + 16 * c)));
            }
        }
    }
    for j in 0..nk {
        let mut vv = [_mm512_setzero_ps(); NV];
        // SAFETY: value row `j < nk`, full vectors then the masked tail (caller's bounds).
        unsafe {
            let row = v.add(j * vs);
            if j < pf.rows {
                for c in (0..NV).filter(|&c| starts_line::<E>(c)) {
                    let at = row.wrapping_add(pf.off + 16 * c) as *const i8;
                    _mm_prefetch::<_MM_HINT_T1>(at);
                }
            }
            for c in 0..NV - 1 {
                vv[c] = load16_full(row.add(16 * c));
            }
            vv[NV - 1] = load16(row.add(16 * (NV - 1)), tail);
        }
        for r in 0..MR {
            // SAFETY: probability `(j, r)` with `j < nk`, `r < MR` (caller's bounds).
            let pb = _mm512_set1_ps(unsafe { *p.add(j * pj + r * pr) });
            for c in 0..NV {
                acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
            }
        }
    }
    for r in 0..MR {
        for c in 0..NV {
            // SAFETY: output row `r < MR`, within the block the caller made writable.
            unsafe { _mm512_storeu_ps(o.add(r * dp + 16 * c), acc[r][c]) };
        }
    }
}

/// The output update over a probability tile (see [`super::TileKernels::pv`]).
///
/// # Safety
/// - `pt` readable at `j * pj + r * pr` for `j < nk`, `r < nr`; `alpha.len() >= nr`.
/// - `dp >= d`, `dp % 16 == 0`, `o.len() >= nr * dp`.
/// - When `nk > 0`: `voff + (nk - 1) * vs + d <= v.len()`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn pv<E: KvElem>(args: Pv<'_, &[E]>, o: &mut [f32]) {
    let (pt, pj, pr, nr) = (args.pt, args.pj, args.pr, args.nr);
    let (d, dp, alpha, ahead) = (args.d, args.dp, args.alpha, args.ahead);
    let (v, voff, vs, nk) = args.values.parts();
    let (pp, op, ap) = (pt.as_ptr(), o.as_mut_ptr(), alpha.as_ptr());
    // SAFETY: `voff` is within `v` when `nk > 0` (caller); with `nk == 0` nothing is read.
    let vp = unsafe { v.as_ptr().add(if nk > 0 { voff } else { 0 }) };
    let mut r0 = 0;
    while r0 < nr {
        let mr = match nr - r0 {
            x if x >= 6 => 6,
            x if x >= 3 => 3,
            _ => 1,
        };
        let mut c0 = 0;
        while c0 < d {
            let nv = (d - c0).div_ceil(16).min(4);
            let last = (d - c0 - 16 * (nv - 1)).min(16);
            let tail: __mmask16 = if last == 16 { !0 } else { (1u16 << last) - 1 };
            // SAFETY: rows `r0..r0 + mr <= nr` of `pt`, `o` and `alpha`; columns
            // `c0..c0 + 16 nv <= dp` of `o`; value columns below `d` only (the tail mask);
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
                macro_rules! go {
                    ($($pat:pat => $mr:literal),*) => {
                        match (mr, nv) {
                            $(
                                ($pat, 1) => pv_block::<E, $mr, 1>(blk, tail, pf),
                                ($pat, 2) => pv_block::<E, $mr, 2>(blk, tail, pf),
                                ($pat, 3) => pv_block::<E, $mr, 3>(blk, tail, pf),
                                ($pat, _) => pv_block::<E, $mr, 4>(blk, tail, pf),
                            )*
                        }
                    };
                }
                go!(6 => 6, 3 => 3, _ => 1);
            }
            c0 += 16 * nv;
        }
        r0 += mr;
    }
}

/// The first step of a transposing reduction: for keys `a` and `b`, quarter 0 of the result
/// holds `a`'s quarters 0 + 2, quarter 1 its quarters 1 + 3, quarters 2 and 3 the same for `b`.
#[target_feature(enable = "avx512f")]
#[inline]
fn halve2(a: __m512, b: __m512) -> __m512 {
    let lo = _mm512_shuffle_f32x4::<0x44>(a, b);
    let hi = _mm512_shuffle_f32x4::<0xEE>(a, b);
    _mm512_add_ps(lo, hi)
}

/// The rest of the reduction of 8 keys after [`halve2`] (`h[i]` from keys `2i`, `2i + 1`):
/// lane `i < 8` of the result is the total of key `i`; lanes 8..16 are unspecified.
#[target_feature(enable = "avx512f")]
#[inline]
fn finish8(h: &[__m512; 4]) -> __m512 {
    let c0 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(h[0], h[1]),
        _mm512_shuffle_f32x4::<0xDD>(h[0], h[1]),
    );
    let c1 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(h[2], h[3]),
        _mm512_shuffle_f32x4::<0xDD>(h[2], h[3]),
    );
    // Quarter t of c0 holds four partial sums of key t, of c1 those of key 4 + t.
    let d = _mm512_add_ps(
        _mm512_shuffle_ps::<0x44>(c0, c1),
        _mm512_shuffle_ps::<0xEE>(c0, c1),
    );
    // Lane 4t now holds key t, lane 4t + 2 key 4 + t.
    let e = _mm512_add_ps(d, _mm512_shuffle_ps::<0xB1>(d, d));
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(idx, e)
}

/// Dot products of `R` query rows with 4 key rows, half reduced: `out[r][h]` is
/// [`halve2`] of the partial sums of keys `2h` and `2h + 1` (key `i` at `k + off[i]`), over
/// `16 * full` columns plus, when `tail` is not 0, the `tail` lanes of one more vector. Each
/// key vector is loaded once for all `R` rows.
///
/// # Safety
/// - `q` readable at `r * dp + c` for `r < R`, `c < 16 * (full + (tail != 0))`.
/// - `k` readable at `off[i] + c` for `i < 4`, `c < 16 * full`, and at the `tail` lanes of
///   vector `full`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(clippy::needless_range_loop)]
unsafe fn dot4<E: KvElem, const R: usize>(
    q: *const f32,
    dp: usize,
    k: *const E,
    off: [usize; 4],
    full: usize,
    tail: __mmask16,
    pf: usize,
) -> [[__m512; 2]; R] {
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    for c in 0..full + usize::from(tail != 0) {
        let m = if c < full { !0 } else { tail };
        // SAFETY: column block `c` of query rows `r < R` (zero past `d`) and the lanes `m`
        // of key rows `off[i]`, all within the caller's bounds.
        unsafe {
            let qv: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(q.add(r * dp + 16 * c)));
            for i in 0..4 {
                let kv = load16(k.add(off[i] + 16 * c), m);
                if pf != 0 && starts_line::<E>(c) {
                    _mm_prefetch::<_MM_HINT_T1>(k.wrapping_add(off[i] + 16 * c + pf) as *const i8);
                }
                for r in 0..R {
                    acc[r][i] = _mm512_fmadd_ps(qv[r], kv, acc[r][i]);
                }
            }
        }
    }
    std::array::from_fn(|r| [halve2(acc[r][0], acc[r][1]), halve2(acc[r][2], acc[r][3])])
}

/// The operands of [`scores8`]: `R` query rows at `q` (`dp` apart), up to 8 key rows at `k`
/// (`ks` apart, `kn` of them real), the column split of a row into `full` vectors and a `tail`
/// mask, the scores out at `s` (`ss` apart), and the prefetch distance `pf` (0: none).
#[derive(Clone, Copy)]
struct Scores8<E> {
    q: *const f32,
    dp: usize,
    k: *const E,
    ks: usize,
    kn: usize,
    full: usize,
    tail: __mmask16,
    s: *mut f32,
    ss: usize,
    pf: usize,
}

/// Scores of `R` query rows against 8 key rows (key `i` at `k + min(i, kn - 1) * ks`), each
/// row's `kn` scores stored at `s + r * ss`. Two passes of 4 keys keep at most `4R + 2R`
/// accumulators live, so nothing spills.
///
/// # Safety
/// - `1 <= kn <= 8`; the bounds of [`dot4`] for rows `r < R` and keys `i < kn`.
/// - `s` writable at `r * ss + j` for `r < R`, `j < kn`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn scores8<E: KvElem, const R: usize>(args: Scores8<E>) {
    let (q, dp, k, ks, kn) = (args.q, args.dp, args.k, args.ks, args.kn);
    let (full, tail, s, ss, pf) = (args.full, args.tail, args.s, args.ss, args.pf);
    // Keys past `kn` repeat the last one; their sums are never stored.
    let off = |i: usize| i.min(kn - 1) * ks;
    let keep: __mmask16 = ((1u32 << kn) - 1) as __mmask16;
    // SAFETY: the caller's bounds, as listed above.
    unsafe {
        let a = dot4::<E, R>(q, dp, k, [off(0), off(1), off(2), off(3)], full, tail, pf);
        let b = dot4::<E, R>(q, dp, k, [off(4), off(5), off(6), off(7)], full, tail, pf);
        for r in 0..R {
            let sums = finish8(&[a[r][0], a[r][1], b[r][0], b[r][1]]);
            _mm512_mask_storeu_ps(s.add(r * ss), keep, sums);
        }
    }
}

/// Dot-form scores for up to 16 rows (see [`super::TileKernels::qk_dot`]): keys 8 at a time,
/// rows 3 at a time (then 2 or 1), so a key vector is loaded once per 3 rows.
///
/// # Safety
/// - `dp >= d`, `dp % 16 == 0`, `q.len() >= nr * dp`, `nk <= ss`,
///   `s.len() >= (nr - 1) * ss + nk` when `nr > 0`.
/// - When `nk > 0`: `koff + (nk - 1) * ks + d <= k.len()`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn qk_dot<E: KvElem>(args: QkDot<'_, &[E]>, s: &mut [f32]) {
    let (q, nr, d, dp) = (args.q, args.nr, args.d, args.dp);
    let (ss, ahead) = (args.ss, args.ahead);
    let (k, koff, ks, nk) = args.keys.parts();
    if nk == 0 || nr == 0 {
        return;
    }
    let full = d / 16;
    let tail: __mmask16 = ((1u32 << (d % 16)) - 1) as __mmask16;
    let (qp, sp) = (q.as_ptr(), s.as_mut_ptr());
    for j0 in (0..nk).step_by(8) {
        let kn = (nk - j0).min(8);
        // SAFETY: key row `j0 < nk` is within `k` (caller's bounds).
        let kp = unsafe { k.as_ptr().add(koff + j0 * ks) };
        let mut r = 0;
        while r < nr {
            // SAFETY: query rows `r..r + R <= nr` (`dp` floats each, zero past `d`) and key
            // rows `j0..j0 + kn <= nk` (caller's bounds); `kn` scores of each of those rows
            // go to `j0..j0 + kn <= nk <= ss`, inside `s`.
            unsafe {
                let (qr, sr) = (qp.add(r * dp), sp.add(r * ss + j0));
                // Keys are prefetched once, with the first row group.
                let pf = if r == 0 && j0 < ahead.rows {
                    ahead.off
                } else {
                    0
                };
                let args = Scores8 {
                    q: qr,
                    dp,
                    k: kp,
                    ks,
                    kn,
                    full,
                    tail,
                    s: sr,
                    ss,
                    pf,
                };
                match nr - r {
                    1 => scores8::<E, 1>(args),
                    2 => scores8::<E, 2>(args),
                    _ => scores8::<E, 3>(args),
                }
            }
            r += (nr - r).min(3);
        }
    }
}

/// Online softmax over row-major scores (see [`super::TileKernels::softmax_rows`]).
///
/// # Safety
/// - `nk <= ss`, `s.len() >= (nr - 1) * ss + nk` when `nr > 0`; `m`, `l`, `alpha` hold `nr`.
/// - The host must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax_rows(
    s: &mut [f32],
    ss: usize,
    nr: usize,
    nk: usize,
    run: Running<'_>,
) {
    let Running { m, l, alpha } = run;
    let sp = s.as_mut_ptr();
    for r in 0..nr {
        let mut mx = _mm512_set1_ps(m[r]);
        // SAFETY: (both loops) columns `j < nk` of row `r < nr`, through the masks.
        unsafe {
            for j in (0..nk).step_by(16) {
                let keep: __mmask16 = if nk - j >= 16 {
                    !0
                } else {
                    (1u16 << (nk - j)) - 1
                };
                let x = _mm512_mask_loadu_ps(
                    _mm512_set1_ps(f32::NEG_INFINITY),
                    keep,
                    sp.add(r * ss + j),
                );
                mx = _mm512_max_ps(mx, x);
            }
        }
        let m_new = _mm512_reduce_max_ps(mx);
        let m_use = exp_offset(m_new);
        let mu = _mm512_set1_ps(m_use);
        let mut sum = _mm512_setzero_ps();
        // SAFETY: as above.
        unsafe {
            for j in (0..nk).step_by(16) {
                let keep: __mmask16 = if nk - j >= 16 {
                    !0
                } else {
                    (1u16 << (nk - j)) - 1
                };
                let ptr = sp.add(r * ss + j);
                let x = _mm512_maskz_loadu_ps(keep, ptr);
                let p = _mm512_maskz_mov_ps(keep, exp16(_mm512_sub_ps(x, mu)));
                _mm512_mask_storeu_ps(ptr, keep, p);
                sum = _mm512_add_ps(sum, p);
            }
        }
        // The running maximum rarely moves after the first tiles: skip the scalar exp then.
        let a = if m[r] == m_use {
            1.0
        } else {
            (m[r] - m_use).exp()
        };
        l[r] = l[r] * a + _mm512_reduce_add_ps(sum);
        m[r] = m_new;
        alpha[r] = a;
    }
}

/// Widens rows of 16-bit values (bf16 when `BF16`, else f16), 16 lanes at a time with the
/// tail masked.
///
/// # Safety
/// - `dst.len() >= nk * d`; when `nk > 0`, `off + (nk - 1) * stride + d <= bits.len()`.
/// - The host must support AVX-512F/BW/VL.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn widen<const BF16: bool>(rows: Rows<&[u16]>, d: usize, dst: &mut [f32]) {
    let (bits, off, stride, nk) = rows.parts();
    let (bp, dp) = (bits.as_ptr(), dst.as_mut_ptr());
    for j in 0..nk {
        for c in (0..d).step_by(16) {
            let keep: __mmask16 = if d - c >= 16 {
                !0
            } else {
                (1u16 << (d - c)) - 1
            };
            // SAFETY: elements `c..min(c + 16, d)` of source row `j < nk` and of destination
            // row `j`, through the mask (caller's bounds).
            unsafe {
                let h = _mm256_maskz_loadu_epi16(keep, bp.add(off + j * stride + c) as *const _);
                let f = if BF16 {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                } else {
                    _mm512_cvtph_ps(h)
                };
                _mm512_mask_storeu_ps(dp.add(j * d + c), keep, f);
            }
        }
    }
}
