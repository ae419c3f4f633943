//! `knpu bench ops`: the LLM ops (RMSNorm, softmax, SwiGLU, RoPE) over a `[512, 4096]` f32
//! activation, on every ISA path the host runs, on one thread and on two.
//!
//! These ops are bound by memory bandwidth, so the rate is `gbps`: bytes each op must read
//! and write once (inputs plus outputs) per second. A second set of records times one row
//! (`rows = 1`, a decode step) on the active path, where call overhead matters, in `us`.

use super::{time_batched, time_median, Record, Sink};
use knpu_kernels::llm::{self, Element, RopeParams, RopePositions, RopeStyle};
use knpu_kernels::{isa, Exec, Parallelism};
use std::time::Duration;

const ROWS: usize = 512;
const COLS: usize = 4096;
const HEAD_DIM: usize = 128;

/// Options of `knpu bench ops`.
#[derive(clap::Args)]
pub struct Opts {
    /// Rows of the activation.
    #[arg(long, default_value_t = ROWS)]
    rows: usize,
    /// Columns of the activation (a multiple of the head size, 128).
    #[arg(long, default_value_t = COLS)]
    cols: usize,
    /// Element type (the one-row and sampling cases run for f32 only).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
}

/// Runs the suite.
pub fn run(opts: &Opts, sink: &mut Sink) -> Result<(), String> {
    let (rows, cols, dtype) = (opts.rows, opts.cols, opts.dtype.as_str());
    if !cols.is_multiple_of(HEAD_DIM) {
        return Err(format!(
            "--cols must be a multiple of the head size {HEAD_DIM}"
        ));
    }
    match dtype {
        "f32" => run_typed::<f32>(rows, cols, sink),
        "f16" => run_typed::<half::f16>(rows, cols, sink),
        "bf16" => run_typed::<half::bf16>(rows, cols, sink),
        other => Err(format!("--dtype {other}: use f32, f16 or bf16")),
    }
}

