//! Allocation, freeing and memory accounting.

use knpu_driver_abi::*;

use super::client::call;
use crate::{case_list, AbiContext, Case, CaseResult, Feature};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Abi, Feature::Memory; memory_accounting)
}

fn memory_accounting(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    let (mut free0, mut total) = (0, 0);
    assert_eq!(
        call!(drv, device_memory_info(d, &mut free0, &mut total)),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(total as i64, drv.attribute(d, KNPU_ATTR_TOTAL_MEMORY));
    assert!(free0 <= total);
    let align = drv.attribute(d, KNPU_ATTR_ALLOCATION_ALIGNMENT) as u64;
    let a = drv.alloc(d, 1000);
    assert_ne!(a, 0, "0 is never a device address");
    assert_eq!(a % align, 0, "allocation {a:#x} is aligned to {align}");
    let b = drv.alloc(d, 1);
    assert_eq!(b % align, 0);
    assert!(b >= a + 1000 || b < a, "allocations do not overlap");
    let mut free1 = 0;
    assert_eq!(
        call!(drv, device_memory_info(d, &mut free1, &mut total)),
        KNPU_STATUS_SUCCESS
    );
    assert!(free1 <= total);
    let mut x = 0;
    assert_eq!(
        call!(drv, mem_alloc(d, 0, &mut x)),
        KNPU_STATUS_INVALID_VALUE,
        "a zero-byte allocation"
    );
    assert_eq!(
        call!(drv, mem_alloc(d, total + 1, &mut x)),
        KNPU_STATUS_OUT_OF_MEMORY,
        "more than the device holds"
    );
    assert_eq!(
        call!(drv, mem_alloc(d, 16, std::ptr::null_mut())),
        KNPU_STATUS_INVALID_VALUE,
        "a null out-pointer"
    );
    drv.free(d, a);
    drv.free(d, b);
    assert_eq!(
        call!(drv, mem_free(d, a)),
        KNPU_STATUS_INVALID_VALUE,
        "a double free"
    );
    assert_eq!(
        call!(drv, mem_free(d, a + 1)),
        KNPU_STATUS_INVALID_VALUE,
        "freeing an address that is not an allocation's base"
    );
    Ok(())
}
