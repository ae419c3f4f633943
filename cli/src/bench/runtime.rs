//! `knpu bench runtime`: the costs every launch pays, and copy bandwidth.
//!
//! - `launch_async`: host time to queue one tiny kernel (the queue is drained outside the
//!   timed region);
//! - `launch_sync`: queue one tiny kernel and wait for it (a full round trip);
//! - `event_record`: record an event without timing, and with timing;
//! - `alloc_free`: a cached allocation and its free;
//! - `copy_h2d` / `copy_d2h`: blocking copies of 1 MiB to 256 MiB, beside `host_memcpy`, a
//!   single-threaded copy between two host buffers of the same size, in the same run.

use super::{err, host_s_per_item, time_batched, time_median, tiny_add_operands, Record, Sink};
use std::time::Duration;

/// Runs the suite.
pub fn run(opts: &super::QuickOpts, sink: &mut Sink) -> Result<(), String> {
    let quick = opts.quick;
    let dev = knpu::device(0).map_err(err)?;
    let s = knpu::Stream::new(&dev).map_err(err)?;
    let [a, b, mut o] = tiny_add_operands(&s)?;
    let samples = if quick { 5 } else { 15 };

    // Async launch: time a batch of launches, then drain outside the timed region.
    let batch = 200;
    let med = host_s_per_item(&s, samples, batch, || {
        (0..batch).try_for_each(|_| knpu::ops::add(&s, &a, &b, &mut o))
    })?;
    sink.emit(Record {
        bench: "runtime",
        case: case! {"op" => "launch_async"},
        runs: samples,
        median_s: med,
        rates: vec![("us", med * 1e6)],
    });

    let mut failure = None;
    let (runs, med) = time_batched(samples, 200, || {
        if let Err(e) = knpu::ops::add(&s, &a, &b, &mut o).and_then(|_| s.synchronize()) {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(err(e));
    }
    sink.emit(Record {
        bench: "runtime",
        case: case! {"op" => "launch_sync"},
        runs,
        median_s: med,
        rates: vec![("us", med * 1e6)],
    });

    for timing in [false, true] {
        let e = knpu::Event::with_timing(&dev, timing);
        let (runs, med) = time_batched(samples, 200, || {
            let _ = e.record(&s);
        });
        s.synchronize().map_err(err)?;
        sink.emit(Record {
            bench: "runtime",
            case: case! {"op" => "event_record", "timing" => timing},
            runs,
            median_s: med,
            rates: vec![("us", med * 1e6)],
        });
    }

    let (runs, med) = time_batched(samples, 10_000, || {
        drop(std::hint::black_box(s.alloc::<f32>(1024)));
    });
    sink.emit(Record {
        bench: "runtime",
        case: case! {"op" => "alloc_free", "bytes" => 4096},
        runs,
        median_s: med,
        rates: vec![("us", med * 1e6)],
    });

    let sizes: &[usize] = if quick {
        &[1 << 20, 16 << 20]
    } else {
        &[1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20]
    };
    for &bytes in sizes {
        let n = bytes / 4;
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut host = vec![0f32; n];
        let mut devbuf = s.alloc::<f32>(n).map_err(err)?;
        let runs = if bytes >= 64 << 20 { 5 } else { 9 };
        let (r, memcpy_s) = time_median(runs, 50, Duration::from_millis(200), || {
            host.copy_from_slice(std::hint::black_box(&src));
        });
        let memcpy_gbps = bytes as f64 / memcpy_s / 1e9;
        sink.emit(Record {
            bench: "runtime",
            case: case! {"op" => "host_memcpy", "bytes" => bytes},
            runs: r,
            median_s: memcpy_s,
            rates: vec![("gbps", memcpy_gbps)],
        });
        let mut failure = None;
        let (r, h2d) = time_median(runs, 50, Duration::from_millis(200), || {
            if let Err(e) = s.memcpy_htod(&mut devbuf, &src) {
                failure = Some(e);
            }
        });
        let (r2, d2h) = time_median(runs, 50, Duration::from_millis(200), || {
            if let Err(e) = s.memcpy_dtoh(&mut host, &devbuf) {
                failure = Some(e);
            }
        });
        if let Some(e) = failure {
            return Err(err(e));
        }
        for (op, runs, t) in [("copy_h2d", r, h2d), ("copy_d2h", r2, d2h)] {
            let gbps = bytes as f64 / t / 1e9;
            sink.emit(Record {
                bench: "runtime",
                case: case! {"op" => op, "bytes" => bytes},
                runs,
                median_s: t,
                rates: vec![("gbps", gbps), ("vs_memcpy", gbps / memcpy_gbps)],
            });
        }
    }
    Ok(())
}
