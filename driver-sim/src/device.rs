//! One software NPU device: its memory, fault state, profiler, queue accounting and the
//! attributes it reports.
//!
//! A device lives as long as the driver. Once lost it stays lost: its state is checked by
//! every call that creates work or objects on it.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use knpu_driver_abi::*;

use crate::config::{Config, TimingProfile};
use crate::fault::FaultState;
use crate::kernels;
use crate::memory::{AddressSpace, ALLOCATION_ALIGNMENT};
use crate::profile::Profiler;

/// Most queues a device has at once (`KNPU_ATTR_MAX_QUEUES`).
pub const MAX_QUEUES: u32 = 64;

/// A software NPU device.
pub struct Device {
    /// The device's index.
    pub index: u32,
    /// Its name, e.g. `knpu-sim NPU 0`.
    pub name: CString,
    /// Its memory.
    pub memory: AddressSpace,
    /// Its armed faults.
    pub faults: FaultState,
    /// Its command records.
    pub profiler: Profiler,
    /// Its timing model.
    pub timing: TimingProfile,
    cores: usize,
    lost: AtomicBool,
    queues: AtomicU32,
    next_queue_id: AtomicU32,
}

impl Device {
    /// Device `index` as `config` describes it.
    pub fn new(index: u32, config: &Config) -> Device {
        Device {
            index,
            name: CString::new(format!("knpu-sim NPU {index}")).expect("no NUL in the name"),
            memory: AddressSpace::new(index, config.memory_bytes),
            faults: FaultState::new(config.fail_alloc),
            profiler: Profiler::default(),
            timing: config.timing,
            cores: config.cores,
            lost: AtomicBool::new(false),
            queues: AtomicU32::new(0),
            next_queue_id: AtomicU32::new(0),
        }
    }

    /// Whether the device was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Marks the device lost; true the first time.
    pub fn mark_lost(&self) -> bool {
        !self.lost.swap(true, Ordering::AcqRel)
    }

    /// `Err(DEVICE_LOST)` once the device is lost.
    pub fn check_alive(&self) -> Result<(), KnpuStatus> {
        if self.is_lost() {
            Err(KNPU_STATUS_DEVICE_LOST)
        } else {
            Ok(())
        }
    }

    /// Reserves a queue slot and returns the new queue's id; `None` at [`MAX_QUEUES`].
    pub fn reserve_queue(&self) -> Option<u32> {
        self.queues
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_QUEUES).then_some(n + 1)
            })
            .ok()?;
        Some(self.next_queue_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Returns a queue slot.
    pub fn release_queue(&self) {
        self.queues.fetch_sub(1, Ordering::AcqRel);
    }

    /// The value of attribute `attr`, or `None` for an attribute this driver does not know.
    pub fn attribute(&self, attr: u32) -> Option<i64> {
        let t = &self.timing;
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        Some(match attr {
            KNPU_ATTR_TOTAL_MEMORY => clamp(self.memory.total()),
            KNPU_ATTR_COMPUTE_CORES => self.cores as i64,
            KNPU_ATTR_ALLOCATION_ALIGNMENT => ALLOCATION_ALIGNMENT as i64,
            KNPU_ATTR_MAX_QUEUES => MAX_QUEUES as i64,
            KNPU_ATTR_PEAK_F32_MFLOPS => clamp(t.peak_f32_mflops),
            KNPU_ATTR_PEAK_F16_MFLOPS => clamp(t.peak_f16_mflops),
            KNPU_ATTR_PEAK_INT8_MOPS => clamp(t.peak_int8_mops),
            KNPU_ATTR_MEMORY_BANDWIDTH_MBPS => clamp(t.memory_bandwidth_mbps),
            KNPU_ATTR_DMA_BANDWIDTH_MBPS => clamp(t.dma_bandwidth_mbps),
            KNPU_ATTR_PEER_COPY => 1,
            KNPU_ATTR_FAULT_INJECTION => 1,
            _ => return None,
        })
    }

    /// Whether the device runs `kernel_id` with element type `dtype`.
    pub fn supports_kernel(&self, kernel_id: u32, dtype: u32) -> bool {
        kernels::find(kernel_id).is_some_and(|k| (k.supports_dtype)(dtype))
    }
}
