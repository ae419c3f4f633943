//! `knpu::ops::gemm` on device 0 against `knpu_kernels::gemm::gemm` called directly on host
//! copies of the same operands, and every validation error of the launcher.
//!
//! The device runs the same kernel, possibly with a different thread count, which may
//! change the order partial sums are combined in: f32 results must agree within 1e-5
//! relative, f16/bf16 results within one rounding of their type.

use half::{bf16, f16};
use knpu::ops::{self, Activation, Gemm, GemmEpilogue};
use knpu::{CaptureMode, DType, Error, Stream};
use knpu_kernels::gemm::{self as kg, Element, Epilogue, Residual};
use knpu_kernels::Parallelism;

mod common;
use common::stream;

/// A and B of an `m x n x k` f32 problem (B's `k * n` values read either way round).
fn operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    (values(m * k, 1), values(k * n, 2))
}

/// Deterministic values in about [-1, 1].
fn values<T: Element>(n: usize, seed: usize) -> Vec<T> {
    (0..n)
        .map(|i| {
            let x = (i.wrapping_mul(2654435761).wrapping_add(seed * 97)) % 1009;
            T::from_f32(x as f32 / 504.5 - 1.0)
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    /// Extra elements in every leading dimension and batch stride.
    pad: usize,
    batch: usize,
    alpha: f32,
    beta: f32,
    bias: bool,
    act: Activation,
    residual: bool,
}

impl Case {
    fn new(m: usize, n: usize, k: usize) -> Case {
        Case {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            pad: 0,
            batch: 1,
            alpha: 1.0,
            beta: 0.0,
            bias: false,
            act: Activation::None,
            residual: false,
        }
    }

    fn gemm(&self) -> Gemm {
        let (ar, ac) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        let (lda, ldb, ldc) = (ac + self.pad, bc + self.pad, self.n + self.pad);
        Gemm {
            m: self.m,
            n: self.n,
            k: self.k,
            trans_a: self.trans_a,
            trans_b: self.trans_b,
            lda,
            ldb,
            ldc,
            batch: self.batch,
            stride_a: ar * lda + self.pad,
            stride_b: br * ldb + self.pad,
            stride_c: self.m * ldc + self.pad,
            alpha: self.alpha,
            beta: self.beta,
        }
    }
}

fn kernel_act(a: Activation) -> kg::Activation {
    match a {
        Activation::None => kg::Activation::None,
        Activation::Relu => kg::Activation::Relu,
        Activation::GeluErf => kg::Activation::GeluErf,
        Activation::GeluTanh => kg::Activation::GeluTanh,
        Activation::Silu => kg::Activation::Silu,
        other => panic!("no kernel activation for {other:?}"),
    }
}

fn len(rows: usize, ld: usize, batch: usize, stride: usize) -> usize {
    (batch.max(1) - 1) * stride + rows * ld
}

fn tolerance<T: Element>() -> f32 {
    match T::DTYPE {
        kg::Dtype::F32 => 1e-5,
        kg::Dtype::F16 => 1e-3,
        kg::Dtype::Bf16 => 8e-3,
    }
}

fn assert_close<T: Element>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len());
    let tol = tolerance::<T>();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f32(), w.to_f32());
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol * w.abs().max(1.0);
        assert!(ok, "{what}: element {i}: device {g}, direct {w}");
    }
}

/// Runs `case` through the runtime and directly, and compares C.
fn check<TA, TB, TC>(s: &Stream, case: Case)
where
    TA: DType + Element,
    TB: DType + Element,
    TC: DType + Element,
{
    let g = case.gemm();
    let (ar, br) = (
        if g.trans_a { g.k } else { g.m },
        if g.trans_b { g.n } else { g.k },
    );
    let a: Vec<TA> = values(len(ar, g.lda, g.batch, g.stride_a), 1);
    let b: Vec<TB> = values(len(br, g.ldb, g.batch, g.stride_b), 2);
    let c0: Vec<TC> = values(len(g.m, g.ldc, g.batch, g.stride_c), 3);
    let bias: Vec<f32> = values(g.n, 4);
    let residual: Vec<TC> = values(len(g.m, g.ldc, g.batch, g.stride_c), 5);

    let mut want = c0.clone();
    let epi = Epilogue {
        bias: case.bias.then_some(&bias[..]),
        activation: kernel_act(case.act),
        residual: case.residual.then_some(Residual {
            data: &residual,
            ld: g.ldc,
            batch_stride: g.stride_c,
        }),
    };
    kg::gemm(&g, &a, &b, &mut want, &epi, Parallelism::None).unwrap();

    let da = s.from_slice(&a).unwrap();
    let db = s.from_slice(&b).unwrap();
    let mut dc = s.from_slice(&c0).unwrap();
    let dbias = s.from_slice(&bias).unwrap();
    let dres = s.from_slice(&residual).unwrap();
    let mut depi = GemmEpilogue::new().activation(case.act);
    if case.bias {
        depi = depi.bias(&dbias);
    }
    if case.residual {
        depi = depi.residual(&dres, g.ldc, g.stride_c);
    }
    ops::gemm(s, &g, &da, &db, &mut dc, &depi).unwrap();
    s.synchronize().unwrap();
    let got = dc.to_vec().unwrap();
    assert_close(
        &got,
        &want,
        &format!("{case:?} {} {} {}", TA::NAME, TB::NAME, TC::NAME),
    );
}

