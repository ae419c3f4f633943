import pytest

import knpu


def test_hierarchy():
    assert issubclass(knpu.KnpuError, RuntimeError)
    assert issubclass(knpu.OutOfMemoryError, knpu.KnpuError)
    assert issubclass(knpu.OutOfMemoryError, MemoryError)
    assert issubclass(knpu.InvalidValueError, knpu.KnpuError)
    assert issubclass(knpu.InvalidValueError, ValueError)
    assert issubclass(knpu.ShapeError, knpu.InvalidValueError)
    assert issubclass(knpu.DeviceMismatchError, ValueError)
    for cls in (
        knpu.IllegalAddressError,
        knpu.NotSupportedError,
        knpu.DeviceLostError,
        knpu.KernelFaultError,
        knpu.CaptureError,
    ):
        assert issubclass(cls, knpu.KnpuError)
    assert knpu.KnpuError.__module__ == "knpu"


def test_out_of_memory_carries_message_and_code():
    total = knpu.Device().memory_info()[1]
    with pytest.raises(knpu.OutOfMemoryError) as e:
        knpu.empty(total * 2, dtype=knpu.uint8)
    assert e.value.code == 3
    assert e.value.name == "OutOfMemory"
    assert "out of memory" in str(e.value)
    assert "bytes" in str(e.value)
    # Caught as the builtin too.
    with pytest.raises(MemoryError):
        knpu.empty(total * 2, dtype=knpu.uint8)


def test_invalid_value_carries_code():
    with pytest.raises(ValueError) as e:
        knpu.empty(-1)
    assert isinstance(e.value, knpu.InvalidValueError)
    assert e.value.code == 1 and e.value.name == "InvalidValue"
    assert "negative" in str(e.value)


def test_overflowing_size_is_an_error_not_a_crash():
    with pytest.raises(knpu.KnpuError):
        knpu.empty(2**62, 16)
    with pytest.raises((knpu.KnpuError, OverflowError)):
        knpu.empty(2**70)


def test_not_supported_names_what():
    t = knpu.zeros(4, dtype=knpu.int32)
    with pytest.raises(knpu.NotSupportedError) as e:
        t.to(knpu.float32)
    assert e.value.code == 4
    assert "int32" in str(e.value)


def test_shape_error():
    t = knpu.zeros(2, 3)
    with pytest.raises(knpu.ShapeError) as e:
        t.view(4, 2)
    assert e.value.code == 14
