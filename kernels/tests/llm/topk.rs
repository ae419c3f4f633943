use crate::common::*;
use knpu_kernels::llm::{argmax, top_k, Element};
use knpu_kernels::{isa, Exec};
use std::cmp::Ordering;

/// The documented order, written out plainly: NaN above everything, -0 == +0, then lower
/// index first.
fn better(a: (f32, usize), b: (f32, usize)) -> Ordering {
    let (va, ia) = a;
    let (vb, ib) = b;
    let by_value = match (va.is_nan(), vb.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => vb.partial_cmp(&va).unwrap(),
    };
    by_value.then(ia.cmp(&ib))
}

fn data<T: Element>(rng: &mut Rng, n: usize, nan_rows: bool, cols: usize) -> Vec<T> {
    (0..n)
        .map(|i| {
            let v = match rng.below(20) {
                // Few distinct values: many ties.
                0..=9 => rng.below(5) as f32 - 2.0,
                10 => -0.0,
                11 => f32::NEG_INFINITY,
                12 if nan_rows && (i / cols.max(1)).is_multiple_of(3) => f32::NAN,
                13 => f32::INFINITY,
                _ => rng.uniform(-10.0, 10.0),
            };
            T::from_f32(v)
        })
        .collect()
}

fn run<T: Element>() {
    let mut rng = Rng::new(9);
    for (rows, cols) in shapes() {
        if cols == 0 {
            continue;
        }
        for nan_rows in [false, true] {
            let x: Vec<T> = data(&mut rng, rows * cols, nan_rows, cols);
            let mut order: Vec<Vec<usize>> = Vec::new();
            for r in 0..rows {
                let row: Vec<f32> = x[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|v| v.to_f32())
                    .collect();
                let mut idx: Vec<usize> = (0..cols).collect();
                idx.sort_by(|&a, &b| better((row[a], a), (row[b], b)));
                order.push(idx);
            }
            for isa in isa::supported() {
                let ctx = format!("{} {isa:?} {rows}x{cols} nan {nan_rows}", name::<T>());
                let exec = Exec::new(isa, par_for(rows * cols));
                let mut am = vec![u32::MAX; rows];
                argmax(&x, &mut am, rows, cols, exec).unwrap();
                for r in 0..rows {
                    assert_eq!(am[r] as usize, order[r][0], "argmax {ctx} row {r}");
                }
                for k in [1usize, 2, 5, 64, cols / 2, cols] {
                    if k > cols {
                        continue;
                    }
                    let mut vals = vec![T::from_f32(1234.0); rows * k];
                    let mut idx = vec![u32::MAX; rows * k];
                    top_k(&x, &mut vals, &mut idx, rows, cols, k, exec).unwrap();
                    for r in 0..rows {
                        for j in 0..k {
                            let want = order[r][j];
                            assert_eq!(
                                idx[r * k + j] as usize,
                                want,
                                "top-{k} {ctx} row {r} rank {j}"
                            );
                            assert_eq!(
                                bytemuck::bytes_of(&vals[r * k + j]),
                                bytemuck::bytes_of(&x[r * cols + want]),
                                "top-{k} value {ctx} row {r} rank {j}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn argmax_and_top_k_match_a_full_sort() {
    for_dtypes!(run);
}

#[test]
fn argmax_and_top_k_on_monotonic_rows() {
    // Ascending rows make every element a new candidate; descending rows make none.
    let n = 1000;
    let up: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 100.0).collect();
    let down: Vec<f32> = up.iter().rev().copied().collect();
    let x: Vec<f32> = up.iter().chain(&down).copied().collect();
    for isa in isa::supported() {
        let mut am = [0u32; 2];
        argmax(
            &x,
            &mut am,
            2,
            n,
            Exec::new(isa, knpu_kernels::Parallelism::None),
        )
        .unwrap();
        assert_eq!(am, [n as u32 - 1, 0], "{isa:?}");
        let k = 7;
        let mut vals = vec![0.0f32; 2 * k];
        let mut idx = vec![0u32; 2 * k];
        top_k(
            &x,
            &mut vals,
            &mut idx,
            2,
            n,
            k,
            Exec::new(isa, knpu_kernels::Parallelism::None),
        )
        .unwrap();
        let want_up: Vec<u32> = (0..k as u32).map(|j| n as u32 - 1 - j).collect();
        let want_down: Vec<u32> = (0..k as u32).collect();
        assert_eq!(&idx[..k], &want_up[..], "{isa:?}");
        assert_eq!(&idx[k..], &want_down[..], "{isa:?}");
    }
}
