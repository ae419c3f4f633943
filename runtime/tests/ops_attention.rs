//! Attention and key/value cache kernels through the runtime: device results against the
//! `knpu_kernels::attention` functions called directly on host copies, every validation error
//! the launchers report, and device-side faults for values only the kernel can see.
//!
//! Tolerances: f32 outputs within `1e-5 * (1 + |expected|)` (the device may split the key range
//! differently from a host call, which reorders the f32 sums); f16 outputs within one f16 ulp of
//! the expected value for the same reason. Cache appends are copies and must match exactly.

use half::f16;
use knpu::ops::{self, AttentionArgs, AttnMask, AttnTensor, PagedAttentionArgs, PagedKvCache};
use knpu::{DeviceBuffer, Error, Stream};
use knpu_kernels::attention as host;
use knpu_kernels::Parallelism;

mod common;
use common::stream;

/// Causal attention with the default scale.
const CAUSAL: AttnMask = AttnMask {
    causal: true,
    window: None,
    scale: None,
};

/// Deterministic values in [-1, 1).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_finite() {
            (g - w).abs() <= 1e-5 * (1.0 + w.abs())
        } else {
            g == w
        };
        assert!(ok, "{what}[{i}]: device {g}, host {w}");
    }
}

fn assert_close_f16(what: &str, got: &[f16], want: &[f16]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ulp = f16::EPSILON.to_f32() * w.to_f32().abs().max(f16::MIN_POSITIVE.to_f32());
        assert!(
            (g.to_f32() - w.to_f32()).abs() <= ulp,
            "{what}[{i}]: device {g}, host {w}"
        );
    }
}

/// The host kernel's output of contiguous attention (one thread, no lse).
fn host_attention<T: host::AttnElement>(
    args: &AttentionArgs,
    inputs: host::AttentionInputs<'_, T>,
) -> Vec<T> {
    let mut out = vec![T::from_f32(0.0); args.out.required_len().unwrap()];
    host::attention(args, inputs, &mut out, None, Parallelism::None).unwrap();
    out
}

/// The host kernel's output of paged attention over the device caches `(k, v)` (one thread,
/// no lse).
fn host_paged_attention(
    args: &PagedAttentionArgs,
    q: &[f32],
    (k, v): (&knpu::DeviceBuffer<f32>, &knpu::DeviceBuffer<f32>),
    block_table: &[u32],
    kv_lens: &[u32],
) -> Vec<f32> {
    let mut out = vec![0.0f32; args.out.required_len().unwrap()];
    let inputs = host::PagedAttentionInputs {
        q,
        k_cache: &k.to_vec().unwrap(),
        v_cache: &v.to_vec().unwrap(),
        block_table,
        kv_lens,
    };
    host::paged_attention(args, inputs, &mut out, None, Parallelism::None).unwrap();
    out
}

/// Runs contiguous attention on the device and on the host and compares out and lse.
fn check_attention(s: &Stream, args: &AttentionArgs, kv_lens: Option<&[u32]>, seed: u64) {
    let q = data(args.q.required_len().unwrap(), seed);
    let k = data(args.k.required_len().unwrap(), seed + 1);
    let v = data(args.v.required_len().unwrap(), seed + 2);
    let out_len = args.out.required_len().unwrap();
    let lse_len = args.q.batch * args.q.heads * args.q.seq;
    let (dq, dk, dv) = (
        s.from_slice(&q).unwrap(),
        s.from_slice(&k).unwrap(),
        s.from_slice(&v).unwrap(),
    );
    let mut dout = s.alloc_zeroed::<f32>(out_len).unwrap();
    let mut dlse = s.alloc_zeroed::<f32>(lse_len).unwrap();
    let dlens = kv_lens.map(|l| s.from_slice(l).unwrap());
    ops::attention(
        s,
        args,
        &dq,
        &dk,
        &dv,
        &mut dout,
        Some(&mut dlse),
        dlens.as_ref().map(|l| l as &dyn knpu::AsDeviceSlice<u32>),
    )
    .unwrap();
    s.synchronize().unwrap();

    let mut out = vec![0.0f32; out_len];
    let mut lse = vec![0.0f32; lse_len];
    host::attention(
        args,
        host::AttentionInputs {
            q: &q,
            k: &k,
            v: &v,
            kv_lens,
        },
        &mut out,
        Some(&mut lse),
        Parallelism::None,
    )
    .unwrap();
    assert_close("out", &dout.to_vec().unwrap(), &out);
    assert_close("lse", &dlse.to_vec().unwrap(), &lse);
}

