import numpy as np
import pytest

import knpu

KDL_CPU, KDL_EXT_DEV = 1, 12


def test_dlpack_device():
    assert knpu.zeros(2).__dlpack_device__() == (KDL_EXT_DEV, 0)
    assert knpu.zeros(2, device=1).__dlpack_device__() == (KDL_EXT_DEV, 1)


@pytest.mark.parametrize("max_version", [None, (1, 0), (1, 1), (0, 8)])
def test_knpu_round_trip_without_copy(max_version):
    t = knpu.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))[:, 1::2]
    cap = t.__dlpack__(max_version=max_version) if max_version else t.__dlpack__()
    u = knpu.from_dlpack(cap)
    assert u.shares_storage(t) and u.is_same_view(t)
    np.testing.assert_array_equal(u.numpy(), t.numpy())
    v = knpu.from_dlpack(t)
    assert v.shares_storage(t)


def test_capsule_names():
    t = knpu.zeros(2)
    assert "dltensor_versioned" in repr(t.__dlpack__(max_version=(1, 0)))
    r = repr(t.__dlpack__())
    assert '"dltensor"' in r or "'dltensor'" in r


def test_consumed_capsule_cannot_be_used_twice():
    t = knpu.zeros(3)
    for kw in ({}, {"max_version": (1, 0)}):
        cap = t.__dlpack__(**kw)
        knpu.from_dlpack(cap)
        with pytest.raises(knpu.InvalidValueError, match="already consumed"):
            knpu.from_dlpack(cap)
    assert t.numpy().tolist() == [0.0, 0.0, 0.0]


def test_unconsumed_capsule_frees_its_storage():
    knpu.synchronize()
    before = knpu.memory_stats()["allocated_bytes.all.current"]
    t = knpu.empty(1 << 20, dtype=knpu.uint8)
    cap = t.__dlpack__(max_version=(1, 0))
    del t
    assert knpu.memory_stats()["allocated_bytes.all.current"] > before
    del cap
    assert knpu.memory_stats()["allocated_bytes.all.current"] == before


def test_import_numpy_by_copy():
    a = np.arange(20, dtype=np.int32).reshape(4, 5)
    for src in (a, a.T, a[::-1, ::2], np.float16(a)):
        t = knpu.from_dlpack(src)
        assert t.device.index == 0
        np.testing.assert_array_equal(t.numpy(), np.asarray(src))


def test_export_to_host():
    t = knpu.asarray(np.arange(6, dtype=np.float32)).reshape(2, 3).T

    class OnHost:
        def __dlpack__(self, **kw):
            return t.__dlpack__(dl_device=(KDL_CPU, 0), max_version=kw.get("max_version"))

        def __dlpack_device__(self):
            return (KDL_CPU, 0)

    out = np.from_dlpack(OnHost())
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(2, 3).T)
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(KDL_CPU, 0), copy=False)
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(2, 0))


def test_copy_flag_and_streams():
    t = knpu.ones(4)
    c = knpu.from_dlpack(t.__dlpack__(copy=True, max_version=(1, 0)))
    assert not c.shares_storage(t)
    s = knpu.Stream()
    for stream in (None, -1, s.id, s, knpu.current_stream().id):
        knpu.from_dlpack(t.__dlpack__(stream=stream))
    with pytest.raises(TypeError):
        t.__dlpack__(stream="x")


def test_bad_inputs():
    with pytest.raises(TypeError):
        knpu.from_dlpack(object())
    with pytest.raises(knpu.NotSupportedError):
        knpu.from_dlpack(np.zeros(2, dtype=np.complex64))
    with pytest.raises(knpu.NotSupportedError):
        knpu.from_dlpack(np.zeros(2, dtype=np.bool_))
