//! Per-command profiling records.

use knpu_driver_abi::*;

use super::client::{fill, provides};
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
    let (status, records) = drv.run_profiled(d, q, s, &[fill(a, 1 << 20, 0, 4)]);
    assert_eq!(status, KNPU_STATUS_SUCCESS);
    let fill = records
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
