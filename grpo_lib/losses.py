"""The GRPO objective, in the pieces TRL and verl factor it into.

Source: DeepSeekMath (arXiv 2402.03300), eq. 3, maximised::

    J = E[ 1/G Σ_i 1/|o_i| Σ_t ( min(ρ_it Â_i, clip(ρ_it, 1-ε, 1+ε) Â_i) - β KL_it ) ]
    ρ_it = π_θ(o_it | q, o_i<t) / π_old(o_it | q, o_i<t)

Here the loss is its negation, to be minimised. The pieces:

- ``policy_loss``: the PPO clipped surrogate per token (Schulman et al. 2017, arXiv
  1707.06347, eq. 7), with DAPO's asymmetric "clip-higher" (arXiv 2503.14476, §3.1) and
  GSPO's sequence-level ratio (arXiv 2507.18071, §4.1) as options.
- ``kl_estimate`` (``grpo_lib.kl``): the per-token KL penalty.
- ``aggregate_loss``: how per-token losses become one number; this is what separates
  GRPO, DAPO and Dr. GRPO.
- ``grpo_loss``: the three composed, with TRL's ``loss_type`` names and metrics.
- ``sampler_importance_weights``: the truncated importance-sampling correction for a
  sampler that is not the learner (Yao et al. 2025; TRL's ``vllm_importance_sampling_*``),
  passed to ``grpo_loss`` as ``importance_weights``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .kl import KLKind, kl_estimate
from .utils import masked_mean

AggregationMode = Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"]
LossType = Literal["grpo", "dapo", "dr_grpo"]
ImportanceLevel = Literal["token", "sequence"]
SamplerCorrectionMode = Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]
#: TRL's ``vllm_importance_sampling_mode`` values.
SAMPLER_CORRECTION_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")

#: TRL's ``loss_type`` → verl's ``loss_agg_mode``.
LOSS_TYPE_TO_AGGREGATION: dict[str, str] = {
    "grpo": "seq-mean-token-mean",  # DeepSeekMath: 1/G Σ_i 1/|o_i| Σ_t
    "dapo": "token-mean",  # DAPO §3.3: 1/Σ|o_i| Σ_i Σ_t
    "dr_grpo": "seq-mean-token-sum-norm",  # Dr. GRPO §3.1: 1/(G·L) Σ_i Σ_t, L a constant
}
_MODES = tuple(LOSS_TYPE_TO_AGGREGATION.values())


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"these tensors must share one shape [B, T]: {shapes}.")
    for name, shape in shapes.items():
        if len(shape) != 2:
            raise ValueError(f"{name} must be 2-D [B, T] (batch, completion tokens), got shape {shape}.")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    level: ImportanceLevel = "token",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss per token, negated to be minimised.

    ``loss_t = -min(ρ_t A, clip(ρ_t, 1 - ε_low, 1 + ε_high) A)`` with
    ``ρ_t = exp(logp_t - old_logp_t)``, ``ε_low = epsilon`` and ``ε_high = epsilon_high``
    (defaults to ``epsilon``; DAPO uses 0.2 and 0.28).

    ``level="sequence"`` replaces every token's ratio by GSPO's sequence ratio, the
    geometric mean ``s_i = exp(1/|o_i| Σ_t (logp_it - old_logp_it))``.

    Args:
        logp: ``[B, T]`` log π_θ of the sampled completion tokens (with gradient).
        old_logp: ``[B, T]`` log π_old of the same tokens (no gradient). With one update
            per rollout pass ``logp.detach()``: then ρ = 1 and the loss value is ``-A`` on
            every token, yet its gradient ``-A ∇log π`` is REINFORCE's.
        advantages: ``[B]``, one advantage per completion, broadcast over its tokens.
        mask: ``[B, T]``, 1 on real completion tokens.

    Returns:
        ``(per_token_loss [B, T], stats)``; ``stats`` holds the ``ratio`` and boolean masks
        ``is_low_clipped`` (ρ < 1-ε_low with A < 0), ``is_high_clipped`` (ρ > 1+ε_high
        with A > 0) and ``is_region_clipped`` (either): the tokens whose gradient the clip
        switched off. A ratio outside the region on the other side keeps its gradient,
        because the ``min`` then picks the unclipped term.
    """
    _check_same_shape(logp=logp, old_logp=old_logp, mask=mask)
    if advantages.shape != logp.shape[:1]:
        raise ValueError(
            f"advantages must have shape [B] = {tuple(logp.shape[:1])} (one per completion), "
            f"got {tuple(advantages.shape)}."
        )
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0 (e.g. 0.2), got {epsilon}.")
    eps_high = epsilon if epsilon_high is None else epsilon_high
    if eps_high <= 0:
        raise ValueError(f"epsilon_high must be > 0 (DAPO uses 0.28), got {epsilon_high}.")
    if level not in ("token", "sequence"):
        raise ValueError(f"level must be 'token' or 'sequence' (GSPO), got {level!r}.")

    log_ratio = logp - old_logp
    if level == "sequence":
        seq_log_ratio = masked_mean(log_ratio, mask, dim=-1)  # [B]
        log_ratio = seq_log_ratio.unsqueeze(-1).expand_as(logp)
    ratio = torch.exp(log_ratio)
    adv = advantages.to(ratio.dtype).unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + eps_high) * adv
    per_token_loss = -torch.minimum(unclipped, clipped)

    is_low = (ratio < 1.0 - epsilon) & (adv < 0)
    is_high = (ratio > 1.0 + eps_high) & (adv > 0)
    stats = {
        "ratio": ratio.detach(),
        "is_low_clipped": is_low,
        "is_high_clipped": is_high,
        "is_region_clipped": is_low | is_high,
    }
    return per_token_loss, stats


