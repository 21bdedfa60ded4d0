"""grpo_lib: Group Relative Policy Optimization, built step by step.

The library behind the GRPO course. The algorithm core (DeepSeekMath, arXiv 2402.03300):

>>> import torch
>>> from grpo_lib import group_advantages
>>> group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), group_size=4)
tensor([ 0.8659, -0.8659,  0.8659, -0.8659])
"""

from .advantages import group_advantages, zero_std_fraction
from .answers import answers_match, extract_answer, gold_number, parse_number
from .device import needs_grad_scaler, pick_device, pick_dtype
from .evaluate import EvalRecord, EvalResult, evaluate, wilson_interval
from .gsm8k import SYSTEM_PROMPT, GSM8KExample, GSM8KSplit, build_chat_prompt, build_plain_prompt, load_gsm8k, local_gsm8k_dir
from .kl import kl_estimate
from .logprobs import completion_mask, entropy_from_logits, per_token_logprobs, selective_log_softmax
from .losses import LOSS_TYPE_TO_AGGREGATION, aggregate_loss, grpo_loss, policy_loss
from .rewards import correctness_reward, format_reward, lenient_correctness_reward
from .utils import masked_mean, masked_sum, seed_everything

__version__ = "0.1.0"

__all__ = [
    "aggregate_loss",
    "answers_match",
    "build_chat_prompt",
    "build_plain_prompt",
    "completion_mask",
    "correctness_reward",
    "entropy_from_logits",
    "EvalRecord",
    "EvalResult",
    "evaluate",
    "extract_answer",
    "format_reward",
    "gold_number",
    "group_advantages",
    "grpo_loss",
    "GSM8KExample",
    "GSM8KSplit",
    "kl_estimate",
    "lenient_correctness_reward",
    "load_gsm8k",
    "local_gsm8k_dir",
    "LOSS_TYPE_TO_AGGREGATION",
    "masked_mean",
    "masked_sum",
    "needs_grad_scaler",
    "parse_number",
    "per_token_logprobs",
    "pick_device",
    "pick_dtype",
    "policy_loss",
    "seed_everything",
    "selective_log_softmax",
    "SYSTEM_PROMPT",
    "wilson_interval",
    "zero_std_fraction",
]
