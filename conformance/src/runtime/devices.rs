//! Device properties and capability queries, as the runtime reports them.

use crate::{case_list, Case, CaseResult, Feature, RuntimeContext};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Runtime, Feature::Devices; properties)
}

fn properties(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    assert!(!dev.name().is_empty());
    let total = dev.attribute(knpu::Attribute::TotalMemory).unwrap();
    assert!(total > 0);
    assert!(dev.attribute(knpu::Attribute::ComputeCores).unwrap() > 0);
    let align = dev.attribute(knpu::Attribute::AllocationAlignment).unwrap();
    assert!(
        align > 0 && (align & (align - 1)) == 0,
        "alignment {align} must be a power of two"
    );
    let (free, t) = dev.memory_info().unwrap();
    assert_eq!(t as i64, total);
    assert!(free <= t);
    let (major, _) = dev.driver().abi_version();
    assert_eq!(major, knpu::abi::KNPU_DRIVER_ABI_MAJOR);
    assert!(!dev
        .supports_kernel(0xFFFF_FFF0, knpu::abi::KNPU_DTYPE_F32)
        .unwrap());
    Ok(())
}
