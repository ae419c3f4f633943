//! Streams: in-order asynchronous queues of work on one device.
//!
//! A stream owns a driver queue and a timeline semaphore. Every submission signals the next
//! value of that semaphore, so "has the stream reached submission N?" is one query, events
//! are `(semaphore, value)` pairs, and the allocator can tell when freed memory is safe to
//! hand to another stream.
//!
//! Launches return once the work is queued. Faults of queued work surface at the next
//! `synchronize` or `query` of the stream (or an event after the work). After reporting a
//! fault the stream starts a fresh semaphore and stays usable: errors are not sticky unless
//! the device was lost.

use crate::allocator::Pending;
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut, DeviceBuffer, DeviceSlice};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::{self, CaptureLink, CaptureMode, Graph, NodeId};
use crate::semaphore::Semaphore;

use knpu_driver_abi::{self as abi, SizedStruct};
use parking_lot::Mutex;
use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A stream's scheduling priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Below normal.
    Low,
    /// The default.
    Normal,
    /// Preferred by the device's scheduler.
    High,
}

impl Priority {
    fn raw(self) -> i32 {
        match self {
            Priority::Low => abi::KNPU_QUEUE_PRIORITY_LOW,
            Priority::Normal => abi::KNPU_QUEUE_PRIORITY_NORMAL,
            Priority::High => abi::KNPU_QUEUE_PRIORITY_HIGH,
        }
    }
}

static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct StreamState {
    /// The capture this stream records into, if it is capturing.
    pub(crate) capture: Option<CaptureLink>,
    pub(crate) sem: Arc<Semaphore>,
    /// The value the last submission signals.
    pub(crate) last: u64,
    /// Things queued work refers to, released once the stream passes the value.
    keep: VecDeque<(u64, Box<dyn Any + Send>)>,
}

pub(crate) struct StreamInner {
    pub(crate) device: Device,
    pub(crate) id: u64,
    /// Null for a recording stream, which only ever captures.
    queue: abi::KnpuQueue,
    priority: Priority,
    pub(crate) state: Mutex<StreamState>,
}

// SAFETY: the queue handle may be used from any thread (driver ABI); the rest is Send + Sync
// or behind the mutex.
unsafe impl Send for StreamInner {}
// SAFETY: as above.
unsafe impl Sync for StreamInner {}

impl Drop for StreamInner {
    fn drop(&mut self) {
        // Destroying a stream with pending work waits for that work (its buffers and
        // callbacks must not be released early). Errors have no one left to go to.
        let st = self.state.get_mut();
        if let Some(link) = st.capture.take() {
            if link.cap.origin == self.id {
                link.cap
                    .abandon("the stream that began the capture was destroyed");
            } else {
                link.cap.invalidate("a capturing stream was destroyed");
            }
        }
        if in_host_callback() && !self.queue.is_null() {
            // A host callback cannot wait for device work (it may be that work). Hand what
            // queued work still refers to over to the queue itself: a last host function
            // drops it once everything before it has run; destroying the queue lets the
            // worker finish its submissions first.
            let keep = (std::mem::take(&mut st.keep), st.sem.clone());
            let user = Box::into_raw(Box::new(HostFn(Box::new(move || drop(keep)))));
            let cmd = host_fn_command(user);
            let mut info = abi::KnpuSubmitInfo::sized();
            info.command_count = 1;
            info.commands = &cmd;
            // SAFETY: the command array outlives the call; `user` passes to the driver.
            let submitted =
                unsafe { self.device.inner.driver.queue_submit(self.queue, &info) }.is_ok();
            if !submitted {
                // SAFETY: the driver refused the submission, so it never saw `user`; the
                // queue is unusable, so its work is over or never ran.
                drop(unsafe { Box::from_raw(user) });
            }
            let _ = self.device.inner.driver.queue_destroy(self.queue);
            return;
        }
        let _ = st.sem.wait(st.last);
        if !self.queue.is_null() {
            let _ = self.device.inner.driver.queue_destroy(self.queue);
        }
        st.keep.clear();
    }
}

/// An in-order queue of work on one device. Clones name the same stream.
#[derive(Clone)]
pub struct Stream {
    pub(crate) inner: Arc<StreamInner>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.inner.id)
            .field("device", &self.inner.device.ordinal())
            .field("priority", &self.inner.priority)
            .finish()
    }
}

/// One submission's extra parts.
#[derive(Default)]
pub(crate) struct Submit<'a> {
    pub(crate) waits: &'a [(Arc<Semaphore>, u64)],
    /// Semaphores to signal besides the stream's own.
    pub(crate) signals: &'a [(Arc<Semaphore>, u64)],
    /// A driver command list to run after the commands (graph launches).
    pub(crate) list: Option<abi::KnpuCommandList>,
    pub(crate) keep: Option<Box<dyn Any + Send>>,
}

/// The two ends of one copy command.
#[derive(Clone, Copy)]
pub(crate) enum Ends {
    /// Host memory to a device address.
    HostToDevice(*const u8, u64),
    /// A device address to host memory.
    DeviceToHost(u64, *mut u8),
    /// Device address to device address, on the stream's device.
    DeviceToDevice(u64, u64),
    /// From an address on another device of the same driver (the raw device) to one here.
    Peer(u64, u64, abi::KnpuDriverDevice),
}

