"""Probes of llama.cpp itself, behind the claims in ``llama.py`` and ``test_models_llama.py``.

Needs ``llama-cpp-python`` (0.3.36, as the fixtures) and the model file; run from
``python/tests``::

    python -m reference.llamacpp_probe self   # llama.cpp against its own fixtures
    python -m reference.llamacpp_probe ops    # each reference op against llama.cpp's

``self`` runs llama.cpp under settings that change only how it rounds (flash attention, an
f32 KV cache, one token per batch) and prints each one's top-1 agreement, mean
``|logit difference|`` and 16-token greedy matches against the fixtures that llama.cpp made
with its defaults: the noise floor any other engine meets.

``ops`` reads llama.cpp's intermediate tensors on the first fixture prompt (through its
graph-evaluation callback) and feeds each op of the reference the very inputs llama.cpp's
op had, under each rounding, then runs the whole reference and prints how far its hidden
state is from llama.cpp's after each block.
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from models_support import load_fixture, smollm2_path

# isort: split
from knpu.models import GGUFFile

from .llama import ROUNDING_GGML, LlamaReference, Rounding, rms_norm, rope_adjacent, silu

N_CTX = 1024


def _llama(**kw):
    import llama_cpp

    args = dict(
        model_path=smollm2_path(),
        n_ctx=N_CTX,
        n_batch=N_CTX,
        n_ubatch=N_CTX,
        n_threads=1,
        n_threads_batch=1,
        logits_all=True,
        seed=0,
        verbose=False,
    )
    args.update(kw)
    return llama_cpp.Llama(**args)


def self_agreement() -> None:
    prompts = load_fixture("smollm2_llamacpp.json")["prompts"]
    variants = {
        "flash_attn=True": dict(flash_attn=True),
        "f32 KV cache": dict(type_k=0, type_v=0),
        "one token per batch": dict(n_batch=1, n_ubatch=1),
    }
    for name, kw in variants.items():
        llm = _llama(**kw)
        agree = total = greedy_ok = 0
        diffs = []
        for p in prompts:
            seq = p["prompt_ids"] + p["greedy_ids"]
            llm.reset()
            llm.eval(seq)
            scores = np.asarray(llm.scores[: len(seq)], dtype=np.float32)
            top_ids = np.asarray(p["topk_ids"])
            at_top = scores[np.arange(len(seq)), top_ids[:, 0]]
            diffs.append(np.abs(at_top - np.asarray(p["topk_logits"])[:, 0]))
            agree += int((scores.argmax(axis=1) == top_ids[:, 0]).sum())
            total += len(seq)
            llm.reset()
            llm.eval(p["prompt_ids"])
            cont = []
            for _ in range(16):
                cont.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
                llm.eval([cont[-1]])
            greedy_ok += cont == p["greedy_ids"][:16]
        d = np.concatenate(diffs)
        print(
            f"{name:20s} top-1 {agree}/{total} = {agree / total:.4f}  mean|diff| {d.mean():.4f}"
            f"  greedy-16 {greedy_ok}/{len(prompts)}",
            flush=True,
        )


def _trace(ids: list) -> dict:
    """llama.cpp's named intermediate tensors (f32/f16, contiguous) for one pass over ids;
    a name computed more than once gets ``+`` appended per repeat."""
    import llama_cpp
    import llama_cpp.llama_cpp as lib

    base = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    base.ggml_get_name.restype = ctypes.c_char_p
    base.ggml_get_name.argtypes = [ctypes.c_void_p]
    base.ggml_nbytes.restype = ctypes.c_size_t
    base.ggml_nbytes.argtypes = [ctypes.c_void_p]
    base.ggml_is_contiguous.restype = ctypes.c_bool
    base.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
    base.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_size_t] * 2
    store: dict = {}

    def callback(t, ask, _user):
        if ask:
            return True
        # struct ggml_tensor starts with `enum ggml_type type`, then a pointer, then ne[4].
        ggml_type = ctypes.c_int32.from_address(t).value
        if ggml_type not in (0, 1) or not base.ggml_is_contiguous(t):
            return True
        ne = list((ctypes.c_int64 * 4).from_address(t + 16))
        buf = (ctypes.c_uint8 * base.ggml_nbytes(t))()
        base.ggml_backend_tensor_get(t, buf, 0, len(buf))
        arr = np.frombuffer(buf, dtype=np.float32 if ggml_type == 0 else np.float16)
        key = base.ggml_get_name(t).decode()
        while key in store:
            key += "+"
        store[key] = arr.astype(np.float32).reshape(ne[::-1]).squeeze()
        return True

    cb = lib.ggml_backend_sched_eval_callback(callback)
    default_params = lib.llama_context_default_params

    def with_callback():
        params = default_params()
        params.cb_eval = cb
        return params

    lib.llama_context_default_params = with_callback
    try:
        llm = _llama()
    finally:
        lib.llama_context_default_params = default_params
    llm.eval(ids)
    return store


def _rel(mine: np.ndarray, ref: np.ndarray) -> float:
    ref = ref.reshape(mine.shape)
    return float(np.abs(mine - ref).mean() / np.abs(ref).mean())


def ops() -> None:
    p = load_fixture("smollm2_llamacpp.json")["prompts"][0]
    ids = p["prompt_ids"] + p["greedy_ids"]
    t = _trace(ids)
    half = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    with GGUFFile(smollm2_path()) as g:
        ref = LlamaReference(g)
        c, L = ref.cfg, ref.layers[0]
        pos = np.arange(len(ids))
        print("layer 0, each op fed llama.cpp's inputs: mean |difference| / mean |value|")
        norm = rms_norm(t["embd"], L.attn_norm, c.rms_eps)
        print(f"  rms_norm: {_rel(norm, t['attn_norm-0']):.1e}")
        for name, r in (
            ("float32", Rounding()),
            ("act_q8", Rounding(act_q8=True)),
            ("act_q8+q8_1_sum", Rounding(act_q8=True, q8_1_sum=True)),
        ):
            ref.rounding = r
            rows = [
                ("Wv", _rel(ref._linear(t["attn_norm-0"], L.wv), t["Vcur-0"])),
                ("Wo", _rel(ref._linear(t["kqv_out-0"], L.wo), t["attn_out-0"])),
                ("Wgate", _rel(ref._linear(t["ffn_norm-0"], L.w_gate), t["ffn_gate-0"])),
                ("Wdown", _rel(ref._linear(t["ffn_swiglu-0"], L.w_down), t["ffn_out-0"])),
                ("output", _rel(ref._linear(t["result_norm"], ref.output), t["result_output"])),
            ]
            print(f"  matmuls, {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in rows))
        q, k = t["Qcur-0++"], t["Kcur-0++"]  # after RoPE
        print(f"  rope: {_rel(rope_adjacent(t['Qcur-0+'], pos, c.rope_base), q):.1e}")
        print(f"  swiglu: {_rel(silu(t['ffn_gate-0']) * t['ffn_up-0'], t['ffn_swiglu-0']):.1e}")
        v = t["Vcur-0+"]
        for name, r in (
            ("float32", Rounding()),
            ("kv_f16", Rounding(kv_f16=True)),
            ("kv_f16+attn_f16", Rounding(kv_f16=True, attn_f16=True)),
        ):
            ref.rounding = r
            kk, vv = (half(k), half(v)) if r.kv_f16 else (k, v)
            out = ref._attention(q, kk, vv, 0)
            print(f"  attention, {name}: {_rel(out, t['kqv_out-0']):.1e}")
        ref.rounding = ROUNDING_GGML
        print("whole reference with every rounding, hidden state after block b, per position:")
        for b in (1, 2, 5, 10, 20, 30):
            h = ref.forward(ids, layers=b)
            want = t[f"l_out-{b - 1}"]
            per_pos = np.abs(h - want).mean(axis=1) / np.abs(want).mean(axis=1)
            print(
                f"  block {b:2d}: position 0 {per_pos[0]:.1e}, worst position {per_pos.max():.1e}"
                f" (at {int(per_pos.argmax())}), mean {_rel(h, want):.1e}"
            )


if __name__ == "__main__":
    {"self": self_agreement, "ops": ops}[sys.argv[1] if len(sys.argv) > 1 else "ops"]()
