//! Graphs: capture, explicit building, instantiation, launch, update and their errors.

use knpu::{CaptureMode, Device, Error, Event, Graph, GraphUpdateResult, Stream};
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod common;
use common::wait_for;

/// Capture modes are process-wide and several tests read allocator statistics of the one
/// shared device, so the tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn dev() -> Device {
    knpu::device(0).unwrap()
}

/// What the tests here start with: this file's lock, device 0 and a stream on it.
fn setup() -> (MutexGuard<'static, ()>, Device, Stream) {
    let serial = SERIAL.lock();
    let d = dev();
    let s = Stream::new(&d).unwrap();
    (serial, d, s)
}

/// [`setup`] with a second stream.
fn setup_two_streams() -> (MutexGuard<'static, ()>, Device, Stream, Stream) {
    let (serial, d, s1) = setup();
    let s2 = Stream::new(&d).unwrap();
    (serial, d, s1, s2)
}

/// `0, 1, ..., n - 1` on the device, and an output of `n` values: the operands of
/// [`scale_graph`].
fn ramp(s: &Stream, n: usize) -> (knpu::DeviceBuffer<f32>, knpu::DeviceBuffer<f32>) {
    let a = s.from_slice(&v(n, |i| i as f32)).unwrap();
    (a, s.alloc::<f32>(n).unwrap())
}

fn v(n: usize, f: impl Fn(usize) -> f32) -> Vec<f32> {
    (0..n).map(f).collect()
}

