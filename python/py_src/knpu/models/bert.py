"""A BERT encoder and sentence embedder run on a knpu device (all-MiniLM-L6-v2).

The weights are read from a sentence-transformers model directory (``model.safetensors``,
float32) and uploaded once. Each batch of sentences is tokenized on the host, padded to its
longest sentence and run through the encoder on the device: the padding is masked in
attention through per-sequence key counts (``knpu.attention(..., kv_lens=)``), and the mean
pooling over real tokens (a batched matmul with a pooling matrix) and the L2 normalisation
(``knpu.rms_norm`` with a constant weight of ``1/sqrt(hidden)``) run on the device too, so
only the final embeddings come back.

Per layer: ``a = LayerNorm(x + attn(x) Wo + bo)``, ``x = LayerNorm(a + gelu(a W1 + b1) W2 +
b2)``, with the query, key and value projections fused into one matmul.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import knpu

from .errors import ModelFileError, UnsupportedModelError, require_supported
from .paths import minilm_dir
from .safetensors_io import SafetensorsFile
from .tokenizer import WordPieceTokenizer

PathLike = Union[str, "os.PathLike[str]"]


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ModelFileError(path, f"cannot open: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(path, "the JSON is not an object")
    return data


@dataclass(frozen=True)
class BertConfig:
    """The hyperparameters of a BERT encoder, from a Hugging Face ``config.json``.

    Attributes:
        n_layer: encoder layers.
        hidden: hidden size.
        n_head: attention heads (dividing ``hidden``).
        intermediate: feed-forward size.
        max_positions: learned positions, the longest input the model takes.
        vocab: vocabulary size.
        type_vocab: token types (segments); every input here has type 0.
        ln_eps: layer norm epsilon.
    """

    n_layer: int
    hidden: int
    n_head: int
    intermediate: int
    max_positions: int
    vocab: int
    type_vocab: int
    ln_eps: float

    @property
    def head_dim(self) -> int:
        """Elements per attention head."""
        return self.hidden // self.n_head

    @classmethod
    def from_file(cls, path: PathLike) -> "BertConfig":
        """Read and check ``config.json``; anything but an absolute-position BERT with the
        exact GELU is refused with :class:`UnsupportedModelError`."""
        path = os.fspath(path)
        c = _read_json(path)
        require_supported(path, "model_type", c.get("model_type"), ("bert",))
        require_supported(path, "hidden_act", c.get("hidden_act", "gelu"), ("gelu",))
        require_supported(
            path,
            "position_embedding_type",
            c.get("position_embedding_type", "absolute"),
            ("absolute",),
        )
        try:
            cfg = cls(
                n_layer=int(c["num_hidden_layers"]),
                hidden=int(c["hidden_size"]),
                n_head=int(c["num_attention_heads"]),
                intermediate=int(c["intermediate_size"]),
                max_positions=int(c["max_position_embeddings"]),
                vocab=int(c["vocab_size"]),
                type_vocab=int(c.get("type_vocab_size", 2)),
                ln_eps=float(c.get("layer_norm_eps", 1e-12)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(path, f"missing or malformed key {exc}") from None
        if min(
            cfg.n_layer, cfg.hidden, cfg.n_head, cfg.intermediate, cfg.max_positions, cfg.vocab,
            cfg.type_vocab,
        ) <= 0:
            raise ModelFileError(path, f"sizes must be positive: {cfg}")
        if cfg.hidden % cfg.n_head:
            raise ModelFileError(
                path, f"hidden_size {cfg.hidden} is not a multiple of {cfg.n_head} heads"
            )
        return cfg


class _Weights:
    """Checked float32 tensors of a safetensors file."""

    def __init__(self, st: SafetensorsFile) -> None:
        self.st = st

    def get(self, name: str, shape: Tuple[int, ...]) -> np.ndarray:
        if name not in self.st:
            raise ModelFileError(self.st.path, "missing tensor", tensor=name)
        dtype_name, got, _, _ = self.st.specs[name]
        if dtype_name != "F32":
            raise UnsupportedModelError(
                self.st.path,
                f"dtype {dtype_name} is not supported for weights (this runner takes F32)",
                tensor=name,
            )
        if tuple(got) != shape:
            raise ModelFileError(
                self.st.path, f"shape {list(got)} differs from the expected {list(shape)}",
                tensor=name,
            )
        return self.st.tensor(name)


class BertEncoder:
    """A BERT encoder whose weights live on a knpu device.

    Args:
        model_dir: a directory with ``config.json`` and ``model.safetensors``.
        device: the knpu device (the current one by default).
    """

    def __init__(self, model_dir: PathLike, device: Optional[Any] = None) -> None:
        model_dir = os.fspath(model_dir)
        self.model_dir = model_dir
        self.config = BertConfig.from_file(os.path.join(model_dir, "config.json"))
        self.device = knpu.Device(device)
        c = self.config
        h, f = c.hidden, c.intermediate
        path = os.path.join(model_dir, "model.safetensors")
        with SafetensorsFile(path) as st:
            w = _Weights(st)

            def up(a: np.ndarray) -> knpu.Tensor:
                return knpu.asarray(np.ascontiguousarray(a, dtype=np.float32), device=self.device)

            def lin(name: str, n_out: int, n_in: int) -> Tuple[knpu.Tensor, knpu.Tensor]:
                # Stored (out, in) as PyTorch keeps it; the matmul reads its transpose in place.
                return (
                    up(w.get(name + ".weight", (n_out, n_in))).T,
                    up(w.get(name + ".bias", (n_out,))),
                )

            def ln(name: str) -> Tuple[knpu.Tensor, knpu.Tensor]:
                return up(w.get(name + ".weight", (h,))), up(w.get(name + ".bias", (h,)))

            e = "embeddings."
            self.word = up(w.get(e + "word_embeddings.weight", (c.vocab, h)))
            pos = up(w.get(e + "position_embeddings.weight", (c.max_positions, h)))
            types = w.get(e + "token_type_embeddings.weight", (c.type_vocab, h))
            token_type0 = up(types[0])
            # Every token has type 0: its embedding is folded into the positions once.
            self.pos_type = pos + token_type0
            self.emb_ln = ln(e + "LayerNorm")
            self.layers: List[Dict[str, Tuple[knpu.Tensor, knpu.Tensor]]] = []
            for i in range(c.n_layer):
                p = f"encoder.layer.{i}."
                s = p + "attention.self."
                qkv_w = [w.get(s + n + ".weight", (h, h)) for n in ("query", "key", "value")]
                qkv_b = [w.get(s + n + ".bias", (h,)) for n in ("query", "key", "value")]
                self.layers.append(
                    {
                        "qkv": (up(np.concatenate(qkv_w, axis=0)).T, up(np.concatenate(qkv_b))),
                        "out": lin(p + "attention.output.dense", h, h),
                        "ln1": ln(p + "attention.output.LayerNorm"),
                        "ffn_in": lin(p + "intermediate.dense", f, h),
                        "ffn_out": lin(p + "output.dense", h, f),
                        "ln2": ln(p + "output.LayerNorm"),
                    }
                )
        self.device.synchronize()

    def forward(self, input_ids: np.ndarray, lengths: np.ndarray) -> knpu.Tensor:
        """Last hidden states ``[batch, seq, hidden]`` on the device.

        ``input_ids`` is ``[batch, seq]`` (padded with any valid id), ``lengths`` the real
        tokens of each row; keys past a row's length are masked in attention.
        """
        c = self.config
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, seq], not shape {ids.shape}")
        b, t = ids.shape
        if b == 0 or t == 0:
            raise ValueError(f"an empty batch {ids.shape} has nothing to encode")
        if t > c.max_positions:
            raise ValueError(f"{t} tokens exceed the model's {c.max_positions} positions")
        if ids.min() < 0 or ids.max() >= c.vocab:
            raise ValueError(f"token ids must lie in [0, {c.vocab})")
        lens = np.asarray(lengths, dtype=np.int64)
        if lens.shape != (b,) or lens.min() < 1 or lens.max() > t:
            raise ValueError(f"lengths must be {b} counts in [1, {t}], not {lengths!r}")
        dev = self.device
        nh, hd, h = c.n_head, c.head_dim, c.hidden
        kv_lens = knpu.asarray(lens.astype(np.uint32), device=dev)
        x = knpu.embedding(knpu.asarray(ids.astype(np.uint32), device=dev), self.word)
        x = knpu.layer_norm(x + self.pos_type[:t], *self.emb_ln, eps=c.ln_eps)
        x = x.reshape(b * t, h)
        for layer in self.layers:
            qkv = knpu.matmul(x, layer["qkv"][0], bias=layer["qkv"][1])
            qkv = qkv.reshape(b, t, 3, nh, hd)
            # [batch, heads, seq, head_dim] views of the fused projection, read in place.
            q, k, v = (qkv[:, :, j].permute(0, 2, 1, 3) for j in range(3))
            ctx = knpu.attention(q, k, v, kv_lens=kv_lens)
            ctx = ctx.transpose(1, 2).contiguous().reshape(b * t, h)
            attn = knpu.matmul(ctx, layer["out"][0], bias=layer["out"][1])
            a = knpu.layer_norm(attn + x, *layer["ln1"], eps=c.ln_eps)
            ff = knpu.matmul(a, layer["ffn_in"][0], bias=layer["ffn_in"][1], activation="gelu")
            ff = knpu.matmul(ff, layer["ffn_out"][0], bias=layer["ffn_out"][1])
            x = knpu.layer_norm(ff + a, *layer["ln2"], eps=c.ln_eps)
        return x.reshape(b, t, h)


def _check_sentence_transformers(model_dir: str) -> None:
    """Refuse a sentence-transformers pipeline other than mean pooling then normalisation."""
    modules_path = os.path.join(model_dir, "modules.json")
    if not os.path.exists(modules_path):
        raise ModelFileError(modules_path, "missing: not a sentence-transformers model directory")
    try:
        with open(modules_path, encoding="utf-8") as f:
            modules = json.load(f)
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        pool_rel = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ModelFileError(modules_path, f"cannot read the module list: {exc!r}") from None
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise UnsupportedModelError(
            modules_path,
            f"modules {kinds} are not supported (only Transformer, Pooling, Normalize)",
        )
    pool_path = os.path.join(model_dir, pool_rel, "config.json")
    pool = _read_json(pool_path)
    modes = sorted(k for k, v in pool.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise UnsupportedModelError(
            pool_path, f"pooling {modes} is not supported (only pooling_mode_mean_tokens)"
        )


class SentenceEmbedder:
    """Sentence embeddings of a sentence-transformers BERT model (mean pooling, L2 norm).

    Args:
        model_dir: the model directory; all-MiniLM-L6-v2 from its PyPI package by default
            (see :func:`knpu.models.minilm_dir`).
        device: the knpu device (the current one by default).
        batch_size: sentences per encoder pass. Sentences are sorted by length first, as
            sentence-transformers does, so each pass pads little.
    """

    def __init__(
        self,
        model_dir: Optional[PathLike] = None,
        device: Optional[Any] = None,
        *,
        batch_size: int = 32,
    ) -> None:
        model_dir = os.fspath(model_dir) if model_dir is not None else minilm_dir()
        if not os.path.isdir(model_dir):
            raise ModelFileError(model_dir, "not a directory")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        _check_sentence_transformers(model_dir)
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.tokenizer = WordPieceTokenizer.from_sentence_transformers_dir(model_dir)
        self.encoder = BertEncoder(model_dir, device)
        c = self.encoder.config
        if self.tokenizer.max_length > c.max_positions:
            raise UnsupportedModelError(
                model_dir,
                f"max_seq_length {self.tokenizer.max_length} exceeds the model's "
                f"{c.max_positions} positions",
            )
        # rms_norm(x, w) = x / sqrt(mean(x^2) + eps) * w: with w = 1/sqrt(hidden) it is x/|x|.
        self._unit = knpu.full(c.hidden, 1.0 / math.sqrt(c.hidden), device=self.encoder.device)
        # F.normalize's floor of 1e-12 on |x|, in rms_norm's mean-square terms.
        self._norm_eps = 1e-24 / c.hidden

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self.encoder.config.hidden

    @property
    def device(self) -> knpu.Device:
        """The device the model runs on."""
        return self.encoder.device

    def _embed_batch(self, ids: np.ndarray, lens: np.ndarray) -> knpu.Tensor:
        b, t = ids.shape
        hidden = self.encoder.forward(ids, lens)
        # Mean over real tokens as a batched matmul: [b, 1, t] @ [b, t, hidden].
        pool = (np.arange(t)[None, :] < lens[:, None]) / lens[:, None].astype(np.float64)
        pool_dev = knpu.asarray(pool.astype(np.float32).reshape(b, 1, t), device=self.device)
        pooled = knpu.matmul(pool_dev, hidden).reshape(b, self.dim)
        return knpu.rms_norm(pooled, self._unit, eps=self._norm_eps)

    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings ``(len(sentences), dim)`` float32, in input order."""
        if isinstance(sentences, str):
            raise TypeError("embed takes a sequence of sentences, not one string")
        sentences = list(sentences)
        if not sentences:
            raise ValueError("no sentences to embed: give at least one")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"sentence {i} is a {type(s).__name__}, not a string")
        enc = self.tokenizer.encode_batch(sentences)
        lens = enc.attention_mask.sum(axis=1)
        order = np.argsort(-lens, kind="stable")
        out = np.empty((len(sentences), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            t = int(lens[idx].max())
            emb = self._embed_batch(enc.input_ids[idx, :t], lens[idx])
            out[idx] = emb.numpy()
        return out


_DEFAULT: Dict[Tuple[Optional[str], int], SentenceEmbedder] = {}


def embed(
    sentences: Sequence[str],
    *,
    model_dir: Optional[PathLike] = None,
    device: Optional[Any] = None,
) -> np.ndarray:
    """L2-normalised sentence embeddings, ``(len(sentences), dim)`` float32.

    The model (all-MiniLM-L6-v2 by default) is loaded onto the device on the first call and
    kept for later calls with the same ``model_dir`` and device.
    """
    key = (
        os.path.abspath(os.fspath(model_dir)) if model_dir is not None else None,
        knpu.Device(device).index,
    )
    model = _DEFAULT.get(key)
    if model is None:
        model = SentenceEmbedder(model_dir, device)
        _DEFAULT[key] = model
    return model.embed(sentences)
