//! The driver instance: configuration, devices, the shared compute pool, the clock and the
//! handle registries of queues and semaphores.
//!
//! There is one instance per loaded copy of the library, created at first use from the
//! environment. Devices live until the library is unloaded.
//!
//! The compute pool is the process's global rayon pool when the driver is the first to start
//! it (the usual case: nothing else in a process that loads the simulator uses rayon first).
//! Then a queue worker calls a kernel on its own thread and the kernel's parallel parts reach
//! the pool, or the spinning compute team of `knpu_kernels::par`, by themselves: no hand-off
//! to a parked pool thread and back for every kernel. When another user started the global
//! pool first, the driver keeps a pool of its own and every kernel is handed to it.

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
    pool: OnceLock<Pool>,
}

/// Where the compute pool's threads come from.
enum Pool {
    /// The process's global rayon pool, started by this driver with `config.cores` threads.
    Global,
    /// A pool of this driver's own (the global pool was started by someone else first).
    Own(ThreadPool),
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
    fn pool(&self) -> &Pool {
        self.pool.get_or_init(|| {
            let builder = || {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(self.config.cores)
                    .thread_name(|i| format!("knpu-sim-core-{i}"))
            };
            match builder().build_global() {
                Ok(()) => Pool::Global,
                Err(_) => Pool::Own(builder().build().expect("the compute pool's threads start")),
            }
        })
    }

    /// Whether the compute pool is the process's global rayon pool, so that [`in_pool`]
    /// runs its closure on the calling thread.
    ///
    /// [`in_pool`]: Driver::in_pool
    pub fn pool_is_global(&self) -> bool {
        matches!(self.pool(), Pool::Global)
    }

    /// Runs `f` so that rayon's parallel calls inside it (and the fallback of
    /// `knpu_kernels::par` when its compute team is busy) run on the compute pool: on the
    /// calling thread when the pool is the global one, else on a thread of the driver's own
    /// pool (`install`, a hand-off to a pool thread and back).
    pub fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.pool() {
            Pool::Global => f(),
            Pool::Own(pool) => pool.install(f),
        }
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
