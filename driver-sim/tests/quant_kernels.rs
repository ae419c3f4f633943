//! The quantised-kernel executors with raw ABI parameters: submit-time checks of the
//! parameter structs (struct_size, format and enum numbers, block alignment, scale rules,
//! overflow, overlap), device address checks naming the operand and the address, and a
//! small problem checked against the host kernel.

mod common;

use common::{KernelQueue, Refusal, Sim, ILLEGAL, INVALID, UNSUPPORTED};
use knpu_driver_abi::*;
use knpu_kernels::quant as kq;
use knpu_kernels::Parallelism;

fn sim() -> Sim {
    common::linked()
}

const M: u64 = 2;
const N: u64 = 3;
const K: u64 = 64;
/// Bytes of one Q8_0 row of K values.
const ROW: u64 = K / 32 * 34;

/// Deterministic values in about [-2, 2).
fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) as f32 / 16384.0 - 2.0
        })
        .collect()
}

/// A Q8_0 qmatmul [M, K] x [N, K]^T -> [M, N] with f32 x and y, operands uploaded.
struct Problem {
    k: KernelQueue,
    params: KnpuQMatmulParams,
    x: Vec<f32>,
    w: Vec<u8>,
}

fn problem() -> Problem {
    let k = KernelQueue::new();
    let x = data((M * K) as usize, 1);
    let mut w = vec![0u8; (N * ROW) as usize];
    kq::quantize(
        kq::QuantFormat::Q8_0,
        N as usize,
        K as usize,
        &data((N * K) as usize, 2),
        &mut w,
        None,
    )
    .unwrap();
    let params = KnpuQMatmulParams {
        format: KNPU_QUANT_Q8_0,
        x_dtype: KNPU_DTYPE_F32,
        y_dtype: KNPU_DTYPE_F32,
        activation: KNPU_ACTIVATION_NONE,
        act_quant: KNPU_ACT_QUANT_AUTO,
        m: M,
        n: N,
        k: K,
        x: k.upload(bytemuck::cast_slice(&x)),
        w: k.upload(&w),
        y: k.alloc(M * N * 4),
        ..KnpuQMatmulParams::sized()
    };
    Problem { k, params, x, w }
}

#[test]
fn the_quantised_kernels_report_their_dtypes() {
    common::assert_kernel_dtypes(
        &sim(),
        &[
            (KNPU_KERNEL_QUANTIZE, &[KNPU_DTYPE_F32], &[KNPU_DTYPE_F16]),
            (
                KNPU_KERNEL_DEQUANTIZE,
                &[KNPU_DTYPE_F32],
                &[KNPU_DTYPE_BF16],
            ),
            (
                KNPU_KERNEL_QMATMUL,
                &[KNPU_DTYPE_F32, KNPU_DTYPE_F16, KNPU_DTYPE_BF16],
                &[KNPU_DTYPE_F64],
            ),
            (
                KNPU_KERNEL_W8A8_GEMM,
                &[KNPU_DTYPE_I8, KNPU_DTYPE_F16],
                &[KNPU_DTYPE_I32],
            ),
            (KNPU_KERNEL_QEMBEDDING, &[KNPU_DTYPE_BF16], &[KNPU_DTYPE_U8]),
        ],
    );
}

#[test]
fn a_valid_problem_matches_the_host_kernel() {
    let p = problem();
    p.k.assert_runs(KNPU_KERNEL_QMATMUL, &p.params);
    let got = p.k.download(p.params.y, (M * N * 4) as usize);
    let mut want = vec![0.0f32; (M * N) as usize];
    let w = kq::QWeights {
        format: kq::QuantFormat::Q8_0,
        data: &p.w,
        scales: None,
        n: N as usize,
        k: K as usize,
    };
    let q = kq::QMatmulParams {
        m: M as usize,
        ..Default::default()
    };
    kq::qmatmul(&q, &p.x, &w, None, &mut want, Parallelism::None).unwrap();
    assert_eq!(got, bytemuck::cast_slice::<f32, u8>(&want));
}

/// Changes that make the valid problem's parameters wrong, each with the status its submit
/// must return.
const BAD_PARAMS: &[Refusal<KnpuQMatmulParams>] = &[
    ("struct_size short of y", INVALID, |x| {
        x.struct_size = field_end!(KnpuQMatmulParams, bias)
    }),
    ("struct_size 0", INVALID, |x| x.struct_size = 0),
    ("format 8", INVALID, |x| x.format = 8),
    ("format u32::MAX", INVALID, |x| x.format = u32::MAX),
    ("activation 5", INVALID, |x| x.activation = 5),
    ("act_quant 3", INVALID, |x| x.act_quant = 3),
    ("reserved", INVALID, |x| x.reserved = 1),
    ("f64 x", UNSUPPORTED, |x| x.x_dtype = KNPU_DTYPE_F64),
    ("i32 y", UNSUPPORTED, |x| x.y_dtype = KNPU_DTYPE_I32),
    // k not a multiple of the block size.
    ("k = 48 for Q8_0", INVALID, |x| x.k = 48),
    ("k = 128 for Q6_K", INVALID, |x| {
        (x.format, x.k) = (KNPU_QUANT_Q6_K, 128)
    }),
    // Scales given for a block format, missing for I8.
    ("scales for Q8_0", INVALID, |x| x.w_scales = x.y),
    ("I8 without scales", INVALID, |x| x.format = KNPU_QUANT_I8),
    // Integer arithmetic on FP8.
    ("int8 on FP8", UNSUPPORTED, |x| {
        (x.format, x.act_quant) = (KNPU_QUANT_F8E4M3, KNPU_ACT_QUANT_INT8)
    }),
    // Sizes that overflow, a misaligned x, an output overlapping the weights.
    ("n * row_bytes overflows", INVALID, |x| x.n = u64::MAX / 2),
    ("misaligned x", INVALID, |x| x.x += 2),
    ("y overlaps w", INVALID, |x| x.y = x.w),
];

