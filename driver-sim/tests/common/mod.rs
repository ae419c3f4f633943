//! The software NPU's own tests (its kernels, its fault injection, its plugin build) reach it
//! through the conformance kit's client over the driver's table (`knpu_conformance::abi::client`),
//! the same client the kit's checks every driver must pass use. This module adds only how this
//! test binary finds the simulator, built in or as a plugin.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use knpu_driver_abi::*;

pub use knpu_conformance::abi::client::*;

/// Calls a table function that the simulator always provides (not every test binary does).
#[allow(unused_macros)]
macro_rules! call {
    ($sim:expr, $f:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the simulator's table fills every field; arguments follow the header.
        unsafe { ($sim.table().$f.expect(stringify!($f)))($($arg),*) }
    }};
}
#[allow(unused_imports)]
pub(crate) use call;

/// The driver under test.
pub type Sim = RawDriver;

/// The simulator linked into this test binary.
pub fn linked() -> Sim {
    // SAFETY: the simulator's static table, valid for the whole process.
    unsafe { RawDriver::new(knpu_driver_sim::api()) }
}

/// Elementwise parameters for `count` elements.
pub fn elementwise(
    op: u32,
    dtype: u32,
    count: u64,
    a: u64,
    b: u64,
    out: u64,
    alpha: f32,
) -> KnpuElementwiseParams {
    KnpuElementwiseParams {
        struct_size: std::mem::size_of::<KnpuElementwiseParams>(),
        op,
        dtype,
        count,
        a,
        b,
        out,
        alpha,
    }
}

/// The cdylib cargo built beside this test binary: in `target/<profile>/deps/` when only
/// `cargo test` has run, also in `target/<profile>/` after a `cargo build`.
fn library_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let name = libloading::library_filename("knpu_driver_sim");
    [deps, deps.parent().expect("profile dir")]
        .iter()
        .map(|dir| dir.join(&name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "the simulator's cdylib is not beside {}; build it with `cargo build -p knpu-driver-sim`",
                exe.display()
            )
        })
}

/// The simulator's cdylib, loaded once with libloading and entered through
/// `knpu_driver_get_api`.
pub fn plugin() -> Sim {
    static API: OnceLock<usize> = OnceLock::new();
    let api = *API.get_or_init(|| {
        let path = library_path();
        // SAFETY: loading the simulator's own cdylib, whose initialisers are Rust statics.
        let lib = unsafe { libloading::Library::new(&path) }
            .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol has the KnpuDriverGetApiFn signature (knpu_driver.h).
        let entry: libloading::Symbol<
            'static,
            unsafe extern "C" fn(u32, u32) -> *const KnpuDriverApi,
        > = unsafe { lib.get(ENTRY_SYMBOL) }.expect("entry symbol");
        // SAFETY: calling the entry point with this crate's ABI version.
        let api = unsafe { entry(KNPU_DRIVER_ABI_MAJOR, KNPU_DRIVER_ABI_MINOR) };
        assert!(!api.is_null());
        // SAFETY: as above, with another major: the driver refuses it.
        assert!(unsafe { entry(KNPU_DRIVER_ABI_MAJOR + 1, 0) }.is_null());
        api as usize
    });
    // SAFETY: the table has static storage in a library that is never unloaded.
    unsafe { RawDriver::new(&*(api as *const KnpuDriverApi)) }
}