#[test]
fn prefill_causal_gqa_matches_host_kernel() {
    let s = stream();
    check_attention(
        &s,
        &AttentionArgs::bshd(2, 65, 65, 9, 3, 64, CAUSAL),
        None,
        1,
    );
}

#[test]
fn bhsd_window_kv_lens_and_scale_match_host_kernel() {
    let s = stream();
    let mask = AttnMask {
        causal: true,
        window: Some(17),
        scale: Some(0.3),
    };
    let args = AttentionArgs::new(
        AttnTensor::bhsd(3, 33, 4, 40),
        AttnTensor::bhsd(3, 70, 2, 40),
        mask,
    );
    check_attention(&s, &args, Some(&[70, 33, 50]), 7);
    let non_causal = AttentionArgs::new(
        AttnTensor::bhsd(2, 5, 6, 16),
        AttnTensor::bhsd(2, 31, 1, 16),
        AttnMask {
            window: Some(4),
            ..Default::default()
        },
    );
    check_attention(&s, &non_causal, Some(&[31, 0]), 9);
}

#[test]
fn decode_with_contiguous_cache_after_kv_append() {
    let s = stream();
    let (batch, cap, kv_heads, q_heads, hd, prefill) = (2, 80, 3, 9, 64, 65);
    let cache = AttnTensor::bshd(batch, cap, kv_heads, hd);
    let cache_len = cache.required_len().unwrap();
    let mut dk = s.alloc_zeroed::<f32>(cache_len).unwrap();
    let mut dv = s.alloc_zeroed::<f32>(cache_len).unwrap();
    let mut hk = vec![0.0f32; cache_len];
    let mut hv = vec![0.0f32; cache_len];

    // Prefill 65 positions, then one decode step, each appended on device and on host.
    let mut lens = vec![0u32; batch];
    for (step, n) in [prefill, 1].into_iter().enumerate() {
        let new = AttnTensor::bshd(batch, n, kv_heads, hd);
        let kn = data(new.required_len().unwrap(), 100 + step as u64);
        let vn = data(new.required_len().unwrap(), 200 + step as u64);
        let (dkn, dvn, dlens) = (
            s.from_slice(&kn).unwrap(),
            s.from_slice(&vn).unwrap(),
            s.from_slice(&lens).unwrap(),
        );
        ops::kv_append(&s, &cache, &mut dk, &mut dv, &new, &dkn, &dvn, &dlens).unwrap();
        host::kv_append(
            &cache,
            &mut hk,
            &mut hv,
            host::NewKv {
                shape: new,
                k: &kn,
                v: &vn,
            },
            &lens,
        )
        .unwrap();
        s.synchronize().unwrap();
        lens.iter_mut().for_each(|l| *l += n as u32);
    }
    assert_eq!(dk.to_vec().unwrap(), hk, "k cache");
    assert_eq!(dv.to_vec().unwrap(), hv, "v cache");

    let args = AttentionArgs {
        q: AttnTensor::bshd(batch, 1, q_heads, hd),
        k: cache,
        v: cache,
        out: AttnTensor::bshd(batch, 1, q_heads, hd),
        mask: CAUSAL,
    };
    let q = data(args.q.required_len().unwrap(), 300);
    let dq = s.from_slice(&q).unwrap();
    let dlens = s.from_slice(&lens).unwrap();
    let mut dout = s.alloc_zeroed::<f32>(q.len()).unwrap();
    ops::attention(&s, &args, &dq, &dk, &dv, &mut dout, None, Some(&dlens)).unwrap();
    s.synchronize().unwrap();
    let inputs = host::AttentionInputs {
        kv_lens: Some(&lens),
        ..host::AttentionInputs::new(&q, &hk, &hv)
    };
    assert_close(
        "decode out",
        &dout.to_vec().unwrap(),
        &host_attention(&args, inputs),
    );
}