#[test]
fn captured_replay_equals_eager_with_fork_and_join() {
    let (_serial, _d, s1, s2) = setup_two_streams();
    let n = 1000;
    let x = s1.from_slice(&v(n, |i| i as f32 * 0.25)).unwrap();

    let mut eager_out = s1.alloc::<f32>(n).unwrap();
    let mut t1 = s1.alloc::<f32>(n).unwrap();
    let mut t2 = s1.alloc::<f32>(n).unwrap();
    let mut t3 = s1.alloc::<f32>(n).unwrap();
    let mut t4 = s1.alloc::<f32>(n).unwrap();
    eager(
        &s1,
        &s2,
        &x,
        &mut eager_out,
        &mut t1,
        &mut t2,
        &mut t3,
        &mut t4,
    )
    .unwrap();
    s1.synchronize().unwrap();
    let want = eager_out.to_vec().unwrap();

    let mut out = s1.alloc_zeroed::<f32>(n).unwrap();
    s1.synchronize().unwrap();
    s1.begin_capture(CaptureMode::Global).unwrap();
    assert!(s1.is_capturing());
    eager(&s1, &s2, &x, &mut out, &mut t1, &mut t2, &mut t3, &mut t4).unwrap();
    assert!(
        s2.is_capturing(),
        "s2 joined the capture through the fork event"
    );
    let graph = s1.end_capture().unwrap();
    assert!(!s1.is_capturing() && !s2.is_capturing());
    assert!(graph.node_count() >= 4);
    // Nothing ran during capture.
    assert_eq!(out.to_vec().unwrap(), vec![0.0; n]);
    let exec = graph.instantiate().unwrap();
    assert!(exec.queue_count() >= 2, "the fork runs on its own queue");
    for _ in 0..3 {
        exec.launch(&s1).unwrap();
        s1.synchronize().unwrap();
        assert!(
            out.to_vec().unwrap() == want,
            "replay differs from the eager result"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn eager(
    s1: &Stream,
    s2: &Stream,
    x: &knpu::DeviceBuffer<f32>,
    out: &mut knpu::DeviceBuffer<f32>,
    t1: &mut knpu::DeviceBuffer<f32>,
    t2: &mut knpu::DeviceBuffer<f32>,
    t3: &mut knpu::DeviceBuffer<f32>,
    t4: &mut knpu::DeviceBuffer<f32>,
) -> knpu::Result<()> {
    knpu::ops::scale(s1, 2.0, x, t1)?;
    wait_for(s2, s1)?;
    knpu::ops::add(s2, x, x, t2)?;
    knpu::ops::axpy(s2, 0.5, t1, t2, t3)?;
    // Meanwhile on s1, independent of s2's branch.
    knpu::ops::scale(s1, 3.0, x, t4)?;
    wait_for(s1, s2)?;
    knpu::ops::mul(s1, t4, t3, out)
}

#[test]
fn diamond_branches_overlap_on_the_device() {
    let (_serial, d, s) = setup();
    let n = 4 << 20;
    let a = s.from_slice(&vec![1.0f32; n]).unwrap();
    let mut b = s.alloc::<f32>(n).unwrap();
    let mut c = s.alloc::<f32>(n).unwrap();
    let mut out = s.alloc::<f32>(n).unwrap();
    s.synchronize().unwrap();
    let g = Graph::new(&d);
    let top = g.add_empty(&[]).unwrap();
    // Two branches of four scales each, joined by an add.
    let mut deps = Vec::new();
    for (factor, dst) in [(3.0, &mut b), (5.0, &mut c)] {
        let record = |r: &Stream| (0..4).try_for_each(|_| knpu::ops::scale(r, factor, &a, dst));
        deps.extend(g.add_work(&[top], record).unwrap());
    }
    g.add_node(&deps, |r| knpu::ops::add(r, &b, &c, &mut out))
        .unwrap();
    let exec = g.instantiate().unwrap();
    assert_eq!(exec.queue_count(), 2);
    d.set_profiling(true).unwrap();
    let _ = d.read_profile().unwrap();
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    let records = d.read_profile().unwrap();
    d.set_profiling(false).unwrap();
    assert_eq!(out.to_vec().unwrap()[..8], [8.0; 8]);
    let kernels: Vec<_> = records
        .iter()
        .filter(|r| r.command_type == knpu::abi::KNPU_COMMAND_KERNEL)
        .collect();
    let queues: std::collections::BTreeSet<u32> = kernels.iter().map(|r| r.queue).collect();
    assert!(queues.len() >= 2, "branches ran on {queues:?}");
    let by_queue = |q: u32| -> (u64, u64) {
        let ks: Vec<_> = kernels.iter().filter(|r| r.queue == q).collect();
        (
            ks.iter().map(|r| r.start_ns).min().unwrap(),
            ks.iter().map(|r| r.end_ns).max().unwrap(),
        )
    };
    let qs: Vec<u32> = queues.into_iter().collect();
    let (s0, e0) = by_queue(qs[0]);
    let (s1, e1) = by_queue(qs[1]);
    assert!(
        s0 < e1 && s1 < e0,
        "branch spans must overlap: [{s0}, {e0}] vs [{s1}, {e1}]"
    );
}

fn scale_graph(
    d: &Device,
    a: &knpu::DeviceBuffer<f32>,
    out: &mut knpu::DeviceBuffer<f32>,
    alpha: f32,
) -> (Graph, knpu::NodeId) {
    let g = Graph::new(d);
    let k = g
        .add_node(&[], |r| knpu::ops::scale(r, alpha, a, out))
        .unwrap();
    (g, k)
}

#[test]
fn kernel_parameter_update_changes_the_replayed_result() {
    let (_serial, d, s) = setup();
    let (a, mut out) = ramp(&s, 64);
    let (g, k) = scale_graph(&d, &a, &mut out, 2.0);
    assert_eq!(g.node_type(k).unwrap(), "kernel");
    let exec = g.instantiate().unwrap();
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), v(64, |i| 2.0 * i as f32));
    exec.set_kernel_params(k, |r| knpu::ops::scale(r, 3.0, &a, &mut out))
        .unwrap();
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), v(64, |i| 3.0 * i as f32));
    // Work that is not a kernel is refused.
    let e = exec
        .set_kernel_params(k, |r| r.memset(&mut out, 1.0f32))
        .unwrap_err();
    assert!(e.to_string().contains("not a kernel"), "{e}");
}

