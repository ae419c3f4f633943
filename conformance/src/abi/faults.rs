//! Address faults, injected allocation failures and device loss.

use std::ptr::null_mut;
use std::time::{Duration, Instant};

use knpu_driver_abi::*;

use super::client::{call, d2d, d2h_raw, fill, host_fn, pattern_bytes, CallCounter};
use crate::{case_list, AbiContext, Body, Case, CaseResult, Feature};

pub(super) fn cases() -> Vec<Case> {
    let mut all = case_list!(Abi, Feature::Faults;
        illegal_addresses_fault_and_the_queue_recovers,
        injected_alloc_failure);
    all.push(Case {
        feature: Feature::Faults,
        name: "device_loss",
        destructive: true,
        body: Body::Abi(device_loss),
    });
    all
}

fn illegal_addresses_fault_and_the_queue_recovers(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let q = drv.queue(d);
    let a = drv.alloc(d, 256);
    let mut host = vec![0u8; 4096];
    // One byte past the end.
    let s = drv.semaphore(d, 0);
    assert_eq!(
        drv.run(q, s, 1, &[d2h_raw(host.as_mut_ptr(), a + 192, 65)]),
        KNPU_STATUS_ILLEGAL_ADDRESS,
        "a copy one byte past an allocation"
    );
    assert_eq!(drv.value(s), SEMAPHORE_FAILED);
    let (st, msg) = drv.error(s);
    assert_eq!(st, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(
        msg.contains(&format!("{:#x}", a + 192)),
        "the message names the address {:#x}: {msg}",
        a + 192
    );
    // The next submission on the same queue runs.
    let s2 = drv.semaphore(d, 0);
    assert_eq!(
        drv.run(q, s2, 1, &[d2h_raw(host.as_mut_ptr(), a, 256)]),
        KNPU_STATUS_SUCCESS,
        "the queue runs on after a fault"
    );
    // Unmapped, as the second command of a submission.
    let wild = a + (1 << 30);
    let (status, msg) = drv.run_once(d, q, &[d2h_raw(host.as_mut_ptr(), a, 16), d2d(wild, a, 16)]);
    assert_eq!(status, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert!(msg.contains(&format!("{wild:#x}")), "{msg}");
    // Freed.
    drv.free(d, a);
    let (status, msg) = drv.run_once(d, q, &[fill(a, 16, 0, 1)]);
    assert_eq!(
        status, KNPU_STATUS_ILLEGAL_ADDRESS,
        "a fill of freed memory"
    );
    assert!(msg.contains(&format!("{a:#x}")), "{msg}");
    drv.release(&[q], &[s, s2]);
    Ok(())
}

fn injected_alloc_failure(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    drv.require_fault_injection(d)?;
    let mut x = 0;
    assert_eq!(
        drv.inject(d, KNPU_FAULT_FAIL_ALLOC, 0, 2),
        KNPU_STATUS_SUCCESS
    );
    let a = drv.alloc(d, 64);
    assert_eq!(
        call!(drv, mem_alloc(d, 64, &mut x)),
        KNPU_STATUS_OUT_OF_MEMORY,
        "the second allocation fails"
    );
    let b = drv.alloc(d, 64);
    assert_eq!(
        drv.inject(d, KNPU_FAULT_FAIL_ALLOC, 0, 1),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(drv.inject(d, KNPU_FAULT_NONE, 0, 0), KNPU_STATUS_SUCCESS);
    let c = drv.alloc(d, 64);
    for addr in [a, b, c] {
        drv.free(d, addr);
    }
    assert_eq!(
        drv.inject(d, 99, 0, 1),
        KNPU_STATUS_INVALID_VALUE,
        "an unknown fault kind"
    );
    Ok(())
}

fn device_loss(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d0 = drv.device(0);
    drv.require_fault_injection(d0)?;
    let d = drv.device(ctx.device_to_lose()?);
    let q = drv.queue(d);
    let a = drv.alloc(d, 4096);
    let never = drv.semaphore(d0, 0);
    let stuck = drv.semaphore(d, 0);
    let done1 = drv.semaphore(d, 0);
    let done2 = drv.semaphore(d0, 0);
    let counter = CallCounter::default();
    // The queue blocks on a semaphore of another device that nobody signals; more work is
    // queued behind it.
    assert_eq!(
        drv.submit(q, &[(never, 1)], &[fill(a, 64, 1, 1)], &[(done1, 1)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        drv.submit(
            q,
            &[],
            &[fill(a, 64, 2, 1), host_fn(&counter)],
            &[(done2, 1)]
        ),
        KNPU_STATUS_SUCCESS
    );
    let sh = stuck as usize;
    let host_waiter = std::thread::spawn(move || {
        call!(drv, semaphore_wait(sh as KnpuSemaphore, 1, 60_000_000_000))
    });
    std::thread::sleep(Duration::from_millis(20));
    let lost_at = Instant::now();
    assert_eq!(
        drv.inject(d, KNPU_FAULT_LOSE_DEVICE, 0, 0),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(drv.wait(done1, 1), KNPU_STATUS_DEVICE_LOST);
    assert_eq!(drv.wait(done2, 1), KNPU_STATUS_DEVICE_LOST);
    assert_eq!(
        host_waiter.join().unwrap(),
        KNPU_STATUS_DEVICE_LOST,
        "a host wait on the lost device ends"
    );
    assert!(
        lost_at.elapsed() < Duration::from_secs(10),
        "pending work fails once the device is lost, not at a timeout"
    );
    assert_eq!(drv.error(done2).0, KNPU_STATUS_DEVICE_LOST);
    assert_eq!(
        counter.get(),
        (0, 1, KNPU_STATUS_DEVICE_LOST),
        "the host function is called once, with the loss"
    );
    // Every later call that creates work or objects on the device fails.
    let (mut x, mut hq, mut hs) = (0, null_mut(), null_mut());
    for (call, status) in [
        ("mem_alloc", call!(drv, mem_alloc(d, 64, &mut x))),
        ("queue_create", call!(drv, queue_create(d, 0, &mut hq))),
        (
            "semaphore_create",
            call!(drv, semaphore_create(d, 0, &mut hs)),
        ),
        ("queue_submit", drv.submit(q, &[], &[fill(a, 8, 0, 1)], &[])),
        ("semaphore_wait", call!(drv, semaphore_wait(stuck, 1, 0))),
    ] {
        assert_eq!(status, KNPU_STATUS_DEVICE_LOST, "{call} on the lost device");
    }
    // Releasing what was held still works.
    drv.free(d, a);
    drv.release(&[q], &[never, stuck, done1, done2]);
    // Device 0 is unaffected.
    let q0 = drv.queue(d0);
    let data = pattern_bytes(100, 1);
    let b = drv.upload(d0, q0, &data);
    assert_eq!(drv.download(d0, q0, b, 100), data);
    drv.free(d0, b);
    drv.destroy_queue(q0);
    Ok(())
}
