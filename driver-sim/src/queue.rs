//! Queues: one in-order worker thread per queue.
//!
//! `queue_submit` hands an owned [`Submission`] to the worker through a lock-free channel.
//! The worker runs each submission to completion: waits on its wait semaphores, executes its
//! commands in order, then signals (or fails) its signal semaphores. Between submissions the
//! worker spins for [`IDLE_SPIN`] before it parks, because a futex wake-up costs tens of
//! microseconds on the hosts this runs on while a spinning hand-off costs a fraction of one;
//! it never spins longer, so idle queues leave the cores to others.
//!
//! Errors are not sticky: a failed submission fails its own signal semaphores, and the next
//! submission on the queue runs normally. A lost device fails every submission the worker
//! sees from then on without running it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam::channel::{unbounded, Receiver, Sender, TryRecvError};
use knpu_driver_abi::*;
use parking_lot::Mutex;

use crate::command::{Command, Submission};
use crate::device::Device;
use crate::driver::Driver;
use crate::exec::{execute, ExecContext, Fault};

/// How long an idle worker looks for new work before it parks.
pub const IDLE_SPIN: Duration = Duration::from_micros(50);
/// A parked worker wakes at least this often (a safety net; submissions unpark it at once).
const PARK_TIMEOUT: Duration = Duration::from_millis(100);

enum Message {
    Run(Submission),
    Stop,
}

/// A queue of one device.
pub struct Queue {
    /// Small integer naming the queue on its device (profile records).
    pub id: u32,
    /// The device the queue runs on.
    pub device: Arc<Device>,
    /// Its priority (`KnpuQueuePriority`).
    pub priority: i32,
    sender: Sender<Message>,
    sleeping: Arc<AtomicBool>,
    thread: Thread,
    worker: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Queue {
    /// Starts a queue on `device`; `OUT_OF_MEMORY` at the device's queue limit or when the
    /// worker thread cannot start.
    pub fn spawn(
        driver: &'static Driver,
        device: &Arc<Device>,
        priority: i32,
    ) -> Result<Arc<Queue>, KnpuStatus> {
        let id = device.reserve_queue().ok_or(KNPU_STATUS_OUT_OF_MEMORY)?;
        let (sender, receiver) = unbounded();
        let sleeping = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            driver,
            device: device.clone(),
            queue_id: id,
            priority,
            receiver,
            sleeping: sleeping.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("knpu-sim-q{}.{id}", device.index))
            .spawn(move || worker.run());
        let handle = match handle {
            Ok(h) => h,
            Err(_) => {
                device.release_queue();
                return Err(KNPU_STATUS_OUT_OF_MEMORY);
            }
        };
        Ok(Arc::new(Queue {
            id,
            device: device.clone(),
            priority,
            sender,
            sleeping,
            thread: handle.thread().clone(),
            worker: Mutex::new(Some(handle)),
            closed: AtomicBool::new(false),
        }))
    }

    /// Enqueues a submission; INVALID_HANDLE once the queue is being destroyed.
    pub fn submit(&self, submission: Submission) -> Result<(), KnpuStatus> {
        if self.closed.load(Ordering::Acquire) {
            return Err(KNPU_STATUS_INVALID_HANDLE);
        }
        self.sender
            .send(Message::Run(submission))
            .map_err(|_| KNPU_STATUS_INVALID_HANDLE)?;
        self.wake_if_sleeping();
        Ok(())
    }

    fn wake_if_sleeping(&self) {
        // Pairs with the worker's fence between announcing sleep and its last look at the
        // channel: one of the two sees the other.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    /// Wakes the worker (device loss).
    pub fn wake(&self) {
        self.thread.unpark();
    }

    /// Lets the worker finish every submitted submission, then stops it and joins it (unless
    /// called from the worker itself, from a host function, which cannot wait for itself).
    pub fn shut_down(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.sender.send(Message::Stop);
        self.thread.unpark();
        let handle = self.worker.lock().take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        self.device.release_queue();
    }
}

struct Worker {
    driver: &'static Driver,
    device: Arc<Device>,
    queue_id: u32,
    priority: i32,
    receiver: Receiver<Message>,
    sleeping: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) {
        while let Some(message) = self.next() {
            match message {
                Message::Run(s) => self.process(s),
                Message::Stop => return,
            }
        }
    }

