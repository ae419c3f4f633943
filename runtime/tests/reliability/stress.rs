//! Concurrency stress, compared bit for bit with a sequential run, and graph replay from
//! several threads.

use crate::common::{bounded, data, device_and_stream, device_and_two_streams, Progress};
use knpu::{CaptureMode, Device, Event, Stream};
use std::sync::Arc;

const THREADS: usize = 4;
const ITERS: usize = 40;
const N: usize = 777;

fn dev() -> Device {
    knpu::device(0).unwrap()
}

/// One step of the workload on two streams: `z = 2x + x`, with an event handing `y` from
/// `a` to `b`, and `x` and `y` dropped while the work that reads them is still queued.
fn step(a: &Stream, b: &Stream, seed: usize, p: &Progress) -> Vec<f32> {
    let d = a.device();
    p.at(format!("step {seed}: from_slice"));
    let x = a.from_slice(&data(seed, N)).unwrap();
    let mut y = a.alloc::<f32>(N).unwrap();
    p.at(format!("step {seed}: scale"));
    knpu::ops::scale(a, 2.0, &x, &mut y).unwrap();
    let ready = Event::with_timing(d, false);
    ready.record(a).unwrap();
    p.at(format!("step {seed}: wait_event"));
    b.wait_event(&ready).unwrap();
    let mut z = b.alloc::<f32>(N).unwrap();
    p.at(format!("step {seed}: add"));
    knpu::ops::add(b, &y, &x, &mut z).unwrap();
    // Frees while the add is pending: the blocks must not be reused before it is done.
    drop(x);
    drop(y);
    // Churn the allocator on the first stream while the add may still run.
    let scratch = a.alloc_zeroed::<f32>(N).unwrap();
    drop(scratch);
    p.at(format!("step {seed}: to_vec"));
    z.to_vec().unwrap()
}

#[test]
fn concurrent_streams_events_and_frees_match_a_sequential_run() {
    let expected: Vec<Vec<f32>> = bounded("sequential reference", 120, |p| {
        let (_d, s) = device_and_stream();
        (0..THREADS * ITERS).map(|i| step(&s, &s, i, p)).collect()
    });
    let expected = Arc::new(expected);
    bounded("concurrency stress", 150, move |p| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let p = p.child(format!("thread {t}"));
                let expected = expected.clone();
                std::thread::spawn(move || {
                    let (_d, a, b) = device_and_two_streams();
                    let mut mismatches = 0;
                    for i in 0..ITERS {
                        let seed = t * ITERS + i;
                        let got = step(&a, &b, seed, &p);
                        let same = got
                            .iter()
                            .zip(&expected[seed])
                            .all(|(g, e)| g.to_bits() == e.to_bits());
                        mismatches += usize::from(!same);
                    }
                    p.at("done");
                    mismatches
                })
            })
            .collect();
        let mismatches: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(mismatches, 0, "results differ from the sequential run");
    });
}

#[test]
fn one_graph_instance_replayed_from_several_threads_counts_every_launch() {
    bounded("graph replay from threads", 150, |p| {
        let (d, s) = device_and_stream();
        let one = s.from_slice(&vec![1.0f32; N]).unwrap();
        let mut acc = s.alloc_zeroed::<f32>(N).unwrap();
        let mut tmp = s.alloc::<f32>(N).unwrap();
        s.synchronize().unwrap();
        // acc += 1, through tmp.
        s.begin_capture(CaptureMode::ThreadLocal).unwrap();
        knpu::ops::add(&s, &acc, &one, &mut tmp).unwrap();
        s.memcpy_dtod(&mut acc, &tmp).unwrap();
        let exec = Arc::new(s.end_capture().unwrap().instantiate().unwrap());
        const LAUNCHES: usize = 25;
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let exec = exec.clone();
                let p = p.child(format!("thread {t}"));
                std::thread::spawn(move || {
                    let stream = Stream::new(&dev()).unwrap();
                    for i in 0..LAUNCHES {
                        p.at(format!("GraphExec::launch {i}"));
                        exec.launch(&stream).unwrap();
                        if i % 5 == 4 {
                            p.at(format!("Stream::synchronize after launch {i}"));
                            stream.synchronize().unwrap();
                        }
                    }
                    p.at("final synchronize");
                    stream.synchronize().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        p.at("read the count");
        d.synchronize().unwrap();
        let want = (THREADS * LAUNCHES) as f32;
        assert!(acc.to_vec().unwrap().iter().all(|&v| v == want));
    });
}
