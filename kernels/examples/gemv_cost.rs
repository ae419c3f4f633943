//! Decode GEMV cost (`m = 1`) of SmolLM2's quantised matrices, for instruction counting
//! under callgrind: bytes of weights per instruction is the figure to compare between
//! formats, since wall-clock rates on a shared machine mean little.
//!
//! Each case quantises a random `n x k` matrix, then calls the integer quantised matmul
//! `reps` times on one thread, inside a function of its own (`gemv_<format>`) so that
//! callgrind can count it alone:
//!
//! ```sh
//! cargo build --release -p knpu-kernels --example gemv_cost
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*gemv_cost*gemv_*' \
//!   target/release/examples/gemv_cost q8_0 3    # or: q4_1 3
//! callgrind_annotate --inclusive=yes callgrind.out.<pid>
//! ```
//!
//! The program prints the weight bytes one call reads, so the count divides into bytes per
//! instruction. Shapes: `q8_0` is the tied output projection (49152 x 576), `q4_1` the
//! fused gate/up projection (3072 x 576).

use knpu_kernels::quant::{self, QMatmulParams, QWeights, QuantFormat};
use knpu_kernels::Parallelism;

/// A deterministic pseudo-random matrix (xorshift), values in [-1, 1).
fn values(len: usize, mut seed: u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn run(format: QuantFormat, n: usize, k: usize, reps: usize) -> usize {
    let rb = quant::row_bytes(format, k).expect("k is a multiple of the block size");
    let mut w = vec![0u8; n * rb];
    quant::quantize(format, n, k, &values(n * k, 7), &mut w, None).expect("quantise");
    let x = values(k, 11);
    let mut y = vec![0.0f32; n];
    let weights = QWeights {
        format,
        data: &w,
        scales: None,
        n,
        k,
    };
    let params = QMatmulParams {
        m: 1,
        ..Default::default()
    };
    let gemv = match format {
        QuantFormat::Q8_0 => gemv_q8_0,
        _ => gemv_q4_1,
    };
    gemv(&params, &x, &weights, &mut y, reps);
    std::hint::black_box(&y);
    n * rb
}

#[inline(never)]
fn gemv_q8_0(p: &QMatmulParams, x: &[f32], w: &QWeights<'_>, y: &mut [f32], reps: usize) {
    for _ in 0..reps {
        quant::qmatmul(p, x, w, None, y, Parallelism::None).expect("gemv");
    }
}

#[inline(never)]
fn gemv_q4_1(p: &QMatmulParams, x: &[f32], w: &QWeights<'_>, y: &mut [f32], reps: usize) {
    for _ in 0..reps {
        quant::qmatmul(p, x, w, None, y, Parallelism::None).expect("gemv");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "q8_0".into());
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let (format, n, k) = match which.as_str() {
        "q8_0" => (QuantFormat::Q8_0, 49152, 576),
        "q4_1" => (QuantFormat::Q4_1, 3072, 576),
        other => {
            eprintln!("unknown case {other:?}: expected q8_0 or q4_1");
            std::process::exit(2);
        }
    };
    let bytes = run(format, n, k, reps);
    println!(
        "{which}: {n} x {k}, {bytes} weight bytes per call, {reps} calls on the {} path",
        knpu_kernels::isa::active().name()
    );
}
