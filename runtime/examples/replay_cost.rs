//! The per-command cost of replaying a graph, for instruction counting under callgrind.
//!
//! Captures a graph of `NODES` tiny kernels (an elementwise add over 16 floats, so the
//! kernel itself is a few dozen instructions), instantiates it, and replays it `rounds`
//! times, draining the stream after each launch outside the counted functions. Wall-clock
//! time means little on a shared machine; the instruction counts of the launching thread
//! (inside `launches`) and of the queue's worker (inside `Worker::process`) divided by
//! `rounds * NODES` are the cost per replayed command:
//!
//! ```sh
//! cargo build --release -p knpu --example replay_cost
//! valgrind --tool=callgrind --separate-threads=yes --collect-atstart=no \
//!   --toggle-collect='*replay_cost*launches*' --toggle-collect='*Worker*process*' \
//!   target/release/examples/replay_cost 20
//! callgrind_annotate callgrind.out.<pid>-<thread>     # one file per thread
//! ```

use knpu::{CaptureMode, Stream};

/// Kernels in the graph: about a decode step's worth.
const NODES: usize = 400;

/// Launches `exec` once per round, draining the stream after each (the drain is counted too,
/// but it is a few hundred instructions against the launch's work).
#[inline(never)]
fn launches(exec: &knpu::GraphExec, s: &Stream, rounds: usize) -> knpu::Result<()> {
    for _ in 0..rounds {
        exec.launch(s)?;
        s.synchronize()?;
    }
    Ok(())
}

fn main() -> knpu::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let dev = knpu::device(0)?;
    let s = Stream::new(&dev)?;
    let a = s.from_slice(&[1.0f32; 16])?;
    let b = s.from_slice(&[2.0f32; 16])?;
    let mut o = s.alloc::<f32>(16)?;
    s.begin_capture(CaptureMode::ThreadLocal)?;
    for _ in 0..NODES {
        knpu::ops::add(&s, &a, &b, &mut o)?;
    }
    let exec = s.end_capture()?.instantiate()?;
    // One launch before counting: first-use costs (queue start, pool) stay out.
    exec.launch(&s)?;
    s.synchronize()?;
    launches(&exec, &s, rounds)?;
    println!("{rounds} launches of {NODES} commands");
    Ok(())
}
