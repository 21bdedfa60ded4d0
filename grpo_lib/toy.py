"""GRPO on a categorical toy policy, many independent runs at once: ratios, clipping and KL.

:mod:`grpo_lib.bandit` checks single gradient *estimates* against the exact gradient. This
module *trains* a softmax policy over K arms with the full GRPO update, the one a language
model gets, so that notebooks 03 and 04 can show what clipping and the KL penalty do to a
run, averaged over many seeds in the time one language-model step takes:

for each step (one rollout)
    1. freeze ``π_old = π_θ`` and draw a group of G arms ``a_1..a_G ~ π_old`` per run;
    2. score them (``reward_fn``) and form GRPO's advantages
       ``A_i = (r_i − mean r) / (std r + eps)`` (:func:`grpo_lib.advantages.group_advantages`);
    3. take ``num_iterations`` (μ) optimizer steps on the same group, each minimising
       :func:`grpo_lib.losses.grpo_loss`: the PPO clipped surrogate in the ratio
       ``ρ_i = π_θ(a_i) / π_old(a_i)`` (Schulman et al. 2017, arXiv 1707.06347, eq. 7) plus
       ``β · k3`` to the reference policy (DeepSeekMath, arXiv 2402.03300, eq. 3–4).

A bandit is a language model with one token per completion, so the ``[B, T]`` tensors that
``grpo_loss`` expects are ``[S·G, 1]`` here (S independent runs, each a "prompt" whose G
completions are consecutive rows). The S runs share nothing: Adam is element-wise and
``grpo_loss`` averages over rows, so we multiply the loss by S and every run gets exactly
the update it would get alone.

Because the policy is a table, the quantities a language-model run can only estimate are
exact here and recorded every step: the expected reward ``Σ_k π_k r_k``, the KL to the
reference ``KL(π_θ ‖ π_ref)``, how far one rollout's updates moved the policy
``KL(π_old ‖ π_θ)``, and the entropy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from .advantages import group_advantages
from .losses import LossType, grpo_loss

__all__ = ["ToyRun", "batched_kl", "entropy", "train_toy_grpo"]

#: ``reward_fn(actions [S, G] long, generator) -> rewards [S, G] float``.
RewardFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def batched_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Exact ``KL(p ‖ q) = Σ_k p_k (log p_k − log q_k)`` of ``softmax`` rows: ``[..., K]`` → ``[...]``."""
    if logits_p.shape[-1] != logits_q.shape[-1]:
        raise ValueError(
            f"both logits need the same number of arms K on the last axis, got {tuple(logits_p.shape)} "
            f"and {tuple(logits_q.shape)}."
        )
    logp = torch.log_softmax(logits_p, dim=-1)
    logq = torch.log_softmax(logits_q, dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H(π) = −Σ_k π_k log π_k`` of ``softmax`` rows: ``[..., K]`` → ``[...]``."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


@dataclass
class ToyRun:
    """What :func:`train_toy_grpo` records. Every history entry is ``[steps, S]`` (S runs).

    Keys of ``history``:

    * ``reward``: mean sampled reward of the step's group (what TRL logs as ``reward``);
    * ``expected/<name>``: exact ``Σ_k π_k r_k`` *after* the step, for each table in
      ``expected_rewards`` (e.g. the true and the proxy reward);
    * ``kl_ref``: exact ``KL(π_θ ‖ π_ref)`` after the step: drift from the reference;
    * ``kl_old``: exact ``KL(π_old ‖ π_θ)``: how far this rollout's μ updates moved the policy;
    * ``entropy``: ``H(π_θ)`` after the step;
    * ``clip_ratio/region_mean``: fraction of samples whose gradient the clip switched off,
      averaged over the μ updates (TRL's name);
    * ``kl``: the k3 estimate averaged over samples (TRL's ``kl``), only when ``beta > 0``.

    ``clip_per_iteration`` is ``[steps, μ]``: the clip fraction of each inner update,
    averaged over runs (the first is always 0: there ``π_θ = π_old``).
    """

    history: dict[str, torch.Tensor]
    clip_per_iteration: torch.Tensor
    logits: torch.Tensor
    ref_logits: torch.Tensor
    settings: dict = field(default_factory=dict)


def train_toy_grpo(
    reward_fn: RewardFn,
    init_logits: torch.Tensor,
    *,
    steps: int,
    num_runs: int = 16,
    num_generations: int = 16,
    num_iterations: int = 1,
    learning_rate: float = 0.1,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    loss_type: LossType = "grpo",
    scale_rewards: Literal["group", "none"] = "group",
    expected_rewards: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ToyRun:
    """Train ``num_runs`` independent softmax policies over K arms with GRPO; see the module docstring.

    Args:
        reward_fn: ``(actions [S, G], generator) -> rewards [S, G]``; e.g. a Bernoulli arm table
            through :func:`grpo_lib.bandit.sample_rewards`, or a function that writes and scores
            a completion per arm.
        init_logits: ``[K]``, the starting policy of every run; also the frozen reference π_ref.
        steps: rollouts (optimizer steps = ``steps * num_iterations``).
        num_generations: G, samples per group.
        num_iterations: μ, optimizer steps per rollout (TRL's ``num_iterations``). With μ = 1
            the ratio is exactly 1 and clipping never fires.
        learning_rate: Adam's step size.
        epsilon, epsilon_high: the clip range ``[1 − ε, 1 + ε_high]``; a huge ε (``1e9``)
            switches clipping off.
        beta: the KL coefficient. With ``beta = 0`` no reference log-probability is computed.
        loss_type, scale_rewards: as in TRL (``scale_rewards="none"`` is Dr. GRPO's
            advantage without the std).
        expected_rewards: tables ``[K]`` of each arm's expected reward, tracked exactly.
        seed: seeds the sampler; the same seed gives the same run.
        progress: show a tqdm bar.

    Runs on one CPU thread (restored afterwards): the tensors hold a few hundred numbers,
    and handing them between threads costs more than it saves (6x slower with 2 threads
    on a loaded 2-core machine, measured).
    """
    if init_logits.dim() != 1 or init_logits.numel() < 2:
        raise ValueError(f"init_logits must be a 1-D tensor [K] with K >= 2 arms, got shape {tuple(init_logits.shape)}.")
    for name, value in (("steps", steps), ("num_runs", num_runs), ("num_iterations", num_iterations)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    if not isinstance(num_generations, int) or num_generations < 2:
        raise ValueError(f"num_generations must be an int >= 2 (a group needs a baseline), got {num_generations!r}.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}.")
    if scale_rewards not in ("group", "none"):
        raise ValueError(f"scale_rewards must be 'group' or 'none', got {scale_rewards!r}.")
    K = init_logits.numel()
    tables = {k: v.float() for k, v in (expected_rewards or {}).items()}
    for name, table in tables.items():
        if table.shape != (K,):
            raise ValueError(f"expected_rewards[{name!r}] must have shape ({K},), one entry per arm, got {tuple(table.shape)}.")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(reward_fn, init_logits, tables, steps, num_runs, num_generations, num_iterations,
                      learning_rate, epsilon, epsilon_high, beta, loss_type, scale_rewards, seed, progress)
    finally:
        torch.set_num_threads(threads)


def _train(reward_fn, init_logits, tables, steps, num_runs, num_generations, num_iterations,
           learning_rate, epsilon, epsilon_high, beta, loss_type, scale_rewards, seed, progress) -> ToyRun:
    K = init_logits.numel()
    S, G = num_runs, num_generations
    ref_logits = init_logits.detach().float().clone()
    logits = ref_logits.expand(S, K).clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=learning_rate)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(S * G, 1)
    ref_logp_table = torch.log_softmax(ref_logits, dim=-1)

    hist: dict[str, list[torch.Tensor]] = {}
    clip_iters = torch.zeros(steps, num_iterations)

    def log(key: str, value: torch.Tensor) -> None:
        hist.setdefault(key, []).append(value.detach().float().clone())

    loop = range(steps)
    if progress:
        from tqdm.auto import tqdm

        loop = tqdm(loop, desc=f"toy GRPO (μ={num_iterations}, ε={epsilon:g}, β={beta:g})")
    for step in loop:
        # 1. the rollout, from the frozen old policy
        with torch.no_grad():
            old_logits = logits.detach().clone()
            old_logp_table = torch.log_softmax(old_logits, dim=-1)
            actions = torch.multinomial(old_logp_table.exp(), G, replacement=True, generator=gen)  # [S, G]
            rewards = reward_fn(actions, gen).float()
            if rewards.shape != actions.shape:
                raise ValueError(f"reward_fn must return rewards of shape {tuple(actions.shape)}, got {tuple(rewards.shape)}.")
            # 2. group-relative advantages, one group of G per run
            adv = group_advantages(rewards.reshape(-1), group_size=G, scale=scale_rewards)
            old_logp = old_logp_table.gather(1, actions).reshape(-1, 1)
            ref_logp = ref_logp_table[actions].reshape(-1, 1) if beta > 0 else None  # β = 0: no reference pass
        # 3. μ updates on the same group
        clip_region = torch.zeros(S)
        kl_est = torch.zeros(S)
        for it in range(num_iterations):
            logp = torch.log_softmax(logits, dim=-1).gather(1, actions).reshape(-1, 1)
            loss, metrics = grpo_loss(
                logp, old_logp, adv, mask, ref_logp, beta=beta, epsilon=epsilon,
                epsilon_high=epsilon_high, loss_type=loss_type,
            )
            opt.zero_grad()
            (loss * S).backward()
            opt.step()
            clip_iters[step, it] = metrics["clip_ratio/region_mean"]
            with torch.no_grad():  # per-run clip fraction, the same rule as policy_loss's stats
                ratio = (logp.detach() - old_logp).exp().view(S, G)
                a = adv.view(S, G)
                hi = 1 + (epsilon if epsilon_high is None else epsilon_high)
                clip_region += (((ratio < 1 - epsilon) & (a < 0)) | ((ratio > hi) & (a > 0))).float().mean(-1)
                if beta > 0:
                    x = ref_logp.view(S, G) - logp.detach().view(S, G)
                    kl_est += (x.exp() - x - 1).mean(-1)
        with torch.no_grad():
            log("reward", rewards.mean(-1))
            log("kl_ref", batched_kl(logits, ref_logits.expand(S, K)))
            log("kl_old", batched_kl(old_logits, logits))
            log("entropy", entropy(logits))
            log("clip_ratio/region_mean", clip_region / num_iterations)
            if beta > 0:
                log("kl", kl_est / num_iterations)
            probs = torch.softmax(logits, dim=-1)
            for name, table in tables.items():
                log(f"expected/{name}", probs @ table)
    return ToyRun(
        history={k: torch.stack(v) for k, v in hist.items()},
        clip_per_iteration=clip_iters,
        logits=logits.detach(),
        ref_logits=ref_logits,
        settings=dict(
            steps=steps, num_runs=S, num_generations=G, num_iterations=num_iterations,
            learning_rate=learning_rate, epsilon=epsilon, epsilon_high=epsilon_high, beta=beta,
            loss_type=loss_type, scale_rewards=scale_rewards, seed=seed,
        ),
    )
