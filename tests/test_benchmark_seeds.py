"""benchmarks/tiny_grpo_seeds.py runs on a tiny budget (``--quick``) and its summary is the
mean, sample sd and range of its own per-seed numbers (recomputed here)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_tiny_grpo_seeds_quick(tmp_path):
    out = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tiny_grpo_seeds.py"), "--quick", "--out", str(out),
         "--run-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    d = json.loads(out.read_text())
    assert d["command"].startswith("python benchmarks/tiny_grpo_seeds.py") and d["quick"] is True
    runs = d["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and all(r["steps"] == 3 and len(r["reward"]) == 3 for r in runs)
    gains = [r["gain"] for r in runs]
    for r in runs:
        assert abs(r["gain"] - (r["accuracy_after"] - r["accuracy_before"])) < 1e-3
    g = d["summary"]["gain"]
    assert abs(g["mean"] - statistics.fmean(gains)) < 1e-4
    assert abs(g["std"] - statistics.stdev(gains)) < 1e-4
    assert (g["min"], g["max"]) == (min(gains), max(gains))
    assert out.with_suffix(".png").exists()
