"""The TRL path: grpo_lib's reward functions, unchanged, in TRL's GRPOTrainer with the
tiny chat model and a peft LoRA config, for two steps on the CPU (TRL is optional)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from grpo_lib.chat_tiny import save_tiny_chat  # noqa: E402
from grpo_lib.models import load_policy, lora_config  # noqa: E402
from grpo_lib.rewards import correctness_reward, format_reward  # noqa: E402

QUESTIONS = [("What is 2 plus 3?", "5"), ("What is 9 minus 4?", "5"), ("What is 3 times 3?", "9"),
             ("What is 8 divided by 2?", "4")]


def test_trl_grpo_runs_our_rewards_with_lora(tmp_path):
    from grpo_lib.gsm8k import build_chat_prompt

    model_dir = save_tiny_chat(tmp_path / "tiny")
    model, tok = load_policy(model_dir, lora=None)
    calls: list[dict] = []

    def spy(prompts, completions, answer, **kwargs):  # what TRL passes to a reward function
        calls.append({"n": len(completions), "answer": list(answer), "kwargs": sorted(kwargs)})
        return [0.0] * len(completions)

    ds = datasets.Dataset.from_list([{"prompt": build_chat_prompt(tok, q), "answer": a} for q, a in QUESTIONS])
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4,
        max_completion_length=12, max_steps=2, learning_rate=1e-2, lr_scheduler_type="constant",
        logging_steps=1, report_to="none", use_cpu=True, bf16=False, beta=0.0, temperature=1.0,
        loss_type="dapo", scale_rewards="group", reward_weights=[1.0, 0.2, 0.0], save_strategy="no",
        seed=0, disable_tqdm=True,
        **{("activation_checkpointing" if hasattr(trl.GRPOConfig, "activation_checkpointing")
            else "gradient_checkpointing"): False},  # transformers 5.25 renamed it
    )
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[correctness_reward, format_reward, spy], args=args,
                              train_dataset=ds, processing_class=tok, peft_config=lora_config(r=4, alpha=8))
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainer.train()

    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2
    for key in ("rewards/correctness_reward/mean", "rewards/format_reward/mean", "reward",
                "frac_reward_zero_std", "completions/clipped_ratio"):
        assert key in logs[-1], key
    # TRL called our functions with the batch, the answer column by name, and extras in **kwargs
    assert calls and all(c["n"] == 8 for c in calls)
    assert all(a in {"5", "9", "4"} for c in calls for a in c["answer"])
    assert "completion_ids" in calls[0]["kwargs"]
    # peft wrapped the model: only LoRA weights train, the base stays bit-identical
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(torch.equal(p, base[n]) for n, p in trainer.model.named_parameters() if n in base)


def test_our_rewards_score_trl_chat_style_completions():
    # with a conversational dataset TRL passes completions as lists of messages
    completions = [[{"role": "assistant", "content": "2 + 3 = 5\n#### 5"}],
                   [{"role": "assistant", "content": "#### 6"}]]
    assert correctness_reward(prompts=None, completions=completions, answer=["5", "5"]) == [1.0, 0.0]
    assert format_reward(prompts=None, completions=completions) == [1.0, 1.0]
