"""Shared setup: two software NPUs, so tests can put tensors on different devices."""

import os
import threading

# Read once when the built-in driver starts, so it must be set before knpu is imported.
os.environ.setdefault("KNPU_SIM_DEVICES", "2")

import pytest  # noqa: E402

import knpu  # noqa: E402


@pytest.fixture(autouse=True)
def _device_usable_afterwards():
    """Every test leaves device 0 usable: a small round trip must still work."""
    yield
    knpu.synchronize()
    t = knpu.asarray([1.0, 2.0, 3.0])
    assert t.numpy().tolist() == [1.0, 2.0, 3.0]


@pytest.fixture
def knpu_errors_on_another_thread():
    """Runs a call on a new thread (bounded in time) and returns the ``knpu.KnpuError``s it
    raised: how a test sees what another thread's call meets."""

    def run(call):
        errors = []

        def target():
            try:
                call()
            except knpu.KnpuError as e:
                errors.append(e)

        th = threading.Thread(target=target)
        th.start()
        th.join(timeout=30)
        assert not th.is_alive(), "the call on the other thread did not return"
        return errors

    return run
