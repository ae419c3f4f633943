//! int8 weights with one f32 scale per output channel, and the W8A8 GEMM
//! `y = act((xq * sx) (wq * sw)^T + bias)` with one activation scale per token (row of `x`).
//!
//! The GEMM packs `x` as unsigned bytes (`x + 128`) in panels of 8 rows and the weights in
//! panels of 32 columns, four `k` values per 32-bit lane, so the AVX-512 VNNI microkernel
//! issues 16 `vpdpbusd` per 10 loads; the `+128` is taken back with the weight column sums.
//! Integer sums are exact (i32) for `k < 2^17`; the scales are applied once, in f32.

use super::act::store_row;
use super::{check_bias, check_len, mul_checked, Activation};
use crate::{Exec, Isa, KernelError};

/// Quantises one row to `i8` codes stored as bytes; returns the scale `max|x| / 127`
/// (codes round half away from zero; a zero row has scale 0).
pub(crate) fn quantize_row(src: &[f32], dst: &mut [u8]) -> f32 {
    let (s, id) = row_scale(src);
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = code(v, id) as u8;
    }
    s
}

/// As [`quantize_row`] into `i8`.
pub(crate) fn quantize_row_i8(src: &[f32], dst: &mut [i8]) -> f32 {
    let (s, id) = row_scale(src);
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = code(v, id);
    }
    s
}

fn row_scale(src: &[f32]) -> (f32, f32) {
    let finite = src.iter().all(|v| v.is_finite());
    let amax = src.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let s = if finite { amax / 127.0 } else { f32::NAN };
    let id = if s == 0.0 || !finite { 0.0 } else { 1.0 / s };
    (s, id)
}

#[inline]
fn code(v: f32, id: f32) -> i8 {
    (v * id).round().clamp(-127.0, 127.0) as i8
}

/// Quantises an `rows x k` matrix to `i8` with one scale per row (per output channel for
/// weights, per token for activations). Non-finite rows get a NaN scale and zero codes.
pub fn quantize_per_row(
    rows: usize,
    k: usize,
    src: &[f32],
    dst: &mut [i8],
    scales: &mut [f32],
) -> Result<(), KernelError> {
    check_len("src", mul_checked(rows, k, "src")?, src.len())?;
    check_len("dst", rows * k, dst.len())?;
    check_len("scales", rows, scales.len())?;
    if k == 0 {
        scales[..rows].fill(0.0);
        return Ok(());
    }
    for ((row, out), s) in src
        .chunks_exact(k)
        .zip(dst.chunks_exact_mut(k))
        .zip(scales)
        .take(rows)
    {
        *s = quantize_row_i8(row, out);
    }
    Ok(())
}

/// Shape and epilogue of a W8A8 GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct W8A8Params {
    /// Rows of `x` and `y`.
    pub m: usize,
    /// Rows of `w` (outputs).
    pub n: usize,
    /// The reduction length (at most 2^17, so i32 sums cannot overflow).
    pub k: usize,
    /// Activation after the bias.
    pub activation: Activation,
}

/// Rows of int8 codes with one f32 scale per row: row `i` stands for `codes[i][..] * scales[i]`.
#[derive(Debug, Clone, Copy)]
pub struct ScaledI8<'a> {
    /// The codes, row-major.
    pub codes: &'a [i8],
    /// One scale per row.
    pub scales: &'a [f32],
}

const MR: usize = 8;
const NR: usize = 32;
/// Steps of 4 along k per cache block: 512 values, a 16 KiB block of a B panel.
const KC4: usize = 128;
/// Row panels per unit of work: 128 rows, whose packed A (128 KiB at k = 1024) stays in L2.
const MC_PANELS: usize = 16;

