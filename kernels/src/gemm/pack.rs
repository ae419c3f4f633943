//! Packing: copies a block of op(A) or op(B) into the contiguous, zero-padded panel layout the
//! microkernel reads, widening f16 and bf16 to f32 on the way.
//!
//! A block of op(A) (`mcur x kcur`) becomes `ceil(mcur / MR)` panels; panel `r` holds, for each
//! step `p`, the `MR` values `op(A)[r*MR + i][p]` side by side. A block of op(B) (`kcur x ncur`)
//! becomes `ceil(ncur / NR)` panels of `kcur` rows of `NR` values. Rows or columns past the
//! edge are zero, so edge tiles run the same microkernel.

use super::element::{Dtype, Element};
use super::simd::Simd;

/// Where a block of an operand lives in its (already batch-offset) storage.
#[derive(Clone, Copy)]
pub(crate) struct Source<T> {
    /// Element (0, 0) of the operand as stored.
    pub ptr: *const T,
    /// Distance between stored rows.
    pub ld: usize,
    /// Whether the stored matrix is the transpose of the logical one.
    pub trans: bool,
}

/// Packs `op(A)[i0 .. i0 + mcur][p0 .. p0 + kcur]` into `MR`-row panels at `dst`.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - The block lies inside the operand `src` describes.
/// - `dst` has room for `ceil(mcur / MR) * MR * kcur` floats and `tmp` for `MR * kcur`.
#[inline(always)]
pub(crate) unsafe fn pack_a<S: Simd, T: Element>(
    src: Source<T>,
    i0: usize,
    mcur: usize,
    p0: usize,
    kcur: usize,
    dst: *mut f32,
    tmp: *mut f32,
) {
    let mr = S::MR;
    // SAFETY: all reads are of rows `i0 .. i0 + mcur` and steps `p0 .. p0 + kcur` of the
    // operand; all writes are inside the panel sizes above.
    unsafe {
        let mut ir = 0;
        while ir < mcur {
            let rows = mr.min(mcur - ir);
            let out = dst.add(ir * kcur);
            if src.trans {
                // Stored k x m: each step's MR values are contiguous.
                for p in 0..kcur {
                    let s = src.ptr.add((p0 + p) * src.ld + i0 + ir);
                    S::widen_run(s, rows, out.add(p * mr));
                    for i in rows..mr {
                        *out.add(p * mr + i) = 0.0;
                    }
                }
            } else if T::DTYPE == Dtype::F32 {
                // Stored m x k: gather MR rows step by step.
                let base = src.ptr as *const f32;
                for p in 0..kcur {
                    for i in 0..mr {
                        // Volatile: keeps the gather scalar (a vector gather is microcoded).
                        *out.add(p * mr + i) = if i < rows {
                            core::ptr::read_volatile(base.add((i0 + ir + i) * src.ld + p0 + p))
                        } else {
                            0.0
                        };
                    }
                }
            } else {
                // Widen each row once, then interleave from the f32 copy.
                for i in 0..rows {
                    let s = src.ptr.add((i0 + ir + i) * src.ld + p0);
                    S::widen_run(s, kcur, tmp.add(i * kcur));
                }
                for p in 0..kcur {
                    for i in 0..mr {
                        // Volatile: keeps the gather scalar (a vector gather is microcoded).
                        *out.add(p * mr + i) = if i < rows {
                            core::ptr::read_volatile(tmp.add(i * kcur + p))
                        } else {
                            0.0
                        };
                    }
                }
            }
            ir += mr;
        }
    }
}

/// Packs `op(B)[p0 .. p0 + kcur][j0 .. j0 + ncur]` into `NR`-column panels at `dst`.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - The block lies inside the operand `src` describes.
/// - `dst` has room for `ceil(ncur / NR) * NR * kcur` floats and `tmp` for `NR * kcur`.
#[inline(always)]
pub(crate) unsafe fn pack_b<S: Simd, T: Element>(
    src: Source<T>,
    p0: usize,
    kcur: usize,
    j0: usize,
    ncur: usize,
    dst: *mut f32,
    tmp: *mut f32,
) {
    let nr = S::NR;
    // SAFETY: all reads are of steps `p0 .. p0 + kcur` and columns `j0 .. j0 + ncur` of the
    // operand; all writes are inside the panel sizes above.
    unsafe {
        if !src.trans {
            // Stored k x n: walk B row by row, so memory is read front to back (one long
            // run per step instead of NR-wide slivers `ld` apart, which the prefetchers do
            // not follow), and deal each row's NR-wide pieces out to the panels.
            for p in 0..kcur {
                let row = src.ptr.add((p0 + p) * src.ld + j0);
                let mut jr = 0;
                while jr < ncur {
                    let cols = nr.min(ncur - jr);
                    let out = dst.add(jr * kcur + p * nr);
                    S::widen_run(row.add(jr), cols, out);
                    for j in cols..nr {
                        *out.add(j) = 0.0;
                    }
                    jr += nr;
                }
            }
            return;
        }
        let mut jr = 0;
        while jr < ncur {
            let cols = nr.min(ncur - jr);
            let out = dst.add(jr * kcur);
            {
                // Stored n x k: a transpose. Rows of B are `ld` apart, often a multiple of
                // 4 KiB, so walking all NR rows at the same step would hit one cache set;
                // instead take a cache line of each row at a time (16 steps) and scatter it
                // into the 16 panel rows, which stay in L1. Volatile accesses keep the copy
                // scalar: vectorised, it becomes a scatter, which is microcoded and slow.
                let (rows, row_stride) = if T::DTYPE == Dtype::F32 {
                    ((src.ptr as *const f32).add((j0 + jr) * src.ld + p0), src.ld)
                } else {
                    for j in 0..cols {
                        let s = src.ptr.add((j0 + jr + j) * src.ld + p0);
                        S::widen_run(s, kcur, tmp.add(j * kcur));
                    }
                    (tmp as *const f32, kcur)
                };
                const STEPS: usize = 16;
                let mut pb = 0;
                while pb < kcur {
                    let steps = STEPS.min(kcur - pb);
                    for j in 0..nr {
                        let o = out.add(pb * nr + j);
                        let r = rows.add(j * row_stride + pb);
                        for q in 0..steps {
                            let v = if j < cols {
                                core::ptr::read_volatile(r.add(q))
                            } else {
                                0.0
                            };
                            core::ptr::write_volatile(o.add(q * nr), v);
                        }
                    }
                    pb += steps;
                }
            }
            jr += nr;
        }
    }
}
