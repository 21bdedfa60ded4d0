# Source of exercises/03_ratios_and_clipping.ipynb and solutions/03_ratios_and_clipping.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 03 · Ratios and clipping
#
# **Objective.** Score completion tokens exactly as the sampler drew them (the temperature!), and
# write PPO's clipped surrogate. Lesson:
# [`notebooks/03_ratios_and_clipping.ipynb`](../notebooks/03_ratios_and_clipping.ipynb).
#
# Replace each `raise NotImplementedError(...)` with your code, then run the `check_...` cell
# under it. Filled version: `solutions/03_ratios_and_clipping.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto" (the exercises are the same in every profile)
SEED = 0

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import grpo_lib
from grpo_lib.checks import check_clipped_surrogate, check_completion_logprobs
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int))
S = profile_settings(PROFILE, smoke=dict(), full=dict())
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · Per-token log-probabilities, at the sampling temperature
#
# `input_ids` is `[B, P + T]`: a left-padded prompt then the T completion tokens
# (`logits_to_keep = T`). The logit at position j predicts token j + 1, so the completion tokens
# are scored by the logits at positions `-T-1 ... -2`. The sampler drew each token from
# $\operatorname{softmax}(z/\tau)$; score it the same way:
#
# $$\log\pi_\theta(o_t\mid\cdot) = \log\operatorname{softmax}(z_{t-1}/\tau)[o_t]$$
#
# If the temperatures differ, the ratio $\pi_\theta/\pi_{\text{old}}$ is not 1 even before any
# update, and the clip fires on noise. Return `[B, T]`.

# %%
def completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        logits_to_keep: int, temperature: float = 1.0) -> torch.Tensor:
    """[B, T] log-probs of the last logits_to_keep tokens, logits divided by temperature."""
    T = logits_to_keep
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, P+T, V]
    ### HINT: the logit at position j predicts token j + 1; the sampler used softmax(logits / temperature); keep the log-probability of the token that was actually sampled
    ### BEGIN SOLUTION
    logits = logits[:, -T - 1:-1, :].float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return torch.gather(logp, dim=-1, index=input_ids[:, -T:].unsqueeze(-1)).squeeze(-1)
    ### END SOLUTION


# %%
check_completion_logprobs(completion_logprobs)

# %% [markdown]
# ## Exercise 2 · The clipped surrogate
#
# PPO (Schulman et al. 2017, arXiv 1707.06347, eq. 7), as GRPO uses it (DeepSeekMath eq. 3), per
# token and negated to be minimised, with $\rho_t = \exp(\log\pi_\theta - \log\pi_{\text{old}})$:
#
# $$\ell_t = -\min\big(\rho_t A,\ \operatorname{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon)\,A\big)$$
#
# `advantages` is `[B]`, one per completion, shared by its tokens. Return the per-token loss
# `[B, T]` (masking and averaging are exercise 05's). The gradient must flow through `logp` only.

# %%
def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      epsilon: float = 0.2) -> torch.Tensor:
    """Per-token -min(ρA, clip(ρ, 1-ε, 1+ε)A), ρ = exp(logp - old_logp)."""
    ### HINT: the ratio of probabilities comes from a difference of log-probabilities; one advantage per completion must reach all its tokens; PPO keeps the more pessimistic of the clipped and unclipped terms
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - old_logp)
    A = advantages.unsqueeze(-1)
    return -torch.minimum(ratio * A, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * A)
    ### END SOLUTION


# %%
check_clipped_surrogate(clipped_surrogate)

# %% [markdown]
# **Think.** With one update per rollout (μ = 1), `old_logp` is `logp.detach()`. What is the loss
# *value* then, and is the gradient zero?
#
# ### BEGIN SOLUTION
# Every ratio is exactly 1, the clip never fires, and each token's loss is $-A_i$: averaged
# over a group the value is about 0 (the advantages of a group sum to 0). The gradient is not
# zero: $\nabla\rho = \rho\,\nabla\log\pi_\theta = \nabla\log\pi_\theta$, so the step is
# REINFORCE's with the group baseline. The loss value is no progress signal; the reward is.
# ### END SOLUTION

# %%
logp = (-torch.rand(4, 5)).requires_grad_(True)
adv = grpo_lib.group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), 4)
loss = clipped_surrogate(logp, logp.detach(), adv).mean()
loss.backward()
print(f"loss value at μ = 1: {loss.item():+.2e}   gradient norm: {logp.grad.norm():.3f}")
assert abs(loss.item()) < 1e-5 and logp.grad.norm() > 0.1, (
    "unexpected loss or gradient: fix clipped_surrogate first (its check above must print ✓)")

# %% [markdown]
# **Next:** [`exercises/04_kl_and_reference.ipynb`](04_kl_and_reference.ipynb).
