//! KNPU_KERNEL_GEMM with raw ABI parameters: submit-time checks of the parameter struct
//! (size, dtypes, transposes, activation, leading dimensions, batch strides, alignment),
//! device address checks of every operand at run time (an ILLEGAL_ADDRESS fault that names
//! the operand and the address), inputs that overlap the output, and the queue carrying on
//! after a fault.

mod common;

use common::{KernelQueue, Refusal, ILLEGAL, INVALID, UNSUPPORTED};
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

    /// Runs `params`, checks that it is an illegal address whose message holds `needles`.
    fn fault(&self, params: &KnpuGemmParams, needles: &[&str]) {
        self.k
            .assert_fault(KNPU_KERNEL_GEMM, params, ILLEGAL, needles);
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
        let needles = [format!("operand `{operand}`"), format!("{addr:#x}")];
        p.fault(&bad, &[&needles[0], &needles[1]]);
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
    p.fault(&tall, &["operand `a`", "past the end"]);
    // A second batch of B that is not there (stride 0 would reuse it).
    let mut batched = p.params;
    batched.batch_count = 2;
    batched.stride_a = 0;
    batched.stride_b = K * N;
    batched.c = p.k.alloc(2 * M * N * 4);
    batched.stride_c = M * N;
    p.fault(&batched, &["operand `b`"]);
    // Bias and residual are checked the same way.
    let mut bias = p.params;
    bias.bias = p.params.c + (1 << 32);
    p.fault(&bias, &["operand `bias`"]);
    let mut residual = p.params;
    // B's 20 floats hold a 3 x 5 residual only with a leading dimension up to 7.
    residual.residual = p.params.b;
    residual.ld_residual = N + 3;
    residual.stride_residual = M * N;
    p.fault(&residual, &["operand `residual`"]);
    p.run_valid();
}

#[test]
fn a_freed_operand_is_an_illegal_address() {
    let p = problem();
    let mut freed = p.params;
    freed.b = p.k.upload(bytes(&p.b));
    p.k.free(freed.b);
    p.fault(&freed, &["operand `b`"]);
    p.run_valid();
}

/// Changes that make the valid problem's parameters wrong, each with the status its submit
/// must return.
const BAD_PARAMS: &[Refusal<KnpuGemmParams>] = &[
    ("struct_size short of stride_residual", INVALID, |x| {
        x.struct_size = field_end!(KnpuGemmParams, ld_residual)
    }),
    ("struct_size 4", INVALID, |x| x.struct_size = 4),
    ("a dtype i8", UNSUPPORTED, |x| x.a_dtype = KNPU_DTYPE_I8),
    ("a dtype f64", UNSUPPORTED, |x| x.a_dtype = KNPU_DTYPE_F64),
    ("a dtype 0xdead", UNSUPPORTED, |x| x.a_dtype = 0xdead),
    ("c dtype i8", UNSUPPORTED, |x| x.c_dtype = KNPU_DTYPE_I8),
    ("c dtype f64", UNSUPPORTED, |x| x.c_dtype = KNPU_DTYPE_F64),
    ("c dtype 0xdead", UNSUPPORTED, |x| x.c_dtype = 0xdead),
    // f16 A with bf16 B has no path.
    ("f16 x bf16", UNSUPPORTED, |x| {
        (x.a_dtype, x.b_dtype) = (KNPU_DTYPE_F16, KNPU_DTYPE_BF16)
    }),
    ("lda < k", INVALID, |x| x.lda = K - 1),
    ("lda < m with A transposed", INVALID, |x| {
        (x.trans_a, x.lda) = (1, M - 1)
    }),
    ("ldb < n", INVALID, |x| x.ldb = N - 1),
    ("ldc < n", INVALID, |x| x.ldc = N - 1),
    ("ld_residual < n", INVALID, |x| {
        (x.residual, x.ld_residual) = (x.c, N - 1)
    }),
    ("trans_b 2", INVALID, |x| x.trans_b = 2),
    ("activation 99", INVALID, |x| x.activation = 99),
    ("misaligned a", INVALID, |x| x.a += 2),
    ("null b", INVALID, |x| x.b = 0),
    // Batches of C that overlap each other: the output overlapping itself is refused.
    ("overlapping batches of C", INVALID, |x| {
        (x.batch_count, x.stride_c) = (2, M * N - 1)
    }),
    ("extent overflow", INVALID, |x| x.m = u64::MAX / 2),
];

#[test]
fn bad_parameter_structs_are_refused_at_submit() {
    let p = problem();
    p.k.assert_refused(KNPU_KERNEL_GEMM, &p.params, BAD_PARAMS);
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
