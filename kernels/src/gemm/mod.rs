//! GEMM: `C = act(alpha * op(A) op(B) + beta * C + bias) + residual`, batched and strided,
//! for f32, f16 and bf16, on every instruction set path.
//!
//! # Layout
//!
//! Matrices are row-major: element `(i, j)` of a stored matrix with leading dimension `ld`
//! is at `i * ld + j`. `op(A)` is `m x k`: A is stored `m x k` (`lda >= k`), or with
//! [`GemmDesc::trans_a`] `k x m` (`lda >= m`). Likewise `op(B)`
//! is `k x n`, stored `k x n` (`ldb >= n`) or `n x k` (`ldb >= k`; weights laid out
//! `[out, in]` are this case). C is `m x n` with `ldc >= n`. Batch `i` of an operand starts
//! `i * stride` elements into its slice; a stride of 0 reuses one A or B for every batch,
//! but batches of C may not overlap.
//!
//! # Semantics
//!
//! - Products accumulate in f32; f16 and bf16 inputs are widened to f32 exactly while they are
//!   packed, and an f16 or bf16 C is rounded (to nearest even) once, at the end.
//! - The epilogue is fused: `D = act(alpha * op(A) op(B) + beta * C + bias) + residual`, with
//!   bias per output column, applied while each tile is in registers or L1.
//! - `beta == 0` overwrites C without reading it, as BLAS does: NaN or infinity already in C
//!   does not propagate then. Otherwise NaN and infinity propagate as IEEE arithmetic says.
//! - `k == 0` or `alpha == 0` is still a full call: `C = act(beta * C + bias) + residual`,
//!   and A and B are not read (as in BLAS, a NaN in A or B then does not propagate).
//!   `m == 0`, `n == 0` or `batch == 0` does nothing.
//! - Leading dimensions below the minimum, batch strides that make batches of C overlap,
//!   short slices and bias or residual of the wrong size are errors, reported before any
//!   work. C cannot overlap A, B or the residual: safe Rust cannot hand out a `&mut` slice
//!   that aliases a `&` slice, so that check is the borrow checker's.
//!
//! # Paths
//!
//! `m <= 4` (`m <= 16` when B is stored transposed) takes the GEMV path (`gemv.rs`), which
//! streams B once without packing it. Larger
//! problems take the BLIS-structured blocked path (`blocked.rs`, `pack.rs`,
//! `microkernel.rs`). Both run on the instruction set [`crate::isa::active`] picks, or the one
//! an [`Exec`] given to [`gemm`] names.

mod blocked;
mod element;
mod epilogue;
mod gemv;
mod microkernel;
mod pack;
mod simd;

use crate::par::for_each_task as for_each;

use crate::error::KernelError;
use crate::isa::{Exec, Isa};
use crate::par::Parallelism;

pub use element::{Dtype, Element};

use blocked::Job;
use gemv::{GemvJob, GemvTask, GEMV_MAX_M, GEMV_MAX_M_TRANS_B};
use simd::Simd;

/// The activation of the fused epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`; NaN stays NaN.
    Relu,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    GeluErf,
    /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
    GeluTanh,
    /// `x * sigmoid(x)`.
    Silu,
}

/// Shapes, transposes, leading dimensions, batch strides (all counts in elements) and scalars
/// of a GEMM. [`GemmDesc::new`] gives `C = A B`, one batch, dense row-major operands,
/// `alpha = 1`, `beta = 0`; the builder methods change one aspect each, or set the fields.
///
/// The runtime's launcher takes this same description (`knpu::ops::Gemm`), so a GEMM is
/// described one way from the kernels up to Python and C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmDesc {
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// A is stored transposed, `k x m` (`[k, m]`).
    pub trans_a: bool,
    /// B is stored transposed, `n x k` (`[n, k]`, the `nn.Linear` weight layout).
    pub trans_b: bool,
    /// Leading dimension of A as stored.
    pub lda: usize,
    /// Leading dimension of B as stored.
    pub ldb: usize,
    /// Leading dimension of C.
    pub ldc: usize,
    /// Number of independent products.
    pub batch: usize,
    /// Elements between consecutive batches of A (0: one A for all).
    pub stride_a: usize,
    /// Elements between consecutive batches of B (0: one B for all).
    pub stride_b: usize,
    /// Elements between consecutive batches of C.
    pub stride_c: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the incoming C (0: C is overwritten without being read).
    pub beta: f32,
}

