//! knpu-kernels: the compute kernels of knpu, over plain host slices.
//!
//! Every kernel is a safe function taking slices with explicit shapes and strides; SIMD lives
//! inside, behind `#[target_feature]` functions chosen at run time through [`isa`]. Kernels
//! know nothing of devices, queues or device memory: the software NPU (`knpu-driver-sim`)
//! resolves device addresses to slices and calls these functions on its compute pool.
//!
//! Parallel kernels take a [`Parallelism`] and run on the rayon pool they are called from,
//! so a caller decides which threads a kernel may use (`pool.install(|| ...)`). A grant that
//! covers every core goes to the spinning compute team of [`par::for_each_task`] instead,
//! whose hand-off costs a fraction of a microsecond, so short kernels can use both cores.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod attention;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod isa;
pub mod llm;
pub mod par;
pub mod quant;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use error::KernelError;
pub use isa::{Exec, Isa};
pub use par::Parallelism;
