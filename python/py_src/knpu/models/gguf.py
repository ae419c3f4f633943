"""A reader for GGUF model files (the format of llama.cpp and ggml).

It parses the header (metadata key/values and tensor infos) and hands out each tensor's
bytes exactly as they are stored, so quantised blocks (Q4_1, Q8_0, ...) can be uploaded to
a device without being expanded. It never dequantises and never copies tensor data: the
file is memory-mapped and tensors are read-only views of it.

Every fault (a truncated file, a corrupt header, an unknown tensor type) raises
:class:`~knpu.models.errors.ModelFileError` naming the file and, where one is involved,
the tensor.

Layout, all little-endian: magic ``GGUF``, ``u32`` version (2 or 3), ``u64`` tensor count,
``u64`` metadata count; the metadata key/values; the tensor infos (name, ``u32`` rank,
``u64`` extents innermost first, ``u32`` type, ``u64`` offset); padding to the alignment
(``general.alignment``, 32 by default); then the tensor data, each tensor at its offset
from the start of that section.
"""

from __future__ import annotations

import enum
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from ._mapped import MappedFile
from .errors import ModelFileError, UnsupportedModelError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4


class GGMLType(enum.IntEnum):
    """Tensor storage types this reader knows the block layout of (ggml's type ids)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    BF16 = 30


# (elements per block, bytes per block) for every known type.
BLOCK_LAYOUT: Dict[GGMLType, Tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.Q4_0: (32, 2 + 16),
    GGMLType.Q4_1: (32, 2 + 2 + 16),
    GGMLType.Q5_0: (32, 2 + 4 + 16),
    GGMLType.Q5_1: (32, 2 + 2 + 4 + 16),
    GGMLType.Q8_0: (32, 2 + 32),
    GGMLType.Q8_1: (32, 2 + 2 + 32),
    GGMLType.Q2_K: (256, 16 + 64 + 2 + 2),
    GGMLType.Q3_K: (256, 32 + 64 + 12 + 2),
    GGMLType.Q4_K: (256, 2 + 2 + 12 + 128),
    GGMLType.Q5_K: (256, 2 + 2 + 12 + 32 + 128),
    GGMLType.Q6_K: (256, 128 + 64 + 16 + 2),
    GGMLType.Q8_K: (256, 4 + 256 + 32),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.F64: (1, 8),
    GGMLType.BF16: (1, 2),
}

# numpy dtypes of the unquantised types (BF16 has none in numpy: it is read as raw u16).
PLAIN_DTYPES: Dict[GGMLType, np.dtype] = {
    GGMLType.F32: np.dtype("<f4"),
    GGMLType.F16: np.dtype("<f2"),
    GGMLType.F64: np.dtype("<f8"),
    GGMLType.I8: np.dtype("i1"),
    GGMLType.I16: np.dtype("<i2"),
    GGMLType.I32: np.dtype("<i4"),
    GGMLType.I64: np.dtype("<i8"),
}


class ValueType(enum.IntEnum):
    """Metadata value types of GGUF."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALAR_FORMATS: Dict[ValueType, str] = {
    ValueType.UINT8: "<B",
    ValueType.INT8: "<b",
    ValueType.UINT16: "<H",
    ValueType.INT16: "<h",
    ValueType.UINT32: "<I",
    ValueType.INT32: "<i",
    ValueType.FLOAT32: "<f",
    ValueType.BOOL: "<?",
    ValueType.UINT64: "<Q",
    ValueType.INT64: "<q",
    ValueType.FLOAT64: "<d",
}

