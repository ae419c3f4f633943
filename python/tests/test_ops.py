"""Op functions against numpy references computed in float64.

Tolerances per dtype: float32 results are compared at rtol 1e-5 (elementwise) and at an
absolute error of 1e-5 * sqrt(k) * max|a| * max|b| for products of depth k; float16 at
1e-3 relative per rounding, bfloat16 at 8e-3 (their unit roundoffs, times a small factor
for accumulated products).
"""

import math

import numpy as np
import pytest

import knpu

RNG = np.random.default_rng(19)

# Unit roundoff per dtype, with room for the inputs' own rounding.
EPS = {knpu.float32: 2e-6, knpu.float16: 1e-3, knpu.bfloat16: 8e-3}
FLOATS = [knpu.float32, knpu.float16, knpu.bfloat16]


def host(t):
    """A tensor's values as float64 on the host."""
    if t.dtype == knpu.bfloat16 or t.dtype == knpu.float16:
        t = t.to(knpu.float32)
    return t.numpy().astype(np.float64)


def rounded(a, dtype):
    """`a` as the device holds it in `dtype`, back in float64."""
    return host(knpu.asarray(a.astype(np.float32), dtype=dtype))


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def assert_product_close(got, want, k, a, b, dtype):
    scale = (np.abs(a).max(initial=0) * np.abs(b).max(initial=0)) or 1.0
    tol = 4 * EPS[dtype] * math.sqrt(max(k, 1)) * scale + 1e-30
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, math.sqrt(max(k, 1))))


# -- matmul ---------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3, 5), (5, 7)),
    ((1, 1), (1, 1)),
    ((0, 4), (4, 3)),
    ((4, 0), (0, 3)),
    ((5, 4), (4, 0)),
    ((17, 33), (33, 65)),  # one past tile edges of 16, 32, 64
    ((2, 3, 13), (13, 11)),  # batch against one matrix
    ((13,), (13, 4)),  # 1-D a
    ((6, 13), (13,)),  # 1-D b
    ((7,), (7,)),  # dot product
    ((2, 1, 3, 4), (5, 4, 2)),  # broadcast leading dims
    ((3, 4), (2, 4, 6)),  # a broadcast against batched b
    ((0, 3, 4), (4, 2)),  # empty batch
]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_matches_numpy(sa, sb, dtype):
    a, b = rand(*sa), rand(*sb)
    ta, tb = knpu.asarray(a, dtype=dtype), knpu.asarray(b, dtype=dtype)
    want = np.matmul(rounded(a, dtype), rounded(b, dtype))
    got = knpu.matmul(ta, tb)
    assert got.dtype == dtype
    assert got.shape == want.shape
    assert_product_close(host(got), want, sa[-1], a, b, dtype)
    np.testing.assert_array_equal(host(ta @ tb), host(got))


def test_matmul_reads_transposed_and_sliced_views_in_place_or_by_copy():
    a, b = rand(9, 6), rand(8, 9)
    ta, tb = knpu.asarray(a), knpu.asarray(b)
    # a.T is column-major, b.T too; a sliced with a step is neither and gets copied.
    got = knpu.matmul(ta.T, tb.T)
    np.testing.assert_allclose(got.numpy(), a.T.astype(np.float64) @ b.T, atol=1e-4)
    got = knpu.matmul(ta[::2, 1:5], knpu.asarray(rand(4, 3)[:, :]))
    assert got.shape == (5, 3)
    c = rand(2, 3, 4, 5)
    tc = knpu.asarray(c).permute(1, 0, 2, 3)  # batch dims that do not flatten
    d = rand(5, 2)
    np.testing.assert_allclose(
        (tc @ knpu.asarray(d)).numpy(),
        np.transpose(c, (1, 0, 2, 3)).astype(np.float64) @ d,
        atol=1e-4,
    )


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "silu"])
def test_matmul_bias_and_activation(activation):
    a, b, bias = rand(5, 17), rand(17, 9), rand(9)
    x = a.astype(np.float64) @ b + bias
    ref = {
        None: lambda v: v,
        "relu": lambda v: np.maximum(v, 0),
        "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
        "gelu_tanh": lambda v: 0.5
        * v
        * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
        "silu": lambda v: v / (1 + np.exp(-v)),
    }[activation](x)
    got = knpu.matmul(
        knpu.asarray(a), knpu.asarray(b), bias=knpu.asarray(bias), activation=activation
    )
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)


