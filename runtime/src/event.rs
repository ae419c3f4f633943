//! Events: markers in a stream's work, for waiting, ordering across streams and timing.
//!
//! Recording an event notes the stream's position — its semaphore and the value of its last
//! submission — so `query`, `synchronize` and `Stream::wait_event` are checks of that one
//! value. An event created with timing also queues a timestamp command, whose device-clock
//! value [`Event::elapsed_ms`] reads.
//!
//! An event never recorded counts as complete (as in CUDA): waiting on it returns at once;
//! timing it is an error.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::semaphore::Semaphore;
use crate::stream::Stream;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Recorded {
    sem: Arc<Semaphore>,
    value: u64,
    stamp: Option<Arc<AtomicU64>>,
}

/// A marker in a stream's work.
pub struct Event {
    device: Device,
    timing: bool,
    recorded: Mutex<Option<Recorded>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("device", &self.device.ordinal())
            .field("timing", &self.timing)
            .finish()
    }
}

impl Event {
    /// A new event with timing enabled.
    pub fn new(device: &Device) -> Event {
        Event::with_timing(device, true)
    }

    /// A new event; without timing, recording costs no device work.
    pub fn with_timing(device: &Device, timing: bool) -> Event {
        Event {
            device: device.clone(),
            timing,
            recorded: Mutex::new(None),
        }
    }

    /// The device the event belongs to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Records the event at the current end of `stream`'s work, replacing any earlier record.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        if stream.device() != &self.device {
            return Err(Error::DeviceMismatch {
                operand: "stream",
                expected: self.device.ordinal(),
                actual: stream.device().ordinal(),
            });
        }
        let rec = if self.timing {
            let slot = Arc::new(AtomicU64::new(0));
            let value = stream.timestamp(slot.clone())?;
            let (sem, _) = stream.position();
            Recorded {
                sem,
                value,
                stamp: Some(slot),
            }
        } else {
            let (sem, value) = stream.position();
            Recorded {
                sem,
                value,
                stamp: None,
            }
        };
        *self.recorded.lock() = Some(rec);
        Ok(())
    }

    pub(crate) fn position(&self) -> Option<(Arc<Semaphore>, u64)> {
        self.recorded
            .lock()
            .as_ref()
            .map(|r| (r.sem.clone(), r.value))
    }

    /// Whether the recorded work has finished; its fault, if it failed.
    pub fn query(&self) -> Result<bool> {
        let Some((sem, value)) = self.position() else {
            return Ok(true);
        };
        let v = sem.value().map_err(|e| self.device.note(e))?;
        if v == knpu_driver_abi::SEMAPHORE_FAILED {
            return Err(self
                .device
                .note(sem.error().unwrap_or_else(|| Error::Internal {
                    detail: "semaphore failed without a reason".into(),
                })));
        }
        Ok(v >= value)
    }

    /// Waits for the recorded work; returns its fault, if it failed.
    pub fn synchronize(&self) -> Result<()> {
        match self.position() {
            None => Ok(()),
            Some((sem, value)) => sem.wait(value).map_err(|e| self.device.note(e)),
        }
    }

    fn stamp(&self, which: &str) -> Result<u64> {
        let rec = self.recorded.lock();
        let r = rec
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("{which} event was never recorded")))?;
        let slot = r
            .stamp
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("{which} event was created without timing")))?;
        if !r.sem.reached(r.value) {
            return Err(Error::NotReady {
                detail: format!("{which} event's work has not finished"),
            });
        }
        if let Some(e) = r.sem.error() {
            return Err(e);
        }
        Ok(slot.load(Ordering::Acquire))
    }

    /// Milliseconds of device time between `start` and `end` (both recorded with timing and
    /// finished; `NotReady` otherwise).
    pub fn elapsed_ms(start: &Event, end: &Event) -> Result<f64> {
        let a = start.stamp("start")?;
        let b = end.stamp("end")?;
        Ok((b as f64 - a as f64) / 1e6)
    }
}
