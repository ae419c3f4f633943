//! A thin test client over the software NPU's API table, for the simulator's own tests (its
//! kernels, its fault injection, its plugin build). The checks every driver must pass live in
//! the conformance kit (`knpu-conformance`).
#![allow(dead_code)]

use std::ffi::c_void;
use std::path::PathBuf;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use knpu_driver_abi::*;

/// Calls a table function that the simulator always provides.
macro_rules! call {
    ($sim:expr, $f:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the simulator's table fills every field; arguments follow the header.
        unsafe { ($sim.table().$f.expect(stringify!($f)))($($arg),*) }
    }};
}
#[allow(unused_imports)]
pub(crate) use call;

/// A driver under test.
#[derive(Clone, Copy)]
pub struct Sim {
    /// Its table.
    pub api: &'static KnpuDriverApi,
}

// SAFETY: the table is immutable static data and every function in it may be called from any
// thread (knpu_driver.h, "Threading").
unsafe impl Send for Sim {}
// SAFETY: as above.
unsafe impl Sync for Sim {}

/// Timeout of waits that must succeed (Miri runs far slower, so it waits as long as needed).
pub const WAIT: u64 = if cfg!(miri) { u64::MAX } else { 10_000_000_000 };

impl Sim {
    /// The table (a method, so closures capture the whole `Sim`, which is `Send`).
    pub fn table(&self) -> &'static KnpuDriverApi {
        self.api
    }

    pub fn device(&self, index: u32) -> KnpuDriverDevice {
        let mut d = null_mut();
        assert_eq!(call!(self, device_get(index, &mut d)), KNPU_STATUS_SUCCESS);
        d
    }

    pub fn alloc(&self, dev: KnpuDriverDevice, size: u64) -> u64 {
        let mut a = 0;
        assert_eq!(
            call!(self, mem_alloc(dev, size, &mut a)),
            KNPU_STATUS_SUCCESS
        );
        a
    }

    pub fn free(&self, dev: KnpuDriverDevice, a: u64) {
        assert_eq!(call!(self, mem_free(dev, a)), KNPU_STATUS_SUCCESS);
    }

    pub fn queue(&self, dev: KnpuDriverDevice) -> KnpuQueue {
        let mut q = null_mut();
        assert_eq!(
            call!(self, queue_create(dev, KNPU_QUEUE_PRIORITY_NORMAL, &mut q)),
            KNPU_STATUS_SUCCESS
        );
        q
    }

    pub fn destroy_queue(&self, q: KnpuQueue) {
        assert_eq!(call!(self, queue_destroy(q)), KNPU_STATUS_SUCCESS);
    }

    pub fn semaphore(&self, dev: KnpuDriverDevice, initial: u64) -> KnpuSemaphore {
        let mut s = null_mut();
        assert_eq!(
            call!(self, semaphore_create(dev, initial, &mut s)),
            KNPU_STATUS_SUCCESS
        );
        s
    }

    pub fn destroy_semaphore(&self, s: KnpuSemaphore) {
        assert_eq!(call!(self, semaphore_destroy(s)), KNPU_STATUS_SUCCESS);
    }

    /// Submits `commands`, waiting on `waits` and signalling `signals`.
    pub fn submit(
        &self,
        q: KnpuQueue,
        waits: &[(KnpuSemaphore, u64)],
        commands: &[KnpuCommand],
        signals: &[(KnpuSemaphore, u64)],
    ) -> KnpuStatus {
        let ws: Vec<_> = waits.iter().map(|w| w.0).collect();
        let wv: Vec<_> = waits.iter().map(|w| w.1).collect();
        let ss: Vec<_> = signals.iter().map(|w| w.0).collect();
        let sv: Vec<_> = signals.iter().map(|w| w.1).collect();
        let info = KnpuSubmitInfo {
            struct_size: std::mem::size_of::<KnpuSubmitInfo>(),
            wait_count: ws.len() as u32,
            wait_semaphores: ws.as_ptr(),
            wait_values: wv.as_ptr(),
            command_count: commands.len() as u32,
            commands: commands.as_ptr(),
            signal_count: ss.len() as u32,
            signal_semaphores: ss.as_ptr(),
            signal_values: sv.as_ptr(),
            command_list: null_mut(),
        };
        call!(self, queue_submit(q, &info))
    }

    /// Submits a command list (and no inline commands) signalling `sem` to `value`.
    pub fn submit_list(
        &self,
        q: KnpuQueue,
        list: KnpuCommandList,
        sem: KnpuSemaphore,
        value: u64,
    ) -> KnpuStatus {
        let info = KnpuSubmitInfo {
            struct_size: std::mem::size_of::<KnpuSubmitInfo>(),
            wait_count: 0,
            wait_semaphores: std::ptr::null(),
            wait_values: std::ptr::null(),
            command_count: 0,
            commands: std::ptr::null(),
            signal_count: 1,
            signal_semaphores: &sem,
            signal_values: &value,
            command_list: list,
        };
        call!(self, queue_submit(q, &info))
    }

    /// Submits `commands` signalling `sem` to `value` and waits for it; returns the wait's
    /// status.
    pub fn run(
        &self,
        q: KnpuQueue,
        sem: KnpuSemaphore,
        value: u64,
        commands: &[KnpuCommand],
    ) -> KnpuStatus {
        assert_eq!(
            self.submit(q, &[], commands, &[(sem, value)]),
            KNPU_STATUS_SUCCESS
        );
        call!(self, semaphore_wait(sem, value, WAIT))
    }

    pub fn value(&self, s: KnpuSemaphore) -> u64 {
        let mut v = 0;
        assert_eq!(call!(self, semaphore_query(s, &mut v)), KNPU_STATUS_SUCCESS);
        v
    }

    pub fn error(&self, s: KnpuSemaphore) -> (KnpuStatus, String) {
        let mut st = 0;
        let mut buf = [0 as std::ffi::c_char; 512];
        assert_eq!(
            call!(
                self,
                semaphore_get_error(s, &mut st, buf.as_mut_ptr(), buf.len())
            ),
            KNPU_STATUS_SUCCESS
        );
        // SAFETY: the driver NUL-terminates within the buffer.
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        (st, msg.to_string_lossy().into_owned())
    }

    pub fn attribute(&self, d: KnpuDriverDevice, attr: u32) -> i64 {
        let mut v = 0;
        assert_eq!(
            call!(self, device_get_attribute(d, attr, &mut v)),
            KNPU_STATUS_SUCCESS
        );
        v
    }

    pub fn inject(&self, d: KnpuDriverDevice, kind: u32, kernel_id: u32, count: u64) -> KnpuStatus {
        let f = KnpuFaultInjection {
            struct_size: std::mem::size_of::<KnpuFaultInjection>(),
            kind,
            kernel_id,
            count,
        };
        call!(self, device_inject_fault(d, &f))
    }

    /// Copies `data` into a new allocation.
    pub fn upload(&self, d: KnpuDriverDevice, q: KnpuQueue, data: &[u8]) -> u64 {
        let a = self.alloc(d, data.len() as u64);
        let s = self.semaphore(d, 0);
        assert_eq!(self.run(q, s, 1, &[h2d(a, data)]), KNPU_STATUS_SUCCESS);
        self.destroy_semaphore(s);
        a
    }

    /// Reads `len` bytes at `a`.
    pub fn download(&self, d: KnpuDriverDevice, q: KnpuQueue, a: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let s = self.semaphore(d, 0);
        assert_eq!(self.run(q, s, 1, &[d2h(&mut out, a)]), KNPU_STATUS_SUCCESS);
        self.destroy_semaphore(s);
        out
    }
}

