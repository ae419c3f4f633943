"""Numpy reference of the all-MiniLM-L6-v2 sentence embedding (BERT encoder).

``embeddings = LayerNorm(word[ids] + position[0..T) + token_type[0])``; then per layer
``a = LayerNorm(x + Wo · attn(Wq·x + bq, Wk·x + bk, Wv·x + bv) + bo)`` (padding keys
masked out) and ``x = LayerNorm(a + W2 · gelu(W1 · a + b1) + b2)``; the sentence embedding
is the mean of the last hidden states over real (unpadded) tokens, L2-normalised. This is
what sentence-transformers' Transformer, Pooling(mean) and Normalize modules compute.
Weights are ``(out, in)`` as PyTorch stores them, so a linear layer is ``x @ W.T + b``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np
from knpu.models.safetensors_io import SafetensorsFile


@dataclass
class BertConfig:
    """Hyperparameters from a Hugging Face ``config.json``."""

    n_layer: int
    hidden: int
    n_head: int
    intermediate: int
    max_positions: int
    ln_eps: float

    @classmethod
    def from_dir(cls, model_dir: str) -> "BertConfig":
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            c = json.load(f)
        if c.get("model_type") != "bert" or c.get("hidden_act") != "gelu":
            raise ValueError(f"{model_dir}: not a BERT model with exact GELU")
        return cls(
            n_layer=c["num_hidden_layers"],
            hidden=c["hidden_size"],
            n_head=c["num_attention_heads"],
            intermediate=c["intermediate_size"],
            max_positions=c["max_position_embeddings"],
            ln_eps=c["layer_norm_eps"],
        )


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=-1, keepdims=True)
    var = ((x64 - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((x64 - mu) / np.sqrt(var + eps) * w + b).astype(np.float32)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7)."""
    sign = np.sign(x)
    a = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT's ``hidden_act: gelu``."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


class BertReference:
    """all-MiniLM-L6-v2 in numpy, float32 weights as stored."""

    def __init__(self, model_dir: str) -> None:
        self.cfg = BertConfig.from_dir(model_dir)
        st = SafetensorsFile(os.path.join(model_dir, "model.safetensors"))
        self.w: Dict[str, np.ndarray] = {
            k: np.asarray(st.tensor(k), dtype=np.float32)
            for k in st.keys()
            if not k.endswith("position_ids")
        }

    def _lin(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _ln(self, x: np.ndarray, name: str) -> np.ndarray:
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.cfg.ln_eps)

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> List[np.ndarray]:
        """Hidden states ``(B, T, hidden)`` after the embeddings and after each layer."""
        c = self.cfg
        b, t = input_ids.shape
        if t > c.max_positions:
            raise ValueError(f"{t} tokens exceed the {c.max_positions} positions")
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][input_ids]
            + w["embeddings.position_embeddings.weight"][:t][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        states = [x]
        hd = c.hidden // c.n_head
        # Padding keys get -inf before the softmax; every row keeps its [CLS] key.
        key_bias = np.where(attention_mask[:, None, None, :] > 0, 0.0, -np.inf).astype(np.float32)
        for i in range(c.n_layer):
            p = f"encoder.layer.{i}."

            def heads(y: np.ndarray) -> np.ndarray:
                return y.reshape(b, t, c.n_head, hd).transpose(0, 2, 1, 3)

            q = heads(self._lin(x, p + "attention.self.query"))
            k = heads(self._lin(x, p + "attention.self.key"))
            v = heads(self._lin(x, p + "attention.self.value"))
            s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + key_bias
            s = s - s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=-1, keepdims=True)
            ctx = (pr @ v).transpose(0, 2, 1, 3).reshape(b, t, c.hidden)
            a = self._ln(
                x + self._lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm"
            )
            h = gelu(self._lin(a, p + "intermediate.dense"))
            x = self._ln(a + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
            states.append(x)
        return states

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """L2-normalised mean-pooled sentence embeddings ``(B, hidden)``."""
        x = self.hidden_states(input_ids, attention_mask)[-1].astype(np.float64)
        m = attention_mask[..., None].astype(np.float64)
        pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norm = np.linalg.norm(pooled, axis=-1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)
