//! An owned timeline semaphore of one driver.
//!
//! Streams signal their own semaphore with every submission; events and the allocator hold
//! `(semaphore, value)` pairs to ask "has this work finished?". The semaphore is destroyed
//! when the last holder drops it, so a holder never outlives what it points to.

use crate::driver::Driver;
use crate::error::{Error, Result};
use knpu_driver_abi as abi;
use std::sync::Arc;

/// A driver timeline semaphore, destroyed on drop.
pub(crate) struct Semaphore {
    pub(crate) driver: Arc<Driver>,
    pub(crate) raw: abi::KnpuSemaphore,
}

// SAFETY: the driver ABI lets any thread use a semaphore handle concurrently.
unsafe impl Send for Semaphore {}
// SAFETY: as above.
unsafe impl Sync for Semaphore {}

impl Semaphore {
    pub(crate) fn new(
        driver: &Arc<Driver>,
        device: abi::KnpuDriverDevice,
        initial: u64,
    ) -> Result<Arc<Semaphore>> {
        let raw = driver.semaphore_create(device, initial)?;
        Ok(Arc::new(Semaphore {
            driver: driver.clone(),
            raw,
        }))
    }

    /// Whether the semaphore has reached `value` (a failed semaphore counts as reached: the
    /// work is over, and its failure is reported by whoever owns it).
    #[inline]
    pub(crate) fn reached(&self, value: u64) -> bool {
        match self.driver.semaphore_query(self.raw) {
            Ok(v) => v >= value,
            Err(_) => true,
        }
    }

    /// The current value.
    #[inline]
    pub(crate) fn value(&self) -> Result<u64> {
        self.driver.semaphore_query(self.raw)
    }

    /// Waits until `value` is reached; a failed semaphore returns its failure.
    pub(crate) fn wait(&self, value: u64) -> Result<()> {
        let status = self
            .driver
            .semaphore_wait(self.raw, value, abi::TIMEOUT_INFINITE);
        if status == abi::KNPU_STATUS_SUCCESS {
            return Ok(());
        }
        Err(self
            .error()
            .unwrap_or_else(|| crate::error::from_status(status, "semaphore_wait")))
    }

    /// The failure recorded on this semaphore, if it failed.
    pub(crate) fn error(&self) -> Option<Error> {
        self.driver.semaphore_error(self.raw)
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        // Nothing to report to: a failing destroy means a driver bug, and the handle is gone
        // either way.
        let _ = self.driver.semaphore_destroy(self.raw);
    }
}
