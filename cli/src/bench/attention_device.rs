//! `knpu bench attention-device`: the attention kernels run as device kernels through
//! `knpu::ops`, beside the same `knpu_kernels::attention` call made directly on host memory in
//! the same run, so the difference is what the device path costs (launch, queue, address
//! resolution).
//!
//! - `prefill`: causal grouped-query attention, 9 query heads over 3 key/value heads,
//!   head_dim 64, batch 1, seq 256 and 1024 (`--quick`: 256), in GFLOP/s (causal halves the
//!   `4 * heads * seq^2 * head_dim` flops);
//! - `decode`: one query position against a contiguous cache of 4096 keys, in microseconds per
//!   step and GB/s of keys and values read.
//!
//! Device times are launch plus `synchronize`; host times are the plain call with the whole
//! machine's threads.

use super::{err, time_median, values, Record, Sink};
use knpu::ops::{self, AttentionArgs, AttnMask};
use knpu_kernels::attention as host;
use knpu_kernels::Parallelism;
use serde_json::{Map, Value};
use std::time::Duration;

const Q_HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

/// Times one problem on the device and on the host; returns (runs, device s, host s).
fn measure(s: &knpu::Stream, args: &AttentionArgs) -> Result<(usize, f64, f64), String> {
    let q = values(args.q.required_len().unwrap_or(0), 1);
    let k = values(args.k.required_len().unwrap_or(0), 2);
    let (dq, dk) = (
        s.from_slice(&q).map_err(err)?,
        s.from_slice(&k).map_err(err)?,
    );
    let mut dout = s.alloc::<f32>(q.len()).map_err(err)?;
    let mut failure = None;
    let (runs, dev_s) = time_median(5, 50, Duration::from_millis(500), || {
        let r = ops::attention(s, args, &dq, &dk, &dk, &mut dout, None, None)
            .and_then(|_| s.synchronize());
        if let Err(e) = r {
            failure = Some(err(e));
        }
    });
    let mut out = vec![0.0f32; q.len()];
    let (_, host_s) = time_median(5, 50, Duration::from_millis(500), || {
        if let Err(e) = host::attention(
            args,
            host::AttentionInputs::new(&q, &k, &k),
            &mut out,
            None,
            Parallelism::Rayon(0),
        ) {
            failure = Some(err(e));
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((runs, dev_s, host_s)),
    }
}

/// Emits the two records of one measured problem, the device path's and the host path's:
/// `case` gives the problem's parameters for a path, `rates` the rates of a median time.
fn emit_paths(
    sink: &mut Sink,
    (runs, dev_s, host_s): (usize, f64, f64),
    case: impl Fn(&'static str) -> Map<String, Value>,
    rates: impl Fn(f64) -> Vec<(&'static str, f64)>,
) {
    for (path, t) in [("device", dev_s), ("host", host_s)] {
        sink.emit(Record {
            bench: "attention-device",
            case: case(path),
            runs,
            median_s: t,
            rates: rates(t),
        });
    }
}

/// Runs the suite.
pub fn run(opts: &super::QuickOpts, sink: &mut Sink) -> Result<(), String> {
    let quick = opts.quick;
    let dev = knpu::device(0).map_err(err)?;
    let s = knpu::Stream::new(&dev).map_err(err)?;
    let causal = AttnMask {
        causal: true,
        ..Default::default()
    };
    let seqs: &[usize] = if quick { &[256] } else { &[256, 1024] };
    for &seq in seqs {
        let a = AttentionArgs::bshd(1, seq, seq, Q_HEADS, KV_HEADS, HEAD_DIM, causal);
        let flops = 4.0 * (Q_HEADS * seq * seq * HEAD_DIM) as f64 / 2.0;
        let case = |path: &'static str| {
            case!(
                "phase" => "prefill", "path" => path, "batch" => 1, "q_heads" => Q_HEADS,
                "kv_heads" => KV_HEADS, "head_dim" => HEAD_DIM, "seq" => seq,
                "causal" => true, "dtype" => "f32"
            )
        };
        emit_paths(sink, measure(&s, &a)?, case, |t| {
            vec![("gflops", flops / t / 1e9)]
        });
    }
    let kv_len = 4096;
    let a = AttentionArgs::bshd(1, 1, kv_len, Q_HEADS, KV_HEADS, HEAD_DIM, causal);
    let bytes = (2 * kv_len * KV_HEADS * HEAD_DIM * 4) as f64;
    let case = |path: &'static str| {
        case!(
            "phase" => "decode", "path" => path, "batch" => 1, "q_heads" => Q_HEADS,
            "kv_heads" => KV_HEADS, "head_dim" => HEAD_DIM, "kv_len" => kv_len,
            "dtype" => "f32"
        )
    };
    emit_paths(sink, measure(&s, &a)?, case, |t| {
        vec![("us", t * 1e6), ("gbps", bytes / t / 1e9)]
    });
    Ok(())
}