def test_matmul_out_is_written_and_returned():
    a, b = rand(4, 3), rand(3, 2)
    out = knpu.zeros(4, 2)
    r = knpu.matmul(knpu.asarray(a), knpu.asarray(b), out=out)
    assert r is out
    np.testing.assert_allclose(out.numpy(), a.astype(np.float64) @ b, atol=1e-5)


def test_matmul_mixed_float32_a_and_half_b_gives_float32():
    a, b = rand(3, 8), rand(8, 2)
    got = knpu.matmul(knpu.asarray(a), knpu.asarray(b, dtype=knpu.float16))
    assert got.dtype == knpu.float32
    np.testing.assert_allclose(got.numpy(), a @ rounded(b, knpu.float16), atol=1e-4)


def test_matmul_bad_input_raises():
    a = knpu.asarray(rand(3, 4))
    with pytest.raises(knpu.ShapeError):
        knpu.matmul(a, knpu.asarray(rand(5, 2)))
    with pytest.raises(knpu.ShapeError):
        knpu.matmul(knpu.asarray(rand(2, 3, 4)), knpu.asarray(rand(3, 4, 5)))
    with pytest.raises(knpu.ShapeError):
        knpu.matmul(knpu.asarray(np.float32(2.0)), a)
    with pytest.raises(knpu.DtypeError):
        knpu.matmul(knpu.asarray(np.ones((3, 4), np.int32)), knpu.asarray(np.ones((4, 2), np.int32)))
    with pytest.raises(knpu.DtypeError):
        # f16 a with f32 b has no kernel (only f32 a takes a narrower b).
        knpu.matmul(knpu.asarray(rand(3, 4), dtype=knpu.float16), knpu.asarray(rand(4, 2)))
    with pytest.raises(knpu.ShapeError):
        knpu.matmul(a, knpu.asarray(rand(4, 2)), bias=knpu.asarray(rand(3)))
    with pytest.raises(knpu.DtypeError):
        knpu.matmul(a, knpu.asarray(rand(4, 2)), bias=knpu.asarray(rand(2), dtype=knpu.float16))
    with pytest.raises(knpu.ShapeError):
        knpu.matmul(a, knpu.asarray(rand(4, 2)), out=knpu.empty(2, 3))
    with pytest.raises(knpu.InvalidValueError):
        knpu.matmul(a, knpu.asarray(rand(4, 2)), activation="tanh")
    with pytest.raises(knpu.NotSupportedError):
        knpu.matmul(knpu.zeros(2, 32, dtype=knpu.q8_0), knpu.asarray(rand(32, 2)))
    with pytest.raises(knpu.DeviceMismatchError):
        knpu.matmul(a, knpu.asarray(rand(4, 2), device=1))
    with pytest.raises(TypeError):
        a @ 2.0


# -- arithmetic -----------------------------------------------------------------------------

