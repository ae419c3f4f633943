//! Quantised matmul `y = act(x W^T + bias)`: `x` is `m x k` (f32, f16 or bf16), `W` is
//! `n x k` in any [`QuantFormat`], `y` is `m x n`.
//!
//! Two ways to the answer:
//! - integer: `x` is quantised on the fly to 8-bit blocks of 32 (ggml's Q8_0 rule) and each
//!   weight vector meets it in `vpdpbusd` (AVX-512 VNNI), `vpmaddubsw` (AVX2) or plain integer
//!   arithmetic (portable); block scales are applied per 4-byte lane in f32. Decode (`m <= 8`)
//!   walks every weight row once for all `m` rows of `x`, so each weight byte is read once;
//!   prefill (`m > 8`) tiles the weight rows so a tile stays in cache while chunks of 8 rows of
//!   `x` pass over it. `I8` weights with `m > 8` go to [`w8a8_gemm`](super::w8a8_gemm) with
//!   per-token activation scales.
//! - float: each weight row is dequantised once into f32 and dotted with every row of `x` in
//!   f32. FP8 weights always take it; others on request ([`ActQuant::Float`]).
//!
//! Error bounds: the float path is the dequantised product up to f32 summation error; the
//! integer path adds the activation rounding, at most `max|x_block| / 254` per value.

use super::simd::IntKernel;
use super::xprep::{XPrep, GROUP};
use super::{
    act::store_row, check_bias, check_len, check_row_scales, dequantize_row, mul_checked,
    row_bytes, ActElem, Activation, QuantFormat,
};
use crate::{Exec, Isa, KernelError, Parallelism};

/// A quantised weight matrix of `n` rows (output channels) by `k` columns, as stored.
#[derive(Debug, Clone, Copy)]
pub struct QWeights<'a> {
    /// Storage format.
    pub format: QuantFormat,
    /// `n * row_bytes(format, k)` bytes, row after row.
    pub data: &'a [u8],
    /// Per-row scales (see [`QuantFormat::row_scales`]).
    pub scales: Option<&'a [f32]>,
    /// Rows (outputs).
    pub n: usize,
    /// Columns (the reduction length).
    pub k: usize,
}

/// How activations meet the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActQuant {
    /// Integer dot products where the format has them, float otherwise.
    #[default]
    Auto,
    /// Integer dot products over activations quantised to 8-bit blocks; an error for FP8.
    Int8,
    /// Dequantise weights to f32 and multiply in f32.
    Float,
}

/// Shape and options of a quantised matmul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QMatmulParams {
    /// Rows of `x` and `y` (tokens).
    pub m: usize,
    /// Activation applied after the bias.
    pub activation: Activation,
    /// Integer or float arithmetic.
    pub act_quant: ActQuant,
}

/// The rows of `x` one weight pass serves; up to this many rows are "decode".
pub const GEMV_MAX_M: usize = 8;

