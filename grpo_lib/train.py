"""Train a preset's model with GRPO and evaluate it greedily before and after.

    python -m grpo_lib.train --preset tiny                       # the tiny model, CPU, ~2-4 min
    python -m grpo_lib.train --preset tiny --resume              # continue a stopped run
    python -m grpo_lib.train --config run.yaml                   # GRPOConfig fields from YAML, as TRL's scripts
    python -m grpo_lib.train --preset gsm8k-qwen0.5b-lora --model_name_or_path Qwen/Qwen2.5-1.5B-Instruct

Settings, lowest to highest priority: the preset, the --config YAML file (any GRPOConfig
field, plus preset, model_name_or_path, dataset_name, output_dir), the flags, --set.

The output folder (--output-dir, default the preset's, e.g. runs/tiny) gets:

  metrics.jsonl        one JSON object per step (TRL's metric names, plus eval/accuracy on
                       a held-out subset every --eval-steps); strict JSON, null where a
                       metric was not computed
  summary.json         accuracy before/after (strict, greedy, the full held-out set, 95%
                       intervals), wall and train seconds, steps, the config used
  config.json          the GRPOConfig the run trained with (reward weights included)
  run.json             the preset, model and data set, for --resume's checks
  eval_before.json     the accuracy before training (reused by --resume)
  curves.png           reward per step and held-out accuracy
  checkpoint-<step>/   every save_steps (--resume continues from the newest; at most
                       save_total_limit are kept)
  final-model/         the trained model and tokenizer, for from_pretrained: the whole model
                       (full fine-tuning) or the LoRA adapter (LoRA presets; --save-merged
                       also writes final-model-merged/, the base with the adapter merged in)
  tensorboard/         with --report_to tensorboard

A folder that already holds a run is refused unless --resume (continue it) or --overwrite
(delete its files first). Ctrl-C finishes the current step, saves it as a checkpoint and
prints the command that resumes (exit code 130).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from grpo_lib.presets import PRESETS, Preset, get_preset

__all__ = ["main", "run_preset", "plot_curves", "build_parser", "prepare_output_dir", "RUN_FILES"]

#: What a run writes into its output folder (``--overwrite`` deletes these, nothing else).
RUN_FILES = ("metrics.jsonl", "summary.json", "config.json", "run.json", "eval_before.json", "curves.png",
             "final-model", "final-model-merged", "tensorboard", "tiny-chat-base")


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
    if ev or pts:
        ax2.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _round(x: float | None, digits: int = 4) -> float | None:
    """A stored figure, rounded (4 decimals for a fraction: 0.1 of a percentage point)."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def run_preset(preset: Preset, resume: bool = False, do_eval: bool = True, progress: bool = True,
               eval_limit: int | None = None, save_merged: bool = False) -> dict:
    """Run a preset end to end; returns the summary dict (also written to summary.json).

    Writes into ``preset.config.output_dir`` whatever is there (the command line checks
    the folder first: :func:`prepare_output_dir`)."""
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
        eval_rows = type(eval_rows)(eval_rows[:eval_limit], eval_rows.source, eval_rows.is_fixture) \
            if hasattr(eval_rows, "is_fixture") else eval_rows[:eval_limit]

    before_file = out / "eval_before.json"
    acc_before = ci_before = res_before = None
    if do_eval:
        if resume and before_file.exists():
            saved = json.loads(before_file.read_text())
            acc_before, ci_before = saved["accuracy"], saved["ci95"]
        else:
            res = res_before = _evaluate(preset, model, tokenizer, eval_rows, progress)
            acc_before, ci_before = res.strict_accuracy, list(res.strict_ci)
            before_file.write_text(json.dumps({"accuracy": acc_before, "ci95": ci_before, "n": res.n}, allow_nan=False))
            print(f"before: greedy strict accuracy {acc_before:.3f} on {res.n} held-out problems", flush=True)

    callbacks = []
    if do_eval and preset.eval_steps:
        callbacks.append(_EvalCallback(preset, model, tokenizer, eval_rows[: preset.eval_subset], preset.eval_steps))
    trainer = GRPOTrainer(
        model, tokenizer, preset.reward_funcs, train_rows, cfg, callbacks=callbacks,
        # --set reward_weights=[...] (in the config) wins over the preset's weights
        reward_weights=cfg.reward_weights if cfg.reward_weights is not None else preset.reward_weights,
    )
    cfg = trainer.config  # the config used (reward weights recorded)
    # the eval callback must see the trainer's model (LoRA may have wrapped it)
    for cb in callbacks:
        cb.model = trainer.model
    t_train = time.time()
    history = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.time() - t_train
    trainer.save_model(out / "final-model")
    if save_merged and trainer.is_peft:
        trainer.save_model(out / "final-model-merged", merged=True)

    acc_after = ci_after = None
    if do_eval:
        res = _evaluate(preset, trainer.model, tokenizer, eval_rows, progress)
        acc_after, ci_after = res.strict_accuracy, list(res.strict_ci)
        print(f"after:  greedy strict accuracy {acc_after:.3f} on {res.n} held-out problems", flush=True)
    wall = time.time() - t_start
    last = history[-10:]
    summary = {
        "preset": preset.name,
        "model": preset.model_name_or_path,
        # where the rows came from, when the loader says (GSM8K: a file, the hub, or the fixture sample)
        **({"data_source": getattr(eval_rows, "source"), "data_is_fixture": getattr(eval_rows, "is_fixture")}
           if hasattr(eval_rows, "is_fixture") else {}),
        "accuracy_before": _round(acc_before),
        "accuracy_before_ci95": None if ci_before is None else [_round(c) for c in ci_before],
        "accuracy_after": _round(acc_after),
        "accuracy_after_ci95": None if ci_after is None else [_round(c) for c in ci_after],
        "accuracy_gain": None if acc_before is None or acc_after is None else _round(acc_after - acc_before),
        "eval_n": len(eval_rows),
        "wall_seconds": round(wall, 1),
        "train_seconds": round(train_seconds, 1),
        "steps": trainer.global_step,
        "resumed": bool(resume),
        "mean_step_time": _round(sum(m["step_time"] for m in history) / max(1, len(history)), 3),
        "final_reward_mean_last10": _round(sum(m["reward"] for m in last) / max(1, len(last))),
        "final_model": "LoRA adapter" + (" (and final-model-merged/)" if save_merged else "")
        if trainer.is_peft else "full model",
        "config": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in cfg.to_dict().items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    from grpo_lib.card import write_run_card  # the run card again, now with the evaluation and leakage check
    write_run_card(trainer, out, train_source=preset.load_data, eval_rows=eval_rows, eval_source=preset.load_data,
                   eval_before=(res_before or before_file) if do_eval else None, eval_after=res if do_eval else None)
    plot_curves(history, acc_before, acc_after, out / "curves.png", title=f"GRPO, preset {preset.name}")
    return summary


def _epilog() -> str:
    from dataclasses import fields

    from grpo_lib.config import GRPOConfig

    lines = ["presets:"]
    for name in sorted(PRESETS):
        try:
            desc = get_preset(name).description
        except Exception as err:  # pragma: no cover - a broken preset must not break --help
            desc = f"(unavailable: {err})"
        lines.append(f"  {name:<22} {desc}")
    names = [f.name for f in fields(GRPOConfig)]
    lines.append("")
    lines.append("--set FIELD=VALUE and --config YAML accept any GRPOConfig field (see grpo_lib/config.py):")
    row = "  "
    for n in names:
        if len(row) + len(n) + 2 > 92:
            lines.append(row.rstrip())
            row = "  "
        row += n + ", "
    lines.append(row.rstrip(", "))
    lines.append("Values are Python literals: --set beta=0.04 --set epsilon_high=0.28 --set report_to=[\'tensorboard\']")
    return "\n".join(lines)


#: Flags that take a value (for the negative-number rewrite in :func:`_join_negative_values`).
_VALUE_FLAGS: set[str] = set()


def _flag(ap: argparse.ArgumentParser, name: str, **kw: Any) -> None:
    """A flag with both spellings: ``--max-steps`` and TRL's ``--max_steps``."""
    dash, under = "--" + name.replace("_", "-"), "--" + name.replace("-", "_")
    names = [dash] if dash == under else [dash, under]
    ap.add_argument(*names, dest=name.replace("-", "_"), **kw)
    if kw.get("action") is None:
        _VALUE_FLAGS.update(names)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m grpo_lib.train", description=__doc__, epilog=_epilog(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _flag(ap, "preset", default=None, help="the recipe to run (listed below); default: tiny, or the --config file's")
    _flag(ap, "config", metavar="YAML", help="a YAML file of GRPOConfig fields (and preset, model_name_or_path, "
          "dataset_name, output_dir), as TRL's scripts accept")
    _flag(ap, "output_dir", help="where to write (default: the preset's, e.g. runs/tiny)")
    _flag(ap, "resume", action="store_true", help="continue the run in the output folder from its newest checkpoint")
    _flag(ap, "overwrite", action="store_true", help="delete the output folder's previous run files first")
    _flag(ap, "model_name_or_path", metavar="NAME_OR_DIR",
          help="GSM8K presets: train this causal LM (hub id or folder) instead of the preset's")
    _flag(ap, "dataset_name", metavar="NAME_OR_DIR",
          help="GSM8K presets: 'openai/gsm8k' (a local copy, else the hub) or a folder with train.jsonl and test.jsonl")
    _flag(ap, "max_steps", type=int, help="training steps (GRPOConfig.max_steps)")
    _flag(ap, "learning_rate", type=float, help="AdamW learning rate")
    _flag(ap, "num_generations", type=int, help="G, completions per prompt")
    _flag(ap, "seed", type=int, help="seed of the data order, sampling and initialisation")
    _flag(ap, "save_steps", type=int, help="a checkpoint every N steps (0 = never)")
    _flag(ap, "save_total_limit", type=int, help="keep only the newest N checkpoints")
    _flag(ap, "report_to", help="'none' (metrics.jsonl only), 'tensorboard' or 'all' (TRL's names)")
    _flag(ap, "eval_steps", type=int, help="accuracy on a held-out subset every N steps (0 = off)")
    _flag(ap, "eval_limit", type=int, help="evaluate on only the first N held-out rows (quick checks)")
    _flag(ap, "no_eval", action="store_true", help="skip the before/after evaluation")
    _flag(ap, "no_progress", action="store_true", help="no progress bars")
    _flag(ap, "save_merged", action="store_true", help="LoRA presets: also write final-model-merged/")
    _flag(ap, "threads", type=int, help="torch CPU threads (default: the preset's)")
    _flag(ap, "time_budget", metavar="DURATION",
          help="wall time the run may take, e.g. 60m or 1h30m: the pre-flight forecast is checked against it")
    _flag(ap, "no_preflight", action="store_true", help="skip the pre-flight checks (grpo_lib.preflight)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override any GRPOConfig field (names below); repeat for several")
    _VALUE_FLAGS.add("--set")
    return ap


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--learning-rate -5e-4`` as ``--learning-rate=-5e-4``: argparse reads a value that
    starts with "-" and is not a plain number (``-5e-4``) as an unknown flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUE_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-") and len(argv[i + 1]) > 1 \
                and not argv[i + 1].startswith("--"):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


_YAML_RUN_KEYS = ("preset", "model_name_or_path", "dataset_name", "output_dir")


def _read_yaml(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(run keys, GRPOConfig fields)`` from a YAML mapping; unknown keys are an error."""
    from dataclasses import fields

    import yaml

    from grpo_lib.config import GRPOConfig

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--config {path!r}: no such file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"--config {path!r}: not valid YAML ({err})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path!r}: expected a mapping of field: value, got {type(data).__name__}")
    valid = {f.name for f in fields(GRPOConfig)}
    unknown = sorted(k for k in data if k not in valid and k not in _YAML_RUN_KEYS)
    if unknown:
        raise ValueError(f"--config {path!r}: unknown field(s) {unknown}; use GRPOConfig fields "
                         f"({', '.join(sorted(valid))}) or {', '.join(_YAML_RUN_KEYS)}")
    run = {k: data[k] for k in _YAML_RUN_KEYS if k in data}
    cfg = {k: v for k, v in data.items() if k in valid and k != "output_dir"}
    return run, cfg


def _has_run(out: Path) -> list[str]:
    """The names in ``out`` that belong to a run (empty when there is no previous run)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith("checkpoint-"))


def prepare_output_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder that holds a run, unless ``resume`` (continue it) or
    ``overwrite`` (delete its run files: ``RUN_FILES`` and ``checkpoint-*``, nothing else)."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run, or replace it")
    found = _has_run(out)
    if not found or resume:
        return
    if not overwrite:
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise ValueError(f"{out} already holds a run ({shown}). Continue it with --resume, replace it with "
                         "--overwrite, or choose another --output-dir")
    for name in found:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()


