"""knpu.models.safetensors_io: reading, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from models_support import minilm_path, require_module

# isort: split
# models_support makes knpu.models importable without the extension: import it first.
from knpu.models import ModelFileError, SafetensorsFile, UnsupportedModelError, load_safetensors


def _write(path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_reads_tensors_and_metadata(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, -2], dtype=np.int64)
    p = tmp_path / "ok.safetensors"
    _write(
        p,
        {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
        },
        a.tobytes() + b.tobytes(),
    )
    with SafetensorsFile(p) as st:
        assert list(st.keys()) == ["a", "b"] and st.metadata == {"format": "pt"}
        np.testing.assert_array_equal(st.tensor("a"), a)
        np.testing.assert_array_equal(st.tensor("b"), b)
        assert not st.tensor("a").flags.writeable
        with pytest.raises(KeyError, match="no tensor named 'c'"):
            st.tensor("c")
    got = load_safetensors(p)
    np.testing.assert_array_equal(got["a"], a)


def _expect(path, *fragments, cls=ModelFileError):
    with pytest.raises(cls) as info:
        SafetensorsFile(path)
    msg = str(info.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return info.value


def test_bad_files(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\1\2")
    _expect(p, "too short")
    p.write_bytes(struct.pack("<Q", 2**40))
    _expect(p, "header length")
    p.write_bytes(struct.pack("<Q", 100) + b"{}")
    _expect(p, "truncated file", "header needs 100 bytes")
    p.write_bytes(struct.pack("<Q", 3) + b"{x}")
    _expect(p, "not JSON")
    p.write_bytes(struct.pack("<Q", 2) + b"[]")
    _expect(p, "not an object")
    _expect(tmp_path / "absent.safetensors", "cannot open")


def test_bad_tensor_entries_name_the_tensor(tmp_path):
    p = tmp_path / "t.safetensors"
    _write(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 15)
    err = _expect(p, "tensor 'w'", "truncated file")
    assert err.tensor == "w"
    _write(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 16)
    _expect(p, "tensor 'w'", "do not hold")
    _write(p, {"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4)
    _expect(p, "tensor 'w'", "dtype F8_E4M3 is not supported", cls=UnsupportedModelError)
    _write(p, {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4)
    _expect(p, "tensor 'w'", "malformed entry")
    _write(p, {"w": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    _expect(p, "tensor 'w'", "malformed entry")


def test_minilm_matches_the_safetensors_package():
    st_np = require_module("safetensors.numpy")
    path = os.path.join(minilm_path(), "model.safetensors")
    theirs = st_np.load_file(path)
    mine = load_safetensors(path)
    assert set(theirs) == set(mine)
    for name, arr in theirs.items():
        assert mine[name].dtype == arr.dtype and mine[name].shape == arr.shape, name
        np.testing.assert_array_equal(mine[name], arr, err_msg=name)
    assert mine["embeddings.word_embeddings.weight"].shape == (30522, 384)