/// `y = act(x W^T + bias)` on the path and threads `exec` names (a [`Parallelism`] alone: the
/// host's best path).
///
/// `x` is `m x k` row-major, `y` is `m x n` row-major, `bias` has `n` entries. The path must be
/// supported by the host ([`Isa::is_supported`]); the AVX-512 integer path needs VNNI and uses
/// the AVX2 kernels without it.
pub fn qmatmul<TX: ActElem, TY: ActElem>(
    params: &QMatmulParams,
    x: &[TX],
    w: &QWeights<'_>,
    bias: Option<&[f32]>,
    y: &mut [TY],
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    isa.require()?;
    let (m, n, k) = (params.m, w.n, w.k);
    let rb = row_bytes(w.format, k)?;
    check_len("w", mul_checked(n, rb, "w")?, w.data.len())?;
    check_len("x", mul_checked(m, k, "x")?, x.len())?;
    check_len("y", mul_checked(m, n, "y")?, y.len())?;
    let scales = check_row_scales(w.format, w.scales, n)?;
    check_bias(bias, n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let int_capable = match w.format {
        QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => false,
        QuantFormat::I8 => k % 32 == 0,
        _ => true,
    };
    let use_int = match params.act_quant {
        ActQuant::Float => false,
        ActQuant::Auto => int_capable,
        ActQuant::Int8 => {
            if !int_capable {
                return Err(KernelError::Unsupported {
                    detail: format!(
                        "{} weights with k = {k} have no integer dot-product path",
                        w.format.name()
                    ),
                });
            }
            true
        }
    };
    let w_data = &w.data[..n * rb];
    let y = &mut y[..m * n];
    if k == 0 {
        let zeros = vec![0.0f32; n];
        for row in y.chunks_exact_mut(n) {
            store_row(&zeros, bias, params.activation, row);
        }
        return Ok(());
    }
    if use_int && w.format == QuantFormat::I8 && m > GEMV_MAX_M {
        let mut xf = vec![0.0f32; m * k];
        for (d, s) in xf.iter_mut().zip(&x[..m * k]) {
            *d = s.to_f32();
        }
        let mut xq = vec![0i8; m * k];
        let mut xs = vec![0.0f32; m];
        for ((row, out), s) in xf.chunks_exact(k).zip(xq.chunks_exact_mut(k)).zip(&mut xs) {
            *s = super::int8::quantize_row_i8(row, out);
        }
        let wq: &[i8] = bytemuck::cast_slice(w_data);
        let p = super::int8::W8A8Params {
            m,
            n,
            k,
            activation: params.activation,
        };
        return super::int8::w8a8_gemm(
            &p,
            super::int8::ScaledI8 {
                codes: &xq,
                scales: &xs,
            },
            super::int8::ScaledI8 {
                codes: wq,
                scales: scales.expect("checked: I8 requires scales"),
            },
            bias,
            y,
            Exec::new(isa, par),
        );
    }
    let out = OutPtr {
        ptr: y.as_mut_ptr(),
        n,
    };
    let job = Job {
        format: w.format,
        w: w_data,
        rb,
        scales,
        m,
        k,
        bias,
        act: params.activation,
        isa,
    };
    if use_int {
        let kernel = IntKernel::choose(isa);
        if m > GEMV_MAX_M && kernel.has_tiles() && super::prefill::supported(w.format) {
            let xb = super::prefill::XBlocks::new(w.format, x, m, k, par);
            run_parallel(n, m, par, |n0, n1| job.tile_range(&xb, n0, n1, &out));
        } else {
            let xp = XPrep::new(isa, w.format, kernel.layout(), x, m, k, par);
            run_parallel(n, m, par, |n0, n1| job.int_range(&xp, kernel, n0, n1, &out));
        }
    } else {
        let mut xf = vec![0.0f32; m * k];
        for (d, s) in xf.iter_mut().zip(&x[..m * k]) {
            *d = s.to_f32();
        }
        run_parallel(n, m, par, |n0, n1| job.float_range(&xf, n0, n1, &out));
    }
    Ok(())
}

/// Splits output rows `0..n` into contiguous ranges over the granted threads.
fn run_parallel(n: usize, m: usize, par: Parallelism, f: impl Fn(usize, usize) + Sync) {
    let tasks = par.threads().min(n.div_ceil(16)).max(1);
    if tasks == 1 || m * n < 256 {
        f(0, n);
        return;
    }
    let per = n.div_ceil(tasks).div_ceil(4) * 4;
    let ranges: Vec<(usize, usize)> = (0..tasks)
        .map(|t| ((t * per).min(n), ((t + 1) * per).min(n)))
        .filter(|(n0, n1)| n0 < n1)
        .collect();
    crate::par::for_each_task(&ranges, tasks, |&(n0, n1)| f(n0, n1));
}

/// Where tasks write: `y` (`m x n`), each task its own columns.
struct OutPtr<TY> {
    ptr: *mut TY,
    n: usize,
}

// SAFETY: tasks write disjoint column ranges of `y` through this pointer (see `store`), and the
// `&mut y` it comes from outlives the scope the tasks run in.
unsafe impl<TY: Send> Sync for OutPtr<TY> {}

impl<TY: ActElem> OutPtr<TY> {
    /// Writes `vals` to row `i`, columns `n0..n0 + vals.len()`, through the epilogue.
    ///
    /// # Safety
    /// - `i < m` and `n0 + vals.len() <= n` for the `y` this was made from;
    /// - no other task writes these elements concurrently.
    unsafe fn store(
        &self,
        i: usize,
        n0: usize,
        vals: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
    ) {
        // SAFETY: in bounds and exclusive by this function's contract.
        let row =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.n + n0), vals.len()) };
        store_row(vals, bias.map(|b| &b[n0..n0 + vals.len()]), act, row);
    }
}

/// The validated problem, shared by the tasks.
struct Job<'a> {
    format: QuantFormat,
    w: &'a [u8],
    rb: usize,
    scales: Option<&'a [f32]>,
    m: usize,
    k: usize,
    bias: Option<&'a [f32]>,
    act: Activation,
    isa: Isa,
}