def aggregate_loss(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    mode: AggregationMode = "seq-mean-token-mean",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar, counting only masked-in tokens.

    - ``"seq-mean-token-mean"`` (original GRPO): ``1/B Σ_i (1/|o_i| Σ_t l_it)``. Every
      completion weighs the same, so a token of a long completion weighs less: long
      wrong answers are punished less per token (the length bias Dr. GRPO points out).
    - ``"token-mean"`` (DAPO, arXiv 2503.14476 §3.3): ``Σ_i Σ_t l_it / Σ_i |o_i|``. Every
      token weighs the same.
    - ``"seq-mean-token-sum-norm"`` (Dr. GRPO, arXiv 2503.20783 §3.1):
      ``Σ_i Σ_t l_it / (B · L)`` with a constant ``L`` (``max_completion_length``,
      default the tensor's width ``T``), so neither the length nor the batch's token
      count rescales the gradient.

    A completion with no tokens contributes 0 to the sequence modes, never NaN.
    """
    _check_same_shape(per_token_loss=per_token_loss, mask=mask)
    m = mask.to(per_token_loss.dtype)
    if mode == "seq-mean-token-mean":
        per_seq = (per_token_loss * m).sum(-1) / m.sum(-1).clamp(min=1.0)
        return per_seq.mean()
    if mode == "token-mean":
        return (per_token_loss * m).sum() / m.sum().clamp(min=1.0)
    if mode == "seq-mean-token-sum-norm":
        length = per_token_loss.shape[-1] if max_completion_length is None else max_completion_length
        if length <= 0:
            raise ValueError(f"max_completion_length must be > 0, got {max_completion_length}.")
        return (per_token_loss * m).sum() / (per_token_loss.shape[0] * length)
    raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    *,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: LossType = "grpo",
    importance_sampling_level: ImportanceLevel = "token",
    max_completion_length: int | None = None,
    kl_kind: KLKind = "k3",
    importance_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss (DeepSeekMath eq. 3, negated) and its metrics.

    ``per_token = policy_loss(...) + beta * kl_estimate(logp, ref_logp)``, then
    ``aggregate_loss`` in the mode of ``loss_type``: ``"grpo"`` (sequence mean of token
    means), ``"dapo"`` (token mean), ``"dr_grpo"`` (sum over a constant ``B · L``).

    ``old_logp=None`` means one update per rollout (μ = 1): ``old_logp = logp.detach()``,
    so every ratio is 1. ``ref_logp`` is needed only when ``beta > 0``; with ``beta = 0``
    no reference model need be run at all.

    Metrics, named as TRL's ``GRPOTrainer`` logs them: ``kl`` (token mean of the k-estimate,
    only when ``beta > 0``), ``clip_ratio/low_mean``, ``clip_ratio/high_mean`` and
    ``clip_ratio/region_mean`` (fractions of completion tokens clipped).

    ``importance_weights`` (``[B, T]``, no gradient; default None = all 1): multiplies the
    clipped surrogate of every token before the KL term is added, as TRL does with its
    vLLM correction: ``per_token = w_t · policy_loss_t + beta · KL_t``. Build it with
    :func:`sampler_importance_weights` when the completions were sampled by another copy of
    the policy (a bf16 vLLM engine); with weights of exactly 1 the loss is unchanged.
    """
    if loss_type not in LOSS_TYPE_TO_AGGREGATION:
        raise ValueError(f"loss_type must be one of {tuple(LOSS_TYPE_TO_AGGREGATION)}, got {loss_type!r}.")
    if beta < 0:
        raise ValueError(f"beta must be >= 0 (0 switches the KL penalty off), got {beta}.")
    if beta > 0 and ref_logp is None:
        raise ValueError("beta > 0 needs ref_logp, the reference model's log-probabilities; pass them or set beta=0.")
    if old_logp is None:
        old_logp = logp.detach()

    per_token, stats = policy_loss(
        logp, old_logp, advantages, mask, epsilon=epsilon, epsilon_high=epsilon_high, level=importance_sampling_level
    )
    if importance_weights is not None:
        if importance_weights.shape != logp.shape:
            raise ValueError(
                f"importance_weights must have the shape of logp {tuple(logp.shape)} (one weight per token), got "
                f"{tuple(importance_weights.shape)}; build it with sampler_importance_weights(...)"
            )
        per_token = per_token * importance_weights.detach().to(per_token.dtype)
    metrics: dict[str, float] = {}
    if beta > 0:
        assert ref_logp is not None
        per_token_kl = kl_estimate(logp, ref_logp, kind=kl_kind)
        per_token = per_token + beta * per_token_kl
        metrics["kl"] = masked_mean(per_token_kl.detach(), mask).item()
    loss = aggregate_loss(
        per_token, mask, LOSS_TYPE_TO_AGGREGATION[loss_type], max_completion_length=max_completion_length
    )
    for key in ("low", "high", "region"):
        metrics[f"clip_ratio/{key}_mean"] = masked_mean(stats[f"is_{key}_clipped"].float(), mask).item()
    return loss, metrics


def sampler_importance_weights(
    learner_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    mode: SamplerCorrectionMode = "token_truncate",
    clip_max: float | None = 3.0,
    clip_min: float | None = None,
) -> torch.Tensor:
    """Importance weights that correct for a sampler that is not the learner, ``[B, T]``, no gradient.

    Real GRPO runs sample with an inference engine (vLLM, in bf16, its own kernels) and
    learn with the training model: the tokens come from π_sampler, not from π_old, even
    with μ = 1. The policy gradient needs samples from π_old, so each token's loss is
    reweighted by the ratio of the two, truncated at ``C = clip_max`` to bound the variance
    (truncated importance sampling; Yao et al. 2025, "Your efficient RL framework secretly
    brings you off-policy RL training"; TRL's ``vllm_importance_sampling_correction``)::

        token_truncate:     w_it = min(π_old(o_it) / π_sampler(o_it), C)
        token_mask:         w_it = r_it if C_min <= r_it <= C else 0      (r_it the ratio above)
        sequence_truncate:  w_i  = min(Π_t π_old(o_it) / π_sampler(o_it), C), the same for all t
        sequence_mask:      w_i  = r_i if C_min <= r_i <= C else 0

    ``token_truncate`` also floors at ``clip_min`` when given. TRL's modes and names
    (``vllm_importance_sampling_mode``, ``vllm_importance_sampling_clip_max`` /
    ``..._clip_min``); TRL's default mode is ``"sequence_mask"``, Yao et al.'s TIS is
    ``"token_truncate"``.

    Args:
        learner_logp: ``[B, T]`` log π_old of the sampled tokens, computed by the learner
            (with μ = 1 the current policy's log-probs; detached here).
        sampler_logp: ``[B, T]`` log π_sampler of the same tokens, as the sampler reported
            them (``sample_groups(..., return_logprobs=True).sampler_logprobs``).
        mask: ``[B, T]``, 1 on completion tokens; masked-out positions get weight 1 (they
            are not counted in the loss anyway) and do not enter a sequence's ratio.

    When sampler and learner agree (``sampler_logp == learner_logp``) every weight is exactly 1.
    """
    _check_same_shape(learner_logp=learner_logp, sampler_logp=sampler_logp, mask=mask)
    if mode not in SAMPLER_CORRECTION_MODES:
        raise ValueError(f"mode must be one of {SAMPLER_CORRECTION_MODES} (TRL's names), got {mode!r}.")
    if clip_max is not None and not clip_max > 0:
        raise ValueError(f"clip_max must be > 0 (TRL's default 3.0) or None, got {clip_max}.")
    if clip_min is not None and clip_max is not None and not clip_min < clip_max:
        raise ValueError(f"clip_min={clip_min} must be below clip_max={clip_max}.")
    m = mask.to(torch.bool)
    diff = torch.where(m, learner_logp.detach().float() - sampler_logp.detach().float(), torch.zeros(()))
    if mode.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True).expand_as(learner_logp)
    ratio = torch.exp(diff)
    if mode.endswith("truncate"):
        weights = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        lo = -math.inf if clip_min is None else clip_min
        hi = math.inf if clip_max is None else clip_max
        weights = torch.where((ratio < lo) | (ratio > hi), torch.zeros_like(ratio), ratio)
    return torch.where(m, weights, torch.ones_like(weights)).to(learner_logp.dtype)
