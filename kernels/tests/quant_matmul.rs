//! Quantised matmul and W8A8 GEMM against dequantise-then-f64-matmul, on every ISA path.

use half::{bf16, f16};
use knpu_kernels::quant::{
    self, ActQuant, Activation, QMatmulParams, QWeights, QuantFormat, W8A8Params,
};
use knpu_kernels::{isa, Exec, KernelError, Parallelism};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A `[n, k]` weight matrix quantised to `fmt`, with what it dequantises to.
struct Weights {
    fmt: QuantFormat,
    n: usize,
    k: usize,
    /// The quantised rows.
    q: Vec<u8>,
    /// Per-row scales, for the formats that have them.
    scales: Option<Vec<f32>>,
    /// The dequantised values, the reference's weights.
    deq: Vec<f32>,
}

impl Weights {
    fn new(fmt: QuantFormat, n: usize, k: usize, seed: u64) -> Weights {
        let mut r = Rng(seed);
        let src: Vec<f32> = (0..n * k)
            .map(|i| r.f() * (1.0 + (i % 7) as f32 * 0.3))
            .collect();
        let mut q = vec![0u8; n * quant::row_bytes(fmt, k).unwrap()];
        let mut s = vec![0.0f32; n];
        let with = fmt.row_scales() != quant::RowScales::None;
        quant::quantize(fmt, n, k, &src, &mut q, with.then_some(&mut s[..])).unwrap();
        let mut deq = vec![0.0f32; n * k];
        quant::dequantize(fmt, n, k, &q, with.then_some(&s[..]), &mut deq).unwrap();
        let scales = with.then_some(s);
        Weights {
            fmt,
            n,
            k,
            q,
            scales,
            deq,
        }
    }

    /// The kernel's view of these weights.
    fn view(&self) -> QWeights<'_> {
        QWeights {
            format: self.fmt,
            data: &self.q,
            scales: self.scales.as_deref(),
            n: self.n,
            k: self.k,
        }
    }

    /// The reference result of `x` (`[m, k]`, `m` from its length) times these weights.
    fn reference(&self, x: &[f32], bias: Option<&[f32]>, act: Activation) -> Vec<f64> {
        let m = x.len() / self.k;
        reference(x, &self.deq, bias, m, self.n, self.k, act)
    }

    /// `x` times these weights through `isa`'s path, into a fresh `[m, n]` output.
    fn qmatmul(
        &self,
        isa: isa::Isa,
        p: &QMatmulParams,
        x: &[f32],
        bias: Option<&[f32]>,
        par: Parallelism,
    ) -> Vec<f32> {
        let mut y = vec![f32::NAN; p.m * self.n];
        quant::qmatmul(p, x, &self.view(), bias, &mut y, Exec::new(isa, par)).unwrap();
        y
    }

    /// Checks `got` for input `x` against `want` within `tol` (see [`check`]).
    fn check(&self, tag: &str, got: &[f32], want: &[f64], x: &[f32], tol: Tol) {
        let m = x.len() / self.k;
        check(tag, got, want, x, &self.deq, (m, self.n, self.k), tol);
    }
}

fn reference(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
    act: Activation,
) -> Vec<f64> {
    let mut y = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for t in 0..k {
                s += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            if let Some(b) = bias {
                s += b[j] as f64;
            }
            y[i * n + j] = act.apply(s as f32) as f64;
        }
    }
    y
}

/// Checks `got` against `want`: the integer path is allowed the activation rounding (half a
/// step of 8-bit blocks: |x|max/254 per value, summed over k with |w|) plus f32 summation.
/// What a result may deviate by: the integer path's activation rounding (`int`), and a
/// relative term for a narrow output type (`out_rel`, half an ulp).
#[derive(Clone, Copy)]
struct Tol {
    int: bool,
    out_rel: f64,
}

impl Tol {
    /// The tolerance of an f32 output, with the integer path's rounding where `int`.
    fn f32_out(int: bool) -> Tol {
        Tol { int, out_rel: 0.0 }
    }
}