thread_local! {
    /// The row-sum buffer of the last integer GEMV on this thread (see `Job::int_range`).
    static ACC: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Weight rows per cache tile on the prefill path.
const N_TILE: usize = 32;

impl Job<'_> {
    fn int_range<TY: ActElem>(
        &self,
        xp: &XPrep,
        kernel: IntKernel,
        n0: usize,
        n1: usize,
        out: &OutPtr<TY>,
    ) {
        let tile = if self.m <= GEMV_MAX_M {
            n1 - n0
        } else {
            N_TILE
        };
        // The row sums before the epilogue, in a buffer kept per thread between calls (a
        // decode step makes a call per matrix; the output projection's is 192 KiB).
        // The kernel writes every sum it is given room for, so what a buffer held before is
        // never read and only growth fills it.
        let mut acc = ACC.try_with(|a| a.take()).unwrap_or_default();
        let need = self.m.min(GEMV_MAX_M) * tile;
        if acc.len() < need {
            acc.resize(need, 0.0);
        }
        let mut t0 = n0;
        while t0 < n1 {
            let t1 = (t0 + tile).min(n1);
            let nr = t1 - t0;
            let w = &self.w[t0 * self.rb..t1 * self.rb];
            let ws = self.scales.map(|s| &s[t0..t1]);
            let mut i0 = 0;
            while i0 < self.m {
                let mr = (self.m - i0).min(GEMV_MAX_M);
                let a = KernelArgs {
                    format: self.format,
                    w,
                    rb: self.rb,
                    nrows: nr,
                    k: self.k,
                    wscale: ws,
                    xp,
                    x0: i0,
                    mr,
                };
                kernel.run(&a, &mut acc[..mr * nr]);
                for i in 0..mr {
                    // SAFETY: row i0 + i < m; columns t0..t1 lie in this task's range n0..n1,
                    // which no other task writes.
                    unsafe {
                        out.store(i0 + i, t0, &acc[i * nr..(i + 1) * nr], self.bias, self.act)
                    };
                }
                i0 += mr;
            }
            t0 = t1;
        }
        let _ = ACC.try_with(|a| a.set(acc));
    }

    /// The prefill path on packed tiles (see [`super::prefill`]); only chosen when the host
    /// has AVX-512 VNNI.
    fn tile_range<TY: ActElem>(
        &self,
        xb: &super::prefill::XBlocks,
        n0: usize,
        n1: usize,
        out: &OutPtr<TY>,
    ) {
        use super::prefill::{Tile, MR, NR};
        let mut tile = Tile::new(xb.nb);
        let mut acc = [0.0f32; MR * NR];
        let mut t0 = n0;
        while t0 < n1 {
            let t1 = (t0 + NR).min(n1);
            let nr = t1 - t0;
            tile.pack(
                self.format,
                &self.w[t0 * self.rb..t1 * self.rb],
                self.rb,
                nr,
                xb.nb,
            );
            let mut i0 = 0;
            while i0 < self.m {
                let mr = (self.m - i0).min(MR);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `has_tiles` holds only for the AVX-512 VNNI kernel, chosen only on a
                // host with those features; the tile was packed with `xb.nb` blocks and rows
                // i0..i0 + mr < m exist in `xb`.
                unsafe {
                    super::prefill::run(self.format, xb, &tile, i0, mr, &mut acc)
                };
                for i in 0..mr {
                    // SAFETY: row i0 + i < m; columns t0..t1 lie in this task's range n0..n1,
                    // which no other task writes.
                    unsafe {
                        out.store(i0 + i, t0, &acc[i * NR..i * NR + nr], self.bias, self.act)
                    };
                }
                i0 += mr;
            }
            t0 = t1;
        }
    }

    fn float_range<TY: ActElem>(&self, xf: &[f32], n0: usize, n1: usize, out: &OutPtr<TY>) {
        let k = self.k;
        let mut wrow = vec![0.0f32; k];
        let mut acc = vec![0.0f32; self.m * (n1 - n0)];
        let nr = n1 - n0;
        for r in n0..n1 {
            dequantize_row(
                self.format,
                &self.w[r * self.rb..(r + 1) * self.rb],
                self.scales.map(|s| s[r]),
                &mut wrow,
            );
            for i in 0..self.m {
                acc[i * nr + (r - n0)] = dot_f32(self.isa, &wrow, &xf[i * k..(i + 1) * k]);
            }
        }
        for i in 0..self.m {
            // SAFETY: row i < m, columns n0..n1 belong to this task alone.
            unsafe { out.store(i, n0, &acc[i * nr..(i + 1) * nr], self.bias, self.act) };
        }
    }
}

/// An f32 dot product with 16 independent partial sums; `FUSED` uses `mul_add` (only where
/// the caller enabled FMA, else it would be a library call).
#[inline(always)]
fn dot_f32_generic<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            s[j] = if FUSED {
                x[j].mul_add(y[j], s[j])
            } else {
                s[j] + x[j] * y[j]
            };
        }
    }
    let mut t: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    for v in s {
        t += v;
    }
    t
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
/// # Safety
/// - the host supports AVX-512 F and FMA.
unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_generic::<true>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// # Safety
/// - the host supports AVX2 and FMA.
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32_generic::<true>(a, b)
}

fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was checked to be supported by the host at entry.
        Isa::Avx512 => unsafe { dot_f32_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; AVX2 implies FMA in `Isa::Avx2`.
        Isa::Avx2 => unsafe { dot_f32_avx2(a, b) },
        _ => dot_f32_generic::<false>(a, b),
    }
}

/// One kernel call: `nrows` weight rows against `mr` (<= 8) activation rows starting at `x0`.
/// Writes `out[i * nrows + r]` = dot of x row `x0 + i` with weight row `r`, before epilogue.
pub(crate) struct KernelArgs<'a> {
    pub format: QuantFormat,
    /// Exactly `nrows * rb` bytes.
    pub w: &'a [u8],
    pub rb: usize,
    pub nrows: usize,
    pub k: usize,
    /// `nrows` per-row scales (I8).
    pub wscale: Option<&'a [f32]>,
    pub xp: &'a XPrep,
    pub x0: usize,
    pub mr: usize,
}

/// The groups of 64 values one weight row holds.
pub(crate) fn groups(k: usize) -> usize {
    k.div_ceil(GROUP)
}
