//! GEMV and small-m GEMM (decode): `m <= GEMV_MAX_M` rows of A against all of B.
//!
//! These problems are bound by reading B, so B is streamed exactly once, straight from its
//! storage, never packed, in long contiguous runs:
//!
//! - B stored k x n: rows of B are folded `axpy`-style into f32 accumulator rows that stay in
//!   cache. With several threads each takes a contiguous range of B's rows (a slab of memory
//!   read front to back) into its own partial sums, and a short finishing pass adds the
//!   partials and applies the epilogue.
//! - B stored n x k (weights as `[out, in]`): each thread takes a range of stored rows and
//!   dots groups of four with the rows of A.
//!
//! A is tiny and is widened to a contiguous f32 copy by the safe layer first.

use super::element::Element;
use super::epilogue::{self, Dest, Prev, RowEpi};
use super::simd::Simd;
use super::Activation;

/// Largest m the GEMV path takes when B is stored k x n.
pub(crate) const GEMV_MAX_M: usize = 4;

/// Largest m the GEMV path takes when B is stored n x k: packing B^T for the blocked path
/// costs more than these few rows of work, and the dot kernel reads B once for all rows.
pub(crate) const GEMV_MAX_M_TRANS_B: usize = 16;

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
    /// Columns of C.
    pub n: usize,
    /// Partial sums of `Partial` tasks: `parts x m x n` floats, or null when k is not split.
    pub partials: *mut f32,
    /// How many `Partial` tasks there are.
    pub parts: usize,
}

/// One piece of a GEMV-shaped problem.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GemvTask {
    /// Columns `c0..c1` of batch `batch`, all of k, epilogue included.
    Columns { batch: usize, c0: usize, c1: usize },
    /// Batch 0, rows `p0..p1` of B stored k x n, all columns, into partial sums `part`.
    Partial { part: usize, p0: usize, p1: usize },
    /// Batch 0, columns `c0..c1`: add the partial sums and apply the epilogue.
    Finish { c0: usize, c1: usize },
}

// SAFETY: built only by the safe layer from slices that outlive the call; tasks write
// disjoint column ranges of C.
unsafe impl<TB, TC> Sync for GemvJob<TB, TC> {}
// SAFETY: as for `Sync`.
unsafe impl<TB, TC> Send for GemvJob<TB, TC> {}

/// Columns of C one pass down B accumulates when B is stored k x n (8 KiB of f32 per row).
const AXPY_CHUNK: usize = 2048;

/// Runs one task.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - `job` was validated; `1 <= m <= GEMV_MAX_M`, `k >= 1`; column and row ranges are inside
///   C and B; `partials` holds `parts x m x n` floats when a task uses it.
/// - No other running task writes the same columns of C or the same partial sums, and every
///   `Partial` task has finished before any `Finish` task starts.
#[inline(always)]
pub(crate) unsafe fn run_task<S: Simd, TB: Element, TC: Element>(
    job: &GemvJob<TB, TC>,
    t: &GemvTask,
) {
    // SAFETY: forwarded caller contract.
    unsafe {
        match *t {
            GemvTask::Columns { batch, c0, c1 } => task_rows::<S, TB, TC>(job, batch, c0, c1),
            GemvTask::Partial { part, p0, p1 } => {
                let out = job.partials.add(part * job.m * job.n);
                let a = job.a.add(p0);
                let b = job.b.add(p0 * job.ldb);
                let (k, n) = (p1 - p0, job.n);
                let chunk = Chunk {
                    b,
                    ldb: job.ldb,
                    j0: 0,
                    cols: n,
                    out,
                    width: n,
                };
                match job.m {
                    1 => axpy_chunk::<S, TB, 1>(a, job.k, k, chunk),
                    2 => axpy_chunk::<S, TB, 2>(a, job.k, k, chunk),
                    3 => axpy_chunk::<S, TB, 3>(a, job.k, k, chunk),
                    _ => axpy_chunk::<S, TB, 4>(a, job.k, k, chunk),
                }
            }
            GemvTask::Finish { c0, c1 } => finish::<S, TB, TC>(job, c0, c1),
        }
    }
}

/// Adds the partial sums of columns `c0..c1` into part 0 and stores them through the
/// epilogue.
#[inline(always)]
unsafe fn finish<S: Simd, TB: Element, TC: Element>(job: &GemvJob<TB, TC>, c0: usize, c1: usize) {
    let (m, n, lanes) = (job.m, job.n, S::LANES);
    // SAFETY: see `run_task`; all indices are rows `< m` and columns `c0..c1 <= n`.
    unsafe {
        for r in 0..m {
            let dst = job.partials.add(r * n);
            for part in 1..job.parts {
                let src = job.partials.add((part * m + r) * n);
                let mut j = c0;
                while j + lanes <= c1 {
                    S::store(dst.add(j), S::add(S::load(dst.add(j)), S::load(src.add(j))));
                    j += lanes;
                }
                while j < c1 {
                    *dst.add(j) += *src.add(j);
                    j += 1;
                }
            }
            let dest = OutRows {
                c: job.c,
                residual: job.residual,
            };
            store_row::<S, TB, TC>(job, dest, r, c0, c1 - c0, dst.add(c0));
        }
    }
}

