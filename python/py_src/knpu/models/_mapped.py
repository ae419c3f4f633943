"""A model file read through a read-only memory map: what the GGUF and safetensors readers
share (opening, refusing a file too short to hold a header, closing, ``with`` blocks)."""

from __future__ import annotations

import mmap
import os
from typing import Optional, TypeVar, Union

from .errors import ModelFileError

_Self = TypeVar("_Self", bound="MappedFile")


class MappedFile:
    """A file kept memory-mapped until :meth:`close` (or the end of a ``with`` block).

    A subclass says when a file is too short to be of its kind (:meth:`_too_short`) and
    reads its header in :meth:`_parse`; a file whose header fails to parse is closed at once.
    """

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                short = self._too_short(size)
                if short is not None:
                    raise ModelFileError(self.path, short)
                self._map: Optional[mmap.mmap] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise ModelFileError(self.path, f"cannot open: {exc.strerror or exc}") from exc
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _too_short(self, size: int) -> Optional[str]:
        """Why a file of ``size`` bytes cannot be of this kind, or ``None``."""
        raise NotImplementedError

    def _parse(self) -> None:
        """Reads the header from the map."""
        raise NotImplementedError

    def close(self) -> None:
        """Unmap the file. Views handed out earlier must not be used afterwards."""
        if getattr(self, "_map", None) is not None:
            assert self._map is not None
            try:
                self._map.close()
            except BufferError:
                # numpy views still reference the map; it is released when they go.
                pass
            self._map = None

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
