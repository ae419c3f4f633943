//! The caching allocator over the driver's memory: statistics, stream-ordered reuse, retry after
//! releasing the cache, out-of-memory errors.

use super::*;
use crate::{case_list, Case, CaseResult, Feature, RuntimeContext};
use knpu::{Error, Fault, Stream};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Runtime, Feature::Memory;
        allocator_statistics,
        stream_ordered_reuse,
        dropping_buffer_with_pending_work_is_safe,
        allocation_retry_after_releasing_cache,
        out_of_memory_names_four_figures)
}

fn allocator_statistics(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s = ctx.stream();
    s.synchronize().unwrap();
    dev.empty_cache().unwrap();
    dev.reset_peak_memory_stats();
    let before = dev.memory_stats();
    let a = s.alloc::<u8>(1000).unwrap();
    let st = dev.memory_stats();
    assert_eq!(
        st.allocated_bytes - before.allocated_bytes,
        1024,
        "1000 bytes round to 1024"
    );
    assert_eq!(st.requested_bytes - before.requested_bytes, 1000);
    assert_eq!(st.active_blocks - before.active_blocks, 1);
    assert!(st.reserved_bytes >= st.allocated_bytes);
    let b = s.alloc::<u8>(3 << 20).unwrap();
    let st2 = dev.memory_stats();
    assert_eq!(st2.allocated_bytes - st.allocated_bytes, 3 << 20);
    assert!(st2.peak_allocated_bytes >= st2.allocated_bytes);
    drop(a);
    drop(b);
    let st3 = dev.memory_stats();
    assert_eq!(st3.allocated_bytes, before.allocated_bytes);
    assert_eq!(st3.active_blocks, before.active_blocks);
    assert_eq!(st3.num_frees - before.num_frees, 2);
    assert!(st3.peak_allocated_bytes >= before.allocated_bytes + 1024 + (3 << 20));
    assert!(st3.cached_bytes() > 0, "freed blocks stay cached");
    s.synchronize().unwrap();
    dev.empty_cache().unwrap();
    let st4 = dev.memory_stats();
    assert!(
        st4.reserved_bytes < st3.reserved_bytes,
        "empty_cache returns segments"
    );
    assert_eq!(
        st4.num_segment_frees - st3.num_segment_frees,
        st3.segments - st4.segments
    );
    Ok(())
}

fn stream_ordered_reuse(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s1 = Stream::new(dev).unwrap();
    let s2 = Stream::new(dev).unwrap();
    let a = s1.alloc::<f32>(3000).unwrap();
    let addr = a.device_address();
    drop(a);
    let b = s1.alloc::<f32>(3000).unwrap();
    assert_eq!(
        b.device_address(),
        addr,
        "the same stream reuses a freed block at once"
    );
    // While s1 is busy, a block it freed is not given to s2...
    let release = block_stream(&s1);
    let mut c = s1.alloc::<f32>(5000).unwrap();
    s1.memset(&mut c, 1.0f32).unwrap();
    let caddr = c.device_address();
    drop(c);
    let d = s2.alloc::<f32>(5000).unwrap();
    assert_ne!(d.device_address(), caddr);
    drop(d);
    // ...but once s1's work is done, it is.
    drop(release);
    s1.synchronize().unwrap();
    let reused = (0..4)
        .map(|_| s2.alloc::<f32>(5000).unwrap())
        .collect::<Vec<_>>();
    assert!(
        reused.iter().any(|r| r.device_address() == caddr),
        "s2 may reuse s1's block after s1's work"
    );
    drop(b);
    Ok(())
}

fn dropping_buffer_with_pending_work_is_safe(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s1 = Stream::new(dev).unwrap();
    let s2 = Stream::new(dev).unwrap();
    let release = block_stream(&s1);
    let mut b = s1.alloc::<u8>(4096).unwrap();
    s1.memset(&mut b, 0x11u8).unwrap();
    let addr = b.device_address();
    drop(b);
    // Another stream must not get the block while s1's fill is still queued.
    let other: Vec<_> = (0..8).map(|_| s2.alloc::<u8>(4096).unwrap()).collect();
    assert!(
        other.iter().all(|o| o.device_address() != addr),
        "block reused across streams before its work finished"
    );
    drop(release);
    s1.synchronize().unwrap();
    Ok(())
}

fn allocation_retry_after_releasing_cache(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    ctx.require_fault_injection()?;
    let s = ctx.stream();
    // Leave a cached segment behind, then make the next driver allocation fail once.
    drop(s.alloc::<u8>(12 << 20).unwrap());
    let before = dev.memory_stats();
    assert!(before.cached_bytes() > 0);
    dev.inject_fault(Fault::FailAlloc(1)).unwrap();
    let big = s.alloc::<u8>(40 << 20).unwrap();
    let after = dev.memory_stats();
    assert_eq!(
        after.num_alloc_retries - before.num_alloc_retries,
        1,
        "one retry after releasing the cache"
    );
    assert!(
        after.num_segment_frees > before.num_segment_frees,
        "the retry released cached segments"
    );
    assert_eq!(after.num_ooms, before.num_ooms);
    drop(big);
    dev.inject_fault(Fault::None).unwrap();
    Ok(())
}

fn out_of_memory_names_four_figures(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s = ctx.stream();
    let keep = s.alloc::<u8>(1 << 20).unwrap();
    let (_, total) = dev.memory_info().unwrap();
    let e = s.alloc::<u8>((total + (1 << 30)) as usize).unwrap_err();
    match &e {
        Error::OutOfMemory {
            requested,
            allocated,
            reserved,
            free,
            total: t,
            ..
        } => {
            assert_eq!(*requested, total + (1 << 30));
            assert!(*allocated >= 1 << 20);
            assert!(*reserved >= *allocated);
            assert!(*free <= *t);
            let msg = e.to_string();
            for figure in [requested, allocated, reserved, free] {
                assert!(msg.contains(&figure.to_string()), "{msg}");
            }
        }
        other => panic!("expected OutOfMemory, got {other}"),
    }
    assert!(dev.memory_stats().num_ooms >= 1);
    drop(keep);
    device_still_works(&s);
    Ok(())
}
