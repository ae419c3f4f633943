import numpy as np
import pytest

import knpu


def test_round_trip_and_attributes():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = knpu.asarray(a)
    assert t.shape == (2, 3, 4)
    assert t.dtype is knpu.float32
    assert t.device == knpu.Device(0)
    assert t.strides == a.strides
    assert t.stride() == (12, 4, 1)
    assert t.nbytes == a.nbytes and t.itemsize == 4
    assert t.ndim == 3 and len(t) == 2 and t.size == 24 and t.numel() == 24
    assert repr(t) == "knpu.Tensor(shape=(2, 3, 4), dtype=knpu.float32, device='knpu:0')"
    np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize(
    "np_dtype,knpu_dtype",
    [
        (np.float32, knpu.float32),
        (np.float16, knpu.float16),
        (np.float64, knpu.float64),
        (np.int8, knpu.int8),
        (np.uint8, knpu.uint8),
        (np.int32, knpu.int32),
        (np.uint32, knpu.uint32),
        (np.int64, knpu.int64),
    ],
)
def test_dtypes_round_trip(np_dtype, knpu_dtype):
    a = (np.arange(7) * 3 - 5).astype(np_dtype) if np.dtype(np_dtype).kind != "u" else np.arange(7).astype(np_dtype)
    t = knpu.asarray(a)
    assert t.dtype is knpu_dtype
    out = t.numpy()
    assert out.dtype == np_dtype
    np.testing.assert_array_equal(out, a)


def test_bfloat16_converts_on_upload_and_comes_back_as_bits():
    a = np.array([1.0, -2.5, 3.0e38, 0.0], dtype=np.float32)
    t = knpu.asarray(a, dtype=knpu.bfloat16)
    bits = t.numpy()
    assert bits.dtype == np.uint16
    # bfloat16 is the high half of float32 for these exactly representable values.
    expected = (a[[0, 1, 3]].view(np.uint32) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(bits[[0, 1, 3]], expected)
    back = t.to(knpu.float32).numpy()
    np.testing.assert_allclose(back, a, rtol=1e-2)


def test_cast_between_floats_on_device():
    a = np.linspace(-3, 3, 37, dtype=np.float32)
    t = knpu.asarray(a)
    h = t.to(knpu.float16)
    assert h.dtype is knpu.float16
    np.testing.assert_array_equal(h.numpy(), a.astype(np.float16))
    assert t.to(knpu.float32) .shares_storage(t)
    # A strided source is made contiguous first.
    m = knpu.asarray(a[:36].reshape(6, 6)).T
    np.testing.assert_array_equal(m.to("float16").numpy(), a[:36].reshape(6, 6).T.astype(np.float16))


def test_raw_float8_and_block_dtypes():
    bits = np.arange(16, dtype=np.uint8)
    f8 = knpu.asarray(bits, dtype=knpu.float8_e4m3)
    assert f8.dtype is knpu.float8_e4m3 and f8.shape == (16,)
    np.testing.assert_array_equal(f8.numpy(), bits)
    blocks = np.random.default_rng(0).integers(0, 255, size=(3, 2 * 18), dtype=np.uint8)
    q = knpu.asarray(blocks, dtype=knpu.q4_0)
    assert q.shape == (3, 64)
    assert q.nbytes == blocks.nbytes
    assert knpu.q4_0.block_size == 32 and knpu.q4_0.itemsize == 18 and knpu.q4_0.is_block
    np.testing.assert_array_equal(q.numpy(), blocks)
    np.testing.assert_array_equal(q[1:].numpy(), blocks[1:])
    np.testing.assert_array_equal(q.reshape(6, 32).numpy(), blocks.reshape(6, 18))
    for name in ("q4_1", "q8_0", "q4_k", "q6_k"):
        dt = getattr(knpu, name)
        raw = np.zeros((2, dt.itemsize), dtype=np.uint8)
        assert knpu.asarray(raw, dtype=dt).shape == (2, dt.block_size)


def test_block_dtype_bad_input():
    with pytest.raises(knpu.ShapeError):
        knpu.asarray(np.zeros((2, 17), dtype=np.uint8), dtype=knpu.q4_0)
    with pytest.raises(knpu.NotSupportedError):
        knpu.asarray(np.zeros((2, 18), dtype=np.float32), dtype=knpu.q4_0)
    q = knpu.asarray(np.zeros((2, 36), dtype=np.uint8), dtype=knpu.q4_0)
    with pytest.raises(knpu.NotSupportedError):
        q.T
    with pytest.raises(knpu.NotSupportedError):
        q[:, 1:]
    with pytest.raises(knpu.ShapeError):
        q.reshape(-1, 16)
    with pytest.raises(BufferError):
        q.__dlpack__()


def test_views_share_storage_without_copies():
    a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    t = knpu.asarray(a)
    views = {
        "reshape": (t.reshape(12, 5), a.reshape(12, 5)),
        "view": (t.view(-1), a.reshape(-1)),
        "transpose": (t.transpose(0, 2), a.transpose(2, 1, 0)),
        "T": (t.T, a.T),
        "mT": (t.mT, np.swapaxes(a, -1, -2)),
        "permute": (t.permute(1, 2, 0), a.transpose(1, 2, 0)),
        "slice": (t[1:, ::2, -1], a[1:, ::2, -1]),
        "neg-step": (t[::-1, 1:3, ::-2], a[::-1, 1:3, ::-2]),
        "int": (t[2], a[2]),
        "newaxis": (t[None, ..., 1], a[None, ..., 1]),
        "ellipsis": (t[..., 2:4], a[..., 2:4]),
        "empty": (t[:, 3:1], a[:, 3:1]),
    }
    for name, (v, expected) in views.items():
        assert v.shares_storage(t), name
        assert v.shape == expected.shape, name
        np.testing.assert_array_equal(v.numpy(), expected, err_msg=name)
    assert t.T.is_contiguous() is False
    assert t[1].storage_offset() == 20


def test_contiguous_runs_on_device_and_reshape_copies_when_needed():
    a = np.arange(30, dtype=np.int64).reshape(5, 6)
    t = knpu.asarray(a).T
    c = t.contiguous()
    assert c.is_contiguous() and not c.shares_storage(t)
    np.testing.assert_array_equal(c.numpy(), a.T)
    assert c.contiguous().shares_storage(c)
    r = t.reshape(30)
    assert not r.shares_storage(t)
    np.testing.assert_array_equal(r.numpy(), a.T.reshape(30))
    with pytest.raises(knpu.InvalidValueError, match="contiguous"):
        t.view(30)


def test_copy_fill_zero_and_setitem():
    t = knpu.zeros(4, 5)
    np.testing.assert_array_equal(t.numpy(), np.zeros((4, 5), np.float32))
    t.fill_(2.5)
    assert (t.numpy() == 2.5).all()
    t[1:3, ::2] = 7
    expected = np.full((4, 5), 2.5, np.float32)
    expected[1:3, ::2] = 7
    np.testing.assert_array_equal(t.numpy(), expected)
    t.T[0] = knpu.asarray(np.arange(4, dtype=np.float32))
    expected.T[0] = np.arange(4)
    np.testing.assert_array_equal(t.numpy(), expected)
    row = np.arange(5, dtype=np.float32)
    t.copy_(row)  # broadcasts over rows
    np.testing.assert_array_equal(t.numpy(), np.broadcast_to(row, (4, 5)))
    # An overlapping copy within one storage is staged.
    u = knpu.asarray(np.arange(10, dtype=np.int32))
    u[1:].copy_(u[:-1])
    np.testing.assert_array_equal(u.numpy(), np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]))
    u.T.zero_()
    assert (u.numpy() == 0).all()
    h = knpu.ones(3, dtype=knpu.float16)
    h.copy_(knpu.asarray(np.array([1.5, 2.5, 3.5], np.float32)))  # converts on the device
    np.testing.assert_array_equal(h.numpy(), np.array([1.5, 2.5, 3.5], np.float16))