impl GemmDesc {
    /// `C = A B` with A `m x k`, B `k x n`, C `m x n`, dense, one batch, `alpha = 1`,
    /// `beta = 0`.
    ///
    /// Never panics: the batch strides it sets saturate (with one batch they address
    /// nothing), and every entry point checks each extent, so a shape too large for memory is
    /// refused naming the operand.
    pub fn new(m: usize, n: usize, k: usize) -> GemmDesc {
        GemmDesc {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            lda: k,
            ldb: n,
            ldc: n,
            batch: 1,
            stride_a: m.saturating_mul(k),
            stride_b: k.saturating_mul(n),
            stride_c: m.saturating_mul(n),
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// A is stored `k x m` (dense: `lda = m`).
    pub fn transpose_a(mut self) -> GemmDesc {
        self.trans_a = true;
        self.lda = self.m;
        self
    }

    /// B is stored `n x k` (dense: `ldb = k`), as `nn.Linear` weights are.
    pub fn transpose_b(mut self) -> GemmDesc {
        self.trans_b = true;
        self.ldb = self.k;
        self
    }

    /// Sets the leading dimensions.
    pub fn ld(mut self, lda: usize, ldb: usize, ldc: usize) -> GemmDesc {
        self.lda = lda;
        self.ldb = ldb;
        self.ldc = ldc;
        self
    }

    /// `batch` products, each operand's batches `stride_*` elements apart.
    pub fn batched(
        mut self,
        batch: usize,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
    ) -> GemmDesc {
        self.batch = batch;
        self.stride_a = stride_a;
        self.stride_b = stride_b;
        self.stride_c = stride_c;
        self
    }

    /// Sets `alpha` and `beta`.
    pub fn scale(mut self, alpha: f32, beta: f32) -> GemmDesc {
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// Floating-point operations of the product (`2 m n k` per batch).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }
}

/// A residual added after the activation: `m x n` per batch, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Residual<'a, T> {
    /// The values.
    pub data: &'a [T],
    /// Leading dimension (`>= n`).
    pub ld: usize,
    /// Elements between batches (0: one residual for all).
    pub batch_stride: usize,
}

/// The fused epilogue: `D = act(alpha * op(A) op(B) + beta * C + bias) + residual`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a, TC> {
    /// Bias per output column (`n` values), shared by all rows and batches.
    pub bias: Option<&'a [f32]>,
    /// The activation.
    pub activation: Activation,
    /// The residual.
    pub residual: Option<Residual<'a, TC>>,
}

impl<TC> Epilogue<'_, TC> {
    /// No bias, no activation, no residual.
    pub fn none() -> Self {
        Epilogue {
            bias: None,
            activation: Activation::None,
            residual: None,
        }
    }
}

impl<TC> Default for Epilogue<'_, TC> {
    fn default() -> Self {
        Self::none()
    }
}

/// Runs GEMM on the instruction set and threads `exec` names: a [`Parallelism`] alone runs on
/// the instruction set [`crate::isa::active`] picks. An instruction set the host lacks is
/// [`KernelError::Unsupported`]. See the module documentation.
pub fn gemm<TA: Element, TB: Element, TC: Element>(
    desc: &GemmDesc,
    a: &[TA],
    b: &[TB],
    c: &mut [TC],
    epilogue: &Epilogue<'_, TC>,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    validate(desc, a.len(), b.len(), c.len(), epilogue)?;
    isa.require()?;
    let ops = Operands { a, b, c, epilogue };
    match isa {
        Isa::Portable => run::<simd::portable::Portable, TA, TB, TC>(desc, ops, par),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => run::<simd::avx2::Avx2, TA, TB, TC>(desc, ops, par),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => run::<simd::avx512::Avx512, TA, TB, TC>(desc, ops, par),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("is_supported() is false for x86 paths on other targets"),
    }
    Ok(())
}

