//! The knpu driver conformance kit: one body of checks that every driver must pass, run
//! against the driver under test at two levels.
//!
//! - The **driver ABI** level ([`abi`]) calls the driver's C function table directly, the way
//!   the runtime does, and checks each function's contract from `knpu_driver.h`.
//! - The **runtime** level ([`runtime`]) drives the same driver through the `knpu` crate
//!   (streams, events, the caching allocator, the typed ops), so what an application sees is
//!   checked too.
//!
//! Cases are grouped by [`Feature`]. A case that needs a capability the driver reports as
//! absent (a kernel and dtype, fault injection, peer copies, profiling, command lists, a
//! second device) is **skipped** with the reason, never failed. A driver that cannot pass a
//! case it claims to support declares it in its [`Expectations`] file, with a reason; the
//! case must then fail, and an expected failure that passes is reported as a failure too.
//!
//! ```no_run
//! use knpu_conformance::{run, Expectations, Target};
//! let target = Target::builtin().unwrap();
//! let report = run(&target, &Expectations::for_driver(&target.driver_name()), None, &mut |_| {});
//! print!("{}", report.table());
//! assert!(report.is_success());
//! ```
//!
//! The kit runs its cases one after another on one thread: cases read allocator statistics
//! and arm device-wide faults, which concurrent cases would disturb. It must never be used to
//! judge speed; it makes no timing claims.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod abi;
mod expectations;
mod report;
mod runner;
pub mod runtime;
mod target;

pub use expectations::{Expect, Expectation, Expectations};
pub use report::{CaseReport, Outcome, Report};
pub use runner::{run, AbiContext, RuntimeContext};
pub use target::Target;

use std::fmt;

/// The layer a case drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The driver's C function table.
    Abi,
    /// The `knpu` runtime over the driver.
    Runtime,
}

impl Level {
    /// The name used in case ids: `abi` or `runtime`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Abi => "abi",
            Level::Runtime => "runtime",
        }
    }
}

/// The feature a case checks; the report's table has a row per feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// The table's header, device enumeration, names, attributes, capability queries.
    Devices,
    /// Allocation, freeing, memory accounting, the caching allocator.
    Memory,
    /// Copies in every direction and fills.
    Copies,
    /// Queues, timeline semaphores, host functions, timestamps; streams and events.
    QueuesAndSemaphores,
    /// Command lists (ABI 1.1): stored once, submitted many times.
    CommandLists,
    /// Per-command profiling records.
    Profiling,
    /// Address faults, injected faults, device loss.
    Faults,
    /// Elementwise kernels (add, mul, sub, axpy, scale).
    KernelElementwise,
    /// GEMM.
    KernelGemm,
    /// LLM ops (normalisation, softmax).
    KernelLlm,
    /// Quantisation.
    KernelQuant,
}

impl Feature {
    /// Every feature, in report order.
    pub const ALL: [Feature; 11] = [
        Feature::Devices,
        Feature::Memory,
        Feature::Copies,
        Feature::QueuesAndSemaphores,
        Feature::CommandLists,
        Feature::Profiling,
        Feature::Faults,
        Feature::KernelElementwise,
        Feature::KernelGemm,
        Feature::KernelLlm,
        Feature::KernelQuant,
    ];

    /// The name used in case ids and the report, e.g. `queues-semaphores`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Devices => "devices",
            Feature::Memory => "memory",
            Feature::Copies => "copies",
            Feature::QueuesAndSemaphores => "queues-semaphores",
            Feature::CommandLists => "command-lists",
            Feature::Profiling => "profiling",
            Feature::Faults => "faults",
            Feature::KernelElementwise => "kernel-elementwise",
            Feature::KernelGemm => "kernel-gemm",
            Feature::KernelLlm => "kernel-llm",
            Feature::KernelQuant => "kernel-quant",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a case did not run: the driver reports that it lacks what the case needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    /// A skip with this reason.
    pub fn new(reason: impl Into<String>) -> Unsupported {
        Unsupported(reason.into())
    }
}

/// What a case returns: `Ok` when it ran (a failed check panics), `Err` when it was skipped.
pub type CaseResult = Result<(), Unsupported>;

/// The body of a case, at its level.
#[derive(Clone, Copy)]
pub enum Body {
    /// Runs against the driver's function table.
    Abi(fn(&AbiContext) -> CaseResult),
    /// Runs against the driver's devices in the runtime.
    Runtime(fn(&RuntimeContext) -> CaseResult),
}

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// What it checks.
    pub feature: Feature,
    /// Its name, unique within its level and feature.
    pub name: &'static str,
    /// Whether it leaves a device unusable (device loss); such cases run last, each on a
    /// spare device of its own.
    pub destructive: bool,
    /// What runs.
    pub body: Body,
}

impl Case {
    /// The level the case drives.
    pub fn level(&self) -> Level {
        match self.body {
            Body::Abi(_) => Level::Abi,
            Body::Runtime(_) => Level::Runtime,
        }
    }

    /// The case's id, `level/feature/name`, as expectations files name it.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.level().name(), self.feature, self.name)
    }
}

/// Declares cases of one feature from functions of the same names.
macro_rules! case_list {
    ($level:ident, $feature:expr; $($name:ident),* $(,)?) => {
        vec![$($crate::Case {
            feature: $feature,
            name: stringify!($name),
            destructive: false,
            body: $crate::Body::$level($name),
        }),*]
    };
}
pub(crate) use case_list;

/// Every case of the kit, ABI level first, in the order they run (destructive cases are
/// moved to the end by the runner).
pub fn cases() -> Vec<Case> {
    let mut all = abi::cases();
    all.extend(runtime::cases());
    all
}