ARITH_SHAPES = [
    ((5,), (5,)),
    ((), ()),
    ((0,), (1,)),
    ((3, 1), (1, 7)),
    ((2, 1, 17), (4, 1)),
    ((65,), ()),
    ((1,), (2, 3, 31)),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("sa,sb", ARITH_SHAPES)
@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_arithmetic_broadcasts_like_numpy(sa, sb, op, dtype):
    a, b = rand(*sa), rand(*sb)
    if op == "/":
        b = (np.abs(b) + 0.5).astype(b.dtype)  # away from 0: no overflow in float16
    ta, tb = knpu.asarray(a, dtype=dtype), knpu.asarray(b, dtype=dtype)
    ra, rb = rounded(a, dtype), rounded(b, dtype)
    f = {
        "+": lambda x, y: x + y,
        "-": lambda x, y: x - y,
        "*": lambda x, y: x * y,
        "/": lambda x, y: x / y,
    }[op]
    want = f(ra, rb)
    got = f(ta, tb)
    assert got.shape == want.shape and got.dtype == dtype
    if op == "/":
        np.testing.assert_array_equal(host(knpu.div(ta, tb)), host(got))
    scale = np.abs(ra).max(initial=0) + np.abs(rb).max(initial=0) if op in "+-" else 1.0
    np.testing.assert_allclose(host(got), want, rtol=2 * EPS[dtype], atol=2 * EPS[dtype] * scale)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_arithmetic_with_numbers(dtype):
    a = rand(3, 17)
    t = knpu.asarray(a, dtype=dtype)
    r = rounded(a, dtype)
    cases = [
        (t + 2.5, r + 2.5),
        (2.5 + t, 2.5 + r),
        (t - 1, r - 1),
        (1 - t, 1 - r),
        (t * 3, r * 3),
        (3 * t, 3 * r),
        (t / 4.0, r / 4.0),
        (1.5 / (t * t + 1), 1.5 / (r * r + 1)),
        (-t, -r),
    ]
    for got, want in cases:
        assert got.shape == (3, 17) and got.dtype == dtype
        np.testing.assert_allclose(host(got), want, rtol=2 * EPS[dtype], atol=4 * EPS[dtype] * 3.5)


def test_arithmetic_on_views():
    a, b = rand(6, 8), rand(8, 6)
    ta, tb = knpu.asarray(a), knpu.asarray(b)
    np.testing.assert_allclose((ta[::2] + tb.T[1::2]).numpy(), a[::2] + b.T[1::2], rtol=1e-6)


def test_arithmetic_bad_input_raises():
    a = knpu.asarray(rand(3, 4))
    with pytest.raises(knpu.ShapeError):
        a + knpu.asarray(rand(3))
    with pytest.raises(knpu.DtypeError):
        a + knpu.asarray(rand(3, 4), dtype=knpu.float16)
    with pytest.raises(knpu.DeviceMismatchError):
        a + knpu.asarray(rand(3, 4), device=1)
    with pytest.raises(knpu.ShapeError):
        a / knpu.asarray(rand(3))
    with pytest.raises(knpu.NotSupportedError):
        ia = knpu.asarray(np.arange(4, dtype=np.int32))
        ia / ia
    with pytest.raises(knpu.NotSupportedError):
        knpu.zeros(2, 32, dtype=knpu.q4_0) + knpu.zeros(2, 32, dtype=knpu.q4_0)
    with pytest.raises(knpu.NotSupportedError):
        ia = knpu.asarray(np.arange(4, dtype=np.int32))
        ia + ia
    with pytest.raises(TypeError):
        a + "x"


# -- casts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("src", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("dst", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(0,), (1,), (7, 3), (1025,)])
def test_cast_every_float_pair(src, dst, shape):
    a = rand(*shape) * 100
    t = knpu.asarray(a, dtype=src)
    got = knpu.cast(t, dst)
    assert got.dtype == dst and got.shape == shape
    np.testing.assert_array_equal(host(got), rounded(host(t), dst))
    np.testing.assert_array_equal(host(t.to(dst)), host(got))


def test_cast_unsupported_pair_raises():
    with pytest.raises(knpu.NotSupportedError):
        knpu.cast(knpu.asarray(np.arange(3, dtype=np.int32)), knpu.float32)


def test_ops_are_captured_by_a_graph_and_replay_on_new_inputs():
    x = knpu.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    w = knpu.asarray(np.eye(3, dtype=np.float32))
    with knpu.graph() as g:
        y = knpu.matmul(x, w) * 2.0 + x
    g.replay()
    np.testing.assert_array_equal(y.numpy(), 3 * np.arange(6).reshape(2, 3))
    x.copy_(np.ones((2, 3), np.float32))
    g.replay()
    np.testing.assert_array_equal(y.numpy(), np.full((2, 3), 3.0))
