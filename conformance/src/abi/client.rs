//! A thin test client over a driver's function table: each method calls one table function
//! with valid arguments and asserts the status a conforming driver returns.
//!
//! A driver's own test suite may use it too, for the checks that only that driver's facts
//! decide (the software NPU's tests do).
//!
//! It never works around a driver: a missing required function or a wrong status is a panic,
//! which the runner records as the case's failure.

// Handles are opaque to this client: it never dereferences one, it hands them to the driver,
// whose contract (knpu_driver.h) is to refuse an invalid handle with a status. Checking that
// is what the kit is for, so these methods stay safe to call with any handle.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU32, Ordering};

use knpu_driver_abi::*;

use crate::Unsupported;

/// Calls a function of the driver's table, panicking (a conformance failure) if the driver
/// left out a function the header requires.
macro_rules! call {
    ($drv:expr, $f:ident ( $($arg:expr),* $(,)? )) => {{
        let f = $drv.table().$f.expect(concat!("the driver's table has no `", stringify!($f), "`"));
        // SAFETY: the arguments follow knpu_driver.h for this function: handles come from the
        // same driver (or are deliberately invalid, which the header says a driver refuses),
        // pointers are valid for the call and out-pointers are writable.
        unsafe { f($($arg),*) }
    }};
}
pub(crate) use call;

/// Whether the driver's table is long enough to hold `$field` and fills it in.
macro_rules! provides {
    ($drv:expr, $field:ident) => {{
        let t: &KnpuDriverApi = $drv.table();
        has_field(t.struct_size, field_end!(KnpuDriverApi, $field)) && t.$field.is_some()
    }};
}
pub(crate) use provides;

/// Timeout of waits that must succeed: long enough for a loaded machine, short enough that a
/// driver that never signals fails the case instead of hanging the kit.
pub const WAIT: u64 = 30_000_000_000;

/// What most cases start from: a device with a queue and a timeline semaphore. [`Rig::ok`]
/// and [`Rig::run`] run work to completion, signalling the semaphore's next value. Dropping
/// it destroys the queue and the semaphore, except while a failing case unwinds (work it
/// left queued may still wait on them, and a driver may block destroying them).
pub struct Rig {
    /// The driver under test.
    pub drv: RawDriver,
    /// The device.
    pub d: KnpuDriverDevice,
    /// A queue of `d`.
    pub q: KnpuQueue,
    /// A semaphore of `d`, signalled by `ok` and `run`.
    pub s: KnpuSemaphore,
    value: Cell<u64>,
}

impl Rig {
    /// A queue and a semaphore (at 0) on device 0.
    pub fn new(drv: RawDriver) -> Rig {
        let d = drv.device(0);
        Rig {
            drv,
            d,
            q: drv.queue(d),
            s: drv.semaphore(d, 0),
            value: Cell::new(0),
        }
    }

    /// Runs `commands` on the queue, signalling the semaphore's next value, and waits: the
    /// wait's status. After a failure the semaphore stays failed, so a case runs nothing
    /// more through the rig.
    pub fn run(&self, commands: &[KnpuCommand]) -> KnpuStatus {
        let v = self.value.get() + 1;
        self.value.set(v);
        self.drv.run(self.q, self.s, v, commands)
    }

    /// Runs `commands` as [`Rig::run`] does; they must succeed.
    #[track_caller]
    pub fn ok(&self, commands: &[KnpuCommand]) {
        assert_eq!(
            self.run(commands),
            KNPU_STATUS_SUCCESS,
            "{} commands",
            commands.len()
        );
    }

    /// `data` copied into a new allocation of the device.
    pub fn upload(&self, data: &[u8]) -> u64 {
        self.drv.upload(self.d, self.q, data)
    }

    /// `len` bytes at device address `a`.
    pub fn download(&self, a: u64, len: usize) -> Vec<u8> {
        self.drv.download(self.d, self.q, a, len)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.drv.destroy_semaphore(self.s);
            self.drv.destroy_queue(self.q);
        }
    }
}

/// A driver under test, reached through its function table only.
#[derive(Clone, Copy)]
pub struct RawDriver {
    api: &'static KnpuDriverApi,
}

// SAFETY: the table is immutable static data and every function in it may be called from any
// thread (knpu_driver.h, "Threading").
unsafe impl Send for RawDriver {}
// SAFETY: as above.
unsafe impl Sync for RawDriver {}

