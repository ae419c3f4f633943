//! A driver as the runtime sees it: the validated function table of one driver library.
//!
//! Every driver — the built-in software NPU too — is reached through the same
//! `KnpuDriverApi` table, so the plugin path is the path every test exercises. [`Driver`]
//! copies the table's function pointers once, after checking `struct_size` for each, and
//! offers thin safe wrappers that turn statuses into [`Error`]s. Nothing above this module
//! calls a driver function pointer directly.

pub mod loader;

use crate::error::{from_status, Error, Result};
use knpu_driver_abi as abi;
use knpu_driver_abi::field_end;
use knpu_driver_abi::SizedStruct;
use std::ffi::CStr;

/// Where a driver came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSource {
    /// The software NPU linked into the runtime.
    BuiltIn,
    /// A shared library loaded from this path.
    Library(String),
}

macro_rules! required {
    ($api:expr, $name:ident, $source:expr) => {{
        let api: &abi::KnpuDriverApi = $api;
        if !abi::has_field(api.struct_size, field_end!(abi::KnpuDriverApi, $name)) {
            return Err(Error::DriverLoad {
                path: $source.to_string(),
                reason: format!(
                    "its function table ({} bytes) ends before required function `{}`",
                    api.struct_size,
                    stringify!($name)
                ),
            });
        }
        match api.$name {
            Some(f) => f,
            None => {
                return Err(Error::DriverLoad {
                    path: $source.to_string(),
                    reason: format!("required function `{}` is null", stringify!($name)),
                })
            }
        }
    }};
}

macro_rules! optional {
    ($api:expr, $name:ident) => {{
        let api: &abi::KnpuDriverApi = $api;
        if abi::has_field(api.struct_size, field_end!(abi::KnpuDriverApi, $name)) {
            api.$name
        } else {
            None
        }
    }};
}

type Fn<A> = A;

