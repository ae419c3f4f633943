//! Quantised formats against committed reference fixtures (made by
//! `fixtures/make_quant_fixtures.py` with the `gguf` and `ml_dtypes` packages).

use knpu_kernels::quant::fp8::{self, Fp8Kind, Overflow};
use knpu_kernels::quant::{self, QuantFormat};
use knpu_kernels::KernelError;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant")
}

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap()
}

fn bytes(name: &serde_json::Value) -> Vec<u8> {
    std::fs::read(dir().join(name.as_str().unwrap())).unwrap()
}

fn f32s(name: &serde_json::Value) -> Vec<f32> {
    bytes(name)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Same bits, or both NaN (numpy and Rust may pick different NaN payloads for 0 * Inf).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

const GGUF: [(&str, QuantFormat); 5] = [
    ("q8_0", QuantFormat::Q8_0),
    ("q4_0", QuantFormat::Q4_0),
    ("q4_1", QuantFormat::Q4_1),
    ("q4_k", QuantFormat::Q4_K),
    ("q6_k", QuantFormat::Q6_K),
];

#[test]
fn gguf_dequantize_is_bit_identical_to_reference() {
    let m = manifest();
    for (name, fmt) in GGUF {
        let e = &m["formats"][name];
        let blocks = bytes(&e["blocks"]);
        let want = f32s(&e["dequant"]);
        let nb = e["n_blocks"].as_u64().unwrap() as usize;
        assert_eq!(blocks.len(), nb * fmt.block_bytes());
        let k = nb * fmt.block_elems();
        let mut got = vec![0.0f32; k];
        quant::dequantize(fmt, 1, k, &blocks, None, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(same(*g, *w), "{name} value {i}: got {g:e}, reference {w:e}");
        }
        // The last two blocks carry NaN and +Inf scales: IEEE propagation, as the reference.
        assert!(got[k - 2 * fmt.block_elems()..k - fmt.block_elems()]
            .iter()
            .any(|v| v.is_nan()));
    }
}

#[test]
fn gguf_quantize_matches_reference_quantizer() {
    let m = manifest();
    for (name, fmt) in &GGUF[..3] {
        let e = &m["formats"][*name];
        let src = f32s(&e["src"]);
        let want = bytes(&e["quant"]);
        let rows = e["quant_rows"].as_u64().unwrap() as usize;
        let k = e["quant_k"].as_u64().unwrap() as usize;
        let mut got = vec![0u8; rows * quant::row_bytes(*fmt, k).unwrap()];
        quant::quantize(*fmt, rows, k, &src, &mut got, None).unwrap();
        assert_eq!(
            got, want,
            "{name} quantised bytes differ from the reference"
        );
    }
}

#[test]
fn every_format_round_trips_within_its_resolution() {
    let k = 512;
    let rows = 3;
    let src: Vec<f32> = (0..rows * k)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i / k) as f32))
        .collect();
    for fmt in QuantFormat::ALL {
        let rb = quant::row_bytes(fmt, k).unwrap();
        let mut q = vec![0u8; rows * rb];
        let mut scales = vec![0.0f32; rows];
        let needs = fmt.row_scales() != quant::RowScales::None;
        quant::quantize(fmt, rows, k, &src, &mut q, needs.then_some(&mut scales[..])).unwrap();
        let mut back = vec![0.0f32; rows * k];
        quant::dequantize(fmt, rows, k, &q, needs.then_some(&scales[..]), &mut back).unwrap();
        // Worst-case step of each format relative to the row's range (3 at most here).
        let rel = match fmt {
            QuantFormat::Q8_0 | QuantFormat::I8 => 1.0 / 127.0,
            QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q4_K => 1.0 / 7.0,
            QuantFormat::Q6_K => 1.0 / 31.0,
            QuantFormat::F8E4M3 => 1.0 / 16.0,
            QuantFormat::F8E5M2 => 1.0 / 8.0,
        };
        for r in 0..rows {
            let amax = src[r * k..(r + 1) * k]
                .iter()
                .fold(0.0f32, |a, v| a.max(v.abs()));
            for i in r * k..(r + 1) * k {
                let err = (back[i] - src[i]).abs();
                assert!(
                    err <= rel * amax * 1.01,
                    "{fmt:?} [{i}]: {} -> {} (amax {amax})",
                    src[i],
                    back[i]
                );
            }
        }
    }
}

#[test]
fn fp8_decode_matches_ml_dtypes_for_all_codes() {
    let m = manifest();
    for (name, kind) in [("e4m3fn", Fp8Kind::E4M3), ("e5m2", Fp8Kind::E5M2)] {
        let want = f32s(&m["fp8"][name]["decode"]);
        assert_eq!(want.len(), 256);
        for (c, w) in want.iter().enumerate() {
            let got = fp8::decode(kind, c as u8);
            assert_eq!(
                got.to_bits(),
                w.to_bits(),
                "{name} code {c:#04x}: {got:e} vs {w:e}"
            );
        }
    }
}

