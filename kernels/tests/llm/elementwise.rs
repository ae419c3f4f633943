use crate::common::*;
use knpu_kernels::llm::{add, add_inplace, mul, mul_inplace, Broadcast, Element};
use knpu_kernels::{isa, Exec};

fn run<T: Element>() {
    let mut rng = Rng::new(6);
    for (rows, cols) in shapes() {
        let n = rows * cols;
        let a: Vec<T> = random(&mut rng, n, -100.0, 100.0);
        let b: Vec<T> = random(&mut rng, n.max(cols), -100.0, 100.0);
        let (af, bf) = (to_f64(&a), to_f64(&b));
        for bcast in [Broadcast::None, Broadcast::Row] {
            let bi = |i: usize| {
                if bcast == Broadcast::Row {
                    bf[i % cols.max(1)]
                } else {
                    bf[i]
                }
            };
            let bsl = if bcast == Broadcast::Row {
                &b[..cols]
            } else {
                &b[..]
            };
            for isa in isa::supported() {
                let ctx =
                    |op: &str| format!("{op} {} {isa:?} {rows}x{cols} {bcast:?}", name::<T>());
                let mut out = vec![T::from_f32(f32::NAN); n];
                let exec = Exec::new(isa, par_for(n));
                add(&a, bsl, &mut out, rows, cols, bcast, exec).unwrap();
                let want: Vec<f64> = (0..n).map(|i| af[i] + bi(i)).collect();
                let s: Vec<f64> = want.iter().map(|v| v.abs()).collect();
                // One f32 rounding.
                check(&out, &want, &s, 6e-8, &ctx("add"));
                let mut x = a.clone();
                add_inplace(&mut x, bsl, rows, cols, bcast, exec).unwrap();
                assert_eq!(bytes(&x), bytes(&out), "{}", ctx("add in place"));
                mul(&a, bsl, &mut out, rows, cols, bcast, exec).unwrap();
                let want: Vec<f64> = (0..n).map(|i| af[i] * bi(i)).collect();
                let s: Vec<f64> = want.iter().map(|v| v.abs()).collect();
                check(&out, &want, &s, 6e-8, &ctx("mul"));
                let mut x = a.clone();
                mul_inplace(&mut x, bsl, rows, cols, bcast, exec).unwrap();
                assert_eq!(bytes(&x), bytes(&out), "{}", ctx("mul in place"));
            }
        }
    }
}

#[test]
fn add_mul_match_f64() {
    for_dtypes!(run);
}

fn bytes<T: Element>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}
