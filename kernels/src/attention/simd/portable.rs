//! Plain-Rust tile operations: the reference path every target has.
//!
//! These are safe functions; they have the `unsafe fn` signature only to share the function
//! pointer type with the SIMD paths, and index with bounds checks. They take no prefetch
//! hints ([`super::Ahead`]).

use super::{exp_offset, Pv, QkDot, Rows, Running};

pub(super) fn qk(qt: &[f32], rp: usize, d: usize, keys: Rows<&[f32]>, st: &mut [f32]) {
    let (k, koff, ks, nk) = keys.parts();
    for j in 0..nk {
        let row = &mut st[j * rp..(j + 1) * rp];
        row.fill(0.0);
        let key = &k[koff + j * ks..koff + j * ks + d];
        for (p, &kv) in key.iter().enumerate() {
            let qrow = &qt[p * rp..(p + 1) * rp];
            for (s, &q) in row.iter_mut().zip(qrow) {
                *s += q * kv;
            }
        }
    }
}

pub(super) fn softmax(st: &mut [f32], rp: usize, nk: usize, run: Running<'_>) {
    let Running { m, l, alpha } = run;
    for r in 0..rp {
        let mut m_new = m[r];
        for j in 0..nk {
            m_new = m_new.max(st[j * rp + r]);
        }
        let m_use = exp_offset(m_new);
        let a = (m[r] - m_use).exp();
        let mut sum = 0.0f32;
        for j in 0..nk {
            let p = (st[j * rp + r] - m_use).exp();
            st[j * rp + r] = p;
            sum += p;
        }
        l[r] = l[r] * a + sum;
        m[r] = m_new;
        alpha[r] = a;
    }
}

pub(super) fn pv(args: Pv<'_, &[f32]>, o: &mut [f32]) {
    let (pt, pj, pr, nr) = (args.pt, args.pj, args.pr, args.nr);
    let (d, dp, alpha) = (args.d, args.dp, args.alpha);
    let (v, voff, vs, nk) = args.values.parts();
    for r in 0..nr {
        let orow = &mut o[r * dp..r * dp + d];
        let a = alpha[r];
        for x in orow.iter_mut() {
            *x *= a;
        }
        for j in 0..nk {
            let p = pt[j * pj + r * pr];
            if p == 0.0 {
                continue;
            }
            let vrow = &v[voff + j * vs..voff + j * vs + d];
            for (x, &vv) in orow.iter_mut().zip(vrow) {
                *x += p * vv;
            }
        }
    }
}

pub(super) fn qk_dot(args: QkDot<'_, &[f32]>, s: &mut [f32]) {
    let (q, nr, d, dp) = (args.q, args.nr, args.d, args.dp);
    let ss = args.ss;
    let (k, koff, ks, nk) = args.keys.parts();
    for r in 0..nr {
        let qrow = &q[r * dp..r * dp + d];
        for j in 0..nk {
            let key = &k[koff + j * ks..koff + j * ks + d];
            s[r * ss + j] = qrow.iter().zip(key).map(|(a, b)| a * b).sum();
        }
    }
}

pub(super) fn softmax_rows(s: &mut [f32], ss: usize, nr: usize, nk: usize, run: Running<'_>) {
    let Running { m, l, alpha } = run;
    for r in 0..nr {
        let row = &mut s[r * ss..r * ss + nk];
        let m_new = row.iter().copied().fold(m[r], f32::max);
        let m_use = exp_offset(m_new);
        let a = (m[r] - m_use).exp();
        let mut sum = 0.0f32;
        for x in row.iter_mut() {
            *x = (*x - m_use).exp();
            sum += *x;
        }
        l[r] = l[r] * a + sum;
        m[r] = m_new;
        alpha[r] = a;
    }
}

/// Widens rows of 16-bit values (bf16 when `BF16`, else f16): `nk` rows of `d` values,
/// `stride` apart from `off` in `bits`, into consecutive rows of `dst`.
pub(super) fn widen<const BF16: bool>(rows: Rows<&[u16]>, d: usize, dst: &mut [f32]) {
    let (bits, off, stride, nk) = rows.parts();
    for j in 0..nk {
        let row = &bits[off + j * stride..off + j * stride + d];
        for (x, &b) in dst[j * d..(j + 1) * d].iter_mut().zip(row) {
            *x = if BF16 {
                f32::from_bits((b as u32) << 16)
            } else {
                half::f16::from_bits(b).to_f32()
            };
        }
    }
}
