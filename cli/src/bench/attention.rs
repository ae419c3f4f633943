//! `knpu bench attention`: fused attention, prefill and decode.
//!
//! - prefill: batch 1, 9 query heads over 3 kv heads, head_dim 64, causal, seq 512 and 2048;
//!   rate `gflops` counting `4 b h sq skv d` halved for the causal mask.
//! - decode: one query position over a cache of 512 and 4096 positions; `us` per step and
//!   `gbps`, the K and V bytes a step must read over its time. Each step reads a different
//!   copy of the cache from a set larger than the last-level cache, as a model's layers
//!   would, so the figure is memory bandwidth rather than cache bandwidth.
//! - probe: `{"probe": "read_bandwidth"}`, summing a 256 MiB buffer on every thread: the
//!   bandwidth decode is held against. Each decode record from memory also carries
//!   `stream_gbps`, the same step's bytes read by the same threads with no arithmetic (what
//!   memory gives a transfer of that size, start-up included), and `of_stream`, its `gbps`
//!   over that.
//! - memory: causal prefill at seq 4096, 8192 and 16384 with the kernel's scratch bytes and
//!   the process's peak-RSS growth during the call (Linux), to show memory grows linearly.
//!
//! Beside each wall-clock rate, `cpu_ms` is the mean CPU time per call summed over all threads
//! and `*_per_core` the rate per CPU-second: on a shared machine the wall clock also counts
//! time the threads waited for a core, the CPU time does not.
//!
//! - reference: `{"reference": "sgemm", "n": 1024}`, our own f32 GEMM at 1024^3 on the same
//!   threads, run before prefill; each prefill record carries `of_sgemm`, its rate over this
//!   one, and each decode record `of_probe`, its `gbps` over the probe's (when the probe ran).
//!
//! Options: `--threads N` (default 2); `--phase prefill,decode,probe,memory` (default all);
//! `--seq 512,2048` (prefill lengths); `--kv-len 512,4096` (decode cache lengths);
//! `--dtype f32|f16|bf16|all` (default f32); `--hot` (decode re-reads one cache copy, so it
//! measures the kernel on cache-resident data); `--layout bshd|bhsd` (the decode cache's
//! memory order, default bshd); `--block-size N` (decode reads a paged cache of `N`-position
//! blocks, `[blocks, N, kv_heads, head_dim]`, through a block table, each step's blocks
//! scattered over the whole cache as a serving cache's blocks end up; records carry
//! `"cache": "paged"` and `block_size`).

use super::{time_batched, time_median, Record, Sink};
use half::{bf16, f16};
use knpu_kernels::attention::{
    attention, attention_scratch_bytes, paged_attention, AttentionInputs, AttentionParams,
    AttnElement, AttnMask, AttnTensor, PagedAttentionInputs, PagedAttentionParams, PagedKvCache,
};
use knpu_kernels::gemm::{gemm, Epilogue, GemmDesc};
use knpu_kernels::{KernelError, Parallelism};
use rayon::prelude::*;
use std::time::{Duration, Instant};

const Q_HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

struct Settings {
    threads: usize,
    phases: Vec<String>,
    dtypes: Vec<&'static str>,
    hot: bool,
    head_major: bool,
    /// Decode from a paged cache of blocks of this many positions.
    block_size: Option<usize>,
    seqs: Vec<usize>,
    kv_lens: Vec<usize>,
}

/// Same-run references the ratios are taken against.
#[derive(Default)]
struct Refs {
    /// The probe's wall-clock read bandwidth, GB/s.
    probe_gbps: Option<f64>,
    /// Our sgemm at 1024^3, GFLOP/s.
    sgemm_gflops: Option<f64>,
}

fn parse_list(v: &str, what: &str) -> Result<Vec<usize>, String> {
    v.split(',')
        .map(|x| match x.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{what}: `{x}` is not a positive integer")),
        })
        .collect()
}