/// A paged cache filled by `paged_kv_append` through a scrambled block table gives the same
/// attention as a contiguous cache holding the same keys.
#[test]
fn paged_matches_contiguous() {
    let s = stream();
    let (batch, kv_heads, q_heads, hd, block) = (2, 2, 6, 32, 16);
    let max_blocks = 5;
    let seq = 70; // 5 blocks of 16 hold 80 positions
    let paged = PagedKvCache::dense(batch * max_blocks + 3, block, kv_heads, hd);
    let table: Vec<u32> = (0..(batch * max_blocks) as u32)
        .map(|i| (i * 7 + 3) % (batch * max_blocks + 3) as u32)
        .collect();
    let new = AttnTensor::bshd(batch, seq, kv_heads, hd);
    let kn = data(new.required_len().unwrap(), 11);
    let vn = data(new.required_len().unwrap(), 12);
    let (dkn, dvn) = (s.from_slice(&kn).unwrap(), s.from_slice(&vn).unwrap());
    let dtable = s.from_slice(&table).unwrap();
    let zeros = s.from_slice(&vec![0u32; batch]).unwrap();
    let plen = paged.required_len().unwrap();
    let mut pk = s.alloc_zeroed::<f32>(plen).unwrap();
    let mut pv = s.alloc_zeroed::<f32>(plen).unwrap();
    ops::paged_kv_append(
        &s, &paged, &mut pk, &mut pv, &new, &dkn, &dvn, &dtable, max_blocks, &zeros,
    )
    .unwrap();

    let lens = [seq as u32, 41];
    let dlens = s.from_slice(&lens).unwrap();
    let q_len = 3;
    let qt = AttnTensor::bshd(batch, q_len, q_heads, hd);
    let q = data(qt.required_len().unwrap(), 13);
    let dq = s.from_slice(&q).unwrap();
    let mut paged_out = s.alloc_zeroed::<f32>(q.len()).unwrap();
    let mut paged_lse = s.alloc_zeroed::<f32>(batch * q_heads * q_len).unwrap();
    let pargs = PagedAttentionArgs {
        q: qt,
        out: qt,
        cache: paged,
        max_blocks_per_seq: max_blocks,
        mask: CAUSAL,
    };
    ops::paged_attention(
        &s,
        &pargs,
        &dq,
        &pk,
        &pv,
        &dtable,
        &dlens,
        &mut paged_out,
        Some(&mut paged_lse),
    )
    .unwrap();

    let args = AttentionArgs::bshd(batch, q_len, seq, q_heads, kv_heads, hd, CAUSAL);
    let mut out = s.alloc_zeroed::<f32>(q.len()).unwrap();
    let mut lse = s.alloc_zeroed::<f32>(batch * q_heads * q_len).unwrap();
    ops::attention(
        &s,
        &args,
        &dq,
        &dkn,
        &dvn,
        &mut out,
        Some(&mut lse),
        Some(&dlens),
    )
    .unwrap();
    s.synchronize().unwrap();
    assert_close(
        "paged out",
        &paged_out.to_vec().unwrap(),
        &out.to_vec().unwrap(),
    );
    assert_close(
        "paged lse",
        &paged_lse.to_vec().unwrap(),
        &lse.to_vec().unwrap(),
    );

    // The host kernel over the device's paged cache agrees too.
    let hout = host_paged_attention(&pargs, &q, (&pk, &pv), &table, &lens);
    assert_close("host paged out", &paged_out.to_vec().unwrap(), &hout);
}