impl RawDriver {
    /// Wraps a driver's table.
    ///
    /// # Safety
    /// - `api` is the table a driver's `knpu_driver_get_api` returned: its first `struct_size`
    ///   bytes are valid and it stays valid (its library loaded) for the rest of the process.
    pub unsafe fn new(api: &'static KnpuDriverApi) -> RawDriver {
        RawDriver { api }
    }

    /// The table.
    pub fn table(&self) -> &'static KnpuDriverApi {
        self.api
    }

    /// The driver's name from its table (empty when the table has none).
    pub fn name(&self) -> String {
        if !has_field(self.api.struct_size, field_end!(KnpuDriverApi, driver_name))
            || self.api.driver_name.is_null()
        {
            return String::new();
        }
        // SAFETY: non-null, NUL-terminated static storage (knpu_driver.h).
        unsafe { CStr::from_ptr(self.api.driver_name) }
            .to_string_lossy()
            .into_owned()
    }

    /// How many devices the driver has.
    pub fn device_count(&self) -> u32 {
        written(0, "device_count", |n| call!(self, device_count(n)))
    }

    /// Opens device `index`.
    pub fn device(&self, index: u32) -> KnpuDriverDevice {
        written(null_mut(), "device_get", |d| {
            call!(self, device_get(index, d))
        })
    }

    /// Allocates `size` bytes.
    pub fn alloc(&self, dev: KnpuDriverDevice, size: u64) -> u64 {
        written(0, "mem_alloc", |a| call!(self, mem_alloc(dev, size, a)))
    }

    /// Frees an allocation.
    pub fn free(&self, dev: KnpuDriverDevice, a: u64) {
        assert_eq!(call!(self, mem_free(dev, a)), KNPU_STATUS_SUCCESS);
    }

    /// Creates a queue of normal priority.
    pub fn queue(&self, dev: KnpuDriverDevice) -> KnpuQueue {
        let normal = KNPU_QUEUE_PRIORITY_NORMAL;
        written(null_mut(), "queue_create", |q| {
            call!(self, queue_create(dev, normal, q))
        })
    }

    /// Destroys a queue.
    pub fn destroy_queue(&self, q: KnpuQueue) {
        assert_eq!(call!(self, queue_destroy(q)), KNPU_STATUS_SUCCESS);
    }

    /// Creates a semaphore at `initial`.
    pub fn semaphore(&self, dev: KnpuDriverDevice, initial: u64) -> KnpuSemaphore {
        written(null_mut(), "semaphore_create", |s| {
            call!(self, semaphore_create(dev, initial, s))
        })
    }

    /// Destroys a semaphore.
    pub fn destroy_semaphore(&self, s: KnpuSemaphore) {
        assert_eq!(call!(self, semaphore_destroy(s)), KNPU_STATUS_SUCCESS);
    }

    /// Destroys what a case holds: `queues`, then `semaphores`.
    pub fn release(&self, queues: &[KnpuQueue], semaphores: &[KnpuSemaphore]) {
        for &q in queues {
            self.destroy_queue(q);
        }
        for &s in semaphores {
            self.destroy_semaphore(s);
        }
    }

    /// Submits `commands`, waiting on `waits` and signalling `signals`.
    pub fn submit(
        &self,
        q: KnpuQueue,
        waits: &[(KnpuSemaphore, u64)],
        commands: &[KnpuCommand],
        signals: &[(KnpuSemaphore, u64)],
    ) -> KnpuStatus {
        self.submit_with_list(q, waits, commands, null_mut(), signals)
    }

    /// Submits `commands` and then `list` (which may be null).
    pub fn submit_with_list(
        &self,
        q: KnpuQueue,
        waits: &[(KnpuSemaphore, u64)],
        commands: &[KnpuCommand],
        list: KnpuCommandList,
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
            command_list: list,
        };
        call!(self, queue_submit(q, &info))
    }

    /// Waits until `s` reaches `value` (bounded by [`WAIT`]).
    pub fn wait(&self, s: KnpuSemaphore, value: u64) -> KnpuStatus {
        call!(self, semaphore_wait(s, value, WAIT))
    }

    /// Submits `commands` signalling `sem` to `value` and waits; returns the wait's status.
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
        self.wait(sem, value)
    }

    /// Submits `commands`, which a conforming driver refuses, on `q` with `signal` (a
    /// semaphore and the value to signal it to). When the driver accepts them instead, waits
    /// until they have run, so that whatever they write lands while the caller's buffers
    /// still live (a case that then fails must not leave a driver writing into a stack frame
    /// that is gone). Returns the submission's status.
    pub fn submit_refused(
        &self,
        q: KnpuQueue,
        commands: &[KnpuCommand],
        signal: (KnpuSemaphore, u64),
    ) -> KnpuStatus {
        let status = self.submit(q, &[], commands, &[signal]);
        if status == KNPU_STATUS_SUCCESS {
            self.wait(signal.0, signal.1);
        }
        status
    }

    /// Runs `commands` on `q`, signalling a fresh semaphore of `d`: the wait's status and, when
    /// it failed, the semaphore's failure message (empty on success).
    pub fn run_once(
        &self,
        d: KnpuDriverDevice,
        q: KnpuQueue,
        commands: &[KnpuCommand],
    ) -> (KnpuStatus, String) {
        let s = self.semaphore(d, 0);
        let status = self.run(q, s, 1, commands);
        let msg = if status == KNPU_STATUS_SUCCESS {
            String::new()
        } else {
            self.error(s).1
        };
        self.destroy_semaphore(s);
        (status, msg)
    }

    /// Runs `commands` on `q` (signalling `s` to 1) with the device's profiler on, then reads
    /// its records: the run's status and every record the driver returned.
    pub fn run_profiled(
        &self,
        d: KnpuDriverDevice,
        q: KnpuQueue,
        s: KnpuSemaphore,
        commands: &[KnpuCommand],
    ) -> (KnpuStatus, Vec<KnpuCommandRecord>) {
        assert_eq!(call!(self, device_set_profiling(d, 1)), KNPU_STATUS_SUCCESS);
        let status = self.run(q, s, 1, commands);
        assert_eq!(call!(self, device_set_profiling(d, 0)), KNPU_STATUS_SUCCESS);
        let mut records = vec![KnpuCommandRecord::sized(); 4096];
        let mut n = 0;
        assert_eq!(
            call!(
                self,
                device_read_profile(d, records.as_mut_ptr(), records.len(), &mut n)
            ),
            KNPU_STATUS_SUCCESS
        );
        assert!(
            n <= records.len(),
            "{n} records read into {}",
            records.len()
        );
        records.truncate(n);
        (status, records)
    }

    /// The semaphore's value.
    pub fn value(&self, s: KnpuSemaphore) -> u64 {
        let mut v = 0;
        assert_eq!(call!(self, semaphore_query(s, &mut v)), KNPU_STATUS_SUCCESS);
        v
    }

    /// The semaphore's failure status and message.
    pub fn error(&self, s: KnpuSemaphore) -> (KnpuStatus, String) {
        let mut st = 0;
        let mut buf = [0 as c_char; 512];
        assert_eq!(
            call!(
                self,
                semaphore_get_error(s, &mut st, buf.as_mut_ptr(), buf.len())
            ),
            KNPU_STATUS_SUCCESS
        );
        (st, c_string(&buf))
    }

    /// An attribute the driver must know.
    pub fn attribute(&self, d: KnpuDriverDevice, attr: u32) -> i64 {
        let mut v = 0;
        assert_eq!(
            call!(self, device_get_attribute(d, attr, &mut v)),
            KNPU_STATUS_SUCCESS,
            "attribute {attr}"
        );
        v
    }

    /// Whether the device runs `kernel_id` on `dtype`.
    pub fn supports_kernel(&self, d: KnpuDriverDevice, kernel_id: u32, dtype: u32) -> bool {
        let mut s = -1;
        assert_eq!(
            call!(self, device_supports_kernel(d, kernel_id, dtype, &mut s)),
            KNPU_STATUS_SUCCESS
        );
        assert!(s == 0 || s == 1, "supported must be 0 or 1, got {s}");
        s == 1
    }

    /// Skips the case unless the device arms faults (`KNPU_ATTR_FAULT_INJECTION`).
    pub fn require_fault_injection(&self, d: KnpuDriverDevice) -> Result<(), Unsupported> {
        if provides!(self, device_inject_fault) && self.attribute(d, KNPU_ATTR_FAULT_INJECTION) == 1
        {
            Ok(())
        } else {
            Err(Unsupported::new(
                "the device does not inject faults (KNPU_ATTR_FAULT_INJECTION is 0)",
            ))
        }
    }

    /// Arms a fault.
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

