#!/usr/bin/env python3
"""Compare `knpu bench attention` with numpy in the same run.

Runs the same attention in numpy (scores by batched matmul, causal mask, softmax, matmul by V;
numpy materialises the full score matrix), then `knpu bench attention --json`, and prints for
each prefill case our GFLOP/s, numpy's and their ratio (both count 4*h*sq*skv*d / 2 FLOPs for
the causal mask), and for each decode case our bytes/s as a fraction of the read-bandwidth
probe measured in the same CLI run (plus numpy's time per step on cache-resident data).

    python3 cli/src/bench/attention_numpy.py [--knpu PATH] [--threads 2] [--json]

numpy uses OpenBLAS with as many threads as the CLI; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
cleared so OpenBLAS picks its own kernels for this CPU.
"""

import argparse
import json
import os
import subprocess
import sys
import time

Q_HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--knpu", default=os.path.join(target, "release", "knpu"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print JSON Lines")
    return ap.parse_args()


args = parse_args()
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread settings above)


def np_attention(q, k, v, causal):
    """q: [sq, hq, d], k/v: [skv, hkv, d] (float32) -> [sq, hq, d]; GQA by reshaping q."""
    sq, hq, d = q.shape
    skv, hkv, _ = k.shape
    g = hq // hkv
    scale = np.float32(1.0 / np.sqrt(d))
    qh = q.reshape(sq, hkv, g, d).transpose(1, 2, 0, 3).reshape(hkv, g * sq, d)
    # Contiguous per-head copies (O(seq) work) keep matmul on the BLAS path.
    kt = np.ascontiguousarray(k.transpose(1, 2, 0))  # [hkv, d, skv]
    vh = np.ascontiguousarray(v.transpose(1, 0, 2))  # [hkv, skv, d]
    s = np.matmul(qh, kt)  # [hkv, g*sq, skv]
    s *= scale
    if causal:
        # query i sees keys <= skv - sq + i
        mask = np.triu(np.full((sq, skv), -np.inf, dtype=np.float32), k=skv - sq + 1)
        s = s.reshape(hkv, g, sq, skv)
        s += mask
        s = s.reshape(hkv, g * sq, skv)
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    o = np.matmul(s, vh)  # [hkv, g*sq, d]
    return o.reshape(hkv, g, sq, d).transpose(2, 0, 1, 3).reshape(sq, hq, d)


def median_time(f, runs):
    f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    n = len(ts)
    return ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])


def causal_flops(sq, skv):
    return 4.0 * Q_HEADS * sq * skv * HEAD_DIM / 2.0


def numpy_cases(runs):
    rng = np.random.default_rng(0)
    out = {}
    for seq in (512, 2048):
        q = rng.uniform(-1, 1, (seq, Q_HEADS, HEAD_DIM)).astype(np.float32)
        k = rng.uniform(-1, 1, (seq, KV_HEADS, HEAD_DIM)).astype(np.float32)
        v = rng.uniform(-1, 1, (seq, KV_HEADS, HEAD_DIM)).astype(np.float32)
        t = median_time(lambda: np_attention(q, k, v, True), runs)
        out[("prefill", seq)] = (t, causal_flops(seq, seq) / t / 1e9)
    for kv_len in (512, 4096):
        q = rng.uniform(-1, 1, (1, Q_HEADS, HEAD_DIM)).astype(np.float32)
        k = rng.uniform(-1, 1, (kv_len, KV_HEADS, HEAD_DIM)).astype(np.float32)
        v = rng.uniform(-1, 1, (kv_len, KV_HEADS, HEAD_DIM)).astype(np.float32)
        t = median_time(lambda: np_attention(q, k, v, True), max(runs, 50))
        out[("decode", kv_len)] = (t, None)
    return out


def check_numpy_matches_definition():
    """A small self-check of np_attention against a direct loop, so ratios compare like work."""
    rng = np.random.default_rng(1)
    q = rng.uniform(-1, 1, (3, 4, 8)).astype(np.float32)
    k = rng.uniform(-1, 1, (5, 2, 8)).astype(np.float32)
    v = rng.uniform(-1, 1, (5, 2, 8)).astype(np.float32)
    got = np_attention(q, k, v, True)
    for i in range(3):
        for h in range(4):
            kh = h // 2
            vis = 5 - 3 + i + 1
            s = (k[:vis, kh] @ q[i, h]) / np.sqrt(8)
            p = np.exp(s - s.max())
            want = (p / p.sum()) @ v[:vis, kh]
            assert np.allclose(got[i, h], want, atol=1e-5), "numpy reference is wrong"


def main():
    check_numpy_matches_definition()
    ours = subprocess.run(
        [args.knpu, "bench", "attention", "--json", "--threads", str(args.threads),
         "--phase", "probe,prefill,decode"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    npy = numpy_cases(args.runs)
    records = [json.loads(line) for line in ours.splitlines() if line.strip()]
    probe = next((r for r in records if r["case"].get("probe") == "read_bandwidth"), None)
    rows = []
    for r in records:
        c = r["case"]
        if c.get("phase") == "prefill" and c.get("dtype") == "f32":
            nt, ng = npy[("prefill", c["seq"])]
            rows.append({
                "bench": "attention-vs-numpy",
                "case": c,
                "gflops": r["gflops"],
                "numpy_gflops": round(ng, 2),
                "numpy_median_s": nt,
                "ratio_vs_numpy": round(r["gflops"] / ng, 3),
            })
        elif c.get("phase") == "decode" and c.get("dtype") == "f32":
            nt, _ = npy[("decode", c["kv_len"])]
            row = {
                "bench": "attention-vs-numpy",
                "case": c,
                "us": r["us"],
                "gbps": r["gbps"],
                "numpy_us_hot": round(nt * 1e6, 1),
            }
            if probe:
                row["probe_gbps"] = probe["gbps"]
                row["fraction_of_read_bandwidth"] = round(r["gbps"] / probe["gbps"], 3)
            rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    if probe:
        print(f"read-bandwidth probe: {probe['gbps']:.1f} GB/s ({args.threads} threads)")
    for row in rows:
        c = row["case"]
        if c["phase"] == "prefill":
            print(
                f"prefill seq={c['seq']:<5} ours {row['gflops']:8.1f} GFLOP/s  "
                f"numpy {row['numpy_gflops']:8.1f} GFLOP/s  ratio {row['ratio_vs_numpy']:.2f}"
            )
        else:
            frac = row.get("fraction_of_read_bandwidth")
            print(
                f"decode kv_len={c['kv_len']:<5} ours {row['us']:8.1f} us  "
                f"{row['gbps']:6.1f} GB/s"
                + (f" = {frac:.0%} of the probe" if frac is not None else "")
                + f"  (numpy {row['numpy_us_hot']:.1f} us, cache-resident)"
            )


if __name__ == "__main__":
    sys.exit(main())
