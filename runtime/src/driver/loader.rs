//! Driver discovery: the built-in software NPU, then every library in `KNPU_DRIVER_PATH`.
//!
//! A library is a driver when it exports `knpu_driver_get_api` and returns a table whose ABI
//! major matches the runtime's. Anything else — a missing file, a library without the
//! symbol, another major — is refused with an [`Error`] that says which and why.

use super::{Driver, DriverSource};
use crate::error::{Error, Result};
use knpu_driver_abi as abi;

/// The software NPU linked into the runtime.
pub(crate) fn builtin() -> Result<Driver> {
    let api: *const abi::KnpuDriverApi = knpu_driver_sim::api();
    // SAFETY: the simulator's table is a static that lives as long as the process.
    unsafe { Driver::from_table(api, DriverSource::BuiltIn, None) }
}

/// Loads the driver library at `path`.
pub fn load_library(path: &str) -> Result<Driver> {
    let err = |reason: String| Error::DriverLoad {
        path: path.to_string(),
        reason,
    };
    if !std::path::Path::new(path).exists() {
        return Err(err("no such file".into()));
    }
    // SAFETY: loading a library runs its initialisers; a file named in KNPU_DRIVER_PATH (or
    // passed here) is trusted as a driver by the user who named it.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| err(format!("not a loadable shared library: {e}")))?;
    let entry = {
        // SAFETY: the symbol's type is the ABI's entry point type; a library exporting the
        // name with another type breaks the driver contract it claims.
        let sym: libloading::Symbol<abi::KnpuDriverGetApiFn> = unsafe {
            lib.get(abi::ENTRY_SYMBOL)
        }
        .map_err(|_| err("not a knpu driver: it does not export `knpu_driver_get_api`".into()))?;
        (*sym).ok_or_else(|| err("its `knpu_driver_get_api` is null".into()))?
    };
    // SAFETY: calling the driver's entry point as the ABI defines it.
    let api = unsafe { entry(abi::KNPU_DRIVER_ABI_MAJOR, abi::KNPU_DRIVER_ABI_MINOR) };
    // SAFETY: the table stays valid while `lib` is loaded, and the Driver owns `lib`.
    unsafe { Driver::from_table(api, DriverSource::Library(path.to_string()), Some(lib)) }
}

/// The library paths named by `KNPU_DRIVER_PATH` (colon-separated, empty entries skipped).
pub(crate) fn env_paths() -> Vec<String> {
    std::env::var("KNPU_DRIVER_PATH")
        .map(|v| {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