/// `y[i][j] = act(x_scales[i] * w_scales[j] * sum_k xq[i][k] wq[j][k] + bias[j])`.
///
/// `xq = x.codes` is `m x k`, `wq = w.codes` is `n x k` (both row-major), `x_scales =
/// x.scales` has `m` entries and `w_scales = w.scales` and `bias` `n`; `y` is `m x n`. Codes of -128 are accepted (the sums stay exact).
///
/// Runs on the path and threads `exec` names (a [`Parallelism`](crate::Parallelism) alone: the
/// host's best path).
pub fn w8a8_gemm<TY: super::ActElem>(
    p: &W8A8Params,
    x: ScaledI8<'_>,
    w: ScaledI8<'_>,
    bias: Option<&[f32]>,
    y: &mut [TY],
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    let (xq, x_scales, wq, w_scales) = (x.codes, x.scales, w.codes, w.scales);
    isa.require()?;
    let (m, n, k) = (p.m, p.n, p.k);
    if k > 1 << 17 {
        return Err(KernelError::Unsupported {
            detail: format!("W8A8 GEMM needs k <= 131072 for exact i32 sums, got {k}"),
        });
    }
    check_len("xq", mul_checked(m, k, "xq")?, xq.len())?;
    check_len("wq", mul_checked(n, k, "wq")?, wq.len())?;
    check_len("y", mul_checked(m, n, "y")?, y.len())?;
    for (what, len, want) in [
        ("x_scales", x_scales.len(), m),
        ("w_scales", w_scales.len(), n),
    ] {
        if len != want {
            return Err(KernelError::BadShape {
                detail: format!("{what} has {len} entries, expected {want}"),
            });
        }
    }
    check_bias(bias, n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // An empty sum: every output is the epilogue of 0.
        let zeros = vec![0.0f32; n];
        for out in y[..m * n].chunks_exact_mut(n) {
            store_row(&zeros, bias, p.activation, out);
        }
        return Ok(());
    }
    let k4 = k.div_ceil(4);
    let mp = m.div_ceil(MR);
    let np = n.div_ceil(NR);
    // A panels: [panel][k4][MR][4] bytes of x + 128 (padding: 128, i.e. x = 0).
    let mut a_buf = Scratch::take(&SCRATCH_A, mp * k4 * MR * 4);
    let a = &mut a_buf.buf[..];
    let threads = par.threads().max(1);
    let mut a_panels: Vec<&mut [u8]> = a.chunks_mut(k4 * MR * 4).collect();
    crate::par::for_each_mut(&mut a_panels, threads, |pi, panel| {
        let rows = &xq[pi * MR * k..((pi + 1) * MR).min(m) * k];
        pack_panel(rows, k, panel, MR, 0x80);
    });
    // B panels: [panel][k4][NR][4] weight bytes (padding 0), and column sums.
    let mut b_buf = Scratch::take(&SCRATCH_B, np * k4 * NR * 4);
    let b = &mut b_buf.buf[..];
    let mut colsum = vec![0i32; n];
    let mut b_panels: Vec<(&mut [u8], &mut [i32])> = b
        .chunks_mut(k4 * NR * 4)
        .zip(colsum.chunks_mut(NR))
        .collect();
    crate::par::for_each_mut(&mut b_panels, threads, |pj, (panel, sums)| {
        let rows = &wq[pj * NR * k..((pj + 1) * NR).min(n) * k];
        pack_panel(rows, k, panel, NR, 0);
        for (s, row) in sums.iter_mut().zip(rows.chunks_exact(k)) {
            *s = row.iter().map(|&v| v as i32).sum();
        }
    });
    drop((a_panels, b_panels));
    let a: &[u8] = a;
    let b: &[i8] = bytemuck::cast_slice(b);
    let vnni = cfg!(target_arch = "x86_64") && isa == Isa::Avx512 && crate::isa::has_avx512_vnni();
    let avx2 = cfg!(target_arch = "x86_64") && isa >= Isa::Avx2;
    let yptr = YPtr(y.as_mut_ptr());
    // Work comes in units of (a chunk of up to `MC_PANELS` row panels, a range of column
    // panels). Within a unit, each column panel's k blocks stay in L1 while the chunk's row
    // panels (in L2) stream past, and the finished 8 x 32 tiles are written out before the
    // next column panel: the rows a unit writes stay few enough for the TLB and L2, where a
    // whole column strip of `y` per task would touch a new page on every row.
    let row_chunks = mp.div_ceil(MC_PANELS);
    // Plain f32 results of a large product bypass the cache: every line of `y` is written
    // exactly once, and rows a whole `y` row apart would otherwise each cost a read for
    // ownership.
    let stream_out = vnni
        && std::any::TypeId::of::<TY>() == std::any::TypeId::of::<f32>()
        && bias.is_none()
        && p.activation == Activation::None
        && m * n * 4 >= 4 << 20;
    let col_splits = (2 * threads).div_ceil(row_chunks).clamp(1, np);
    let units = row_chunks * col_splits;
    let unit = |u: usize, tiles: &mut [[i32; MR * NR]]| {
        let (rc, cs) = (u / col_splits, u % col_splits);
        let (pi0, pi1) = (rc * MC_PANELS, ((rc + 1) * MC_PANELS).min(mp));
        let (pj0, pj1) = (cs * np / col_splits, (cs + 1) * np / col_splits);
        let tiles = &mut tiles[..pi1 - pi0];
        for pj in pj0..pj1 {
            let bp = &b[pj * k4 * NR * 4..(pj + 1) * k4 * NR * 4];
            for kb in (0..k4).step_by(KC4) {
                let kc = KC4.min(k4 - kb);
                let bk = &bp[kb * NR * 4..(kb + kc) * NR * 4];
                for (pi, tile) in (pi0..pi1).zip(tiles.iter_mut()) {
                    let ap = &a[(pi * k4 + kb) * MR * 4..(pi * k4 + kb + kc) * MR * 4];
                    micro(vnni, avx2, kc, ap, bk, tile, kb > 0);
                }
            }
            let j0 = pj * NR;
            let nc = (n - j0).min(NR);
            // Per-column factors, padded to a full panel so the loop below has a fixed length.
            let (mut ws, mut shift) = ([0.0f32; NR], [0i32; NR]);
            for c in 0..nc {
                ws[c] = w_scales[j0 + c];
                shift[c] = 128 * colsum[j0 + c];
            }
            let mut row = [0.0f32; NR];
            for (pi, tile) in (pi0..pi1).zip(tiles.iter()) {
                let i0 = pi * MR;
                for r in 0..(m - i0).min(MR) {
                    let sx = x_scales[i0 + r];
                    let t: &[i32; NR] = (&tile[r * NR..(r + 1) * NR]).try_into().expect("NR");
                    for c in 0..NR {
                        row[c] = (t[c] - shift[c]) as f32 * sx * ws[c];
                    }
                    let dst = yptr.at((i0 + r) * n + j0);
                    #[cfg(target_arch = "x86_64")]
                    if stream_out && nc == NR && (dst as usize).is_multiple_of(64) {
                        // SAFETY: `stream_out` implies AVX-512 and f32 output; the 32 floats at
                        // `dst` (row i0 + r < m, columns j0..j0 + 32 <= n) are this unit's
                        // alone, 64-byte aligned, and `y` outlives the parallel loop.
                        unsafe { super::simd::avx512::stream_row32(&row, dst.cast()) };
                        continue;
                    }
                    // SAFETY: row i0 + r < m and columns j0..j0 + nc < n; units cover disjoint
                    // (row, column) blocks of `y`, which outlives the parallel loop.
                    let out = unsafe { std::slice::from_raw_parts_mut(dst, nc) };
                    store_row(&row[..nc], bias.map(|b| &b[j0..j0 + nc]), p.activation, out);
                }
            }
        }
        // Streaming stores are weakly ordered: fence them before the unit counts as done.
        #[cfg(target_arch = "x86_64")]
        if stream_out {
            // SAFETY: SSE is baseline on x86-64.
            unsafe { core::arch::x86_64::_mm_sfence() };
        }
    };
    // Units are handed out one at a time to whichever worker is free, each worker with its
    // own tiles.
    crate::par::for_each_with(
        units,
        threads,
        || vec![[0i32; MR * NR]; MC_PANELS.min(mp)],
        |u, tiles| unit(u, tiles),
    );
    Ok(())
}

