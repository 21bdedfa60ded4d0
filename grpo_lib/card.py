"""The GRPO run card: a record of one training run, complete enough to audit it.

Every ``GRPOTrainer.train()`` with an ``output_dir`` writes ``run_card.json`` and
``run_card.md`` there when it ends (finished, interrupted or failed); ``python -m
grpo_lib.train`` rewrites them after its final evaluation with the before/after numbers and
the leakage check. Print one with::

    python -m grpo_lib.card RUN_DIR

What a card records, every field read from the run itself (its config, its model, its
reward functions' code, its data and its logged metrics), none typed by hand:

* the **base model** (name or path, parameter counts, a sha256 of its weights taken before
  the first step), the **reference policy** (adapter off / frozen copy / none at β = 0),
  the **old-policy rule** (μ);
* every **reward function** and its weight, with source file, first line and a sha256 of its
  source code;
* the **training data** and the **evaluation data** (rows, columns, a sha256 of the prompts,
  the function that made them where known);
* sampling (temperature, top-p, top-k, G, completion cap), the objective (advantage
  scaling, ε / ε_high, β and KL estimator, loss type, importance-sampling level, truncation
  mask), and the full config;
* what the run did: zero-signal (skipped) groups and truncated completions counted over the
  run, tokens generated, time, device, dtype, library versions, git commit;
* the **leakage check** (``grpo_lib.leakage``) and the **evaluation** before and after
  (strict and lenient with 95% intervals, answer lengths); an evaluation is called
  *held-out* only when the leakage check found no overlap.

The fields follow the list of what a governance-grade GRPO record should identify (base
model, reference and old policy, reward source and verifier code, prompt distribution,
temperature, G, normalisation, clipping and KL, loss variant, rejected samples,
decontamination, budget, before/after behaviour).

Hashing the weights reads every tensor once (about 1 s per GB on a CPU).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import json
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "build_run_card",
    "render_markdown",
    "write_run_card",
    "weights_sha256",
    "callable_record",
    "texts_sha256",
    "library_versions",
    "git_state",
    "begin_run_card",
    "finish_run_card",
    "main",
]

CARD_VERSION = 1
_ROOT = Path(__file__).resolve().parents[1]
_ADAPTER_MARKERS = ("lora_", "modules_to_save")


# ------------------------------------------------------------------------- hashes
def weights_sha256(model: Any, include_adapter: bool = False) -> str:
    """sha256 over the model's ``state_dict``: each tensor's name, dtype, shape and bytes,
    in name order. Adapter tensors (``lora_*``) are left out unless ``include_adapter``, and
    peft's name wrappers (``base_model.model.``, ``.base_layer``) are removed, so a base
    model hashes the same with or without a LoRA adapter around it.
    """
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if not include_adapter and any(m in name for m in _ADAPTER_MARKERS):
            continue
        if not isinstance(t, torch.Tensor):
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of a list of strings, in order (each one length-prefixed)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


def _rel(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(_ROOT))
    except (ValueError, OSError):
        return str(p)


def callable_record(func: Callable) -> dict[str, Any]:
    """Name, module, source file (relative to the repository when inside it), first line
    and a sha256 of the source code of a function (``functools.partial`` unwrapped, its
    bound arguments recorded). When the source cannot be read (a builtin, a function made
    by ``exec``), the hash is over its bytecode and constants, and ``source_sha256`` says so.
    """
    partial_args: dict[str, Any] = {}
    f = func
    while isinstance(f, functools.partial):
        partial_args.update({**{f"arg{i}": repr(a) for i, a in enumerate(f.args)},
                             **{k: repr(v) for k, v in f.keywords.items()}})
        f = f.func
    rec: dict[str, Any] = {
        "name": getattr(f, "__name__", type(f).__name__),
        "module": getattr(f, "__module__", None),
        "qualname": getattr(f, "__qualname__", None),
    }
    if partial_args:
        rec["partial"] = partial_args
    target = f if (inspect.isfunction(f) or inspect.ismethod(f) or inspect.isclass(f)) else type(f)
    try:
        rec["file"] = _rel(inspect.getsourcefile(target))
    except TypeError:
        rec["file"] = None
    try:
        lines, start = inspect.getsourcelines(target)
        rec["line"] = start
        rec["source_sha256"] = hashlib.sha256("".join(lines).encode()).hexdigest()
    except (OSError, TypeError):
        rec["line"] = None
        code = getattr(f, "__code__", None)
        if code is not None:
            blob = code.co_code + repr(code.co_consts).encode()
            rec["source_sha256"] = "bytecode:" + hashlib.sha256(blob).hexdigest()
        else:
            rec["source_sha256"] = None
    return rec


# --------------------------------------------------------------------- environment
def library_versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries a run depends on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "grpo-lib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_state(path: Path = _ROOT) -> dict[str, Any]:
    """The git commit of the checkout holding ``grpo_lib`` and whether it has uncommitted
    changes; ``commit: None`` outside a git checkout (best effort, never raises)."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


