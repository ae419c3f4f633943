//! The device clock, the per-device profile of executed commands, and the timing model.
//!
//! Every executed command gets a start and end time on the device clock (nanoseconds since
//! the driver started). While profiling is on, each becomes a `KnpuCommandRecord` in a
//! bounded buffer; beyond [`MAX_RECORDS`] the oldest are dropped and counted. The timing
//! model predicts how long a command would take on the configured NPU profile from byte
//! and operation counts alone; it is reported as `modeled_ns`, always apart from wall time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use knpu_driver_abi::KnpuCommandRecord;
use parking_lot::Mutex;

/// Most records kept per device before the oldest are dropped.
pub const MAX_RECORDS: usize = 1 << 20;

/// The device clock: nanoseconds since the driver started.
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    /// Nanoseconds since the clock started.
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// One device's command records.
#[derive(Default)]
pub struct Profiler {
    enabled: AtomicBool,
    records: Mutex<VecDeque<KnpuCommandRecord>>,
    dropped: AtomicU64,
}

impl Profiler {
    /// Starts or stops recording.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// Whether commands are being recorded.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Appends a record, dropping the oldest when the buffer is full.
    pub fn push(&self, record: KnpuCommandRecord) {
        let mut r = self.records.lock();
        if r.len() == MAX_RECORDS {
            r.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        r.push_back(record);
    }

    /// Removes up to `max` records, oldest first, passing each to `sink`; returns how many.
    pub fn drain(&self, max: usize, mut sink: impl FnMut(usize, &KnpuCommandRecord)) -> usize {
        let mut r = self.records.lock();
        let n = max.min(r.len());
        for (i, rec) in r.drain(..n).enumerate() {
            sink(i, &rec);
        }
        n
    }

    /// Records dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Modeled nanoseconds to move `bytes` at `mbps` MB/s (10^6 bytes per second).
pub fn transfer_ns(bytes: u64, mbps: u64) -> u64 {
    rate_ns(bytes, mbps)
}

/// Modeled nanoseconds to perform `ops` operations at `mops` million per second.
pub fn compute_ns(ops: u64, mops: u64) -> u64 {
    rate_ns(ops, mops)
}

fn rate_ns(amount: u64, per_us: u64) -> u64 {
    if per_us == 0 {
        return 0;
    }
    // amount / (per_us * 1e6 / s) in ns = amount * 1000 / per_us, rounded up.
    (amount as u128 * 1000).div_ceil(per_us as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_rates() {
        assert_eq!(transfer_ns(16_000, 16_000), 1000);
        assert_eq!(compute_ns(1, 100_000), 1);
        assert_eq!(compute_ns(0, 100_000), 0);
        assert_eq!(transfer_ns(5, 0), 0);
    }

    #[test]
    fn drain_is_fifo() {
        use knpu_driver_abi::SizedStruct;
        let p = Profiler::default();
        for i in 0..3 {
            let mut r = KnpuCommandRecord::sized();
            r.start_ns = i;
            p.push(r);
        }
        let mut seen = vec![];
        assert_eq!(p.drain(2, |_, r| seen.push(r.start_ns)), 2);
        assert_eq!(p.drain(9, |_, r| seen.push(r.start_ns)), 1);
        assert_eq!(seen, [0, 1, 2]);
    }
}
