//! The driver instance: configuration, devices, the shared compute pool, the clock and the
//! handle registries of queues and semaphores.
//!
//! There is one instance per loaded copy of the library, created at first use from the
//! environment. Devices live until the library is unloaded.

use std::sync::{Arc, OnceLock};

use knpu_driver_abi::*;
use rayon::ThreadPool;

use crate::config::Config;
use crate::device::Device;
use crate::handle::{self, Registry, DEVICE_TAG, QUEUE_TAG, SEMAPHORE_TAG};
use crate::profile::Clock;
use crate::queue::Queue;
use crate::semaphore::Semaphore;

/// The driver's state.
pub struct Driver {
    /// The configuration read at start.
    pub config: Config,
    /// Every device, by index.
    pub devices: Vec<Arc<Device>>,
    /// The device clock.
    pub clock: Clock,
    /// Live queues.
    pub queues: Registry<Queue>,
    /// Live semaphores.
    pub semaphores: Registry<Semaphore>,
    /// Live command lists.
    pub command_lists: Registry<crate::command::CommandList>,
    pool: OnceLock<ThreadPool>,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

/// The driver instance, created from the environment at first use.
pub fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| Driver::new(Config::from_env()))
}

impl Driver {
    /// A driver for `config`.
    pub fn new(config: Config) -> Driver {
        let devices = (0..config.devices)
            .map(|i| Arc::new(Device::new(i, &config)))
            .collect();
        Driver {
            config,
            devices,
            clock: Clock::new(),
            queues: Registry::new(QUEUE_TAG),
            semaphores: Registry::new(SEMAPHORE_TAG),
            command_lists: Registry::new(crate::handle::COMMAND_LIST_TAG),
            pool: OnceLock::new(),
        }
    }

    /// The compute pool shared by every queue of every device, started at first use.
    pub fn pool(&self) -> &ThreadPool {
        self.pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.config.cores)
                .thread_name(|i| format!("knpu-sim-core-{i}"))
                .build()
                .expect("the compute pool's threads start")
        })
    }

    /// The handle value of device `index`.
    pub fn device_handle(index: u32) -> usize {
        handle::encode(DEVICE_TAG, 0, index)
    }

    /// The device named by a handle value; `INVALID_HANDLE` for anything else.
    pub fn device(&self, handle: usize) -> Result<&Arc<Device>, KnpuStatus> {
        match handle::decode(DEVICE_TAG, handle) {
            Some((0, index)) => self
                .devices
                .get(index as usize)
                .ok_or(KNPU_STATUS_INVALID_HANDLE),
            _ => Err(KNPU_STATUS_INVALID_HANDLE),
        }
    }

    /// Loses `device` now: fails its semaphores (so host waits end with DEVICE_LOST) and
    /// wakes its queue workers, which fail every pending submission.
    pub fn lose_device(&self, device: &Device) {
        if !device.mark_lost() {
            return;
        }
        let message = format!("{} was lost", device.name.to_string_lossy());
        for s in self.semaphores.live() {
            if s.device == device.index {
                s.fail(KNPU_STATUS_DEVICE_LOST, &message);
            }
        }
        for q in self.queues.live() {
            if q.device.index == device.index {
                q.wake();
            }
        }
    }
}
