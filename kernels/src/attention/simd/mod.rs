//! The three tile operations of flash attention, one implementation per instruction set.
//!
//! Scores are kept transposed: a tile `st` holds `nk` key rows of `rp` query lanes
//! (`st[j * rp + r]`), so the online softmax runs down whole vectors of query rows and the
//! `P V` product broadcasts one probability per (key, row). `rp` is always a multiple of
//! [`LANES`]; rows past the real ones are zero queries whose results are never read.
//!
//! The safe methods of [`TileKernels`] check every bound the unsafe per-ISA code relies on, so
//! a wrong tile size from the engine is a panic with a message, never an out-of-bounds access.

mod portable;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::isa::Isa;

/// Query rows per vector group: tiles pad their row count to a multiple of this.
pub(crate) const LANES: usize = 16;

type QkFn = unsafe fn(&[f32], usize, usize, &[f32], usize, usize, usize, &mut [f32]);
type SoftmaxFn = unsafe fn(&mut [f32], usize, usize, &mut [f32], &mut [f32], &mut [f32]);
type QkDotFn =
    unsafe fn(&[f32], usize, usize, usize, &[f32], usize, usize, usize, &mut [f32], usize, Ahead);
type SoftmaxRowsFn = unsafe fn(&mut [f32], usize, usize, usize, &mut [f32], &mut [f32], &mut [f32]);
type WidenFn = unsafe fn(&[u16], usize, usize, usize, usize, &mut [f32]);
type PvFn = unsafe fn(
    &[f32],
    usize,
    usize,
    usize,
    usize,
    &[f32],
    usize,
    usize,
    usize,
    &mut [f32],
    usize,
    &[f32],
    Ahead,
);

type QkDot16Fn =
    unsafe fn(&[f32], usize, usize, usize, &[u16], usize, usize, usize, &mut [f32], usize, Ahead);
type Pv16Fn = unsafe fn(
    &[f32],
    usize,
    usize,
    usize,
    usize,
    &[u16],
    usize,
    usize,
    usize,
    &mut [f32],
    usize,
    &[f32],
    Ahead,
);

/// The few-row kernels on 16-bit keys and values read in place (converted as they are
/// loaded, with no widened copy of the tile), where an instruction-set path has them.
struct InPlace16 {
    qk_dot_f16: QkDot16Fn,
    qk_dot_bf16: QkDot16Fn,
    pv_f16: Pv16Fn,
    pv_bf16: Pv16Fn,
}

/// A prefetch hint for the key or value rows of a later tile: while a kernel reads row `j`
/// of its tile, for `j < rows`, it asks the L2 cache for the row `off` elements further on.
/// Requests spread this way through the arithmetic keep memory streaming without the stalls
/// a burst of requests per tile causes. Prefetches never fault; the portable path ignores
/// the hint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ahead {
    /// Elements from a row read to the row requested.
    pub off: usize,
    /// Leading rows of the tile whose later rows are requested.
    pub rows: usize,
}

/// The tile operations of one instruction-set path.
pub(crate) struct TileKernels {
    qk: QkFn,
    softmax: SoftmaxFn,
    qk_dot: QkDotFn,
    softmax_rows: SoftmaxRowsFn,
    pv: PvFn,
    widen_f16: WidenFn,
    widen_bf16: WidenFn,
    in_place16: Option<InPlace16>,
}

impl TileKernels {
    /// The kernels for `isa`, which the caller has checked the host supports.
    pub fn for_isa(isa: Isa) -> TileKernels {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => TileKernels {
                qk: avx512::qk,
                softmax: avx512::softmax,
                qk_dot: avx512::qk_dot,
                softmax_rows: avx512::softmax_rows,
                pv: avx512::pv,
                widen_f16: avx512::widen_f16,
                widen_bf16: avx512::widen_bf16,
                in_place16: Some(InPlace16 {
                    qk_dot_f16: avx512::qk_dot_f16,
                    qk_dot_bf16: avx512::qk_dot_bf16,
                    pv_f16: avx512::pv_f16,
                    pv_bf16: avx512::pv_bf16,
                }),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => TileKernels {
                qk: avx2::qk,
                softmax: avx2::softmax,
                qk_dot: avx2::qk_dot,
                softmax_rows: avx2::softmax_rows,
                pv: avx2::pv,
                widen_f16: avx2::widen_f16,
                widen_bf16: avx2::widen_bf16,
                in_place16: None,
            },
            _ => TileKernels {
                qk: portable::qk,
                softmax: portable::softmax,
                qk_dot: portable::qk_dot,
                softmax_rows: portable::softmax_rows,
                pv: portable::pv,
                widen_f16: portable::widen_f16,
                widen_bf16: portable::widen_bf16,
                in_place16: None,
            },
        }
    }

