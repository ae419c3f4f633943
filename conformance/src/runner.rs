//! Runs the cases on a target, one after another, and records each outcome.
//!
//! A failed check panics; the runner catches the panic, keeps its message and location, and
//! goes on with the next case. Cases that lose a device run last, each on a spare device.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use knpu_driver_abi as abi;

use crate::abi::RawDriver;
use crate::report::{CaseReport, Outcome, Report};
use crate::target::{EntryFn, Target};
use crate::{Body, Case, Expect, Expectations, Unsupported};

/// Spare devices: device 0 is the one under test; a "quiet" device (index 1) serves cases
/// that need a second device or one nobody else uses; devices to lose are handed out from
/// the last index down, after every other case has run.
struct Spares {
    count: u32,
    losable: Mutex<Vec<u32>>,
}

impl Spares {
    fn new(count: u32) -> Spares {
        Spares {
            count,
            losable: Mutex::new((1..count).collect()),
        }
    }

    fn quiet(&self) -> Result<u32, Unsupported> {
        if self.count >= 2 {
            Ok(1)
        } else {
            Err(Unsupported::new(format!(
                "needs a second device; the driver has {}",
                self.count
            )))
        }
    }

    fn take_losable(&self) -> Result<u32, Unsupported> {
        self.losable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or_else(|| {
                Unsupported::new(format!(
                    "needs a spare device to lose; the driver has {} and the others are used",
                    self.count
                ))
            })
    }
}

/// What an ABI-level case gets: the driver's table and its devices by index.
pub struct AbiContext {
    /// The driver under test.
    pub(crate) driver: RawDriver,
    entry: Option<EntryFn>,
    spares: Arc<Spares>,
}

impl AbiContext {
    /// The driver's entry point, when the target has one.
    pub fn entry(&self) -> Result<EntryFn, Unsupported> {
        self.entry
            .ok_or_else(|| Unsupported::new("the target is a bare table without an entry point"))
    }

    /// A second device, the same one for every case that asks (and that no case loses before
    /// every such case has run).
    pub fn quiet_device(&self) -> Result<u32, Unsupported> {
        self.spares.quiet()
    }

    /// A device this case may lose; no later case uses it.
    pub fn device_to_lose(&self) -> Result<u32, Unsupported> {
        self.spares.take_losable()
    }
}

/// What a runtime-level case gets: the driver's devices in the runtime.
pub struct RuntimeContext {
    /// The device under test (driver index 0).
    pub device: knpu::Device,
    devices: Vec<knpu::Device>,
    spares: Arc<Spares>,
}

impl RuntimeContext {
    /// A new stream on the device under test (a failure to make one fails the case).
    pub fn stream(&self) -> knpu::Stream {
        knpu::Stream::new(&self.device).expect("a stream on the device under test")
    }

    /// A device this case may lose; no later case uses it.
    pub fn device_to_lose(&self) -> Result<knpu::Device, Unsupported> {
        let i = self.spares.take_losable()?;
        Ok(self.devices[i as usize].clone())
    }

    /// Skips the case unless the device arms faults.
    pub fn require_fault_injection(&self) -> Result<(), Unsupported> {
        match self.device.attribute(knpu::Attribute::FaultInjection) {
            Ok(1) => Ok(()),
            _ => Err(Unsupported::new(
                "the device does not inject faults (KNPU_ATTR_FAULT_INJECTION is 0)",
            )),
        }
    }
}

thread_local! {
    /// The message and location of the last panic on this thread while a case runs.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_CASE: RefCell<bool> = const { RefCell::new(false) };
}

/// One run at a time: the panic hook is process-wide.
static RUNNING: Mutex<()> = Mutex::new(());

