//! Devices: enumeration, properties, capabilities, memory and a default stream.
//!
//! A [`Device`] is a cheap handle (an `Arc`) to one device of one driver. Devices are opened
//! once, live for the rest of the process, and are numbered in discovery order: the
//! built-in software NPU's devices first, then those of each library in `KNPU_DRIVER_PATH`.

use crate::allocator::{Allocator, MemoryStats};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::stream::{Priority, Stream, StreamInner};
use knpu_driver_abi as abi;
use knpu_driver_abi::SizedStruct;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// A device attribute, read with [`Device::attribute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// Bytes of device memory.
    TotalMemory,
    /// Compute cores.
    ComputeCores,
    /// Alignment of every allocation, in bytes.
    AllocationAlignment,
    /// Most queues (streams) at once.
    MaxQueues,
    /// Modeled peak f32 rate, MFLOP/s.
    PeakF32Mflops,
    /// Modeled peak f16/bf16 rate, MFLOP/s.
    PeakF16Mflops,
    /// Modeled peak int8 rate, MOP/s.
    PeakInt8Mops,
    /// Modeled memory bandwidth, MB/s.
    MemoryBandwidthMbps,
    /// Modeled host<->device bandwidth, MB/s.
    DmaBandwidthMbps,
    /// 1 when peer copies between this driver's devices work.
    PeerCopy,
    /// 1 when fault injection works.
    FaultInjection,
}

impl Attribute {
    fn raw(self) -> u32 {
        match self {
            Attribute::TotalMemory => abi::KNPU_ATTR_TOTAL_MEMORY,
            Attribute::ComputeCores => abi::KNPU_ATTR_COMPUTE_CORES,
            Attribute::AllocationAlignment => abi::KNPU_ATTR_ALLOCATION_ALIGNMENT,
            Attribute::MaxQueues => abi::KNPU_ATTR_MAX_QUEUES,
            Attribute::PeakF32Mflops => abi::KNPU_ATTR_PEAK_F32_MFLOPS,
            Attribute::PeakF16Mflops => abi::KNPU_ATTR_PEAK_F16_MFLOPS,
            Attribute::PeakInt8Mops => abi::KNPU_ATTR_PEAK_INT8_MOPS,
            Attribute::MemoryBandwidthMbps => abi::KNPU_ATTR_MEMORY_BANDWIDTH_MBPS,
            Attribute::DmaBandwidthMbps => abi::KNPU_ATTR_DMA_BANDWIDTH_MBPS,
            Attribute::PeerCopy => abi::KNPU_ATTR_PEER_COPY,
            Attribute::FaultInjection => abi::KNPU_ATTR_FAULT_INJECTION,
        }
    }
}

/// One command the device ran, as its profiler recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRecord {
    /// The queue that ran it (a small integer, unique per device).
    pub queue: u32,
    /// The `KnpuCommandType`.
    pub command_type: u32,
    /// The kernel id, for kernel commands.
    pub kernel_id: u32,
    /// The command's `KnpuStatus`.
    pub status: u32,
    /// Bytes moved by copies and fills.
    pub bytes: u64,
    /// Start on the device clock, ns.
    pub start_ns: u64,
    /// End on the device clock, ns.
    pub end_ns: u64,
    /// The duration the device's timing model predicts (0: none), ns.
    pub modeled_ns: u64,
}

/// A fault to inject into a device, for testing error paths (drivers that support it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Clear armed faults.
    None,
    /// The `n`-th device allocation from now (1 = the next) fails as out of memory.
    FailAlloc(u64),
    /// The `n`-th kernel launch from now faults; `kernel_id` 0 counts every kernel.
    Kernel {
        /// Which launch, counting from 1.
        n: u64,
        /// Count only this kernel id (0: any).
        kernel_id: u32,
    },
    /// The device is lost now.
    LoseDevice,
}

pub(crate) struct DeviceInner {
    pub(crate) ordinal: usize,
    pub(crate) driver: Arc<Driver>,
    pub(crate) raw: abi::KnpuDriverDevice,
    pub(crate) name: String,
    pub(crate) allocator: Allocator,
    pub(crate) lost: AtomicBool,
    default_stream: OnceLock<Stream>,
    pub(crate) streams: Mutex<Vec<Weak<StreamInner>>>,
}

// SAFETY: the raw device handle may be used from any thread (driver ABI); everything else is
// Send + Sync on its own.
unsafe impl Send for DeviceInner {}
// SAFETY: as above.
unsafe impl Sync for DeviceInner {}

/// One device of one driver. Clones name the same device.
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.inner.ordinal)
            .field("name", &self.inner.name)
            .field("driver", &self.inner.driver.name())
            .finish()
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Device {}