#[test]
fn bad_parameter_structs_are_refused_at_submit() {
    let p = problem();
    p.k.assert_refused(KNPU_KERNEL_QMATMUL, &p.params, BAD_PARAMS);

    // The other kernels' own checks.
    let mut deq = KnpuDequantizeParams::sized();
    (deq.format, deq.rows, deq.k) = (9, 1, 32);
    (deq.src, deq.dst) = (p.params.w, p.params.y);
    assert_eq!(
        p.k.submit(KNPU_KERNEL_DEQUANTIZE, &deq),
        INVALID,
        "format 9"
    );
    deq.format = KNPU_QUANT_Q4_1;
    deq.struct_size = 8;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_DEQUANTIZE, &deq),
        INVALID,
        "struct_size 8"
    );
    let mut quant = KnpuQuantizeParams::sized();
    (quant.format, quant.rows, quant.k) = (KNPU_QUANT_I8, 1, 8);
    (quant.src, quant.dst) = (p.params.x, p.params.y);
    assert_eq!(
        p.k.submit(KNPU_KERNEL_QUANTIZE, &quant),
        INVALID,
        "I8 quantisation without scales"
    );
    let mut w8 = KnpuW8A8GemmParams::sized();
    w8.y_dtype = KNPU_DTYPE_F32;
    (w8.m, w8.n, w8.k) = (1, 1, (1 << 17) + 1);
    assert_eq!(
        p.k.submit(KNPU_KERNEL_W8A8_GEMM, &w8),
        UNSUPPORTED,
        "k 2^17 + 1"
    );
    let mut emb = KnpuQEmbeddingParams::sized();
    (emb.format, emb.out_dtype) = (KNPU_QUANT_Q4_0, KNPU_DTYPE_F32);
    (emb.vocab, emb.dim, emb.tokens) = (1, 33, 1);
    assert_eq!(
        p.k.submit(KNPU_KERNEL_QEMBEDDING, &emb),
        INVALID,
        "dim 33 for Q4_0"
    );
    // Nothing above was queued; the queue still runs work.
    p.k.assert_runs(KNPU_KERNEL_QMATMUL, &p.params);
}

#[test]
fn an_operand_outside_live_memory_is_an_illegal_address_naming_it() {
    let p = problem();
    // Weights at an unmapped address.
    let mut far = p.params;
    far.w = p.params.y + (1 << 30);
    let far_w = format!("{:#x}", far.w);
    p.k.assert_fault(KNPU_KERNEL_QMATMUL, &far, ILLEGAL, &["operand `w`", &far_w]);
    // Weights one row longer than their allocation.
    let mut longer = p.params;
    longer.n = N + 1;
    longer.y = p.k.alloc(M * (N + 1) * 4);
    let w = format!("{:#x}", p.params.w);
    p.k.assert_fault(KNPU_KERNEL_QMATMUL, &longer, ILLEGAL, &["operand `w`", &w]);
    // A bias past the end of memory.
    let mut bias = p.params;
    bias.bias = p.params.y + (1 << 31);
    p.k.assert_fault(KNPU_KERNEL_QMATMUL, &bias, ILLEGAL, &["operand `bias`"]);
    // Freed weights.
    let mut freed = p.params;
    freed.w = p.k.upload(&p.w);
    p.k.free(freed.w);
    p.k.assert_fault(KNPU_KERNEL_QMATMUL, &freed, ILLEGAL, &["operand `w`"]);

    // Dequantise from an unmapped source.
    let mut deq = KnpuDequantizeParams::sized();
    deq.format = KNPU_QUANT_Q8_0;
    deq.rows = N;
    deq.k = K;
    deq.src = p.params.w + (1 << 30);
    deq.dst = p.k.alloc(N * K * 4);
    let src = format!("{:#x}", deq.src);
    p.k.assert_fault(
        KNPU_KERNEL_DEQUANTIZE,
        &deq,
        ILLEGAL,
        &["operand `src`", &src],
    );
    deq.src = p.params.w;
    p.k.assert_runs(KNPU_KERNEL_DEQUANTIZE, &deq);

    // W8A8 with unmapped weights.
    let mut w8 = KnpuW8A8GemmParams::sized();
    w8.y_dtype = KNPU_DTYPE_F32;
    w8.m = 1;
    w8.n = 1;
    w8.k = 4;
    w8.xq = p.params.w;
    w8.x_scales = p.params.x;
    w8.wq = p.params.w + (1 << 30);
    w8.w_scales = p.params.x;
    w8.y = p.params.y;
    p.k.assert_fault(KNPU_KERNEL_W8A8_GEMM, &w8, ILLEGAL, &["operand `wq`"]);
    w8.wq = p.params.w;
    p.k.assert_runs(KNPU_KERNEL_W8A8_GEMM, &w8);
}
