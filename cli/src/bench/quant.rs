//! `knpu bench quant`: quantised GEMV/GEMM, W8A8 GEMM, and a read-bandwidth probe measured
//! in the same run (the ceiling a decode GEMV is judged against); `decode` runs a decode
//! step's GEMVs with the weights coming from memory (see [`decode`]).

mod decode;

use super::{time_batched, time_median, Record, Sink};
use knpu_kernels::gemm::{self, Epilogue, GemmDesc};
use knpu_kernels::quant::{
    self, ActQuant, Activation, QMatmulParams, QWeights, QuantFormat, W8A8Params,
};
use knpu_kernels::Parallelism;
use rayon::prelude::*;
use std::time::Duration;

/// Fresh inputs for each array a case needs (the next seed of [`super::values`] each time).
struct Inputs(u64);
impl Inputs {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        self.0 += 1;
        super::values(n, self.0)
    }
}

/// Reads `buf` on every thread of the current pool (contiguous halves), summing u64 words.
fn read_all(buf: &[u64], threads: usize) -> u64 {
    let per = buf.len().div_ceil(threads);
    buf.par_chunks(per)
        .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
        .reduce(|| 0, u64::wrapping_add)
}

fn probe(bytes: usize, threads: usize) -> (usize, f64) {
    let buf: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let mut sink = 0u64;
    let r = time_median(5, 30, Duration::from_millis(300), || {
        sink = sink.wrapping_add(read_all(std::hint::black_box(&buf), threads));
    });
    std::hint::black_box(sink);
    r
}

/// Options of `knpu bench quant`.
#[derive(clap::Args)]
pub struct Opts {
    /// Threads of the kernel pool (positive).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,
    /// Run only this part (repeatable; default all).
    #[arg(long, value_parser = ["probe", "gemv", "decode", "w8a8", "gemm"])]
    only: Vec<String>,
    /// Decode: layers of weights (each layer's matrices are allocations of their own; 30, as
    /// SmolLM2-135M, is 96.4 MB with the output projection).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    decode_layers: u64,
    /// Decode: rounds of (one-thread probe pass, decode steps).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    decode_rounds: u64,
    /// Decode: steps timed per round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    decode_steps: u64,
}

/// Runs the suite.
pub fn run(opts: &Opts, sink: &mut Sink) -> Result<(), String> {
    let threads = opts.threads as usize;
    let only = &opts.only;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let want = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    pool.install(|| run_cases(threads, &want, sink))?;
    if want("decode") {
        let d = decode::DecodeOpts {
            layers: opts.decode_layers as usize,
            rounds: opts.decode_rounds as usize,
            steps: opts.decode_steps as usize,
        };
        let isa = knpu_kernels::isa::active().name();
        decode::run(&d, isa, &mut Inputs(11), sink)?;
    }
    Ok(())
}

