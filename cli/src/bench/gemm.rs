//! `knpu bench gemm`: GEMM and GEMV throughput, plus a read-bandwidth probe.
//!
//! Cases: square f32 GEMM at n = 64 .. 4096 (2 threads, and 1 thread for a few), the LLM
//! shapes m in {1, 16, 128, 512} x (k, n) in {(576, 1536), (1536, 576), (4096, 4096)}, f16 and
//! bf16 inputs (f32 output) at n >= 1024, and a few cases on a forced lower instruction set
//! (`path` in the case). All operands are row-major and untransposed, as `numpy.matmul` takes
//! them, so `cli/bench/gemm_vs_numpy.py` can run the same shapes. The probe record
//! (`{"probe": "read_bandwidth"}`) measures how fast the same threads can read memory, the
//! bound for GEMV.
//!
//! Runtime cases (`"via": "runtime"`) run the same f32 GEMM as a device kernel through
//! `knpu::ops::matmul` on device 0 (operands already in device memory; one launch plus
//! `synchronize` per run), measured in alternating rounds with the direct call
//! (`"via": "direct"`, on a pool of as many threads as the software NPU's compute pool).
//! Their `vs_direct` field is the runtime's rate over the direct call's rate from the same
//! run: 0.95 means the runtime path loses 5%.
//!
//! Options: `--quick` (fewer, smaller cases), `--threads N` (default 2), `--isa NAME` (force
//! every case onto one path), `--shape MxNxK [--trans-b]` (only this f32 shape, no probe: what the numpy
//! script uses to measure each case right next to numpy's), `--runtime` (only the
//! runtime-versus-direct cases).

use std::time::Duration;

use half::{bf16, f16};
use knpu_kernels::gemm::{gemm, Element, Epilogue, GemmDesc};
use knpu_kernels::{isa, Exec, Isa, Parallelism};

use super::{time_median, Record, Sink};

/// Options of `knpu bench gemm`.
#[derive(clap::Args)]
pub struct Opts {
    /// Fewer, smaller cases.
    #[arg(long)]
    quick: bool,
    /// Only the runtime-versus-direct cases.
    #[arg(long = "runtime")]
    runtime_only: bool,
    /// Threads of the kernel pool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Force every case onto one instruction-set path (by its name, e.g. avx2).
    #[arg(long, value_name = "NAME", value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Only this f32 shape, no probe (what the numpy script uses).
    #[arg(long, value_name = "MxNxK", value_parser = parse_shape)]
    shape: Option<(usize, usize, usize)>,
    /// With --shape: B transposed.
    #[arg(long)]
    trans_b: bool,
}

fn parse_isa(v: &str) -> Result<Isa, String> {
    let isa = Isa::from_name(v).ok_or_else(|| format!("unknown instruction set `{v}`"))?;
    if !isa.is_supported() {
        return Err(format!(
            "instruction set `{v}` is not available on this host"
        ));
    }
    Ok(isa)
}

fn parse_shape(v: &str) -> Result<(usize, usize, usize), String> {
    let dims: Vec<usize> = v.split('x').filter_map(|d| d.parse().ok()).collect();
    match dims[..] {
        [m, n, k] => Ok((m, n, k)),
        _ => Err(format!("bad shape `{v}`, expected MxNxK")),
    }
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("cannot build a {threads}-thread pool: {e}"))
}

