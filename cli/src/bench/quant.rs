//! `knpu bench quant`: quantised GEMV/GEMM, W8A8 GEMM, and a read-bandwidth probe measured
//! in the same run (the ceiling a decode GEMV is judged against).

use super::{time_batched, time_median, Record, Sink};
use knpu_kernels::quant::{
    self, ActQuant, Activation, QMatmulParams, QWeights, QuantFormat, W8A8Params,
};
use knpu_kernels::Parallelism;
use rayon::prelude::*;
use std::time::Duration;

struct Lcg(u64);
impl Lcg {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
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

/// Runs the suite. Options: `--threads N` (default 2), `--only probe|gemv|w8a8|gemm` (repeatable;
/// default all).
pub fn run(args: &[String], sink: &mut Sink) -> Result<(), String> {
    let mut threads = 2usize;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => {
                threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&t| t > 0)
                    .ok_or("--threads needs a positive number")?
            }
            "--only" => match it.next().map(String::as_str) {
                Some(v @ ("probe" | "gemv" | "w8a8" | "gemm")) => only.push(v.to_string()),
                _ => return Err("--only takes probe, gemv, w8a8 or gemm".into()),
            },
            other => return Err(format!("unknown option `{other}` for `bench quant`")),
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let want = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    pool.install(|| run_cases(threads, &want, sink))
}

fn run_cases(threads: usize, want: &dyn Fn(&str) -> bool, sink: &mut Sink) -> Result<(), String> {
    let par = Parallelism::Rayon(threads);
    let isa = knpu_kernels::isa::active().name();
    let (runs, t) = probe(256 << 20, threads);
    let probe_gbps = (256u64 << 20) as f64 / t / 1e9;
    if want("probe") || want("gemv") {
        sink.emit(Record {
            bench: "quant",
            case: case!("probe" => "read_bandwidth", "bytes" => 256u64 << 20, "threads" => threads),
            runs,
            median_s: t,
            rates: vec![("gbps", probe_gbps)],
        });
    }
    let mut rng = Lcg(7);
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

fn w8a8_case(threads: usize, par: Parallelism, isa: &str, rng: &mut Lcg, sink: &mut Sink) {
    let s = 1024usize;
    let xq: Vec<i8> = (0..s * s).map(|_| (rng.f() * 127.0) as i8).collect();
    let wq: Vec<i8> = (0..s * s).map(|_| (rng.f() * 127.0) as i8).collect();
    let xs = vec![0.01f32; s];
    let ws = vec![0.02f32; s];
    let mut y = vec![0.0f32; s * s];
    let p = W8A8Params {
        m: s,
        n: s,
        k: s,
        activation: Activation::None,
    };
    let (runs, t) = time_median(5, 50, Duration::from_millis(800), || {
        quant::w8a8_gemm(&p, &xq, &xs, &wq, &ws, None, &mut y, par).expect("valid arguments");
    });
    sink.emit(Record {
        bench: "quant",
        case: case!("op" => "w8a8_gemm", "format" => "i8", "m" => s, "k" => s, "n" => s,
                    "threads" => threads, "isa" => isa),
        runs,
        median_s: t,
        rates: vec![("gops", 2.0 * (s * s * s) as f64 / t / 1e9)],
    });
}

/// Q4_1 prefill GEMM against f32 on the dequantised weights.
fn gemm_case(
    threads: usize,
    par: Parallelism,
    isa: &str,
    rng: &mut Lcg,
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
    }
    let (runs, t) = time_median(5, 50, Duration::from_millis(800), || {
        f32_gemm_nt(&x, &wf, &mut y, m, n, k, threads);
    });
    sink.emit(Record {
        bench: "quant",
        case: case!("op" => "gemm", "format" => "f32_dequantised",
                    "baseline" => "bench-local f32 GEMM: 4x4 tile of 16-wide FMA dot products, no packing",
                    "m" => m, "k" => k, "n" => n, "threads" => threads),
        runs,
        median_s: t,
        rates: vec![("gflops", gop / t)],
    });
    Ok(())
}

