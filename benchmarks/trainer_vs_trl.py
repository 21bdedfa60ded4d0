"""grpo_lib's GRPOTrainer against TRL's GRPOTrainer: same model, task and settings.

Both trainers start from the same tiny model (``grpo_lib.tiny.load_tiny_model()``), train
on the same synthetic task (``grpo_lib.tasks``) with the same reward function
(``grpo_lib.rewards.correctness_reward``, TRL's signature, passed unchanged to both), and
the same G, prompts per step, completion length, sampling, learning rate, AdamW betas,
grad-norm clip, loss type, β = 0, μ = 1, seed and number of steps. What differs is the
trainer code, which is what we measure.

Each run is a fresh child process (``--only grpo_lib|trl``), so that each one's peak
memory is its own and neither inherits the other's warm caches; the parent alternates
them (A B, then B A, ...) so a change of load on the shared machine hits both alike.

Reported per trainer: steps/second (steady state: the median step time over all steps
but the first; and the whole run), peak RSS during training and for the whole process,
the reward per step (curve), and where a step's time goes (generation, reward scoring,
the loss forward, the rest = backward + optimizer + trainer overhead). Then the ratio.

Usage::

    python benchmarks/trainer_vs_trl.py                 # 40 steps, G = 8, 16 prompts/step (the tiny preset)
    python benchmarks/trainer_vs_trl.py --quick         # a few seconds: 2 steps, tiny batch
    python benchmarks/trainer_vs_trl.py --rounds 2      # A B B A

Writes ``benchmarks/results/trainer_vs_trl.json`` (``--out``) and a reward-curve PNG
next to it (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_tiny, fmt_table, set_threads, machine_info, peak_rss_mb, reset_peak_rss, rss_mb, write_json  # noqa: E402

IMPLS = ("grpo_lib", "trl")


# --------------------------------------------------------------------------- setup

def shared_settings(a: argparse.Namespace) -> dict:
    """The settings both trainers take under the same name: one dict, so they cannot drift."""
    return dict(
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, epsilon=0.2, num_iterations=1,
        loss_type=a.loss_type, scale_rewards="group", learning_rate=a.learning_rate,
        adam_beta1=0.9, adam_beta2=0.99,  # grpo_lib's default (TRL's is 0.999)
        weight_decay=0.0, max_grad_norm=1.0, lr_scheduler_type="constant",
        max_steps=a.steps, seed=a.seed,
    )

def task_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Training rows ``{"prompt", "answer"}``, as the tiny preset builds them."""
    from grpo_lib.tasks import make_dataset

    return [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(n, "train", seed=1000 + seed)]


