"""grpo_lib.preflight: its measured steps are undone (the run is the same run), it stops
only runs that cannot learn, and each line's verdict follows from what was sampled."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from grpo_lib.config import GRPOConfig  # noqa: E402
from grpo_lib.preflight import (  # noqa: E402
    PreflightError,
    _chat_checks,
    _zero_std_fix,
    parse_duration,
    preflight,
)
from grpo_lib.rewards import correctness_reward  # noqa: E402
from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer  # noqa: E402
from grpo_lib.trainer import TIMING_KEYS, GRPOTrainer  # noqa: E402


def rows(n=120, seed=0):
    return [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(n, "train", seed=seed)]


def cfg(**kw) -> GRPOConfig:
    base = dict(num_generations=4, per_device_train_batch_size=16, max_new_tokens=32, learning_rate=1e-4,
                max_steps=3, seed=0, progress_bar=False, device="cpu", doctor=False)
    base.update(kw)
    return GRPOConfig(**base)


def strip(history):
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in history]


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


def test_parse_duration_and_config_field():
    assert parse_duration("60m") == 3600 and parse_duration("1h30m") == 5400 and parse_duration(90) == 90
    assert parse_duration("90s") == 90 and parse_duration("2.5h") == 9000 and parse_duration("45") == 45
    for bad in ("soon", "10 parsecs", "1h30", 0, -5, "0m"):
        with pytest.raises((ValueError, TypeError)):
            parse_duration(bad)
    assert cfg(time_budget="3h").time_budget == "3h"
    with pytest.raises(ValueError, match="time_budget='soon'"):
        cfg(time_budget="soon")
    with pytest.raises(ValueError, match="preflight"):
        cfg(preflight="yes")


def test_preflight_in_train_leaves_the_run_unchanged(tok, tmp_path):
    """Two measured steps, then restored weights, optimizer, scheduler, RNG: the run that
    follows is metric for metric and weight for weight the run without the check."""
    runs = {}
    for on in (False, True):
        c = cfg(preflight=on, lr_scheduler_type="linear", warmup_steps=1)
        tr = GRPOTrainer(load_tiny_model(), tok, correctness_reward, rows(), c)
        runs[on] = (tr.train(), [p.detach().clone() for p in tr.model.parameters()], tr)
    assert strip(runs[False][0]) == strip(runs[True][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[False][1], runs[True][1]))
    rep = runs[True][2].preflight_report
    assert rep.steps_measured == 2 and rep.completions == 2 * 16 and rep.groups == 8
    assert rep.remaining_steps == 3
    assert rep.forecast_seconds == pytest.approx(3 * rep.step_seconds)  # no evaluation callback
    assert rep.step_seconds == rep.step_seconds_all[1]  # the first step is the warm-up
    assert not hasattr(runs[False][2], "preflight_report")


def test_every_completion_cut_is_a_hard_stop_before_anything_is_written(tok, tmp_path):
    out = tmp_path / "run"
    model = load_tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    tr = GRPOTrainer(model, tok, correctness_reward, rows(), cfg(max_new_tokens=1, output_dir=str(out)))
    with pytest.raises(PreflightError, match="hit the cap of 1 tokens") as e:
        tr.train()
    assert e.value.report.clipped_ratio == 1.0
    assert not out.exists()  # nothing started
    assert all(torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert tr.global_step == 0


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_every_reward_identical_is_a_hard_stop(tok, value):
    def constant(prompts, completions, **kw):
        return [value] * len(completions)

    with pytest.raises(PreflightError, match=f"every sampled reward is {value:g}"):
        preflight(load_tiny_model(), tok, rows(), constant, cfg(), verbose=False)
    # the same settings, run on purpose: a report, no error
    rep = preflight(load_tiny_model(), tok, rows(), constant, cfg(), verbose=False, raise_on_stop=False)
    assert rep.stopped and rep.frac_reward_zero_std == 1.0
    # 4 groups (a smoke run) are too few to stop a run: a warning
    small = preflight(load_tiny_model(), tok, rows(), constant, cfg(per_device_train_batch_size=8), verbose=False)
    assert small.groups == 4 and not small.stopped
    assert {c.name: c.verdict for c in small.checks}["signal"] == "warn"


def test_verdicts_follow_what_was_sampled(tok):
    """A reward that never fires warns (with weight 1) or is a note (weight 0); a cap below the
    median length warns and leaves the 95% cap unknown; a budget below the forecast warns."""

    def never(prompts, completions, **kw):
        return [0.0] * len(completions)

    rep = preflight(load_tiny_model(), tok, rows(), [correctness_reward, never], cfg(max_new_tokens=8),
                    reward_weights=[1.0, 1.0], time_budget=1e-3, verbose=False)
    by = {c.name: c for c in rep.checks}
    assert 0 < rep.clipped_ratio < 1
    assert by["completions end"].verdict == ("warn" if rep.clipped_ratio > 0.10 else "ok")
    assert rep.cap_95 is None and by["length"].verdict == "warn"
    assert all(length <= 8 for length in rep.lengths)
    assert by["reward never"].verdict == "warn" and "non-zero on 0%" in by["reward never"].finding
    s = rep.reward_summary["correctness_reward"]
    assert 0 < s["mean"] < 1 and s["nonzero"] == pytest.approx(s["mean"])  # a 0/1 reward: mean = share of 1s
    assert by["time"].verdict == "warn" and "over the budget" in by["time"].finding
    assert "max_steps=1 fits" in by["time"].fix
    rep0 = preflight(load_tiny_model(), tok, rows(), [correctness_reward, never], cfg(),
                     reward_weights=[1.0, 0.0], verbose=False)
    assert {c.name: c.verdict for c in rep0.checks}["reward never"] == "note"
    assert rep0.cap_95 is not None and rep0.cap_95 <= 32


def test_forecast_counts_evaluations_of_callbacks_that_say_how_often(tok):
    class Eval:
        every = 2

        def __init__(self):
            self.calls = 0

        def on_step_end(self, step, metrics):
            self.calls += 1
            metrics["eval/accuracy"] = 0.5

    ev = Eval()
    tr = GRPOTrainer(load_tiny_model(), tok, correctness_reward, rows(), cfg(max_steps=5, preflight=False),
                     callbacks=[ev])
    rep = preflight(tr, verbose=False)
    assert ev.calls == 1 and rep.num_evaluations == 2  # steps 2 and 4 of 5
    assert rep.forecast_seconds == pytest.approx(5 * rep.step_seconds + 2 * rep.eval_seconds)
    # beta = 0 skips groups that score alike: the floor is every step reduced to its sampling
    assert tr.config.skip_zero_advantage_groups
    assert rep.eval_seconds * 2 < rep.forecast_low_seconds < rep.forecast_seconds
    tr2 = GRPOTrainer(load_tiny_model(), tok, correctness_reward, rows(),
                      cfg(max_steps=5, preflight=False, beta=0.04))
    rep2 = preflight(tr2, verbose=False)
    assert rep2.forecast_low_seconds == rep2.forecast_seconds  # no skip with beta > 0: no floor


def test_standalone_call_removes_the_lora_adapter_it_added(tok):
    pytest.importorskip("peft")
    model = load_tiny_model()
    names = [n for n, _ in model.named_parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    c = cfg(use_lora=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"], learning_rate=1e-2)
    preflight(model, tok, rows(), correctness_reward, c, verbose=False)
    assert [n for n, _ in model.named_parameters()] == names  # no lora_ modules left
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_chat_template_and_eos_checks():
    from grpo_lib.chat_tiny import tiny_chat_tokenizer

    tok = tiny_chat_tokenizer()
    good = [tok.apply_chat_template([{"role": "user", "content": "2 + 3?"}], add_generation_prompt=True,
                                    tokenize=False)]
    checks = {c.name: c for c in _chat_checks(tok, good, [tok.eos_token_id])}
    assert good[0].endswith("A:\n") and checks["chat template"].verdict == "ok"
    assert checks["EOS set"].verdict == "ok"
    checks = {c.name: c for c in _chat_checks(tok, ["Q: 2 + 3?\n"], [tok.eos_token_id])}
    assert checks["chat template"].verdict == "warn" and "'A:\\n'" in checks["chat template"].finding
    # a template whose turns end with a marker sampling does not stop on
    tok.chat_template = tok.chat_template.replace("eos_token", "'<|im_end|>'")
    checks = {c.name: c for c in _chat_checks(tok, good, [tok.eos_token_id])}
    assert checks["EOS set"].verdict == "warn" and "<|im_end|>" in checks["EOS set"].finding
    plain = {c.name: c for c in _chat_checks(load_tiny_tokenizer(), ["Q: 1\nA:\n"], [0])}
    assert plain["chat template"].verdict == "note"


def test_zero_std_advice_uses_the_pass_rate():
    """A 0/1 reward with pass rate q: P(a group of G scores alike) = q^G + (1-q)^G."""
    rewards = [1.0, 0.0, 0.0, 0.0] * 8  # q = 0.25
    text = _zero_std_fix(rewards, 4, 0.5)
    assert f"{0.25**4 + 0.75**4:.0%} at G=4" in text and f"{0.25**8 + 0.75**8:.0%} at G=8" in text
    assert "too hard" in text and "SFT" in text


def test_cli_flags_reach_the_config(tmp_path, capsys):
    """--time-budget is validated with the config, before any work; --no-preflight turns it off."""
    from grpo_lib.train import build_parser, main

    out = tmp_path / "run"
    assert main(["--preset", "tiny", "--output-dir", str(out), "--time-budget", "soon"]) == 2
    assert "time_budget='soon'" in capsys.readouterr().err and not out.exists()
    args = build_parser().parse_args(["--no-preflight", "--time-budget", "1h30m"])
    assert args.no_preflight and parse_duration(args.time_budget) == 5400
