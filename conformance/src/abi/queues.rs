//! Queues, timeline semaphores, host functions and timestamps, and handle validation.

use std::ptr::null_mut;
use std::time::{Duration, Instant};

use knpu_driver_abi::*;

use super::client::{
    call, d2d, d2h_raw, fill, h2d, host_fn, pattern_bytes, peer, provides, timestamp, CallCounter,
    Rig,
};
use crate::{case_list, AbiContext, Case, CaseResult, Feature};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Abi, Feature::QueuesAndSemaphores;
        semaphores,
        queues_wait_on_host_signals,
        dependency_failure_propagates,
        host_functions,
        timestamps,
        queue_priorities,
        queue_limit,
        concurrent_queues,
        invalid_handles_are_refused,
        malformed_commands_are_refused)
}

fn semaphores(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let s = drv.semaphore(d, 3);
    assert_eq!(drv.value(s), 3);
    assert_eq!(
        call!(drv, semaphore_signal(s, 2)),
        KNPU_STATUS_INVALID_VALUE,
        "a semaphore never goes down"
    );
    assert_eq!(call!(drv, semaphore_signal(s, 5)), KNPU_STATUS_SUCCESS);
    assert_eq!(call!(drv, semaphore_wait(s, 5, 0)), KNPU_STATUS_SUCCESS);
    assert_eq!(call!(drv, semaphore_wait(s, 4, 0)), KNPU_STATUS_SUCCESS);
    assert_eq!(call!(drv, semaphore_wait(s, 6, 0)), KNPU_STATUS_TIMEOUT);
    let t = Instant::now();
    assert_eq!(
        call!(drv, semaphore_wait(s, 6, 20_000_000)),
        KNPU_STATUS_TIMEOUT
    );
    assert!(
        t.elapsed() >= Duration::from_millis(19),
        "a wait lasts its timeout"
    );
    assert_eq!(drv.error(s), (KNPU_STATUS_SUCCESS, String::new()));
    drv.destroy_semaphore(s);
    Ok(())
}

fn queues_wait_on_host_signals(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let s = drv.semaphore(d, 0);
    let q = drv.queue(d);
    let done = drv.semaphore(d, 0);
    assert_eq!(
        drv.submit(q, &[(s, 10)], &[], &[(done, 1)]),
        KNPU_STATUS_SUCCESS
    );
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(drv.value(done), 0, "the queue waits for the host signal");
    let sh = s as usize;
    let signaller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        call!(drv, semaphore_signal(sh as KnpuSemaphore, 10))
    });
    assert_eq!(drv.wait(done, 1), KNPU_STATUS_SUCCESS);
    assert_eq!(signaller.join().unwrap(), KNPU_STATUS_SUCCESS);
    drv.release(&[q], &[s, done]);
    Ok(())
}

