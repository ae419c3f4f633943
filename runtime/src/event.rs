//! Events: markers in a stream's work, for waiting, ordering across streams and timing.
//!
//! Recording an event notes the stream's position — its semaphore and the value of its last
//! submission — so `query`, `synchronize` and `Stream::wait_event` are checks of that one
//! value. An event created with timing also queues a timestamp command, whose device-clock
//! value [`Event::elapsed_ms`] reads. Recorded on a capturing stream, an event marks a point
//! of the capture instead, for forking and joining other streams into it.
//!
//! An event never recorded counts as complete (as in CUDA): waiting on it returns at once;
//! timing it is an error.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{Capture, NodeId};
use crate::semaphore::Semaphore;
use crate::stream::Stream;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

enum Recorded {
    /// A point in a stream's work (or a graph launch's).
    At {
        sem: Arc<Semaphore>,
        value: u64,
        stamp: Option<Arc<AtomicU64>>,
    },
    /// A point in a capture.
    Captured {
        cap: Weak<Capture>,
        tails: Vec<NodeId>,
    },
}

pub(crate) struct EventInner {
    pub(crate) device: Device,
    pub(crate) timing: bool,
    recorded: Mutex<Option<Recorded>>,
}

impl EventInner {
    pub(crate) fn position(&self) -> Option<(Arc<Semaphore>, u64)> {
        match &*self.recorded.lock() {
            Some(Recorded::At { sem, value, .. }) => Some((sem.clone(), *value)),
            _ => None,
        }
    }

    pub(crate) fn set_position(
        &self,
        sem: Arc<Semaphore>,
        value: u64,
        stamp: Option<Arc<AtomicU64>>,
    ) {
        *self.recorded.lock() = Some(Recorded::At { sem, value, stamp });
    }
}

/// A marker in a stream's work.
pub struct Event {
    pub(crate) inner: Arc<EventInner>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("device", &self.inner.device.ordinal())
            .field("timing", &self.inner.timing)
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
            inner: Arc::new(EventInner {
                device: device.clone(),
                timing,
                recorded: Mutex::new(None),
            }),
        }
    }

    /// The device the event belongs to.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Records the event at the current end of `stream`'s work, replacing any earlier record.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        if stream.device() != &self.inner.device {
            return Err(Error::DeviceMismatch {
                operand: "stream",
                expected: self.inner.device.ordinal(),
                actual: stream.device().ordinal(),
            });
        }
        stream.leave_dead_capture()?;
        if let Some((cap, tails)) = stream.capture_point() {
            cap.check_valid()?;
            *self.inner.recorded.lock() = Some(Recorded::Captured {
                cap: Arc::downgrade(&cap),
                tails,
            });
            return Ok(());
        }
        let rec = if self.inner.timing {
            let slot = Arc::new(AtomicU64::new(0));
            let value = stream.timestamp(slot.clone())?;
            let (sem, _) = stream.position();
            Recorded::At {
                sem,
                value,
                stamp: Some(slot),
            }
        } else {
            let (sem, value) = stream.position();
            Recorded::At {
                sem,
                value,
                stamp: None,
            }
        };
        *self.inner.recorded.lock() = Some(rec);
        Ok(())
    }

    pub(crate) fn position(&self) -> Option<(Arc<Semaphore>, u64)> {
        self.inner.position()
    }

    /// The capture point, when the event was last recorded on a capturing stream.
    pub(crate) fn capture_point(&self) -> Option<(Arc<Capture>, Vec<NodeId>)> {
        match &*self.inner.recorded.lock() {
            Some(Recorded::Captured { cap, tails }) => cap.upgrade().map(|c| (c, tails.clone())),
            _ => None,
        }
    }

    /// The error `query`, `synchronize` and `Stream::wait_event` give for an event last
    /// recorded during a capture (outside that capture it marks no work).
    pub(crate) fn captured_error(&self) -> Result<()> {
        if let Some(Recorded::Captured { cap, .. }) = &*self.inner.recorded.lock() {
            let over = cap
                .upgrade()
                .is_none_or(|c| c.ended.load(Ordering::Acquire));
            return Err(Error::Capture {
                detail: if over {
                    "the event was recorded in a stream capture that has ended; it marks no \
                     work to wait for (record it again outside the capture)"
                        .into()
                } else {
                    "the event marks a point of a stream capture; it has no work to wait for".into()
                },
            });
        }
        Ok(())
    }

    /// Whether the recorded work has finished; its fault, if it failed.
    pub fn query(&self) -> Result<bool> {
        self.captured_error()?;
        let Some((sem, value)) = self.position() else {
            return Ok(true);
        };
        let dev = &self.inner.device;
        let v = sem.value().map_err(|e| dev.note(e))?;
        if v == knpu_driver_abi::SEMAPHORE_FAILED {
            return Err(dev.note(sem.error().unwrap_or_else(|| Error::Internal {
                detail: "semaphore failed without a reason".into(),
            })));
        }
        Ok(v >= value)
    }

    /// Waits for the recorded work; returns its fault, if it failed.
    pub fn synchronize(&self) -> Result<()> {
        self.captured_error()?;
        crate::graph::check_unsafe_call("event synchronize")?;
        crate::stream::check_not_in_callback("event synchronize")?;
        match self.position() {
            None => Ok(()),
            Some((sem, value)) => sem.wait(value).map_err(|e| self.inner.device.note(e)),
        }
    }

    fn stamp(&self, which: &str) -> Result<u64> {
        let rec = self.inner.recorded.lock();
        let Some(Recorded::At { sem, value, stamp }) = rec.as_ref() else {
            return Err(Error::invalid(format!(
                "{which} event was never recorded on a running stream"
            )));
        };
        let slot = stamp
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("{which} event was created without timing")))?;
        if !sem.reached(*value) {
            return Err(Error::NotReady {
                detail: format!("{which} event's work has not finished"),
            });
        }
        if let Some(e) = sem.error() {
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
