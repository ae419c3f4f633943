//! The driver conformance suite: one body of tests, run against every driver.
//!
//! Each test takes the device under test. `conformance_builtin.rs` runs the suite on the
//! software NPU linked into the runtime; `conformance_plugin.rs` on the same simulator built
//! as a shared library and loaded through `KNPU_DRIVER_PATH`, so the plugin path is tested
//! exactly as a vendor's driver would be. A driver that cannot pass a case declares it in
//! its `xfail` list, and the case must then fail: an expected failure that starts passing
//! is reported too.
#![allow(dead_code)]

use knpu::{Device, Error, Event, Fault, Priority, Stream};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tests that read allocator statistics or arm faults hold this exclusively; others share it.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

/// Runs one case, honouring the driver's expected failures.
pub fn run_case(
    driver: &str,
    name: &str,
    xfail: &[&str],
    exclusive: bool,
    f: impl FnOnce() + std::panic::UnwindSafe,
) {
    let _shared;
    let _excl;
    if exclusive {
        _excl = EXCLUSIVE.write();
    } else {
        _shared = EXCLUSIVE.read();
    }
    let expected_to_fail = xfail.contains(&name);
    let r = std::panic::catch_unwind(f);
    match (r.is_ok(), expected_to_fail) {
        (true, false) => eprintln!("conformance[{driver}] {name}: pass"),
        (false, true) => eprintln!("conformance[{driver}] {name}: expected failure"),
        (true, true) => {
            panic!("conformance[{driver}] {name}: declared as an expected failure but passed")
        }
        (false, false) => std::panic::resume_unwind(r.expect_err("failed")),
    }
}

/// Declares every case of the suite as a `#[test]` against `$device()`.
#[macro_export]
macro_rules! conformance_suite {
    ($driver:expr, $device:path, xfail = $xfail:tt) => {
        $crate::conformance_suite!(@cases $driver, $device, $xfail;
            properties, copies_round_trip, fills, device_to_device_and_overlap, views_and_bounds,
            shape_errors, out_of_bounds_address_is_a_device_fault, elementwise_kernels,
            stream_order_and_host_callbacks, cross_stream_event_wait, query_before_and_after,
            elapsed_times_positive_and_monotone, unrecorded_event, destroy_stream_with_pending_work,
            priorities, dropping_buffer_with_pending_work_is_safe;
            use_after_free_is_a_device_fault, injected_kernel_fault_surfaces_at_synchronize,
            allocator_statistics, stream_ordered_reuse, allocation_retry_after_releasing_cache,
            out_of_memory_names_four_figures);
    };
    (@cases $driver:expr, $device:path, $xfail:tt; $($case:ident),*; $($excl:ident),*) => {
        $(
            #[test]
            fn $case() {
                conformance::run_case($driver, stringify!($case), &$xfail, false, || conformance::$case(&$device()));
            }
        )*
        $(
            #[test]
            fn $excl() {
                conformance::run_case($driver, stringify!($excl), &$xfail, true, || conformance::$excl(&$device()));
            }
        )*
    };
}

fn pattern(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32) * 0.5 - 3.0).collect()
}

pub fn properties(dev: &Device) {
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
    assert!(dev
        .supports_kernel(
            knpu::abi::KNPU_KERNEL_ELEMENTWISE,
            knpu::abi::KNPU_DTYPE_F32
        )
        .unwrap());
    assert!(!dev
        .supports_kernel(0xFFFF_FFF0, knpu::abi::KNPU_DTYPE_F32)
        .unwrap());
}