#[test]
fn f32_shapes_and_transposes_match_the_direct_kernel() {
    let s = stream();
    for &(m, n, k) in &[
        (1, 1, 1),
        (7, 7, 7),
        (65, 65, 65),
        (257, 257, 257),
        (7, 65, 257),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = Case::new(m, n, k);
            c.trans_a = ta;
            c.trans_b = tb;
            check::<f32, f32, f32>(&s, c);
        }
    }
    // m <= 4 takes the GEMV path.
    let mut c = Case::new(3, 257, 65);
    c.trans_b = true;
    check::<f32, f32, f32>(&s, c);
}

#[test]
fn batches_padding_and_epilogue_match_the_direct_kernel() {
    let s = stream();
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::GeluErf,
        Activation::GeluTanh,
        Activation::Silu,
    ];
    for (i, &(m, n, k)) in [(1, 7, 65), (7, 65, 7), (65, 7, 257), (257, 65, 65)]
        .iter()
        .enumerate()
    {
        let mut c = Case::new(m, n, k);
        c.trans_a = i % 2 == 1;
        c.trans_b = i >= 2;
        c.pad = 3;
        c.batch = 3;
        c.alpha = 0.75;
        c.beta = 0.5;
        c.bias = true;
        c.act = acts[i % acts.len()];
        c.residual = true;
        check::<f32, f32, f32>(&s, c);
        c.act = acts[(i + 2) % acts.len()];
        c.residual = i % 2 == 0;
        check::<f32, f32, f32>(&s, c);
    }
}

#[test]
fn half_inputs_and_outputs_match_the_direct_kernel() {
    let s = stream();
    for &(m, n, k) in &[(1, 65, 7), (7, 7, 7), (65, 257, 65)] {
        let mut c = Case::new(m, n, k);
        c.trans_b = true;
        c.beta = 1.0;
        c.bias = true;
        c.act = Activation::Silu;
        c.residual = true;
        check::<f16, f16, f32>(&s, c);
        check::<f16, f16, f16>(&s, c);
        check::<bf16, bf16, f32>(&s, c);
        check::<bf16, bf16, bf16>(&s, c);
        check::<f32, f32, bf16>(&s, c);
        check::<f32, f16, f32>(&s, c);
        check::<f32, bf16, f32>(&s, c);
    }
}

#[test]
fn k_zero_honours_beta_and_the_epilogue() {
    let s = stream();
    let mut c = Case::new(7, 65, 0);
    c.beta = 0.5;
    c.bias = true;
    c.act = Activation::Relu;
    c.residual = true;
    check::<f32, f32, f32>(&s, c);
    // The result is exactly relu(0.5 C + bias) + residual.
    let (m, n) = (2, 3);
    let a = s.alloc_zeroed::<f32>(0).unwrap();
    let b = s.alloc_zeroed::<f32>(0).unwrap();
    let mut cbuf = s
        .from_slice(&[2.0f32, -4.0, 6.0, 8.0, 10.0, -12.0])
        .unwrap();
    let bias = s.from_slice(&[1.0f32, 1.0, -10.0]).unwrap();
    let g = Gemm::new(m, n, 0).scale(1.0, 0.5);
    let epilogue = GemmEpilogue::new().bias(&bias).activation(Activation::Relu);
    ops::gemm(&s, &g, &a, &b, &mut cbuf, &epilogue).unwrap();
    s.synchronize().unwrap();
    assert_eq!(cbuf.to_vec().unwrap(), vec![2.0, 0.0, 0.0, 5.0, 6.0, 0.0]);
}

