//! The table's header, device enumeration, names, attributes and capability queries.

use std::ffi::CStr;
use std::ptr::null_mut;

use knpu_driver_abi::*;

use super::client::{c_string, call, provides};
use crate::{case_list, AbiContext, Case, CaseResult, Feature};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Abi, Feature::Devices;
        table_header,
        entry_point_refuses_other_majors,
        devices_and_attributes,
        capability_queries)
}

fn table_header(ctx: &AbiContext) -> CaseResult {
    let api = ctx.driver.table();
    assert_eq!(api.abi_major, KNPU_DRIVER_ABI_MAJOR, "ABI major");
    assert!(
        api.struct_size >= field_end!(KnpuDriverApi, semaphore_get_error),
        "the table ({} bytes) ends before the functions every driver provides",
        api.struct_size
    );
    if api.abi_minor >= 1 {
        assert!(
            api.struct_size >= field_end!(KnpuDriverApi, command_list_destroy),
            "an ABI 1.1 table holds the command list functions"
        );
    }
    for (what, p) in [("name", api.driver_name), ("version", api.driver_version)] {
        assert!(!p.is_null(), "driver {what} is null");
        // SAFETY: non-null static NUL-terminated strings (knpu_driver.h).
        let s = unsafe { CStr::from_ptr(p) };
        assert!(!s.to_bytes().is_empty(), "driver {what} is empty");
    }
    Ok(())
}

fn entry_point_refuses_other_majors(ctx: &AbiContext) -> CaseResult {
    let entry = ctx.entry()?;
    // SAFETY: calling the entry point with a well-formed version pair.
    let same = unsafe { entry(KNPU_DRIVER_ABI_MAJOR, KNPU_DRIVER_ABI_MINOR) };
    assert_eq!(
        same,
        ctx.driver.table() as *const KnpuDriverApi,
        "the entry point returns the same table every time"
    );
    // SAFETY: as above, with a major the driver cannot serve.
    let other = unsafe { entry(KNPU_DRIVER_ABI_MAJOR + 1, 0) };
    assert!(other.is_null(), "a table for another ABI major");
    Ok(())
}

fn devices_and_attributes(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let n = drv.device_count();
    assert!(n >= 1, "a driver has at least one device");
    let mut d = null_mut();
    assert_eq!(
        call!(drv, device_get(n, &mut d)),
        KNPU_STATUS_INVALID_VALUE,
        "device_get past the last index"
    );
    let d0 = drv.device(0);
    assert_eq!(
        drv.device(0),
        d0,
        "opening an index twice gives the same handle"
    );
    let mut buf = [0 as std::ffi::c_char; 256];
    assert_eq!(
        call!(drv, device_get_name(d0, buf.as_mut_ptr(), buf.len())),
        KNPU_STATUS_SUCCESS
    );
    let name = c_string(&buf);
    assert!(!name.is_empty(), "the device has a name");
    let mut short = [0x7f as std::ffi::c_char; 5];
    assert_eq!(
        call!(drv, device_get_name(d0, short.as_mut_ptr(), short.len())),
        KNPU_STATUS_SUCCESS
    );
    let truncated: String = name.chars().take(4).collect();
    assert_eq!(
        c_string(&short),
        truncated,
        "the name truncated to the capacity"
    );
    for attr in 0..=KNPU_ATTR_FAULT_INJECTION {
        assert!(
            drv.attribute(d0, attr) >= 0,
            "attribute {attr} is not negative"
        );
    }
    assert!(drv.attribute(d0, KNPU_ATTR_TOTAL_MEMORY) > 0);
    assert!(drv.attribute(d0, KNPU_ATTR_COMPUTE_CORES) > 0);
    assert!(drv.attribute(d0, KNPU_ATTR_MAX_QUEUES) > 0);
    let align = drv.attribute(d0, KNPU_ATTR_ALLOCATION_ALIGNMENT);
    assert!(
        align > 0 && align & (align - 1) == 0,
        "alignment {align} is a power of two"
    );
    for flag in [KNPU_ATTR_PEER_COPY, KNPU_ATTR_FAULT_INJECTION] {
        let v = drv.attribute(d0, flag);
        assert!(v == 0 || v == 1, "flag attribute {flag} is 0 or 1, got {v}");
    }
    let mut v = 0;
    assert_eq!(
        call!(drv, device_get_attribute(d0, 999, &mut v)),
        KNPU_STATUS_NOT_SUPPORTED,
        "an unknown attribute"
    );
    if provides!(drv, device_get_clock) {
        let (mut c1, mut c2) = (0, 0);
        assert_eq!(
            call!(drv, device_get_clock(d0, &mut c1)),
            KNPU_STATUS_SUCCESS
        );
        assert_eq!(
            call!(drv, device_get_clock(d0, &mut c2)),
            KNPU_STATUS_SUCCESS
        );
        assert!(c2 >= c1, "the device clock does not go back");
    }
    Ok(())
}

fn capability_queries(ctx: &AbiContext) -> CaseResult {
    let drv = ctx.driver;
    let d = drv.device(0);
    assert!(
        !drv.supports_kernel(d, 4242, KNPU_DTYPE_F32),
        "an unknown kernel id is unsupported"
    );
    // Any answer is allowed for a known kernel, but it is 0 or 1 (checked by the client) and
    // stable.
    for dtype in [
        KNPU_DTYPE_F32,
        KNPU_DTYPE_F16,
        KNPU_DTYPE_BF16,
        KNPU_DTYPE_I8,
    ] {
        for kernel in [KNPU_KERNEL_ELEMENTWISE, KNPU_KERNEL_GEMM] {
            assert_eq!(
                drv.supports_kernel(d, kernel, dtype),
                drv.supports_kernel(d, kernel, dtype),
                "kernel {kernel:#x} dtype {dtype}"
            );
        }
    }
    Ok(())
}
