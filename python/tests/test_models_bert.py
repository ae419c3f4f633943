"""MiniLM sentence embeddings on the device against sentence-transformers' fixture.

Cosine >= 0.999 per sentence (the model runner issue's bound), a batch equal to its
sentences one at a time, the ``python -m knpu.embed`` command line, and the errors for bad
model files and bad input.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from models_support import PY_SRC, load_fixture, minilm_path, require, require_module

# isort: split
import knpu

require(hasattr(knpu, "attention"), "needs the compiled knpu extension (make python-install)")

from knpu.models import (  # noqa: E402
    ModelFileError,
    SafetensorsFile,
    SentenceEmbedder,
    UnsupportedModelError,
    embed,
)

MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def model_dir():
    require_module("tokenizers")
    return minilm_path()


@pytest.fixture(scope="module")
def embedder(model_dir):
    # Small passes: the fixture's lengths (3 to 256 pieces) fall into several padded batches.
    return SentenceEmbedder(model_dir, batch_size=4)


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_embeddings_match_sentence_transformers(embedder):
    rows = load_fixture("minilm_st.json")["sentences"]
    texts = [r["text"] for r in rows]
    # The tokenizer feeds the model what sentence-transformers fed it (truncated at 256).
    for r in rows:
        assert embedder.tokenizer.encode(r["text"]) == r["input_ids"]
    assert max(len(r["input_ids"]) for r in rows) == 256
    emb = embedder.embed(texts)
    assert emb.shape == (len(rows), 384) and emb.dtype == np.float32
    cos = cosine(emb, [r["embedding"] for r in rows])
    print("cosine per sentence:", np.round(cos, 6).tolist())
    assert (cos >= MIN_COSINE).all(), cos
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_batch_equals_one_at_a_time(model_dir):
    texts = [
        "A short one.",
        "Die Katze schläft auf dem Sofa, weil es draußen regnet.",
        "",
        "Padding must not change what a sentence means, however long its neighbours are.",
    ]
    batched = SentenceEmbedder(model_dir, batch_size=len(texts)).embed(texts)
    single = SentenceEmbedder(model_dir, batch_size=1)
    for i, t in enumerate(texts):
        alone = single.embed([t])[0]
        np.testing.assert_allclose(batched[i], alone, atol=2e-6)
    # The module-level function keeps its model and gives the same rows.
    np.testing.assert_allclose(embed(texts, model_dir=model_dir), batched, atol=2e-6)


def run_cli(*args, env_extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), PY_SRC]))
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "knpu.embed", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_cli_json_matches_the_fixture(model_dir):
    rows = load_fixture("minilm_st.json")["sentences"][:3]
    r = run_cli("--json", "--model", model_dir, *[row["text"] for row in rows])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["sentences"] == [row["text"] for row in rows] and out["dim"] == 384
    assert os.path.samefile(out["model"], model_dir)
    cos = cosine(out["embeddings"], [row["embedding"] for row in rows])
    assert (cos >= MIN_COSINE).all(), cos


def test_cli_table_of_examples(model_dir):
    from knpu.embed import EXAMPLES

    r = run_cli("--model", model_dir)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any("sentences/s" in line and "ms for the batch" in line for line in lines)
    assert any(line.startswith("device") for line in lines)
    # One row per example, each with its similarity to itself (1.000) on the diagonal.
    rows = [line for line in lines if line[:2].strip().isdigit() and "sentences/s" not in line]
    assert len(rows) == len(EXAMPLES)
    for i, row in enumerate(rows):
        assert row.split()[-len(EXAMPLES) + i] == "1.000", row


# --- bad input -------------------------------------------------------------------------


def write_safetensors(path, tensors):
    """A safetensors file of (name, dtype name, numpy array) entries."""
    header, blobs, offset = {}, [], 0
    for name, dtype_name, arr in tensors:
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": dtype_name,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)


@pytest.fixture(scope="module")
def model_copy(model_dir, tmp_path_factory):
    """A function making a copy of the model directory whose safetensors is rewritten by
    ``edit(list of (name, dtype, array)) -> list``."""

    def make(label, edit):
        d = tmp_path_factory.mktemp(label)
        for entry in os.listdir(model_dir):
            src = os.path.join(model_dir, entry)
            if entry != "model.safetensors":
                (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, d / entry)
        with SafetensorsFile(os.path.join(model_dir, "model.safetensors")) as st:
            tensors = [(n, st.specs[n][0], np.array(st.tensor(n))) for n in st.keys()]
        edit_out = edit(tensors)
        if isinstance(edit_out, bytes):
            (d / "model.safetensors").write_bytes(edit_out)
        else:
            write_safetensors(d / "model.safetensors", edit_out)
        return str(d)

    return make


MISSING = "encoder.layer.3.output.dense.bias"
HALF = "encoder.layer.2.intermediate.dense.weight"


def test_missing_tensor_is_named(model_copy):
    d = model_copy("missing", lambda ts: [t for t in ts if t[0] != MISSING])
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{MISSING}': missing"):
        SentenceEmbedder(d)
    r = run_cli("--model", d, "hello")
    assert r.returncode == 1 and MISSING in r.stderr and "Traceback" not in r.stderr


def test_unsupported_dtype_is_named(model_copy):
    def to_f16(ts):
        return [(n, "F16", a.astype(np.float16)) if n == HALF else (n, dt, a) for n, dt, a in ts]

    d = model_copy("f16", to_f16)
    with pytest.raises(UnsupportedModelError, match=rf"tensor '{HALF}': dtype F16 is not supported"):
        SentenceEmbedder(d)


def test_truncated_and_corrupt_files_are_named(model_copy, model_dir):
    src = open(os.path.join(model_dir, "model.safetensors"), "rb").read()
    d = model_copy("truncated", lambda ts: src[: len(src) // 2])
    with pytest.raises(ModelFileError, match=r"model\.safetensors.*truncated file"):
        SentenceEmbedder(d)
    r = run_cli("--json", "--model", d, "hello")
    assert r.returncode == 1 and "truncated" in r.stderr and r.stdout == ""
    d = model_copy("corrupt", lambda ts: struct.pack("<Q", 40) + b"{not json" + src[17:4096])
    with pytest.raises(ModelFileError, match=r"model\.safetensors: corrupt header"):
        SentenceEmbedder(d)


def test_bad_shape_and_wrong_model_kind_are_refused(model_copy, tmp_path, model_dir):
    def narrow(ts):
        return [(n, dt, a[:, :10]) if n == HALF else (n, dt, a) for n, dt, a in ts]

    d = model_copy("shape", narrow)
    with pytest.raises(ModelFileError, match=rf"tensor '{HALF}': shape \[1536, 10\] differs"):
        SentenceEmbedder(d)
    # A config of another architecture is refused by name, before any weight is read.
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "roberta"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match=r"config\.json: model_type 'roberta'"):
        SentenceEmbedder(other)


def test_bad_sentences_raise(embedder, tmp_path):
    with pytest.raises(ValueError, match="no sentences"):
        embedder.embed([])
    with pytest.raises(TypeError, match="not one string"):
        embedder.embed("one string")
    with pytest.raises(TypeError, match="sentence 1 is a int"):
        embedder.embed(["fine", 3])
    r = run_cli("--model", str(tmp_path / "nowhere"), "hello")
    assert r.returncode == 1 and "nowhere" in r.stderr
