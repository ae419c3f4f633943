//! `knpu bench <suite> [--json] [suite options]`: the one benchmark entry point.
//!
//! Each suite measures a set of cases and emits one [`Record`] per measurement. With `--json`
//! records print as JSON Lines (`{"bench", "case", "runs", "median_s", <rate>}`, DESIGN.md
//! "Performance method"); without it, as a table. Times are medians of several runs.

use serde_json::{Map, Value};
use std::time::{Duration, Instant};

/// One measurement: the suite, the case's parameters, the run count, the median time and the
/// derived rates (named by unit: `gflops`, `gops`, `gbps`, `us`, `tok_s`, ...).
pub struct Record {
    /// The suite name, e.g. `"gemm"`.
    pub bench: &'static str,
    /// The case's parameters as a JSON object.
    pub case: Map<String, Value>,
    /// How many timed runs the median is over.
    pub runs: usize,
    /// The median time of one run, in seconds.
    pub median_s: f64,
    /// Derived rates, in order, each named by its unit.
    pub rates: Vec<(&'static str, f64)>,
}

impl Record {
    /// The record as one JSON object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("bench".into(), Value::from(self.bench));
        m.insert("case".into(), Value::Object(self.case.clone()));
        m.insert("runs".into(), Value::from(self.runs));
        m.insert("median_s".into(), Value::from(self.median_s));
        for (name, v) in &self.rates {
            m.insert((*name).into(), Value::from(round_sig(*v)));
        }
        Value::Object(m)
    }
}

fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 4 - v.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits.clamp(-10, 10));
    (v * scale).round() / scale
}

/// Builds a case object from `(name, value)` pairs.
#[macro_export]
macro_rules! case {
    ($($k:expr => $v:expr),* $(,)?) => {{
        let mut m = serde_json::Map::new();
        $( m.insert(String::from($k), serde_json::Value::from($v)); )*
        m
    }};
}

/// Times `f` after warming up for a tenth of `min_time`: at least `min_runs` runs and until `min_time` has passed
/// (at most `max_runs`). Returns the run count and the median seconds per run.
pub fn time_median(
    min_runs: usize,
    max_runs: usize,
    min_time: Duration,
    mut f: impl FnMut(),
) -> (usize, f64) {
    // Warm up for a tenth of the measuring time (at least one call): caches, page faults,
    // and the compute team's threads settling on their cores.
    let warm = Instant::now();
    f();
    while warm.elapsed() < min_time / 10 {
        f();
    }
    let start = Instant::now();
    let mut times = Vec::with_capacity(min_runs);
    while times.len() < min_runs || (start.elapsed() < min_time && times.len() < max_runs) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    (times.len(), median(&mut times))
}

/// Times `iters` back-to-back calls of `f` as one sample, `samples` times; returns the median
/// seconds per call. For operations far shorter than a clock read.
pub fn time_batched(samples: usize, iters: usize, mut f: impl FnMut()) -> (usize, f64) {
    for _ in 0..iters.min(1000) {
        f();
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        times.push(t.elapsed().as_secs_f64() / iters as f64);
    }
    (samples, median(&mut times))
}

/// `n` deterministic values in `[-1, 1)` from `seed` (an xorshift sequence): the inputs every
/// suite times its kernels on. Every seed starts a sequence of its own.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    // A nonzero state that differs for every seed below 2^63 (`seed | 1` would give seeds
    // 2k and 2k + 1 the same sequence).
    let mut s = (seed << 1) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A failure as the message a suite returns.
