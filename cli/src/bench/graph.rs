//! `knpu bench graph`: host time per node, eager launches against a replayed graph.
//!
//! For N tiny kernels (elementwise add over 16 floats), `eager` is the host time of N
//! launches one by one on a stream, and `graph` the host time of one launch of a graph of
//! the same N kernels; both are divided by N. The device work is drained outside the timed
//! region. Records carry `mode`, `nodes` and the rate `us` (host microseconds per node).

use super::{err, host_s_per_item, tiny_add_operands, Record, Sink};
use knpu::{CaptureMode, Stream};

/// Runs the suite.
pub fn run(opts: &super::QuickOpts, sink: &mut Sink) -> Result<(), String> {
    let dev = knpu::device(0).map_err(err)?;
    let s = Stream::new(&dev).map_err(err)?;
    let [a, b, mut o] = tiny_add_operands(&s)?;
    let samples = if opts.quick { 5 } else { 15 };
    for n in [10usize, 100, 1000] {
        let eager_s = host_s_per_item(&s, samples, n, || {
            (0..n).try_for_each(|_| knpu::ops::add(&s, &a, &b, &mut o))
        })?;
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
        let graph_s = host_s_per_item(&s, samples, n, || exec.launch(&s))?;
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
