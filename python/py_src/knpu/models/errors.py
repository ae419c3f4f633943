"""Errors raised while reading model files.

Every error names the file it came from and, where one is involved, the tensor, so a
user holding a truncated download or an unsupported quantisation knows what to fix.
"""

from __future__ import annotations

from typing import Any, Collection, Optional


class ModelFileError(ValueError):
    """A model file is unreadable: truncated, corrupt, or of an unsupported kind.

    Attributes:
        path: the file that was being read.
        tensor: the tensor involved, or ``None`` when the fault is in the file's header.
    """

    def __init__(self, path: str, message: str, tensor: Optional[str] = None) -> None:
        self.path = str(path)
        self.tensor = tensor
        where = self.path if tensor is None else f"{self.path}: tensor '{tensor}'"
        super().__init__(f"{where}: {message}")


class UnsupportedModelError(ModelFileError):
    """The file is well formed, but holds something this package cannot run.

    Examples: a tensor type with no known block layout, a GGUF version from the future,
    or a model architecture other than the ones :mod:`knpu.models` implements.
    """


def require_supported(path: str, what: str, value: Any, supported: Collection[str]) -> None:
    """Raise :class:`UnsupportedModelError` for ``path`` unless ``value`` is one of
    ``supported``; the message names ``what``, the value found and the supported ones."""
    if value not in supported:
        raise UnsupportedModelError(
            path,
            f"{what} {value!r} is not supported "
            f"(supported: {', '.join(repr(s) for s in sorted(supported))})",
        )