/// What a table call that must succeed writes through its out-pointer, starting from `init`.
fn written<T>(init: T, what: &str, f: impl FnOnce(&mut T) -> KnpuStatus) -> T {
    let mut out = init;
    assert_eq!(f(&mut out), KNPU_STATUS_SUCCESS, "{what}");
    out
}

/// The string in a NUL-terminated buffer a driver filled.
pub fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    assert!(
        bytes.len() < buf.len(),
        "the driver did not NUL-terminate within the buffer"
    );
    String::from_utf8_lossy(&bytes).into_owned()
}

fn command(type_: u32) -> KnpuCommand {
    // SAFETY: KnpuCommand starts with struct_size and holds only integers, pointers and
    // optional function pointers, for which zero bytes are valid.
    let mut c = KnpuCommand::sized();
    c.type_ = type_;
    c
}

/// A copy of `size` bytes between device addresses `src` and `dst` (0 where that end is host
/// memory); `host` sets the host end of a copy that has one.
fn copy(
    type_: u32,
    (dst, src, size): (u64, u64, u64),
    host: impl FnOnce(&mut KnpuCopyCommand),
) -> KnpuCommand {
    let mut copy = KnpuCopyCommand {
        src,
        dst,
        host_src: std::ptr::null(),
        host_dst: null_mut(),
        size,
        peer_device: null_mut(),
    };
    host(&mut copy);
    let mut c = command(type_);
    c.u.copy = copy;
    c
}

