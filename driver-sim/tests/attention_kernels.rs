//! The attention and key/value cache executors with raw ABI parameters: submit-time checks of
//! the parameter structs, device address checks against each operand's descriptor extent,
//! and overlapping outputs.

mod common;

use common::{KernelQueue, Refusal, Sim, ILLEGAL, INVALID};
use knpu_driver_abi::*;

fn sim() -> Sim {
    common::linked()
}

fn bshd(batch: u64, seq: u64, heads: u64, head_dim: u64) -> KnpuAttnTensor {
    KnpuAttnTensor {
        batch,
        seq,
        heads,
        head_dim,
        batch_stride: seq * heads * head_dim,
        seq_stride: heads * head_dim,
        head_stride: head_dim,
    }
}

fn elems(t: &KnpuAttnTensor) -> u64 {
    t.batch * t.seq * t.heads * t.head_dim
}

/// An f32 attention problem [2, 3, 4, 8] x [2, 5, 2, 8] with buffers of exactly the
/// descriptors' sizes.
struct Problem {
    k: KernelQueue,
    params: KnpuAttentionParams,
}

fn problem() -> Problem {
    let k = KernelQueue::new();
    let (q_desc, k_desc) = (bshd(2, 3, 4, 8), bshd(2, 5, 2, 8));
    let params = KnpuAttentionParams {
        dtype: KNPU_DTYPE_F32,
        flags: KNPU_ATTENTION_CAUSAL,
        q_desc,
        k_desc,
        v_desc: k_desc,
        out_desc: q_desc,
        q: k.alloc(elems(&q_desc) * 4),
        k: k.alloc(elems(&k_desc) * 4),
        v: k.alloc(elems(&k_desc) * 4),
        out: k.alloc(elems(&q_desc) * 4),
        ..KnpuAttentionParams::sized()
    };
    Problem { k, params }
}

#[test]
fn every_attention_kernel_takes_the_float_types() {
    let floats: &[u32] = &[KNPU_DTYPE_F32, KNPU_DTYPE_F16, KNPU_DTYPE_BF16];
    let others: &[u32] = &[KNPU_DTYPE_I8, KNPU_DTYPE_F64];
    common::assert_kernel_dtypes(
        &sim(),
        &[
            (KNPU_KERNEL_ATTENTION, floats, others),
            (KNPU_KERNEL_PAGED_ATTENTION, floats, others),
            (KNPU_KERNEL_KV_APPEND, floats, others),
            (KNPU_KERNEL_PAGED_KV_APPEND, floats, others),
        ],
    );
}

#[test]
fn a_valid_problem_runs() {
    let p = problem();
    p.k.assert_runs(KNPU_KERNEL_ATTENTION, &p.params);
}

/// Changes that make the valid problem's parameters wrong, each with the status its submit
/// must return.
const BAD_PARAMS: &[Refusal<KnpuAttentionParams>] = &[
    ("struct_size short of its last field", INVALID, |x| {
        x.struct_size = field_end!(KnpuAttentionParams, window)
    }),
    ("f64", KNPU_STATUS_NOT_SUPPORTED, |x| {
        x.dtype = KNPU_DTYPE_F64
    }),
    ("flags 2", INVALID, |x| x.flags = 2),
    ("k batch stride overflows", INVALID, |x| {
        x.k_desc.batch_stride = u64::MAX / 2
    }),
    ("misaligned q", INVALID, |x| x.q += 2),
    ("NaN scale", INVALID, |x| x.scale = f32::NAN),
];

#[test]
fn bad_parameter_structs_are_refused_at_submit() {
    let p = problem();
    p.k.assert_refused(KNPU_KERNEL_ATTENTION, &p.params, BAD_PARAMS);
    let mut append = KnpuKvAppendParams::sized();
    append.dtype = KNPU_DTYPE_F32;
    append.reserved = 1;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_KV_APPEND, &append),
        KNPU_STATUS_INVALID_VALUE
    );
}

#[test]
fn an_operand_past_its_allocation_is_an_illegal_address_naming_it() {
    let p = problem();
    // v's descriptor reaches one position further than its allocation.
    let mut longer = p.params;
    longer.v_desc.batch_stride += 16;
    longer.k_desc.batch_stride += 16;
    p.k.assert_fault(KNPU_KERNEL_ATTENTION, &longer, ILLEGAL, &["operand `k`"]);
    // An lse array at an unmapped address.
    let mut lse = p.params;
    lse.lse = p.params.out + (1 << 30);
    p.k.assert_fault(KNPU_KERNEL_ATTENTION, &lse, ILLEGAL, &["operand `lse`"]);
    // The queue goes on.
    p.k.assert_runs(KNPU_KERNEL_ATTENTION, &p.params);

    // A paged block table shorter than [batch, max_blocks_per_seq].
    let mut paged = KnpuPagedAttentionParams::sized();
    paged.dtype = KNPU_DTYPE_F32;
    paged.q_desc = p.params.q_desc;
    paged.out_desc = p.params.q_desc;
    paged.cache = KnpuPagedKvCache {
        num_blocks: 2,
        block_size: 4,
        kv_heads: 2,
        head_dim: 8,
        block_stride: 64,
        slot_stride: 16,
        head_stride: 8,
    };
    paged.max_blocks_per_seq = 2;
    paged.q = p.params.q;
    paged.out = p.params.out;
    paged.k_cache = p.params.k;
    paged.v_cache = p.params.v;
    paged.kv_lens = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[5, 8]));
    paged.block_table = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 1, 1]));
    p.k.assert_fault(
        KNPU_KERNEL_PAGED_ATTENTION,
        &paged,
        ILLEGAL,
        &["operand `block_table`"],
    );
    paged.block_table = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 1, 1, 0]));
    p.k.assert_runs(KNPU_KERNEL_PAGED_ATTENTION, &paged);
    // A table entry outside the cache: the kernel's own message.
    paged.block_table = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 1, 1, 2]));
    p.k.assert_fault(
        KNPU_KERNEL_PAGED_ATTENTION,
        &paged,
        KNPU_STATUS_KERNEL_FAULT,
        &["block_table[1][1] = 2"],
    );
}

#[test]
fn overlapping_outputs_are_a_kernel_fault() {
    let p = problem();
    let mut lse = p.params;
    lse.lse = p.params.out;
    let fault = KNPU_STATUS_KERNEL_FAULT;
    p.k.assert_fault(
        KNPU_KERNEL_ATTENTION,
        &lse,
        fault,
        &["`out` and `lse` overlap"],
    );

    let mut append = KnpuKvAppendParams::sized();
    append.dtype = KNPU_DTYPE_F32;
    append.cache_desc = p.params.k_desc;
    append.new_desc = bshd(2, 1, 2, 8);
    append.k_cache = p.params.k;
    append.v_cache = p.params.k;
    append.k_new = p.params.q;
    append.v_new = p.params.q;
    append.seq_lens = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 4]));
    let overlap = "`k_cache` and `v_cache` overlap";
    p.k.assert_fault(KNPU_KERNEL_KV_APPEND, &append, fault, &[overlap]);
    // An input inside an output is read before the output is written.
    append.v_cache = p.params.v;
    append.k_new = p.params.k;
    p.k.assert_runs(KNPU_KERNEL_KV_APPEND, &append);
}