/// The function pointers of one driver, checked once at load.
#[allow(missing_docs)]
pub(crate) struct Table {
    pub device_count: Fn<unsafe extern "C" fn(*mut u32) -> abi::KnpuStatus>,
    pub device_get: Fn<unsafe extern "C" fn(u32, *mut abi::KnpuDriverDevice) -> abi::KnpuStatus>,
    pub device_get_name: Fn<
        unsafe extern "C" fn(
            abi::KnpuDriverDevice,
            *mut std::os::raw::c_char,
            usize,
        ) -> abi::KnpuStatus,
    >,
    pub device_get_attribute:
        Fn<unsafe extern "C" fn(abi::KnpuDriverDevice, u32, *mut i64) -> abi::KnpuStatus>,
    pub device_supports_kernel:
        Fn<unsafe extern "C" fn(abi::KnpuDriverDevice, u32, u32, *mut i32) -> abi::KnpuStatus>,
    pub device_memory_info:
        Fn<unsafe extern "C" fn(abi::KnpuDriverDevice, *mut u64, *mut u64) -> abi::KnpuStatus>,
    pub device_inject_fault: Option<
        unsafe extern "C" fn(
            abi::KnpuDriverDevice,
            *const abi::KnpuFaultInjection,
        ) -> abi::KnpuStatus,
    >,
    pub mem_alloc:
        Fn<unsafe extern "C" fn(abi::KnpuDriverDevice, u64, *mut u64) -> abi::KnpuStatus>,
    pub mem_free: Fn<unsafe extern "C" fn(abi::KnpuDriverDevice, u64) -> abi::KnpuStatus>,
    pub queue_create: Fn<
        unsafe extern "C" fn(abi::KnpuDriverDevice, i32, *mut abi::KnpuQueue) -> abi::KnpuStatus,
    >,
    pub queue_destroy: Fn<unsafe extern "C" fn(abi::KnpuQueue) -> abi::KnpuStatus>,
    pub queue_submit:
        Fn<unsafe extern "C" fn(abi::KnpuQueue, *const abi::KnpuSubmitInfo) -> abi::KnpuStatus>,
    pub semaphore_create: Fn<
        unsafe extern "C" fn(
            abi::KnpuDriverDevice,
            u64,
            *mut abi::KnpuSemaphore,
        ) -> abi::KnpuStatus,
    >,
    pub semaphore_destroy: Fn<unsafe extern "C" fn(abi::KnpuSemaphore) -> abi::KnpuStatus>,
    pub semaphore_query: Fn<unsafe extern "C" fn(abi::KnpuSemaphore, *mut u64) -> abi::KnpuStatus>,
    pub semaphore_wait: Fn<unsafe extern "C" fn(abi::KnpuSemaphore, u64, u64) -> abi::KnpuStatus>,
    pub semaphore_get_error: Fn<
        unsafe extern "C" fn(
            abi::KnpuSemaphore,
            *mut abi::KnpuStatus,
            *mut std::os::raw::c_char,
            usize,
        ) -> abi::KnpuStatus,
    >,
    pub device_set_profiling:
        Option<unsafe extern "C" fn(abi::KnpuDriverDevice, i32) -> abi::KnpuStatus>,
    pub device_read_profile: Option<
        unsafe extern "C" fn(
            abi::KnpuDriverDevice,
            *mut abi::KnpuCommandRecord,
            usize,
            *mut usize,
        ) -> abi::KnpuStatus,
    >,
    pub command_list_create: Option<
        unsafe extern "C" fn(
            abi::KnpuDriverDevice,
            *const abi::KnpuCommand,
            u32,
            *mut abi::KnpuCommandList,
        ) -> abi::KnpuStatus,
    >,
    pub command_list_update: Option<
        unsafe extern "C" fn(abi::KnpuCommandList, u32, *const abi::KnpuCommand) -> abi::KnpuStatus,
    >,
    pub command_list_destroy: Option<unsafe extern "C" fn(abi::KnpuCommandList) -> abi::KnpuStatus>,
    pub device_get_clock:
        Option<unsafe extern "C" fn(abi::KnpuDriverDevice, *mut u64) -> abi::KnpuStatus>,
}

/// One loaded driver: its table, its identity, and the library that keeps the code mapped.
pub struct Driver {
    pub(crate) t: Table,
    name: String,
    version: String,
    abi: (u32, u32),
    source: DriverSource,
    // Dropped last (declared last): the table's code lives in this library.
    _library: Option<libloading::Library>,
}

// SAFETY: the driver ABI requires every function to be callable from any thread at any
// time, concurrently; the table holds only function pointers and owned strings.
unsafe impl Send for Driver {}
// SAFETY: as above: shared use from many threads is what the ABI promises.
unsafe impl Sync for Driver {}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("abi", &self.abi)
            .field("source", &self.source)
            .finish()
    }
}

