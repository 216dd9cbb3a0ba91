"""benchmarks/gpu_check.py in its reduced CPU form (the scaled model), so the one-call GPU check cannot rot."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_reduced_runs_and_writes_the_table(tmp_path):
    out = tmp_path / "gpu_check.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--cpu-reduced",
                        "--json", str(out), "--budget", "50", "--repeats", "1"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["mode"] == "cpu-reduced" and r["flop_per_step"] > 0
    assert set(r["settings"]) == {"none", "blocks 1", "blocks 0", "fp8"}
    for label, s in r["settings"].items():
        assert s["seconds_per_step"] > 0 and s["peak_bytes"] > 0, label
        assert any("scaled_dot_product" in op for op in s["attention_ops"]), s["attention_ops"]
    computed = r["computed_peak_bytes"]
    assert computed["fp8"] < computed["none"] and computed["blocks 0"] <= computed["blocks 1"] <= computed["none"]
    assert r["attention"]["default_op"] and r["demo"]["status"].startswith("skipped")
    assert "setting" in p.stdout and "fp8" in p.stdout  # the printed table