/// Options of `knpu bench attention`.
#[derive(clap::Args)]
pub struct Opts {
    /// Threads of the kernel pool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Decode re-reads one cache copy, so it measures the kernel on cache-resident data.
    #[arg(long)]
    hot: bool,
    /// Prefill sequence lengths, comma-separated.
    #[arg(long, value_name = "N,...")]
    seq: Option<String>,
    /// Decode cache lengths, comma-separated.
    #[arg(long = "kv-len", value_name = "N,...")]
    kv_len: Option<String>,
    /// Decode from a paged cache of blocks of this many positions.
    #[arg(long = "block-size", value_name = "N")]
    block_size: Option<String>,
    /// Cache layout: bshd or bhsd (contiguous caches only).
    #[arg(long, value_name = "bshd|bhsd")]
    layout: Option<String>,
    /// Phases to run, comma-separated: probe, prefill, decode, memory.
    #[arg(long, value_name = "PHASE,...")]
    phase: Option<String>,
    /// Element type: f32, f16, bf16 or all.
    #[arg(long, value_name = "DTYPE")]
    dtype: Option<String>,
}

fn settings(a: &Opts) -> Result<Settings, String> {
    let mut o = Settings {
        threads: a.threads,
        phases: vec![
            "probe".into(),
            "prefill".into(),
            "decode".into(),
            "memory".into(),
        ],
        dtypes: vec!["f32"],
        hot: a.hot,
        head_major: false,
        block_size: None,
        seqs: vec![512, 2048],
        kv_lens: vec![512, 4096],
    };
    if let Some(v) = &a.seq {
        o.seqs = parse_list(v, "--seq")?;
    }
    if let Some(v) = &a.kv_len {
        o.kv_lens = parse_list(v, "--kv-len")?;
    }
    if let Some(v) = &a.block_size {
        match parse_list(v, "--block-size")?[..] {
            [n] => o.block_size = Some(n),
            _ => return Err("--block-size takes one block size".into()),
        }
    }
    if let Some(v) = &a.layout {
        o.head_major = match v.as_str() {
            "bshd" => false,
            "bhsd" => true,
            l => return Err(format!("unknown layout `{l}` (bshd, bhsd)")),
        }
    }
    if let Some(v) = &a.phase {
        o.phases = v.split(',').map(str::to_string).collect();
    }
    if let Some(v) = &a.dtype {
        o.dtypes = match v.as_str() {
            "f32" => vec!["f32"],
            "f16" => vec!["f16"],
            "bf16" => vec!["bf16"],
            "all" => vec!["f32", "f16", "bf16"],
            d => return Err(format!("unknown dtype `{d}` (f32, f16, bf16, all)")),
        }
    }
    if o.head_major && o.block_size.is_some() {
        return Err("--layout applies to a contiguous cache, not with --block-size".into());
    }
    for p in &o.phases {
        if !["prefill", "decode", "probe", "memory"].contains(&p.as_str()) {
            return Err(format!(
                "unknown phase `{p}` (prefill, decode, probe, memory)"
            ));
        }
    }
    Ok(o)
}

/// Runs the suite.
pub fn run(opts: &Opts, sink: &mut Sink) -> Result<(), String> {
    let o = settings(opts)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.threads)
        .build()
        .map_err(|e| e.to_string())?;
    let mut refs = Refs::default();
    pool.install(|| {
        for phase in &o.phases {
            match phase.as_str() {
                "probe" => refs.probe_gbps = Some(probe(o.threads, sink)),
                "memory" => memory(o.threads, sink)?,
                _ => {
                    if phase == "prefill" && refs.sgemm_gflops.is_none() {
                        refs.sgemm_gflops = Some(sgemm_reference(o.threads, sink)?);
                    }
                    for &dt in &o.dtypes {
                        match dt {
                            "f16" => run_phase::<f16>(phase, &o, &refs, sink)?,
                            "bf16" => run_phase::<bf16>(phase, &o, &refs, sink)?,
                            _ => run_phase::<f32>(phase, &o, &refs, sink)?,
                        }
                    }
                }
            }
        }
        Ok(())
    })
}

fn run_phase<T: AttnElement>(
    phase: &str,
    o: &Settings,
    refs: &Refs,
    sink: &mut Sink,
) -> Result<(), String> {
    let threads = o.threads;
    if phase == "prefill" {
        for &seq in &o.seqs {
            prefill::<T>(seq, threads, refs, sink)?;
        }
    } else {
        for &kv_len in &o.kv_lens {
            decode::<T>(kv_len, threads, o, refs, sink)?;
        }
    }
    Ok(())
}