#[test]
fn whole_graph_update_reports_cuda_result_codes() {
    let (_serial, d, s) = setup();
    let (a, mut out) = ramp(&s, 32);
    let (g, _) = scale_graph(&d, &a, &mut out, 2.0);
    let exec = g.instantiate().unwrap();
    let (g2, _) = scale_graph(&d, &a, &mut out, 7.0);
    exec.update(&g2).unwrap();
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), v(32, |i| 7.0 * i as f32));

    let result = |g: &Graph| match exec.update(g) {
        Err(Error::GraphUpdate { result, .. }) => result,
        other => panic!("expected a GraphUpdate error, got {other:?}"),
    };
    let (g3, k3) = scale_graph(&d, &a, &mut out, 1.0);
    g3.add_empty(&[k3]).unwrap();
    assert_eq!(result(&g3), GraphUpdateResult::TopologyChanged);
    let g4 = Graph::new(&d);
    g4.add_host_fn(&[], || {}).unwrap();
    assert_eq!(result(&g4), GraphUpdateResult::NodeTypeChanged);
    // Same topology, a kernel node, but another kernel (SiLU instead of the scale kernel).
    let g5 = Graph::new(&d);
    g5.add_node(&[], |r| knpu::ops::silu(r, &a, &mut out))
        .unwrap();
    match exec.update(&g5) {
        Err(Error::GraphUpdate {
            result,
            node,
            detail,
        }) => {
            assert_eq!(result, GraphUpdateResult::FunctionChanged);
            assert_eq!(node, Some(0));
            assert!(detail.contains("instead of"), "{detail}");
        }
        other => panic!("expected FunctionChanged, got {other:?}"),
    }
    let copy_graph = |owned: bool| {
        let g = Graph::new(&d);
        let mut dst = s.alloc::<f32>(4).unwrap();
        if owned {
            g.add_node(&[], |r| r.memcpy_htod_owned(&mut dst, vec![1.0; 4]))
                .unwrap();
        } else {
            g.add_node(&[], |r| r.memcpy_dtod(&mut dst, &a.slice(0..4).unwrap()))
                .unwrap();
        }
        g
    };
    let copies = copy_graph(false).instantiate().unwrap();
    match copies.update(&copy_graph(true)) {
        Err(Error::GraphUpdate { result, .. }) => {
            assert_eq!(result, GraphUpdateResult::ParametersChanged)
        }
        other => panic!("expected ParametersChanged, got {other:?}"),
    }
    // The failed updates left the instance as it was.
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), v(32, |i| 7.0 * i as f32));
}

#[test]
fn illegal_operations_during_capture_invalidate_it_and_the_stream_stays_usable() {
    let (_serial, _d, s) = setup();
    let a = s.from_slice(&[1.0f32; 8]).unwrap();
    let mut out = s.alloc::<f32>(8).unwrap();
    let mut host = [0f32; 8];
    type Illegal = Box<dyn Fn(&Stream, &knpu::DeviceBuffer<f32>) -> knpu::Result<()>>;
    let illegal: Vec<(&str, Illegal)> = vec![
        ("synchronize", Box::new(|s, _| s.synchronize())),
        ("query", Box::new(|s, _| s.query().map(|_| ()))),
        (
            "one-shot host callback",
            Box::new(|s, _| s.launch_host_func(|| {})),
        ),
    ];
    for (what, op) in &illegal {
        s.begin_capture(CaptureMode::Global).unwrap();
        knpu::ops::scale(&s, 2.0, &a, &mut out).unwrap();
        let e = op(&s, &a).unwrap_err();
        assert!(matches!(e, Error::Capture { .. }), "{what}: {e}");
        // Later work in the invalidated capture is refused, and ending it reports why.
        assert!(matches!(
            knpu::ops::scale(&s, 2.0, &a, &mut out),
            Err(Error::Capture { .. })
        ));
        let e = s.end_capture().unwrap_err();
        assert!(e.to_string().contains("invalidated"), "{what}: {e}");
        assert!(!s.is_capturing());
    }
    // A blocking copy to host memory.
    s.begin_capture(CaptureMode::Global).unwrap();
    let e = s.memcpy_dtoh(&mut host, &a).unwrap_err();
    assert!(matches!(e, Error::Capture { .. }), "{e}");
    assert!(s.end_capture().is_err());
    // The stream works eagerly again.
    knpu::ops::scale(&s, 4.0, &a, &mut out).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), vec![4.0; 8]);
}

