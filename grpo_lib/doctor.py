"""The run doctor: known GRPO failures read from the logged metrics, live or afterwards.

Each rule looks at the metrics a ``GRPOTrainer`` logs (TRL's names) and, when its
failure shows, gives the cause and a fix. The same rules run

* **live**: :class:`RunDoctor`, a callback the trainer attaches when ``config.doctor``
  is True (the default). It warns once per rule (:class:`DoctorWarning`); a NaN loss
  stops the run (:class:`DoctorStop`) before that step is checkpointed, so the last
  checkpoint on disk is the last good one;
* **after the fact**: ``python -m grpo_lib.doctor RUN_DIR`` reads ``metrics.jsonl`` and
  ``config.json``, prints the same diagnosis and writes ``RUN_DIR/doctor.png``.

The rules (thresholds are the module constants below):

============  ==========================================================================
no_signal     ``frac_reward_zero_std`` >= 0.9 and the reward flat for 5 steps: every
              group scores alike, advantages and gradient are 0 (TRL issue #3857)
clipped       ``completions/clipped_ratio`` >= 0.3 on average over 3 steps: completions
              are cut at the cap (TRL #5697)
entropy       the entropy's last-3-step mean below 10% of its first-3-step mean: the
              policy has collapsed onto few tokens (learning rate too high)
kl            ``kl`` above 1 nat a token with ``beta > 0``: the policy ran away from the
              reference
grad_zero     ``grad_norm`` 0 for 3 steps although groups disagree: nothing reaches the
              weights (all tokens masked, frozen parameters)
grad_nan      ``grad_norm`` NaN/inf (3 steps in a row when a loss scaler is on: it skips
              single overflowed steps by design)
loss_nan      the loss is NaN or inf: the run stops (live)
slowdown      the median step time of the last 10 steps over 2.5x that of steps 2-11
============  ==========================================================================

"loss is 0" is *not* a failure: with μ = 1 the GRPO loss's value is the advantage-weighted
mean of a ratio that equals 1, and the advantages of a group sum to 0, so the logged loss
is about 0 while the gradient is not (TRL issue #3452); watch ``grad_norm`` and the reward.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunDoctor", "DoctorWarning", "DoctorStop", "Finding", "RULES", "diagnose", "diagnose_run",
           "plot_doctor", "main"]

Metrics = dict[str, Any]

NO_SIGNAL_ZERO_STD = 0.9
NO_SIGNAL_STEPS = 5
CLIPPED_RATIO = 0.3
CLIPPED_STEPS = 3
ENTROPY_DROP = 0.10
ENTROPY_STEPS = 3
KL_MAX = 1.0
GRAD_ZERO_STEPS = 3
GRAD_NAN_STEPS_SCALED = 3
SLOWDOWN_FACTOR = 2.5
SLOWDOWN_STEPS = 10


class DoctorWarning(UserWarning):
    """A known failure shows in the run's metrics."""


class DoctorStop(RuntimeError):
    """The run cannot continue (NaN loss); the last checkpoint saved is the last good one."""


@dataclass
class Finding:
    """A rule that fired: at ``step``, with the evidence, the likely cause and a fix."""

    rule: str
    step: int
    evidence: str
    cause: str
    fix: str
    stop: bool = False

    def message(self) -> str:
        return f"[run doctor] step {self.step}, {self.rule}: {self.evidence}. Cause: {self.cause}. Fix: {self.fix}."


def _num(m: Metrics, key: str) -> float | None:
    v = m.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _tail(history: Sequence[Metrics], key: str, k: int) -> list[float] | None:
    """The last ``k`` values of ``key`` (None if fewer than k steps logged it)."""
    vals = [_num(m, key) for m in history[-k:]]
    if len(vals) < k or any(v is None for v in vals):
        return None
    return vals  # type: ignore[return-value]


def _step(history: Sequence[Metrics]) -> int:
    return int(history[-1].get("step", len(history)))


