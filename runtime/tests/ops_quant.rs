//! Quantised kernels on device 0: every launcher's result equals the `knpu_kernels::quant`
//! function called on host copies of the operands, bitwise (the executor runs the same
//! function, and rows and outputs are computed the same way on any split), for every format,
//! decode and prefill row counts, f32 and half activations, bias and activation epilogues;
//! and every validation error is returned at the call with nothing queued.

use half::{bf16, f16};
use knpu::ops::{self, ActQuant, Activation, QMatmul, QWeights, QuantFormat, W8A8Gemm};
use knpu::{DType, DeviceBuffer, Error, Stream};
use knpu_kernels::quant::{self as kq, ActElem};
use knpu_kernels::Parallelism;

mod common;
use common::{assert_same, down, rand_values, stream};

/// Deterministic values in about [-3, 3), distinct per `seed`.
fn data(n: usize, seed: u64) -> Vec<f32> {
    rand_values(n, seed, -3.0, 3.0)
}

fn cast<T: ActElem>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

/// The kernel crate's format for the runtime's.
fn kformat(f: QuantFormat) -> kq::QuantFormat {
    let k = kq::QuantFormat::ALL[QuantFormat::ALL.iter().position(|&g| g == f).unwrap()];
    assert_eq!(k.name(), f.name());
    k
}

fn kact(a: Activation) -> kq::Activation {
    match a {
        Activation::None => kq::Activation::None,
        Activation::Relu => kq::Activation::Relu,
        Activation::GeluErf => kq::Activation::GeluErf,
        Activation::GeluTanh => kq::Activation::GeluTanh,
        Activation::Silu => kq::Activation::Silu,
        other => panic!("no kernel activation for {other:?}"),
    }
}

/// An awkward row length for `f`: several blocks, and not a power of two where the format
/// allows it.
fn awkward_k(f: QuantFormat) -> usize {
    match f.block_elems() {
        1 => 100,
        32 => 96,
        b => 2 * b,
    }
}

/// `rows` rows of `k` values quantised on the host: the bytes and, where the format takes
/// them, per-row scales.
fn host_quantized(f: QuantFormat, rows: usize, k: usize, seed: u64) -> (Vec<u8>, Option<Vec<f32>>) {
    let src = data(rows * k, seed);
    let mut bytes = vec![0u8; rows * f.row_bytes(k).unwrap()];
    let mut scales = match f {
        QuantFormat::I8 => Some(vec![0.0f32; rows]),
        // FP8 with scales other than 1, so the scale path is exercised.
        QuantFormat::F8E4M3 | QuantFormat::F8E5M2 => Some(data(rows, seed + 1)),
        _ => None,
    };
    let quant_scales = if f == QuantFormat::I8 {
        scales.as_deref_mut()
    } else {
        None
    };
    kq::quantize(kformat(f), rows, k, &src, &mut bytes, quant_scales).unwrap();
    (bytes, scales)
}

#[test]
fn quantize_matches_the_host_kernel_for_every_format() {
    let s = stream();
    for f in QuantFormat::ALL {
        // The larger shape passes the executor's inline threshold, so the compute pool
        // splits the rows.
        for (rows, k) in [(3, awkward_k(f)), (300, 256)] {
            let what = format!("quantize {} [{rows}, {k}]", f.name());
            let src = data(rows * k, 7);
            let rb = f.row_bytes(k).unwrap();
            let takes_scales = f.block_elems() == 1;
            let mut want = vec![0u8; rows * rb];
            let mut want_s = vec![0.0f32; rows];
            kq::quantize(
                kformat(f),
                rows,
                k,
                &src,
                &mut want,
                takes_scales.then_some(&mut want_s[..]),
            )
            .unwrap();
            let dsrc = s.from_slice(&src).unwrap();
            let mut dst = s.from_slice(&vec![0xAAu8; rows * rb]).unwrap();
            let mut scales = s.from_slice(&vec![-1.0f32; rows]).unwrap();
            ops::quantize(
                &s,
                f,
                rows,
                k,
                &dsrc,
                &mut dst,
                takes_scales.then_some(&mut scales as _),
            )
            .unwrap();
            assert_same(&what, &down(&s, &dst), &want);
            if takes_scales {
                assert_same(&format!("{what} scales"), &down(&s, &scales), &want_s);
            }
        }
    }
}