#[test]
fn f16_prefill_matches_host_kernel() {
    let s = stream();
    let args = AttentionArgs::bshd(2, 65, 65, 9, 3, 64, CAUSAL);
    let conv = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<f16>>();
    let q = conv(data(args.q.required_len().unwrap(), 21));
    let k = conv(data(args.k.required_len().unwrap(), 22));
    let v = conv(data(args.v.required_len().unwrap(), 23));
    let (dq, dk, dv) = (
        s.from_slice(&q).unwrap(),
        s.from_slice(&k).unwrap(),
        s.from_slice(&v).unwrap(),
    );
    let mut dout = s.alloc_zeroed::<f16>(q.len()).unwrap();
    ops::attention(&s, &args, &dq, &dk, &dv, &mut dout, None, None).unwrap();
    s.synchronize().unwrap();
    let out = host_attention(&args, host::AttentionInputs::new(&q, &k, &v));
    assert_close_f16("f16 out", &dout.to_vec().unwrap(), &out);
}

/// The operands of a small valid problem, for the validation tests to break one at a time.
struct Small {
    s: Stream,
    args: AttentionArgs,
    q: knpu::DeviceBuffer<f32>,
    k: knpu::DeviceBuffer<f32>,
    v: knpu::DeviceBuffer<f32>,
    out: knpu::DeviceBuffer<f32>,
}

fn small() -> Small {
    let s = stream();
    let args = AttentionArgs::bshd(2, 4, 6, 4, 2, 8, AttnMask::default());
    let q = s
        .from_slice(&data(args.q.required_len().unwrap(), 1))
        .unwrap();
    let k = s
        .from_slice(&data(args.k.required_len().unwrap(), 2))
        .unwrap();
    let v = s
        .from_slice(&data(args.v.required_len().unwrap(), 3))
        .unwrap();
    let mut out = s.alloc::<f32>(args.out.required_len().unwrap()).unwrap();
    s.memset(&mut out, 7.0f32).unwrap();
    Small {
        s,
        args,
        q,
        k,
        v,
        out,
    }
}

impl Small {
    fn run(&mut self, args: &AttentionArgs) -> knpu::Result<()> {
        ops::attention(
            &self.s,
            args,
            &self.q,
            &self.k,
            &self.v,
            &mut self.out,
            None,
            None,
        )
    }

    /// Nothing was queued: the output still holds its fill value.
    fn assert_untouched(&self) {
        self.s.synchronize().unwrap();
        assert!(self.out.to_vec().unwrap().iter().all(|&x| x == 7.0));
    }
}

/// Two zeroed f32 buffers of `len` elements: a key and a value cache.
fn zeroed_pair(s: &Stream, len: usize) -> (DeviceBuffer<f32>, DeviceBuffer<f32>) {
    (s.alloc_zeroed(len).unwrap(), s.alloc_zeroed(len).unwrap())
}

fn shape_operand(e: Error) -> &'static str {
    match e {
        Error::Shape { operand, .. } => operand,
        other => panic!("expected a shape error, got {other}"),
    }
}

