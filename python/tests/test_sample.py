"""knpu.sample and knpu.Generator against a numpy reference of the documented rule."""

import numpy as np
import pytest

import knpu

M64 = (1 << 64) - 1


def _mix(z):
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _step(z):
    return _mix((z + 0x9E3779B97F4A7C15) & M64)


def uniform(seed, counter, row):
    """The uniform number row ``row`` draws: the driver header's counter-based hash."""
    h = _step(_step(_step(seed) ^ counter) ^ row)
    return (h >> 11) * 2.0**-53


def ref_row(x, u, temperature, top_k, top_p):
    """One row's id by the rule of KNPU_KERNEL_SAMPLE, with a full sort."""
    x = np.asarray(x, dtype=np.float64)
    if temperature == 0:
        nan = np.flatnonzero(np.isnan(x))
        return int(nan[0]) if nan.size else int(np.argmax(x))
    z = np.where(np.isnan(x), -np.inf, x / np.float64(np.float32(temperature)))
    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    order = order[: top_k or len(z)]
    top = z[order[0]]
    if top == -np.inf:
        return ref_row(x, u, 0, 0, 1.0)
    w = {i: (1.0 if z[i] == np.inf else 0.0) if top == np.inf else float(np.exp(z[i] - top)) for i in order}
    if top_p < 1.0:
        order.sort(key=lambda i: (-w[i], i))
        total = sum(w[i] for i in order)
        s, keep = 0.0, len(order)
        for n, i in enumerate(order):
            s += w[i]
            if s >= float(np.float32(top_p)) * total:
                keep = n + 1
                break
        order = order[:keep]
    order.sort()
    total = sum(w[i] for i in order)
    s = 0.0
    for i in order:
        s += w[i]
        if u * total < s:
            return i
    return [i for i in order if w[i] > 0][-1]


def ref(x, seed, counter, temperature=1.0, top_k=0, top_p=1.0):
    rows = x.reshape(-1, x.shape[-1])
    ids = [ref_row(r, uniform(seed, counter, n), temperature, top_k, top_p) for n, r in enumerate(rows)]
    return np.array(ids, dtype=np.int32).reshape(x.shape[:-1])


def logits(*shape, seed=0, spread=4.0):
    return (np.random.default_rng(seed).standard_normal(shape) * spread).astype(np.float32)


PARAMS = [
    dict(temperature=1.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.5, top_p=0.9),
    dict(temperature=0.4, top_k=20, top_p=0.6),
    dict(temperature=2.0, top_k=1),
]


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 50), (2, 3, 101)])
def test_sample_matches_numpy(shape):
    x = logits(*shape, seed=len(shape))
    t = knpu.asarray(x)
    g = knpu.Generator(123)
    for counter, p in enumerate(PARAMS):
        p = dict(p, top_k=min(p.get("top_k", 0), shape[-1]))
        got = knpu.sample(t, generator=g, **p)
        assert got.dtype == knpu.int32 and got.shape == shape[:-1]
        np.testing.assert_array_equal(got.numpy(), ref(x, 123, counter, **p), err_msg=str(p))
    assert g.counter == len(PARAMS) and g.seed == 123


@pytest.mark.parametrize("dtype", [knpu.float16, knpu.bfloat16], ids=lambda d: d.name)
def test_sample_half_precision_logits(dtype):
    x = logits(4, 300, seed=3)
    t = knpu.asarray(x, dtype=dtype)
    rounded = t.to(knpu.float32).numpy()
    g = knpu.Generator(9)
    got = knpu.sample(t, temperature=0.8, top_p=0.95, generator=g)
    np.testing.assert_array_equal(got.numpy(), ref(rounded, 9, 0, 0.8, 0, 0.95))


def test_device_reports_the_kernel():
    assert knpu.Device(0).supports("sample", knpu.float32)
    assert knpu.Device(0).supports("sample", knpu.bfloat16)


def test_greedy_is_argmax_and_draws_nothing():
    x = logits(5, 64, seed=1)
    x[2, 10] = x[2, 40] = x[2].max() + 1  # a tie: the lower index wins
    g = knpu.Generator(1)
    got = knpu.sample(knpu.asarray(x), temperature=0.0, generator=g)
    np.testing.assert_array_equal(got.numpy(), np.argmax(x, axis=-1).astype(np.int32))
    assert got.numpy()[2] == 10
    assert g.counter == 0


