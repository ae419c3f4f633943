import knpu

KEYS = [
    "allocated_bytes.all.current",
    "allocated_bytes.all.peak",
    "reserved_bytes.all.current",
    "reserved_bytes.all.peak",
    "requested_bytes.all.current",
    "active.all.current",
    "segment.all.current",
    "allocation.all.allocated",
    "allocation.all.freed",
    "num_alloc_retries",
    "num_ooms",
]


def test_stats_follow_allocations():
    knpu.synchronize()
    before = knpu.memory_stats()
    for k in KEYS:
        assert k in before and isinstance(before[k], int)
    t = knpu.empty(1 << 20, dtype=knpu.uint8)
    during = knpu.memory_stats()
    assert during["allocated_bytes.all.current"] >= before["allocated_bytes.all.current"] + (1 << 20)
    assert during["allocation.all.allocated"] == before["allocation.all.allocated"] + 1
    assert knpu.memory_allocated() == during["allocated_bytes.all.current"]
    assert knpu.memory_reserved() >= knpu.memory_allocated()
    del t
    after = knpu.memory_stats()
    assert after["allocated_bytes.all.current"] == before["allocated_bytes.all.current"]
    assert after["allocated_bytes.all.peak"] >= during["allocated_bytes.all.current"]


def test_views_do_not_allocate():
    t = knpu.zeros(64, 64)
    n = knpu.memory_stats()["allocation.all.allocated"]
    _ = (t.T, t[1:], t.view(-1), t.reshape(4096), t.permute(1, 0))
    assert knpu.memory_stats()["allocation.all.allocated"] == n


def test_peak_reset_and_empty_cache():
    t = knpu.empty(8 << 20, dtype=knpu.uint8)
    del t
    knpu.synchronize()
    knpu.reset_peak_memory_stats()
    s = knpu.memory_stats()
    assert s["allocated_bytes.all.peak"] == s["allocated_bytes.all.current"]
    reserved = s["reserved_bytes.all.current"]
    knpu.empty_cache()
    s = knpu.memory_stats()
    assert s["reserved_bytes.all.current"] >= s["allocated_bytes.all.current"]
    # The freed 8 MiB block's segment went back to the driver.
    assert s["reserved_bytes.all.current"] <= reserved - (8 << 20)


def test_summary_is_readable():
    text = knpu.memory_summary()
    assert "Allocated memory" in text and "Reserved memory" in text
    assert "device 0" in text
    assert "device 1" in knpu.memory_summary(1)


def test_out_of_memory_leaves_the_device_usable():
    total = knpu.Device().memory_info()[1]
    ooms = knpu.memory_stats()["num_ooms"]
    try:
        knpu.empty(total + 1, dtype=knpu.uint8)
    except knpu.OutOfMemoryError:
        pass
    assert knpu.memory_stats()["num_ooms"] == ooms + 1
    assert knpu.ones(4).numpy().tolist() == [1.0] * 4