fn dependency_failure_propagates(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let q1 = drv.queue(d);
    let q2 = drv.queue(d);
    let bad = drv.semaphore(d, 0);
    let after = drv.semaphore(d, 0);
    let counter = CallCounter::default();
    let a = drv.upload(d, q1, &[0u8; 64]);
    // q2 waits on q1's work, which faults.
    assert_eq!(
        drv.submit(
            q2,
            &[(bad, 1)],
            &[fill(a, 64, 1, 1), host_fn(&counter)],
            &[(after, 1)]
        ),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        drv.submit(q1, &[], &[fill(a + (1 << 30), 8, 0, 1)], &[(bad, 1)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(drv.wait(after, 1), KNPU_STATUS_DEPENDENCY_FAILED);
    assert_eq!(drv.value(after), SEMAPHORE_FAILED);
    assert_eq!(drv.error(after).0, KNPU_STATUS_DEPENDENCY_FAILED);
    assert_eq!(drv.error(bad).0, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert_eq!(
        counter.get(),
        (0, 1, KNPU_STATUS_DEPENDENCY_FAILED),
        "the host function is called once, with the failure"
    );
    assert_eq!(
        drv.download(d, q1, a, 64),
        vec![0u8; 64],
        "the skipped fill did not run"
    );
    drv.free(d, a);
    drv.release(&[q1, q2], &[bad, after]);
    Ok(())
}

fn host_functions(ctx: &AbiContext) -> CaseResult {
    let rig = Rig::new(ctx.driver);
    let counter = CallCounter::default();
    rig.ok(&[host_fn(&counter)]);
    assert_eq!(counter.get(), (1, 0, KNPU_STATUS_SUCCESS));
    // A failing command before a host function: it is called once with the failure.
    let a = rig.drv.alloc(rig.d, 64);
    rig.drv.free(rig.d, a);
    let status = rig.run(&[fill(a, 8, 0, 1), host_fn(&counter)]);
    assert_eq!(status, KNPU_STATUS_ILLEGAL_ADDRESS);
    assert_eq!(counter.get(), (1, 1, KNPU_STATUS_ILLEGAL_ADDRESS));
    let mut c = host_fn(&counter);
    c.u.host_function.fn_ = None;
    let status = rig.drv.submit(rig.q, &[], &[c], &[]);
    assert_eq!(status, KNPU_STATUS_INVALID_VALUE, "a null host function");
    Ok(())
}

fn timestamps(ctx: &AbiContext) -> CaseResult {
    let rig = Rig::new(ctx.driver);
    let drv = rig.drv;
    let (mut t1, mut t2) = (0u64, 0u64);
    let mut before = 0;
    let has_clock = provides!(drv, device_get_clock);
    if has_clock {
        let status = call!(drv, device_get_clock(rig.d, &mut before));
        assert_eq!(status, KNPU_STATUS_SUCCESS);
    }
    let a = drv.alloc(rig.d, 1 << 20);
    rig.ok(&[
        timestamp(&mut t1),
        fill(a, 1 << 20, 0, 4),
        timestamp(&mut t2),
    ]);
    assert!(t1 <= t2, "timestamps in queue order: {t1} then {t2}");
    if has_clock {
        assert!(
            before <= t1,
            "timestamps on the device clock: {before} then {t1}"
        );
    }
    let mut words = [0u64; 2];
    let mut ts = timestamp(&mut words[0]);
    ts.u.timestamp.host_dst = (words.as_mut_ptr() as usize + 4) as *mut u64;
    // The rig's one run signalled 1.
    assert_eq!(
        drv.submit_refused(rig.q, &[ts], (rig.s, 2)),
        KNPU_STATUS_INVALID_VALUE,
        "a misaligned timestamp destination"
    );
    drv.free(rig.d, a);
    Ok(())
}

fn queue_priorities(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let mut q = null_mut();
    assert_eq!(
        call!(drv, queue_create(d, 5, &mut q)),
        KNPU_STATUS_INVALID_VALUE,
        "an unknown priority"
    );
    for p in [
        KNPU_QUEUE_PRIORITY_LOW,
        KNPU_QUEUE_PRIORITY_NORMAL,
        KNPU_QUEUE_PRIORITY_HIGH,
    ] {
        assert_eq!(call!(drv, queue_create(d, p, &mut q)), KNPU_STATUS_SUCCESS);
        let data = pattern_bytes(1 << 16, p as u8);
        let a = drv.upload(d, q, &data);
        assert_eq!(drv.download(d, q, a, data.len()), data, "priority {p}");
        drv.free(d, a);
        drv.destroy_queue(q);
    }
    Ok(())
}

fn queue_limit(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    // A device no other case holds queues on.
    let d = drv.device(ctx.quiet_device()?);
    let max = drv.attribute(d, KNPU_ATTR_MAX_QUEUES) as usize;
    let queues: Vec<KnpuQueue> = (0..max).map(|_| drv.queue(d)).collect();
    let mut q = null_mut();
    assert_eq!(
        call!(drv, queue_create(d, KNPU_QUEUE_PRIORITY_NORMAL, &mut q)),
        KNPU_STATUS_OUT_OF_MEMORY,
        "one queue past KNPU_ATTR_MAX_QUEUES ({max})"
    );
    drv.destroy_queue(queues[0]);
    let again = drv.queue(d);
    drv.destroy_queue(again);
    for q in &queues[1..] {
        drv.destroy_queue(*q);
    }
    Ok(())
}

fn concurrent_queues(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0) as usize;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let d = d as KnpuDriverDevice;
                let q = drv.queue(d);
                let s = drv.semaphore(d, 0);
                let n = 4096 + t * 1000;
                let data = pattern_bytes(n, t as u8);
                let a = drv.alloc(d, n as u64);
                let b = drv.alloc(d, n as u64);
                let mut out = vec![0u8; n];
                // One raw pointer for all copies: the host must not re-borrow `out` while
                // earlier copies into it may still run.
                let out_ptr = out.as_mut_ptr();
                let rounds = 200u64;
                for i in 1..=rounds {
                    let cmds = [
                        h2d(a, &data),
                        d2d(b, a, n as u64),
                        d2h_raw(out_ptr, b, n as u64),
                    ];
                    assert_eq!(drv.submit(q, &[], &cmds, &[(s, i)]), KNPU_STATUS_SUCCESS);
                    if i % 10 == 0 {
                        assert_eq!(drv.wait(s, i), KNPU_STATUS_SUCCESS);
                        assert_eq!(out, data, "thread {t} round {i}");
                    }
                }
                assert_eq!(drv.wait(s, rounds), KNPU_STATUS_SUCCESS);
                drv.free(d, a);
                drv.free(d, b);
                drv.destroy_semaphore(s);
                drv.destroy_queue(q);
            })
        })
        .collect();
    for t in threads {
        if let Err(p) = t.join() {
            std::panic::resume_unwind(p);
        }
    }
    Ok(())
}