# ------------------------------------------------------------------------- pieces
def _model_record(trainer: Any, base_sha: str | None) -> dict[str, Any]:
    model = trainer.model
    params = list(model.parameters())
    return {
        "name_or_path": _rel(getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)),
        "architecture": type(getattr(getattr(model, "base_model", model), "model", model)).__name__
        if trainer.is_peft else type(model).__name__,
        "num_parameters": sum(p.numel() for p in params),
        "num_trainable": sum(p.numel() for p in params if p.requires_grad),
        "dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in params}),
        "weights_sha256": base_sha,
        "weights_sha256_of": "the base weights (no adapter) before the first step",
        "fine_tuning": f"LoRA (r={trainer.config.lora_r}, alpha={trainer.config.lora_alpha})" if trainer.is_peft else "full",
    }


def _reference_record(trainer: Any) -> dict[str, Any]:
    cfg = trainer.config
    if cfg.beta == 0:
        rule = "none: beta = 0, no KL term and no reference forward pass"
    elif trainer.is_peft:
        rule = "the base model with the LoRA adapter switched off (peft disable_adapter())"
    else:
        rule = "a frozen copy of the initial model, made when the trainer was built"
    return {"rule": rule, "beta": cfg.beta, "kl_estimator": cfg.kl_kind if cfg.beta > 0 else None,
            "reference_forwards": trainer.num_reference_forwards}


def _old_policy_record(cfg: Any) -> dict[str, Any]:
    mu = cfg.num_iterations
    if mu == 1:
        rule = ("mu = 1: one update per batch of samples; pi_old = pi_theta, the ratio is exactly 1 "
                "and the clip never binds (old log-probs not computed)")
    else:
        rule = (f"mu = {mu}: {mu} updates per batch of samples; pi_old = the sampling policy, its log-probs "
                "computed once before the updates; the ratio is clipped")
    return {"num_iterations": mu, "rule": rule}


def _rows_record(rows: Sequence[dict] | None, source: Any = None) -> dict[str, Any] | None:
    if rows is None:
        return None
    rows = list(rows)
    prompts = [r["prompt"] if isinstance(r, dict) else str(r) for r in rows]
    cols = sorted({k for r in rows if isinstance(r, dict) for k in r})
    rec: dict[str, Any] = {"rows": len(rows), "columns": cols, "prompts_sha256": texts_sha256(prompts),
                           "distinct_prompts": len(set(prompts))}
    if callable(source):
        rec["source"] = callable_record(source)
    elif source is not None:
        rec["source"] = str(source)
    return rec


def _eval_record(res: Any) -> dict[str, Any] | None:
    """An ``EvalResult``, a dict (``summary()`` or ``train.py``'s ``eval_before.json``), or a path to one."""
    if res is None:
        return None
    if isinstance(res, (str, Path)):
        p = Path(res)
        if not p.exists():
            return None
        res = json.loads(p.read_text())
    if hasattr(res, "summary") and hasattr(res, "records"):
        d = res.summary()
        recs = res.records
        if recs:
            d["mean_tokens"] = sum(r.num_tokens for r in recs) / len(recs)
            right = [r.num_tokens for r in recs if r.strict_correct]
            wrong = [r.num_tokens for r in recs if not r.strict_correct]
            d["mean_tokens_correct"] = sum(right) / len(right) if right else None
            d["mean_tokens_wrong"] = sum(wrong) / len(wrong) if wrong else None
        res = d
    if not isinstance(res, dict):
        raise TypeError(f"an evaluation must be an EvalResult, a dict or a JSON path; got {type(res).__name__}")
    res = dict(res)
    if "accuracy" in res and "strict_accuracy" not in res:  # train.py's eval_before.json
        res["strict_accuracy"] = res.pop("accuracy")
        res["strict_ci"] = res.pop("ci95", None)
    for k in ("strict_ci", "lenient_ci"):
        if res.get(k) is not None:
            res[k] = list(res[k])
    return res


