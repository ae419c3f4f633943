//! LLM ops on device 0: every launcher's result equals the `knpu_kernels::llm` function called
//! on host copies of the operands (bitwise: rows are computed the same way on any split), for
//! f32 and a half type, over shapes below and above the executor's inline threshold; and every
//! validation error is returned at the call with nothing queued.

use half::{bf16, f16};
use knpu::ops::llm::Activation;
use knpu::ops::{self, BinaryOp, Broadcast, Rope, RopePositions, RopeStyle};
use knpu::{DType, DeviceBuffer, Error, Stream};
use knpu_kernels::llm::{self, Element};
use knpu_kernels::Parallelism;

mod common;
use common::{assert_same, down, rand_values, stream};

/// Small awkward shapes, and one past the executor's inline threshold (64Ki elements) so the
/// compute pool runs it.
const SHAPES: &[(usize, usize)] = &[(1, 1), (3, 17), (7, 130), (300, 257)];

/// The host kernels run on the caller's thread.
const SERIAL: Parallelism = Parallelism::None;

trait El: DType + Element {}
impl<T: DType + Element> El for T {}

/// Deterministic values in about [-3, 3), distinct per `seed`.
fn data<T: Element>(n: usize, seed: u64) -> Vec<T> {
    rand_values(n, seed, -3.0, 3.0)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

/// A test, `$name`, that runs `$case::<T>(stream, rows, cols)` for each listed `T` on one
/// stream over every shape in `SHAPES`.
macro_rules! test_over_shapes {
    ($name:ident: $case:ident for $($t:ty),+) => {
        #[test]
        fn $name() {
            let s = stream();
            for &(rows, cols) in SHAPES {
                $($case::<$t>(&s, rows, cols);)+
            }
        }
    };
}

fn up<T: El>(s: &Stream, v: &[T]) -> DeviceBuffer<T> {
    s.from_slice(v).unwrap()
}

fn norms<T: El>(s: &Stream, rows: usize, cols: usize) {
    let n = rows * cols;
    let (x, w) = (data::<T>(n, 1), data::<T>(cols, 2));
    let (dx, dw) = (up(s, &x), up(s, &w));
    let what = format!("{} [{rows}, {cols}]", T::NAME);

    let mut want = vec![T::from_f32(0.0); n];
    llm::rms_norm(&x, &w, &mut want, rows, cols, 1e-5, SERIAL).unwrap();
    let mut out = s.alloc::<T>(n).unwrap();
    ops::rms_norm(s, &dx, &dw, &mut out, rows, cols, 1e-5).unwrap();
    assert_same(&format!("rms_norm {what}"), &down(s, &out), &want);

    // Layer norm with and without a bias.
    let b = data::<T>(cols, 3);
    let db = up(s, &b);
    for (bias, dbias, named) in [(Some(&b[..]), Some(&db), ""), (None, None, " no bias")] {
        let weights = llm::NormWeights { weight: &w, bias };
        llm::layer_norm(&x, weights, &mut want, rows, cols, 1e-5, SERIAL).unwrap();
        let dbias = dbias.map(|b| b as &dyn knpu::AsDeviceSlice<T>);
        ops::layer_norm(s, &dx, &dw, dbias, &mut out, rows, cols, 1e-5).unwrap();
        let what = format!("layer_norm{named} {what}");
        assert_same(&what, &down(s, &out), &want);
    }
}

test_over_shapes!(norms_match_the_host_kernels: norms for f32, f16);

fn ropes<T: El>() {
    let s = stream();
    // (rows, heads, head_dim, rotary_dim)
    for &(rows, heads, head_dim, rotary_dim) in &[
        (1, 1, 2, 2),
        (5, 3, 10, 6),
        (9, 4, 64, 64),
        (130, 8, 64, 32),
    ] {
        let n = rows * heads * head_dim;
        let x = data::<T>(n, 4);
        let positions: Vec<u32> = (0..rows as u32).map(|r| (r * 37) % 101).collect();
        let dx = up(&s, &x);
        let dpos = s.from_slice(&positions).unwrap();
        for style in [RopeStyle::Interleaved, RopeStyle::NeoX] {
            let params = llm::RopeParams {
                style: match style {
                    RopeStyle::Interleaved => llm::RopeStyle::Interleaved,
                    RopeStyle::NeoX => llm::RopeStyle::NeoX,
                },
                rotary_dim,
                base: 10000.0,
            };
            let what = format!("rope {} {style:?} [{rows}, {heads}, {head_dim}]", T::NAME);
            let mut want = vec![T::from_f32(0.0); n];
            let mut out = s.alloc::<T>(n).unwrap();

            let shape = llm::RopeShape {
                rows,
                heads,
                head_dim,
            };
            let start = llm::RopePositions::Start(7);
            llm::rope(&x, &mut want, shape, &params, start, SERIAL).unwrap();
            let rope = Rope {
                style,
                rotary_dim,
                base: 10000.0,
                positions: RopePositions::Start(7),
            };
            ops::rope(&s, &dx, &mut out, rows, heads, head_dim, &rope).unwrap();
            assert_same(&format!("{what} start"), &down(&s, &out), &want);

            let per_row = llm::RopePositions::PerRow(&positions);
            llm::rope(&x, &mut want, shape, &params, per_row, SERIAL).unwrap();
            let rope = Rope {
                positions: RopePositions::PerRow(&dpos),
                ..rope
            };
            ops::rope(&s, &dx, &mut out, rows, heads, head_dim, &rope).unwrap();
            assert_same(&format!("{what} per row"), &down(&s, &out), &want);
        }
    }
}

#[test]
fn rope_matches_the_host_kernel() {
    ropes::<f32>();
    ropes::<bf16>();
}

fn activations<T: El>(s: &Stream, rows: usize, cols: usize) {
    let n = rows * cols;
    let (x, u) = (data::<T>(n, 5), data::<T>(n, 6));
    let (dx, du) = (up(s, &x), up(s, &u));
    let mut want = vec![T::from_f32(0.0); n];
    let mut out = s.alloc::<T>(n).unwrap();
    for act in [Activation::Silu, Activation::GeluErf, Activation::GeluTanh] {
        match act {
            Activation::Silu => llm::silu(&x, &mut want, n, SERIAL),
            Activation::GeluErf => llm::gelu(&x, &mut want, n, llm::GeluApprox::Erf, SERIAL),
            Activation::GeluTanh => llm::gelu(&x, &mut want, n, llm::GeluApprox::Tanh, SERIAL),
            other => unreachable!("{other:?} is not in the list above"),
        }
        .unwrap();
        ops::activation(s, act, &dx, &mut out).unwrap();
        assert_same(&format!("{act:?} {} [{n}]", T::NAME), &down(s, &out), &want);
    }
    llm::swiglu(&x, &u, &mut want, n, SERIAL).unwrap();
    ops::swiglu(s, &dx, &du, &mut out).unwrap();
    assert_same(&format!("swiglu {} [{n}]", T::NAME), &down(s, &out), &want);
}

test_over_shapes!(activations_match_the_host_kernels: activations for f32, f16);

fn softmax_and_binary<T: El>(s: &Stream, rows: usize, cols: usize) {
    let n = rows * cols;
    let (a, b, row) = (data::<T>(n, 7), data::<T>(n, 8), data::<T>(cols, 9));
    let (da, db, drow) = (up(s, &a), up(s, &b), up(s, &row));
    let what = format!("{} [{rows}, {cols}]", T::NAME);
    let mut want = vec![T::from_f32(0.0); n];
    let mut out = s.alloc::<T>(n).unwrap();

    llm::softmax(&a, &mut want, rows, cols, 0.125, SERIAL).unwrap();
    ops::softmax(s, &da, &mut out, rows, cols, 0.125).unwrap();
    assert_same(&format!("softmax {what}"), &down(s, &out), &want);

    for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Sub, BinaryOp::Div] {
        for (bc, host_b, dev_b) in [(Broadcast::None, &b, &db), (Broadcast::Row, &row, &drow)] {
            let host_bc = match bc {
                Broadcast::None => llm::Broadcast::None,
                Broadcast::Row => llm::Broadcast::Row,
            };
            match op {
                BinaryOp::Add => llm::add(&a, host_b, &mut want, rows, cols, host_bc, SERIAL),
                BinaryOp::Mul => llm::mul(&a, host_b, &mut want, rows, cols, host_bc, SERIAL),
                // No host kernel of its own: f32 arithmetic rounded once, as the device.
                BinaryOp::Sub | BinaryOp::Div => {
                    for (i, w) in want.iter_mut().enumerate() {
                        let bv = host_b[if bc == Broadcast::Row { i % cols } else { i }];
                        let (x, y) = (a[i].to_f32(), bv.to_f32());
                        *w = T::from_f32(if op == BinaryOp::Sub { x - y } else { x / y });
                    }
                    Ok(())
                }
            }
            .unwrap();
            ops::binary(s, op, &da, dev_b, &mut out, rows, cols, bc).unwrap();
            assert_same(&format!("{op:?} {bc:?} {what}"), &down(s, &out), &want);
        }
    }
}