/// Packs up to `width` rows of `k` codes (`rows`, one after another) into a panel laid out
/// `[k4][width][4]`, writing every byte of it: `flip` is XORed into every code (0x80 turns
/// `i8` into `u8 + 128`), and missing rows and the tail of a row whose length is not a
/// multiple of 4 hold `flip` (a code of 0).
fn pack_panel(rows: &[i8], k: usize, panel: &mut [u8], width: usize, flip: u8) {
    let src: &[u8] = bytemuck::cast_slice(rows);
    let nrows = src.len().checked_div(k).unwrap_or(0);
    debug_assert!(nrows <= width && panel.len() == k.div_ceil(4) * width * 4);
    let full = k / 4;
    let flip4 = u32::from_le_bytes([flip; 4]);
    let mut row_refs: [&[u8]; 32] = [&[]; 32];
    for (r, row) in row_refs.iter_mut().zip(src.chunks_exact(k.max(1))) {
        *r = row;
    }
    let row_refs = &row_refs[..nrows];
    let mut steps = panel.chunks_exact_mut(width * 4);
    for (t, out) in (&mut steps).take(full).enumerate() {
        let (live, pad) = out.split_at_mut(nrows * 4);
        for (o, row) in live.chunks_exact_mut(4).zip(row_refs) {
            // Fixed-size arrays: a plain 4-byte load and store, not a call to memcpy.
            let c: [u8; 4] = row[4 * t..4 * t + 4].try_into().expect("4 bytes");
            let o: &mut [u8; 4] = o.try_into().expect("4 bytes");
            *o = (u32::from_le_bytes(c) ^ flip4).to_le_bytes();
        }
        pad.fill(flip);
    }
    if let Some(out) = steps.next() {
        out.fill(flip);
        for (o, row) in out.chunks_exact_mut(4).zip(row_refs) {
            for (d, &v) in o.iter_mut().zip(&row[4 * full..]) {
                *d = v ^ flip;
            }
        }
    }
}

