//! The kernels the software NPU runs, by kernel id.
//!
//! Each kernel is one module exporting a [`KernelDef`]: which dtypes it takes, how to
//! validate its parameter struct at submit, how to run it, and what the timing model
//! predicts for it. Adding a kernel means adding a module and one line in `REGISTRY`.
//! Executors resolve device addresses through [`KernelContext::resolve`] and call the safe
//! kernels of `knpu-kernels` on host slices; they never read memory outside a resolved range.

mod elementwise;
mod gemm;
// Attention and key/value caches (0x200-0x2FF).
mod attention;
// LLM ops (0x400-0x4FF).
mod llm;
// Quantised kernels (0x300-0x3FF).
mod quant;

use std::sync::Arc;

use knpu_driver_abi::*;
use knpu_kernels::Parallelism;

use crate::config::TimingProfile;
use crate::device::Device;
use crate::driver::Driver;
use crate::exec::Fault;

/// Below this many elements a kernel runs on the queue's worker thread: waking the compute
/// pool costs more than it saves.
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
    elementwise::KERNEL,
    gemm::KERNEL,
    // Attention and key/value caches (0x200-0x2FF).
    attention::ATTENTION,
    attention::PAGED_ATTENTION,
    attention::KV_APPEND,
    attention::PAGED_KV_APPEND,
    // LLM ops (0x400-0x4FF).
    llm::RMS_NORM,
    llm::LAYER_NORM,
    llm::ROPE,
    llm::ACTIVATION,
    llm::SWIGLU,
    llm::SOFTMAX,
    llm::BINARY,
    llm::EMBEDDING,
    llm::CAST,
    llm::ARGMAX,
    llm::TOP_K,
    // Quantised kernels (0x300-0x3FF).
    quant::QUANTIZE,
    quant::DEQUANTIZE,
    quant::QMATMUL,
    quant::W8A8_GEMM,
    quant::QEMBEDDING,
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

    /// Runs `f` with the parallelism a problem of `elements` warrants: on this thread for
    /// small problems, else on the compute pool. A LOW priority queue's kernels use at most
    /// half the pool, so other queues always find free cores.
    pub fn run<R: Send>(&self, elements: usize, f: impl FnOnce(Parallelism) -> R + Send) -> R {
        let cores = self.driver.config.cores;
        if elements < INLINE_ELEMENTS || cores < 2 {
            return f(Parallelism::None);
        }
        let grant = if self.priority < KNPU_QUEUE_PRIORITY_NORMAL {
            Parallelism::Rayon((cores / 2).max(1))
        } else {
            Parallelism::Rayon(0)
        };
        self.driver.pool().install(|| f(grant))
    }
}

/// Reads a parameter struct `T` whose first field is `struct_size`, requiring the struct to
/// reach `required_end` bytes; fields beyond what the caller's struct_size covers read as 0.
///
/// # Safety
/// - `T` must be an ABI parameter struct: first field `struct_size: usize`, every bit
///   pattern (in particular all zeros) a valid value.
pub unsafe fn read_params<T: Copy>(bytes: &[u8], required_end: usize) -> Result<T, KnpuStatus> {
    if bytes.len() < std::mem::size_of::<usize>() {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    let declared = usize::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"));
    if declared > bytes.len() || !has_field(declared, required_end) {
        return Err(KNPU_STATUS_INVALID_VALUE);
    }
    // SAFETY: the caller guarantees all-zero bytes are a valid T starting with struct_size.
    let mut value: T = unsafe { sized_zeroed() };
    let n = declared.min(std::mem::size_of::<T>());
    // SAFETY: copies n <= size_of::<T>() bytes from a slice of at least n bytes into the
    // value; any bit pattern is a valid T by the caller's guarantee.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), &mut value as *mut T as *mut u8, n) };
    Ok(value)
}
