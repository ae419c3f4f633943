//! Command lists (ABI 1.1): validated and stored once, submitted many times, updated for
//! later submissions only.

use std::ptr::null_mut;

use knpu_driver_abi::*;

use super::client::{call, fill, provides, RawDriver};
use crate::{case_list, AbiContext, Case, CaseResult, Feature, Unsupported};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Abi, Feature::CommandLists;
        a_list_runs_on_every_submission_and_updates_apply_to_later_ones,
        malformed_lists_are_refused)
}

fn require_lists(drv: RawDriver) -> Result<(), Unsupported> {
    if provides!(drv, command_list_create)
        && provides!(drv, command_list_update)
        && provides!(drv, command_list_destroy)
    {
        Ok(())
    } else {
        Err(Unsupported::new(
            "the driver has no command lists (an ABI 1.0 table)",
        ))
    }
}

fn create(
    drv: RawDriver,
    d: KnpuDriverDevice,
    cmds: &[KnpuCommand],
) -> (KnpuStatus, KnpuCommandList) {
    let mut list = null_mut();
    let st = call!(
        drv,
        command_list_create(d, cmds.as_ptr(), cmds.len() as u32, &mut list)
    );
    (st, list)
}

fn a_list_runs_on_every_submission_and_updates_apply_to_later_ones(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    require_lists(drv)?;
    let d = drv.device(0);
    let q = drv.queue(d);
    let sem = drv.semaphore(d, 0);
    let out = drv.alloc(d, 256);
    let (status, list) = create(drv, d, &[fill(out, 256, 0x0202_0202, 4)]);
    assert_eq!(status, KNPU_STATUS_SUCCESS);
    for v in 1..=3 {
        // Clear first (an inline command runs before the list), so each run is seen.
        assert_eq!(
            drv.submit_with_list(q, &[], &[fill(out, 256, 0, 1)], list, &[(sem, v)]),
            KNPU_STATUS_SUCCESS
        );
        assert_eq!(drv.wait(sem, v), KNPU_STATUS_SUCCESS);
        assert_eq!(
            drv.download(d, q, out, 256),
            vec![2u8; 256],
            "submission {v}"
        );
    }
    let three = fill(out, 256, 3, 1);
    assert_eq!(
        call!(drv, command_list_update(list, 0, &three)),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        call!(drv, command_list_update(list, 1, &three)),
        KNPU_STATUS_INVALID_VALUE,
        "an index past the list's end"
    );
    assert_eq!(
        drv.submit_with_list(q, &[], &[], list, &[(sem, 4)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(drv.wait(sem, 4), KNPU_STATUS_SUCCESS);
    assert_eq!(
        drv.download(d, q, out, 256),
        vec![3u8; 256],
        "the update applies"
    );
    assert_eq!(call!(drv, command_list_destroy(list)), KNPU_STATUS_SUCCESS);
    assert_eq!(
        call!(drv, command_list_destroy(list)),
        KNPU_STATUS_INVALID_HANDLE,
        "a destroyed list"
    );
    assert_eq!(
        drv.submit_with_list(q, &[], &[], list, &[(sem, 5)]),
        KNPU_STATUS_INVALID_HANDLE
    );
    drv.free(d, out);
    drv.destroy_semaphore(sem);
    drv.destroy_queue(q);
    Ok(())
}

fn malformed_lists_are_refused(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    require_lists(drv)?;
    let d = drv.device(0);
    let mut bad = fill(0x1000, 3, 0, 2);
    bad.flags = 7;
    assert_eq!(create(drv, d, &[bad]).0, KNPU_STATUS_INVALID_VALUE);
    let (status, empty) = create(drv, d, &[]);
    assert_eq!(status, KNPU_STATUS_SUCCESS, "an empty list is valid");
    let q = drv.queue(d);
    let sem = drv.semaphore(d, 0);
    assert_eq!(
        drv.submit_with_list(q, &[], &[], empty, &[(sem, 1)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(drv.wait(sem, 1), KNPU_STATUS_SUCCESS);
    assert_eq!(call!(drv, command_list_destroy(empty)), KNPU_STATUS_SUCCESS);
    drv.destroy_semaphore(sem);
    drv.destroy_queue(q);
    Ok(())
}