test_over_shapes!(softmax_and_binary_match_the_host_kernels: softmax_and_binary for f32, f16);

fn embedding_and_cast<T: El, O: El>() {
    let s = stream();
    for &(vocab, dim, tokens) in &[(1, 1, 1), (50, 17, 9), (1000, 96, 700)] {
        let table = data::<T>(vocab * dim, 10);
        let ids: Vec<u32> = (0..tokens as u32)
            .map(|t| (t * 7919) % vocab as u32)
            .collect();
        let (dt, dids) = (up(&s, &table), s.from_slice(&ids).unwrap());
        let mut want = vec![O::from_f32(0.0); tokens * dim];
        llm::embedding(&table, vocab, dim, &ids, tokens, &mut want, SERIAL).unwrap();
        let mut out = s.alloc::<O>(tokens * dim).unwrap();
        ops::embedding(&s, &dt, vocab, dim, &dids, &mut out).unwrap();
        let what = format!("{} -> {} [{vocab}, {dim}] x {tokens}", T::NAME, O::NAME);
        assert_same(&format!("embedding {what}"), &down(&s, &out), &want);

        let n = vocab * dim;
        let mut want = vec![O::from_f32(0.0); n];
        llm::cast(&table, &mut want, n, SERIAL).unwrap();
        let mut out = s.alloc::<O>(n).unwrap();
        ops::cast(&s, &dt, &mut out).unwrap();
        assert_same(&format!("cast {what}"), &down(&s, &out), &want);
    }
}

