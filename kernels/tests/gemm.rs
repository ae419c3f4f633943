//! GEMM against a plain f64 reference, on every instruction set path the host runs, for every
//! element type, over awkward shapes, transposes, strides, batches and epilogues.
//!
//! Tolerance, per element of C: `|got - want| <= k * 2^-23 * S + 1e-6 * M + r * |want|`, where
//! `S = |alpha| sum_p |a_ip b_pj|` bounds the accumulation error of k f32 additions, `M` is the
//! magnitude of everything summed (S plus |beta c|, |bias|, |residual|) and covers the
//! activation approximations, and `r` is the output rounding (0 for f32, 2^-11 for f16,
//! 2^-8 for bf16).

use half::{bf16, f16};
use knpu_kernels::gemm::{gemm, Activation, Element, Epilogue, GemmDesc, Residual};
use knpu_kernels::isa;
use knpu_kernels::{Exec, Isa, KernelError, Parallelism};

mod common;

use common::Rng;

/// The offset of element `(row, col)` of a matrix with leading dimension `ld`, stored
/// transposed when `trans`.
fn offset(trans: bool, ld: usize, row: usize, col: usize) -> usize {
    if trans {
        col * ld + row
    } else {
        row * ld + col
    }
}

/// Path `isa` on the caller's thread.
fn serial(isa: Isa) -> Exec {
    Exec::new(isa, Parallelism::None)
}

/// Every epilogue activation.
const ACTIVATIONS: [Activation; 5] = [
    Activation::None,
    Activation::Relu,
    Activation::GeluErf,
    Activation::GeluTanh,
    Activation::Silu,
];

fn erf64(x: f64) -> f64 {
    if x.abs() >= 5.0 {
        return x.signum();
    }
    // Maclaurin series; at |x| < 5 the largest term is ~6e8, so cancellation costs < 1e-7.
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0.0;
    loop {
        let t = term / (2.0 * n + 1.0);
        sum += t;
        if t.abs() < 1e-17 {
            break;
        }
        n += 1.0;
        term *= -x * x / n;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn act64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::None => x,
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::GeluErf => 0.5 * x * (1.0 + erf64(x / 2f64.sqrt())),
        Activation::GeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::Silu => x / (1.0 + (-x).exp()),
    }
}

fn out_rounding<T: Element>() -> f64 {
    match T::DTYPE {
        knpu_kernels::gemm::Dtype::F32 => 0.0,
        knpu_kernels::gemm::Dtype::F16 => 1.0 / 2048.0,
        knpu_kernels::gemm::Dtype::Bf16 => 1.0 / 256.0,
    }
}

fn fill<T: Element>(rng: &mut Rng, len: usize) -> Vec<T> {
    (0..len).map(|_| T::from_f32(rng.unit())).collect()
}

/// One case: everything needed to run and check a call.
#[derive(Debug, Clone, Copy)]
struct Case {
    desc: GemmDesc,
    bias: bool,
    act: Activation,
    residual: bool,
    par: Parallelism,
}

fn dense_case(rng: &mut Rng, m: usize, n: usize, k: usize, batch: usize) -> Case {
    let ta = rng.pick(&[false, true]);
    let tb = rng.pick(&[false, true]);
    let pad = rng.pick(&[0usize, 0, 3]);
    let mut d = GemmDesc::new(m, n, k);
    if ta {
        d = d.transpose_a();
    }
    if tb {
        d = d.transpose_b();
    }
    d.lda += pad;
    d.ldb += rng.pick(&[0usize, 5]);
    d.ldc += pad;
    let (ar, br) = (if ta { k } else { m }, if tb { n } else { k });
    d = d.batched(
        batch,
        ar * d.lda + 1,
        rng.pick(&[0, br * d.ldb + 2]),
        m * d.ldc + 4,
    );
    d.alpha = rng.pick(&[1.0, 0.5, -1.25]);
    d.beta = rng.pick(&[0.0, 1.0, 0.75]);
    Case {
        desc: d,
        bias: rng.below(2) == 0,
        act: rng.pick(&ACTIVATIONS),
        residual: rng.below(3) == 0,
        par: rng.pick(&[Parallelism::None, Parallelism::Rayon(2)]),
    }
}

