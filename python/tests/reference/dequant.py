"""Dequantisation of ggml's block formats from the raw bytes a GGUF file stores.

Block layouts (little-endian, ``d`` and ``m`` are IEEE half floats):

* Q4_0, 18 bytes per 32 values: ``d``, then 16 bytes of nibbles. Byte ``j`` holds value
  ``j`` in its low nibble and value ``j + 16`` in its high nibble; ``x = (q - 8) * d``.
* Q4_1, 20 bytes per 32 values: ``d``, ``m``, then 16 bytes of nibbles in the same order
  as Q4_0; ``x = q * d + m``.
* Q8_0, 34 bytes per 32 values: ``d``, then 32 signed bytes; ``x = q * d``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from knpu.models.gguf import GGMLType, GGUFFile


def _blocks(raw: np.ndarray, block_bytes: int) -> np.ndarray:
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size % block_bytes:
        raise ValueError(f"{raw.size} bytes is not a whole number of {block_bytes}-byte blocks")
    return raw.reshape(-1, block_bytes)


def _half(cols: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cols).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(blocks, 16) bytes to (blocks, 32) values: low nibbles first, then high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Flat float32 values of Q4_0 blocks."""
    b = _blocks(raw, 18)
    return ((_nibbles(b[:, 2:]) - 8.0) * _half(b[:, 0:2])).reshape(-1)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    """Flat float32 values of Q4_1 blocks."""
    b = _blocks(raw, 20)
    return (_nibbles(b[:, 4:]) * _half(b[:, 0:2]) + _half(b[:, 2:4])).reshape(-1)


def dequantize_q8_0(raw: np.ndarray) -> np.ndarray:
    """Flat float32 values of Q8_0 blocks."""
    b = _blocks(raw, 34)
    q = np.ascontiguousarray(b[:, 2:]).view(np.int8).astype(np.float32)
    return (q * _half(b[:, 0:2])).reshape(-1)


_DEQUANT = {
    GGMLType.Q4_0: dequantize_q4_0,
    GGMLType.Q4_1: dequantize_q4_1,
    GGMLType.Q8_0: dequantize_q8_0,
}


def dequantize(raw: np.ndarray, ggml_type: GGMLType, shape: Tuple[int, ...]) -> np.ndarray:
    """Values of a stored tensor as float32 in numpy order ``shape``."""
    if ggml_type == GGMLType.F32:
        return np.ascontiguousarray(raw).view("<f4").astype(np.float32).reshape(shape)
    if ggml_type == GGMLType.F16:
        return np.ascontiguousarray(raw).view("<f2").astype(np.float32).reshape(shape)
    fn = _DEQUANT.get(ggml_type)
    if fn is None:
        raise NotImplementedError(f"no reference dequantisation for {ggml_type.name}")
    return fn(raw).reshape(shape)


def load_tensor(gguf: GGUFFile, name: str) -> np.ndarray:
    """A GGUF tensor dequantised to float32 in numpy order."""
    info = gguf.tensor_info(name)
    return dequantize(gguf.tensor_bytes(name), info.ggml_type, info.shape)


def quantize_q8_rows(x: np.ndarray) -> np.ndarray:
    """Round ``x`` (last axis a multiple of 32) through 8-bit blocks of 32 and back.

    llama.cpp's CPU backend quantises the activations of a quantised matmul this way
    (Q8_0/Q8_1: scale ``amax / 127``, round to nearest, scale kept in half precision),
    so the reference can reproduce its rounding when asked to.
    """
    shape = x.shape
    blocks = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    q = np.round(blocks * inv)
    d16 = d.astype(np.float16).astype(np.float32)
    return (q * d16).reshape(shape)