#[test]
fn empty_output_queues_nothing_and_succeeds() {
    let s = stream();
    let a = s.alloc_zeroed::<f32>(0).unwrap();
    let b = s.alloc_zeroed::<f32>(8).unwrap();
    let mut c = s.alloc_zeroed::<f32>(0).unwrap();
    ops::matmul(&s, &a, &b, &mut c, 0, 8, 1).unwrap();
    let no_batches = Gemm::new(4, 4, 4).batched(0, 16, 16, 16);
    ops::gemm(&s, &no_batches, &a, &a, &mut c, &GemmEpilogue::new()).unwrap();
    s.synchronize().unwrap();
}

#[test]
fn matmul_is_row_major_a_times_b() {
    let s = stream();
    // [[1, 2, 3], [4, 5, 6]] x [[1, 0], [0, 1], [1, 1]]
    let a = s.from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = s.from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
    let mut c = s.alloc_zeroed::<f32>(4).unwrap();
    ops::matmul(&s, &a, &b, &mut c, 2, 2, 3).unwrap();
    s.synchronize().unwrap();
    assert_eq!(c.to_vec().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);
}

#[test]
fn beta_one_updates_c_in_place() {
    let s = stream();
    let (m, n, k) = (65, 33, 17);
    let (a, b) = operands(m, n, k);
    let x: Vec<f32> = values(m * n, 3);
    let mut want = x.clone();
    // x = A B + x, as `x += linear(h)` does.
    let g = Gemm::new(m, n, k).scale(1.0, 1.0);
    kg::gemm(&g, &a, &b, &mut want, &Epilogue::none(), Parallelism::None).unwrap();
    let da = s.from_slice(&a).unwrap();
    let db = s.from_slice(&b).unwrap();
    let mut dx = s.from_slice(&x).unwrap();
    ops::gemm(&s, &g, &da, &db, &mut dx, &GemmEpilogue::new()).unwrap();
    s.synchronize().unwrap();
    assert_close(&dx.to_vec().unwrap(), &want, "beta = 1 in place");
}

#[test]
fn captured_graph_replays_the_same_result() {
    let s = stream();
    let (m, n, k) = (65, 65, 257);
    let (a, b) = operands(m, n, k);
    let bias: Vec<f32> = values(n, 3);
    let da = s.from_slice(&a).unwrap();
    let db = s.from_slice(&b).unwrap();
    let dbias = s.from_slice(&bias).unwrap();
    let g = Gemm::new(m, n, k).transpose_b();
    let epi = GemmEpilogue::new()
        .bias(&dbias)
        .activation(Activation::GeluTanh);
    let mut eager = s.alloc_zeroed::<f32>(m * n).unwrap();
    ops::gemm(&s, &g, &da, &db, &mut eager, &epi).unwrap();
    s.synchronize().unwrap();
    let want = eager.to_vec().unwrap();

    let mut out = s.alloc_zeroed::<f32>(m * n).unwrap();
    s.synchronize().unwrap();
    s.begin_capture(CaptureMode::ThreadLocal).unwrap();
    ops::gemm(&s, &g, &da, &db, &mut out, &epi).unwrap();
    let graph = s.end_capture().unwrap();
    s.synchronize().unwrap();
    assert!(
        out.to_vec().unwrap().iter().all(|&v| v == 0.0),
        "capture ran nothing"
    );
    let exec = graph.instantiate().unwrap();
    for _ in 0..2 {
        exec.launch(&s).unwrap();
        s.synchronize().unwrap();
        assert_eq!(out.to_vec().unwrap(), want);
    }
}

/// Asserts `r` is `Error::Shape` for `operand` whose expected text contains `expected`.
fn shape_error(r: knpu::Result<()>, operand: &str, expected: &str) {
    match r {
        Err(Error::Shape {
            operand: o,
            expected: e,
            actual,
        }) => {
            assert_eq!(o, operand, "{e} / {actual}");
            assert!(
                e.contains(expected),
                "expected text `{e}` lacks `{expected}`"
            );
        }
        other => panic!("expected a shape error for `{operand}`, got {other:?}"),
    }
}

