//! Bad arguments are errors, never panics or out-of-bounds access, and outputs stay untouched.

use knpu_kernels::llm::*;
use knpu_kernels::{Exec, KernelError, Parallelism};

const P: Parallelism = Parallelism::None;

fn too_short(r: Result<(), KernelError>, operand: &str) {
    match r {
        Err(KernelError::SliceTooShort { operand: o, .. }) => assert_eq!(o, operand),
        other => panic!("expected SliceTooShort for {operand}, got {other:?}"),
    }
}

fn bad_shape(r: Result<(), KernelError>) {
    assert!(
        matches!(r, Err(KernelError::BadShape { .. })),
        "expected BadShape, got {r:?}"
    );
}

#[test]
fn short_slices_are_rejected() {
    let x = [1.0f32; 12];
    let mut out = [0.0f32; 12];
    too_short(rms_norm(&x, &x[..3], &mut out, 3, 4, 1e-5, P), "weight");
    too_short(rms_norm(&x[..11], &x, &mut out, 3, 4, 1e-5, P), "x");
    too_short(rms_norm(&x, &x, &mut out[..11], 3, 4, 1e-5, P), "out");
    too_short(
        layer_norm(
            &x,
            NormWeights {
                weight: &x,
                bias: Some(&x[..3]),
            },
            &mut out,
            3,
            4,
            1e-5,
            P,
        ),
        "bias",
    );
    too_short(softmax(&x, &mut out[..5], 2, 3, 1.0, P), "out");
    too_short(silu(&x, &mut out, 13, P), "x");
    too_short(gelu(&x, &mut out[..2], 3, GeluApprox::Erf, P), "out");
    too_short(swiglu(&x, &x[..2], &mut out, 3, P), "up");
    too_short(add(&x, &x[..3], &mut out, 3, 4, Broadcast::Row, P), "b");
    too_short(mul(&x, &x[..11], &mut out, 3, 4, Broadcast::None, P), "b");
    too_short(
        add_inplace(&mut out[..11], &x, 3, 4, Broadcast::None, P),
        "x",
    );
    too_short(cast(&x, &mut out[..2], 3, P), "dst");
    let mut idx = [0u32; 4];
    too_short(argmax(&x, &mut idx[..2], 3, 4, P), "out");
    let mut vals = [0.0f32; 4];
    too_short(top_k(&x, &mut vals, &mut idx, 3, 4, 2, P), "values");
    let p = RopeParams {
        style: RopeStyle::NeoX,
        rotary_dim: 4,
        base: 10000.0,
    };
    let shape = RopeShape {
        rows: 3,
        heads: 1,
        head_dim: 4,
    };
    let start = RopePositions::Start(0);
    too_short(rope(&x, &mut out[..8], shape, &p, start, P), "out");
    let short = RopePositions::PerRow(&[1, 2]);
    too_short(rope(&x, &mut out, shape, &p, short, P), "positions");
    too_short(embedding(&x, 4, 4, &[0, 1], 2, &mut out, P), "table");
    too_short(embedding(&x, 3, 4, &[0, 1], 2, &mut out[..7], P), "out");
    too_short(embedding(&x, 3, 4, &[0], 2, &mut out, P), "ids");
    assert!(out.iter().all(|&v| v == 0.0), "an output was written");
}

#[test]
fn bad_shapes_and_values_are_rejected() {
    let x = [1.0f32; 16];
    let mut out = [0.0f32; 16];
    let mut vals = [0.0f32; 16];
    let mut idx = [0u32; 16];
    // k > n.
    bad_shape(top_k(&x, &mut vals, &mut idx, 2, 4, 5, P));
    // Empty rows have no argmax.
    bad_shape(argmax(&x, &mut idx, 2, 0, P));
    // Out-of-range token id, checked before any row is written.
    let r = embedding(&x, 4, 4, &[0, 1, 4], 3, &mut out, P);
    match &r {
        Err(KernelError::BadShape { detail }) => {
            assert!(detail.contains("token id 4 at position 2"), "{detail}")
        }
        other => panic!("expected BadShape, got {other:?}"),
    }
    assert!(
        out.iter().all(|&v| v == 0.0),
        "embedding wrote before failing"
    );
    // RoPE: odd or too-large rotary dim, bad base.
    let pos = RopePositions::Start(0);
    let shape = RopeShape {
        rows: 2,
        heads: 2,
        head_dim: 4,
    };
    for (rot, base) in [
        (3, 10000.0),
        (6, 10000.0),
        (4, 0.0),
        (4, f32::NAN),
        (4, -1.0),
    ] {
        let p = RopeParams {
            style: RopeStyle::Interleaved,
            rotary_dim: rot,
            base,
        };
        bad_shape(rope_inplace(&mut out, shape, &p, pos, P));
    }
    let p = RopeParams {
        style: RopeStyle::NeoX,
        rotary_dim: 4,
        base: 10000.0,
    };
    bad_shape(rope_inplace(
        &mut out,
        shape,
        &p,
        RopePositions::Start(u64::MAX - 1),
        P,
    ));
    // Overflowing shapes.
    bad_shape(softmax(&x, &mut out, usize::MAX, 2, 1.0, P));
    assert!(out.iter().all(|&v| v == 0.0), "an output was written");
}

#[test]
fn unsupported_isa_is_an_error() {
    use knpu_kernels::Isa;
    for isa in [Isa::Avx2, Isa::Avx512] {
        if isa.is_supported() {
            continue;
        }
        let x = [1.0f32; 4];
        let mut out = [0.0f32; 4];
        let r = softmax(&x, &mut out, 1, 4, 1.0, Exec::new(isa, P));
        assert!(matches!(r, Err(KernelError::Unsupported { .. })), "{r:?}");
    }
}

#[test]
fn empty_problems_are_fine() {
    let mut out: [f32; 0] = [];
    rms_norm::<f32>(&[], &[], &mut out, 0, 0, 1e-5, P).unwrap();
    rms_norm::<f32>(&[], &[1.0; 8], &mut out, 0, 8, 1e-5, P).unwrap();
    softmax::<f32>(&[], &mut out, 5, 0, 1.0, P).unwrap();
    let mut idx: [u32; 0] = [];
    argmax::<f32>(&[], &mut idx, 0, 0, P).unwrap();
    top_k::<f32>(&[1.0; 6], &mut [], &mut [], 2, 3, 0, P).unwrap();
}
