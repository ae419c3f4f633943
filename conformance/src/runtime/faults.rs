//! Device faults as the runtime reports them: bad addresses, use after free, injected kernel
//! faults, device loss.

use std::time::{Duration, Instant};

use super::kernels::supported;
use super::*;
use crate::{case_list, Case, CaseResult, Feature, RuntimeContext};
use knpu::{Error, Fault, Stream};

pub(super) fn cases() -> Vec<Case> {
    let mut all = case_list!(Runtime, Feature::Faults;
        out_of_bounds_address_is_a_device_fault,
        use_after_free_is_a_device_fault,
        injected_kernel_fault_surfaces_at_synchronize);
    all.push(Case {
        feature: Feature::Faults,
        name: "device_loss_fails_pending_work",
        destructive: true,
        body: crate::Body::Runtime(device_loss_fails_pending_work),
    });
    all
}

fn out_of_bounds_address_is_a_device_fault(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s = ctx.stream();
    // Return the segments earlier cases left cached, so the buffer below sits in a new,
    // small segment with nothing mapped 64 MiB past it (on a driver that hands out
    // addresses upwards, as the software NPU does).
    dev.synchronize().unwrap();
    dev.empty_cache().unwrap();
    let b = s.from_slice(&pattern(256)).unwrap();
    let align = dev.attribute(knpu::Attribute::AllocationAlignment).unwrap() as u64;
    // Past the end of the driver allocation that holds the buffer (the caching allocator's
    // segment), where nothing is mapped.
    let past = b.device_address() + (64 << 20);
    let mut host = vec![0u8; 64];
    let e = s.memcpy_dtoh_raw(&mut host, past).unwrap_err();
    assert_fault_names_address(&e, past);
    let e = s.memcpy_htod_raw(0x10, &[1, 2, 3]).unwrap_err();
    assert_fault_names_address(&e, 0x10);
    assert!(align > 0);
    // The fault is not sticky: the same stream and the device go on working.
    device_still_works(&s);
    s.synchronize().unwrap();
    device_still_works(&Stream::new(dev).unwrap());
    Ok(())
}

fn use_after_free_is_a_device_fault(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    // A buffer large enough to get a driver allocation of its own, so releasing the cache
    // returns exactly that allocation to the driver.
    let s = ctx.stream();
    let b = s.alloc_zeroed::<u8>(64 << 20).unwrap();
    let addr = b.device_address();
    s.synchronize().unwrap();
    drop(b);
    dev.empty_cache().unwrap();
    let mut host = vec![0u8; 16];
    let e = s.memcpy_dtoh_raw(&mut host, addr).unwrap_err();
    assert_fault_names_address(&e, addr);
    device_still_works(&s);
    Ok(())
}

fn injected_kernel_fault_surfaces_at_synchronize(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    ctx.require_fault_injection()?;
    let s = ctx.stream();
    let a = s.from_slice(&pattern(100)).unwrap();
    let mut out = s.alloc::<f32>(100).unwrap();
    // A first launch finds out whether the device runs the op at all.
    supported(knpu::ops::scale(&s, 2.0, &a, &mut out))?;
    s.synchronize().unwrap();
    // The kit runs one case at a time, so the next kernel on the device is this one.
    dev.inject_fault(Fault::Kernel { n: 1, kernel_id: 0 })
        .unwrap();
    knpu::ops::scale(&s, 3.0, &a, &mut out).unwrap();
    let e = s.synchronize().unwrap_err();
    assert!(matches!(e, Error::KernelFault { .. }), "{e}");
    // Not sticky: the stream runs the same kernel correctly next time.
    knpu::ops::scale(&s, 2.0, &a, &mut out).unwrap();
    s.synchronize().unwrap();
    assert_eq!(
        out.to_vec().unwrap(),
        pattern(100).iter().map(|x| x * 2.0).collect::<Vec<_>>()
    );
    Ok(())
}

/// Loses a spare device and checks that pending work fails once the device is lost (not at
/// a timeout) and later calls fail cleanly. The device stays lost for the rest of the
/// process.
fn device_loss_fails_pending_work(ctx: &RuntimeContext) -> CaseResult {
    ctx.require_fault_injection()?;
    let dev = &ctx.device_to_lose()?;
    let s = Stream::new(dev).unwrap();
    let b = s.from_slice(&pattern(1000)).unwrap();
    let release = block_stream(&s);
    let mut out = s.alloc::<f32>(1000).unwrap();
    s.memcpy_dtod(&mut out, &b).unwrap();
    let start = Instant::now();
    dev.inject_fault(Fault::LoseDevice).unwrap();
    let e = s.synchronize().unwrap_err();
    drop(release);
    assert!(e.is_device_lost(), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "pending work must fail once the device is lost, took {:?}",
        start.elapsed()
    );
    assert!(dev.is_lost());
    assert!(s.alloc::<f32>(10).unwrap_err().is_device_lost());
    assert!(Stream::new(dev).unwrap_err().is_device_lost());
    Ok(())
}
