//! The kernels the software NPU runs, by kernel id.
//!
//! Every kernel has one skeleton: a type implementing `Kernel`, whose `parse` decodes the
//! parameter struct (`read`) and checks it with the op definitions of
//! `knpu_driver_abi::ops` (the rules the runtime checks too), and whose `run` resolves each
//! operand's extent through `KernelContext::input` and `KernelContext::output` (the one
//! operand type, `Input`, and the one aliasing rule: an input that overlaps an output is
//! copied first), dispatches on dtype with `with_float!` and maps kernel errors with `fault`.
//! `def` turns it into its [`KernelDef`]; adding a kernel means adding the type and one line
//! in `REGISTRY`. Executors never read memory outside a resolved range.

mod divide;
mod elementwise;
mod gemm;
// Attention and key/value caches (0x200-0x2FF).
mod attention;
// LLM ops (0x400-0x4FF).
mod llm;
// Quantised kernels (0x300-0x3FF).
mod quant;
// Sampling (0x40B, since ABI 2.1).
mod sample;

use std::sync::Arc;

use knpu_driver_abi::ops::{Extent, OpError};
use knpu_driver_abi::*;
use knpu_kernels::{KernelError, Parallelism};

use crate::config::TimingProfile;
use crate::device::Device;
use crate::driver::Driver;
use crate::exec::Fault;
use crate::profile::{compute_ns, transfer_ns};

/// Below this many elements a kernel runs on its queue's worker thread alone: handing part
/// of it to another core costs more than it saves.
pub const INLINE_ELEMENTS: usize = 64 * 1024;

/// One kernel of the registry.
pub struct KernelDef {
    /// Its `KnpuKernelId`.
    pub id: u32,
    /// A short name for messages.
    pub name: &'static str,
    /// Whether it runs with element type `dtype`.
    pub supports_dtype: fn(u32) -> bool,
    /// Checks the parameter bytes at submit: INVALID_VALUE or NOT_SUPPORTED when wrong.
    pub validate: fn(&[u8]) -> Result<(), KnpuStatus>,
    /// Runs the kernel with parameters that passed `validate`.
    pub run: fn(&KernelContext<'_>, &[u8]) -> Result<(), Fault>,
    /// The timing model's duration in ns for parameters that passed `validate`.
    pub model_ns: fn(&[u8], &TimingProfile) -> u64,
}

/// Every kernel the driver runs.
static REGISTRY: &[KernelDef] = &[
    def::<elementwise::Elementwise>(),
    def::<gemm::Gemm>(),
    // Attention and key/value caches (0x200-0x2FF).
    def::<attention::Attention>(),
    def::<attention::PagedAttention>(),
    def::<attention::KvAppend>(),
    def::<attention::PagedKvAppend>(),
    // LLM ops (0x400-0x4FF).
    def::<llm::RmsNorm>(),
    def::<llm::LayerNorm>(),
    def::<llm::Rope>(),
    def::<llm::Activation>(),
    def::<llm::Swiglu>(),
    def::<llm::Softmax>(),
    def::<elementwise::Binary>(),
    def::<llm::Embedding>(),
    def::<llm::Cast>(),
    def::<llm::Argmax>(),
    def::<llm::TopK>(),
    def::<sample::Sample>(),
    // Quantised kernels (0x300-0x3FF).
    def::<quant::Quantize>(),
    def::<quant::Dequantize>(),
    def::<quant::QMatmul>(),
    def::<quant::W8A8Gemm>(),
    def::<quant::QEmbedding>(),
];

/// The kernel with id `id`.
pub fn find(id: u32) -> Option<&'static KernelDef> {
    REGISTRY.iter().find(|k| k.id == id)
}

/// What a running kernel may use.
pub struct KernelContext<'a> {
    /// The driver (compute pool).
    pub driver: &'static Driver,
    /// The device whose memory the kernel addresses.
    pub device: &'a Arc<Device>,
    /// The launching queue's priority.
    pub priority: i32,
}

