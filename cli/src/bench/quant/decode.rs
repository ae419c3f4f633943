//! `knpu bench quant --only decode`: the quantised GEMVs of one SmolLM2-135M decode step, in
//! the order a decode step runs them, on one thread, with the weights coming from memory.
//!
//! Per layer (after the model's fusion): QKV (960 x 576), attention output (576 x 576, the
//! residual as bias), gate/up (3072 x 576), down (576 x 1536, the residual as bias), all
//! Q4_1; then the tied Q8_0 output projection (49152 x 576). Each matrix of each layer is an
//! allocation of its own (64-byte aligned host memory on the host's default pages; the
//! software NPU keeps device memory in huge pages, where the same GEMVs avoid most page
//! walks and run faster), so with the default 30 layers the step reads 96.4 MB, three times
//! a 32 MiB last-level cache: every GEMV streams its weights from DRAM, as in decode. A GEMV's activations are prepared inside the call
//! (the integer path quantises `x` each time), so the per-call fixed costs are counted.
//!
//! Rounds alternate a one-thread read-bandwidth probe (a sum over 256 MiB) with a few
//! decode steps, so both see the same machine; each round's steps are set against that
//! round's probe, and the ratio reported (`pct_of_probe`) is the median over rounds of those
//! paired ratios. Every time is taken twice, by the wall clock and by the thread's CPU time
//! (`gbps_cpu`, `pct_of_probe_cpu`): on a machine shared with other work a step is often
//! preempted, which the wall clock counts and the CPU time does not (what the CPU time still
//! counts is contention for the caches and memory). Records: the probe; one per shape (all its layers' calls in a step); one
//! per format (`"part": "format_total"`: `q4_1` the layers, `q8_0` the output); the whole step (`tok_s` is the rate
//! of steps these GEMVs alone would allow).

use super::super::{median, Record, Sink};
use super::Inputs;
use knpu_kernels::quant::{self, QMatmulParams, QWeights, QuantFormat};
use knpu_kernels::Parallelism;
use std::time::Instant;

/// One quantised matrix of the decode step.
struct Shape {
    name: &'static str,
    format: QuantFormat,
    /// Rows (outputs).
    n: usize,
    /// Row length.
    k: usize,
    /// Whether the call takes the residual as its bias (the output projections).
    bias: bool,
}

/// The GEMVs of one layer, in order.
const LAYER: [Shape; 4] = [
    Shape {
        name: "qkv",
        format: QuantFormat::Q4_1,
        n: 960,
        k: 576,
        bias: false,
    },
    Shape {
        name: "attn_out",
        format: QuantFormat::Q4_1,
        n: 576,
        k: 576,
        bias: true,
    },
    Shape {
        name: "gate_up",
        format: QuantFormat::Q4_1,
        n: 3072,
        k: 576,
        bias: false,
    },
    Shape {
        name: "down",
        format: QuantFormat::Q4_1,
        n: 576,
        k: 1536,
        bias: true,
    },
];

/// The tied output projection, once per step after the layers.
const OUTPUT: Shape = Shape {
    name: "output",
    format: QuantFormat::Q8_0,
    n: 49152,
    k: 576,
    bias: false,
};

/// Bytes the probe reads per pass.
const PROBE_BYTES: usize = 256 << 20;

/// Options of the decode case.
pub struct DecodeOpts {
    /// Layers of weights (each its own allocations).
    pub layers: usize,
    /// Rounds of (probe, steps).
    pub rounds: usize,
    /// Decode steps timed per round.
    pub steps: usize,
}

/// A byte buffer whose first `len` bytes start on a 64-byte boundary.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn from(bytes: &[u8]) -> Aligned {
        let mut buf = vec![0u8; bytes.len() + 64];
        let off = (64 - buf.as_ptr() as usize % 64) % 64;
        buf[off..off + bytes.len()].copy_from_slice(bytes);
        Aligned {
            buf,
            off,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
}

/// One matrix of the step, ready to call.
struct Call<'s> {
    shape: &'s Shape,
    /// Index of the shape in [`LAYER`] then [`OUTPUT`] (the record it adds to).
    slot: usize,
    w: Aligned,
}

