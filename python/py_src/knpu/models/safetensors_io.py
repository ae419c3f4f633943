"""A reader for safetensors files (the weights of the MiniLM encoder).

Layout: a ``u64`` little-endian header length N, N bytes of JSON mapping each tensor name
to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the end of the
header; an optional ``__metadata__`` entry maps strings to strings), then the data.

The file is memory-mapped; tensors are read-only numpy views of it, never copies. Every
fault raises :class:`~knpu.models.errors.ModelFileError` naming the file and tensor. It
needs no package beyond numpy (the ``safetensors`` package reads the same files and the
tests compare the two).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, Iterator, Optional, Tuple, Union

import numpy as np

from ._mapped import MappedFile
from .errors import ModelFileError, UnsupportedModelError

_DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "BOOL": np.dtype("?"),
}

# A header larger than this is taken for corruption (the safetensors package uses 100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsFile(MappedFile):
    """A safetensors file opened for reading.

    Attributes:
        path: the file's path.
        metadata: the optional ``__metadata__`` strings.
        specs: per tensor name, ``(dtype name, shape, begin, end)`` as the header gives them.
    """

    def _too_short(self, size: int) -> Optional[str]:
        if size < 8:
            return f"truncated file: {size} bytes, too short for the 8-byte header length"
        return None

    def _parse(self) -> None:
        assert self._map is not None
        size = len(self._map)
        (header_len,) = struct.unpack_from("<Q", self._map, 0)
        if header_len > MAX_HEADER_BYTES:
            raise ModelFileError(
                self.path,
                f"corrupt header: header length {header_len} exceeds {MAX_HEADER_BYTES} bytes",
            )
        if 8 + header_len > size:
            raise ModelFileError(
                self.path,
                f"truncated file: the header needs {header_len} bytes after the length, "
                f"the file has {size - 8}",
            )
        try:
            header = json.loads(bytes(self._map[8 : 8 + header_len]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ModelFileError(self.path, f"corrupt header: not JSON ({exc})") from None
        if not isinstance(header, dict):
            raise ModelFileError(self.path, "corrupt header: the JSON is not an object")
        self.data_offset = 8 + header_len
        data_size = size - self.data_offset
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict):
            raise ModelFileError(self.path, "corrupt header: __metadata__ is not an object")
        self.metadata: Dict[str, str] = meta
        self.specs: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name, spec in header.items():
            self.specs[name] = self._check_spec(name, spec, data_size)

    def _check_spec(
        self, name: str, spec: object, data_size: int
    ) -> Tuple[str, Tuple[int, ...], int, int]:
        try:
            assert isinstance(spec, dict)
            dtype_name = spec["dtype"]
            shape = tuple(spec["shape"])
            begin, end = spec["data_offsets"]
            assert isinstance(dtype_name, str)
            assert all(isinstance(d, int) and d >= 0 for d in shape)
            assert isinstance(begin, int) and isinstance(end, int)
        except (AssertionError, KeyError, TypeError, ValueError):
            raise ModelFileError(
                self.path, f"corrupt header: malformed entry {spec!r}", tensor=name
            ) from None
        dtype = _DTYPES.get(dtype_name)
        if dtype is None:
            raise UnsupportedModelError(
                self.path,
                f"dtype {dtype_name} is not supported (supported: {', '.join(_DTYPES)})",
                tensor=name,
            )
        n = 1
        for d in shape:
            n *= d
        if not 0 <= begin <= end or end - begin != n * dtype.itemsize:
            raise ModelFileError(
                self.path,
                f"corrupt header: data_offsets [{begin}, {end}] do not hold {shape} of "
                f"{dtype_name} ({n * dtype.itemsize} bytes)",
                tensor=name,
            )
        if end > data_size:
            raise ModelFileError(
                self.path,
                f"truncated file: the tensor ends at data offset {end}, but the data "
                f"section has {data_size} bytes",
                tensor=name,
            )
        return dtype_name, shape, begin, end

    def keys(self) -> Iterator[str]:
        """Tensor names in header order."""
        return iter(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a read-only numpy view of the file."""
        if self._map is None:
            raise ValueError(f"{self.path}: the safetensors file is closed")
        try:
            dtype_name, shape, begin, end = self.specs[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named '{name}'") from None
        dtype = _DTYPES[dtype_name]
        arr = np.frombuffer(
            self._map,
            dtype=dtype,
            count=(end - begin) // dtype.itemsize,
            offset=self.data_offset + begin,
        )
        return arr.reshape(shape)


def load_safetensors(path: Union[str, os.PathLike]) -> Dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as read-only numpy arrays (views of the file)."""
    st = SafetensorsFile(path)
    return {name: st.tensor(name) for name in st.keys()}