#[test]
fn attention_validation_errors_name_the_operand() {
    let mut t = small();
    let base = t.args;

    let mut a = base;
    a.k.heads = 3;
    a.v.heads = 3;
    let e = t.run(&a).unwrap_err();
    assert!(e.to_string().contains("dividing the 4 query heads"), "{e}");
    assert_eq!(shape_operand(e), "k");

    let mut a = base;
    a.k.head_dim = 4;
    a.v.head_dim = 4;
    assert_eq!(shape_operand(t.run(&a).unwrap_err()), "k");

    let mut a = base;
    a.v.seq = 5;
    assert_eq!(shape_operand(t.run(&a).unwrap_err()), "v");

    let mut a = base;
    a.out.seq = 3;
    assert_eq!(shape_operand(t.run(&a).unwrap_err()), "out");

    let mut a = base;
    a.k.batch = 1;
    a.v.batch = 1;
    assert_eq!(shape_operand(t.run(&a).unwrap_err()), "k");

    let mut a = base;
    a.q.batch_stride += 1;
    let e = t.run(&a).unwrap_err();
    assert!(e.to_string().contains("elements"), "{e}");
    assert_eq!(shape_operand(e), "q");

    let mut a = base;
    a.out.seq_stride = 1;
    assert!(matches!(t.run(&a).unwrap_err(), Error::InvalidValue { .. }));

    let mut a = base;
    a.mask.window = Some(0);
    assert!(matches!(t.run(&a).unwrap_err(), Error::InvalidValue { .. }));

    let mut a = base;
    a.mask.scale = Some(f32::NAN);
    assert!(matches!(t.run(&a).unwrap_err(), Error::InvalidValue { .. }));

    let mut a = base;
    a.q.batch_stride = usize::MAX;
    assert!(matches!(t.run(&a).unwrap_err(), Error::InvalidValue { .. }));

    // Short lse and kv_lens.
    let mut short_lse = t.s.alloc::<f32>(2 * 4 * 4 - 1).unwrap();
    let (q, k, v) = (&t.q, &t.k, &t.v);
    let e = ops::attention(&t.s, &base, q, k, v, &mut t.out, Some(&mut short_lse), None);
    let e = e.unwrap_err();
    assert_eq!(shape_operand(e), "lse");
    let short_lens = t.s.from_slice(&[6u32]).unwrap();
    let e = ops::attention(&t.s, &base, q, k, v, &mut t.out, None, Some(&short_lens));
    let e = e.unwrap_err();
    assert_eq!(shape_operand(e), "kv_lens");
    t.assert_untouched();

    // An element type attention does not take.
    let s = &t.s;
    let qi = s
        .alloc_zeroed::<i32>(base.q.required_len().unwrap())
        .unwrap();
    let ki = s
        .alloc_zeroed::<i32>(base.k.required_len().unwrap())
        .unwrap();
    let mut oi = s
        .alloc_zeroed::<i32>(base.q.required_len().unwrap())
        .unwrap();
    let e = ops::attention(s, &base, &qi, &ki, &ki, &mut oi, None, None).unwrap_err();
    assert!(matches!(e, Error::Dtype { operand: "q", .. }), "{e}");

    // The valid problem still runs.
    t.run(&base).unwrap();
    t.s.synchronize().unwrap();
    assert!(t.out.to_vec().unwrap().iter().all(|&x| x != 7.0));
}

