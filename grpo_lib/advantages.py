"""Group-relative advantages: the baseline that replaces PPO's critic.

GRPO samples G completions for each prompt and scores every completion against the
others of its group. Source: Shao et al. 2024, *DeepSeekMath*, arXiv 2402.03300,
section 4.1.2 ("Outcome Supervision RL with GRPO"): ``Â_{i,t} = r̃_i = (r_i - mean(r)) / std(r)``,
the same advantage for every token ``t`` of completion ``i``.

``reinforce_pp_advantages`` is the alternative REINFORCE++ (Hu et al. 2025, arXiv
2501.03262) proposes: one baseline and one scale for the whole batch instead of the group's.
"""

from __future__ import annotations

from typing import Literal

import torch

AdvantageScale = Literal["group", "batch", "none"]
_SCALES = ("group", "batch", "none")


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: AdvantageScale = "group",
    eps: float = 1e-4,
    unbiased: bool = True,
) -> torch.Tensor:
    """Advantage of each completion relative to the other completions of its prompt.

    ``rewards`` is a flat tensor ``[num_prompts * G]`` whose G consecutive entries are
    the completions of one prompt. With ``mean_g``/``std_g`` the mean and standard
    deviation of the prompt's group:

    - ``scale="group"`` (GRPO, DeepSeekMath eq. in §4.1.2): ``A_i = (r_i - mean_g) / (std_g + eps)``
    - ``scale="batch"``: ``A_i = (r_i - mean_g) / (std_batch + eps)``, one std over the
      whole batch (TRL's ``scale_rewards="batch"``; it keeps hard and easy prompts on
      one scale).
    - ``scale="none"``: ``A_i = r_i - mean_g`` (Dr. GRPO, arXiv 2503.20783 §3.1: dividing
      by std_g up-weights prompts that are almost always right or always wrong).

    Which std: ``unbiased=True`` (the default) divides by ``G - 1`` (Bessel's
    correction), as ``torch.std``, TRL's ``GRPOTrainer`` and verl do, so that a run here
    reads like a run there. The population std (``unbiased=False``, divide by ``G``)
    is the other common reading of the paper's ``std(r)``; for rewards 1, 0, 1, 0 it gives
    advantages of exactly ±1, Bessel's ±0.866. Both only rescale a group's advantages.

    A group whose rewards are all equal has ``std_g = 0`` and ``r_i - mean_g = 0``, so its
    advantages are exactly 0 (``0 / eps``), never NaN: it carries no learning signal.
    """
    if rewards.dim() != 1:
        raise ValueError(
            f"rewards must be a flat tensor [num_prompts * G], got shape {tuple(rewards.shape)}; "
            "flatten it with rewards.reshape(-1)."
        )
    if not isinstance(group_size, int) or group_size < 2:
        raise ValueError(
            f"group_size must be an int >= 2 (a group needs two completions to compare), got {group_size!r}."
        )
    if rewards.numel() == 0 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"{rewards.numel()} rewards cannot be split into groups of {group_size}: the batch must hold "
            f"num_prompts * group_size completions, G consecutive ones per prompt."
        )
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}.")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}.")

    r = rewards.float()
    grouped = r.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    # A float mean of equal values can be off by one rounding step (e.g. eight 0.1s), and
    # dividing that by std + eps would give a tiny, spurious advantage: make it exactly 0.
    all_equal = grouped.max(dim=1, keepdim=True).values == grouped.min(dim=1, keepdim=True).values
    centred = centred.masked_fill(all_equal, 0.0)
    if scale == "none":
        return centred.reshape(-1)
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True, unbiased=unbiased)
    else:  # "batch"
        std = r.std(unbiased=unbiased) if r.numel() > 1 else r.new_zeros(())
    return (centred / (std + eps)).reshape(-1)


