//! Misuse cases, each in a child process of this test binary: a wrong call must give a clear
//! error and leave the runtime usable. A panic, an abort or a hang of a case is its failure,
//! reported by name, and the other cases still run.

use crate::common::{bounded, child_case, device_and_stream, run_child};
use knpu::{CaptureMode, Device, Error, Event, Graph, Stream};

type Case = fn() -> Result<(), String>;

fn dev() -> Device {
    knpu::device(0).unwrap()
}

/// `r` must be an error of the kind `want` names.
fn expect_err<T>(r: knpu::Result<T>, want: &str) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("expected a {want} error, got Ok")),
        Err(e) if e.name() == want => Ok(()),
        Err(e) => Err(format!("expected a {want} error, got {}: {e}", e.name())),
    }
}

/// The stream still works after the misuse.
fn still_works(s: &Stream) -> Result<(), String> {
    let x = s.from_slice(&[1.0f32, 2.0]).map_err(|e| e.to_string())?;
    let mut y = s.alloc::<f32>(2).map_err(|e| e.to_string())?;
    knpu::ops::scale(s, 2.0, &x, &mut y).map_err(|e| e.to_string())?;
    match y.to_vec() {
        Ok(v) if v == [2.0, 4.0] => Ok(()),
        other => Err(format!("stream unusable after the misuse: {other:?}")),
    }
}

