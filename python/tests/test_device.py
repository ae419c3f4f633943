import threading

import pytest

import knpu


def test_device_count_and_properties():
    assert knpu.device_count() >= 2
    d = knpu.Device(0)
    assert d.index == 0 and d.type == "knpu"
    assert isinstance(d.name, str) and d.name
    props = d.properties
    assert props["total_memory"] > 0
    assert props["compute_cores"] >= 1
    free, total = d.memory_info()
    assert 0 <= free <= total == props["total_memory"]
    assert repr(d).startswith("knpu.Device(0")
    assert str(d) == "knpu:0"
    assert knpu.Device("knpu:1") == knpu.Device(1)
    assert knpu.Device(0) != knpu.Device(1)


def test_supports_names_ops_and_rejects_unknown():
    d = knpu.Device()
    assert d.supports("matmul", knpu.float32) is True
    assert d.supports("cast", "bfloat16") is True
    with pytest.raises(knpu.InvalidValueError, match="unknown op"):
        d.supports("no_such_op", knpu.float32)
    with pytest.raises(knpu.InvalidValueError, match="unknown dtype"):
        d.supports("matmul", "float128x")


def test_set_device_and_context_manager():
    assert knpu.current_device() == 0
    with knpu.Device(1):
        assert knpu.current_device() == 1
        assert knpu.empty(3).device.index == 1
        with knpu.Device(0):
            assert knpu.current_device() == 0
        assert knpu.current_device() == 1
    assert knpu.current_device() == 0
    knpu.set_device(1)
    try:
        assert knpu.current_device() == 1
    finally:
        knpu.set_device(0)


def test_current_device_is_per_thread():
    seen = []
    with knpu.Device(1):
        t = threading.Thread(target=lambda: seen.append(knpu.current_device()))
        t.start()
        t.join(timeout=30)
    assert seen == [0]


@pytest.mark.parametrize("bad", [-1, 10_000, "cuda:0", "knpu:x"])
def test_bad_device_is_an_error(bad):
    with pytest.raises(knpu.InvalidValueError):
        knpu.Device(bad)


def test_bad_device_type_is_a_type_error():
    with pytest.raises(TypeError):
        knpu.Device(1.5)


def test_synchronize_all_forms():
    knpu.synchronize()
    knpu.synchronize(0)
    knpu.Device(1).synchronize()
