# Source of exercises/04_kl_and_reference.ipynb and solutions/04_kl_and_reference.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 04 · The KL penalty and the reference model
#
# **Objective.** Write the k3 estimator of KL(π_θ‖π_ref) that GRPO adds to its loss, and a frozen
# reference model that really stays where it started. Lesson:
# [`notebooks/04_kl_and_reference.ipynb`](../notebooks/04_kl_and_reference.ipynb).
#
# Replace each `raise NotImplementedError(...)` with your code, then run the `check_...` cell
# under it. Filled version: `solutions/04_kl_and_reference.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto" (the exercises are the same in every profile)
SEED = 0

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy

import torch

import grpo_lib
from grpo_lib.checks import check_frozen_reference, check_k3
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int))
S = profile_settings(PROFILE, smoke=dict(), full=dict())
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · The k3 estimator
#
# Tokens are sampled from π_θ. With $x = \log\pi_{\text{ref}}(o_t) - \log\pi_\theta(o_t)$
# (Schulman, "Approximating KL Divergence", 2020; DeepSeekMath eq. 4):
#
# $$k_3 = e^{x} - x - 1 = \frac{\pi_{\text{ref}}}{\pi_\theta} - \log\frac{\pi_{\text{ref}}}{\pi_\theta} - 1$$
#
# It is unbiased ($\mathbb{E}_{\pi_\theta}[e^x] = 1$), never negative ($e^x \ge 1 + x$) and 0 where
# the two policies agree. Return a tensor of the inputs' shape.

# %%
def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref)."""
    ### HINT: x = ref_logp - logp (reference minus policy); then torch.exp(x) - x - 1
    ### BEGIN SOLUTION
    x = ref_logp - logp
    return torch.exp(x) - x - 1
    ### END SOLUTION


# %%
check_k3(k3)

# %% [markdown]
# Unbiased, checked by Monte Carlo on two categorical distributions: the mean of k3 over samples
# of π_θ approaches the exact KL.

# %%
p = torch.softmax(torch.tensor([2.0, 0.5, 0.0, -1.0]), 0)  # π_θ
q = torch.softmax(torch.tensor([1.0, 1.0, 0.0, 0.0]), 0)  # π_ref
exact = (p * (p / q).log()).sum()
samples = torch.multinomial(p, 200_000, replacement=True)
estimate = k3(p.log()[samples], q.log()[samples]).mean()
print(f"exact KL = {exact:.4f}   k3 Monte Carlo = {estimate:.4f}")
assert abs(estimate - exact) < 0.01

# %% [markdown]
# ## Exercise 2 · A frozen reference model
#
# Without LoRA, the reference is a copy of the policy taken before training. It must (a) be a
# separate object with its own weights, (b) never receive gradients, (c) be in eval mode. A common
# bug is `ref = model`: the "reference" then moves with the policy, the KL is always 0 and β does
# nothing. Do not freeze the policy itself.

# %%
def make_reference(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of model: own weights, requires_grad False, eval mode."""
    ### HINT: copy.deepcopy, then .requires_grad_(False) and .eval() on the copy
    ### BEGIN SOLUTION
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()
    ### END SOLUTION


# %%
check_frozen_reference(make_reference)

# %% [markdown]
# **Think.** During training with β > 0 the logged `kl` usually *grows* from 0. Why does it start at
# exactly 0, and why does it grow?
#
# ### BEGIN SOLUTION
# At step 0 the policy *is* the reference, so every token has x = 0 and k3 = 0. Each update moves
# the policy toward higher reward, away from the reference; the KL measures that distance, so it
# rises. β trades reward for staying close: a larger β flattens the KL curve (and slows the reward),
# β = 0 lets it grow freely. A KL that explodes while the reward jumps is a sign of reward hacking.
# ### END SOLUTION

# %% [markdown]
# **Next:** [`exercises/05_grpo_end_to_end.ipynb`](05_grpo_end_to_end.ipynb).
