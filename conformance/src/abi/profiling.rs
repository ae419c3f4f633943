//! Per-command profiling records.

use knpu_driver_abi::*;

use super::client::{call, fill, provides};
use crate::{case_list, AbiContext, Case, CaseResult, Feature, Unsupported};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Abi, Feature::Profiling; profiling_records_commands)
}

fn profiling_records_commands(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    if !(provides!(drv, device_set_profiling) && provides!(drv, device_read_profile)) {
        return Err(Unsupported::new("the driver has no profiler"));
    }
    let d = drv.device(0);
    let q = drv.queue(d);
    let s = drv.semaphore(d, 0);
    let a = drv.alloc(d, 1 << 20);
    assert_eq!(call!(drv, device_set_profiling(d, 1)), KNPU_STATUS_SUCCESS);
    assert_eq!(
        drv.run(q, s, 1, &[fill(a, 1 << 20, 0, 4)]),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(call!(drv, device_set_profiling(d, 0)), KNPU_STATUS_SUCCESS);
    let mut records = vec![KnpuCommandRecord::sized(); 4096];
    let mut n = 0;
    assert_eq!(
        call!(
            drv,
            device_read_profile(d, records.as_mut_ptr(), records.len(), &mut n)
        ),
        KNPU_STATUS_SUCCESS
    );
    assert!(n <= records.len());
    let fill = records[..n]
        .iter()
        .find(|r| r.type_ == KNPU_COMMAND_FILL && r.bytes == 1 << 20)
        .expect("the fill was recorded");
    assert_eq!(fill.status, KNPU_STATUS_SUCCESS);
    assert!(
        fill.end_ns >= fill.start_ns,
        "a record ends after it starts"
    );
    assert_eq!(fill.kernel_id, 0, "a fill names no kernel");
    drv.free(d, a);
    drv.destroy_semaphore(s);
    drv.destroy_queue(q);
    Ok(())
}
