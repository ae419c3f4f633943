#!/usr/bin/env python3
"""Runs `knpu bench ops --json` and numpy's equivalents in the same run, and prints ratios.

numpy has no fused LLM ops, so its versions are the usual one-liners (several passes over
memory each); they are the peer a user would otherwise reach for. Single-threaded like
numpy's elementwise ufuncs, so the comparison uses knpu's `threads = 1` records.

    python3 cli/bench/ops_peer.py [path/to/knpu]
"""

import json
import statistics
import subprocess
import sys
import timeit

import numpy as np

ROWS, COLS, HEAD_DIM = 512, 4096, 128


def median_time(f, runs=15):
    """The median of `runs` timed calls of `f` after one untimed warm-up call, in seconds."""
    f()
    return statistics.median(timeit.repeat(f, repeat=runs, number=1))


def numpy_cases():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (ROWS, COLS)).astype(np.float32)
    up = rng.uniform(-1, 1, (ROWS, COLS)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, COLS).astype(np.float32)

    def rms_norm():
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * w

    def softmax():
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def swiglu():
        return x / (1.0 + np.exp(-x)) * up

    half = HEAD_DIM // 2
    inv = 10000.0 ** (-np.arange(half, dtype=np.float64) * 2 / HEAD_DIM)
    ang = np.arange(ROWS, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.cos(ang).astype(np.float32)[:, None, :]
    sin = np.sin(ang).astype(np.float32)[:, None, :]
    xh = x.reshape(ROWS, COLS // HEAD_DIM, HEAD_DIM)

    def rope_neox():
        a, b = xh[..., :half], xh[..., half:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    return {"rms_norm": rms_norm, "softmax": softmax, "swiglu": swiglu, "rope_neox": rope_neox}


def main():
    knpu = sys.argv[1] if len(sys.argv) > 1 else "knpu"
    out = subprocess.run([knpu, "bench", "ops", "--json"], check=True, capture_output=True, text=True)
    ours = {}
    for line in out.stdout.splitlines():
        r = json.loads(line)
        c = r["case"]
        if c["rows"] == ROWS and c["threads"] == 1:
            ours.setdefault(c["op"], {})[c["isa"]] = r["median_s"]
    print(f"{'op':<10} {'numpy_s':>10} " + " ".join(f"{isa + '_s':>12} {'x numpy':>8}" for isa in ("avx512", "avx2", "portable")))
    for op, f in numpy_cases().items():
        t = median_time(f)
        cols = []
        for isa in ("avx512", "avx2", "portable"):
            s = ours.get(op, {}).get(isa)
            cols.append(f"{s:12.6f} {t / s:8.2f}" if s else f"{'-':>12} {'-':>8}")
        print(f"{op:<10} {t:10.6f} " + " ".join(cols))


if __name__ == "__main__":
    main()