pub fn copies_round_trip(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    for n in [0usize, 1, 7, 4097, (1 << 20) / 4 + 3] {
        let src = pattern(n);
        let b = s.from_slice(&src).unwrap();
        assert_eq!(b.len(), n);
        assert_eq!(b.to_vec().unwrap(), src, "n = {n}");
    }
    let bytes: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(s.from_slice(&bytes).unwrap().to_vec().unwrap(), bytes);
    let halves: Vec<half::f16> = (0..33).map(|i| half::f16::from_f32(i as f32)).collect();
    assert_eq!(s.from_slice(&halves).unwrap().to_vec().unwrap(), halves);
    // Asynchronous copies with an owned source, then a blocking read.
    let mut b = s.alloc::<f32>(100).unwrap();
    s.memcpy_htod_owned(&mut b, pattern(100)).unwrap();
    let mut out = vec![0f32; 100];
    // SAFETY: `out` lives until the synchronize below and is not touched before it.
    unsafe { s.memcpy_dtoh_async(&mut out, &b).unwrap() };
    s.synchronize().unwrap();
    assert_eq!(out, pattern(100));
}

pub fn fills(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let mut b8 = s.alloc::<u8>(13).unwrap();
    s.memset(&mut b8, 0xABu8).unwrap();
    assert_eq!(b8.to_vec().unwrap(), vec![0xAB; 13]);
    let mut b16 = s.alloc::<u16>(9).unwrap();
    s.memset(&mut b16, 0xBEEFu16).unwrap();
    assert_eq!(b16.to_vec().unwrap(), vec![0xBEEF; 9]);
    let mut b32 = s.alloc::<f32>(1000).unwrap();
    s.memset(&mut b32, 2.5f32).unwrap();
    assert_eq!(b32.to_vec().unwrap(), vec![2.5; 1000]);
    let mut b64 = s.alloc::<u64>(5).unwrap();
    s.memset(&mut b64, 0x0102_0304_0506_0708u64).unwrap();
    assert_eq!(b64.to_vec().unwrap(), vec![0x0102_0304_0506_0708; 5]);
    let z = s.alloc_zeroed::<u32>(777).unwrap();
    assert_eq!(z.to_vec().unwrap(), vec![0; 777]);
    let mut part = s.from_slice(&[1u32; 10]).unwrap();
    s.memset(&mut part.slice_mut(2..5).unwrap(), 9u32).unwrap();
    assert_eq!(part.to_vec().unwrap(), vec![1, 1, 9, 9, 9, 1, 1, 1, 1, 1]);
}

pub fn device_to_device_and_overlap(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let a = s.from_slice(&pattern(1000)).unwrap();
    let mut b = s.alloc::<f32>(1000).unwrap();
    s.memcpy_dtod(&mut b, &a).unwrap();
    assert_eq!(b.to_vec().unwrap(), pattern(1000));
    // Overlapping move forward and backward behaves as memmove.
    let mut v = s.from_slice(&(0..10u32).collect::<Vec<_>>()).unwrap();
    s.copy_within(&mut v, 0, 2, 6).unwrap();
    assert_eq!(v.to_vec().unwrap(), vec![0, 1, 0, 1, 2, 3, 4, 5, 8, 9]);
    s.copy_within(&mut v, 3, 1, 5).unwrap();
    assert_eq!(v.to_vec().unwrap(), vec![0, 1, 2, 3, 4, 5, 4, 5, 8, 9]);
    let e = s.copy_within(&mut v, 8, 0, 3).unwrap_err();
    assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
}

pub fn views_and_bounds(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let a = s.from_slice(&pattern(64)).unwrap();
    let mut b = s.alloc_zeroed::<f32>(64).unwrap();
    s.memcpy_dtod(&mut b.slice_mut(10..20).unwrap(), &a.slice(30..40).unwrap())
        .unwrap();
    let got = b.to_vec().unwrap();
    assert_eq!(&got[10..20], &pattern(64)[30..40]);
    assert!(got[..10].iter().chain(&got[20..]).all(|&x| x == 0.0));
    assert!(matches!(a.slice(60..65), Err(Error::InvalidValue { .. })));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..3;
    assert!(matches!(
        a.slice(backwards),
        Err(Error::InvalidValue { .. })
    ));
    let mut host = vec![0f32; 3];
    s.memcpy_dtoh(&mut host, &a.slice(61..).unwrap()).unwrap();
    assert_eq!(host, pattern(64)[61..].to_vec());
}