# ---------------------------------------------------------------------- rules
def rule_no_signal(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    z = _tail(history, "frac_reward_zero_std", NO_SIGNAL_STEPS)
    r = _tail(history, "reward", NO_SIGNAL_STEPS)
    if z is None or r is None or min(z) < NO_SIGNAL_ZERO_STD:
        return None
    if max(r) - min(r) > 0.05 * max(1.0, abs(statistics.fmean(r))):
        return None
    level = statistics.fmean(r)
    hard = ("if that is a failing score, every completion fails (the format check may never match: print a few "
            "completions next to the reward)")
    return Finding(
        "no_signal", _step(history),
        f"frac_reward_zero_std >= {min(z):.2f} and reward flat at {level:.3g} for {NO_SIGNAL_STEPS} steps",
        f"the completions of a group score alike, so every advantage is 0 and nothing is learned; {hard}"
        if level <= 0 else "the completions of a group score alike (task too easy, or a constant reward)",
        "raise num_generations or temperature; train on a subset of middling difficulty; reward partial credit; "
        "warm up with SFT on the answer format")


def rule_clipped(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    c = _tail(history, "completions/clipped_ratio", CLIPPED_STEPS)
    if c is None or statistics.fmean(c) < CLIPPED_RATIO:
        return None
    cap = config.get("max_new_tokens")
    return Finding(
        "clipped", _step(history), f"{statistics.fmean(c):.0%} of completions hit the cap of {cap} tokens "
        f"(completions/clipped_ratio, mean of {CLIPPED_STEPS} steps)",
        "the length cap is below what the model writes: a cut completion loses its answer and its reward is noise",
        "raise max_new_tokens (grpo_lib.preflight reports the cap that keeps 95% whole), or set "
        "mask_truncated_completions=True")


def rule_entropy(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    ent = [v for v in (_num(m, "entropy") for m in history) if v is not None and math.isfinite(v)]
    if len(ent) < 2 * ENTROPY_STEPS:
        return None
    first, last = statistics.fmean(ent[:ENTROPY_STEPS]), statistics.fmean(ent[-ENTROPY_STEPS:])
    if first <= 0 or last >= ENTROPY_DROP * first:
        return None
    return Finding(
        "entropy", _step(history), f"entropy fell from {first:.3g} to {last:.3g} nats a token "
        f"(below {ENTROPY_DROP:.0%} of its start)",
        "the policy collapsed onto a few tokens: the updates are too large, and a collapsed policy no longer explores",
        f"lower learning_rate (now {config.get('learning_rate')}), keep max_grad_norm at 1.0, or add a KL penalty "
        "(beta > 0); restart from an earlier checkpoint")


def rule_kl(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    if not (config.get("beta") or 0) > 0:
        return None
    kl = _num(history[-1], "kl")
    if kl is None or not (kl > KL_MAX or math.isnan(kl)):
        return None
    return Finding(
        "kl", _step(history), f"kl = {kl:.3g} nats a token (beta = {config.get('beta')})",
        "the policy ran far from the reference: the updates outpace the penalty",
        "lower learning_rate, raise beta, or restart from an earlier checkpoint")


def rule_grad_zero(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    g = _tail(history, "grad_norm", GRAD_ZERO_STEPS)
    z = _tail(history, "frac_reward_zero_std", GRAD_ZERO_STEPS)
    if g is None or z is None or any(v != 0 for v in g) or max(z) >= 1.0:
        return None
    return Finding(
        "grad_zero", _step(history), f"grad_norm = 0 for {GRAD_ZERO_STEPS} steps while "
        f"{1 - max(z):.0%} or more of the groups disagree",
        "the loss does not reach the weights: every token masked (mask_truncated_completions with every completion "
        "cut), no trainable parameters, or a detached loss",
        "raise max_new_tokens or set mask_truncated_completions=False; check that the trainable parameters require grad")


def rule_grad_nan(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    scaled = "grad_scale" in history[-1]
    k = GRAD_NAN_STEPS_SCALED if scaled else 1
    g = _tail(history, "grad_norm", k)
    if g is None or all(math.isfinite(v) for v in g):
        return None
    if scaled and any(math.isfinite(v) for v in g):
        return None
    return Finding(
        "grad_nan", _step(history), f"grad_norm is {g[-1]}" + (f" for {k} steps in a row under a loss scaler" if scaled else ""),
        "the gradient overflowed: fp16 activations, a reward of inf/NaN, or a learning rate that blew the weights up",
        "check the rewards are finite; lower learning_rate; train in bf16 or fp32 where the GPU allows")


def rule_loss_nan(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    loss = _num(history[-1], "loss")
    if loss is None or math.isfinite(loss):
        return None
    return Finding(
        "loss_nan", _step(history), f"loss = {loss}",
        "a NaN/inf entered the loss (a reward of inf/NaN, overflowed log-probs, or weights already NaN)",
        "resume from the last checkpoint (saved before this step) after fixing the cause: check the rewards are "
        "finite, lower learning_rate", stop=True)


def rule_slowdown(history: Sequence[Metrics], config: Metrics) -> Finding | None:
    t = [_num(m, "step_time") for m in history]
    if len(t) < 2 * SLOWDOWN_STEPS + 1 or any(v is None for v in t):
        return None
    early = statistics.median(t[1:1 + SLOWDOWN_STEPS])  # type: ignore[type-var]
    late = statistics.median(t[-SLOWDOWN_STEPS:])  # type: ignore[type-var]
    if early <= 0 or late < SLOWDOWN_FACTOR * early:
        return None
    l0 = statistics.fmean(_num(m, "completions/mean_length") or 0 for m in history[1:1 + SLOWDOWN_STEPS])
    l1 = statistics.fmean(_num(m, "completions/mean_length") or 0 for m in history[-SLOWDOWN_STEPS:])
    longer = l0 > 0 and l1 / l0 > 0.6 * late / early
    return Finding(
        "slowdown", _step(history), f"a step takes {late:.2f} s, {late / early:.1f}x the {early:.2f} s of the start",
        f"completions grew from {l0:.0f} to {l1:.0f} tokens" if longer else
        "not the completions' length: the machine (another process, memory swapping, thermal throttling, "
        "a growing Python list)",
        "lower max_new_tokens if the length grew; otherwise check what else runs on the machine")


#: The rules, in the order they are reported.
RULES: dict[str, Callable[[Sequence[Metrics], Metrics], Finding | None]] = {
    "loss_nan": rule_loss_nan,
    "grad_nan": rule_grad_nan,
    "no_signal": rule_no_signal,
    "clipped": rule_clipped,
    "entropy": rule_entropy,
    "kl": rule_kl,
    "grad_zero": rule_grad_zero,
    "slowdown": rule_slowdown,
}


def diagnose(history: Sequence[Metrics], config: Metrics | None = None) -> list[Finding]:
    """Replay the rules over a run's metrics, step by step; each rule's first firing."""
    cfg = dict(config or {})
    found: dict[str, Finding] = {}
    for i in range(1, len(history) + 1):
        for name, rule in RULES.items():
            if name not in found and (f := rule(history[:i], cfg)) is not None:
                found[name] = f
    return sorted(found.values(), key=lambda f: f.step)


class RunDoctor:
    """The live doctor, a trainer callback: warns once per rule; a NaN loss stops the run.

    ``findings`` holds what fired. ``GRPOTrainer`` attaches one when ``config.doctor``.
    """

    def __init__(self, config: Metrics | None = None, stop_on_nan: bool = True) -> None:
        self.config: Metrics = dict(config or {})
        self.stop_on_nan = stop_on_nan
        self.history: list[Metrics] = []
        self.findings: list[Finding] = []
        self._fired: set[str] = set()

    def on_train_begin(self, trainer: Any) -> None:
        self.config = trainer.config.to_dict()
        # a resumed run: what fired before the stop stays quiet
        self.history = list(trainer.log_history)
        self._fired = {f.rule for f in diagnose(self.history, self.config)}

    def on_step_end(self, step: int, metrics: Metrics) -> None:
        self.history.append(dict(metrics, step=metrics.get("step", step)))
        for name, rule in RULES.items():
            if name in self._fired:
                continue
            f = rule(self.history, self.config)
            if f is None:
                continue
            self._fired.add(name)
            self.findings.append(f)
            warnings.warn(f.message(), DoctorWarning, stacklevel=2)
            if f.stop and self.stop_on_nan:
                raise DoctorStop(f.message())

    def on_train_end(self, trainer: Any) -> None: ...


# ------------------------------------------------------------- after the fact
def read_run(run_dir: str | Path) -> tuple[list[Metrics], Metrics]:
    """``metrics.jsonl`` and ``config.json`` of a run folder (clear errors if absent)."""
    d = Path(run_dir)
    f = d / "metrics.jsonl"
    if not f.exists():
        raise ValueError(f"run_dir={str(run_dir)!r} has no metrics.jsonl: give the output_dir of a GRPOTrainer run")
    history = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    if not history:
        raise ValueError(f"{f} is empty: the run logged no step")
    cfg_file = d / "config.json"
    config = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    return history, config


def diagnose_run(run_dir: str | Path) -> tuple[list[Finding], str]:
    """Findings and the printed text for a run folder."""
    history, config = read_run(run_dir)
    findings = diagnose(history, config)
    first, last = history[: min(10, len(history))], history[-min(10, len(history)):]
    r0 = statistics.fmean(float(m["reward"]) for m in first)
    r1 = statistics.fmean(float(m["reward"]) for m in last)
    lines = [f"run doctor: {run_dir} ({len(history)} logged steps, last step {history[-1].get('step')})",
             f"  reward: mean {r0:.3f} over the first {len(first)} logged steps, {r1:.3f} over the last {len(last)}"]
    if not findings:
        lines.append("  no known failure found (rules: " + ", ".join(RULES) + ")")
    for f in findings:
        lines.append(f"  step {f.step}, {f.rule}: {f.evidence}")
        lines.append(f"      cause: {f.cause}")
        lines.append(f"      fix:   {f.fix}")
    return findings, "\n".join(lines)


def plot_doctor(history: Sequence[Metrics], findings: Sequence[Finding], path: str | Path,
                title: str | None = None) -> Path:
    """The curves the rules read, with a dashed line where each rule fired (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m.get("step", i + 1) for i, m in enumerate(history)]

    def series(key: str) -> list[float]:
        return [float(m[key]) if m.get(key) is not None else float("nan") for m in history]

    panels = [("reward", "reward (batch mean)", ["reward"]),
              ("share", "share of groups / completions", ["frac_reward_zero_std", "completions/clipped_ratio"]),
              ("entropy", "entropy (nats / token)", ["entropy"]),
              ("kl" if any("kl" in m for m in history) else "loss", "kl (nats / token)" if any("kl" in m for m in history)
               else "loss", ["kl"] if any("kl" in m for m in history) else ["loss"]),
              ("grad", "grad_norm", ["grad_norm"]),
              ("time", "step time (s)", ["step_time"])]
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.4))
    for ax, (_, ylabel, keys) in zip(axes.flat, panels):
        for key in keys:
            ax.plot(steps, series(key), lw=1.2, label=key)
        if len(keys) > 1:
            ax.legend(fontsize=7)
            ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel, fontsize=8)
        for f in findings:
            ax.axvline(f.step, color="tab:red", ls="--", lw=0.8)
    point = ("no known failure found" if not findings
             else "fired (red dashes): " + ", ".join(f"{f.rule} at step {f.step}" for f in findings))
    fig.suptitle(title or f"Run doctor: {point}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m grpo_lib.doctor RUN_DIR``: exit 0 healthy, 1 a rule fired, 2 bad input."""
    ap = argparse.ArgumentParser(prog="python -m grpo_lib.doctor",
                                 description="Diagnose a GRPO run from its metrics.jsonl and config.json.")
    ap.add_argument("run_dir")
    ap.add_argument("--no-plot", action="store_true", help="do not write RUN_DIR/doctor.png")
    args = ap.parse_args(argv)
    try:
        findings, text = diagnose_run(args.run_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    if not args.no_plot:
        history, _ = read_run(args.run_dir)
        png = plot_doctor(history, findings, Path(args.run_dir) / "doctor.png")
        print(f"wrote {png}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
