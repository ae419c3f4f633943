//! Graphs: work recorded once and replayed with one submission per device queue.
//!
//! A [`Graph`] is a DAG of nodes — kernels, copies, fills, host functions, event record and
//! wait, empty nodes, child graphs, and stream-ordered allocations — built by stream capture
//! ([`Stream::begin_capture`](crate::Stream::begin_capture)) or explicitly with the
//! `add_*` methods. [`Graph::instantiate`] validates it, orders it, maps independent branches
//! onto separate device queues and pre-encodes every command, giving a [`GraphExec`] whose
//! launch submits the whole graph at once.
//!
//! Graphs never hold host memory they do not own: host pointers given to captured
//! asynchronous copies must stay valid for every launch, as with CUDA graphs.

pub(crate) mod capture;
mod exec;

pub use capture::CaptureMode;
pub(crate) use capture::{check_unsafe_call, Capture, CaptureLink};
pub use exec::{GraphExec, GraphUpdateResult};

use crate::allocator::Allocation;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::event::{Event, EventInner};
use crate::stream::Stream;
use knpu_driver_abi as abi;
use parking_lot::Mutex;
use std::any::Any;
use std::sync::Arc;

/// A node of a graph, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) usize);

impl NodeId {
    /// The node's index in its graph (creation order).
    pub fn index(self) -> usize {
        self.0
    }

    /// The node with this index (creation order).
    pub fn from_index(index: usize) -> NodeId {
        NodeId(index)
    }
}

/// What a node does.
#[derive(Clone)]
pub(crate) enum NodeKind {
    /// A copy, fill or kernel command; `params` holds a kernel's parameter struct.
    Command {
        cmd: abi::KnpuCommand,
        params: Option<Arc<[u64]>>,
        params_len: usize,
    },
    /// A host function, called on every launch.
    HostFn(Arc<dyn Fn() + Send + Sync>),
    /// Records an event at this point of every launch.
    EventRecord(Arc<EventInner>),
    /// Waits for an event's latest record at launch time.
    EventWait(Arc<EventInner>),
    /// Nothing: a join point.
    Empty,
    /// A stream-ordered allocation, served from the graph's private memory.
    MemAlloc { addr: u64, bytes: u64 },
    /// The matching free.
    MemFree { addr: u64 },
    /// A whole graph, run as one node.
    Child(Graph),
}

// SAFETY: the raw command holds device addresses and, for copies, host pointers whose
// validity for every launch is the recorder's documented obligation; nothing in it is
// thread-bound.
unsafe impl Send for NodeKind {}
// SAFETY: as above; nodes are never mutated through shared references.
unsafe impl Sync for NodeKind {}

impl NodeKind {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Command { cmd, .. } => match cmd.type_ {
                abi::KNPU_COMMAND_KERNEL => "kernel",
                abi::KNPU_COMMAND_FILL => "memset",
                abi::KNPU_COMMAND_TIMESTAMP => "timestamp",
                _ => "memcpy",
            },
            NodeKind::HostFn(_) => "host",
            NodeKind::EventRecord(_) => "event record",
            NodeKind::EventWait(_) => "event wait",
            NodeKind::Empty => "empty",
            NodeKind::MemAlloc { .. } => "mem alloc",
            NodeKind::MemFree { .. } => "mem free",
            NodeKind::Child(_) => "child graph",
        }
    }
}

#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) deps: Vec<NodeId>,
}

/// Memory a graph allocated for its allocation nodes, returned to the device's caching
/// allocator when the graph and every instance of it are gone.
pub(crate) struct GraphMemory {
    pub(crate) device: Device,
    pub(crate) blocks: Mutex<Vec<Allocation>>,
}

impl Drop for GraphMemory {
    fn drop(&mut self) {
        for a in self.blocks.get_mut().drain(..) {
            self.device.inner.allocator.free(a.addr, Vec::new());
        }
    }
}

pub(crate) struct GraphData {
    pub(crate) device: Device,
    pub(crate) nodes: Vec<Node>,
    /// Host data the nodes point into (owned copies' sources), shared by duplicates.
    pub(crate) keep: Arc<Mutex<Vec<Box<dyn Any + Send>>>>,
    pub(crate) memory: Arc<GraphMemory>,
    /// Live instances of a graph with allocation nodes (at most one, as in CUDA).
    pub(crate) mem_instances: Arc<std::sync::atomic::AtomicUsize>,
}

/// A graph of device work. Cloning copies the graph (nodes share nothing mutable).
#[derive(Clone)]
pub struct Graph {
    pub(crate) data: Arc<Mutex<GraphData>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.data.lock();
        f.debug_struct("Graph")
            .field("device", &d.device.ordinal())
            .field("nodes", &d.nodes.len())
            .finish()
    }
}

impl Graph {
    /// An empty graph for work on `device`.
    pub fn new(device: &Device) -> Graph {
        Graph {
            data: Arc::new(Mutex::new(GraphData {
                device: device.clone(),
                nodes: Vec::new(),
                keep: Arc::new(Mutex::new(Vec::new())),
                memory: Arc::new(GraphMemory {
                    device: device.clone(),
                    blocks: Mutex::new(Vec::new()),
                }),
                mem_instances: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            })),
        }
    }

    /// A deep copy: later changes to one do not affect the other.
    pub fn duplicate(&self) -> Graph {
        let d = self.data.lock();
        Graph {
            data: Arc::new(Mutex::new(GraphData {
                device: d.device.clone(),
                nodes: d.nodes.clone(),
                keep: d.keep.clone(),
                memory: d.memory.clone(),
                mem_instances: d.mem_instances.clone(),
            })),
        }
    }

