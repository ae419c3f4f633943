use crate::common::*;
use half::{bf16, f16};
use knpu_kernels::llm::{sample, Element, SampleParams};
use knpu_kernels::{isa, Exec, KernelError, Parallelism};

/// The rule of `knpu_kernels::llm::sample`, written out plainly: a full sort of the row.
fn reference(row: &[f32], u: f64, p: &SampleParams) -> u32 {
    let argmax = || {
        row.iter().position(|v| v.is_nan()).unwrap_or_else(|| {
            let mut best = 0;
            for i in 0..row.len() {
                if row[i] > row[best] {
                    best = i;
                }
            }
            best
        }) as u32
    };
    if p.temperature == 0.0 {
        return argmax();
    }
    let z: Vec<f64> = row
        .iter()
        .map(|&x| {
            if x.is_nan() {
                f64::NEG_INFINITY
            } else {
                x as f64 / p.temperature as f64
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).unwrap().then(a.cmp(&b)));
    let k = if p.top_k == 0 { row.len() } else { p.top_k };
    order.truncate(k);
    let top = z[order[0]];
    if top == f64::NEG_INFINITY {
        return argmax();
    }
    let w = |i: usize| {
        if top == f64::INFINITY {
            (z[i] == f64::INFINITY) as u8 as f64
        } else {
            (z[i] - top).exp()
        }
    };
    if p.top_p < 1.0 {
        order.sort_by(|&a, &b| w(b).partial_cmp(&w(a)).unwrap().then(a.cmp(&b)));
        let total: f64 = order.iter().map(|&i| w(i)).sum();
        let mut sum = 0.0;
        let mut keep = order.len();
        for (n, &i) in order.iter().enumerate() {
            sum += w(i);
            if sum >= p.top_p as f64 * total {
                keep = n + 1;
                break;
            }
        }
        order.truncate(keep);
    }
    order.sort();
    let total: f64 = order.iter().map(|&i| w(i)).sum();
    let mut sum = 0.0;
    for &i in &order {
        sum += w(i);
        if u * total < sum {
            return i as u32;
        }
    }
    *order
        .iter()
        .rev()
        .find(|&&i| w(i) > 0.0)
        .unwrap_or(&order[0]) as u32
}

/// Logits with ties, infinities, -0 and (in some rows) NaN.
fn logits<T: Element>(rng: &mut Rng, rows: usize, cols: usize) -> Vec<T> {
    (0..rows * cols)
        .map(|i| {
            let r = i / cols;
            let v = match rng.below(40) {
                0..=5 => rng.below(4) as f32 - 1.0,
                6 => -0.0,
                7 => f32::NEG_INFINITY,
                8 if r % 5 == 3 => f32::NAN,
                9 if r % 7 == 2 => f32::INFINITY,
                _ => rng.uniform(-8.0, 8.0),
            };
            T::from_f32(v)
        })
        .collect()
}

fn grid(cols: usize) -> Vec<SampleParams> {
    let mut v = Vec::new();
    for temperature in [0.0, 0.35, 1.0, 4.0] {
        for top_k in [0, 1, 2, cols / 2, cols] {
            for top_p in [1.0, 0.9, 0.3, 1e-6] {
                v.push(SampleParams {
                    temperature,
                    top_k: top_k.min(cols),
                    top_p,
                });
            }
        }
    }
    v
}

fn run<T: Element>() {
    let mut rng = Rng::new(20);
    let shapes = [
        (0, 5),
        (1, 1),
        (3, 2),
        (7, 17),
        (5, 64),
        (2, 65),
        (3, 1000),
        (1, 4097),
    ];
    for (rows, cols) in shapes {
        let x: Vec<T> = logits(&mut rng, rows, cols);
        // Some rows entirely -inf, one entirely NaN.
        let mut x = x;
        if rows >= 3 {
            x[cols..2 * cols].fill(T::from_f32(f32::NEG_INFINITY));
            x[2 * cols..3 * cols].fill(T::from_f32(f32::NAN));
        }
        let wide: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
        for p in grid(cols) {
            let u: Vec<f64> = (0..rows)
                .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
                .collect();
            let want: Vec<u32> = (0..rows)
                .map(|r| reference(&wide[r * cols..(r + 1) * cols], u[r], &p))
                .collect();
            for isa in isa::supported() {
                let mut got = vec![u32::MAX; rows];
                sample(
                    &x,
                    &u,
                    &mut got,
                    rows,
                    cols,
                    &p,
                    Exec::new(isa, par_for(rows * cols)),
                )
                .unwrap();
                assert_eq!(got, want, "{} {isa:?} {rows}x{cols} {p:?}", name::<T>());
            }
        }
    }
}

#[test]
fn sample_matches_reference_f32() {
    run::<f32>();
}

#[test]
fn sample_matches_reference_f16() {
    run::<f16>();
}

#[test]
fn sample_matches_reference_bf16() {
    run::<bf16>();
}

#[test]
fn many_rows_split_across_threads_match_one_thread() {
    let (rows, cols) = (40, 3001);
    let mut rng = Rng::new(3);
    let x: Vec<f32> = random(&mut rng, rows * cols, -5.0, 5.0);
    let u: Vec<f64> = (0..rows).map(|r| (r as f64 + 0.5) / rows as f64).collect();
    let p = SampleParams {
        temperature: 0.9,
        top_k: 100,
        top_p: 0.95,
    };
    let mut one = vec![0u32; rows];
    let mut two = vec![0u32; rows];
    sample(&x, &u, &mut one, rows, cols, &p, Parallelism::None).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| sample(&x, &u, &mut two, rows, cols, &p, Parallelism::Rayon(2)).unwrap());
    assert_eq!(one, two);
    for r in 0..rows {
        assert_eq!(one[r], reference(&x[r * cols..(r + 1) * cols], u[r], &p));
    }
}