#[test]
fn embedding_and_cast_match_the_host_kernels() {
    embedding_and_cast::<f32, f32>();
    embedding_and_cast::<f32, f16>();
    embedding_and_cast::<bf16, f32>();
    embedding_and_cast::<f16, bf16>();
}

fn sampling<T: El>(s: &Stream, rows: usize, cols: usize) {
    let n = rows * cols;
    let x = data::<T>(n, 11);
    let dx = up(s, &x);
    let what = format!("{} [{rows}, {cols}]", T::NAME);

    let mut want = vec![0u32; rows];
    llm::argmax(&x, &mut want, rows, cols, SERIAL).unwrap();
    let mut out = s.alloc::<u32>(rows).unwrap();
    ops::argmax(s, &dx, &mut out, rows, cols).unwrap();
    s.synchronize().unwrap();
    assert_same(&format!("argmax {what}"), &out.to_vec().unwrap(), &want);

    for k in [0, 1, cols.min(5), cols] {
        let mut want_v = vec![T::from_f32(0.0); rows * k];
        let mut want_i = vec![0u32; rows * k];
        llm::top_k(&x, &mut want_v, &mut want_i, rows, cols, k, SERIAL).unwrap();
        let mut v = s.alloc::<T>(rows * k).unwrap();
        let mut i = s.alloc::<u32>(rows * k).unwrap();
        ops::top_k(s, &dx, &mut v, &mut i, rows, cols, k).unwrap();
        s.synchronize().unwrap();
        assert_same(
            &format!("top_k {k} values {what}"),
            &v.to_vec().unwrap(),
            &want_v,
        );
        assert_same(
            &format!("top_k {k} indices {what}"),
            &i.to_vec().unwrap(),
            &want_i,
        );
    }
}

