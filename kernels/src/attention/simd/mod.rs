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

use super::ElemSlice;
use crate::isa::Isa;

/// Query rows per vector group: tiles pad their row count to a multiple of this.
pub(crate) const LANES: usize = 16;

type QkFn = unsafe fn(&[f32], usize, usize, Rows<&[f32]>, &mut [f32]);
type SoftmaxFn = unsafe fn(&mut [f32], usize, usize, Running<'_>);
type QkDotFn<E> = unsafe fn(QkDot<'_, &[E]>, &mut [f32]);
type SoftmaxRowsFn = unsafe fn(&mut [f32], usize, usize, usize, Running<'_>);
type WidenFn = unsafe fn(Rows<&[u16]>, usize, &mut [f32]);
type PvFn<E> = unsafe fn(Pv<'_, &[E]>, &mut [f32]);

/// `n` key or value rows of a tile, read in place: row `j` starts at element
/// `off + j * stride` of `data` (a slice, or an [`ElemSlice`] of any storage format).
#[derive(Clone, Copy)]
pub(crate) struct Rows<D> {
    /// The whole key or value array.
    pub data: D,
    /// Element where row 0 starts.
    pub off: usize,
    /// Elements from one row to the next.
    pub stride: usize,
    /// Rows in the tile.
    pub n: usize,
}

impl<D> Rows<D> {
    /// `(data, off, stride, n)`.
    pub(crate) fn parts(self) -> (D, usize, usize, usize) {
        (self.data, self.off, self.stride, self.n)
    }

    /// The same rows over other data (the same array seen as another type).
    pub(crate) fn over<E>(self, data: E) -> Rows<E> {
        Rows {
            data,
            off: self.off,
            stride: self.stride,
            n: self.n,
        }
    }
}

/// The maximum a row's scores are shifted by before exponentiating: its running maximum `m`,
/// or 0 while the row has seen only masked (`-inf`) scores, so that they give probability 0
/// rather than NaN.
#[inline(always)]
pub(crate) fn exp_offset(m: f32) -> f32 {
    if m == f32::NEG_INFINITY {
        0.0
    } else {
        m
    }
}

/// The running state of the online softmax per row: maximum `m`, sum `l`, and the factor
/// `alpha` that rescales the row's earlier output.
pub(crate) struct Running<'a> {
    /// Running maximum of each row's scores.
    pub m: &'a mut [f32],
    /// Running sum of each row's `exp(s - m)`.
    pub l: &'a mut [f32],
    /// Written: the factor each row's earlier output is rescaled by.
    pub alpha: &'a mut [f32],
}

/// The inputs of [`TileKernels::qk_dot`]: `nr` query rows of `q` (`dp` apart, scaled, zero
/// from `d` to `dp`) against the key rows `keys`, scores `ss` apart.
#[derive(Clone, Copy)]
pub(crate) struct QkDot<'a, D> {
    /// The query rows, row-major.
    pub q: &'a [f32],
    /// Query rows.
    pub nr: usize,
    /// Head dimension.
    pub d: usize,
    /// Padded row length of `q`, a multiple of [`LANES`].
    pub dp: usize,
    /// The key rows of the tile.
    pub keys: Rows<D>,
    /// Distance between rows of scores.
    pub ss: usize,
    /// Later key rows to request (see [`Ahead`]).
    pub ahead: Ahead,
}

impl<'a, D> QkDot<'a, D> {
    pub(crate) fn over<E>(self, data: E) -> QkDot<'a, E> {
        QkDot {
            q: self.q,
            nr: self.nr,
            d: self.d,
            dp: self.dp,
            keys: self.keys.over(data),
            ss: self.ss,
            ahead: self.ahead,
        }
    }
}

/// The inputs of [`TileKernels::pv`]: probabilities `pt[j * pj + r * pr]` of `nr` rows
/// against the value rows `values`, each row's rescaling factor in `alpha`.
#[derive(Clone, Copy)]
pub(crate) struct Pv<'a, D> {
    /// The probability tile.
    pub pt: &'a [f32],
    /// Distance in `pt` between keys.
    pub pj: usize,
    /// Distance in `pt` between rows.
    pub pr: usize,
    /// Output rows.
    pub nr: usize,
    /// The value rows of the tile.
    pub values: Rows<D>,
    /// Head dimension.
    pub d: usize,
    /// Padded row length of the output, a multiple of [`LANES`].
    pub dp: usize,
    /// Each row's rescaling factor.
    pub alpha: &'a [f32],
    /// Later value rows to request (see [`Ahead`]).
    pub ahead: Ahead,
}

impl<'a, D> Pv<'a, D> {
    pub(crate) fn over<E>(self, data: E) -> Pv<'a, E> {
        Pv {
            pt: self.pt,
            pj: self.pj,
            pr: self.pr,
            nr: self.nr,
            values: self.values.over(data),
            d: self.d,
            dp: self.dp,
            alpha: self.alpha,
            ahead: self.ahead,
        }
    }
}

