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
# As an estimate of the KL's *value* it is unbiased ($\mathbb{E}_{\pi_\theta}[e^x] = 1$, so
# $\mathbb{E}_{\pi_\theta}[k_3] = \mathbb{E}_{\pi_\theta}[-x] = \mathrm{KL}(\pi_\theta\|\pi_{\text{ref}})$), never negative
# ($e^x \ge 1 + x$) and 0 where the two policies agree. What its *gradient* estimates is a second
# question, measured after the check. Return a tensor of the inputs' shape.

# %%
def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_θ || π_ref)."""
    ### HINT: write k3 in terms of the log-ratio x defined above; which log-prob is subtracted from which decides what k3 estimates
    ### BEGIN SOLUTION
    x = ref_logp - logp
    return torch.exp(x) - x - 1
    ### END SOLUTION


# %%
check_k3(k3)

# %% [markdown]
# **The value.** Checked by Monte Carlo on two categorical distributions: the mean of your k3 over
# samples of π_θ must equal the exact KL(π_θ‖π_ref) within 5 standard errors. The two
# distributions are far enough apart that a k3 with x reversed (mean 1.145 here, against a KL of
# 0.623) fails by hundreds of standard errors.

# %%
gen = torch.Generator().manual_seed(SEED)
p = torch.softmax(torch.tensor([1.5, 0.5, 0.0, -1.0], dtype=torch.float64), 0)  # π_θ
q = torch.softmax(torch.tensor([0.0, 0.5, 1.0, 0.5], dtype=torch.float64), 0)  # π_ref
exact = (p * (p / q).log()).sum().item()
samples = torch.multinomial(p, 200_000, replacement=True, generator=gen)
values = k3(p.log()[samples], q.log()[samples]).detach()
estimate, se = values.mean().item(), (values.std() / len(values) ** 0.5).item()
print(f"exact KL(π_θ‖π_ref) = {exact:.4f}   k3 Monte Carlo = {estimate:.4f} ± {se:.4f} (1 s.e.): "
      f"{abs(estimate - exact) / se:.1f} standard errors apart")
assert abs(estimate - exact) < 5 * se, (
    "the mean of your k3 is not the KL: fix k3 first (its check above must print ✓)")

# %% [markdown]
# **The gradient.** In a loss, what the optimiser sees is $\nabla_\theta k_3$ on the sampled
# tokens, and $\nabla k_3 = (1 - \pi_{\text{ref}}/\pi_\theta)\,\nabla\log\pi_\theta$. Its mean over
# samples of π_θ is $-\mathbb{E}_{\pi_{\text{ref}}}[\nabla\log\pi_\theta] = \nabla\mathrm{KL}(\pi_{\text{ref}}\|\pi_\theta)$: the
# gradient of the KL in the **other** direction (Tang & Munos 2025, "On a few pitfalls in KL
# divergence gradient estimation for RL", arXiv 2506.09477). Measured with your k3 and autograd,
# the logits of π_θ as parameters, in 20 batches (their spread gives the standard error):

# %%
from grpo_lib.bandit import exact_kl_gradient

theta = p.log().clone().requires_grad_(True)  # logits of π_θ (softmax(log p) = p)
batch_grads = []
for batch in samples.view(20, -1):
    (grad,) = torch.autograd.grad(k3(torch.log_softmax(theta, 0)[batch], q.log()[batch]).mean(), theta)
    batch_grads.append(grad)
batch_grads = torch.stack(batch_grads)
mean_grad, se_grad = batch_grads.mean(0), batch_grads.std(0) / 20**0.5
forward = exact_kl_gradient(theta.detach(), q.log(), "forward")   # ∇ KL(π_θ‖π_ref)
reverse = exact_kl_gradient(theta.detach(), q.log(), "reverse")   # ∇ KL(π_ref‖π_θ)
print("mean ∇k3            :", [round(v, 3) for v in mean_grad.tolist()], "± ≤", round(se_grad.max().item(), 3))
print("∇ KL(π_θ ‖ π_ref)    :", [round(v, 3) for v in forward.tolist()])
print("∇ KL(π_ref ‖ π_θ)    :", [round(v, 3) for v in reverse.tolist()])
z_rev = ((mean_grad - reverse).abs() / se_grad).max().item()
z_fwd = ((mean_grad - forward).abs() / se_grad).max().item()
print(f"largest gap in standard errors: to the reverse KL's gradient {z_rev:.1f}, to the forward's {z_fwd:.1f}")
assert z_rev < 5, "your k3's mean gradient is not ∇KL(π_ref‖π_θ): fix k3 first (its check above must print ✓)"
assert z_fwd > 10

# %% [markdown]
# So a loss term $\beta\,k_3$ on tokens sampled from π_θ pulls toward π_ref along the gradient of
# KL(π_ref‖π_θ), not of the KL(π_θ‖π_ref) that DeepSeekMath's eq. 3 writes. Near the reference the
# two directions agree to second order; lesson 04 measures all three estimators and what this means
# for GRPO.

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
    ### HINT: the reference needs weights of its own (not shared with the policy), no gradients, and evaluation mode; only the copy is frozen
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
