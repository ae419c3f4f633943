"""Shared helpers of the ``test_models_*`` tests.

* Makes ``knpu.models`` importable without the compiled ``knpu._knpu`` extension: these
  tests cover the host-side pieces (readers, tokenizers, the numpy reference), which need
  only numpy, ``tokenizers`` and the model files. Where ``import knpu`` works, the real
  package is used.
* Finds the model files and the fixtures, skipping a test whose optional dependency is
  missing, unless ``KNPU_REQUIRE_MODELS=1`` is set (as ``make test`` does), which turns
  every such skip into a failure so a missing install cannot pass unnoticed.
* A minimal GGUF writer for building corrupt and synthetic files.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import types
from typing import Any, Callable, Dict, List, Sequence, Tuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
PY_SRC = os.path.join(os.path.dirname(HERE), "py_src")


def _ensure_knpu_models() -> None:
    try:
        importlib.import_module("knpu")
        return
    except ImportError:
        pass
    # The extension is not built: expose the source tree's knpu package without running
    # its __init__ (which loads the extension), so knpu.models resolves from py_src.
    pkg = types.ModuleType("knpu")
    pkg.__path__ = [os.path.join(PY_SRC, "knpu")]  # type: ignore[attr-defined]
    pkg.__file__ = os.path.join(PY_SRC, "knpu", "__init__.py")
    sys.modules["knpu"] = pkg


_ensure_knpu_models()


def require(condition: bool, reason: str) -> None:
    """Skip (or, with ``KNPU_REQUIRE_MODELS=1``, fail) unless ``condition`` holds."""
    if condition:
        return
    if os.environ.get("KNPU_REQUIRE_MODELS") == "1":
        pytest.fail(f"{reason} (KNPU_REQUIRE_MODELS=1 makes this a failure)")
    pytest.skip(reason)


def require_module(name: str) -> Any:
    """Import an optional dependency or skip/fail naming it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        require(False, f"needs the '{name}' package (pip install 'knpu[models]')")


def _model_path(find: Callable[[], str]) -> str:
    """What ``find`` (a locator of :mod:`knpu.models.paths`) returns, or skip/fail with its
    message when the model is not installed."""
    from knpu.models.paths import ModelNotFoundError

    try:
        return find()
    except ModelNotFoundError as exc:
        require(False, str(exc))
        raise


def smollm2_path() -> str:
    from knpu.models.paths import smollm2_gguf_path

    return _model_path(smollm2_gguf_path)


def minilm_path() -> str:
    from knpu.models.paths import minilm_dir

    return _model_path(minilm_dir)


def load_fixture(name: str) -> Dict[str, Any]:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


# ---- a minimal GGUF writer (tests only) -----------------------------------------------

# Metadata value type ids.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {
    U8: "<B",
    I8: "<b",
    U16: "<H",
    I16: "<h",
    U32: "<I",
    I32: "<i",
    F32: "<f",
    BOOL: "<?",
    U64: "<Q",
    I64: "<q",
    F64: "<d",
}


def gguf_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def gguf_value(vtype: int, value: Any) -> bytes:
    if vtype == STR:
        return gguf_string(value)
    if vtype == ARR:
        elem_type, items = value
        out = struct.pack("<IQ", elem_type, len(items))
        return out + b"".join(gguf_value(elem_type, v) for v in items)
    return struct.pack(_FMT[vtype], value)


def build_gguf(
    metadata: Sequence[Tuple[str, int, Any]],
    tensors: Sequence[Tuple[str, Sequence[int], int, bytes]],
    *,
    version: int = 3,
    alignment: int = 32,
) -> Tuple[bytes, int]:
    """A GGUF file's bytes and its data offset.

    ``tensors`` are ``(name, ggml extents innermost first, type id, data)``; data is laid
    out in order, each at the next multiple of ``alignment``.
    """
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, vtype, value in metadata:
        head += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
    offsets: List[int] = []
    pos = 0
    for _, _, _, data in tensors:
        pos = (pos + alignment - 1) // alignment * alignment
        offsets.append(pos)
        pos += len(data)
    for (name, dims, type_id, _), off in zip(tensors, offsets):
        head += gguf_string(name) + struct.pack("<I", len(dims))
        head += b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", type_id, off)
    data_offset = (len(head) + alignment - 1) // alignment * alignment
    body = bytearray(head + b"\0" * (data_offset - len(head)))
    for (_, _, _, data), off in zip(tensors, offsets):
        need = data_offset + off - len(body)
        body += b"\0" * need + data
    return bytes(body), data_offset