/// The last-level cache size in bytes, from sysfs (`None` where it cannot be read).
fn llc_bytes() -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let (Ok(level), Ok(size)) = (
            std::fs::read_to_string(format!("{dir}/level")),
            std::fs::read_to_string(format!("{dir}/size")),
        ) else {
            continue;
        };
        let (Ok(level), size) = (level.trim().parse::<u32>(), size.trim()) else {
            continue;
        };
        let bytes = if let Some(kib) = size.strip_suffix('K') {
            kib.parse::<usize>().ok().map(|v| v << 10)
        } else if let Some(mib) = size.strip_suffix('M') {
            mib.parse::<usize>().ok().map(|v| v << 20)
        } else {
            size.parse::<usize>().ok()
        };
        if let Some(b) = bytes {
            if best.is_none_or(|(l, _)| level > l) {
                best = Some((level, b));
            }
        }
    }
    best.map(|(_, b)| b)
}

/// The calling thread's CPU time in seconds.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant Linux defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and CPU seconds of one run of `f`.
fn timed(f: impl FnOnce()) -> [f64; 2] {
    let (t, c) = (Instant::now(), cpu_now());
    f();
    let c = cpu_now() - c;
    [t.elapsed().as_secs_f64(), c]
}

/// One pass of the probe on the calling thread: wall and CPU seconds.
fn probe_pass(buf: &[u64]) -> [f64; 2] {
    let mut s = 0u64;
    let t = timed(|| {
        s = std::hint::black_box(buf)
            .iter()
            .fold(0u64, |a, &v| a.wrapping_add(v))
    });
    std::hint::black_box(s);
    t
}