#[test]
fn cache_validation_errors_name_the_operand() {
    let s = stream();
    let cache = AttnTensor::bshd(2, 8, 2, 4);
    let (mut kc, mut vc) = zeroed_pair(&s, cache.required_len().unwrap());
    let lens = s.from_slice(&[0u32, 0]).unwrap();

    // More new positions than the cache holds.
    let new = AttnTensor::bshd(2, 9, 2, 4);
    let kn = s.alloc_zeroed::<f32>(new.required_len().unwrap()).unwrap();
    let e = ops::kv_append(&s, &cache, &mut kc, &mut vc, &new, &kn, &kn, &lens).unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
    assert_eq!(shape_operand(e), "k_new");

    // Head count or head_dim unlike the cache's.
    let new = AttnTensor::bshd(2, 1, 3, 4);
    let kn = s.alloc_zeroed::<f32>(new.required_len().unwrap()).unwrap();
    let e = ops::kv_append(&s, &cache, &mut kc, &mut vc, &new, &kn, &kn, &lens).unwrap_err();
    assert_eq!(shape_operand(e), "k_new");

    // A value buffer shorter than the cache descriptor.
    let new = AttnTensor::bshd(2, 1, 2, 4);
    let kn = s.alloc_zeroed::<f32>(new.required_len().unwrap()).unwrap();
    let mut short = s
        .alloc_zeroed::<f32>(cache.required_len().unwrap() - 1)
        .unwrap();
    let e = ops::kv_append(&s, &cache, &mut kc, &mut short, &new, &kn, &kn, &lens).unwrap_err();
    assert_eq!(shape_operand(e), "v_cache");

    // seq_lens shorter than the batch.
    let one = s.from_slice(&[0u32]).unwrap();
    let e = ops::kv_append(&s, &cache, &mut kc, &mut vc, &new, &kn, &kn, &one).unwrap_err();
    assert_eq!(shape_operand(e), "seq_lens");

    // Paged: a table shorter than [batch, max_blocks_per_seq], too many new positions.
    let paged = PagedKvCache::dense(4, 4, 2, 4);
    let (mut pk, mut pv) = zeroed_pair(&s, paged.required_len().unwrap());
    let mut append_error =
        |new: &AttnTensor, k_new: &DeviceBuffer<f32>, table: &DeviceBuffer<u32>| {
            let r = ops::paged_kv_append(
                &s, &paged, &mut pk, &mut pv, new, k_new, k_new, table, 2, &lens,
            );
            shape_operand(r.unwrap_err())
        };
    let table = s.from_slice(&[0u32, 1, 2]).unwrap();
    assert_eq!(append_error(&new, &kn, &table), "block_table");
    let big = AttnTensor::bshd(2, 9, 2, 4);
    let bk = s.alloc_zeroed::<f32>(big.required_len().unwrap()).unwrap();
    let table = s.from_slice(&[0u32, 1, 2, 3]).unwrap();
    assert_eq!(append_error(&big, &bk, &table), "k_new");

    // Paged attention: cache head_dim unlike q's, kv heads not dividing q heads.
    let qt = AttnTensor::bshd(2, 1, 6, 8);
    let q = s.alloc_zeroed::<f32>(qt.required_len().unwrap()).unwrap();
    let mut out = s.alloc_zeroed::<f32>(qt.required_len().unwrap()).unwrap();
    let mut pargs = PagedAttentionArgs {
        q: qt,
        out: qt,
        cache: paged,
        max_blocks_per_seq: 2,
        mask: AttnMask::default(),
    };
    let e =
        ops::paged_attention(&s, &pargs, &q, &pk, &pv, &table, &lens, &mut out, None).unwrap_err();
    assert_eq!(shape_operand(e), "k_cache");
    pargs.q = AttnTensor::bshd(2, 1, 5, 4);
    pargs.out = pargs.q;
    let e =
        ops::paged_attention(&s, &pargs, &q, &pk, &pv, &table, &lens, &mut out, None).unwrap_err();
    assert!(e.to_string().contains("dividing the 5 query heads"), "{e}");
    s.synchronize().unwrap();
}

