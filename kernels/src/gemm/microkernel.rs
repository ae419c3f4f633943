//! The register-blocked microkernel, written once over [`Simd`] and instantiated per
//! instruction set with its own tile shape (`MR` rows by `NV` vectors of columns).
//!
//! It multiplies a packed `MR x kc` sliver of A by a packed `kc x NR` sliver of B with every
//! accumulator in a register, then writes the finished tile to a small buffer that stays in
//! L1, where the epilogue picks it up. Edge tiles need no separate code: packing pads A and
//! B with zeros, and the epilogue stores only the valid part.

use super::simd::Simd;

/// `tile[i][j] = sum_p a[p * MR + i] * b[p * NR + j]` for `i < MR`, `j < NV * LANES`.
///
/// # Safety
/// - The host supports `S`'s instructions.
/// - `a` holds `kc * MR` floats, `b` holds `kc * NV * S::LANES`, `tile` has room for
///   `MR * NV * S::LANES`.
#[inline(always)]
pub(crate) unsafe fn tile<S: Simd, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    tile: *mut f32,
) {
    let nr = NV * S::LANES;
    // SAFETY: every access is inside the extents the caller guarantees.
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        let mut a = a;
        let mut b = b;
        for _ in 0..kc {
            let mut bv = [S::zero(); NV];
            for (v, slot) in bv.iter_mut().enumerate() {
                *slot = S::load(b.add(v * S::LANES));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = S::splat(*a.add(i));
                for (v, slot) in row.iter_mut().enumerate() {
                    *slot = S::fma(av, bv[v], *slot);
                }
            }
            a = a.add(MR);
            b = b.add(nr);
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, slot) in row.iter().enumerate() {
                S::store(tile.add(i * nr + v * S::LANES), *slot);
            }
        }
    }
}
