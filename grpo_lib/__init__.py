"""grpo_lib: Group Relative Policy Optimization, built step by step.

The library behind the GRPO course. The algorithm core (DeepSeekMath, arXiv 2402.03300):

>>> import torch
>>> from grpo_lib import group_advantages
>>> group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), group_size=4)
tensor([ 0.8659, -0.8659,  0.8659, -0.8659])
"""

from .advantages import compute_advantages, group_advantages, reinforce_pp_advantages, zero_std_fraction
from .answers import answers_match, extract_answer, gold_number, parse_number
from .device import needs_grad_scaler, pick_device, pick_dtype
from .evaluate import EvalRecord, EvalResult, evaluate, wilson_interval
from .gsm8k import SYSTEM_PROMPT, GSM8KExample, GSM8KSplit, build_chat_prompt, build_plain_prompt, load_gsm8k, local_gsm8k_dir
from .kl import kl_estimate
from .logprobs import completion_mask, entropy_from_logits, per_token_logprobs, selective_log_softmax, stop_token_ids
from .losses import LOSS_TYPE_TO_AGGREGATION, aggregate_loss, grpo_loss, policy_loss
from .rewards import correctness_reward, format_reward, lenient_correctness_reward
from .utils import masked_mean, masked_sum, seed_everything
from . import preflight  # noqa: E402 - a callable module: grpo_lib.preflight(model, tokenizer, rows, reward_funcs, config)

__version__ = "0.1.0"

# Names whose modules import transformers or peft: loaded on first use, so that
# ``import grpo_lib`` stays fast for the notebooks that only need the algorithm core.
_LAZY = {
    "GRPOConfig": "config",
    "GRPOTrainer": "trainer",
    "TrainerCallback": "trainer",
    "Rollout": "rollout",
    "sample_groups": "rollout",
    "make_dataset": "tasks",
    "format_prompt": "tasks",
    "Problem": "tasks",
    "load_tiny_model": "tiny",
    "load_tiny_tokenizer": "tiny",
    "build_tiny_model": "tiny",
    "build_tiny_tokenizer": "tiny",
    "load_policy": "models",
    "plan_precision": "models",
    "lora_config": "models",
    "get_preset": "presets",
    "register_preset": "presets",
    "check_leakage": "leakage",
    "LeakageReport": "leakage",
    "build_run_card": "card",
    "write_run_card": "card",
    "PreflightReport": "preflight",
    "PreflightError": "preflight",
    "RunDoctor": "doctor",
    "diagnose_run": "doctor",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'grpo_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "aggregate_loss",
    "answers_match",
    "build_chat_prompt",
    "build_plain_prompt",
    "build_run_card",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "check_leakage",
    "completion_mask",
    "compute_advantages",
    "correctness_reward",
    "diagnose_run",
    "entropy_from_logits",
    "EvalRecord",
    "EvalResult",
    "evaluate",
    "extract_answer",
    "format_prompt",
    "format_reward",
    "get_preset",
    "gold_number",
    "group_advantages",
    "grpo_loss",
    "GRPOConfig",
    "GRPOTrainer",
    "GSM8KExample",
    "GSM8KSplit",
    "kl_estimate",
    "LeakageReport",
    "lenient_correctness_reward",
    "load_gsm8k",
    "load_policy",
    "load_tiny_model",
    "load_tiny_tokenizer",
    "local_gsm8k_dir",
    "lora_config",
    "LOSS_TYPE_TO_AGGREGATION",
    "make_dataset",
    "masked_mean",
    "masked_sum",
    "needs_grad_scaler",
    "parse_number",
    "per_token_logprobs",
    "pick_device",
    "pick_dtype",
    "plan_precision",
    "policy_loss",
    "preflight",
    "PreflightError",
    "PreflightReport",
    "Problem",
    "register_preset",
    "reinforce_pp_advantages",
    "Rollout",
    "RunDoctor",
    "sample_groups",
    "seed_everything",
    "selective_log_softmax",
    "stop_token_ids",
    "SYSTEM_PROMPT",
    "TrainerCallback",
    "wilson_interval",
    "write_run_card",
    "zero_std_fraction",
]