#[test]
fn dequantize_matches_the_host_kernel_for_every_format() {
    let s = stream();
    for f in QuantFormat::ALL {
        for (rows, k) in [(1, f.block_elems()), (5, awkward_k(f)), (300, 256)] {
            let what = format!("dequantize {} [{rows}, {k}]", f.name());
            let (bytes, scales) = host_quantized(f, rows, k, 11);
            let mut want = vec![0.0f32; rows * k];
            kq::dequantize(kformat(f), rows, k, &bytes, scales.as_deref(), &mut want).unwrap();
            let dsrc = s.from_slice(&bytes).unwrap();
            let dscales = scales.as_ref().map(|v| s.from_slice(v).unwrap());
            let mut dst = s.from_slice(&vec![-7.0f32; rows * k]).unwrap();
            ops::dequantize(
                &s,
                f,
                rows,
                k,
                &dsrc,
                dscales.as_ref().map(|b| b as _),
                &mut dst,
            )
            .unwrap();
            assert_same(&what, &down(&s, &dst), &want);
            // FP8 without scales too.
            if scales.is_some() && f != QuantFormat::I8 {
                kq::dequantize(kformat(f), rows, k, &bytes, None, &mut want).unwrap();
                ops::dequantize(&s, f, rows, k, &dsrc, None, &mut dst).unwrap();
                assert_same(&format!("{what} no scales"), &down(&s, &dst), &want);
            }
        }
    }
}

/// One qmatmul case through the runtime and on the host.
#[allow(clippy::too_many_arguments)]
fn qmatmul_case<TX: DType + ActElem, TY: DType + ActElem + bytemuck::Pod + std::fmt::Debug>(
    s: &Stream,
    f: QuantFormat,
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
    act: Activation,
    aq: ActQuant,
) {
    let what = format!(
        "qmatmul {} m={m} n={n} k={k} x {} y {} bias {bias} {act:?} {aq:?}",
        f.name(),
        <TX as DType>::NAME,
        <TY as DType>::NAME
    );
    let (wbytes, wscales) = host_quantized(f, n, k, 21);
    let x: Vec<TX> = cast(&data(m * k, 22));
    let b = data(n, 23);
    let params = kq::QMatmulParams {
        m,
        activation: kact(act),
        act_quant: match aq {
            ActQuant::Auto => kq::ActQuant::Auto,
            ActQuant::Int8 => kq::ActQuant::Int8,
            ActQuant::Float => kq::ActQuant::Float,
        },
    };
    let hw = kq::QWeights {
        format: kformat(f),
        data: &wbytes,
        scales: wscales.as_deref(),
        n,
        k,
    };
    let mut want: Vec<TY> = cast(&vec![0.0; m * n]);
    kq::qmatmul(
        &params,
        &x,
        &hw,
        bias.then_some(&b[..]),
        &mut want,
        Parallelism::None,
    )
    .unwrap();

    let dw = s.from_slice(&wbytes).unwrap();
    let dws = wscales.as_ref().map(|v| s.from_slice(v).unwrap());
    let dx = s.from_slice(&x).unwrap();
    let db = s.from_slice(&b).unwrap();
    let mut dy = s.from_slice(&cast::<TY>(&vec![-7.0; m * n])).unwrap();
    let mut w = QWeights::new(f, &dw, n, k);
    if let Some(sc) = &dws {
        w = w.scales(sc);
    }
    let mut q = QMatmul::new(m).activation(act).act_quant(aq);
    if bias {
        q = q.bias(&db);
    }
    ops::qmatmul(s, &q, &dx, &w, &mut dy).unwrap();
    assert_same(&what, &down(s, &dy), &want);
}

