//! The entry points every instruction set gives [`Simd`](super::Simd), written once.
//!
//! An entry point runs a generic loop nest (the microkernel, a blocked GEMM task, a GEMV
//! task) with the instruction set's token inside a function that carries the instruction
//! set's attributes (its `#[target_feature]` list), so the whole nest, inlined into it, is
//! compiled for that instruction set. Only the attributes, the tile height and the ragged
//! heights differ between instruction sets; the forwarding is the same, so a macro writes it.

/// Implements [`Simd`](super::Simd)'s entry points inside an `unsafe impl Simd for $isa`.
///
/// - `attrs`: the attributes of the functions the loop nests are compiled in (the
///   instruction set's `#[target_feature]`).
/// - `mr`, `nv`: the register tile, `MR` rows by `NV` vectors (`NR = NV * LANES`).
/// - `ragged`: the heights `1..MR` a ragged last row sliver may have.
macro_rules! simd_entry_points {
    (
        $isa:ident,
        attrs = [$(#[$attr:meta])*],
        mr = $mr:literal,
        nv = $nv:literal,
        ragged = [$($rows:literal),*] $(,)?
    ) => {
        simd_entry_points!(@tile microkernel, $isa, [$(#[$attr])*], $mr, $nv, true);
        simd_entry_points!(@tile microkernel_strided, $isa, [$(#[$attr])*], $mr, $nv, false);

        #[inline(always)]
        unsafe fn microkernel_strided_rows(
            args: &$crate::gemm::microkernel::MicroArgs,
            rows: usize,
        ) {
            $(#[$attr])*
            unsafe fn run(args: &$crate::gemm::microkernel::MicroArgs, rows: usize) {
                use $crate::gemm::microkernel::tile;
                // SAFETY: forwarded caller contract; each arm's tile height is `rows`.
                unsafe {
                    match rows {
                        $($rows => tile::<$isa, $rows, $nv, false>(args),)*
                        _ => unreachable!("a ragged row sliver has 1..{} rows, not {rows}", $mr),
                    }
                }
            }
            // SAFETY: forwarded caller contract; the host has the instruction set (trait
            // contract).
            unsafe { run(args, rows) }
        }

        #[inline(always)]
        unsafe fn gemm_task<TA: $crate::gemm::Element, TB: $crate::gemm::Element, TC: $crate::gemm::Element>(
            job: &$crate::gemm::blocked::Job<TA, TB, TC>,
            t: &$crate::gemm::blocked::Task,
        ) {
            $(#[$attr])*
            unsafe fn run<TA: $crate::gemm::Element, TB: $crate::gemm::Element, TC: $crate::gemm::Element>(
                job: &$crate::gemm::blocked::Job<TA, TB, TC>,
                t: &$crate::gemm::blocked::Task,
            ) {
                // SAFETY: forwarded caller contract.
                unsafe { $crate::gemm::blocked::run_task::<$isa, TA, TB, TC>(job, t) }
            }
            // SAFETY: forwarded caller contract; the host has the instruction set (trait
            // contract).
            unsafe { run(job, t) }
        }

        #[inline(always)]
        unsafe fn gemv_task<TB: $crate::gemm::Element, TC: $crate::gemm::Element>(
            job: &$crate::gemm::gemv::GemvJob<TB, TC>,
            t: &$crate::gemm::gemv::GemvTask,
        ) {
            $(#[$attr])*
            unsafe fn run<TB: $crate::gemm::Element, TC: $crate::gemm::Element>(
                job: &$crate::gemm::gemv::GemvJob<TB, TC>,
                t: &$crate::gemm::gemv::GemvTask,
            ) {
                // SAFETY: forwarded caller contract.
                unsafe { $crate::gemm::gemv::run_task::<$isa, TB, TC>(job, t) }
            }
            // SAFETY: forwarded caller contract; the host has the instruction set (trait
            // contract).
            unsafe { run(job, t) }
        }
    };
    // A full `MR`-row tile; `$packed`: A is a packed sliver.
    (@tile $name:ident, $isa:ident, [$(#[$attr:meta])*], $mr:literal, $nv:literal, $packed:literal) => {
        #[inline(always)]
        unsafe fn $name(args: &$crate::gemm::microkernel::MicroArgs) {
            $(#[$attr])*
            unsafe fn run(args: &$crate::gemm::microkernel::MicroArgs) {
                // SAFETY: forwarded caller contract.
                unsafe { $crate::gemm::microkernel::tile::<$isa, $mr, $nv, $packed>(args) }
            }
            // SAFETY: forwarded caller contract; the host has the instruction set (trait
            // contract).
            unsafe { run(args) }
        }
    };
}
