"""Numpy reference of the Llama decoder as llama.cpp runs SmolLM2-135M from GGUF.

Per block: ``x += Wo · attn(rope(Wq · n), rope(Wk · n), Wv · n)`` with ``n = rmsnorm(x)``,
then ``x += Wdown · (silu(Wgate · n) * Wup · n)`` with ``n = rmsnorm(x)``; after the last
block a final RMSNorm and the output projection, which is ``token_embd.weight`` when the
file has no ``output.weight`` (tied embeddings).

Facts this encodes, each checked against llama.cpp by the fixture tests:

* Weights are stored ``(out, in)`` in numpy order (GGUF extents ``[in, out]``), so a
  linear layer is ``x @ W.T``.
* RoPE rotates adjacent pairs ``(x[2i], x[2i+1])`` of each head by ``pos * base**(-2i/d)``
  (llama.cpp's "normal" RoPE for the llama architecture: the GGUF converter permuted the
  rows of ``attn_q``/``attn_k`` so that adjacent pairs are the ones Hugging Face's
  half-split rotation pairs).
* Grouped-query attention: query head ``h`` reads KV head ``h // (n_head / n_head_kv)``.
* Attention scale ``1 / sqrt(head_dim)``, causal mask, softmax in float32.

``Rounding`` selects which of llama.cpp's CPU-backend roundings the reference reproduces
(``ROUNDING_GGML`` is all of them; ``rounding_study.py`` beside this file measures each
against the fixtures). Traced op by op against llama.cpp (its graph's intermediate tensors,
fed the same inputs), these are exactly the places where it rounds beyond float32:

* The input of every quantised matmul is quantised to 8-bit blocks of 32 (``q =
  round(x * 127 / max|x|)``) with the block scale ``d = max|x| / 127`` stored as f16:
  ggml's Q8_0 for Q8_0 weights, Q8_1 for Q4_1 weights.
* Q8_1 also stores ``s = d * sum(q)``, from the unrounded ``d`` and rounded to f16 on its
  own; the Q4_1 dot product adds ``m * s`` for the weight block's minimum ``m``, so the
  minimum's contribution uses that ``s``, not ``f16(d) * sum(q)``.
* Keys and values are stored in the f16 cache; the query is rounded to f16 before ``K·Q``
  and the softmax probabilities (normalised) before ``P·V`` (its attention without flash
  attention, llama-cpp-python's default), both accumulated in float32.

With all three, each op agrees with llama.cpp's to float32 summation noise (relative
``1e-7``), where plain float32 on dequantised weights differs by ``1e-2`` per matmul
(``llamacpp_probe.py ops``: Q4_1 matmuls 1e-2 in float32, 5e-4 to 1e-3 with 8-bit
activations and f32 ``s``, 4e-7 with all of it; attention 2e-4, then 2e-7).

What that does not give is llama.cpp's logits, because a forward pass through 8-bit
activation codes is chaotic. A difference of one float32 ulp ahead of a quantisation (this
RMSNorm's ``x / sqrt(ms)`` against ggml's ``x * (1 / sqrt(ms))``, another summation order)
now and then moves a value across a rounding boundary; that code then changes by a whole
step, the matmul output by about 1e-3, and the next quantisation's codes differ wherever
they were that close to a boundary; through attention the change reaches every later
position. Traced on the first fixture prompt with every rounding on, the hidden state
matches llama.cpp's to 6e-7 at position 0 after the first block, yet is 8e-3 off at the
worst position and 4e-3 on average: a few codes of the first matmuls had flipped
(at positions 4, 18 and 35), and attention carried them on to every later position. From
there each engine carries its own quantisation noise, and the logits differ by about 0.16
whichever roundings the reference shares (``rounding_study.py``); llama.cpp itself moves
as much when only its rounding changes (``llamacpp_probe.py self``: with flash attention,
96.3% top-1 agreement with its own fixtures, mean difference 0.15). ``Rounding()``, plain
float32, stays the default: it carries no quantisation noise of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import List, Optional, Sequence

import numpy as np
from knpu.models.gguf import GGMLType, GGUFFile

from .dequant import load_tensor, q4_1_minimums, quantize_q8_blocks


@dataclass(frozen=True)
class Rounding:
    """Which of llama.cpp's roundings (see the module docstring) the reference reproduces."""

    #: Matmul inputs through 8-bit blocks of 32 with an f16 block scale (Q8_0/Q8_1).
    act_q8: bool = False
    #: Q4_1 weights: the minimum meets Q8_1's separately rounded ``s = f16(d * sum(q))``
    #: (only with ``act_q8``).
    q8_1_sum: bool = False
    #: Keys and values stored in half precision.
    kv_f16: bool = False
    #: The query rounded to f16 before ``K·Q``, the normalised softmax before ``P·V``.
    attn_f16: bool = False


