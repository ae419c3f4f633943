//! The driver ABI level: checks of the C function table's contract (`knpu_driver.h`), one
//! module per feature, written against a thin client over the table (`client`) so they run
//! on any driver.

pub mod client;
mod command_lists;
mod copies;
mod devices;
mod faults;
mod memory;
mod profiling;
mod queues;

pub use client::RawDriver;

use crate::Case;

/// The ABI-level cases, by feature.
pub fn cases() -> Vec<Case> {
    [
        devices::cases,
        memory::cases,
        copies::cases,
        queues::cases,
        command_lists::cases,
        profiling::cases,
        faults::cases,
    ]
    .into_iter()
    .flat_map(|feature| feature())
    .collect()
}
