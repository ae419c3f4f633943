//! The attention and key/value cache executors with raw ABI parameters: submit-time checks of
//! the parameter structs, device address checks against each operand's descriptor extent,
//! and overlapping outputs.

mod common;

use common::{KernelQueue, Sim};
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
    let mut params = KnpuAttentionParams::sized();
    params.dtype = KNPU_DTYPE_F32;
    params.flags = KNPU_ATTENTION_CAUSAL;
    params.q_desc = q_desc;
    params.k_desc = k_desc;
    params.v_desc = k_desc;
    params.out_desc = q_desc;
    params.q = k.alloc(elems(&q_desc) * 4);
    params.k = k.alloc(elems(&k_desc) * 4);
    params.v = k.alloc(elems(&k_desc) * 4);
    params.out = k.alloc(elems(&q_desc) * 4);
    Problem { k, params }
}

#[test]
fn every_attention_kernel_takes_the_float_types() {
    let sim = sim();
    let d = sim.device(0);
    for id in [
        KNPU_KERNEL_ATTENTION,
        KNPU_KERNEL_PAGED_ATTENTION,
        KNPU_KERNEL_KV_APPEND,
        KNPU_KERNEL_PAGED_KV_APPEND,
    ] {
        for (dtype, want) in [
            (KNPU_DTYPE_F32, true),
            (KNPU_DTYPE_F16, true),
            (KNPU_DTYPE_BF16, true),
            (KNPU_DTYPE_I8, false),
            (KNPU_DTYPE_F64, false),
        ] {
            let supported = sim.supports_kernel(d, id, dtype);
            assert_eq!(supported, want, "kernel {id:#x} dtype {dtype}");
        }
    }
}

#[test]
fn a_valid_problem_runs() {
    let p = problem();
    assert_eq!(
        p.k.run(KNPU_KERNEL_ATTENTION, &p.params),
        (KNPU_STATUS_SUCCESS, String::new())
    );
}

#[test]
fn bad_parameter_structs_are_refused_at_submit() {
    let p = problem();
    let mut short = p.params;
    short.struct_size = field_end!(KnpuAttentionParams, window);
    assert_eq!(
        p.k.submit(KNPU_KERNEL_ATTENTION, &short),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut f64s = p.params;
    f64s.dtype = KNPU_DTYPE_F64;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_ATTENTION, &f64s),
        KNPU_STATUS_NOT_SUPPORTED
    );
    let mut flags = p.params;
    flags.flags = 2;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_ATTENTION, &flags),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut overflow = p.params;
    overflow.k_desc.batch_stride = u64::MAX / 2;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_ATTENTION, &overflow),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut misaligned = p.params;
    misaligned.q += 2;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_ATTENTION, &misaligned),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut nan = p.params;
    nan.scale = f32::NAN;
    assert_eq!(
        p.k.submit(KNPU_KERNEL_ATTENTION, &nan),
        KNPU_STATUS_INVALID_VALUE
    );
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
    let (st, msg) = p.k.run(KNPU_KERNEL_ATTENTION, &longer);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `k`"), "{msg}");
    // An lse array at an unmapped address.
    let mut lse = p.params;
    lse.lse = p.params.out + (1 << 30);
    let (st, msg) = p.k.run(KNPU_KERNEL_ATTENTION, &lse);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `lse`"), "{msg}");
    // The queue goes on.
    assert_eq!(
        p.k.run(KNPU_KERNEL_ATTENTION, &p.params).0,
        KNPU_STATUS_SUCCESS
    );

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
    let (st, msg) = p.k.run(KNPU_KERNEL_PAGED_ATTENTION, &paged);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("operand `block_table`"), "{msg}");
    paged.block_table = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 1, 1, 0]));
    assert_eq!(
        p.k.run(KNPU_KERNEL_PAGED_ATTENTION, &paged),
        (KNPU_STATUS_SUCCESS, String::new())
    );
    // A table entry outside the cache: the kernel's own message.
    paged.block_table = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 1, 1, 2]));
    let (st, msg) = p.k.run(KNPU_KERNEL_PAGED_ATTENTION, &paged);
    assert_eq!(st, KNPU_STATUS_KERNEL_FAULT);
    assert!(msg.contains("block_table[1][1] = 2"), "{msg}");
}

#[test]
fn overlapping_outputs_are_a_kernel_fault() {
    let p = problem();
    let mut lse = p.params;
    lse.lse = p.params.out;
    let (st, msg) = p.k.run(KNPU_KERNEL_ATTENTION, &lse);
    assert_eq!(st, KNPU_STATUS_KERNEL_FAULT);
    assert!(msg.contains("`out` and `lse` overlap"), "{msg}");

    let mut append = KnpuKvAppendParams::sized();
    append.dtype = KNPU_DTYPE_F32;
    append.cache_desc = p.params.k_desc;
    append.new_desc = bshd(2, 1, 2, 8);
    append.k_cache = p.params.k;
    append.v_cache = p.params.k;
    append.k_new = p.params.q;
    append.v_new = p.params.q;
    append.seq_lens = p.k.upload(bytemuck::cast_slice::<u32, u8>(&[0, 4]));
    let (st, msg) = p.k.run(KNPU_KERNEL_KV_APPEND, &append);
    assert_eq!(st, KNPU_STATUS_KERNEL_FAULT);
    assert!(msg.contains("`k_cache` and `v_cache` overlap"), "{msg}");
    // An input inside an output is read before the output is written.
    append.v_cache = p.params.v;
    append.k_new = p.params.k;
    assert_eq!(
        p.k.run(KNPU_KERNEL_KV_APPEND, &append),
        (KNPU_STATUS_SUCCESS, String::new())
    );
}