def test_out_and_default_generator():
    x = logits(3, 40, seed=2)
    t = knpu.asarray(x)
    out = knpu.zeros(3, dtype=knpu.int32)
    res = knpu.sample(t, temperature=0.0, out=out)
    assert res is out
    np.testing.assert_array_equal(out.numpy(), np.argmax(x, axis=-1))
    # Without a generator, the device's default one advances between calls.
    ids = knpu.sample(t, top_k=10).numpy()
    assert ids.shape == (3,) and ((0 <= ids) & (ids < 40)).all()


def test_manual_seed_restarts_the_sequence():
    t = knpu.asarray(logits(4, 1000, seed=5, spread=0.01))
    g = knpu.Generator(77)
    first = [knpu.sample(t, generator=g).numpy() for _ in range(3)]
    assert not np.array_equal(first[0], first[1])
    g.manual_seed(77)
    assert g.counter == 0
    again = [knpu.sample(t, generator=g).numpy() for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    g.manual_seed(78)
    assert g.seed == 78
    assert not np.array_equal(knpu.sample(t, generator=g).numpy(), first[0])


def test_graph_replays_draw_fresh_ids_reproducibly():
    x = logits(4, 1000, seed=6, spread=0.01)  # nearly flat: ids spread over the vocabulary
    t = knpu.asarray(x)
    g = knpu.Generator(2024)
    ids = knpu.zeros(4, dtype=knpu.int32)
    knpu.synchronize()
    with knpu.graph() as graph:
        knpu.sample(t, temperature=1.0, top_p=0.99, generator=g, out=ids)
    assert g.counter == 0, "nothing ran during capture"
    seen = []
    for replay in range(4):
        graph.replay()
        knpu.synchronize()
        got = ids.numpy()
        np.testing.assert_array_equal(got, ref(x, 2024, replay, 1.0, 0, 0.99))
        assert not any(np.array_equal(got, s) for s in seen), f"replay {replay} repeated ids"
        seen.append(got)
    assert g.counter == 4
    g.manual_seed(2024)
    graph.replay()
    knpu.synchronize()
    np.testing.assert_array_equal(ids.numpy(), seen[0])


def test_empirical_frequencies_follow_the_truncated_softmax():
    row = np.array([2.0, 1.5, 1.4, 0.0, -1.0, 3.0, -0.5, 0.9, 2.2, -3.0], np.float32)
    draws = 4000
    t = knpu.asarray(np.tile(row, (draws, 1)))
    ids = knpu.sample(t, temperature=0.7, top_k=6, top_p=0.8, generator=knpu.Generator(11)).numpy()
    order = np.argsort(-row, kind="stable")[:6]
    w = np.exp((row[order] - row[order[0]]) / 0.7)
    keep = int(np.searchsorted(np.cumsum(w), 0.8 * w.sum()) + 1)
    p = np.zeros(10)
    p[order[:keep]] = w[:keep] / w[:keep].sum()
    freq = np.bincount(ids, minlength=10) / draws
    assert (freq[p == 0] == 0).all()
    sd = np.sqrt(p * (1 - p) / draws)
    assert (np.abs(freq - p) <= 5 * sd + 1e-12).all(), (freq, p)


def test_bad_inputs_raise():
    t = knpu.asarray(logits(2, 10))
    g = knpu.Generator(0)
    for kw in [
        dict(temperature=-1.0),
        dict(temperature=float("nan")),
        dict(temperature=float("inf")),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_k=11),
    ]:
        with pytest.raises(knpu.InvalidValueError):
            knpu.sample(t, generator=g, **kw)
    with pytest.raises(knpu.DtypeError):
        knpu.sample(knpu.asarray(np.arange(10, dtype=np.int32)), generator=g)
    with pytest.raises(knpu.InvalidValueError):
        knpu.sample(knpu.asarray(np.float32(1.0)), generator=g)
    with pytest.raises(knpu.DeviceMismatchError):
        knpu.sample(t, generator=knpu.Generator(0, device=1))
    with pytest.raises(knpu.ShapeError):
        knpu.sample(t, temperature=0.0, out=knpu.zeros(3, dtype=knpu.int32))
    with pytest.raises(TypeError):
        knpu.sample(t, generator="seed")
    assert g.counter == 0, "nothing was queued"