/// `y = x w^T` in f32, rows of `y` split over the pool: 4 rows of `x` by 4 rows of `w` per
/// step with 16-wide partial sums (AVX-512 + FMA when the host has them); the baseline until
/// the blocked f32 GEMM lands.
fn f32_gemm_nt(x: &[f32], w: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, threads: usize) {
    let rows_per = m.div_ceil(threads).div_ceil(4) * 4;
    y.par_chunks_mut(rows_per * n)
        .enumerate()
        .for_each(|(c, yc)| {
            let xs = &x[c * rows_per * k..];
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                // SAFETY: the features were just detected.
                unsafe { gemm_rows_avx512(xs, w, yc, n, k) };
                return;
            }
            gemm_rows::<false>(xs, w, yc, n, k);
        });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
/// # Safety
/// - the host supports AVX-512 F and FMA.
unsafe fn gemm_rows_avx512(x: &[f32], w: &[f32], y: &mut [f32], n: usize, k: usize) {
    use std::arch::x86_64::*;
    let mr = y.len() / n;
    if !(mr.is_multiple_of(4) && n.is_multiple_of(4) && k.is_multiple_of(16)) {
        return gemm_rows::<true>(x, w, y, n, k);
    }
    assert!(x.len() >= mr * k && w.len() >= n * k);
    for ib in (0..mr).step_by(4) {
        for jb in (0..n).step_by(4) {
            let mut acc = [_mm512_setzero_ps(); 16];
            for t in (0..k).step_by(16) {
                // SAFETY: rows ib..ib+4 of x and jb..jb+4 of w have k values (asserted above),
                // and t + 16 <= k.
                unsafe {
                    let xv: [__m512; 4] =
                        std::array::from_fn(|a| _mm512_loadu_ps(x.as_ptr().add((ib + a) * k + t)));
                    let wv: [__m512; 4] =
                        std::array::from_fn(|b| _mm512_loadu_ps(w.as_ptr().add((jb + b) * k + t)));
                    for a in 0..4 {
                        for b in 0..4 {
                            acc[4 * a + b] = _mm512_fmadd_ps(xv[a], wv[b], acc[4 * a + b]);
                        }
                    }
                }
            }
            for a in 0..4 {
                for b in 0..4 {
                    y[(ib + a) * n + jb + b] = _mm512_reduce_add_ps(acc[4 * a + b]);
                }
            }
        }
    }
}

#[inline(always)]
fn gemm_rows<const FUSED: bool>(x: &[f32], w: &[f32], y: &mut [f32], n: usize, k: usize) {
    let mr = y.len() / n;
    let k16 = k - k % 16;
    for ib in (0..mr).step_by(4) {
        let ie = (ib + 4).min(mr);
        for jb in (0..n).step_by(4) {
            let je = (jb + 4).min(n);
            if ie - ib == 4 && je - jb == 4 {
                let mut acc = [[[0.0f32; 16]; 4]; 4];
                for t in (0..k16).step_by(16) {
                    let xv: [&[f32]; 4] =
                        std::array::from_fn(|a| &x[(ib + a) * k + t..(ib + a) * k + t + 16]);
                    let wv: [&[f32]; 4] =
                        std::array::from_fn(|b| &w[(jb + b) * k + t..(jb + b) * k + t + 16]);
                    for a in 0..4 {
                        for b in 0..4 {
                            for l in 0..16 {
                                acc[a][b][l] = if FUSED {
                                    xv[a][l].mul_add(wv[b][l], acc[a][b][l])
                                } else {
                                    acc[a][b][l] + xv[a][l] * wv[b][l]
                                };
                            }
                        }
                    }
                }
                for a in 0..4 {
                    for b in 0..4 {
                        let mut s: f32 = acc[a][b].iter().sum();
                        for t in k16..k {
                            s += x[(ib + a) * k + t] * w[(jb + b) * k + t];
                        }
                        y[(ib + a) * n + jb + b] = s;
                    }
                }
            } else {
                for i in ib..ie {
                    for j in jb..je {
                        y[i * n + j] = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
                    }
                }
            }
        }
    }
}
