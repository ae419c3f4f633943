//! Command lists (ABI 1.1): stored once, submitted many times, updated copy-on-write.

mod common;

use common::{elementwise, kernel, Sim, WAIT};
use knpu_driver_abi::*;
use std::ptr::null_mut;

fn sim() -> Sim {
    Sim {
        api: knpu_driver_sim::api(),
    }
}

fn create(s: &Sim, d: KnpuDriverDevice, cmds: &[KnpuCommand]) -> (KnpuStatus, KnpuCommandList) {
    let mut list = null_mut();
    let f = s.api.command_list_create.expect("ABI 1.1 driver");
    // SAFETY: valid array of commands and out-pointer.
    (
        unsafe { f(d, cmds.as_ptr(), cmds.len() as u32, &mut list) },
        list,
    )
}

#[test]
fn a_list_runs_on_every_submission_and_updates_apply_to_later_ones() {
    let s = sim();
    let d = s.device(0);
    let q = s.queue(d);
    let sem = s.semaphore(d, 0);
    let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let a = s.upload(d, q, bytemuck::cast_slice(&x));
    let out = s.alloc(d, 256);
    let scale =
        |alpha: f32| elementwise(KNPU_ELEMENTWISE_SCALE, KNPU_DTYPE_F32, 64, a, 0, out, alpha);
    let p2 = scale(2.0);
    let (status, list) = create(&s, d, &[kernel(KNPU_KERNEL_ELEMENTWISE, &p2)]);
    assert_eq!(status, KNPU_STATUS_SUCCESS);

    for v in 1..=3 {
        assert_eq!(s.submit_list(q, list, sem, v), KNPU_STATUS_SUCCESS);
        assert_eq!(call_wait(&s, sem, v), KNPU_STATUS_SUCCESS);
        let got: Vec<f32> = bytemuck::cast_slice(&s.download(d, q, out, 256)).to_vec();
        assert_eq!(got, x.iter().map(|v| v * 2.0).collect::<Vec<_>>());
    }
    let p3 = scale(3.0);
    let k3 = kernel(KNPU_KERNEL_ELEMENTWISE, &p3);
    let update = s.api.command_list_update.unwrap();
    // SAFETY: a valid list, index and command.
    assert_eq!(unsafe { update(list, 0, &k3) }, KNPU_STATUS_SUCCESS);
    // SAFETY: as above; index 1 is past the list's one command.
    assert_eq!(unsafe { update(list, 1, &k3) }, KNPU_STATUS_INVALID_VALUE);
    assert_eq!(s.submit_list(q, list, sem, 4), KNPU_STATUS_SUCCESS);
    assert_eq!(call_wait(&s, sem, 4), KNPU_STATUS_SUCCESS);
    let got: Vec<f32> = bytemuck::cast_slice(&s.download(d, q, out, 256)).to_vec();
    assert_eq!(got, x.iter().map(|v| v * 3.0).collect::<Vec<_>>());
    let destroy = s.api.command_list_destroy.unwrap();
    // SAFETY: a live list, destroyed once; then a stale handle.
    assert_eq!(unsafe { destroy(list) }, KNPU_STATUS_SUCCESS);
    // SAFETY: a stale handle is refused, never dereferenced.
    assert_eq!(unsafe { destroy(list) }, KNPU_STATUS_INVALID_HANDLE);
    assert_eq!(s.submit_list(q, list, sem, 5), KNPU_STATUS_INVALID_HANDLE);
    s.destroy_queue(q);
}

#[test]
fn malformed_lists_are_refused() {
    let s = sim();
    let d = s.device(0);
    let mut bad = common::fill(0x1000, 3, 0, 2);
    bad.flags = 7;
    assert_eq!(create(&s, d, &[bad]).0, KNPU_STATUS_INVALID_VALUE);
    let (status, empty) = create(&s, d, &[]);
    assert_eq!(status, KNPU_STATUS_SUCCESS, "an empty list is valid");
    let q = s.queue(d);
    let sem = s.semaphore(d, 0);
    assert_eq!(s.submit_list(q, empty, sem, 1), KNPU_STATUS_SUCCESS);
    assert_eq!(call_wait(&s, sem, 1), KNPU_STATUS_SUCCESS);
    s.destroy_queue(q);
}

fn call_wait(s: &Sim, sem: KnpuSemaphore, v: u64) -> KnpuStatus {
    let f = s.api.semaphore_wait.unwrap();
    // SAFETY: a live semaphore.
    unsafe { f(sem, v, WAIT) }
}
