//! Timeline semaphores: a u64 that only grows, with [`SEMAPHORE_FAILED`] marking failed work.
//!
//! Waiting spins for a short, bounded time before it parks on a condition variable: a futex
//! wake-up costs tens of microseconds on the virtual machines this runs on, a spinning
//! hand-off a fraction of one, and most waits on a launch end within a few microseconds.
//! Signalling wakes parked waiters only when there are any, so a signal nobody sleeps on
//! costs one atomic store and one load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use knpu_driver_abi::{
    KnpuStatus, KNPU_STATUS_DEVICE_LOST, KNPU_STATUS_INVALID_VALUE, KNPU_STATUS_SUCCESS,
    KNPU_STATUS_TIMEOUT, SEMAPHORE_FAILED,
};
use parking_lot::{Condvar, Mutex};

/// How long a wait spins before it parks.
pub const SPIN: Duration = Duration::from_micros(50);
/// How often a parked waiter that must watch for device loss wakes to check.
const LOSS_POLL: Duration = Duration::from_millis(5);

/// A failure recorded on a semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The status of the failed work.
    pub status: KnpuStatus,
    /// What failed, naming the command and address where there is one.
    pub message: String,
}

/// A timeline semaphore.
pub struct Semaphore {
    /// The index of the device that created the semaphore.
    pub device: u32,
    value: AtomicU64,
    failure: Mutex<Option<Failure>>,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Semaphore {
    /// A semaphore of device `device` starting at `initial`.
    pub fn new(device: u32, initial: u64) -> Semaphore {
        Semaphore {
            device,
            value: AtomicU64::new(initial),
            failure: Mutex::new(None),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// The current value ([`SEMAPHORE_FAILED`] after a failure).
    pub fn value(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// The recorded failure, if the semaphore has failed.
    pub fn failure(&self) -> Option<Failure> {
        if self.value() != SEMAPHORE_FAILED {
            return None;
        }
        self.failure.lock().clone()
    }

    /// Sets the value from the host: `INVALID_VALUE` if it would go down or names the
    /// failure value.
    pub fn signal_host(&self, value: u64) -> KnpuStatus {
        if value == SEMAPHORE_FAILED {
            return KNPU_STATUS_INVALID_VALUE;
        }
        let mut current = self.value.load(Ordering::Acquire);
        loop {
            if value < current {
                return KNPU_STATUS_INVALID_VALUE;
            }
            match self.value.compare_exchange_weak(
                current,
                value,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(v) => current = v,
            }
        }
        self.wake_sleepers();
        KNPU_STATUS_SUCCESS
    }

    /// Raises the value to at least `value` (completion of device work). A failed semaphore
    /// stays failed.
    pub fn signal(&self, value: u64) {
        self.value.fetch_max(value, Ordering::AcqRel);
        self.wake_sleepers();
    }

    /// Marks the semaphore failed with `status` and `message`; the first failure is kept.
    pub fn fail(&self, status: KnpuStatus, message: &str) {
        {
            let mut f = self.failure.lock();
            if f.is_none() {
                *f = Some(Failure {
                    status,
                    message: message.to_string(),
                });
            }
        }
        self.value.store(SEMAPHORE_FAILED, Ordering::Release);
        self.wake_sleepers();
    }

    fn wake_sleepers(&self) {
        // SeqCst pairs with the sleeper's increment: either it sees the new value before it
        // parks, or we see it and notify under the lock it checks the value under.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            let _guard = self.lock.lock();
            self.wake.notify_all();
        }
    }

    /// `Some(status)` once a wait for `target` can end.
    fn check(&self, target: u64) -> Option<KnpuStatus> {
        let v = self.value();
        if v == SEMAPHORE_FAILED {
            return Some(
                self.failure
                    .lock()
                    .as_ref()
                    .map_or(KNPU_STATUS_DEVICE_LOST, |f| f.status),
            );
        }
        (v >= target).then_some(KNPU_STATUS_SUCCESS)
    }

    /// Waits until the value reaches `target` (SUCCESS), the semaphore fails (its failure
    /// status), `timeout_ns` passes (TIMEOUT; `u64::MAX` never does), or `lost()` turns true
    /// (DEVICE_LOST; polled every few milliseconds while parked).
    pub fn wait(&self, target: u64, timeout_ns: u64, lost: &dyn Fn() -> bool) -> KnpuStatus {
        if let Some(s) = self.check(target) {
            return s;
        }
        if lost() {
            return KNPU_STATUS_DEVICE_LOST;
        }
        if timeout_ns == 0 {
            return KNPU_STATUS_TIMEOUT;
        }
        let start = Instant::now();
        let deadline = (timeout_ns != u64::MAX)
            .then(|| start.checked_add(Duration::from_nanos(timeout_ns)))
            .flatten();
        let spin_until = start + SPIN.min(Duration::from_nanos(timeout_ns));
        while Instant::now() < spin_until {
            for _ in 0..16 {
                std::hint::spin_loop();
                if let Some(s) = self.check(target) {
                    return s;
                }
            }
            // Yield between short bursts: when the signalling worker shares this core (a busy
            // machine), it gets to run within microseconds instead of after the spin.
            std::thread::yield_now();
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock();
        let status = loop {
            if let Some(s) = self.check(target) {
                break s;
            }
            if lost() {
                break KNPU_STATUS_DEVICE_LOST;
            }
            let now = Instant::now();
            let mut nap = LOSS_POLL;
            if let Some(d) = deadline {
                if now >= d {
                    break KNPU_STATUS_TIMEOUT;
                }
                nap = nap.min(d - now);
            }
            self.wake.wait_for(&mut guard, nap);
        };
        drop(guard);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn values_only_grow_and_failure_is_final() {
        let s = Semaphore::new(0, 5);
        assert_eq!(s.signal_host(4), KNPU_STATUS_INVALID_VALUE);
        assert_eq!(s.signal_host(5), KNPU_STATUS_SUCCESS);
        assert_eq!(s.signal_host(SEMAPHORE_FAILED), KNPU_STATUS_INVALID_VALUE);
        s.signal(3);
        assert_eq!(s.value(), 5);
        assert!(s.failure().is_none());
        s.fail(KNPU_STATUS_DEVICE_LOST, "gone");
        s.fail(KNPU_STATUS_INVALID_VALUE, "second");
        s.signal(9);
        assert_eq!(s.value(), SEMAPHORE_FAILED);
        assert_eq!(s.failure().unwrap().message, "gone");
        assert_eq!(s.wait(1, 0, &|| false), KNPU_STATUS_DEVICE_LOST);
    }

    #[test]
    fn waits_end_by_signal_timeout_or_loss() {
        let s = Arc::new(Semaphore::new(0, 0));
        assert_eq!(s.wait(1, 0, &|| false), KNPU_STATUS_TIMEOUT);
        assert_eq!(s.wait(1, 1_000_000, &|| false), KNPU_STATUS_TIMEOUT);
        assert_eq!(s.wait(1, u64::MAX, &|| true), KNPU_STATUS_DEVICE_LOST);
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s2.signal(2);
        });
        assert_eq!(s.wait(2, u64::MAX, &|| false), KNPU_STATUS_SUCCESS);
        t.join().unwrap();
    }
}