fn run_typed<T: Element>(rows: usize, cols: usize, sink: &mut Sink) -> Result<(), String> {
    let n = rows * cols;
    let x: Vec<T> = (0..n)
        .map(|i| T::from_f32(((i * 7919) % 1000) as f32 * 0.004 - 2.0))
        .collect();
    let up: Vec<T> = (0..n)
        .map(|i| T::from_f32(((i * 104_729) % 1000) as f32 * 0.002 - 1.0))
        .collect();
    let w: Vec<T> = (0..cols)
        .map(|i| T::from_f32(1.0 + (i % 17) as f32 * 0.01))
        .collect();
    let mut out = vec![T::from_f32(0.0); n];
    let rope = RopeParams {
        style: RopeStyle::NeoX,
        rotary_dim: HEAD_DIM,
        base: 10000.0,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .map_err(|e| e.to_string())?;
    let bytes4 = |arrays: usize| (arrays * n * T::DTYPE.size()) as f64;
    for isa in isa::supported() {
        for threads in [1usize, 2] {
            let par = if threads == 1 {
                Parallelism::None
            } else {
                Parallelism::Rayon(threads)
            };
            let mut measure = |op: &'static str,
                               bytes: f64,
                               f: &mut (dyn FnMut(&mut [T]) + Send)| {
                let (runs, median_s) = pool
                    .install(|| time_median(5, 200, Duration::from_millis(300), || f(&mut out)));
                sink.emit(Record {
                    bench: "ops",
                    case: case! {
                        "op" => op, "dtype" => T::DTYPE.name(), "rows" => rows, "cols" => cols,
                        "isa" => isa.name(), "threads" => threads,
                    },
                    runs,
                    median_s,
                    rates: vec![("gbps", bytes / median_s / 1e9)],
                });
            };
            measure("rms_norm", bytes4(2), &mut |o| {
                llm::rms_norm(&x, &w, o, rows, cols, 1e-5, Exec::new(isa, par)).unwrap()
            });
            measure("softmax", bytes4(2), &mut |o| {
                llm::softmax(&x, o, rows, cols, 1.0, Exec::new(isa, par)).unwrap()
            });
            measure("swiglu", bytes4(3), &mut |o| {
                llm::swiglu(&x, &up, o, n, Exec::new(isa, par)).unwrap()
            });
            measure("rope_neox", bytes4(2), &mut |o| {
                let p = RopePositions::Start(0);
                let heads = cols / HEAD_DIM;
                llm::rope(
                    &x,
                    o,
                    llm::RopeShape {
                        rows,
                        heads,
                        head_dim: HEAD_DIM,
                    },
                    &rope,
                    p,
                    Exec::new(isa, par),
                )
                .unwrap()
            });
        }
    }
    if let (Some(x), Some(up), Some(w)) = (T::as_f32(&x), T::as_f32(&up), T::as_f32(&w)) {
        decode(cols, x, up, w, &rope, sink);
    }
    Ok(())
}

/// One row of each op on the active path and the caller's thread, timed in batches.
fn decode(cols: usize, x: &[f32], up: &[f32], w: &[f32], rope: &RopeParams, sink: &mut Sink) {
    let isa = isa::active();
    let par = Parallelism::None;
    let mut out = vec![0.0f32; cols];
    let (x, up) = (&x[..cols], &up[..cols]);
    let mut measure = |op: &'static str, arrays: usize, f: &mut dyn FnMut(&mut [f32])| {
        let (runs, median_s) = time_batched(7, 2000, || f(&mut out));
        sink.emit(Record {
            bench: "ops",
            case: case! {
                "op" => op, "dtype" => "f32", "rows" => 1, "cols" => cols,
                "isa" => isa.name(), "threads" => 1,
            },
            runs,
            median_s,
            rates: vec![
                ("us", median_s * 1e6),
                ("gbps", (arrays * cols * 4) as f64 / median_s / 1e9),
            ],
        });
    };
    measure("rms_norm", 2, &mut |o| {
        llm::rms_norm(x, w, o, 1, cols, 1e-5, Exec::new(isa, par)).unwrap()
    });
    measure("softmax", 2, &mut |o| {
        llm::softmax(x, o, 1, cols, 1.0, Exec::new(isa, par)).unwrap()
    });
    measure("swiglu", 3, &mut |o| {
        llm::swiglu(x, up, o, cols, Exec::new(isa, par)).unwrap()
    });
    measure("rope_neox", 2, &mut |o| {
        let p = RopePositions::Start(1000);
        llm::rope(
            x,
            o,
            llm::RopeShape {
                rows: 1,
                heads: cols / HEAD_DIM,
                head_dim: HEAD_DIM,
            },
            rope,
            p,
            Exec::new(isa, par),
        )
        .unwrap()
    });
    sampling(isa, sink);
}

/// Argmax and top-40 over one row of logits the size of a large vocabulary (151936).
fn sampling(isa: knpu_kernels::Isa, sink: &mut Sink) {
    const VOCAB: usize = 151_936;
    const K: usize = 40;
    // A smooth random-looking row: a cheap hash to [-8, 8).
    let logits: Vec<f32> = (0..VOCAB as u64)
        .map(|i| {
            ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32) * 16.0
                - 8.0
        })
        .collect();
    let mut idx = vec![0u32; K];
    let mut vals = vec![0.0f32; K];
    let mut emit = |op: &'static str, k: usize, runs: usize, median_s: f64| {
        sink.emit(Record {
            bench: "ops",
            case: case! {
                "op" => op, "dtype" => "f32", "rows" => 1, "cols" => VOCAB, "k" => k,
                "isa" => isa.name(), "threads" => 1,
            },
            runs,
            median_s,
            rates: vec![
                ("us", median_s * 1e6),
                ("gbps", (VOCAB * 4) as f64 / median_s / 1e9),
            ],
        });
    };
    let (runs, t) = time_batched(7, 200, || {
        llm::argmax(
            &logits,
            &mut idx[..1],
            1,
            VOCAB,
            Exec::new(isa, Parallelism::None),
        )
        .unwrap()
    });
    emit("argmax", 1, runs, t);
    let (runs, t) = time_batched(7, 50, || {
        llm::top_k(
            &logits,
            &mut vals,
            &mut idx,
            1,
            VOCAB,
            K,
            Exec::new(isa, Parallelism::None),
        )
        .unwrap()
    });
    emit("top_k", K, runs, t);
}