#[test]
fn qmatmul_matches_the_host_kernel_for_every_format() {
    let s = stream();
    for f in QuantFormat::ALL {
        let k = awkward_k(f);
        // Decode (one and a few rows) and prefill; n not a multiple of any tile. The
        // prefill case passes the executor's inline threshold.
        for (m, n) in [(1, 67), (3, 67), (37, 67)] {
            qmatmul_case::<f32, f32>(&s, f, m, n, k, false, Activation::None, ActQuant::Auto);
            qmatmul_case::<f16, f32>(&s, f, m, n, k, true, Activation::Silu, ActQuant::Auto);
        }
        qmatmul_case::<bf16, bf16>(&s, f, 5, 33, k, true, Activation::GeluTanh, ActQuant::Auto);
        qmatmul_case::<f32, f16>(&s, f, 37, 19, k, true, Activation::Relu, ActQuant::Float);
    }
    // The integer path on request, and I8 prefill (which goes through the W8A8 GEMM).
    qmatmul_case::<f32, f32>(
        &s,
        QuantFormat::Q4_K,
        9,
        40,
        512,
        true,
        Activation::GeluErf,
        ActQuant::Int8,
    );
    qmatmul_case::<f32, f32>(
        &s,
        QuantFormat::I8,
        37,
        67,
        128,
        true,
        Activation::None,
        ActQuant::Int8,
    );
}

#[test]
fn w8a8_gemm_matches_the_host_kernel() {
    let s = stream();
    for (m, n, k) in [(1, 5, 3), (37, 67, 100), (64, 130, 96)] {
        let xf = data(m * k, 31);
        let wf = data(n * k, 32);
        let (mut xq, mut xs) = (vec![0i8; m * k], vec![0.0f32; m]);
        let (mut wq, mut ws) = (vec![0i8; n * k], vec![0.0f32; n]);
        kq::int8::quantize_per_row(m, k, &xf, &mut xq, &mut xs).unwrap();
        kq::int8::quantize_per_row(n, k, &wf, &mut wq, &mut ws).unwrap();
        let b = data(n, 33);
        let p = kq::W8A8Params {
            m,
            n,
            k,
            activation: kq::Activation::Silu,
        };
        let x8 = kq::ScaledI8 {
            codes: &xq,
            scales: &xs,
        };
        let w8 = kq::ScaledI8 {
            codes: &wq,
            scales: &ws,
        };
        let mut want = vec![0.0f32; m * n];
        kq::w8a8_gemm(&p, x8, w8, Some(&b), &mut want, Parallelism::None).unwrap();
        let mut want_h = vec![bf16::ZERO; m * n];
        kq::w8a8_gemm(&p, x8, w8, None, &mut want_h, Parallelism::None).unwrap();

        let (dxq, dxs) = (s.from_slice(&xq).unwrap(), s.from_slice(&xs).unwrap());
        let (dwq, dws) = (s.from_slice(&wq).unwrap(), s.from_slice(&ws).unwrap());
        let db = s.from_slice(&b).unwrap();
        let mut dy = s.alloc_zeroed::<f32>(m * n).unwrap();
        let g = W8A8Gemm::new(m, n, k)
            .bias(&db)
            .activation(Activation::Silu);
        ops::w8a8_gemm(&s, &g, &dxq, &dxs, &dwq, &dws, &mut dy).unwrap();
        assert_same(&format!("w8a8 [{m}, {n}, {k}]"), &down(&s, &dy), &want);
        let mut dh = s.alloc_zeroed::<bf16>(m * n).unwrap();
        let g = W8A8Gemm::new(m, n, k).activation(Activation::Silu);
        ops::w8a8_gemm(&s, &g, &dxq, &dxs, &dwq, &dws, &mut dh).unwrap();
        assert_same(
            &format!("w8a8 bf16 [{m}, {n}, {k}]"),
            &down(&s, &dh),
            &want_h,
        );
    }
}

