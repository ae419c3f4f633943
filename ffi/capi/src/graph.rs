//! Graphs: stream capture, explicit building, instantiation, launch, whole-graph update.
//!
//! A node handle names its graph's table slot and the node's index, so a node of another
//! graph, or an index the graph does not have, is `knpuErrorInvalidHandle`.

use crate::device::current;
use crate::error::{call, invalid, out_ptr, write_out, Result};
use crate::event::EVENTS;
use crate::handles::Table;
use crate::header::*;
use crate::memory::{queue_memcpy, queue_memset};
use crate::stream::{stream_arg, HostCall};
use knpu::{CaptureMode, Error, Graph, GraphExec, GraphUpdateResult, NodeId};
use std::ffi::{c_int, c_uint, c_ulonglong, c_void};
use std::sync::Arc;

/// Live graphs.
pub(crate) static GRAPHS: Table<Graph> = Table::new(3, "graph");
/// Live instantiated graphs.
pub(crate) static EXECS: Table<Arc<GraphExec>> = Table::new(4, "graph exec");
const NODE_TAG: u64 = 5;

fn node_handle(graph_slot: usize, node: NodeId) -> knpuGraphNode_t {
    ((NODE_TAG << 56) | ((graph_slot as u64 + 1) << 32) | (node.index() as u64 + 1))
        as knpuGraphNode_t
}

fn node_of(graph: &Graph, graph_slot: usize, h: knpuGraphNode_t) -> Result<NodeId> {
    let h = h as u64;
    let bad = |why: &str| Error::InvalidHandle {
        detail: format!("{h:#x} is not a node of this graph: {why}"),
    };
    if h >> 56 != NODE_TAG {
        return Err(bad("not a node handle"));
    }
    if (h >> 32) & 0xFF_FFFF != graph_slot as u64 + 1 {
        return Err(bad("it belongs to another graph"));
    }
    let index = ((h & 0xFFFF_FFFF) as usize)
        .checked_sub(1)
        .ok_or_else(|| bad("index 0"))?;
    if index >= graph.node_count() {
        return Err(bad("no such node"));
    }
    Ok(NodeId::from_index(index))
}

/// The graph, its slot, and the dependencies of a node about to be added.
fn graph_and_deps(
    graph: knpuGraph_t,
    deps: *const knpuGraphNode_t,
    count: usize,
) -> Result<(Graph, usize, Vec<NodeId>)> {
    let g = GRAPHS.get(graph as u64)?;
    let slot = GRAPHS.index(graph as u64)?;
    if count == 0 {
        return Ok((g, slot, Vec::new()));
    }
    if deps.is_null() {
        return Err(invalid(format!(
            "dependencies is NULL but numDependencies is {count}"
        )));
    }
    if !deps.is_aligned() || count > isize::MAX as usize / std::mem::size_of::<usize>() {
        return Err(invalid(
            "dependencies is misaligned or numDependencies is too large",
        ));
    }
    // SAFETY: non-null and aligned; the caller promised `count` readable handles.
    let raw = unsafe { std::slice::from_raw_parts(deps, count) };
    let ids = raw
        .iter()
        .map(|&h| node_of(&g, slot, h))
        .collect::<Result<Vec<_>>>()?;
    Ok((g, slot, ids))
}

/// Adds one node with `add` and writes its handle.
///
/// # Safety
/// - `node` is NULL or writable; `deps` is NULL or `count` readable handles.
unsafe fn add(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    deps: *const knpuGraphNode_t,
    count: usize,
    build: impl FnOnce(&Graph, &[NodeId]) -> Result<NodeId>,
) -> knpuError_t {
    call(|| {
        out_ptr(node, "node")?;
        let (g, slot, ids) = graph_and_deps(graph, deps, count)?;
        let id = build(&g, &ids)?;
        // SAFETY: the caller's promise on `node`.
        unsafe { write_out(node, "node", node_handle(slot, id)) }
    })
}

/// Starts capturing a stream.
#[no_mangle]
pub extern "C" fn knpuStreamBeginCapture(
    stream: knpuStream_t,
    mode: knpuStreamCaptureMode,
) -> knpuError_t {
    call(|| {
        let s = stream_arg(stream)?;
        let mode = match mode {
            knpuStreamCaptureModeGlobal => CaptureMode::Global,
            knpuStreamCaptureModeThreadLocal => CaptureMode::ThreadLocal,
            knpuStreamCaptureModeRelaxed => CaptureMode::Relaxed,
            other => return Err(invalid(format!("unknown capture mode {other}"))),
        };
        s.begin_capture(mode)
    })
}

/// Ends a capture and returns its graph.
///
/// # Safety
/// - `graph` is NULL or points to a writable `knpuGraph_t`.
#[no_mangle]
pub unsafe extern "C" fn knpuStreamEndCapture(
    stream: knpuStream_t,
    graph: *mut knpuGraph_t,
) -> knpuError_t {
    call(|| {
        out_ptr(graph, "graph")?;
        let g = stream_arg(stream)?.end_capture()?;
        let h = GRAPHS.insert(g) as knpuGraph_t;
        // SAFETY: the caller's promise.
        unsafe { write_out(graph, "graph", h) }
    })
}