const CASES: &[(&str, Case)] = &[
    ("capture_begun_twice", || {
        let s = Stream::new(&dev()).unwrap();
        s.begin_capture(CaptureMode::Relaxed).unwrap();
        expect_err(s.begin_capture(CaptureMode::Relaxed), "Capture")?;
        s.end_capture().map_err(|e| e.to_string())?;
        still_works(&s)
    }),
    ("end_capture_without_capture", || {
        let s = Stream::new(&dev()).unwrap();
        expect_err(s.end_capture(), "Capture")?;
        still_works(&s)
    }),
    ("end_capture_on_a_joined_stream", || {
        let d = dev();
        let (a, b) = (Stream::new(&d).unwrap(), Stream::new(&d).unwrap());
        a.begin_capture(CaptureMode::Relaxed).unwrap();
        let e = Event::with_timing(&d, false);
        e.record(&a).unwrap();
        b.wait_event(&e).unwrap();
        let mut y = b.alloc::<f32>(1).unwrap();
        b.memset(&mut y, 1.0f32).unwrap();
        expect_err(b.end_capture(), "Capture")?;
        expect_err(a.end_capture(), "Capture")?; // b never joined back
        still_works(&a)?;
        still_works(&b)
    }),
    ("synchronize_during_capture", || {
        let s = Stream::new(&dev()).unwrap();
        s.begin_capture(CaptureMode::Global).unwrap();
        expect_err(s.synchronize(), "Capture")?;
        expect_err(s.end_capture(), "Capture")?;
        still_works(&s)
    }),
    ("device_synchronize_during_global_capture", || {
        let (d, s) = device_and_stream();
        s.begin_capture(CaptureMode::Global).unwrap();
        expect_err(d.synchronize(), "Capture")?;
        expect_err(s.end_capture(), "Capture")?;
        d.synchronize().map_err(|e| e.to_string())?;
        still_works(&s)
    }),
    ("origin_of_a_global_capture_dropped", || {
        let (d, s) = device_and_stream();
        s.begin_capture(CaptureMode::Global).unwrap();
        drop(s);
        // The capture ended with its stream: strict mode no longer refuses calls.
        d.synchronize().map_err(|e| e.to_string())?;
        still_works(&Stream::new(&d).unwrap())
    }),
    ("one_shot_callback_during_capture", || {
        let s = Stream::new(&dev()).unwrap();
        s.begin_capture(CaptureMode::Relaxed).unwrap();
        expect_err(s.launch_host_func(|| {}), "Capture")?;
        expect_err(s.end_capture(), "Capture")?;
        still_works(&s)
    }),
    ("graph_launched_on_a_capturing_stream", || {
        let (d, s) = device_and_stream();
        let g = Graph::new(&d);
        g.add_empty(&[]).unwrap();
        let exec = g.instantiate().map_err(|e| e.to_string())?;
        s.begin_capture(CaptureMode::Relaxed).unwrap();
        expect_err(exec.launch(&s), "Capture")?;
        let _ = s.end_capture();
        still_works(&s)
    }),
    ("graph_with_a_cycle", || {
        let g = Graph::new(&dev());
        let a = g.add_empty(&[]).unwrap();
        let b = g.add_empty(&[a]).unwrap();
        g.add_dependency(b, a).unwrap();
        expect_err(g.instantiate(), "InvalidValue")
    }),
    ("graph_node_that_does_not_exist", || {
        let g = Graph::new(&dev());
        expect_err(g.add_empty(&[knpu::NodeId::from_index(3)]), "InvalidValue")?;
        expect_err(g.dependencies(knpu::NodeId::from_index(0)), "InvalidValue")
    }),
    ("kernel_params_set_on_a_non_kernel_node", || {
        let d = dev();
        let g = Graph::new(&d);
        let n = g.add_empty(&[]).unwrap();
        let exec = g.instantiate().unwrap();
        let s = Stream::new(&d).unwrap();
        let x = s.from_slice(&[1.0f32]).unwrap();
        let mut y = s.alloc::<f32>(1).unwrap();
        expect_err(
            exec.set_kernel_params(n, |r| knpu::ops::scale(r, 1.0, &x, &mut y)),
            "InvalidValue",
        )
    }),
    ("slice_out_of_range", || {
        let s = Stream::new(&dev()).unwrap();
        let b = s.alloc::<f32>(10).unwrap();
        expect_err(b.slice(5..11).map(|_| ()), "InvalidValue")?;
        #[allow(clippy::reversed_empty_ranges)]
        let r = b.slice(7..3).map(|_| ());
        expect_err(r, "InvalidValue")?;
        expect_err(b.slice(usize::MAX..).map(|_| ()), "InvalidValue")
    }),
    ("copy_of_mismatched_lengths", || {
        let s = Stream::new(&dev()).unwrap();
        let mut b = s.alloc::<f32>(10).unwrap();
        expect_err(s.memcpy_htod(&mut b, &[0.0; 9]), "Shape")?;
        let mut out = vec![0.0f32; 11];
        expect_err(s.memcpy_dtoh(&mut out, &b), "Shape")?;
        still_works(&s)
    }),
    ("copy_within_out_of_range", || {
        let s = Stream::new(&dev()).unwrap();
        let mut b = s.alloc::<f32>(10).unwrap();
        expect_err(s.copy_within(&mut b, 5, 0, 6), "InvalidValue")?;
        expect_err(s.copy_within(&mut b, 0, usize::MAX, 2), "InvalidValue")?;
        still_works(&s)
    }),
    ("raw_copies_to_bad_addresses", || {
        let s = Stream::new(&dev()).unwrap();
        let mut out = [0u8; 16];
        expect_err(s.memcpy_dtoh_raw(&mut out, 0), "IllegalAddress")?;
        expect_err(
            s.memcpy_htod_raw(u64::MAX - 4, &[1u8; 16]),
            "IllegalAddress",
        )?;
        let b = s.alloc::<u8>(64).unwrap();
        let a = b.device_address();
        drop(b);
        expect_err(s.memcpy_dtoh_raw(&mut out, a), "IllegalAddress")?;
        still_works(&s)
    }),
    ("allocations_no_device_holds", || {
        let s = Stream::new(&dev()).unwrap();
        expect_err(s.alloc::<u8>(usize::MAX), "OutOfMemory")?;
        expect_err(s.alloc::<u64>(usize::MAX), "InvalidValue")?;
        expect_err(s.alloc::<u8>(1 << 62), "OutOfMemory")?;
        let empty = s.alloc::<f32>(0).map_err(|e| e.to_string())?;
        if empty.device_address() != 0 || !empty.to_vec().unwrap().is_empty() {
            return Err("an empty buffer has memory".into());
        }
        still_works(&s)
    }),
    ("fill_with_an_unsupported_element_size", || {
        let s = Stream::new(&dev()).unwrap();
        let mut b = s.alloc::<[u8; 3]>(4).unwrap();
        expect_err(s.memset(&mut b, [1, 2, 3]), "NotSupported")?;
        still_works(&s)
    }),
    ("timing_of_events_never_recorded_or_without_timing", || {
        let (d, s) = device_and_stream();
        let (a, b) = (Event::new(&d), Event::new(&d));
        expect_err(Event::elapsed_ms(&a, &b), "InvalidValue")?;
        let (c, e) = (Event::with_timing(&d, false), Event::with_timing(&d, false));
        c.record(&s).unwrap();
        e.record(&s).unwrap();
        s.synchronize().unwrap();
        expect_err(Event::elapsed_ms(&c, &e), "InvalidValue")
    }),
    ("panic_inside_a_host_callback", || {
        let s = Stream::new(&dev()).unwrap();
        s.launch_host_func(|| panic!("a callback's own failure"))
            .unwrap();
        s.synchronize().map_err(|e| e.to_string())?;
        still_works(&s)
    }),
    ("synchronize_inside_a_host_callback", || {
        let s = Stream::new(&dev()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = s.clone();
        s.launch_host_func(move || {
            let _ = tx.send(inner.synchronize());
        })
        .unwrap();
        s.synchronize().map_err(|e| e.to_string())?;
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        expect_err(r, "NotSupported")?;
        still_works(&s)
    }),
    ("last_stream_handle_dropped_inside_its_own_callback", || {
        let (d, s) = device_and_stream();
        let (tx, rx) = std::sync::mpsc::channel();
        let gone = s.clone();
        let mut b = s.alloc::<u32>(16).unwrap();
        s.memcpy_htod_owned(&mut b, vec![5u32; 16]).unwrap();
        s.launch_host_func(move || {
            drop(gone);
            let _ = tx.send(());
        })
        .unwrap();
        drop(s);
        drop(b);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        still_works(&Stream::new(&d).unwrap())
    }),
    ("buffers_dropped_with_work_pending", || {
        let (_d, s) = device_and_stream();
        for _ in 0..50 {
            let x = s.from_slice(&[3.0f32; 4096]).unwrap();
            let mut y = s.alloc::<f32>(4096).unwrap();
            knpu::ops::scale(&s, 2.0, &x, &mut y).unwrap();
        }
        still_works(&s)
    }),
    ("operands_aliasing_the_output", || {
        let s = Stream::new(&dev()).unwrap();
        let mut b = s.from_slice(&[1.0f32, 2.0]).unwrap();
        let c = s.from_slice(&[1.0f32, 1.0]).unwrap();
        let r = b.slice(..).map(|v| v.len());
        if r != Ok(2) {
            return Err(format!("{r:?}"));
        }
        let mut out = s.alloc::<f32>(2).unwrap();
        knpu::ops::add(&s, &b, &c, &mut out).map_err(|e| e.to_string())?;
        s.memcpy_dtod(&mut b, &out).map_err(|e| e.to_string())?;
        match b.to_vec() {
            Ok(v) if v == [2.0, 3.0] => still_works(&s),
            other => Err(format!("{other:?}")),
        }
    }),
    ("error_codes_are_stable", || {
        let e = Error::InvalidValue {
            detail: String::new(),
        };
        if e.code() != 1 || e.name() != "InvalidValue" {
            return Err("codes changed".into());
        }
        Ok(())
    }),
];

/// Runs every misuse case in a child process; reports every failing case.
#[test]
fn misuse_cases_fail_cleanly_in_child_processes() {
    if let Some(case) = child_case() {
        let (_, f) = CASES
            .iter()
            .find(|(name, _)| *name == case)
            .unwrap_or_else(|| panic!("no misuse case `{case}`"));
        if let Err(why) = bounded(&case, 30, move |_| f()) {
            panic!("misuse case `{case}`: {why}");
        }
        return;
    }
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|(name, _)| {
            let r = run_child(
                "misuse::misuse_cases_fail_cleanly_in_child_processes",
                name,
                &[],
                60,
            );
            (!r.ok).then_some(r.output)
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} misuse cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n---\n")
    );
}
