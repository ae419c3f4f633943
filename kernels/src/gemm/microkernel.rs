//! The register-blocked microkernel, written once over [`Simd`] and instantiated per
//! instruction set with its own tile shape (`MR` rows by `NV` vectors of columns).
//!
//! It multiplies an `MR x kc` sliver of A by a packed `kc x NR` sliver of B with every
//! accumulator in a register, then writes `alpha * acc + beta * out` to its output: either a
//! small tile buffer in L1, where the epilogue picks it up, or, for full f32 tiles that need
//! no epilogue, C itself. `MR` is a const parameter, so a ragged last row sliver runs the
//! same code at exactly its height (no work on padding rows); a ragged last column panel is
//! packed with zero padding and the epilogue stores only the valid part.

use super::simd::Simd;

/// One microkernel call.
#[derive(Clone, Copy)]
pub(crate) struct MicroArgs {
    /// Depth.
    pub kc: usize,
    /// Element (0, 0) of the A sliver.
    pub a: *const f32,
    /// Distance between rows of the A sliver (packed: 1).
    pub a_rs: usize,
    /// Distance between steps of the A sliver (packed: `MR`).
    pub a_cs: usize,
    /// The B sliver, `kc x NR`.
    pub b: *const f32,
    /// Distance between steps of the B sliver (packed: `NR`).
    pub b_rs: usize,
    /// Where the `MR x NR` result goes.
    pub out: *mut f32,
    /// Distance between rows of `out`.
    pub ldo: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of what `out` held; 0 means `out` is not read.
    pub beta: f32,
}

/// `out[i][j] = alpha * sum_p A[i][p] * b[p * b_rs + j] + beta * out[i][j]` for `i < MR`,
/// `j < NR = NV * LANES`, with `A[i][p]` at `a + i * rs + p * cs` (`rs = 1, cs = MR` when
/// `PACKED`, so the addresses are constants).
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - A holds every element addressed above for `i < MR`, `p < kc`; B likewise for
///   `j < NR`; `out` is valid for `MR` rows of `NR` floats `ldo` apart.
#[inline(always)]
pub(crate) unsafe fn tile<S: Simd, const MR: usize, const NV: usize, const PACKED: bool>(
    args: &MicroArgs,
) {
    let (rs, cs) = if PACKED {
        (1, MR)
    } else {
        (args.a_rs, args.a_cs)
    };
    // SAFETY: every access is inside the extents the caller guarantees.
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        let mut a = args.a;
        let mut b = args.b;
        for _ in 0..args.kc {
            let mut bv = [S::zero(); NV];
            for (v, slot) in bv.iter_mut().enumerate() {
                *slot = S::load(b.add(v * S::LANES));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = S::splat(*a.add(i * rs));
                for (v, slot) in row.iter_mut().enumerate() {
                    *slot = S::fma(av, bv[v], *slot);
                }
            }
            a = a.add(cs);
            b = b.add(args.b_rs);
        }
        let alpha = S::splat(args.alpha);
        let beta = S::splat(args.beta);
        for (i, row) in acc.iter().enumerate() {
            for (v, slot) in row.iter().enumerate() {
                let o = args.out.add(i * args.ldo + v * S::LANES);
                let mut x = S::mul(alpha, *slot);
                if args.beta != 0.0 {
                    x = S::fma(beta, S::load(o), x);
                }
                S::store(o, x);
            }
        }
    }
}
