//! `ops::sample` on device 0: ids equal `knpu_kernels::llm::sample` on host copies with the
//! op definition's uniform numbers, the device counter advances once per launch (so graph
//! replays draw fresh ids, reproducibly from the seed), and bad arguments are errors at the
//! call.

use half::bf16;
use knpu::abi::ops::sample::uniform;
use knpu::graph::CaptureMode;
use knpu::ops::{self, SampleParams};
use knpu::{DeviceBuffer, Error};
use knpu_kernels::llm::{self, Element};
use knpu_kernels::Parallelism;

mod common;
use common::{rand_values, stream};

fn logits<T: Element>(n: usize, seed: u64) -> Vec<T> {
    rand_values(n, seed, -4.0, 4.0)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

/// The ids the host kernel draws for `counter`.
fn host<T: Element>(
    x: &[T],
    rows: usize,
    vocab: usize,
    p: &SampleParams,
    counter: u64,
) -> Vec<u32> {
    let u: Vec<f64> = (0..rows as u64)
        .map(|r| uniform(p.seed, counter, r))
        .collect();
    let hp = llm::SampleParams {
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
    };
    let mut out = vec![0u32; rows];
    llm::sample(x, &u, &mut out, rows, vocab, &hp, Parallelism::None).unwrap();
    out
}

/// Sampling settings: greedy, plain, top-k, top-p, both, and a large top-k with top-p.
fn grid() -> Vec<SampleParams> {
    let params = |temperature, top_k, top_p| SampleParams {
        temperature,
        top_k,
        top_p,
        seed: 42,
    };
    vec![
        params(0.0, 0, 1.0),
        params(1.0, 0, 1.0),
        params(0.7, 40, 1.0),
        params(1.3, 0, 0.9),
        params(0.5, 3, 0.5),
        params(2.0, 1000, 0.99),
    ]
}

fn matches_host<T: Element + knpu::DType>() {
    let s = stream();
    for (rows, vocab) in [(1, 1), (3, 1000), (5, 70_001)] {
        let x: Vec<T> = logits(rows * vocab, vocab as u64);
        let dx = s.from_slice(&x).unwrap();
        let mut counter = s.from_slice(&[5u64]).unwrap();
        let mut out = s.alloc_zeroed::<u32>(rows).unwrap();
        let mut out_i = s.alloc_zeroed::<i32>(rows).unwrap();
        let mut c = 5;
        for p in grid() {
            let p = SampleParams {
                top_k: p.top_k.min(vocab),
                ..p
            };
            ops::sample(&s, &dx, &mut out, rows, vocab, &p, Some(&mut counter)).unwrap();
            s.synchronize().unwrap();
            assert_eq!(
                out.to_vec().unwrap(),
                host(&x, rows, vocab, &p, c),
                "{rows}x{vocab} {p:?}"
            );
            c += 1;
            ops::sample(&s, &dx, &mut out_i, rows, vocab, &p, Some(&mut counter)).unwrap();
            s.synchronize().unwrap();
            let want: Vec<i32> = host(&x, rows, vocab, &p, c)
                .iter()
                .map(|&i| i as i32)
                .collect();
            assert_eq!(
                out_i.to_vec().unwrap(),
                want,
                "i32 ids {rows}x{vocab} {p:?}"
            );
            c += 1;
            assert_eq!(
                counter.to_vec().unwrap(),
                vec![c],
                "one increment per launch"
            );
        }
    }
}

#[test]
fn sample_matches_the_host_kernel_and_advances_the_counter() {
    matches_host::<f32>();
    matches_host::<bf16>();
}

#[test]
fn greedy_needs_no_counter() {
    let s = stream();
    let (rows, vocab) = (4, 333);
    let x: Vec<f32> = logits(rows * vocab, 9);
    let dx = s.from_slice(&x).unwrap();
    let mut out = s.alloc_zeroed::<u32>(rows).unwrap();
    let p = SampleParams {
        temperature: 0.0,
        ..SampleParams::default()
    };
    ops::sample(&s, &dx, &mut out, rows, vocab, &p, None).unwrap();
    s.synchronize().unwrap();
    let mut want = vec![0u32; rows];
    llm::argmax(&x, &mut want, rows, vocab, Parallelism::None).unwrap();
    assert_eq!(out.to_vec().unwrap(), want);
}

#[test]
fn graph_replays_draw_fresh_ids_reproducibly() {
    let s = stream();
    let (rows, vocab) = (4, 2000);
    // Flat logits: every replay's ids are spread over the whole vocabulary.
    let x: Vec<f32> = logits(rows * vocab, 3)
        .iter()
        .map(|v: &f32| v * 0.01)
        .collect();
    let dx = s.from_slice(&x).unwrap();
    let mut counter: DeviceBuffer<u64> = s.from_slice(&[0u64]).unwrap();
    let mut out = s.alloc_zeroed::<u32>(rows).unwrap();
    let p = SampleParams {
        seed: 7,
        ..SampleParams::default()
    };
    s.synchronize().unwrap();
    s.begin_capture(CaptureMode::ThreadLocal).unwrap();
    ops::sample(&s, &dx, &mut out, rows, vocab, &p, Some(&mut counter)).unwrap();
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    let mut seen = Vec::new();
    for replay in 0..4u64 {
        exec.launch(&s).unwrap();
        s.synchronize().unwrap();
        let ids = out.to_vec().unwrap();
        assert_eq!(ids, host(&x, rows, vocab, &p, replay), "replay {replay}");
        assert!(!seen.contains(&ids), "replay {replay} repeated earlier ids");
        seen.push(ids);
    }
    assert_eq!(counter.to_vec().unwrap(), vec![4]);
    // Resetting the counter replays the same sequence.
    counter.copy_from_host(&[0]).unwrap();
    exec.launch(&s).unwrap();
    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), seen[0]);
}

