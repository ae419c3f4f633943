//! The software NPU's elementwise kernel (AXPY and SCALE) at the driver ABI: f32, in place and
//! overlapping operands, bf16 and f16, and the parameter checks at submit and at run time.
//! (The driver conformance kit, `knpu-conformance`, checks what every driver must do; this
//! file checks the simulator's own kernel.)

mod common;

use common::{elementwise, kernel, KernelQueue, Sim, INVALID};
use knpu_driver_abi::*;

fn sim() -> Sim {
    common::linked()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_from(b: &[u8]) -> Vec<f32> {
    b.chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

type BinaryOp = fn(f32, f32) -> f32;

#[test]
fn elementwise_ops_dtypes_aliasing_and_validation() {
    let k = KernelQueue::new();
    let (sim, d, q) = (&k.sim, k.dev, k.queue);
    let s = sim.semaphore(d, 0);
    let mut v = 0;
    let mut run = |p: &KnpuElementwiseParams| {
        v += 1;
        sim.run(q, s, v, &[kernel(KNPU_KERNEL_ELEMENTWISE, p)])
    };
    for &n in &[1usize, 1000, 200_003] {
        let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5 - 3.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 13) as f32 + 0.25).collect();
        let a = sim.upload(d, q, &f32_bytes(&x));
        let b = sim.upload(d, q, &f32_bytes(&y));
        let o = sim.alloc(d, 4 * n as u64);
        // ADD/MUL/SUB are KNPU_KERNEL_BINARY's since ABI 2.0; this kernel keeps AXPY and SCALE.
        let cases: [(u32, BinaryOp); 2] = [
            (KNPU_ELEMENTWISE_AXPY, |a, b| 2.5 * a + b),
            (KNPU_ELEMENTWISE_SCALE, |a, _| 2.5 * a),
        ];
        for (op, f) in cases {
            let bb = if op == KNPU_ELEMENTWISE_SCALE { 0 } else { b };
            let p = elementwise(op, KNPU_DTYPE_F32, n as u64, a, bb, o, 2.5);
            assert_eq!(run(&p), KNPU_STATUS_SUCCESS);
            let got = f32_from(&sim.download(d, q, o, 4 * n));
            for i in 0..n {
                assert_eq!(got[i], f(x[i], y[i]), "op {op} n {n} i {i}");
            }
        }
        // In place: a = 1 * a + b, with out == a.
        let p = elementwise(
            KNPU_ELEMENTWISE_AXPY,
            KNPU_DTYPE_F32,
            n as u64,
            a,
            b,
            a,
            1.0,
        );
        assert_eq!(run(&p), KNPU_STATUS_SUCCESS);
        let got = f32_from(&sim.download(d, q, a, 4 * n));
        for i in 0..n {
            assert_eq!(got[i], x[i] + y[i]);
        }
        for addr in [a, b, o] {
            sim.free(d, addr);
        }
    }
    // Partial overlap: out = a shifted by one element reads every input before writing.
    let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let a = sim.upload(d, q, &f32_bytes(&x));
    let p = elementwise(
        KNPU_ELEMENTWISE_SCALE,
        KNPU_DTYPE_F32,
        999,
        a,
        0,
        a + 4,
        2.0,
    );
    assert_eq!(run(&p), KNPU_STATUS_SUCCESS);
    let got = f32_from(&sim.download(d, q, a, 4000));
    assert_eq!(got[0], 0.0);
    for i in 1..1000 {
        assert_eq!(got[i], 2.0 * x[i - 1]);
    }
    // bf16 and f16.
    for dtype in [KNPU_DTYPE_BF16, KNPU_DTYPE_F16] {
        let conv = |x: f32| -> u16 {
            if dtype == KNPU_DTYPE_BF16 {
                (x.to_bits() >> 16) as u16
            } else {
                // Exactly representable small integers: 1.0 = 0x3c00, 2.0 = 0x4000, 3.0 = 0x4200.
                match x as i32 {
                    1 => 0x3c00,
                    2 => 0x4000,
                    3 => 0x4200,
                    _ => unreachable!(),
                }
            }
        };
        let ones: Vec<u8> = (0..100).flat_map(|_| conv(1.0).to_le_bytes()).collect();
        let twos: Vec<u8> = (0..100).flat_map(|_| conv(2.0).to_le_bytes()).collect();
        let a = sim.upload(d, q, &ones);
        let b = sim.upload(d, q, &twos);
        let p = elementwise(KNPU_ELEMENTWISE_AXPY, dtype, 100, a, b, b, 1.0);
        assert_eq!(run(&p), KNPU_STATUS_SUCCESS);
        let got = sim.download(d, q, b, 200);
        let threes: Vec<u8> = (0..100).flat_map(|_| conv(3.0).to_le_bytes()).collect();
        assert_eq!(got, threes, "dtype {dtype}");
        sim.free(d, a);
        sim.free(d, b);
    }
    // Validation at submit: unknown kernel, unsupported dtype, bad op, missing b, misaligned.
    let ok = elementwise(KNPU_ELEMENTWISE_AXPY, KNPU_DTYPE_F32, 10, a, a, a, 1.0);
    assert_eq!(
        sim.submit(q, &[], &[kernel(999, &ok)], &[]),
        KNPU_STATUS_NOT_SUPPORTED
    );
    common::assert_refused::<KnpuElementwiseParams>(
        |p| sim.submit(q, &[], &[kernel(KNPU_KERNEL_ELEMENTWISE, p)], &[]),
        &ok,
        &[
            ("i32", KNPU_STATUS_NOT_SUPPORTED, |p| {
                p.dtype = KNPU_DTYPE_I32
            }),
            ("op 77", INVALID, |p| p.op = 77),
            ("AXPY without b", INVALID, |p| p.b = 0),
            ("misaligned out", INVALID, |p| p.out = p.a + 2),
            ("struct_size 16", INVALID, |p| p.struct_size = 16),
        ],
    );
    // Out of bounds at run time: the operand and the address are named.
    let p = elementwise(KNPU_ELEMENTWISE_AXPY, KNPU_DTYPE_F32, 1001, a, a, a, 1.0);
    assert_eq!(run(&p), KNPU_STATUS_ILLEGAL_ADDRESS);
    let (_, msg) = sim.error(s);
    assert!(msg.contains("command 0 (kernel elementwise)"), "{msg}");
    assert!(msg.contains(&format!("{a:#x}")), "{msg}");
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}

/// A large kernel on a LOW priority queue runs on the compute pool (with half of it).
#[test]
fn large_kernels_run_on_low_and_high_priority_queues() {
    let sim = sim();
    let d = sim.device(0);
    let mut q = std::ptr::null_mut();
    for p in [KNPU_QUEUE_PRIORITY_LOW, KNPU_QUEUE_PRIORITY_HIGH] {
        assert_eq!(
            common::call!(sim, queue_create(d, p, &mut q)),
            KNPU_STATUS_SUCCESS
        );
        let s = sim.semaphore(d, 0);
        let n = 1 << 18;
        let a = sim.alloc(d, 4 * n);
        let prm = elementwise(KNPU_ELEMENTWISE_SCALE, KNPU_DTYPE_F32, n, a, 0, a, 2.0);
        assert_eq!(
            sim.run(q, s, 1, &[kernel(KNPU_KERNEL_ELEMENTWISE, &prm)]),
            KNPU_STATUS_SUCCESS
        );
        sim.free(d, a);
        sim.destroy_semaphore(s);
        sim.destroy_queue(q);
    }
}