/// Our own f32 GEMM at 1024^3 on the same threads: the rate prefill is held against.
fn sgemm_reference(threads: usize, sink: &mut Sink) -> Result<f64, String> {
    let n = 1024usize;
    let desc = GemmDesc::new(n, n, n);
    let a: Vec<f32> = fill(n * n, 21);
    let b: Vec<f32> = fill(n * n, 22);
    let mut c = vec![0.0f32; n * n];
    let epi = Epilogue::none();
    let mut err = None;
    let (runs, t) = time_median(5, 50, Duration::from_millis(400), || {
        if let Err(e) = gemm(&desc, &a, &b, &mut c, &epi, Parallelism::Rayon(threads)) {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(format!("sgemm reference: {e}"));
    }
    let gflops = desc.flops() / t / 1e9;
    sink.emit(Record {
        bench: "attention",
        case: case!(
            "reference" => "sgemm", "dtype" => "f32", "m" => n, "n" => n, "k" => n,
            "threads" => threads
        ),
        runs,
        median_s: t,
        rates: vec![("gflops", gflops)],
    });
    Ok(gflops)
}

fn fill<T: AttnElement>(n: usize, seed: u64) -> Vec<T> {
    super::values(n, seed)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

const CAUSAL: AttnMask = AttnMask {
    causal: true,
    window: None,
    scale: None,
};

fn causal_flops(seq: usize) -> f64 {
    4.0 * (Q_HEADS * seq * seq * HEAD_DIM) as f64 / 2.0
}

fn prefill<T: AttnElement>(
    seq: usize,
    threads: usize,
    refs: &Refs,
    sink: &mut Sink,
) -> Result<(), String> {
    let p = AttentionParams::bshd(1, seq, seq, Q_HEADS, KV_HEADS, HEAD_DIM, CAUSAL);
    let q: Vec<T> = fill(p.q.required_len().map_err(|e| e.to_string())?, 1);
    let k: Vec<T> = fill(p.k.required_len().map_err(|e| e.to_string())?, 2);
    let v: Vec<T> = fill(p.v.required_len().map_err(|e| e.to_string())?, 3);
    let mut out = vec![T::from_f32(0.0); q.len()];
    let par = Parallelism::Rayon(threads);
    let mut err = None;
    let cpu = CpuMeter::start();
    let mut calls = 0usize;
    let (runs, t) = time_median(5, 50, Duration::from_millis(600), || {
        calls += 1;
        if let Err(e) = attention(&p, AttentionInputs::new(&q, &k, &v), &mut out, None, par) {
            err = Some(e);
        }
    });
    let cpu_s = cpu.per_call(calls);
    if let Some(e) = err {
        return Err(e.to_string());
    }
    let scratch = attention_scratch_bytes(1, Q_HEADS, KV_HEADS, HEAD_DIM, seq, seq, threads);
    let gflops = causal_flops(seq) / t / 1e9;
    let mut rates = vec![("gflops", gflops), ("scratch_bytes", scratch as f64)];
    if let Some(r) = refs.sgemm_gflops {
        rates.push(("of_sgemm", gflops / r));
    }
    sink.emit(Record {
        bench: "attention",
        case: case!(
            "phase" => "prefill", "batch" => 1, "q_heads" => Q_HEADS, "kv_heads" => KV_HEADS,
            "head_dim" => HEAD_DIM, "seq" => seq, "causal" => true, "dtype" => T::NAME,
            "threads" => threads
        ),
        runs,
        median_s: t,
        rates: with_cpu(rates, cpu_s, ("gflops_per_core", causal_flops(seq) / 1e9)),
    });
    Ok(())
}

/// Measures the CPU time all threads of this process use (Linux: the `schedstat` run time of
/// each thread), so a rate per CPU-second can be quoted beside the wall-clock rate: on a
/// machine shared with other work the wall clock also counts time the threads waited to run.
struct CpuMeter(Option<f64>);

impl CpuMeter {
    fn start() -> CpuMeter {
        CpuMeter(process_cpu_s())
    }

    /// Mean CPU-seconds per call over `calls` calls since `start`.
    fn per_call(&self, calls: usize) -> Option<f64> {
        let (a, b) = (self.0?, process_cpu_s()?);
        (calls > 0 && b > a).then(|| (b - a) / calls as f64)
    }
}

fn process_cpu_s() -> Option<f64> {
    let mut ns = 0u64;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may exit between listing and reading; it then adds nothing.
        if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
            ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(ns as f64 * 1e-9)
}

/// Appends `cpu_ms` (mean CPU time per call, all threads) and `name = amount / cpu_s` when
/// the CPU time is known.
fn with_cpu(
    mut rates: Vec<(&'static str, f64)>,
    cpu_s: Option<f64>,
    (name, amount): (&'static str, f64),
) -> Vec<(&'static str, f64)> {
    if let Some(c) = cpu_s {
        rates.push(("cpu_ms", c * 1e3));
        rates.push((name, amount / c));
    }
    rates
}

fn decode<T: AttnElement>(
    kv_len: usize,
    threads: usize,
    o: &Settings,
    refs: &Refs,
    sink: &mut Sink,
) -> Result<(), String> {
    let row = KV_HEADS * HEAD_DIM;
    let step_bytes = 2 * kv_len * row * std::mem::size_of::<T>();
    // Enough copies of K and V to overflow the last-level cache several times.
    let copies = if o.hot {
        1
    } else {
        (256usize << 20).div_ceil(step_bytes).max(2)
    };
    let q: Vec<T> = fill(Q_HEADS * HEAD_DIM, 4);
    let mut out = vec![T::from_f32(0.0); q.len()];
    let par = Parallelism::Rayon(threads);
    let (samples, t, cpu_s, stream) = match o.block_size {
        None => {
            let mut p = AttentionParams::bshd(1, 1, kv_len, Q_HEADS, KV_HEADS, HEAD_DIM, CAUSAL);
            if o.head_major {
                p.k = AttnTensor::bhsd(1, kv_len, KV_HEADS, HEAD_DIM);
                p.v = p.k;
            }
            let cache_len = p.k.required_len().map_err(|e| e.to_string())?;
            let ks: Vec<Vec<T>> = (0..copies)
                .map(|c| fill(cache_len, 10 + c as u64))
                .collect();
            let vs: Vec<Vec<T>> = (0..copies)
                .map(|c| fill(cache_len, 900 + c as u64))
                .collect();
            let reads: Vec<[Vec<&[T]>; 2]> = ks
                .iter()
                .zip(&vs)
                .map(|(k, v)| [vec![k.as_slice()], vec![v.as_slice()]])
                .collect();
            time_steps(&reads, threads, o.hot, |c| {
                attention(
                    &p,
                    AttentionInputs::new(&q, &ks[c], &vs[c]),
                    &mut out,
                    None,
                    par,
                )
            })?
        }
        Some(bs) => {
            let per_seq = kv_len.div_ceil(bs);
            let cache = PagedKvCache::dense(copies * per_seq, bs, KV_HEADS, HEAD_DIM);
            let cache_len = cache.required_len().map_err(|e| e.to_string())?;
            let (k, v): (Vec<T>, Vec<T>) = (fill(cache_len, 10), fill(cache_len, 900));
            let tables = shuffled_blocks(copies * per_seq);
            let p = PagedAttentionParams {
                q: AttnTensor::bshd(1, 1, Q_HEADS, HEAD_DIM),
                out: AttnTensor::bshd(1, 1, Q_HEADS, HEAD_DIM),
                cache,
                max_blocks_per_seq: per_seq,
                mask: CAUSAL,
            };
            let lens = [kv_len as u32];
            let blocks_of = |data, table| block_rows(data, table, cache.block_stride, bs, kv_len);
            let reads: Vec<[Vec<&[T]>; 2]> = tables
                .chunks_exact(per_seq)
                .map(|table| [blocks_of(&k, table), blocks_of(&v, table)])
                .collect();
            time_steps(&reads, threads, o.hot, |c| {
                let table = &tables[c * per_seq..(c + 1) * per_seq];
                paged_attention(
                    &p,
                    PagedAttentionInputs {
                        q: &q,
                        k_cache: &k,
                        v_cache: &v,
                        block_table: table,
                        kv_lens: &lens,
                    },
                    &mut out,
                    None,
                    par,
                )
            })?
        }
    };
    let gbps = step_bytes as f64 / t / 1e9;
    let mut rates = vec![("us", t * 1e6), ("gbps", gbps)];
    if let Some(r) = refs.probe_gbps {
        rates.push(("of_probe", gbps / r));
    }
    if let Some(stream) = stream {
        rates.push(("stream_gbps", stream));
        rates.push(("of_stream", gbps / stream));
    }
    let mut case = case!(
        "phase" => "decode", "batch" => 1, "q_heads" => Q_HEADS, "kv_heads" => KV_HEADS,
        "head_dim" => HEAD_DIM, "kv_len" => kv_len, "dtype" => T::NAME,
        "layout" => if o.head_major { "bhsd" } else { "bshd" },
        "cache" => if o.block_size.is_some() { "paged" } else { "contiguous" },
        "threads" => threads, "cache_copies" => copies, "steps_per_sample" => 20
    );
    if let Some(bs) = o.block_size {
        case.insert("block_size".into(), bs.into());
    }
    sink.emit(Record {
        bench: "attention",
        case,
        runs: samples,
        median_s: t,
        rates: with_cpu(rates, cpu_s, ("gbps_per_core", step_bytes as f64 / 1e9)),
    });
    Ok(())
}

/// Times decode steps, `step(c)` reading cache copy `c` with copies taken in turn: batches
/// of 20 back-to-back steps (steps are short), median over 15 batches. Returns the run count,
/// seconds per step, CPU seconds per step and, unless `hot`, [`step_stream_gbps`] of `reads`.
fn time_steps<T: AttnElement>(
    reads: &[[Vec<&[T]>; 2]],
    threads: usize,
    hot: bool,
    mut step: impl FnMut(usize) -> Result<(), KernelError>,
) -> Result<(usize, f64, Option<f64>, Option<f64>), String> {
    let (mut i, mut err) = (0usize, None);
    let cpu = CpuMeter::start();
    let (samples, t) = time_batched(15, 20, || {
        if let Err(e) = step(i % reads.len()) {
            err = Some(e);
        }
        i += 1;
    });
    let cpu_s = cpu.per_call(i);
    if let Some(e) = err {
        return Err(e.to_string());
    }
    let stream = (!hot).then(|| step_stream_gbps(reads, threads));
    Ok((samples, t, cpu_s, stream))
}

/// The rows of `kv_len` positions a block table names, block by block in table order.
fn block_rows<'a, T>(
    data: &'a [T],
    table: &[u32],
    block_stride: usize,
    block_size: usize,
    kv_len: usize,
) -> Vec<&'a [T]> {
    let row = KV_HEADS * HEAD_DIM;
    table
        .iter()
        .enumerate()
        .map(|(j, &blk)| {
            let at = blk as usize * block_stride;
            &data[at..at + (kv_len - j * block_size).min(block_size) * row]
        })
        .collect()
}

/// Block numbers `0..blocks` in a fixed pseudo-random order: consecutive positions of a
/// sequence land in blocks scattered over the cache, as a serving cache's do once sequences
/// have come and gone.
fn shuffled_blocks(blocks: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..blocks as u32).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..blocks).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    order
}

/// The same bytes a decode step reads, read by `threads` tasks on the compute team with
/// nothing else to do: the bandwidth memory gives a step of this size, start-up included,
/// where the 256 MiB probe measures a long stream. `reads[c]` holds copy `c`'s K and V, each
/// as the pieces (the whole tensor, or a paged cache's blocks in table order) the step
/// reads; copies are taken in turn, and each task reads its share of K's and of V's bytes.
fn step_stream_gbps<T: AttnElement>(reads: &[[Vec<&[T]>; 2]], threads: usize) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let parts: Vec<usize> = (0..threads.max(1)).collect();
    let total = AtomicU64::new(0);
    let mut i = 0usize;
    let bytes: usize = reads[0]
        .iter()
        .flatten()
        .map(|piece| std::mem::size_of_val(*piece))
        .sum();
    let (_, t) = time_batched(15, 20, || {
        let c = i % reads.len();
        i += 1;
        knpu_kernels::par::for_each_task(&parts, threads, |&part| {
            let mut sum = 0u64;
            for pieces in &reads[c] {
                let len: usize = pieces.iter().map(|piece| piece.len()).sum();
                let share = len.div_ceil(parts.len());
                let (from, to) = ((part * share).min(len), ((part + 1) * share).min(len));
                let mut at = 0usize;
                for piece in pieces {
                    let (lo, hi) = (
                        from.max(at) - at,
                        to.min(at + piece.len()).saturating_sub(at),
                    );
                    at += piece.len();
                    if lo >= hi {
                        continue;
                    }
                    let mine = &piece[lo..hi];
                    // SAFETY: `T` is f32, f16 or bf16, plain data without padding, so its
                    // elements may be read as the bytes they occupy.
                    let raw = unsafe {
                        std::slice::from_raw_parts(
                            mine.as_ptr() as *const u8,
                            std::mem::size_of_val(mine),
                        )
                    };
                    // SAFETY: any 8 bytes are a valid u64.
                    let (head, words, tail) = unsafe { raw.align_to::<u64>() };
                    sum = words.iter().fold(sum, |a, &x| a.wrapping_add(x));
                    sum = head
                        .iter()
                        .chain(tail)
                        .fold(sum, |a, &x| a.wrapping_add(x as u64));
                }
            }
            total.fetch_add(sum, Ordering::Relaxed);
        });
    });
    std::hint::black_box(total.load(Ordering::Relaxed));
    bytes as f64 / t / 1e9
}

