"""knpu.KVCache and knpu.PagedKVCache: appends land where numpy says, and attention over
the cache matches attention over the same keys as plain tensors (float64 reference,
float32 at 2e-5)."""

import math

import numpy as np
import pytest

import knpu

RNG = np.random.default_rng(1922)


def ref_attention(q, k, v, causal):
    """q [b, hq, lq, d]; k, v [b, hk, lk, d]; bottom-right causal alignment."""
    b, hq, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    out = np.zeros_like(q)
    for h in range(hq):
        kh = h // (hq // hk)
        s = np.einsum("bqd,bkd->bqk", q[:, h], k[:, kh]) / math.sqrt(d)
        if causal:
            allowed = np.arange(lk)[None, :] <= np.arange(lq)[:, None] + (lk - lq)
            s = np.where(allowed, s, -np.inf)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        out[:, h] = np.einsum("bqk,bkd->bqd", e / e.sum(axis=-1, keepdims=True), v[:, kh])
    return out


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_kv_cache_appends_and_attends():
    b, hk, hq, d, cap = 2, 2, 4, 8, 16
    cache = knpu.KVCache(b, cap, hk, d)
    assert cache.shape == (b, cap, hk, d)
    keys, vals = np.zeros((b, hk, 0, d)), np.zeros((b, hk, 0, d))
    lens = 0
    for new in (5, 1, 3):  # a prefill, then decode steps
        k, v = f32(b, hk, new, d), f32(b, hk, new, d)
        cache.append(knpu.asarray(k), knpu.asarray(v), knpu.asarray(np.full(b, lens, np.uint32)))
        keys, vals = np.concatenate([keys, k], 2), np.concatenate([vals, v], 2)
        lens += new
        q = f32(b, hq, new, d)
        got = cache.attention(knpu.asarray(q), knpu.asarray(np.full(b, lens, np.uint32)))
        np.testing.assert_allclose(got.numpy(), ref_attention(q, keys, vals, True), atol=2e-5)
    stored = cache.keys().numpy()  # [b, cap, hk, d]
    np.testing.assert_array_equal(stored[:, :lens], np.transpose(keys, (0, 2, 1, 3)))
    assert not stored[:, lens:].any()
    np.testing.assert_array_equal(cache.values().numpy()[:, :lens], np.transpose(vals, (0, 2, 1, 3)))


def test_kv_cache_attention_writes_heads_last_when_asked():
    b, hk, hq, d, new = 2, 1, 3, 8, 5
    cache = knpu.KVCache(b, 8, hk, d)
    k, v, q = f32(b, hk, new, d), f32(b, hk, new, d), f32(b, hq, new, d)
    lens = knpu.asarray(np.full(b, 0, np.uint32))
    cache.append(knpu.asarray(k), knpu.asarray(v), lens)
    lens = knpu.asarray(np.full(b, new, np.uint32))
    got = cache.attention(knpu.asarray(q), lens, out_layout="bshd")
    assert got.shape == (b, new, hq, d)
    want = np.transpose(ref_attention(q, k, v, True), (0, 2, 1, 3))
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)
    with pytest.raises(knpu.InvalidValueError, match="out_layout"):
        cache.attention(knpu.asarray(q), lens, out_layout="sbhd")


def test_paged_kv_cache_appends_and_attends_through_the_block_table():
    b, hk, hq, d, bs = 2, 1, 2, 16, 4
    cache = knpu.PagedKVCache(8, bs, hk, d)
    assert cache.shape == (8, bs, hk, d)
    # Sequence 0 uses blocks 5, 1, 6; sequence 1 uses 0, 7, 2 (out of order on purpose).
    table = knpu.asarray(np.array([[5, 1, 6], [0, 7, 2]], np.uint32))
    keys, vals = np.zeros((b, hk, 0, d)), np.zeros((b, hk, 0, d))
    lens = 0
    for new in (6, 1, 2):  # crosses block edges
        k, v = f32(b, hk, new, d), f32(b, hk, new, d)
        cache.append(knpu.asarray(k), knpu.asarray(v), table, knpu.asarray(np.full(b, lens, np.uint32)))
        keys, vals = np.concatenate([keys, k], 2), np.concatenate([vals, v], 2)
        lens += new
        q = f32(b, hq, 1, d)
        got = cache.attention(knpu.asarray(q), table, knpu.asarray(np.full(b, lens, np.uint32)))
        np.testing.assert_allclose(got.numpy(), ref_attention(q, keys, vals, True), atol=2e-5)


@pytest.mark.parametrize("dtype", [knpu.float16, knpu.bfloat16], ids=lambda d: d.name)
def test_kv_cache_half_types(dtype):
    cache = knpu.KVCache(1, 4, 1, 8, dtype=dtype)
    k = knpu.asarray(f32(1, 1, 3, 8), dtype=dtype)
    cache.append(k, k, knpu.zeros(1, dtype=knpu.uint32))
    got = cache.keys().to(knpu.float32).numpy()[0, :3, 0]
    np.testing.assert_array_equal(got, k.to(knpu.float32).numpy()[0, 0])


def test_kv_cache_bad_input_raises():
    cache = knpu.KVCache(1, 4, 2, 8)
    k = knpu.asarray(f32(1, 2, 3, 8))
    lens = knpu.zeros(1, dtype=knpu.uint32)
    with pytest.raises(knpu.DtypeError):
        cache.append(k.to(knpu.float16), k.to(knpu.float16), lens)
    with pytest.raises(knpu.ShapeError):
        cache.append(k, knpu.asarray(f32(1, 2, 2, 8)), lens)
    with pytest.raises(knpu.ShapeError):
        cache.append(knpu.asarray(f32(1, 3, 3, 8)), knpu.asarray(f32(1, 3, 3, 8)), lens)
    with pytest.raises(knpu.DtypeError):
        cache.append(k, k, knpu.zeros(1, dtype=knpu.int32))
    with pytest.raises(knpu.ShapeError):
        cache.append(k[0], k[0], lens)
    # Past the capacity: the device refuses it and the next sync raises; the cache stays usable.
    cache.append(k, k, knpu.asarray(np.array([3], np.uint32)))
    with pytest.raises(knpu.KnpuError):
        knpu.synchronize()
    cache.append(k, k, lens)
    knpu.synchronize()
    paged = knpu.PagedKVCache(2, 4, 2, 8)
    with pytest.raises(knpu.ShapeError):
        paged.append(k, k, knpu.zeros(2, dtype=knpu.uint32), lens)
