import threading

import numpy as np
import pytest

import knpu


def test_stream_basics():
    s = knpu.Stream()
    assert s.device == knpu.Device(0)
    assert s.priority == 0
    assert knpu.Stream(priority=-1).priority == -1
    assert knpu.Stream(priority=5).priority == 1
    assert s.query() is True
    s.synchronize()
    assert s == s and s != knpu.Stream()
    assert "knpu.Stream(" in repr(s)
    assert knpu.Stream(device=1).device.index == 1


def test_with_stream_makes_it_current():
    s = knpu.Stream()
    default = knpu.current_stream()
    assert default == knpu.default_stream()
    with s:
        assert knpu.current_stream() == s
        t = knpu.asarray(np.arange(5, dtype=np.float32))
        t.fill_(3.0)
        s.synchronize()
        assert knpu.current_stream(1) == knpu.default_stream(1)
    assert knpu.current_stream() == default
    np.testing.assert_array_equal(t.numpy(), np.full(5, 3.0, np.float32))


def test_wait_event_and_wait_stream_order_work():
    a, b = knpu.Stream(), knpu.Stream()
    with a:
        t = knpu.zeros(1 << 16)
        t.fill_(1.0)
    e = a.record_event()
    b.wait_event(e)
    b.wait_stream(a)
    with b:
        u = t.clone()
    b.synchronize()
    assert (u.numpy() == 1.0).all()


def test_current_stream_is_per_thread():
    s = knpu.Stream()
    seen = []
    with s:
        th = threading.Thread(target=lambda: seen.append(knpu.current_stream()))
        th.start()
        th.join(timeout=30)
    assert seen == [knpu.default_stream()]


def test_stream_used_from_another_thread_while_capturing(knpu_errors_on_another_thread):
    g = knpu.Graph()
    s = knpu.Stream()
    g.capture_begin(stream=s)
    errors = knpu_errors_on_another_thread(s.synchronize)
    assert len(errors) == 1 and isinstance(errors[0], knpu.CaptureError)
    # Synchronizing a capturing stream invalidates the capture, as in CUDA.
    with pytest.raises(knpu.CaptureError):
        g.capture_end()
    assert not g.is_capturing
    s.synchronize()


def test_wait_on_unrecorded_event_is_an_error():
    with pytest.raises(knpu.InvalidValueError, match="never recorded"):
        knpu.Stream().wait_event(knpu.Event())
