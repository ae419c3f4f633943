//! GEMV and small-m GEMM (decode): `m <= GEMV_MAX_M` rows of A against all of B.
//!
//! These problems are bound by reading B, so B is streamed exactly once, straight from its
//! storage, never packed: for B stored k x n, register blocks of `GEMV_NB` columns accumulate
//! `axpy`-style down the rows of B; for B stored n x k (weights as `[out, in]`), groups of
//! four stored rows are dotted with the rows of A. A is tiny and is widened to a contiguous
//! f32 copy by the safe layer first. The epilogue runs on each finished register block.

use super::element::Element;
use super::epilogue::{self, Dest, Prev, RowEpi};
use super::simd::Simd;
use super::Activation;

/// Largest m the GEMV path takes.
pub(crate) const GEMV_MAX_M: usize = 4;

/// Stored rows of B dotted at once when B is stored n x k.
const DOT_GROUP: usize = 4;

/// A validated GEMV-shaped problem.
pub(crate) struct GemvJob<TB, TC> {
    /// op(A) widened: `batch` blocks of `m x k` contiguous floats.
    pub a: *const f32,
    pub b: *const TB,
    pub c: *mut TC,
    pub m: usize,
    pub k: usize,
    pub ldb: usize,
    pub trans_b: bool,
    pub ldc: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: *const f32,
    pub act: Activation,
    pub residual: *const TC,
    pub ld_residual: usize,
    pub stride_residual: usize,
}

// SAFETY: built only by the safe layer from slices that outlive the call; tasks write
// disjoint column ranges of C.
unsafe impl<TB, TC> Sync for GemvJob<TB, TC> {}
// SAFETY: as for `Sync`.
unsafe impl<TB, TC> Send for GemvJob<TB, TC> {}

/// Output register block: up to `GEMV_MAX_M` rows of the widest `GEMV_NB` (64).
#[repr(align(64))]
struct Block([f32; GEMV_MAX_M * 64]);

/// Computes columns `c0..c1` of every row of C in batch `batch`.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - `job` was validated; `1 <= m <= GEMV_MAX_M`, `k >= 1`; `c1 <= n`.
/// - No other running task writes these columns of this batch.
#[inline(always)]
pub(crate) unsafe fn run_task<S: Simd, TB: Element, TC: Element>(
    job: &GemvJob<TB, TC>,
    batch: usize,
    c0: usize,
    c1: usize,
) {
    // SAFETY: forwarded caller contract.
    unsafe {
        match job.m {
            1 => task_rows::<S, TB, TC, 1>(job, batch, c0, c1),
            2 => task_rows::<S, TB, TC, 2>(job, batch, c0, c1),
            3 => task_rows::<S, TB, TC, 3>(job, batch, c0, c1),
            _ => task_rows::<S, TB, TC, 4>(job, batch, c0, c1),
        }
    }
}

#[inline(always)]
unsafe fn task_rows<S: Simd, TB: Element, TC: Element, const RM: usize>(
    job: &GemvJob<TB, TC>,
    batch: usize,
    c0: usize,
    c1: usize,
) {
    let nb = S::GEMV_NB;
    debug_assert!(nb <= 64 && nb == 4 * S::LANES);
    // SAFETY: every pointer stays inside the validated operands: rows of A `< RM`, steps
    // `< k`, columns `< c1 <= n`; the block buffer holds `RM x nb` floats.
    unsafe {
        let a = job.a.add(batch * job.m * job.k);
        let b = job.b.add(batch * job.stride_b);
        let c = job.c.add(batch * job.stride_c);
        let residual = if job.residual.is_null() {
            job.residual
        } else {
            job.residual.add(batch * job.stride_residual)
        };
        let mut block = Block([0.0; GEMV_MAX_M * 64]);
        let out = block.0.as_mut_ptr();
        let mut j0 = c0;
        while j0 < c1 {
            let cols = nb.min(c1 - j0);
            if job.trans_b {
                dot_block::<S, TB, RM>(a, job.k, b, job.ldb, j0, cols, out, nb);
            } else {
                axpy_block::<S, TB, RM>(a, job.k, b, job.ldb, j0, cols, out, nb);
            }
            for r in 0..RM {
                let crow = c.add(r * job.ldc + j0);
                let prev = if job.beta == 0.0 {
                    Prev::Zero
                } else {
                    Prev::Out {
                        p: crow as *const TC,
                        beta: job.beta,
                    }
                };
                let epi = RowEpi {
                    bias: if job.bias.is_null() {
                        job.bias
                    } else {
                        job.bias.add(j0)
                    },
                    act: job.act,
                    residual: if residual.is_null() {
                        residual
                    } else {
                        residual.add(r * job.ld_residual + j0)
                    },
                };
                epilogue::row::<S, TC>(
                    cols,
                    out.add(r * nb),
                    job.alpha,
                    prev,
                    Dest::Out(crow),
                    &epi,
                );
            }
            j0 += cols;
        }
    }
}

