//! ABI 2.1 kernels through `knpu::ops`: KNPU_KERNEL_SAMPLE (ids against a plain host rule
//! with the header's uniform numbers, the device counter advancing once per launch) and
//! KNPU_BINARY_DIV. A driver without them (an ABI 2.0 driver, or one that reports no SAMPLE)
//! skips these cases through the runtime's `NotSupported`.

use knpu::abi::ops::sample::uniform;
use knpu::ops::{self, BinaryOp, Broadcast, SampleParams};

use super::kernels::supported;
use super::values;
use crate::{case_list, CaseResult, RuntimeContext};

pub(super) fn cases() -> Vec<crate::Case> {
    case_list!(Runtime, crate::Feature::KernelLlm; sample_f32, binary_div_f32)
}

/// The header's rule for one row, written plainly (full sort, f64).
fn rule(row: &[f32], u: f64, p: &SampleParams) -> u32 {
    let first_max = || (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32;
    if p.temperature == 0.0 {
        return first_max();
    }
    let z: Vec<f64> = row
        .iter()
        .map(|&x| f64::from(x) / f64::from(p.temperature))
        .collect();
    let mut kept: Vec<usize> = (0..row.len()).collect();
    kept.sort_by(|&a, &b| z[b].partial_cmp(&z[a]).unwrap().then(a.cmp(&b)));
    kept.truncate(if p.top_k == 0 { row.len() } else { p.top_k });
    let w: Vec<f64> = z.iter().map(|v| (v - z[kept[0]]).exp()).collect();
    if p.top_p < 1.0 {
        let total: f64 = kept.iter().map(|&i| w[i]).sum();
        let (mut sum, mut n) = (0.0, 0);
        while n < kept.len() && sum < f64::from(p.top_p) * total {
            sum += w[kept[n]];
            n += 1;
        }
        kept.truncate(n.max(1));
    }
    kept.sort();
    let total: f64 = kept.iter().map(|&i| w[i]).sum();
    let mut sum = 0.0;
    for &i in &kept {
        sum += w[i];
        if u * total < sum {
            return i as u32;
        }
    }
    *kept.last().unwrap() as u32
}

fn sample_f32(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let (rows, vocab) = (3, 37);
    // Distinct logits (no ties), spread enough that every rule matters.
    let x = values(rows * vocab, |i| ((i * 7919) % 101) as f32 * 0.07 - 3.5);
    let dx = s.from_slice(&x).unwrap();
    let mut out = s.alloc_zeroed::<u32>(rows).unwrap();
    let mut counter = s.from_slice(&[41u64]).unwrap();
    let mut c = 41;
    for (temperature, top_k, top_p) in [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 5, 1.0), (1.2, 0, 0.7)]
    {
        let p = SampleParams {
            temperature,
            top_k,
            top_p,
            seed: 5,
        };
        supported(ops::sample(
            &s,
            &dx,
            &mut out,
            rows,
            vocab,
            &p,
            Some(&mut counter),
        ))?;
        s.synchronize().unwrap();
        let want: Vec<u32> = (0..rows)
            .map(|r| rule(&x[r * vocab..(r + 1) * vocab], uniform(5, c, r as u64), &p))
            .collect();
        assert_eq!(out.to_vec().unwrap(), want, "{p:?}, counter {c}");
        c += 1;
        assert_eq!(
            counter.to_vec().unwrap(),
            vec![c],
            "the counter advances once per launch"
        );
    }
    Ok(())
}

fn binary_div_f32(ctx: &RuntimeContext) -> CaseResult {
    let s = ctx.stream();
    let (rows, cols) = (5, 33);
    let a = values(rows * cols, |i| i as f32 - 40.0);
    let b = values(rows * cols, |i| 0.25 * (1 + i % 9) as f32);
    let (da, db) = (s.from_slice(&a).unwrap(), s.from_slice(&b).unwrap());
    let drow = s.from_slice(&b[..cols]).unwrap();
    let mut o = s.alloc::<f32>(rows * cols).unwrap();
    supported(ops::div(&s, &da, &db, &mut o))?;
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
    assert_eq!(o.to_vec().unwrap(), want, "div");
    supported(ops::binary(
        &s,
        BinaryOp::Div,
        &da,
        &drow,
        &mut o,
        rows,
        cols,
        Broadcast::Row,
    ))?;
    let want: Vec<f32> = (0..rows * cols).map(|i| a[i] / b[i % cols]).collect();
    assert_eq!(o.to_vec().unwrap(), want, "div with a broadcast row");
    Ok(())
}
