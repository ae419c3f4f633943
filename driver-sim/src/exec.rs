//! Execution of one command on a queue's worker: the DMA engine (copies, fills), kernel
//! launches, host callbacks and timestamps.
//!
//! Every device range is resolved through the allocation table first, so a bad address
//! becomes a [`Fault`] naming it, never a host access. Copies and fills of at least
//! [`PARALLEL_BYTES`] are split across the compute pool, the way a DMA engine has several
//! channels. What this module must never do is touch host memory a command does not name.

use std::sync::Arc;

use knpu_driver_abi::*;

use crate::command::Command;
use crate::config::TimingProfile;
use crate::device::Device;
use crate::driver::Driver;
use crate::kernels::KernelContext;
use crate::memory::AddressFault;
use crate::profile::transfer_ns;

/// Copies and fills of at least this many bytes are split across the compute pool.
pub const PARALLEL_BYTES: u64 = 1 << 20;

/// Largest chunk a fill copies from its own filled prefix at once (stays in cache).
const FILL_CHUNK: usize = 256 * 1024;

/// A command that failed while it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The status the submission fails with.
    pub status: KnpuStatus,
    /// What went wrong (the worker prefixes the command's index and kind).
    pub message: String,
}

impl Fault {
    /// A fault with `status` and `message`.
    pub fn new(status: KnpuStatus, message: impl Into<String>) -> Fault {
        Fault {
            status,
            message: message.into(),
        }
    }
}

impl From<AddressFault> for Fault {
    fn from(f: AddressFault) -> Fault {
        Fault::new(KNPU_STATUS_ILLEGAL_ADDRESS, f.to_string())
    }
}

/// Where a command runs.
pub struct ExecContext<'a> {
    /// The driver.
    pub driver: &'static Driver,
    /// The queue's device.
    pub device: &'a Arc<Device>,
    /// The queue's priority.
    pub priority: i32,
    /// Whether the device's profiler records commands: only then does a kernel's modeled
    /// duration get computed (it decodes the parameters a second time).
    pub profiling: bool,
}

/// What an executed command did, for the profiler (`modeled_ns` is 0 for kernels when it is
/// off).
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Bytes moved by a copy or fill.
    pub bytes: u64,
    /// The timing model's duration.
    pub modeled_ns: u64,
}

/// A host pointer that may cross to pool threads for one parallel copy.
#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
// SAFETY: used only inside `split`, whose tasks touch disjoint byte ranges of memory that the
// command owns for its duration.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its field).
    fn get(self) -> *mut u8 {
        self.0
    }
}

/// Runs `f(offset, len)` over `[0, size)` in pieces whose offsets are multiples of 64 bytes:
/// on the pool for large sizes, else at once on this thread.
fn split(ctx: &ExecContext<'_>, size: u64, f: impl Fn(usize, usize) + Sync) {
    let size = size as usize;
    let threads = ctx.driver.config.cores;
    if (size as u64) < PARALLEL_BYTES || threads < 2 {
        f(0, size);
        return;
    }
    let piece = size.div_ceil(threads).div_ceil(64) * 64;
    ctx.driver.in_pool(|| {
        rayon::scope(|s| {
            for start in (0..size).step_by(piece) {
                let f = &f;
                s.spawn(move |_| f(start, piece.min(size - start)));
            }
        })
    });
}

/// Copies `size` bytes from `src` to `dst` (which do not overlap), split across the pool
/// when large.
///
/// # Safety
/// - `src` must be readable and `dst` writable for `size` bytes, the ranges must not
///   overlap, and nothing else may write them while the copy runs.
unsafe fn copy_disjoint(ctx: &ExecContext<'_>, dst: *mut u8, src: *const u8, size: u64) {
    let (d, s) = (SendPtr(dst), SendPtr(src as *mut u8));
    split(ctx, size, move |off, len| {
        // SAFETY: [off, off + len) lies within `size`, which the caller guarantees valid and
        // disjoint; the pieces of `split` do not overlap each other.
        unsafe { std::ptr::copy_nonoverlapping(s.get().add(off), d.get().add(off), len) }
    });
}

/// Copies `size` bytes between two resolved device ranges, which may overlap (memmove
/// semantics, as when a device copies within one buffer or names itself as its own peer).
///
/// # Safety
/// - `src` must be readable and `dst` writable for `size` bytes, and nothing else may write
///   them while the copy runs.
unsafe fn copy_device(ctx: &ExecContext<'_>, dst: *mut u8, src: *const u8, size: u64) {
    let (a, b, n) = (src as usize, dst as usize, size as usize);
    if a < b.saturating_add(n) && b < a.saturating_add(n) {
        // SAFETY: both ranges are valid for `size` bytes (caller); ptr::copy is a memmove.
        unsafe { std::ptr::copy(src, dst, n) };
    } else {
        // SAFETY: both ranges valid (caller) and disjoint.
        unsafe { copy_disjoint(ctx, dst, src, size) };
    }
}

/// What a copy of `size` bytes over the DMA engine did.
fn dma(size: u64, t: &TimingProfile) -> Outcome {
    Outcome {
        bytes: size,
        modeled_ns: transfer_ns(size, t.dma_bandwidth_mbps),
    }
}

