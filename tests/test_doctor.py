"""The run doctor: every rule fires when its failure is provoked on the tiny model, and stays
silent on a healthy run; the command line reads a run folder and writes a PNG."""

from __future__ import annotations

import math
import os
import time
import warnings
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from grpo_lib.config import GRPOConfig  # noqa: E402
from grpo_lib.doctor import DoctorStop, DoctorWarning, RunDoctor, diagnose, main  # noqa: E402
from grpo_lib.rewards import correctness_reward  # noqa: E402
from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer  # noqa: E402
from grpo_lib.trainer import GRPOTrainer  # noqa: E402


def rows(n=200, seed=0):
    return [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(n, "train", seed=seed)]


def cfg(**kw) -> GRPOConfig:
    base = dict(num_generations=4, per_device_train_batch_size=16, max_new_tokens=24, learning_rate=1e-4,
                max_steps=6, seed=0, progress_bar=False, device="cpu", preflight=False, doctor=True)
    base.update(kw)
    return GRPOConfig(**base)


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


def run(tok, reward, config, model=None, expect_stop=False):
    """Train and return (the doctor's findings by rule, the DoctorWarnings raised)."""
    tr = GRPOTrainer(model if model is not None else load_tiny_model(), tok, reward, rows(), config)
    doc = next(cb for cb in tr.callbacks if isinstance(cb, RunDoctor))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if expect_stop:
            with pytest.raises(DoctorStop):
                tr.train()
        else:
            tr.train()
    warned = [str(w.message) for w in caught if issubclass(w.category, DoctorWarning)]
    assert len(warned) == len(doc.findings)  # one warning per finding, each rule once
    return {f.rule: f for f in doc.findings}, tr


def always_zero(prompts, completions, **kw):
    return [0.0] * len(completions)


def always_one(prompts, completions, **kw):
    return [1.0] * len(completions)


def shortest(prompts, completions, **kw):
    return [-float(len(c)) for c in completions]


def crc_reward(prompts, completions, **kw):
    """A deterministic pseudo-random score of the text: groups almost always disagree."""
    return [float(zlib.crc32(c.encode()) % 7) for c in completions]


# --------------------------------------------------------- provoked on the tiny model
def test_reward_always_zero_fires_no_signal(tok):
    found, _ = run(tok, always_zero, cfg())
    assert set(found) == {"no_signal"} and found["no_signal"].step == 5
    assert "format check" in found["no_signal"].cause


def test_constant_reward_fires_no_signal(tok):
    found, _ = run(tok, always_one, cfg())
    assert set(found) == {"no_signal"} and "too easy" in found["no_signal"].cause


def test_cap_of_four_tokens_fires_clipped(tok):
    found, _ = run(tok, correctness_reward, cfg(max_new_tokens=4, max_steps=3))
    assert "clipped" in found and found["clipped"].step == 3


def test_collapsing_learning_rate_fires_entropy(tok):
    """lr 3e-2 with a 'be short' reward drives the policy to answer with EOS at once. With the
    zero-advantage skip on, a fully collapsed policy's groups are all skipped and its entropy is
    not measured (no_signal fires instead), so the skip is off here."""
    c = cfg(learning_rate=3e-2, max_grad_norm=None, max_steps=8, skip_zero_advantage_groups=False)
    found, tr = run(tok, shortest, c)
    assert "entropy" in found
    assert tr.log_history[-1]["entropy"] < 0.1 * tr.log_history[0]["entropy"]


def test_kl_explodes_with_beta(tok):
    found, tr = run(tok, correctness_reward, cfg(beta=0.04, learning_rate=1e-2, max_grad_norm=None, max_steps=4))
    assert "kl" in found and tr.log_history[found["kl"].step - 1]["kl"] > 1.0


def test_every_token_masked_fires_grad_zero(tok):
    c = cfg(max_new_tokens=4, mask_truncated_completions=True, max_steps=4)
    found, tr = run(tok, crc_reward, c)
    assert "grad_zero" in found
    assert all(m["grad_norm"] == 0.0 and m["frac_reward_zero_std"] < 1 for m in tr.log_history[:3])


def test_overflowing_loss_scale_fires_grad_nan(tok):
    """fp16 base + fp32 LoRA with a loss scale of 2**60: every step overflows and is skipped."""
    from peft import LoraConfig, get_peft_model

    model = load_tiny_model().to(torch.float16)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for _, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
    tr = GRPOTrainer(model, tok, crc_reward, rows(), cfg(max_steps=4, max_new_tokens=32))
    tr.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)
    doc = next(cb for cb in tr.callbacks if isinstance(cb, RunDoctor))
    with pytest.warns(DoctorWarning, match="grad_nan"):
        tr.train()
    assert [f.rule for f in doc.findings] == ["grad_nan"] and doc.findings[0].step == 3


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tok, tmp_path):
    calls = {"n": 0}

    def breaks_at_step_3(prompts, completions, **kw):
        calls["n"] += 1
        out = crc_reward(prompts, completions)
        if calls["n"] == 3:
            out[0] = math.inf  # its group's std is inf: NaN advantages, NaN loss
        return out

    found, tr = run(tok, breaks_at_step_3, cfg(save_steps=1, output_dir=str(tmp_path)), expect_stop=True)
    assert "loss_nan" in found and found["loss_nan"].step == 3
    assert (tmp_path / "checkpoint-2").exists() and not (tmp_path / "checkpoint-3").exists()
    assert tr.global_step == 3 and len(tr.log_history) == 2