fn run_cases(threads: usize, want: &dyn Fn(&str) -> bool, sink: &mut Sink) -> Result<(), String> {
    let par = Parallelism::Rayon(threads);
    let isa = knpu_kernels::isa::active().name();
    // The probe is the peer of the GEMV cases only (the decode case measures its own).
    let mut probe_gbps = f64::NAN;
    if want("probe") || want("gemv") {
        let (runs, t) = probe(256 << 20, threads);
        probe_gbps = (256u64 << 20) as f64 / t / 1e9;
        sink.emit(Record {
            bench: "quant",
            case: case!("probe" => "read_bandwidth", "bytes" => 256u64 << 20, "threads" => threads),
            runs,
            median_s: t,
            rates: vec![("gbps", probe_gbps)],
        });
    }
    let mut rng = Inputs(7);
    for (k, n) in [(576usize, 1536usize), (1536, 576), (4096, 4096)] {
        if !want("gemv") {
            break;
        }
        for fmt in [
            QuantFormat::Q4_1,
            QuantFormat::Q4_0,
            QuantFormat::Q8_0,
            QuantFormat::Q4_K,
        ] {
            let Ok(rb) = quant::row_bytes(fmt, k) else {
                // GGUF k-quants need rows that are whole 256-value super-blocks.
                eprintln!(
                    "bench quant: skipping {} gemv at k = {k}: not a multiple of {}",
                    fmt.name(),
                    fmt.block_elems()
                );
                continue;
            };
            let src = rng.vec(n * k);
            let mut w = vec![0u8; n * rb];
            quant::quantize(fmt, n, k, &src, &mut w, None).map_err(|e| e.to_string())?;
            let x = rng.vec(k);
            let mut y = vec![0.0f32; n];
            let qw = QWeights {
                format: fmt,
                data: &w,
                scales: None,
                n,
                k,
            };
            let p = QMatmulParams {
                m: 1,
                ..Default::default()
            };
            let mut call =
                || quant::qmatmul(&p, &x, &qw, None, &mut y, par).expect("valid arguments");
            // Calls of tens of microseconds are timed in batches of ~2 ms per sample.
            let (_, once) = time_median(3, 3, Duration::ZERO, &mut call);
            let iters = ((2e-3 / once) as usize).clamp(1, 1000);
            let (samples, t) = time_batched(15, iters, &mut call);
            let runs = samples * iters;
            let gbps = (n * rb) as f64 / t / 1e9;
            sink.emit(Record {
                bench: "quant",
                case: case!("op" => "gemv", "format" => fmt.name(), "m" => 1, "k" => k, "n" => n,
                            "threads" => threads, "isa" => isa, "weight_bytes" => n * rb),
                runs,
                median_s: t,
                rates: vec![("gbps", gbps), ("pct_of_probe", 100.0 * gbps / probe_gbps)],
            });
        }
    }
    if want("w8a8") {
        w8a8_case(threads, par, isa, &mut rng, sink);
    }
    if want("gemm") {
        gemm_case(threads, par, isa, &mut rng, sink)?;
    }
    Ok(())
}

fn w8a8_case(threads: usize, par: Parallelism, isa: &str, rng: &mut Inputs, sink: &mut Sink) {
    let s = 1024usize;
    let mut int8 = |n| -> Vec<i8> { rng.vec(n).iter().map(|v| (v * 127.0) as i8).collect() };
    let (xq, wq) = (int8(s * s), int8(s * s));
    let xs = vec![0.01f32; s];
    let ws = vec![0.02f32; s];
    // The output starts on a 64-byte boundary, as device allocations do.
    let mut y_buf = vec![0.0f32; s * s + 16];
    let y_off = (16 - (y_buf.as_ptr() as usize % 64) / 4) % 16;
    let y = &mut y_buf[y_off..y_off + s * s];
    let p = W8A8Params {
        m: s,
        n: s,
        k: s,
        activation: Activation::None,
    };
    let ops = 2.0 * (s * s * s) as f64;
    // The peer: our own f32 GEMM at the same shape, timed in the same run.
    let af = rng.vec(s * s);
    let bf = rng.vec(s * s);
    let desc = GemmDesc::new(s, s, s);
    let (sruns, st) = time_median(5, 50, Duration::from_millis(800), || {
        gemm::gemm::<f32, f32, f32>(&desc, &af, &bf, y, &Epilogue::none(), par)
            .expect("valid arguments");
    });
    let sgemm_gflops = ops / st / 1e9;
    sink.emit(Record {
        bench: "quant",
        case: case!("op" => "sgemm", "format" => "f32", "m" => s, "k" => s, "n" => s,
                    "threads" => threads, "isa" => isa),
        runs: sruns,
        median_s: st,
        rates: vec![("gflops", sgemm_gflops)],
    });
    fn scaled<'a>(codes: &'a [i8], scales: &'a [f32]) -> quant::ScaledI8<'a> {
        quant::ScaledI8 { codes, scales }
    }
    let (runs, t) = time_median(5, 50, Duration::from_millis(800), || {
        let (x, w) = (scaled(&xq, &xs), scaled(&wq, &ws));
        quant::w8a8_gemm(&p, x, w, None, y, par).expect("valid arguments");
    });
    let gops = ops / t / 1e9;
    sink.emit(Record {
        bench: "quant",
        case: case!("op" => "w8a8_gemm", "format" => "i8", "m" => s, "k" => s, "n" => s,
                    "threads" => threads, "isa" => isa),
        runs,
        median_s: t,
        rates: vec![("gops", gops), ("x_sgemm", gops / sgemm_gflops)],
    });
}