fn check(
    tag: &str,
    got: &[f32],
    want: &[f64],
    x: &[f32],
    w: &[f32],
    (m, n, k): (usize, usize, usize),
    tol: Tol,
) {
    let Tol { int, out_rel } = tol;
    for i in 0..m {
        let xmax = x[i * k..(i + 1) * k]
            .iter()
            .fold(0.0f32, |a, v| a.max(v.abs())) as f64;
        for j in 0..n {
            let wabs: f64 = w[j * k..(j + 1) * k].iter().map(|v| v.abs() as f64).sum();
            let xw: f64 = (0..k)
                .map(|t| (x[i * k + t] * w[j * k + t]).abs() as f64)
                .sum();
            let (g, e) = (got[i * n + j] as f64, want[i * n + j]);
            let tol = if int { xmax / 254.0 * wabs * 1.05 } else { 0.0 }
                + 1e-5 * xw
                + 1e-6
                + out_rel * e.abs();
            assert!(
                (g - e).abs() <= tol,
                "{tag}: y[{i}][{j}] = {g}, reference {e}, tolerance {tol}"
            );
        }
    }
}

const FORMATS: [QuantFormat; 8] = QuantFormat::ALL;

#[test]
fn qmatmul_matches_reference_on_every_path() {
    let shapes = [
        // k of one, two and three 32-value blocks (formats of 256-value blocks skip them).
        (1, 1, 32),
        (1, 7, 64),
        (3, 5, 96),
        // One and two 256-value blocks.
        (8, 17, 256),
        (2, 9, 512),
        // Nine 32-value blocks; three 256-value blocks.
        (11, 13, 288),
        (20, 37, 768),
    ];
    for fmt in FORMATS {
        for &(m, n, k) in &shapes {
            if k % fmt.block_elems() != 0 {
                continue;
            }
            let w = Weights::new(fmt, n, k, (m * 1000 + n * 10 + k) as u64);
            let mut r = Rng(k as u64);
            let x: Vec<f32> = (0..m * k).map(|_| r.f() * 2.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
            for act in [Activation::None, Activation::GeluErf] {
                let want = w.reference(&x, Some(&bias), act);
                for isa in isa::supported() {
                    for aq in [ActQuant::Auto, ActQuant::Float] {
                        for par in [Parallelism::None, Parallelism::Rayon(2)] {
                            let p = QMatmulParams {
                                m,
                                activation: act,
                                act_quant: aq,
                            };
                            let y = w.qmatmul(isa, &p, &x, Some(&bias), par);
                            let int = aq == ActQuant::Auto
                                && !matches!(fmt, QuantFormat::F8E4M3 | QuantFormat::F8E5M2);
                            // GELU's slope is at most 1.13, so the bound carries over.
                            let tag = format!("{fmt:?} {isa:?} {aq:?} {act:?} m={m} n={n} k={k}");
                            w.check(&tag, &y, &want, &x, Tol::f32_out(int));
                        }
                    }
                }
            }
        }
    }
}

/// Decode shapes (`m = 1..8`) around the GEMV kernel's row blocks (4, 2 and single weight
/// rows, chosen by `m`), Q4 quads with a pair and a lone block after them, and Q4_K with one
/// and two super-blocks, on every path.
#[test]
fn gemv_row_blocks_every_m_on_every_path() {
    let ns = [1, 2, 3, 4, 5, 6, 7, 9, 13];
    for fmt in FORMATS {
        let ks: &[usize] = if fmt.block_elems() == 256 {
            &[256, 512]
        } else {
            &[32, 480]
        };
        for &k in ks {
            for m in 1..=8 {
                for &n in &ns {
                    let w = Weights::new(fmt, n, k, (m * 97 + n * 7 + k) as u64);
                    let mut r = Rng((m * n + k) as u64);
                    let x: Vec<f32> = (0..m * k).map(|_| r.f() * 3.0).collect();
                    let want = w.reference(&x, None, Activation::None);
                    let int = !matches!(fmt, QuantFormat::F8E4M3 | QuantFormat::F8E5M2);
                    for isa in isa::supported() {
                        for par in [Parallelism::None, Parallelism::Rayon(2)] {
                            let p = QMatmulParams {
                                m,
                                ..Default::default()
                            };
                            let y = w.qmatmul(isa, &p, &x, None, par);
                            let tag = format!("{fmt:?} {isa:?} {par:?} m={m} n={n} k={k}");
                            w.check(&tag, &y, &want, &x, Tol::f32_out(int));
                        }
                    }
                }
            }
        }
    }
}

/// Weights larger than a core's L2 (more than 1 MiB per task, streamed from memory with
/// software prefetch), for the Q4 formats.
#[test]
fn gemv_streamed_weights_on_every_path() {
    for fmt in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q4_K] {
        let (n, k) = (520, 4096);
        let w = Weights::new(fmt, n, k, 11);
        assert!(w.q.len() > 1 << 20);
        for m in [1, 3] {
            let mut r = Rng(5 + m as u64);
            let x: Vec<f32> = (0..m * k).map(|_| r.f()).collect();
            let want = w.reference(&x, None, Activation::None);
            for isa in isa::supported() {
                let p = QMatmulParams {
                    m,
                    ..Default::default()
                };
                let y = w.qmatmul(isa, &p, &x, None, Parallelism::None);
                let tag = format!("{fmt:?} {isa:?} m={m} n={n} k={k}");
                w.check(&tag, &y, &want, &x, Tol::f32_out(true));
            }
        }
    }
}

