//! Stream capture: turning work queued on streams into graph nodes.
//!
//! While a stream captures, nothing it is given reaches the device; each command becomes a
//! node that depends on the stream's previous nodes. Recording an event on a capturing stream
//! marks a point of the capture; a stream that waits on such an event joins the capture
//! (fork), and the origin stream waiting on an event of a joined stream joins it back. A
//! capture ends on its origin stream, and fails if a joined stream was never joined back.
//!
//! Some calls cannot be captured. On the capturing stream itself — synchronize, query, a
//! blocking copy, a one-shot host callback, a wait on an event from outside the capture —
//! they fail and invalidate the capture, as in CUDA. Elsewhere, the capture mode decides:
//! with [`CaptureMode::Global`], potentially unsafe calls (device synchronize, blocking copies,
//! non-stream-ordered allocation, releasing the cache) fail on any thread; with
//! [`CaptureMode::ThreadLocal`] only on the capturing thread; with [`CaptureMode::Relaxed`]
//! never. The streams involved stay usable after any of these errors.

use super::{Graph, NodeId, NodeKind};
use crate::error::{Error, Result};
use crate::stream::StreamInner;
use knpu_driver_abi as abi;
use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::ThreadId;

/// Which other calls a capture forbids while it runs (CUDA's `cudaStreamCaptureMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureMode {
    /// Potentially unsafe calls fail on every thread.
    Global,
    /// Potentially unsafe calls fail on the thread that began the capture.
    ThreadLocal,
    /// No call is forbidden beyond those on the capturing streams themselves.
    Relaxed,
}

pub(crate) struct Capture {
    pub(crate) graph: Graph,
    pub(crate) mode: CaptureMode,
    pub(crate) origin: u64,
    thread: ThreadId,
    /// Whether this capture builds a graph explicitly (no checks, not registered).
    recorder: bool,
    pub(crate) invalid: Mutex<Option<String>>,
    pub(crate) members: Mutex<Vec<Weak<StreamInner>>>,
    pub(crate) ended: std::sync::atomic::AtomicBool,
    /// Set when the origin stream was destroyed: the capture can never end, so the streams
    /// that joined it leave it at their next call.
    abandoned: std::sync::atomic::AtomicBool,
}

/// A stream's place in a capture: the capture and the nodes its next work depends on.
pub(crate) struct CaptureLink {
    pub(crate) cap: Arc<Capture>,
    pub(crate) tails: Vec<NodeId>,
    /// Nodes recorded through this link (to tell "queued nothing" from "queued work").
    pub(crate) recorded: usize,
}

static ACTIVE: Mutex<Vec<Weak<Capture>>> = Mutex::new(Vec::new());
static STRICT_GLOBAL: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static STRICT_HERE: Cell<usize> = const { Cell::new(0) };
}

impl Capture {
    pub(crate) fn begin(graph: Graph, mode: CaptureMode, origin: u64) -> Arc<Capture> {
        let _ = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let cap = Arc::new(Capture::new(graph, mode, origin, false));
        ACTIVE.lock().push(Arc::downgrade(&cap));
        match mode {
            CaptureMode::Global => {
                STRICT_GLOBAL.fetch_add(1, Ordering::SeqCst);
                STRICT_HERE.with(|c| c.set(c.get() + 1));
            }
            CaptureMode::ThreadLocal => STRICT_HERE.with(|c| c.set(c.get() + 1)),
            CaptureMode::Relaxed => {}
        }
        cap
    }

    /// A capture that only records into `graph` for the explicit builder.
    pub(crate) fn recorder(graph: Graph, origin: u64) -> Arc<Capture> {
        Arc::new(Capture::new(graph, CaptureMode::Relaxed, origin, true))
    }

    /// A capture on the calling thread, neither ended nor invalid, with no members yet.
    fn new(graph: Graph, mode: CaptureMode, origin: u64, recorder: bool) -> Capture {
        Capture {
            graph,
            mode,
            origin,
            thread: std::thread::current().id(),
            recorder,
            invalid: Mutex::new(None),
            members: Mutex::new(Vec::new()),
            ended: std::sync::atomic::AtomicBool::new(false),
            abandoned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks the capture ended and unregisters it; called once.
    pub(crate) fn end(&self) {
        if self.ended.swap(true, Ordering::AcqRel) || self.recorder {
            return;
        }
        ACTIVE
            .lock()
            .retain(|w| w.upgrade().is_some_and(|c| !std::ptr::eq(&*c, self)));
        match self.mode {
            CaptureMode::Global => {
                STRICT_GLOBAL.fetch_sub(1, Ordering::SeqCst);
                if self.thread == std::thread::current().id() {
                    STRICT_HERE.with(|c| c.set(c.get().saturating_sub(1)));
                }
            }
            CaptureMode::ThreadLocal => {
                if self.thread == std::thread::current().id() {
                    STRICT_HERE.with(|c| c.set(c.get().saturating_sub(1)));
                }
            }
            CaptureMode::Relaxed => {}
        }
    }

    pub(crate) fn invalidate(&self, reason: &str) {
        let mut inv = self.invalid.lock();
        if inv.is_none() {
            *inv = Some(reason.to_string());
        }
    }

    /// The origin stream is gone: invalidates the capture, ends it (so strict modes stop
    /// refusing calls) and lets the streams that joined it leave.
    pub(crate) fn abandon(&self, reason: &str) {
        self.invalidate(reason);
        self.abandoned.store(true, Ordering::Release);
        self.end();
    }

    /// Whether the origin stream was destroyed during the capture.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    pub(crate) fn check_valid(&self) -> Result<()> {
        match &*self.invalid.lock() {
            None => Ok(()),
            Some(r) => Err(Error::Capture {
                detail: format!("the stream capture was invalidated earlier: {r}"),
            }),
        }
    }
}

/// Fails, and invalidates the captures concerned, when `what` is a potentially unsafe call
/// while a capture of a strict mode forbids it on this thread.
pub(crate) fn check_unsafe_call(what: &str) -> Result<()> {
    if STRICT_GLOBAL.load(Ordering::Relaxed) == 0 && STRICT_HERE.with(|c| c.get()) == 0 {
        return Ok(());
    }
    let here = std::thread::current().id();
    let offending: Vec<Arc<Capture>> = ACTIVE
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|c| match c.mode {
            CaptureMode::Global => true,
            CaptureMode::ThreadLocal => c.thread == here,
            CaptureMode::Relaxed => false,
        })
        .collect();
    if offending.is_empty() {
        return Ok(());
    }
    let reason = format!(
        "{what} was called during a {:?}-mode stream capture",
        offending[0].mode
    );
    for c in &offending {
        c.invalidate(&reason);
    }
    Err(Error::Capture {
        detail: format!("{reason}; it is not permitted then, and the capture is invalidated"),
    })
}