fn len_of(rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> usize {
    if rows == 0 || cols == 0 || batch == 0 {
        0
    } else {
        (batch - 1) * stride + (rows - 1) * ld + cols
    }
}

/// Runs `case` on `isa` with random data and checks every element of C, including that
/// elements between rows and batches are untouched.
fn check<TA: Element, TB: Element, TC: Element>(isa: Isa, case: Case, seed: u64) {
    let mut rng = Rng(seed | 1);
    let d = case.desc;
    let (ar, ac) = if d.trans_a { (d.k, d.m) } else { (d.m, d.k) };
    let (br, bc) = if d.trans_b { (d.n, d.k) } else { (d.k, d.n) };
    let a: Vec<TA> = fill(&mut rng, len_of(ar, ac, d.lda, d.batch, d.stride_a));
    let b: Vec<TB> = fill(&mut rng, len_of(br, bc, d.ldb, d.batch, d.stride_b));
    let c0: Vec<TC> = fill(&mut rng, len_of(d.m, d.n, d.ldc, d.batch, d.stride_c) + 3);
    let bias: Vec<f32> = (0..d.n).map(|_| rng.unit()).collect();
    let res_ld = d.n + 1;
    let res: Vec<TC> = fill(&mut rng, len_of(d.m, d.n, res_ld, d.batch, d.m * res_ld));
    let epi = Epilogue {
        bias: case.bias.then_some(&bias[..]),
        activation: case.act,
        residual: case.residual.then_some(Residual {
            data: &res[..],
            ld: res_ld,
            batch_stride: d.m * res_ld,
        }),
    };
    let mut c = c0.clone();
    gemm(&d, &a, &b, &mut c, &epi, Exec::new(isa, case.par)).unwrap();

    let a_at = |bi: usize, i: usize, p: usize| {
        a[bi * d.stride_a + offset(d.trans_a, d.lda, i, p)].to_f32() as f64
    };
    let b_at = |bi: usize, p: usize, j: usize| {
        b[bi * d.stride_b + offset(d.trans_b, d.ldb, p, j)].to_f32() as f64
    };
    let mut written = vec![false; c.len()];
    let r = out_rounding::<TC>();
    for bi in 0..d.batch {
        for i in 0..d.m {
            for j in 0..d.n {
                let ci = bi * d.stride_c + i * d.ldc + j;
                written[ci] = true;
                let (mut dot, mut mag) = (0.0f64, 0.0f64);
                for p in 0..d.k {
                    let t = a_at(bi, i, p) * b_at(bi, p, j);
                    dot += t;
                    mag += t.abs();
                }
                let alpha = d.alpha as f64;
                let mut x = alpha * dot;
                let s = alpha.abs() * mag;
                let mut total = s;
                if d.beta != 0.0 {
                    let cv = d.beta as f64 * c0[ci].to_f32() as f64;
                    x += cv;
                    total += cv.abs();
                }
                if case.bias {
                    x += bias[j] as f64;
                    total += (bias[j] as f64).abs();
                }
                x = act64(case.act, x);
                if case.residual {
                    let rv = res[bi * d.m * res_ld + i * res_ld + j].to_f32() as f64;
                    x += rv;
                    total += rv.abs();
                }
                let got = c[ci].to_f32() as f64;
                let tol = d.k as f64 * f32::EPSILON as f64 * s + 1e-6 * total + r * x.abs() + 1e-30;
                assert!(
                    (got - x).abs() <= tol,
                    "{isa:?} {case:?}: C[{bi}][{i}][{j}] = {got}, want {x} (tol {tol})"
                );
            }
        }
    }
    for (idx, w) in written.iter().enumerate() {
        if !w {
            assert!(
                c[idx] == c0[idx],
                "{isa:?} {case:?}: element {idx} outside C was written"
            );
        }
    }
}

const SIZES: &[usize] = &[0, 1, 2, 3, 4, 7, 17, 63, 64, 65, 127, 257];

fn sampled_cases(seed: u64, count: usize) -> Vec<Case> {
    let mut rng = Rng(seed);
    let mut cases = Vec::new();
    for _ in 0..count {
        let (m, n, k) = (rng.pick(SIZES), rng.pick(SIZES), rng.pick(SIZES));
        let batch = rng.pick(&[1, 1, 1, 3]);
        cases.push(dense_case(&mut rng, m, n, k, batch));
    }
    // Tall and skinny, wide and short, deep k (several k-blocks), GEMV-shaped.
    for (m, n, k) in [
        (1000, 7, 65),
        (5, 1000, 17),
        (65, 63, 1000),
        (1, 1000, 257),
        (4, 129, 1000),
        (2, 65, 7),
        (300, 1, 33),
        (129, 97, 400),
        // More than one k-block on every path (the widest block is 1024 deep).
        (30, 40, 2100),
    ] {
        cases.push(dense_case(&mut rng, m, n, k, 1));
    }
    cases
}

fn run_all<TA: Element, TB: Element, TC: Element>(seed: u64, count: usize) {
    for isa in isa::supported() {
        for (ci, case) in sampled_cases(seed, count).into_iter().enumerate() {
            check::<TA, TB, TC>(isa, case, seed ^ (ci as u64 * 0x9e37_79b9));
        }
    }
}

/// One test per line: `name: [(A, B, C) with seed, sampled cases]...`.
macro_rules! sampled_tests {
    ($($name:ident: [$(($ta:ty, $tb:ty, $tc:ty), $seed:expr, $count:expr);+])*) => {$(
        #[test]
        fn $name() {
            $(run_all::<$ta, $tb, $tc>($seed, $count);)+
        }
    )*};
}

sampled_tests! {
    f32_every_path_matches_reference: [(f32, f32, f32), 0x1234_5678, 60]
    f16_inputs_f32_output: [(f16, f16, f32), 0x2345_6789, 30]
    bf16_inputs_f32_output: [(bf16, bf16, f32), 0x3456_789a, 30]
    f16_inputs_f16_output: [(f16, f16, f16), 0x4567_89ab, 24]
    bf16_inputs_bf16_output: [(bf16, bf16, bf16), 0x5678_9abc, 24]
    mixed_inputs_and_outputs: [(f32, bf16, bf16), 0x6789_abcd, 12; (bf16, f16, f16), 0x789a_bcde, 12]
}

#[test]
fn large_square_each_path() {
    let mut rng = Rng(77);
    for isa in isa::supported() {
        let mut case = dense_case(&mut rng, 1000, 1000, 1000, 1);
        case.par = Parallelism::Rayon(2);
        check::<f32, f32, f32>(isa, case, 99);
    }
    let mut case = dense_case(&mut rng, 1000, 1000, 1000, 1);
    case.act = Activation::GeluTanh;
    check::<bf16, bf16, bf16>(isa::detected(), case, 98);
}

#[test]
fn every_epilogue_on_every_path() {
    let mut rng = Rng(4242);
    for isa in isa::supported() {
        for act in ACTIVATIONS {
            for (m, n, k) in [(17, 65, 63), (1, 33, 100), (70, 40, 0)] {
                let mut case = dense_case(&mut rng, m, n, k, 1);
                case.act = act;
                case.bias = true;
                case.residual = true;
                case.desc.beta = 0.5;
                check::<f32, f32, f32>(isa, case, 5);
                check::<f16, f16, bf16>(isa, case, 6);
            }
        }
    }
}

/// Small f32 problems whose A is read in place (n <= 128), with ragged row slivers of every
/// height, B read in place, one and two threads, every epilogue, on every path.
#[test]
fn small_in_place_path_awkward_shapes() {
    let mut rng = Rng(0x5eed_0064);
    for isa in isa::supported() {
        for (si, &s) in [0usize, 1, 2, 7, 17, 63, 64, 65, 127].iter().enumerate() {
            for (m, n, k) in [(s, s, s), (s, 64, 33), (s + 5, 100, s), (s + 13, s, 64)] {
                for par in [Parallelism::None, Parallelism::Rayon(2)] {
                    let batch = if si % 3 == 0 { 3 } else { 1 };
                    let mut case = dense_case(&mut rng, m, n, k, batch);
                    case.par = par;
                    case.act = ACTIVATIONS[(si + m) % ACTIVATIONS.len()];
                    case.bias = (m + n) % 2 == 0;
                    case.residual = (m + k) % 3 == 0;
                    check::<f32, f32, f32>(isa, case, (si * 31 + m) as u64);
                }
            }
        }
    }
}

/// Checks `case` on two threads with a bias, `activation` and (when `residual`) a residual,
/// in f32 and with bf16 inputs and an f16 output (seeds `seed` and `seed + 1`).
fn check_two_threads_with_epilogue(
    isa: Isa,
    mut case: Case,
    (activation, residual): (Activation, bool),
    seed: u64,
) {
    case.par = Parallelism::Rayon(2);
    case.bias = true;
    case.act = activation;
    case.residual = residual;
    check::<f32, f32, f32>(isa, case, seed);
    check::<bf16, bf16, f16>(isa, case, seed + 1);
}

#[test]
fn gemv_split_over_k_on_two_threads() {
    // Large enough that the GEMV path splits B's rows between threads and adds partials.
    let mut rng = Rng(31337);
    for isa in isa::supported() {
        for m in 1..=4 {
            let mut case = dense_case(&mut rng, m, 700, 600, 1);
            case.desc = GemmDesc::new(m, 700, 600).scale(0.5, 0.75);
            let epilogue = (Activation::Silu, m % 2 == 0);
            check_two_threads_with_epilogue(isa, case, epilogue, 17);
        }
    }
}

#[test]
fn small_m_with_transposed_b_takes_the_dot_path() {
    // B stored n x k with m <= 16 runs the dot-product GEMV kernel in row groups of four.
    let mut rng = Rng(2718);
    for isa in isa::supported() {
        for (m, n, k) in [(5, 67, 33), (9, 130, 100), (16, 40, 17), (13, 300, 257)] {
            let mut case = dense_case(&mut rng, m, n, k, 2);
            case.desc = GemmDesc::new(m, n, k)
                .transpose_b()
                .batched(2, m * k, n * k + 3, m * n)
                .scale(1.5, 0.5);
            check_two_threads_with_epilogue(isa, case, (Activation::GeluTanh, true), 21);
        }
    }
}

#[test]
fn k_zero_scales_c_and_applies_epilogue() {
    for isa in isa::supported() {
        let d = GemmDesc::new(3, 5, 0).scale(2.0, 0.5);
        let mut c = vec![2.0f32; 15];
        let bias = [1.0f32, -10.0, 0.0, 0.0, 0.0];
        let epi = Epilogue {
            bias: Some(&bias[..]),
            activation: Activation::Relu,
            residual: None,
        };
        gemm::<f32, f32, f32>(&d, &[], &[], &mut c, &epi, serial(isa)).unwrap();
        assert_eq!(&c[..5], &[2.0, 0.0, 1.0, 1.0, 1.0]);
    }
}

#[test]
fn beta_zero_overwrites_nan_in_c_but_nan_in_a_propagates() {
    for isa in isa::supported() {
        for m in [1, 9] {
            let d = GemmDesc::new(m, 20, 8);
            let mut a = vec![1.0f32; m * 8];
            a[3] = f32::NAN;
            let b = vec![1.0f32; 8 * 20];
            let mut c = vec![f32::NAN; m * 20];
            gemm(&d, &a, &b, &mut c, &Epilogue::none(), serial(isa)).unwrap();
            assert!(
                c[..20].iter().all(|v| v.is_nan()),
                "{isa:?}: row 0 should be NaN"
            );
            assert!(
                c[20..].iter().all(|&v| v == 8.0),
                "{isa:?}: other rows overwrite C"
            );

            let mut a = vec![1.0f32; m * 8];
            a[0] = f32::INFINITY;
            let mut c = vec![0.0f32; m * 20];
            gemm(&d, &a, &b, &mut c, &Epilogue::none(), serial(isa)).unwrap();
            assert!(c[..20].iter().all(|&v| v == f32::INFINITY));
            // Relu keeps NaN: beta = 1 with NaN in C.
            let mut c = vec![f32::NAN; m * 20];
            let d1 = d.scale(1.0, 1.0);
            let epi = Epilogue {
                bias: None,
                activation: Activation::Relu,
                residual: None,
            };
            gemm(&d1, &a, &b, &mut c, &epi, Exec::new(isa, Parallelism::None)).unwrap();
            assert!(c.iter().all(|v| v.is_nan()));
        }
    }
}

#[test]
fn bf16_output_keeps_nan() {
    for isa in isa::supported() {
        let d = GemmDesc::new(6, 40, 3);
        let mut a = vec![bf16::ONE; 18];
        a[0] = bf16::NAN;
        let b = vec![bf16::ONE; 120];
        let mut c = vec![bf16::ZERO; 240];
        gemm(&d, &a, &b, &mut c, &Epilogue::none(), serial(isa)).unwrap();
        assert!(c[..40].iter().all(|v| v.is_nan()), "{isa:?}");
        assert!(c[40..].iter().all(|&v| v == bf16::from_f32(3.0)));
    }
}

#[test]
fn bad_arguments_are_errors() {
    let a = vec![0.0f32; 64];
    let b = vec![0.0f32; 64];
    let mut c = vec![0.0f32; 64];
    let none = Epilogue::none();
    let p = Parallelism::None;
    let d = GemmDesc::new(4, 4, 4);
    assert!(matches!(
        gemm(&d.ld(3, 4, 4), &a, &b, &mut c, &none, p),
        Err(KernelError::BadStride { operand: "a", .. })
    ));
    assert!(matches!(
        gemm(&d.ld(4, 4, 2), &a, &b, &mut c, &none, p),
        Err(KernelError::BadStride { operand: "c", .. })
    ));
    assert!(matches!(
        gemm(&GemmDesc::new(20, 4, 4), &a, &b, &mut c, &none, p),
        Err(KernelError::SliceTooShort { operand: "a", .. })
    ));
    assert!(matches!(
        gemm(&d.batched(2, 16, 16, 8), &a, &b, &mut c, &none, p),
        Err(KernelError::BadStride { operand: "c", .. })
    ));
    let short = [0.0f32; 3];
    let epi = Epilogue {
        bias: Some(&short[..]),
        activation: Activation::None,
        residual: None,
    };
    assert!(matches!(
        gemm(&d, &a, &b, &mut c, &epi, p),
        Err(KernelError::SliceTooShort {
            operand: "bias",
            ..
        })
    ));
    let epi = Epilogue {
        bias: None,
        activation: Activation::None,
        residual: Some(Residual {
            data: &short[..],
            ld: 4,
            batch_stride: 0,
        }),
    };
    assert!(matches!(
        gemm(&d, &a, &b, &mut c, &epi, p),
        Err(KernelError::SliceTooShort {
            operand: "residual",
            ..
        })
    ));
    // Zero-sized problems need no data at all.
    gemm::<f32, f32, f32>(&GemmDesc::new(0, 5, 3), &[], &b, &mut [], &none, p).unwrap();
}