    /// The device the graph's work runs on.
    pub fn device(&self) -> Device {
        self.data.lock().device.clone()
    }

    /// How many nodes the graph has.
    pub fn node_count(&self) -> usize {
        self.data.lock().nodes.len()
    }

    /// The dependencies of `node`.
    pub fn dependencies(&self, node: NodeId) -> Result<Vec<NodeId>> {
        let d = self.data.lock();
        d.nodes
            .get(node.0)
            .map(|n| n.deps.clone())
            .ok_or_else(|| bad_node(node, d.nodes.len()))
    }

    /// The kind of `node`, e.g. `"kernel"`, `"memcpy"`, `"host"`.
    pub fn node_type(&self, node: NodeId) -> Result<&'static str> {
        let d = self.data.lock();
        d.nodes
            .get(node.0)
            .map(|n| n.kind.type_name())
            .ok_or_else(|| bad_node(node, d.nodes.len()))
    }

    pub(crate) fn push(&self, kind: NodeKind, deps: &[NodeId]) -> Result<NodeId> {
        let mut d = self.data.lock();
        for dep in deps {
            if dep.0 >= d.nodes.len() {
                return Err(bad_node(*dep, d.nodes.len()));
            }
        }
        let mut deps = deps.to_vec();
        deps.sort_unstable();
        deps.dedup();
        d.nodes.push(Node { kind, deps });
        Ok(NodeId(d.nodes.len() - 1))
    }

    /// Adds an edge: `to` runs after `from`. Cycles are found at instantiation.
    pub fn add_dependency(&self, from: NodeId, to: NodeId) -> Result<()> {
        let mut d = self.data.lock();
        let n = d.nodes.len();
        if from.0 >= n {
            return Err(bad_node(from, n));
        }
        let node = d.nodes.get_mut(to.0).ok_or_else(|| bad_node(to, n))?;
        if !node.deps.contains(&from) {
            node.deps.push(from);
        }
        Ok(())
    }

    /// Adds the work `record` queues on a stream — any ops, copies, fills, allocations —
    /// as nodes that run after `deps`. Returns the nodes that end that work (empty if it
    /// queued nothing). This is how kernel nodes are made: `record` calls the typed launchers
    /// of [`crate::ops`], which validate their operands as they would eagerly.
    pub fn add_work(
        &self,
        deps: &[NodeId],
        record: impl FnOnce(&Stream) -> Result<()>,
    ) -> Result<Vec<NodeId>> {
        let device = self.device();
        let s = Stream::recorder(&device, self.clone(), deps)?;
        record(&s)?;
        s.finish_recording()
    }

    /// Adds one node of work; `record` must queue exactly one command.
    pub fn add_node(
        &self,
        deps: &[NodeId],
        record: impl FnOnce(&Stream) -> Result<()>,
    ) -> Result<NodeId> {
        let before = self.node_count();
        let ends = self.add_work(deps, record)?;
        let added = self.node_count() - before;
        match (added, ends.as_slice()) {
            (1, [n]) => Ok(*n),
            _ => Err(Error::invalid(format!(
                "add_node expects exactly one command to be queued, got {added} nodes"
            ))),
        }
    }

    /// Adds a host function node: `f` runs on a driver thread on every launch.
    pub fn add_host_fn(
        &self,
        deps: &[NodeId],
        f: impl Fn() + Send + Sync + 'static,
    ) -> Result<NodeId> {
        self.push(NodeKind::HostFn(Arc::new(f)), deps)
    }

    /// Adds an empty node: a join point.
    pub fn add_empty(&self, deps: &[NodeId]) -> Result<NodeId> {
        self.push(NodeKind::Empty, deps)
    }

    /// Adds a node that records `event` on every launch, after `deps`.
    pub fn add_event_record(&self, deps: &[NodeId], event: &Event) -> Result<NodeId> {
        self.check_event(event)?;
        self.push(NodeKind::EventRecord(event.inner.clone()), deps)
    }

    /// Adds a node that, on every launch, waits for `event`'s latest record.
    pub fn add_event_wait(&self, deps: &[NodeId], event: &Event) -> Result<NodeId> {
        self.check_event(event)?;
        self.push(NodeKind::EventWait(event.inner.clone()), deps)
    }

    /// Adds `child` as one node (a copy of it: later changes to `child` are not seen).
    pub fn add_child_graph(&self, deps: &[NodeId], child: &Graph) -> Result<NodeId> {
        if Arc::ptr_eq(&self.data, &child.data) {
            return Err(Error::invalid("a graph cannot contain itself"));
        }
        if child.device() != self.device() {
            return Err(Error::DeviceMismatch {
                operand: "child graph",
                expected: self.device().ordinal(),
                actual: child.device().ordinal(),
            });
        }
        self.push(NodeKind::Child(child.duplicate()), deps)
    }

    fn check_event(&self, event: &Event) -> Result<()> {
        if event.device() != &self.device() {
            return Err(Error::DeviceMismatch {
                operand: "event",
                expected: self.device().ordinal(),
                actual: event.device().ordinal(),
            });
        }
        Ok(())
    }

    /// Validates, orders and pre-encodes the graph for launching.
    pub fn instantiate(&self) -> Result<GraphExec> {
        GraphExec::new(self)
    }
}

fn bad_node(node: NodeId, len: usize) -> Error {
    Error::invalid(format!(
        "node {} does not exist in a graph of {len} nodes",
        node.0
    ))
}