pub fn shape_errors(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let mut a = s.alloc::<f32>(10).unwrap();
    let e = s.memcpy_htod(&mut a, &[1.0; 11]).unwrap_err();
    assert!(matches!(e, Error::Shape { operand: "src", .. }), "{e}");
    let b = s.alloc::<f32>(9).unwrap();
    let e = knpu::ops::add(&s, &a, &b, &mut s.alloc::<f32>(10).unwrap()).unwrap_err();
    assert!(matches!(e, Error::Shape { operand: "b", .. }), "{e}");
    let e = s
        .memset(&mut s.alloc::<[u8; 3]>(4).unwrap(), [1u8; 3])
        .unwrap_err();
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
    // Huge element counts overflow before reaching the device.
    let e = s.alloc::<u64>(usize::MAX / 4).unwrap_err();
    assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
}

fn assert_fault_names_address(e: &Error, addr: u64) {
    assert!(
        matches!(e, Error::IllegalAddress { .. }),
        "expected an illegal address fault, got {e}"
    );
    let text = e.to_string().to_lowercase();
    assert!(
        text.contains(&format!("{addr:#x}")),
        "message must name address {addr:#x}: {text}"
    );
}

fn device_still_works(s: &Stream) {
    let b = s.from_slice(&pattern(257)).unwrap();
    assert_eq!(b.to_vec().unwrap(), pattern(257));
}

pub fn out_of_bounds_address_is_a_device_fault(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

pub fn use_after_free_is_a_device_fault(dev: &Device) {
    // A buffer large enough to get a driver allocation of its own, so releasing the cache
    // returns exactly that allocation to the driver.
    let s = Stream::new(dev).unwrap();
    let b = s.alloc_zeroed::<u8>(64 << 20).unwrap();
    let addr = b.device_address();
    s.synchronize().unwrap();
    drop(b);
    dev.empty_cache().unwrap();
    let mut host = vec![0u8; 16];
    let e = s.memcpy_dtoh_raw(&mut host, addr).unwrap_err();
    assert_fault_names_address(&e, addr);
    device_still_works(&s);
}

pub fn injected_kernel_fault_surfaces_at_synchronize(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let a = s.from_slice(&pattern(100)).unwrap();
    let mut out = s.alloc::<f32>(100).unwrap();
    // Runs exclusively, so the next elementwise launch on the device is this one.
    dev.inject_fault(Fault::Kernel {
        n: 1,
        kernel_id: knpu::abi::KNPU_KERNEL_ELEMENTWISE,
    })
    .unwrap();
    knpu::ops::scale(&s, 2.0, &a, &mut out).unwrap();
    let e = s.synchronize().unwrap_err();
    assert!(matches!(e, Error::KernelFault { .. }), "{e}");
    // Not sticky: the stream runs the same kernel correctly next time.
    knpu::ops::scale(&s, 2.0, &a, &mut out).unwrap();
    s.synchronize().unwrap();
    assert_eq!(
        out.to_vec().unwrap(),
        pattern(100).iter().map(|x| x * 2.0).collect::<Vec<_>>()
    );
}

pub fn elementwise_kernels(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    for n in [1usize, 7, 1000, 100_003] {
        let x = pattern(n);
        let y: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32).collect();
        let a = s.from_slice(&x).unwrap();
        let b = s.from_slice(&y).unwrap();
        let mut o = s.alloc::<f32>(n).unwrap();
        knpu::ops::add(&s, &a, &b, &mut o).unwrap();
        assert_eq!(
            o.to_vec().unwrap(),
            x.iter().zip(&y).map(|(a, b)| a + b).collect::<Vec<_>>()
        );
        knpu::ops::mul(&s, &a, &b, &mut o).unwrap();
        assert_eq!(
            o.to_vec().unwrap(),
            x.iter().zip(&y).map(|(a, b)| a * b).collect::<Vec<_>>()
        );
        knpu::ops::axpy(&s, 3.0, &a, &b, &mut o).unwrap();
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| 3.0 * a + b).collect();
        for (g, w) in o.to_vec().unwrap().iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }
    let h: Vec<half::bf16> = (0..50).map(|i| half::bf16::from_f32(i as f32)).collect();
    let a = s.from_slice(&h).unwrap();
    let mut o = s.alloc::<half::bf16>(50).unwrap();
    knpu::ops::add(&s, &a, &a, &mut o).unwrap();
    assert_eq!(
        o.to_vec().unwrap(),
        h.iter()
            .map(|v| half::bf16::from_f32(v.to_f32() * 2.0))
            .collect::<Vec<_>>()
    );
}

