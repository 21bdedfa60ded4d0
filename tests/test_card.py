"""The run card: written by every GRPOTrainer.train() with an output_dir, generated from the
run's own config, code and metrics, and changed by a changed setting or reward function."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from grpo_lib.card import build_run_card, callable_record, main, render_markdown, texts_sha256, weights_sha256  # noqa: E402
from grpo_lib.config import GRPOConfig  # noqa: E402
from grpo_lib.rewards import correctness_reward  # noqa: E402
from grpo_lib.tasks import make_dataset  # noqa: E402
from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer  # noqa: E402
from grpo_lib.trainer import GRPOTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rows(n=64, split="train", seed=0):
    return [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(n, split, seed=seed)]


def config(**kw) -> GRPOConfig:
    base = dict(num_generations=4, per_device_train_batch_size=16, max_new_tokens=24, learning_rate=1e-4,
                max_steps=1, seed=0, progress_bar=False, device="cpu")
    base.update(kw)
    return GRPOConfig(**base)


def reward_v1(prompts, completions, **kw):
    return [float(len(c) > 10) for c in completions]


def reward_v2(prompts, completions, **kw):
    return [float(len(c) > 12) for c in completions]


reward_v2.__name__ = "reward_v1"  # same name, different code: the card must still tell them apart


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tok):
    out = tmp_path_factory.mktemp("card") / "run"
    trainer = GRPOTrainer(load_tiny_model(), tok, [correctness_reward, reward_v1], rows(),
                          config(output_dir=str(out)), reward_weights=[1.0, 0.0])
    trainer.train()
    return trainer, out


def test_every_run_with_an_output_dir_writes_the_card(finished_run):
    trainer, out = finished_run
    card = json.loads((out / "run_card.json").read_text())
    md = (out / "run_card.md").read_text()
    assert card["status"] == "finished" and md.startswith("# GRPO run card (finished)")
    # the base weights' hash is of the model BEFORE the update (a fresh load), not after it
    fresh = weights_sha256(load_tiny_model())
    assert card["base_model"]["weights_sha256"] == fresh != weights_sha256(trainer.model)
    assert fresh in md
    # counts from the run's own rollout (1 step), computed here independently
    ro, r = trainer.last_rollout, trainer.last_rewards
    grouped = r.view(-1, 4)
    assert card["run"]["zero_signal_groups"] == int((grouped.max(1).values == grouped.min(1).values).sum())
    assert card["run"]["truncated_completions"] == int(ro.truncated.sum())
    assert card["run"]["tokens_generated"] == int(ro.lengths.sum())
    assert card["run"]["completions_sampled"] == 16
    # the reward functions: where they are and a hash of their code
    rec = card["rewards"][0]
    src = (ROOT / "grpo_lib" / "rewards.py").read_text().splitlines()
    assert rec["file"] == "grpo_lib/rewards.py" and src[rec["line"] - 1].startswith("def correctness_reward(")
    assert [x["weight"] for x in card["rewards"]] == [1.0, 0.0]
    # data and config come from the run
    assert card["training_data"]["rows"] == 64
    assert card["training_data"]["prompts_sha256"] == texts_sha256([x["prompt"] for x in rows()])
    assert card["config"] == trainer.config.to_dict()
    assert card["reference_policy"]["rule"].startswith("none: beta = 0")
    assert card["leakage"] is None and "Not checked" in md


def test_cli_prints_the_card(finished_run, capsys, tmp_path):
    _, out = finished_run
    assert main([str(out)]) == 0
    assert capsys.readouterr().out == (out / "run_card.md").read_text()  # rendered again from the JSON
    assert main([str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "finished"
    assert main([str(tmp_path)]) == 2
    assert "no run_card.json" in capsys.readouterr().err


def test_a_changed_setting_or_reward_function_changes_the_card(tok):
    model = load_tiny_model()

    def card_of(reward, **kw):
        return build_run_card(GRPOTrainer(model, tok, reward, rows(), config(**kw)))

    def stable(c):
        return {k: v for k, v in c.items() if k not in ("written_at", "budget")}

    base = card_of(reward_v1)
    assert stable(card_of(reward_v1)) == stable(base)  # the same run, the same card
    hot = card_of(reward_v1, temperature=0.7)
    assert hot["sampling"]["temperature"] == 0.7 and base["sampling"]["temperature"] == 1.0
    kl = card_of(reward_v1, beta=0.04, skip_zero_advantage_groups=False)
    assert kl["objective"]["kl_estimator"] == "k3" and "frozen copy" in kl["reference_policy"]["rule"]
    other = card_of(reward_v2)
    assert other["rewards"][0]["name"] == base["rewards"][0]["name"] == "reward_v1"
    assert other["rewards"][0]["source_sha256"] != base["rewards"][0]["source_sha256"]
    assert render_markdown(other) != render_markdown(base)


def test_leakage_is_reported_and_held_out_refused(finished_run):
    trainer, _ = finished_run
    ev = rows(20, "test", seed=3)
    clean = build_run_card(trainer, eval_rows=ev, eval_after={"strict_accuracy": 0.5, "strict_ci": [0.3, 0.7], "n": 20})
    assert clean["leakage"]["held_out"] is True and clean["evaluation"]["held_out"] is True
    assert "Held-out: yes" in render_markdown(clean)
    planted = ev + [trainer.dataset[5]]  # one training prompt planted in the evaluation set
    card = build_run_card(trainer, eval_rows=planted, eval_after={"strict_accuracy": 0.5, "n": 21})
    assert card["leakage"]["num_exact"] == 1 and card["leakage"]["exact"][0]["eval_index"] == 20
    assert card["leakage"]["exact"][0]["train_index"] == 5
    assert card["evaluation"]["held_out"] is False
    md = render_markdown(card)
    assert "NOT held-out" in md and "Held-out: **no**" in md and "Held-out: yes" not in md


def test_an_interrupted_run_still_writes_its_card(tmp_path, tok):
    out = tmp_path / "run"

    def stop(step, metrics):
        if step == 1:
            raise KeyboardInterrupt

    t = GRPOTrainer(load_tiny_model(), tok, correctness_reward, rows(), config(max_steps=3, output_dir=str(out)),
                    callbacks=[stop])
    with pytest.raises(KeyboardInterrupt):
        t.train()
    card = json.loads((out / "run_card.json").read_text())
    assert card["status"] == "interrupted at step 1" and card["run"]["steps"] == 1


def test_no_output_dir_writes_nothing(tmp_path, tok, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = GRPOTrainer(load_tiny_model(), tok, correctness_reward, rows(), config())
    t.train()
    assert not list(tmp_path.iterdir()) and t._card_status == "finished"


def test_weights_hash_ignores_a_lora_wrapper_and_sees_one_changed_value():
    from peft import LoraConfig, get_peft_model

    m = load_tiny_model()
    h = weights_sha256(m)
    wrapped = get_peft_model(load_tiny_model(), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    assert weights_sha256(wrapped) == h
    assert weights_sha256(wrapped, include_adapter=True) != h
    with torch.no_grad():
        p = next(m.parameters())
        p.view(-1)[0] = torch.nextafter(p.view(-1)[0], torch.tensor(float("inf")))
    assert weights_sha256(m) != h


def test_callable_record_unwraps_partial_and_survives_no_source():
    import functools

    rec = callable_record(functools.partial(correctness_reward, tol=1e-3))
    assert rec["name"] == "correctness_reward" and rec["partial"] == {"tol": "0.001"}
    ns: dict = {}
    exec("def made(prompts, completions, **kw):\n    return [0.0] * len(completions)\n", ns)
    rec2 = callable_record(ns["made"])
    assert rec2["line"] is None and rec2["source_sha256"].startswith("bytecode:")


def test_the_command_line_card_has_the_evaluation_and_the_leakage_check(tmp_path):
    from grpo_lib.leakage import check_leakage
    from grpo_lib.presets import get_preset
    from grpo_lib.train import main as train_main

    out = tmp_path / "cli"
    argv = ["--preset", "tiny", "--no-progress", "--eval-limit", "32", "--eval-steps", "0", "--max-steps", "1",
            "--set", "per_device_train_batch_size=16", "--set", "num_generations=4", "--output-dir", str(out)]
    assert train_main(argv) == 0
    card = json.loads((out / "run_card.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    ev = card["evaluation"]
    # summary.json rounds its figures to 4 decimals; the card keeps the evaluation's own value
    assert round(ev["before"]["strict_accuracy"], 4) == summary["accuracy_before"]
    assert round(ev["after"]["strict_accuracy"], 4) == summary["accuracy_after"]
    assert ev["before"]["n"] == ev["after"]["n"] == 32 and "lenient_accuracy" in ev["after"]
    train, test = get_preset("tiny").load_data(0)
    expected = check_leakage([r["prompt"] for r in train], [r["prompt"] for r in test[:32]])
    assert card["leakage"]["num_exact"] == len(expected.exact) and card["leakage"]["num_near"] == len(expected.near)
    assert ev["held_out"] is expected.held_out
    assert card["training_data"]["source"]["qualname"] == "_tiny_data"
