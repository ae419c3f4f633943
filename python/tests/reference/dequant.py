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


def q4_1_minimums(raw: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """The per-block minimums ``m`` of a Q4_1 matrix ``shape = (out, in)``: ``(out, in / 32)``."""
    return _half(_blocks(raw, 20)[:, 2:4]).reshape(shape[0], shape[1] // 32)


def quantize_q8_blocks(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml's Q8_0/Q8_1 quantisation of ``x`` (last axis a multiple of 32), as its CPU backend
    quantises a matmul's activations.

    Per block of 32: ``d = max|x| / 127``, ``q = round(x * 127 / max|x|)`` (ties to even, as
    its vector path rounds). Returns the codes ``(..., 32)`` as float32, the block scale
    ``d`` in float32 and ``d`` rounded to half precision as stored (both ``(...)`` per block).
    """
    blocks = x.reshape(*x.shape[:-1], -1, 32).astype(np.float32)
    amax = np.abs(blocks).max(axis=-1)
    d = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.round(blocks * inv[..., None])
    return q, d, d.astype(np.float16).astype(np.float32)


def quantize_q8_rows(x: np.ndarray) -> np.ndarray:
    """Round ``x`` (last axis a multiple of 32) through 8-bit blocks of 32 and back:
    ``q * f16(d)`` with ``q``, ``d`` from :func:`quantize_q8_blocks`."""
    q, _, d16 = quantize_q8_blocks(x)
    return (q * d16[..., None]).reshape(x.shape)