/// With a fixed seed (so the test is deterministic) the ids drawn from one row follow the
/// truncated, renormalised softmax, and ids outside the kept set never appear.
#[test]
fn frequencies_follow_the_truncated_softmax() {
    let row: [f32; 10] = [2.0, 1.5, 1.4, 0.0, -1.0, 3.0, -0.5, 0.9, 2.2, -3.0];
    let p = SampleParams {
        temperature: 0.7,
        top_k: 6,
        top_p: 0.8,
    };
    // Expected: softmax of the top 6 at T = 0.7, then the shortest prefix reaching 0.8.
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
    order.truncate(6);
    let w: Vec<f64> = order
        .iter()
        .map(|&i| ((row[i] - row[5]) as f64 / 0.7).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut keep = 0;
    let mut sum = 0.0;
    while sum < 0.8 * total {
        sum += w[keep];
        keep += 1;
    }
    let mut expected = [0.0f64; 10];
    for j in 0..keep {
        expected[order[j]] = w[j] / sum;
    }
    assert!((2..6).contains(&keep), "the test must cut by both rules");

    let draws = 20_000;
    let x: Vec<f32> = row.repeat(draws);
    let mut rng = Rng::new(1234);
    let u: Vec<f64> = (0..draws)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        .collect();
    let mut ids = vec![0u32; draws];
    sample(&x, &u, &mut ids, draws, 10, &p, Parallelism::None).unwrap();
    let mut counts = [0usize; 10];
    for &id in &ids {
        counts[id as usize] += 1;
    }
    for i in 0..10 {
        let freq = counts[i] as f64 / draws as f64;
        if expected[i] == 0.0 {
            assert_eq!(counts[i], 0, "id {i} is outside the kept set");
        } else {
            // 5 standard deviations of a binomial proportion at n = 20000.
            let sd = (expected[i] * (1.0 - expected[i]) / draws as f64).sqrt();
            assert!(
                (freq - expected[i]).abs() < 5.0 * sd,
                "id {i}: {freq} vs {}",
                expected[i]
            );
        }
    }
}

#[test]
fn bad_parameters_and_short_slices_are_errors() {
    let x = [0.0f32; 8];
    let mut out = [7u32; 2];
    let u = [0.5, 0.5];
    let ok = SampleParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
    };
    let call = |p: SampleParams, u: &[f64], out: &mut [u32]| {
        sample(&x, u, out, 2, 4, &p, Parallelism::None)
    };
    for p in [
        SampleParams {
            temperature: -1.0,
            ..ok
        },
        SampleParams {
            temperature: f32::NAN,
            ..ok
        },
        SampleParams { top_p: 0.0, ..ok },
        SampleParams { top_p: 1.5, ..ok },
        SampleParams { top_k: 5, ..ok },
    ] {
        assert!(
            matches!(call(p, &u, &mut out), Err(KernelError::BadShape { .. })),
            "{p:?}"
        );
    }
    assert!(matches!(
        call(ok, &[0.5], &mut out),
        Err(KernelError::SliceTooShort { .. })
    ));
    assert!(matches!(
        call(ok, &[0.5, 1.0], &mut out),
        Err(KernelError::BadShape { .. })
    ));
    assert!(matches!(
        call(ok, &u, &mut out[..1]),
        Err(KernelError::SliceTooShort { .. })
    ));
    assert_eq!(out, [7, 7], "nothing is written on an error");
    // Greedy needs no uniform numbers.
    let greedy = SampleParams {
        temperature: 0.0,
        ..ok
    };
    call(greedy, &[], &mut out).unwrap();
    assert_eq!(out, [0, 0]);
}
