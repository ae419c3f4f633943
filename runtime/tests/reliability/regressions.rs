//! Regression tests, one per defect found under stress and misuse, named after what broke.

use crate::common::{
    bounded, child_case, device_and_stream, device_and_two_streams, expect_child_passes, Progress,
};
use crate::shared::wait_for;
use knpu::{CaptureMode, Device, Error, Event, Fault, Stream};
use std::sync::mpsc;
use std::time::Duration;

fn dev() -> Device {
    knpu::device(0).unwrap()
}

/// Runs `body` as `test` in a child process of its own with `env` set (device-wide faults,
/// stream counts, allocator totals), bounded to `secs` seconds (`part` names it in the
/// watchdog's report).
fn isolated(
    test: &str,
    env: &[(&str, &str)],
    part: &str,
    secs: u64,
    body: impl FnOnce(&Progress) + Send + 'static,
) {
    if child_case().is_some() {
        bounded(part, secs, body);
    } else {
        expect_child_passes(&format!("regressions::{test}"), test, env, 90);
    }
}

/// Queues a host callback that drops a buffer of `dropped` bytes after a pause (time for the
/// caller to start waiting on it), then drops a buffer of `waited` bytes whose free is ordered
/// after that callback.
fn free_behind_a_dropping_callback(s: &Stream, waited: usize, dropped: usize) {
    let waited_on = s.alloc::<u8>(waited).unwrap();
    let dropped_in_callback = s.alloc::<u8>(dropped).unwrap();
    s.launch_host_func(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(dropped_in_callback);
    })
    .unwrap();
    drop(waited_on);
}

#[test]
fn huge_allocation_is_out_of_memory_not_an_alias_of_live_memory() {
    bounded("huge allocation", 60, |p| {
        let (_d, s) = device_and_stream();
        let live = s.from_slice(&[0x11u8; 256]).unwrap();
        p.at("alloc::<u8>(usize::MAX)");
        for r in [
            s.alloc::<u8>(usize::MAX).map(|_| ()),
            s.alloc::<f32>(usize::MAX / 4).map(|_| ()),
            s.alloc::<u8>(usize::MAX - (1 << 20)).map(|_| ()),
        ] {
            match r {
                Err(Error::OutOfMemory { requested, .. }) => {
                    assert!(requested >= u64::MAX - (1 << 20) - 4, "{requested}")
                }
                other => panic!("expected OutOfMemory, got {other:?}"),
            }
        }
        p.at("from_slice after the failed allocations");
        let other = s.from_slice(&[0xABu8; 256]).unwrap();
        assert_ne!(other.device_address(), live.device_address());
        assert_eq!(live.to_vec().unwrap(), vec![0x11u8; 256]);
        assert_eq!(other.to_vec().unwrap(), vec![0xABu8; 256]);
    });
}

#[test]
fn host_callback_dropping_a_buffer_does_not_deadlock_empty_cache() {
    bounded("callback drop during empty_cache", 60, |p| {
        let (d, s) = device_and_stream();
        // Large enough for segments of their own; empty_cache must wait for the callback.
        free_behind_a_dropping_callback(&s, 12 << 20, 12 << 20);
        p.at("Device::empty_cache while a callback drops a buffer");
        d.empty_cache().unwrap();
        p.at("Stream::synchronize");
        s.synchronize().unwrap();
    });
}

#[test]
fn host_callback_dropping_a_buffer_does_not_deadlock_an_allocation_retry() {
    isolated(
        "host_callback_dropping_a_buffer_does_not_deadlock_an_allocation_retry",
        &[("KNPU_SIM_MEMORY", "64M")],
        "callback drop during an allocation retry",
        60,
        |p| {
            let (d, s) = device_and_stream();
            free_behind_a_dropping_callback(&s, 40 << 20, 12 << 20);
            // 48 MiB does not fit beside the cached 52 MiB: the allocator releases the
            // cache, waiting for the callback, which frees a buffer meanwhile.
            p.at("alloc of 48 MiB, retried after releasing the cache");
            let big = s.alloc::<u8>(48 << 20).unwrap();
            assert_eq!(d.memory_stats().num_alloc_retries, 1);
            drop(big);
            s.synchronize().unwrap();
        },
    );
}

#[test]
fn waiting_from_a_host_callback_is_a_clear_error_not_a_hang() {
    bounded("synchronize from a callback", 60, |p| {
        let (d, s) = device_and_stream();
        let (tx, rx) = mpsc::channel();
        let s2 = s.clone();
        let e = Event::with_timing(&d, false);
        e.record(&s).unwrap();
        let e2 = Event::with_timing(&d, false);
        e2.record(&s).unwrap();
        s.launch_host_func(move || {
            let b = s2.alloc::<f32>(16);
            let sync = s2.synchronize();
            let ev = e2.synchronize();
            let copy = b.as_ref().map(|b| b.to_vec());
            let _ = tx.send((
                b.is_ok(),
                sync.err(),
                ev.err(),
                copy.ok().and_then(|c| c.err()),
            ));
        })
        .unwrap();
        p.at("Stream::synchronize after the callback");
        s.synchronize().unwrap();
        let (alloc_ok, sync, ev, copy) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(alloc_ok, "allocating in a callback works");
        for e in [sync, ev, copy] {
            let e = e.expect("a wait from a callback fails");
            assert!(matches!(e, Error::NotSupported { .. }), "{e}");
            assert!(e.to_string().contains("host callback"), "{e}");
        }
        e.synchronize().unwrap();
    });
}