fn command(type_: u32) -> KnpuCommand {
    let mut c = KnpuCommand::sized();
    c.type_ = type_;
    c
}

pub fn h2d(dst: u64, src: &[u8]) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_COPY_HOST_TO_DEVICE);
    c.u.copy = KnpuCopyCommand {
        src: 0,
        dst,
        host_src: src.as_ptr() as *const c_void,
        host_dst: null_mut(),
        size: src.len() as u64,
        peer_device: null_mut(),
    };
    c
}

pub fn d2h(dst: &mut [u8], src: u64) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_COPY_DEVICE_TO_HOST);
    c.u.copy = KnpuCopyCommand {
        src,
        dst: 0,
        host_src: std::ptr::null(),
        host_dst: dst.as_mut_ptr() as *mut c_void,
        size: dst.len() as u64,
        peer_device: null_mut(),
    };
    c
}

pub fn d2h_raw(dst: *mut u8, src: u64, size: u64) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_COPY_DEVICE_TO_HOST);
    c.u.copy = KnpuCopyCommand {
        src,
        dst: 0,
        host_src: std::ptr::null(),
        host_dst: dst as *mut c_void,
        size,
        peer_device: null_mut(),
    };
    c
}

pub fn d2d(dst: u64, src: u64, size: u64) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_COPY_DEVICE_TO_DEVICE);
    c.u.copy = KnpuCopyCommand {
        src,
        dst,
        host_src: std::ptr::null(),
        host_dst: null_mut(),
        size,
        peer_device: null_mut(),
    };
    c
}

pub fn peer(dst: u64, peer: KnpuDriverDevice, src: u64, size: u64) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_COPY_PEER);
    c.u.copy = KnpuCopyCommand {
        src,
        dst,
        host_src: std::ptr::null(),
        host_dst: null_mut(),
        size,
        peer_device: peer,
    };
    c
}

pub fn fill(dst: u64, size: u64, pattern: u64, pattern_size: u32) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_FILL);
    c.u.fill = KnpuFillCommand {
        dst,
        size,
        pattern,
        pattern_size,
    };
    c
}

pub fn kernel<T>(kernel_id: u32, params: &T) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_KERNEL);
    c.u.kernel = KnpuKernelCommand {
        kernel_id,
        params: params as *const T as *const c_void,
        params_size: std::mem::size_of::<T>(),
    };
    c
}

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

pub fn timestamp(dst: &mut u64) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_TIMESTAMP);
    c.u.timestamp = KnpuTimestampCommand { host_dst: dst };
    c
}

/// A host function counting its calls in an `AtomicU32` array: [successes, failures,
/// last status].
pub unsafe extern "C" fn count_calls(user_data: *mut c_void, status: KnpuStatus) {
    // SAFETY: tests pass a pointer to a live [AtomicU32; 3].
    let c = unsafe { &*(user_data as *const [AtomicU32; 3]) };
    if status == KNPU_STATUS_SUCCESS {
        c[0].fetch_add(1, Ordering::SeqCst);
    } else {
        c[1].fetch_add(1, Ordering::SeqCst);
    }
    c[2].store(status, Ordering::SeqCst);
}

pub fn host_fn(counter: &[AtomicU32; 3]) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_HOST_FUNCTION);
    c.u.host_function = KnpuHostFunctionCommand {
        fn_: Some(count_calls),
        user_data: counter as *const _ as *mut c_void,
    };
    c
}

pub fn pattern_bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Polls `f` until it holds or `limit` passes.
pub fn eventually(limit: Duration, f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// The cdylib cargo built beside this test binary (target/<profile>/).
fn library_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    dir.join(libloading::library_filename("knpu_driver_sim"))
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
    Sim {
        api: unsafe { &*(api as *const KnpuDriverApi) },
    }
}