    /// Scores: `st[j * rp + r] = sum_{p < d} qt[p * rp + r] * k[koff + j * ks + p]` for
    /// `j < nk`, `r < rp` (`qt` is the transposed, pre-scaled query block).
    #[allow(clippy::too_many_arguments)]
    pub fn qk(
        &self,
        qt: &[f32],
        rp: usize,
        d: usize,
        k: &[f32],
        koff: usize,
        ks: usize,
        nk: usize,
        st: &mut [f32],
    ) {
        assert!(rp.is_multiple_of(LANES) && qt.len() >= d * rp && st.len() >= nk * rp);
        if nk > 0 {
            assert!(
                koff + (nk - 1) * ks + d <= k.len(),
                "key rows out of bounds"
            );
        }
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.qk)(qt, rp, d, k, koff, ks, nk, st) }
    }

    /// Online-softmax step: takes the score tile `st` (`nk x rp`), updates each row's running
    /// maximum `m` and sum `l`, writes the factor `alpha` that rescales the row's earlier
    /// output, and turns `st` into probabilities `exp(s - m_new)`. Rows that have seen only
    /// masked keys (`-inf`) keep `m = -inf`, `l = 0` and get probabilities 0.
    pub fn softmax(
        &self,
        st: &mut [f32],
        rp: usize,
        nk: usize,
        m: &mut [f32],
        l: &mut [f32],
        alpha: &mut [f32],
    ) {
        assert!(rp.is_multiple_of(LANES) && st.len() >= nk * rp);
        assert!(m.len() >= rp && l.len() >= rp && alpha.len() >= rp);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.softmax)(st, rp, nk, m, l, alpha) }
    }

    /// Scores in dot-product form for a few query rows (decode): `s[r * ss + j] = sum_{c < d}
    /// q[r * dp + c] * k[koff + j * ks + c]` for `r < nr`, `j < nk`. `q` is row-major, scaled
    /// and zero from `d` to `dp`. `ahead` asks for later key rows (see [`Ahead`]).
    #[allow(clippy::too_many_arguments)]
    pub fn qk_dot(
        &self,
        q: &[f32],
        nr: usize,
        d: usize,
        dp: usize,
        k: &[f32],
        koff: usize,
        ks: usize,
        nk: usize,
        s: &mut [f32],
        ss: usize,
        ahead: Ahead,
    ) {
        check_qk_dot(q.len(), nr, d, dp, k.len(), koff, ks, nk, s.len(), ss);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.qk_dot)(q, nr, d, dp, k, koff, ks, nk, s, ss, ahead) }
    }

    /// Whether this path reads 16-bit keys and values in place
    /// ([`TileKernels::qk_dot16`], [`TileKernels::pv16`]).
    pub fn reads_16bit_in_place(&self) -> bool {
        self.in_place16.is_some()
    }

    /// [`TileKernels::qk_dot`] on 16-bit keys (bfloat16 bits when `bf16`, else f16 bits)
    /// read in place. Panics when the path has no such kernel (see
    /// [`TileKernels::reads_16bit_in_place`]).
    #[allow(clippy::too_many_arguments)]
    pub fn qk_dot16(
        &self,
        bf16: bool,
        q: &[f32],
        nr: usize,
        d: usize,
        dp: usize,
        k: &[u16],
        koff: usize,
        ks: usize,
        nk: usize,
        s: &mut [f32],
        ss: usize,
        ahead: Ahead,
    ) {
        let f = self
            .in_place16
            .as_ref()
            .expect("no in-place 16-bit kernels");
        check_qk_dot(q.len(), nr, d, dp, k.len(), koff, ks, nk, s.len(), ss);
        let qk = if bf16 { f.qk_dot_bf16 } else { f.qk_dot_f16 };
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { qk(q, nr, d, dp, k, koff, ks, nk, s, ss, ahead) }
    }

    /// [`TileKernels::softmax`] for row-major scores `s[r * ss + j]`, `r < nr`, `j < nk`.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_rows(
        &self,
        s: &mut [f32],
        ss: usize,
        nr: usize,
        nk: usize,
        m: &mut [f32],
        l: &mut [f32],
        alpha: &mut [f32],
    ) {
        assert!(nk <= ss && (nr == 0 || s.len() >= (nr - 1) * ss + nk));
        assert!(m.len() >= nr && l.len() >= nr && alpha.len() >= nr);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.softmax_rows)(s, ss, nr, nk, m, l, alpha) }
    }

    /// Output update:
    /// `o[r * dp + c] = alpha[r] * o[r * dp + c] + sum_{j < nk} p[j * pj + r * pr] * v[voff + j * vs + c]`
    /// for `r < nr`, `c < d` (`o` holds at least `nr` rows of `dp`). `ahead` asks for later
    /// value rows (see [`Ahead`]).
    #[allow(clippy::too_many_arguments)]
    pub fn pv(
        &self,
        pt: &[f32],
        pj: usize,
        pr: usize,
        nr: usize,
        nk: usize,
        v: &[f32],
        voff: usize,
        vs: usize,
        d: usize,
        o: &mut [f32],
        dp: usize,
        alpha: &[f32],
        ahead: Ahead,
    ) {
        check_pv(
            pt.len(),
            pj,
            pr,
            nr,
            nk,
            v.len(),
            voff,
            vs,
            d,
            o.len(),
            dp,
            alpha.len(),
        );
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.pv)(pt, pj, pr, nr, nk, v, voff, vs, d, o, dp, alpha, ahead) }
    }

    /// [`TileKernels::pv`] on 16-bit values (bfloat16 bits when `bf16`, else f16 bits) read
    /// in place. Panics when the path has no such kernel (see
    /// [`TileKernels::reads_16bit_in_place`]).
    #[allow(clippy::too_many_arguments)]
    pub fn pv16(
        &self,
        bf16: bool,
        pt: &[f32],
        pj: usize,
        pr: usize,
        nr: usize,
        nk: usize,
        v: &[u16],
        voff: usize,
        vs: usize,
        d: usize,
        o: &mut [f32],
        dp: usize,
        alpha: &[f32],
        ahead: Ahead,
    ) {
        let f = self
            .in_place16
            .as_ref()
            .expect("no in-place 16-bit kernels");
        check_pv(
            pt.len(),
            pj,
            pr,
            nr,
            nk,
            v.len(),
            voff,
            vs,
            d,
            o.len(),
            dp,
            alpha.len(),
        );
        let pv = if bf16 { f.pv_bf16 } else { f.pv_f16 };
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { pv(pt, pj, pr, nr, nk, v, voff, vs, d, o, dp, alpha, ahead) }
    }

    /// Widens `nk` rows of `d` half-precision values (bits; row `j` at `off + j * stride`)
    /// into `dst[j * d..]`.
    pub fn widen_f16(
        &self,
        bits: &[u16],
        off: usize,
        stride: usize,
        nk: usize,
        d: usize,
        dst: &mut [f32],
    ) {
        check_widen(bits, off, stride, nk, d, dst);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.widen_f16)(bits, off, stride, nk, d, dst) }
    }

    /// [`TileKernels::widen_f16`] for bfloat16 bits.
    pub fn widen_bf16(
        &self,
        bits: &[u16],
        off: usize,
        stride: usize,
        nk: usize,
        d: usize,
        dst: &mut [f32],
    ) {
        check_widen(bits, off, stride, nk, d, dst);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.widen_bf16)(bits, off, stride, nk, d, dst) }
    }
}

