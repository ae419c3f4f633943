import pytest

import knpu


def test_record_query_synchronize():
    e = knpu.Event()
    assert e.query() is True  # never recorded
    e.synchronize()
    t = knpu.zeros(1 << 20)
    t.fill_(2.0)
    e.record()
    e.synchronize()
    assert e.query() is True
    e.wait()
    e.wait(knpu.Stream())


def test_elapsed_time_in_ms():
    start, end = knpu.Event(enable_timing=True), knpu.Event(enable_timing=True)
    assert start.enable_timing
    s = knpu.Stream()
    start.record(s)
    with s:
        t = knpu.zeros(1 << 20)
        t.fill_(1.0)
    end.record(s)
    end.synchronize()
    ms = start.elapsed_time(end)
    assert isinstance(ms, float) and ms >= 0.0


def test_elapsed_time_needs_timing():
    a, b = knpu.Event(), knpu.Event()
    a.record()
    b.record()
    with pytest.raises(knpu.InvalidValueError, match="enable_timing"):
        a.elapsed_time(b)


def test_event_on_two_devices_is_an_error():
    e = knpu.Event()
    e.record(knpu.Stream(0))
    with pytest.raises(knpu.DeviceMismatchError):
        e.record(knpu.Stream(1))
