"""LLM ops against float64 numpy references.

Tolerances: float32 at 1e-5 relative to the row's scale, float16 at 2e-3 and bfloat16 at
1.6e-2 (a few units of their roundoff: inputs, the kernel's f32 math and the output are
each rounded once).
"""

import math

import numpy as np
import pytest

import knpu

RNG = np.random.default_rng(1919)
TOL = {knpu.float32: 1e-5, knpu.float16: 2e-3, knpu.bfloat16: 1.6e-2}
FLOATS = [knpu.float32, knpu.float16, knpu.bfloat16]
ROW_SHAPES = [(1,), (7,), (3, 17), (2, 5, 33), (0, 4), (4, 65)]


def host(t):
    if t.dtype in (knpu.float16, knpu.bfloat16):
        t = t.to(knpu.float32)
    return t.numpy().astype(np.float64)


def dev(a, dtype):
    """`a` on the device in `dtype`, and its values there in float64."""
    t = knpu.asarray(np.asarray(a, dtype=np.float32), dtype=dtype)
    return t, host(t)


def close(got, want, dtype, scale=1.0):
    assert got.shape == want.shape
    np.testing.assert_allclose(host(got), want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


ids = pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)


@ids
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_rms_norm(shape, dtype):
    x, xr = dev(RNG.standard_normal(shape), dtype)
    w, wr = dev(RNG.standard_normal(shape[-1:]), dtype)
    want = xr / np.sqrt(np.mean(xr * xr, axis=-1, keepdims=True) + 1e-6) * wr
    close(knpu.rms_norm(x, w), want, dtype, scale=4.0)


@ids
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_layer_norm(shape, dtype, with_bias):
    x, xr = dev(RNG.standard_normal(shape) * 3 + 1, dtype)
    w, wr = dev(RNG.standard_normal(shape[-1:]), dtype)
    b, br = dev(RNG.standard_normal(shape[-1:]), dtype)
    mean = xr.mean(axis=-1, keepdims=True)
    var = ((xr - mean) ** 2).mean(axis=-1, keepdims=True)
    want = (xr - mean) / np.sqrt(var + 1e-5) * wr + (br if with_bias else 0)
    got = knpu.layer_norm(x, w, b if with_bias else None)
    close(got, want, dtype, scale=4.0)


@ids
@pytest.mark.parametrize("shape", ROW_SHAPES + [()])
def test_activations(shape, dtype):
    x, xr = dev(RNG.standard_normal(shape) * 3, dtype)
    erf = np.vectorize(math.erf, otypes=[np.float64])
    close(knpu.silu(x), xr / (1 + np.exp(-xr)), dtype, scale=4.0)
    close(knpu.gelu(x), 0.5 * xr * (1 + erf(xr / math.sqrt(2))), dtype, scale=4.0)
    tanh = 0.5 * xr * (1 + np.tanh(math.sqrt(2 / math.pi) * (xr + 0.044715 * xr**3)))
    close(knpu.gelu(x, approximate="tanh"), tanh, dtype, scale=4.0)
    g, gr = dev(RNG.standard_normal(shape), dtype)
    close(knpu.swiglu(g, x), gr / (1 + np.exp(-gr)) * xr, dtype, scale=8.0)


@ids
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax(shape, dtype):
    x, xr = dev(RNG.standard_normal(shape) * 4, dtype)
    for scale in (1.0, 0.125):
        z = xr * scale
        e = np.exp(z - z.max(axis=-1, keepdims=True, initial=-np.inf))
        want = e / e.sum(axis=-1, keepdims=True)
        close(knpu.softmax(x, scale=scale), want, dtype)


@ids
@pytest.mark.parametrize("shape", [(1,), (9,), (3, 17), (2, 4, 65)])
def test_argmax_and_topk(shape, dtype):
    # Distinct values in every dtype: a permutation of small integers.
    vals = RNG.permutation(np.prod(shape)).reshape(shape) % 200
    x, xr = dev(vals, dtype)
    np.testing.assert_array_equal(knpu.argmax(x).numpy(), np.argmax(xr, axis=-1))
    k = min(3, shape[-1])
    v, i = knpu.topk(x, k)
    order = np.argsort(-xr, axis=-1, kind="stable")[..., :k]
    np.testing.assert_array_equal(i.numpy(), order)
    np.testing.assert_array_equal(host(v), np.take_along_axis(xr, order, axis=-1))
    assert i.dtype == knpu.uint32 and v.dtype == dtype