class _Timer:
    """Accumulates wall time per label; ``wrap`` returns a timed version of a function."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}

    def wrap(self, label: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[label] = self.total.get(label, 0.0) + time.perf_counter() - t0

        return timed


# ---------------------------------------------------------------------- the runs
def run_grpo_lib(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    import grpo_lib.trainer as gt
    from grpo_lib.config import GRPOConfig
    from grpo_lib.rewards import correctness_reward

    torch.manual_seed(a.seed)
    model, tok, model_kind = load_tiny()
    cfg = GRPOConfig(
        num_generations=a.num_generations,
        per_device_train_batch_size=a.num_generations * a.prompts_per_step,
        max_new_tokens=a.max_new_tokens,
        **shared_settings(a),
        sampler=a.sampler,
        device="cpu",
        dtype="float32",
        output_dir=None,
        progress_bar=False,
        preflight=False,  # its two measured steps (undone) would count in the timed train()
    )
    timer = _Timer()
    # Time the pieces of a step where the trainer calls them (module-level names).
    originals = gt.sample_groups, gt.per_token_logprobs, getattr(gt, "shared_prefix_logprobs", None)
    gt.sample_groups = timer.wrap("generation", gt.sample_groups)
    gt.per_token_logprobs = timer.wrap("logprob_forward", gt.per_token_logprobs)
    if originals[2] is not None:  # the shared-prompt-prefix forward (config.share_prompt_prefix)
        gt.shared_prefix_logprobs = timer.wrap("logprob_forward", gt.shared_prefix_logprobs)
    try:
        trainer = gt.GRPOTrainer(model, tok, correctness_reward, task_rows(a.dataset_size, a.seed), config=cfg)
        trainer.compute_rewards = timer.wrap("rewards", trainer.compute_rewards)

        stamps: list[float] = []
        rewards: list[float] = []

        def on_step_end(step: int, metrics: dict[str, float]) -> None:
            stamps.append(time.perf_counter())
            rewards.append(metrics["reward"])

        trainer.callbacks.append(on_step_end)
        return _train_and_report(lambda: trainer.train(), stamps, rewards, timer, model_kind, a.profile)
    finally:
        gt.sample_groups, gt.per_token_logprobs = originals[:2]
        if originals[2] is not None:
            gt.shared_prefix_logprobs = originals[2]


def run_trl(a: argparse.Namespace) -> dict[str, Any]:
    import warnings

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    from grpo_lib.rewards import correctness_reward

    warnings.filterwarnings("ignore")
    torch.manual_seed(a.seed)
    model, tok, model_kind = load_tiny()
    out_dir = tempfile.mkdtemp(prefix="trl_bench_")
    import dataclasses

    # transformers 5.25 renamed gradient_checkpointing to activation_checkpointing (old name: a FutureWarning)
    CKPT_FIELD = ("activation_checkpointing" if "activation_checkpointing" in
                  {f.name for f in dataclasses.fields(TRLConfig)} else "gradient_checkpointing")
    args = TRLConfig(
        output_dir=out_dir,
        use_cpu=True,
        report_to="none",
        push_to_hub=False,
        bf16=False,  # TRL defaults to bf16; grpo_lib trains the tiny model in fp32
        fp16=False,
        # TRL's GRPOConfig turns gradient checkpointing ON by default (less memory, a
        # slower backward: every block's forward runs twice); grpo_lib's default is off.
        # Matched by default; --trl-gradient-checkpointing measures TRL's default.
        **{CKPT_FIELD: a.trl_gradient_checkpointing},
        num_generations=a.num_generations,
        per_device_train_batch_size=a.num_generations * a.prompts_per_step,  # completions per step
        gradient_accumulation_steps=1,
        max_completion_length=a.max_new_tokens,
        warmup_steps=0,
        **shared_settings(a),
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
    )
    timer = _Timer()
    stamps: list[float] = []
    rewards: list[float] = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                rewards.append(float(logs["reward"]))

    trainer = TRLTrainer(
        model=model,
        reward_funcs=[correctness_reward],
        args=args,
        train_dataset=Dataset.from_list(task_rows(a.dataset_size, a.seed)),
        processing_class=tok,
        callbacks=[Record()],
    )
    trainer._generate_single_turn = timer.wrap("generation", trainer._generate_single_turn)
    trainer._calculate_rewards = timer.wrap("rewards", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timer.wrap(
        "logprob_forward", trainer._get_per_token_logps_and_entropies
    )
    return _train_and_report(lambda: trainer.train(), stamps, rewards, timer, model_kind, a.profile)


def _train_and_report(train, stamps, rewards, timer: _Timer, model_kind: str, profile: bool = False) -> dict[str, Any]:
    rss_before = rss_mb()
    reset_ok = reset_peak_rss()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    train()
    wall = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
    step_times = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    steady = step_times[1:] or step_times
    parts = {k: v for k, v in timer.total.items()}
    parts["other (backward, optimizer, overhead)"] = wall - sum(parts.values())
    out_profile = _profile_top(prof) if prof is not None else None
    return {
        "profile_top_cumulative": out_profile,
        "model": model_kind,
        "steps": len(stamps),
        "train_wall_s": wall,
        "step_times_s": step_times,
        "steps_per_s": len(stamps) / wall,
        "steady_steps_per_s": 1.0 / statistics.median(steady),
        "rewards": rewards,
        "time_breakdown_s": parts,
        "rss_before_train_mb": rss_before,
        "peak_rss_train_mb": peak_rss_mb() if reset_ok else None,
        "peak_rss_process_mb": _process_peak_mb(),
    }


def _profile_top(prof, n: int = 40) -> list[str]:
    """The ``n`` functions with the most cumulative time (cProfile), one line each."""
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(n)
    return [line for line in buf.getvalue().splitlines() if line.strip()]


def _process_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ----------------------------------------------------------------------- parent
def _child(impl: str, a: argparse.Namespace, passthrough: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, __file__, "--only", impl, "--child-out", out, *passthrough]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    res = json.loads(Path(out).read_text())
    res["process_wall_s"] = time.perf_counter() - t0  # imports and setup included
    return res


def _mean_curve(curves: list[list[float]]) -> list[float]:
    n = min(len(c) for c in curves)
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for impl, rs in runs.items():
        curve = _mean_curve([r["rewards"] for r in rs])
        k = max(1, len(curve) // 3)
        s[impl] = {
            "steady_steps_per_s": statistics.fmean(r["steady_steps_per_s"] for r in rs),
            "steps_per_s": statistics.fmean(r["steps_per_s"] for r in rs),
            "peak_rss_train_mb": max((r["peak_rss_train_mb"] or 0.0) for r in rs),
            "peak_rss_process_mb": max(r["peak_rss_process_mb"] for r in rs),
            "process_wall_s": statistics.fmean(r["process_wall_s"] for r in rs),
            "reward_curve": curve,
            "reward_first_third": statistics.fmean(curve[:k]),
            "reward_last_third": statistics.fmean(curve[-k:]),
            "time_breakdown_s": {
                key: statistics.fmean(r["time_breakdown_s"].get(key, 0.0) for r in rs)
                for key in rs[0]["time_breakdown_s"]
            },
        }
    g, t = s["grpo_lib"], s["trl"]
    s["ratio"] = {
        "steady_steps_per_s": g["steady_steps_per_s"] / t["steady_steps_per_s"],
        "steps_per_s": g["steps_per_s"] / t["steps_per_s"],
        "peak_rss_process": g["peak_rss_process_mb"] / t["peak_rss_process_mb"],
    }
    return s


def _moving_average(xs: list[float], k: int) -> list[float]:
    """Trailing mean over the last ``k`` values (fewer at the start)."""
    return [statistics.fmean(xs[max(0, i - k + 1) : i + 1]) for i in range(len(xs))]


def plot(summary: dict[str, Any], runs: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for impl, colour in (("grpo_lib", "tab:blue"), ("trl", "tab:orange")):
        curve = summary[impl]["reward_curve"]
        steps = range(1, len(curve) + 1)
        ax1.plot(steps, curve, color=colour, alpha=0.3, lw=1)
        ax1.plot(steps, _moving_average(curve, 5), color=colour, lw=2, label=f"{impl} (5-step mean)")
        for i, r in enumerate(runs[impl]):
            ax2.plot(range(1, len(r["step_times_s"]) + 1), r["step_times_s"], color=colour, alpha=0.8 if i == 0 else 0.4,
                     label=impl if i == 0 else None)
    ax1.set(xlabel="step", ylabel="mean reward (correctness)", title="reward per step")
    ax2.set(xlabel="step", ylabel="seconds", title="step time (every run)")
    ax1.legend()
    ax2.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _title(st: dict[str, Any], machine: dict[str, Any]) -> str:
    return (f"tiny model, G={st['num_generations']}, {st['prompts_per_step']} prompts/step, lr={st['learning_rate']}, "
            f"{st['loss_type']}, seed {st['seed']}, {st['rounds']} round(s), {st.get('threads', 0)} thread(s); "
            f"load average at start {machine['load_average_1_5_15'][0]:.1f} on {machine['cpu_count']} cores")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--num-generations", type=int, default=8, help="G")
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--loss-type", default="dapo", choices=["grpo", "dapo", "dr_grpo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="shared_prefix", choices=["shared_prefix", "generate"],
                   help="grpo_lib's sampler (GRPOConfig.sampler); TRL always uses generate")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for both trainers (default 1: on a loaded shared machine 2 threads "
                        "were 10x slower, OpenMP workers waiting on each other; 0 = torch's default)")
    p.add_argument("--dataset-size", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=1, help="alternations: round r runs A B (r even) or B A (r odd)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget: 2 steps, G = 4, 2 prompts, 8 tokens, both runs in this process")
    p.add_argument("--in-process", action="store_true",
                   help="run both trainers in this process (saves two interpreter starts; the process peak RSS "
                        "then holds both libraries, the training peak is still reset before each run)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/trainer_vs_trl.json)")
    p.add_argument("--plot", type=Path, default=None, help="PNG path (default next to the JSON)")
    p.add_argument("--trl-gradient-checkpointing", action="store_true",
                   help="leave TRL's default gradient checkpointing on (grpo_lib does not checkpoint)")
    p.add_argument("--profile", action="store_true", help="cProfile each training run; top functions go in the JSON")
    p.add_argument("--replot", type=Path, help="redraw the PNG of an existing JSON result and exit")
    p.add_argument("--only", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.num_generations, a.prompts_per_step, a.max_new_tokens, a.dataset_size = 2, 4, 2, 8, 50
        a.in_process = True

    if a.replot:
        d = json.loads(a.replot.read_text())
        st = d["settings"]
        plot(d["summary"], d["runs"], a.plot or a.replot.with_suffix(".png"), _title(st, d["machine"]))
        return d
    set_threads(a.threads)
    if a.only:  # child: one run, result to a file
        res = (run_grpo_lib if a.only == "grpo_lib" else run_trl)(a)
        write_json(a.child_out, res)
        return None

    passthrough = [
        f"--steps={a.steps}",
        f"--num-generations={a.num_generations}",
        f"--prompts-per-step={a.prompts_per_step}",
        f"--max-new-tokens={a.max_new_tokens}",
        f"--learning-rate={a.learning_rate}",
        f"--loss-type={a.loss_type}",
        f"--sampler={a.sampler}",
        f"--seed={a.seed}",
        f"--dataset-size={a.dataset_size}",
        f"--threads={a.threads}",
        *(["--profile"] if a.profile else []),
        *(["--trl-gradient-checkpointing"] if a.trl_gradient_checkpointing else []),
    ]
    out = a.out or RESULTS / ("trainer_vs_trl_quick.json" if a.quick else "trainer_vs_trl.json")
    png = a.plot or out.with_suffix(".png")
    machine_before = machine_info()
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPLS}
    order = []
    for r in range(a.rounds):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            print(f"round {r + 1}/{a.rounds}: {impl} ...", flush=True)
            if a.in_process:
                t0 = time.perf_counter()
                res = (run_grpo_lib if impl == "grpo_lib" else run_trl)(a)
                res["process_wall_s"] = time.perf_counter() - t0
                runs[impl].append(res)
            else:
                runs[impl].append(_child(impl, a, passthrough))
            order.append(impl)
    summary = summarise(runs)
    settings = {k: getattr(a, k) for k in (
        "steps", "num_generations", "prompts_per_step", "max_new_tokens", "learning_rate", "loss_type", "seed",
        "dataset_size", "rounds", "quick", "in_process", "threads", "profile", "trl_gradient_checkpointing", "sampler")}
    settings.update(beta=0.0, num_iterations=1, scale_rewards="group", temperature=1.0, max_grad_norm=1.0,
                    adam_betas=[0.9, 0.99], lr_scheduler_type="constant", dtype="float32", device="cpu")
    payload = {
        "benchmark": "trainer_vs_trl",
        "command": "python benchmarks/trainer_vs_trl.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings,
        "model": runs["grpo_lib"][0]["model"],
        "machine": machine_before,
        "load_average_after": machine_info()["load_average_1_5_15"],
        "order": order,
        "summary": summary,
        "runs": runs,
    }
    write_json(out, payload)
    plot(summary, runs, png, _title(settings, machine_before))

    rows = []
    for impl in IMPLS:
        s = summary[impl]
        rows.append([impl, s["steady_steps_per_s"], s["steps_per_s"], s["peak_rss_train_mb"],
                     s["peak_rss_process_mb"], s["reward_first_third"], s["reward_last_third"]])
    print(fmt_table(rows, ["trainer", "steps/s (median step)", "steps/s (whole run)", "peak RSS train (MiB)",
                           "peak RSS process (MiB)", "reward, first third", "reward, last third"]))
    print(f"ratio grpo_lib/trl: {summary['ratio']['steady_steps_per_s']:.2f}x steps/s (median step), "
          f"{summary['ratio']['steps_per_s']:.2f}x (whole run)")
    for impl in IMPLS:
        parts = summary[impl]["time_breakdown_s"]
        total = sum(parts.values())
        print(f"{impl} time: " + ", ".join(f"{k} {v:.2f}s ({100 * v / total:.0f}%)" for k, v in parts.items()))
    print(f"model: {payload['model']}; load average {machine_before['load_average_1_5_15']}")
    print(f"wrote {out} and {png}")
    return payload


if __name__ == "__main__":
    main()
