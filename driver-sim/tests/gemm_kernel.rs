//! KNPU_KERNEL_GEMM with raw ABI parameters: submit-time checks of the parameter struct
//! (size, dtypes, transposes, activation, leading dimensions, batch strides, alignment),
//! device address checks of every operand at run time (an ILLEGAL_ADDRESS fault that names
//! the operand and the address), inputs that overlap the output, and the queue carrying on
//! after a fault.

mod common;

use common::KernelQueue;
use knpu_driver_abi::*;

const M: u64 = 3;
const N: u64 = 5;
const K: u64 = 4;

/// An f32 problem C[3x5] = A[3x4] B[4x5] with buffers of exactly the operands' sizes.
struct Problem {
    k: KernelQueue,
    params: KnpuGemmParams,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn problem() -> Problem {
    let k = KernelQueue::new();
    let a: Vec<f32> = (0..M * K).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..K * N).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
    let mut params = KnpuGemmParams::sized();
    params.a_dtype = KNPU_DTYPE_F32;
    params.b_dtype = KNPU_DTYPE_F32;
    params.c_dtype = KNPU_DTYPE_F32;
    params.activation = KNPU_ACTIVATION_NONE;
    (params.m, params.n, params.k) = (M, N, K);
    (params.lda, params.ldb, params.ldc) = (K, N, N);
    params.batch_count = 1;
    (params.stride_a, params.stride_b, params.stride_c) = (M * K, K * N, M * N);
    (params.alpha, params.beta) = (1.0, 0.0);
    params.a = k.upload(bytes(&a));
    params.b = k.upload(bytes(&b));
    params.c = k.alloc(M * N * 4);
    Problem { k, params, a, b }
}

/// `A B` for `m x k` A and `k x n` B, row-major, in f64.
fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

impl Problem {
    /// Submits and waits; the wait's status and the failure message.
    fn run(&self, params: &KnpuGemmParams) -> (KnpuStatus, String) {
        self.k.run(KNPU_KERNEL_GEMM, params)
    }

    /// Submits without waiting: the submit-time status.
    fn submit(&self, params: &KnpuGemmParams) -> KnpuStatus {
        self.k.submit(KNPU_KERNEL_GEMM, params)
    }

    /// `len` floats at `addr`.
    fn read(&self, addr: u64, len: usize) -> Vec<f32> {
        let raw = self.k.download(addr, len * 4);
        raw.chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().expect("4 bytes")))
            .collect()
    }

    /// Runs the valid problem and checks C.
    fn run_valid(&self) {
        assert_eq!(self.run(&self.params), (KNPU_STATUS_SUCCESS, String::new()));
        let want = reference(&self.a, &self.b, M as usize, N as usize, K as usize);
        assert_eq!(self.read(self.params.c, (M * N) as usize), want);
    }
}

#[test]
fn a_valid_problem_matches_the_reference() {
    problem().run_valid();
}

#[test]
fn an_operand_outside_memory_is_an_illegal_address_naming_it_and_the_address() {
    let p = problem();
    for operand in ["a", "b", "c"] {
        let mut bad = p.params;
        let addr = p.params.c + (1 << 32);
        match operand {
            "a" => bad.a = addr,
            "b" => bad.b = addr,
            _ => bad.c = addr,
        }
        let (st, msg) = p.run(&bad);
        assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS, "{operand}: {msg}");
        assert!(msg.contains(&format!("operand `{operand}`")), "{msg}");
        assert!(msg.contains(&format!("{addr:#x}")), "{msg}");
        // The next work on the same queue succeeds.
        p.run_valid();
    }
}

#[test]
fn an_operand_running_past_its_allocation_is_an_illegal_address() {
    let p = problem();
    // A with one more row than allocated (its extent runs 16 bytes past the end).
    let mut tall = p.params;
    tall.lda = K + 1;
    let (st, msg) = p.run(&tall);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS, "{msg}");
    assert!(msg.contains("operand `a`"), "{msg}");
    assert!(msg.contains("past the end"), "{msg}");
    // A second batch of B that is not there (stride 0 would reuse it).
    let mut batched = p.params;
    batched.batch_count = 2;
    batched.stride_a = 0;
    batched.stride_b = K * N;
    batched.c = p.k.alloc(2 * M * N * 4);
    batched.stride_c = M * N;
    let (st, msg) = p.run(&batched);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS, "{msg}");
    assert!(msg.contains("operand `b`"), "{msg}");
    // Bias and residual are checked the same way.
    let mut bias = p.params;
    bias.bias = p.params.c + (1 << 32);
    let (st, msg) = p.run(&bias);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS, "{msg}");
    assert!(msg.contains("operand `bias`"), "{msg}");
    let mut residual = p.params;
    // B's 20 floats hold a 3 x 5 residual only with a leading dimension up to 7.
    residual.residual = p.params.b;
    residual.ld_residual = N + 3;
    residual.stride_residual = M * N;
    let (st, msg) = p.run(&residual);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS, "{msg}");
    assert!(msg.contains("operand `residual`"), "{msg}");
    p.run_valid();
}

