//! Instantiated graphs: validated, ordered, mapped onto queues and pre-encoded.
//!
//! Instantiation flattens child graphs, sorts the nodes (a cycle is an error), and gives
//! each node a queue: a node continues the queue of a dependency it directly follows, and a
//! node that cannot opens a new queue (up to [`MAX_QUEUES`]), so independent branches run on
//! separate device queues. Each queue's nodes are cut into segments where a dependency
//! crosses queues; a segment becomes one pre-encoded submission that waits on the
//! segments it depends on and signals the queue's semaphore for those that depend on it.
//!
//! Queue 0 is the launching stream's own queue, so a graph without branches is one
//! submission on the stream, in order with the stream's other work. Other queues belong to
//! the instance; their first segments wait for the stream's earlier work, and the stream
//! waits for their last ones. Launches of one instance never overlap: each launch waits for
//! the previous one.

use super::{Graph, GraphMemory, Node, NodeId, NodeKind};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::event::EventInner;
use crate::semaphore::Semaphore;
use crate::stream::{Stream, Submit};
use knpu_driver_abi::{self as abi, SizedStruct};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Most device queues one instance uses for its branches (the stream's own included).
pub const MAX_QUEUES: usize = 4;

/// What a whole-graph update found (CUDA's `cudaGraphExecUpdateResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphUpdateResult {
    /// The instance now runs the new graph's parameters.
    Success,
    /// Nodes or edges were added or removed.
    TopologyChanged,
    /// A node's type differs.
    NodeTypeChanged,
    /// A kernel node runs another kernel.
    FunctionChanged,
    /// A node's parameters changed in a way an update cannot apply (e.g. a copy's direction,
    /// or an allocation node's size).
    ParametersChanged,
    /// Another device, or something else an update does not handle.
    NotSupported,
}

/// Flattened nodes: child graphs inlined.
fn flatten(graph: &Graph) -> Result<(Device, Vec<Node>)> {
    fn inline(nodes: &[Node], out: &mut Vec<Node>, depth: usize) -> Result<Vec<NodeId>> {
        if depth > 64 {
            return Err(Error::invalid("child graphs nest more than 64 deep"));
        }
        let mut map = Vec::with_capacity(nodes.len());
        for n in nodes {
            let deps: Vec<NodeId> = n.deps.iter().map(|d| map[d.0]).collect();
            match &n.kind {
                NodeKind::Child(child) => {
                    let child_nodes = child.data.lock().nodes.clone();
                    // The child's roots wait for this node's dependencies.
                    let entry = NodeId(out.len());
                    out.push(Node {
                        kind: NodeKind::Empty,
                        deps,
                    });
                    let local = inline(&child_nodes, out, depth + 1)?;
                    for id in &local {
                        let node = &mut out[id.0];
                        if node.deps.is_empty() {
                            node.deps.push(entry);
                        }
                    }
                    // The child node itself is the join of the child's nodes.
                    let exit = NodeId(out.len());
                    out.push(Node {
                        kind: NodeKind::Empty,
                        deps: local,
                    });
                    map.push(exit);
                }
                other => {
                    out.push(Node {
                        kind: other.clone(),
                        deps,
                    });
                    map.push(NodeId(out.len() - 1));
                }
            }
        }
        Ok(map)
    }
    let data = graph.data.lock();
    for (i, n) in data.nodes.iter().enumerate() {
        if let Some(d) = n.deps.iter().find(|d| d.0 >= data.nodes.len()) {
            return Err(Error::invalid(format!(
                "node {i} depends on node {} which does not exist",
                d.0
            )));
        }
    }
    // Children are inlined in creation order; edges added later with add_dependency may
    // point forward, so map through a topological order first.
    let order = topo_order(&data.nodes)?;
    let mut reordered: Vec<Node> = Vec::with_capacity(data.nodes.len());
    let mut pos = vec![0usize; data.nodes.len()];
    for (new, old) in order.iter().enumerate() {
        pos[*old] = new;
    }
    for old in &order {
        let n = &data.nodes[*old];
        reordered.push(Node {
            kind: n.kind.clone(),
            deps: n.deps.iter().map(|d| NodeId(pos[d.0])).collect(),
        });
    }
    let mut out = Vec::new();
    inline(&reordered, &mut out, 0)?;
    Ok((data.device.clone(), out))
}