/// C and the residual of one batch.
#[derive(Clone, Copy)]
struct OutRows<TC> {
    c: *mut TC,
    /// Null when there is no residual.
    residual: *const TC,
}

/// Stores the `cols` sums at `sums` into row `r` of C from column `j` on, through the
/// epilogue (`beta`, bias, activation, residual).
///
/// # Safety
/// Row `r`, columns `j .. j + cols` lie inside C and the residual (when not null) of `out`
/// and inside the bias (when not null); `sums` holds `cols` floats.
#[inline(always)]
unsafe fn store_row<S: Simd, TB: Element, TC: Element>(
    job: &GemvJob<TB, TC>,
    out: OutRows<TC>,
    r: usize,
    j: usize,
    cols: usize,
    sums: *const f32,
) {
    // SAFETY: every offset is inside the operands, as the caller guarantees.
    unsafe {
        let crow = out.c.add(r * job.ldc + j);
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
                job.bias.add(j)
            },
            act: job.act,
            residual: if out.residual.is_null() {
                out.residual
            } else {
                out.residual.add(r * job.ld_residual + j)
            },
        };
        epilogue::row::<S, TC>(cols, sums, job.alpha, prev, Dest::Out(crow), &epi);
    }
}

/// A chunk of columns `j0 .. j0 + cols` of stored B (rows `ldb` apart) and the block in L1
/// that collects its sums (rows `width >= cols` floats apart). Passed by value into the
/// always-inlined loops, so its fields stay in registers as plain values would.
#[derive(Clone, Copy)]
struct Chunk<TB> {
    b: *const TB,
    ldb: usize,
    j0: usize,
    cols: usize,
    out: *mut f32,
    width: usize,
}

impl<TB> Chunk<TB> {
    /// `(b, ldb, j0, cols, out, width)`.
    #[inline(always)]
    fn parts(self) -> (*const TB, usize, usize, usize, *mut f32, usize) {
        (self.b, self.ldb, self.j0, self.cols, self.out, self.width)
    }
}

#[inline(always)]
unsafe fn task_rows<S: Simd, TB: Element, TC: Element>(
    job: &GemvJob<TB, TC>,
    batch: usize,
    c0: usize,
    c1: usize,
) {
    let nb = S::GEMV_NB;
    debug_assert!(nb <= 64 && nb == 4 * S::LANES);
    // SAFETY: every pointer stays inside the validated operands: rows of A `< m`, steps
    // `< k`, columns `< c1 <= n`; the block buffer holds `m x width` floats.
    unsafe {
        let a = job.a.add(batch * job.m * job.k);
        let b = job.b.add(batch * job.stride_b);
        let dest = OutRows {
            c: job.c.add(batch * job.stride_c),
            residual: if job.residual.is_null() {
                job.residual
            } else {
                job.residual.add(batch * job.stride_residual)
            },
        };
        // Dot products finish a few columns at a time; axpy rows accumulate a wide chunk of
        // columns in L1 so every stored row of B is read in long contiguous runs.
        let width = if job.trans_b { nb } else { AXPY_CHUNK };
        let m = job.m;
        let mut block = vec![0.0f32; m * width];
        let out = block.as_mut_ptr();
        let mut j0 = c0;
        while j0 < c1 {
            let cols = width.min(c1 - j0);
            let chunk = Chunk {
                b,
                ldb: job.ldb,
                j0,
                cols,
                out,
                width,
            };
            if job.trans_b {
                dot_block::<S, TB>(a, job.k, m, chunk);
            } else {
                let k = job.k;
                match m {
                    1 => axpy_chunk::<S, TB, 1>(a, k, k, chunk),
                    2 => axpy_chunk::<S, TB, 2>(a, k, k, chunk),
                    3 => axpy_chunk::<S, TB, 3>(a, k, k, chunk),
                    _ => axpy_chunk::<S, TB, 4>(a, k, k, chunk),
                }
            }
            for r in 0..m {
                store_row::<S, TB, TC>(job, dest, r, j0, cols, out.add(r * width));
            }
            j0 += cols;
        }
    }
}