test_over_shapes!(argmax_and_top_k_match_the_host_kernels: sampling for f32, bf16);

#[test]
fn out_of_range_token_id_is_a_kernel_fault_and_the_stream_stays_usable() {
    let s = stream();
    let (vocab, dim) = (10, 4);
    let table = data::<f32>(vocab * dim, 12);
    let dt = up(&s, &table);
    let sentinel = vec![-7.0f32; 3 * dim];
    let mut out = up(&s, &sentinel);
    let bad = s.from_slice(&[1u32, 10, 2]).unwrap();
    ops::embedding(&s, &dt, vocab, dim, &bad, &mut out).unwrap();
    match s.synchronize() {
        Err(Error::KernelFault { message }) => {
            assert!(message.contains("10"), "message names the id: {message}")
        }
        other => panic!("expected a kernel fault, got {other:?}"),
    }
    assert_eq!(out.to_vec().unwrap(), sentinel, "nothing written");

    let good = s.from_slice(&[1u32, 9, 2]).unwrap();
    ops::embedding(&s, &dt, vocab, dim, &good, &mut out).unwrap();
    s.synchronize().unwrap();
    let want: Vec<f32> = [1, 9, 2]
        .iter()
        .flat_map(|&t| table[t * dim..(t + 1) * dim].to_vec())
        .collect();
    assert_eq!(out.to_vec().unwrap(), want);
}

fn shape_err(e: Error, want_operand: &str) {
    match e {
        Error::Shape { operand, .. } => assert_eq!(operand, want_operand),
        other => panic!("expected a shape error for {want_operand}, got {other}"),
    }
}

fn invalid(e: Error) {
    assert!(
        matches!(e, Error::InvalidValue { .. }),
        "expected InvalidValue, got {e}"
    );
}

