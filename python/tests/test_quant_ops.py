"""Quantised linear ops against float64 numpy references.

quantize/dequantize round trips are bounded per format by the format's step on the block's
range (q8_0: max/127, q4_0: max/8, q4_1: range/15, q4_k and q6_k their super-block steps,
FP8 by the mantissa width). qmatmul is compared with `x @ dequantize(w).T` (activations may
be quantised to 8 bits on the fly: 2e-2 of the product scale); w8a8_gemm with the exact
integer product scaled (float32 rounding: 1e-5).
"""

import math

import numpy as np
import pytest

import knpu

RNG = np.random.default_rng(1921)

# (dtype, row length, bound on |x - dq(q(x))| relative to the row's max |x|)
FORMATS = [
    (knpu.q8_0, 32, 1 / 127 + 1e-3),
    (knpu.q4_0, 32, 1 / 7),
    (knpu.q4_1, 32, 2 / 15),
    (knpu.q4_k, 256, 0.2),
    (knpu.q6_k, 256, 0.05),
    (knpu.float8_e4m3, 1, 2**-3),
    (knpu.float8_e5m2, 1, 2**-2),
]


@pytest.mark.parametrize("dtype,block,bound", FORMATS, ids=lambda v: getattr(v, "name", str(v)))
@pytest.mark.parametrize("rows,blocks", [(1, 1), (3, 2), (0, 1), (5, 3)])
def test_quantize_dequantize_round_trip(dtype, block, bound, rows, blocks):
    k = block * blocks if block > 1 else 7 * blocks
    x = RNG.standard_normal((rows, k)).astype(np.float32)
    q = knpu.quantize(knpu.asarray(x), dtype)
    assert q.dtype == dtype and q.shape == (rows, k)
    back = knpu.dequantize(q)
    assert back.dtype == knpu.float32 and back.shape == (rows, k)
    got = back.numpy().astype(np.float64)
    if dtype in (knpu.float8_e4m3, knpu.float8_e5m2):
        np.testing.assert_allclose(got, x, rtol=bound, atol=2**-9)
    else:
        scale = np.abs(x).max(axis=-1, keepdims=True) if rows else 1.0
        assert np.all(np.abs(got - x) <= bound * scale + 1e-6)


@pytest.mark.parametrize("dtype", [knpu.q8_0, knpu.q4_0, knpu.q4_k, knpu.float8_e4m3], ids=lambda d: d.name)
@pytest.mark.parametrize("m,n", [(1, 1), (3, 7), (0, 4), (17, 5)])
@pytest.mark.parametrize("xdtype", [knpu.float32, knpu.float16], ids=lambda d: d.name)
def test_qmatmul_matches_dequantized_product(dtype, m, n, xdtype):
    k = 256
    x = RNG.standard_normal((m, k)).astype(np.float32)
    w = knpu.quantize(knpu.asarray(RNG.standard_normal((n, k)).astype(np.float32)), dtype)
    wd = knpu.dequantize(w).numpy().astype(np.float64)
    tx = knpu.asarray(x, dtype=xdtype)
    xr = tx.to(knpu.float32).numpy().astype(np.float64)
    got = knpu.qmatmul(tx, w)
    assert got.shape == (m, n) and got.dtype == xdtype
    scale = math.sqrt(k) * (np.abs(xr).max(initial=0) * np.abs(wd).max(initial=0) or 1)
    np.testing.assert_allclose(got.to(knpu.float32).numpy(), xr @ wd.T, rtol=0, atol=2e-2 * scale)


