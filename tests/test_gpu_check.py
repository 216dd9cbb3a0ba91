"""benchmarks/gpu_check.py in its reduced CPU form (the scaled model), so the one-call GPU check cannot rot."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_reduced_runs_and_writes_the_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "benchmarks", "gpu_check.py"))
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--cpu-reduced", "--json", str(out), "--budget", "50", "--repeats", "1"]) == 0
    r = json.loads(out.read_text())
    assert r["mode"] == "cpu-reduced" and r["flop_per_step"] > 0
    assert set(r["settings"]) == {"none", "blocks 1", "blocks 0", "fp8"}
    for label, s in r["settings"].items():
        assert s["seconds_per_step"] > 0 and s["peak_bytes"] > 0, label
        assert any("scaled_dot_product" in op for op in s["attention_ops"]), s["attention_ops"]
    computed = r["computed_peak_bytes"]
    assert computed["fp8"] < computed["none"] and computed["blocks 0"] <= computed["blocks 1"] <= computed["none"]
    assert r["attention"]["default_op"] and r["demo"]["status"].startswith("skipped")
    printed = capsys.readouterr().out
    assert "setting" in printed and "fp8" in printed  # the table
