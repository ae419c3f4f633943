"""``python -m knpu.bench [--json] [--min-time S]``: the host cost of the Python layer.

``python -m knpu.bench models [...]`` instead runs SmolLM2 in knpu and in llama.cpp
(see :mod:`knpu.models.bench`).

Each case times a call in a loop and reports the median over several timed batches, as
``knpu bench`` does for the runtime: one JSON line per case with ``--json``
(``{"bench", "case", "runs", "median_s", <rate>}``), else a table.

Cases (targets from the Python issue):
  - ``matmul``: an asynchronous ``knpu.matmul`` of tiny tensors, host cost per call
    (target <= 3 us);
  - ``add``: ``t + u`` of tiny tensors (target <= 2 us);
  - ``graph_replay``: ``g.replay()`` of a captured 100-op graph (target <= 5 us);
  - ``numpy_4mib`` and ``np_copy_4mib``: ``.numpy()`` of 4 MiB against ``np.copy`` of the
    same 4 MiB in the same run (target ratio >= 0.5).

Queued work is drained between batches (outside the timed region), so the loop measures
the cost of queueing, not of the device running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

import knpu


def _time(f: Callable[[], object], calls: int, min_time: float, drain: Callable[[], None]) -> Tuple[int, float]:
    """Runs `f` `calls` times per batch until `min_time` has passed (at least 5 batches);
    returns the batch count and the median seconds per call."""
    f()
    drain()
    per_call: List[float] = []
    start = time.perf_counter()
    while len(per_call) < 5 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        t1 = time.perf_counter()
        drain()
        per_call.append((t1 - t0) / calls)
        if len(per_call) >= 1000:
            break
    return len(per_call), statistics.median(per_call)


def run(min_time: float) -> List[Dict[str, object]]:
    """Measures every case; returns the records."""
    records: List[Dict[str, object]] = []

    def record(case: Dict[str, object], runs: int, median_s: float, **rates: float) -> None:
        r: Dict[str, object] = {"bench": "python", "case": case, "runs": runs, "median_s": median_s}
        r.update({k: float(f"{v:.4g}") for k, v in rates.items()})
        records.append(r)

    sync = knpu.synchronize
    a = knpu.asarray(np.ones((4, 4), np.float32))
    b = knpu.asarray(np.ones((4, 4), np.float32))
    runs, s = _time(lambda: knpu.matmul(a, b), 100, min_time, sync)
    record({"op": "matmul", "shape": [4, 4, 4], "dtype": "float32", "target_us": 3}, runs, s, us=s * 1e6)

    t = knpu.asarray(np.ones(16, np.float32))
    u = knpu.asarray(np.ones(16, np.float32))
    runs, s = _time(lambda: t + u, 100, min_time, sync)
    record({"op": "add", "shape": [16], "dtype": "float32", "target_us": 2}, runs, s, us=s * 1e6)

    x = knpu.asarray(np.ones(16, np.float32))
    with knpu.graph() as g:
        y = x
        for _ in range(100):
            y = y + x
    runs, s = _time(g.replay, 10, min_time, sync)
    record({"op": "graph_replay", "nodes": 100, "target_us": 5}, runs, s, us=s * 1e6)

    host = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)  # 4 MiB
    big = knpu.asarray(host)
    sync()
    runs, s_numpy = _time(big.numpy, 5, min_time, lambda: None)
    runs2, s_copy = _time(lambda: np.copy(host), 5, min_time, lambda: None)
    gbps = host.nbytes / 1e9
    record({"op": "numpy", "bytes": host.nbytes}, runs, s_numpy, gbps=gbps / s_numpy,
           ratio_vs_np_copy=s_copy / s_numpy)
    record({"op": "np_copy", "bytes": host.nbytes}, runs2, s_copy, gbps=gbps / s_copy)
    return records


def main(argv: List[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["models"]:
        from knpu.models.bench import main as models_main

        return models_main(args_in[1:])
    p = argparse.ArgumentParser(prog="python -m knpu.bench", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON line per case")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timed runs per case")
    args = p.parse_args(args_in)
    for r in run(args.min_time):
        if args.json:
            print(json.dumps(r))
        else:
            rates = "  ".join(f"{k}={r[k]}" for k in r if k not in ("bench", "case", "runs", "median_s"))
            print(f"{json.dumps(r['case']):60s} runs={r['runs']:<5} median={float(str(r['median_s'])) * 1e6:9.2f} us  {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