/// One register block of the SIMD output update: `MR` rows from probabilities `p` (`pj`
/// between keys, `pr` between rows), `nk` value rows at `v` (`vs` apart), output rows at `o`
/// (`dp` apart) and their rescaling factors at `a`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct PvBlock<E> {
    p: *const f32,
    pj: usize,
    pr: usize,
    nk: usize,
    v: *const E,
    vs: usize,
    o: *mut f32,
    dp: usize,
    a: *const f32,
}

/// The few-row kernels on 16-bit keys and values read in place (converted as they are
/// loaded, with no widened copy of the tile), where an instruction-set path has them.
struct InPlace16 {
    qk_dot_f16: QkDotFn<Half<false>>,
    qk_dot_bf16: QkDotFn<Half<true>>,
    pv_f16: PvFn<Half<false>>,
    pv_bf16: PvFn<Half<true>>,
}

/// An element type the few-row kernels read keys and values as, in place.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
trait KvElem: Copy {
    /// 0: f32; 1: f16 bits; 2: bfloat16 bits.
    const KIND: u8;
}

impl KvElem for f32 {
    const KIND: u8 = 0;
}

/// A 16-bit value as its bits: bfloat16 when `BF16`, else f16.
#[derive(Clone, Copy)]
#[repr(transparent)]
#[allow(dead_code)] // only ever seen through a cast of `u16` data (`bits_as`)
struct Half<const BF16: bool>(u16);

impl<const BF16: bool> KvElem for Half<BF16> {
    const KIND: u8 = 1 + BF16 as u8;
}

/// 16-bit values (bits) as [`Half`].
fn bits_as<const BF16: bool>(bits: &[u16]) -> &[Half<BF16>] {
    // SAFETY: `Half` is a `repr(transparent)` wrapper of `u16`, so the slice's memory holds
    // valid values of it at the same addresses.
    unsafe { std::slice::from_raw_parts(bits.as_ptr() as *const Half<BF16>, bits.len()) }
}

