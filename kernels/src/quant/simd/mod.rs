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