/// The error for an operation that cannot be captured on a capturing stream; invalidates.
pub(crate) fn not_capturable(link: &CaptureLink, what: &str) -> Error {
    let reason = format!("{what} cannot be captured");
    link.cap.invalidate(&reason);
    Error::Capture {
        detail: format!("{reason}: the stream is capturing, and the capture is invalidated"),
    }
}

/// Records `commands` as nodes after the link's tails.
pub(crate) fn record(
    link: &mut CaptureLink,
    commands: &[abi::KnpuCommand],
    has_waits: bool,
    keep: Option<Box<dyn std::any::Any + Send>>,
) -> Result<()> {
    link.cap.check_valid()?;
    if has_waits {
        return Err(not_capturable(
            link,
            "work that waits on another stream's work outside the capture",
        ));
    }
    for cmd in commands {
        let kind = match cmd.type_ {
            abi::KNPU_COMMAND_KERNEL => {
                // SAFETY: the `kernel` member is the one a kernel command sets.
                let k = unsafe { cmd.u.kernel };
                let words = k.params_size.div_ceil(8);
                let mut buf = vec![0u64; words];
                // SAFETY: the launcher passed `params_size` readable bytes at `params`, and
                // `buf` has room for them.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        k.params as *const u8,
                        buf.as_mut_ptr() as *mut u8,
                        k.params_size,
                    )
                };
                NodeKind::Command {
                    cmd: *cmd,
                    params: Some(buf.into()),
                    params_len: k.params_size,
                }
            }
            abi::KNPU_COMMAND_HOST_FUNCTION | abi::KNPU_COMMAND_TIMESTAMP => {
                return Err(not_capturable(
                    link,
                    "a one-shot host callback (use launch_host_fn)",
                ));
            }
            _ => NodeKind::Command {
                cmd: *cmd,
                params: None,
                params_len: 0,
            },
        };
        push(link, kind)?;
    }
    if let Some(k) = keep {
        link.cap.graph.data.lock().keep.lock().push(k);
    }
    Ok(())
}

/// Adds one node after the link's tails and makes it the new tail.
pub(crate) fn push(link: &mut CaptureLink, kind: NodeKind) -> Result<NodeId> {
    let id = link.cap.graph.push(kind, &link.tails)?;
    link.tails.clear();
    link.tails.push(id);
    link.recorded += 1;
    Ok(id)
}

/// Every node `tails` depend on, directly or not, and the tails themselves.
pub(crate) fn ancestors(graph: &Graph, tails: &[NodeId]) -> Vec<bool> {
    let data = graph.data.lock();
    let mut seen = vec![false; data.nodes.len()];
    let mut stack: Vec<NodeId> = tails.to_vec();
    while let Some(n) = stack.pop() {
        if n.0 >= seen.len() || seen[n.0] {
            continue;
        }
        seen[n.0] = true;
        stack.extend(data.nodes[n.0].deps.iter().copied());
    }
    seen
}

/// During a capture on `stream`: allocates graph-owned memory for an allocation node and
/// returns the buffer over it; `None` when the stream is not capturing.
pub(crate) fn alloc_node<T: bytemuck::Pod>(
    stream: &crate::stream::Stream,
    bytes: u64,
    len: usize,
) -> Result<Option<crate::buffer::DeviceBuffer<T>>> {
    stream.leave_dead_capture()?;
    let mut st = stream.inner.state.lock();
    let Some(link) = st.capture.as_mut() else {
        return Ok(None);
    };
    link.cap.check_valid()?;
    let device = stream.device();
    // Stream id 0 belongs to no stream: the block is the graph's alone.
    let alloc = device
        .inner
        .allocator
        .alloc(bytes, 0)
        .map_err(|e| device.note(e))?;
    let graph = link.cap.graph.clone();
    graph.data.lock().memory.blocks.lock().push(alloc);
    push(
        link,
        NodeKind::MemAlloc {
            addr: alloc.addr,
            bytes,
        },
    )?;
    drop(st);
    Ok(Some(crate::buffer::DeviceBuffer::graph_owned(
        stream, alloc, len, graph,
    )))
}

/// A graph-owned buffer was dropped: while its stream still captures into that graph, this
/// is a stream-ordered free, recorded as a node; the memory stays with the graph.
pub(crate) fn free_node(stream: &crate::stream::Stream, graph: &Graph, addr: u64) {
    let mut st = stream.inner.state.lock();
    if let Some(link) = st.capture.as_mut() {
        if Arc::ptr_eq(&link.cap.graph.data, &graph.data) {
            let _ = push(link, NodeKind::MemFree { addr });
        }
    }
}