/// Reads a NUL-terminated static string from a driver, or "" for null.
///
/// # Safety
/// - `p` is null or points to a NUL-terminated string that outlives the call.
unsafe fn static_str(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated by the caller's guarantee.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Driver {
    /// Validates a driver's table and copies its functions.
    ///
    /// # Safety
    /// - `api` is null or points to a `KnpuDriverApi` whose first `struct_size` bytes are
    ///   valid and which stays valid while `library` (or the process, when `None`) is loaded.
    pub(crate) unsafe fn from_table(
        api: *const abi::KnpuDriverApi,
        source: DriverSource,
        library: Option<libloading::Library>,
    ) -> Result<Driver> {
        let label = match &source {
            DriverSource::BuiltIn => "built-in".to_string(),
            DriverSource::Library(p) => p.clone(),
        };
        if api.is_null() {
            return Err(Error::DriverLoad {
                path: label,
                reason: format!(
                    "its entry point returned no function table for ABI {}.{} (the driver \
                     does not serve this ABI major)",
                    abi::KNPU_DRIVER_ABI_MAJOR,
                    abi::KNPU_DRIVER_ABI_MINOR
                ),
            });
        }
        // SAFETY: non-null and valid for its declared size by the caller's guarantee. The
        // header fields read first (struct_size, versions) are present in every version.
        let head = unsafe { &*api };
        if head.struct_size < field_end!(abi::KnpuDriverApi, abi_minor) {
            return Err(Error::DriverLoad {
                path: label,
                reason: format!("its function table is only {} bytes", head.struct_size),
            });
        }
        if head.abi_major != abi::KNPU_DRIVER_ABI_MAJOR {
            return Err(Error::AbiMismatch {
                driver: label,
                driver_major: head.abi_major,
                driver_minor: head.abi_minor,
                runtime_major: abi::KNPU_DRIVER_ABI_MAJOR,
                runtime_minor: abi::KNPU_DRIVER_ABI_MINOR,
            });
        }
        let t = Table {
            device_count: required!(head, device_count, label),
            device_get: required!(head, device_get, label),
            device_get_name: required!(head, device_get_name, label),
            device_get_attribute: required!(head, device_get_attribute, label),
            device_supports_kernel: required!(head, device_supports_kernel, label),
            device_memory_info: required!(head, device_memory_info, label),
            device_inject_fault: optional!(head, device_inject_fault),
            mem_alloc: required!(head, mem_alloc, label),
            mem_free: required!(head, mem_free, label),
            queue_create: required!(head, queue_create, label),
            queue_destroy: required!(head, queue_destroy, label),
            queue_submit: required!(head, queue_submit, label),
            semaphore_create: required!(head, semaphore_create, label),
            semaphore_destroy: required!(head, semaphore_destroy, label),
            semaphore_query: required!(head, semaphore_query, label),
            semaphore_wait: required!(head, semaphore_wait, label),
            semaphore_get_error: required!(head, semaphore_get_error, label),
            device_set_profiling: optional!(head, device_set_profiling),
            device_read_profile: optional!(head, device_read_profile),
            device_get_clock: optional!(head, device_get_clock),
            command_list_create: optional!(head, command_list_create),
            command_list_update: optional!(head, command_list_update),
            command_list_destroy: optional!(head, command_list_destroy),
        };
        // Required by the ABI, though the runtime signals only through submissions.
        let _ = required!(head, semaphore_signal, label);
        let (name, version) = if head.struct_size >= field_end!(abi::KnpuDriverApi, driver_version)
        {
            // SAFETY: the ABI gives both strings static storage (or null).
            unsafe {
                (
                    static_str(head.driver_name),
                    static_str(head.driver_version),
                )
            }
        } else {
            (String::new(), String::new())
        };
        Ok(Driver {
            t,
            name,
            version,
            abi: (head.abi_major, head.abi_minor),
            source,
            _library: library,
        })
    }

    /// The driver's short name, e.g. `"sim"`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver's own version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The driver ABI version the driver implements, `(major, minor)`.
    pub fn abi_version(&self) -> (u32, u32) {
        self.abi
    }

    /// Where the driver was loaded from.
    pub fn source(&self) -> &DriverSource {
        &self.source
    }

    pub(crate) fn device_count(&self) -> Result<u32> {
        let mut n = 0u32;
        // SAFETY: valid out-pointer; the ABI allows calls from any thread.
        check(unsafe { (self.t.device_count)(&mut n) }, "device_count")?;
        Ok(n)
    }

    pub(crate) fn device_get(&self, index: u32) -> Result<abi::KnpuDriverDevice> {
        let mut d: abi::KnpuDriverDevice = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { (self.t.device_get)(index, &mut d) }, "device_get")?;
        if d.is_null() {
            return Err(Error::Internal {
                detail: format!("driver returned a null device {index}"),
            });
        }
        Ok(d)
    }

    pub(crate) fn device_name(&self, d: abi::KnpuDriverDevice) -> Result<String> {
        let mut buf = [0 as std::os::raw::c_char; 256];
        // SAFETY: buffer and its capacity match; the driver NUL-terminates within it.
        let status = unsafe { (self.t.device_get_name)(d, buf.as_mut_ptr(), buf.len()) };
        check(status, "device_get_name")?;
        *buf.last_mut().expect("non-empty") = 0;
        // SAFETY: NUL-terminated: the last byte was just set to 0.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }

    pub(crate) fn attribute(&self, d: abi::KnpuDriverDevice, attr: u32) -> Result<i64> {
        let mut v = 0i64;
        // SAFETY: valid out-pointer.
        let status = unsafe { (self.t.device_get_attribute)(d, attr, &mut v) };
        check(status, "device_get_attribute")?;
        Ok(v)
    }

    pub(crate) fn supports_kernel(
        &self,
        d: abi::KnpuDriverDevice,
        kernel: u32,
        dtype: u32,
    ) -> Result<bool> {
        let mut v = 0i32;
        // SAFETY: valid out-pointer.
        let status = unsafe { (self.t.device_supports_kernel)(d, kernel, dtype, &mut v) };
        check(status, "device_supports_kernel")?;
        Ok(v != 0)
    }

    pub(crate) fn memory_info(&self, d: abi::KnpuDriverDevice) -> Result<(u64, u64)> {
        let (mut free, mut total) = (0u64, 0u64);
        // SAFETY: valid out-pointers.
        let status = unsafe { (self.t.device_memory_info)(d, &mut free, &mut total) };
        check(status, "device_memory_info")?;
        Ok((free, total))
    }

    pub(crate) fn inject_fault(
        &self,
        d: abi::KnpuDriverDevice,
        fault: &abi::KnpuFaultInjection,
    ) -> Result<()> {
        let f = self
            .t
            .device_inject_fault
            .ok_or_else(|| Error::NotSupported {
                detail: format!("driver `{}` has no fault injection", self.name),
            })?;
        // SAFETY: `fault` is a valid, sized struct for the duration of the call.
        check(unsafe { f(d, fault) }, "device_inject_fault")
    }

    /// Allocates device memory; the raw status is returned so the allocator can tell
    /// exhaustion from other failures.
    pub(crate) fn mem_alloc(
        &self,
        d: abi::KnpuDriverDevice,
        size: u64,
    ) -> Result<u64, (abi::KnpuStatus, Error)> {
        let mut addr = 0u64;
        // SAFETY: valid out-pointer.
        let s = unsafe { (self.t.mem_alloc)(d, size, &mut addr) };
        if s == abi::KNPU_STATUS_SUCCESS {
            Ok(addr)
        } else {
            Err((s, from_status(s, format!("mem_alloc of {size} bytes"))))
        }
    }

    pub(crate) fn mem_free(&self, d: abi::KnpuDriverDevice, addr: u64) -> Result<()> {
        // SAFETY: plain values; the caller ensures no pending work uses the allocation.
        check(unsafe { (self.t.mem_free)(d, addr) }, "mem_free")
    }

    pub(crate) fn queue_create(
        &self,
        d: abi::KnpuDriverDevice,
        priority: i32,
    ) -> Result<abi::KnpuQueue> {
        let mut q: abi::KnpuQueue = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let status = unsafe { (self.t.queue_create)(d, priority, &mut q) };
        if status == abi::KNPU_STATUS_OUT_OF_MEMORY {
            let limit = self
                .attribute(d, abi::KNPU_ATTR_MAX_QUEUES)
                .map_or_else(|_| "its limit".to_string(), |n| n.to_string());
            return Err(Error::NotSupported {
                detail: format!(
                    "more queues at once than the device allows ({limit}): every stream, and \
                     every extra branch queue of a graph instance, holds one; drop streams or \
                     graph instances that are no longer needed"
                ),
            });
        }
        check(status, "queue_create")?;
        Ok(q)
    }

    pub(crate) fn queue_destroy(&self, q: abi::KnpuQueue) -> Result<()> {
        // SAFETY: `q` came from queue_create and is destroyed once by its owner.
        check(unsafe { (self.t.queue_destroy)(q) }, "queue_destroy")
    }

    /// Submits work.
    ///
    /// # Safety
    /// - Every host pointer named by a command stays valid until the submission completes.
    /// - Every semaphore named stays alive until the submission completes.
    pub(crate) unsafe fn queue_submit(
        &self,
        q: abi::KnpuQueue,
        info: &abi::KnpuSubmitInfo,
    ) -> Result<()> {
        // SAFETY: `info` and the arrays it points to are valid for the call (the driver
        // copies them); lifetimes beyond the call are the caller's obligation.
        check(unsafe { (self.t.queue_submit)(q, info) }, "queue_submit")
    }

    /// Submits nothing but a signal of `sem` to `value`, given once everything queued on
    /// `q` before it is over.
    ///
    /// # Safety
    /// - `sem` stays alive until the submission completes.
    pub(crate) unsafe fn queue_signal(
        &self,
        q: abi::KnpuQueue,
        sem: abi::KnpuSemaphore,
        value: u64,
    ) -> Result<()> {
        let mut info = abi::KnpuSubmitInfo::sized();
        info.signal_count = 1;
        info.signal_semaphores = &sem;
        info.signal_values = &value;
        // SAFETY: no commands; the arrays outlive the call and the caller keeps `sem` alive.
        unsafe { self.queue_submit(q, &info) }
    }

    pub(crate) fn semaphore_create(
        &self,
        d: abi::KnpuDriverDevice,
        initial: u64,
    ) -> Result<abi::KnpuSemaphore> {
        let mut s: abi::KnpuSemaphore = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let status = unsafe { (self.t.semaphore_create)(d, initial, &mut s) };
        check(status, "semaphore_create")?;
        Ok(s)
    }

    pub(crate) fn semaphore_destroy(&self, s: abi::KnpuSemaphore) -> Result<()> {
        // SAFETY: `s` came from semaphore_create and its owner destroys it once.
        let status = unsafe { (self.t.semaphore_destroy)(s) };
        check(status, "semaphore_destroy")
    }

    #[inline]
    pub(crate) fn semaphore_query(&self, s: abi::KnpuSemaphore) -> Result<u64> {
        let mut v = 0u64;
        // SAFETY: valid out-pointer; `s` is alive while its owner holds it.
        let status = unsafe { (self.t.semaphore_query)(s, &mut v) };
        check(status, "semaphore_query")?;
        Ok(v)
    }

    /// Waits for a value; returns the raw status (SUCCESS, TIMEOUT, or the failure status).
    pub(crate) fn semaphore_wait(
        &self,
        s: abi::KnpuSemaphore,
        value: u64,
        timeout_ns: u64,
    ) -> abi::KnpuStatus {
        // SAFETY: plain values; `s` is alive while its owner holds it.
        unsafe { (self.t.semaphore_wait)(s, value, timeout_ns) }
    }

    /// The failure of a failed semaphore as an [`Error`], or `None` when it is healthy.
    pub(crate) fn semaphore_error(&self, s: abi::KnpuSemaphore) -> Option<Error> {
        let mut status: abi::KnpuStatus = abi::KNPU_STATUS_SUCCESS;
        let mut buf = vec![0 as std::os::raw::c_char; 1024];
        // SAFETY: valid out-pointers; the buffer's capacity is passed.
        let s2 =
            unsafe { (self.t.semaphore_get_error)(s, &mut status, buf.as_mut_ptr(), buf.len()) };
        if s2 != abi::KNPU_STATUS_SUCCESS {
            return Some(from_status(s2, "semaphore_get_error"));
        }
        if status == abi::KNPU_STATUS_SUCCESS {
            return None;
        }
        *buf.last_mut().expect("non-empty") = 0;
        // SAFETY: NUL-terminated: the last byte is 0.
        let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Some(from_status(status, msg))
    }

    pub(crate) fn set_profiling(&self, d: abi::KnpuDriverDevice, on: bool) -> Result<()> {
        match self.t.device_set_profiling {
            // SAFETY: plain values.
            Some(f) => check(unsafe { f(d, on as i32) }, "device_set_profiling"),
            None => Err(Error::NotSupported {
                detail: format!("driver `{}` has no profiler", self.name),
            }),
        }
    }

    pub(crate) fn read_profile(
        &self,
        d: abi::KnpuDriverDevice,
        out: &mut Vec<abi::KnpuCommandRecord>,
    ) -> Result<()> {
        let Some(f) = self.t.device_read_profile else {
            return Ok(());
        };
        loop {
            let blank = abi::KnpuCommandRecord::sized();
            let mut chunk = vec![blank; 4096];
            let mut n = 0usize;
            // SAFETY: `chunk` has room for its length, every record's struct_size is set.
            let status = unsafe { f(d, chunk.as_mut_ptr(), chunk.len(), &mut n) };
            check(status, "device_read_profile")?;
            let n = n.min(chunk.len());
            out.extend_from_slice(&chunk[..n]);
            if n < chunk.len() {
                return Ok(());
            }
        }
    }

    /// Whether the driver stores command lists (ABI 1.1).
    pub(crate) fn has_command_lists(&self) -> bool {
        self.t.command_list_create.is_some()
            && self.t.command_list_update.is_some()
            && self.t.command_list_destroy.is_some()
    }

    /// Creates a command list; `None` when the driver has none (ABI 1.0).
    pub(crate) fn command_list_create(
        &self,
        d: abi::KnpuDriverDevice,
        cmds: &[abi::KnpuCommand],
    ) -> Result<Option<abi::KnpuCommandList>> {
        let Some(f) = self
            .t
            .command_list_create
            .filter(|_| self.has_command_lists())
        else {
            return Ok(None);
        };
        let mut list: abi::KnpuCommandList = std::ptr::null_mut();
        // SAFETY: `cmds` is a valid array of its length; the driver copies it.
        let status = unsafe { f(d, cmds.as_ptr(), cmds.len() as u32, &mut list) };
        check(status, "command_list_create")?;
        Ok(Some(list))
    }

    /// Replaces one command of a list.
    pub(crate) fn command_list_update(
        &self,
        list: abi::KnpuCommandList,
        index: usize,
        cmd: &abi::KnpuCommand,
    ) -> Result<()> {
        let f = self
            .t
            .command_list_update
            .ok_or_else(|| Error::NotSupported {
                detail: "command lists".into(),
            })?;
        // SAFETY: `cmd` is one valid command; the driver copies it.
        let status = unsafe { f(list, index as u32, cmd) };
        check(status, "command_list_update")
    }

    /// Destroys a list.
    pub(crate) fn command_list_destroy(&self, list: abi::KnpuCommandList) -> Result<()> {
        let f = self
            .t
            .command_list_destroy
            .ok_or_else(|| Error::NotSupported {
                detail: "command lists".into(),
            })?;
        // SAFETY: `list` came from command_list_create and is destroyed once by its owner.
        let status = unsafe { f(list) };
        check(status, "command_list_destroy")
    }

    pub(crate) fn clock_ns(&self, d: abi::KnpuDriverDevice) -> Result<u64> {
        let f = self.t.device_get_clock.ok_or_else(|| Error::NotSupported {
            detail: format!("driver `{}` has no device clock", self.name),
        })?;
        let mut v = 0u64;
        // SAFETY: valid out-pointer.
        check(unsafe { f(d, &mut v) }, "device_get_clock")?;
        Ok(v)
    }
}

/// Turns a status into `Ok` or an [`Error`] naming the driver function.
#[inline]
pub(crate) fn check(status: abi::KnpuStatus, what: &str) -> Result<()> {
    if status == abi::KNPU_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(from_status(status, what.to_string()))
    }
}