#[test]
fn a_freed_operand_is_an_illegal_address() {
    let p = problem();
    let mut freed = p.params;
    freed.b = p.k.upload(bytes(&p.b));
    p.k.free(freed.b);
    let (st, msg) = p.run(&freed);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS, "{msg}");
    assert!(msg.contains("operand `b`"), "{msg}");
    p.run_valid();
}

#[test]
fn bad_parameter_structs_are_refused_at_submit() {
    let p = problem();
    let refused = |params: &KnpuGemmParams, want: KnpuStatus, what: &str| {
        assert_eq!(p.submit(params), want, "{what}");
    };
    let mut short = p.params;
    short.struct_size = field_end!(KnpuGemmParams, ld_residual);
    refused(
        &short,
        KNPU_STATUS_INVALID_VALUE,
        "struct_size short of stride_residual",
    );
    let mut tiny = p.params;
    tiny.struct_size = 4;
    refused(&tiny, KNPU_STATUS_INVALID_VALUE, "struct_size 4");
    for dtype in [KNPU_DTYPE_I8, KNPU_DTYPE_F64, 0xdead] {
        let mut d = p.params;
        d.a_dtype = dtype;
        refused(&d, KNPU_STATUS_NOT_SUPPORTED, "a dtype");
        let mut d = p.params;
        d.c_dtype = dtype;
        refused(&d, KNPU_STATUS_NOT_SUPPORTED, "c dtype");
    }
    // f16 A with bf16 B has no path.
    let mut mixed = p.params;
    mixed.a_dtype = KNPU_DTYPE_F16;
    mixed.b_dtype = KNPU_DTYPE_BF16;
    refused(&mixed, KNPU_STATUS_NOT_SUPPORTED, "f16 x bf16");
    let mut lda = p.params;
    lda.lda = K - 1;
    refused(&lda, KNPU_STATUS_INVALID_VALUE, "lda < k");
    let mut lda_t = p.params;
    lda_t.trans_a = 1;
    lda_t.lda = M - 1;
    refused(
        &lda_t,
        KNPU_STATUS_INVALID_VALUE,
        "lda < m with A transposed",
    );
    let mut ldb = p.params;
    ldb.ldb = N - 1;
    refused(&ldb, KNPU_STATUS_INVALID_VALUE, "ldb < n");
    let mut ldc = p.params;
    ldc.ldc = N - 1;
    refused(&ldc, KNPU_STATUS_INVALID_VALUE, "ldc < n");
    let mut ldr = p.params;
    ldr.residual = p.params.c;
    ldr.ld_residual = N - 1;
    refused(&ldr, KNPU_STATUS_INVALID_VALUE, "ld_residual < n");
    let mut trans = p.params;
    trans.trans_b = 2;
    refused(&trans, KNPU_STATUS_INVALID_VALUE, "trans_b 2");
    let mut act = p.params;
    act.activation = 99;
    refused(&act, KNPU_STATUS_INVALID_VALUE, "activation 99");
    let mut misaligned = p.params;
    misaligned.a += 2;
    refused(&misaligned, KNPU_STATUS_INVALID_VALUE, "misaligned a");
    let mut null = p.params;
    null.b = 0;
    refused(&null, KNPU_STATUS_INVALID_VALUE, "null b");
    // Batches of C that overlap each other: the output overlapping itself is refused.
    let mut batches = p.params;
    batches.batch_count = 2;
    batches.stride_c = M * N - 1;
    refused(
        &batches,
        KNPU_STATUS_INVALID_VALUE,
        "overlapping batches of C",
    );
    let mut huge = p.params;
    huge.m = u64::MAX / 2;
    refused(&huge, KNPU_STATUS_INVALID_VALUE, "extent overflow");
    // Nothing refused was queued: the valid problem still runs.
    p.run_valid();
}

#[test]
fn inputs_overlapping_the_output_are_read_before_it_is_written() {
    // The executor copies an input whose range overlaps C, so the result is as if every
    // input were read first (an in-place `C = A B` with square A, or an in-place residual).
    let p = problem();
    let sq: Vec<f32> = (0..16).map(|i| (i % 5) as f32 - 2.0).collect();
    let id: Vec<f32> = (0..16)
        .map(|i| if i % 5 == 0 { 2.0 } else { 0.0 })
        .collect();
    let mut params = p.params;
    (params.m, params.n, params.k) = (4, 4, 4);
    (params.lda, params.ldb, params.ldc) = (4, 4, 4);
    params.a = p.k.upload(bytes(&sq));
    params.b = p.k.upload(bytes(&id));
    params.c = params.a;
    params.residual = params.a;
    params.ld_residual = 4;
    assert_eq!(p.run(&params), (KNPU_STATUS_SUCCESS, String::new()));
    // C = A (2 I) + A = 3 A.
    let want: Vec<f32> = sq.iter().map(|v| 3.0 * v).collect();
    assert_eq!(p.read(params.c, 16), want);
    p.run_valid();
}
