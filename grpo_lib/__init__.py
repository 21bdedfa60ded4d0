"""grpo_lib: Group Relative Policy Optimization, built step by step.

The library behind the GRPO course. The algorithm core (DeepSeekMath, arXiv 2402.03300):

>>> import torch
>>> from grpo_lib import group_advantages
>>> group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), group_size=4)
tensor([ 0.8659, -0.8659,  0.8659, -0.8659])
"""

from .advantages import group_advantages, zero_std_fraction
from .device import needs_grad_scaler, pick_device, pick_dtype
from .kl import kl_estimate
from .logprobs import completion_mask, entropy_from_logits, per_token_logprobs, selective_log_softmax
from .losses import LOSS_TYPE_TO_AGGREGATION, aggregate_loss, grpo_loss, policy_loss
from .utils import masked_mean, masked_sum, seed_everything

__version__ = "0.1.0"

__all__ = [
    "LOSS_TYPE_TO_AGGREGATION",
    "aggregate_loss",
    "completion_mask",
    "entropy_from_logits",
    "group_advantages",
    "grpo_loss",
    "kl_estimate",
    "masked_mean",
    "masked_sum",
    "needs_grad_scaler",
    "per_token_logprobs",
    "pick_device",
    "pick_dtype",
    "policy_loss",
    "seed_everything",
    "selective_log_softmax",
    "zero_std_fraction",
]