/// A scale-by-two graph over `x` into `y` on `s`.
fn scale_graph(
    s: &Stream,
    x: &knpu::DeviceBuffer<f32>,
    y: &mut knpu::DeviceBuffer<f32>,
) -> knpu::GraphExec {
    s.begin_capture(CaptureMode::Relaxed).unwrap();
    knpu::ops::scale(s, 2.0, x, y).unwrap();
    s.end_capture().unwrap().instantiate().unwrap()
}

#[test]
fn graph_instance_runs_again_after_a_faulted_launch() {
    isolated(
        "graph_instance_runs_again_after_a_faulted_launch",
        &[],
        "graph after a fault",
        60,
        |p| {
            let (d, s) = device_and_stream();
            let x = s.from_slice(&[1.0f32, 2.0, 3.0]).unwrap();
            let mut y = s.alloc_zeroed::<f32>(3).unwrap();
            let exec = scale_graph(&s, &x, &mut y);
            d.inject_fault(Fault::Kernel { n: 1, kernel_id: 0 })
                .unwrap();
            exec.launch(&s).unwrap();
            p.at("synchronize after the faulted launch");
            let e = s.synchronize().unwrap_err();
            assert!(matches!(e, Error::KernelFault { .. }), "{e}");
            let other = Stream::new(&d).unwrap();
            for (i, stream) in [&s, &other, &s, &s].into_iter().enumerate() {
                p.at(format!("launch {i} after the fault"));
                exec.launch(stream).unwrap();
                stream.synchronize().unwrap();
                assert_eq!(y.to_vec().unwrap(), vec![2.0, 4.0, 6.0]);
            }
        },
    );
}

#[test]
fn forked_graph_instance_runs_again_after_a_faulted_launch() {
    isolated(
        "forked_graph_instance_runs_again_after_a_faulted_launch",
        &[],
        "forked graph after a fault",
        60,
        |p| {
            let (d, s1, s2) = device_and_two_streams();
            let x = s1.from_slice(&[1.0f32, 2.0, 3.0]).unwrap();
            let mut a = s1.alloc_zeroed::<f32>(3).unwrap();
            let mut b = s1.alloc_zeroed::<f32>(3).unwrap();
            s1.synchronize().unwrap();
            s1.begin_capture(CaptureMode::Relaxed).unwrap();
            wait_for(&s2, &s1).unwrap();
            knpu::ops::scale(&s1, 2.0, &x, &mut a).unwrap();
            knpu::ops::scale(&s2, 3.0, &x, &mut b).unwrap();
            wait_for(&s1, &s2).unwrap();
            let exec = s1.end_capture().unwrap().instantiate().unwrap();
            assert!(exec.queue_count() > 1);
            for kernel in 1..=2 {
                d.inject_fault(Fault::Kernel {
                    n: kernel,
                    kernel_id: 0,
                })
                .unwrap();
                exec.launch(&s1).unwrap();
                p.at("synchronize after a faulted launch");
                let e = s1.synchronize().unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::KernelFault { .. } | Error::DependencyFailed { .. }
                    ),
                    "{e}"
                );
                for i in 0..3 {
                    p.at(format!("launch {i} after fault {kernel}"));
                    exec.launch(&s1).unwrap();
                    s1.synchronize().unwrap();
                    assert_eq!(a.to_vec().unwrap(), vec![2.0, 4.0, 6.0]);
                    assert_eq!(b.to_vec().unwrap(), vec![3.0, 6.0, 9.0]);
                }
            }
        },
    );
}

#[test]
fn blocks_freed_on_different_streams_coalesce_and_go_back_to_the_driver() {
    isolated(
        "blocks_freed_on_different_streams_coalesce_and_go_back_to_the_driver",
        &[],
        "cross-stream coalescing",
        60,
        |_| {
            let (d, s1, s2) = device_and_two_streams();
            let a = s1.alloc::<f32>(1000).unwrap();
            let b = s2.alloc::<f32>(1000).unwrap();
            drop(a);
            drop(b);
            s1.synchronize().unwrap();
            s2.synchronize().unwrap();
            d.empty_cache().unwrap();
            assert_eq!(d.memory_stats().reserved_bytes, 0);
        },
    );
}