#[test]
fn bad_operands_are_errors_at_the_call_and_queue_nothing() {
    let s = stream();
    let (rows, cols) = (4, 8);
    let n = rows * cols;
    let x = up(&s, &data::<f32>(n, 13));
    let w = up(&s, &data::<f32>(cols, 14));
    let short = up(&s, &data::<f32>(cols - 1, 15));
    let sentinel = vec![-7.0f32; n];
    let mut out = up(&s, &sentinel);

    shape_err(
        ops::rms_norm(&s, &x, &short, &mut out, rows, cols, 1e-5).unwrap_err(),
        "weight",
    );
    shape_err(
        ops::rms_norm(&s, &x, &w, &mut out, rows + 1, cols, 1e-5).unwrap_err(),
        "x",
    );
    invalid(ops::rms_norm(&s, &x, &w, &mut out, rows, cols, f32::NAN).unwrap_err());
    invalid(ops::rms_norm(&s, &x, &w, &mut out, usize::MAX, 2, 1e-5).unwrap_err());
    shape_err(
        ops::layer_norm(&s, &x, &w, Some(&short), &mut out, rows, cols, 1e-5).unwrap_err(),
        "bias",
    );
    invalid(ops::softmax(&s, &x, &mut out, rows, cols, f32::INFINITY).unwrap_err());
    shape_err(
        ops::binary(
            &s,
            BinaryOp::Add,
            &x,
            &x,
            &mut out,
            rows,
            cols,
            Broadcast::Row,
        )
        .unwrap_err(),
        "b",
    );
    {
        let mut view = out.slice_mut(..n - 1).unwrap();
        shape_err(ops::silu(&s, &x, &mut view).unwrap_err(), "out");
        shape_err(ops::swiglu(&s, &x, &w, &mut view).unwrap_err(), "up");
    }

    let rope = |rotary_dim, base| Rope {
        style: RopeStyle::NeoX,
        rotary_dim,
        base,
        positions: RopePositions::Start(0),
    };
    invalid(ops::rope(&s, &x, &mut out, rows, 1, cols, &rope(3, 1e4)).unwrap_err());
    invalid(ops::rope(&s, &x, &mut out, rows, 1, cols, &rope(10, 1e4)).unwrap_err());
    invalid(ops::rope(&s, &x, &mut out, rows, 1, cols, &rope(8, 0.0)).unwrap_err());
    let pos = s.from_slice(&[0u32; 3]).unwrap();
    let per_row = Rope {
        positions: RopePositions::PerRow(&pos),
        ..rope(8, 1e4)
    };
    shape_err(
        ops::rope(&s, &x, &mut out, rows, 1, cols, &per_row).unwrap_err(),
        "positions",
    );

    let mut idx = s.alloc_zeroed::<u32>(rows * 2).unwrap();
    let mut vals = s.alloc_zeroed::<f32>(rows * 2).unwrap();
    shape_err(
        ops::argmax(&s, &x, &mut idx, rows, cols).unwrap_err(),
        "out",
    );
    invalid(
        ops::argmax(
            &s,
            &x.slice(..0).unwrap(),
            &mut idx.slice_mut(..2).unwrap(),
            2,
            0,
        )
        .unwrap_err(),
    );
    let mut big_v = s.alloc_zeroed::<f32>(rows * (cols + 1)).unwrap();
    let mut big_i = s.alloc_zeroed::<u32>(rows * (cols + 1)).unwrap();
    invalid(ops::top_k(&s, &x, &mut big_v, &mut big_i, rows, cols, cols + 1).unwrap_err());
    shape_err(
        ops::top_k(&s, &x, &mut vals, &mut idx, rows, cols, 3).unwrap_err(),
        "values",
    );

    let ids = s.from_slice(&[0u32, 1]).unwrap();
    shape_err(
        ops::embedding(&s, &x, rows, cols, &ids, &mut out).unwrap_err(),
        "out",
    );
    shape_err(
        ops::embedding(&s, &x, rows + 1, cols, &ids, &mut vals).unwrap_err(),
        "table",
    );

    // Element types other than f32/f16/bf16.
    let xi = s.from_slice(&[1i32; 8]).unwrap();
    let mut oi = s.alloc_zeroed::<i32>(8).unwrap();
    match ops::silu(&s, &xi, &mut oi).unwrap_err() {
        Error::Dtype {
            operand, actual, ..
        } => assert_eq!((operand, actual.as_str()), ("x", "i32")),
        other => panic!("expected a dtype error, got {other}"),
    }
    let mut of = s.alloc_zeroed::<f32>(8).unwrap();
    assert!(matches!(
        ops::cast(&s, &xi, &mut of).unwrap_err(),
        Error::Dtype { operand: "src", .. }
    ));

    s.synchronize().unwrap();
    assert_eq!(out.to_vec().unwrap(), sentinel, "nothing was queued");
    assert_eq!(idx.to_vec().unwrap(), vec![0; rows * 2]);
}

/// Issue 17, defect 6: a shape whose element count overflows is `InvalidValue` naming the
/// operand whose extent overflows.
#[test]
fn overflowing_shapes_are_invalid_values_naming_the_operand() {
    let s = stream();
    let x = up(&s, &[1.0f32; 4]);
    let w = up(&s, &[1.0f32; 4]);
    let mut o = up(&s, &[0.0f32; 4]);
    let huge = 1usize << 40;
    match ops::rms_norm(&s, &x, &w, &mut o, huge, huge, 1e-5).unwrap_err() {
        Error::InvalidValue { detail } => assert!(detail.contains("`x`"), "{detail}"),
        other => panic!("expected InvalidValue, got {other}"),
    }
    let mut v = up(&s, &[0.0f32; 4]);
    let mut i = s.alloc_zeroed::<u32>(4).unwrap();
    match ops::top_k(&s, &x, &mut v, &mut i, huge, huge, 1).unwrap_err() {
        Error::InvalidValue { detail } => assert!(detail.contains("`x`"), "{detail}"),
        other => panic!("expected InvalidValue, got {other}"),
    }
}
