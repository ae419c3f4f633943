//! `knpu bench quant-device`: the quantised matmul run as a device kernel through
//! `knpu::ops::qmatmul`, beside the same `knpu_kernels::quant::qmatmul` call made directly on
//! host memory in the same run, so the difference is what the device path costs (launch,
//! queue, address resolution).
//!
//! - `gemv`: one f32 row against 4096 x 4096 weights (`--quick`: 1024 x 4096) in Q8_0, Q4_0
//!   and Q4_K, in microseconds per call and GB/s of weight bytes read;
//! - `prefill`: 64 rows against the Q4_K weights, in GOP/s (`2 m n k`).
//!
//! Device times are launch plus `synchronize`; host times are the plain call with the whole
//! machine's threads.

use super::{err, time_median, values, Record, Sink};
use knpu::ops::{self, QMatmul, QWeights, QuantFormat};
use knpu_kernels::quant as host;
use knpu_kernels::Parallelism;
use std::time::Duration;

const K: usize = 4096;

/// The host kernels' format of the same name (both spell the header's format names), or an
/// error naming a format the host kernels lack.
fn host_format(f: QuantFormat) -> Result<host::QuantFormat, String> {
    host::QuantFormat::from_name(f.name())
        .ok_or_else(|| format!("the host kernels have no {} format", f.name()))
}

/// Times `m` rows against `n x K` weights of `format` on the device and on the host; returns
/// (runs, device s, host s, weight bytes).
fn measure(
    s: &knpu::Stream,
    format: QuantFormat,
    m: usize,
    n: usize,
) -> Result<(usize, f64, f64, usize), String> {
    let hf = host_format(format)?;
    let rb = host::row_bytes(hf, K).map_err(err)?;
    let mut w = vec![0u8; n * rb];
    host::quantize(hf, n, K, &values(n * K, 1), &mut w, None).map_err(err)?;
    let x = values(m * K, 2);
    let dw = s.from_slice(&w).map_err(err)?;
    let dx = s.from_slice(&x).map_err(err)?;
    let mut dy = s.alloc::<f32>(m * n).map_err(err)?;
    let weights = QWeights::new(format, &dw, n, K);
    let q = QMatmul::new(m);
    let mut failure = None;
    let (runs, dev_s) = time_median(5, 200, Duration::from_millis(500), || {
        let r = ops::qmatmul(s, &q, &dx, &weights, &mut dy).and_then(|_| s.synchronize());
        if let Err(e) = r {
            failure = Some(err(e));
        }
    });
    let hw = host::QWeights {
        format: hf,
        data: &w,
        scales: None,
        n,
        k: K,
    };
    let p = host::QMatmulParams {
        m,
        ..Default::default()
    };
    let mut y = vec![0.0f32; m * n];
    let (_, host_s) = time_median(5, 200, Duration::from_millis(500), || {
        if let Err(e) = host::qmatmul(&p, &x, &hw, None, &mut y, Parallelism::Rayon(0)) {
            failure = Some(err(e));
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((runs, dev_s, host_s, w.len())),
    }
}

/// Runs the suite.
pub fn run(opts: &super::QuickOpts, sink: &mut Sink) -> Result<(), String> {
    let quick = opts.quick;
    let dev = knpu::device(0).map_err(err)?;
    let s = knpu::Stream::new(&dev).map_err(err)?;
    let n = if quick { 1024 } else { 4096 };
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_K] {
        let (runs, dev_s, host_s, bytes) = measure(&s, format, 1, n)?;
        for (path, t) in [("device", dev_s), ("host", host_s)] {
            sink.emit(Record {
                bench: "quant-device",
                case: case!(
                    "phase" => "gemv", "path" => path, "format" => format.name(), "m" => 1,
                    "n" => n, "k" => K, "x" => "f32"
                ),
                runs,
                median_s: t,
                rates: vec![("us", t * 1e6), ("gbps", bytes as f64 / t / 1e9)],
            });
        }
    }
    let m = 64;
    let (runs, dev_s, host_s, _) = measure(&s, QuantFormat::Q4_K, m, n)?;
    let ops = 2.0 * (m * n * K) as f64;
    for (path, t) in [("device", dev_s), ("host", host_s)] {
        sink.emit(Record {
            bench: "quant-device",
            case: case!(
                "phase" => "prefill", "path" => path, "format" => "q4_k", "m" => m,
                "n" => n, "k" => K, "x" => "f32"
            ),
            runs,
            median_s: t,
            rates: vec![("gops", ops / t / 1e9)],
        });
    }
    Ok(())
}
