//! Elementwise arithmetic over contiguous vectors: add, mul, sub, axpy, scale.
//!
//! Every element type is widened to f32, computed in f32 and narrowed back (round to nearest
//! even for f16 and bf16), one tile of [`TILE`] elements at a time so the widened operands stay
//! in L1. The work is memory-bound, so there are no intrinsics: the one tile loop is
//! compiled twice, portable and with AVX2/FMA/F16C enabled, and [`elementwise`] runs the one
//! its [`Exec`] names.
//!
//! Aliasing: the output is the only `&mut` slice. An operand that is the output itself (an
//! in-place update such as `x = x + y` or `x = alpha * x`) is passed as [`Input::Out`], which
//! reads each element of `out` before the same element is written. Partially overlapping
//! operands cannot be expressed with safe slices; a caller that has them copies the operand
//! first.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::{Exec, Isa, KernelError};

/// Elements converted and computed per step; three f32 tiles of this size fit in L1.
pub const TILE: usize = 512;

/// Below this many elements per task, splitting across threads costs more than it saves.
const MIN_ELEMENTS_PER_TASK: usize = 32 * 1024;

/// The operation computed for each element `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementwiseOp {
    /// `out = a + b`
    Add,
    /// `out = a * b`
    Mul,
    /// `out = a - b`
    Sub,
    /// `out = alpha * a + b`
    Axpy,
    /// `out = alpha * a` (`b` unused)
    Scale,
}

impl ElementwiseOp {
    /// Whether the operation reads a second operand `b`.
    pub fn needs_b(self) -> bool {
        !matches!(self, ElementwiseOp::Scale)
    }

    /// The lower-case name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            ElementwiseOp::Add => "add",
            ElementwiseOp::Mul => "mul",
            ElementwiseOp::Sub => "sub",
            ElementwiseOp::Axpy => "axpy",
            ElementwiseOp::Scale => "scale",
        }
    }
}

/// An element type the elementwise kernels accept: it converts to and from f32 in bulk.
pub trait Element: Copy + Send + Sync + 'static {
    /// Widens `src` into `dst` (same length).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// Narrows `src` into `dst` (same length), rounding to nearest even.
    fn narrow(src: &[f32], dst: &mut [Self]);
}

impl Element for f32 {
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl Element for f16 {
    fn widen(src: &[f16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn narrow(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src);
    }
}

impl Element for bf16 {
    fn widen(src: &[bf16], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn narrow(src: &[f32], dst: &mut [bf16]) {
        dst.convert_from_f32_slice(src);
    }
}

/// Where an operand's elements come from.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a, T> {
    /// A separate slice with at least as many elements as the output.
    Slice(&'a [T]),
    /// The output's own current contents (an in-place update).
    Out,
}

impl<'a, T> Input<'a, T> {
    fn check(&self, operand: &'static str, required: usize) -> Result<(), KernelError> {
        match self {
            Input::Slice(s) if s.len() < required => Err(KernelError::SliceTooShort {
                operand,
                required,
                actual: s.len(),
            }),
            _ => Ok(()),
        }
    }

    fn offset(self, start: usize, len: usize) -> Input<'a, T> {
        match self {
            Input::Slice(s) => Input::Slice(&s[start..start + len]),
            Input::Out => Input::Out,
        }
    }
}

/// Computes `out[i] = op(a[i], b[i])` for every `i < out.len()`, in f32, on the path and
/// threads `exec` names (a [`Parallelism`](crate::Parallelism) alone runs on the path
/// [`isa::active`](crate::isa::active) picks; a path the host cannot run is `Unsupported`).
///
/// `b` is required unless `op` is [`ElementwiseOp::Scale`] (where it is ignored). Operand
/// slices may be longer than `out`; only the first `out.len()` elements are read.
/// With `Parallelism::Rayon`, large vectors are split into contiguous ranges across the
/// current rayon pool; the result does not depend on the split.
pub fn elementwise<T: Element>(
    op: ElementwiseOp,
    alpha: f32,
    a: Input<'_, T>,
    b: Option<Input<'_, T>>,
    out: &mut [T],
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec.into();
    let n = out.len();
    a.check("a", n)?;
    let b = if op.needs_b() {
        let b = b.ok_or_else(|| KernelError::BadShape {
            detail: format!("elementwise {} needs a second operand `b`", op.name()),
        })?;
        b.check("b", n)?;
        Some(b)
    } else {
        None
    };
    isa.require()?;
    let call = Call { op, alpha, a, b };
    let tasks = par.threads().min(n / MIN_ELEMENTS_PER_TASK).max(1);
    if tasks == 1 {
        run_range_with_isa(isa, call, out);
        return Ok(());
    }
    let chunk = n.div_ceil(tasks).div_ceil(TILE) * TILE;
    crate::par::for_each_chunk_mut(out, chunk, tasks, |start, out_chunk| {
        run_range_with_isa(isa, call.offset(start, out_chunk.len()), out_chunk);
    });
    Ok(())
}

/// An elementwise call's operation and operands, validated, as the loops take them.
#[derive(Clone, Copy)]
struct Call<'a, T> {
    op: ElementwiseOp,
    alpha: f32,
    a: Input<'a, T>,
    b: Option<Input<'a, T>>,
}

impl<T> Call<'_, T> {
    /// The operands of `out[start..start + len]`.
    fn offset(self, start: usize, len: usize) -> Self {
        Call {
            a: self.a.offset(start, len),
            b: self.b.map(|b| b.offset(start, len)),
            ..self
        }
    }
}