/// Elements a `rows x cols` matrix with leading dimension `ld`, repeated `batch` times
/// `stride` apart, addresses; `None` on overflow.
fn span(rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> Option<usize> {
    if rows == 0 || cols == 0 || batch == 0 {
        return Some(0);
    }
    (batch - 1)
        .checked_mul(stride)?
        .checked_add((rows - 1).checked_mul(ld)?)?
        .checked_add(cols)
}

fn check_operand(
    operand: &'static str,
    rows: usize,
    cols: usize,
    ld: usize,
    batch: usize,
    stride: usize,
    len: usize,
) -> Result<(), KernelError> {
    if ld < cols {
        return Err(KernelError::BadStride {
            operand,
            detail: format!("leading dimension {ld} is below the {cols} stored columns"),
        });
    }
    let required = span(rows, cols, ld, batch, stride).ok_or_else(|| KernelError::BadShape {
        detail: format!("operand `{operand}` addresses more elements than fit in usize"),
    })?;
    if len < required {
        return Err(KernelError::SliceTooShort {
            operand,
            required,
            actual: len,
        });
    }
    Ok(())
}

fn validate<TC>(
    d: &GemmDesc,
    a: usize,
    b: usize,
    c: usize,
    epi: &Epilogue<'_, TC>,
) -> Result<(), KernelError> {
    let (ar, ac) = if d.trans_a { (d.k, d.m) } else { (d.m, d.k) };
    let (br, bc) = if d.trans_b { (d.n, d.k) } else { (d.k, d.n) };
    check_operand("a", ar, ac, d.lda, d.batch, d.stride_a, a)?;
    check_operand("b", br, bc, d.ldb, d.batch, d.stride_b, b)?;
    check_operand("c", d.m, d.n, d.ldc, d.batch, d.stride_c, c)?;
    if d.batch > 1 && d.m > 0 && d.n > 0 {
        let one = (d.m - 1) * d.ldc + d.n;
        if d.stride_c < one {
            return Err(KernelError::BadStride {
                operand: "c",
                detail: format!(
                    "batch stride {} makes batches of C overlap (each spans {one})",
                    d.stride_c
                ),
            });
        }
    }
    if let Some(bias) = epi.bias {
        if bias.len() < d.n {
            return Err(KernelError::SliceTooShort {
                operand: "bias",
                required: d.n,
                actual: bias.len(),
            });
        }
    }
    if let Some(r) = &epi.residual {
        check_operand(
            "residual",
            d.m,
            d.n,
            r.ld,
            d.batch,
            r.batch_stride,
            r.data.len(),
        )?;
    }
    Ok(())
}

/// Smallest product, in flops, worth a second thread: below it, handing tasks to the compute
/// team costs more than it saves. 64³ (0.5 Mflop, about 5 us on one core) splits in two.
const MIN_FLOPS_PER_THREAD: f64 = 2.5e5;
/// Smallest GEMV, in bytes of B, worth a second thread.
const MIN_GEMV_BYTES_PER_THREAD: usize = 256 << 10;

/// A validated call's operands, as [`run`] and [`run_gemv`] take them.
struct Operands<'a, TA, TB, TC> {
    a: &'a [TA],
    b: &'a [TB],
    c: &'a mut [TC],
    epilogue: &'a Epilogue<'a, TC>,
}

fn run<S: Simd, TA: Element, TB: Element, TC: Element>(
    d: &GemmDesc,
    ops: Operands<'_, TA, TB, TC>,
    par: Parallelism,
) {
    if d.m == 0 || d.n == 0 || d.batch == 0 {
        return;
    }
    let product = d.k > 0 && d.alpha != 0.0;
    let gemv_rows = if d.trans_b {
        GEMV_MAX_M_TRANS_B
    } else {
        GEMV_MAX_M
    };
    if product && d.m <= gemv_rows {
        run_gemv::<S, TA, TB, TC>(d, ops, par);
        return;
    }
    let Operands {
        a,
        b,
        c,
        epilogue: epi,
    } = ops;
    let (bias, residual, ld_residual, stride_residual) = raw_epilogue(epi);
    let work_threads = (d.flops() / MIN_FLOPS_PER_THREAD) as usize;
    let threads = par.threads().min(work_threads.max(1));
    // f32 A read in place (few columns) has exact-height kernels for ragged row slivers, so
    // rows may be split finely: 64 rows become 32 + 32 instead of 36 + 28.
    let row_unit =
        if TA::DTYPE == element::Dtype::F32 && d.n <= blocked::DIRECT_A_MAX_PANELS * S::NR {
            S::MR.min(4)
        } else {
            S::MR
        };
    let tasks = blocked::plan(d.batch, d.m, d.n, row_unit, S::NR, threads);
    let rows_per_task = tasks.iter().map(|t| t.r1 - t.r0).max().unwrap_or(d.m);
    let (kc, mc, nc) = blocked::blocking::<S>(d.m, d.n, d.k, rows_per_task, TC::DTYPE);
    let job = Job {
        a: a.as_ptr(),
        b: b.as_ptr(),
        c: c.as_mut_ptr(),
        k: d.k,
        lda: d.lda,
        ldb: d.ldb,
        ldc: d.ldc,
        trans_a: d.trans_a,
        trans_b: d.trans_b,
        alpha: d.alpha,
        beta: d.beta,
        stride_a: d.stride_a,
        stride_b: d.stride_b,
        stride_c: d.stride_c,
        bias,
        act: epi.activation,
        residual,
        ld_residual,
        stride_residual,
        kc,
        mc,
        nc,
    };
    // SAFETY: `validate` checked every operand against its shape, strides and batch; the
    // ISA was checked by the caller; `plan` gives tasks over disjoint rectangles of C.
    for_each(&tasks, threads, |t| unsafe { S::gemm_task(&job, t) });
}

