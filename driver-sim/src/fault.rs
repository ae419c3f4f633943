//! Fault injection for tests: fail the N-th allocation or the N-th kernel launch.
//!
//! Faults are armed per device through `device_inject_fault` (or `KNPU_SIM_FAIL_ALLOC` at
//! start) and fire once. Losing a device is not armed here: it happens at once and is the
//! device's state (see `Driver::lose_device`). An unarmed device pays one atomic load per
//! allocation and per kernel launch.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

#[derive(Default)]
struct Armed {
    /// Allocations left until the failing one (1: the next).
    alloc_in: Option<u64>,
    /// `(kernel id or 0 for any, launches left until the failing one)`.
    kernel: Option<(u32, u64)>,
}

/// The faults armed on one device.
#[derive(Default)]
pub struct FaultState {
    any: AtomicBool,
    armed: Mutex<Armed>,
}

impl FaultState {
    /// A state with the `fail_alloc`-th allocation armed to fail, if given.
    pub fn new(fail_alloc: Option<u64>) -> FaultState {
        let s = FaultState::default();
        if let Some(n) = fail_alloc {
            s.arm_alloc(n);
        }
        s
    }

    /// Arms the `count`-th allocation from now (1: the next) to fail.
    pub fn arm_alloc(&self, count: u64) {
        self.armed.lock().alloc_in = Some(count.max(1));
        self.any.store(true, Ordering::Release);
    }

    /// Arms the `count`-th kernel launch from now (of `kernel_id`, or any when 0) to fault.
    pub fn arm_kernel(&self, kernel_id: u32, count: u64) {
        self.armed.lock().kernel = Some((kernel_id, count.max(1)));
        self.any.store(true, Ordering::Release);
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        *self.armed.lock() = Armed::default();
        self.any.store(false, Ordering::Release);
    }

    /// Counts one allocation; true when it must fail.
    pub fn allocation_fails(&self) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut a = self.armed.lock();
        let fire = match &mut a.alloc_in {
            Some(n) => {
                *n -= 1;
                *n == 0
            }
            None => false,
        };
        if fire {
            a.alloc_in = None;
        }
        self.update(&a);
        fire
    }

    /// Counts one launch of `kernel_id`; true when it must fault.
    pub fn kernel_faults(&self, kernel_id: u32) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut a = self.armed.lock();
        let fire = match &mut a.kernel {
            Some((id, n)) if *id == 0 || *id == kernel_id => {
                *n -= 1;
                *n == 0
            }
            _ => false,
        };
        if fire {
            a.kernel = None;
        }
        self.update(&a);
        fire
    }

    fn update(&self, a: &Armed) {
        self.any.store(
            a.alloc_in.is_some() || a.kernel.is_some(),
            Ordering::Release,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_once_at_their_count() {
        let f = FaultState::new(Some(2));
        assert!(!f.allocation_fails());
        assert!(f.allocation_fails());
        assert!(!f.allocation_fails());
        f.arm_kernel(7, 2);
        assert!(!f.kernel_faults(1), "other kernels are not counted");
        assert!(!f.kernel_faults(7));
        assert!(f.kernel_faults(7));
        assert!(!f.kernel_faults(7));
        f.arm_kernel(0, 1);
        f.clear();
        assert!(!f.kernel_faults(3));
    }
}