/// Runs the suite.
pub fn run(o: &Opts, sink: &mut Sink) -> Result<(), String> {
    if o.runtime_only {
        return bench_runtime_cases(o, sink);
    }
    let best = isa::active();
    if let Some((m, n, k)) = o.shape {
        let desc = GemmDesc::new(m, n, k);
        let desc = if o.trans_b { desc.transpose_b() } else { desc };
        return bench::<f32, f32>(o, o.isa, desc, o.threads, sink);
    }
    probe_read_bandwidth(o.threads, if o.quick { 64 } else { 256 }, sink)?;

    let squares: &[usize] = if o.quick {
        &[64, 256, 1024]
    } else {
        &[64, 128, 256, 512, 1024, 2048, 4096]
    };
    for &n in squares {
        bench::<f32, f32>(o, o.isa, GemmDesc::new(n, n, n), o.threads, sink)?;
    }
    for &n in if o.quick {
        &[64usize][..]
    } else {
        &[64, 256, 1024][..]
    } {
        bench::<f32, f32>(o, o.isa, GemmDesc::new(n, n, n), 1, sink)?;
    }
    let ms: &[usize] = if o.quick {
        &[1, 128]
    } else {
        &[1, 16, 128, 512]
    };
    for &m in ms {
        for (k, n) in [(576, 1536), (1536, 576), (4096, 4096)] {
            bench::<f32, f32>(o, o.isa, GemmDesc::new(m, n, k), o.threads, sink)?;
        }
    }
    // Decode with weights stored `[out, in]` (B transposed), the layout models ship.
    for &m in if o.quick { &[1usize][..] } else { &[1, 16][..] } {
        let desc = GemmDesc::new(m, 4096, 4096).transpose_b();
        bench::<f32, f32>(o, o.isa, desc, o.threads, sink)?;
        bench::<bf16, f32>(o, o.isa, desc, o.threads, sink)?;
    }
    let halves: &[usize] = if o.quick { &[1024] } else { &[1024, 2048] };
    for &n in halves {
        bench::<f16, f32>(o, o.isa, GemmDesc::new(n, n, n), o.threads, sink)?;
        bench::<bf16, f32>(o, o.isa, GemmDesc::new(n, n, n), o.threads, sink)?;
    }
    bench::<f16, f32>(o, o.isa, GemmDesc::new(1, 4096, 4096), o.threads, sink)?;
    bench::<bf16, f32>(o, o.isa, GemmDesc::new(1, 4096, 4096), o.threads, sink)?;
    if o.isa.is_none() {
        // The lower paths, forced, so their speed is on record too.
        for lower in isa::supported().into_iter().filter(|&i| i < best) {
            let n = if lower == Isa::Portable { 256 } else { 1024 };
            bench::<f32, f32>(o, Some(lower), GemmDesc::new(n, n, n), o.threads, sink)?;
        }
    }
    bench_runtime_cases(o, sink)
}

/// The runtime-versus-direct cases.
fn bench_runtime_cases(o: &Opts, sink: &mut Sink) -> Result<(), String> {
    let sizes: &[usize] = if o.quick { &[256] } else { &[256, 1024] };
    for &n in sizes {
        bench_via_runtime(o, n, sink)?;
    }
    Ok(())
}

/// `n x n x n` f32 GEMM through the runtime on device 0 and directly, in alternating rounds;
/// emits one record for each with the median of the rounds' medians.
fn bench_via_runtime(o: &Opts, n: usize, sink: &mut Sink) -> Result<(), String> {
    use knpu::ops;
    let err = |e: knpu::Error| format!("runtime gemm {n}: {e}");
    let dev = knpu::device(0).map_err(err)?;
    // The software NPU's compute pool has one thread per core: give the direct call as many.
    let threads = dev.attribute(knpu::Attribute::ComputeCores).map_err(err)? as usize;
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
        .collect();
    let b: Vec<f32> = (0..n * n)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0)
        .collect();
    let mut c = vec![0.0f32; n * n];
    let desc = GemmDesc::new(n, n, n);
    let epi = Epilogue::none();
    let pool = pool(threads)?;
    let par = Parallelism::Rayon(threads);

    let stream = knpu::Stream::new(&dev).map_err(err)?;
    let da = stream.from_slice(&a).map_err(err)?;
    let db = stream.from_slice(&b).map_err(err)?;
    let mut dc = stream.alloc_zeroed::<f32>(n * n).map_err(err)?;
    stream.synchronize().map_err(err)?;

    let min_time = Duration::from_millis(if o.quick { 100 } else { 300 });
    let rounds = if o.quick { 2 } else { 3 };
    let (mut direct, mut runtime) = (Vec::new(), Vec::new());
    let (mut direct_runs, mut runtime_runs) = (0, 0);
    let mut failure = None;
    for _ in 0..rounds {
        let (runs, t) = pool.install(|| {
            time_median(5, 200, min_time, || {
                if let Err(e) = gemm(&desc, &a, &b, &mut c, &epi, par) {
                    failure = Some(format!("direct gemm {n}: {e}"));
                }
            })
        });
        direct_runs += runs;
        direct.push(t);
        let (runs, t) = time_median(5, 200, min_time, || {
            let r = ops::matmul(&stream, &da, &db, &mut dc, n, n, n)
                .and_then(|()| stream.synchronize());
            if let Err(e) = r {
                failure = Some(err(e));
            }
        });
        runtime_runs += runs;
        runtime.push(t);
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let (direct_s, runtime_s) = (super::median(&mut direct), super::median(&mut runtime));
    let case = |via: &str| {
        case! {
            "dtype" => "f32",
            "m" => n,
            "n" => n,
            "k" => n,
            "threads" => threads,
            "via" => via,
        }
    };
    sink.emit(Record {
        bench: "gemm",
        case: case("direct"),
        runs: direct_runs,
        median_s: direct_s,
        rates: vec![("gflops", desc.flops() / direct_s / 1e9)],
    });
    sink.emit(Record {
        bench: "gemm",
        case: case("runtime"),
        runs: runtime_runs,
        median_s: runtime_s,
        rates: vec![
            ("gflops", desc.flops() / runtime_s / 1e9),
            ("vs_direct", direct_s / runtime_s),
        ],
    });
    Ok(())
}

