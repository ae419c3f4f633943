//! AVX2 kernel for the integer quantised matmul: the same lane layout as the AVX-512 path,
//! each 64-value group as two 256-bit halves; `vpmaddubsw` + `vpmaddwd` sum each 4-byte lane.
//! Q8_0 and I8 codes are signed, so they use the sign trick (`|w|` by `sign(x, w)`), which keeps
//! `vpmaddubsw`'s 16-bit pair sums below saturation; offset formats (Q4_0, Q6_K) feed unsigned
//! codes and add the lane correction.

use super::{F_I8, F_Q4_0, F_Q4_1, F_Q4_K, F_Q6_K, F_Q8_0};
use crate::quant::qmatmul::{groups, KernelArgs};
use crate::x86::f16_one;
use std::arch::x86_64::*;

/// One decoded group: two halves of codes, scales and minimum terms.
type Half = (__m256i, __m256, __m256);

/// Runs the integer row kernel (see [`KernelArgs`]).
///
/// # Safety
/// - the host supports AVX2, FMA and F16C;
/// - `a` was validated as for [`super::avx512::kernel`].
pub(crate) unsafe fn kernel(a: &KernelArgs<'_>, out: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { super::dispatch_rows!(rows, a, out) }
}

/// The row kernel for format `F` and `MR` activation rows (accumulators in registers).
///
/// # Safety
/// As [`kernel`], with `a.mr == MR` and `a.format` the format `F` names.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows<const F: u8, const MR: usize>(a: &KernelArgs<'_>, out: &mut [f32]) {
    let xp = a.xp;
    let lanes_row = xp.kp / 4;
    let signed = matches!(F, F_Q8_0 | F_I8);
    let corr = matches!(F, F_Q4_0 | F_Q6_K);
    let mins = matches!(F, F_Q4_1 | F_Q4_K);
    let per_unit = if matches!(F, F_Q4_K | F_Q6_K) { 4 } else { 1 };
    let ones = _mm256_set1_epi16(1);
    let z = _mm256_setzero_ps();
    let mut gs: [[Half; 2]; 4] = [[(_mm256_setzero_si256(), z, z); 2]; 4];
    for r in 0..a.nrows {
        // SAFETY: `r < nrows`, so the row's bytes lie in `a.w`.
        let row = unsafe { a.w.as_ptr().add(r * a.rb) };
        let rscale = a.wscale.map_or(1.0, |s| s[r]);
        let mut acc = [z; MR];
        let mut g0 = 0;
        while g0 < groups(a.k) {
            // SAFETY: each decoder reads only bytes of this row's unit `g0 / per_unit`.
            unsafe {
                match F {
                    F_Q8_0 => gs[0] = dec_q8_0(row, g0, a.k),
                    F_Q4_0 => gs[0] = dec_q4(row, g0, a.k, false),
                    F_Q4_1 => gs[0] = dec_q4(row, g0, a.k, true),
                    F_Q4_K => dec_q4_k(row.add(144 * (g0 / 4)), &mut gs),
                    F_Q6_K => dec_q6_k(row.add(210 * (g0 / 4)), &mut gs),
                    _ => gs[0] = dec_i8(row, g0, a.k, rscale),
                }
            }
            for (u, halves) in gs.iter().enumerate().take(per_unit) {
                let g = g0 + u;
                for (i, acc) in acc.iter_mut().enumerate() {
                    let xi = a.x0 + i;
                    for (hh, &(w, sl, ml)) in halves.iter().enumerate() {
                        let lb = xi * lanes_row + 16 * g + 8 * hh;
                        // SAFETY: group `g` of activation row `xi` is within its padded length.
                        unsafe {
                            let xv = _mm256_loadu_si256(
                                xp.qx.as_ptr().add(xi * xp.kp + 64 * g + 32 * hh).cast(),
                            );
                            let p16 = if signed {
                                _mm256_maddubs_epi16(
                                    _mm256_sign_epi8(w, w),
                                    _mm256_sign_epi8(xv, w),
                                )
                            } else {
                                _mm256_maddubs_epi16(w, xv)
                            };
                            let mut dot = _mm256_madd_epi16(p16, ones);
                            if corr {
                                dot = _mm256_add_epi32(
                                    dot,
                                    _mm256_loadu_si256(xp.corr.as_ptr().add(lb).cast()),
                                );
                            }
                            let f = _mm256_mul_ps(
                                _mm256_cvtepi32_ps(dot),
                                _mm256_loadu_ps(xp.dx.as_ptr().add(lb)),
                            );
                            *acc = _mm256_fmadd_ps(f, sl, *acc);
                            if mins {
                                *acc = _mm256_fmadd_ps(
                                    ml,
                                    _mm256_loadu_ps(xp.msum.as_ptr().add(lb)),
                                    *acc,
                                );
                            }
                        }
                    }
                }
            }
            g0 += per_unit;
        }
        for (i, &v) in acc.iter().enumerate() {
            // SAFETY: this path runs only where AVX2 (and so AVX) is present.
            out[i * a.nrows + r] = unsafe { crate::x86::hsum256(v) };
        }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn split(lo: f32, hi: f32) -> __m256 {
    _mm256_set_m128(_mm_set1_ps(hi), _mm_set1_ps(lo))
}

/// # Safety
/// - blocks `2g` (and `2g + 1` when `64g + 64 <= k`) of the Q8_0 row at `row` are readable.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dec_q8_0(row: *const u8, g: usize, k: usize) -> [Half; 2] {
    let z = _mm256_setzero_ps();
    // SAFETY: only bytes of the present blocks are read.
    unsafe {
        let b0 = row.add(68 * g);
        let h0 = (
            _mm256_loadu_si256(b0.add(2).cast()),
            _mm256_set1_ps(f16_one(b0)),
            z,
        );
        if 64 * g + 64 <= k {
            let b1 = b0.add(34);
            [
                h0,
                (
                    _mm256_loadu_si256(b1.add(2).cast()),
                    _mm256_set1_ps(f16_one(b1)),
                    z,
                ),
            ]
        } else {
            [h0, (_mm256_setzero_si256(), z, z)]
        }
    }
}