def _run_counts(trainer: Any) -> dict[str, Any]:
    cfg = trainer.config
    hist = trainer.log_history
    B, P = cfg.per_device_train_batch_size, cfg.prompts_per_step

    def total(key: str, per: int) -> int:
        return int(round(sum(m.get(key, 0.0) * per for m in hist)))

    k = max(1, min(10, len(hist) // 2))  # first and last k steps (disjoint when there are 2 or more)

    def mean_last(key: str) -> float | None:
        vals = [m[key] for m in hist[-k:] if key in m and m[key] == m[key]]
        return sum(vals) / len(vals) if vals else None

    def mean_first(key: str) -> float | None:
        vals = [m[key] for m in hist[:k] if key in m and m[key] == m[key]]
        return sum(vals) / len(vals) if vals else None

    zero = total("frac_reward_zero_std", P)
    trunc = total("completions/clipped_ratio", B)
    return {
        "steps": trainer.global_step,
        "max_steps": cfg.max_steps,
        "prompts_seen": len(hist) * P,
        "completions_sampled": len(hist) * B,
        "tokens_generated": total("completions/mean_length", B),
        "zero_signal_groups": zero,
        "zero_signal_groups_handling": ("skipped: no forward or backward (beta = 0, same gradient)"
                                        if cfg.skip_zero_advantage_groups else "kept, with advantage 0"),
        "truncated_completions": trunc,
        "truncated_handling": ("rejected: masked out of the loss (mask_truncated_completions)"
                               if cfg.mask_truncated_completions else "kept in the loss"),
        "window_steps": k,
        "reward_first": mean_first("reward"),
        "reward_last": mean_last("reward"),
        "mean_length_first": mean_first("completions/mean_length"),
        "mean_length_last": mean_last("completions/mean_length"),
        "entropy_first": mean_first("entropy"),
        "entropy_last": mean_last("entropy"),
        "clip_region_mean": (sum(m.get("clip_ratio/region_mean", 0.0) for m in hist) / len(hist)) if hist else None,
        "kl_last": mean_last("kl"),
    }


def _budget(trainer: Any) -> dict[str, Any]:
    import torch

    hist = trainer.log_history
    dev = trainer.device
    dev_name = str(dev)
    if dev.type == "cuda" and torch.cuda.is_available():
        dev_name += f" ({torch.cuda.get_device_name(dev)})"
    started = getattr(trainer, "_card_started", None)
    return {
        "train_seconds": round(sum(m.get("step_time", 0.0) for m in hist), 2),
        "generation_seconds": round(sum(m.get("generation_time", 0.0) for m in hist), 2),
        "session_wall_seconds": None if started is None else round(time.time() - started, 2),
        "device": dev_name,
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
        "git": git_state(),
    }


# --------------------------------------------------------------------------- card
def build_run_card(
    trainer: Any,
    *,
    status: str | None = None,
    train_source: Any = None,
    eval_rows: Sequence[dict] | None = None,
    eval_source: Any = None,
    eval_before: Any = None,
    eval_after: Any = None,
    leakage: Any = None,
) -> dict[str, Any]:
    """The run card of ``trainer`` as a JSON-ready dict.

    Args:
        trainer: a ``GRPOTrainer`` (after or during ``train()``).
        status: ``"finished"``, ``"interrupted ..."``, ...; default: what ``train()`` recorded.
        train_source, eval_source: where the data came from: a function (recorded with its
            source hash, e.g. a preset's ``load_data``) or a string.
        eval_rows: the evaluation rows (dicts with ``"prompt"``); when given, the leakage check
            (``grpo_lib.leakage.check_leakage``, training prompts vs evaluation prompts) runs
            unless ``leakage`` (a ``LeakageReport``) is passed.
        eval_before, eval_after: an ``EvalResult``, its ``summary()`` dict, or a JSON path.
    """
    from grpo_lib.leakage import LeakageReport, check_leakage

    cfg = trainer.config
    if leakage is None and eval_rows is not None:
        leakage = check_leakage([r["prompt"] for r in trainer.dataset], [r["prompt"] for r in eval_rows])
    if leakage is not None and not isinstance(leakage, LeakageReport):
        raise TypeError(f"leakage must be a grpo_lib.leakage.LeakageReport, got {type(leakage).__name__}")
    weights = trainer.reward_weights.tolist()
    rewards = [{**callable_record(f), "weight": w} for f, w in zip(trainer.reward_funcs, weights)]
    ev_b, ev_a = _eval_record(eval_before), _eval_record(eval_after)
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "status": status or getattr(trainer, "_card_status", None) or "not trained",
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "output_dir": cfg.output_dir,
        "base_model": _model_record(trainer, getattr(trainer, "_card_base_sha256", None)),
        "reference_policy": _reference_record(trainer),
        "old_policy": _old_policy_record(cfg),
        "rewards": rewards,
        "training_data": _rows_record(trainer.dataset, train_source),
        "evaluation_data": _rows_record(eval_rows, eval_source),
        "sampling": {
            "num_generations": cfg.num_generations,
            "prompts_per_step": cfg.prompts_per_step,
            "completions_per_step": cfg.per_device_train_batch_size,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "top_k": cfg.top_k,
            "max_new_tokens": cfg.max_new_tokens,
            "sampler": cfg.sampler,
        },
        "objective": {
            "advantage_estimator": cfg.advantage_estimator,
            "advantage_scaling": cfg.scale_rewards,
            "epsilon": cfg.epsilon,
            "epsilon_high": cfg.epsilon_high if cfg.epsilon_high is not None else cfg.epsilon,
            "beta": cfg.beta,
            "kl_estimator": cfg.kl_kind if cfg.beta > 0 else None,
            "loss_type": cfg.loss_type,
            "importance_sampling_level": cfg.importance_sampling_level,
            "completion_mask": "completion tokens up to and including the first EOS"
            + ("; truncated completions masked out" if cfg.mask_truncated_completions else "; truncated completions kept"),
            "learning_rate": cfg.learning_rate,
            "max_grad_norm": cfg.max_grad_norm,
        },
        "run": _run_counts(trainer),
        "leakage": None if leakage is None else leakage.to_dict(),
        "evaluation": None if ev_b is None and ev_a is None else {
            "held_out": None if leakage is None else leakage.held_out,
            "before": ev_b,
            "after": ev_a,
        },
        "budget": _budget(trainer),
        "config": cfg.to_dict(),
    }
    return card


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "not recorded"
    if pct and isinstance(x, (int, float)):
        return f"{100 * x:.1f}%"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _ci(ci: Any) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (what ``run_card.md`` holds and ``python -m grpo_lib.card`` prints)."""
    L: list[str] = []
    add = L.append
    m, ref, old = card["base_model"], card["reference_policy"], card["old_policy"]
    add(f"# GRPO run card ({card['status']})")
    add("")
    add(f"Written {card['written_at']} from the run's own config, code and metrics; output folder `{card['output_dir']}`.")
    add("")
    add("## Policy")
    add("| | |")
    add("|---|---|")
    add(f"| base model | `{m['name_or_path']}` ({m['architecture']}, {m['num_parameters']:,} parameters, "
        f"{m['num_trainable']:,} trainable, {'/'.join(m['dtypes'])}, {m['fine_tuning']} fine-tuning) |")
    add(f"| base weights sha256 | `{m['weights_sha256']}` |")
    add(f"| reference policy | {ref['rule']} (reference forward passes: {ref['reference_forwards']}) |")
    add(f"| old policy | {old['rule']} |")
    add("")
    add("## Rewards (the verifier)")
    add("| function | weight | source | sha256 of its code |")
    add("|---|---|---|---|")
    for r in card["rewards"]:
        where = f"{r['file']}:{r['line']}" if r.get("line") else (r.get("file") or "source not found")
        extra = f" (partial: {r['partial']})" if r.get("partial") else ""
        add(f"| `{r['name']}`{extra} | {r['weight']:g} | `{where}` | `{(r['source_sha256'] or 'n/a')[:16]}…` |")
    add("")
    add("## Data")
    add("| | rows | distinct prompts | sha256 of the prompts | source |")
    add("|---|---|---|---|---|")
    for label, key in (("training", "training_data"), ("evaluation", "evaluation_data")):
        d = card.get(key)
        if d is None:
            add(f"| {label} | not given to the card | | | |")
            continue
        src = d.get("source")
        if isinstance(src, dict):
            src = f"`{src['module']}.{src['qualname']}` ({src['file']}:{src['line']})"
        add(f"| {label} | {d['rows']:,} | {d['distinct_prompts']:,} | `{d['prompts_sha256'][:16]}…` | {src or 'not recorded'} |")
    add("")
    lk = card.get("leakage")
    add("## Decontamination")
    if lk is None:
        add("Not checked: no evaluation data was given to the card, so no evaluation may be called held-out.")
    else:
        add(f"**{lk['verdict']}**. Method: {lk['method']}.")
        items = lk["exact"] + lk["near"]
        shown = items[:20]
        if items:
            add("")
            add("| eval item | train item | kind | shared text |")
            add("|---|---|---|---|")
            for it in shown:
                add(f"| {it['eval_index']} | {it['train_index']} | {it['kind']} | {it['evidence'][:80]} |")
            if len(items) > len(shown):
                add(f"| … | | | {len(items) - len(shown)} more, all listed in run_card.json |")
    add("")
    s, o = card["sampling"], card["objective"]
    add("## Sampling and objective")
    add("| | |")
    add("|---|---|")
    add(f"| group size G, prompts per step | {s['num_generations']}, {s['prompts_per_step']} ({s['completions_per_step']} completions) |")
    add(f"| temperature, top-p, top-k | {s['temperature']:g}, {s['top_p']:g}, {s['top_k']} |")
    add(f"| completion cap | {s['max_new_tokens']} tokens ({s['sampler']} sampler) |")
    add(f"| advantage estimator | {o['advantage_estimator']} |")
    add(f"| advantage scaling | {o['advantage_scaling']} |")
    add(f"| clip ε, ε_high | {o['epsilon']:g}, {o['epsilon_high']:g} |")
    add(f"| β, KL estimator | {o['beta']:g}, {o['kl_estimator'] or 'none (β = 0)'} |")
    add(f"| loss type, ratio level | {o['loss_type']}, {o['importance_sampling_level']} |")
    add(f"| mask | {o['completion_mask']} |")
    add(f"| learning rate, grad-norm clip | {o['learning_rate']:g}, {o['max_grad_norm']} |")
    add("")
    r = card["run"]
    add("## What the run did")
    add("| | |")
    add("|---|---|")
    add(f"| steps | {r['steps']} of {r['max_steps']} |")
    add(f"| completions sampled, tokens generated | {r['completions_sampled']:,}, {r['tokens_generated']:,} |")
    add(f"| zero-signal groups (all rewards equal) | {r['zero_signal_groups']:,} of {r['prompts_seen']:,}: {r['zero_signal_groups_handling']} |")
    add(f"| truncated completions | {r['truncated_completions']:,} of {r['completions_sampled']:,}: {r['truncated_handling']} |")
    add(f"| reward, first → last {r['window_steps']} steps | {_fmt(r['reward_first'])} → {_fmt(r['reward_last'])} |")
    add(f"| completion length, first → last {r['window_steps']} steps | {_fmt(r['mean_length_first'])} → {_fmt(r['mean_length_last'])} tokens |")
    add(f"| entropy, first → last {r['window_steps']} steps | {_fmt(r['entropy_first'])} → {_fmt(r['entropy_last'])} |")
    add("")
    ev = card.get("evaluation")
    add("## Evaluation")
    if ev is None:
        add("Not recorded (the trainer alone does not evaluate; `python -m grpo_lib.train` does).")
    else:
        held = ev["held_out"]
        add("Held-out: " + ("yes (the leakage check found no overlap)." if held else
                            "**no**: the leakage check found overlapping items (above)." if held is False else
                            "**not established** (no leakage check)."))
        add("")
        add("| | n | strict (95% CI) | lenient (95% CI) | mean tokens | truncated |")
        add("|---|---|---|---|---|---|")
        for label in ("before", "after"):
            e = ev.get(label)
            if e is None:
                add(f"| {label} | not recorded | | | | |")
                continue
            add(f"| {label} | {e.get('n', '?')} | {_fmt(e.get('strict_accuracy'), True)}{_ci(e.get('strict_ci'))} | "
                f"{_fmt(e.get('lenient_accuracy'), True)}{_ci(e.get('lenient_ci'))} | {_fmt(e.get('mean_tokens'))} | "
                f"{_fmt(e.get('truncated_rate'), True)} |")
    add("")
    b = card["budget"]
    v = b["versions"]
    git = b["git"]
    add("## Budget and environment")
    add(f"- training time {b['train_seconds']:.1f} s (generation {b['generation_seconds']:.1f} s); "
        f"this session's wall time {_fmt(b['session_wall_seconds'])} s")
    add(f"- device {b['device']}, {b['torch_threads']} torch threads")
    add("- " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    add(f"- git commit {git['commit'] or 'not in a git checkout'}" + (" (uncommitted changes)" if git.get("dirty") else ""))
    add("")
    add("The full config and every list above are in `run_card.json`.")
    return "\n".join(L) + "\n"


def write_run_card(trainer: Any, out_dir: str | Path | None = None, **kwargs: Any) -> Path:
    """Write ``run_card.json`` and ``run_card.md`` to ``out_dir`` (default: the run's
    ``output_dir``); ``kwargs`` go to :func:`build_run_card`. Returns the Markdown path."""
    out = Path(out_dir or trainer.config.output_dir or "")
    if not str(out) or out_dir is None and not trainer.config.output_dir:
        raise ValueError("write_run_card needs out_dir or config.output_dir")
    out.mkdir(parents=True, exist_ok=True)
    card = build_run_card(trainer, **kwargs)
    (out / "run_card.json").write_text(json.dumps(card, indent=2) + "\n")
    md = out / "run_card.md"
    md.write_text(render_markdown(card))
    return md


def begin_run_card(trainer: Any) -> None:
    """Called by ``GRPOTrainer.train()`` before anything else: remembers when the session
    started and, the first time, the sha256 of the base weights (before any update)."""
    trainer._card_started = time.time()
    if getattr(trainer, "_card_base_sha256", None) is None and trainer.global_step == 0:
        trainer._card_base_sha256 = weights_sha256(trainer.model)


def finish_run_card(trainer: Any) -> None:
    """Called by ``GRPOTrainer.train()`` when it ends, however it ends: records the status
    (finished / interrupted / failed) and writes the card; a failure to write warns and never
    hides the run's own exception."""
    exc = sys.exc_info()[1]
    if exc is None:
        status = ("finished" if trainer.global_step >= trainer.config.max_steps
                  else f"stopped at step {trainer.global_step} of {trainer.config.max_steps}")
    elif isinstance(exc, KeyboardInterrupt):
        status = f"interrupted at step {trainer.global_step}"
    else:
        status = f"failed at step {trainer.global_step}: {type(exc).__name__}"
    trainer._card_status = status
    if not trainer.config.output_dir:
        return
    try:
        write_run_card(trainer)
    except Exception as err:  # never mask the run's own error
        warnings.warn(f"could not write the run card: {type(err).__name__}: {err}", stacklevel=2)


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grpo_lib.card", description="Print a GRPO run's card.")
    ap.add_argument("run_dir", help="a run's output folder (holds run_card.json)")
    ap.add_argument("--json", action="store_true", help="print the JSON instead of Markdown")
    args = ap.parse_args(argv)
    path = Path(args.run_dir) / "run_card.json"
    if not path.exists():
        print(f"error: no run_card.json in {args.run_dir!r}: GRPOTrainer writes one when train() ends "
              "with config.output_dir set (python -m grpo_lib.train does)", file=sys.stderr)
        return 2
    card = json.loads(path.read_text())
    print(json.dumps(card, indent=2) if args.json else render_markdown(card), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
