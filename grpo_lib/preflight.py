"""Pre-flight: a few real steps before a long run, and a table of what they show.

The failures that cost learners the most hours are visible in the first two steps of a
run, before any learning: the reward is 0 everywhere because the format check never
matches (open-r1 issue #235), every completion runs into the length cap (TRL #5697;
Qwen2.5-0.5B-Instruct writes a median of about 274 tokens on GSM8K, TRL #6263), the model
never emits EOS because the prompt lacks the chat template, every group scores alike so
``frac_reward_zero_std`` = 1 and the gradient is 0 (TRL #3857), out of memory (TRL #2927),
or a run that outlasts its session. ``preflight`` runs ``measure_steps`` (default 2) real
training steps with the run's own settings and reports, one line each with a verdict and
a fix:

* completions that end with EOS against those that hit the cap; their length
  distribution and the cap that keeps 95% of them whole;
* the chat template and its generation prompt; the EOS set sampling stops on;
* each reward function's mean and share of non-zero values; the share of groups with zero
  reward std, and what would lower it;
* the time of one step (the last measured step; the first is a warm-up of the allocator
  and kernels), the forecast of the whole run (steps x step time + evaluations) against a
  budget (``time_budget``), and the peak memory (on CUDA, the headroom left). With
  ``beta = 0`` groups that score alike are skipped, so steps get cheaper as the model
  learns: ``forecast_low_seconds`` (every group skipped: steps x sampling time) is the floor.

The measured steps are **undone**: trainable weights, optimizer, scheduler, loss scaler,
every RNG state and the step counter are restored, so the run that follows is the same
run as without the check (``tests/test_preflight.py`` checks it). Their cost is
``measure_steps`` steps (1% of a 200-step run).

A hard stop (:class:`PreflightError`, nothing trained) only where the run cannot teach
anything: every sampled completion truncated, or every sampled reward identical, seen in at
least ``MIN_GROUPS_TO_STOP`` (8) groups (fewer, as in a smoke run, give a warning).
Everything else is a warning. ``GRPOTrainer.train()`` calls it on a fresh run unless
``config.preflight=False`` (``python -m grpo_lib.train --no-preflight``).
"""

from __future__ import annotations

