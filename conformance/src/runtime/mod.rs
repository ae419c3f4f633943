//! The runtime level: the same driver driven through the `knpu` crate (streams, events, the
//! caching allocator, typed ops), one module per feature.
//!
//! Kernel-family cases stay thin: each launches a few ops through `knpu::ops` and compares
//! with a plain host computation, so the runtime's launchers, not this kit, own each op's
//! parameter rules.

mod copies;
mod devices;
mod faults;
mod kernels;
mod memory;
mod sample;
mod streams;

use std::sync::mpsc;
use std::time::Duration;

use knpu::{Error, Stream};

use crate::Case;

/// The runtime-level cases, by feature.
pub fn cases() -> Vec<Case> {
    [
        devices::cases,
        memory::cases,
        copies::cases,
        streams::cases,
        faults::cases,
        kernels::cases,
        sample::cases,
    ]
    .into_iter()
    .flat_map(|feature| feature())
    .collect()
}

/// `n` distinct small f32 values.
pub(crate) fn pattern(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32) * 0.5 - 3.0).collect()
}

/// The `n` values `f(0)`, `f(1)`, ...: test data.
pub(crate) fn values(n: usize, f: impl Fn(usize) -> f32) -> Vec<f32> {
    (0..n).map(f).collect()
}

/// Asserts `e` is an address fault that names `addr`.
pub(crate) fn assert_fault_names_address(e: &Error, addr: u64) {
    assert!(
        matches!(e, Error::IllegalAddress { .. }),
        "expected an illegal address fault, got {e}"
    );
    let text = e.to_string().to_lowercase();
    assert!(
        text.contains(&format!("{addr:#x}")),
        "message must name address {addr:#x}: {text}"
    );
}

/// Asserts a round trip through the device works on `s`.
pub(crate) fn device_still_works(s: &Stream) {
    let b = s.from_slice(&pattern(257)).unwrap();
    assert_eq!(b.to_vec().unwrap(), pattern(257));
}

/// Holds a stream busy until the returned sender is dropped or sent to.
pub(crate) fn block_stream(s: &Stream) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    s.launch_host_func(move || {
        let _ = rx.recv_timeout(Duration::from_secs(10));
    })
    .unwrap();
    tx
}