/// Runs the decode case (see the module docs).
pub(super) fn run(
    opts: &DecodeOpts,
    isa: &str,
    rng: &mut Inputs,
    sink: &mut Sink,
) -> Result<(), String> {
    let shapes: Vec<&Shape> = LAYER.iter().chain([&OUTPUT]).collect();
    // One layer's matrices are quantised once and copied into every layer's buffers: the
    // values do not matter to the rate, the separate allocations do.
    let mut layer_bytes = Vec::new();
    for s in &LAYER {
        layer_bytes.push(quantised(s, rng)?);
    }
    let mut calls = Vec::new();
    for _ in 0..opts.layers {
        for (slot, (s, b)) in LAYER.iter().zip(&layer_bytes).enumerate() {
            calls.push(Call {
                shape: s,
                slot,
                w: Aligned::from(b),
            });
        }
    }
    calls.push(Call {
        shape: &OUTPUT,
        slot: LAYER.len(),
        w: Aligned::from(&quantised(&OUTPUT, rng)?),
    });
    let step_bytes: usize = calls.iter().map(|c| c.w.len).sum();
    let mut slot_bytes = vec![0usize; shapes.len()];
    for c in &calls {
        slot_bytes[c.slot] += c.w.len;
    }
    let llc = llc_bytes();
    if let Some(l) = llc {
        if step_bytes < 2 * l {
            eprintln!(
                "bench quant decode: {step_bytes} weight bytes against a {l}-byte last-level \
                 cache: part of each step may come from cache (raise --decode-layers)"
            );
        }
    }
    let xs: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(s.k)).collect();
    let bias: Vec<f32> = rng.vec(shapes.iter().map(|s| s.n).max().unwrap_or(0));
    let mut y = vec![0.0f32; OUTPUT.n.max(LAYER.iter().map(|s| s.n).max().unwrap_or(0))];
    let p = QMatmulParams {
        m: 1,
        ..Default::default()
    };
    // One step: every call in order; adds the wall and CPU seconds spent in each slot.
    let mut step = |times: &mut [[f64; 2]]| {
        times.fill([0.0; 2]);
        for c in &calls {
            let s = c.shape;
            let w = QWeights {
                format: s.format,
                data: c.w.bytes(),
                scales: None,
                n: s.n,
                k: s.k,
            };
            let b = s.bias.then(|| &bias[..s.n]);
            let y = &mut y[..s.n];
            let t = timed(|| {
                quant::qmatmul(&p, &xs[c.slot], &w, b, y, Parallelism::None)
                    .expect("valid arguments")
            });
            times[c.slot][0] += t[0];
            times[c.slot][1] += t[1];
        }
    };
    let probe_buf: Vec<u64> = (0..PROBE_BYTES / 8).map(|i| i as u64).collect();
    let mut times = vec![[0.0f64; 2]; shapes.len()];
    // Warm-up: page faults of the probe and the weights, the activation plans, the clocks.
    probe_pass(&probe_buf);
    step(&mut times);
    step(&mut times);
    let rounds = opts.rounds.max(1);
    let steps = opts.steps.max(1);
    // Per clock (wall, CPU): the probe's GB/s per round; per group (the slots, then the two
    // formats, then the whole step) the seconds of every step and each round's ratio of GB/s
    // to that round's probe.
    let groups = shapes.len() + 3;
    let mut probe_gbps = [Vec::new(), Vec::new()];
    let mut secs = [vec![Vec::new(); groups], vec![Vec::new(); groups]];
    let mut ratios = [vec![Vec::new(); groups], vec![Vec::new(); groups]];
    let group_bytes: Vec<usize> = slot_bytes
        .iter()
        .copied()
        .chain([
            slot_bytes[..LAYER.len()].iter().sum(),
            slot_bytes[LAYER.len()],
            step_bytes,
        ])
        .collect();
    for _ in 0..rounds {
        let pt = probe_pass(&probe_buf);
        let mut round = [vec![Vec::new(); groups], vec![Vec::new(); groups]];
        for _ in 0..steps {
            step(&mut times);
            for clock in 0..2 {
                let per_slot = times.iter().map(|t| t[clock]);
                let layers: f64 = per_slot.clone().take(LAYER.len()).sum();
                let out = times[LAYER.len()][clock];
                for (g, v) in per_slot.chain([layers, out, layers + out]).enumerate() {
                    round[clock][g].push(v);
                    secs[clock][g].push(v);
                }
            }
        }
        for clock in 0..2 {
            let pg = PROBE_BYTES as f64 / pt[clock] / 1e9;
            probe_gbps[clock].push(pg);
            for (g, r) in round[clock].iter_mut().enumerate() {
                let gbps = group_bytes[g] as f64 / median(r) / 1e9;
                ratios[clock][g].push(gbps / pg);
            }
        }
    }
    let probe_wall = median(&mut probe_gbps[0]);
    sink.emit(Record {
        bench: "quant",
        case: case!("probe" => "read_bandwidth", "bytes" => PROBE_BYTES, "threads" => 1,
                    "for" => "decode"),
        runs: rounds,
        median_s: PROBE_BYTES as f64 / 1e9 / probe_wall,
        rates: vec![
            ("gbps", probe_wall),
            ("gbps_cpu", median(&mut probe_gbps[1])),
        ],
    });
    let llc = llc.map_or(serde_json::Value::Null, serde_json::Value::from);
    for g in 0..groups {
        let (name, format, detail) = if g < shapes.len() {
            let s = shapes[g];
            let calls = if g < LAYER.len() { opts.layers } else { 1 };
            (s.name, s.format.name(), Some((s, calls)))
        } else if g == shapes.len() {
            ("format_total", QuantFormat::Q4_1.name(), None)
        } else if g == shapes.len() + 1 {
            ("format_total", QuantFormat::Q8_0.name(), None)
        } else {
            ("step", "q4_1+q8_0", None)
        };
        let mut case = case!("op" => "decode_gemv", "part" => name, "format" => format,
                             "m" => 1, "threads" => 1, "isa" => isa,
                             "layers" => opts.layers, "weight_bytes" => group_bytes[g],
                             "llc_bytes" => llc.clone());
        if let Some((s, calls)) = detail {
            case.insert("k".into(), s.k.into());
            case.insert("n".into(), s.n.into());
            case.insert("calls".into(), calls.into());
        }
        let t = median(&mut secs[0][g]);
        let t_cpu = median(&mut secs[1][g]);
        let mut rates = vec![
            ("gbps", group_bytes[g] as f64 / t / 1e9),
            ("pct_of_probe", 100.0 * median(&mut ratios[0][g])),
            ("gbps_cpu", group_bytes[g] as f64 / t_cpu / 1e9),
            ("pct_of_probe_cpu", 100.0 * median(&mut ratios[1][g])),
        ];
        if g == groups - 1 {
            rates.push(("tok_s", 1.0 / t));
        }
        sink.emit(Record {
            bench: "quant",
            case,
            runs: rounds * steps,
            median_s: t,
            rates,
        });
    }
    Ok(())
}

/// A random matrix of `s`'s shape in its format.
fn quantised(s: &Shape, rng: &mut Inputs) -> Result<Vec<u8>, String> {
    let rb = quant::row_bytes(s.format, s.k).map_err(|e| e.to_string())?;
    let mut w = vec![0u8; s.n * rb];
    quant::quantize(s.format, s.n, s.k, &rng.vec(s.n * s.k), &mut w, None)
        .map_err(|e| e.to_string())?;
    Ok(w)
}