/// # Safety
/// - the 64 values of group `g` (32 at the row's end) of the I8 row at `row` are readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dec_i8(row: *const u8, g: usize, k: usize, s: f32) -> [Half; 2] {
    let z = _mm256_setzero_ps();
    // SAFETY: per the contract.
    unsafe {
        let p = row.add(64 * g);
        let h0 = (_mm256_loadu_si256(p.cast()), _mm256_set1_ps(s), z);
        if 64 * g + 64 <= k {
            [
                h0,
                (_mm256_loadu_si256(p.add(32).cast()), _mm256_set1_ps(s), z),
            ]
        } else {
            [h0, (_mm256_setzero_si256(), z, z)]
        }
    }
}

/// # Safety
/// - blocks `2g` (and `2g + 1` when `64g + 64 <= k`) of the Q4_0/Q4_1 row at `row` are readable.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dec_q4(row: *const u8, g: usize, k: usize, q4_1: bool) -> [Half; 2] {
    let (bs, qo) = if q4_1 { (20, 4) } else { (18, 2) };
    let nib = _mm256_set1_epi8(0x0F);
    let z = _mm256_setzero_ps();
    // SAFETY: only bytes of the present blocks are read.
    unsafe {
        let b0 = row.add(2 * bs * g);
        let d0 = f16_one(b0);
        let m0 = if q4_1 { f16_one(b0.add(2)) } else { 0.0 };
        if 64 * g + 64 <= k {
            let b1 = b0.add(bs);
            let d1 = f16_one(b1);
            let m1 = if q4_1 { f16_one(b1.add(2)) } else { 0.0 };
            let y = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_loadu_si128(b0.add(qo).cast())),
                _mm_loadu_si128(b1.add(qo).cast()),
            );
            let (sl, ml) = (split(d0, d1), split(m0, m1));
            [
                (_mm256_and_si256(y, nib), sl, ml),
                (_mm256_and_si256(_mm256_srli_epi16::<4>(y), nib), sl, ml),
            ]
        } else {
            let q = _mm_loadu_si128(b0.add(qo).cast());
            let y = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q), _mm_srli_epi16::<4>(q));
            [
                (
                    _mm256_and_si256(y, nib),
                    _mm256_set1_ps(d0),
                    _mm256_set1_ps(m0),
                ),
                (_mm256_setzero_si256(), z, z),
            ]
        }
    }
}