#[test]
fn bad_arguments_are_errors_at_the_call() {
    let s = stream();
    let (rows, vocab) = (2, 10);
    let dx = s.from_slice(&vec![0f32; rows * vocab]).unwrap();
    let mut out = s.alloc_zeroed::<u32>(rows).unwrap();
    let mut short = s.alloc_zeroed::<u32>(rows - 1).unwrap();
    let mut counter = s.from_slice(&[0u64]).unwrap();
    let mut two = s.from_slice(&[0u64, 0]).unwrap();
    let ok = SampleParams::default();
    let with = |change: fn(&mut SampleParams)| {
        let mut p = ok;
        change(&mut p);
        p
    };
    let bad = [
        with(|p| p.temperature = -1.0),
        with(|p| p.temperature = f32::INFINITY),
        with(|p| p.top_p = 0.0),
        with(|p| p.top_p = 1.5),
        with(|p| p.top_k = 11),
    ];
    for p in bad {
        let e = ops::sample(&s, &dx, &mut out, rows, vocab, &p, Some(&mut counter)).unwrap_err();
        assert!(matches!(e, Error::InvalidValue { .. }), "{p:?}: {e}");
    }
    let e = ops::sample(&s, &dx, &mut short, rows, vocab, &ok, Some(&mut counter)).unwrap_err();
    assert!(matches!(e, Error::Shape { operand: "out", .. }), "{e}");
    let e = ops::sample(&s, &dx, &mut out, rows, vocab + 1, &ok, Some(&mut counter)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                operand: "logits",
                ..
            }
        ),
        "{e}"
    );
    let e = ops::sample(&s, &dx, &mut out, rows, vocab, &ok, None).unwrap_err();
    assert!(e.to_string().contains("rng_counter"), "{e}");
    let e = ops::sample(&s, &dx, &mut out, rows, vocab, &ok, Some(&mut two)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                operand: "rng_counter",
                ..
            }
        ),
        "{e}"
    );
    s.synchronize().unwrap();
    assert_eq!(counter.to_vec().unwrap(), vec![0], "nothing was queued");
}