def test_creation_functions():
    np.testing.assert_array_equal(knpu.ones(2, 3, dtype=knpu.int8).numpy(), np.ones((2, 3), np.int8))
    np.testing.assert_array_equal(knpu.zeros((2, 2), dtype="f64").numpy(), np.zeros((2, 2)))
    f = knpu.full((2, 3), 7)
    assert f.dtype is knpu.int64
    np.testing.assert_array_equal(f.numpy(), np.full((2, 3), 7))
    assert knpu.full(3, 1.5).dtype is knpu.float32
    np.testing.assert_array_equal(knpu.arange(5).numpy(), np.arange(5))
    np.testing.assert_allclose(knpu.arange(0, 1, 0.25).numpy(), np.arange(0, 1, 0.25, dtype=np.float32))
    assert knpu.arange(3, dtype=knpu.float16).dtype is knpu.float16
    assert knpu.empty(0).shape == (0,)
    assert knpu.empty(()).shape == ()
    e = knpu.empty(2, 0, 3)
    assert e.numpy().shape == (2, 0, 3)
    bf = knpu.ones(2, dtype=knpu.bfloat16)
    np.testing.assert_array_equal(bf.numpy(), np.array([0x3F80, 0x3F80], np.uint16))


def test_asarray_from_python_objects_and_buffers():
    np.testing.assert_array_equal(knpu.asarray([[1, 2], [3, 4]]).numpy(), np.array([[1, 2], [3, 4]]))
    assert knpu.asarray(3.0).shape == ()
    assert knpu.asarray(3.0).item() == 3.0
    b = bytearray(b"\x01\x02\x03")
    np.testing.assert_array_equal(knpu.asarray(b).numpy(), np.array([1, 2, 3], np.uint8))
    a = np.arange(20, dtype=np.float64)[::3]
    np.testing.assert_array_equal(knpu.asarray(a, dtype=knpu.float32).numpy(), a.astype(np.float32))
    t = knpu.asarray(a)
    assert knpu.asarray(t) is not None and knpu.asarray(t).shares_storage(t)
    assert knpu.asarray([1.0, 2.0], device=1).device.index == 1
    assert knpu.asarray(t).tolist() == a.tolist()