def test_qmatmul_bias_activation_and_batch():
    k, n = 64, 9
    x = RNG.standard_normal((2, 3, k)).astype(np.float32)
    w = knpu.quantize(knpu.asarray(RNG.standard_normal((n, k)).astype(np.float32)), knpu.q8_0)
    bias = RNG.standard_normal(n).astype(np.float32)
    wd = knpu.dequantize(w).numpy().astype(np.float64)
    got = knpu.qmatmul(knpu.asarray(x), w, bias=knpu.asarray(bias), activation="relu")
    want = np.maximum(x @ wd.T + bias, 0)
    assert got.shape == (2, 3, n)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-2 * math.sqrt(k) * 4 * np.abs(wd).max())


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 33), (0, 2, 4), (17, 4, 64)])
@pytest.mark.parametrize("ydtype", [knpu.float32, knpu.bfloat16], ids=lambda d: d.name)
def test_w8a8_gemm_matches_integer_product(m, n, k, ydtype):
    xq = RNG.integers(-127, 128, (m, k), dtype=np.int8)
    wq = RNG.integers(-127, 128, (n, k), dtype=np.int8)
    sx = RNG.uniform(0.001, 0.01, m).astype(np.float32)
    sw = RNG.uniform(0.001, 0.01, n).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32)
    got = knpu.w8a8_gemm(
        knpu.asarray(xq), knpu.asarray(sx), knpu.asarray(wq), knpu.asarray(sw),
        bias=knpu.asarray(bias), dtype=ydtype,
    )
    want = (xq.astype(np.int64) @ wq.T.astype(np.int64)) * sx[:, None].astype(np.float64) * sw[None, :] + bias
    assert got.shape == (m, n) and got.dtype == ydtype
    tol = 1e-5 if ydtype == knpu.float32 else 8e-3
    np.testing.assert_allclose(got.to(knpu.float32).numpy(), want, rtol=tol, atol=tol)


def test_quant_bad_input_raises():
    x = knpu.asarray(RNG.standard_normal((2, 33)).astype(np.float32))
    with pytest.raises(knpu.ShapeError):
        knpu.quantize(x, knpu.q8_0)  # 33 is not whole blocks of 32
    with pytest.raises(knpu.DtypeError):
        knpu.quantize(x, knpu.float16)
    with pytest.raises(knpu.NotSupportedError):
        knpu.quantize(x, knpu.int8)
    with pytest.raises(knpu.DtypeError):
        knpu.dequantize(x)
    w = knpu.quantize(knpu.asarray(RNG.standard_normal((4, 64)).astype(np.float32)), knpu.q4_0)
    with pytest.raises(knpu.ShapeError):
        knpu.qmatmul(knpu.asarray(RNG.standard_normal((3, 32)).astype(np.float32)), w)
    with pytest.raises(knpu.DtypeError):
        knpu.qmatmul(knpu.ones(3, 64), knpu.ones(4, 64))
    with pytest.raises(knpu.InvalidValueError):
        knpu.qmatmul(knpu.ones(3, 64), w, scales=knpu.ones(4))  # q4_0 blocks carry scales
    xq = knpu.asarray(np.ones((2, 8), np.int8))
    with pytest.raises(knpu.ShapeError):
        knpu.w8a8_gemm(xq, knpu.ones(3), xq, knpu.ones(2))
    with pytest.raises(knpu.DtypeError):
        knpu.w8a8_gemm(knpu.ones(2, 8), knpu.ones(2), xq, knpu.ones(2))


@pytest.mark.parametrize("dtype", [knpu.q8_0, knpu.q4_0, knpu.q4_1, knpu.q4_k, knpu.q6_k], ids=lambda d: d.name)
@pytest.mark.parametrize("out_dtype", [knpu.float32, knpu.float16], ids=lambda d: d.name)
def test_embedding_of_quantised_tables_is_the_dequantised_row(dtype, out_dtype):
    table = knpu.quantize(knpu.asarray(RNG.standard_normal((5, 256)).astype(np.float32)), dtype)
    rows = knpu.dequantize(table).numpy()
    tok = np.array([4, 0, 4, 2], np.uint32)
    got = knpu.embedding(knpu.asarray(tok), table, dtype=out_dtype)
    assert got.shape == (4, 256) and got.dtype == out_dtype
    want = knpu.asarray(rows[tok], dtype=out_dtype).to(knpu.float32).numpy()
    np.testing.assert_array_equal(got.to(knpu.float32).numpy(), want)
    assert knpu.embedding(knpu.asarray(tok), table).dtype == knpu.float32
