//! Run-time choice of the instruction set.
//!
//! The host's best instruction set is detected once and cached. `KNPU_ISA` (`avx512`, `avx2`,
//! `portable`) or [`set_max_isa`] caps it, so a user can force a lower path; a cap above what
//! the host supports is ignored, never trusted. Kernels take the path to run as an argument (an
//! [`Exec`], or a [`Parallelism`] alone for the default path), so tests can run every path the
//! host supports in the same process without racing on a global.

use crate::par::Parallelism;
use crate::KernelError;
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set path a kernel can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, any target.
    Portable = 1,
    /// x86-64 AVX2 with FMA and F16C.
    Avx2 = 2,
    /// x86-64 AVX-512 F/BW/DQ/VL (plus VNNI/BF16 where a kernel checks [`has_avx512_vnni`]).
    Avx512 = 3,
}

impl Isa {
    /// The lower-case name used by `KNPU_ISA` and in benchmark records.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a name as `KNPU_ISA` spells it.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" | "generic" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx-512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Portable),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether the host can run this path.
    pub fn is_supported(self) -> bool {
        self <= detected()
    }

    /// `Ok` when the host can run this path, else [`KernelError::Unsupported`] naming it: the
    /// check every kernel makes on the path it is given before it runs.
    pub fn require(self) -> Result<(), KernelError> {
        if self.is_supported() {
            Ok(())
        } else {
            Err(KernelError::Unsupported {
                detail: format!(
                    "instruction set {} is not available on this host",
                    self.name()
                ),
            })
        }
    }
}

/// How a kernel runs: the instruction-set path and the threads it may use.
///
/// Kernels take `exec: impl Into<Exec>`: a [`Parallelism`] alone runs on the default path
/// ([`active`]), an `Exec` names the path too (tests force every path in [`supported`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exec {
    /// The path to run; it must be supported by the host.
    pub isa: Isa,
    /// The threads the kernel may use.
    pub par: Parallelism,
}

impl Exec {
    /// Runs on `isa` with `par`.
    pub fn new(isa: Isa, par: Parallelism) -> Exec {
        Exec { isa, par }
    }

    /// Runs on the default path ([`active`]) with `par`.
    pub fn active(par: Parallelism) -> Exec {
        Exec { isa: active(), par }
    }
}

impl From<Parallelism> for Exec {
    /// The default path ([`active`]) with `par`: what an op runs when the caller names no path.
    fn from(par: Parallelism) -> Exec {
        Exec::active(par)
    }
}

const UNSET: u8 = 0;
static DETECTED: AtomicU8 = AtomicU8::new(UNSET);
static MAX: AtomicU8 = AtomicU8::new(UNSET);

/// The best path the host supports, detected once.
pub fn detected() -> Isa {
    if let Some(isa) = Isa::from_u8(DETECTED.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = detect();
    DETECTED.store(isa as u8, Ordering::Relaxed);
    isa
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}

/// Whether the host has AVX-512 VNNI (`vpdpbusd` on 512-bit registers).
pub fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        detected() == Isa::Avx512 && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the host has AVX-VNNI (`vpdpbusd` on 256-bit registers without AVX-512).
pub fn has_avx_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Caps the path kernels choose by default; `None` removes the cap (then `KNPU_ISA` applies).
pub fn set_max_isa(max: Option<Isa>) {
    MAX.store(max.map_or(UNSET, |i| i as u8), Ordering::Relaxed);
}

fn env_cap() -> Option<Isa> {
    static ENV: AtomicU8 = AtomicU8::new(u8::MAX);
    let v = ENV.load(Ordering::Relaxed);
    if v != u8::MAX {
        return Isa::from_u8(v);
    }
    let cap = std::env::var("KNPU_ISA")
        .ok()
        .and_then(|s| Isa::from_name(&s));
    ENV.store(cap.map_or(UNSET, |i| i as u8), Ordering::Relaxed);
    cap
}

/// The path kernels use by default: the detected one, capped by [`set_max_isa`] or `KNPU_ISA`.
pub fn active() -> Isa {
    let mut isa = detected();
    if let Some(cap) = Isa::from_u8(MAX.load(Ordering::Relaxed)).or_else(env_cap) {
        isa = isa.min(cap);
    }
    isa
}

/// Every path this host supports, lowest first: what tests iterate over.
pub fn supported() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|i| i.is_supported())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name("sse9"), None);
    }

    #[test]
    fn active_never_exceeds_detected() {
        assert!(active() <= detected());
        assert!(supported().contains(&Isa::Portable));
        assert!(supported().contains(&detected()));
    }
}
