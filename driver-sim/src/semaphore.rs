//! Timeline semaphores: a u64 that only grows, with [`SEMAPHORE_FAILED`] marking failed work.
//!
//! Waiting spins for a short, bounded time before it parks on a condition variable: a futex
//! wake-up costs tens of microseconds on the virtual machines this runs on, a spinning
//! hand-off a fraction of one, and most waits on a launch end within a few microseconds.
//! Signalling wakes parked waiters only when there are any, so a signal nobody sleeps on
//! costs one atomic read-modify-write and one load.
//!
//! Every access to the value and to the sleeper count is `SeqCst`, with no standalone
//! fence: a signal's update of the value and its look at the sleeper count, and a sleeper's
//! registration and its look at the value, are then in one total order, so either the
//! sleeper sees the new value before it parks or the signal sees the sleeper and wakes it.
//! On x86-64 these are the instructions weaker orderings give (a locked read-modify-write,
//! plain loads). The value is never updated with `fetch_max`: ThreadSanitizer's
//! instrumentation leaves `atomicrmw max` (and min) out, so a waiter's acquire of a signal
//! made that way is invisible to it, and every host access after a wait was reported as a
//! data race with the device work it waited for.

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
        self.value.load(Ordering::SeqCst)
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
        let mut current = self.value.load(Ordering::SeqCst);
        loop {
            if value < current {
                return KNPU_STATUS_INVALID_VALUE;
            }
            match self.value.compare_exchange_weak(
                current,
                value,
                Ordering::SeqCst,
                Ordering::SeqCst,
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
        // What `fetch_max` does, spelled out as the compare-exchange loop it compiles to on
        // x86-64 (which has no atomic maximum), because ThreadSanitizer does not instrument
        // `fetch_max` (see the module docs). Like `fetch_max`, it always writes, so every
        // signal is a release the waiters acquire, even one that does not raise the value.
        let _ = self
            .value
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(v.max(value)));
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
        self.value.store(SEMAPHORE_FAILED, Ordering::SeqCst);
        self.wake_sleepers();
    }

    /// Called after every update of the value. The update and this load are both `SeqCst`,
    /// as are a sleeper's registration and its next look at the value (module docs): either
    /// that look sees the update, or this load sees the sleeper and we notify under the lock
    /// it checks the value under.
    fn wake_sleepers(&self) {
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

    /// What a signaller wrote before `signal` is the waiter's to read and free once `wait`
    /// returns, whether the wait ended spinning or parked. Under ThreadSanitizer (`make
    /// sanitize`) this also checks that the edge is one it sees: it reported a data race here
    /// while `signal` used `fetch_max`.
    #[test]
    fn a_wait_acquires_what_the_signaller_wrote_before_signalling() {
        for (round, delay) in [0u64, 0, 10, 10].into_iter().enumerate() {
            let s = Arc::new(Semaphore::new(0, 0));
            let data = Box::into_raw(Box::new([0u64; 8]));
            let (s2, addr) = (s.clone(), data as usize);
            let t = std::thread::spawn(move || {
                // A delay makes the waiter park first; the result does not depend on it.
                std::thread::sleep(Duration::from_millis(delay));
                let data = addr as *mut [u64; 8];
                // SAFETY: the waiter does not touch `data` until this thread's signal.
                unsafe { (*data)[round % 8] = round as u64 + 1 };
                s2.signal(1);
            });
            assert_eq!(s.wait(1, u64::MAX, &|| false), KNPU_STATUS_SUCCESS);
            // SAFETY: `data` came from `Box::into_raw`; the signaller's last use of it was
            // before the signal this wait saw.
            let data = unsafe { Box::from_raw(data) };
            assert_eq!(data[round % 8], round as u64 + 1);
            drop(data);
            t.join().unwrap();
        }
    }
}
