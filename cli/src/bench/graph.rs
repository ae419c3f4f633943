//! `knpu bench graph`: host time per node, eager launches against a replayed graph.
//!
//! For N tiny kernels (elementwise add over 16 floats), `eager` is the host time of N
//! launches one by one on a stream, and `graph` the host time of one launch of a graph of
//! the same N kernels; both are divided by N. The device work is drained outside the timed
//! region. Records carry `mode`, `nodes` and the rate `us` (host microseconds per node).

use super::{Record, Sink};
use knpu::{CaptureMode, Stream};

fn err(e: knpu::Error) -> String {
    e.to_string()
}

/// Runs the suite.
pub fn run(opts: &super::QuickOpts, sink: &mut Sink) -> Result<(), String> {
    let quick = opts.quick;
    let dev = knpu::device(0).map_err(err)?;
    let s = Stream::new(&dev).map_err(err)?;
    let a = s.from_slice(&[1.0f32; 16]).map_err(err)?;
    let b = s.from_slice(&[2.0f32; 16]).map_err(err)?;
    let mut o = s.alloc::<f32>(16).map_err(err)?;
    let samples = if quick { 5 } else { 15 };
    for n in [10usize, 100, 1000] {
        let mut eager = Vec::new();
        for _ in 0..samples + 2 {
            s.synchronize().map_err(err)?;
            let t = std::time::Instant::now();
            for _ in 0..n {
                knpu::ops::add(&s, &a, &b, &mut o).map_err(err)?;
            }
            eager.push(t.elapsed().as_secs_f64() / n as f64);
        }
        s.synchronize().map_err(err)?;
        let eager_s = super::median(&mut eager[2..]);
        sink.emit(Record {
            bench: "graph",
            case: crate::case! {"mode" => "eager", "nodes" => n},
            runs: samples,
            median_s: eager_s * n as f64,
            rates: vec![("us", eager_s * 1e6)],
        });

        s.begin_capture(CaptureMode::ThreadLocal).map_err(err)?;
        for _ in 0..n {
            knpu::ops::add(&s, &a, &b, &mut o).map_err(err)?;
        }
        let g = s.end_capture().map_err(err)?;
        let exec = g.instantiate().map_err(err)?;
        let mut replay = Vec::new();
        for _ in 0..samples + 2 {
            s.synchronize().map_err(err)?;
            let t = std::time::Instant::now();
            exec.launch(&s).map_err(err)?;
            replay.push(t.elapsed().as_secs_f64() / n as f64);
        }
        s.synchronize().map_err(err)?;
        let graph_s = super::median(&mut replay[2..]);
        sink.emit(Record {
            bench: "graph",
            case: crate::case! {"mode" => "graph", "nodes" => n},
            runs: samples,
            median_s: graph_s * n as f64,
            rates: vec![
                ("us", graph_s * 1e6),
                ("speedup_vs_eager", eager_s / graph_s),
            ],
        });
    }
    Ok(())
}