def _check_resume(out: Path, run_info: dict[str, Any], cfg) -> None:
    """On --resume: the same preset, model and data, and no setting that breaks the run."""
    from grpo_lib.trainer import _checkpoint_dirs, resume_config_changes

    changed = []
    saved_run = out / "run.json"
    if saved_run.is_file():
        old = json.loads(saved_run.read_text())
        changed += [f"{k}: {old.get(k)!r} in the run, {v!r} now" for k, v in run_info.items()
                    if k != "argv" and old.get(k) != v]
    ckpts = _checkpoint_dirs(out)
    if ckpts:
        state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
        changed += resume_config_changes(state.get("config") or {}, cfg.to_dict())
    if changed:
        raise ValueError(
            f"--resume in {out} with changed settings:\n  - " + "\n  - ".join(changed)
            + "\nA resumed run continues the saved one: only max_steps, save_steps, logging_steps, "
            "save_total_limit, report_to and the progress bar may change. Resume with the original "
            "settings, or start a new run (--overwrite, or another --output-dir)."
        )


def _resume_command(argv: list[str], out: Path) -> str:
    """The command that continues this run: the same arguments, --resume, no --overwrite."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    if not any(a.split("=")[0] in ("--output-dir", "--output_dir") for a in args):
        args += ["--output-dir", str(out)]
    return shlex.join(["python", "-m", "grpo_lib.train", *args, "--resume"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(_join_negative_values(argv))
    try:
        yaml_run, yaml_cfg = _read_yaml(args.config) if args.config else ({}, {})
        preset = get_preset(args.preset or yaml_run.get("preset") or "tiny")
        model_name = args.model_name_or_path or yaml_run.get("model_name_or_path")
        dataset_name = args.dataset_name or yaml_run.get("dataset_name")
        if model_name is not None or dataset_name is not None:
            if preset.retarget is None:
                raise ValueError(f"--model_name_or_path/--dataset_name apply to the GSM8K presets; preset "
                                 f"{preset.name!r} trains {preset.model_name_or_path} on its own task")
            preset = preset.retarget(model_name, dataset_name)
        overrides: dict[str, Any] = dict(yaml_cfg)
        if yaml_run.get("output_dir") is not None:
            overrides["output_dir"] = str(yaml_run["output_dir"])
        for name in ("output_dir", "max_steps", "learning_rate", "num_generations", "seed", "save_steps",
                     "save_total_limit", "report_to"):
            v = getattr(args, name)
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
        if preset.config.reward_weights is None and preset.reward_weights is not None:
            preset = preset.with_config(reward_weights=list(preset.reward_weights))  # record what is used
        if preset.config.output_dir is None:
            preset = preset.with_config(output_dir=f"runs/{preset.name}")
        if args.eval_steps is not None:
            preset.eval_steps = args.eval_steps
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be >= 1, got {args.threads}")
            preset.torch_threads = args.threads
        out = Path(preset.config.output_dir)
        run_info = {"preset": preset.name, "model_name_or_path": preset.model_name_or_path,
                    "dataset_name": dataset_name or "default"}
        prepare_output_dir(out, args.resume, args.overwrite)
        if args.resume:
            _check_resume(out, run_info, preset.config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from grpo_lib.trainer import TrainingInterrupted, _checkpoint_dirs

    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({**run_info, "argv": argv}, indent=2) + "\n")
    try:
        summary = run_preset(preset, resume=args.resume, do_eval=not args.no_eval, progress=not args.no_progress,
                             eval_limit=args.eval_limit, save_merged=args.save_merged)
    except TrainingInterrupted as stop:
        where = f"checkpoint {stop.checkpoint}" if stop.checkpoint else "no checkpoint (no output folder)"
        print(f"\nstopped at step {stop.step} ({where}); resume with:\n  {_resume_command(argv, out)}",
              file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        ckpts = _checkpoint_dirs(out)
        last = f"the newest checkpoint is {ckpts[-1]}" if ckpts else "no checkpoint yet (a resume starts at step 0)"
        print(f"\nstopped ({last}); resume with:\n  {_resume_command(argv, out)}", file=sys.stderr, flush=True)
        return 130
    keys = ("accuracy_before", "accuracy_after", "accuracy_gain", "wall_seconds", "steps")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"wrote {out}/{{metrics.jsonl,summary.json,config.json,curves.png,final-model/}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
