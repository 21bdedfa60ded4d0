"""Benchmark: how close is the pre-flight's forecast to the wall time of the run it forecasts?

    python benchmarks/preflight_forecast.py [--steps 100] [--quick] [--out FILE]

Runs the tiny preset's training exactly as ``python -m grpo_lib.train --preset tiny`` does
(its config, data, reward functions and the held-out accuracy callback every
``eval_steps``), with the pre-flight on and the live doctor attached, and measures
``trainer.train()``'s wall time. ``train()`` starts with the pre-flight (two measured
steps, undone), then runs every step. Reported:

* ``forecast_s``: the pre-flight's forecast of the training after it (steps x step time
  + evaluations x one timed evaluation);
* ``measured_after_preflight_s``: ``train()``'s wall time minus the pre-flight's own;
* ``ratio = forecast / measured`` (the goal: within 0.75 .. 1.25), and whether the measured
  time lies between the floor (``forecast_low_s``: every group skipped) and the forecast;
* the doctor's findings (a healthy preset must have none).

The before/after evaluations of the full held-out set that the command line adds are
outside ``train()`` and outside the forecast. On a shared machine the load average (in
the JSON) moves every time: compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info, set_threads, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="max_steps of the run (the preset's default: 100)")
    ap.add_argument("--quick", action="store_true", help="6 steps, 4 prompts x 8, evaluation of 16 rows every 3 steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "preflight_forecast.json"))
    ap.add_argument("--tag", default="", help="a note stored with the result (e.g. the load at start)")
    args = ap.parse_args(argv)
    set_threads(args.threads)

    from grpo_lib.doctor import DoctorWarning, RunDoctor
    from grpo_lib.presets import get_preset
    from grpo_lib.train import _EvalCallback
    from grpo_lib.trainer import GRPOTrainer

    over = dict(max_steps=args.steps, output_dir=None, save_steps=0, progress_bar=False, preflight=True, doctor=True)
    if args.quick:
        over.update(max_steps=6, per_device_train_batch_size=32)
    preset = get_preset("tiny").with_config(**over)
    if args.quick:
        preset.eval_steps, preset.eval_subset = 3, 16
    model, tok = preset.load_model(preset.config)
    train_rows, eval_rows = preset.load_data(preset.config.seed)
    cb = _EvalCallback(preset, model, tok, eval_rows[: preset.eval_subset], preset.eval_steps)
    tr = GRPOTrainer(model, tok, preset.reward_funcs, train_rows, preset.config,
                     reward_weights=preset.reward_weights, callbacks=[cb])
    cb.model = tr.model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        history = tr.train()
        wall = time.perf_counter() - t0
    rep = tr.preflight_report
    measured = wall - rep.preflight_seconds
    doctor = next(c for c in tr.callbacks if isinstance(c, RunDoctor))
    step_times = [m["step_time"] for m in history]
    result = {
        "command": "python benchmarks/preflight_forecast.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"preset": "tiny", "max_steps": preset.config.max_steps,
                     "per_device_train_batch_size": preset.config.per_device_train_batch_size,
                     "eval_steps": preset.eval_steps, "eval_subset": preset.eval_subset,
                     "threads": args.threads},
        "machine": machine_info(),
        "tag": args.tag,
        "preflight": {"step_seconds": rep.step_seconds, "step_seconds_measured": rep.step_seconds_all,
                      "eval_seconds": rep.eval_seconds, "num_evaluations": rep.num_evaluations,
                      "preflight_seconds": rep.preflight_seconds, "table": rep.table()},
        "forecast_s": rep.forecast_seconds,
        "forecast_low_s": rep.forecast_low_seconds,
        "train_wall_s": wall,
        "measured_after_preflight_s": measured,
        "ratio": rep.forecast_seconds / measured,
        "measured_within_forecast_band": rep.forecast_low_seconds <= measured <= rep.forecast_seconds,
        "ratio_including_preflight": (rep.forecast_seconds + rep.preflight_seconds) / wall,
        "mean_step_time_s": sum(step_times) / len(step_times),
        # the same two batches as the pre-flight's, run again as the run's first steps: equal times
        # mean the pre-flight measured the start of the run well, and any gap is later steps or load
        "run_first_two_step_times_s": step_times[:2],
        "step_time_p10_p50_p90_s": [sorted(step_times)[int(q * (len(step_times) - 1))] for q in (0.1, 0.5, 0.9)],
        # per step, to tell a trend (the run changing) from noise (the machine's load)
        "step_times_s": [round(t, 3) for t in step_times],
        "generation_times_s": [round(m["generation_time"], 3) for m in history],
        "frac_reward_zero_std": [m["frac_reward_zero_std"] for m in history],
        "completion_mean_length": [m["completions/mean_length"] for m in history],
        "steps_run": len(history),
        "doctor_findings": [f.message() for f in doctor.findings],
        "doctor_warnings": [str(w.message) for w in caught if issubclass(w.category, DoctorWarning)],
    }
    write_json(args.out, result)
    print(rep.table())
    print(f"forecast {rep.forecast_seconds:.1f} s (floor {rep.forecast_low_seconds:.1f} s), measured {measured:.1f} s after the pre-flight "
          f"(train() {wall:.1f} s): ratio {result['ratio']:.2f}; mean step {result['mean_step_time_s']:.2f} s "
          f"vs {rep.step_seconds:.2f} s measured by the pre-flight; doctor findings: {len(doctor.findings)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