/// One case of `desc` (B stored `n x k` when `desc.trans_b`: case field `"trans_b": true`).
fn bench<T: Element, TC: Element>(
    o: &Opts,
    forced: Option<Isa>,
    desc: GemmDesc,
    threads: usize,
    sink: &mut Sink,
) -> Result<(), String> {
    let (m, n, k) = (desc.m, desc.n, desc.k);
    let isa = forced.unwrap_or_else(isa::active);
    let a: Vec<T> = (0..m * k)
        .map(|i| T::from_f32(((i * 7 % 13) as f32 - 6.0) / 8.0))
        .collect();
    let b: Vec<T> = (0..k * n)
        .map(|i| T::from_f32(((i * 5 % 11) as f32 - 5.0) / 8.0))
        .collect();
    let mut c = vec![TC::from_f32(0.0); m * n];
    let epi = Epilogue::none();
    let pool = pool(threads)?;
    let par = Parallelism::Rayon(threads);
    let mut err = None;
    let min_time = Duration::from_millis(if o.quick { 100 } else { 400 });
    let (runs, median_s) = pool.install(|| {
        time_median(5, 200, min_time, || {
            if let Err(e) = gemm(&desc, &a, &b, &mut c, &epi, Exec::new(isa, par)) {
                err = Some(e);
            }
        })
    });
    if let Some(e) = err {
        return Err(format!("gemm {m}x{n}x{k}: {e}"));
    }
    let mut case = case! {
        "dtype" => T::DTYPE.name(),
        "m" => m,
        "n" => n,
        "k" => k,
        "threads" => threads,
    };
    if TC::DTYPE != T::DTYPE {
        case.insert("out".into(), TC::DTYPE.name().into());
    }
    if desc.trans_b {
        case.insert("trans_b".into(), true.into());
    }
    if forced.is_some() {
        case.insert("path".into(), isa.name().into());
    }
    let mut rates = vec![("gflops", desc.flops() / median_s / 1e9)];
    if m <= 4 {
        // GEMV is bound by reading B: report the rate it streams B at.
        let bytes = (k * n * core::mem::size_of::<T>()) as f64;
        rates.push(("gbps", bytes / median_s / 1e9));
    }
    sink.emit(Record {
        bench: "gemm",
        case,
        runs,
        median_s,
        rates,
    });
    Ok(())
}

/// Sums `mib` MiB of floats with `threads` threads, each reading its own half, and reports
/// the read rate: the bound a GEMV that streams its matrix once can reach.
fn probe_read_bandwidth(threads: usize, mib: usize, sink: &mut Sink) -> Result<(), String> {
    use rayon::prelude::*;
    let data: Vec<f32> = (0..mib << 18).map(|i| (i % 7) as f32).collect();
    let pool = pool(threads)?;
    let chunk = data.len().div_ceil(threads);
    let mut total = 0.0f32;
    let (runs, median_s) = pool.install(|| {
        time_median(5, 50, Duration::from_millis(400), || {
            total += data.par_chunks(chunk).map(sum_lanes).sum::<f32>();
        })
    });
    std::hint::black_box(total);
    let bytes = (data.len() * 4) as f64;
    sink.emit(Record {
        bench: "gemm",
        case: case! { "probe" => "read_bandwidth", "threads" => threads, "mib" => mib },
        runs,
        median_s,
        rates: vec![("gbps", bytes / median_s / 1e9)],
    });
    Ok(())
}

/// A sum the compiler vectorises: 16 independent partial sums.
fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}
