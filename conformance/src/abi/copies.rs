//! Copies host to device, device to host, device to device and between devices; fills.

use knpu_driver_abi::*;

use super::client::{d2d, fill, h2d, pattern_bytes, peer, Rig};
use crate::{case_list, AbiContext, Case, CaseResult, Feature, Unsupported};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Abi, Feature::Copies;
        copies_round_trip,
        overlapping_copies_move,
        empty_copies,
        fill_patterns,
        peer_copies_between_devices)
}

fn copies_round_trip(ctx: &AbiContext) -> CaseResult {
    let rig = Rig::new(ctx.driver);
    for &n in &[1usize, 255, 4096, (1 << 20) + 3, 3 << 20] {
        let data = pattern_bytes(n, 7);
        let a = rig.upload(&data);
        assert_eq!(rig.download(a, n), data, "host to device and back, n = {n}");
        let b = rig.drv.alloc(rig.d, n as u64);
        rig.ok(&[d2d(b, a, n as u64)]);
        assert_eq!(rig.download(b, n), data, "device to device, n = {n}");
        rig.drv.free(rig.d, a);
        rig.drv.free(rig.d, b);
    }
    // A copy into the middle of an allocation leaves its neighbours alone.
    let a = rig.upload(&[0u8; 64]);
    rig.ok(&[h2d(a + 10, &[9u8; 20])]);
    let want: Vec<u8> = (0..64)
        .map(|i| if (10..30).contains(&i) { 9 } else { 0 })
        .collect();
    assert_eq!(rig.download(a, 64), want, "a copy at an offset");
    rig.drv.free(rig.d, a);
    Ok(())
}

fn overlapping_copies_move(ctx: &AbiContext) -> CaseResult {
    let rig = Rig::new(ctx.driver);
    let data = pattern_bytes(1000, 3);
    let a = rig.upload(&data);
    rig.ok(&[d2d(a + 10, a, 500)]);
    let mut want = data.clone();
    want.copy_within(0..500, 10);
    assert_eq!(rig.download(a, 1000), want, "overlapping copy forward");
    rig.ok(&[d2d(a, a + 100, 800)]);
    want.copy_within(100..900, 0);
    assert_eq!(rig.download(a, 1000), want, "overlapping copy backward");
    rig.drv.free(rig.d, a);
    Ok(())
}

fn empty_copies(ctx: &AbiContext) -> CaseResult {
    let rig = Rig::new(ctx.driver);
    // Size 0 is a no-op, even with null host pointers and address 0.
    let mut c = h2d(0, &[]);
    c.u.copy.host_src = std::ptr::null();
    rig.ok(&[c, d2d(0, 0, 0)]);
    Ok(())
}

fn fill_patterns(ctx: &AbiContext) -> CaseResult {
    let rig = Rig::new(ctx.driver);
    let n = 3 * (1 << 20) + 8 * 13;
    let a = rig.drv.alloc(rig.d, n as u64);
    for (ps, pattern) in [
        (1u32, 0xabu64),
        (2, 0x1234),
        (4, 0xdeadbeef),
        (8, 0x0102030405060708),
    ] {
        // Start 8 bytes in, to check the pattern is anchored at the destination.
        let size = (n - 8) as u64;
        rig.ok(&[fill(a + 8, size, pattern, ps)]);
        let got = rig.download(a + 8, size as usize);
        let p = pattern.to_le_bytes();
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, p[i % ps as usize], "pattern size {ps} byte {i}");
        }
    }
    // Small and odd sizes, with the bytes around them untouched.
    for size in [8u64, 24, 200, 4096 + 8] {
        for (ps, pattern) in [(2u32, 0xa1b2u64), (4, 0x01020304), (8, 0x1122334455667788)] {
            rig.ok(&[
                fill(a, 8, 0, 8),
                fill(a + 8, size, pattern, ps),
                fill(a + 8 + size, 8, 0, 8),
            ]);
            let got = rig.download(a, size as usize + 16);
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
    // A size that is not a multiple of the pattern, bad pattern sizes: refused at submit.
    for (size, ps) in [(6, 4), (6, 3), (8, 0)] {
        assert_eq!(
            rig.drv.submit(rig.q, &[], &[fill(a, size, 1, ps)], &[]),
            KNPU_STATUS_INVALID_VALUE,
            "fill of {size} bytes with a {ps}-byte pattern"
        );
    }
    rig.drv.free(rig.d, a);
    Ok(())
}

fn peer_copies_between_devices(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d0 = drv.device(0);
    if drv.attribute(d0, KNPU_ATTR_PEER_COPY) != 1 {
        return Err(Unsupported::new(
            "the device reports no peer copies (KNPU_ATTR_PEER_COPY is 0)",
        ));
    }
    let d1 = drv.device(ctx.quiet_device()?);
    assert_ne!(d0, d1);
    let (q0, q1) = (drv.queue(d0), drv.queue(d1));
    let n = (2 << 20) + 77;
    let data = pattern_bytes(n, 11);
    let a = drv.upload(d0, q0, &data);
    let b = drv.alloc(d1, n as u64);
    let s = drv.semaphore(d1, 0);
    assert_eq!(
        drv.run(q1, s, 1, &[peer(b, d0, a, n as u64)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(drv.download(d1, q1, b, n), data, "peer copy from device 0");
    // From the queue's own device through its handle.
    let c = drv.alloc(d1, n as u64);
    assert_eq!(
        drv.run(q1, s, 2, &[peer(c, d1, b, n as u64)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        drv.download(d1, q1, c, n),
        data,
        "peer copy within device 1"
    );
    // An unmapped source address on the peer device is a fault, not a copy of junk.
    let s2 = drv.semaphore(d1, 0);
    let past = a + (1 << 30);
    assert_eq!(
        drv.run(q1, s2, 1, &[peer(b, d0, past, 16)]),
        KNPU_STATUS_ILLEGAL_ADDRESS,
        "a peer copy from an unmapped source address"
    );
    drv.free(d0, a);
    drv.free(d1, b);
    drv.free(d1, c);
    drv.destroy_semaphore(s);
    drv.destroy_semaphore(s2);
    drv.destroy_queue(q0);
    drv.destroy_queue(q1);
    Ok(())
}
