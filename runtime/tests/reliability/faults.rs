//! Fault injection (kernel faults, allocation failures, device loss) and the allocator's
//! accounting at the end. Each runs in a child process: faults are armed device-wide, and
//! the totals must see no other test's memory.

use crate::common::{bounded, child_case, data, device_and_stream, expect_child_passes, Progress};
use knpu::{CaptureMode, Device, Error, Fault, Stream};

fn dev() -> Device {
    knpu::device(0).unwrap()
}

/// Runs `body` as `test` in a child process of its own, bounded to `secs` seconds (`part`
/// names it in the watchdog's report).
fn isolated(test: &str, part: &str, secs: u64, body: impl FnOnce(&Progress) + Send + 'static) {
    if child_case().is_some() {
        bounded(part, secs, body);
    } else {
        expect_child_passes(&format!("faults::{test}"), test, &[], 90);
    }
}

#[test]
fn kernel_faults_surface_once_and_leave_stream_and_graph_usable() {
    isolated(
        "kernel_faults_surface_once_and_leave_stream_and_graph_usable",
        "kernel faults",
        60,
        |p| {
            let (d, s) = device_and_stream();
            let x = s.from_slice(&data(1, 500)).unwrap();
            let mut y = s.alloc::<f32>(500).unwrap();
            let want: Vec<f32> = data(1, 500).iter().map(|v| v * 2.0).collect();
            s.begin_capture(CaptureMode::Relaxed).unwrap();
            knpu::ops::scale(&s, 2.0, &x, &mut y).unwrap();
            let exec = s.end_capture().unwrap().instantiate().unwrap();
            for round in 0..20 {
                p.at(format!("round {round}: eager launch with a fault armed"));
                d.inject_fault(Fault::Kernel { n: 1, kernel_id: 0 })
                    .unwrap();
                knpu::ops::scale(&s, 2.0, &x, &mut y).unwrap();
                let e = s.synchronize().unwrap_err();
                assert!(matches!(e, Error::KernelFault { .. }), "{e}");
                s.synchronize().unwrap();
                knpu::ops::scale(&s, 2.0, &x, &mut y).unwrap();
                assert_eq!(y.to_vec().unwrap(), want);

                p.at(format!("round {round}: graph launch with a fault armed"));
                d.inject_fault(Fault::Kernel { n: 1, kernel_id: 0 })
                    .unwrap();
                exec.launch(&s).unwrap();
                let e = s.synchronize().unwrap_err();
                assert!(matches!(e, Error::KernelFault { .. }), "{e}");
                assert!(e.to_string().len() < 300, "the message grows: {e}");
                exec.launch(&s).unwrap();
                s.synchronize().unwrap();
                assert_eq!(y.to_vec().unwrap(), want);
            }
        },
    );
}

#[test]
fn allocation_failures_are_retried_then_reported_with_figures() {
    isolated(
        "allocation_failures_are_retried_then_reported_with_figures",
        "allocation failures",
        60,
        |p| {
            let (d, s) = device_and_stream();
            // A cached segment, so the retry has something to release.
            drop(s.alloc::<u8>(4 << 20).unwrap());
            s.synchronize().unwrap();
            let before = d.memory_stats();
            d.inject_fault(Fault::FailAlloc(1)).unwrap();
            p.at("alloc with one driver allocation failing");
            let b = s.alloc::<u8>(32 << 20).unwrap();
            let after = d.memory_stats();
            assert_eq!(after.num_alloc_retries, before.num_alloc_retries + 1);
            drop(b);
            p.at("alloc larger than the device");
            let (_, total) = d.memory_info().unwrap();
            match s.alloc::<u8>(total as usize + 1) {
                Err(Error::OutOfMemory {
                    requested,
                    total: t,
                    ..
                }) => {
                    assert_eq!((requested, t), (total + 1, total))
                }
                other => panic!("expected OutOfMemory, got {other:?}"),
            }
            let v = s.from_slice(&[7u32; 64]).unwrap();
            assert_eq!(v.to_vec().unwrap(), vec![7u32; 64]);
        },
    );
}

#[test]
fn device_loss_fails_every_call_fast_and_drops_stay_safe() {
    isolated(
        "device_loss_fails_every_call_fast_and_drops_stay_safe",
        "device loss",
        60,
        |p| {
            let (d, s) = device_and_stream();
            let x = s.from_slice(&[1.0f32; 64]).unwrap();
            let mut y = s.alloc::<f32>(64).unwrap();
            d.inject_fault(Fault::LoseDevice).unwrap();
            p.at("work after the loss");
            let r = knpu::ops::scale(&s, 2.0, &x, &mut y).and_then(|_| s.synchronize());
            assert!(r.unwrap_err().is_device_lost());
            assert!(d.is_lost());
            assert!(s.synchronize().unwrap_err().is_device_lost());
            assert!(s.alloc::<f32>(4).unwrap_err().is_device_lost());
            assert!(Stream::new(&d).unwrap_err().is_device_lost());
            p.at("drops after the loss");
            drop(x);
            drop(y);
            drop(s);
            d.empty_cache().unwrap();
        },
    );
}

#[test]
fn accounting_returns_to_zero_after_a_mixed_run() {
    isolated(
        "accounting_returns_to_zero_after_a_mixed_run",
        "accounting",
        90,
        |p| {
            let d = dev();
            let (free_at_start, _) = d.memory_info().unwrap();
            {
                let streams: Vec<Stream> = (0..3).map(|_| Stream::new(&d).unwrap()).collect();
                let mut keep = Vec::new();
                for i in 0..150 {
                    p.at(format!("mixed step {i}"));
                    let s = &streams[i % 3];
                    let n = 1 + (i * 7919) % (300_000);
                    let x = s.from_slice(&data(i, n)).unwrap();
                    let mut y = s.alloc::<f32>(n).unwrap();
                    if i % 17 == 5 {
                        // Other streams' kernels must not take the armed fault.
                        d.synchronize().unwrap();
                        d.inject_fault(Fault::Kernel { n: 1, kernel_id: 0 })
                            .unwrap();
                    }
                    knpu::ops::scale(s, 0.5, &x, &mut y).unwrap();
                    if i % 17 == 5 {
                        assert!(s.synchronize().is_err());
                    }
                    if i % 4 == 0 {
                        keep.push(y);
                    }
                    if keep.len() > 8 {
                        keep.remove(0);
                    }
                    if i % 25 == 0 {
                        s.begin_capture(CaptureMode::Relaxed).unwrap();
                        let t = s.alloc::<f32>(n).unwrap();
                        drop(t);
                        let g = s.end_capture().unwrap();
                        let exec = g.instantiate().unwrap();
                        exec.launch(s).unwrap();
                    }
                }
                p.at("device synchronize");
                d.synchronize().unwrap();
            }
            let st = d.memory_stats();
            assert_eq!((st.allocated_bytes, st.active_blocks), (0, 0), "{st:?}");
            p.at("empty_cache");
            d.empty_cache().unwrap();
            let st = d.memory_stats();
            assert_eq!((st.reserved_bytes, st.segments), (0, 0), "{st:?}");
            assert_eq!(d.memory_info().unwrap().0, free_at_start);
        },
    );
}
