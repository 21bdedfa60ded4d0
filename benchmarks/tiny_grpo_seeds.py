"""Benchmark: the tiny preset's headline over several seeds (mean, spread, every run).

    python benchmarks/tiny_grpo_seeds.py [--seeds 0 1 2] [--out benchmarks/results/tiny_grpo_seeds.json]
    python benchmarks/tiny_grpo_seeds.py --quick     # 2 seeds x 3 steps, 40 eval problems (a check, not a figure)

A single run is an anecdote. This runs ``python -m grpo_lib.train --preset tiny`` (the same
code and defaults as ``benchmarks/tiny_grpo.py``) once per seed; the seed sets the model's
sampling, the training prompts and their order, not the held-out problems (the same 500 for
every seed). It writes, per seed: greedy strict accuracy before and after on the 500
held-out problems, the gain, the wall time, the reward curve and the 200-problem accuracy
curve; and over seeds: the mean, the sample standard deviation and the range of the gain.
A PNG next to the JSON draws every seed's curves.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, machine_info  # noqa: E402

from grpo_lib.presets import get_preset  # noqa: E402
from grpo_lib.train import run_preset  # noqa: E402


def _spread(xs: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(xs), 4),
        "std": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0,
        "min": round(min(xs), 4),
        "max": round(max(xs), 4),
    }


def run_seed(seed: int, out_dir: Path, quick: bool) -> dict:
    overrides = {"seed": seed, "output_dir": str(out_dir / f"seed{seed}"), "save_steps": 0, "progress_bar": False}
    if quick:
        overrides.update(max_steps=3, per_device_train_batch_size=32)
    preset = get_preset("tiny").with_config(**overrides)
    if quick:
        from dataclasses import replace

        preset = replace(preset, eval_steps=0)
    t0 = time.time()
    s = run_preset(preset, resume=False, do_eval=True, progress=False, eval_limit=40 if quick else None)
    wall = time.time() - t0
    history = [json.loads(line) for line in (Path(overrides["output_dir"]) / "metrics.jsonl").read_text().splitlines()]
    return {
        "seed": seed,
        "accuracy_before": round(s["accuracy_before"], 4),
        "accuracy_after": round(s["accuracy_after"], 4),
        "gain": round(s["accuracy_gain"], 4),
        "wall_seconds": round(wall, 1),
        "train_seconds": s["train_seconds"],
        "steps": s["steps"],
        "reward": [round(m["reward"], 4) for m in history],
        "shows_work": [round(m.get("rewards/shows_work_reward/mean", float("nan")), 4) for m in history],
        "eval_steps": [m["step"] for m in history if "eval/accuracy" in m],
        "eval_accuracy": [round(m["eval/accuracy"], 4) for m in history if "eval/accuracy" in m],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, r in enumerate(runs):
        c = colors[i % len(colors)]
        steps = list(range(1, len(r["reward"]) + 1))
        axes[0].plot(steps, r["reward"], color=c, lw=1, label=f"seed {r['seed']}")
        if r["eval_steps"]:
            axes[1].plot(r["eval_steps"], r["eval_accuracy"], "o-", color=c, ms=3, lw=1, label=f"seed {r['seed']}")
        axes[1].scatter([r["steps"]], [r["accuracy_after"]], marker="*", s=90, color=c)
    g = result["summary"]["gain"]
    axes[0].set(xlabel="training step", ylabel="mean reward of the step's 128 samples", title="training reward, per seed")
    axes[1].set(xlabel="training step", ylabel="greedy held-out accuracy",
                title="held-out accuracy (dots: 200 problems; star: 500)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Tiny preset over {len(runs)} seeds: gain {100 * g['mean']:+.1f} points "
                 f"(sd {100 * g['std']:.1f}, range {100 * g['min']:+.1f} to {100 * g['max']:+.1f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(RESULTS / "tiny_grpo_seeds.json"))
    ap.add_argument("--run-dir", default="runs/bench-tiny-seeds")
    ap.add_argument("--quick", action="store_true", help="2 seeds x 3 steps on 40 problems: checks the script runs")
    args = ap.parse_args(argv)
    seeds = args.seeds[:2] if args.quick else args.seeds
    if len(set(seeds)) < 2:
        ap.error(f"--seeds needs at least 2 distinct seeds to give a spread, got {seeds}")
    machine = machine_info()
    runs = []
    for seed in seeds:
        runs.append(run_seed(seed, Path(args.run_dir), args.quick))
        print(json.dumps({k: v for k, v in runs[-1].items() if not isinstance(v, list)}), flush=True)
    result = {
        "command": "python benchmarks/tiny_grpo_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "quick": args.quick,
        "summary": {
            "seeds": seeds,
            "accuracy_before": _spread([r["accuracy_before"] for r in runs]),
            "accuracy_after": _spread([r["accuracy_after"] for r in runs]),
            "gain": _spread([r["gain"] for r in runs]),
            "wall_seconds": _spread([r["wall_seconds"] for r in runs]),
        },
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    try:
        plot(result, out.with_suffix(".png"))
    except ImportError:  # pragma: no cover - matplotlib is optional
        pass
    s = result["summary"]
    print(json.dumps(s, indent=1))
    print(f"gain over {len(seeds)} seeds: {100 * s['gain']['mean']:+.1f} points (sd {100 * s['gain']['std']:.1f}; "
          f"range {100 * s['gain']['min']:+.1f} to {100 * s['gain']['max']:+.1f}); written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
