//! The blocked (BLIS-structured) GEMM: cache blocking, per-thread packing buffers, and the
//! loop nest around the microkernel.
//!
//! Loop order for one task (a rectangle of C in one batch):
//!
//! ```text
//! for jc in columns, step NC           B block kcur x NC: L3
//!   for pc in 0..k, step KC
//!     pack B block
//!     for ic in rows, step MC          A block MC x kcur: L2
//!       pack A block
//!       for jr in block, step NR       B sliver kcur x NR: L1
//!         for ir in block, step MR     A sliver from L2
//!           microkernel -> tile (L1) -> epilogue row by row -> C
//! ```
//!
//! Tasks split C into rectangles that never overlap, so they run in parallel without locks;
//! each packs what it needs into its own thread-local buffers, reused from call to call.
//! This layer trusts the safe layer (`mod.rs`) to have validated every extent.

use std::cell::RefCell;

use super::element::{Dtype, Element};
use super::epilogue::{self, Dest, Prev, RowEpi};
use super::microkernel::MicroArgs;
use super::pack::{self, Source};
use super::simd::Simd;
use super::Activation;

/// A validated GEMM problem as raw pointers, shared by all its tasks.
pub(crate) struct Job<TA, TB, TC> {
    pub a: *const TA,
    pub b: *const TB,
    pub c: *mut TC,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    /// Bias per column (`n` values), or null.
    pub bias: *const f32,
    pub act: Activation,
    /// Residual, or null.
    pub residual: *const TC,
    pub ld_residual: usize,
    pub stride_residual: usize,
    /// Depth of a k-block.
    pub kc: usize,
    /// Rows of an A block.
    pub mc: usize,
    /// Columns of a B block.
    pub nc: usize,
}

// SAFETY: a `Job` is only built by the safe layer from borrowed slices that outlive the
// call, and tasks built from it write disjoint parts of C (checked by `plan`), so sharing the
// pointers between the threads of one call is sound.
unsafe impl<TA, TB, TC> Sync for Job<TA, TB, TC> {}
// SAFETY: as for `Sync`.
unsafe impl<TA, TB, TC> Send for Job<TA, TB, TC> {}

/// One task: rows `r0..r1` and columns `c0..c1` of C in batch `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Task {
    pub batch: usize,
    pub r0: usize,
    pub r1: usize,
    pub c0: usize,
    pub c1: usize,
}

/// Column ranges of at most this many `NR` panels read f32 A in place instead of packing it.
pub(crate) const DIRECT_A_MAX_PANELS: usize = 4;

/// Tasks of at most this many `MR` row panels read f32 B in place instead of packing it.
const DIRECT_B_MAX_PANELS: usize = 2;

/// Largest B block (elements) read in place: 8 MiB of f32, well inside L3.
const DIRECT_B_MAX_ELEMS: usize = 1 << 21;

/// A B block of at most this many elements (256 KiB of f32, a quarter of L2) is read in
/// place whatever the task's height: it stays in cache, so packing it would only add a copy
/// (at 64^3 the copy costs a fifth of the arithmetic).
const DIRECT_B_SMALL_ELEMS: usize = 1 << 16;

/// The largest `f32` partial-sum buffer a task keeps when C is f16 or bf16 and k is split.
const MAX_ACC_FLOATS: usize = 1 << 20;

/// Chooses `kc`, `mc`, `nc` for a problem: the instruction set's blocks, shrunk to the
/// problem and balanced so the last block is not a sliver.
pub(crate) fn blocking<S: Simd>(
    m: usize,
    n: usize,
    k: usize,
    rows_per_task: usize,
    out: Dtype,
) -> (usize, usize, usize) {
    let balanced = |len: usize, max: usize, unit: usize| -> usize {
        if len == 0 {
            return unit;
        }
        let blocks = len.div_ceil(max);
        len.div_ceil(blocks).div_ceil(unit) * unit
    };
    let kc = balanced(k, S::KC, 1);
    let mc = balanced(m.min(rows_per_task), S::MC, S::MR);
    let mut nc = balanced(n, S::NC, S::NR);
    if out != Dtype::F32 && k > kc {
        // The f32 partial sums of a whole task's rows must stay a modest buffer.
        let cap = (MAX_ACC_FLOATS / rows_per_task.max(1)) / S::NR * S::NR;
        nc = nc.min(cap.max(4 * S::NR));
    }
    (kc, mc, nc)
}