struct HostFn(Box<dyn FnOnce() + Send>);

thread_local! {
    /// How deep this thread is in host callbacks (a driver worker running a host function).
    static IN_CALLBACK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this thread is running a host callback ([`Stream::launch_host_func`],
/// [`Stream::launch_host_fn`] or a graph's host node).
pub(crate) fn in_host_callback() -> bool {
    IN_CALLBACK.with(|c| c.get() > 0)
}

/// Runs a host callback with the "in callback" mark set; a panic is caught (it must not
/// unwind into the driver) and is the callback's own failure.
pub(crate) fn run_host_callback(f: impl FnOnce()) {
    struct Mark;
    impl Drop for Mark {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(c.get() - 1));
        }
    }
    IN_CALLBACK.with(|c| c.set(c.get() + 1));
    let _mark = Mark;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
}

/// Fails when called from a host callback: `what` would wait for device work, and the
/// callback runs on a device queue's worker, so the wait could be for the callback itself
/// or for work queued behind it — a deadlock. Buffers may be dropped, work queued, and
/// events and streams queried from a callback; waiting is what it cannot do.
pub(crate) fn check_not_in_callback(what: &str) -> Result<()> {
    if in_host_callback() {
        return Err(Error::NotSupported {
            detail: format!(
                "{what} from a host callback: it would wait for device work, which may be \
                 queued behind the callback itself; queue the wait after the callback instead"
            ),
        });
    }
    Ok(())
}

unsafe extern "C" fn host_fn_trampoline(user: *mut std::os::raw::c_void, status: abi::KnpuStatus) {
    // SAFETY: `user` is the Box<HostFn> leaked by `launch_host_func`; the driver calls this
    // exactly once, so ownership comes back exactly once.
    let f = unsafe { Box::from_raw(user as *mut HostFn) };
    if status == abi::KNPU_STATUS_SUCCESS {
        run_host_callback(f.0);
    } else {
        // Dropping the closure may drop buffers it captured: mark it as a callback too.
        run_host_callback(move || drop(f));
    }
}

/// A host-function command that calls `host_fn_trampoline` with `user`.
fn host_fn_command(user: *mut HostFn) -> abi::KnpuCommand {
    // SAFETY: KnpuCommand starts with struct_size and holds integers, pointers and
    // nullable function pointers.
    let mut cmd = abi::KnpuCommand::sized();
    cmd.type_ = abi::KNPU_COMMAND_HOST_FUNCTION;
    cmd.u.host_function = abi::KnpuHostFunctionCommand {
        fn_: Some(host_fn_trampoline),
        user_data: user as *mut std::os::raw::c_void,
    };
    cmd
}

impl Stream {
    /// A new stream of normal priority on `device`.
    pub fn new(device: &Device) -> Result<Stream> {
        Stream::with_priority(device, Priority::Normal)
    }

