"""A categorical policy over K arms (a "bandit"): policy gradients you can check exactly.

A language model choosing the next token is a softmax policy over a vocabulary; a bandit is
the same thing with one step and a handful of actions, small enough that the expected reward
and its gradient have closed forms. The ladder notebooks use it to *check* each estimator
(REINFORCE, baselines, group normalisation, ratios, KL) against the exact answer before
running it on a language model.

The policy is ``π_θ = softmax(θ)`` with logits ``θ ∈ R^K``; arm ``k`` pays ``r_k`` (or, with
``kind="bernoulli"``, pays 1 with probability ``r_k``, like a correctness reward). Then

* expected reward ``J(θ) = Σ_k π_k r_k``;
* score function ``∇_θ log π(a) = e_a − π`` (the one-hot of ``a`` minus the probabilities);
* exact policy gradient ``∇J = Σ_k π_k r_k (e_k − π) = π ⊙ (r − J)``;
* REINFORCE (Williams 1992; Sutton & Barto 2018, ch. 13.3, eq. 13.8):
  ``ĝ = 1/N Σ_i (r_i − b) ∇_θ log π(a_i)`` with ``a_i ~ π``, unbiased for every ``b`` that
  does not depend on ``a_i``, because ``E_π[∇ log π] = Σ_k π_k (e_k − π) = 0``.

Baselines (``baseline=`` in :func:`reinforce_gradient`):

* ``None``: ``b = 0``, plain REINFORCE.
* a float: a constant ``b``; unbiased, and the variance depends on how far ``b`` is from the
  rewards.
* ``"mean"``: the mean of the N samples' rewards (GRPO's group mean, DeepSeekMath arXiv
  2402.03300 §4.1.2). Each sample's own reward is inside its baseline, so the estimate is
  shrunk by exactly ``(N − 1)/N``: ``E[ĝ] = (1 − 1/N) ∇J`` (same direction, smaller step).
* ``"loo"``: leave-one-out, the mean of the *other* N − 1 rewards (RLOO, Kool et al. 2019,
  "Buy 4 REINFORCE samples, get a baseline for free!"); exactly unbiased. It equals
  ``N/(N−1)`` times the ``"mean"`` advantage.

``scale="group"`` (only with ``baseline="mean"``) divides the centred rewards by their std,
GRPO's normalisation, through :func:`grpo_lib.advantages.group_advantages`.

KL penalties (lesson 04): :func:`exact_kl` is ``KL(π_θ ‖ π_ref)``; :func:`exact_kl_gradient`
gives the exact gradient of either direction, and :func:`kl_estimator_gradients` the
per-sample gradients of k1, k2 or k3 used as a loss term, whose mean shows which KL each
estimator's gradient follows (Tang & Munos 2025, arXiv 2506.09477).

Batches: ``actions`` and ``rewards`` are ``[..., N]``; every leading index is an independent
batch of N samples (a "group"), and gradients come back as ``[..., K]``. That lets
:func:`reinforce_estimates` draw thousands of independent estimates in one call, to measure
an estimator's variance instead of asserting it from theory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .advantages import group_advantages
from .kl import KLKind, kl_estimate

__all__ = [
    "BanditRun",
    "KLDirection",
    "RewardKind",
    "baseline_advantages",
    "exact_kl",
    "exact_kl_gradient",
    "kl_estimator_gradients",
    "exact_policy_gradient",
    "expected_reward",
    "reinforce_estimates",
    "reinforce_gradient",
    "reinforce_loss",
    "sample_actions",
    "sample_rewards",
    "score_function",
    "total_variance",
    "train_bandit",
]

RewardKind = Literal["deterministic", "bernoulli"]
KLDirection = Literal["forward", "reverse"]
Baseline = float | Literal["mean", "loo"] | None


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1 or logits.numel() < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a 1-D tensor [K] with K >= 2 arms, got {shape}.")


def _check_table(logits: torch.Tensor, reward_table: torch.Tensor, kind: str) -> None:
    if reward_table.shape != logits.shape:
        raise ValueError(
            f"reward_table must have one entry per arm, shape {tuple(logits.shape)}, got {tuple(reward_table.shape)}."
        )
    if kind not in ("deterministic", "bernoulli"):
        raise ValueError(f"kind must be 'deterministic' or 'bernoulli', got {kind!r}.")
    if kind == "bernoulli" and ((reward_table < 0).any() or (reward_table > 1).any()):
        raise ValueError(
            f"with kind='bernoulli' reward_table holds success probabilities in [0, 1], got {reward_table.tolist()}."
        )


def expected_reward(logits: torch.Tensor, reward_table: torch.Tensor) -> torch.Tensor:
    """``J(θ) = Σ_k softmax(θ)_k r_k``, differentiable in ``logits``.

    With ``kind="bernoulli"`` rewards, ``r_k`` is arm k's success probability and this is
    still the expected reward.
    """
    _check_logits(logits)
    _check_table(logits, reward_table, "deterministic")
    return (torch.softmax(logits, dim=-1) * reward_table.to(logits.dtype)).sum()


def exact_policy_gradient(logits: torch.Tensor, reward_table: torch.Tensor) -> torch.Tensor:
    """``∇_θ J = π ⊙ (r − J)``: the exact policy gradient of a softmax policy, ``[K]``.

    Derivation: ``∂π_k/∂θ_j = π_k (δ_kj − π_j)``, so
    ``∂J/∂θ_j = Σ_k r_k π_k (δ_kj − π_j) = π_j r_j − π_j J``.
    """
    _check_logits(logits)
    _check_table(logits, reward_table, "deterministic")
    with torch.no_grad():
        pi = torch.softmax(logits.float(), dim=-1)
        r = reward_table.float()
        return pi * (r - (pi * r).sum())


def score_function(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``∇_θ log π(a) = e_a − π`` for every action: ``actions [...]`` → ``[..., K]``.

    Its expectation under π is exactly zero: ``Σ_k π_k (e_k − π) = π − π = 0``. This is the
    identity that makes any action-independent baseline unbiased.
    """
    _check_logits(logits)
    if actions.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"actions must be an integer tensor of arm indices, got dtype {actions.dtype}.")
    K = logits.numel()
    if actions.numel() and (actions.min() < 0 or actions.max() >= K):
        raise ValueError(f"actions must lie in 0..{K - 1}, got values in {actions.min().item()}..{actions.max().item()}.")
    with torch.no_grad():
        pi = torch.softmax(logits.float(), dim=-1)
        return torch.nn.functional.one_hot(actions.long(), K).float() - pi