thread_local! {
    static SCRATCH_A: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    static SCRATCH_B: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A packing buffer kept per thread between calls (a fresh one costs page faults every call);
/// taken out of its slot while in use, so a nested call on the same thread simply allocates.
struct Scratch {
    buf: Vec<u8>,
    slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<u8>>>,
}

impl Scratch {
    /// A buffer of `len` bytes with unspecified contents (the packers write every byte).
    fn take(slot: &'static std::thread::LocalKey<std::cell::Cell<Vec<u8>>>, len: usize) -> Scratch {
        let mut buf = slot.with(|c| c.take());
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf.truncate(len);
        Scratch { buf, slot }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.slot.with(|c| c.set(buf));
    }
}

struct YPtr<T>(*mut T);
// SAFETY: tasks write disjoint column panels of `y` through it, inside a scope the borrow
// outlives.
unsafe impl<T: Send> Sync for YPtr<T> {}
impl<T> YPtr<T> {
    fn at(&self, off: usize) -> *mut T {
        self.0.wrapping_add(off)
    }
}

/// `tile` (+)= the 8 x 32 products of `k4` steps: added when `accumulate`, written otherwise.
fn micro(
    vnni: bool,
    avx2: bool,
    k4: usize,
    a: &[u8],
    b: &[i8],
    tile: &mut [i32; MR * NR],
    accumulate: bool,
) {
    debug_assert!(a.len() == k4 * MR * 4 && b.len() == k4 * NR * 4);
    #[cfg(target_arch = "x86_64")]
    {
        if vnni {
            // SAFETY: VNNI presence checked by the caller; slice lengths as asserted above.
            return unsafe { super::simd::avx512::w8a8_micro(k4, a, b, tile, accumulate) };
        }
        if avx2 {
            // SAFETY: AVX2 checked by the caller (isa >= Avx2 and supported).
            return unsafe { micro_avx2(k4, a, b, tile, accumulate) };
        }
    }
    let _ = (vnni, avx2);
    micro_portable(k4, a, b, tile, accumulate)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
/// # Safety
/// - the host supports AVX2.
unsafe fn micro_avx2(k4: usize, a: &[u8], b: &[i8], tile: &mut [i32; MR * NR], accumulate: bool) {
    micro_portable(k4, a, b, tile, accumulate)
}

#[inline(always)]
fn micro_portable(k4: usize, a: &[u8], b: &[i8], tile: &mut [i32; MR * NR], accumulate: bool) {
    if !accumulate {
        *tile = [0; MR * NR];
    }
    for (ak, bk) in a.chunks_exact(MR * 4).zip(b.chunks_exact(NR * 4)).take(k4) {
        for r in 0..MR {
            let av = &ak[4 * r..4 * r + 4];
            let t = &mut tile[r * NR..(r + 1) * NR];
            for (c, tc) in t.iter_mut().enumerate() {
                let bv = &bk[4 * c..4 * c + 4];
                let mut s = 0i32;
                for q in 0..4 {
                    s += av[q] as i32 * bv[q] as i32;
                }
                *tc += s;
            }
        }
    }
}
