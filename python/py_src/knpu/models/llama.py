"""A Llama-family decoder (SmolLM2 from GGUF) run on a knpu device.

Every tensor op of a forward pass runs on the device through ``knpu``: the weights are
uploaded in their stored formats (Q4_0/Q4_1/Q8_0/Q4_K/Q6_K blocks stay quantised, norms
stay float32), the key/value cache lives in device memory, the whole prompt is prefilled in
one pass, and the next token is chosen on the device (``knpu.argmax``, or ``knpu.sample``
where the runtime has it) and written into the ids tensor that the next step's embedding
reads. Only that token id comes back to the host, once per step.

The decode step is captured once as a ``knpu.Graph`` and replayed: the position lives in a
small uint32 device tensor (rope position, cache write offset, attended length) that one
host-to-device copy advances before each replay. Greedy decoding keeps the chosen id on the
device between steps; sampling (``knpu.sample``) writes int32 ids, which the embedding
(uint32 ids) cannot read, so the id read back each step returns in that same copy. ``use_graph=False`` runs the same step
eagerly, op by op (for tests and debugging).

Numerics follow llama.cpp where the ops allow: quantised matmuls take knpu's integer path
(activations quantised to 8-bit blocks of 32, as llama.cpp's Q4_1 x Q8_1 and Q8_0 x Q8_0 dot
products do), RoPE rotates adjacent pairs (llama.cpp's "normal" RoPE), attention is
grouped-query with scale ``1/sqrt(head_dim)``. This module must never compute a tensor op
on the host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Collection, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import knpu

from .chat_template import ChatTemplate
from .errors import ModelFileError, UnsupportedModelError, require_supported
from .gguf import GGMLType, GGUFFile, read_gguf
from .tokenizer import GGUFBPETokenizer

# GGUF storage types a weight matrix may have, and the knpu block type each maps to.
_QUANT_TYPES: Dict[GGMLType, Any] = {
    GGMLType.Q4_0: knpu.q4_0,
    GGMLType.Q4_1: knpu.q4_1,
    GGMLType.Q8_0: knpu.q8_0,
    GGMLType.Q4_K: knpu.q4_k,
    GGMLType.Q6_K: knpu.q6_k,
}

#: Context used when the caller does not choose one (the file's own may be much larger).
DEFAULT_CONTEXT = 2048


class ContextLengthError(ValueError):
    """A prompt (plus what is already in the cache) does not fit the model's context.

    Attributes:
        needed: positions the request needs.
        limit: the context the model was loaded with.
    """

    def __init__(self, needed: int, limit: int, what: str = "the prompt") -> None:
        self.needed = needed
        self.limit = limit
        super().__init__(
            f"{what} needs {needed} positions but the context holds {limit} "
            f"(load the model with a larger n_ctx, at most the file's context length)"
        )


@dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters read from a GGUF file's ``llama.*`` metadata."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_base: float
    rms_eps: float
    vocab_size: int
    context_length: int

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> "LlamaConfig":
        """The configuration of ``g``; an error naming the file if it is not a Llama model."""
        require_supported(g.path, "architecture", g.get("general.architecture"), ("llama",))

        def need(key: str) -> Any:
            value = g.get(key)
            if value is None:
                raise ModelFileError(g.path, f"metadata key '{key}' is missing")
            return value

        n_embd = int(need("llama.embedding_length"))
        n_head = int(need("llama.attention.head_count"))
        n_head_kv = int(g.get("llama.attention.head_count_kv", n_head))
        head_dim = int(g.get("llama.rope.dimension_count", n_embd // max(n_head, 1)))
        if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv or head_dim * n_head != n_embd:
            raise UnsupportedModelError(
                g.path,
                f"heads {n_head}/{n_head_kv} of {head_dim} do not fit an embedding of {n_embd}",
            )
        return cls(
            n_layer=int(need("llama.block_count")),
            n_embd=n_embd,
            n_ff=int(need("llama.feed_forward_length")),
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            rope_base=float(g.get("llama.rope.freq_base", 10000.0)),
            rms_eps=float(need("llama.attention.layer_norm_rms_epsilon")),
            vocab_size=len(need("tokenizer.ggml.tokens")),
            context_length=int(need("llama.context_length")),
        )


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. ``temperature == 0`` is greedy (argmax).

    ``top_k == 0`` and ``top_p == 1`` disable those filters; ``seed`` makes sampling
    reproducible.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """Whether this is plain argmax."""
        return self.temperature == 0


class _Layer:
    """One transformer block's device weights.

    Projections that read the same input are fused where their storage types match: the
    rows of ``attn_q``, ``attn_k`` and ``attn_v`` are one matrix (``w_qkv``) and those of
    ``ffn_gate`` and ``ffn_up`` another (``w_gate_up``), so a decode step runs one quantised
    matmul for each group instead of three and two. Rows of blocks concatenate as they are
    stored, so the fused product is the separate products side by side, value for value.
    ``None`` when the types differ (the block then runs the separate matrices).
    """

    def __init__(self, **w: knpu.Tensor) -> None:
        self.attn_norm = w["attn_norm"]
        self.wq = w["attn_q"]
        self.wk = w["attn_k"]
        self.wv = w["attn_v"]
        self.wo = w["attn_output"]
        self.ffn_norm = w["ffn_norm"]
        self.w_gate = w["ffn_gate"]
        self.w_up = w["ffn_up"]
        self.w_down = w["ffn_down"]
        self.w_qkv = _concat_rows([self.wq, self.wk, self.wv])
        if self.w_qkv is not None:
            # The separate matrices become views of the fused one (their own copies go).
            nq, nk = self.wq.shape[0], self.wk.shape[0]
            self.wq = self.w_qkv[:nq]
            self.wk = self.w_qkv[nq : nq + nk]
            self.wv = self.w_qkv[nq + nk :]
        self.w_gate_up = _concat_rows([self.w_gate, self.w_up])
        if self.w_gate_up is not None:
            nf = self.w_gate.shape[0]
            self.w_gate = self.w_gate_up[:nf]
            self.w_up = self.w_gate_up[nf:]


def _concat_rows(parts: Sequence[knpu.Tensor]) -> Optional[knpu.Tensor]:
    """The rows of ``parts`` (quantised ``[n_i, k]`` matrices of one type and ``k``) in one
    device matrix, copied on the device; ``None`` when their types or row lengths differ."""
    first = parts[0]
    k = first.shape[1]
    if any(p.dtype != first.dtype or p.shape[1] != k for p in parts):
        return None
    rows = sum(p.shape[0] for p in parts)
    fused = knpu.empty(rows, k, dtype=first.dtype, device=first.device)
    r = 0
    for p in parts:
        n = p.shape[0]
        fused[r : r + n].copy_(p)
        r += n
    return fused


class LlamaModel:
    """A Llama-family GGUF model loaded onto a knpu device, with its KV cache.

    Attributes:
        path: the GGUF file.
        config: the hyperparameters.
        tokenizer: the file's byte-level BPE tokenizer.
        chat_template: the file's ChatML template, or ``None`` if it has none.
        device: the device the model runs on.
        n_ctx: positions the KV cache holds.
    """

    def __init__(
        self,
        path: Optional[str] = None,
        *,
        device: Any = None,
        n_ctx: Optional[int] = None,
        kv_dtype: Any = None,
    ) -> None:
        if path is None:
            from .paths import smollm2_gguf_path

            path = smollm2_gguf_path()
        self.path = os.fspath(path)
        self.device = knpu.Device(device)
        with read_gguf(self.path) as g:
            self.config = LlamaConfig.from_gguf(g)
            self.tokenizer = GGUFBPETokenizer.from_gguf(g)
            try:
                self.chat_template: Optional[ChatTemplate] = ChatTemplate.from_gguf(g)
            except UnsupportedModelError:
                self.chat_template = None
            self._load_weights(g)
        c = self.config
        n_ctx = DEFAULT_CONTEXT if n_ctx is None else int(n_ctx)
        n_ctx = min(n_ctx, c.context_length)
        if n_ctx <= 0:
            raise ValueError(f"n_ctx must be positive, got {n_ctx}")
        self.n_ctx = n_ctx
        dev = self.device
        self.kv_dtype = knpu.float16 if kv_dtype is None else kv_dtype
        self._caches = [
            knpu.KVCache(1, n_ctx, c.n_head_kv, c.head_dim, dtype=self.kv_dtype, device=dev)
            for _ in range(c.n_layer)
        ]
        # Decode state on the device: [rope position, cache write offset, attended length,
        # token to embed when sampling].
        self._state = knpu.zeros(4, dtype=knpu.uint32, device=dev)
        # Greedy: the token the next decode step embeds; the step overwrites it with its
        # argmax (uint32), so the id never leaves the device between steps.
        self._ids = knpu.zeros(1, dtype=knpu.uint32, device=dev)
        # Sampling: knpu.sample writes int32 ids, which embedding (uint32 ids) cannot read
        # and no device op converts; the id read back each step returns in the state copy.
        self._sampled_ids = knpu.zeros(1, dtype=knpu.int32, device=dev)
        self._next_sampled = 0
        self._ids_current = False
        self._graphs: Dict[Tuple[Any, ...], knpu.Graph] = {}
        self._generators: Dict[Tuple[Any, ...], Any] = {}
        self.n_past = 0
        stops = {self.tokenizer.eos_id}
        for text in ("<|im_end|>", "<|endoftext|>"):
            try:
                stops.add(self.tokenizer.token_id(text))
            except KeyError:
                pass
        self.stop_ids = frozenset(i for i in stops if i is not None)
        # The uploads and the caches' zero fills are queued; the model is loaded when they
        # have run, so the first request's time to first token does not include them.
        knpu.synchronize(dev)

    # ---- loading ---------------------------------------------------------------------

    def _tensor(self, g: GGUFFile, name: str, *, matrix: bool) -> knpu.Tensor:
        if name not in g.tensors:
            raise ModelFileError(g.path, "tensor is missing", tensor=name)
        info = g.tensors[name]
        dev = self.device
        if not matrix:
            if info.ggml_type != GGMLType.F32:
                raise UnsupportedModelError(
                    g.path, f"type {info.ggml_type.name} for a norm (supported: F32)", tensor=name
                )
            return knpu.asarray(np.array(g.tensor_array(name), copy=True), device=dev)
        dtype = _QUANT_TYPES.get(info.ggml_type)
        if dtype is None or len(info.shape) != 2:
            raise UnsupportedModelError(
                g.path,
                f"type {info.ggml_type.name} with shape {info.shape} for a weight matrix "
                f"(supported: 2-D {', '.join(t.name for t in _QUANT_TYPES)})",
                tensor=name,
            )
        rows = info.shape[0]
        raw = g.tensor_bytes(name).reshape(rows, -1)
        return knpu.asarray(np.array(raw, copy=True), dtype=dtype, device=dev)

    def _load_weights(self, g: GGUFFile) -> None:
        c = self.config
        expect = {
            "attn_q": (c.n_head * c.head_dim, c.n_embd),
            "attn_k": (c.n_head_kv * c.head_dim, c.n_embd),
            "attn_v": (c.n_head_kv * c.head_dim, c.n_embd),
            "attn_output": (c.n_embd, c.n_head * c.head_dim),
            "ffn_gate": (c.n_ff, c.n_embd),
            "ffn_up": (c.n_ff, c.n_embd),
            "ffn_down": (c.n_embd, c.n_ff),
            "attn_norm": (c.n_embd,),
            "ffn_norm": (c.n_embd,),
        }
        self._check_shape(g, "token_embd.weight", (c.vocab_size, c.n_embd))
        self._check_shape(g, "output_norm.weight", (c.n_embd,))
        self.tok_embd = self._tensor(g, "token_embd.weight", matrix=True)
        self.output_norm = self._tensor(g, "output_norm.weight", matrix=False)
        if "output.weight" in g.tensors:
            self._check_shape(g, "output.weight", (c.vocab_size, c.n_embd))
            self.output = self._tensor(g, "output.weight", matrix=True)
        else:
            self.output = self.tok_embd  # tied embeddings
        self.layers: List[_Layer] = []
        for i in range(c.n_layer):
            w = {}
            for short, shape in expect.items():
                name = f"blk.{i}.{short}.weight"
                self._check_shape(g, name, shape)
                w[short] = self._tensor(g, name, matrix=not short.endswith("norm"))
            self.layers.append(_Layer(**w))

    @staticmethod
    def _check_shape(g: GGUFFile, name: str, shape: Tuple[int, ...]) -> None:
        if name not in g.tensors:
            raise ModelFileError(g.path, "tensor is missing", tensor=name)
        got = g.tensors[name].shape
        if tuple(got) != tuple(shape):
            raise ModelFileError(g.path, f"shape {tuple(got)}, expected {shape}", tensor=name)

    # ---- the forward pass (device ops only) -----------------------------------------

    def _forward(
        self, x: knpu.Tensor, t: int, pos: knpu.Tensor, start: knpu.Tensor, lens: knpu.Tensor
    ) -> knpu.Tensor:
        """The hidden states ``[t, n_embd]`` after every block, for embedded rows ``x``.

        Each op here is one device command (a decode step is a graph of them), so a single
        row (decode) is written to need few: one matmul for Q/K/V and one for gate/up where
        the weights are fused, one RoPE over the query and key heads together (they share
        positions, and RoPE turns each head on its own), and the residual added as the
        output projections' bias (``x`` is then exactly one bias vector; the sum is the same
        f32 addition a separate add would make). Several rows (prefill) take the separate
        matrices (views of the fused ones): column slices of a fused product would be
        strided, and the ops that read them would first copy them.
        """
        c = self.config
        kv = self.kv_dtype
        hd, nh, nkv = c.head_dim, c.n_head, c.n_head_kv
        for layer, cache in zip(self.layers, self._caches):
            h = knpu.rms_norm(x, layer.attn_norm, eps=c.rms_eps)
            if t == 1 and layer.w_qkv is not None:
                qkv = knpu.qmatmul(h, layer.w_qkv)
                qk = qkv[:, : (nh + nkv) * hd].reshape(t, nh + nkv, hd)
                qk = knpu.rope(qk, pos, base=c.rope_base, style="interleaved")
                v = qkv[:, (nh + nkv) * hd :]
                if kv != knpu.float32:
                    qk, v = knpu.cast(qk, kv), knpu.cast(v, kv)
                q, k = qk[:, :nh], qk[:, nh:]
            else:
                q = knpu.qmatmul(h, layer.wq).reshape(t, nh, hd)
                k = knpu.qmatmul(h, layer.wk).reshape(t, nkv, hd)
                v = knpu.qmatmul(h, layer.wv)
                q = knpu.rope(q, pos, base=c.rope_base, style="interleaved")
                k = knpu.rope(k, pos, base=c.rope_base, style="interleaved")
                if kv != knpu.float32:
                    q, k, v = knpu.cast(q, kv), knpu.cast(k, kv), knpu.cast(v, kv)
            k = k.reshape(1, t, nkv, hd)
            v = v.reshape(1, t, nkv, hd)
            cache.append(k.transpose(1, 2), v.transpose(1, 2), start)
            q = q.reshape(1, t, nh, hd).transpose(1, 2)
            # [1, t, n_head, head_dim]: each position's heads side by side, as the output
            # projection reads them (a [1, n_head, t, head_dim] result would need a
            # transposing copy of one command per head and position).
            o = cache.attention(q, lens, out_layout="bshd").reshape(t, c.n_embd)
            if kv != knpu.float32:
                o = knpu.cast(o, knpu.float32)
            x = self._residual(x, o, layer.wo, t)
            h = knpu.rms_norm(x, layer.ffn_norm, eps=c.rms_eps)
            if t == 1 and layer.w_gate_up is not None:
                gate_up = knpu.qmatmul(h, layer.w_gate_up)
                gate, up = gate_up[:, : c.n_ff], gate_up[:, c.n_ff :]
            else:
                gate = knpu.qmatmul(h, layer.w_gate)
                up = knpu.qmatmul(h, layer.w_up)
            x = self._residual(x, knpu.swiglu(gate, up), layer.w_down, t)
        return x

    @staticmethod
    def _residual(x: knpu.Tensor, a: knpu.Tensor, w: knpu.Tensor, t: int) -> knpu.Tensor:
        """``x + a @ w.T``: in one command for one row (``x`` as the matmul's bias)."""
        if t == 1:
            return knpu.qmatmul(a, w, bias=x.reshape(-1))
        return x + knpu.qmatmul(a, w)

    def _logits(self, x: knpu.Tensor) -> knpu.Tensor:
        h = knpu.rms_norm(x, self.output_norm, eps=self.config.rms_eps)
        return knpu.qmatmul(h, self.output)

    def _choose(self, logits: knpu.Tensor, sampling: SamplingParams) -> knpu.Tensor:
        """The next token id(s) chosen on the device from ``logits`` ``[rows, vocab]``."""
        if sampling.greedy:
            return knpu.argmax(logits)
        return knpu.sample(
            logits,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            generator=self._generator(sampling),
        )

    def _generator(self, sampling: SamplingParams) -> Any:
        """The device generator of ``sampling``'s seed (one per seed, kept with the graphs
        that captured it; a seed of ``None`` draws one from the OS once)."""
        key = (sampling.seed,)
        gen = self._generators.get(key)
        if gen is None:
            seed = sampling.seed
            if seed is None:
                seed = int.from_bytes(os.urandom(8), "little")
            gen = knpu.Generator(seed, device=self.device)
            self._generators[key] = gen
        return gen

    def _ids_for(self, sampling: SamplingParams) -> knpu.Tensor:
        """Where the chosen id is written on the device."""
        return self._ids if sampling.greedy else self._sampled_ids

    def _set_state(self, position: int, length: int) -> None:
        state = [position, position, length, self._next_sampled]
        self._state.copy_(np.array(state, dtype=np.uint32))

    # ---- public steps ---------------------------------------------------------------

    def reset(self) -> None:
        """Forget the conversation: the next prefill starts at position 0, and every seeded
        generator starts its draws over (so a seed reproduces a generation)."""
        self.n_past = 0
        for gen in self._generators.values():
            gen.manual_seed(gen.seed)

    def _check_room(self, n_new: int, what: str) -> None:
        if self.n_past + n_new > self.n_ctx:
            raise ContextLengthError(self.n_past + n_new, self.n_ctx, what)

    def _prefill_rows(self, ids: Sequence[int]) -> Tuple[knpu.Tensor, int]:
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("the prompt is empty: give at least one token")
        vocab = self.config.vocab_size
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary of {vocab}")
        t = len(ids)
        self._check_room(t, "the prompt")
        dev = self.device
        start = self.n_past
        pos = knpu.asarray(np.arange(start, start + t, dtype=np.uint32), device=dev)
        meta = knpu.asarray(np.array([start, start + t], dtype=np.uint32), device=dev)
        tok = knpu.asarray(np.asarray(ids, dtype=np.uint32), device=dev)
        x = knpu.embedding(tok, self.tok_embd)
        x = self._forward(x, t, pos, meta[0:1], meta[1:2])
        self.n_past = start + t
        return x, t

    def prefill(self, ids: Sequence[int], sampling: SamplingParams = SamplingParams()) -> int:
        """Run ``ids`` through the model in one pass after what the cache holds; return the
        next token, chosen on the device (it is also what the next :meth:`decode` embeds)."""
        x, t = self._prefill_rows(ids)
        ids_t = self._ids_for(sampling)
        ids_t.copy_(self._choose(self._logits(x[t - 1 : t]), sampling))
        return self._took(int(ids_t.numpy()[0]), sampling)

    def prefill_logits(self, ids: Sequence[int]) -> knpu.Tensor:
        """Logits ``[len(ids), vocab]`` (a device tensor) of every position of ``ids``,
        after what the cache holds (for evaluation under teacher forcing)."""
        x, _ = self._prefill_rows(ids)
        return self._logits(x)

    def _decode_step(self, sampling: SamplingParams) -> None:
        """One decode step's device work: embed ``_ids``, run the blocks, write the choice
        back into ``_ids``. Positions come from ``_state``."""
        ids_t = self._ids_for(sampling)
        st = self._state
        x = knpu.embedding(self._ids if sampling.greedy else st[3:4], self.tok_embd)
        x = self._forward(x, 1, st[0:1], st[1:2], st[2:3])
        ids_t.copy_(self._choose(self._logits(x), sampling))

    def decode(
        self,
        token: Optional[int] = None,
        sampling: SamplingParams = SamplingParams(),
        *,
        use_graph: bool = True,
    ) -> int:
        """Feed one token (default: the one the last step chose, already on the device) and
        return the next, chosen on the device.

        With ``use_graph`` the step is a captured ``knpu.Graph`` replayed (captured at the
        first call for each sampling setting); otherwise it runs op by op.
        """
        self._launch_step(token, sampling, use_graph)
        return self._took(int(self._ids_for(sampling).numpy()[0]), sampling)

    def _took(self, token: int, sampling: SamplingParams) -> int:
        """Notes ``token`` as the last chosen one (on the device too when greedy)."""
        self._next_sampled = token
        self._ids_current = sampling.greedy
        return token

    def _launch_step(
        self, token: Optional[int], sampling: SamplingParams, use_graph: bool
    ) -> None:
        """Queues one decode step (see :meth:`decode`) without waiting for it."""
        self._check_room(1, "decoding one more token")
        if token is not None:
            if not 0 <= int(token) < self.config.vocab_size:
                raise ValueError(
                    f"token id {token} is outside the vocabulary of {self.config.vocab_size}"
                )
            self._next_sampled = int(token)
            self._ids_current = False
        if sampling.greedy and not self._ids_current:
            # The last id came from the host or a sampled step: put it where argmax writes.
            self._ids.copy_(np.array([self._next_sampled], dtype=np.uint32))
            self._ids_current = True
        self._set_state(self.n_past, self.n_past + 1)
        if use_graph:
            key = (sampling.temperature, sampling.top_k, sampling.top_p, sampling.seed)
            g = self._graphs.get(key)
            stream = knpu.current_stream(self.device)
            if g is None:
                if not sampling.greedy:
                    self._generator(sampling)  # made outside the capture
                knpu.synchronize(self.device)
                g = knpu.Graph()
                with knpu.graph(g, stream=knpu.Stream(self.device)):
                    self._decode_step(sampling)
                self._graphs[key] = g
            g.replay(stream)
        else:
            self._decode_step(sampling)
        self.n_past += 1

    def _greedy_steps(self, count: int, stops: Collection[int]) -> Iterator[int]:
        """Up to ``count`` greedy decode steps after the last chosen token, each token yielded
        as its step ends, stopping after a stop token.

        The next step is queued before a token is read back (each step embeds the id the last
        one left on the device), so the device runs step after step without waiting for the
        host in between. A step queued past the end is undone: the position goes back, and
        the next step embeds the last token yielded (its cache row is written again).
        """
        greedy = SamplingParams()
        stream = knpu.current_stream(self.device)
        slots = [np.empty(1, dtype=np.uint32) for _ in range(2)]
        pending: List[Tuple[Any, np.ndarray]] = []
        launched = 0
        last: Optional[int] = None
        try:
            while True:
                while len(pending) < 2 and launched < count and self.n_past < self.n_ctx:
                    self._launch_step(None, greedy, True)
                    slot = slots[launched % 2]
                    self._ids.numpy(out=slot, blocking=False)
                    pending.append((stream.record_event(), slot))
                    launched += 1
                if not pending:
                    return
                event, slot = pending.pop(0)
                event.synchronize()
                last = int(slot[0])
                yield last
                if last in stops:
                    return
        finally:
            # Steps queued but not read are forgotten: the position goes back, and the id on
            # the device (a later step's) is no longer the last one yielded.
            self.n_past -= len(pending)
            if last is not None:
                self._next_sampled = last
            if pending:
                self._ids_current = False
            for event, _ in pending:
                event.synchronize()

    def generate_ids(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        sampling: SamplingParams = SamplingParams(),
        *,
        use_graph: bool = True,
        stop_ids: Optional[Collection[int]] = None,
    ) -> Iterator[int]:
        """Prefill ``prompt_ids`` after the cache's contents, then yield up to
        ``max_tokens`` tokens, one per step, ending after a stop token (which is yielded)."""
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        stops = self.stop_ids if stop_ids is None else frozenset(stop_ids)
        if max_tokens == 0:
            if not prompt_ids:
                raise ValueError("the prompt is empty: give at least one token")
            return
        token = self.prefill(prompt_ids, sampling)
        produced = 1
        yield token
        if token in stops:
            return
        if sampling.greedy and use_graph:
            yield from self._greedy_steps(max_tokens - produced, stops)
            return
        while produced < max_tokens and token not in stops:
            if self.n_past >= self.n_ctx:
                return
            token = self.decode(None, sampling, use_graph=use_graph)
            produced += 1
            yield token


_LOADED: Dict[Tuple[str, int, Optional[int]], LlamaModel] = {}


def load_llama(
    path: Optional[str] = None, *, device: Any = None, n_ctx: Optional[int] = None
) -> LlamaModel:
    """A :class:`LlamaModel` for ``path`` (default: the packaged SmolLM2), cached per
    file, device and context so repeated calls reuse the uploaded weights."""
    if path is None:
        from .paths import smollm2_gguf_path

        path = smollm2_gguf_path()
    dev = knpu.Device(device)
    key = (os.path.abspath(os.fspath(path)), dev.index, n_ctx)
    model = _LOADED.get(key)
    if model is None:
        model = LlamaModel(path, device=dev, n_ctx=n_ctx)
        _LOADED[key] = model
    return model
