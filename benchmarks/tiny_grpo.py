"""Benchmark: does GRPO on the tiny preset gain >= 30 points of held-out accuracy in <= 5 minutes?

    python benchmarks/tiny_grpo.py [--output-dir runs/bench-tiny] [--set FIELD=VALUE ...]

Runs ``python -m grpo_lib.train --preset tiny`` in-process (same code, same defaults) and
prints greedy strict accuracy before and after on the 500 held-out problems, the gain
with its rough 95% interval, the wall time of the whole command (evaluations included)
and of training alone, and the CPU load at start and end (the machine may be shared:
compare timings only at low load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from grpo_lib.presets import get_preset  # noqa: E402
from grpo_lib.train import _parse_value, run_preset  # noqa: E402

GOAL_GAIN = 0.30
GOAL_SECONDS = 300.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output-dir", default="runs/bench-tiny")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    overrides = {"output_dir": args.output_dir, "save_steps": 0, "progress_bar": args.progress}
    for item in args.set:
        k, v = item.split("=", 1)
        overrides[k] = _parse_value(v)
    preset = get_preset("tiny").with_config(**overrides)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    s = run_preset(preset, resume=False, do_eval=True, progress=args.progress)
    wall = time.time() - t0
    load1 = os.getloadavg()[0]
    n = s["eval_n"]
    b, a = s["accuracy_before"], s["accuracy_after"]
    se = ((b * (1 - b) + a * (1 - a)) / n) ** 0.5
    gain = a - b
    met = gain >= GOAL_GAIN and wall <= GOAL_SECONDS
    report = {
        "accuracy_before": round(b, 4),
        "accuracy_after": round(a, 4),
        "gain": round(gain, 4),
        "gain_ci95": [round(gain - 1.96 * se, 4), round(gain + 1.96 * se, 4)],
        "wall_seconds": round(wall, 1),
        "train_seconds": s["train_seconds"],
        "steps": s["steps"],
        "mean_step_time": round(s["mean_step_time"], 3),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_start_end": [round(load0, 2), round(load1, 2)],
        "overrides": {k: v for k, v in overrides.items() if k not in ("progress_bar",)},
    }
    print(json.dumps(report, indent=2))
    print(f"GOAL (gain >= {GOAL_GAIN:.2f} in <= {GOAL_SECONDS:.0f} s wall): {'MET' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