#[test]
fn every_validation_error_names_the_operand_and_queues_nothing() {
    let s = stream();
    let (m, n, k) = (8, 32, 64);
    let a = s.from_slice(&vec![1.0f32; m * k]).unwrap();
    let b = s.from_slice(&vec![1.0f32; k * n]).unwrap();
    let short = s.from_slice(&vec![1.0f32; k * n - 1]).unwrap();
    let a_short = s.from_slice(&vec![1.0f32; m * k - 1]).unwrap();
    let bias_short = s.from_slice(&vec![1.0f32; n - 1]).unwrap();
    let c_init = vec![7.0f32; m * n];
    let mut c = s.from_slice(&c_init).unwrap();
    let mut c_short = s.from_slice(&vec![7.0f32; m * n - 1]).unwrap();
    let none = GemmEpilogue::<f32>::new();
    let g = Gemm::new(m, n, k);

    shape_error(
        ops::gemm(&s, &g, &a, &short, &mut c, &none),
        "b",
        "[k=64, n=32]",
    );
    shape_error(
        ops::gemm(&s, &g, &a_short, &b, &mut c, &none),
        "a",
        "[m=8, k=64]",
    );
    shape_error(
        ops::gemm(&s, &g, &a, &b, &mut c_short, &none),
        "c",
        "[m=8, n=32]",
    );
    shape_error(
        ops::gemm(&s, &g.ld(k, n - 1, n), &a, &b, &mut c, &none),
        "b",
        "ldb >= 32",
    );
    shape_error(
        ops::gemm(&s, &g.ld(k - 1, n, n), &a, &b, &mut c, &none),
        "a",
        "lda >= 64",
    );
    shape_error(
        ops::gemm(&s, &g.ld(k, n, n - 1), &a, &b, &mut c, &none),
        "c",
        "ldc >= 32",
    );
    // Transposed: B stored [n, k] needs ldb >= k.
    shape_error(
        ops::gemm(&s, &g.transpose_b().ld(k, k - 1, n), &a, &b, &mut c, &none),
        "b",
        "[n=32, k=64]",
    );
    shape_error(
        ops::gemm(&s, &g.transpose_a(), &a_short, &b, &mut c, &none),
        "a",
        "[k=64, m=8]",
    );
    // Batches: two batches need twice the elements.
    shape_error(
        ops::gemm(&s, &g.batched(2, m * k, 0, m * n), &a, &b, &mut c, &none),
        "a",
        "2 batches",
    );
    // Overlapping batches of C.
    let mut c_big = s.from_slice(&vec![7.0f32; m * n + 1]).unwrap();
    match ops::gemm(&s, &g.batched(2, 0, 0, 1), &a, &b, &mut c_big, &none) {
        Err(Error::InvalidValue { detail }) => assert!(detail.contains("stride_c"), "{detail}"),
        other => panic!("expected InvalidValue for overlapping batches, got {other:?}"),
    }
    // Bias and residual.
    let res_short = s.from_slice(&vec![0.0f32; m * n - 1]).unwrap();
    let res = s.from_slice(&vec![0.0f32; m * n]).unwrap();
    for (epilogue, operand, expected) in [
        (GemmEpilogue::new().bias(&bias_short), "bias", "[n=32]"),
        (
            GemmEpilogue::new().residual(&res_short, n, 0),
            "residual",
            "[m=8, n=32]",
        ),
        (
            GemmEpilogue::new().residual(&res, n - 1, 0),
            "residual",
            "ld >= 32",
        ),
    ] {
        shape_error(
            ops::gemm(&s, &g, &a, &b, &mut c, &epilogue),
            operand,
            expected,
        );
    }
    // Dtypes: integers, and mixed inputs other than f32 x half -> f32.
    let ai = s.from_slice(&vec![1i32; m * k]).unwrap();
    match ops::gemm(&s, &g, &ai, &b, &mut c, &none) {
        Err(Error::Dtype { operand: "a", .. }) => {}
        other => panic!("expected a dtype error for `a`, got {other:?}"),
    }
    let bh = s.from_slice(&vec![f16::ONE; k * n]).unwrap();
    let mut ch = s.from_slice(&vec![f16::ZERO; m * n]).unwrap();
    match ops::gemm(&s, &g, &a, &bh, &mut ch, &GemmEpilogue::new()) {
        Err(Error::Dtype { operand: "b", .. }) => {}
        other => panic!("expected a dtype error for `b`, got {other:?}"),
    }
    s.synchronize().unwrap();
    assert_eq!(
        c.to_vec().unwrap(),
        c_init,
        "a refused launch queued nothing"
    );
    assert!(ch.to_vec().unwrap().iter().all(|v| *v == f16::ZERO));
}