impl Device {
    pub(crate) fn open(driver: &Arc<Driver>, index: u32, ordinal: usize) -> Result<Device> {
        let raw = driver.device_get(index)?;
        let name = driver.device_name(raw)?;
        Ok(Device {
            inner: Arc::new(DeviceInner {
                ordinal,
                driver: driver.clone(),
                raw,
                name,
                allocator: Allocator::new(driver.clone(), raw, ordinal),
                lost: AtomicBool::new(false),
                default_stream: OnceLock::new(),
                streams: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The device's ordinal in [`crate::devices`].
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }

    /// The device's name as its driver reports it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The driver this device belongs to.
    pub fn driver(&self) -> &Driver {
        &self.inner.driver
    }

    /// Reads one attribute.
    pub fn attribute(&self, attr: Attribute) -> Result<i64> {
        self.check_lost()?;
        self.inner.driver.attribute(self.inner.raw, attr.raw())
    }

    /// Whether the device runs kernel `kernel_id` (a `KnpuKernelId`) with element type
    /// `dtype` (a `KnpuDtype`).
    pub fn supports_kernel(&self, kernel_id: u32, dtype: u32) -> Result<bool> {
        self.inner
            .driver
            .supports_kernel(self.inner.raw, kernel_id, dtype)
    }

    /// `(free, total)` bytes of device memory as the driver reports them.
    pub fn memory_info(&self) -> Result<(u64, u64)> {
        self.check_lost()?;
        self.inner.driver.memory_info(self.inner.raw)
    }

    /// The caching allocator's statistics for this device.
    pub fn memory_stats(&self) -> MemoryStats {
        self.inner.allocator.stats()
    }

    /// Resets the peak figures of [`Device::memory_stats`] to the current ones.
    pub fn reset_peak_memory_stats(&self) {
        self.inner.allocator.reset_peak_stats()
    }

    /// Returns every cached, wholly free segment to the driver. Waits for work that may
    /// still use those blocks. Refused during a strict-mode stream capture.
    pub fn empty_cache(&self) -> Result<()> {
        crate::graph::check_unsafe_call("empty_cache")?;
        self.inner.allocator.empty_cache();
        Ok(())
    }

    /// Allocates `len` elements on the default stream. Unlike [`Stream::alloc`] this is not
    /// ordered with other streams' work, so (as `cudaMalloc`) it is refused during a
    /// strict-mode stream capture.
    pub fn alloc<T: bytemuck::Pod>(&self, len: usize) -> Result<crate::DeviceBuffer<T>> {
        crate::graph::check_unsafe_call("a non-stream-ordered allocation (Device::alloc)")?;
        self.default_stream()?.alloc(len)
    }

    /// Starts or stops recording a [`CommandRecord`] for every command the device runs.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        self.inner.driver.set_profiling(self.inner.raw, on)
    }

    /// Takes the command records collected since the last call, oldest first.
    pub fn read_profile(&self) -> Result<Vec<CommandRecord>> {
        let mut raw = Vec::new();
        self.inner.driver.read_profile(self.inner.raw, &mut raw)?;
        Ok(raw
            .into_iter()
            .map(|r| CommandRecord {
                queue: r.queue_id,
                command_type: r.type_,
                kernel_id: r.kernel_id,
                status: r.status,
                bytes: r.bytes,
                start_ns: r.start_ns,
                end_ns: r.end_ns,
                modeled_ns: r.modeled_ns,
            })
            .collect())
    }

    /// The device's default stream, created on first use.
    pub fn default_stream(&self) -> Result<&Stream> {
        if let Some(s) = self.inner.default_stream.get() {
            return Ok(s);
        }
        let s = Stream::with_priority(self, Priority::Normal)?;
        Ok(self.inner.default_stream.get_or_init(|| s))
    }

    /// Waits for the work of every stream of this device. Returns the first error found,
    /// after waiting for all of them.
    pub fn synchronize(&self) -> Result<()> {
        crate::graph::check_unsafe_call("device synchronize")?;
        let streams: Vec<Arc<StreamInner>> = {
            let mut list = self.inner.streams.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut first = Ok(());
        for s in streams {
            let r = Stream::from_inner(s).synchronize();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Arms a fault, for tests of error paths. Fails with `NotSupported` on drivers without
    /// fault injection.
    pub fn inject_fault(&self, fault: Fault) -> Result<()> {
        let mut f = abi::KnpuFaultInjection::sized();
        match fault {
            Fault::None => f.kind = abi::KNPU_FAULT_NONE,
            Fault::FailAlloc(n) => {
                f.kind = abi::KNPU_FAULT_FAIL_ALLOC;
                f.count = n;
            }
            Fault::Kernel { n, kernel_id } => {
                f.kind = abi::KNPU_FAULT_KERNEL;
                f.count = n;
                f.kernel_id = kernel_id;
            }
            Fault::LoseDevice => f.kind = abi::KNPU_FAULT_LOSE_DEVICE,
        }
        self.inner.driver.inject_fault(self.inner.raw, &f)
    }

    /// Whether the device was reported lost.
    pub fn is_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// The device clock now, in nanoseconds (the clock of event timestamps).
    pub fn clock_ns(&self) -> Result<u64> {
        self.inner.driver.clock_ns(self.inner.raw)
    }

    pub(crate) fn check_lost(&self) -> Result<()> {
        if self.is_lost() {
            return Err(Error::DeviceLost {
                message: format!("device {} was lost earlier", self.inner.ordinal),
            });
        }
        Ok(())
    }

    /// Notes an error; a device-lost error marks the device lost.
    pub(crate) fn note(&self, e: Error) -> Error {
        if e.is_device_lost() {
            self.inner.lost.store(true, Ordering::Relaxed);
        }
        e
    }
}
