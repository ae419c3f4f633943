//! The quantised-kernel executors with raw ABI parameters: submit-time checks of the
//! parameter structs (struct_size, format and enum numbers, block alignment, scale rules,
//! overflow, overlap), device address checks naming the operand and the address, and a
//! small problem checked against the host kernel.

mod common;

use common::{KernelQueue, Sim};
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
    let mut params = KnpuQMatmulParams::sized();
    params.format = KNPU_QUANT_Q8_0;
    params.x_dtype = KNPU_DTYPE_F32;
    params.y_dtype = KNPU_DTYPE_F32;
    params.activation = KNPU_ACTIVATION_NONE;
    params.act_quant = KNPU_ACT_QUANT_AUTO;
    params.m = M;
    params.n = N;
    params.k = K;
    params.x = k.upload(bytemuck::cast_slice(&x));
    params.w = k.upload(&w);
    params.y = k.alloc(M * N * 4);
    Problem { k, params, x, w }
}

#[test]
fn the_quantised_kernels_report_their_dtypes() {
    let sim = sim();
    let d = sim.device(0);
    for (id, dtype, want) in [
        (KNPU_KERNEL_QUANTIZE, KNPU_DTYPE_F32, true),
        (KNPU_KERNEL_QUANTIZE, KNPU_DTYPE_F16, false),
        (KNPU_KERNEL_DEQUANTIZE, KNPU_DTYPE_F32, true),
        (KNPU_KERNEL_DEQUANTIZE, KNPU_DTYPE_BF16, false),
        (KNPU_KERNEL_QMATMUL, KNPU_DTYPE_F32, true),
        (KNPU_KERNEL_QMATMUL, KNPU_DTYPE_F16, true),
        (KNPU_KERNEL_QMATMUL, KNPU_DTYPE_BF16, true),
        (KNPU_KERNEL_QMATMUL, KNPU_DTYPE_F64, false),
        (KNPU_KERNEL_W8A8_GEMM, KNPU_DTYPE_I8, true),
        (KNPU_KERNEL_W8A8_GEMM, KNPU_DTYPE_F16, true),
        (KNPU_KERNEL_W8A8_GEMM, KNPU_DTYPE_I32, false),
        (KNPU_KERNEL_QEMBEDDING, KNPU_DTYPE_BF16, true),
        (KNPU_KERNEL_QEMBEDDING, KNPU_DTYPE_U8, false),
    ] {
        let supported = sim.supports_kernel(d, id, dtype);
        assert_eq!(supported, want, "kernel {id:#x} dtype {dtype}");
    }
}