/// The serial loop on `isa`, which the host supports.
fn run_range_with_isa<T: Element>(isa: Isa, call: Call<'_, T>, out: &mut [T]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => {
            // SAFETY: the caller checked that the host supports `isa`, and both x86 paths
            // include AVX2, FMA and F16C (isa.rs).
            unsafe { run_range_avx2(call, out) }
        }
        _ => run_range(call, out),
    }
}

/// [`run_range`] compiled with AVX2, FMA and F16C.
///
/// # Safety
/// - The host must support AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_range_avx2<T: Element>(call: Call<'_, T>, out: &mut [T]) {
    run_range(call, out)
}

/// The serial loop over one contiguous range; operands are already sliced to `out`'s range.
#[inline(always)]
fn run_range<T: Element>(call: Call<'_, T>, out: &mut [T]) {
    let Call { op, alpha, a, b } = call;
    let mut ta = [0f32; TILE];
    let mut tb = [0f32; TILE];
    let mut start = 0;
    while start < out.len() {
        let len = TILE.min(out.len() - start);
        let out_tile = &mut out[start..start + len];
        let ta = &mut ta[..len];
        let tb = &mut tb[..len];
        match a {
            Input::Slice(s) => T::widen(&s[start..start + len], ta),
            Input::Out => T::widen(out_tile, ta),
        }
        match b {
            Some(Input::Slice(s)) => T::widen(&s[start..start + len], tb),
            Some(Input::Out) => T::widen(out_tile, tb),
            None => {}
        }
        compute(op, alpha, ta, tb);
        T::narrow(ta, out_tile);
        start += len;
    }
}

