"""knpu.models.gguf: parsing, raw tensor bytes, and clear errors for bad files."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from models_support import (
    ARR,
    BOOL,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    STR,
    U8,
    U16,
    U32,
    U64,
    build_gguf,
    require_module,
    smollm2_path,
)

# isort: split
# models_support makes knpu.models importable without the extension: import it first.
from knpu.models import GGMLType, GGUFFile, ModelFileError, UnsupportedModelError


def _q4_1_row(n_blocks: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = b""
    for _ in range(n_blocks):
        d, m = rng.standard_normal(2).astype(np.float16)
        out += d.tobytes() + m.tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    return out


def _sample_file(tmp_path: Path, **kw) -> tuple[Path, dict]:
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    q41 = _q4_1_row(4, seed=1)  # 2 rows of 64 values
    meta = [
        ("general.architecture", STR, "llama"),
        ("u8", U8, 200),
        ("i8", I8, -5),
        ("u16", U16, 60000),
        ("i16", I16, -300),
        ("u32", U32, 4_000_000_000),
        ("i32", I32, -7),
        ("f32", F32, 1.5),
        ("bool", BOOL, True),
        ("u64", U64, 2**40),
        ("i64", I64, -(2**40)),
        ("f64", F64, 0.25),
        ("strings", ARR, (STR, ["a", "béta", ""])),
        ("ints", ARR, (I32, [1, -2, 3])),
        ("nested", ARR, (ARR, [(U8, [1, 2]), (U8, [])])),
    ]
    tensors = [
        ("w.f32", [3, 2], int(GGMLType.F32), f32.tobytes()),
        ("w.q4_1", [64, 2], int(GGMLType.Q4_1), q41),
    ]
    raw, data_offset = build_gguf(meta, tensors, **kw)
    path = tmp_path / "sample.gguf"
    path.write_bytes(raw)
    return path, {"f32": f32, "q41": q41, "data_offset": data_offset, "raw": raw}


def test_parses_every_metadata_type_and_tensor_layout(tmp_path):
    path, want = _sample_file(tmp_path)
    with GGUFFile(path) as g:
        assert g.version == 3 and g.alignment == 32 and g.data_offset == want["data_offset"]
        m = g.metadata
        assert m["general.architecture"] == "llama"
        assert (m["u8"], m["i8"], m["u16"], m["i16"]) == (200, -5, 60000, -300)
        assert (m["u32"], m["i32"], m["f32"], m["bool"]) == (4_000_000_000, -7, 1.5, True)
        assert (m["u64"], m["i64"], m["f64"]) == (2**40, -(2**40), 0.25)
        assert m["strings"] == ["a", "béta", ""]
        assert m["ints"].dtype == np.int32 and m["ints"].tolist() == [1, -2, 3]
        assert [a.tolist() for a in m["nested"]] == [[1, 2], []]
        f = g.tensor_info("w.f32")
        assert f.ggml_shape == (3, 2) and f.shape == (2, 3) and f.nbytes == 24
        np.testing.assert_array_equal(g.tensor_array("w.f32"), want["f32"])
        q = g.tensor_info("w.q4_1")
        assert q.ggml_type is GGMLType.Q4_1 and q.shape == (2, 64) and q.nbytes == 80
        assert q.offset % 32 == 0
        assert g.tensor_bytes("w.q4_1").tobytes() == want["q41"]
        assert not g.tensor_bytes("w.q4_1").flags.writeable
        with pytest.raises(UnsupportedModelError, match="w.q4_1.*Q4_1 has no numpy dtype"):
            g.tensor_array("w.q4_1")
        with pytest.raises(KeyError, match="no tensor named 'nope'"):
            g.tensor_info("nope")
        with pytest.raises(ModelFileError, match="metadata key 'absent' is missing"):
            g.require("absent")


def test_alignment_from_metadata_is_honoured(tmp_path):
    meta = [("general.alignment", U32, 64)]
    raw, data_offset = build_gguf(
        meta, [("a", [1], 0, b"\1\0\0\0"), ("b", [2], 0, b"\2" * 8)], alignment=64
    )
    p = tmp_path / "a64.gguf"
    p.write_bytes(raw)
    with GGUFFile(p) as g:
        assert g.alignment == 64 and g.data_offset == data_offset and data_offset % 64 == 0
        assert g.tensor_info("b").offset == 64
        assert g.tensor_bytes("b").tobytes() == b"\2" * 8


def _expect_error(path, *fragments, cls=ModelFileError):
    with pytest.raises(cls) as info:
        GGUFFile(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return info.value


def test_bad_magic_empty_and_missing_files(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"GGML" + b"\0" * 60)
    _expect_error(p, "not a GGUF file")
    p.write_bytes(b"")
    _expect_error(p, "empty")
    _expect_error(tmp_path / "missing.gguf", "cannot open")


@pytest.mark.parametrize("version", [1, 4])
def test_unsupported_version(tmp_path, version):
    raw, _ = build_gguf([], [], version=version)
    p = tmp_path / "v.gguf"
    p.write_bytes(raw)
    _expect_error(p, f"GGUF version {version} is not supported", cls=UnsupportedModelError)


def test_every_truncation_of_the_header_is_a_clear_error(tmp_path):
    path, want = _sample_file(tmp_path)
    raw = want["raw"]
    header_end = want["data_offset"]
    cut = tmp_path / "cut.gguf"
    for n in range(1, header_end):
        cut.write_bytes(raw[:n])
        err = _expect_error(cut)
        assert "truncated" in str(err) or "not a GGUF" in str(err), (n, str(err))


def test_truncated_tensor_data_names_the_tensor(tmp_path):
    path, want = _sample_file(tmp_path)
    p = tmp_path / "short.gguf"
    p.write_bytes(want["raw"][:-1])
    err = _expect_error(p, "tensor 'w.q4_1'", "truncated file")
    assert err.tensor == "w.q4_1"


def test_unknown_tensor_type_names_tensor_and_type(tmp_path):
    raw, _ = build_gguf([], [("odd", [32], 99, b"\0" * 32)])
    p = tmp_path / "t.gguf"
    p.write_bytes(raw)
    err = _expect_error(p, "tensor 'odd'", "type id 99 is not supported", cls=UnsupportedModelError)
    assert err.tensor == "odd"


@pytest.mark.parametrize(
    "tensors, fragment",
    [
        ([("r5", [1, 1, 1, 1, 1], 0, b"\0" * 4)], "rank 5 exceeds 4"),
        ([("q", [40], int(GGMLType.Q8_0), b"\0" * 34)], "not a multiple of the Q8_0 block of 32"),
        ([("a", [1], 0, b"\0" * 4), ("a", [1], 0, b"\0" * 4)], "tensor name repeats"),
    ],
)
def test_corrupt_tensor_infos(tmp_path, tensors, fragment):
    raw, _ = build_gguf([], tensors)
    p = tmp_path / "c.gguf"
    p.write_bytes(raw)
    _expect_error(p, fragment)


def test_misaligned_tensor_offset(tmp_path):
    raw, data_offset = build_gguf([], [("a", [1], 0, b"\0" * 4)])
    # The tensor info ends with its u64 offset, right before the padding.
    name_len = len(b"a")
    info_end = 24 + 8 + name_len + 4 + 8 + 4 + 8
    patched = raw[: info_end - 8] + struct.pack("<Q", 4) + raw[info_end:]
    p = tmp_path / "m.gguf"
    p.write_bytes(patched + b"\0" * 64)
    _expect_error(p, "tensor 'a'", "not a multiple of the alignment 32")


def test_corrupt_metadata(tmp_path):
    p = tmp_path / "k.gguf"
    raw, _ = build_gguf([("k", U8, 1), ("k", U8, 2)], [])
    p.write_bytes(raw)
    _expect_error(p, "metadata key 'k' repeats")
    raw, _ = build_gguf([("k", U8, 1)], [])
    type_at = 24 + 8 + len("k")  # after the header and the key
    p.write_bytes(raw[:type_at] + struct.pack("<I", 77) + raw[type_at + 4 :])
    _expect_error(p, "unknown metadata value type 77")
    raw, _ = build_gguf([("general.alignment", U32, 24)], [])
    p.write_bytes(raw)
    _expect_error(p, "general.alignment 24 is not a power of two")
    raw, _ = build_gguf([("s", STR, "ok")], [])
    p.write_bytes(raw.replace(b"ok", b"\xff\xfe"))
    _expect_error(p, "metadata 's'", "is not UTF-8")


def test_huge_lengths_do_not_allocate(tmp_path):
    p = tmp_path / "h.gguf"
    # A string length and an array count near 2**64 must fail at once, not allocate.
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**63) + b"key"
    p.write_bytes(head)
    _expect_error(p, "truncated or corrupt header")
    # An array of strings, and one of u32, longer than any file.
    one_key = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
    for elem_type, count in [(STR, 2**62), (U32, 2**61)]:
        p.write_bytes(one_key + struct.pack("<IIQ", ARR, elem_type, count))
        _expect_error(p, "metadata 'k'")


def test_random_corruption_raises_only_model_file_errors(tmp_path):
    path, want = _sample_file(tmp_path)
    raw = bytearray(want["raw"])
    rng = random.Random(7)
    p = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        bad = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(4, want["data_offset"])] = rng.randrange(256)
        p.write_bytes(bytes(bad))
        try:
            GGUFFile(p).close()
            outcomes["ok"] += 1
        except ModelFileError as exc:
            assert str(p) in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 0


def test_smollm2_file_facts():
    with GGUFFile(smollm2_path()) as g:
        m = g.metadata
        assert m["general.architecture"] == "llama"
        assert (m["llama.block_count"], m["llama.embedding_length"]) == (30, 576)
        assert m["llama.feed_forward_length"] == 1536
        assert (m["llama.attention.head_count"], m["llama.attention.head_count_kv"]) == (9, 3)
        assert m["llama.rope.freq_base"] == 100000.0
        assert abs(m["llama.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-9
        assert len(m["tokenizer.ggml.tokens"]) == 49152
        counts: dict = {}
        for t in g:
            counts[t.ggml_type.name] = counts.get(t.ggml_type.name, 0) + 1
        assert counts == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
        emb = g.tensor_info("token_embd.weight")
        assert emb.ggml_type is GGMLType.Q8_0 and emb.shape == (49152, 576)
        assert emb.nbytes == 49152 * 576 // 32 * 34
        assert "output.weight" not in g.tensors  # tied to token_embd
        assert g.tensor_info("blk.0.attn_k.weight").shape == (192, 576)
        assert g.tensor_info("blk.0.ffn_down.weight").shape == (576, 1536)
        assert g.tensor_array("output_norm.weight").shape == (576,)


def test_smollm2_agrees_with_the_gguf_package():
    gguf = require_module("gguf")
    path = smollm2_path()
    theirs = gguf.GGUFReader(path)
    with GGUFFile(path) as g:
        assert [t.name for t in theirs.tensors] == list(g.tensors)
        for t in theirs.tensors:
            mine = g.tensor_info(t.name)
            assert int(t.tensor_type) == int(mine.ggml_type), t.name
            assert tuple(int(d) for d in t.shape) == mine.ggml_shape, t.name
            assert int(t.data_offset) == g.data_offset + mine.offset, t.name
            assert int(t.n_bytes) == mine.nbytes, t.name
        for name in ("token_embd.weight", "blk.7.attn_q.weight", "blk.29.ffn_norm.weight"):
            t = next(x for x in theirs.tensors if x.name == name)
            assert np.asarray(t.data).tobytes() == g.tensor_bytes(name).tobytes()
        tokens = theirs.fields["tokenizer.ggml.tokens"]
        assert [bytes(tokens.parts[i]).decode() for i in tokens.data[:20]] == g.metadata[
            "tokenizer.ggml.tokens"
        ][:20]
