#!/usr/bin/env python3
"""Runs `knpu bench gemm --json` and numpy's matmul (OpenBLAS sgemm) on the same shapes in the
same run, and prints one JSON line per case with both rates and their ratio.

Each f32 case is measured again with `knpu bench gemm --shape MxNxK` right before numpy runs
it, so the two numbers of a ratio are taken seconds apart (the machine's load drifts);
`knpu_gflops_suite` is the same case from the full suite run.

    python3 cli/bench/gemm_vs_numpy.py [--knpu PATH] [--threads 2] [--quick]

Also printed: f16/bf16 rates as a ratio of knpu's own sgemm at the same shape, and GEMV
(m = 1) read rates as a fraction of the read-bandwidth probe of the same run. OpenBLAS runs
with the same thread count; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from its
environment so it picks its own kernel, which is reported (via threadpoolctl when present).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--knpu", default=os.path.join(target, "release", "knpu"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--min-time", type=float, default=0.4)
    p.add_argument(
        "--shapes",
        help="comma-separated MxNxK f32 shapes (optionally MxNxK/T for T threads): measure only "
        "these, alternating knpu and numpy --rounds times",
    )
    p.add_argument("--rounds", type=int, default=3)
    return p.parse_args()


def main():
    args = parse_args()
    # OpenBLAS reads these when numpy loads it: remove the overrides, set the thread count.
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    info = {"numpy": np.__version__, "threads": args.threads}
    limiter = None
    try:
        import threadpoolctl

        limiter = threadpoolctl.ThreadpoolController()
        info["blas"] = [
            {k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for lib in threadpoolctl.threadpool_info()
            if lib.get("user_api") == "blas"
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    print(json.dumps({"bench": "gemm_vs_numpy", "environment": info}), flush=True)

    def numpy_gflops(m, n, k, threads):
        a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)

        def once():
            np.matmul(a, b, out=c)

        def timed():
            once()
            times = []
            start = time.perf_counter()
            while len(times) < 5 or (time.perf_counter() - start < args.min_time and len(times) < 200):
                t = time.perf_counter()
                once()
                times.append(time.perf_counter() - t)
            return statistics.median(times)

        if limiter is not None:
            with limiter.limit(limits=threads, user_api="blas"):
                s = timed()
        else:
            s = timed()
        return 2.0 * m * n * k / s / 1e9

    if args.shapes:
        for round_ in range(args.rounds):
            for spec in args.shapes.split(","):
                shape, _, t = spec.partition("/")
                threads = int(t) if t else args.threads
                m, n, k = (int(x) for x in shape.split("x"))
                time.sleep(0.5)
                again = subprocess.run(
                    [args.knpu, "bench", "gemm", "--json", "--threads", str(threads), "--shape", shape],
                    check=True, capture_output=True, text=True,
                ).stdout
                ours = json.loads(again.splitlines()[-1])["gflops"]
                theirs = numpy_gflops(m, n, k, threads)
                case = {"dtype": "f32", "m": m, "n": n, "k": k, "threads": threads}
                print(json.dumps({
                    "bench": "gemm_vs_numpy", "case": case, "round": round_,
                    "knpu_gflops": ours, "numpy_gflops": round(theirs, 2),
                    "ratio": round(ours / theirs, 3), "loadavg": os.getloadavg()[0],
                }), flush=True)
        return 0

    cmd = [args.knpu, "bench", "gemm", "--json", "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    probe = next((r["gbps"] for r in records if r["case"].get("probe") == "read_bandwidth"), None)
    sgemm = {}
    for r in records:
        c = r["case"]
        if c.get("dtype") == "f32" and "path" not in c and "trans_b" not in c:
            sgemm[(c["m"], c["n"], c["k"], c["threads"])] = r["gflops"]


    for r in records:
        c = r["case"]
        line = {"bench": "gemm_vs_numpy", "case": c}
        if "probe" in c:
            line["gbps"] = r["gbps"]
        elif c["dtype"] == "f32" and "path" not in c and "trans_b" not in c:
            shape = "%dx%dx%d" % (c["m"], c["n"], c["k"])
            # OpenBLAS's worker threads spin for a while after a call; let them go idle so
            # they do not take a core from the knpu run that follows.
            time.sleep(0.5)
            again = subprocess.run(
                [args.knpu, "bench", "gemm", "--json", "--threads", str(c["threads"]), "--shape", shape],
                check=True, capture_output=True, text=True,
            ).stdout
            ours = json.loads(again.splitlines()[-1])["gflops"]
            theirs = numpy_gflops(c["m"], c["n"], c["k"], c["threads"])
            line.update(
                knpu_gflops=ours,
                knpu_gflops_suite=r["gflops"],
                numpy_gflops=round(theirs, 2),
                ratio=round(ours / theirs, 3),
            )
            if c["m"] == 1 and probe:
                line["gbps"] = r["gbps"]
                line["fraction_of_read_bandwidth"] = round(r["gbps"] / probe, 3)
        else:
            line["knpu_gflops"] = r["gflops"]
            base = sgemm.get((c["m"], c["n"], c["k"], c["threads"]))
            if base and "path" not in c:
                line["ratio_vs_knpu_sgemm"] = round(r["gflops"] / base, 3)
            if c["m"] == 1 and probe:
                line["gbps"] = r["gbps"]
                line["fraction_of_read_bandwidth"] = round(r["gbps"] / probe, 3)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
