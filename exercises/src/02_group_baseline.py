# Source of exercises/02_group_baseline.ipynb and solutions/02_group_baseline.ipynb.
# Edit here, then run: python scripts/build_exercises.py   (see exercises/README.md)

# %% [markdown]
# # Exercises 02 · The group-relative baseline
#
# **Objective.** Write GRPO's advantage, robust to groups whose rewards are all equal, and the
# metric that counts those groups. Lesson:
# [`notebooks/02_group_baseline.ipynb`](../notebooks/02_group_baseline.ipynb).
#
# Replace each `raise NotImplementedError(...)` with your code, then run the `check_...` cell
# under it: it says what is wrong, or prints ✓. Filled version: `solutions/02_group_baseline.ipynb`.

# %% tags=["parameters"]
PROFILE = "smoke"  # "smoke" | "full" | "auto" (the exercises are the same in every profile)
SEED = 0

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib.pyplot as plt
import torch

import grpo_lib
from grpo_lib.checks import check_group_advantages, check_zero_std_fraction
from grpo_lib.notebook import check_params, profile_settings

check_params(PROFILE=(PROFILE, str), SEED=(SEED, int))
S = profile_settings(PROFILE, smoke=dict(), full=dict())
grpo_lib.seed_everything(SEED)

# %% [markdown]
# ## Exercise 1 · Group advantages
#
# The batch holds N prompts × G completions, **the G completions of one prompt consecutive**:
# `rewards[0:G]` is prompt 0's group, `rewards[G:2G]` prompt 1's, ... DeepSeekMath (arXiv 2402.03300,
# §4.1.2) gives every token of completion i the advantage
#
# $$A_i = \frac{r_i - \operatorname{mean}(r_{\text{group}})}{\operatorname{std}(r_{\text{group}}) + \varepsilon}$$
#
# with the **Bessel** std (divide by G − 1), as `torch.std`, TRL and verl compute it. (The population
# std, dividing by G, only rescales every advantage by the constant $\sqrt{G/(G-1)}$: the check
# accepts it with a note, as lesson 02 explains.) Put ε where TRL does, *outside* the square root:
# std + ε. A group whose rewards are all equal has std 0: its advantages must come out exactly 0,
# never NaN.

# %%
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Flat [N*G] rewards -> flat [N*G] advantages (r - mean_g) / (std_g + eps)."""
    ### HINT: give each prompt's G consecutive rewards a row of their own, centre and scale each row by its own statistics, and hand back the same flat shape you were given
    ### BEGIN SOLUTION
    grouped = rewards.float().view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return (centred / (grouped.std(dim=1, keepdim=True) + eps)).reshape(-1)
    ### END SOLUTION


# %%
check_group_advantages(group_advantages)

# %% [markdown]
# Your advantages on three groups of four: a mixed group, an all-right group, one right answer
# among wrong ones. The all-right group gets nothing (no signal); the lone right answer gets a big
# push.

# %%
rewards = torch.tensor([1.0, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0])
adv = group_advantages(rewards, 4)
fig, ax = plt.subplots(figsize=(7, 2.5))
ax.bar(range(12), adv, color=["tab:green" if a > 0 else "tab:red" for a in adv])
for x in (3.5, 7.5):
    ax.axvline(x, color="gray", ls=":")
ax.axhline(0, color="k", lw=0.8)
ax.set(xlabel="completion (3 groups of G = 4)", ylabel="advantage (group std units)",
       title="All-right group: 0; the lone right answer: the biggest push")
plt.tight_layout()
plt.show()
assert adv[4:8].abs().max() == 0 and adv[8] > adv[0] > 0, (
    "unexpected advantages: fix group_advantages first (its check above must print ✓)")

# %% [markdown]
# ## Exercise 2 · How many groups teach nothing?
#
# TRL logs `frac_reward_zero_std`: the fraction of groups whose G rewards are all equal. Those
# groups contribute zero gradient; when the fraction nears 1 the run stops learning (the task is
# too easy or too hard for the model, or the temperature too low). Return a Python float.

# %%
def zero_std_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Fraction of groups (of G consecutive rewards) whose rewards are all equal."""
    ### HINT: a group has no spread when its largest and smallest rewards are equal; the answer is a fraction of the groups
    ### BEGIN SOLUTION
    grouped = rewards.view(-1, group_size)
    all_equal = grouped.max(dim=1).values == grouped.min(dim=1).values
    return all_equal.float().mean().item()
    ### END SOLUTION


# %%
check_zero_std_fraction(zero_std_fraction)

# %% [markdown]
# **Next:** [`exercises/03_ratios_and_clipping.ipynb`](03_ratios_and_clipping.ipynb).
