use crate::common::*;
use knpu_kernels::llm::{
    rope, rope_inplace, Element, RopeParams, RopePositions, RopeShape, RopeStyle,
};
use knpu_kernels::{isa, Exec};

#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f64],
    rows: usize,
    heads: usize,
    hd: usize,
    p: &RopeParams,
    pos: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut out = x.to_vec();
    let mut scale: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    let half = p.rotary_dim / 2;
    for r in 0..rows {
        for h in 0..heads {
            let base = (r * heads + h) * hd;
            for i in 0..half {
                let theta = pos[r] * (p.base as f64).powf(-((2 * i) as f64) / p.rotary_dim as f64);
                let (s, c) = theta.sin_cos();
                let (a, b) = match p.style {
                    RopeStyle::Interleaved => (base + 2 * i, base + 2 * i + 1),
                    RopeStyle::NeoX => (base + i, base + i + half),
                };
                let (x1, x2) = (x[a], x[b]);
                out[a] = x1 * c - x2 * s;
                out[b] = x2 * c + x1 * s;
                scale[a] = x1.abs() + x2.abs();
                scale[b] = x1.abs() + x2.abs();
            }
        }
    }
    (out, scale)
}

fn run<T: Element>() {
    let mut rng = Rng::new(4);
    let dims: &[(usize, usize, usize)] = &[
        // (heads, head_dim, rotary_dim)
        (1, 2, 2),
        (3, 8, 8),
        (2, 34, 34),
        (2, 34, 16),
        (4, 64, 64),
        (1, 130, 98),
        (32, 128, 128),
        (2, 64, 0),
    ];
    for &rows in &[0usize, 1, 7, 17, 65] {
        for &(heads, hd, rot) in dims {
            for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
                for (pi, base) in [
                    (0u64, 10000.0f32),
                    (1, 500000.0),
                    (2, 10000.0),
                    (3, 10000.0),
                ] {
                    let n = rows * heads * hd;
                    let x: Vec<T> = random(&mut rng, n, -4.0, 4.0);
                    let p = RopeParams {
                        style,
                        rotary_dim: rot,
                        base,
                    };
                    // pi 2: random positions; pi 3: runs of consecutive positions with
                    // repeats and jumps (the stepped-angle path and its restarts).
                    let per_row: Vec<u32> = if pi == 2 {
                        (0..rows).map(|_| rng.below(1 << 20) as u32).collect()
                    } else {
                        (0..rows as u32)
                            .map(|r| 70_000 + r - r / 10 + (r / 40) * 1000)
                            .collect()
                    };
                    let (positions, pos): (RopePositions, Vec<f64>) = match pi {
                        0 => (
                            RopePositions::Start(0),
                            (0..rows).map(|r| r as f64).collect(),
                        ),
                        1 => (
                            RopePositions::Start(100_000),
                            (0..rows).map(|r| 100_000.0 + r as f64).collect(),
                        ),
                        _ => (
                            RopePositions::PerRow(&per_row),
                            per_row.iter().map(|&v| v as f64).collect(),
                        ),
                    };
                    let (want, scale) = reference(&to_f64(&x), rows, heads, hd, &p, &pos);
                    for isa in isa::supported() {
                        let ctx = format!(
                            "rope {} {isa:?} rows {rows} {heads}x{hd} rot {rot} {style:?} pos {pi}",
                            name::<T>()
                        );
                        let mut out = vec![T::from_f32(f32::NAN); n];
                        let shape = RopeShape {
                            rows,
                            heads,
                            head_dim: hd,
                        };
                        let exec = Exec::new(isa, par_for(n));
                        rope(&x, &mut out, shape, &p, positions, exec).unwrap();
                        check(&out, &want, &scale, 1e-6, &ctx);
                        let mut inplace = x.clone();
                        rope_inplace(&mut inplace, shape, &p, positions, exec).unwrap();
                        assert_eq!(
                            bytemuck::cast_slice::<T, u8>(&inplace),
                            bytemuck::cast_slice::<T, u8>(&out),
                            "{ctx}: in place differs"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn rope_matches_f64() {
    for_dtypes!(run);
}
