"""The benchmark scripts run on a tiny budget (``--quick``) and write their JSON.

Not timed tests: the figures themselves are in benchmarks/README.md. Each script runs in
its own interpreter (it sets torch's thread count, which must not leak into this
session) and must exit 0 and write a JSON holding the keys the README's tables use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _run(script: str, out: Path, *extra: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert out.exists(), f"{script} did not write {out}"
    return json.loads(out.read_text())


def _check_machine(payload: dict) -> None:
    m = payload["machine"]
    assert m["cpu_count"] >= 1 and len(m["load_average_1_5_15"]) == 3
    assert payload["command"].startswith("python benchmarks/")


def test_rollout_throughput_quick(tmp_path):
    d = _run("rollout_throughput.py", tmp_path / "r.json")
    _check_machine(d)
    s = d["summary"]
    assert set(s) == {"shared_prefix", "grouped", "per_prompt", "one_at_a_time"}
    G, N = d["settings"]["num_generations"], d["settings"]["num_prompts"]
    assert s["grouped"]["generate_calls"] == 1
    assert s["per_prompt"]["generate_calls"] == N
    assert s["one_at_a_time"]["generate_calls"] == N * G
    for mode in s.values():
        assert mode["tokens"] >= N * G  # every completion has at least one token (its EOS or the first of many)
        assert mode["tokens"] <= N * G * d["settings"]["max_new_tokens"]
        assert mode["tokens_per_s"] > 0
    assert s["one_at_a_time"]["speedup_vs_one_at_a_time"] == pytest.approx(1.0)


def test_memory_grpo_vs_ppo_quick(tmp_path):
    d = _run("memory_grpo_vs_ppo.py", tmp_path / "m.json")
    _check_machine(d)
    (r,) = d["results"]
    assert set(r["methods"]) == {"grpo", "grpo_beta0", "ppo"}
    for m in r["methods"].values():
        assert m["peak_mb"] > 0 and m["static_mb"] > 0
        assert set(m["by_group_mb"]) == {"weights", "grads", "optimizer", "transient"}
    w = {k: r["methods"][k]["by_group_mb"]["weights"] for k in r["methods"]}
    # An identity, not a timing: PPO holds policy + reference + critic decoders, GRPO with
    # beta > 0 policy + reference, GRPO with beta = 0 the policy alone (full fine-tuning).
    assert w["grpo"] == pytest.approx(2 * w["grpo_beta0"], rel=0.01)
    assert w["ppo"] == pytest.approx(3 * w["grpo_beta0"], rel=0.01)
    assert r["ratios"]["ppo_over_grpo_peak"] > 1


def test_trainer_vs_trl_quick(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("matplotlib")
    out = tmp_path / "t.json"
    d = _run("trainer_vs_trl.py", out)
    _check_machine(d)
    s = d["summary"]
    steps = d["settings"]["steps"]
    for impl in ("grpo_lib", "trl"):
        assert s[impl]["steady_steps_per_s"] > 0
        assert s[impl]["peak_rss_process_mb"] > 0
        assert len(s[impl]["reward_curve"]) == steps
        assert all(0.0 <= r <= 1.0 for r in s[impl]["reward_curve"])  # correctness reward is 0/1
        assert set(s[impl]["time_breakdown_s"]) >= {"generation", "rewards", "logprob_forward"}
        assert len(d["runs"][impl][0]["step_times_s"]) == steps
    assert s["ratio"]["steady_steps_per_s"] > 0
    assert out.with_suffix(".png").exists()