fn invalid_handles_are_refused(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    // Values no live object can have.
    let garbage = [
        null_mut::<std::ffi::c_void>(),
        2 as *mut _,
        0xdead_beef as *mut _,
        usize::MAX as *mut _,
        0x4e00_0000_0000_0999 as *mut _,
        0x5100_00ff_ffff_fff0 as *mut _,
        0x5300_00ff_ffff_fff0 as *mut _,
    ];
    let d = drv.device(0);
    let mut v = 0u64;
    let mut i = 0i64;
    for g in garbage {
        let (gd, gq, gs) = (g as KnpuDriverDevice, g as KnpuQueue, g as KnpuSemaphore);
        handle_refused(call!(drv, device_get_attribute(gd, 0, &mut i)));
        handle_refused(call!(drv, mem_alloc(gd, 64, &mut v)));
        handle_refused(call!(drv, queue_destroy(gq)));
        handle_refused(drv.submit(gq, &[], &[], &[]));
        handle_refused(call!(drv, semaphore_query(gs, &mut v)));
        handle_refused(call!(drv, semaphore_wait(gs, 1, 0)));
        handle_refused(call!(drv, semaphore_destroy(gs)));
    }
    assert_eq!(
        call!(drv, semaphore_query(d as KnpuSemaphore, &mut v)),
        KNPU_STATUS_INVALID_HANDLE,
        "a device handle is not a semaphore handle"
    );
    // Destroyed handles.
    let q = drv.queue(d);
    let s = drv.semaphore(d, 0);
    drv.destroy_queue(q);
    drv.destroy_semaphore(s);
    handle_refused(call!(drv, queue_destroy(q)));
    handle_refused(drv.submit(q, &[], &[], &[]));
    handle_refused(call!(drv, semaphore_query(s, &mut v)));
    // A destroyed semaphore named in a submission, and a bad peer device.
    let q = drv.queue(d);
    handle_refused(drv.submit(q, &[(s, 1)], &[], &[]));
    let a = drv.alloc(d, 64);
    handle_refused(drv.submit(q, &[], &[peer(a, 0x77 as KnpuDriverDevice, a, 8)], &[]));
    drv.free(d, a);
    drv.destroy_queue(q);
    Ok(())
}

fn malformed_commands_are_refused(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let q = drv.queue(d);
    let a = drv.alloc(d, 64);
    assert_eq!(
        call!(drv, queue_submit(q, std::ptr::null())),
        KNPU_STATUS_INVALID_VALUE,
        "a null submission"
    );
    assert_eq!(
        call!(drv, device_count(null_mut())),
        KNPU_STATUS_INVALID_VALUE,
        "a null out-pointer"
    );
    let copy = h2d(a, &[1, 2, 3]);
    let (mut unknown, mut null_src, mut flags) = (copy, copy, copy);
    unknown.type_ = 99;
    null_src.u.copy.host_src = std::ptr::null();
    flags.flags = 1;
    for (bad, what) in [
        (unknown, "an unknown command"),
        (null_src, "a copy from a null host pointer"),
        (flags, "reserved flags set"),
    ] {
        let status = drv.submit(q, &[], &[bad], &[]);
        assert_eq!(status, KNPU_STATUS_INVALID_VALUE, "{what}");
    }
    let p = [0u8; 64];
    assert_eq!(
        drv.submit(q, &[], &[super::client::kernel(4242, &p)], &[]),
        KNPU_STATUS_NOT_SUPPORTED,
        "an unknown kernel id"
    );
    drv.free(d, a);
    drv.destroy_queue(q);
    Ok(())
}

/// Asserts that a call was refused for an invalid handle.
#[track_caller]
fn handle_refused(status: KnpuStatus) {
    assert_eq!(status, KNPU_STATUS_INVALID_HANDLE);
}