/// Prefill shapes (`m > 8`): the packed-tile microkernel's edge tiles (rows of `x` not a
/// multiple of its 4, weight rows not a multiple of its 32, a tile split across two tasks),
/// on every path and every integer format with 32-value blocks.
#[test]
fn qmatmul_prefill_edge_tiles_on_every_path() {
    let ms = [9, 10, 11, 12, 13, 37];
    let ns = [1, 31, 33, 70];
    for fmt in [
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q8_0,
        QuantFormat::Q4_K,
        QuantFormat::Q6_K,
    ] {
        let k = if fmt.block_elems() == 256 { 512 } else { 96 };
        for &n in &ns {
            let w = Weights::new(fmt, n, k, (n * 31 + k) as u64);
            let bias: Vec<f32> = (0..n).map(|j| 0.5 - j as f32 * 0.125).collect();
            for &m in &ms {
                let mut r = Rng((m * 7 + n) as u64);
                let x: Vec<f32> = (0..m * k).map(|_| r.f() * 3.0).collect();
                let want = w.reference(&x, Some(&bias), Activation::None);
                for isa in isa::supported() {
                    for par in [Parallelism::None, Parallelism::Rayon(2)] {
                        let p = QMatmulParams {
                            m,
                            ..Default::default()
                        };
                        let y = w.qmatmul(isa, &p, &x, Some(&bias), par);
                        let tag = format!("{fmt:?} {isa:?} {par:?} m={m} n={n} k={k}");
                        w.check(&tag, &y, &want, &x, Tol::f32_out(true));
                    }
                }
            }
        }
    }
}

#[test]
fn qmatmul_half_precision_inputs_and_outputs() {
    let (m, n, k) = (3, 10, 256);
    for fmt in [QuantFormat::Q4_K, QuantFormat::Q8_0, QuantFormat::F8E4M3] {
        let w = Weights::new(fmt, n, k, 5);
        let mut r = Rng(9);
        let x: Vec<f32> = (0..m * k).map(|_| r.f()).collect();
        let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let xh32: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
        let xb32: Vec<f32> = xb.iter().map(|v| v.to_f32()).collect();
        let p = QMatmulParams {
            m,
            activation: Activation::Silu,
            act_quant: ActQuant::Auto,
        };
        let int = fmt != QuantFormat::F8E4M3;
        for isa in isa::supported() {
            let ex = Exec::new(isa, Parallelism::None);
            let mut y = vec![f16::ZERO; m * n];
            quant::qmatmul(&p, &xh, &w.view(), None, &mut y, ex).unwrap();
            let want = w.reference(&xh32, None, Activation::Silu);
            let y32: Vec<f32> = y.iter().map(|v| v.to_f32()).collect();
            // f16 output adds half an ulp of the result (gelu-free SiLU keeps the bound).
            let tol = Tol {
                int,
                out_rel: 1.0 / 2048.0,
            };
            w.check(&format!("{fmt:?} f16 {isa:?}"), &y32, &want, &xh32, tol);
            let mut yb = vec![0.0f32; m * n];
            quant::qmatmul(&p, &xb, &w.view(), None, &mut yb, ex).unwrap();
            let want = w.reference(&xb32, None, Activation::Silu);
            w.check(
                &format!("{fmt:?} bf16 {isa:?}"),
                &yb,
                &want,
                &xb32,
                Tol::f32_out(int),
            );
        }
    }
}

