"""knpu: an open runtime for NPUs, as a PyTorch or CuPy user expects it.

Devices, tensors in device memory, streams, events, graphs, the caching allocator's
statistics and DLPack interop. Work is asynchronous on the current stream; errors are
``knpu.KnpuError`` subclasses carrying the runtime's message and code.
"""

from __future__ import annotations

from typing import Optional

from knpu._knpu import (
    CaptureError,
    DependencyFailedError,
    Device,
    DeviceLostError,
    DeviceMismatchError,
    DriverError,
    DtypeError,
    Event,
    Generator,
    Graph,
    GraphUpdateError,
    IllegalAddressError,
    InternalError,
    InvalidHandleError,
    InvalidValueError,
    KernelFaultError,
    KVCache,
    KnpuError,
    KnpuTimeoutError,
    NotReadyError,
    NotSupportedError,
    OutOfMemoryError,
    PagedKVCache,
    ShapeError,
    Stream,
    Tensor,
    arange,
    asarray,
    attention,
    cast,
    bfloat16,
    current_device,
    current_stream,
    default_stream,
    device_count,
    dtype,
    empty,
    empty_cache,
    float8_e4m3,
    float8_e5m2,
    float16,
    float32,
    float64,
    from_dlpack,
    full,
    int8,
    int32,
    int64,
    memory_allocated,
    memory_reserved,
    memory_stats,
    matmul,
    quantize,
    dequantize,
    qmatmul,
    w8a8_gemm,
    rms_norm,
    layer_norm,
    silu,
    gelu,
    swiglu,
    softmax,
    argmax,
    topk,
    sample,
    embedding,
    rope,
    memory_summary,
    ones,
    q4_0,
    q4_1,
    q4_k,
    q6_k,
    q8_0,
    reset_peak_memory_stats,
    set_device,
    synchronize,
    uint8,
    uint32,
    zeros,
)


def div(a: Tensor, b: Tensor) -> Tensor:
    """``a / b`` elementwise between tensors, broadcast as numpy broadcasts."""
    return a / b


def graph(
    graph: Optional[Graph] = None,
    *,
    stream: Optional[Stream] = None,
    capture_error_mode: str = "global",
) -> "_GraphCapture":
    """Capture the work of a ``with`` block into ``graph`` (default: a new ``knpu.Graph``).

    ``with knpu.graph() as g: ...`` captures on a side stream made current for the block;
    ``g.replay()`` launches the captured work afterwards.
    """
    return _GraphCapture(graph if graph is not None else Graph(), stream, capture_error_mode)


class _GraphCapture:
    """The context manager ``knpu.graph()`` returns; entering it yields the graph."""

    def __init__(self, g: Graph, stream: Optional[Stream], mode: str) -> None:
        self.graph = g
        self._stream = stream
        self._mode = mode

    def __enter__(self) -> Graph:
        self.graph.capture_begin(self._stream, self._mode)
        return self.graph

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.graph.capture_end()
        else:
            try:
                self.graph.capture_end()
            except KnpuError:
                pass


__all__ = [
    "CaptureError",
    "DependencyFailedError",
    "Device",
    "DeviceLostError",
    "DeviceMismatchError",
    "DriverError",
    "DtypeError",
    "Event",
    "Generator",
    "Graph",
    "GraphUpdateError",
    "IllegalAddressError",
    "InternalError",
    "InvalidHandleError",
    "InvalidValueError",
    "KernelFaultError",
    "KVCache",
    "KnpuError",
    "KnpuTimeoutError",
    "NotReadyError",
    "NotSupportedError",
    "OutOfMemoryError",
    "PagedKVCache",
    "ShapeError",
    "Stream",
    "Tensor",
    "arange",
    "asarray",
    "attention",
    "cast",
    "bfloat16",
    "current_device",
    "current_stream",
    "default_stream",
    "device_count",
    "dtype",
    "empty",
    "empty_cache",
    "float8_e4m3",
    "float8_e5m2",
    "float16",
    "float32",
    "float64",
    "from_dlpack",
    "full",
    "graph",
    "int8",
    "int32",
    "int64",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "matmul",
    "quantize",
    "dequantize",
    "qmatmul",
    "w8a8_gemm",
    "rms_norm",
    "layer_norm",
    "silu",
    "gelu",
    "swiglu",
    "softmax",
    "argmax",
    "topk",
    "sample",
    "div",
    "embedding",
    "rope",
    "memory_summary",
    "ones",
    "q4_0",
    "q4_1",
    "q4_k",
    "q6_k",
    "q8_0",
    "reset_peak_memory_stats",
    "set_device",
    "synchronize",
    "uint8",
    "uint32",
    "zeros",
]
