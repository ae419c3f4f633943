//! The host cost of one launch, for instruction counting under callgrind.
//!
//! `launch_cost add|sgemm|memcpy [ROUNDS]` queues ROUNDS batches of 20 launches of one
//! kind on one stream, draining the stream between batches outside the counted function:
//! - `add`: `knpu::ops::add` over 16 floats (no broadcast);
//! - `sgemm`: `knpu::ops::gemm` at m = n = k = 64, f32;
//! - `memcpy`: `Stream::memcpy_htod_async` of 64 bytes.
//!
//! Each counted batch runs inside the function `launches`, so the calling thread's
//! instructions for the launches alone are counted with
//!
//! ```sh
//! cargo build --release -p knpu --example launch_cost
//! valgrind --tool=callgrind --separate-threads=yes --collect-atstart=no \
//!   --toggle-collect='*launch_cost*launches*' --toggle-collect='knpu_driver_sim::exec::execute' \
//!   target/release/examples/launch_cost add 50
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>-<thread>   # one file per thread
//! ```
//!
//! and divided by `ROUNDS * 20` (the second toggle counts the queue worker's `execute`, one
//! call per command). One uncounted batch runs first, so first-use costs (queue start,
//! allocator bookkeeping) stay out. `replay_cost` is the same for a replayed
//! graph.

use knpu::ops::{Gemm, GemmEpilogue};
use knpu::Stream;

/// Launches per batch.
const BATCH: usize = 20;
/// GEMM size.
const N: usize = 64;

/// Queues one batch with `launch`: the counted function.
#[inline(never)]
fn launches(launch: &mut dyn FnMut() -> knpu::Result<()>) -> knpu::Result<()> {
    for _ in 0..BATCH {
        launch()?;
    }
    Ok(())
}

fn main() -> knpu::Result<()> {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_default();
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(50);
    let dev = knpu::device(0)?;
    let s = Stream::new(&dev)?;
    let a = s.from_slice(&vec![1.0f32; N * N])?;
    let b = s.from_slice(&vec![2.0f32; N * N])?;
    let mut c = s.alloc::<f32>(N * N)?;
    let (small_a, small_b) = (s.from_slice(&[1.0f32; 16])?, s.from_slice(&[2.0f32; 16])?);
    let mut small_o = s.alloc::<f32>(16)?;
    let host = [3.0f32; 16];
    let g = Gemm::new(N, N, N);
    let ep = GemmEpilogue::new();
    let mut launch: Box<dyn FnMut() -> knpu::Result<()>> = match kind.as_str() {
        "add" => Box::new(|| knpu::ops::add(&s, &small_a, &small_b, &mut small_o)),
        "sgemm" => Box::new(|| knpu::ops::gemm(&s, &g, &a, &b, &mut c, &ep)),
        // SAFETY: `host` outlives the copies: the stream is drained after every batch.
        "memcpy" => Box::new(|| unsafe { s.memcpy_htod_async(&mut small_o, &host) }.map(|_| ())),
        _ => {
            eprintln!("usage: launch_cost add|sgemm|memcpy [ROUNDS]");
            std::process::exit(2);
        }
    };
    // One uncounted batch first: first-use costs (queue start, bookkeeping) stay out.
    for _ in 0..BATCH {
        launch()?;
    }
    s.synchronize()?;
    for _ in 0..rounds {
        launches(&mut launch)?;
        s.synchronize()?;
    }
    println!("{} counted launches of {kind}", rounds * BATCH);
    Ok(())
}