/// Issue 17, defect 6: `Gemm::new` with dimensions whose products overflow used to panic;
/// now every extent is checked at the launch and the overflow is `InvalidValue` naming the
/// operand.
#[test]
fn gemm_with_overflowing_shapes_is_invalid_value_naming_the_operand() {
    let s = stream();
    let a = s.from_slice(&[1.0f32; 4]).unwrap();
    let b = s.from_slice(&[1.0f32; 4]).unwrap();
    let mut c = s.from_slice(&[0.0f32; 4]).unwrap();
    let huge = 1usize << 33;
    let none = GemmEpilogue::<f32>::new();
    match ops::gemm(&s, &Gemm::new(huge, huge, huge), &a, &b, &mut c, &none) {
        Err(Error::InvalidValue { detail }) => assert!(detail.contains("`a`"), "{detail}"),
        other => panic!("expected InvalidValue naming `a`, got {other:?}"),
    }
    // A batch stride that overflows only C's extent names `c`.
    let g = Gemm::new(2, 2, 2).batched(2, 0, 0, usize::MAX);
    match ops::gemm(&s, &g, &a, &b, &mut c, &none) {
        Err(Error::InvalidValue { detail }) => assert!(detail.contains("`c`"), "{detail}"),
        other => panic!("expected InvalidValue naming `c`, got {other:?}"),
    }
    s.synchronize().unwrap();
    assert_eq!(c.to_vec().unwrap(), [0.0; 4], "nothing was queued");
}

#[test]
fn gemm_bytes_on_offsets_into_byte_buffers_matches_typed_gemm() {
    use knpu::abi::{KNPU_DTYPE_BF16, KNPU_DTYPE_F32};
    use knpu::ops::{ByteOperand, GemmDtypes};
    let s = stream();
    let (m, n, k) = (5, 3, 7);
    let (a, b) = operands(m, n, k);
    // One byte buffer holds A at byte 16 and B right after it, with room to spare; C is at
    // byte 8 of another.
    let mut bytes = vec![0u8; 16 + 4 * (m * k + k * n) + 12];
    let b_at = 16 + 4 * m * k;
    bytes[16..b_at].copy_from_slice(bytemuck::cast_slice(&a));
    bytes[b_at..b_at + 4 * k * n].copy_from_slice(bytemuck::cast_slice(&b));
    let ab = s.from_slice(&bytes).unwrap();
    let out = s.alloc_zeroed::<u8>(8 + 4 * m * n).unwrap();
    let f32s = GemmDtypes {
        a: KNPU_DTYPE_F32,
        b: KNPU_DTYPE_F32,
        c: KNPU_DTYPE_F32,
    };
    let at = |buffer, offset| ByteOperand { buffer, offset };
    let g = Gemm::new(m, n, k);
    ops::gemm_bytes(&s, &g, f32s, at(&ab, 16), at(&ab, b_at), at(&out, 8)).unwrap();
    let (ta, tb) = (s.from_slice(&a).unwrap(), s.from_slice(&b).unwrap());
    let mut want = s.alloc_zeroed::<f32>(m * n).unwrap();
    ops::gemm(&s, &g, &ta, &tb, &mut want, &GemmEpilogue::new()).unwrap();
    s.synchronize().unwrap();
    let got = out.to_vec().unwrap();
    assert_eq!(
        bytemuck::cast_slice::<u8, f32>(&got[8..]),
        want.to_vec().unwrap()
    );

    // The room to the end of the buffer is the operand's length: C at byte 12 has one float
    // too few.
    let short = ops::gemm_bytes(&s, &g, f32s, at(&ab, 16), at(&ab, b_at), at(&out, 12));
    shape_error(short, "c", "at least 15 elements");
    // A misaligned operand, an offset past the end, and a dtype GEMM does not take.
    let misaligned = ops::gemm_bytes(&s, &g, f32s, at(&ab, 18), at(&ab, b_at), at(&out, 8));
    let e = misaligned.unwrap_err();
    assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
    assert!(
        e.to_string().contains("operand a") && e.to_string().contains("aligned"),
        "{e}"
    );
    let past = ops::gemm_bytes(&s, &g, f32s, at(&ab, 16), at(&ab, b_at), at(&out, 1 << 20));
    let e = past.unwrap_err();
    assert!(
        e.to_string().contains("operand c") && e.to_string().contains("past the end"),
        "{e}"
    );
    let mixed = GemmDtypes {
        c: KNPU_DTYPE_BF16,
        ..f32s
    };
    assert!(ops::gemm_bytes(&s, &g, mixed, at(&ab, 16), at(&ab, b_at), at(&out, 8)).is_ok());
    let bad = GemmDtypes {
        a: knpu::abi::KNPU_DTYPE_I32,
        ..f32s
    };
    let e = ops::gemm_bytes(&s, &g, bad, at(&ab, 16), at(&ab, b_at), at(&out, 8)).unwrap_err();
    assert!(matches!(e, Error::Dtype { operand: "a", .. }), "{e}");
    s.synchronize().unwrap();
}
