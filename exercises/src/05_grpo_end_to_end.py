# Source of exercises/05_grpo_end_to_end.ipynb and solutions/05_grpo_end_to_end.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 05 · The GRPO loss, end to end
#
# **Objective.** Reduce per-token losses to one number the way GRPO, DAPO and Dr. GRPO each do,
# then compose the whole GRPO loss. Lesson:
# [`notebooks/05_grpo_end_to_end.ipynb`](../notebooks/05_grpo_end_to_end.ipynb).
#
# Replace each `raise NotImplementedError(...)` with your code, then run the `check_...` cell
# under it. Filled version: `solutions/05_grpo_end_to_end.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto" (the exercises are the same in every profile)
SEED = 0

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import grpo_lib
from grpo_lib import kl_estimate, policy_loss
from grpo_lib.checks import check_aggregate_loss, check_grpo_loss
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int))
S = profile_settings(PROFILE, smoke=dict(), full=dict())
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · Loss aggregation, three ways
#
# `per_token_loss` and `mask` are `[B, T]`; $|o_i| = \sum_t m_{i,t}$ is completion i's length.
# Only masked-in tokens count, in the numerator **and** the denominator.
#
# | mode (verl's name) | used by | formula |
# |---|---|---|
# | `"seq-mean-token-mean"` | GRPO (DeepSeekMath eq. 3) | $\frac1B\sum_i \frac{1}{\lvert o_i\rvert}\sum_t m_{i,t}\ell_{i,t}$ |
# | `"token-mean"` | DAPO (arXiv 2503.14476 §3.3) | $\sum_{i,t} m_{i,t}\ell_{i,t} \big/ \sum_{i} \lvert o_i\rvert$ |
# | `"seq-mean-token-sum-norm"` | Dr. GRPO (arXiv 2503.20783 §3.1) | $\sum_{i,t} m_{i,t}\ell_{i,t} \big/ (B\cdot L)$ |
#
# L is `max_completion_length` when given, else the tensor width T. A completion with no tokens
# (a mask row of zeros) must not produce NaN: clamp counts to at least 1.

# %%
def aggregate_loss(per_token_loss: torch.Tensor, mask: torch.Tensor, mode: str,
                   max_completion_length: int | None = None) -> torch.Tensor:
    """Scalar loss from [B, T] per-token losses, counting only mask == 1 tokens."""
    m = mask.to(per_token_loss.dtype)
    masked_sum = (per_token_loss * m).sum(dim=-1)  # [B]
    ### HINT: lengths = m.sum(-1).clamp(min=1); one branch per mode; B, T = per_token_loss.shape
    ### BEGIN SOLUTION
    B, T = per_token_loss.shape
    if mode == "seq-mean-token-mean":
        return (masked_sum / m.sum(dim=-1).clamp(min=1)).mean()
    if mode == "token-mean":
        return masked_sum.sum() / m.sum().clamp(min=1)
    if mode == "seq-mean-token-sum-norm":
        L = T if max_completion_length is None else max_completion_length
        return masked_sum.sum() / (B * L)
    raise ValueError(f"unknown mode {mode!r}")
    ### END SOLUTION


# %%
check_aggregate_loss(aggregate_loss)

# %% [markdown]
# Why it matters: two completions with the same advantage, one of 2 tokens and one of 8. How much
# does each *token* weigh in the gradient under each mode?

# %%
mask = torch.tensor([[1.0, 1, 0, 0, 0, 0, 0, 0], [1.0] * 8])
for mode in ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"):
    x = torch.zeros(2, 8, requires_grad=True)
    aggregate_loss(x, mask, mode).backward()
    w_short, w_long = x.grad[0, 0].item(), x.grad[1, 0].item()
    print(f"{mode:>24}: weight of a token: short {w_short:.4f}, long {w_long:.4f}  (ratio {w_short / w_long:.1f})")
    if mode == "seq-mean-token-mean":
        assert w_short / w_long == 4.0  # GRPO: a short completion's tokens weigh 8/2 = 4x more

# %% [markdown]
# ## Exercise 2 · The GRPO loss
#
# DeepSeekMath eq. 3, negated to be minimised, per token then aggregated:
#
# $$\mathcal L = \operatorname{aggregate}\Big(-\min\big(\rho_{i,t}A_i,\ \operatorname{clip}(\rho_{i,t},1-\varepsilon,1+\varepsilon)A_i\big) + \beta\,k_3(i,t)\Big)$$
#
# Compose it from the pieces (your `aggregate_loss` above, and `grpo_lib.policy_loss`, which
# returns `(per_token_loss, stats)`, and `grpo_lib.kl_estimate(logp, ref_logp, "k3")`, or your own
# versions from exercises 03 and 04). Three details:
# `loss_type` picks the aggregation (`"grpo"` → `"seq-mean-token-mean"`, `"dapo"` → `"token-mean"`,
# `"dr_grpo"` → `"seq-mean-token-sum-norm"`); `old_logp=None` means one update per rollout, so
# `old_logp = logp.detach()`; with `beta = 0` there is no reference (`ref_logp` is None): skip the KL.

# %%
LOSS_TYPE_TO_MODE = {"grpo": "seq-mean-token-mean", "dapo": "token-mean", "dr_grpo": "seq-mean-token-sum-norm"}


def my_grpo_loss(logp, old_logp, advantages, mask, ref_logp=None, beta=0.0, epsilon=0.2,
                 loss_type="grpo") -> torch.Tensor:
    """aggregate(-min(ρA, clip(ρ)A) + β·k3) in the mode of loss_type."""
    ### HINT: old_logp = logp.detach() if None; per_token, _ = policy_loss(logp, old_logp, advantages, mask, epsilon=epsilon); add beta * kl_estimate(...) if beta > 0
    ### BEGIN SOLUTION
    if old_logp is None:
        old_logp = logp.detach()
    per_token, _ = policy_loss(logp, old_logp, advantages, mask, epsilon=epsilon)
    if beta > 0:
        per_token = per_token + beta * kl_estimate(logp, ref_logp, "k3")
    return aggregate_loss(per_token, mask, LOSS_TYPE_TO_MODE[loss_type])
    ### END SOLUTION


# %%
check_grpo_loss(my_grpo_loss)

# %% [markdown]
# **Think.** A learner runs GRPO with μ = 1 and β = 0 and sees a loss of exactly 0.000 at every
# step. Is training broken?
#
# ### BEGIN SOLUTION
# No. With μ = 1 every ratio is 1 and each token's loss is $-A_i$; with β = 0 there is no KL term.
# The advantages of a group sum to zero. With `loss_type="grpo"` each completion's token mean is
# $-A_i$, so the value is 0 up to rounding; with `"dapo"` or `"dr_grpo"` tokens weigh by length and
# the value is near 0, not exactly. The gradient $-A_i\nabla\log\pi_\theta$ is not zero. Watch the
# reward (and `frac_reward_zero_std`), not the loss.
# ### END SOLUTION

# %% [markdown]
# **Next:** [`exercises/06_gsm8k_rewards_and_evaluation.ipynb`](06_gsm8k_rewards_and_evaluation.ipynb).