/// One operand of a W8A8 GEMM: int8 codes with a scale per row.
struct ScaledRows {
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl ScaledRows {
    /// The kernel's view of these rows.
    fn view(&self) -> quant::ScaledI8<'_> {
        quant::ScaledI8 {
            codes: &self.codes,
            scales: &self.scales,
        }
    }
}

/// The W8A8 GEMM of `x` and `w` through `isa`'s path into `y`.
fn w8a8(
    isa: isa::Isa,
    p: &W8A8Params,
    (x, w): (&ScaledRows, &ScaledRows),
    bias: Option<&[f32]>,
    y: &mut [f32],
    par: Parallelism,
) {
    quant::w8a8_gemm(p, x.view(), w.view(), bias, y, Exec::new(isa, par)).unwrap();
}

/// Checks `y[i][j]` of a W8A8 GEMM against its exact integer dot product, scaled, biased and
/// activated, to a relative 1e-5; `tag` names the case.
fn check_w8a8(
    p: &W8A8Params,
    (x, w): (&ScaledRows, &ScaledRows),
    bias: Option<&[f32]>,
    y: &[f32],
    (i, j): (usize, usize),
    tag: &str,
) {
    let k = p.k;
    let dot: i64 = (0..k)
        .map(|t| x.codes[i * k + t] as i64 * w.codes[j * k + t] as i64)
        .sum();
    let b = bias.map_or(0.0, |b| b[j] as f64);
    let e = p
        .activation
        .apply((dot as f64 * x.scales[i] as f64 * w.scales[j] as f64 + b) as f32);
    let g = y[i * p.n + j];
    assert!(
        (g - e).abs() <= 1e-5 * e.abs().max(1.0),
        "{tag} y[{i}][{j}] = {g}, want {e}"
    );
}

/// `(m, n, k)` of the W8A8 GEMM cases.
const W8A8_SHAPES: [(usize, usize, usize); 10] = [
    // One value; no k at all (y is the activated bias).
    (1, 1, 1),
    (3, 5, 0),
    (9, 33, 7),
    (17, 64, 130),
    (8, 32, 256),
    (30, 70, 65),
    (41, 100, 129),
    (10, 40, 1101),
    // Several chunks of 128 rows, k blocks and uneven column splits.
    (300, 97, 40),
    (129, 200, 520),
];

