//! The driver under test: its function table for the ABI level, and its devices in the
//! runtime for the runtime level.

use std::path::Path;

use knpu_driver_abi as abi;

use crate::abi::RawDriver;

/// The entry point of a driver (`knpu_driver_get_api`).
pub(crate) type EntryFn = unsafe extern "C" fn(u32, u32) -> *const abi::KnpuDriverApi;

/// A driver to run the kit on.
pub struct Target {
    label: String,
    raw: RawDriver,
    entry: Option<EntryFn>,
    devices: Result<Vec<knpu::Device>, String>,
}

impl Target {
    /// The software NPU linked into the runtime.
    pub fn builtin() -> Result<Target, String> {
        // SAFETY: the simulator's table is a static of this process.
        let raw = unsafe { RawDriver::new(knpu_driver_sim::api()) };
        let devices: Vec<knpu::Device> = knpu::devices()
            .into_iter()
            .filter(|d| *d.driver().source() == knpu::DriverSource::BuiltIn)
            .collect();
        let entry: EntryFn = knpu_driver_sim::knpu_driver_get_api;
        Ok(Target {
            label: "built-in software NPU".into(),
            raw,
            entry: Some(entry),
            devices: Ok(devices),
        })
    }

    /// A driver library: its table is entered through `knpu_driver_get_api` for the ABI level,
    /// and the runtime loads the same library (the same driver instance) for the runtime
    /// level. A library the runtime refuses still runs the ABI level; the runtime cases then
    /// fail with the runtime's reason.
    pub fn library(path: &Path) -> Result<Target, String> {
        let shown = path.display().to_string();
        // SAFETY: loading a library runs its initialisers; the user named it as a driver.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("{shown}: not a loadable shared library: {e}"))?;
        // Drivers stay loaded for the rest of the process (as the runtime keeps them).
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the exported symbol has the entry point's type (knpu_driver.h).
        let entry: libloading::Symbol<'static, EntryFn> = unsafe { lib.get(abi::ENTRY_SYMBOL) }
            .map_err(|_| format!("{shown}: not a knpu driver: no `knpu_driver_get_api`"))?;
        let entry: EntryFn = *entry;
        // SAFETY: calling the entry point as the ABI defines it.
        let api = unsafe { entry(abi::KNPU_DRIVER_ABI_MAJOR, abi::KNPU_DRIVER_ABI_MINOR) };
        if api.is_null() {
            return Err(format!(
                "{shown}: the driver returned no table for ABI {}.{}",
                abi::KNPU_DRIVER_ABI_MAJOR,
                abi::KNPU_DRIVER_ABI_MINOR
            ));
        }
        // SAFETY: a non-null table from the entry point has static storage in a library that
        // is never unloaded (leaked above).
        let raw = unsafe { RawDriver::new(&*api) };
        let devices = runtime_devices(&shown).map_err(|e| e.to_string());
        Ok(Target {
            label: shown,
            raw,
            entry: Some(entry),
            devices,
        })
    }

    /// A bare function table, for drivers that are not libraries (test doubles). Only the ABI
    /// level runs; the runtime level is skipped, since the runtime loads drivers from
    /// libraries.
    ///
    /// # Safety
    /// - `api` stays valid for the rest of the process, its first `struct_size` bytes are
    ///   valid, and its functions follow knpu_driver.h's calling rules.
    pub unsafe fn from_table(label: &str, api: &'static abi::KnpuDriverApi) -> Target {
        Target {
            label: label.to_string(),
            // SAFETY: the caller's guarantee.
            raw: unsafe { RawDriver::new(api) },
            entry: None,
            devices: Err(String::new()),
        }
    }

    /// What the target is, for reports: "built-in software NPU" or the library's path.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The name the driver gives itself, e.g. `"sim"`.
    pub fn driver_name(&self) -> String {
        self.raw.name()
    }

    pub(crate) fn raw(&self) -> RawDriver {
        self.raw
    }

    pub(crate) fn entry(&self) -> Option<EntryFn> {
        self.entry
    }

    /// The driver's devices in the runtime, by driver index; `Err("")` when the target has no
    /// runtime side, `Err(reason)` when the runtime refused the driver.
    pub(crate) fn devices(&self) -> &Result<Vec<knpu::Device>, String> {
        &self.devices
    }
}

/// The runtime's devices of the library at `path`, loading it if `KNPU_DRIVER_PATH` did not.
fn runtime_devices(path: &str) -> knpu::Result<Vec<knpu::Device>> {
    let loaded: Vec<knpu::Device> = knpu::devices()
        .into_iter()
        .filter(|d| matches!(d.driver().source(), knpu::DriverSource::Library(p) if p == path))
        .collect();
    if !loaded.is_empty() {
        return Ok(loaded);
    }
    knpu::load_driver(path)
}
