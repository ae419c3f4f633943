"""knpu.attention against a float64 numpy reference (PyTorch's SDPA semantics: causal masks
aligned bottom-right, GQA by head counts). Tolerances: float32 2e-5, float16 4e-3, bfloat16
3e-2, absolute, on outputs of magnitude <= max|v|."""

import math

import numpy as np
import pytest

import knpu

RNG = np.random.default_rng(1920)
TOL = {knpu.float32: 2e-5, knpu.float16: 4e-3, knpu.bfloat16: 3e-2}
FLOATS = [knpu.float32, knpu.float16, knpu.bfloat16]


def host(t):
    if t.dtype in (knpu.float16, knpu.bfloat16):
        t = t.to(knpu.float32)
    return t.numpy().astype(np.float64)


def dev(shape, dtype):
    t = knpu.asarray(RNG.standard_normal(shape).astype(np.float32), dtype=dtype)
    return t, host(t)


def ref(q, k, v, causal, scale, window=None):
    b, hq, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = np.zeros_like(q)
    for h in range(hq):
        kh = h // (hq // hk)
        s = np.einsum("bqd,bkd->bqk", q[:, h], k[:, kh]) * scale
        qi = np.arange(lq)[:, None] + (lk - lq)
        kj = np.arange(lk)[None, :]
        allowed = np.ones((lq, lk), bool)
        if causal:
            allowed &= kj <= qi
        if window is not None:
            allowed &= kj > qi - window
        s = np.where(allowed, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        e = np.where(allowed, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
        den = e.sum(axis=-1, keepdims=True)
        out[:, h] = np.einsum("bqk,bkd->bqd", e / np.where(den == 0, 1, den), v[:, kh])
    return out


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize(
    "b,hq,hk,lq,lk,d",
    [(1, 1, 1, 1, 1, 8), (2, 4, 2, 5, 7, 16), (1, 6, 1, 17, 17, 33), (1, 2, 2, 1, 65, 64), (1, 2, 1, 0, 3, 8)],
)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_numpy(dtype, b, hq, hk, lq, lk, d, causal):
    q, qr = dev((b, hq, lq, d), dtype)
    k, kr = dev((b, hk, lk, d), dtype)
    v, vr = dev((b, hk, lk, d), dtype)
    got = knpu.attention(q, k, v, causal=causal)
    assert got.shape == (b, hq, lq, d) and got.dtype == dtype
    np.testing.assert_allclose(host(got), ref(qr, kr, vr, causal, None), rtol=0, atol=TOL[dtype] * 4)


def test_attention_scale_window_3d_and_strided_views():
    q, qr = dev((3, 6, 8), knpu.float32)
    k, kr = dev((3, 9, 8), knpu.float32)
    v, vr = dev((3, 9, 8), knpu.float32)
    got = knpu.attention(q, k, v, causal=True, scale=0.3, window=4)
    want = ref(qr[None], kr[None], vr[None], True, 0.3, window=4)[0]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    # [batch, seq, heads, head_dim] storage read in place through a transpose.
    qs, qsr = dev((1, 6, 3, 8), knpu.float32)
    got = knpu.attention(qs.transpose(1, 2), k[None], v[None])
    want = ref(np.transpose(qsr, (0, 2, 1, 3)), kr[None], vr[None], False, None)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_attention_bad_input_raises():
    q, _ = dev((1, 4, 3, 8), knpu.float32)
    k, _ = dev((1, 3, 5, 8), knpu.float32)
    with pytest.raises(knpu.InvalidValueError):
        knpu.attention(q, k, k)  # 3 kv heads do not divide 4 query heads
    with pytest.raises(knpu.ShapeError):
        knpu.attention(q, q[0, 0], q)
    with pytest.raises(knpu.DtypeError):
        knpu.attention(q, q.to(knpu.float16), q)
    with pytest.raises(knpu.NotSupportedError):
        knpu.attention(q, q, q, mask=q)
    with pytest.raises(knpu.DeviceMismatchError):
        knpu.attention(q, knpu.zeros(1, 4, 3, 8, device=1), q)


def ref_lens(q, k, v, lens, causal):
    """Each sequence alone over its first lens[b] keys (a sequence with no key gives zeros)."""
    out = np.zeros_like(q)
    for b, n in enumerate(lens):
        if n:
            out[b : b + 1] = ref(q[b : b + 1], k[b : b + 1, :, :n], v[b : b + 1, :, :n], causal, None)
    return out


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_kv_lens_masks_padding_keys(dtype, causal):
    b, hq, hk, lq, lk, d = 4, 4, 2, 9, 9, 16
    q, qr = dev((b, hq, lq, d), dtype)
    k, kr = dev((b, hk, lk, d), dtype)
    v, vr = dev((b, hk, lk, d), dtype)
    lens = [9, 1, 5, 7]
    want = ref_lens(qr, kr, vr, lens, causal)
    forms = [
        lens,
        np.array(lens, dtype=np.int64),
        knpu.asarray(np.array(lens, dtype=np.uint32)),
        knpu.asarray(np.array(lens, dtype=np.int32)),
    ]
    for form in forms:
        got = knpu.attention(q, k, v, causal=causal, kv_lens=form)
        np.testing.assert_allclose(host(got), want, rtol=0, atol=TOL[dtype] * 4)
    # Padding keys must not matter: garbage there leaves the result unchanged.
    kp = kr.copy()
    for i, n in enumerate(lens):
        kp[i, :, n:] = 1e4
    got = knpu.attention(q, knpu.asarray(kp.astype(np.float32), dtype=dtype), v, causal=causal, kv_lens=lens)
    np.testing.assert_allclose(host(got), want, rtol=0, atol=TOL[dtype] * 4)


def test_attention_boolean_prefix_mask_is_kv_lens():
    b, h, lq, lk, d = 3, 2, 5, 6, 8
    q, qr = dev((b, h, lq, d), knpu.float32)
    k, kr = dev((b, h, lk, d), knpu.float32)
    v, vr = dev((b, h, lk, d), knpu.float32)
    lens = [6, 2, 0]
    mask = np.arange(lk)[None, :] < np.array(lens)[:, None]
    want = ref_lens(qr, kr, vr, lens, False)
    for m in (mask, mask[:, None, None, :], mask.tolist()):
        got = knpu.attention(q, k, v, mask=m)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    # A sequence with no key attends to nothing: its rows are zeros.
    assert not got.numpy()[2].any()
    # Unbatched operands: the mask has batch 1.
    got = knpu.attention(q[1], k[1], v[1], mask=mask[1:2])
    np.testing.assert_allclose(got.numpy(), want[1], atol=1e-5)


def test_attention_unsupported_masks_and_bad_kv_lens_raise():
    q, _ = dev((2, 2, 3, 8), knpu.float32)
    k, _ = dev((2, 2, 4, 8), knpu.float32)
    holes = np.array([[True, False, True, False], [True, True, True, True]])
    with pytest.raises(knpu.NotSupportedError, match="row 0 is not a prefix of True"):
        knpu.attention(q, k, k, mask=holes)
    with pytest.raises(knpu.NotSupportedError, match=r"boolean key-padding mask"):
        knpu.attention(q, k, k, mask=np.ones((2, 4), dtype=np.float32))
    with pytest.raises(knpu.NotSupportedError, match=r"shape \[2, 3, 4\]"):
        knpu.attention(q, k, k, mask=np.ones((2, 3, 4), dtype=bool))
    with pytest.raises(knpu.NotSupportedError, match=r"shape \[2, 5\]"):
        knpu.attention(q, k, k, mask=np.ones((2, 5), dtype=bool))
    with pytest.raises(knpu.InvalidValueError, match="not both"):
        knpu.attention(q, k, k, mask=np.ones((2, 4), dtype=bool), kv_lens=[4, 4])
    with pytest.raises(knpu.ShapeError, match="kv_lens"):
        knpu.attention(q, k, k, kv_lens=[4])
    with pytest.raises(knpu.ShapeError, match="kv_lens"):
        knpu.attention(q, k, k, kv_lens=knpu.asarray(np.array([4, 4, 4], dtype=np.uint32)))
    with pytest.raises(knpu.InvalidValueError, match=r"kv_lens\[1\] = 5"):
        knpu.attention(q, k, k, kv_lens=[4, 5])
    with pytest.raises(knpu.InvalidValueError, match=r"kv_lens\[0\] = -1"):
        knpu.attention(q, k, k, kv_lens=knpu.asarray(np.array([-1, 2], dtype=np.int32)))
    with pytest.raises(knpu.DtypeError, match="kv_lens"):
        knpu.attention(q, k, k, kv_lens=[1.5, 2.0])
    with pytest.raises(knpu.DtypeError, match="kv_lens"):
        knpu.attention(q, k, k, kv_lens=knpu.asarray(np.array([1.0, 2.0], dtype=np.float32)))
    # A uint32 tensor is used in place, unchecked on the host: the kernel refuses a count
    # past the keys, reported at the next synchronisation.
    bad = knpu.asarray(np.array([4, 9], dtype=np.uint32))
    with pytest.raises(knpu.KernelFaultError, match="kv_lens"):
        knpu.attention(q, k, k, kv_lens=bad)
        knpu.synchronize()