/// `out[r][0..cols] = sum_p a[r][p] * B[p][j0 + ..]` for B stored k x n.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the loop's extents, kept as plain values
unsafe fn axpy_block<S: Simd, TB: Element, const RM: usize>(
    a: *const f32,
    k: usize,
    b: *const TB,
    ldb: usize,
    j0: usize,
    cols: usize,
    out: *mut f32,
    nb: usize,
) {
    const NV: usize = 4;
    let lanes = S::LANES;
    // SAFETY: see `task_rows`; partial loads read only the `cols` valid columns.
    unsafe {
        let mut acc = [[S::zero(); NV]; RM];
        let mut brow = b.add(j0);
        if cols == nb {
            for p in 0..k {
                let mut bv = [S::zero(); NV];
                for (v, slot) in bv.iter_mut().enumerate() {
                    *slot = S::load_elem::<TB>(brow.add(v * lanes));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = S::splat(*a.add(r * k + p));
                    for (v, slot) in row.iter_mut().enumerate() {
                        *slot = S::fma(av, bv[v], *slot);
                    }
                }
                brow = brow.add(ldb);
            }
        } else {
            for p in 0..k {
                let mut bv = [S::zero(); NV];
                for (v, slot) in bv.iter_mut().enumerate() {
                    let start = v * lanes;
                    if start < cols {
                        *slot =
                            S::load_elem_partial::<TB>(brow.add(start), lanes.min(cols - start));
                    }
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = S::splat(*a.add(r * k + p));
                    for (v, slot) in row.iter_mut().enumerate() {
                        *slot = S::fma(av, bv[v], *slot);
                    }
                }
                brow = brow.add(ldb);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, slot) in row.iter().enumerate() {
                S::store(out.add(r * nb + v * lanes), *slot);
            }
        }
    }
}

/// `out[r][0..cols] = sum_p a[r][p] * B[j0 + ..][p]` for B stored n x k.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the loop's extents, kept as plain values
unsafe fn dot_block<S: Simd, TB: Element, const RM: usize>(
    a: *const f32,
    k: usize,
    b: *const TB,
    ldb: usize,
    j0: usize,
    cols: usize,
    out: *mut f32,
    nb: usize,
) {
    let lanes = S::LANES;
    // SAFETY: see `task_rows`; stored rows past `cols` are clamped to the last valid one and
    // their sums discarded; the k tail uses partial loads.
    unsafe {
        let mut g = 0;
        while g < cols {
            let mut rows = [b; DOT_GROUP];
            for (jj, row) in rows.iter_mut().enumerate() {
                *row = b.add((j0 + (g + jj).min(cols - 1)) * ldb);
            }
            let mut acc = [[S::zero(); DOT_GROUP]; RM];
            let mut p = 0;
            while p + lanes <= k {
                let mut bv = [S::zero(); DOT_GROUP];
                for (jj, slot) in bv.iter_mut().enumerate() {
                    *slot = S::load_elem::<TB>(rows[jj].add(p));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = S::load(a.add(r * k + p));
                    for (jj, slot) in row.iter_mut().enumerate() {
                        *slot = S::fma(av, bv[jj], *slot);
                    }
                }
                p += lanes;
            }
            if p < k {
                let len = k - p;
                let mut bv = [S::zero(); DOT_GROUP];
                for (jj, slot) in bv.iter_mut().enumerate() {
                    *slot = S::load_elem_partial::<TB>(rows[jj].add(p), len);
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = S::load_elem_partial::<f32>(a.add(r * k + p), len);
                    for (jj, slot) in row.iter_mut().enumerate() {
                        *slot = S::fma(av, bv[jj], *slot);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (jj, slot) in row.iter().enumerate() {
                    if g + jj < cols {
                        *out.add(r * nb + g + jj) = S::hsum(*slot);
                    }
                }
            }
            g += DOT_GROUP;
        }
    }
}