@ids
@pytest.mark.parametrize("out_dtype", FLOATS, ids=lambda d: d.name)
def test_embedding_of_float_tables(dtype, out_dtype):
    table, tr = dev(RNG.standard_normal((11, 7)), dtype)
    tok = np.array([[0, 10, 3], [3, 3, 1]], dtype=np.uint32)
    got = knpu.embedding(knpu.asarray(tok), table, dtype=out_dtype)
    assert got.shape == (2, 3, 7) and got.dtype == out_dtype
    want = host(knpu.asarray(tr[tok].astype(np.float32), dtype=out_dtype))
    np.testing.assert_array_equal(host(got), want)


def rope_ref(x, pos, base, rotary_dim, style):
    out = x.copy()
    half = rotary_dim // 2
    for r in range(x.shape[0]):
        for i in range(half):
            theta = pos[r] * base ** (-2 * i / rotary_dim)
            c, s = math.cos(theta), math.sin(theta)
            a, b = (2 * i, 2 * i + 1) if style == "interleaved" else (i, i + half)
            xa, xb = x[r, :, a].copy(), x[r, :, b].copy()
            out[r, :, a] = xa * c - xb * s
            out[r, :, b] = xa * s + xb * c
    return out


@ids
@pytest.mark.parametrize("style", ["neox", "interleaved"])
@pytest.mark.parametrize("rows,heads,head_dim,rotary_dim", [(1, 1, 2, 2), (5, 3, 8, 8), (4, 2, 10, 6)])
def test_rope(dtype, style, rows, heads, head_dim, rotary_dim):
    x, xr = dev(RNG.standard_normal((rows, heads, head_dim)), dtype)
    want = rope_ref(xr, [7 + r for r in range(rows)], 10000.0, rotary_dim, style)
    got = knpu.rope(x, start=7, rotary_dim=rotary_dim, style=style)
    close(got, want, dtype, scale=4.0)
    pos = np.array([3 * r + 1 for r in range(rows)], dtype=np.uint32)
    want = rope_ref(xr, pos, 500.0, rotary_dim, style)
    got = knpu.rope(x, knpu.asarray(pos), base=500.0, rotary_dim=rotary_dim, style=style)
    close(got, want, dtype, scale=4.0)


def test_llm_ops_bad_input_raises():
    x = knpu.asarray(RNG.standard_normal((3, 8)).astype(np.float32))
    with pytest.raises(knpu.ShapeError):
        knpu.rms_norm(x, knpu.ones(7))
    with pytest.raises(knpu.DtypeError):
        knpu.rms_norm(x, knpu.ones(8, dtype=knpu.float16))
    with pytest.raises(knpu.DeviceMismatchError):
        knpu.layer_norm(x, knpu.ones(8, device=1))
    with pytest.raises(knpu.ShapeError):
        knpu.swiglu(x, knpu.ones(3, 7))
    with pytest.raises(knpu.NotSupportedError):
        knpu.softmax(x, dim=0)
    with pytest.raises(knpu.InvalidValueError):
        knpu.topk(x, 9)
    with pytest.raises(knpu.InvalidValueError):
        knpu.argmax(knpu.empty(3, 0))
    with pytest.raises(knpu.DtypeError):
        knpu.embedding(knpu.asarray(np.array([1], dtype=np.int32)), x)
    with pytest.raises(knpu.ShapeError):
        knpu.embedding(knpu.asarray(np.array([1], dtype=np.uint32)), knpu.ones(2, 3, 4))
    with pytest.raises(knpu.InvalidValueError):
        knpu.gelu(x, approximate="fast")
    with pytest.raises(knpu.InvalidValueError):
        knpu.rope(x.reshape(3, 2, 4), style="gptj")
    with pytest.raises(knpu.InvalidValueError):
        knpu.rope(x.reshape(3, 2, 4), rotary_dim=3)
    with pytest.raises(knpu.DtypeError):
        knpu.silu(knpu.asarray(np.arange(4, dtype=np.int32)))
    with pytest.raises(knpu.NotSupportedError):
        knpu.silu(knpu.zeros(1, 32, dtype=knpu.q8_0))
    # An id past the vocabulary is found by the device and raised at the next sync.
    bad = knpu.embedding(knpu.asarray(np.array([0, 99], dtype=np.uint32)), x)
    with pytest.raises(knpu.KnpuError):
        bad.numpy()
        knpu.synchronize()