pub fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The operands of the tiny kernel whose launch the runtime and graph suites time (an add of
/// 16 floats on `s`): `a`, `b` and the output.
pub fn tiny_add_operands(s: &knpu::Stream) -> Result<[knpu::DeviceBuffer<f32>; 3], String> {
    Ok([
        s.from_slice(&[1.0f32; 16]).map_err(err)?,
        s.from_slice(&[2.0f32; 16]).map_err(err)?,
        s.alloc::<f32>(16).map_err(err)?,
    ])
}

/// Host seconds per item of `f`, which queues `items` items on `s`: the median over `samples`
/// timed calls after two warm-up calls, `s` drained before each call and after the last,
/// outside the timed region.
pub fn host_s_per_item(
    s: &knpu::Stream,
    samples: usize,
    items: usize,
    mut f: impl FnMut() -> Result<(), knpu::Error>,
) -> Result<f64, String> {
    let mut times = Vec::with_capacity(samples + 2);
    for _ in 0..samples + 2 {
        s.synchronize().map_err(err)?;
        let t = Instant::now();
        f().map_err(err)?;
        times.push(t.elapsed().as_secs_f64() / items as f64);
    }
    s.synchronize().map_err(err)?;
    Ok(median(&mut times[2..]))
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Where records go: JSON Lines or a table, printed as they come.
pub struct Sink {
    json: bool,
}

impl Sink {
    /// A sink printing JSON Lines when `json`, a table otherwise.
    pub fn new(json: bool) -> Sink {
        Sink { json }
    }

    /// Prints one record.
    pub fn emit(&mut self, r: Record) {
        if self.json {
            println!("{}", r.to_json());
        } else {
            let case: Vec<String> = r.case.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let rates: Vec<String> = r
                .rates
                .iter()
                .map(|(k, v)| format!("{k}={:.4}", round_sig(*v)))
                .collect();
            println!(
                "{:<10} {:<60} runs={:<4} median={:>12.3}us  {}",
                r.bench,
                case.join(" "),
                r.runs,
                r.median_s * 1e6,
                rates.join(" ")
            );
        }
    }
}

pub mod attention;
pub mod capi;
pub mod gemm;
pub mod graph;
pub mod ops;
pub mod quant;
pub mod runtime;
// Attention as device kernels.
pub mod attention_device;
// Quantised matmul as a device kernel.
pub mod quant_device;

/// Options of `knpu bench`: the suite (a subcommand with its own options) and the format.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Print JSON Lines, one record per measurement, instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    suite: Suite,
}

/// Options of the suites whose only choice is a shorter run.
#[derive(clap::Args)]
pub struct QuickOpts {
    /// Fewer cases and samples (a smoke run).
    #[arg(long)]
    pub quick: bool,
}

/// The suites `knpu bench` knows.
#[derive(clap::Subcommand)]
enum Suite {
    /// Launch cost, round trip, event record, cached alloc+free, copy bandwidth.
    Runtime(QuickOpts),
    /// Host time per node: eager launches vs graph replay, N = 10, 100, 1000.
    Graph(QuickOpts),
    /// GEMM/GEMV f32, f16, bf16 (square, LLM shapes, forced paths) and a read-bandwidth probe.
    Gemm(gemm::Opts),
    /// Fused attention: causal prefill GFLOP/s, decode time and bytes/s, read-bandwidth probe.
    Attention(attention::Opts),
    /// Quantised GEMV/GEMM (Q4_0, Q4_1, Q8_0, Q4_K), W8A8 GEMM, read-bandwidth probe.
    Quant(quant::Opts),
    /// LLM ops (RMSNorm, softmax, SwiGLU, RoPE) in GB/s per ISA path.
    Ops(ops::Opts),
    /// Attention through knpu::ops on device 0 beside the host kernel call.
    AttentionDevice(QuickOpts),
    /// Quantised GEMV/prefill through knpu::ops on device 0 beside the host call.
    QuantDevice(QuickOpts),
    /// Host cost per call of the C API against the Rust API (knpuMemcpyAsync, knpublasSgemm).
    Capi(capi::Opts),
}

/// Runs the chosen suite.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let sink = &mut Sink::new(args.json);
    match &args.suite {
        Suite::Runtime(o) => runtime::run(o, sink),
        Suite::Graph(o) => graph::run(o, sink),
        Suite::Gemm(o) => gemm::run(o, sink),
        Suite::Attention(o) => attention::run(o, sink),
        Suite::Quant(o) => quant::run(o, sink),
        Suite::Ops(o) => ops::run(o, sink),
        Suite::AttentionDevice(o) => attention_device::run(o, sink),
        Suite::QuantDevice(o) => quant_device::run(o, sink),
        Suite::Capi(o) => capi::run(o, sink),
    }
}