import copy
import math
import random
import re
import statistics
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["preflight", "PreflightReport", "PreflightCheck", "PreflightError", "parse_duration", "format_seconds"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: Share of completions hitting the cap above which the pre-flight warns.
CLIPPED_WARN = 0.10
#: Share of groups with zero reward std above which the pre-flight warns.
ZERO_STD_WARN = 0.5
#: CUDA memory headroom (share of the card) under which the pre-flight warns.
HEADROOM_WARN = 0.10
#: A hard stop needs this many sampled groups; with fewer (a smoke run) it is a warning.
MIN_GROUPS_TO_STOP = 8


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90`` / ``"90s"`` / ``"60m"`` / ``"1h30m"`` / ``"2h"``; must be > 0."""
    if isinstance(value, bool):
        raise TypeError(f"a duration must be a number of seconds or a string like '60m', got {value!r}")
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            secs = float(text)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"cannot read the duration {value!r}: use e.g. '90s', '60m', '1h30m' or seconds")
            secs = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise TypeError(f"a duration must be a number of seconds or a string like '60m', got {type(value).__name__}")
    if not math.isfinite(secs) or secs <= 0:
        raise ValueError(f"a duration must be > 0 seconds, got {value!r}")
    return secs


def format_seconds(s: float) -> str:
    """``42 s``, ``7.5 min``, ``2.3 h``."""
    if s < 120:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


class PreflightError(RuntimeError):
    """The run cannot teach anything; ``.report`` holds the full table."""

    def __init__(self, report: "PreflightReport") -> None:
        self.report = report
        stops = [c for c in report.checks if c.verdict == "stop"]
        lines = "\n".join(f"  - {c.name}: {c.finding}. Fix: {c.fix}" for c in stops)
        super().__init__(
            "pre-flight stopped the run before training (nothing was trained):\n" + lines
            + "\n(to run anyway: GRPOConfig(preflight=False), or --no-preflight)\n\n" + report.table()
        )


@dataclass
class PreflightCheck:
    """One line of the table: ``verdict`` is ``"ok"``, ``"note"``, ``"warn"`` or ``"stop"``."""

    name: str
    verdict: str
    finding: str
    fix: str = ""


@dataclass
class PreflightReport:
    """What the pre-flight measured (seconds, tokens, bytes) and its checks."""

    checks: list[PreflightCheck]
    steps_measured: int
    completions: int
    groups: int
    step_seconds: float
    step_seconds_all: list[float]
    remaining_steps: int
    eval_seconds: float
    num_evaluations: int
    forecast_seconds: float
    forecast_low_seconds: float
    budget_seconds: float | None
    preflight_seconds: float
    lengths: list[int]
    clipped_ratio: float
    cap: int
    cap_95: int | None
    frac_reward_zero_std: float
    peak_memory_bytes: int | None
    memory_total_bytes: int | None
    device: str
    reward_summary: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return any(c.verdict == "stop" for c in self.checks)

    @property
    def warnings(self) -> list[PreflightCheck]:
        return [c for c in self.checks if c.verdict == "warn"]

    def table(self) -> str:
        """The plain-text table (one line per check, the fix indented below it)."""
        head = (f"Pre-flight: {self.steps_measured} measured steps, {self.groups} groups, {self.completions} "
                f"completions on {self.device} ({format_seconds(self.preflight_seconds)}; undone afterwards)")
        out = [head]
        for c in self.checks:
            out.append(f"  [{c.verdict.upper():>4}] {c.name}: {c.finding}")
            if c.fix and c.verdict != "ok":
                out.append(f"         fix: {c.fix}")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:
        rows = ["| verdict | check | finding | fix |", "|---|---|---|---|"]
        for c in self.checks:
            fix = c.fix if c.verdict != "ok" else ""
            rows.append(f"| {c.verdict.upper()} | {c.name} | {c.finding} | {fix} |".replace("\n", " "))
        return (f"**Pre-flight**: {self.steps_measured} measured steps, {self.completions} completions on "
                f"{self.device} ({format_seconds(self.preflight_seconds)}, undone afterwards)\n\n" + "\n".join(rows))


# ------------------------------------------------------------------- snapshot
def _rng_state() -> dict[str, Any]:
    import torch

    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        st["mps"] = torch.mps.get_rng_state()
    try:
        import numpy as np

        st["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(st["torch"])
    random.setstate(st["python"])
    if "cuda" in st:
        torch.cuda.set_rng_state_all(st["cuda"])
    if "mps" in st:
        torch.mps.set_rng_state(st["mps"])
    if "numpy" in st:
        import numpy as np

        np.random.set_state(st["numpy"])


def _snapshot(tr) -> dict[str, Any]:
    """Everything ``training_step`` changes, copied (weights to the CPU, to spare the GPU)."""
    return {
        "weights": {n: p.detach().to("cpu", copy=True) for n, p in tr.model.named_parameters() if p.requires_grad},
        "optimizer": copy.deepcopy(tr.optimizer.state_dict()),
        "scheduler": copy.deepcopy(tr.scheduler.state_dict()),
        "scaler": copy.deepcopy(tr.scaler.state_dict()),
        "rng": _rng_state(),
        "global_step": tr.global_step,
        "num_reference_forwards": tr.num_reference_forwards,
        "last": (tr.last_rollout, tr.last_rewards, getattr(tr, "last_reward_parts", None)),
    }


def _restore(tr, snap: dict[str, Any]) -> None:
    import torch

    own = dict(tr.model.named_parameters())
    with torch.no_grad():
        for n, t in snap["weights"].items():
            own[n].copy_(t.to(own[n].device, own[n].dtype))
    for p in tr.model.parameters():
        p.grad = None
    tr.optimizer.load_state_dict(snap["optimizer"])
    tr.scheduler.load_state_dict(snap["scheduler"])
    if snap["scaler"]:
        tr.scaler.load_state_dict(snap["scaler"])
    _set_rng_state(snap["rng"])
    tr.global_step = snap["global_step"]
    tr.num_reference_forwards = snap["num_reference_forwards"]
    tr.last_rollout, tr.last_rewards, tr.last_reward_parts = snap["last"]


# ---------------------------------------------------------------------- checks
def _percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))
    return float(s[k])


def _chat_checks(tokenizer, prompts: list[str], eos_ids: list[int]) -> list[PreflightCheck]:
    checks = []
    eos_names = [tokenizer.convert_ids_to_tokens(i) for i in eos_ids]
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        checks.append(PreflightCheck(
            "chat template", "note", "the tokenizer has none: plain-text prompts (right for a base model)",
            "an instruct model needs its template: prompts from tokenizer.apply_chat_template(..., "
            "add_generation_prompt=True), or it may never emit its end-of-turn token"))
        checks.append(PreflightCheck("EOS set", "ok", f"sampling stops on {eos_names} (ids {eos_ids})"))
        return checks
    user = [{"role": "user", "content": "Hi"}]
    try:
        with_gen = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        without = tokenizer.apply_chat_template(user, add_generation_prompt=False, tokenize=False)
        turn = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": "QXZ"}], tokenize=False)
    except Exception as e:  # a template that cannot render a plain exchange
        checks.append(PreflightCheck("chat template", "warn", f"present but fails to render a user turn ({e})",
                                     "fix the tokenizer's chat_template"))
        return checks
    gen = with_gen[len(without):] if with_gen.startswith(without) else ""
    if gen:
        n_ok = sum(p.endswith(gen) for p in prompts)
        if n_ok == len(prompts):
            checks.append(PreflightCheck("chat template", "ok",
                                         f"present; every sampled prompt ends with the generation prompt {gen!r}"))
        else:
            checks.append(PreflightCheck(
                "chat template", "warn",
                f"{len(prompts) - n_ok} of {len(prompts)} sampled prompts do not end with the generation prompt {gen!r}",
                "build prompts with tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)"))
    else:
        checks.append(PreflightCheck("chat template", "ok", "present (it adds no generation prompt)"))
    tail = turn.split("QXZ", 1)[1] if "QXZ" in turn else ""
    if tail.strip() and not any(name and name in tail for name in eos_names):
        checks.append(PreflightCheck(
            "EOS set", "warn", f"sampling stops on {eos_names}, but the template ends a turn with {tail.strip()!r}",
            "add the end-of-turn token to model.generation_config.eos_token_id"))
    else:
        checks.append(PreflightCheck("EOS set", "ok", f"sampling stops on {eos_names} (ids {eos_ids})"))
    return checks


def _zero_std_fix(rewards: list[float], G: int, frac: float) -> str:
    distinct = sorted(set(rewards))
    hi = distinct[-1]
    if distinct == [0.0]:
        return ("the reward never fires: print a few completions next to what it expects (the answer format), "
                "reward partial format, add a worked example to the prompt, or warm up with SFT on the format; "
                "a larger G or temperature helps only if successes are rare, not absent")
    if len(distinct) == 2:  # a pass/fail reward: with success rate q, P(zero std) = q^G + (1-q)^G
        q = sum(r == hi for r in rewards) / len(rewards)
        pred = {g: q**g + (1 - q) ** g for g in (G, 2 * G)}
        what = "too hard" if q < 0.5 else "too easy"
        return (f"share of completions at the top reward q = {q:.2f} ({what}); expected zero-std share "
                f"q^G + (1-q)^G = {pred[G]:.0%} at G={G}, {pred[2 * G]:.0%} at G={2 * G}. Raise num_generations or "
                f"temperature, train on {'an easier' if q < 0.5 else 'a harder'} subset"
                + (", or warm up with SFT on the format" if q < 0.5 else ""))
    return ("raise num_generations or temperature, use a subset of middling difficulty, "
            "or a finer reward (partial credit) so completions in a group differ")


def preflight(
    model_or_trainer: Any,
    tokenizer: Any = None,
    rows: Sequence[dict] | Sequence[str] | None = None,
    reward_funcs: Any = None,
    config: Any = None,
    *,
    reward_weights: Sequence[float] | None = None,
    time_budget: str | float | None = None,
    measure_steps: int = 2,
    raise_on_stop: bool = True,
    verbose: bool = True,
) -> PreflightReport:
    """Run ``measure_steps`` real GRPO steps, undo them, and report what they show.

    Call it as ``preflight(trainer)`` (what ``GRPOTrainer.train()`` does) or as
    ``preflight(model, tokenizer, rows, reward_funcs, config)``: the latter builds a
    ``GRPOTrainer`` around the model (with ``use_lora`` and a plain model the adapter it
    adds is removed again with peft's ``unload()``; full fine-tuning weights are restored).

    Args:
        time_budget: seconds or ``"60m"``/``"1h30m"``; default ``config.time_budget``.
        measure_steps: real steps to run (>= 1; the first is a warm-up when there are two).
        raise_on_stop: raise :class:`PreflightError` when the run cannot teach anything.
        verbose: print the table.

    Returns:
        a :class:`PreflightReport` (``print(report)`` for the table).
    """
    from grpo_lib.trainer import GRPOTrainer

    if not isinstance(measure_steps, int) or isinstance(measure_steps, bool) or measure_steps < 1:
        raise ValueError(f"measure_steps={measure_steps!r}: use an int >= 1 (2 = one warm-up step, one timed)")
    if isinstance(model_or_trainer, GRPOTrainer):
        return _run(model_or_trainer, time_budget, measure_steps, raise_on_stop, verbose)
    missing = [n for n, v in (("tokenizer", tokenizer), ("rows", rows), ("reward_funcs", reward_funcs)) if v is None]
    if missing:
        raise TypeError(f"preflight(model, ...) needs {missing}: call preflight(model, tokenizer, rows, reward_funcs, "
                        "config) or preflight(trainer)")
    from grpo_lib.config import GRPOConfig

    cfg = config if config is not None else GRPOConfig()
    budget = time_budget if time_budget is not None else cfg.time_budget
    quiet = replace(cfg, preflight=False, doctor=False, output_dir=None, save_steps=0, progress_bar=False)
    added_adapter = quiet.use_lora and not hasattr(model_or_trainer, "peft_config")
    tr = GRPOTrainer(model_or_trainer, tokenizer, reward_funcs, rows, quiet, reward_weights=reward_weights)
    try:
        return _run(tr, budget, measure_steps, raise_on_stop, verbose)
    finally:
        if added_adapter:
            tr.model.unload()  # takes the LoRA layers out of the caller's model again


def _run(tr, time_budget, measure_steps: int, raise_on_stop: bool, verbose: bool) -> PreflightReport:
    import torch

    from grpo_lib.logprobs import stop_token_ids

    cfg = tr.config
    G = cfg.num_generations
    budget = parse_duration(time_budget) if time_budget is not None else (
        parse_duration(cfg.time_budget) if cfg.time_budget is not None else None)
    t_start = time.perf_counter()
    dev = tr.device
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    snap = _snapshot(tr)
    times: list[float] = []
    gen_times: list[float] = []
    lengths: list[int] = []
    truncated: list[bool] = []
    prompts: list[str] = []
    parts: list[torch.Tensor] = []
    totals: list[float] = []
    eval_seconds, n_evals = 0.0, 0
    try:
        for i in range(measure_steps):
            tr.global_step = snap["global_step"] + i  # the batches of the run's next steps
            m = tr.training_step()
            times.append(m["step_time"])
            gen_times.append(m["generation_time"])
            ro = tr.last_rollout
            lengths += ro.lengths.tolist()
            truncated += ro.truncated.tolist()
            prompts += ro.prompts[::G]
            parts.append(tr.last_reward_parts)
            totals += tr.last_rewards.tolist()
        # evaluations run by callbacks that say how often (an attribute ``every``): time one
        remaining = cfg.max_steps - snap["global_step"]
        for cb in tr.callbacks:
            every = getattr(cb, "every", None)
            if isinstance(every, int) and every > 0 and hasattr(cb, "on_step_end"):
                t0 = time.perf_counter()
                cb.on_step_end(every, {})  # a throw-away metrics dict
                eval_seconds += time.perf_counter() - t0
                n_evals = max(n_evals, cfg.max_steps // every - snap["global_step"] // every)
        if cuda:
            torch.cuda.synchronize(dev)
    finally:
        _restore(tr, snap)
    peak = total_mem = None
    if cuda:
        peak = torch.cuda.max_memory_reserved(dev)
        total_mem = torch.cuda.get_device_properties(dev).total_memory
    elif dev.type == "cpu":
        try:
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux
        except ImportError:  # pragma: no cover (Windows)
            peak = None
    elif dev.type == "mps":  # pragma: no cover (no Apple silicon in CI)
        peak = torch.mps.driver_allocated_memory()

    step_s = statistics.median(times[1:]) if len(times) > 1 else times[0]
    gen_s = statistics.median(gen_times[1:]) if len(gen_times) > 1 else gen_times[0]
    per_eval = eval_seconds  # one call of each evaluating callback
    forecast = remaining * step_s + n_evals * per_eval
    # With the zero-advantage skip (beta = 0) a group whose completions all score alike costs only
    # its sampling: as the model learns and more groups agree, steps get cheaper. The floor: every
    # group skipped, a step = its generation time.
    forecast_low = remaining * gen_s + n_evals * per_eval if cfg.skip_zero_advantage_groups else forecast
    checks: list[PreflightCheck] = []
    n = len(lengths)
    cap = cfg.max_new_tokens

    groups = n // G
    stop = "stop" if groups >= MIN_GROUPS_TO_STOP else "warn"  # too few groups sampled to be sure
    # 1. completions: EOS against the cap
    clipped = sum(truncated) / n
    if clipped == 1.0:
        checks.append(PreflightCheck(
            "completions end", stop, f"all {n} sampled completions hit the cap of {cap} tokens; none ended with EOS",
            f"raise max_new_tokens (now {cap}); check the EOS set and, for an instruct model, the chat template"))
    elif clipped > CLIPPED_WARN:
        checks.append(PreflightCheck(
            "completions end", "warn", f"{clipped:.0%} of {n} completions hit the cap of {cap} tokens (no EOS)",
            "raise max_new_tokens: a cut completion rarely holds its answer, and its reward is then noise"))
    else:
        checks.append(PreflightCheck("completions end", "ok",
                                     f"{1 - clipped:.0%} of {n} end with EOS, {clipped:.0%} hit the cap of {cap} tokens"))
    med, p95 = statistics.median(lengths), _percentile(lengths, 0.95)
    cap95 = int(p95) if clipped <= 0.05 else None
    if cap95 is None:
        checks.append(PreflightCheck(
            "length", "warn",
            f"median {med:.0f}, max {max(lengths)} tokens; the cap keeping 95% whole is above {cap} (unknown)",
            f"measure with a larger cap, e.g. max_new_tokens={2 * cap}"))
    else:
        checks.append(PreflightCheck("length", "ok", f"median {med:.0f}, 95th percentile {cap95}, max {max(lengths)} "
                                     f"tokens: a cap of {cap95} would keep 95% whole (now {cap})"))

    # 2. chat template and EOS
    checks += _chat_checks(tr.tokenizer, prompts, stop_token_ids(tr.model, tr.tokenizer))

    # 3. rewards
    per_func = torch.cat(parts, dim=1)  # [F, n], NaN = not applicable
    summary: dict[str, dict[str, float]] = {}
    for name, w, vals in zip(tr.reward_names, tr.reward_weights.tolist(), per_func):
        v = vals[~vals.isnan()]
        if v.numel() == 0:
            checks.append(PreflightCheck(f"reward {name}", "warn", "returned None for every completion",
                                         "check which columns it needs (they must be dataset columns)"))
            continue
        mean, nz = v.mean().item(), (v != 0).float().mean().item()
        summary[name] = {"mean": mean, "nonzero": nz, "weight": w}
        desc = f"mean {mean:.3f}, non-zero on {nz:.0%} of {v.numel()} (weight {w:g})"
        if w == 0:
            checks.append(PreflightCheck(f"reward {name}", "note", desc + ": logged only"))
        elif nz == 0:
            checks.append(PreflightCheck(
                f"reward {name}", "warn", desc,
                "it never fires: print a few completions next to what it expects (the format, the answer marker); "
                "reward partial format, give a worked example in the prompt, or SFT the format first"))
        elif v.unique().numel() == 1:
            checks.append(PreflightCheck(f"reward {name}", "warn", desc + ", the same value everywhere",
                                         "a constant reward carries no signal: check that it reads the completion"))
        else:
            checks.append(PreflightCheck(f"reward {name}", "ok", desc))
    zero_std = sum(1 for i in range(groups) if len(set(totals[i * G:(i + 1) * G])) == 1) / groups
    if len(set(totals)) == 1:
        checks.append(PreflightCheck(
            "signal", stop, f"every sampled reward is {totals[0]:g}: all {groups} groups have zero std, "
            "so every advantage and the whole gradient are 0", _zero_std_fix(totals, G, 1.0)))
    elif zero_std > ZERO_STD_WARN:
        checks.append(PreflightCheck(
            "signal", "warn", f"{zero_std:.0%} of {groups} groups score alike (frac_reward_zero_std); "
            "they teach nothing", _zero_std_fix(totals, G, zero_std)))
    else:
        checks.append(PreflightCheck("signal", "ok", f"{zero_std:.0%} of {groups} groups score alike"))

    # 4. time and memory
    evals = f" + {n_evals} evaluations x {format_seconds(per_eval)}" if n_evals else ""
    low = (f" (down to {format_seconds(forecast_low)} if most groups come to score alike: they are skipped at "
           f"beta = 0)" if forecast_low < 0.95 * forecast else "")
    finding = (f"{format_seconds(step_s)} a step (measured: {', '.join(f'{t:.2f}' for t in times)} s); "
               f"forecast {format_seconds(forecast)} = {remaining} steps{evals}{low}")
    if budget is None:
        checks.append(PreflightCheck("time", "ok", finding + " (no time_budget given)"))
    elif forecast > budget:
        fit = max(1, int((budget - n_evals * per_eval) / step_s)) if budget > n_evals * per_eval else 0
        checks.append(PreflightCheck(
            "time", "warn", finding + f", over the budget of {format_seconds(budget)}",
            f"max_steps={fit} fits (save_steps keeps checkpoints to resume in a new session); or lower "
            "max_new_tokens, num_generations or the evaluation size"))
    else:
        checks.append(PreflightCheck("time", "ok", finding + f", within the budget of {format_seconds(budget)} "
                                     f"({forecast / budget:.0%})"))
    if cuda and peak is not None and total_mem:
        head = total_mem - peak
        verdict = "warn" if head < HEADROOM_WARN * total_mem else "ok"
        checks.append(PreflightCheck(
            "memory", verdict, f"peak {_fmt_bytes(peak)} reserved of {_fmt_bytes(total_mem)}; headroom {_fmt_bytes(head)}",
            "longer completions later in the run need more: lower micro_batch_size, turn on gradient_checkpointing, "
            "or lower max_new_tokens"))
    elif peak is not None:
        checks.append(PreflightCheck("memory", "ok", f"peak {_fmt_bytes(peak)} ({dev.type} process peak so far)"))

    report = PreflightReport(
        checks=checks, steps_measured=measure_steps, completions=n, groups=groups, step_seconds=step_s,
        step_seconds_all=times, remaining_steps=remaining, eval_seconds=per_eval, num_evaluations=n_evals,
        forecast_seconds=forecast, forecast_low_seconds=forecast_low, budget_seconds=budget, preflight_seconds=time.perf_counter() - t_start,
        lengths=lengths, clipped_ratio=clipped, cap=cap, cap_95=cap95, frac_reward_zero_std=zero_std,
        peak_memory_bytes=peak, memory_total_bytes=total_mem, device=str(dev), reward_summary=summary,
    )
    if verbose:
        print(report.table(), flush=True)
    if report.stopped and raise_on_stop:
        raise PreflightError(report)
    return report


class _CallableModule(types.ModuleType):
    """``grpo_lib.preflight(...)`` calls :func:`preflight`: the package attribute of that name is
    this module (Python binds a submodule to its package on import), so the module is callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> PreflightReport:
        return preflight(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