/// Computes into `a` in place; `b` is ignored by `Scale`.
#[inline(always)]
fn compute(op: ElementwiseOp, alpha: f32, a: &mut [f32], b: &[f32]) {
    match op {
        ElementwiseOp::Add => a.iter_mut().zip(b).for_each(|(x, y)| *x += *y),
        ElementwiseOp::Mul => a.iter_mut().zip(b).for_each(|(x, y)| *x *= *y),
        ElementwiseOp::Sub => a.iter_mut().zip(b).for_each(|(x, y)| *x -= *y),
        ElementwiseOp::Axpy => a.iter_mut().zip(b).for_each(|(x, y)| *x = alpha * *x + *y),
        ElementwiseOp::Scale => a.iter_mut().for_each(|x| *x *= alpha),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{isa, Parallelism};

    const OPS: [ElementwiseOp; 5] = [
        ElementwiseOp::Add,
        ElementwiseOp::Mul,
        ElementwiseOp::Sub,
        ElementwiseOp::Axpy,
        ElementwiseOp::Scale,
    ];

    fn reference(op: ElementwiseOp, alpha: f32, a: f64, b: f64) -> f64 {
        let alpha = alpha as f64;
        match op {
            ElementwiseOp::Add => a + b,
            ElementwiseOp::Mul => a * b,
            ElementwiseOp::Sub => a - b,
            ElementwiseOp::Axpy => alpha * a + b,
            ElementwiseOp::Scale => alpha * a,
        }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 250.0 - 4.0
            })
            .collect()
    }

    /// Checks a typed run against the f64 reference with a relative tolerance `tol`.
    fn check<T: Element>(from: fn(f32) -> T, to: fn(T) -> f32, tol: f64, par: Parallelism) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (isa, &n) in isa::supported().into_iter().flat_map(|isa| {
            [0usize, 1, 7, TILE - 1, TILE, TILE + 1, 100_003]
                .iter()
                .map(move |n| (isa, n))
        }) {
            for op in OPS {
                let a: Vec<T> = values(n, 1).into_iter().map(from).collect();
                let b: Vec<T> = values(n, 7).into_iter().map(from).collect();
                let mut out: Vec<T> = vec![from(0.0); n];
                let alpha = 1.5f32;
                pool.install(|| {
                    elementwise(
                        op,
                        alpha,
                        Input::Slice(&a),
                        Some(Input::Slice(&b)),
                        &mut out,
                        Exec::new(isa, par),
                    )
                })
                .unwrap();
                for i in 0..n {
                    let want = reference(op, alpha, to(a[i]) as f64, to(b[i]) as f64);
                    let got = to(out[i]) as f64;
                    assert!(
                        (got - want).abs() <= tol * (1.0 + want.abs()),
                        "{isa:?} {op:?} n={n} i={i}: got {got}, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_matches_reference() {
        check::<f32>(|x| x, |x| x, 1e-6, Parallelism::None);
        check::<f32>(|x| x, |x| x, 1e-6, Parallelism::Rayon(0));
    }

    #[test]
    fn f16_matches_reference() {
        // One f16 rounding of the result: relative error 2^-11.
        check::<f16>(
            f16::from_f32,
            f16::to_f32,
            1.0 / 1024.0,
            Parallelism::Rayon(2),
        );
    }

    #[test]
    fn bf16_matches_reference() {
        // One bf16 rounding of the result: relative error 2^-8.
        check::<bf16>(
            bf16::from_f32,
            bf16::to_f32,
            1.0 / 128.0,
            Parallelism::Rayon(0),
        );
    }

    #[test]
    fn in_place_operands() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let n = 70_001;
        let y = values(n, 3);
        let mut x = values(n, 5);
        let x0 = x.clone();
        pool.install(|| {
            elementwise(
                ElementwiseOp::Axpy,
                2.0,
                Input::Out,
                Some(Input::Slice(&y)),
                &mut x,
                Parallelism::Rayon(0),
            )
        })
        .unwrap();
        for i in 0..n {
            assert_eq!(x[i], 2.0 * x0[i] + y[i]);
        }
        let mut z = values(n, 9);
        let z0 = z.clone();
        elementwise(
            ElementwiseOp::Mul,
            0.0,
            Input::Out,
            Some(Input::Out),
            &mut z,
            Parallelism::None,
        )
        .unwrap();
        for i in 0..n {
            assert_eq!(z[i], z0[i] * z0[i]);
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let a = [1.0f32; 4];
        // `op` of `a` alone: `Scale` needs nothing more, `Add` misses its `b`.
        let call = |op, alpha, out: &mut [f32], exec: Exec| {
            elementwise(op, alpha, Input::Slice(&a), None, out, exec)
        };
        let serial = Exec::active(Parallelism::None);
        let mut out = [0.0f32; 5];
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            if !isa.is_supported() {
                let on_isa = Exec::new(isa, Parallelism::None);
                let got = call(ElementwiseOp::Scale, 1.0, &mut out[..4], on_isa);
                assert!(matches!(got, Err(KernelError::Unsupported { .. })));
            }
        }
        assert!(matches!(
            call(ElementwiseOp::Scale, 1.0, &mut out, serial),
            Err(KernelError::SliceTooShort {
                operand: "a",
                required: 5,
                actual: 4
            })
        ));
        let mut out = [0.0f32; 4];
        let got = call(ElementwiseOp::Add, 1.0, &mut out, serial);
        assert!(matches!(got, Err(KernelError::BadShape { .. })));
        call(ElementwiseOp::Scale, 3.0, &mut out, serial).unwrap();
        assert_eq!(out, [3.0; 4]);
    }
}
