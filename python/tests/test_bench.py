"""`python -m knpu.bench`: every case runs and prints one JSON record (no timing checks)."""

import json

from knpu import bench


def test_bench_prints_one_json_record_per_case(capsys):
    assert bench.main(["--json", "--min-time", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["case"]["op"] for r in records] == ["matmul", "add", "graph_replay", "numpy", "np_copy"]
    for r in records:
        assert r["bench"] == "python" and r["runs"] >= 5 and r["median_s"] > 0
    assert records[3]["ratio_vs_np_copy"] > 0