    /// The next message: spin briefly, then park until a submitter unparks us.
    fn next(&self) -> Option<Message> {
        let spin_start = Instant::now();
        loop {
            for _ in 0..16 {
                match self.receiver.try_recv() {
                    Ok(m) => return Some(m),
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) => std::hint::spin_loop(),
                }
            }
            if spin_start.elapsed() >= IDLE_SPIN {
                break;
            }
            // When the submitter shares this core (the machine is busy), spinning without
            // yielding would keep it from running until the spin ends.
            std::thread::yield_now();
        }
        loop {
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let m = self.receiver.try_recv();
            if !matches!(m, Err(TryRecvError::Empty)) {
                self.sleeping.store(false, Ordering::SeqCst);
                return m.ok();
            }
            std::thread::park_timeout(PARK_TIMEOUT);
            self.sleeping.store(false, Ordering::SeqCst);
            match self.receiver.try_recv() {
                Ok(m) => return Some(m),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
        }
    }

    fn lost_fault(&self) -> Fault {
        Fault::new(
            KNPU_STATUS_DEVICE_LOST,
            format!("{} was lost", self.device.name.to_string_lossy()),
        )
    }

    fn process(&self, s: Submission) {
        // Read once per submission: profiling switched on meanwhile starts with the next one.
        let profiling = self.device.profiler.enabled();
        let ctx = ExecContext {
            driver: self.driver,
            device: &self.device,
            priority: self.priority,
            profiling,
        };
        // Commands' start and end times are read only for the profiler.
        let now = || {
            if profiling {
                self.driver.clock.now_ns()
            } else {
                0
            }
        };
        let mut failure: Option<Fault> = None;
        if self.device.is_lost() {
            failure = Some(self.lost_fault());
        }
        if failure.is_none() {
            let lost = || self.device.is_lost();
            for (i, (sem, value)) in s.waits().enumerate() {
                let status = sem.wait(*value, u64::MAX, &lost);
                if status == KNPU_STATUS_SUCCESS {
                    continue;
                }
                failure = Some(if self.device.is_lost() {
                    self.lost_fault()
                } else {
                    let cause = sem
                        .failure()
                        .map_or_else(|| format!("status {status}"), |f| f.message);
                    Fault::new(
                        KNPU_STATUS_DEPENDENCY_FAILED,
                        format!("wait semaphore {i} (value {value}) failed: {cause}"),
                    )
                });
                break;
            }
        }
        let listed = s.list.as_ref().map_or(&[][..], |l| &l.0[..]);
        for (i, cmd) in s.commands.iter().chain(listed).enumerate() {
            if let Command::HostFunction { func, user_data } = *cmd {
                let status = failure.as_ref().map_or(KNPU_STATUS_SUCCESS, |f| f.status);
                let start = now();
                // SAFETY: the submitter passed this function and argument to be called once on
                // a driver thread when earlier work is done (ABI contract); it is called here
                // exactly once, with the submission's status so far.
                unsafe { func(user_data, status) };
                if profiling {
                    self.record(cmd, status, start, Default::default());
                }
                continue;
            }
            if failure.is_some() {
                continue;
            }
            if self.device.is_lost() {
                failure = Some(self.lost_fault());
                continue;
            }
            let start = now();
            // A panic is a driver bug; it fails this submission (INTERNAL) instead of killing
            // the worker and leaving every later submission of the queue hanging.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| execute(&ctx, cmd)))
                .unwrap_or_else(|p| Err(Fault::new(KNPU_STATUS_INTERNAL, panic_message(&p))));
            let status = result
                .as_ref()
                .map_or_else(|f| f.status, |_| KNPU_STATUS_SUCCESS);
            if profiling {
                self.record(cmd, status, start, result.clone().unwrap_or_default());
            }
            if let Err(f) = result {
                failure = Some(Fault::new(
                    f.status,
                    format!("command {i} ({}): {}", cmd.kind(), f.message),
                ));
            }
        }
        match failure {
            None => s.signals().for_each(|(sem, v)| sem.signal(*v)),
            Some(f) => s
                .signals()
                .for_each(|(sem, _)| sem.fail(f.status, &f.message)),
        }
    }

    fn record(&self, cmd: &Command, status: KnpuStatus, start: u64, outcome: crate::exec::Outcome) {
        self.device.profiler.push(KnpuCommandRecord {
            struct_size: std::mem::size_of::<KnpuCommandRecord>(),
            queue_id: self.queue_id,
            type_: cmd.type_id(),
            kernel_id: match cmd {
                Command::Kernel { kernel, .. } => kernel.id,
                _ => 0,
            },
            status,
            bytes: outcome.bytes,
            start_ns: start,
            end_ns: self.driver.clock.now_ns(),
            modeled_ns: outcome.modeled_ns,
        });
    }
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal driver error: {text}")
}