#[test]
fn qembedding_matches_the_host_kernel() {
    let s = stream();
    let vocab = 50;
    let ids: Vec<u32> = vec![3, 0, 49, 3, 17, 8, 22];
    let dids = s.from_slice(&ids).unwrap();
    for f in QuantFormat::ALL {
        let dim = awkward_k(f);
        let (bytes, scales) = host_quantized(f, vocab, dim, 41);
        let mut want = vec![f16::ZERO; ids.len() * dim];
        kq::embedding(
            &kq::QWeights {
                format: kformat(f),
                data: &bytes,
                scales: scales.as_deref(),
                n: vocab,
                k: dim,
            },
            &ids,
            &mut want,
        )
        .unwrap();
        let dt = s.from_slice(&bytes).unwrap();
        let ds = scales.as_ref().map(|v| s.from_slice(v).unwrap());
        let mut table = QWeights::new(f, &dt, vocab, dim);
        if let Some(sc) = &ds {
            table = table.scales(sc);
        }
        let mut out = s.alloc_zeroed::<f16>(ids.len() * dim).unwrap();
        ops::qembedding(&s, &table, &dids, &mut out).unwrap();
        assert_same(&format!("qembedding {}", f.name()), &down(&s, &out), &want);
    }
}

#[test]
fn out_of_range_token_id_is_a_kernel_fault_naming_it() {
    let s = stream();
    let (vocab, dim) = (4, 32);
    let (bytes, _) = host_quantized(QuantFormat::Q8_0, vocab, dim, 51);
    let dt = s.from_slice(&bytes).unwrap();
    let bad = s.from_slice(&[1u32, 4]).unwrap();
    let sentinel = vec![-7.0f32; 2 * dim];
    let mut out = s.from_slice(&sentinel).unwrap();
    let table = QWeights::new(QuantFormat::Q8_0, &dt, vocab, dim);
    ops::qembedding(&s, &table, &bad, &mut out).unwrap();
    match s.synchronize() {
        Err(Error::KernelFault { message }) => {
            assert!(
                message.contains("token id 4"),
                "message names the id: {message}"
            )
        }
        other => panic!("expected a kernel fault, got {other:?}"),
    }
    assert_eq!(out.to_vec().unwrap(), sentinel, "nothing written");
}

/// 40 f32 values on the device.
fn xn40(s: &Stream) -> DeviceBuffer<f32> {
    s.from_slice(&data(40, 65)).unwrap()
}

fn shape_err(e: Error, want_operand: &str) {
    match e {
        Error::Shape { operand, .. } => assert_eq!(operand, want_operand),
        other => panic!("expected a shape error for {want_operand}, got {other}"),
    }
}

/// An InvalidValue whose message contains every one of `needles`.
fn invalid(e: Error, needles: &[&str]) {
    match &e {
        Error::InvalidValue { detail } => {
            for n in needles {
                assert!(detail.contains(n), "`{detail}` should mention `{n}`");
            }
        }
        other => panic!("expected InvalidValue, got {other}"),
    }
}