/// Splits the problem into at most `threads` tasks over disjoint rectangles of C.
pub(crate) fn plan(
    batch: usize,
    m: usize,
    n: usize,
    mr: usize,
    nr: usize,
    threads: usize,
) -> Vec<Task> {
    let mut tasks = Vec::new();
    if batch >= threads || threads <= 1 {
        for b in 0..batch {
            tasks.push(Task {
                batch: b,
                r0: 0,
                r1: m,
                c0: 0,
                c1: n,
            });
        }
        return tasks;
    }
    let per_batch = threads / batch;
    let tiles_m = m.div_ceil(mr);
    let tiles_n = n.div_ceil(nr);
    // Choose the grid with the cheapest largest task: its padded area of C (2k flops per
    // element, ~32 flops a cycle) plus what it packs (k times its rows and its columns, about
    // a cycle per element). Ties prefer splitting rows.
    let mut best = (usize::MAX, 1, 1);
    for tm in 1..=per_batch {
        let tn = per_batch / tm;
        if tm * tn != per_batch || tm > tiles_m || tn > tiles_n {
            continue;
        }
        let rows = tiles_m.div_ceil(tm) * mr;
        let cols = tiles_n.div_ceil(tn) * nr;
        let cost = rows * cols / 16 + rows + cols;
        if cost < best.0 || (cost == best.0 && tm > best.1) {
            best = (cost, tm, tn);
        }
    }
    let (_, tm, tn) = best;
    let rows_per = tiles_m.div_ceil(tm) * mr;
    let cols_per = tiles_n.div_ceil(tn) * nr;
    for b in 0..batch {
        for ti in 0..tm {
            let r0 = ti * rows_per;
            if r0 >= m {
                break;
            }
            for tj in 0..tn {
                let c0 = tj * cols_per;
                if c0 >= n {
                    break;
                }
                tasks.push(Task {
                    batch: b,
                    r0,
                    r1: (r0 + rows_per).min(m),
                    c0,
                    c1: (c0 + cols_per).min(n),
                });
            }
        }
    }
    tasks
}

/// A 64-byte-aligned view into a growable buffer of floats.
#[derive(Default)]
struct AlignedBuf(Vec<f32>);

impl AlignedBuf {
    /// A pointer to `len` floats aligned to 64 bytes, valid until the next call.
    fn get(&mut self, len: usize) -> *mut f32 {
        if self.0.len() < len + 16 {
            self.0.resize(len + 16, 0.0);
        }
        let p = self.0.as_mut_ptr();
        let off = p.align_offset(64).min(15);
        // SAFETY: `off <= 15` and the buffer holds `len + 16` floats.
        unsafe { p.add(off) }
    }
}