/// Reads a 256 MiB buffer with `threads` tasks (wrapping integer sums vectorise fully);
/// returns the wall-clock GB/s.
fn probe(threads: usize, sink: &mut Sink) -> f64 {
    let words = (256usize << 20) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads.max(1));
    let mut sink_sum = 0u64;
    let cpu = CpuMeter::start();
    let mut calls = 0usize;
    let (runs, t) = time_median(5, 30, Duration::from_millis(600), || {
        calls += 1;
        sink_sum = sink_sum.wrapping_add(
            buf.par_chunks(chunk)
                .map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
                .reduce(|| 0, u64::wrapping_add),
        );
    });
    let cpu_s = cpu.per_call(calls);
    std::hint::black_box(sink_sum);
    let gbps = (words * 8) as f64 / t / 1e9;
    sink.emit(Record {
        bench: "attention",
        case: case!("probe" => "read_bandwidth", "bytes" => words * 8, "threads" => threads),
        runs,
        median_s: t,
        rates: with_cpu(
            vec![("gbps", gbps)],
            cpu_s,
            ("gbps_per_core", (words * 8) as f64 / 1e9),
        ),
    });
    gbps
}

/// The process's resident-set high-water mark and current size, in bytes (Linux only).
fn rss() -> Option<(usize, usize)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<usize> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Causal prefill at growing lengths: scratch bytes and peak-RSS growth during the call.
fn memory(threads: usize, sink: &mut Sink) -> Result<(), String> {
    for seq in [4096usize, 8192, 16384] {
        let p = AttentionParams::bshd(1, seq, seq, Q_HEADS, KV_HEADS, HEAD_DIM, CAUSAL);
        let q: Vec<f32> = fill(p.q.required_len().map_err(|e| e.to_string())?, 1);
        let k: Vec<f32> = fill(p.k.required_len().map_err(|e| e.to_string())?, 2);
        let v: Vec<f32> = fill(p.v.required_len().map_err(|e| e.to_string())?, 3);
        // Non-zero fill touches every page now, so the peak-RSS growth below is the kernel's
        // own memory, not the output's first-touch page faults.
        let mut out = vec![1.0f32; q.len()];
        let io_bytes = 4 * (q.len() + k.len() + v.len() + out.len());
        // Writing 5 to clear_refs resets the high-water mark to the current RSS.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let before = rss();
        let start = Instant::now();
        attention(
            &p,
            AttentionInputs::new(&q, &k, &v),
            &mut out,
            None,
            Parallelism::Rayon(threads),
        )
        .map_err(|e| e.to_string())?;
        let t = start.elapsed().as_secs_f64();
        let after = rss();
        let scratch = attention_scratch_bytes(1, Q_HEADS, KV_HEADS, HEAD_DIM, seq, seq, threads);
        let mut rates = vec![
            ("gflops", causal_flops(seq) / t / 1e9),
            ("scratch_bytes", scratch as f64),
            ("io_bytes", io_bytes as f64),
        ];
        if let (true, Some((_, rss0)), Some((hwm, _))) = (reset, before, after) {
            rates.push(("peak_rss_delta_bytes", hwm.saturating_sub(rss0) as f64));
        }
        sink.emit(Record {
            bench: "attention",
            case: case!(
                "phase" => "memory", "batch" => 1, "q_heads" => Q_HEADS,
                "kv_heads" => KV_HEADS, "head_dim" => HEAD_DIM, "seq" => seq,
                "causal" => true, "dtype" => "f32", "threads" => threads
            ),
            runs: 1,
            median_s: t,
            rates,
        });
    }
    Ok(())
}