def zero_std_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Fraction of groups whose rewards are all equal (TRL's ``frac_reward_zero_std``).

    These groups give zero advantage to every completion, so they teach nothing.
    """
    grouped = rewards.float().view(-1, group_size)
    return (grouped.max(dim=1).values == grouped.min(dim=1).values).float().mean().item()


ReinforcePPBaseline = Literal["batch", "group"]


def reinforce_pp_advantages(
    rewards: torch.Tensor,
    group_size: int | None = None,
    baseline: ReinforcePPBaseline = "batch",
    eps: float = 1e-4,
    unbiased: bool = True,
) -> torch.Tensor:
    """REINFORCE++ advantages: one baseline and one scale for the whole batch.

    Source: Hu et al. 2025, *REINFORCE++*, arXiv 2501.03262, §3 ("global advantage
    normalization"). For an outcome reward and no KL term in the reward (β = 0, the
    course's default), REINFORCE++'s return is the reward itself and its advantage is
    the reward normalised over the **whole batch** ``B`` instead of over each group:

    - ``baseline="batch"`` (REINFORCE++): ``A_i = (r_i - mean_B(r)) / (std_B(r) + eps)``;
      ``group_size`` is not needed (REINFORCE++ may sample one completion per prompt).
    - ``baseline="group"`` (the paper's "REINFORCE++-baseline", for G > 1 samples per
      prompt): ``c_i = r_i - mean_g(r)`` first, then ``A_i = (c_i - mean_B(c)) / (std_B(c) + eps)``.

    The difference from GRPO (:func:`group_advantages`) that matters in practice: with
    ``baseline="batch"`` a group whose completions all scored 1 gets a *positive*
    advantage (it beat the batch mean), so an easy prompt still moves the policy, and all
    completions share one scale, so a nearly-solved prompt is not up-weighted by a tiny
    ``std_g``. With ``baseline="group"`` an all-equal group keeps advantage 0, as in GRPO,
    and only the scale is the batch's. A batch whose rewards are all equal gets
    advantages of exactly 0.

    ``unbiased`` picks Bessel's std (``N - 1``) as in :func:`group_advantages`.
    """
    if rewards.dim() != 1:
        raise ValueError(
            f"rewards must be a flat tensor [batch], got shape {tuple(rewards.shape)}; flatten it with rewards.reshape(-1)."
        )
    if rewards.numel() < 2:
        raise ValueError(f"rewards must hold at least 2 values to normalise over a batch, got {rewards.numel()}.")
    if baseline not in ("batch", "group"):
        raise ValueError(f"baseline must be 'batch' (REINFORCE++) or 'group' (REINFORCE++-baseline), got {baseline!r}.")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}.")
    r = rewards.float()
    if baseline == "group":
        if not isinstance(group_size, int) or group_size < 2 or r.numel() % group_size != 0:
            raise ValueError(
                f"baseline='group' needs group_size, an int >= 2 dividing the {r.numel()} rewards; got {group_size!r}."
            )
        # group_advantages(scale="none") is exactly r - mean_g (0 for all-equal groups)
        r = group_advantages(r, group_size, scale="none")
    if bool((r == r[0]).all()):
        return torch.zeros_like(r)
    return (r - r.mean()) / (r.std(unbiased=unbiased) + eps)


ADVANTAGE_ESTIMATORS = ("grpo", "reinforce++", "reinforce++-baseline")


def compute_advantages(
    rewards: torch.Tensor,
    group_size: int,
    estimator: str = "grpo",
    scale: AdvantageScale = "group",
) -> torch.Tensor:
    """The switch between advantage estimators, one name each:

    - ``"grpo"``: :func:`group_advantages` with ``scale`` (DeepSeekMath §4.1.2);
    - ``"reinforce++"``: :func:`reinforce_pp_advantages`, batch baseline and batch std;
    - ``"reinforce++-baseline"``: group mean, then the batch's mean and std.

    ``scale`` applies to ``"grpo"`` only (REINFORCE++ always scales by the batch).
    """
    if estimator == "grpo":
        return group_advantages(rewards, group_size, scale=scale)
    if estimator == "reinforce++":
        return reinforce_pp_advantages(rewards)
    if estimator == "reinforce++-baseline":
        return reinforce_pp_advantages(rewards, group_size, baseline="group")
    raise ValueError(f"estimator must be one of {ADVANTAGE_ESTIMATORS}, got {estimator!r}.")
