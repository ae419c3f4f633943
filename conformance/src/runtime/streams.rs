//! Streams and events (the runtime's queues and semaphores): order, host callbacks, cross-stream
//! waits, queries, timing, priorities.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::{case_list, Case, CaseResult, Feature, RuntimeContext};
use knpu::{Error, Event, Priority, Stream};

pub(super) fn cases() -> Vec<Case> {
    case_list!(Runtime, Feature::QueuesAndSemaphores;
        stream_order_and_host_callbacks,
        cross_stream_event_wait,
        query_before_and_after,
        elapsed_times_positive_and_monotone,
        unrecorded_event,
        destroy_stream_with_pending_work,
        priorities)
}

fn stream_order_and_host_callbacks(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let log = Arc::new(Mutex::new(Vec::new()));
    // Each step fills a scratch buffer with its index and copies it into its own slot: the
    // history shows every copy saw the fill queued just before it.
    let mut scratch = s.alloc::<u32>(1).unwrap();
    let mut history = s.alloc_zeroed::<u32>(50).unwrap();
    for i in 0..50u32 {
        s.memset(&mut scratch, i).unwrap();
        let at = i as usize;
        s.memcpy_dtod(&mut history.slice_mut(at..at + 1).unwrap(), &scratch)
            .unwrap();
        let l = log.clone();
        s.launch_host_func(move || l.lock().unwrap().push(i))
            .unwrap();
    }
    s.synchronize().unwrap();
    assert_eq!(*log.lock().unwrap(), (0..50).collect::<Vec<_>>());
    assert_eq!(history.to_vec().unwrap(), (0..50).collect::<Vec<_>>());
    // A callback runs after the work queued before it.
    let seen = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(AtomicBool::new(false));
    let g2 = gate.clone();
    s.launch_host_func(move || {
        while !g2.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .unwrap();
    let s2 = seen.clone();
    s.launch_host_func(move || s2.store(true, Ordering::Release))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !seen.load(Ordering::Acquire),
        "second callback ran before the first finished"
    );
    gate.store(true, Ordering::Release);
    s.synchronize().unwrap();
    assert!(seen.load(Ordering::Acquire));
    Ok(())
}

fn cross_stream_event_wait(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s1 = Stream::new(dev).unwrap();
    let s2 = Stream::new(dev).unwrap();
    let mut buf = s1.from_slice(&[0u32; 8]).unwrap();
    s1.synchronize().unwrap();
    let release = block_stream(&s1);
    s1.memset(&mut buf, 7u32).unwrap();
    let e = Event::new(dev);
    e.record(&s1).unwrap();
    s2.wait_event(&e).unwrap();
    let mut copy = s2.alloc::<u32>(8).unwrap();
    s2.memcpy_dtod(&mut copy, &buf).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert!(!s2.query().unwrap(), "s2 must wait for s1's event");
    drop(release);
    s2.synchronize().unwrap();
    assert_eq!(copy.to_vec().unwrap(), vec![7; 8]);
    Ok(())
}

fn query_before_and_after(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s = ctx.stream();
    assert!(s.query().unwrap(), "an idle stream is complete");
    let release = block_stream(&s);
    let e = Event::with_timing(dev, false);
    e.record(&s).unwrap();
    assert!(!s.query().unwrap());
    assert!(!e.query().unwrap());
    release.send(()).unwrap();
    s.synchronize().unwrap();
    assert!(s.query().unwrap());
    assert!(e.query().unwrap());
    e.synchronize().unwrap();
    Ok(())
}

fn elapsed_times_positive_and_monotone(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let s = ctx.stream();
    let events: Vec<Event> = (0..4).map(|_| Event::new(dev)).collect();
    let src = pattern(1 << 18);
    let mut b = s.alloc::<f32>(src.len()).unwrap();
    events[0].record(&s).unwrap();
    for e in &events[1..] {
        s.memcpy_htod_owned(&mut b, src.clone()).unwrap();
        e.record(&s).unwrap();
    }
    events[3].synchronize().unwrap();
    let mut last = 0.0;
    for e in &events[1..] {
        let t = Event::elapsed_ms(&events[0], e).unwrap();
        assert!(t > 0.0, "elapsed {t} ms must be positive");
        assert!(t >= last, "elapsed times must grow: {t} < {last}");
        last = t;
    }
    // Timing an event without timing, or one not finished, is an error.
    let plain = Event::with_timing(dev, false);
    plain.record(&s).unwrap();
    assert!(matches!(
        Event::elapsed_ms(&events[0], &plain),
        Err(Error::InvalidValue { .. })
    ));
    let release = block_stream(&s);
    let pending = Event::new(dev);
    pending.record(&s).unwrap();
    assert!(matches!(
        Event::elapsed_ms(&events[0], &pending),
        Err(Error::NotReady { .. })
    ));
    drop(release);
    s.synchronize().unwrap();
    Ok(())
}

fn unrecorded_event(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    let e = Event::new(dev);
    assert!(e.query().unwrap());
    e.synchronize().unwrap();
    let s = ctx.stream();
    s.wait_event(&e).unwrap();
    s.synchronize().unwrap();
    let other = Event::new(dev);
    other.record(&s).unwrap();
    other.synchronize().unwrap();
    assert!(matches!(
        Event::elapsed_ms(&e, &other),
        Err(Error::InvalidValue { .. })
    ));
    Ok(())
}

fn destroy_stream_with_pending_work(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    s.launch_host_func(move || {
        std::thread::sleep(Duration::from_millis(30));
        d2.store(true, Ordering::Release);
    })
    .unwrap();
    let mut b = s.alloc::<f32>(1000).unwrap();
    s.memset(&mut b, 1.0f32).unwrap();
    drop(b);
    drop(s);
    assert!(
        done.load(Ordering::Acquire),
        "dropping a stream waits for its queued work"
    );
    Ok(())
}

fn priorities(ctx: &RuntimeContext) -> CaseResult {
    let dev = &ctx.device;
    for p in [Priority::Low, Priority::Normal, Priority::High] {
        let s = Stream::with_priority(dev, p).unwrap();
        assert_eq!(s.priority(), p);
        device_still_works(&s);
    }
    Ok(())
}