def test_numpy_protocol_refuses_implicit_conversion():
    t = knpu.zeros(3)
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        np.asarray(t)
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        np.array(t)


def test_numpy_into_out_and_without_blocking():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = knpu.asarray(a)
    out = np.zeros((3, 4), dtype=np.float32)
    assert t.numpy(out=out) is out
    np.testing.assert_array_equal(out, a)
    # Non-blocking: queued behind a later-written value; set once the stream is synchronized.
    s = knpu.current_stream()
    u = knpu.asarray(a)
    u.fill_(5.0)
    host = u.numpy(blocking=False)
    s.synchronize()
    np.testing.assert_array_equal(host, np.full((3, 4), 5.0, dtype=np.float32))
    # A strided view, into a reused array, read after an event recorded behind the copy.
    got = t.transpose(0, 1).numpy(out=np.empty((4, 3), dtype=np.float32), blocking=False)
    s.record_event().synchronize()
    np.testing.assert_array_equal(got, a.T)
    # The stream keeps the array alive while the copy is queued: nothing else holds it.
    big = knpu.ones(1 << 20)
    big.numpy(blocking=False)
    s.synchronize()


def test_numpy_out_must_fit():
    t = knpu.zeros(2, 3)
    with pytest.raises(TypeError, match="numpy array"):
        t.numpy(out=[0.0] * 6)
    with pytest.raises(TypeError, match="dtype float64"):
        t.numpy(out=np.zeros((2, 3)))
    with pytest.raises(knpu.InvalidValueError, match=r"shape \[3, 2\]"):
        t.numpy(out=np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(knpu.InvalidValueError, match="C-contiguous"):
        t.numpy(out=np.zeros((3, 2), dtype=np.float32).T)
    ro = np.zeros((2, 3), dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(knpu.InvalidValueError, match="writeable"):
        t.numpy(out=ro, blocking=False)


def test_bad_shapes_and_dtypes():
    t = knpu.zeros(2, 3)
    with pytest.raises(knpu.ShapeError):
        t.reshape(5)
    with pytest.raises(knpu.InvalidValueError):
        t.reshape(-1, -1)
    with pytest.raises(knpu.InvalidValueError):
        t.reshape(-2, 3)
    with pytest.raises(knpu.InvalidValueError):
        t.permute(0, 0)
    with pytest.raises(knpu.InvalidValueError):
        t.transpose(0, 5)
    with pytest.raises(IndexError):
        t[2]
    with pytest.raises(IndexError):
        t[0, 0, 0]
    with pytest.raises(knpu.InvalidValueError):
        t[::0]
    with pytest.raises(TypeError):
        t[[0, 1]]
    with pytest.raises(knpu.NotSupportedError):
        knpu.zeros(2, dtype=object)
    with pytest.raises(knpu.InvalidValueError):
        knpu.zeros(2, dtype="nope")
    with pytest.raises(knpu.InvalidValueError, match="out of range"):
        knpu.zeros(2, dtype=knpu.int8).fill_(300)
    with pytest.raises(TypeError):
        knpu.zeros(2, dtype=knpu.int32).fill_(1.5)
    with pytest.raises(knpu.ShapeError):
        t.copy_(knpu.zeros(3, 2))
    with pytest.raises(knpu.NotSupportedError):
        knpu.zeros(2, dtype=knpu.int64).copy_(knpu.zeros(2))
    with pytest.raises(TypeError):
        len(knpu.asarray(1.0))
    with pytest.raises(knpu.InvalidValueError):
        knpu.arange(0, 5, 0)


def test_tensor_on_another_device():
    a = knpu.zeros(3)
    b = knpu.ones(3, device=1)
    assert b.device.index == 1
    with pytest.raises(knpu.DeviceMismatchError):
        a.copy_(b)
    with pytest.raises(knpu.NotSupportedError):
        a.to(device=1)
    np.testing.assert_array_equal(b.numpy(), np.ones(3, np.float32))


def test_large_strided_copy():
    a = np.arange(256 * 300, dtype=np.float32).reshape(256, 300)
    t = knpu.asarray(a)
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    np.testing.assert_array_equal(t[::3, 7::5].numpy(), a[::3, 7::5])