#[test]
fn capture_modes_decide_what_other_calls_may_do() {
    let (_serial, d, s) = setup();
    let other = |f: fn(&Device) -> bool| {
        let d2 = d.clone();
        std::thread::spawn(move || f(&d2)).join().unwrap()
    };
    let alloc_ok = |d: &Device| d.alloc::<f32>(16).is_ok();

    s.begin_capture(CaptureMode::Global).unwrap();
    assert!(
        !other(alloc_ok),
        "global mode forbids unsafe calls on other threads"
    );
    assert!(s.end_capture().is_err(), "and the capture is invalidated");

    s.begin_capture(CaptureMode::ThreadLocal).unwrap();
    assert!(other(alloc_ok), "thread-local mode allows other threads");
    assert!(
        matches!(d.alloc::<f32>(16), Err(Error::Capture { .. })),
        "but not this one"
    );
    assert!(s.end_capture().is_err());

    s.begin_capture(CaptureMode::Relaxed).unwrap();
    assert!(other(alloc_ok));
    assert!(
        d.alloc::<f32>(16).is_ok(),
        "relaxed mode allows this thread too"
    );
    s.end_capture().unwrap();
    assert!(d.alloc::<f32>(16).is_ok(), "no capture, no restriction");
}

#[test]
fn unjoined_fork_fails_end_capture() {
    let (_serial, _d, s1, s2) = setup_two_streams();
    let a = s1.from_slice(&[1.0f32; 4]).unwrap();
    let mut out = s1.alloc::<f32>(4).unwrap();
    s1.synchronize().unwrap();
    s1.begin_capture(CaptureMode::Relaxed).unwrap();
    wait_for(&s2, &s1).unwrap();
    knpu::ops::scale(&s2, 2.0, &a, &mut out).unwrap();
    let err = s1.end_capture().unwrap_err();
    assert!(err.to_string().contains("not joined back"), "{err}");
    assert!(!s2.is_capturing());
    knpu::ops::scale(&s2, 2.0, &a, &mut out).unwrap();
    s2.synchronize().unwrap();
}

#[test]
fn ten_thousand_replays_leak_nothing() {
    let (_serial, d, s) = setup();
    let a = s.from_slice(&[1.0f32; 16]).unwrap();
    let mut acc = s.from_slice(&[0.0f32; 16]).unwrap();
    let mut tmp = s.alloc::<f32>(16).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    s.synchronize().unwrap();
    s.begin_capture(CaptureMode::ThreadLocal).unwrap();
    knpu::ops::add(&s, &acc, &a, &mut tmp).unwrap();
    s.memcpy_dtod(&mut acc, &tmp).unwrap();
    let c = count.clone();
    s.launch_host_fn(move || {
        c.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let g = s.end_capture().unwrap();
    let exec = g.instantiate().unwrap();
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    let before = d.memory_stats();
    for _ in 0..10_000 {
        exec.launch(&s).unwrap();
    }
    s.synchronize().unwrap();
    let after = d.memory_stats();
    assert_eq!(
        count.load(Ordering::Relaxed),
        10_001,
        "host node ran on every launch"
    );
    assert_eq!(acc.to_vec().unwrap(), vec![10_001.0; 16]);
    assert_eq!(after.allocated_bytes, before.allocated_bytes);
    assert_eq!(after.active_blocks, before.active_blocks);
    assert_eq!(
        after.num_allocs, before.num_allocs,
        "replays allocate nothing"
    );
}

#[test]
fn allocation_nodes_use_graph_private_memory() {
    let (_serial, d, s) = setup();
    let a = s.from_slice(&v(256, |i| i as f32)).unwrap();
    let mut out = s.alloc::<f32>(256).unwrap();
    s.synchronize().unwrap();
    let before = d.memory_stats();
    s.begin_capture(CaptureMode::Global).unwrap();
    {
        let mut tmp = s.alloc::<f32>(256).unwrap();
        knpu::ops::scale(&s, 3.0, &a, &mut tmp).unwrap();
        knpu::ops::add(&s, &tmp, &a, &mut out).unwrap();
    }
    let g = s.end_capture().unwrap();
    let types: Vec<&str> = (0..g.node_count())
        .map(|i| g.node_type(knpu::NodeId::from_index(i)).unwrap())
        .collect();
    assert!(
        types.contains(&"mem alloc") && types.contains(&"mem free"),
        "{types:?}"
    );
    let exec = g.instantiate().unwrap();
    assert!(
        matches!(g.instantiate(), Err(Error::NotSupported { .. })),
        "one live instance at a time"
    );
    for _ in 0..5 {
        exec.launch(&s).unwrap();
    }
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), v(256, |i| 4.0 * i as f32));
    assert!(
        d.memory_stats().allocated_bytes > before.allocated_bytes,
        "the graph holds its memory"
    );
    drop(exec);
    drop(g);
    s.synchronize().unwrap();
    assert_eq!(
        d.memory_stats().allocated_bytes,
        before.allocated_bytes,
        "and returns it when gone"
    );
}