#[test]
fn a_valid_problem_matches_the_host_kernel() {
    let p = problem();
    assert_eq!(
        p.k.run(KNPU_KERNEL_QMATMUL, &p.params),
        (KNPU_STATUS_SUCCESS, String::new())
    );
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

#[test]
fn bad_parameter_structs_are_refused_at_submit() {
    let p = problem();
    let refused = |params: &KnpuQMatmulParams, want: KnpuStatus, what: &str| {
        assert_eq!(p.k.submit(KNPU_KERNEL_QMATMUL, params), want, "{what}");
    };
    let mut short = p.params;
    short.struct_size = field_end!(KnpuQMatmulParams, bias);
    refused(&short, KNPU_STATUS_INVALID_VALUE, "struct_size short of y");
    let mut zero = p.params;
    zero.struct_size = 0;
    refused(&zero, KNPU_STATUS_INVALID_VALUE, "struct_size 0");
    let mut format = p.params;
    format.format = 8;
    refused(&format, KNPU_STATUS_INVALID_VALUE, "format 8");
    format.format = u32::MAX;
    refused(&format, KNPU_STATUS_INVALID_VALUE, "format u32::MAX");
    let mut act = p.params;
    act.activation = 5;
    refused(&act, KNPU_STATUS_INVALID_VALUE, "activation 5");
    let mut aq = p.params;
    aq.act_quant = 3;
    refused(&aq, KNPU_STATUS_INVALID_VALUE, "act_quant 3");
    let mut reserved = p.params;
    reserved.reserved = 1;
    refused(&reserved, KNPU_STATUS_INVALID_VALUE, "reserved");
    let mut dtype = p.params;
    dtype.x_dtype = KNPU_DTYPE_F64;
    refused(&dtype, KNPU_STATUS_NOT_SUPPORTED, "f64 x");
    let mut dtype = p.params;
    dtype.y_dtype = KNPU_DTYPE_I32;
    refused(&dtype, KNPU_STATUS_NOT_SUPPORTED, "i32 y");
    // k not a multiple of the block size.
    let mut k = p.params;
    k.k = 48;
    refused(&k, KNPU_STATUS_INVALID_VALUE, "k = 48 for Q8_0");
    k.format = KNPU_QUANT_Q6_K;
    k.k = 128;
    refused(&k, KNPU_STATUS_INVALID_VALUE, "k = 128 for Q6_K");
    // Scales given for a block format, missing for I8.
    let mut scales = p.params;
    scales.w_scales = p.params.y;
    refused(&scales, KNPU_STATUS_INVALID_VALUE, "scales for Q8_0");
    let mut i8 = p.params;
    i8.format = KNPU_QUANT_I8;
    refused(&i8, KNPU_STATUS_INVALID_VALUE, "I8 without scales");
    // Integer arithmetic on FP8.
    let mut fp8 = p.params;
    fp8.format = KNPU_QUANT_F8E4M3;
    fp8.act_quant = KNPU_ACT_QUANT_INT8;
    refused(&fp8, KNPU_STATUS_NOT_SUPPORTED, "int8 on FP8");
    // Sizes that overflow, a misaligned x, an output overlapping the weights.
    let mut big = p.params;
    big.n = u64::MAX / 2;
    refused(&big, KNPU_STATUS_INVALID_VALUE, "n * row_bytes overflows");
    let mut misaligned = p.params;
    misaligned.x += 2;
    refused(&misaligned, KNPU_STATUS_INVALID_VALUE, "misaligned x");
    let mut overlap = p.params;
    overlap.y = p.params.w;
    refused(&overlap, KNPU_STATUS_INVALID_VALUE, "y overlaps w");

    // The other kernels' own checks.
    let mut deq = KnpuDequantizeParams::sized();
    deq.format = 9;
    deq.rows = 1;
    deq.k = 32;
    deq.src = p.params.w;
    deq.dst = p.params.y;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_DEQUANTIZE, &deq),
        KNPU_STATUS_INVALID_VALUE
    );
    deq.format = KNPU_QUANT_Q4_1;
    deq.struct_size = 8;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_DEQUANTIZE, &deq),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut quant = KnpuQuantizeParams::sized();
    quant.format = KNPU_QUANT_I8;
    quant.rows = 1;
    quant.k = 8;
    quant.src = p.params.x;
    quant.dst = p.params.y;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_QUANTIZE, &quant),
        KNPU_STATUS_INVALID_VALUE,
        "I8 quantisation without scales"
    );
    let mut w8 = KnpuW8A8GemmParams::sized();
    w8.y_dtype = KNPU_DTYPE_F32;
    w8.m = 1;
    w8.n = 1;
    w8.k = (1 << 17) + 1;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_W8A8_GEMM, &w8),
        KNPU_STATUS_NOT_SUPPORTED
    );
    let mut emb = KnpuQEmbeddingParams::sized();
    emb.format = KNPU_QUANT_Q4_0;
    emb.out_dtype = KNPU_DTYPE_F32;
    emb.vocab = 1;
    emb.dim = 33;
    emb.tokens = 1;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_QEMBEDDING, &emb),
        KNPU_STATUS_INVALID_VALUE,
        "dim 33 for Q4_0"
    );
    // Nothing above was queued; the queue still runs work.
    assert_eq!(
        p.k.run(KNPU_KERNEL_QMATMUL, &p.params),
        (KNPU_STATUS_SUCCESS, String::new())
    );
}

#[test]
fn an_operand_outside_live_memory_is_an_illegal_address_naming_it() {
    let p = problem();
    // Weights at an unmapped address.
    let mut far = p.params;
    far.w = p.params.y + (1 << 30);
    let (st, msg) = p.k.run(KNPU_KERNEL_QMATMUL, &far);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `w`"), "{msg}");
    assert!(msg.contains(&format!("{:#x}", far.w)), "{msg}");
    // Weights one row longer than their allocation.
    let mut longer = p.params;
    longer.n = N + 1;
    longer.y = p.k.alloc(M * (N + 1) * 4);
    let (st, msg) = p.k.run(KNPU_KERNEL_QMATMUL, &longer);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `w`"), "{msg}");
    assert!(msg.contains(&format!("{:#x}", p.params.w)), "{msg}");
    // A bias past the end of memory.
    let mut bias = p.params;
    bias.bias = p.params.y + (1 << 31);
    let (st, msg) = p.k.run(KNPU_KERNEL_QMATMUL, &bias);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `bias`"), "{msg}");
    // Freed weights.
    let mut freed = p.params;
    freed.w = p.k.upload(&p.w);
    p.k.free(freed.w);
    let (st, msg) = p.k.run(KNPU_KERNEL_QMATMUL, &freed);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `w`"), "{msg}");

    // Dequantise from an unmapped source.
    let mut deq = KnpuDequantizeParams::sized();
    deq.format = KNPU_QUANT_Q8_0;
    deq.rows = N;
    deq.k = K;
    deq.src = p.params.w + (1 << 30);
    deq.dst = p.k.alloc(N * K * 4);
    let (st, msg) = p.k.run(KNPU_KERNEL_DEQUANTIZE, &deq);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `src`"), "{msg}");
    assert!(msg.contains(&format!("{:#x}", deq.src)), "{msg}");
    deq.src = p.params.w;
    assert_eq!(
        p.k.run(KNPU_KERNEL_DEQUANTIZE, &deq),
        (KNPU_STATUS_SUCCESS, String::new())
    );

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
    let (st, msg) = p.k.run(KNPU_KERNEL_W8A8_GEMM, &w8);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `wq`"), "{msg}");
    w8.wq = p.params.w;
    assert_eq!(
        p.k.run(KNPU_KERNEL_W8A8_GEMM, &w8),
        (KNPU_STATUS_SUCCESS, String::new())
    );
}
