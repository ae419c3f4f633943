//! Driver conformance checks, written once against the API table. Each takes the driver
//! under test; `conformance_tests!` instantiates them as `#[test]`s.
#![allow(dead_code)]

use std::ptr::null_mut;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use knpu_driver_abi::*;

use super::*;

/// Declares one `#[test]` per conformance check against the driver `$sim()` returns.
#[allow(unused_macros)]
macro_rules! conformance_tests {
    ($sim:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                common::conformance::$name($sim());
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use conformance_tests;

pub fn table_header(sim: Sim) {
    let api = sim.api;
    assert_eq!(api.abi_major, KNPU_DRIVER_ABI_MAJOR);
    assert!(api.struct_size >= std::mem::size_of::<KnpuDriverApi>());
    // SAFETY: static NUL-terminated strings.
    let name = unsafe { std::ffi::CStr::from_ptr(api.driver_name) };
    assert_eq!(name.to_str().unwrap(), "sim");
    // SAFETY: as above.
    let version = unsafe { std::ffi::CStr::from_ptr(api.driver_version) };
    assert!(!version.to_bytes().is_empty());
}

pub fn devices_and_attributes(sim: Sim) {
    let mut n = 0;
    assert_eq!(call!(sim, device_count(&mut n)), KNPU_STATUS_SUCCESS);
    assert!(n >= 1);
    let mut d = null_mut();
    assert_eq!(call!(sim, device_get(n, &mut d)), KNPU_STATUS_INVALID_VALUE);
    let d0 = sim.device(0);
    assert_eq!(
        sim.device(0),
        d0,
        "opening an index twice gives the same handle"
    );
    let mut buf = [0 as std::ffi::c_char; 64];
    assert_eq!(
        call!(sim, device_get_name(d0, buf.as_mut_ptr(), buf.len())),
        KNPU_STATUS_SUCCESS
    );
    // SAFETY: NUL-terminated by the driver.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(name.to_str().unwrap(), "knpu-sim NPU 0");
    assert_eq!(
        call!(sim, device_get_name(d0, buf.as_mut_ptr(), 5)),
        KNPU_STATUS_SUCCESS
    );
    // SAFETY: as above.
    let short = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(short.to_str().unwrap(), "knpu");
    for attr in 0..=KNPU_ATTR_FAULT_INJECTION {
        assert!(sim.attribute(d0, attr) >= 0, "attribute {attr}");
    }
    assert_eq!(sim.attribute(d0, KNPU_ATTR_ALLOCATION_ALIGNMENT), 256);
    assert_eq!(sim.attribute(d0, KNPU_ATTR_FAULT_INJECTION), 1);
    let mut v = 0;
    assert_eq!(
        call!(sim, device_get_attribute(d0, 999, &mut v)),
        KNPU_STATUS_NOT_SUPPORTED
    );
    let mut s = -1;
    for (dtype, want) in [
        (KNPU_DTYPE_F32, 1),
        (KNPU_DTYPE_F16, 1),
        (KNPU_DTYPE_BF16, 1),
        (KNPU_DTYPE_I8, 0),
    ] {
        assert_eq!(
            call!(
                sim,
                device_supports_kernel(d0, KNPU_KERNEL_ELEMENTWISE, dtype, &mut s)
            ),
            KNPU_STATUS_SUCCESS
        );
        assert_eq!(s, want, "dtype {dtype}");
    }
    assert_eq!(
        call!(
            sim,
            device_supports_kernel(d0, 4242, KNPU_DTYPE_F32, &mut s)
        ),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(s, 0);
    let (mut c1, mut c2) = (0, 0);
    assert_eq!(
        call!(sim, device_get_clock(d0, &mut c1)),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        call!(sim, device_get_clock(d0, &mut c2)),
        KNPU_STATUS_SUCCESS
    );
    assert!(c2 >= c1);
}

pub fn memory_accounting(sim: Sim) {
    let d = sim.device(0);
    let (mut free0, mut total) = (0, 0);
    assert_eq!(
        call!(sim, device_memory_info(d, &mut free0, &mut total)),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(total as i64, sim.attribute(d, KNPU_ATTR_TOTAL_MEMORY));
    let a = sim.alloc(d, 1000);
    assert_eq!(a % 256, 0);
    assert_ne!(a, 0);
    let mut free1 = 0;
    assert_eq!(
        call!(sim, device_memory_info(d, &mut free1, &mut total)),
        KNPU_STATUS_SUCCESS
    );
    // Other tests allocate concurrently; this allocation is at least visible.
    assert!(free1 <= total);
    let mut x = 0;
    assert_eq!(
        call!(sim, mem_alloc(d, 0, &mut x)),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(
        call!(sim, mem_alloc(d, total + 1, &mut x)),
        KNPU_STATUS_OUT_OF_MEMORY
    );
    assert_eq!(
        call!(sim, mem_alloc(d, 16, null_mut())),
        KNPU_STATUS_INVALID_VALUE
    );
    sim.free(d, a);
    assert_eq!(call!(sim, mem_free(d, a)), KNPU_STATUS_INVALID_VALUE);
    assert_eq!(call!(sim, mem_free(d, 12345)), KNPU_STATUS_INVALID_VALUE);
}

pub fn copies_round_trip(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    for &n in &[1usize, 255, 4096, (1 << 20) + 3, 3 << 20] {
        let data = pattern_bytes(n, 7);
        let a = sim.upload(d, q, &data);
        let b = sim.alloc(d, n as u64);
        let s = sim.semaphore(d, 0);
        assert_eq!(
            sim.run(q, s, 1, &[d2d(b, a, n as u64)]),
            KNPU_STATUS_SUCCESS
        );
        assert_eq!(sim.download(d, q, b, n), data, "n = {n}");
        // Peer copy from the same device through its handle.
        assert_eq!(
            sim.run(q, s, 2, &[peer(a, d, b, n as u64)]),
            KNPU_STATUS_SUCCESS
        );
        assert_eq!(sim.download(d, q, a, n), data, "peer n = {n}");
        sim.destroy_semaphore(s);
        sim.free(d, a);
        sim.free(d, b);
    }
    // Overlapping device-to-device copies behave as memmove, both directions.
    let data = pattern_bytes(1000, 3);
    let a = sim.upload(d, q, &data);
    let s = sim.semaphore(d, 0);
    assert_eq!(
        sim.run(q, s, 1, &[d2d(a + 10, a, 500)]),
        KNPU_STATUS_SUCCESS
    );
    let mut want = data.clone();
    want.copy_within(0..500, 10);
    assert_eq!(sim.download(d, q, a, 1000), want);
    assert_eq!(
        sim.run(q, s, 2, &[d2d(a, a + 100, 800)]),
        KNPU_STATUS_SUCCESS
    );
    want.copy_within(100..900, 0);
    assert_eq!(sim.download(d, q, a, 1000), want);
    // Size 0 is a no-op, even with null host pointers and address 0.
    let mut c = h2d(0, &[]);
    c.u.copy.host_src = std::ptr::null();
    assert_eq!(sim.run(q, s, 3, &[c, d2d(0, 0, 0)]), KNPU_STATUS_SUCCESS);
    sim.destroy_semaphore(s);
    sim.free(d, a);
    sim.destroy_queue(q);
}

pub fn fill_patterns(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let n = 3 * (1 << 20) + 8 * 13;
    let a = sim.alloc(d, n as u64);
    let mut v = 0;
    for (ps, pattern) in [
        (1u32, 0xabu64),
        (2, 0x1234),
        (4, 0xdeadbeef),
        (8, 0x0102030405060708),
    ] {
        v += 1;
        // Start 8 bytes in, to check the pattern is anchored at the destination.
        let size = (n - 8) as u64;
        assert_eq!(
            sim.run(q, s, v, &[fill(a + 8, size, pattern, ps)]),
            KNPU_STATUS_SUCCESS
        );
        let got = sim.download(d, q, a + 8, size as usize);
        let p = pattern.to_le_bytes();
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, p[i % ps as usize], "pattern size {ps} byte {i}");
        }
    }
    // Small and odd sizes (below one 64-byte block, and past a block edge).
    for size in [8u64, 24, 200, 4096 + 8] {
        for (ps, pattern) in [(2u32, 0xa1b2u64), (4, 0x01020304), (8, 0x1122334455667788)] {
            v += 1;
            let cmds = [
                fill(a, 8, 0, 8),
                fill(a + 8, size, pattern, ps),
                fill(a + 8 + size, 8, 0, 8),
            ];
            assert_eq!(sim.run(q, s, v, &cmds), KNPU_STATUS_SUCCESS);
            let got = sim.download(d, q, a, size as usize + 16);
            let p = pattern.to_le_bytes();
            for (i, b) in got.iter().enumerate() {
                let want = if i < 8 || i >= 8 + size as usize {
                    0
                } else {
                    p[(i - 8) % ps as usize]
                };
                assert_eq!(*b, want, "size {size} pattern size {ps} byte {i}");
            }
        }
    }
    // Size not a multiple of the pattern, bad pattern sizes: refused at submit.
    assert_eq!(
        sim.submit(q, &[], &[fill(a, 6, 1, 4)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(
        sim.submit(q, &[], &[fill(a, 6, 1, 3)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(
        sim.submit(q, &[], &[fill(a, 8, 1, 0)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}

pub fn illegal_addresses_fault_and_the_queue_recovers(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let a = sim.alloc(d, 256);
    let mut host = vec![0u8; 4096];
    // One past the end.
    let s = sim.semaphore(d, 0);
    assert_eq!(
        sim.run(q, s, 1, &[d2h_raw(host.as_mut_ptr(), a + 192, 65)]),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    assert_eq!(sim.value(s), SEMAPHORE_FAILED);
    let (st, msg) = sim.error(s);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains("command 0 (copy device to host)"), "{msg}");
    assert!(msg.contains(&format!("{:#x}", a + 192)), "{msg}");
    // The next submission on the same queue runs.
    let s2 = sim.semaphore(d, 0);
    assert_eq!(
        sim.run(q, s2, 1, &[d2h_raw(host.as_mut_ptr(), a, 256)]),
        KNPU_STATUS_SUCCESS
    );
    // Unmapped, and the second command of a submission.
    let s3 = sim.semaphore(d, 0);
    let wild = a + (1 << 30);
    assert_eq!(
        sim.run(
            q,
            s3,
            1,
            &[d2h_raw(host.as_mut_ptr(), a, 16), d2d(wild, a, 16)]
        ),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    let (_, msg) = sim.error(s3);
    assert!(msg.contains("command 1 (copy device to device)"), "{msg}");
    assert!(msg.contains(&format!("{wild:#x}")), "{msg}");
    // Freed.
    sim.free(d, a);
    let s4 = sim.semaphore(d, 0);
    assert_eq!(
        sim.run(q, s4, 1, &[fill(a, 16, 0, 1)]),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    let (_, msg) = sim.error(s4);
    assert!(msg.contains("freed"), "{msg}");
    assert!(msg.contains(&format!("{a:#x}")), "{msg}");
    for s in [s, s2, s3, s4] {
        sim.destroy_semaphore(s);
    }
    sim.destroy_queue(q);
}

pub fn dependency_failure_propagates(sim: Sim) {
    let d = sim.device(0);
    let q1 = sim.queue(d);
    let q2 = sim.queue(d);
    let bad = sim.semaphore(d, 0);
    let after = sim.semaphore(d, 0);
    let counter = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
    let a = sim.alloc(d, 64);
    // q2 waits on q1's work, which faults.
    assert_eq!(
        sim.submit(
            q2,
            &[(bad, 1)],
            &[fill(a, 64, 1, 1), host_fn(&counter)],
            &[(after, 1)]
        ),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        sim.submit(q1, &[], &[fill(a + 4096, 8, 0, 1)], &[(bad, 1)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        call!(sim, semaphore_wait(after, 1, WAIT)),
        KNPU_STATUS_DEPENDENCY_FAILED
    );
    let (st, msg) = sim.error(after);
    assert_eq!(st, KNPU_STATUS_DEPENDENCY_FAILED);
    assert!(
        msg.contains("illegal address"),
        "the cause is carried: {msg}"
    );
    assert_eq!(counter[0].load(Ordering::SeqCst), 0);
    assert_eq!(
        counter[1].load(Ordering::SeqCst),
        1,
        "host function called once, with failure"
    );
    assert_eq!(
        counter[2].load(Ordering::SeqCst),
        KNPU_STATUS_DEPENDENCY_FAILED
    );
    // The skipped fill did not run.
    assert_eq!(sim.download(d, q1, a, 64), vec![0u8; 64]);
    sim.free(d, a);
    for s in [bad, after] {
        sim.destroy_semaphore(s);
    }
    sim.destroy_queue(q1);
    sim.destroy_queue(q2);
}

pub fn host_functions_and_timestamps(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let counter = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
    let (mut t1, mut t2) = (0u64, 0u64);
    let mut before = 0;
    assert_eq!(
        call!(sim, device_get_clock(d, &mut before)),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        sim.run(
            q,
            s,
            1,
            &[timestamp(&mut t1), host_fn(&counter), timestamp(&mut t2)]
        ),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(counter[0].load(Ordering::SeqCst), 1);
    assert_eq!(counter[1].load(Ordering::SeqCst), 0);
    assert!(before <= t1 && t1 <= t2, "{before} {t1} {t2}");
    // A failing command before a host function: called once with the failure.
    let a = sim.alloc(d, 64);
    sim.free(d, a);
    assert_eq!(
        sim.run(q, s, 2, &[fill(a, 8, 0, 1), host_fn(&counter)]),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    assert_eq!(counter[0].load(Ordering::SeqCst), 1);
    assert_eq!(counter[1].load(Ordering::SeqCst), 1);
    assert_eq!(
        counter[2].load(Ordering::SeqCst),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    // Null function and misaligned timestamp are refused.
    let mut c = host_fn(&counter);
    c.u.host_function.fn_ = None;
    assert_eq!(sim.submit(q, &[], &[c], &[]), KNPU_STATUS_INVALID_VALUE);
    let mut words = [0u64; 2];
    let mut ts = timestamp(&mut words[0]);
    ts.u.timestamp.host_dst = (words.as_mut_ptr() as usize + 4) as *mut u64;
    assert_eq!(sim.submit(q, &[], &[ts], &[]), KNPU_STATUS_INVALID_VALUE);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
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

pub fn elementwise_kernels(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let mut v = 0;
    for &n in &[1usize, 1000, 200_003] {
        let x: Vec<f32> = (0..n).map(|i| (i % 97) as f32 * 0.5 - 3.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 13) as f32 + 0.25).collect();
        let a = sim.upload(d, q, &f32_bytes(&x));
        let b = sim.upload(d, q, &f32_bytes(&y));
        let o = sim.alloc(d, 4 * n as u64);
        // Since ABI 2.0 plain add, multiply and subtract are KNPU_KERNEL_BINARY's.
        let cases: [(u32, BinaryOp); 2] = [
            (KNPU_ELEMENTWISE_AXPY, |a, b| 2.5 * a + b),
            (KNPU_ELEMENTWISE_SCALE, |a, _| 2.5 * a),
        ];
        for (op, f) in cases {
            let bb = if op == KNPU_ELEMENTWISE_SCALE { 0 } else { b };
            let p = elementwise(op, KNPU_DTYPE_F32, n as u64, a, bb, o, 2.5);
            v += 1;
            assert_eq!(
                sim.run(q, s, v, &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)]),
                KNPU_STATUS_SUCCESS
            );
            let got = f32_from(&sim.download(d, q, o, 4 * n));
            for i in 0..n {
                assert_eq!(got[i], f(x[i], y[i]), "op {op} n {n} i {i}");
            }
        }
        // In place: a = a + b (AXPY with alpha 1), with out == a.
        let p = elementwise(
            KNPU_ELEMENTWISE_AXPY,
            KNPU_DTYPE_F32,
            n as u64,
            a,
            b,
            a,
            1.0,
        );
        v += 1;
        assert_eq!(
            sim.run(q, s, v, &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)]),
            KNPU_STATUS_SUCCESS
        );
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
    v += 1;
    assert_eq!(
        sim.run(q, s, v, &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)]),
        KNPU_STATUS_SUCCESS
    );
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
        v += 1;
        assert_eq!(
            sim.run(q, s, v, &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)]),
            KNPU_STATUS_SUCCESS
        );
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
    let mut p = ok;
    p.dtype = KNPU_DTYPE_I32;
    assert_eq!(
        sim.submit(q, &[], &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)], &[]),
        KNPU_STATUS_NOT_SUPPORTED
    );
    let mut p = ok;
    p.op = 77;
    assert_eq!(
        sim.submit(q, &[], &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut p = ok;
    p.b = 0;
    assert_eq!(
        sim.submit(q, &[], &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut p = ok;
    p.out = a + 2;
    assert_eq!(
        sim.submit(q, &[], &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut p = ok;
    p.struct_size = 16;
    assert_eq!(
        sim.submit(q, &[], &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    // Out of bounds at run time: the operand and the address are named.
    let p = elementwise(KNPU_ELEMENTWISE_AXPY, KNPU_DTYPE_F32, 1001, a, a, a, 1.0);
    v += 1;
    assert_eq!(
        sim.run(q, s, v, &[kernel(KNPU_KERNEL_ELEMENTWISE, &p)]),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    let (_, msg) = sim.error(s);
    assert!(msg.contains("command 0 (kernel elementwise)"), "{msg}");
    assert!(msg.contains(&format!("{a:#x}")), "{msg}");
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}

pub fn semaphores(sim: Sim) {
    let d = sim.device(0);
    let s = sim.semaphore(d, 3);
    assert_eq!(sim.value(s), 3);
    assert_eq!(
        call!(sim, semaphore_signal(s, 2)),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(call!(sim, semaphore_signal(s, 5)), KNPU_STATUS_SUCCESS);
    assert_eq!(call!(sim, semaphore_wait(s, 5, 0)), KNPU_STATUS_SUCCESS);
    assert_eq!(call!(sim, semaphore_wait(s, 6, 0)), KNPU_STATUS_TIMEOUT);
    let t = Instant::now();
    assert_eq!(
        call!(sim, semaphore_wait(s, 6, 20_000_000)),
        KNPU_STATUS_TIMEOUT
    );
    assert!(t.elapsed() >= Duration::from_millis(19));
    assert_eq!(sim.error(s), (KNPU_STATUS_SUCCESS, String::new()));
    // A queue waits on a host signal.
    let q = sim.queue(d);
    let done = sim.semaphore(d, 0);
    assert_eq!(
        sim.submit(q, &[(s, 10)], &[], &[(done, 1)]),
        KNPU_STATUS_SUCCESS
    );
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(sim.value(done), 0);
    let sh = s as usize;
    let signaller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        let s = sh as KnpuSemaphore;
        call!(sim, semaphore_signal(s, 10))
    });
    assert_eq!(
        call!(sim, semaphore_wait(done, 1, WAIT)),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(signaller.join().unwrap(), KNPU_STATUS_SUCCESS);
    sim.destroy_queue(q);
    sim.destroy_semaphore(s);
    sim.destroy_semaphore(done);
}

pub fn invalid_handles_are_refused(sim: Sim) {
    // Values no live object can have (other tests run concurrently, so a small well-formed
    // value could name their live queue).
    let garbage = [
        null_mut::<std::ffi::c_void>(),
        2 as *mut _,
        0xdead_beef as *mut _,
        usize::MAX as *mut _,
        0x4e00_0000_0000_0999 as *mut _,
        0x5100_00ff_ffff_fff0 as *mut _,
        0x5300_00ff_ffff_fff0 as *mut _,
    ];
    let d = sim.device(0);
    let mut v = 0u64;
    let mut i = 0i64;
    for g in garbage {
        let (gd, gq, gs) = (g as KnpuDriverDevice, g as KnpuQueue, g as KnpuSemaphore);
        assert_eq!(
            call!(sim, device_get_attribute(gd, 0, &mut i)),
            KNPU_STATUS_INVALID_HANDLE
        );
        assert_eq!(
            call!(sim, mem_alloc(gd, 64, &mut v)),
            KNPU_STATUS_INVALID_HANDLE
        );
        assert_eq!(
            call!(sim, device_get_clock(gd, &mut v)),
            KNPU_STATUS_INVALID_HANDLE
        );
        assert_eq!(call!(sim, queue_destroy(gq)), KNPU_STATUS_INVALID_HANDLE);
        assert_eq!(sim.submit(gq, &[], &[], &[]), KNPU_STATUS_INVALID_HANDLE);
        assert_eq!(
            call!(sim, semaphore_query(gs, &mut v)),
            KNPU_STATUS_INVALID_HANDLE
        );
        assert_eq!(
            call!(sim, semaphore_wait(gs, 1, 0)),
            KNPU_STATUS_INVALID_HANDLE
        );
        assert_eq!(
            call!(sim, semaphore_destroy(gs)),
            KNPU_STATUS_INVALID_HANDLE
        );
    }
    // A device handle is not a queue or semaphore handle.
    assert_eq!(
        call!(sim, semaphore_query(d as KnpuSemaphore, &mut v)),
        KNPU_STATUS_INVALID_HANDLE
    );
    // Destroyed handles.
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    sim.destroy_queue(q);
    sim.destroy_semaphore(s);
    assert_eq!(call!(sim, queue_destroy(q)), KNPU_STATUS_INVALID_HANDLE);
    assert_eq!(sim.submit(q, &[], &[], &[]), KNPU_STATUS_INVALID_HANDLE);
    assert_eq!(
        call!(sim, semaphore_query(s, &mut v)),
        KNPU_STATUS_INVALID_HANDLE
    );
    // A destroyed semaphore named in a submission, and a bad peer device.
    let q = sim.queue(d);
    assert_eq!(
        sim.submit(q, &[(s, 1)], &[], &[]),
        KNPU_STATUS_INVALID_HANDLE
    );
    let a = sim.alloc(d, 64);
    assert_eq!(
        sim.submit(q, &[], &[peer(a, 0x77 as KnpuDriverDevice, a, 8)], &[]),
        KNPU_STATUS_INVALID_HANDLE
    );
    // Null arguments.
    assert_eq!(
        call!(sim, queue_submit(q, std::ptr::null())),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(
        call!(sim, device_count(null_mut())),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut bad = h2d(a, &[1, 2, 3]);
    bad.type_ = 99;
    assert_eq!(sim.submit(q, &[], &[bad], &[]), KNPU_STATUS_INVALID_VALUE);
    let mut null_src = h2d(a, &[1, 2, 3]);
    null_src.u.copy.host_src = std::ptr::null();
    assert_eq!(
        sim.submit(q, &[], &[null_src], &[]),
        KNPU_STATUS_INVALID_VALUE
    );
    let mut flags = h2d(a, &[1, 2, 3]);
    flags.flags = 1;
    assert_eq!(sim.submit(q, &[], &[flags], &[]), KNPU_STATUS_INVALID_VALUE);
    sim.free(d, a);
    sim.destroy_queue(q);
}

pub fn injected_kernel_fault(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let a = sim.alloc(d, 4096);
    let p = elementwise(KNPU_ELEMENTWISE_SCALE, KNPU_DTYPE_F32, 1024, a, 0, a, 1.0);
    let k = kernel(KNPU_KERNEL_ELEMENTWISE, &p);
    let counter = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
    // Counting only another kernel id: elementwise launches do not fire it.
    assert_eq!(
        sim.inject(d, KNPU_FAULT_KERNEL, 4242, 1),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(sim.run(q, s, 1, &[k, k]), KNPU_STATUS_SUCCESS);
    assert_eq!(
        sim.inject(d, KNPU_FAULT_KERNEL, KNPU_KERNEL_ELEMENTWISE, 2),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        sim.run(q, s, 2, &[k, k, fill(a, 8, 0, 1), host_fn(&counter)]),
        KNPU_STATUS_KERNEL_FAULT
    );
    let (st, msg) = sim.error(s);
    assert_eq!(st, KNPU_STATUS_KERNEL_FAULT);
    assert!(msg.contains("command 1 (kernel elementwise)"), "{msg}");
    assert_eq!(counter[2].load(Ordering::SeqCst), KNPU_STATUS_KERNEL_FAULT);
    let s2 = sim.semaphore(d, 0);
    assert_eq!(
        sim.run(q, s2, 1, &[k]),
        KNPU_STATUS_SUCCESS,
        "the fault fires once"
    );
    assert_eq!(sim.inject(d, KNPU_FAULT_KERNEL, 0, 1), KNPU_STATUS_SUCCESS);
    assert_eq!(sim.inject(d, KNPU_FAULT_NONE, 0, 0), KNPU_STATUS_SUCCESS);
    assert_eq!(sim.run(q, s2, 2, &[k]), KNPU_STATUS_SUCCESS, "NONE disarms");
    assert_eq!(
        sim.inject(d, KNPU_FAULT_KERNEL, 0, 0),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(sim.inject(d, 99, 0, 1), KNPU_STATUS_INVALID_VALUE);
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_semaphore(s2);
    sim.destroy_queue(q);
}

pub fn injected_alloc_failure(sim: Sim) {
    let d = sim.device(0);
    let mut x = 0;
    assert_eq!(
        sim.inject(d, KNPU_FAULT_FAIL_ALLOC, 0, 2),
        KNPU_STATUS_SUCCESS
    );
    let a = sim.alloc(d, 64);
    assert_eq!(
        call!(sim, mem_alloc(d, 64, &mut x)),
        KNPU_STATUS_OUT_OF_MEMORY
    );
    let b = sim.alloc(d, 64);
    assert_eq!(
        sim.inject(d, KNPU_FAULT_FAIL_ALLOC, 0, 1),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(sim.inject(d, KNPU_FAULT_NONE, 0, 0), KNPU_STATUS_SUCCESS);
    let c = sim.alloc(d, 64);
    for addr in [a, b, c] {
        sim.free(d, addr);
    }
}

/// Copies between two devices of the driver (needs two devices).
pub fn peer_copies_between_devices(sim: Sim) {
    let (d0, d1) = (sim.device(0), sim.device(1));
    assert_ne!(d0, d1);
    let (q0, q1) = (sim.queue(d0), sim.queue(d1));
    let n = (2 << 20) + 77;
    let data = pattern_bytes(n, 11);
    let a = sim.upload(d0, q0, &data);
    let b = sim.alloc(d1, n as u64);
    assert_ne!(a, b, "devices have distinct address ranges");
    let s = sim.semaphore(d1, 0);
    assert_eq!(
        sim.run(q1, s, 1, &[peer(b, d0, a, n as u64)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(sim.download(d1, q1, b, n), data);
    // An address of device 0 means nothing on device 1.
    assert_eq!(
        sim.run(q1, s, 2, &[d2d(b, a, 16)]),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    let s2 = sim.semaphore(d1, 0);
    assert_eq!(
        sim.run(q1, s2, 1, &[peer(b, d0, b, 16)]),
        KNPU_STATUS_ILLEGAL_ADDRESS
    );
    let (_, msg) = sim.error(s2);
    assert!(
        msg.contains("knpu-sim NPU 0"),
        "the source device is named: {msg}"
    );
    sim.free(d0, a);
    sim.free(d1, b);
    sim.destroy_semaphore(s);
    sim.destroy_semaphore(s2);
    sim.destroy_queue(q0);
    sim.destroy_queue(q1);
}

/// Loses device `index` (needs at least two devices; device 0 must stay healthy).
pub fn device_loss(sim: Sim, index: u32) {
    let (d0, d) = (sim.device(0), sim.device(index));
    let q = sim.queue(d);
    let a = sim.alloc(d, 4096);
    let never = sim.semaphore(d0, 0);
    let stuck = sim.semaphore(d, 0);
    let done1 = sim.semaphore(d, 0);
    let done2 = sim.semaphore(d0, 0);
    let counter = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
    // The worker blocks on a semaphore of another device that nobody signals; more work is
    // queued behind it.
    assert_eq!(
        sim.submit(q, &[(never, 1)], &[fill(a, 64, 1, 1)], &[(done1, 1)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        sim.submit(
            q,
            &[],
            &[fill(a, 64, 2, 1), host_fn(&counter)],
            &[(done2, 1)]
        ),
        KNPU_STATUS_SUCCESS
    );
    let sh = stuck as usize;
    let host_waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let st = call!(sim, semaphore_wait(sh as KnpuSemaphore, 1, u64::MAX));
        (st, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(20));
    let lost_at = Instant::now();
    assert_eq!(
        sim.inject(d, KNPU_FAULT_LOSE_DEVICE, 0, 0),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        call!(sim, semaphore_wait(done1, 1, WAIT)),
        KNPU_STATUS_DEVICE_LOST
    );
    assert_eq!(
        call!(sim, semaphore_wait(done2, 1, WAIT)),
        KNPU_STATUS_DEVICE_LOST
    );
    assert!(
        lost_at.elapsed() < Duration::from_secs(1),
        "pending work failed promptly"
    );
    let (st, _) = host_waiter.join().unwrap();
    assert_eq!(st, KNPU_STATUS_DEVICE_LOST);
    assert!(lost_at.elapsed() < Duration::from_secs(1));
    assert_eq!(sim.error(done2).0, KNPU_STATUS_DEVICE_LOST);
    assert_eq!(
        counter[1].load(Ordering::SeqCst),
        1,
        "host function called once"
    );
    assert_eq!(counter[2].load(Ordering::SeqCst), KNPU_STATUS_DEVICE_LOST);
    // Every later call that names the device fails.
    let (mut x, mut hq, mut hs) = (0, null_mut(), null_mut());
    assert_eq!(
        call!(sim, mem_alloc(d, 64, &mut x)),
        KNPU_STATUS_DEVICE_LOST
    );
    assert_eq!(
        call!(sim, queue_create(d, 0, &mut hq)),
        KNPU_STATUS_DEVICE_LOST
    );
    assert_eq!(
        call!(sim, semaphore_create(d, 0, &mut hs)),
        KNPU_STATUS_DEVICE_LOST
    );
    assert_eq!(
        sim.submit(q, &[], &[fill(a, 8, 0, 1)], &[]),
        KNPU_STATUS_DEVICE_LOST
    );
    assert_eq!(
        call!(sim, semaphore_wait(stuck, 1, 0)),
        KNPU_STATUS_DEVICE_LOST
    );
    assert_eq!(
        sim.inject(d, KNPU_FAULT_FAIL_ALLOC, 0, 1),
        KNPU_STATUS_DEVICE_LOST
    );
    // Releasing what was held still works.
    sim.free(d, a);
    sim.destroy_queue(q);
    for s in [never, stuck, done1, done2] {
        sim.destroy_semaphore(s);
    }
    // Device 0 is unaffected.
    let q0 = sim.queue(d0);
    let data = pattern_bytes(100, 1);
    let b = sim.upload(d0, q0, &data);
    assert_eq!(sim.download(d0, q0, b, 100), data);
    sim.free(d0, b);
    sim.destroy_queue(q0);
}

pub fn profiling_records_commands(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let a = sim.alloc(d, 1 << 20);
    assert_eq!(call!(sim, device_set_profiling(d, 1)), KNPU_STATUS_SUCCESS);
    assert_eq!(
        sim.run(q, s, 1, &[fill(a, 1 << 20, 0, 4)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(call!(sim, device_set_profiling(d, 0)), KNPU_STATUS_SUCCESS);
    // SAFETY: KnpuCommandRecord is plain data starting with struct_size.
    let mut records = vec![unsafe { sized_zeroed::<KnpuCommandRecord>() }; 4096];
    let mut n = 0;
    assert_eq!(
        call!(
            sim,
            device_read_profile(d, records.as_mut_ptr(), records.len(), &mut n)
        ),
        KNPU_STATUS_SUCCESS
    );
    let fill = records[..n]
        .iter()
        .find(|r| r.type_ == KNPU_COMMAND_FILL && r.bytes == 1 << 20)
        .expect("the fill was recorded");
    assert_eq!(fill.status, KNPU_STATUS_SUCCESS);
    assert!(fill.end_ns >= fill.start_ns);
    // 1 MiB at the default 100000 MB/s memory bandwidth.
    let bw = sim.attribute(d, KNPU_ATTR_MEMORY_BANDWIDTH_MBPS) as u64;
    assert_eq!(fill.modeled_ns, ((1u64 << 20) * 1000).div_ceil(bw));
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}

pub fn queue_limit_and_priorities(sim: Sim) {
    let d = sim.device(0);
    let mut q = null_mut();
    assert_eq!(
        call!(sim, queue_create(d, 5, &mut q)),
        KNPU_STATUS_INVALID_VALUE
    );
    for p in [KNPU_QUEUE_PRIORITY_LOW, KNPU_QUEUE_PRIORITY_HIGH] {
        assert_eq!(call!(sim, queue_create(d, p, &mut q)), KNPU_STATUS_SUCCESS);
        let s = sim.semaphore(d, 0);
        // A large kernel runs on the pool (a LOW queue with half of it).
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

pub fn concurrent_queues(sim: Sim) {
    let d = sim.device(0);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let dh = d as usize;
            std::thread::spawn(move || {
                let d = dh as KnpuDriverDevice;
                let q = sim.queue(d);
                let s = sim.semaphore(d, 0);
                let n = 4096 + t * 1000;
                let data = pattern_bytes(n, t as u8);
                let a = sim.alloc(d, n as u64);
                let b = sim.alloc(d, n as u64);
                let mut out = vec![0u8; n];
                // One raw pointer for all copies: the host must not re-borrow `out` while
                // earlier copies into it may still run.
                let out_ptr = out.as_mut_ptr();
                let rounds = if cfg!(miri) { 20 } else { 200u64 };
                for i in 1..=rounds {
                    let cmds = [
                        h2d(a, &data),
                        d2d(b, a, n as u64),
                        d2h_raw(out_ptr, b, n as u64),
                    ];
                    assert_eq!(sim.submit(q, &[], &cmds, &[(s, i)]), KNPU_STATUS_SUCCESS);
                    if i % 10 == 0 {
                        assert_eq!(call!(sim, semaphore_wait(s, i, WAIT)), KNPU_STATUS_SUCCESS);
                        assert_eq!(out, data);
                    }
                }
                assert_eq!(
                    call!(sim, semaphore_wait(s, 200, WAIT)),
                    KNPU_STATUS_SUCCESS
                );
                sim.free(d, a);
                sim.free(d, b);
                sim.destroy_semaphore(s);
                sim.destroy_queue(q);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Prints the host cost of an asynchronous launch and of a launch-and-wait round trip
/// (information for the reader; no assertion on time).
pub fn latency_report(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let a = sim.alloc(d, 4096);
    let p = elementwise(KNPU_ELEMENTWISE_SCALE, KNPU_DTYPE_F32, 256, a, 0, a, 1.0);
    let k = [kernel(KNPU_KERNEL_ELEMENTWISE, &p)];
    let mut v = 0;
    for _ in 0..200 {
        v += 1;
        assert_eq!(sim.run(q, s, v, &k), KNPU_STATUS_SUCCESS);
    }
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        v += 1;
        assert_eq!(sim.submit(q, &[], &k, &[(s, v)]), KNPU_STATUS_SUCCESS);
    }
    let submit = t.elapsed() / n as u32;
    assert_eq!(call!(sim, semaphore_wait(s, v, WAIT)), KNPU_STATUS_SUCCESS);
    let mut trips: Vec<Duration> = (0..n)
        .map(|_| {
            v += 1;
            let t = Instant::now();
            assert_eq!(sim.run(q, s, v, &k), KNPU_STATUS_SUCCESS);
            t.elapsed()
        })
        .collect();
    trips.sort();
    eprintln!(
        "latency: async launch {submit:?} per submit; launch+wait p50 {:?} p90 {:?} p99 {:?}",
        trips[n / 2],
        trips[n * 9 / 10],
        trips[n * 99 / 100]
    );
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}

/// Prints host<->device copy bandwidth next to a host memcpy of the same size measured in
/// the same run (information for the reader; no assertion on time).
pub fn bandwidth_report(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let mut v = 0;
    for &n in &[1usize << 20, 2 << 20, 4 << 20, 16 << 20, 64 << 20] {
        let src = pattern_bytes(n, 5);
        let mut dst = vec![0u8; n];
        let a = sim.alloc(d, n as u64);
        let reps = ((64 << 20) / n).max(1);
        let median = |f: &mut dyn FnMut()| {
            let mut t: Vec<Duration> = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..reps {
                        f();
                    }
                    start.elapsed() / reps as u32
                })
                .collect();
            t.sort();
            t[2]
        };
        let gbps = |t: Duration| n as f64 / t.as_secs_f64() / 1e9;
        let memcpy = median(&mut || {
            dst.copy_from_slice(std::hint::black_box(&src));
        });
        let h2d_t = median(&mut || {
            v += 1;
            assert_eq!(sim.run(q, s, v, &[h2d(a, &src)]), KNPU_STATUS_SUCCESS);
        });
        let d2h_t = median(&mut || {
            v += 1;
            assert_eq!(
                sim.run(q, s, v, &[d2h_raw(dst.as_mut_ptr(), a, n as u64)]),
                KNPU_STATUS_SUCCESS
            );
        });
        eprintln!(
            "bandwidth {} MiB: host memcpy {:.1} GB/s, h2d {:.1} GB/s, d2h {:.1} GB/s",
            n >> 20,
            gbps(memcpy),
            gbps(h2d_t),
            gbps(d2h_t)
        );
        sim.free(d, a);
    }
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}

/// Creates queues on device `index` until the limit (needs a device no other test uses).
pub fn queue_limit(sim: Sim, index: u32) {
    let d = sim.device(index);
    let max = sim.attribute(d, KNPU_ATTR_MAX_QUEUES) as usize;
    let queues: Vec<KnpuQueue> = (0..max).map(|_| sim.queue(d)).collect();
    let mut q = null_mut();
    assert_eq!(
        call!(sim, queue_create(d, KNPU_QUEUE_PRIORITY_NORMAL, &mut q)),
        KNPU_STATUS_OUT_OF_MEMORY
    );
    sim.destroy_queue(queues[0]);
    let again = sim.queue(d);
    sim.destroy_queue(again);
    for q in &queues[1..] {
        sim.destroy_queue(*q);
    }
}
