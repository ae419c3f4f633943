//! Host memory handed to a command is the host's again once a wait for the command's signal
//! returns: the submitter may then overwrite or free a copy's source and read its
//! destination. The results are checked here in every build; under ThreadSanitizer (`make
//! sanitize`) these tests also check that the hand-off is a happens-before edge it can see,
//! from the queue worker's (or the compute pool's) accesses to the waiter's. They reported a
//! data race on every round while a semaphore's signal was an `AtomicU64::fetch_max`, an
//! operation ThreadSanitizer's instrumentation leaves out.

mod common;

use common::{d2h, fill, h2d, pattern_bytes, Sim};
use knpu_driver_abi::*;
use knpu_driver_sim::exec::PARALLEL_BYTES;

const ROUNDS: u64 = 8;

fn sim() -> Sim {
    common::linked()
}

/// Uploads a fresh host vector, waits, then overwrites and frees it; downloads into a fresh
/// vector, waits, then reads it. `size` at or above `PARALLEL_BYTES` runs the copies on the
/// compute pool (when it has two threads or more), below it on the queue worker.
fn round_trips(size: usize) {
    let sim = sim();
    let d = sim.device(0);
    let q = sim.queue(d);
    let a = sim.alloc(d, size as u64);
    let s = sim.semaphore(d, 0);
    let mut value = 0;
    for round in 0..ROUNDS {
        let seed = round as u8;
        let mut src = pattern_bytes(size, seed);
        value += 1;
        assert_eq!(sim.run(q, s, value, &[h2d(a, &src)]), KNPU_STATUS_SUCCESS);
        // The copy has read `src`: writing and freeing it now must not race with that read.
        src.fill(0xEE);
        drop(src);
        let mut dst = vec![0u8; size];
        value += 1;
        assert_eq!(
            sim.run(q, s, value, &[d2h(&mut dst, a)]),
            KNPU_STATUS_SUCCESS
        );
        // The copy has written `dst`: reading it now must not race with that write.
        assert!(
            dst == pattern_bytes(size, seed),
            "round {round}: the download differs from the upload"
        );
    }
    sim.destroy_semaphore(s);
    sim.free(d, a);
    sim.destroy_queue(q);
}

#[test]
fn a_small_copy_s_host_memory_is_the_host_s_after_the_wait() {
    round_trips(4096);
}

#[test]
fn a_pooled_copy_s_host_memory_is_the_host_s_after_the_wait() {
    round_trips(PARALLEL_BYTES as usize + 4096);
}

/// The same hand-off when the waiter has parked: the submission waits on a semaphore that
/// another thread signals from the host later, so the waiter's spin ends before the signal.
#[test]
fn a_parked_waiter_sees_the_fill_it_waited_for() {
    let sim = sim();
    let d = sim.device(0);
    let q = sim.queue(d);
    let size = 1024usize;
    let a = sim.alloc(d, size as u64);
    let gate = sim.semaphore(d, 0);
    let s = sim.semaphore(d, 0);
    for round in 0..ROUNDS {
        let pattern = 0x0101_0101u64 * (round + 1);
        let mut dst = vec![0u8; size];
        let commands = [fill(a, size as u64, pattern, 4), d2h(&mut dst, a)];
        assert_eq!(
            sim.submit(q, &[(gate, round + 1)], &commands, &[(s, round + 1)]),
            KNPU_STATUS_SUCCESS
        );
        // A handle is a plain value the driver resolves; it crosses threads as an integer.
        let gate_handle = gate as usize;
        let opener = std::thread::spawn(move || {
            // Long enough that the waiter below has usually stopped spinning and parked; the
            // result does not depend on it.
            std::thread::sleep(std::time::Duration::from_millis(5));
            let sim = common::linked();
            // SAFETY: the simulator's table fills every field; `gate` is alive until joined.
            let status = unsafe {
                (sim.table().semaphore_signal.unwrap())(gate_handle as KnpuSemaphore, round + 1)
            };
            assert_eq!(status, KNPU_STATUS_SUCCESS);
        });
        assert_eq!(sim.wait(s, round + 1), KNPU_STATUS_SUCCESS);
        let want = (pattern as u32).to_le_bytes();
        assert!(
            dst.chunks(4).all(|c| c == want),
            "round {round}: the download does not hold the fill"
        );
        drop(dst);
        opener.join().unwrap();
    }
    sim.destroy_semaphore(s);
    sim.destroy_semaphore(gate);
    sim.free(d, a);
    sim.destroy_queue(q);
}
