"""``python -m knpu.bench models``: SmolLM2 in knpu against llama.cpp, in the same run.

Both engines load the same GGUF file and run on the same number of threads (the software
NPU's compute pool). Rounds are interleaved (knpu, llama.cpp, knpu, ...) so that load from
elsewhere on the machine falls on both; each round prefills the same ``--prompt-tokens``
prompt in one pass and then decodes ``--decode-tokens`` tokens greedily, one per step. The
median over rounds of each engine's tok/s is reported with the ratios, the CPU, the
llama.cpp build, and two host facts the results are bounded by: the memory bandwidth
(a large ``numpy`` copy) and knpu's int8 GEMM rate, each measured in this run.

llama.cpp comes from ``llama-cpp-python`` (``make bench-models`` installs it); it is only
imported here, never by the rest of :mod:`knpu`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import knpu

from ._host import cpu_model
from .llama import LlamaModel, SamplingParams

_INSTALL_HINT = (
    "llama.cpp's Python binding is not installed: run `make bench-models` (it installs "
    "llama-cpp-python==0.3.36 into .venv, built with CMAKE_ARGS=-DGGML_NATIVE=ON), or "
    "`CMAKE_ARGS=-DGGML_NATIVE=ON pip install llama-cpp-python==0.3.36`"
)

_TEXT = (
    "The history of computing is a story of machines that grew smaller, faster and cheaper "
    "while the problems people asked of them grew larger. Early engineers wired programs by "
    "hand; later ones wrote compilers, operating systems and networks. "
)


class LlamaCppMissingError(RuntimeError):
    """``llama_cpp`` cannot be imported; the message says how to install it."""


def _threads(device: knpu.Device) -> int:
    props = device.properties
    for key in ("compute_cores",):
        if key in props:
            return int(props[key])
    env = os.environ.get("KNPU_SIM_CORES")
    return int(env) if env else (os.cpu_count() or 1)


def _prompt_ids(model: LlamaModel, n: int) -> List[int]:
    ids: List[int] = []
    while len(ids) < n:
        ids.extend(model.tokenizer.encode(_TEXT, add_special=False))
    return ids[:n]


def _memory_bandwidth_gbps(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Bytes read plus written per second by ``np.copyto`` of ``nbytes``, best of ``repeats``."""
    src = np.ones(nbytes // 8, np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def _int8_gemm_gops(device: knpu.Device, m: int = 512, n: int = 1536, k: int = 576) -> float:
    """knpu's W8A8 GEMM rate (GOP/s) at a prefill-like shape, best of 5."""
    rng = np.random.default_rng(0)
    xq = knpu.asarray(rng.integers(-127, 128, (m, k), dtype=np.int8), device=device)
    wq = knpu.asarray(rng.integers(-127, 128, (n, k), dtype=np.int8), device=device)
    sx = knpu.ones(m, device=device)
    sw = knpu.ones(n, device=device)
    knpu.w8a8_gemm(xq, sx, wq, sw)
    knpu.synchronize(device)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        knpu.w8a8_gemm(xq, sx, wq, sw)
        knpu.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * n * k / best / 1e9


def _knpu_round(model: LlamaModel, ids: Sequence[int], decode: int) -> Dict[str, float]:
    # Greedy generation as a user runs it: every token comes back to the host as its step
    # ends (the first from the prefill), no stop tokens.
    model.reset()
    tokens = model.generate_ids(ids, decode + 1, SamplingParams(), stop_ids=())
    t0 = time.perf_counter()
    next(tokens)
    t1 = time.perf_counter()
    steps = sum(1 for _ in tokens)
    t2 = time.perf_counter()
    if steps != decode:
        raise RuntimeError(f"knpu decoded {steps} tokens, expected {decode}")
    return {"prefill_tok_s": len(ids) / (t1 - t0), "decode_tok_s": decode / (t2 - t1)}


def _llamacpp_round(llm: Any, ids: Sequence[int], decode: int) -> Dict[str, float]:
    # With logits_all=False llama.cpp computes the logits of each batch's last token only;
    # they are read in place (llama-cpp-python no longer copies them) for a host argmax.
    n_vocab = llm.n_vocab()

    def last_argmax() -> int:
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))

    llm.reset()
    t0 = time.perf_counter()
    llm.eval(list(ids))
    tok = last_argmax()
    t1 = time.perf_counter()
    for _ in range(decode):
        llm.eval([tok])
        tok = last_argmax()
    t2 = time.perf_counter()
    return {"prefill_tok_s": len(ids) / (t1 - t0), "decode_tok_s": decode / (t2 - t1)}