#[test]
fn w8a8_gemm_matches_integer_reference() {
    for (m, n, k) in W8A8_SHAPES {
        let mut r = Rng((m * n * k) as u64 + 1);
        let mut codes = |len: usize, every: usize| -> Vec<i8> {
            (0..len)
                .map(|i| {
                    if i % every == 0 {
                        -128
                    } else {
                        (r.f() * 127.0) as i8
                    }
                })
                .collect()
        };
        let xq = codes(m * k, 37);
        let wq = codes(n * k, 41);
        let x = ScaledRows {
            codes: xq,
            scales: (0..m).map(|i| 0.01 + i as f32 * 0.001).collect(),
        };
        let w = ScaledRows {
            codes: wq,
            scales: (0..n).map(|j| 0.02 + j as f32 * 0.0005).collect(),
        };
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1).collect();
        for act in [Activation::None, Activation::Relu, Activation::GeluTanh] {
            let p = W8A8Params {
                m,
                n,
                k,
                activation: act,
            };
            for isa in isa::supported() {
                for par in [
                    Parallelism::None,
                    Parallelism::Rayon(2),
                    Parallelism::Rayon(3),
                ] {
                    let mut y = vec![f32::NAN; m * n];
                    w8a8(isa, &p, (&x, &w), Some(&bias), &mut y, par);
                    let tag = format!("{isa:?} {act:?} ({m},{n},{k})");
                    for i in 0..m {
                        for j in 0..n {
                            check_w8a8(&p, (&x, &w), Some(&bias), &y, (i, j), &tag);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn qmatmul_rejects_bad_arguments() {
    let (n, k) = (4, 64);
    let q = Weights::new(QuantFormat::Q4_0, n, k, 1).q;
    let x = vec![0.5f32; 2 * k];
    let mut y = vec![0.0f32; 2 * n];
    let p = QMatmulParams {
        m: 2,
        ..Default::default()
    };
    let w = QWeights {
        format: QuantFormat::Q4_0,
        data: &q[..q.len() - 1],
        scales: None,
        n,
        k,
    };
    let e = quant::qmatmul(&p, &x, &w, None, &mut y, Parallelism::None).unwrap_err();
    assert!(
        matches!(e, KernelError::SliceTooShort { operand: "w", .. }),
        "{e}"
    );
    let w = QWeights {
        format: QuantFormat::Q4_0,
        data: &q,
        scales: None,
        n,
        k: 48,
    };
    assert!(matches!(
        quant::qmatmul(&p, &x, &w, None, &mut y, Parallelism::None),
        Err(KernelError::BadShape { .. })
    ));
    let w = QWeights {
        format: QuantFormat::Q4_0,
        data: &q,
        scales: None,
        n,
        k,
    };
    let e = quant::qmatmul(&p, &x, &w, Some(&[0.0; 3]), &mut y, Parallelism::None).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    let e = quant::qmatmul(&p, &x[..k], &w, None, &mut y, Parallelism::None).unwrap_err();
    assert!(
        matches!(e, KernelError::SliceTooShort { operand: "x", .. }),
        "{e}"
    );
    let w8 = vec![0u8; n * k];
    let w = QWeights {
        format: QuantFormat::I8,
        data: &w8,
        scales: Some(&[1.0; 3]),
        n,
        k,
    };
    assert!(quant::qmatmul(&p, &x, &w, None, &mut y, Parallelism::None).is_err());
    let w = QWeights {
        format: QuantFormat::F8E5M2,
        data: &w8,
        scales: None,
        n,
        k,
    };
    let pi = QMatmulParams {
        act_quant: ActQuant::Int8,
        ..p
    };
    let e = quant::qmatmul(&pi, &x, &w, None, &mut y, Parallelism::None).unwrap_err();
    assert!(matches!(e, KernelError::Unsupported { .. }), "{e}");
}

#[test]
fn nan_and_inf_block_scales_propagate() {
    let (n, k) = (2, 64);
    let mut q = Weights::new(QuantFormat::Q8_0, n, k, 3).q;
    q[0..2].copy_from_slice(&f16::NAN.to_bits().to_le_bytes());
    q[68..70].copy_from_slice(&f16::INFINITY.to_bits().to_le_bytes());
    let x = vec![1.0f32; k];
    let w = QWeights {
        format: QuantFormat::Q8_0,
        data: &q,
        scales: None,
        n,
        k,
    };
    for isa in isa::supported() {
        let mut y = vec![0.0f32; n];
        quant::qmatmul(
            &QMatmulParams {
                m: 1,
                ..Default::default()
            },
            &x,
            &w,
            None,
            &mut y,
            Exec::new(isa, Parallelism::None),
        )
        .unwrap();
        assert!(y[0].is_nan(), "{isa:?}: NaN scale gave {}", y[0]);
        assert!(
            y[1].is_infinite() || y[1].is_nan(),
            "{isa:?}: Inf scale gave {}",
            y[1]
        );
    }
}

#[test]
fn w8a8_large_outputs_match_whatever_their_alignment() {
    // Outputs of 4 MiB and more are written with streaming stores where a row segment is
    // 64-byte aligned: n = 1000 makes rows start at every 16-byte offset; n = 1024 keeps
    // every row aligned when the buffer is.
    for &(m, n, k) in &[(1100usize, 1000usize, 8usize), (1024, 1024, 4)] {
        let mut r = Rng((m + n + k) as u64);
        let xq: Vec<i8> = (0..m * k).map(|_| (r.f() * 127.0) as i8).collect();
        let wq: Vec<i8> = (0..n * k).map(|_| (r.f() * 127.0) as i8).collect();
        let x = ScaledRows {
            codes: xq,
            scales: (0..m).map(|i| 0.01 + (i % 7) as f32 * 0.001).collect(),
        };
        let w = ScaledRows {
            codes: wq,
            scales: (0..n).map(|j| 0.02 + (j % 5) as f32 * 0.0005).collect(),
        };
        let p = W8A8Params {
            m,
            n,
            k,
            activation: Activation::None,
        };
        let mut buf = vec![f32::NAN; m * n + 16];
        for shift in [0usize, 1, 4] {
            let base = (16 - (buf.as_ptr() as usize % 64) / 4) % 16 + shift;
            buf.fill(f32::NAN);
            let y = &mut buf[base..base + m * n];
            for isa in isa::supported() {
                w8a8(isa, &p, (&x, &w), None, y, Parallelism::Rayon(2));
                let tag = format!("{isa:?} m={m} n={n} shift={shift}");
                for i in (0..m).step_by(37).chain([m - 1]) {
                    for j in 0..n {
                        check_w8a8(&p, (&x, &w), None, y, (i, j), &tag);
                    }
                }
                assert!(
                    y.iter().all(|v| v.is_finite()),
                    "{isa:?} left an output unwritten"
                );
            }
        }
    }
}

/// A thread keeps the activation and row-sum buffers of its last GEMV for the next one
/// (decode calls the same few shapes over and over): a call after calls of other formats,
/// lengths and row counts gives bitwise what the same call gives on a fresh thread, on
/// every path. Row lengths that are not a multiple of 64 leave padding that a longer row
/// before them filled.
#[test]
fn gemv_reused_buffers_match_a_fresh_thread_on_every_path() {
    let cases = [
        (QuantFormat::Q4_K, 3, 40, 1024),
        (QuantFormat::Q4_1, 1, 96, 576),
        (QuantFormat::Q8_0, 8, 33, 96),
        (QuantFormat::Q4_0, 1, 17, 160),
        (QuantFormat::Q6_K, 2, 9, 256),
        (QuantFormat::Q4_1, 5, 20, 32),
        (QuantFormat::I8, 1, 7, 224),
    ];
    let mut inputs = Vec::new();
    for (c, &(fmt, m, n, k)) in cases.iter().enumerate() {
        let w = Weights::new(fmt, n, k, 40 + c as u64);
        let mut r = Rng(90 + c as u64);
        let x: Vec<f32> = (0..m * k).map(|_| r.f() * 3.0).collect();
        let bias: Vec<f32> = (0..n).map(|_| r.f()).collect();
        inputs.push((w, x, bias));
    }
    let call = |isa: isa::Isa, c: usize| {
        let (w, x, bias) = &inputs[c];
        let p = QMatmulParams {
            m: cases[c].1,
            act_quant: ActQuant::Int8,
            ..Default::default()
        };
        w.qmatmul(isa, &p, x, Some(bias), Parallelism::None)
    };
    for isa in isa::supported() {
        // Twice through the list, so every case also runs after the last (and the longest).
        let reused: Vec<Vec<f32>> = (0..2 * cases.len())
            .map(|i| call(isa, i % cases.len()))
            .collect();
        for (i, got) in reused.iter().enumerate() {
            let c = i % cases.len();
            let fresh = std::thread::scope(|s| s.spawn(|| call(isa, c)).join().unwrap());
            let same = got
                .iter()
                .zip(&fresh)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{isa:?} {:?}: call {i} differs from a fresh thread's",
                cases[c]
            );
        }
    }
}