/// Kahn's algorithm; a cycle is an error naming a node on it.
fn topo_order(nodes: &[Node]) -> Result<Vec<usize>> {
    let n = nodes.len();
    let mut indeg = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate() {
        for d in &node.deps {
            indeg[i] += 1;
            users[d.0].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() != n {
        let stuck = (0..n).find(|&i| indeg[i] > 0).expect("a node left");
        return Err(Error::invalid(format!(
            "the graph has a cycle through node {stuck}"
        )));
    }
    Ok(order)
}

enum WaitOn {
    /// Another queue's segment, by queue and signal index within a launch.
    Segment(usize, u64),
    /// An event's latest record at launch time.
    Event(Arc<EventInner>),
}

struct Segment {
    queue: usize,
    waits: Vec<WaitOn>,
    cmds: Vec<abi::KnpuCommand>,
    /// Parameter buffers the kernel commands point into.
    params: Vec<Option<Arc<[u64]>>>,
    /// Signal index within a launch (1-based) when others depend on this segment.
    signal: Option<u64>,
    /// Events recorded at the end of this segment, with their timestamp slots.
    records: Vec<(Arc<EventInner>, Option<Arc<AtomicU64>>)>,
    /// The commands stored in the driver, when it has command lists: a launch then names
    /// the list instead of passing every command.
    list: Option<abi::KnpuCommandList>,
}

struct Plan {
    segments: Vec<Segment>,
    /// Node index -> (segment, command index) for nodes that encode to a command.
    node_cmd: Vec<Option<(usize, usize)>>,
    kinds: Vec<NodeKind>,
    deps: Vec<Vec<NodeId>>,
}

/// A host node's function, boxed so its address stays put while launches point to it.
/// (A `Box<Arc<dyn Fn>>` because the driver's `user_data` is a thin pointer.)
#[allow(clippy::vec_box)]
type HostFnBox = Box<Arc<dyn Fn() + Send + Sync>>;

/// An event recorded by a launch: the event, where, and its timestamp slot.
type EventRecordAt = (Arc<EventInner>, Arc<Semaphore>, u64, Option<Arc<AtomicU64>>);

struct Launches {
    count: u64,
    last_done: Option<(Arc<Semaphore>, u64)>,
    /// One semaphore per queue; a segment that others depend on signals its queue's.
    /// Replaced after a failed launch (a failed semaphore stays failed).
    sems: Vec<Arc<Semaphore>>,
    /// The launch count when `sems` were made, and the value they start from.
    epoch: u64,
    start: u64,
    /// Set while a launch is being submitted: a launch cut short leaves the semaphores'
    /// values out of step, so the next launch starts afresh.
    torn: bool,
}

fn failed(sem: &Semaphore) -> bool {
    !matches!(sem.value(), Ok(v) if v != abi::SEMAPHORE_FAILED)
}

struct ExecInner {
    device: Device,
    /// Queues 1.. (queue 0 is the launching stream's).
    queues: Vec<abi::KnpuQueue>,
    signals_per_launch: Vec<u64>,
    plan: Mutex<Plan>,
    launches: Mutex<Launches>,
    host_fns: Mutex<Vec<HostFnBox>>,
    _keep: Arc<Mutex<Vec<Box<dyn std::any::Any + Send>>>>,
    _memory: Arc<GraphMemory>,
    mem_instances: Option<Arc<AtomicUsize>>,
}

// SAFETY: queue handles may be used from any thread (driver ABI); raw commands hold device
// addresses and host pointers the recorder keeps valid; the rest is behind mutexes.
unsafe impl Send for ExecInner {}
// SAFETY: as above.
unsafe impl Sync for ExecInner {}

impl Drop for ExecInner {
    fn drop(&mut self) {
        // The last reference goes only after every launch's work is done (the stream keeps
        // the instance alive until then), so destroying the queues does not wait long.
        for q in self.queues.drain(..) {
            let _ = self.device.inner.driver.queue_destroy(q);
        }
        for seg in &self.plan.get_mut().segments {
            if let Some(l) = seg.list {
                let _ = self.device.inner.driver.command_list_destroy(l);
            }
        }
        if let Some(m) = &self.mem_instances {
            m.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An instantiated graph, ready to launch.
pub struct GraphExec {
    inner: Arc<ExecInner>,
}

impl std::fmt::Debug for GraphExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphExec")
            .field("device", &self.inner.device.ordinal())
            .field("queues", &(self.inner.queues.len() + 1))
            .field("segments", &self.inner.plan.lock().segments.len())
            .finish()
    }
}

unsafe extern "C" fn graph_host_fn(user: *mut std::os::raw::c_void, status: abi::KnpuStatus) {
    if status != abi::KNPU_STATUS_SUCCESS {
        return;
    }
    // SAFETY: `user` points to an `Arc<dyn Fn>` boxed inside the instance, which the stream
    // keeps alive until the launch is done; it is only read here.
    let f = unsafe { &*(user as *const Arc<dyn Fn() + Send + Sync>) };
    crate::stream::run_host_callback(|| f());
}

fn encode_command(
    kind: &NodeKind,
    host_fns: &mut Vec<HostFnBox>,
) -> Option<(abi::KnpuCommand, Option<Arc<[u64]>>)> {
    match kind {
        NodeKind::Command {
            cmd,
            params,
            params_len,
        } => {
            let mut c = *cmd;
            if let Some(p) = params {
                c.u.kernel = abi::KnpuKernelCommand {
                    // SAFETY: reading the `kernel` member of a kernel command.
                    kernel_id: unsafe { cmd.u.kernel.kernel_id },
                    params: p.as_ptr() as *const std::os::raw::c_void,
                    params_size: *params_len,
                };
            }
            Some((c, params.clone()))
        }
        NodeKind::HostFn(f) => {
            let boxed: Box<Arc<dyn Fn() + Send + Sync>> = Box::new(f.clone());
            let mut c = abi::KnpuCommand::sized();
            c.type_ = abi::KNPU_COMMAND_HOST_FUNCTION;
            c.u.host_function = abi::KnpuHostFunctionCommand {
                fn_: Some(graph_host_fn),
                user_data: &*boxed as *const Arc<dyn Fn() + Send + Sync>
                    as *mut std::os::raw::c_void,
            };
            host_fns.push(boxed);
            Some((c, None))
        }
        _ => None,
    }
}

impl GraphExec {
    pub(crate) fn new(graph: &Graph) -> Result<GraphExec> {
        let (device, nodes) = flatten(graph)?;
        device.check_lost()?;
        let (keep, memory, mem_instances) = {
            let d = graph.data.lock();
            (d.keep.clone(), d.memory.clone(), d.mem_instances.clone())
        };
        let has_mem = nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::MemAlloc { .. }));
        if has_mem && mem_instances.fetch_add(1, Ordering::AcqRel) > 0 {
            mem_instances.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::NotSupported {
                detail: "a graph with allocation nodes can have only one live instance at a time"
                    .into(),
            });
        }
        let mem_guard = has_mem.then(|| mem_instances.clone());
        let order = topo_order(&nodes)?;

        // Queue assignment.
        let mut queue_of = vec![usize::MAX; nodes.len()];
        let mut tail: Vec<Option<usize>> = Vec::new();
        for &i in &order {
            let deps = &nodes[i].deps;
            let follow = deps
                .iter()
                .map(|d| d.0)
                .find(|&d| tail[queue_of[d]] == Some(d));
            let q = match follow {
                Some(d) => queue_of[d],
                None if tail.len() < MAX_QUEUES => {
                    tail.push(None);
                    tail.len() - 1
                }
                // Out of queues: share the first dependency's queue (or the least used).
                None => deps
                    .first()
                    .map(|d| queue_of[d.0])
                    .unwrap_or(i % MAX_QUEUES),
            };
            queue_of[i] = q;
            tail[q] = Some(i);
        }
        let nq = tail.len().max(1);

        // Which nodes are waited on by another queue.
        let mut cross_dependents = vec![false; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for d in &n.deps {
                if queue_of[d.0] != queue_of[i] {
                    cross_dependents[d.0] = true;
                }
            }
        }
        let last_of_queue: Vec<Option<usize>> = tail.clone();

        // Segments, walking nodes in topological order per queue.
        let mut segments: Vec<Segment> = Vec::new();
        let mut open: Vec<Option<usize>> = vec![None; nq];
        let mut signals = vec![0u64; nq];
        let mut seg_of = vec![usize::MAX; nodes.len()];
        let mut node_cmd = vec![None; nodes.len()];
        let mut host_fns = Vec::new();
        for &i in &order {
            let q = queue_of[i];
            let node = &nodes[i];
            let crosses: Vec<usize> = node
                .deps
                .iter()
                .map(|d| d.0)
                .filter(|&d| queue_of[d] != q)
                .collect();
            let needs_new = open[q].is_none()
                || !crosses.is_empty()
                || matches!(node.kind, NodeKind::EventWait(_));
            if needs_new {
                segments.push(Segment {
                    queue: q,
                    waits: Vec::new(),
                    cmds: Vec::new(),
                    params: Vec::new(),
                    signal: None,
                    records: Vec::new(),
                    list: None,
                });
                open[q] = Some(segments.len() - 1);
            }
            let s = open[q].expect("open segment");
            for d in crosses {
                let ds = seg_of[d];
                let idx = segments[ds]
                    .signal
                    .expect("a segment with cross-queue dependents signals");
                segments[s].waits.push(WaitOn::Segment(queue_of[d], idx));
            }
            if let NodeKind::EventWait(e) = &node.kind {
                segments[s].waits.push(WaitOn::Event(e.clone()));
            }
            if let Some((cmd, params)) = encode_command(&node.kind, &mut host_fns) {
                node_cmd[i] = Some((s, segments[s].cmds.len()));
                segments[s].cmds.push(cmd);
                segments[s].params.push(params);
            }
            if let NodeKind::EventRecord(e) = &node.kind {
                let slot = e.timing.then(|| Arc::new(AtomicU64::new(0)));
                if let Some(slot) = &slot {
                    let mut c = abi::KnpuCommand::sized();
                    c.type_ = abi::KNPU_COMMAND_TIMESTAMP;
                    c.u.timestamp = abi::KnpuTimestampCommand {
                        host_dst: slot.as_ptr(),
                    };
                    segments[s].cmds.push(c);
                    segments[s].params.push(None);
                }
                segments[s].records.push((e.clone(), slot));
            }
            seg_of[i] = s;
            let ends = cross_dependents[i]
                || matches!(node.kind, NodeKind::EventRecord(_))
                || (q != 0 && last_of_queue[q] == Some(i));
            if ends {
                signals[q] += 1;
                segments[s].signal = Some(signals[q]);
                open[q] = None;
            }
        }

        let d = &device.inner;
        for seg in &mut segments {
            if !seg.cmds.is_empty() {
                seg.list = d
                    .driver
                    .command_list_create(d.raw, &seg.cmds)
                    .map_err(|e| device.note(e))?;
            }
        }
        let mut queues = Vec::new();
        for _ in 1..nq {
            queues.push(
                d.driver
                    .queue_create(d.raw, abi::KNPU_QUEUE_PRIORITY_NORMAL)
                    .map_err(|e| device.note(e))?,
            );
        }
        let mut sems = Vec::new();
        for _ in 0..nq {
            sems.push(Semaphore::new(&d.driver, d.raw, 0).map_err(|e| device.note(e))?);
        }
        Ok(GraphExec {
            inner: Arc::new(ExecInner {
                device,
                queues,
                signals_per_launch: signals,
                plan: Mutex::new(Plan {
                    segments,
                    node_cmd,
                    kinds: nodes.iter().map(|n| n.kind.clone()).collect(),
                    deps: nodes.iter().map(|n| n.deps.clone()).collect(),
                }),
                launches: Mutex::new(Launches {
                    count: 0,
                    last_done: None,
                    sems,
                    epoch: 0,
                    start: 0,
                    torn: false,
                }),
                host_fns: Mutex::new(host_fns),
                _keep: keep,
                _memory: memory,
                mem_instances: mem_guard,
            }),
        })
    }

    /// How many device queues a launch uses (the stream's own included).
    pub fn queue_count(&self) -> usize {
        self.inner.queues.len() + 1
    }

    /// How many submissions a launch makes.
    pub fn submission_count(&self) -> usize {
        let segs = self.inner.plan.lock().segments.len();
        segs + usize::from(!self.inner.queues.is_empty())
    }

    /// Launches the graph on `stream`: it runs after the stream's earlier work and before
    /// its later work, and after the previous launch of this instance.
    pub fn launch(&self, stream: &Stream) -> Result<()> {
        let inner = &self.inner;
        if stream.device() != &inner.device {
            return Err(Error::DeviceMismatch {
                operand: "stream",
                expected: inner.device.ordinal(),
                actual: stream.device().ordinal(),
            });
        }
        stream.check_not_capturing("graph launch")?;
        stream.leave_dead_capture()?;
        let plan = inner.plan.lock();
        let mut launches = inner.launches.lock();
        // After a fault (or a launch cut short) the instance's semaphores, or the previous
        // launch's completion, may have failed, and a failed semaphore stays failed: waiting
        // on it would fail every later launch. The fault was reported by the stream of the
        // launch it happened in; start this launch from fresh semaphores.
        let previous_failed = launches.last_done.as_ref().is_some_and(|(s, _)| failed(s));
        let mut drains: Vec<(Arc<Semaphore>, u64)> = Vec::new();
        if launches.torn || previous_failed || launches.sems.iter().any(|s| failed(s)) {
            drains = self.renew(&mut launches)?;
        }
        let n = launches.count - launches.epoch;
        let base: Vec<u64> = inner
            .signals_per_launch
            .iter()
            .map(|s| launches.start + n * s)
            .collect();
        let sems = launches.sems.clone();
        let (stream_sem, start) = stream.position();
        let previous = launches
            .last_done
            .as_ref()
            .filter(|(sem, _)| !Arc::ptr_eq(sem, &stream_sem) && !failed(sem))
            .map(|(s, v)| (s.clone(), *v));
        launches.torn = true;
        let mut entered = vec![false; sems.len()];
        let mut finals: Vec<Option<u64>> = vec![None; sems.len()];
        let mut recorded: Vec<EventRecordAt> = Vec::new();
        for seg in &plan.segments {
            let q = seg.queue;
            let mut waits: Vec<(Arc<Semaphore>, u64)> = Vec::new();
            if !entered[q] {
                entered[q] = true;
                if q != 0 && start > 0 {
                    waits.push((stream_sem.clone(), start));
                }
                if let Some(p) = &previous {
                    waits.push(p.clone());
                }
                waits.extend(drains.iter().cloned());
            }
            for w in &seg.waits {
                match w {
                    WaitOn::Segment(oq, idx) => waits.push((sems[*oq].clone(), base[*oq] + idx)),
                    WaitOn::Event(e) => {
                        if let Some((sem, v)) = e.position() {
                            waits.push((sem, v));
                        }
                    }
                }
            }
            let signal = seg.signal.map(|idx| (sems[q].clone(), base[q] + idx));
            if q == 0 {
                let signals: Vec<(Arc<Semaphore>, u64)> = signal.iter().cloned().collect();
                let (cmds, list) = match seg.list {
                    Some(l) => (&[][..], Some(l)),
                    None => (&seg.cmds[..], None),
                };
                // SAFETY: host pointers in the plan are the recorder's obligation (valid for
                // every launch); parameter buffers live in the plan, which the driver copies.
                unsafe {
                    stream.submit(
                        cmds,
                        Submit {
                            waits: &waits,
                            signals: &signals,
                            keep: None,
                            list,
                        },
                    )
                }?;
            } else {
                let queue = inner.queues[q - 1];
                let wait_raw: Vec<abi::KnpuSemaphore> = waits.iter().map(|(s, _)| s.raw).collect();
                let wait_vals: Vec<u64> = waits.iter().map(|(_, v)| *v).collect();
                let sig_raw: Vec<abi::KnpuSemaphore> = signal.iter().map(|(s, _)| s.raw).collect();
                let sig_vals: Vec<u64> = signal.iter().map(|(_, v)| *v).collect();
                let mut info = abi::KnpuSubmitInfo::sized();
                info.wait_count = wait_raw.len() as u32;
                info.wait_semaphores = wait_raw.as_ptr();
                info.wait_values = wait_vals.as_ptr();
                match seg.list {
                    Some(l) => info.command_list = l,
                    None => {
                        info.command_count = seg.cmds.len() as u32;
                        info.commands = seg.cmds.as_ptr();
                    }
                }
                info.signal_count = sig_raw.len() as u32;
                info.signal_semaphores = sig_raw.as_ptr();
                info.signal_values = sig_vals.as_ptr();
                // SAFETY: as above; every semaphore named is held by the instance or by
                // `waits`, and the instance outlives the launch (kept by the stream).
                unsafe { inner.device.inner.driver.queue_submit(queue, &info) }
                    .map_err(|e| inner.device.note(e))?;
            }
            if let Some((sem, v)) = &signal {
                finals[q] = Some(*v);
                for (e, slot) in &seg.records {
                    recorded.push((e.clone(), sem.clone(), *v, slot.clone()));
                }
            }
        }
        let joins: Vec<(Arc<Semaphore>, u64)> = finals
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(q, v)| v.map(|v| (sems[q].clone(), v)))
            .collect();
        let keep: Box<dyn std::any::Any + Send> = Box::new(self.inner.clone());
        // SAFETY: no commands; the instance is kept alive until the join completes.
        let done = unsafe {
            stream.submit(
                &[],
                Submit {
                    waits: &joins,
                    keep: Some(keep),
                    ..Default::default()
                },
            )
        }?;
        launches.count += 1;
        launches.torn = false;
        launches.last_done = Some((stream.position().0, done));
        for (e, sem, v, slot) in recorded {
            e.set_position(sem, v, slot);
        }
        Ok(())
    }

    /// Gives the instance fresh semaphores after a failed or torn launch. Each branch queue
    /// gets an empty submission that signals its new semaphore once the queue's earlier
    /// work (the failed launch's) is over; the returned waits make the next launch's first
    /// segments wait for all of them, so it never overlaps what is left of the failed one.
    fn renew(&self, launches: &mut Launches) -> Result<Vec<(Arc<Semaphore>, u64)>> {
        let inner = &self.inner;
        let d = &inner.device.inner;
        // Queue 0 is the launching stream's, in order with the launch: its semaphore just
        // starts at 1. The others reach 1 when their queue's drain runs.
        let fresh: Vec<Arc<Semaphore>> = (0..launches.sems.len())
            .map(|q| {
                Semaphore::new(&d.driver, d.raw, u64::from(q == 0))
                    .map_err(|e| inner.device.note(e))
            })
            .collect::<Result<_>>()?;
        let mut drains = Vec::new();
        for (q, sem) in fresh.iter().enumerate().skip(1) {
            // SAFETY: the semaphore is held by the instance.
            unsafe { d.driver.queue_signal(inner.queues[q - 1], sem.raw, 1) }
                .map_err(|e| inner.device.note(e))?;
            drains.push((sem.clone(), 1));
        }
        launches.sems = fresh;
        launches.epoch = launches.count;
        launches.start = 1;
        launches.last_done = None;
        launches.torn = false;
        Ok(drains)
    }

    /// Replaces the parameters of kernel node `node` with those of the single kernel that
    /// `record` queues (same kernel id). Takes effect from the next launch.
    pub fn set_kernel_params(
        &self,
        node: NodeId,
        record: impl FnOnce(&Stream) -> Result<()>,
    ) -> Result<()> {
        let scratch = Graph::new(&self.inner.device);
        scratch.add_node(&[], record)?;
        let kind = scratch.data.lock().nodes[0].kind.clone();
        let mut plan = self.inner.plan.lock();
        let current = plan
            .kinds
            .get(node.0)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("node {} does not exist", node.0)))?;
        let (
            NodeKind::Command { cmd: old, .. },
            NodeKind::Command {
                cmd: new,
                params: Some(p),
                params_len,
            },
        ) = (&current, &kind)
        else {
            return Err(Error::invalid(format!(
                "node {} is not a kernel node, or the work is not a kernel",
                node.0
            )));
        };
        if old.type_ != abi::KNPU_COMMAND_KERNEL || new.type_ != abi::KNPU_COMMAND_KERNEL {
            return Err(Error::invalid(format!(
                "node {} is not a kernel node",
                node.0
            )));
        }
        // SAFETY: both are kernel commands.
        let (old_id, new_id) = unsafe { (old.u.kernel.kernel_id, new.u.kernel.kernel_id) };
        if old_id != new_id {
            return Err(Error::invalid(format!(
                "node {} runs kernel {old_id}, not {new_id}",
                node.0
            )));
        }
        let (s, c) = plan.node_cmd[node.0].expect("kernel nodes encode to a command");
        plan.segments[s].cmds[c].u.kernel.params = p.as_ptr() as *const std::os::raw::c_void;
        plan.segments[s].cmds[c].u.kernel.params_size = *params_len;
        plan.segments[s].params[c] = Some(p.clone());
        if let Some(l) = plan.segments[s].list {
            self.inner
                .device
                .inner
                .driver
                .command_list_update(l, c, &plan.segments[s].cmds[c])?;
        }
        plan.kinds[node.0] = kind;
        Ok(())
    }

    /// Updates the instance to `graph`'s parameters when the two have the same topology and
    /// node types; otherwise leaves it unchanged and says why with [`Error::GraphUpdate`].
    pub fn update(&self, graph: &Graph) -> Result<()> {
        let fail = |result: GraphUpdateResult, node: Option<usize>, detail: String| {
            Err(Error::GraphUpdate {
                result,
                node,
                detail,
            })
        };
        let (device, nodes) = flatten(graph)?;
        if device != self.inner.device {
            return fail(
                GraphUpdateResult::NotSupported,
                None,
                "the graph is for another device".into(),
            );
        }
        let mut plan = self.inner.plan.lock();
        if nodes.len() != plan.kinds.len() {
            return fail(
                GraphUpdateResult::TopologyChanged,
                None,
                format!("{} nodes instead of {}", nodes.len(), plan.kinds.len()),
            );
        }
        for (i, n) in nodes.iter().enumerate() {
            let mut a = n.deps.clone();
            let mut b = plan.deps[i].clone();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                return fail(
                    GraphUpdateResult::TopologyChanged,
                    Some(i),
                    format!("node {i}'s dependencies changed"),
                );
            }
            let old = &plan.kinds[i];
            if std::mem::discriminant(old) != std::mem::discriminant(&n.kind)
                || old.type_name() != n.kind.type_name()
            {
                return fail(
                    GraphUpdateResult::NodeTypeChanged,
                    Some(i),
                    format!(
                        "node {i} was a {} node, now a {} node",
                        old.type_name(),
                        n.kind.type_name()
                    ),
                );
            }
            match (old, &n.kind) {
                (NodeKind::Command { cmd: o, .. }, NodeKind::Command { cmd: c, .. }) => {
                    if o.type_ == abi::KNPU_COMMAND_KERNEL {
                        // SAFETY: both are kernel commands (same type checked above).
                        let (a, b) = unsafe { (o.u.kernel.kernel_id, c.u.kernel.kernel_id) };
                        if a != b {
                            return fail(
                                GraphUpdateResult::FunctionChanged,
                                Some(i),
                                format!("node {i} runs kernel {b} instead of {a}"),
                            );
                        }
                    } else if o.type_ != c.type_ {
                        return fail(
                            GraphUpdateResult::ParametersChanged,
                            Some(i),
                            format!("node {i}'s copy direction changed"),
                        );
                    }
                }
                (
                    NodeKind::MemAlloc { addr: a, bytes: x },
                    NodeKind::MemAlloc { addr: b, bytes: y },
                ) if (a, x) != (b, y) => {
                    return fail(
                        GraphUpdateResult::ParametersChanged,
                        Some(i),
                        format!(
                            "allocation node {i} differs ({y} bytes at {b:#x}, was {x} at {a:#x})"
                        ),
                    );
                }
                (NodeKind::MemFree { addr: a }, NodeKind::MemFree { addr: b }) if a != b => {
                    return fail(
                        GraphUpdateResult::ParametersChanged,
                        Some(i),
                        format!("free node {i} frees another block"),
                    );
                }
                (NodeKind::EventRecord(a), NodeKind::EventRecord(b))
                | (NodeKind::EventWait(a), NodeKind::EventWait(b))
                    if !Arc::ptr_eq(a, b) =>
                {
                    return fail(
                        GraphUpdateResult::ParametersChanged,
                        Some(i),
                        format!("node {i} names another event"),
                    );
                }
                _ => {}
            }
        }
        // Everything checks out: apply.
        let mut host_fns = self.inner.host_fns.lock();
        for (i, n) in nodes.iter().enumerate() {
            if let Some((s, c)) = plan.node_cmd[i] {
                if let Some((cmd, params)) = encode_command(&n.kind, &mut host_fns) {
                    plan.segments[s].cmds[c] = cmd;
                    plan.segments[s].params[c] = params;
                    if let Some(l) = plan.segments[s].list {
                        let cmd = plan.segments[s].cmds[c];
                        self.inner
                            .device
                            .inner
                            .driver
                            .command_list_update(l, c, &cmd)?;
                    }
                }
            }
            plan.kinds[i] = n.kind.clone();
        }
        Ok(())
    }
}