/// A host-to-device copy of `src` to `dst`.
pub fn h2d(dst: u64, src: &[u8]) -> KnpuCommand {
    let ends = (dst, 0, src.len() as u64);
    copy(KNPU_COMMAND_COPY_HOST_TO_DEVICE, ends, |c| {
        c.host_src = src.as_ptr() as *const c_void
    })
}

/// A device-to-host copy of `dst.len()` bytes at `src`.
pub fn d2h(dst: &mut [u8], src: u64) -> KnpuCommand {
    d2h_raw(dst.as_mut_ptr(), src, dst.len() as u64)
}

/// A device-to-host copy into a raw pointer (for copies still pending while the host reads).
pub fn d2h_raw(dst: *mut u8, src: u64, size: u64) -> KnpuCommand {
    copy(KNPU_COMMAND_COPY_DEVICE_TO_HOST, (0, src, size), |c| {
        c.host_dst = dst as *mut c_void
    })
}

/// A device-to-device copy.
pub fn d2d(dst: u64, src: u64, size: u64) -> KnpuCommand {
    copy(KNPU_COMMAND_COPY_DEVICE_TO_DEVICE, (dst, src, size), |_| {})
}

/// A copy from `src` on device `peer` to `dst` on the queue's device.
pub fn peer(dst: u64, peer: KnpuDriverDevice, src: u64, size: u64) -> KnpuCommand {
    copy(KNPU_COMMAND_COPY_PEER, (dst, src, size), |c| {
        c.peer_device = peer
    })
}

/// A fill of `size` bytes at `dst` with a 1, 2, 4 or 8-byte pattern.
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

/// A kernel launch with `params`.
pub fn kernel<T>(kernel_id: u32, params: &T) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_KERNEL);
    c.u.kernel = KnpuKernelCommand {
        kernel_id,
        params: params as *const T as *const c_void,
        params_size: std::mem::size_of::<T>(),
    };
    c
}

/// A timestamp written to `dst`.
pub fn timestamp(dst: &mut u64) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_TIMESTAMP);
    c.u.timestamp = KnpuTimestampCommand { host_dst: dst };
    c
}

/// Counts host-function calls: successes, failures, and the last status.
#[derive(Default)]
pub struct CallCounter {
    /// Calls with `KNPU_STATUS_SUCCESS`.
    pub ok: AtomicU32,
    /// Calls with any other status.
    pub failed: AtomicU32,
    /// The status of the last call.
    pub last: AtomicU32,
}

impl CallCounter {
    /// `(ok, failed, last status)`.
    pub fn get(&self) -> (u32, u32, u32) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.last.load(Ordering::SeqCst),
        )
    }
}

unsafe extern "C" fn count_call(user_data: *mut c_void, status: KnpuStatus) {
    // SAFETY: `host_fn` passes a pointer to a CallCounter that outlives the submission.
    let c = unsafe { &*(user_data as *const CallCounter) };
    if status == KNPU_STATUS_SUCCESS {
        c.ok.fetch_add(1, Ordering::SeqCst);
    } else {
        c.failed.fetch_add(1, Ordering::SeqCst);
    }
    c.last.store(status, Ordering::SeqCst);
}

/// A host function command counting into `counter` (which must outlive the submission).
pub fn host_fn(counter: &CallCounter) -> KnpuCommand {
    let mut c = command(KNPU_COMMAND_HOST_FUNCTION);
    c.u.host_function = KnpuHostFunctionCommand {
        fn_: Some(count_call),
        user_data: counter as *const CallCounter as *mut c_void,
    };
    c
}

/// `n` bytes of a pattern that differs at every offset within 256 and by `seed`.
pub fn pattern_bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