/// `out[r][0..cols] = sum_p a[r * lda + p] * B[p][j0 + ..]`, `p < k`, for B stored k x n.
///
/// Four stored rows of B at a time are folded into the accumulator rows, which stay in L1:
/// per vector of columns, four loads of B, `RM` loads and stores of the accumulators and
/// `4 RM` fused multiply-adds.
#[inline(always)]
unsafe fn axpy_chunk<S: Simd, TB: Element, const RM: usize>(
    a: *const f32,
    lda: usize,
    k: usize,
    chunk: Chunk<TB>,
) {
    let (b, ldb, j0, cols, out, width) = chunk.parts();
    const STEP: usize = 4;
    let lanes = S::LANES;
    let full = cols / lanes * lanes;
    // SAFETY: see `task_rows`: rows `p < k` of B, columns `j0 .. j0 + cols`; accumulator
    // rows `r < RM` of `width >= cols` floats.
    unsafe {
        for r in 0..RM {
            core::ptr::write_bytes(out.add(r * width), 0, cols);
        }
        let mut p = 0;
        while p < k {
            let steps = STEP.min(k - p);
            let mut rows = [b; STEP];
            let mut av = [[S::zero(); STEP]; RM];
            let mut ascalar = [[0.0f32; STEP]; RM];
            for q in 0..STEP {
                // Steps past k repeat the last row with a zero weight: same result, no branch.
                let pq = p + q.min(steps - 1);
                rows[q] = b.add(pq * ldb + j0);
                for r in 0..RM {
                    let w = if q < steps { *a.add(r * lda + pq) } else { 0.0 };
                    ascalar[r][q] = w;
                    av[r][q] = S::splat(w);
                }
            }
            let mut j = 0;
            while j < full {
                let mut bv = [S::zero(); STEP];
                for (q, slot) in bv.iter_mut().enumerate() {
                    *slot = S::load_elem::<TB>(rows[q].add(j));
                }
                for (r, weights) in av.iter().enumerate() {
                    let o = out.add(r * width + j);
                    let mut x = S::load(o);
                    for (w, bq) in weights.iter().zip(bv.iter()) {
                        x = S::fma(*w, *bq, x);
                    }
                    S::store(o, x);
                }
                j += lanes;
            }
            while j < cols {
                for (r, weights) in ascalar.iter().enumerate() {
                    let o = out.add(r * width + j);
                    for (w, row) in weights.iter().zip(rows.iter()) {
                        *o += *w * (*row.add(j)).to_f32();
                    }
                }
                j += 1;
            }
            p += STEP;
        }
    }
}

/// `out[r][0..cols] = sum_p a[r][p] * B[j0 + ..][p]` for B stored n x k, `r < m`.
///
/// For each group of four stored rows of B, every group of up to four rows of A is dotted
/// with it; the group of B (four rows of k) stays in L1 or L2 between the row groups, so B is
/// read from memory once.
#[inline(always)]
unsafe fn dot_block<S: Simd, TB: Element>(a: *const f32, k: usize, m: usize, chunk: Chunk<TB>) {
    let (b, ldb, j0, cols, out, width) = chunk.parts();
    // SAFETY: see `task_rows`; stored rows past `cols` are clamped to the last valid one and
    // their sums discarded.
    unsafe {
        let mut g = 0;
        while g < cols {
            let mut rows = [b; DOT_GROUP];
            for (jj, row) in rows.iter_mut().enumerate() {
                *row = b.add((j0 + (g + jj).min(cols - 1)) * ldb);
            }
            let valid = DOT_GROUP.min(cols - g);
            let mut r0 = 0;
            while r0 < m {
                let ar = a.add(r0 * k);
                let o = out.add(r0 * width + g);
                match m - r0 {
                    1 => dot_group::<S, TB, 1>(ar, k, &rows, o, width, valid),
                    2 => dot_group::<S, TB, 2>(ar, k, &rows, o, width, valid),
                    3 => dot_group::<S, TB, 3>(ar, k, &rows, o, width, valid),
                    _ => dot_group::<S, TB, 4>(ar, k, &rows, o, width, valid),
                }
                r0 += 4;
            }
            g += DOT_GROUP;
        }
    }
}

/// `out[r][jj] = dot(a[r], rows[jj])` for `r < RM`, `jj < valid`; `a` rows are `k` apart.
#[inline(always)]
unsafe fn dot_group<S: Simd, TB: Element, const RM: usize>(
    a: *const f32,
    k: usize,
    rows: &[*const TB; DOT_GROUP],
    out: *mut f32,
    width: usize,
    valid: usize,
) {
    let lanes = S::LANES;
    // SAFETY: the caller passes RM rows of A of k floats and DOT_GROUP rows of B of k
    // elements; the k tail uses partial loads; `out` holds RM rows of `valid` floats.
    unsafe {
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
            for (jj, slot) in row.iter().enumerate().take(valid) {
                *out.add(r * width + jj) = S::hsum(*slot);
            }
        }
    }
}
