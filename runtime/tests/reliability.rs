//! The reliability suite: regressions of defects found under stress and misuse, concurrency
//! stress against a sequential run, graph replay from several threads, misuse cases in child
//! processes, fault injection, and the allocator's accounting at the end.
//!
//! Every part is bounded in time: a watchdog turns a hang into a failure that names the call
//! each thread was in. Parts that arm device-wide faults, count streams or read the
//! allocator's totals run in a child process of this test binary (re-run with
//! `KNPU_RELIABILITY_CASE` naming the case), so nothing else shares their device and an
//! abort is a failed case, not a dead test run.

#[path = "reliability/common.rs"]
mod common;
#[path = "reliability/faults.rs"]
mod faults;
#[path = "reliability/misuse.rs"]
mod misuse;
#[path = "reliability/regressions.rs"]
mod regressions;
/// Helpers shared with the other runtime test binaries.
#[path = "common/mod.rs"]
mod shared;
#[path = "reliability/stress.rs"]
mod stress;