_ARRAY_DTYPES: Dict[ValueType, np.dtype] = {
    ValueType.UINT8: np.dtype("u1"),
    ValueType.INT8: np.dtype("i1"),
    ValueType.UINT16: np.dtype("<u2"),
    ValueType.INT16: np.dtype("<i2"),
    ValueType.UINT32: np.dtype("<u4"),
    ValueType.INT32: np.dtype("<i4"),
    ValueType.FLOAT32: np.dtype("<f4"),
    ValueType.BOOL: np.dtype("?"),
    ValueType.UINT64: np.dtype("<u8"),
    ValueType.INT64: np.dtype("<i8"),
    ValueType.FLOAT64: np.dtype("<f8"),
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a GGUF file.

    Attributes:
        name: the tensor's name, e.g. ``blk.0.attn_q.weight``.
        ggml_shape: extents as GGUF stores them, innermost (contiguous) first.
        ggml_type: the storage type.
        offset: byte offset of the data from the start of the data section.
        nbytes: size of the stored data in bytes.
    """

    name: str
    ggml_shape: Tuple[int, ...]
    ggml_type: GGMLType
    offset: int
    nbytes: int

    @property
    def shape(self) -> Tuple[int, ...]:
        """Extents in numpy (row-major) order: outermost first. A weight is ``(out, in)``."""
        return tuple(reversed(self.ggml_shape))

    @property
    def n_elements(self) -> int:
        """Number of logical elements."""
        n = 1
        for d in self.ggml_shape:
            n *= d
        return n

    @property
    def block_size(self) -> int:
        """Elements per quantisation block (1 for unquantised types)."""
        return BLOCK_LAYOUT[self.ggml_type][0]

    @property
    def block_bytes(self) -> int:
        """Bytes per block."""
        return BLOCK_LAYOUT[self.ggml_type][1]


class _Cursor:
    """Bounds-checked little-endian reads from the file's bytes."""

    def __init__(self, path: str, buf: Union[mmap.mmap, bytes]) -> None:
        self.path = path
        self.buf = buf
        self.size = len(buf)
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelFileError(
                self.path,
                f"truncated or corrupt header: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {self.size} bytes",
            )

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFileError(
                self.path, f"corrupt header: {what} at offset {self.pos - n} is not UTF-8 ({exc})"
            ) from None

    def value(self, vtype: int, what: str) -> Any:
        try:
            vt = ValueType(vtype)
        except ValueError:
            raise ModelFileError(
                self.path, f"corrupt header: {what} has unknown metadata value type {vtype}"
            ) from None
        if vt is ValueType.STRING:
            return self.string(what)
        if vt is ValueType.ARRAY:
            elem_type = self.u32(f"element type of {what}")
            count = self.u64(f"length of {what}")
            try:
                et = ValueType(elem_type)
            except ValueError:
                raise ModelFileError(
                    self.path,
                    f"corrupt header: array {what} has unknown element type {elem_type}",
                ) from None
            if et in _ARRAY_DTYPES:
                dtype = _ARRAY_DTYPES[et]
                self.need(count * dtype.itemsize, f"{count} elements of {what}")
                arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
                self.pos += count * dtype.itemsize
                return arr
            # Strings and nested arrays: each element takes at least 8 bytes, which bounds
            # a corrupt count before the loop starts.
            self.need(count * 8, f"{count} elements of {what}")
            return [self.value(elem_type, f"{what}[{i}]") for i in range(count)]
        return self.scalar(_SCALAR_FORMATS[vt], what)


class GGUFFile(MappedFile):
    """A GGUF file opened for reading: metadata, tensor infos and raw tensor bytes.

    The file stays memory-mapped until :meth:`close` (or the end of a ``with`` block);
    arrays returned by :meth:`tensor_bytes` and :meth:`tensor_array` are views of that map
    and must not be used after closing.

    Attributes:
        path: the file's path.
        version: the GGUF version (2 or 3).
        alignment: alignment of tensor data in bytes.
        metadata: key/value metadata in file order. Strings are ``str``, numeric arrays
            are numpy arrays, arrays of strings are lists of ``str``.
        tensors: tensor infos by name, in file order.
        data_offset: file offset where the tensor data section starts.
    """

    def _too_short(self, size: int) -> Optional[str]:
        return "the file is empty, not a GGUF file" if size == 0 else None

    def _parse(self) -> None:
        assert self._map is not None
        cur = _Cursor(self.path, self._map)
        cur.need(4, "the magic number")
        magic = bytes(self._map[0:4])
        if magic != GGUF_MAGIC:
            raise ModelFileError(
                self.path, f"not a GGUF file: magic is {magic!r}, expected {GGUF_MAGIC!r}"
            )
        cur.pos = 4
        self.version = cur.u32("the version")
        if self.version not in SUPPORTED_VERSIONS:
            raise UnsupportedModelError(
                self.path,
                f"GGUF version {self.version} is not supported (supported: "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))})",
            )
        n_tensors = cur.u64("the tensor count")
        n_kv = cur.u64("the metadata count")

        self.metadata: Dict[str, Any] = {}
        for i in range(n_kv):
            key = cur.string(f"metadata key #{i}")
            vtype = cur.u32(f"type of metadata '{key}'")
            if key in self.metadata:
                raise ModelFileError(self.path, f"corrupt header: metadata key '{key}' repeats")
            self.metadata[key] = cur.value(vtype, f"metadata '{key}'")

        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1) != 0:
            raise ModelFileError(
                self.path, f"corrupt header: general.alignment {alignment!r} is not a power of two"
            )
        self.alignment = alignment

        infos: List[Tuple[str, Tuple[int, ...], int, int]] = []
        for i in range(n_tensors):
            name = cur.string(f"name of tensor #{i}")
            n_dims = cur.u32(f"rank of tensor '{name}'")
            if n_dims > MAX_DIMS:
                raise ModelFileError(
                    self.path, f"corrupt header: rank {n_dims} exceeds {MAX_DIMS}", tensor=name
                )
            dims = tuple(cur.u64(f"extents of tensor '{name}'") for _ in range(n_dims))
            type_id = cur.u32(f"type of tensor '{name}'")
            offset = cur.u64(f"offset of tensor '{name}'")
            infos.append((name, dims, type_id, offset))

        self.data_offset = _align(cur.pos, self.alignment)
        data_size = len(self._map) - self.data_offset

        self.tensors: Dict[str, TensorInfo] = {}
        for name, dims, type_id, offset in infos:
            if name in self.tensors:
                raise ModelFileError(self.path, "corrupt header: tensor name repeats", tensor=name)
            info = self._tensor_info(name, dims, type_id, offset)
            if info.offset % self.alignment != 0:
                raise ModelFileError(
                    self.path,
                    f"corrupt header: data offset {info.offset} is not a multiple of the "
                    f"alignment {self.alignment}",
                    tensor=name,
                )
            if info.offset + info.nbytes > data_size:
                raise ModelFileError(
                    self.path,
                    f"truncated file: the tensor's {info.nbytes} bytes at data offset "
                    f"{info.offset} end at file offset "
                    f"{self.data_offset + info.offset + info.nbytes}, but the file has "
                    f"{len(self._map)} bytes",
                    tensor=name,
                )
            self.tensors[name] = info

    def _tensor_info(
        self, name: str, dims: Tuple[int, ...], type_id: int, offset: int
    ) -> TensorInfo:
        try:
            ggml_type = GGMLType(type_id)
        except ValueError:
            raise UnsupportedModelError(
                self.path,
                f"tensor type id {type_id} is not supported (known: "
                f"{', '.join(t.name for t in GGMLType)})",
                tensor=name,
            ) from None
        block_elems, block_bytes = BLOCK_LAYOUT[ggml_type]
        n_elements = 1
        for d in dims:
            n_elements *= d
        inner = dims[0] if dims else 1
        if inner % block_elems != 0:
            raise ModelFileError(
                self.path,
                f"corrupt header: innermost extent {inner} is not a multiple of the "
                f"{ggml_type.name} block of {block_elems}",
                tensor=name,
            )
        nbytes = n_elements // block_elems * block_bytes
        return TensorInfo(name, dims, ggml_type, offset, nbytes)

    # ---- access ---------------------------------------------------------------------

    def _require_open(self) -> mmap.mmap:
        if self._map is None:
            raise ValueError(f"{self.path}: the GGUF file is closed")
        return self._map

    def tensor_info(self, name: str) -> TensorInfo:
        """The info of tensor ``name``; ``KeyError`` naming the file if there is none."""
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named '{name}'") from None

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The tensor's stored bytes as a read-only ``uint8`` array (a view of the file).

        For a quantised tensor these are its blocks in file order; one row of a weight
        ``(out, in)`` is ``in / block_size`` consecutive blocks.
        """
        info = self.tensor_info(name)
        buf = self._require_open()
        start = self.data_offset + info.offset
        return np.frombuffer(buf, dtype=np.uint8, count=info.nbytes, offset=start)

    def tensor_array(self, name: str) -> np.ndarray:
        """An unquantised tensor as a read-only numpy array in numpy order (no copy).

        Raises :class:`UnsupportedModelError` for quantised types (use
        :meth:`tensor_bytes`) and for BF16, which numpy has no dtype for.
        """
        info = self.tensor_info(name)
        dtype = PLAIN_DTYPES.get(info.ggml_type)
        if dtype is None:
            raise UnsupportedModelError(
                self.path,
                f"{info.ggml_type.name} has no numpy dtype; read its raw bytes with tensor_bytes()",
                tensor=name,
            )
        raw = self.tensor_bytes(name)
        return raw.view(dtype).reshape(info.shape)

    def get(self, key: str, default: Any = None) -> Any:
        """A metadata value, or ``default`` if the key is absent."""
        return self.metadata.get(key, default)

    def require(self, key: str) -> Any:
        """A metadata value that must be present; names the file and key if it is not."""
        if key not in self.metadata:
            raise ModelFileError(self.path, f"metadata key '{key}' is missing")
        return self.metadata[key]

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def __repr__(self) -> str:
        arch = self.metadata.get("general.architecture", "?")
        return (
            f"GGUFFile({self.path!r}, version={self.version}, architecture={arch!r}, "
            f"tensors={len(self.tensors)}, metadata={len(self.metadata)})"
        )


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def read_gguf(path: Union[str, os.PathLike]) -> GGUFFile:
    """Open ``path`` as a GGUF file (see :class:`GGUFFile`)."""
    return GGUFFile(path)