#[test]
fn memory_freed_on_alternating_streams_serves_a_large_allocation() {
    isolated(
        "memory_freed_on_alternating_streams_serves_a_large_allocation",
        &[("KNPU_SIM_MEMORY", "64M")],
        "alternating streams in 64 MiB",
        60,
        |p| {
            let d = dev();
            let streams = [Stream::new(&d).unwrap(), Stream::new(&d).unwrap()];
            let bufs: Vec<_> = (0..200)
                .map(|i| streams[i % 2].alloc::<u8>(256 << 10).unwrap())
                .collect();
            drop(bufs);
            for s in &streams {
                s.synchronize().unwrap();
            }
            p.at("alloc of 48 MiB");
            let big = streams[0].alloc::<u8>(48 << 20).unwrap();
            drop(big);
            streams[0].synchronize().unwrap();
            d.empty_cache().unwrap();
            let st = d.memory_stats();
            assert_eq!((st.allocated_bytes, st.reserved_bytes), (0, 0), "{st:?}");
        },
    );
}

#[test]
fn joined_stream_leaves_a_capture_whose_origin_was_dropped() {
    bounded("dead capture", 60, |p| {
        let (d, origin, joined) = device_and_two_streams();
        origin.begin_capture(CaptureMode::Relaxed).unwrap();
        let fork = Event::with_timing(&d, false);
        fork.record(&origin).unwrap();
        joined.wait_event(&fork).unwrap();
        assert!(joined.is_capturing());
        drop(origin);
        assert!(!joined.is_capturing());
        p.at("synchronize on the joined stream");
        let e = joined.synchronize().unwrap_err();
        assert!(matches!(e, Error::Capture { .. }), "{e}");
        assert!(e.to_string().contains("destroyed"), "{e}");
        joined.synchronize().unwrap();
        let x = joined.from_slice(&[1.0f32, 2.0]).unwrap();
        let mut y = joined.alloc::<f32>(2).unwrap();
        knpu::ops::scale(&joined, 3.0, &x, &mut y).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![3.0, 6.0]);
        // It can capture again.
        joined.begin_capture(CaptureMode::Relaxed).unwrap();
        knpu::ops::scale(&joined, 3.0, &x, &mut y).unwrap();
        joined.end_capture().unwrap();
    });
}

#[test]
fn raw_copy_past_the_end_of_a_buffer_is_refused() {
    bounded("raw ranges", 60, |_| {
        let (d, s) = device_and_stream();
        let b = s.from_slice(&(0..=255u8).collect::<Vec<_>>()).unwrap();
        let base = b.device_address();
        let mut out = [0u8; 64];
        let e = s.memcpy_dtoh_raw(&mut out, base + 256).unwrap_err();
        assert!(matches!(e, Error::IllegalAddress { .. }), "{e}");
        assert!(e.to_string().contains(&format!("{:#x}", base + 256)), "{e}");
        let e = s.memcpy_dtoh_raw(&mut out, base + 224).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
        s.memcpy_dtoh_raw(&mut out, base + 192).unwrap();
        assert_eq!(out[0], 192);
        assert!(s.memcpy_htod_raw(base + 250, &[0u8; 7]).is_err());
        let r = d.resolve_range(base + 16, 16).unwrap();
        assert_eq!((r.base, r.size, r.offset), (base, 256, 16));
        assert!(d.resolve_range(base + 256, 0).is_ok());
        let e = d.resolve_range(8, 1).unwrap_err();
        assert!(e.to_string().contains("not in any allocation"), "{e}");
        drop(b);
        let e = d.resolve_range(base + 16, 16).unwrap_err();
        assert!(e.to_string().contains("freed"), "{e}");
    });
}

#[test]
fn stream_limit_error_names_the_limit() {
    isolated(
        "stream_limit_error_names_the_limit",
        &[],
        "stream limit",
        60,
        |_| {
            let d = dev();
            let limit = d.attribute(knpu::Attribute::MaxQueues).unwrap();
            let mut streams = Vec::new();
            let err = loop {
                match Stream::new(&d) {
                    Ok(s) => streams.push(s),
                    Err(e) => break e,
                }
                assert!(streams.len() <= limit as usize, "no limit reached");
            };
            assert!(matches!(err, Error::NotSupported { .. }), "{err}");
            assert!(err.to_string().contains(&limit.to_string()), "{err}");
            streams.pop();
            Stream::new(&d).unwrap();
        },
    );
}

#[test]
fn wait_on_an_event_of_an_ended_capture_agrees_with_query() {
    bounded("event of an ended capture", 60, |_| {
        let (d, s, other) = device_and_two_streams();
        let x = s.from_slice(&[1.0f32]).unwrap();
        let mut y = s.alloc::<f32>(1).unwrap();
        let e = Event::with_timing(&d, false);
        s.begin_capture(CaptureMode::Relaxed).unwrap();
        knpu::ops::scale(&s, 2.0, &x, &mut y).unwrap();
        e.record(&s).unwrap();
        let _graph = s.end_capture().unwrap();
        let q = e.query().unwrap_err();
        let w = other.wait_event(&e).unwrap_err();
        assert!(matches!(q, Error::Capture { .. }), "{q}");
        assert!(matches!(w, Error::Capture { .. }), "{w}");
        assert!(matches!(e.synchronize(), Err(Error::Capture { .. })));
        other.synchronize().unwrap();
    });
}