/// # Safety
/// - the 144 bytes of the Q4_K super-block at `b` are readable.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dec_q4_k(b: *const u8, gs: &mut [[Half; 2]; 4]) {
    // SAFETY: reads lie within the super-block's 144 bytes.
    unsafe {
        let d = f16_one(b);
        let dmin = f16_one(b.add(2));
        let (sc, mn) = crate::quant::kquants::q4_k_scales(&*(b.add(4) as *const [u8; 12]));
        let nib = _mm256_set1_epi8(0x0F);
        for p in 0..2 {
            let z0 = _mm256_loadu_si256(b.add(16 + 64 * p).cast());
            let z1 = _mm256_loadu_si256(b.add(48 + 64 * p).cast());
            for part in 0..2 {
                let (w0, w1) = if part == 0 {
                    (_mm256_and_si256(z0, nib), _mm256_and_si256(z1, nib))
                } else {
                    (
                        _mm256_and_si256(_mm256_srli_epi16::<4>(z0), nib),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(z1), nib),
                    )
                };
                let sa = 4 * p + part;
                let sb = sa + 2;
                gs[2 * p + part] = [
                    (
                        w0,
                        _mm256_set1_ps(d * sc[sa] as f32),
                        _mm256_set1_ps(-(dmin * mn[sa] as f32)),
                    ),
                    (
                        w1,
                        _mm256_set1_ps(d * sc[sb] as f32),
                        _mm256_set1_ps(-(dmin * mn[sb] as f32)),
                    ),
                ];
            }
        }
    }
}

/// # Safety
/// - the 210 bytes of the Q6_K super-block at `b` are readable.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dec_q6_k(b: *const u8, gs: &mut [[Half; 2]; 4]) {
    // SAFETY: reads lie within the super-block's 210 bytes.
    unsafe {
        let d = f16_one(b.add(208));
        let mut ds = [0.0f32; 16];
        for (i, v) in ds.iter_mut().enumerate() {
            *v = d * (*b.add(192 + i) as i8) as f32;
        }
        let nib = _mm256_set1_epi8(0x0F);
        let top = _mm256_set1_epi8(0x30);
        let z = _mm256_setzero_ps();
        for h in 0..2 {
            let qa = _mm256_loadu_si256(b.add(64 * h).cast());
            let qb = _mm256_loadu_si256(b.add(64 * h + 32).cast());
            let qh = _mm256_loadu_si256(b.add(128 + 32 * h).cast());
            let lo0 = _mm256_or_si256(
                _mm256_and_si256(qa, nib),
                _mm256_and_si256(_mm256_slli_epi16::<4>(qh), top),
            );
            let lo1 = _mm256_or_si256(
                _mm256_and_si256(qb, nib),
                _mm256_and_si256(_mm256_slli_epi16::<2>(qh), top),
            );
            let hi0 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(qa), nib),
                _mm256_and_si256(qh, top),
            );
            let hi1 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(qb), nib),
                _mm256_and_si256(_mm256_srli_epi16::<2>(qh), top),
            );
            for (part, (w0, w1)) in [(0, (lo0, lo1)), (1, (hi0, hi1))] {
                let base = 8 * h + 4 * part;
                gs[2 * h + part] = [
                    (w0, split(ds[base], ds[base + 1]), z),
                    (w1, split(ds[base + 2], ds[base + 3]), z),
                ];
            }
        }
    }
}