/// Elements in a slice of any storage format.
fn elems(x: ElemSlice<'_>) -> usize {
    match x {
        ElemSlice::F32(f) => f.len(),
        ElemSlice::F16(b) | ElemSlice::Bf16(b) => b.len(),
    }
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
    qk_dot: QkDotFn<f32>,
    softmax_rows: SoftmaxRowsFn,
    pv: PvFn<f32>,
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
                qk_dot: avx512::qk_dot::<f32>,
                softmax_rows: avx512::softmax_rows,
                pv: avx512::pv::<f32>,
                widen_f16: avx512::widen::<false>,
                widen_bf16: avx512::widen::<true>,
                in_place16: Some(InPlace16 {
                    qk_dot_f16: avx512::qk_dot,
                    qk_dot_bf16: avx512::qk_dot,
                    pv_f16: avx512::pv,
                    pv_bf16: avx512::pv,
                }),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => TileKernels {
                qk: avx2::qk,
                softmax: avx2::softmax,
                qk_dot: avx2::qk_dot,
                softmax_rows: avx2::softmax_rows,
                pv: avx2::pv,
                widen_f16: avx2::widen::<false>,
                widen_bf16: avx2::widen::<true>,
                in_place16: None,
            },
            _ => TileKernels {
                qk: portable::qk,
                softmax: portable::softmax,
                qk_dot: portable::qk_dot,
                softmax_rows: portable::softmax_rows,
                pv: portable::pv,
                widen_f16: portable::widen::<false>,
                widen_bf16: portable::widen::<true>,
                in_place16: None,
            },
        }
    }

    /// Scores: `st[j * rp + r] = sum_{p < d} qt[p * rp + r] * k[koff + j * ks + p]` for
    /// `j < nk`, `r < rp` (`qt` is the transposed, pre-scaled query block; `keys` holds `k`,
    /// `koff`, `ks` and `nk`).
    pub fn qk(&self, qt: &[f32], rp: usize, d: usize, keys: Rows<&[f32]>, st: &mut [f32]) {
        let (k, koff, ks, nk) = (keys.data, keys.off, keys.stride, keys.n);
        assert!(rp.is_multiple_of(LANES) && qt.len() >= d * rp && st.len() >= nk * rp);
        if nk > 0 {
            assert!(
                koff + (nk - 1) * ks + d <= k.len(),
                "key rows out of bounds"
            );
        }
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.qk)(qt, rp, d, keys, st) }
    }

    /// Online-softmax step: takes the score tile `st` (`nk x rp`), updates each row's running
    /// maximum `m` and sum `l` (`run`), writes the factor `alpha` that rescales the row's earlier
    /// output, and turns `st` into probabilities `exp(s - m_new)`. Rows that have seen only
    /// masked keys (`-inf`) keep `m = -inf`, `l = 0` and get probabilities 0.
    pub fn softmax(&self, st: &mut [f32], rp: usize, nk: usize, run: Running<'_>) {
        let Running { m, l, alpha } = run;
        assert!(rp.is_multiple_of(LANES) && st.len() >= nk * rp);
        assert!(m.len() >= rp && l.len() >= rp && alpha.len() >= rp);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.softmax)(st, rp, nk, Running { m, l, alpha }) }
    }

    /// Scores in dot-product form for a few query rows (decode): `s[r * ss + j] = sum_{c < d}
    /// q[r * dp + c] * k[koff + j * ks + c]` for `r < nr`, `j < nk` (the key rows `k`, `koff`,
    /// `ks`, `nk` are `args.keys`). `args.ahead` asks for later key rows (see [`Ahead`]).
    /// 16-bit keys need [`TileKernels::reads_16bit_in_place`].
    pub fn qk_dot(&self, args: QkDot<'_, ElemSlice<'_>>, s: &mut [f32]) {
        let QkDot {
            q, nr, d, dp, ss, ..
        } = args;
        let Rows {
            data: k,
            off: koff,
            stride: ks,
            n: nk,
        } = args.keys;
        assert!(dp >= d && dp.is_multiple_of(LANES) && q.len() >= nr * dp && nk <= ss);
        assert!(nr == 0 || s.len() >= (nr - 1) * ss + nk);
        if nk > 0 {
            assert!(
                koff + (nk - 1) * ks + d <= elems(k),
                "key rows out of bounds"
            );
        }
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe {
            match k {
                ElemSlice::F32(k) => (self.qk_dot)(args.over(k), s),
                ElemSlice::F16(b) => (self.in_place16().qk_dot_f16)(args.over(bits_as(b)), s),
                ElemSlice::Bf16(b) => (self.in_place16().qk_dot_bf16)(args.over(bits_as(b)), s),
            }
        }
    }

    /// Whether this path's few-row kernels read 16-bit keys and values in place (else they
    /// must be widened to f32 first).
    pub fn reads_16bit_in_place(&self) -> bool {
        self.in_place16.is_some()
    }

    fn in_place16(&self) -> &InPlace16 {
        self.in_place16
            .as_ref()
            .expect("this path reads 16-bit rows only after widening them")
    }

    /// [`TileKernels::softmax`] for row-major scores `s[r * ss + j]`, `r < nr`, `j < nk`.
    pub fn softmax_rows(&self, s: &mut [f32], ss: usize, nr: usize, nk: usize, run: Running<'_>) {
        let Running { m, l, alpha } = run;
        assert!(nk <= ss && (nr == 0 || s.len() >= (nr - 1) * ss + nk));
        assert!(m.len() >= nr && l.len() >= nr && alpha.len() >= nr);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { (self.softmax_rows)(s, ss, nr, nk, Running { m, l, alpha }) }
    }

    /// Output update:
    /// `o[r * dp + c] = alpha[r] * o[r * dp + c] + sum_{j < nk} p[j * pj + r * pr] * v[voff + j * vs + c]`
    /// for `r < nr`, `c < d` (`o` holds at least `nr` rows of `dp`; the value rows `v`, `voff`,
    /// `vs`, `nk` are `args.values`). `args.ahead` asks for later value rows (see [`Ahead`]).
    /// 16-bit values need [`TileKernels::reads_16bit_in_place`].
    pub fn pv(&self, args: Pv<'_, ElemSlice<'_>>, o: &mut [f32]) {
        let Pv {
            pt,
            pj,
            pr,
            nr,
            d,
            dp,
            alpha,
            ..
        } = args;
        let Rows {
            data: v,
            off: voff,
            stride: vs,
            n: nk,
        } = args.values;
        if nk > 0 && nr > 0 {
            assert!(
                (nk - 1) * pj + (nr - 1) * pr < pt.len(),
                "probabilities out of bounds"
            );
            assert!(
                voff + (nk - 1) * vs + d <= elems(v),
                "value rows out of bounds"
            );
        }
        assert!(dp >= d && dp.is_multiple_of(LANES) && o.len() >= nr * dp && alpha.len() >= nr);
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe {
            match v {
                ElemSlice::F32(v) => (self.pv)(args.over(v), o),
                ElemSlice::F16(b) => (self.in_place16().pv_f16)(args.over(bits_as(b)), o),
                ElemSlice::Bf16(b) => (self.in_place16().pv_bf16)(args.over(bits_as(b)), o),
            }
        }
    }

    /// Widens `rows.n` rows of `d` 16-bit values (bits: bfloat16 when `bf16`, else f16; row
    /// `j` at `rows.off + j * rows.stride`) into `dst[j * d..]`.
    pub fn widen(&self, rows: Rows<&[u16]>, bf16: bool, d: usize, dst: &mut [f32]) {
        let (bits, off, stride, nk) = rows.parts();
        check_widen(bits, off, stride, nk, d, dst);
        let widen = if bf16 {
            self.widen_bf16
        } else {
            self.widen_f16
        };
        // SAFETY: the bounds each implementation reads and writes are checked above.
        unsafe { widen(rows, d, dst) }
    }
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