/// Whether a stream is capturing.
///
/// # Safety
/// - `status` is NULL or points to a writable `knpuStreamCaptureStatus`.
#[no_mangle]
pub unsafe extern "C" fn knpuStreamIsCapturing(
    stream: knpuStream_t,
    status: *mut knpuStreamCaptureStatus,
) -> knpuError_t {
    call(|| {
        out_ptr(status, "status")?;
        let st = match stream_arg(stream)?.is_capturing() {
            true => knpuStreamCaptureStatusActive,
            false => knpuStreamCaptureStatusNone,
        };
        // SAFETY: the caller's promise.
        unsafe { write_out(status, "status", st) }
    })
}

/// Creates an empty graph on the current device.
///
/// # Safety
/// - `graph` is NULL or points to a writable `knpuGraph_t`.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphCreate(graph: *mut knpuGraph_t, flags: c_uint) -> knpuError_t {
    call(|| {
        out_ptr(graph, "graph")?;
        if flags != 0 {
            return Err(invalid(format!(
                "knpuGraphCreate flags must be 0, got {flags:#x}"
            )));
        }
        let h = GRAPHS.insert(Graph::new(&current()?)) as knpuGraph_t;
        // SAFETY: the caller's promise.
        unsafe { write_out(graph, "graph", h) }
    })
}

/// Instantiates a graph.
///
/// # Safety
/// - `exec` is NULL or points to a writable `knpuGraphExec_t`.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphInstantiate(
    exec: *mut knpuGraphExec_t,
    graph: knpuGraph_t,
    flags: c_ulonglong,
) -> knpuError_t {
    call(|| {
        out_ptr(exec, "exec")?;
        let g = GRAPHS.get(graph as u64)?;
        if flags != 0 {
            return Err(invalid(format!(
                "knpuGraphInstantiate flags must be 0, got {flags:#x}"
            )));
        }
        let x = g.instantiate()?;
        let h = EXECS.insert(Arc::new(x)) as knpuGraphExec_t;
        // SAFETY: the caller's promise.
        unsafe { write_out(exec, "exec", h) }
    })
}

/// Launches an instantiated graph on a stream.
#[no_mangle]
pub extern "C" fn knpuGraphLaunch(exec: knpuGraphExec_t, stream: knpuStream_t) -> knpuError_t {
    call(|| {
        let x = EXECS.get(exec as u64)?;
        x.launch(&stream_arg(stream)?)
    })
}

fn update_result(r: GraphUpdateResult) -> knpuGraphExecUpdateResult {
    match r {
        GraphUpdateResult::Success => knpuGraphExecUpdateSuccess,
        GraphUpdateResult::TopologyChanged => knpuGraphExecUpdateErrorTopologyChanged,
        GraphUpdateResult::NodeTypeChanged => knpuGraphExecUpdateErrorNodeTypeChanged,
        GraphUpdateResult::FunctionChanged => knpuGraphExecUpdateErrorFunctionChanged,
        GraphUpdateResult::ParametersChanged => knpuGraphExecUpdateErrorParametersChanged,
        GraphUpdateResult::NotSupported => knpuGraphExecUpdateErrorNotSupported,
        _ => knpuGraphExecUpdateError,
    }
}

/// Updates an instance from a graph of the same shape.
///
/// # Safety
/// - `result` is NULL or points to a writable `knpuGraphExecUpdateResult`.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphExecUpdate(
    exec: knpuGraphExec_t,
    graph: knpuGraph_t,
    result: *mut knpuGraphExecUpdateResult,
) -> knpuError_t {
    call(|| {
        if !result.is_null() {
            out_ptr(result, "result")?;
        }
        let x = EXECS.get(exec as u64)?;
        let g = GRAPHS.get(graph as u64)?;
        let outcome = x.update(&g);
        let r = match &outcome {
            Ok(()) => knpuGraphExecUpdateSuccess,
            Err(Error::GraphUpdate { result, .. }) => update_result(*result),
            Err(_) => knpuGraphExecUpdateError,
        };
        if !result.is_null() {
            // SAFETY: the caller's promise.
            unsafe { write_out(result, "result", r) }?;
        }
        outcome
    })
}

/// Releases a graph.
#[no_mangle]
pub extern "C" fn knpuGraphDestroy(graph: knpuGraph_t) -> knpuError_t {
    call(|| GRAPHS.remove(graph as u64).map(drop))
}

/// Releases an instantiated graph.
#[no_mangle]
pub extern "C" fn knpuGraphExecDestroy(exec: knpuGraphExec_t) -> knpuError_t {
    call(|| EXECS.remove(exec as u64).map(drop))
}

/// Adds an empty node.
///
/// # Safety
/// - `node` is NULL or writable; `dependencies` is NULL or `numDependencies` readable
///   handles.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddEmptyNode(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
) -> knpuError_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add(node, graph, dependencies, numDependencies, |g, d| {
            g.add_empty(d)
        })
    }
}