@pytest.mark.slow
def test_steps_slowing_down_fire_slowdown(tok):
    calls = {"n": 0}

    def slows_down(prompts, completions, **kw):
        calls["n"] += 1
        if calls["n"] > 11:
            time.sleep(1.5)  # the machine got slower: every step from step 12 on
        return crc_reward(prompts, completions)

    found, _ = run(tok, slows_down, cfg(max_steps=21, max_new_tokens=12))
    assert "slowdown" in found and "not the completions' length" in found["slowdown"].cause


@pytest.mark.slow
def test_healthy_tiny_preset_is_silent(tok):
    """The tiny preset's settings (G = 8, 16 prompts, temperature 0.7, lr 1e-4), 12 steps: no
    rule fires. (benchmarks/preflight_forecast.py checks the full 100-step preset.)"""
    from grpo_lib.presets import get_preset

    p = get_preset("tiny").with_config(max_steps=12, output_dir=None, save_steps=0, progress_bar=False,
                                       preflight=False)
    model, tk = p.load_model(p.config)
    train, _ = p.load_data(0)
    tr = GRPOTrainer(model, tk, p.reward_funcs, train, p.config, reward_weights=p.reward_weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = tr.train()
    assert not [w for w in caught if issubclass(w.category, DoctorWarning)]
    assert diagnose(hist, p.config.to_dict()) == []


# ------------------------------------------------------------- the rules, by hand
def healthy(n=30):
    return [{"step": i + 1, "reward": 0.3 + 0.02 * i, "frac_reward_zero_std": 0.2, "completions/clipped_ratio": 0.0,
             "entropy": 0.3, "loss": 0.0, "grad_norm": 0.5, "step_time": 1.0, "completions/mean_length": 10.0}
            for i in range(n)]


@pytest.mark.parametrize("rule,change,config", [
    ("no_signal", {"frac_reward_zero_std": 1.0, "reward": 0.0}, {}),
    ("clipped", {"completions/clipped_ratio": 0.5}, {"max_new_tokens": 40}),
    ("entropy", {"entropy": 0.01}, {}),
    ("kl", {"kl": 3.0}, {"beta": 0.04}),
    ("grad_zero", {"grad_norm": 0.0}, {}),
    ("grad_nan", {"grad_norm": math.nan}, {}),
    ("loss_nan", {"loss": math.nan}, {}),
    ("slowdown", {"step_time": 4.0}, {}),
])
def test_each_rule_fires_on_its_symptom_from_step_11_only(rule, change, config):
    """The symptom starts at step 11 of a healthy history: that rule, and only it, fires, at
    the step its window first shows it."""
    hist = healthy()
    for m in hist[10:]:
        m.update(change)
    assert diagnose(healthy(), config) == []
    found = diagnose(hist, config)
    assert [f.rule for f in found] == [rule]
    # no_signal: 5 flat steps; slowdown: the median of the last 10 (6 slow ones) against steps
    # 2-11; clipped: mean of (0, 0.5, 0.5) = 0.33 >= 0.3; grad_zero: 3 steps; entropy: mean of the last 3
    first = {"no_signal": 15, "slowdown": 21, "clipped": 12, "grad_zero": 13, "entropy": 13}.get(rule, 11)
    assert found[0].step == first


def test_kl_is_ignored_without_beta_and_scaler_overflows_need_three_steps():
    hist = healthy()
    for m in hist[10:]:
        m["kl"] = 3.0
    assert diagnose(hist, {"beta": 0.0}) == []
    hist = healthy()
    for m in hist:
        m["grad_scale"] = 1024.0
    hist[10]["grad_norm"] = math.inf  # one skipped step: the scaler's job, not a failure
    assert diagnose(hist, {}) == []


# ---------------------------------------------------------------- after the fact
def test_cli_reads_a_run_and_draws_its_curves(tok, tmp_path, capsys):
    run(tok, always_zero, cfg(output_dir=str(tmp_path / "bad")))
    assert main([str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert "no_signal" in out and "fix:" in out
    assert (tmp_path / "bad" / "doctor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run(tok, correctness_reward, cfg(output_dir=str(tmp_path / "ok"), max_steps=3))
    assert main([str(tmp_path / "ok"), "--no-plot"]) == 0
    assert "no known failure" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