impl KernelContext<'_> {
    /// The host pointer of `length` bytes at device `address` for operand `operand`, or an
    /// ILLEGAL_ADDRESS fault naming the operand and the address.
    pub fn resolve(&self, operand: &str, address: u64, length: u64) -> Result<*mut u8, Fault> {
        self.device.memory.resolve(address, length).map_err(|f| {
            Fault::new(
                KNPU_STATUS_ILLEGAL_ADDRESS,
                format!("operand `{operand}`: {f}"),
            )
        })
    }

    /// Runs `f` with the parallelism a problem of `elements` warrants: on this thread alone
    /// for small problems, else split across the compute pool's cores. A LOW priority queue's
    /// kernels use at most half the cores, so other queues always find free ones.
    ///
    /// When the pool is the global one ([`Driver::in_pool`]), `f` runs on this thread (the
    /// queue's worker). A grant that covers every host core sends the kernel's tasks to the
    /// compute team of `knpu_kernels::par`, whose helpers spin between the kernels of a
    /// replayed graph, so no thread is woken per kernel; another queue's kernel running at
    /// the same time finds the team busy and splits on the pool instead.
    pub fn run<R: Send>(&self, elements: usize, f: impl FnOnce(Parallelism) -> R + Send) -> R {
        let cores = self.driver.config.cores;
        if elements < INLINE_ELEMENTS || cores < 2 {
            return f(Parallelism::None);
        }
        let threads = if self.priority < KNPU_QUEUE_PRIORITY_NORMAL {
            cores / 2
        } else {
            cores
        };
        if threads < 2 {
            return f(Parallelism::None);
        }
        self.driver.in_pool(|| f(Parallelism::Rayon(threads)))
    }
}

/// One kernel: its parameter decoding (`parse`), its cost for the timing model and its
/// `run`.
pub(crate) trait Kernel: Sized {
    /// Its `KnpuKernelId`.
    const ID: u32;
    /// A short name for messages.
    const NAME: &'static str;
    /// Whether the capability query reports element type `dtype` (by default the float
    /// storage dtypes).
    fn supports_dtype(dtype: u32) -> bool {
        ops::is_float(dtype)
    }
    /// Decodes and validates the parameter bytes.
    fn parse(bytes: &[u8]) -> Result<Self, OpError>;
    /// What the timing model charges.
    fn cost(&self) -> Cost;
    /// Runs the kernel.
    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault>;
}

/// What a kernel costs the timing model: bytes moved, operations, and the peak rate that
/// bounds them.
pub(crate) struct Cost {
    pub bytes: u64,
    pub ops: u64,
    pub peak: Peak,
}

/// Which modeled peak rate bounds a kernel's operations.
#[derive(Clone, Copy)]
pub(crate) enum Peak {
    F32,
    F16,
    Int8,
}

impl Peak {
    /// F32 for an F32 compute dtype, else the half-precision rate.
    pub fn of_dtype(dtype: u32) -> Peak {
        if dtype == KNPU_DTYPE_F32 {
            Peak::F32
        } else {
            Peak::F16
        }
    }
}

/// The registry entry of kernel `K`.
pub(crate) const fn def<K: Kernel>() -> KernelDef {
    KernelDef {
        id: K::ID,
        name: K::NAME,
        supports_dtype: K::supports_dtype,
        validate: |bytes| K::parse(bytes).map(|_| ()).map_err(|e| e.status()),
        run: |ctx, bytes| {
            K::parse(bytes)
                .map_err(|e| Fault::new(e.status(), format!("{}: {e}", K::NAME)))?
                .run(ctx)
        },
        model_ns: |bytes, t| {
            let Ok(k) = K::parse(bytes) else { return 0 };
            let c = k.cost();
            let peak = match c.peak {
                Peak::F32 => t.peak_f32_mflops,
                Peak::F16 => t.peak_f16_mflops,
                Peak::Int8 => t.peak_int8_mops,
            };
            transfer_ns(c.bytes, t.memory_bandwidth_mbps).max(compute_ns(c.ops, peak))
        },
    }
}

/// Reads parameter struct `T` from the submitted bytes ([`SizedStruct::read`]).
pub(crate) fn read<T: SizedStruct>(bytes: &[u8]) -> Result<T, OpError> {
    T::read(bytes).ok_or(OpError::StructSize)
}

/// A kernel error as a fault naming the kernel: NOT_SUPPORTED for an unsupported case,
/// KERNEL_FAULT otherwise (what only the data can tell: a token id past the vocabulary, a
/// key length past the cache).
pub(crate) fn fault(kernel: &'static str) -> impl Fn(KernelError) -> Fault {
    move |e| {
        let status = match e {
            KernelError::Unsupported { .. } => KNPU_STATUS_NOT_SUPPORTED,
            _ => KNPU_STATUS_KERNEL_FAULT,
        };
        Fault::new(status, format!("{kernel}: {e}"))
    }
}