#[test]
fn bad_operands_are_errors_at_the_call_and_queue_nothing() {
    let s = stream();
    let (m, n, k) = (3, 8, 64);
    let f = QuantFormat::Q4_0;
    let (bytes, _) = host_quantized(f, n, k, 61);
    let dw = s.from_slice(&bytes).unwrap();
    let x = s.from_slice(&data(m * k, 62)).unwrap();
    let sentinel = vec![-7.0f32; m * n];
    let mut y = s.from_slice(&sentinel).unwrap();
    let scales = s.from_slice(&vec![1.0f32; n]).unwrap();
    let q = QMatmul::new(m);

    // k not a multiple of the block size: the weights' row length names the block size.
    let w = QWeights::new(f, &dw, n, 40);
    let xk = s.from_slice(&data(m * 40, 63)).unwrap();
    let mut yk = s.alloc_zeroed::<f32>(m * n).unwrap();
    invalid(
        ops::qmatmul(&s, &q, &xk, &w, &mut yk).unwrap_err(),
        &["`w`", "q4_0", "block size 32"],
    );
    let w = QWeights::new(QuantFormat::Q4_K, &dw, 1, 128);
    invalid(
        ops::qmatmul(&s, &q, &x, &w, &mut y).unwrap_err(),
        &["`w`", "q4_k", "block size 256"],
    );
    // A short weight buffer.
    let short = dw.slice(..bytes.len() - 1).unwrap();
    shape_err(
        ops::qmatmul(&s, &q, &x, &QWeights::new(f, &short, n, k), &mut y).unwrap_err(),
        "w",
    );
    // Scales given for Q4_0, missing for I8, the wrong length for FP8.
    invalid(
        ops::qmatmul(
            &s,
            &q,
            &x,
            &QWeights::new(f, &dw, n, k).scales(&scales),
            &mut y,
        )
        .unwrap_err(),
        &["`w_scales`", "q4_0"],
    );
    let i8w = s.alloc_zeroed::<u8>(n * k).unwrap();
    invalid(
        ops::qmatmul(
            &s,
            &q,
            &x,
            &QWeights::new(QuantFormat::I8, &i8w, n, k),
            &mut y,
        )
        .unwrap_err(),
        &["`w_scales`", "i8"],
    );
    let few = scales.slice(..n - 1).unwrap();
    shape_err(
        ops::qmatmul(
            &s,
            &q,
            &x,
            &QWeights::new(QuantFormat::F8E4M3, &i8w, n, k).scales(&few),
            &mut y,
        )
        .unwrap_err(),
        "w_scales",
    );
    // Wrong x, y and bias shapes.
    shape_err(
        ops::qmatmul(
            &s,
            &QMatmul::new(m + 1),
            &x,
            &QWeights::new(f, &dw, n, k),
            &mut y,
        )
        .unwrap_err(),
        "x",
    );
    shape_err(
        ops::qmatmul(
            &s,
            &q,
            &x,
            &QWeights::new(f, &dw, n, k),
            &mut y.slice_mut(..m * n - 1).unwrap(),
        )
        .unwrap_err(),
        "y",
    );
    shape_err(
        ops::qmatmul(
            &s,
            &QMatmul::new(m).bias(&few),
            &x,
            &QWeights::new(f, &dw, n, k),
            &mut y,
        )
        .unwrap_err(),
        "bias",
    );
    // Wrong dtypes.
    let xi = s.alloc_zeroed::<i32>(m * k).unwrap();
    match ops::qmatmul(&s, &q, &xi, &QWeights::new(f, &dw, n, k), &mut y).unwrap_err() {
        Error::Dtype {
            operand, actual, ..
        } => assert_eq!((operand, actual.as_str()), ("x", "i32")),
        other => panic!("expected a dtype error, got {other}"),
    }
    let mut yd = s.alloc_zeroed::<f64>(m * n).unwrap();
    assert!(matches!(
        ops::qmatmul(&s, &q, &x, &QWeights::new(f, &dw, n, k), &mut yd).unwrap_err(),
        Error::Dtype { operand: "y", .. }
    ));
    // Integer arithmetic where the format has none.
    assert!(matches!(
        ops::qmatmul(
            &s,
            &QMatmul::new(m).act_quant(ActQuant::Int8),
            &x,
            &QWeights::new(QuantFormat::F8E5M2, &i8w, n, k),
            &mut y
        )
        .unwrap_err(),
        Error::NotSupported { .. }
    ));

    let i8s = s.from_slice(&[1.0f32; 2]).unwrap();
    let i8odd = s.alloc_zeroed::<u8>(2 * 40).unwrap();
    assert!(matches!(
        ops::qmatmul(
            &s,
            &QMatmul::new(1).act_quant(ActQuant::Int8),
            &xn40(&s),
            &QWeights::new(QuantFormat::I8, &i8odd, 2, 40).scales(&i8s),
            &mut y.slice_mut(..2).unwrap()
        )
        .unwrap_err(),
        Error::NotSupported { .. }
    ));

    // Quantise / dequantise.
    let mut qdst = s.from_slice(&vec![0xAAu8; bytes.len()]).unwrap();
    let qsentinel = qdst.to_vec().unwrap();
    let xn = s.from_slice(&data(n * k, 64)).unwrap();
    invalid(
        ops::quantize(&s, f, n, 40, &xn.slice(..n * 40).unwrap(), &mut qdst, None).unwrap_err(),
        &["`dst`", "block size 32"],
    );
    shape_err(
        ops::quantize(
            &s,
            f,
            n,
            k,
            &xn.slice(..n * k - 1).unwrap(),
            &mut qdst,
            None,
        )
        .unwrap_err(),
        "src",
    );
    let mut sc = s.alloc_zeroed::<f32>(n).unwrap();
    invalid(
        ops::quantize(&s, f, n, k, &xn, &mut qdst, Some(&mut sc)).unwrap_err(),
        &["`scales`", "q4_0"],
    );
    let mut i8dst = s.from_slice(&vec![0xAAu8; n * k]).unwrap();
    invalid(
        ops::quantize(&s, QuantFormat::I8, n, k, &xn, &mut i8dst, None).unwrap_err(),
        &["`scales`", "i8"],
    );
    let mut deq = s.from_slice(&vec![-7.0f32; n * k]).unwrap();
    shape_err(
        ops::dequantize(&s, f, n, k, &short, None, &mut deq).unwrap_err(),
        "src",
    );
    invalid(
        ops::dequantize(&s, QuantFormat::I8, n, k, &i8w, None, &mut deq).unwrap_err(),
        &["`scales`"],
    );
    invalid(
        ops::dequantize(
            &s,
            QuantFormat::Q6_K,
            1,
            128,
            &dw.slice(..105).unwrap(),
            None,
            &mut deq,
        )
        .unwrap_err(),
        &["`src`", "q6_k", "block size 256"],
    );

    // W8A8.
    let xq = s.alloc_zeroed::<i8>(m * k).unwrap();
    let wq = s.alloc_zeroed::<i8>(n * k).unwrap();
    let xs = s.from_slice(&vec![1.0f32; m]).unwrap();
    let g = W8A8Gemm::new(m, n, k);
    shape_err(
        ops::w8a8_gemm(&s, &g, &xq, &scales, &wq, &scales, &mut y).unwrap_err(),
        "x_scales",
    );
    shape_err(
        ops::w8a8_gemm(
            &s,
            &W8A8Gemm::new(m, n + 1, k),
            &xq,
            &xs,
            &wq,
            &scales,
            &mut y,
        )
        .unwrap_err(),
        "wq",
    );
    let mut yi = s.alloc_zeroed::<i32>(m * n).unwrap();
    assert!(matches!(
        ops::w8a8_gemm(&s, &g, &xq, &xs, &wq, &scales, &mut yi).unwrap_err(),
        Error::Dtype { operand: "y", .. }
    ));

    // Embedding.
    let ids = s.from_slice(&[0u32, 1]).unwrap();
    shape_err(
        ops::qembedding(&s, &QWeights::new(f, &dw, n, k), &ids, &mut y).unwrap_err(),
        "out",
    );
    shape_err(
        ops::qembedding(&s, &QWeights::new(f, &dw, n + 1, k), &ids, &mut deq).unwrap_err(),
        "table",
    );

    s.synchronize().unwrap();
    assert_eq!(y.to_vec().unwrap(), sentinel, "nothing was queued");
    assert_eq!(qdst.to_vec().unwrap(), qsentinel, "nothing was queued");
    assert_eq!(i8dst.to_vec().unwrap(), vec![0xAAu8; n * k]);
    assert_eq!(deq.to_vec().unwrap(), vec![-7.0f32; n * k]);
}