#[test]
fn fp8_encode_matches_ml_dtypes_with_and_without_saturation() {
    let m = manifest();
    let values = f32s(&m["fp8"]["values"]);
    for (name, kind) in [("e4m3fn", Fp8Kind::E4M3), ("e5m2", Fp8Kind::E5M2)] {
        for (mode, key) in [
            (Overflow::Ieee, "encode"),
            (Overflow::Saturate, "encode_sat"),
        ] {
            let want = bytes(&m["fp8"][name][key]);
            let mut got = vec![0u8; values.len()];
            fp8::encode_slice(kind, mode, &values, &mut got).unwrap();
            for (i, v) in values.iter().enumerate() {
                assert_eq!(
                    got[i],
                    want[i],
                    "{name} {mode:?}: {v:e} ({:#010x})",
                    v.to_bits()
                );
            }
        }
        // Every code that is not NaN survives decode then encode.
        for c in 0..=255u8 {
            let v = fp8::decode(kind, c);
            if !v.is_nan() {
                assert_eq!(fp8::encode(kind, v, Overflow::Ieee), c);
            }
        }
    }
}

#[test]
fn bad_shapes_and_short_slices_are_errors() {
    let src = vec![0.0f32; 64];
    let mut dst = vec![0u8; 64];
    let e = quant::quantize(QuantFormat::Q4_0, 1, 48, &src, &mut dst, None).unwrap_err();
    assert!(matches!(e, KernelError::BadShape { .. }), "{e}");
    let e = quant::row_bytes(QuantFormat::Q4_K, 300).unwrap_err();
    assert!(e.to_string().contains("256"), "{e}");
    let mut out = vec![0.0f32; 256];
    let e = quant::dequantize(QuantFormat::Q6_K, 1, 256, &dst, None, &mut out).unwrap_err();
    assert!(
        matches!(e, KernelError::SliceTooShort { operand: "src", .. }),
        "{e}"
    );
    let e = quant::dequantize(QuantFormat::Q8_0, 1, 32, &dst, Some(&[1.0]), &mut out).unwrap_err();
    assert!(e.to_string().contains("own scales"), "{e}");
    let e = quant::dequantize(QuantFormat::I8, 2, 32, &dst, Some(&[1.0]), &mut out).unwrap_err();
    assert!(e.to_string().contains("1 entries for 2 rows"), "{e}");
    let e = quant::dequantize(QuantFormat::I8, 1, 32, &dst, None, &mut out).unwrap_err();
    assert!(e.to_string().contains("need one scale"), "{e}");
    let mut small = [0u8; 3];
    assert!(fp8::encode_slice(Fp8Kind::E4M3, Overflow::Ieee, &src[..4], &mut small).is_err());
}

#[test]
fn embedding_gathers_dequantised_rows() {
    let (vocab, dim) = (7, 96);
    let table_f: Vec<f32> = (0..vocab * dim)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) / 13.0)
        .collect();
    for fmt in [QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1] {
        let rb = quant::row_bytes(fmt, dim).unwrap();
        let mut table = vec![0u8; vocab * rb];
        quant::quantize(fmt, vocab, dim, &table_f, &mut table, None).unwrap();
        let mut full = vec![0.0f32; vocab * dim];
        quant::dequantize(fmt, vocab, dim, &table, None, &mut full).unwrap();
        let w = quant::QWeights {
            format: fmt,
            data: &table,
            scales: None,
            n: vocab,
            k: dim,
        };
        let ids = [3u32, 0, 6, 3];
        // The row decode is scalar on every instruction-set path.
        let mut out = vec![0.0f32; ids.len() * dim];
        quant::embedding(&w, &ids, &mut out).unwrap();
        for (p, &id) in ids.iter().enumerate() {
            assert_eq!(
                &out[p * dim..(p + 1) * dim],
                &full[id as usize * dim..(id as usize + 1) * dim]
            );
        }
        let mut out16 = vec![half::f16::ZERO; dim];
        quant::embedding(&w, &[5], &mut out16).unwrap();
        assert_eq!(out16[7], half::f16::from_f32(full[5 * dim + 7]));
        let mut out = vec![0.0f32; dim];
        let e = quant::embedding(&w, &[7], &mut out).unwrap_err();
        assert!(e.to_string().contains("outside the vocabulary"), "{e}");
        let short = quant::QWeights {
            data: &table[..rb * 6],
            ..w
        };
        let e = quant::embedding(&short, &[1], &mut out).unwrap_err();
        assert!(
            matches!(
                e,
                KernelError::SliceTooShort {
                    operand: "table",
                    ..
                }
            ),
            "{e}"
        );
    }
}