/// Values in device memory that point outside the cache fail the kernel at `synchronize` with
/// its message; nothing is written and the stream goes on working.
#[test]
fn device_side_faults_surface_at_synchronize() {
    let s = stream();
    let (batch, kv_heads, q_heads, hd, block, max_blocks) = (2, 1, 2, 8, 4, 2);
    let paged = PagedKvCache::dense(4, block, kv_heads, hd);
    let plen = paged.required_len().unwrap();
    let pk = s.from_slice(&data(plen, 1)).unwrap();
    let pv = s.from_slice(&data(plen, 2)).unwrap();
    let qt = AttnTensor::bshd(batch, 1, q_heads, hd);
    let q = s.from_slice(&data(qt.required_len().unwrap(), 3)).unwrap();
    let mut out = s.alloc::<f32>(qt.required_len().unwrap()).unwrap();
    s.memset(&mut out, 7.0f32).unwrap();
    let args = PagedAttentionArgs {
        q: qt,
        out: qt,
        cache: paged,
        max_blocks_per_seq: max_blocks,
        mask: AttnMask::default(),
    };
    let lens = s.from_slice(&[8u32, 5]).unwrap();
    let bad_table = s.from_slice(&[0u32, 1, 2, 9]).unwrap();
    ops::paged_attention(&s, &args, &q, &pk, &pv, &bad_table, &lens, &mut out, None).unwrap();
    match s.synchronize() {
        Err(Error::KernelFault { message }) => {
            assert!(message.contains("block_table[1][1] = 9"), "{message}")
        }
        other => panic!("expected a kernel fault, got {other:?}"),
    }
    assert!(out.to_vec().unwrap().iter().all(|&x| x == 7.0));

    // A key length past the table's capacity.
    let long = s.from_slice(&[9u32, 5]).unwrap();
    let table = s.from_slice(&[0u32, 1, 2, 3]).unwrap();
    ops::paged_attention(&s, &args, &q, &pk, &pv, &table, &long, &mut out, None).unwrap();
    assert!(matches!(s.synchronize(), Err(Error::KernelFault { .. })));

    // A contiguous cache append past the capacity.
    let cache = AttnTensor::bshd(batch, 4, kv_heads, hd);
    let (mut kc, mut vc) = zeroed_pair(&s, cache.required_len().unwrap());
    let new = AttnTensor::bshd(batch, 2, kv_heads, hd);
    let kn = s.from_slice(&data(new.required_len().unwrap(), 4)).unwrap();
    let full = s.from_slice(&[2u32, 3]).unwrap();
    ops::kv_append(&s, &cache, &mut kc, &mut vc, &new, &kn, &kn, &full).unwrap();
    match s.synchronize() {
        Err(Error::KernelFault { message }) => {
            assert!(message.contains("capacity"), "{message}")
        }
        other => panic!("expected a kernel fault, got {other:?}"),
    }
    assert!(kc.to_vec().unwrap().iter().all(|&x| x == 0.0));

    // The stream works afterwards, and the good table gives the host kernel's answer.
    ops::paged_attention(&s, &args, &q, &pk, &pv, &table, &lens, &mut out, None).unwrap();
    s.synchronize().unwrap();
    let want = host_paged_attention(
        &args,
        &q.to_vec().unwrap(),
        (&pk, &pv),
        &[0, 1, 2, 3],
        &[8, 5],
    );
    assert_close("after fault", &out.to_vec().unwrap(), &want);
}

/// Issue 21: the kernel and the runtime disagreed on `kv_heads == 0`. Settled as PyTorch
/// treats empty tensors: zero query heads with zero key/value heads is a valid, empty problem
/// (nothing is written); zero key/value heads with query heads is a shape error naming `k`.
#[test]
fn zero_heads_is_an_empty_problem_and_zero_kv_heads_with_query_heads_is_an_error() {
    let mut t = small();
    let empty = AttentionArgs::bshd(2, 4, 6, 0, 0, 8, AttnMask::default());
    t.run(&empty).unwrap();
    t.assert_untouched();

    let mut a = t.args;
    a.k.heads = 0;
    a.v.heads = 0;
    let e = t.run(&a).unwrap_err();
    assert!(e.to_string().contains("dividing the 4 query heads"), "{e}");
    assert_eq!(shape_operand(e), "k");
}

/// Issue 17, defect 6: a dense view whose strides overflow used to panic in its
/// constructor; now the launch refuses it with `InvalidValue` naming the operand.
#[test]
fn attention_with_overflowing_shapes_is_invalid_value_naming_the_operand() {
    let mut t = small();
    let huge = 1usize << 22;
    let a = AttentionArgs::bshd(1, huge, huge, huge, huge, huge, AttnMask::default());
    match t.run(&a).unwrap_err() {
        Error::InvalidValue { detail } => assert!(detail.contains("`q`"), "{detail}"),
        other => panic!("expected InvalidValue naming `q`, got {other}"),
    }
    t.assert_untouched();
}
