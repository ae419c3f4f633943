//! Copies and fills through streams: round trips, views, overlap, shape errors.

use super::*;
use crate::{case_list, Case, CaseResult, Feature, RuntimeContext};
use knpu::Error;

pub(super) fn cases() -> Vec<Case> {
    case_list!(Runtime, Feature::Copies;
        copies_round_trip,
        fills,
        device_to_device_and_overlap,
        views_and_bounds,
        shape_errors)
}

fn copies_round_trip(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
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
    Ok(())
}

fn fills(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
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
    Ok(())
}

fn device_to_device_and_overlap(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
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
    Ok(())
}

fn views_and_bounds(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
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
    Ok(())
}

fn shape_errors(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let mut a = s.alloc::<f32>(10).unwrap();
    let e = s.memcpy_htod(&mut a, &[1.0; 11]).unwrap_err();
    assert!(matches!(e, Error::Shape { operand: "src", .. }), "{e}");
    let mut host = [0f32; 9];
    let e = s.memcpy_dtoh(&mut host, &a).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    let e = s
        .memset(&mut s.alloc::<[u8; 3]>(4).unwrap(), [1u8; 3])
        .unwrap_err();
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
    // Huge element counts overflow before reaching the device.
    let e = s.alloc::<u64>(usize::MAX / 4).unwrap_err();
    assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
    Ok(())
}