type Hook = Box<dyn Fn(&panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Runs every case (or those whose id contains `filter`) on `target` under `expectations`,
/// calling `progress` after each case.
pub fn run(
    target: &Target,
    expectations: &Expectations,
    filter: Option<&str>,
    progress: &mut dyn FnMut(&CaseReport),
) -> Report {
    let _one = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let mut cases: Vec<Case> = crate::cases()
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.id().contains(f)))
        .collect();
    // Stable: destructive cases last, each group in declaration order.
    cases.sort_by_key(|c| c.destructive);

    let raw = target.raw();
    let spares = Arc::new(Spares::new(device_count(raw)));
    let abi_ctx = AbiContext {
        driver: raw,
        entry: target.entry(),
        spares: spares.clone(),
    };
    let runtime_ctx = match target.devices() {
        Ok(devs) if !devs.is_empty() => Ok(RuntimeContext {
            device: devs[0].clone(),
            devices: devs.clone(),
            spares: spares.clone(),
        }),
        Ok(_) => Err(Err("the runtime found no device of this driver".to_string())),
        // A bare table: the runtime cannot reach it.
        Err(e) if e.is_empty() => Err(Ok(Unsupported::new(
            "the runtime reaches drivers through libraries; this target is a bare table",
        ))),
        Err(e) => Err(Err(format!("the runtime refused the driver: {e}"))),
    };

    let previous: Arc<Hook> = Arc::new(panic::take_hook());
    let forward = previous.clone();
    panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        let msg = format!("{}{at}", shorten(&payload_text(info.payload())));
        if IN_CASE.with(|c| *c.borrow()) {
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
        } else if std::thread::current().name().is_none() {
            // A thread a case spawned: its panic reaches the case through `join`; one line
            // here says which thread, without dumping the operands of a failed comparison.
            eprintln!("a thread of the case panicked: {msg}");
        } else {
            forward(info);
        }
    }));

    let mut report = Report::new(target.label(), &raw.name());
    for case in &cases {
        let id = case.id();
        let expected = expectations.lookup(&id);
        let outcome = match expected {
            Some(e) if e.expect == Expect::Skip => Outcome::Skipped(e.reason.clone()),
            _ => {
                let ran = match (case.body, &runtime_ctx) {
                    (Body::Abi(f), _) => catch(|| f(&abi_ctx)),
                    (Body::Runtime(f), Ok(ctx)) => catch(|| f(ctx)),
                    (Body::Runtime(_), Err(Ok(skip))) => Ok(Err(skip.clone())),
                    (Body::Runtime(_), Err(Err(reason))) => Err(reason.clone()),
                };
                match (ran, expected) {
                    (Ok(Err(skip)), _) => Outcome::Skipped(skip.0),
                    (Ok(Ok(())), None) => Outcome::Pass,
                    (Ok(Ok(())), Some(e)) => Outcome::UnexpectedPass(e.reason.clone()),
                    (Err(message), None) => Outcome::Fail(message),
                    (Err(message), Some(e)) => Outcome::ExpectedFailure {
                        reason: e.reason.clone(),
                        message,
                    },
                }
            }
        };
        let r = CaseReport {
            id,
            level: case.level(),
            feature: case.feature,
            outcome,
        };
        progress(&r);
        report.push(r);
    }

    let _ours = panic::take_hook();
    panic::set_hook(Box::new(move |info| previous(info)));
    report
}

fn device_count(raw: RawDriver) -> u32 {
    let Some(f) = raw.table().device_count else {
        return 0;
    };
    let mut n = 0;
    // SAFETY: a valid out-pointer; the function is callable from any thread.
    let st = unsafe { f(&mut n) };
    if st == abi::KNPU_STATUS_SUCCESS {
        n
    } else {
        0
    }
}

/// Runs `f`, turning a panic into its message.
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    IN_CASE.with(|c| *c.borrow_mut() = true);
    LAST_PANIC.with(|p| *p.borrow_mut() = None);
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    IN_CASE.with(|c| *c.borrow_mut() = false);
    r.map_err(|payload| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| shorten(&payload_text(&*payload)))
    })
}

/// A failure message cut to a readable length (a failed comparison of two buffers prints
/// both in full).
fn shorten(msg: &str) -> String {
    const LIMIT: usize = 600;
    if msg.len() <= LIMIT {
        return msg.to_string();
    }
    let mut end = LIMIT;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... ({} bytes cut)", &msg[..end], msg.len() - end)
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}