def sample_actions(
    logits: torch.Tensor, shape: tuple[int, ...] | int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw arms from ``softmax(logits)``: a long tensor of ``shape``, independent draws."""
    _check_logits(logits)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"shape must have positive sizes, got {shape}.")
    n = 1
    for s in shape:
        n *= s
    pi = torch.softmax(logits.detach().float(), dim=-1)
    return torch.multinomial(pi, n, replacement=True, generator=generator).view(shape)


def sample_rewards(
    reward_table: torch.Tensor,
    actions: torch.Tensor,
    kind: RewardKind = "deterministic",
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The reward of each drawn arm: ``r_a`` (``"deterministic"``), or 1 with probability
    ``r_a`` and 0 otherwise (``"bernoulli"``, a correctness reward). ``noise_std > 0`` adds
    Gaussian noise ``N(0, noise_std²)`` (a noisy reward model); the mean is unchanged."""
    if kind not in ("deterministic", "bernoulli"):
        raise ValueError(f"kind must be 'deterministic' or 'bernoulli', got {kind!r}.")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    table = reward_table.float()
    r = table[actions.long()]
    if kind == "bernoulli":
        if (table < 0).any() or (table > 1).any():
            raise ValueError(
                f"with kind='bernoulli' reward_table holds success probabilities in [0, 1], got {table.tolist()}."
            )
        r = (torch.rand(r.shape, generator=generator) < r).float()
    if noise_std > 0:
        r = r + noise_std * torch.randn(r.shape, generator=generator)
    return r


def baseline_advantages(
    rewards: torch.Tensor,
    baseline: Baseline = None,
    scale: Literal["none", "group"] = "none",
    eps: float = 1e-4,
) -> torch.Tensor:
    """``[..., N]`` rewards → ``[..., N]`` advantages ``A_i = r_i − b_i``, each group of N on
    its last axis (see the module docstring for ``baseline``; ``scale="group"`` with
    ``baseline="mean"`` is GRPO's ``(r − mean)/(std + eps)``, Bessel std as in TRL)."""
    if scale not in ("none", "group"):
        raise ValueError(f"scale must be 'none' or 'group', got {scale!r}.")
    if scale == "group" and baseline != "mean":
        raise ValueError(
            f"scale='group' divides the group-centred rewards by their std: it needs baseline='mean', got {baseline!r}."
        )
    r = rewards.float()
    N = r.shape[-1]
    if baseline is None:
        return r
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return r - float(baseline)
    if baseline in ("mean", "loo"):
        if N < 2:
            raise ValueError(f"baseline={baseline!r} needs at least 2 samples per group, got N={N}.")
        if baseline == "mean":
            flat = group_advantages(r.reshape(-1), group_size=N, scale=scale, eps=eps)
            return flat.view(r.shape)
        return (r - r.mean(dim=-1, keepdim=True)) * N / (N - 1)
    raise ValueError(f"baseline must be None, a number, 'mean' or 'loo', got {baseline!r}.")


def reinforce_gradient(
    logits: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    baseline: Baseline = None,
    scale: Literal["none", "group"] = "none",
    eps: float = 1e-4,
) -> torch.Tensor:
    """The REINFORCE estimate ``ĝ = 1/N Σ_i A_i (e_{a_i} − π)`` with ``A_i = r_i − b``.

    Williams 1992 (REINFORCE), Sutton & Barto 2018 eq. 13.8 (with baseline, eq. 13.11).
    ``actions`` and ``rewards`` are ``[..., N]``; the result is ``[..., K]``, one estimate per
    leading index. See the module docstring for the ``baseline`` choices; ``scale="group"``
    (with ``baseline="mean"``) is GRPO's advantage ``(r − mean)/(std + eps)``.
    """
    if actions.shape != rewards.shape or actions.dim() < 1:
        raise ValueError(
            f"actions and rewards must share one shape [..., N], got {tuple(actions.shape)} and {tuple(rewards.shape)}."
        )
    adv = baseline_advantages(rewards, baseline, scale, eps)
    score = score_function(logits, actions)  # [..., N, K]
    return (adv.unsqueeze(-1) * score).mean(dim=-2)


def reinforce_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """The surrogate ``L(θ) = −1/N Σ_i A_i log π_θ(a_i)``, whose autograd gradient is ``−ĝ``.

    Its *value* means nothing (it is not the expected reward); only its gradient does.
    ``actions``/``advantages`` are ``[N]`` (or ``[..., N]``, averaged over everything).
    """
    _check_logits(logits)
    if actions.shape != advantages.shape:
        raise ValueError(
            f"actions and advantages must share one shape, got {tuple(actions.shape)} and {tuple(advantages.shape)}."
        )
    logp = torch.log_softmax(logits, dim=-1)[actions.long()]
    return -(advantages.detach().to(logp.dtype) * logp).mean()


def reinforce_estimates(
    logits: torch.Tensor,
    reward_table: torch.Tensor,
    num_samples: int,
    num_estimates: int,
    baseline: Baseline = None,
    scale: Literal["none", "group"] = "none",
    kind: RewardKind = "deterministic",
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_estimates`` independent REINFORCE estimates, each from ``num_samples`` draws: ``[M, K]``.

    Their mean estimates ``E[ĝ]``; :func:`total_variance` of them measures the estimator's
    variance, to be compared across ``num_samples`` or baselines.
    """
    _check_logits(logits)
    _check_table(logits, reward_table, kind)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}.")
    if not isinstance(num_estimates, int) or num_estimates < 1:
        raise ValueError(f"num_estimates must be an int >= 1, got {num_estimates!r}.")
    actions = sample_actions(logits, (num_estimates, num_samples), generator)
    rewards = sample_rewards(reward_table, actions, kind, noise_std, generator)
    return reinforce_gradient(logits, actions, rewards, baseline, scale)


def total_variance(estimates: torch.Tensor) -> float:
    """``tr Cov(ĝ) = Σ_k Var(ĝ_k)`` over ``M`` estimates ``[M, K]`` (unbiased, divide by M − 1).

    The expected squared distance of one estimate from the estimator's mean: the noise a
    single gradient step carries.
    """
    if estimates.dim() != 2 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must be [M, K] with M >= 2 estimates, got {tuple(estimates.shape)}.")
    return estimates.float().var(dim=0, unbiased=True).sum().item()


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """``KL(π_θ ‖ π_ref) = Σ_k π_k (log π_k − log π_ref,k)``, differentiable in ``logits``.

    The exact value the sampled estimators k1, k2, k3 (``grpo_lib.kl.kl_estimate``) estimate.
    """
    _check_logits(logits)
    if ref_logits.shape != logits.shape:
        raise ValueError(f"ref_logits must have shape {tuple(logits.shape)}, got {tuple(ref_logits.shape)}.")
    logp = torch.log_softmax(logits, dim=-1)
    logq = torch.log_softmax(ref_logits.to(logits.dtype), dim=-1)
    return (logp.exp() * (logp - logq)).sum()


def exact_kl_gradient(logits: torch.Tensor, ref_logits: torch.Tensor, direction: KLDirection) -> torch.Tensor:
    """The exact gradient in ``logits`` of one direction of the KL, ``[K]``, by autograd on the closed form.

    * ``"forward"``: ``∇_θ KL(π_θ ‖ π_ref) = ∇_θ Σ_k π_k (log π_k − log π_ref,k)``, the direction
      GRPO's objective writes (DeepSeekMath, arXiv 2402.03300, eq. 3);
    * ``"reverse"``: ``∇_θ KL(π_ref ‖ π_θ) = −Σ_k π_ref,k ∇_θ log π_k = π − π_ref`` for a softmax.
    """
    _check_logits(logits)
    if ref_logits.shape != logits.shape:
        raise ValueError(f"ref_logits must have shape {tuple(logits.shape)}, got {tuple(ref_logits.shape)}.")
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' (KL(π_θ‖π_ref)) or 'reverse' (KL(π_ref‖π_θ)), got {direction!r}.")
    theta = logits.detach().double().clone().requires_grad_(True)
    logp = torch.log_softmax(theta, dim=-1)
    logq = torch.log_softmax(ref_logits.detach().double(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum() if direction == "forward" else (logq.exp() * (logq - logp)).sum()
    (grad,) = torch.autograd.grad(kl, theta)
    return grad.to(logits.dtype)


def kl_estimator_gradients(
    logits: torch.Tensor, ref_logits: torch.Tensor, kind: KLKind, actions: torch.Tensor
) -> torch.Tensor:
    """Per-sample gradients ``∇_θ k(a_i)`` of a sampled KL estimator used as a loss term, ``[N, K]``.

    This is what an optimiser sees when ``kl_estimate(log π_θ(a), log π_ref(a), kind)`` is added
    to a loss on arms ``a_i`` sampled from ``π_θ`` and differentiated by autograd: the pathwise
    gradient through ``log π_θ(a_i)`` only, with no score-function term for the sampling. Its
    mean over ``a_i ~ π_θ`` estimates ``E_πθ[∇k]``, which is (Tang & Munos 2025, "On a few
    pitfalls in KL divergence gradient estimation for RL", arXiv 2506.09477):

    * k1 = log π_θ − log π_ref: ``E[∇k1] = E_πθ[∇log π_θ] = 0``, no gradient at all on average;
    * k2 = ½(log π_θ − log π_ref)²: ``E[∇k2] = ∇KL(π_θ ‖ π_ref)``;
    * k3 = r − 1 − log r, ``r = π_ref/π_θ``: ``∇k3 = (1 − r)∇log π_θ``, so
      ``E[∇k3] = −E_πref[∇log π_θ] = ∇KL(π_ref ‖ π_θ)``, the *other* direction.

    Each arm's gradient is computed once by autograd through ``grpo_lib.kl.kl_estimate`` and
    indexed by ``actions`` (the gradient depends on the arm only).
    """
    _check_logits(logits)
    if ref_logits.shape != logits.shape:
        raise ValueError(f"ref_logits must have shape {tuple(logits.shape)}, got {tuple(ref_logits.shape)}.")
    if actions.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"actions must be an integer tensor of arm indices, got dtype {actions.dtype}.")
    K = logits.numel()
    if actions.numel() and (actions.min() < 0 or actions.max() >= K):
        raise ValueError(f"actions must lie in 0..{K - 1}, got values in {actions.min().item()}..{actions.max().item()}.")
    theta = logits.detach().double().clone().requires_grad_(True)
    logp = torch.log_softmax(theta, dim=-1)
    logq = torch.log_softmax(ref_logits.detach().double(), dim=-1)
    per_arm = kl_estimate(logp, logq, kind)  # k(arm) for every arm; validates kind
    table = torch.stack([torch.autograd.grad(per_arm[k], theta, retain_graph=True)[0] for k in range(K)])
    return table[actions.long()].to(logits.dtype)


@dataclass
class BanditRun:
    """What :func:`train_bandit` records, one row per step.

    Attributes:
        logits: ``[steps + 1, K]`` the logits before each step and after the last.
        expected_reward: ``[steps + 1]`` the exact ``J(θ)`` at those logits.
        sampled_reward: ``[steps]`` the mean reward of each step's N samples.
    """

    logits: torch.Tensor
    expected_reward: torch.Tensor
    sampled_reward: torch.Tensor

    @property
    def final_logits(self) -> torch.Tensor:
        return self.logits[-1]


def train_bandit(
    reward_table: torch.Tensor,
    steps: int,
    lr: float,
    num_samples: int,
    baseline: Baseline = None,
    scale: Literal["none", "group"] = "none",
    kind: RewardKind = "deterministic",
    noise_std: float = 0.0,
    init_logits: torch.Tensor | None = None,
    seed: int = 0,
) -> BanditRun:
    """Gradient ascent ``θ ← θ + lr · ĝ`` with the REINFORCE estimate, for ``steps`` steps.

    Starts from ``init_logits`` (default: all zeros, the uniform policy). Plain SGD, so that
    the estimator's noise is what differs between two runs with different baselines.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}.")
    table = reward_table.float()
    theta = torch.zeros_like(table) if init_logits is None else init_logits.detach().float().clone()
    _check_logits(theta)
    _check_table(theta, table, kind)
    g = torch.Generator().manual_seed(seed)
    logits_hist = [theta.clone()]
    sampled = []
    for _ in range(steps):
        actions = sample_actions(theta, num_samples, g)
        rewards = sample_rewards(table, actions, kind, noise_std, g)
        theta = theta + lr * reinforce_gradient(theta, actions, rewards, baseline, scale)
        logits_hist.append(theta.clone())
        sampled.append(rewards.mean())
    logits = torch.stack(logits_hist)
    return BanditRun(
        logits=logits,
        expected_reward=(torch.softmax(logits, dim=-1) * table).sum(-1),
        sampled_reward=torch.stack(sampled),
    )