def run(
    *,
    model_path: Optional[str] = None,
    rounds: int = 3,
    prompt_tokens: int = 512,
    decode_tokens: int = 128,
    device: Any = None,
) -> Dict[str, Any]:
    """Runs the interleaved rounds; returns the JSON-ready record."""
    try:
        import llama_cpp  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LlamaCppMissingError(_INSTALL_HINT) from exc
    if rounds < 1 or prompt_tokens < 1 or decode_tokens < 1:
        raise ValueError("rounds, prompt tokens and decode tokens must each be >= 1")
    if model_path is None:
        from .paths import smollm2_gguf_path

        model_path = smollm2_gguf_path()
    n_ctx = prompt_tokens + decode_tokens + 16
    model = LlamaModel(model_path, device=device, n_ctx=n_ctx)
    threads = _threads(model.device)
    llm = llama_cpp.Llama(
        model_path=model_path,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=n_ctx,
        n_batch=512,
        logits_all=False,
        verbose=False,
    )
    ids = _prompt_ids(model, prompt_tokens)
    # Warm-up: capture knpu's decode graph, page both engines' weights in.
    _knpu_round(model, ids[:16], 2)
    _llamacpp_round(llm, ids[:16], 2)
    results: Dict[str, List[Dict[str, float]]] = {"knpu": [], "llama.cpp": []}
    for _ in range(rounds):
        results["knpu"].append(_knpu_round(model, ids, decode_tokens))
        results["llama.cpp"].append(_llamacpp_round(llm, ids, decode_tokens))

    def med(engine: str, key: str) -> float:
        return statistics.median(r[key] for r in results[engine])

    weight_bytes = sum(
        t.nbytes
        for layer in model.layers
        for t in (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down)
    ) + model.output.nbytes
    c = model.config
    matrix_params = c.n_layer * (
        2 * c.n_embd * c.n_head * c.head_dim
        + 2 * c.n_embd * c.n_head_kv * c.head_dim
        + 3 * c.n_embd * c.n_ff
    ) + c.vocab_size * c.n_embd
    bandwidth = _memory_bandwidth_gbps()
    gemm = _int8_gemm_gops(model.device)
    k_pre, l_pre = med("knpu", "prefill_tok_s"), med("llama.cpp", "prefill_tok_s")
    k_dec, l_dec = med("knpu", "decode_tok_s"), med("llama.cpp", "decode_tok_s")
    return {
        "bench": "models",
        "model": os.path.basename(model_path),
        "prompt_tokens": prompt_tokens,
        "decode_tokens": decode_tokens,
        "rounds": rounds,
        "threads": threads,
        "cpu": cpu_model(),
        "device": model.device.name,
        "llama_cpp": {
            "version": getattr(llama_cpp, "__version__", "unknown"),
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        },
        "knpu": {"prefill_tok_s": k_pre, "decode_tok_s": k_dec, "rounds": results["knpu"]},
        "llama.cpp": {
            "prefill_tok_s": l_pre,
            "decode_tok_s": l_dec,
            "rounds": results["llama.cpp"],
        },
        "ratio": {"prefill": k_pre / l_pre, "decode": k_dec / l_dec},
        "targets": {"prefill": 4.0, "decode": 2.0},
        "bounds": {
            "memory_bandwidth_gbps": bandwidth,
            "weight_bytes_per_token": weight_bytes,
            "decode_tok_s_at_bandwidth": bandwidth * 1e9 / weight_bytes,
            "int8_gemm_gops": gemm,
            "prefill_gop_per_token": 2 * matrix_params / 1e9,
            "prefill_tok_s_at_gemm_rate": gemm / (2 * matrix_params / 1e9),
        },
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m knpu.bench models``: prints one JSON object; 1 with a message on error."""
    p = argparse.ArgumentParser(
        prog="python -m knpu.bench models",
        description="SmolLM2 prefill and decode tok/s in knpu and llama.cpp, same run",
    )
    p.add_argument("--model", help="GGUF file (default: the packaged SmolLM2-135M-Instruct)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=128)
    args = p.parse_args(argv)
    try:
        record = run(
            model_path=args.model,
            rounds=args.rounds,
            prompt_tokens=args.prompt_tokens,
            decode_tokens=args.decode_tokens,
        )
    except (LlamaCppMissingError, ValueError, knpu.KnpuError) as exc:
        print(f"knpu bench models: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record, indent=2))
    return 0