/// The bounds of [`TileKernels::qk_dot`] and [`TileKernels::qk_dot16`], on slice lengths.
#[allow(clippy::too_many_arguments)]
fn check_qk_dot(
    q_len: usize,
    nr: usize,
    d: usize,
    dp: usize,
    k_len: usize,
    koff: usize,
    ks: usize,
    nk: usize,
    s_len: usize,
    ss: usize,
) {
    assert!(dp >= d && dp.is_multiple_of(LANES) && q_len >= nr * dp && nk <= ss);
    assert!(nr == 0 || s_len >= (nr - 1) * ss + nk);
    if nk > 0 {
        assert!(koff + (nk - 1) * ks + d <= k_len, "key rows out of bounds");
    }
}

/// The bounds of [`TileKernels::pv`] and [`TileKernels::pv16`], on slice lengths.
#[allow(clippy::too_many_arguments)]
fn check_pv(
    pt_len: usize,
    pj: usize,
    pr: usize,
    nr: usize,
    nk: usize,
    v_len: usize,
    voff: usize,
    vs: usize,
    d: usize,
    o_len: usize,
    dp: usize,
    alpha_len: usize,
) {
    if nk > 0 && nr > 0 {
        assert!(
            (nk - 1) * pj + (nr - 1) * pr < pt_len,
            "probabilities out of bounds"
        );
        assert!(
            voff + (nk - 1) * vs + d <= v_len,
            "value rows out of bounds"
        );
    }
    assert!(dp >= d && dp.is_multiple_of(LANES) && o_len >= nr * dp && alpha_len >= nr);
}

fn check_widen(bits: &[u16], off: usize, stride: usize, nk: usize, d: usize, dst: &[f32]) {
    assert!(dst.len() >= nk * d, "widened tile out of bounds");
    if nk > 0 {
        assert!(
            off + (nk - 1) * stride + d <= bits.len(),
            "rows to widen out of bounds"
        );
    }
}

/// Asks the L2 cache to fetch `rows` rows of `bytes` bytes each, starting at element `off` of
/// `data` and `stride` elements apart: the engine calls it for the next key/value tile so
/// memory streams while the current tile computes. A hint only; it never faults.
pub(crate) fn prefetch_rows<T>(data: &[T], off: usize, stride: usize, rows: usize, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let base = data.as_ptr();
        for r in 0..rows {
            let row = base.wrapping_add(off + r * stride) as *const i8;
            for line in (0..bytes).step_by(64) {
                // SAFETY: a prefetch is a hint that never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(line)) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, off, stride, rows, bytes);
    }
}