#[test]
fn cycles_and_bad_nodes_are_refused() {
    let _serial = SERIAL.lock();
    let d = dev();
    let g = Graph::new(&d);
    let a = g.add_empty(&[]).unwrap();
    let b = g.add_empty(&[a]).unwrap();
    g.add_dependency(b, a).unwrap();
    let e = g.instantiate().unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
    assert!(g.add_empty(&[knpu::NodeId::from_index(99)]).is_err());
}

#[test]
fn destroying_graph_and_instance_during_a_launch_is_safe() {
    let (_serial, d, s) = setup();
    let a = s.from_slice(&[1.0f32; 1024]).unwrap();
    let mut out = s.alloc::<f32>(1024).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    s.launch_host_func(move || {
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
    })
    .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let g = Graph::new(&d);
    let k = g
        .add_node(&[], |r| knpu::ops::scale(r, 5.0, &a, &mut out))
        .unwrap();
    let r2 = ran.clone();
    g.add_host_fn(&[k], move || {
        r2.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let exec = g.instantiate().unwrap();
    exec.launch(&s).unwrap();
    drop(exec);
    drop(g);
    drop(tx);
    s.synchronize().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert_eq!(out.to_vec().unwrap(), vec![5.0; 1024]);
}

#[test]
fn event_nodes_and_child_graphs() {
    let (_serial, d, s, s2) = setup_two_streams();
    let a = s.from_slice(&[2.0f32; 8]).unwrap();
    let mut b = s.alloc::<f32>(8).unwrap();
    let mut c = s.alloc::<f32>(8).unwrap();
    s.synchronize().unwrap();
    let child = Graph::new(&d);
    child
        .add_node(&[], |r| knpu::ops::scale(r, 10.0, &a, &mut b))
        .unwrap();
    let g = Graph::new(&d);
    let n = g.add_child_graph(&[], &child).unwrap();
    assert_eq!(g.node_type(n).unwrap(), "child graph");
    let done = Event::new(&d);
    g.add_event_record(&[n], &done).unwrap();
    let exec = g.instantiate().unwrap();
    exec.launch(&s).unwrap();
    // Another stream waits for the graph's event, then reads what the child wrote.
    s2.wait_event(&done).unwrap();
    knpu::ops::add(&s2, &b, &a, &mut c).unwrap();
    s2.synchronize().unwrap();
    assert_eq!(c.to_vec().unwrap(), vec![22.0; 8]);
    // An event-wait node orders a graph after another stream's work.
    let g2 = Graph::new(&d);
    let w = g2.add_event_wait(&[], &done).unwrap();
    g2.add_node(&[w], |r| knpu::ops::scale(r, 0.5, &c, &mut b))
        .unwrap();
    let e2 = g2.instantiate().unwrap();
    e2.launch(&s2).unwrap();
    s2.synchronize().unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![11.0; 8]);
}
