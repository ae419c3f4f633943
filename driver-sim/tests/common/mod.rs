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

/// Device 0 of the linked simulator with one queue: where a kernel test runs its problem.
pub struct KernelQueue {
    /// The simulator.
    pub sim: Sim,
    /// Its device 0.
    pub dev: KnpuDriverDevice,
    /// A queue of `dev`.
    pub queue: KnpuQueue,
}

impl KernelQueue {
    /// A queue on device 0 of the linked simulator.
    pub fn new() -> KernelQueue {
        let sim = linked();
        let dev = sim.device(0);
        let queue = sim.queue(dev);
        KernelQueue { sim, dev, queue }
    }

    /// Submits kernel `id` with `params` and waits: the wait's status and, on failure, the
    /// fault's message.
    pub fn run<T>(&self, id: u32, params: &T) -> (KnpuStatus, String) {
        self.sim
            .run_once(self.dev, self.queue, &[kernel(id, params)])
    }

    /// Submits kernel `id` with `params` without waiting: the submit-time status.
    pub fn submit<T>(&self, id: u32, params: &T) -> KnpuStatus {
        self.sim.submit(self.queue, &[], &[kernel(id, params)], &[])
    }

    /// A new allocation of `size` bytes.
    pub fn alloc(&self, size: u64) -> u64 {
        self.sim.alloc(self.dev, size)
    }

    /// Frees allocation `a`.
    pub fn free(&self, a: u64) {
        self.sim.free(self.dev, a)
    }

    /// `data` copied into a new allocation.
    pub fn upload(&self, data: &[u8]) -> u64 {
        self.sim.upload(self.dev, self.queue, data)
    }

    /// `len` bytes read at `a`.
    pub fn download(&self, a: u64, len: usize) -> Vec<u8> {
        self.sim.download(self.dev, self.queue, a, len)
    }

    /// Runs kernel `id` with `params` and checks that it succeeds.
    pub fn assert_runs<T>(&self, id: u32, params: &T) {
        assert_eq!(self.run(id, params), (KNPU_STATUS_SUCCESS, String::new()));
    }

    /// Submits kernel `id` with `valid` changed by each case in turn and checks that the
    /// submit refuses it with the case's status (the case's name labels a failure).
    pub fn assert_refused<T: Copy>(&self, id: u32, valid: &T, cases: &[Refusal<T>]) {
        assert_refused(|params| self.submit(id, params), valid, cases);
    }

    /// Runs kernel `id` with `params`, checks that the work fails with `status` and that the
    /// fault's message contains each of `needles`; the message.
    pub fn assert_fault<T>(
        &self,
        id: u32,
        params: &T,
        status: KnpuStatus,
        needles: &[&str],
    ) -> String {
        let (st, msg) = self.run(id, params);
        assert_eq!(st, status, "{msg}");
        for needle in needles {
            assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        }
        msg
    }
}

/// The status of a parameter the driver refuses.
pub const INVALID: KnpuStatus = KNPU_STATUS_INVALID_VALUE;
/// The status of a dtype or feature the driver does not support.
pub const UNSUPPORTED: KnpuStatus = KNPU_STATUS_NOT_SUPPORTED;
/// The status of work that touched memory it does not own.
pub const ILLEGAL: KnpuStatus = KNPU_STATUS_ILLEGAL_ADDRESS;

/// One refusal case for [`KernelQueue::assert_refused`]: its name, the status the submit must
/// return, and the change that makes a valid parameter struct wrong.
pub type Refusal<T> = (&'static str, KnpuStatus, fn(&mut T));

/// Calls `submit` with `valid` changed by each case in turn and checks that it returns the
/// case's status (the case's name labels a failure).
pub fn assert_refused<T: Copy>(submit: impl Fn(&T) -> KnpuStatus, valid: &T, cases: &[Refusal<T>]) {
    for (what, want, change) in cases {
        let mut params = *valid;
        change(&mut params);
        assert_eq!(submit(&params), *want, "{what}");
    }
}

/// Checks that device 0 of `sim` supports each kernel id with the first list of dtypes and
/// not with the second.
pub fn assert_kernel_dtypes(sim: &Sim, cases: &[(u32, &[u32], &[u32])]) {
    let d = sim.device(0);
    for &(id, supported, unsupported) in cases {
        let expected = supported.iter().map(|&t| (t, true));
        for (dtype, want) in expected.chain(unsupported.iter().map(|&t| (t, false))) {
            let got = sim.supports_kernel(d, id, dtype);
            assert_eq!(got, want, "kernel {id:#x} dtype {dtype}");
        }
    }
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
