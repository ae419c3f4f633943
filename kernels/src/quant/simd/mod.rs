//! The integer row kernels of the quantised matmul, one implementation per instruction set
//! (`portable.rs`, `avx2.rs`, `avx512.rs`), and [`IntKernel`], which picks one for an
//! [`Isa`] and runs it. The AVX-512 file also holds the W8A8 microkernel and the streaming
//! row store that `int8.rs` uses.

pub(crate) mod portable;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use crate::quant::qmatmul::KernelArgs;
use crate::quant::xprep::Layout;
use crate::Isa;

#[cfg(target_arch = "x86_64")]
pub(crate) use format_codes::*;

/// Format codes the x86 row kernels take as a const parameter.
#[cfg(target_arch = "x86_64")]
mod format_codes {
    pub(crate) const F_Q8_0: u8 = 0;
    pub(crate) const F_Q4_0: u8 = 1;
    pub(crate) const F_Q4_1: u8 = 2;
    pub(crate) const F_Q4_K: u8 = 3;
    pub(crate) const F_Q6_K: u8 = 4;
    pub(crate) const F_I8: u8 = 5;
}

/// Calls `$rows::<F, MR>($a, $out)` with the format code `F` of `$a.format` and `MR = $a.mr`
/// (1 to 8): the dispatch every x86 path's `kernel` makes to its own `rows`.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch_rows {
    ($rows:ident, $a:expr, $out:expr) => {{
        use crate::quant::QuantFormat;
        let (a, out) = ($a, $out);
        macro_rules! by_mr {
            ($f:expr) => {
                match a.mr {
                    1 => $rows::<$f, 1>(a, out),
                    2 => $rows::<$f, 2>(a, out),
                    3 => $rows::<$f, 3>(a, out),
                    4 => $rows::<$f, 4>(a, out),
                    5 => $rows::<$f, 5>(a, out),
                    6 => $rows::<$f, 6>(a, out),
                    7 => $rows::<$f, 7>(a, out),
                    _ => $rows::<$f, 8>(a, out),
                }
            };
        }
        match a.format {
            QuantFormat::Q8_0 => by_mr!({ $crate::quant::simd::F_Q8_0 }),
            QuantFormat::Q4_0 => by_mr!({ $crate::quant::simd::F_Q4_0 }),
            QuantFormat::Q4_1 => by_mr!({ $crate::quant::simd::F_Q4_1 }),
            QuantFormat::Q4_K => by_mr!({ $crate::quant::simd::F_Q4_K }),
            QuantFormat::Q6_K => by_mr!({ $crate::quant::simd::F_Q6_K }),
            QuantFormat::I8 => by_mr!({ $crate::quant::simd::F_I8 }),
            QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => unreachable!("no integer FP8 path"),
        }
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use dispatch_rows;

/// The integer row kernel of one instruction-set path.
#[derive(Clone, Copy)]
pub(crate) enum IntKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl IntKernel {
    pub(crate) fn choose(isa: Isa) -> IntKernel {
        match isa {
            Isa::Portable => IntKernel::Portable,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if crate::isa::has_avx512_vnni() => IntKernel::Avx512Vnni,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => IntKernel::Avx2,
            #[cfg(not(target_arch = "x86_64"))]
            _ => IntKernel::Portable,
        }
    }

    /// Whether the packed-tile prefill microkernel exists for this kernel.
    pub(crate) fn has_tiles(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx512Vnni => true,
            _ => false,
        }
    }

    pub(crate) fn layout(self) -> Layout {
        match self {
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx512Vnni => Layout::Wide,
            _ => Layout::Pair,
        }
    }

    pub(crate) fn run(self, a: &KernelArgs<'_>, out: &mut [f32]) {
        debug_assert!(a.w.len() == a.nrows * a.rb && out.len() >= a.mr * a.nrows);
        debug_assert!(a.x0 + a.mr <= a.xp.qx.len() / a.xp.kp);
        match self {
            IntKernel::Portable => portable::kernel(a, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: chosen only when the host has AVX2+FMA+F16C (Isa::Avx2 or above is
            // supported, checked at entry); the arguments were validated by the caller.
            IntKernel::Avx2 => unsafe { avx2::kernel(a, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: chosen only when AVX-512 F/BW/VL and VNNI are present.
            IntKernel::Avx512Vnni => unsafe { avx512::kernel(a, out) },
        }
    }
}

/// How far ahead of the decoder the weights are prefetched, in bytes: at least what one core
/// must have in flight to stream from DRAM at full rate (25 GB/s x ~150 ns is ~4 KB), with
/// room for the time a decode spends between prefetch calls. The hardware prefetchers start
/// over at every 4 KiB page and every new matrix, which a decode step's short, skinny GEMVs
/// hit all the time. Measured on the AMD EPYC (Zen 4) VM, one prefetch call per unit of a
/// row block (`docs/perf-notes/quant.md`, 2026-12-08): a decode step's GEMVs from memory ran
/// 10-17% faster at 8 KB than at 4 KB, and no better at 10, 12 or 16 KB; prefetching into L1
/// (`T0`) did less well than into L2 (`T1`).
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 8192;

/// Software prefetch of one weight stream into L2, [`PREFETCH_AHEAD`] bytes ahead of the
/// bytes being decoded, every cache line once.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Prefetch {
    /// Address of the next cache line to prefetch.
    next: usize,
    /// One past the last byte of the stream.
    end: usize,
}

#[cfg(target_arch = "x86_64")]
impl Prefetch {
    /// A prefetcher over the bytes of `w`, none prefetched yet.
    pub(crate) fn new(w: &[u8]) -> Prefetch {
        let start = w.as_ptr() as usize;
        Prefetch {
            next: start & !63,
            end: start + w.len(),
        }
    }

    /// A prefetcher that prefetches nothing.
    pub(crate) fn none() -> Prefetch {
        Prefetch { next: 0, end: 0 }
    }

    /// Prefetches the lines up to [`PREFETCH_AHEAD`] bytes past `pos` (an address in or near
    /// the stream) that are not prefetched yet; never past the stream's end.
    #[inline(always)]
    pub(crate) fn reach(&mut self, pos: *const u8) {
        let lim = (pos as usize).saturating_add(PREFETCH_AHEAD).min(self.end);
        while self.next < lim {
            // SAFETY: a prefetch is a hint: it never faults and writes nothing.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    self.next as *const i8,
                )
            };
            self.next += 64;
        }
    }
}