#: Every rounding llama.cpp's CPU backend makes on SmolLM2 with its default f16 KV cache.
ROUNDING_GGML = Rounding(act_q8=True, q8_1_sum=True, kv_f16=True, attn_f16=True)


def read_config(g: GGUFFile) -> SimpleNamespace:
    """The hyperparameters in a GGUF file's ``llama.*`` metadata, as the attributes
    ``n_layer``, ``n_embd``, ``n_ff``, ``n_head``, ``n_head_kv``, ``head_dim``, ``rope_base``,
    ``rms_eps``, ``vocab_size`` and ``context_length``. Read here, not through
    ``knpu.models``, so that the reference does not share the reading it checks."""
    arch = g.require("general.architecture")
    if arch != "llama":
        raise ValueError(f"{g.path}: architecture {arch!r} is not llama")
    n_embd = int(g.require("llama.embedding_length"))
    n_head = int(g.require("llama.attention.head_count"))
    return SimpleNamespace(
        n_layer=int(g.require("llama.block_count")),
        n_embd=n_embd,
        n_ff=int(g.require("llama.feed_forward_length")),
        n_head=n_head,
        n_head_kv=int(g.get("llama.attention.head_count_kv", n_head)),
        head_dim=int(g.get("llama.rope.dimension_count", n_embd // n_head)),
        rope_base=float(g.get("llama.rope.freq_base", 10000.0)),
        rms_eps=float(g.require("llama.attention.layer_norm_rms_epsilon")),
        vocab_size=len(g.require("tokenizer.ggml.tokens")),
        context_length=int(g.require("llama.context_length")),
    )


@dataclass
class Weight:
    """A matmul weight ``(out, in)`` dequantised to float32, with its Q4_1 block minimums
    ``(out, in / 32)`` when it is stored as Q4_1."""

    w: np.ndarray
    mins: Optional[np.ndarray] = None

    @classmethod
    def load(cls, gguf: GGUFFile, name: str) -> "Weight":
        info = gguf.tensor_info(name)
        mins = None
        if info.ggml_type == GGMLType.Q4_1:
            mins = q4_1_minimums(gguf.tensor_bytes(name), info.shape)
        return cls(load_tensor(gguf, name), mins)


@dataclass
class _Layer:
    attn_norm: np.ndarray
    wq: Weight
    wk: Weight
    wv: Weight
    wo: Weight
    ffn_norm: np.ndarray
    w_gate: Weight
    w_up: Weight
    w_down: Weight


@dataclass
class KVCache:
    """Keys and values of the positions seen so far, per layer: ``(pos, n_head_kv, head_dim)``."""

    k: List[np.ndarray] = field(default_factory=list)
    v: List[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return 0 if not self.k else self.k[0].shape[0]


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x**2) + eps) * w`` over the last axis."""
    ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
    return (x / np.sqrt(ms + eps)).astype(np.float32) * w


def rope_adjacent(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Rotate adjacent pairs of the last axis of ``x`` ``(T, heads, d)`` by position."""
    d = x.shape[-1]
    inv_freq = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    cos = np.cos(ang)[:, None, :].astype(np.float32)
    sin = np.sin(ang)[:, None, :].astype(np.float32)
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


class LlamaReference:
    """The SmolLM2 forward pass in numpy, weights dequantised to float32."""

    def __init__(self, gguf: GGUFFile, *, rounding: Rounding = Rounding()) -> None:
        self.cfg = read_config(gguf)
        self.rounding = rounding
        c = self.cfg
        tied = "output.weight" not in gguf.tensors
        self.output = Weight.load(gguf, "token_embd.weight" if tied else "output.weight")
        self.tok_embd = self.output.w if tied else load_tensor(gguf, "token_embd.weight")
        self.output_norm = load_tensor(gguf, "output_norm.weight")
        self.layers: List[_Layer] = []
        for i in range(c.n_layer):
            p = f"blk.{i}."
            self.layers.append(
                _Layer(
                    attn_norm=load_tensor(gguf, p + "attn_norm.weight"),
                    wq=Weight.load(gguf, p + "attn_q.weight"),
                    wk=Weight.load(gguf, p + "attn_k.weight"),
                    wv=Weight.load(gguf, p + "attn_v.weight"),
                    wo=Weight.load(gguf, p + "attn_output.weight"),
                    ffn_norm=load_tensor(gguf, p + "ffn_norm.weight"),
                    w_gate=Weight.load(gguf, p + "ffn_gate.weight"),
                    w_up=Weight.load(gguf, p + "ffn_up.weight"),
                    w_down=Weight.load(gguf, p + "ffn_down.weight"),
                )
            )
        assert self.layers[0].wq.w.shape == (c.n_head * c.head_dim, c.n_embd)
        assert self.layers[0].wk.w.shape == (c.n_head_kv * c.head_dim, c.n_embd)

    def _linear(self, x: np.ndarray, w: Weight) -> np.ndarray:
        r = self.rounding
        if not r.act_q8:
            return x @ w.w.T
        q, d, d16 = quantize_q8_blocks(x)
        y = (q * d16[..., None]).reshape(x.shape) @ w.w.T
        if r.q8_1_sum and w.mins is not None:
            # The minimum's share is m * f16(d * sum(q)) in place of m * f16(d) * sum(q).
            sums = q.sum(axis=-1)
            s16 = (d * sums).astype(np.float16).astype(np.float32)
            y = y + (s16 - d16 * sums) @ w.mins.T
        return y.astype(np.float32)

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int) -> np.ndarray:
        """q ``(T, H, d)``; k, v ``(S, Hkv, d)`` with ``S = start + T``; causal."""
        c = self.cfg
        group = c.n_head // c.n_head_kv
        t, s = q.shape[0], k.shape[0]
        scale = 1.0 / np.sqrt(c.head_dim)
        k_full = np.repeat(k, group, axis=1)  # (S, H, d): head h reads kv head h // group
        v_full = np.repeat(v, group, axis=1)
        if self.rounding.attn_f16:
            q = q.astype(np.float16).astype(np.float32)
        scores = np.einsum("thd,shd->hts", q, k_full) * scale
        qpos = start + np.arange(t)[:, None]
        kpos = np.arange(s)[None, :]
        scores = np.where(kpos <= qpos, scores, -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        if self.rounding.attn_f16:
            p = p.astype(np.float16).astype(np.float32)
        return np.einsum("hts,shd->thd", p, v_full).reshape(t, c.n_head * c.head_dim)

    def forward(
        self,
        tokens: Sequence[int],
        cache: Optional[KVCache] = None,
        *,
        layers: Optional[int] = None,
    ) -> np.ndarray:
        """Logits ``(T, vocab)`` for ``tokens`` following the positions already in ``cache``.

        With ``layers`` set, stop after that many blocks and return the hidden state
        ``(T, n_embd)`` instead (for layer-by-layer comparisons).
        """
        c = self.cfg
        cache = cache if cache is not None else KVCache()
        start = cache.length
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("tokens must be a non-empty 1-D sequence")
        if start + ids.size > c.context_length:
            raise ValueError(
                f"{start + ids.size} positions exceed the context of {c.context_length}"
            )
        positions = start + np.arange(ids.size)
        x = self.tok_embd[ids].astype(np.float32)
        n_blocks = c.n_layer if layers is None else layers
        for li, L in enumerate(self.layers[:n_blocks]):
            h = rms_norm(x, L.attn_norm, c.rms_eps)
            q = self._linear(h, L.wq).reshape(-1, c.n_head, c.head_dim)
            k = self._linear(h, L.wk).reshape(-1, c.n_head_kv, c.head_dim)
            v = self._linear(h, L.wv).reshape(-1, c.n_head_kv, c.head_dim)
            q = rope_adjacent(q, positions, c.rope_base)
            k = rope_adjacent(k, positions, c.rope_base)
            if self.rounding.kv_f16:
                k = k.astype(np.float16).astype(np.float32)
                v = v.astype(np.float16).astype(np.float32)
            if len(cache.k) <= li:
                cache.k.append(k)
                cache.v.append(v)
            else:
                cache.k[li] = np.concatenate([cache.k[li], k])
                cache.v[li] = np.concatenate([cache.v[li], v])
            attn = self._attention(q, cache.k[li], cache.v[li], start)
            x = x + self._linear(attn, L.wo)
            h = rms_norm(x, L.ffn_norm, c.rms_eps)
            g = silu(self._linear(h, L.w_gate)) * self._linear(h, L.w_up)
            x = x + self._linear(g, L.w_down)
        if layers is not None:
            return x
        x = rms_norm(x, self.output_norm, c.rms_eps)
        return self._linear(x, self.output)

    def greedy(self, prompt: Sequence[int], n_new: int) -> List[int]:
        """``n_new`` tokens by argmax, prefill in one pass then one token per step."""
        cache = KVCache()
        logits = self.forward(prompt, cache)
        out = [int(np.argmax(logits[-1]))]
        while len(out) < n_new:
            logits = self.forward([out[-1]], cache)
            out.append(int(np.argmax(logits[-1])))
        return out