/// Executes `cmd` with every earlier command of its queue done.
///
/// Host functions are not run here: the worker calls them, because they are also called
/// when the submission fails.
pub fn execute(ctx: &ExecContext<'_>, cmd: &Command) -> Result<Outcome, Fault> {
    let mem = &ctx.device.memory;
    let t = &ctx.device.timing;
    match *cmd {
        Command::CopyHostToDevice { src, dst, size } => {
            if size > 0 {
                let d = mem.resolve(dst, size)?;
                // SAFETY: `d` is `size` bytes of a live allocation; the submitter guarantees
                // `src` readable for `size` bytes until completion (ABI contract); host
                // memory is never inside the device's backing blocks.
                unsafe { copy_disjoint(ctx, d, src.0, size) };
            }
            Ok(dma(size, t))
        }
        Command::CopyDeviceToHost { src, dst, size } => {
            if size > 0 {
                let s = mem.resolve(src, size)?;
                // SAFETY: as for host to device, with the roles swapped.
                unsafe { copy_disjoint(ctx, dst.0, s, size) };
            }
            Ok(dma(size, t))
        }
        Command::CopyDeviceToDevice { src, dst, size } => {
            if size > 0 {
                let s = mem.resolve(src, size)?;
                let d = mem.resolve(dst, size)?;
                // SAFETY: both ranges are `size` bytes of live allocations.
                unsafe { copy_device(ctx, d, s, size) };
            }
            Ok(Outcome {
                bytes: size,
                modeled_ns: transfer_ns(2 * size, t.memory_bandwidth_mbps),
            })
        }
        Command::CopyPeer {
            ref peer,
            src,
            dst,
            size,
        } => {
            peer.check_alive().map_err(|s| {
                Fault::new(s, format!("peer {} is lost", peer.name.to_string_lossy()))
            })?;
            if size > 0 {
                let s = peer.memory.resolve(src, size).map_err(|f| {
                    Fault::new(
                        KNPU_STATUS_ILLEGAL_ADDRESS,
                        format!("source on {}: {f}", peer.name.to_string_lossy()),
                    )
                })?;
                let d = mem.resolve(dst, size)?;
                // SAFETY: both ranges are `size` bytes of live allocations (on two devices,
                // or on one that names itself as its own peer).
                unsafe { copy_device(ctx, d, s, size) };
            }
            Ok(dma(size, t))
        }
        Command::Fill {
            dst,
            size,
            pattern,
            pattern_size,
        } => {
            if size > 0 {
                let d = SendPtr(mem.resolve(dst, size)?);
                let bytes = pattern.to_le_bytes();
                let mut block = [0u8; 64];
                for (i, b) in block.iter_mut().enumerate() {
                    *b = bytes[i % pattern_size as usize];
                }
                // Pieces start at multiples of 64 bytes, so each continues the pattern.
                split(ctx, size, move |off, len| {
                    // SAFETY: [off, off + len) lies within the resolved `size` bytes.
                    let piece = unsafe { d.get().add(off) };
                    if pattern_size == 1 {
                        // SAFETY: `len` writable bytes at `piece`.
                        unsafe { std::ptr::write_bytes(piece, bytes[0], len) };
                        return;
                    }
                    // Seed one block, then copy the filled prefix onto the rest in doubling
                    // (capped) chunks: each chunk starts at a multiple of 64 bytes from the
                    // piece, so it continues the pattern, and the copies are large memcpys.
                    let seed = len.min(64);
                    // SAFETY: `seed` <= len bytes at `piece`; `block` is a separate buffer.
                    unsafe { std::ptr::copy_nonoverlapping(block.as_ptr(), piece, seed) };
                    let mut done = seed;
                    while done < len {
                        let n = done.min(len - done).min(FILL_CHUNK);
                        // SAFETY: [0, n) and [done, done + n) lie in the piece and do not
                        // overlap (n <= done).
                        unsafe { std::ptr::copy_nonoverlapping(piece, piece.add(done), n) };
                        done += n;
                    }
                });
            }
            Ok(Outcome {
                bytes: size,
                modeled_ns: transfer_ns(size, t.memory_bandwidth_mbps),
            })
        }
        Command::Kernel { kernel, ref params } => {
            if ctx.device.faults.kernel_faults(kernel.id) {
                return Err(Fault::new(
                    KNPU_STATUS_KERNEL_FAULT,
                    "injected kernel fault (device_inject_fault)",
                ));
            }
            let kctx = KernelContext {
                driver: ctx.driver,
                device: ctx.device,
                priority: ctx.priority,
            };
            (kernel.run)(&kctx, params.bytes())?;
            Ok(Outcome {
                bytes: 0,
                modeled_ns: if ctx.profiling {
                    (kernel.model_ns)(params.bytes(), t)
                } else {
                    0
                },
            })
        }
        Command::Timestamp { dst } => {
            // SAFETY: validated non-null and 8-aligned at submit; the submitter guarantees
            // it writable until completion.
            unsafe { dst.write(ctx.driver.clock.now_ns()) };
            Ok(Outcome::default())
        }
        Command::HostFunction { .. } => Ok(Outcome::default()),
    }
}