/// Q4_1 prefill GEMM against f32 on the dequantised weights.
fn gemm_case(
    threads: usize,
    par: Parallelism,
    isa: &str,
    rng: &mut Inputs,
    sink: &mut Sink,
) -> Result<(), String> {
    let (m, k, n) = (512usize, 576usize, 1536usize);
    let fmt = QuantFormat::Q4_1;
    let src = rng.vec(n * k);
    let mut w = vec![0u8; n * quant::row_bytes(fmt, k).map_err(|e| e.to_string())?];
    quant::quantize(fmt, n, k, &src, &mut w, None).map_err(|e| e.to_string())?;
    let mut wf = vec![0.0f32; n * k];
    quant::dequantize(fmt, n, k, &w, None, &mut wf).map_err(|e| e.to_string())?;
    let x = rng.vec(m * k);
    let mut y = vec![0.0f32; m * n];
    let qw = QWeights {
        format: fmt,
        data: &w,
        scales: None,
        n,
        k,
    };
    let gop = 2.0 * (m * n * k) as f64 / 1e9;
    let mut q4_t = f64::NAN;
    for (label, aq) in [
        ("q4_1", ActQuant::Auto),
        ("q4_1_float_path", ActQuant::Float),
    ] {
        let p = QMatmulParams {
            m,
            act_quant: aq,
            ..Default::default()
        };
        let (runs, t) = time_median(5, 50, Duration::from_millis(800), || {
            quant::qmatmul(&p, &x, &qw, None, &mut y, par).expect("valid arguments");
        });
        sink.emit(Record {
            bench: "quant",
            case: case!("op" => "gemm", "format" => label, "m" => m, "k" => k, "n" => n,
                        "threads" => threads, "isa" => isa),
            runs,
            median_s: t,
            rates: vec![("gops", gop / t)],
        });
        if aq == ActQuant::Auto {
            q4_t = t;
        }
    }
    // The peer: our blocked f32 GEMM on the dequantised weights, in both layouts it can take
    // (`W` as stored, `n x k`, used transposed; and `W^T`, `k x n`), timed in the same run.
    let mut wt = vec![0.0f32; k * n];
    for j in 0..n {
        for t in 0..k {
            wt[t * n + j] = wf[j * k + t];
        }
    }
    let mut best = f64::INFINITY;
    for (layout, desc, b) in [
        ("w_nk_trans_b", GemmDesc::new(m, n, k).transpose_b(), &wf),
        ("w_kn", GemmDesc::new(m, n, k), &wt),
    ] {
        let (runs, t) = time_median(5, 50, Duration::from_millis(800), || {
            gemm::gemm::<f32, f32, f32>(&desc, &x, b, &mut y, &Epilogue::none(), par)
                .expect("valid arguments");
        });
        best = best.min(t);
        sink.emit(Record {
            bench: "quant",
            case: case!("op" => "gemm", "format" => "f32_dequantised",
                        "baseline" => "knpu_kernels::gemm f32", "layout" => layout,
                        "m" => m, "k" => k, "n" => n, "threads" => threads, "isa" => isa),
            runs,
            median_s: t,
            rates: vec![("gflops", gop / t)],
        });
    }
    sink.emit(Record {
        bench: "quant",
        case: case!("op" => "gemm_ratio", "format" => "q4_1", "vs" => "best f32_dequantised",
                    "m" => m, "k" => k, "n" => n, "threads" => threads, "isa" => isa),
        runs: 1,
        median_s: q4_t,
        rates: vec![("x_f32", best / q4_t)],
    });
    Ok(())
}