    /// A new stream with the given priority.
    pub fn with_priority(device: &Device, priority: Priority) -> Result<Stream> {
        device.check_lost()?;
        let d = &device.inner;
        let sem = Semaphore::new(&d.driver, d.raw, 0).map_err(|e| device.note(e))?;
        let queue = d
            .driver
            .queue_create(d.raw, priority.raw())
            .map_err(|e| device.note(e))?;
        let inner = Arc::new(StreamInner {
            device: device.clone(),
            id: NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed),
            queue,
            priority,
            state: Mutex::new(StreamState {
                capture: None,
                sem,
                last: 0,
                keep: VecDeque::new(),
            }),
        });
        d.streams.lock().push(Arc::downgrade(&inner));
        Ok(Stream { inner })
    }

    /// A stream without a device queue that records everything into `graph` after `deps`:
    /// the explicit graph builder's way of reusing every launcher.
    pub(crate) fn recorder(device: &Device, graph: Graph, deps: &[NodeId]) -> Result<Stream> {
        let d = &device.inner;
        let sem = Semaphore::new(&d.driver, d.raw, 0).map_err(|e| device.note(e))?;
        let id = NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed);
        let link = CaptureLink {
            cap: graph::Capture::recorder(graph, id),
            tails: deps.to_vec(),
            recorded: 0,
        };
        Ok(Stream {
            inner: Arc::new(StreamInner {
                device: device.clone(),
                id,
                queue: std::ptr::null_mut(),
                priority: Priority::Normal,
                state: Mutex::new(StreamState {
                    capture: Some(link),
                    sem,
                    last: 0,
                    keep: VecDeque::new(),
                }),
            }),
        })
    }

    /// Ends a recording stream: the nodes that end what it recorded (empty if nothing).
    pub(crate) fn finish_recording(&self) -> Result<Vec<NodeId>> {
        let link = self
            .inner
            .state
            .lock()
            .capture
            .take()
            .ok_or_else(|| Error::Internal {
                detail: "recording stream lost its capture".into(),
            })?;
        link.cap.check_valid()?;
        Ok(if link.recorded == 0 {
            Vec::new()
        } else {
            link.tails
        })
    }

    /// Starts capturing: work queued on this stream from now on becomes nodes of a graph
    /// that [`Stream::end_capture`] returns, instead of running.
    pub fn begin_capture(&self, mode: CaptureMode) -> Result<()> {
        let mut st = self.inner.state.lock();
        leave_dead_capture(&mut st)?;
        if st.capture.is_some() {
            return Err(Error::Capture {
                detail: "the stream is already capturing".into(),
            });
        }
        let cap = graph::Capture::begin(Graph::new(&self.inner.device), mode, self.inner.id);
        cap.members.lock().push(Arc::downgrade(&self.inner));
        st.capture = Some(CaptureLink {
            cap,
            tails: Vec::new(),
            recorded: 0,
        });
        Ok(())
    }

    /// Ends the capture this stream began and returns its graph. Fails if the capture was
    /// invalidated, or if a stream that joined it was not joined back; either way every
    /// stream involved stops capturing and stays usable.
    pub fn end_capture(&self) -> Result<Graph> {
        let link = {
            let mut st = self.inner.state.lock();
            leave_dead_capture(&mut st)?;
            match &st.capture {
                None => {
                    return Err(Error::Capture {
                        detail: "the stream is not capturing".into(),
                    })
                }
                Some(l) if l.cap.origin != self.inner.id => {
                    return Err(Error::Capture {
                        detail: "end_capture must be called on the stream that began the capture"
                            .into(),
                    })
                }
                Some(_) => st.capture.take().expect("checked"),
            }
        };
        let cap = link.cap.clone();
        cap.end();
        let members: Vec<Arc<StreamInner>> = cap
            .members
            .lock()
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        let reached = graph::capture::ancestors(&cap.graph, &link.tails);
        let mut unjoined = 0;
        for m in &members {
            if m.id == self.inner.id {
                continue;
            }
            let mut st = m.state.lock();
            let is_ours = st
                .capture
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.cap, &cap));
            if is_ours {
                let l = st.capture.take().expect("checked");
                if l.tails
                    .iter()
                    .any(|t| !reached.get(t.0).copied().unwrap_or(false))
                {
                    unjoined += 1;
                }
            }
        }
        cap.check_valid()?;
        if unjoined > 0 {
            return Err(Error::Capture {
                detail: format!(
                    "{unjoined} stream(s) that joined the capture were not joined back into the origin stream"
                ),
            });
        }
        Ok(cap.graph.clone())
    }

    /// Whether the stream is capturing.
    pub fn is_capturing(&self) -> bool {
        self.inner
            .state
            .lock()
            .capture
            .as_ref()
            .is_some_and(|l| !l.cap.is_abandoned())
    }

    /// Leaves a capture that can no longer end (the stream that began it was destroyed),
    /// reporting its invalidation once; `Ok` otherwise.
    pub(crate) fn leave_dead_capture(&self) -> Result<()> {
        leave_dead_capture(&mut self.inner.state.lock())
    }

    /// Fails (and invalidates the capture) when the stream is capturing: for operations that
    /// need the work to run now.
    pub(crate) fn check_not_capturing(&self, what: &str) -> Result<()> {
        let mut st = self.inner.state.lock();
        leave_dead_capture(&mut st)?;
        match &st.capture {
            None => Ok(()),
            Some(link) => Err(graph::capture::not_capturable(link, what)),
        }
    }

    /// The capture and tails of a capturing stream (for events recorded during capture).
    pub(crate) fn capture_point(&self) -> Option<(Arc<graph::Capture>, Vec<NodeId>)> {
        self.inner
            .state
            .lock()
            .capture
            .as_ref()
            .map(|l| (l.cap.clone(), l.tails.clone()))
    }

    pub(crate) fn from_inner(inner: Arc<StreamInner>) -> Stream {
        Stream { inner }
    }

    /// The device the stream runs on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The stream's priority.
    pub fn priority(&self) -> Priority {
        self.inner.priority
    }

    /// Queues commands; returns the semaphore value their completion signals.
    ///
    /// # Safety
    /// - Host memory named by the commands stays valid until that value is reached (or
    ///   `keep` owns it).
    /// - Device addresses are checked by the driver, so they carry no obligation.
    pub(crate) unsafe fn submit(
        &self,
        commands: &[abi::KnpuCommand],
        extra: Submit<'_>,
    ) -> Result<u64> {
        let dev = &self.inner.device;
        let mut st = self.inner.state.lock();
        leave_dead_capture(&mut st)?;
        if let Some(link) = st.capture.as_mut() {
            graph::capture::record(link, commands, !extra.waits.is_empty(), extra.keep)?;
            return Ok(st.last);
        }
        let value = st.last + 1;
        let wait_raw: Vec<abi::KnpuSemaphore>;
        let wait_values: Vec<u64>;
        if extra.signals.len() > 3 {
            return Err(Error::Internal {
                detail: "more than three extra signals".into(),
            });
        }
        let mut signal_raw: [abi::KnpuSemaphore; 4] = [st.sem.raw; 4];
        let mut signal_values = [value; 4];
        for (i, (s, v)) in extra.signals.iter().enumerate() {
            signal_raw[i + 1] = s.raw;
            signal_values[i + 1] = *v;
        }
        let mut info = abi::KnpuSubmitInfo::sized();
        if !extra.waits.is_empty() {
            wait_raw = extra.waits.iter().map(|(s, _)| s.raw).collect();
            wait_values = extra.waits.iter().map(|(_, v)| *v).collect();
            info.wait_count = wait_raw.len() as u32;
            info.wait_semaphores = wait_raw.as_ptr();
            info.wait_values = wait_values.as_ptr();
        }
        info.command_count = commands.len() as u32;
        info.commands = commands.as_ptr();
        info.command_list = extra.list.unwrap_or(std::ptr::null_mut());
        info.signal_count = 1 + extra.signals.len() as u32;
        info.signal_semaphores = signal_raw.as_ptr();
        info.signal_values = signal_values.as_ptr();
        // SAFETY: the arrays live until the call returns (the driver copies them); the
        // caller keeps host memory valid; waited semaphores are kept alive below.
        unsafe { dev.inner.driver.queue_submit(self.inner.queue, &info) }
            .map_err(|e| dev.note(e))?;
        st.last = value;
        for (s, _) in extra.waits.iter().chain(extra.signals) {
            st.keep.push_back((value, Box::new(s.clone())));
        }
        if let Some(k) = extra.keep {
            st.keep.push_back((value, k));
        }
        if st.keep.len() > 64 {
            Self::purge(&mut st);
        }
        Ok(value)
    }

    fn purge(st: &mut StreamState) {
        if st.keep.is_empty() {
            return;
        }
        let done = st.sem.value().unwrap_or(u64::MAX);
        while st.keep.front().is_some_and(|(v, _)| *v <= done) {
            st.keep.pop_front();
        }
    }

    /// The stream's semaphore and the value of its last submission.
    pub(crate) fn position(&self) -> (Arc<Semaphore>, u64) {
        let st = self.inner.state.lock();
        (st.sem.clone(), st.last)
    }

    pub(crate) fn pending_marker(&self) -> Pending {
        let (sem, value) = self.position();
        Pending {
            stream: self.inner.id,
            sem,
            value,
        }
    }

    /// Waits until all work queued so far has finished. Reports the first fault of that
    /// work; the stream is usable again afterwards unless the device was lost.
    pub fn synchronize(&self) -> Result<()> {
        self.check_not_capturing("stream synchronize")?;
        check_not_in_callback("stream synchronize")?;
        let (sem, last) = self.position();
        self.wait_value(&sem, last)
    }

    /// Waits for one value of this stream's semaphore, with fault recovery.
    pub(crate) fn wait_value(&self, sem: &Arc<Semaphore>, value: u64) -> Result<()> {
        match sem.wait(value) {
            Ok(()) => {
                let mut st = self.inner.state.lock();
                Self::purge(&mut st);
                crate::trace::collect(&self.inner.device);
                Ok(())
            }
            Err(e) => Err(self.recover(sem, e)),
        }
    }

    /// After a fault: drain the queue onto a fresh semaphore so the stream can go on.
    fn recover(&self, failed: &Arc<Semaphore>, e: Error) -> Error {
        let dev = &self.inner.device;
        let e = dev.note(e);
        if e.is_device_lost() || in_host_callback() {
            // From a callback the queue cannot be drained (the drain would wait behind the
            // callback); the stream recovers at its next wait outside a callback.
            return e;
        }
        let fresh = {
            let mut st = self.inner.state.lock();
            if !Arc::ptr_eq(&st.sem, failed) {
                return e;
            }
            let sem = match Semaphore::new(&dev.inner.driver, dev.inner.raw, 0) {
                Ok(s) => s,
                Err(e2) => return dev.note(e2),
            };
            // SAFETY: the fresh semaphore, signalled once everything queued before is over,
            // is kept by the stream's state.
            if let Err(e2) = unsafe { dev.inner.driver.queue_signal(self.inner.queue, sem.raw, 1) }
            {
                return dev.note(e2);
            }
            st.sem = sem.clone();
            st.last = 1;
            st.keep.clear();
            sem
        };
        if let Err(e2) = fresh.wait(1) {
            return dev.note(e2);
        }
        e
    }

    /// Whether all queued work has finished (`Ok(false)`: still running). A fault of that
    /// work is returned as an error, as `synchronize` would.
    pub fn query(&self) -> Result<bool> {
        self.check_not_capturing("stream query")?;
        let (sem, last) = self.position();
        let v = sem.value().map_err(|e| self.inner.device.note(e))?;
        if v == abi::SEMAPHORE_FAILED {
            let e = sem.error().unwrap_or_else(|| Error::Internal {
                detail: "semaphore failed without a reason".into(),
            });
            return Err(self.recover(&sem, e));
        }
        Ok(v >= last)
    }

    /// Makes later work on this stream wait until `event`'s recorded work has finished. An
    /// event never recorded imposes no wait (as in CUDA).
    pub fn wait_event(&self, event: &crate::Event) -> Result<()> {
        self.leave_dead_capture()?;
        if let Some((cap, tails)) = event.capture_point() {
            return self.join_capture(cap, tails);
        }
        // Recorded in a capture that is over: like `Event::query` and `synchronize`, say so.
        event.captured_error()?;
        if let Some(link) = self.inner.state.lock().capture.as_ref() {
            if event.position().is_some() {
                return Err(graph::capture::not_capturable(
                    link,
                    "a wait on an event recorded outside the capture",
                ));
            }
        }
        let Some((sem, value)) = event.position() else {
            return Ok(());
        };
        if Arc::ptr_eq(&sem, &self.position().0) {
            return Ok(());
        }
        let waits = [(sem, value)];
        // SAFETY: no commands, so no host memory; the waited semaphore is kept alive.
        unsafe {
            self.submit(
                &[],
                Submit {
                    waits: &waits,
                    ..Default::default()
                },
            )
        }?;
        Ok(())
    }

    /// Waits on an event recorded during a capture: joins that capture (a fork) or, when
    /// already in it, adds the event's point as a dependency (a join).
    fn join_capture(&self, cap: Arc<graph::Capture>, tails: Vec<NodeId>) -> Result<()> {
        cap.check_valid()?;
        if cap.ended.load(Ordering::Acquire) {
            return Err(Error::Capture {
                detail: "the event was recorded in a capture that has ended".into(),
            });
        }
        let mut st = self.inner.state.lock();
        match st.capture.as_mut() {
            Some(link) if Arc::ptr_eq(&link.cap, &cap) => {
                for t in tails {
                    if !link.tails.contains(&t) {
                        link.tails.push(t);
                    }
                }
                Ok(())
            }
            Some(link) => Err(graph::capture::not_capturable(
                link,
                "a wait on an event of another capture",
            )),
            None => {
                cap.members.lock().push(Arc::downgrade(&self.inner));
                st.capture = Some(CaptureLink {
                    cap,
                    tails,
                    recorded: 0,
                });
                Ok(())
            }
        }
    }

    /// Queues `f` to run on a driver thread once all earlier work is done, like
    /// [`Stream::launch_host_func`], but `f` may run many times: this is the form a capture
    /// records as a host node, called on every launch of the graph.
    pub fn launch_host_fn(&self, f: impl Fn() + Send + Sync + 'static) -> Result<()> {
        {
            let mut st = self.inner.state.lock();
            leave_dead_capture(&mut st)?;
            if let Some(link) = st.capture.as_mut() {
                link.cap.check_valid()?;
                graph::capture::push(link, graph::NodeKind::HostFn(Arc::new(f)))?;
                return Ok(());
            }
        }
        self.launch_host_func(f)
    }

    /// Queues `f` to run on a driver thread once all earlier work on the stream is done;
    /// later work waits for it. If earlier work fails, `f` is dropped without running.
    /// A panic inside `f` is caught and ignored.
    pub fn launch_host_func(&self, f: impl FnOnce() + Send + 'static) -> Result<()> {
        self.check_not_capturing("a one-shot host callback (use launch_host_fn)")?;
        let user = Box::into_raw(Box::new(HostFn(Box::new(f))));
        let cmd = host_fn_command(user);
        // SAFETY: no host memory besides `user`, whose ownership passes to the driver.
        match unsafe { self.submit(&[cmd], Submit::default()) } {
            Ok(_) => Ok(()),
            Err(e) => {
                // SAFETY: the submission failed, so the driver never saw `user`.
                drop(unsafe { Box::from_raw(user) });
                Err(e)
            }
        }
    }

    /// Allocates `len` elements of device memory, ordered on this stream: memory freed on
    /// this stream is reused at once, memory freed on others once their work is done.
    /// Contents are unspecified. `len == 0` gives an empty buffer without device memory.
    pub fn alloc<T: bytemuck::Pod>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        DeviceBuffer::new(self, len)
    }

    /// Allocates `len` zeroed elements (the zeroing is queued on this stream).
    pub fn alloc_zeroed<T: bytemuck::Pod>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        let mut b = DeviceBuffer::new(self, len)?;
        self.memset_bytes(&mut b, 0u8)?;
        Ok(b)
    }

    /// Allocates a buffer and copies `src` into it; returns once the copy is done.
    pub fn from_slice<T: bytemuck::Pod>(&self, src: &[T]) -> Result<DeviceBuffer<T>> {
        let mut b = DeviceBuffer::new(self, src.len())?;
        self.memcpy_htod(&mut b, src)?;
        Ok(b)
    }

    /// The copy command of `size` bytes between `ends`.
    pub(crate) fn copy_command(ends: Ends, size: u64) -> abi::KnpuCommand {
        use abi::{
            KNPU_COMMAND_COPY_DEVICE_TO_DEVICE as D2D, KNPU_COMMAND_COPY_DEVICE_TO_HOST as D2H,
            KNPU_COMMAND_COPY_HOST_TO_DEVICE as H2D, KNPU_COMMAND_COPY_PEER as PEER,
        };
        let (no_src, no_dst): (*const u8, *mut u8) = (std::ptr::null(), std::ptr::null_mut());
        let no_peer: abi::KnpuDriverDevice = std::ptr::null_mut();
        let (type_, src, dst, host_src, host_dst, peer_device) = match ends {
            Ends::HostToDevice(h, d) => (H2D, 0, d, h, no_dst, no_peer),
            Ends::DeviceToHost(s, h) => (D2H, s, 0, no_src, h, no_peer),
            Ends::DeviceToDevice(s, d) => (D2D, s, d, no_src, no_dst, no_peer),
            Ends::Peer(s, d, peer) => (PEER, s, d, no_src, no_dst, peer),
        };
        let mut cmd = abi::KnpuCommand::sized();
        cmd.type_ = type_;
        cmd.u.copy = abi::KnpuCopyCommand {
            src,
            dst,
            host_src: host_src as *const std::os::raw::c_void,
            host_dst: host_dst as *mut std::os::raw::c_void,
            size,
            peer_device,
        };
        cmd
    }

    /// Queues one copy of `size` bytes, holding `keep` until it is done; returns the stream
    /// value the copy signals.
    ///
    /// # Safety
    /// - Host memory named by `ends` must stay valid (and a destination unwritten by anything
    ///   else) until the copy is done.
    unsafe fn submit_copy(
        &self,
        ends: Ends,
        size: u64,
        keep: Option<Box<dyn Any + Send>>,
    ) -> Result<u64> {
        let cmd = Self::copy_command(ends, size);
        // SAFETY: the caller's contract for the host memory; device addresses need none.
        unsafe {
            self.submit(
                &[cmd],
                Submit {
                    keep,
                    ..Default::default()
                },
            )
        }
    }

    /// `Error::DeviceMismatch` naming `operand` when `d` is not this stream's device.
    pub(crate) fn check_device(&self, operand: &'static str, d: &Device) -> Result<()> {
        if d != &self.inner.device {
            return Err(Error::DeviceMismatch {
                operand,
                expected: self.inner.device.ordinal(),
                actual: d.ordinal(),
            });
        }
        Ok(())
    }

    fn check_len(operand: &'static str, expected: usize, actual: usize) -> Result<()> {
        if expected != actual {
            return Err(Error::Shape {
                operand,
                expected: format!("[{expected}]"),
                actual: format!("[{actual}]"),
            });
        }
        Ok(())
    }

    /// Queues a host-to-device copy and waits for it: `src` is free to reuse on return.
    pub fn memcpy_htod<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        src: &[T],
    ) -> Result<()> {
        self.check_not_capturing("a blocking copy")?;
        check_not_in_callback("a blocking copy")?;
        graph::check_unsafe_call("a blocking copy")?;
        // SAFETY: we wait for the copy before returning, so `src` outlives it.
        let v = unsafe { self.memcpy_htod_async(dst, src) }?;
        self.wait_own(v)
    }

    /// Queues a device-to-host copy and waits for it.
    pub fn memcpy_dtoh<T: bytemuck::Pod>(
        &self,
        dst: &mut [T],
        src: &impl AsDeviceSlice<T>,
    ) -> Result<()> {
        self.check_not_capturing("a blocking copy")?;
        check_not_in_callback("a blocking copy")?;
        graph::check_unsafe_call("a blocking copy")?;
        // SAFETY: we wait for the copy before returning, so `dst` outlives it.
        let v = unsafe { self.memcpy_dtoh_async(dst, src) }?;
        self.wait_own(v)
    }

    fn wait_own(&self, value: u64) -> Result<()> {
        check_not_in_callback("a blocking copy")?;
        let sem = self.inner.state.lock().sem.clone();
        self.wait_value(&sem, value)
    }

    /// Queues a host-to-device copy and returns at once.
    ///
    /// # Safety
    /// - `src` must stay valid and unmodified until the copy has finished (synchronize the
    ///   stream or an event recorded after it).
    pub unsafe fn memcpy_htod_async<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        src: &[T],
    ) -> Result<u64> {
        let d = dst.as_device_slice_mut();
        self.check_device("dst", d.device())?;
        Self::check_len("src", d.len(), src.len())?;
        if src.is_empty() {
            return Ok(self.position().1);
        }
        let ends = Ends::HostToDevice(src.as_ptr().cast(), d.addr());
        // SAFETY: the caller keeps `src` valid until the copy is done.
        let v = unsafe { self.submit_copy(ends, std::mem::size_of_val(src) as u64, None) }?;
        d.note_use(self, v);
        Ok(v)
    }

    /// Queues a device-to-host copy and returns at once.
    ///
    /// # Safety
    /// - `dst` must stay valid, and must not be read or written, until the copy has finished.
    pub unsafe fn memcpy_dtoh_async<T: bytemuck::Pod>(
        &self,
        dst: &mut [T],
        src: &impl AsDeviceSlice<T>,
    ) -> Result<u64> {
        // SAFETY: the caller's contract, as above.
        unsafe { self.dtoh(dst, src, None) }
    }

    /// Queues a device-to-host copy into host memory that `keep` owns, and returns at once;
    /// the stream keeps `keep` alive until the copy is done (for bindings that hand out the
    /// destination, such as a numpy array, before the copy has run).
    ///
    /// # Safety
    /// - `dst` must lie in memory owned by `keep` (so it lives as long as `keep`), and must not
    ///   be written by anything else until the copy has finished.
    pub unsafe fn memcpy_dtoh_async_keep<T: bytemuck::Pod>(
        &self,
        dst: &mut [T],
        src: &impl AsDeviceSlice<T>,
        keep: Box<dyn Any + Send>,
    ) -> Result<u64> {
        // SAFETY: `keep` owns `dst`'s memory and moves into the submission's keep-alive (the
        // stream's list, or the graph when capturing), so the memory outlives the copy.
        unsafe { self.dtoh(dst, src, Some(keep)) }
    }

    /// The device-to-host copy of [`Self::memcpy_dtoh_async`], with an optional keep-alive.
    ///
    /// # Safety
    /// - `dst` must stay valid, and unwritten by anything else, until the copy has finished.
    unsafe fn dtoh<T: bytemuck::Pod>(
        &self,
        dst: &mut [T],
        src: &impl AsDeviceSlice<T>,
        keep: Option<Box<dyn Any + Send>>,
    ) -> Result<u64> {
        let s = src.as_device_slice();
        self.check_device("src", s.device())?;
        Self::check_len("dst", s.len(), dst.len())?;
        if dst.is_empty() {
            return Ok(self.position().1);
        }
        let size = std::mem::size_of_val(dst) as u64;
        let ends = Ends::DeviceToHost(s.addr(), dst.as_mut_ptr().cast());
        // SAFETY: the callers keep `dst` valid until the copy is done.
        let v = unsafe { self.submit_copy(ends, size, keep) }?;
        s.note_use(self, v);
        Ok(v)
    }

    /// Queues a copy of an owned host vector to the device; the stream keeps the vector
    /// alive until the copy is done. Returns at once.
    pub fn memcpy_htod_owned<T: bytemuck::Pod + Send>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        src: Vec<T>,
    ) -> Result<()> {
        let d = dst.as_device_slice_mut();
        self.check_device("dst", d.device())?;
        Self::check_len("src", d.len(), src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        let size = std::mem::size_of_val(src.as_slice()) as u64;
        let ends = Ends::HostToDevice(src.as_ptr().cast(), d.addr());
        // SAFETY: `src` moves into the submission's keep-alive (the stream's list, or the
        // graph when capturing), so it outlives the copy; its heap block does not move.
        let v = unsafe { self.submit_copy(ends, size, Some(Box::new(src))) }?;
        d.note_use(self, v);
        Ok(())
    }

    /// Queues a device-to-device copy (`dst` and `src` may be on this stream's device only).
    pub fn memcpy_dtod<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        src: &impl AsDeviceSlice<T>,
    ) -> Result<()> {
        self.device_copy(dst.as_device_slice_mut(), src.as_device_slice(), false)
    }

    /// Queues a copy within one buffer: `count` elements from `src_offset` to `dst_offset`.
    /// The ranges may overlap (memmove semantics).
    pub fn copy_within<T: bytemuck::Pod>(
        &self,
        buf: &mut DeviceBuffer<T>,
        src_offset: usize,
        dst_offset: usize,
        count: usize,
    ) -> Result<()> {
        self.check_device("buf", buf.device())?;
        for (what, off) in [("source", src_offset), ("destination", dst_offset)] {
            if off.checked_add(count).is_none_or(|end| end > buf.len()) {
                return Err(Error::invalid(format!(
                    "copy_within {what} range {off}..{} is past the buffer's {} elements",
                    off.saturating_add(count),
                    buf.len()
                )));
            }
        }
        if count == 0 {
            return Ok(());
        }
        let es = std::mem::size_of::<T>() as u64;
        let base = buf.device_address();
        let ends =
            Ends::DeviceToDevice(base + src_offset as u64 * es, base + dst_offset as u64 * es);
        // SAFETY: no host memory.
        let v = unsafe { self.submit_copy(ends, count as u64 * es, None) }?;
        buf.as_device_slice().note_use(self, v);
        Ok(())
    }

    /// Queues a copy from a buffer on another device of the same driver into `dst`.
    pub fn memcpy_peer<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        src: &impl AsDeviceSlice<T>,
    ) -> Result<()> {
        self.device_copy(dst.as_device_slice_mut(), src.as_device_slice(), true)
    }

    /// A copy from `s` into `d` on this stream's device: `s` on the same device, or with
    /// `peer` on another device of the same driver.
    fn device_copy<T: bytemuck::Pod>(
        &self,
        d: DeviceSlice<'_, T>,
        s: DeviceSlice<'_, T>,
        peer: bool,
    ) -> Result<()> {
        if !peer {
            self.check_device("src", s.device())?;
        }
        self.check_device("dst", d.device())?;
        Self::check_len("src", d.len(), s.len())?;
        if peer && !Arc::ptr_eq(&s.device().inner.driver, &self.inner.device.inner.driver) {
            return Err(Error::NotSupported {
                detail:
                    "peer copies between devices of different drivers; copy through host memory"
                        .into(),
            });
        }
        if s.is_empty() {
            return Ok(());
        }
        let size = (s.len() * std::mem::size_of::<T>()) as u64;
        let v = if peer {
            let cmd =
                Self::copy_command(Ends::Peer(s.addr(), d.addr(), s.device().inner.raw), size);
            // The source's own stream must be done with it first.
            let waits = [s.buffer_stream().position()];
            // SAFETY: no host memory; the waited semaphore is kept alive by `submit`.
            unsafe {
                self.submit(
                    &[cmd],
                    Submit {
                        waits: &waits,
                        ..Default::default()
                    },
                )
            }?
        } else {
            // SAFETY: no host memory.
            unsafe { self.submit_copy(Ends::DeviceToDevice(s.addr(), d.addr()), size, None) }?
        };
        s.note_use(self, v);
        d.note_use(self, v);
        Ok(())
    }

    /// Queues a fill of every element of `dst` with `value` (elements of 1, 2, 4 or 8 bytes).
    pub fn memset<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        value: T,
    ) -> Result<()> {
        let size = std::mem::size_of::<T>();
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(Error::NotSupported {
                detail: format!("fill with {size}-byte elements (1, 2, 4 or 8 only)"),
            });
        }
        let mut pattern = [0u8; 8];
        pattern[..size].copy_from_slice(bytemuck::bytes_of(&value));
        self.fill(dst, u64::from_le_bytes(pattern), size as u32)
    }

    /// Queues a fill of every byte of `dst` with `byte` (like `cudaMemsetAsync`).
    pub fn memset_bytes<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        byte: u8,
    ) -> Result<()> {
        self.fill(dst, byte as u64, 1)
    }

    fn fill<T: bytemuck::Pod>(
        &self,
        dst: &mut impl AsDeviceSliceMut<T>,
        pattern: u64,
        pattern_size: u32,
    ) -> Result<()> {
        let d = dst.as_device_slice_mut();
        self.check_device("dst", d.device())?;
        if d.is_empty() {
            return Ok(());
        }
        let mut cmd = abi::KnpuCommand::sized();
        cmd.type_ = abi::KNPU_COMMAND_FILL;
        cmd.u.fill = abi::KnpuFillCommand {
            dst: d.addr(),
            size: (d.len() * std::mem::size_of::<T>()) as u64,
            pattern,
            pattern_size,
        };
        // SAFETY: no host memory.
        let v = unsafe { self.submit(&[cmd], Submit::default()) }?;
        d.note_use(self, v);
        Ok(())
    }

    /// A raw range outside every live allocation is an illegal address, found before any
    /// work is queued (the driver only knows the allocator's whole segments).
    fn check_raw_range(&self, addr: u64, len: u64) -> Result<()> {
        match self.inner.device.resolve_range(addr, len) {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::IllegalAddress {
                message: match e {
                    Error::InvalidValue { detail } => detail,
                    other => other.to_string(),
                },
            }),
        }
    }

    /// Copies `dst.len()` bytes from a raw device address and waits. The range must lie in
    /// one live allocation of this stream's device ([`Device::resolve_range`]); anything
    /// else is an `IllegalAddress` error naming the address before any work is queued,
    /// never a crash or a read of a neighbouring buffer.
    pub fn memcpy_dtoh_raw(&self, dst: &mut [u8], src: u64) -> Result<()> {
        self.check_not_capturing("a blocking copy")?;
        check_not_in_callback("a blocking copy")?;
        if dst.is_empty() {
            return Ok(());
        }
        self.check_raw_range(src, dst.len() as u64)?;
        let ends = Ends::DeviceToHost(src, dst.as_mut_ptr());
        // SAFETY: we wait before returning, so `dst` outlives the copy.
        let v = unsafe { self.submit_copy(ends, dst.len() as u64, None) }?;
        self.wait_own(v)
    }

    /// Copies `src` to a raw device address and waits; see [`Stream::memcpy_dtoh_raw`].
    pub fn memcpy_htod_raw(&self, dst: u64, src: &[u8]) -> Result<()> {
        self.check_not_capturing("a blocking copy")?;
        check_not_in_callback("a blocking copy")?;
        if src.is_empty() {
            return Ok(());
        }
        self.check_raw_range(dst, src.len() as u64)?;
        let ends = Ends::HostToDevice(src.as_ptr(), dst);
        // SAFETY: we wait before returning, so `src` outlives the copy.
        let v = unsafe { self.submit_copy(ends, src.len() as u64, None) }?;
        self.wait_own(v)
    }

    /// Queues a kernel launch. `P` is the kernel's parameter struct of the driver ABI; the
    /// driver copies it during the call.
    pub(crate) fn launch_kernel<P>(&self, kernel_id: u32, params: &P) -> Result<u64> {
        let mut cmd = abi::KnpuCommand::sized();
        cmd.type_ = abi::KNPU_COMMAND_KERNEL;
        cmd.u.kernel = abi::KnpuKernelCommand {
            kernel_id,
            params: params as *const P as *const std::os::raw::c_void,
            params_size: std::mem::size_of::<P>(),
        };
        // SAFETY: the parameter struct is copied by the driver during the call and names
        // device memory only.
        unsafe { self.submit(&[cmd], Submit::default()) }
    }

    /// Queues a timestamp write into `slot`, which the stream keeps alive.
    pub(crate) fn timestamp(&self, slot: Arc<AtomicU64>) -> Result<u64> {
        let mut cmd = abi::KnpuCommand::sized();
        cmd.type_ = abi::KNPU_COMMAND_TIMESTAMP;
        cmd.u.timestamp = abi::KnpuTimestampCommand {
            host_dst: slot.as_ptr(),
        };
        // SAFETY: `slot` is kept alive by the stream until the command has run.
        unsafe {
            self.submit(
                &[cmd],
                Submit {
                    keep: Some(Box::new(slot)),
                    ..Default::default()
                },
            )
        }
    }
}

/// Takes the stream out of a capture whose origin stream was destroyed (such a capture can
/// never end) and reports the invalidation, once.
fn leave_dead_capture(st: &mut StreamState) -> Result<()> {
    if !st.capture.as_ref().is_some_and(|l| l.cap.is_abandoned()) {
        return Ok(());
    }
    let link = st.capture.take().expect("checked");
    let reason = link
        .cap
        .invalid
        .lock()
        .clone()
        .unwrap_or_else(|| "the capture was abandoned".into());
    Err(Error::Capture {
        detail: format!(
            "the stream capture this stream joined was invalidated ({reason}); the stream has \
             left it and works normally again"
        ),
    })
}
