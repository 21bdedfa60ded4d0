"""The pre-flight benchmarks run on a tiny budget (``--quick``, on the CPU) and write their JSON.

Not timed tests: the figures are reported by the scripts. Each runs in its own interpreter
(the scripts set torch's thread count)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", "--threads", "1",
                           "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text())


@pytest.mark.slow
def test_preflight_forecast_quick(tmp_path):
    d = _run("preflight_forecast.py", tmp_path / "f.json")
    assert d["command"].startswith("python benchmarks/") and d["steps_run"] == 6
    assert d["preflight"]["num_evaluations"] == 2  # every 3 steps in 6
    p = d["preflight"]
    assert d["forecast_s"] == pytest.approx(6 * p["step_seconds"] + 2 * p["eval_seconds"])
    assert d["ratio"] == pytest.approx(d["forecast_s"] / d["measured_after_preflight_s"])
    assert d["doctor_findings"] == [] and d["doctor_warnings"] == []  # a healthy preset: silent


@pytest.mark.slow
def test_gpu_qwen_step_runs_on_the_cpu_with_a_reduced_model(tmp_path):
    d = _run("gpu_qwen_step.py", tmp_path / "g.json")
    assert d["device"] == "cpu" and "2 layers" in d["model"]
    assert len(d["step_seconds_all"]) == 3 and d["eval_seconds"] > 0
    # a random model almost never emits EOS: every completion runs to the 8-token cap
    assert d["completion_mean_length"] == [8.0, 8.0, 8.0] and d["eval_truncated_share"] == 1.0
    assert d["preflight_forecast_200_steps_s"] == pytest.approx(200 * d["preflight_step_seconds"])
