"""The command line: ``python -m grpo_lib.train --preset tiny``.

Trains a preset's model with GRPO, showing progress, and evaluates it greedily on the
held-out set before and after. Writes to ``--output-dir``:

* ``metrics.jsonl``: one line per step (TRL's metric names, plus ``eval/accuracy``
  every ``eval_steps`` steps on a fixed subset of the held-out set);
* ``summary.json``: ``accuracy_before``, ``accuracy_after`` (strict, full held-out set,
  with 95% intervals), ``wall_seconds``, ``train_seconds``, ``steps`` and the config;
* ``curves.png``: reward per step and held-out accuracy;
* ``checkpoint-<step>/`` every ``save_steps`` (``--resume`` continues from the newest)
  and ``final-model/``.

Any config field can be overridden: ``--set learning_rate=5e-5 --set beta=0.04``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from grpo_lib.presets import PRESETS, Preset, get_preset  # noqa: E402

__all__ = ["main", "run_preset", "plot_curves"]


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _evaluate(preset: Preset, model, tokenizer, rows: list[dict], progress: bool):
    from grpo_lib.evaluate import evaluate

    return evaluate(
        model,
        tokenizer,
        [r["prompt"] for r in rows],
        [r["answer"] for r in rows],
        max_new_tokens=preset.eval_max_new_tokens,
        batch_size=preset.eval_batch_size,
        progress=progress,
        stop_strings=preset.eval_stop_strings,
    )


class _EvalCallback:
    """Adds ``eval/accuracy`` (strict, greedy, a fixed held-out subset) every N steps."""

    def __init__(self, preset: Preset, model, tokenizer, rows: list[dict], every: int) -> None:
        self.preset, self.model, self.tokenizer, self.rows, self.every = preset, model, tokenizer, rows, every

    def on_step_end(self, step: int, metrics: dict) -> None:
        if self.every and step % self.every == 0:
            res = _evaluate(self.preset, self.model, self.tokenizer, self.rows, progress=False)
            metrics["eval/accuracy"] = res.strict_accuracy
            metrics["eval/lenient_accuracy"] = res.lenient_accuracy


def plot_curves(log_history: list[dict], acc_before: float | None, acc_after: float | None, path: Path,
                title: str = "GRPO") -> Path:
    """Reward per step (and a moving average) and held-out accuracy, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in log_history]
    reward = [m["reward"] for m in log_history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(steps, reward, lw=0.8, alpha=0.5, label="reward (batch mean)")
    k = max(1, len(reward) // 20)
    if len(reward) >= k > 1:
        ma = [sum(reward[max(0, i - k + 1) : i + 1]) / len(reward[max(0, i - k + 1) : i + 1]) for i in range(len(reward))]
        ax1.plot(steps, ma, lw=2, label=f"moving average ({k})")
    parts = sorted({key for m in log_history for key in m if key.startswith("rewards/") and key.endswith("/mean")})
    if len(parts) > 1:  # several reward functions (some may be weight-0 diagnostics): each one's mean
        for key in parts:
            vals = [m.get(key, float("nan")) for m in log_history]
            w = max(1, len(vals) // 20)
            sm = [sum(vals[max(0, i - w + 1): i + 1]) / len(vals[max(0, i - w + 1): i + 1]) for i in range(len(vals))]
            ax1.plot(steps, sm, lw=1.2, ls="--", label=key.split("/")[1])
    ax1.set_xlabel("step")
    ax1.set_ylabel("reward")
    ax1.set_title("training reward")
    ax1.legend(loc="lower right")
    ev = [(m["step"], m["eval/accuracy"]) for m in log_history if "eval/accuracy" in m]
    if ev:
        ax2.plot([s for s, _ in ev], [a for _, a in ev], "o-", label="subset during training")
    pts = []
    if acc_before is not None:
        pts.append((0, acc_before))
    if acc_after is not None and steps:
        pts.append((steps[-1], acc_after))
    if pts:
        ax2.plot([s for s, _ in pts], [a for _, a in pts], "s", ms=9, label="full held-out set (before, after)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("greedy accuracy (strict)")
    ax2.set_ylim(0, 1)
    ax2.set_title("held-out accuracy")
    ax2.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_preset(preset: Preset, resume: bool = False, do_eval: bool = True, progress: bool = True,
               eval_limit: int | None = None) -> dict:
    """Run a preset end to end; returns the summary dict (also written to summary.json)."""
    from grpo_lib.trainer import GRPOTrainer

    t_start = time.time()
    if preset.torch_threads:
        import torch

        torch.set_num_threads(preset.torch_threads)
    cfg = preset.config
    out = Path(cfg.output_dir or "runs/" + preset.name)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = preset.load_model(cfg)
    train_rows, eval_rows = preset.load_data(cfg.seed)
    if eval_limit is not None:
        eval_rows = eval_rows[:eval_limit]

    before_file = out / "eval_before.json"
    acc_before = ci_before = None
    if do_eval:
        if resume and before_file.exists():
            saved = json.loads(before_file.read_text())
            acc_before, ci_before = saved["accuracy"], saved["ci95"]
        else:
            res = _evaluate(preset, model, tokenizer, eval_rows, progress)
            acc_before, ci_before = res.strict_accuracy, list(res.strict_ci)
            before_file.write_text(json.dumps({"accuracy": acc_before, "ci95": ci_before, "n": res.n}))
            print(f"before: greedy strict accuracy {acc_before:.3f} on {res.n} held-out problems", flush=True)

    callbacks = []
    if do_eval and preset.eval_steps:
        callbacks.append(_EvalCallback(preset, model, tokenizer, eval_rows[: preset.eval_subset], preset.eval_steps))
    trainer = GRPOTrainer(
        model, tokenizer, preset.reward_funcs, train_rows, cfg, reward_weights=preset.reward_weights, callbacks=callbacks
    )
    # the eval callback must see the trainer's model (LoRA may have wrapped it)
    for cb in callbacks:
        cb.model = trainer.model
    t_train = time.time()
    history = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.time() - t_train
    trainer.save_model(out / "final-model")

    acc_after = ci_after = None
    if do_eval:
        res = _evaluate(preset, trainer.model, tokenizer, eval_rows, progress)
        acc_after, ci_after = res.strict_accuracy, list(res.strict_ci)
        print(f"after:  greedy strict accuracy {acc_after:.3f} on {res.n} held-out problems", flush=True)
    wall = time.time() - t_start
    last = history[-10:]
    summary = {
        "preset": preset.name,
        "accuracy_before": acc_before,
        "accuracy_before_ci95": ci_before,
        "accuracy_after": acc_after,
        "accuracy_after_ci95": ci_after,
        "accuracy_gain": None if acc_before is None or acc_after is None else acc_after - acc_before,
        "eval_n": len(eval_rows),
        "wall_seconds": round(wall, 1),
        "train_seconds": round(train_seconds, 1),
        "steps": trainer.global_step,
        "resumed": bool(resume),
        "mean_step_time": sum(m["step_time"] for m in history) / max(1, len(history)),
        "final_reward_mean_last10": sum(m["reward"] for m in last) / max(1, len(last)),
        "config": cfg.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curves(history, acc_before, acc_after, out / "curves.png", title=f"GRPO, preset {preset.name}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m grpo_lib.train", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", help=f"one of {sorted(PRESETS)}")
    ap.add_argument("--output-dir", help="where to write (default: the preset's, e.g. runs/tiny)")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--learning-rate", type=float)
    ap.add_argument("--num-generations", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--save-steps", type=int)
    ap.add_argument("--eval-steps", type=int, help="accuracy on a held-out subset every N steps (0 = off)")
    ap.add_argument("--eval-limit", type=int, help="evaluate on only the first N held-out rows (quick checks)")
    ap.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: the preset's)")
    ap.add_argument("--time-budget", help="wall time the run may take, e.g. 60m or 1h30m: the pre-flight forecast is checked against it")
    ap.add_argument("--no-preflight", action="store_true", help="skip the pre-flight checks (grpo_lib.preflight)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any GRPOConfig field")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        preset = get_preset(args.preset)
        overrides: dict[str, Any] = {}
        for flag, name in [("output_dir", "output_dir"), ("max_steps", "max_steps"), ("learning_rate", "learning_rate"),
                           ("num_generations", "num_generations"), ("seed", "seed"), ("save_steps", "save_steps")]:
            v = getattr(args, flag)
            if v is not None:
                overrides[name] = v
        for item in args.set:
            if "=" not in item:
                raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            overrides[k.strip()] = _parse_value(v.strip())
        if args.no_progress:
            overrides["progress_bar"] = False
        if args.time_budget is not None:
            overrides["time_budget"] = args.time_budget
        if args.no_preflight:
            overrides["preflight"] = False
        preset = preset.with_config(**overrides)
        if args.eval_steps is not None:
            preset.eval_steps = args.eval_steps
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            preset.torch_threads = args.threads
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = run_preset(preset, resume=args.resume, do_eval=not args.no_eval, progress=not args.no_progress,
                         eval_limit=args.eval_limit)
    keys = ("accuracy_before", "accuracy_after", "accuracy_gain", "wall_seconds", "steps")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"wrote {Path(preset.config.output_dir or '')}/{{metrics.jsonl,summary.json,curves.png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