/// Adds a host function node.
///
/// # Safety
/// - As [`knpuGraphAddEmptyNode`].
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddHostNode(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    fn_: knpuHostFn_t,
    userData: *mut c_void,
) -> knpuError_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add(node, graph, dependencies, numDependencies, |g, d| {
            let host = HostCall::new(fn_, userData)?;
            g.add_host_fn(d, move || host.run())
        })
    }
}

/// Adds a copy node.
///
/// # Safety
/// - As [`knpuGraphAddEmptyNode`]; host memory named by `dst`/`src` stays valid for every
///   launch.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddMemcpyNode1D(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    dst: *mut c_void,
    src: *const c_void,
    count: usize,
    kind: knpuMemcpyKind,
) -> knpuError_t {
    let build = |g: &Graph, d: &[NodeId]| -> Result<NodeId> {
        if count == 0 {
            // Validate the pointers as a copy would, then stand in an empty node.
            let s = g.device().default_stream()?.clone();
            // SAFETY: a copy of 0 bytes touches no host memory.
            unsafe { queue_memcpy(&s, dst, src, 0, kind) }?;
            return g.add_empty(d);
        }
        // SAFETY: the caller keeps host memory valid for every launch.
        g.add_node(d, |s| unsafe { queue_memcpy(s, dst, src, count, kind) })
    };
    // SAFETY: the caller's promises, passed on.
    unsafe { add(node, graph, dependencies, numDependencies, build) }
}

/// Adds a fill node.
///
/// # Safety
/// - As [`knpuGraphAddEmptyNode`].
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddMemsetNode1D(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    devPtr: *mut c_void,
    value: c_int,
    count: usize,
) -> knpuError_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add(node, graph, dependencies, numDependencies, |g, d| {
            if count == 0 {
                crate::memory::resolve(devPtr, 0, "devPtr")?;
                return g.add_empty(d);
            }
            g.add_node(d, |s| queue_memset(s, devPtr, value, count))
        })
    }
}

/// Adds an event record node.
///
/// # Safety
/// - As [`knpuGraphAddEmptyNode`].
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddEventRecordNode(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    event: knpuEvent_t,
) -> knpuError_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add(node, graph, dependencies, numDependencies, |g, d| {
            g.add_event_record(d, &*EVENTS.get(event as u64)?)
        })
    }
}

/// Adds an event wait node.
///
/// # Safety
/// - As [`knpuGraphAddEmptyNode`].
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddEventWaitNode(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    event: knpuEvent_t,
) -> knpuError_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add(node, graph, dependencies, numDependencies, |g, d| {
            g.add_event_wait(d, &*EVENTS.get(event as u64)?)
        })
    }
}

/// Adds a child graph node.
///
/// # Safety
/// - As [`knpuGraphAddEmptyNode`].
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddChildGraphNode(
    node: *mut knpuGraphNode_t,
    graph: knpuGraph_t,
    dependencies: *const knpuGraphNode_t,
    numDependencies: usize,
    childGraph: knpuGraph_t,
) -> knpuError_t {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add(node, graph, dependencies, numDependencies, |g, d| {
            g.add_child_graph(d, &GRAPHS.get(childGraph as u64)?)
        })
    }
}

/// Adds edges between nodes of a graph.
///
/// # Safety
/// - `from` and `to` are NULL or point to `numDependencies` readable handles each.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphAddDependencies(
    graph: knpuGraph_t,
    from: *const knpuGraphNode_t,
    to: *const knpuGraphNode_t,
    numDependencies: usize,
) -> knpuError_t {
    call(|| {
        let (g, _, froms) = graph_and_deps(graph, from, numDependencies)?;
        let (_, _, tos) = graph_and_deps(graph, to, numDependencies)?;
        for (f, t) in froms.into_iter().zip(tos) {
            g.add_dependency(f, t)?;
        }
        Ok(())
    })
}

/// Lists a graph's nodes, or counts them.
///
/// # Safety
/// - `numNodes` is NULL or points to a writable `size_t`; `nodes` is NULL or points to
///   `*numNodes` writable handles.
#[no_mangle]
pub unsafe extern "C" fn knpuGraphGetNodes(
    graph: knpuGraph_t,
    nodes: *mut knpuGraphNode_t,
    numNodes: *mut usize,
) -> knpuError_t {
    call(|| {
        let g = GRAPHS.get(graph as u64)?;
        let slot = GRAPHS.index(graph as u64)?;
        let num = out_ptr(numNodes, "numNodes")?;
        let total = g.node_count();
        if nodes.is_null() {
            // SAFETY: the caller's promise on `numNodes`.
            return unsafe { write_out(num, "numNodes", total) };
        }
        out_ptr(nodes, "nodes")?;
        // SAFETY: the caller's promise on `numNodes`.
        let capacity = unsafe { num.read() };
        let n = capacity.min(total);
        for i in 0..n {
            // SAFETY: `nodes` has `capacity` >= n writable handles (the caller's promise).
            unsafe { nodes.add(i).write(node_handle(slot, NodeId::from_index(i))) };
        }
        // SAFETY: as above.
        unsafe { write_out(num, "numNodes", n) }
    })
}