/// Runs `$body` with `$T` the storage type of float dtype `$dtype` (F32, F16 or BF16); any
/// other dtype is a NOT_SUPPORTED fault.
macro_rules! with_float {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            KNPU_DTYPE_F32 => {
                type $T = f32;
                $body
            }
            KNPU_DTYPE_F16 => {
                type $T = half::f16;
                $body
            }
            KNPU_DTYPE_BF16 => {
                type $T = half::bf16;
                $body
            }
            other => Err(Fault::new(
                KNPU_STATUS_NOT_SUPPORTED,
                format!("dtype {other} is not supported"),
            )),
        }
    };
}
pub(crate) use with_float;

/// The kernel crate's epilogue activation `$Act` (GEMM and the quantised kernels each have
/// one, with the same variants) for the ABI activation number `$raw`.
macro_rules! kernel_activation {
    ($raw:expr, $Act:ident) => {{
        use knpu_driver_abi::ops::{Activation as A, OpError};
        match A::try_from($raw) {
            Ok(A::None) => Ok($Act::None),
            Ok(A::Relu) => Ok($Act::Relu),
            Ok(A::GeluErf) => Ok($Act::GeluErf),
            Ok(A::GeluTanh) => Ok($Act::GeluTanh),
            Ok(A::Silu) => Ok($Act::Silu),
            Ok(other) => Err(OpError::Unsupported {
                operand: "activation",
                what: other.name(),
            }),
            Err(e) => Err(e),
        }
    }};
}
pub(crate) use kernel_activation;

/// An input operand's elements: device memory read in place, or a private copy when an
/// output of the same kernel overlaps it.
pub(crate) enum Input<T> {
    Device(*const T, usize),
    Copy(Vec<T>),
}

// SAFETY: `Input::Device` stands for a shared `&[T]` into device memory that stays live and
// unwritten by this kernel while it runs (see `Input::slice`), so it may be shared with and
// sent to the compute pool's threads exactly when `&[T]` may.
unsafe impl<T: Sync> Sync for Input<T> {}
// SAFETY: as above.
unsafe impl<T: Sync + Send> Send for Input<T> {}

impl<T> Input<T> {
    /// The elements.
    pub fn slice(&self) -> &[T] {
        match self {
            // SAFETY: a resolved range of `n` elements of a live allocation, aligned (the
            // op definitions require addresses to be multiples of the element size and
            // backings are 64-byte aligned), that no output of this kernel overlaps (those
            // became copies). Commands on other queues use the same memory concurrently only
            // if the submitter ordered them so, as on any device.
            Input::Device(ptr, n) => unsafe { std::slice::from_raw_parts(*ptr, *n) },
            Input::Copy(v) => v,
        }
    }
}

impl KernelContext<'_> {
    /// Resolves input `e` as elements of `T`, copying it when it overlaps one of `outputs`.
    pub(crate) fn input<T: Copy>(&self, e: &Extent, outputs: &[Extent]) -> Result<Input<T>, Fault> {
        debug_assert_eq!(std::mem::size_of::<T>() as u64, e.elem_size);
        let n = e.elems() as usize;
        if n == 0 {
            return Ok(Input::Copy(Vec::new()));
        }
        let ptr = self.resolve(e.operand, e.addr, e.bytes)? as *const T;
        if outputs.iter().any(|o| o.overlaps(e)) {
            // SAFETY: as in `Input::slice`; the slice lives only for this copy, before any
            // output is written.
            let src = unsafe { std::slice::from_raw_parts(ptr, n) };
            return Ok(Input::Copy(src.to_vec()));
        }
        Ok(Input::Device(ptr, n))
    }

    /// Resolves output `e` as a mutable slice of `T`.
    ///
    /// # Safety
    /// - `size_of::<T>() == e.elem_size` and every bit pattern is a valid `T`.
    /// - No other slice of the caller covers the range while the result lives: inputs that
    ///   overlap it were read through [`KernelContext::input`] with `e` among the outputs,
    ///   and outputs of one kernel were checked disjoint.
    // The slice points into device memory, not into `self`; exclusivity is the caller's
    // obligation.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn output<T>(&self, e: &Extent) -> Result<&mut [T], Fault> {
        debug_assert_eq!(std::mem::size_of::<T>() as u64, e.elem_size);
        let n = e.elems() as usize;
        if n == 0 {
            return Ok(&mut []);
        }
        let ptr = self.resolve(e.operand, e.addr, e.bytes)? as *mut T;
        // SAFETY: a resolved, aligned range of `n` elements of a live allocation; exclusive
        // by the caller's guarantee.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
    }
}
