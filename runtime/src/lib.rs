//! knpu: devices, a caching allocator, streams, events and typed ops over any NPU driver.
//!
//! The runtime reaches every driver — the built-in software NPU too — through the versioned
//! C driver ABI (`knpu_driver.h`), so an application written against it runs on any device.
//!
//! ```no_run
//! # fn main() -> knpu::Result<()> {
//! let dev = knpu::device(0)?;
//! let stream = knpu::Stream::new(&dev)?;
//! let a = stream.from_slice(&[1.0f32, 2.0, 3.0])?;
//! let b = stream.from_slice(&[10.0f32, 20.0, 30.0])?;
//! let mut c = stream.alloc::<f32>(3)?;
//! knpu::ops::add(&stream, &a, &b, &mut c)?;
//! assert_eq!(c.to_vec()?, vec![11.0, 22.0, 33.0]);
//! # Ok(()) }
//! ```
//!
//! Semantics in brief: launches return once queued; faults of queued work surface at the
//! next `synchronize`/`query` of the stream or event that owns the work; errors are not
//! sticky, and the device stays usable unless it was lost. Buffers are safe to drop while
//! work is pending. Drivers stay loaded for the rest of the process once opened.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod allocator;
mod buffer;
mod device;
pub mod driver;
mod dtype;
mod error;
mod event;
pub mod graph;
pub mod ops;
mod semaphore;
mod stream;
pub mod tensor;
pub mod trace;

pub use allocator::{AllocationRange, MemoryStats};
pub use buffer::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice};
pub use device::{Attribute, CommandRecord, Device, Fault};
pub use driver::{Driver, DriverSource};
pub use dtype::{dtype_name, DType};
pub use error::{Error, Result};
pub use event::Event;
pub use graph::{CaptureMode, Graph, GraphExec, GraphUpdateResult, NodeId};
pub use knpu_driver_abi as abi;
pub use stream::{Priority, Stream};
pub use tensor::{DataType, Layout};

use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};

struct Registry {
    drivers: Vec<Arc<Driver>>,
    devices: Vec<Device>,
    load_errors: Vec<Error>,
}

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

fn add_driver(reg: &mut Registry, driver: Driver) -> Result<Vec<Device>> {
    let driver = Arc::new(driver);
    let count = driver.device_count()?;
    let mut opened = Vec::new();
    for i in 0..count {
        let d = Device::open(&driver, i, reg.devices.len())?;
        trace::on_device_open(&d);
        reg.devices.push(d.clone());
        opened.push(d);
    }
    reg.drivers.push(driver);
    Ok(opened)
}

fn registry() -> &'static Mutex<Registry> {
    REGISTRY.get_or_init(|| {
        let mut reg = Registry {
            drivers: Vec::new(),
            devices: Vec::new(),
            load_errors: Vec::new(),
        };
        match driver::loader::builtin() {
            Ok(d) => {
                if let Err(e) = add_driver(&mut reg, d) {
                    reg.load_errors.push(e);
                }
            }
            Err(e) => reg.load_errors.push(e),
        }
        for path in driver::loader::env_paths() {
            match driver::loader::load_library(&path).and_then(|d| add_driver(&mut reg, d)) {
                Ok(_) => {}
                Err(e) => reg.load_errors.push(e),
            }
        }
        Mutex::new(reg)
    })
}

/// Every device of every driver: the built-in software NPU's first, then those of each
/// library in `KNPU_DRIVER_PATH`, then any loaded with [`load_driver`].
pub fn devices() -> Vec<Device> {
    registry().lock().devices.clone()
}

/// The device with this ordinal.
pub fn device(ordinal: usize) -> Result<Device> {
    let reg = registry().lock();
    reg.devices
        .get(ordinal)
        .cloned()
        .ok_or_else(|| Error::InvalidValue {
            detail: format!(
                "no device {ordinal}: there are {} devices",
                reg.devices.len()
            ),
        })
}

/// The drivers loaded so far.
pub fn drivers() -> Vec<Arc<Driver>> {
    registry().lock().drivers.clone()
}

/// Errors met while loading the drivers named by `KNPU_DRIVER_PATH` (a bad entry does not
/// stop the others from loading).
pub fn driver_load_errors() -> Vec<Error> {
    registry().lock().load_errors.clone()
}

/// Loads one more driver library and returns its devices (which join [`devices`]).
pub fn load_driver(path: &str) -> Result<Vec<Device>> {
    let d = driver::loader::load_library(path)?;
    add_driver(&mut registry().lock(), d)
}
