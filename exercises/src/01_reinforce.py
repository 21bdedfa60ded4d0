# Source of exercises/01_reinforce.ipynb and solutions/01_reinforce.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 01 · REINFORCE
#
# **Objective.** Write the two pieces every policy-gradient step on a language model needs: the
# REINFORCE loss of a batch of completions, and the mask that says which tokens belong to a
# completion. Lesson: [`notebooks/01_reinforce.ipynb`](../notebooks/01_reinforce.ipynb).
#
# **How it works.** Each exercise is a function that raises `NotImplementedError` with a hint.
# Replace that line with your code, run the cell, then run the `check_...` cell below it: it
# compares your function with `grpo_lib` on random and edge-case inputs and tells you *what* is
# wrong, or prints ✓. The filled version is `solutions/01_reinforce.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto" (the exercises are the same in every profile)
SEED = 0

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import torch

import grpo_lib
from grpo_lib.checks import check_completion_mask, check_reinforce_loss
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int))
S = profile_settings(PROFILE, smoke=dict(), full=dict())
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · The REINFORCE loss
#
# A completion's log-probability is the sum of its tokens' log-probabilities,
# $\log\pi_\theta(o_i\mid q) = \sum_t \log\pi_\theta(o_{i,t}\mid q, o_{i,<t})$, and REINFORCE
# (Williams 1992) steps along $\frac1B\sum_i R_i\,\nabla\log\pi_\theta(o_i\mid q_i)$. As a loss to
# minimise, on a batch of B completions padded to T tokens:
#
# $$L_{\text{RF}} = -\frac1B\sum_{i=1}^{B} R_i \sum_{t=1}^{T} m_{i,t}\,\log\pi_\theta(o_{i,t}\mid\cdot)$$
#
# `logp` is `[B, T]`, `rewards` is `[B]` (one per completion), `mask` is `[B, T]` (1 on real
# tokens, 0 on padding). Return a 0-d tensor connected to `logp` (autograd does the rest).

# %%
def reinforce_loss(logp: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-1/B Σ_i R_i Σ_t m_it logp_it."""
    ### HINT: a completion's log-probability is the sum of its real tokens' log-probabilities; weight it by its reward, average over the batch, and remember that the optimiser minimises
    ### BEGIN SOLUTION
    sequence_logp = (logp * mask).sum(dim=-1)  # log π(o_i | q_i), padding excluded
    return -(rewards * sequence_logp).mean()
    ### END SOLUTION


# %%
check_reinforce_loss(reinforce_loss)

# %% [markdown]
# Lesson 01 shows that this is `grpo_lib.grpo_loss` with one update per rollout (μ = 1), no KL and
# $A_i = R_i$: the *values* differ, the *gradients* agree (with `loss_type="dr_grpo"` and L = 1,
# whose aggregation is the token sum over B). Check it on your function:

# %%
B, T = 4, 6
logp = (-2 * torch.rand(B, T)).requires_grad_(True)
rewards = torch.tensor([1.0, 0.0, 1.0, 0.5])
mask = (torch.arange(T) < torch.tensor([6, 3, 1, 4])[:, None]).float()

reinforce_loss(logp, rewards, mask).backward()
g_rf = logp.grad.clone()
logp.grad = None
loss, _ = grpo_lib.grpo_loss(logp, None, rewards, mask, loss_type="dr_grpo", max_completion_length=1)
loss.backward()
print("REINFORCE gradient == GRPO (μ = 1, β = 0, A = R) gradient:", torch.allclose(g_rf, logp.grad, atol=1e-6))
assert torch.allclose(g_rf, logp.grad, atol=1e-6), (
    "the gradients differ: fix reinforce_loss first (its check above must print ✓)")

# %% [markdown]
# ## Exercise 2 · The completion mask when pad == EOS
#
# `generate` returns completions padded to the longest one. Many tokenizers (Qwen2.5, and the
# course's tiny model) pad with the **EOS** token itself, so `completion_ids != pad_id` is wrong: it
# also drops the EOS, the token that teaches the model to stop. Build the mask from **positions**:
# 1 up to and including the first EOS of each row, 0 after it; a row with no EOS (cut at
# `max_new_tokens`) is all 1.

# %%
def completion_mask(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """[B, T] int mask: 1 up to and including the first EOS of each row, 0 after it."""
    B, T = completion_ids.shape
    is_eos = completion_ids == eos_token_id
    ### HINT: find the position of each row's first EOS (what should a row without any EOS get?), then compare every position with it
    ### BEGIN SOLUTION
    first_eos = torch.full((B,), T, dtype=torch.long)
    has_eos = is_eos.any(dim=1)
    first_eos[has_eos] = is_eos.int().argmax(dim=1)[has_eos]
    return (torch.arange(T)[None, :] <= first_eos[:, None]).long()
    ### END SOLUTION


# %%
check_completion_mask(completion_mask)

# %% [markdown]
# **Next:** [`exercises/02_group_baseline.ipynb`](02_group_baseline.ipynb): the group's mean
# reward as a baseline.
