"""GRPOConfig: every invalid value or combination raises one ValueError naming the field."""

from __future__ import annotations

import pytest

from grpo_lib.config import GRPOConfig

# (overrides, field name expected in the message)
BAD = [
    ({"num_generations": 1}, "num_generations"),
    ({"num_generations": 0}, "num_generations"),
    ({"num_generations": 2.0}, "num_generations"),
    ({"num_generations": True}, "num_generations"),
    ({"per_device_train_batch_size": 12, "num_generations": 8}, "per_device_train_batch_size"),
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_completion_length": -1}, "max_completion_length"),
    ({"max_completion_length": 32, "max_new_tokens": 16}, "max_completion_length"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"sampler": "vllm"}, "sampler"),
    ({"skip_zero_advantage_groups": "yes"}, "skip_zero_advantage_groups"),
    ({"filter_groups": "yes"}, "filter_groups"),
    ({"max_num_gen_batches": 0}, "max_num_gen_batches"),
    ({"rollout_dtype": "int8"}, "rollout_dtype"),
    ({"vllm_importance_sampling_correction": 1}, "vllm_importance_sampling_correction"),
    ({"vllm_importance_sampling_mode": "token"}, "vllm_importance_sampling_mode"),
    ({"vllm_importance_sampling_clip_max": 0.0}, "vllm_importance_sampling_clip_max"),
    ({"vllm_importance_sampling_clip_min": 5.0}, "vllm_importance_sampling_clip_min"),
    ({"beta": -0.1}, "beta"),
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": -0.2}, "epsilon"),
    ({"epsilon": 1.5}, "epsilon"),
    ({"epsilon_high": 0.1, "epsilon": 0.2}, "epsilon_high"),
    ({"epsilon_high": -1.0}, "epsilon_high"),
    ({"num_iterations": 0}, "num_iterations"),
    ({"loss_type": "ppo"}, "loss_type"),
    ({"loss_type": "bnpo"}, "loss_type"),
    ({"scale_rewards": "std"}, "scale_rewards"),
    ({"advantage_estimator": "rloo"}, "advantage_estimator"),
    ({"importance_sampling_level": "seq"}, "importance_sampling_level"),
    ({"mask_truncated_completions": "yes"}, "mask_truncated_completions"),
    ({"kl_kind": "k4"}, "kl_kind"),
    ({"reward_weights": []}, "reward_weights"),
    ({"reward_weights": [1.0, "a"]}, "reward_weights"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"adam_beta1": 1.0}, "adam_beta1"),
    ({"adam_beta2": -0.1}, "adam_beta2"),
    ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ({"lr_scheduler_type": "step"}, "lr_scheduler_type"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"warmup_steps": 20, "max_steps": 10}, "warmup_steps"),
    ({"max_steps": 0}, "max_steps"),
    ({"micro_batch_size": 0}, "micro_batch_size"),
    ({"micro_batch_size": 12, "num_generations": 8}, "micro_batch_size"),
    ({"share_prompt_prefix": "yes"}, "share_prompt_prefix"),
    ({"share_prompt_prefix": True, "gradient_checkpointing": True}, "share_prompt_prefix"),
    ({"use_lora": 1}, "use_lora"),
    ({"lora_r": 0}, "lora_r"),
    ({"lora_alpha": 0}, "lora_alpha"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"lora_target_modules": []}, "lora_target_modules"),
    ({"gradient_checkpointing": "no"}, "gradient_checkpointing"),
    ({"device": "tpu"}, "device"),
    ({"dtype": "float8"}, "dtype"),
    ({"seed": -1}, "seed"),
    ({"logging_steps": 0}, "logging_steps"),
    ({"save_steps": -1}, "save_steps"),
    ({"save_steps": 10, "output_dir": None}, "save_steps"),
    ({"progress_bar": None}, "progress_bar"),
    ({"save_total_limit": 0}, "save_total_limit"),
    ({"report_to": "wandb", "output_dir": "x"}, "report_to"),
    ({"preflight": "yes"}, "preflight"),
    ({"doctor": 1}, "doctor"),
    ({"time_budget": "soon"}, "time_budget"),
    ({"time_budget": 0}, "time_budget"),
]


@pytest.mark.parametrize("overrides,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_invalid_value_names_field_and_value(overrides, field):
    with pytest.raises(ValueError) as exc:
        GRPOConfig(**overrides)
    msg = str(exc.value)
    assert field in msg
    # the message repeats the value received
    assert repr(overrides[field]) in msg or str(overrides[field]) in msg


def test_every_field_has_a_bad_value_case():
    """Guard: a new field must come with a test case (or be listed as free-form here)."""
    from dataclasses import fields

    free_form = {"output_dir"}
    tested = {f for _, f in BAD}
    missing = {f.name for f in fields(GRPOConfig)} - tested - free_form
    assert not missing, f"add an invalid-value case for {sorted(missing)}"


def test_several_problems_reported_together():
    with pytest.raises(ValueError) as exc:
        GRPOConfig(num_generations=1, epsilon=0.0, loss_type="x")
    msg = str(exc.value)
    assert "num_generations" in msg and "epsilon" in msg and "loss_type" in msg


def test_defaults_valid_and_trl_like():
    c = GRPOConfig()
    assert c.num_generations == 8 and c.beta == 0.0 and c.epsilon == 0.2
    assert c.loss_type == "dapo" and c.scale_rewards == "group"
    assert c.prompts_per_step == c.per_device_train_batch_size // c.num_generations


def test_max_completion_length_alias():
    c = GRPOConfig(max_completion_length=48)
    assert c.max_new_tokens == 48 and c.max_completion_length == 48
    c = GRPOConfig(max_new_tokens=20)
    assert c.max_completion_length == 20
    c = GRPOConfig(max_new_tokens=20, max_completion_length=20)
    assert c.max_new_tokens == 20


def test_scale_rewards_bool_like_trl():
    assert GRPOConfig(scale_rewards=True).scale_rewards == "group"
    assert GRPOConfig(scale_rewards=False).scale_rewards == "none"


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="num_generation"):
        GRPOConfig.from_dict({"num_generation": 8})
    assert GRPOConfig.from_dict(GRPOConfig(seed=3).to_dict()).seed == 3


def test_share_prompt_prefix_defaults_to_off_under_gradient_checkpointing():
    from grpo_lib.config import GRPOConfig

    assert GRPOConfig().share_prompt_prefix is True
    assert GRPOConfig(gradient_checkpointing=True).share_prompt_prefix is False
    assert GRPOConfig(share_prompt_prefix=False).share_prompt_prefix is False