/// The packing buffers of one thread, reused across calls.
#[derive(Default)]
struct Buffers {
    a: AlignedBuf,
    b: AlignedBuf,
    tmp: AlignedBuf,
    acc: AlignedBuf,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// A register tile's landing place: large enough for every instruction set's `MR x NR`.
#[repr(align(64))]
struct Tile([f32; 512]);

/// Runs one task.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - `job` was validated (every operand holds what its shape, strides and batch address).
/// - No other running task writes rows `t.r0..t.r1` x columns `t.c0..t.c1` of batch `t.batch`.
#[inline(always)]
pub(crate) unsafe fn run_task<S: Simd, TA: Element, TB: Element, TC: Element>(
    job: &Job<TA, TB, TC>,
    t: &Task,
) {
    // Take this thread's buffers for the task and give them back after. No closure wraps the
    // work: a closure would not inherit the caller's target features. A task that runs
    // inside another on the same thread finds the slot empty and allocates its own.
    let mut bufs = BUFFERS.try_with(RefCell::take).unwrap_or_default();
    // SAFETY: forwarded caller contract.
    unsafe { run_task_in::<S, TA, TB, TC>(job, t, &mut bufs) };
    let _ = BUFFERS.try_with(|cell| cell.replace(bufs));
}

/// The epilogue pieces for row `i`, from column `j` on.
#[inline(always)]
unsafe fn row_epi<TC>(
    bias: *const f32,
    act: Activation,
    residual: *const TC,
    ld_residual: usize,
    i: usize,
    j: usize,
) -> RowEpi<TC> {
    // SAFETY: the caller passes a row and column inside the validated bias and residual.
    unsafe {
        RowEpi {
            bias: if bias.is_null() { bias } else { bias.add(j) },
            act,
            residual: if residual.is_null() {
                residual
            } else {
                residual.add(i * ld_residual + j)
            },
        }
    }
}

/// What comes before the first k-block: `beta * C`, or nothing when `beta == 0`.
#[inline(always)]
fn first_prev<TC>(beta: f32, crow: *const TC) -> Prev<TC> {
    if beta == 0.0 {
        Prev::Zero
    } else {
        Prev::Out { p: crow, beta }
    }
}

#[inline(always)]
unsafe fn run_task_in<S: Simd, TA: Element, TB: Element, TC: Element>(
    job: &Job<TA, TB, TC>,
    t: &Task,
    bufs: &mut Buffers,
) {
    let (mr, nr) = (S::MR, S::NR);
    debug_assert!(mr * nr <= 512);
    // SAFETY: offsets stay inside the validated operands (caller contract); buffer sizes
    // below match what `pack_a`, `pack_b`, the microkernel and the epilogue touch.
    unsafe {
        let c = job.c.add(t.batch * job.stride_c);
        let residual = if job.residual.is_null() {
            job.residual
        } else {
            job.residual.add(t.batch * job.stride_residual)
        };
        if job.k == 0 || job.alpha == 0.0 {
            // No product: C = act(beta * C + bias) + residual, A and B are not read.
            for i in t.r0..t.r1 {
                let crow = c.add(i * job.ldc + t.c0);
                epilogue::row::<S, TC>(
                    t.c1 - t.c0,
                    core::ptr::null(),
                    job.alpha,
                    first_prev(job.beta, crow),
                    Dest::Out(crow),
                    &row_epi(job.bias, job.act, residual, job.ld_residual, i, t.c0),
                );
            }
            return;
        }

        let a_src = Source {
            ptr: job.a.add(t.batch * job.stride_a),
            ld: job.lda,
            trans: job.trans_a,
        };
        let b_src = Source {
            ptr: job.b.add(t.batch * job.stride_b),
            ld: job.ldb,
            trans: job.trans_b,
        };
        let (kc, mc, nc) = (job.kc, job.mc, job.nc);
        let rows = t.r1 - t.r0;
        let use_acc = TC::DTYPE != Dtype::F32 && job.k > kc;
        let abuf = bufs.a.get(mc.div_ceil(mr) * mr * kc);
        let bbuf = bufs.b.get(nc.div_ceil(nr) * nr * kc);
        let tmp = bufs.tmp.get(mr.max(nr) * kc);
        let accbuf = if use_acc {
            bufs.acc.get(rows * nc)
        } else {
            core::ptr::null_mut()
        };
        let mut tile = Tile([0.0; 512]);
        let tile = tile.0.as_mut_ptr();

        // Small column ranges reuse a packed A block only a few times: read f32 A in place.
        let direct_a = TA::DTYPE == Dtype::F32 && t.c1 - t.c0 <= DIRECT_A_MAX_PANELS * nr;
        let (a_rs, a_cs) = if job.trans_a {
            (1, job.lda)
        } else {
            (job.lda, 1)
        };
        let has_epilogue =
            !job.bias.is_null() || job.act != Activation::None || !residual.is_null();
        let direct_c_ok = TC::DTYPE == Dtype::F32 && !use_acc;
        // Few rows reuse a packed B panel only once or twice: read f32 B (k x n) in place,
        // when it is small enough to come from cache (strided slivers of a B streaming from
        // memory defeat the prefetchers; packing reads it front to back).
        let direct_b = TB::DTYPE == Dtype::F32
            && !job.trans_b
            && ((rows <= DIRECT_B_MAX_PANELS * mr && job.k * (t.c1 - t.c0) <= DIRECT_B_MAX_ELEMS)
                || job.k * (t.c1 - t.c0) <= DIRECT_B_SMALL_ELEMS);

        let mut jc = t.c0;
        while jc < t.c1 {
            let ncur = nc.min(t.c1 - jc);
            let mut pc = 0;
            while pc < job.k {
                let kcur = kc.min(job.k - pc);
                let first = pc == 0;
                let last = pc + kcur == job.k;
                let full_cols = ncur / nr * nr;
                if !direct_b {
                    pack::pack_b::<S, TB>(b_src, pc, kcur, jc, ncur, bbuf, tmp);
                } else if full_cols < ncur {
                    // Only the ragged last panel is packed (zero-padded).
                    pack::pack_b::<S, TB>(
                        b_src,
                        pc,
                        kcur,
                        jc + full_cols,
                        ncur - full_cols,
                        bbuf,
                        tmp,
                    );
                }
                let mut ic = t.r0;
                while ic < t.r1 {
                    let mcur = mc.min(t.r1 - ic);
                    if !direct_a {
                        pack::pack_a::<S, TA>(a_src, ic, mcur, pc, kcur, abuf, tmp);
                    }
                    let mut jr = 0;
                    while jr < ncur {
                        let cols = nr.min(ncur - jr);
                        let (bp, b_rs) = if !direct_b {
                            (bbuf.add(jr * kcur) as *const f32, nr)
                        } else if cols == nr {
                            (
                                (b_src.ptr as *const f32).add(pc * job.ldb + jc + jr),
                                job.ldb,
                            )
                        } else {
                            (bbuf as *const f32, nr)
                        };
                        let mut ir = 0;
                        while ir < mcur {
                            let nrows = mr.min(mcur - ir);
                            let i0 = ic + ir;
                            let j = jc + jr;
                            // A ragged last row sliver runs a kernel of exactly its height
                            // (no multiplications by packing's zero rows): 16 rows cost
                            // 12 + 4 rows of work, not 24.
                            let (a_ptr, rs, cs) = if direct_a {
                                (
                                    (a_src.ptr as *const f32).add(i0 * a_rs + pc * a_cs),
                                    a_rs,
                                    a_cs,
                                )
                            } else {
                                (abuf.add(ir * kcur) as *const f32, 1, mr)
                            };
                            let direct_c = direct_c_ok && cols == nr && !(last && has_epilogue);
                            let mut args = MicroArgs {
                                kc: kcur,
                                a: a_ptr,
                                a_rs: rs,
                                a_cs: cs,
                                b: bp,
                                b_rs,
                                out: tile,
                                ldo: nr,
                                alpha: 1.0,
                                beta: 0.0,
                            };
                            if direct_c {
                                // The tile goes straight to C: alpha * AB (+ beta C, or + the
                                // previous k-blocks' sum).
                                args.out = c.add(i0 * job.ldc + j) as *mut f32;
                                args.ldo = job.ldc;
                                args.alpha = job.alpha;
                                args.beta = if first { job.beta } else { 1.0 };
                            }
                            if nrows < mr {
                                S::microkernel_strided_rows(&args, nrows);
                            } else if direct_a {
                                S::microkernel_strided(&args);
                            } else {
                                S::microkernel(&args);
                            }
                            if direct_c {
                                ir += mr;
                                continue;
                            }
                            for ii in 0..nrows {
                                let i = i0 + ii;
                                let crow = c.add(i * job.ldc + j);
                                let accrow = if use_acc {
                                    accbuf.add((i - t.r0) * nc + jr)
                                } else {
                                    crow as *mut f32
                                };
                                let prev = if first {
                                    first_prev(job.beta, crow)
                                } else {
                                    Prev::Acc(accrow)
                                };
                                let dest = if last {
                                    Dest::Out(crow)
                                } else {
                                    Dest::Acc(accrow)
                                };
                                epilogue::row::<S, TC>(
                                    cols,
                                    tile.add(ii * nr),
                                    job.alpha,
                                    prev,
                                    dest,
                                    &row_epi(job.bias, job.act, residual, job.ld_residual, i, j),
                                );
                            }
                            ir += mr;
                        }
                        jr += nr;
                    }
                    ic += mc;
                }
                pc += kcur;
            }
            jc += ncur;
        }
    }
}