/// The epilogue's operands as raw pointers, `(bias, residual, ld_residual, stride_residual)`
/// (null and zero strides where absent).
fn raw_epilogue<TC: Element>(epi: &Epilogue<'_, TC>) -> (*const f32, *const TC, usize, usize) {
    let bias = epi.bias.map_or(core::ptr::null(), |s| s.as_ptr());
    match epi.residual {
        Some(r) => (bias, r.data.as_ptr(), r.ld, r.batch_stride),
        None => (bias, core::ptr::null(), 0, 0),
    }
}

fn run_gemv<S: Simd, TA: Element, TB: Element, TC: Element>(
    d: &GemmDesc,
    ops: Operands<'_, TA, TB, TC>,
    par: Parallelism,
) {
    let Operands {
        a,
        b,
        c,
        epilogue: epi,
    } = ops;
    let (bias, residual, ld_residual, stride_residual) = raw_epilogue(epi);
    let act = epi.activation;
    // op(A) is at most 16 x k per batch: widen it to a contiguous f32 copy once.
    let (m, k) = (d.m, d.k);
    let mut wide = Vec::with_capacity(d.batch * m * k);
    for bi in 0..d.batch {
        let base = &a[bi * d.stride_a..];
        for i in 0..m {
            for p in 0..k {
                let idx = if d.trans_a {
                    p * d.lda + i
                } else {
                    i * d.lda + p
                };
                wide.push(base[idx].to_f32());
            }
        }
    }
    let bytes = d.n * d.k * core::mem::size_of::<TB>() * d.batch;
    let threads = par
        .threads()
        .min((bytes / MIN_GEMV_BYTES_PER_THREAD).max(1));
    let job = GemvJob {
        a: wide.as_ptr(),
        b: b.as_ptr(),
        c: c.as_mut_ptr(),
        m,
        k,
        ldb: d.ldb,
        trans_b: d.trans_b,
        ldc: d.ldc,
        stride_b: d.stride_b,
        stride_c: d.stride_c,
        alpha: d.alpha,
        beta: d.beta,
        bias,
        act,
        residual,
        ld_residual,
        stride_residual,
        n: d.n,
        partials: core::ptr::null_mut(),
        parts: 0,
    };
    if !job.trans_b && d.batch == 1 && threads > 1 && k >= 16 * threads {
        // Each thread streams a contiguous slab of B's rows into its own partial sums.
        let mut partials = vec![0.0f32; threads * m * d.n];
        let job = GemvJob {
            partials: partials.as_mut_ptr(),
            parts: threads,
            ..job
        };
        let rows_per = k.div_ceil(threads);
        let parts: Vec<GemvTask> = (0..threads)
            .map(|part| GemvTask::Partial {
                part,
                p0: part * rows_per,
                p1: ((part + 1) * rows_per).min(k),
            })
            .filter(|t| matches!(t, GemvTask::Partial { p0, p1, .. } if p0 < p1))
            .collect();
        let job = GemvJob {
            parts: parts.len(),
            ..job
        };
        // SAFETY: as in `run`; each task writes its own partial sums.
        for_each(&parts, threads, |t| unsafe { S::gemv_task(&job, t) });
        let chunk = d.n.div_ceil(threads).div_ceil(S::LANES) * S::LANES;
        let finish: Vec<GemvTask> = (0..d.n)
            .step_by(chunk)
            .map(|c0| GemvTask::Finish {
                c0,
                c1: (c0 + chunk).min(d.n),
            })
            .collect();
        // SAFETY: every partial sum is complete; tasks cover disjoint column ranges of C.
        for_each(&finish, threads, |t| unsafe { S::gemv_task(&job, t) });
        return;
    }
    let mut tasks = Vec::new();
    let per_batch = if d.batch >= threads {
        1
    } else {
        threads / d.batch
    };
    let chunk = d.n.div_ceil(per_batch).div_ceil(S::GEMV_NB) * S::GEMV_NB;
    for batch in 0..d.batch {
        let mut c0 = 0;
        while c0 < d.n {
            tasks.push(GemvTask::Columns {
                batch,
                c0,
                c1: (c0 + chunk).min(d.n),
            });
            c0 += chunk;
        }
    }
    // SAFETY: as in `run`; tasks cover disjoint column ranges of C.
    for_each(&tasks, threads, |t| unsafe { S::gemv_task(&job, t) });
}