pub fn stream_order_and_host_callbacks(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut acc = s.from_slice(&[0f32; 16]).unwrap();
    let one = s.from_slice(&[1f32; 16]).unwrap();
    for i in 0..50 {
        let mut tmp = s.alloc::<f32>(16).unwrap();
        knpu::ops::add(&s, &acc, &one, &mut tmp).unwrap();
        s.memcpy_dtod(&mut acc, &tmp).unwrap();
        let l = log.clone();
        s.launch_host_func(move || l.lock().push(i)).unwrap();
    }
    s.synchronize().unwrap();
    assert_eq!(*log.lock(), (0..50).collect::<Vec<_>>());
    assert_eq!(acc.to_vec().unwrap(), vec![50.0; 16]);
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
}

/// Holds a stream busy until the returned sender is dropped or sent to.
fn block_stream(s: &Stream) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    s.launch_host_func(move || {
        let _ = rx.recv_timeout(Duration::from_secs(10));
    })
    .unwrap();
    tx
}

pub fn cross_stream_event_wait(dev: &Device) {
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
}

pub fn query_before_and_after(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

pub fn elapsed_times_positive_and_monotone(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

pub fn unrecorded_event(dev: &Device) {
    let e = Event::new(dev);
    assert!(e.query().unwrap());
    e.synchronize().unwrap();
    let s = Stream::new(dev).unwrap();
    s.wait_event(&e).unwrap();
    s.synchronize().unwrap();
    let other = Event::new(dev);
    other.record(&s).unwrap();
    other.synchronize().unwrap();
    assert!(matches!(
        Event::elapsed_ms(&e, &other),
        Err(Error::InvalidValue { .. })
    ));
}

pub fn destroy_stream_with_pending_work(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

pub fn priorities(dev: &Device) {
    for p in [Priority::Low, Priority::Normal, Priority::High] {
        let s = Stream::with_priority(dev, p).unwrap();
        assert_eq!(s.priority(), p);
        device_still_works(&s);
    }
}

pub fn dropping_buffer_with_pending_work_is_safe(dev: &Device) {
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
}

pub fn allocator_statistics(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

pub fn stream_ordered_reuse(dev: &Device) {
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
}

pub fn allocation_retry_after_releasing_cache(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

pub fn out_of_memory_names_four_figures(dev: &Device) {
    let s = Stream::new(dev).unwrap();
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
}

/// Loses `dev` and checks that pending work fails within a bounded time and later calls
/// fail cleanly. Destroys the device for the rest of the process: run it in a child.
pub fn device_loss_fails_pending_work(dev: &Device) {
    let s = Stream::new(dev).unwrap();
    let b = s.from_slice(&pattern(1000)).unwrap();
    let release = block_stream(&s);
    let mut out = s.alloc::<f32>(1000).unwrap();
    knpu::ops::scale(&s, 2.0, &b, &mut out).unwrap();
    let start = Instant::now();
    dev.inject_fault(Fault::LoseDevice).unwrap();
    let e = s.synchronize().unwrap_err();
    drop(release);
    assert!(e.is_device_lost(), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "pending work must fail promptly, took {:?}",
        start.elapsed()
    );
    assert!(dev.is_lost());
    assert!(s.alloc::<f32>(10).unwrap_err().is_device_lost());
    assert!(Stream::new(dev).unwrap_err().is_device_lost());
}
