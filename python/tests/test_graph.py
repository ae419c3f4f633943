import numpy as np
import pytest

import knpu


def test_capture_copies_and_fills_then_replay():
    src = knpu.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    dst = knpu.zeros(4, 3)
    knpu.synchronize()
    with knpu.graph() as g:
        dst.copy_(src.T)
        dst[0].fill_(-1.0)
    assert g.node_count >= 2
    assert not g.is_capturing
    # Nothing ran during capture.
    assert (dst.numpy() == 0).all()
    g.replay()
    expected = np.arange(12, dtype=np.float32).reshape(3, 4).T.copy()
    expected[0] = -1
    np.testing.assert_array_equal(dst.numpy(), expected)
    # Replays see new inputs.
    src.fill_(5.0)
    g.replay()
    knpu.synchronize()
    expected = np.full((4, 3), 5.0, np.float32)
    expected[0] = -1
    np.testing.assert_array_equal(dst.numpy(), expected)
    assert "nodes=" in repr(g)


def test_graph_object_capture_api():
    g = knpu.Graph()
    t = knpu.zeros(8)
    knpu.synchronize()
    g.capture_begin()
    t.fill_(4.0)
    g.capture_end()
    g.replay(knpu.Stream())
    knpu.synchronize()
    assert (t.numpy() == 4.0).all()
    g.reset()
    with pytest.raises(knpu.CaptureError):
        g.replay()


def test_blocking_calls_inside_capture_raise():
    t = knpu.zeros(4)
    with pytest.raises(knpu.CaptureError):
        with knpu.graph():
            t.numpy()
    # The device and the current stream are fine afterwards.
    assert knpu.current_stream() == knpu.default_stream()


def test_misuse_raises():
    g = knpu.Graph()
    with pytest.raises(knpu.CaptureError):
        g.capture_end()
    with pytest.raises(knpu.CaptureError):
        g.replay()
    with pytest.raises(knpu.InvalidValueError):
        g.capture_begin(capture_error_mode="sometimes")
    g.capture_begin(capture_error_mode="relaxed")
    with pytest.raises(knpu.CaptureError):
        g.capture_begin()
    with pytest.raises(knpu.CaptureError):
        g.replay()
    g.capture_end()


def test_graph_used_from_another_thread_while_capturing(knpu_errors_on_another_thread):
    g = knpu.Graph()
    g.capture_begin(capture_error_mode="thread_local")
    errors = [e for call in (g.capture_end, g.replay) for e in knpu_errors_on_another_thread(call)]
    g.capture_end()
    assert len(errors) == 2
    assert all(isinstance(e, knpu.CaptureError) for e in errors)
    assert "another thread" in str(errors[0])


def test_global_capture_forbids_blocking_calls_on_other_threads(knpu_errors_on_another_thread):
    # The forbidden call also invalidates the capture, as in CUDA.
    with pytest.raises(knpu.CaptureError, match="invalidated"):
        with knpu.graph():
            errors = knpu_errors_on_another_thread(knpu.synchronize)
    assert len(errors) == 1 and isinstance(errors[0], knpu.CaptureError)
    assert knpu.current_stream() == knpu.default_stream()


def test_exception_in_block_ends_the_capture():
    with pytest.raises(RuntimeError, match="boom"):
        with knpu.graph() as g:
            raise RuntimeError("boom")
    assert not g.is_capturing
    assert knpu.current_stream() == knpu.default_stream()


def test_update_replays_on_the_tensors_of_another_capture():
    x1 = knpu.asarray(np.arange(4, dtype=np.float32))
    x2 = knpu.asarray(np.full(4, 7.0, np.float32))
    o1, o2 = knpu.zeros(4), knpu.zeros(4)
    knpu.synchronize()
    with knpu.graph() as g1:
        o1.copy_(x1)
        o1[1:].fill_(-1.0)
    with knpu.graph() as g2:
        o2.copy_(x2)
        o2[1:].fill_(5.0)
    g1.update(g2)
    g1.replay()
    knpu.synchronize()
    np.testing.assert_array_equal(o2.numpy(), [7.0, 5.0, 5.0, 5.0])
    np.testing.assert_array_equal(o1.numpy(), np.zeros(4))
    g1.update(g1)  # updating from itself changes nothing
    g1.replay()
    knpu.synchronize()
    np.testing.assert_array_equal(o1.numpy(), np.zeros(4))


def test_update_from_other_work_raises_and_keeps_the_graph():
    x = knpu.asarray(np.arange(4, dtype=np.float32))
    o = knpu.zeros(4)
    knpu.synchronize()
    with knpu.graph() as g:
        o.copy_(x)
    with knpu.graph() as longer:
        o.copy_(x)
        o.fill_(3.0)
    with pytest.raises(knpu.GraphUpdateError):
        g.update(longer)
    g.replay()
    knpu.synchronize()
    np.testing.assert_array_equal(o.numpy(), np.arange(4))
    with pytest.raises(knpu.CaptureError):
        g.update(knpu.Graph())  # never captured
    with pytest.raises(knpu.CaptureError):
        knpu.Graph().update(g)
