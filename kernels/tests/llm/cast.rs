use crate::common::*;
use knpu_kernels::llm::{cast, f32_to_i32, i32_to_f32, Element};
use knpu_kernels::{isa, Exec};

/// Specials, rounding ties and range edges of all three types, then random values.
fn inputs(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
        65504.0,
        65520.0, // rounds to f16 inf
        6e-8,
        3e-8,
        1.0 + 2f32.powi(-11),        // f16 tie, to even
        1.0 + 3.0 * 2f32.powi(-11),  // f16 tie, to even (up)
        f32::from_bits(0x3f80_8000), // bf16 tie, to even (down)
        f32::from_bits(0x3f81_8000), // bf16 tie, to even (up)
        f32::from_bits(0x7f7f_ffff), // rounds to bf16 inf
    ];
    while v.len() < n {
        let bits = rng.next_u64() as u32;
        let x = f32::from_bits(bits);
        v.push(if rng.below(2) == 0 {
            x
        } else {
            rng.uniform(-70000.0, 70000.0)
        });
    }
    v.truncate(n);
    v
}

fn pair<S: Element, D: Element>() {
    let mut rng = Rng::new(8);
    for &n in SIZES.iter().chain(&[100_003]) {
        let src: Vec<S> = inputs(&mut rng, n.max(19))
            .into_iter()
            .take(n)
            .map(S::from_f32)
            .collect();
        for isa in isa::supported() {
            let mut dst = vec![D::from_f32(1.0); n];
            cast(&src, &mut dst, n, Exec::new(isa, par_for(n))).unwrap();
            for (i, (s, d)) in src.iter().zip(&dst).enumerate() {
                let want = D::from_f32(s.to_f32());
                let ok = if want.to_f32().is_nan() {
                    d.to_f32().is_nan()
                } else {
                    bytemuck::bytes_of(d) == bytemuck::bytes_of(&want)
                };
                assert!(
                    ok,
                    "cast {}->{} {isa:?} n {n} element {i}: {:?} -> {:?}, want {:?}",
                    name::<S>(),
                    name::<D>(),
                    s,
                    d,
                    want
                );
            }
        }
    }
}

#[test]
fn casts_round_to_nearest_even_on_every_path() {
    for_dtype_pairs!(pair);
}

#[test]
fn f32_i32_conversions() {
    let src = [1.5f32, -1.5, 2.9, -2.9, f32::NAN, 3e9, -3e9, 0.0];
    let mut out = [7i32; 8];
    f32_to_i32(&src, &mut out, 8).unwrap();
    assert_eq!(out, [1, -1, 2, -2, 0, i32::MAX, i32::MIN, 0]);
    let ints = [16_777_217i32, -3, i32::MAX, 0];
    let mut f = [0.0f32; 4];
    i32_to_f32(&ints, &mut f, 4).unwrap();
    assert_eq!(f, [16_777_216.0, -3.0, 2_147_483_648.0, 0.0]);
    assert!(f32_to_i32(&src, &mut out[..2], 3).is_err());
}
