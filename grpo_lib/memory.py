"""Training memory of GRPO against PPO with a learned critic, counted and measured.

DeepSeekMath (arXiv 2402.03300, §4.1) motivates GRPO by the critic it removes: "the value
function employed in PPO is typically another model of comparable size as the policy
model, it brings a substantial memory and computational burden". This module checks that
claim on a real model, two ways:

1. **Byte accounting** (``static_bytes``): weights, gradients and AdamW state of every model
   a step keeps in memory, counted tensor by tensor (tied weights once). For full
   fine-tuning in fp32 with AdamW a trained model costs 4 W (weights W, gradients W,
   ``exp_avg`` W, ``exp_avg_sq`` W, W = 4 bytes x parameters) and a frozen one W, so

       GRPO, beta = 0:      policy 4 W                               = 4 W
       GRPO, beta > 0:      policy 4 W + reference W                  = 5 W
       PPO (critic + ref):  policy 4 W + reference W + critic 4 W     = 9 W

   i.e. 9/5 = 1.8x (2.25x against beta = 0). With LoRA the reference is free (the adapter
   switched off) and the trained state is small, so the critic's frozen copy (W) and its
   activations decide the ratio.
2. **Measured peak of one step** (``measure_step``): the bytes alive at the start of the
   step (the accounting above) plus the highest rise of allocated memory during it, which
   is where activations, logits and temporaries show up. On CUDA the rise is
   ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` at the start; on
   the CPU it is read from the allocator events of ``torch.profiler`` (``profile_memory=
   True``): every allocation and free the CPU allocator reports, summed in time order.
   Generation is not part of the measured step (it is the same for both methods: only the
   policy samples); the scoring passes (old, reference, value) and the update are.

What is *not* counted: the Python interpreter, the torch runtime and libraries (hundreds of
MB of RSS that do not depend on the method), allocator caching and fragmentation (on CUDA,
``max_memory_reserved`` is higher), the KV cache of generation, and a learned reward model
(InstructGPT's PPO also holds one; GRPO with a learned reward model would too, so it
cancels; our rewards are rules).

The PPO step is the minimal RLHF one (Schulman et al. 2017, arXiv 1707.06347; Ouyang et al.
2022, arXiv 2203.02155, §3.5 and eq. 2; as implemented in TRL's ``PPOTrainer``): per-token
rewards ``-kl_coef * (log π_old - log π_ref)`` plus the scalar score on the last token,
GAE advantages (Schulman et al. 2016, arXiv 1506.02438, eq. 16), whitened, the clipped
surrogate on per-token advantages, and the clipped value loss; policy and critic losses
are summed and back-propagated together, as TRL does.
"""

from __future__ import annotations

import copy
import gc
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from grpo_lib.advantages import group_advantages
from grpo_lib.logprobs import per_token_logprobs
from grpo_lib.losses import grpo_loss
from grpo_lib.rollout import Rollout
from grpo_lib.utils import masked_mean

__all__ = [
    "ValueModel",
    "tensor_bytes",
    "unique_tensors",
    "model_bytes",
    "optimizer_state_bytes",
    "gae_advantages",
    "rlhf_token_rewards",
    "value_loss",
    "random_rollout",
    "take_groups",
    "GRPOSetup",
    "PPOSetup",
    "make_grpo_setup",
    "make_ppo_setup",
    "grpo_step",
    "ppo_step",
    "StepMemory",
    "measure_step",
    "compare_memory",
]

Method = Literal["grpo", "ppo"]


# --------------------------------------------------------------------------- bytes
def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of a tensor's elements: ``numel * element_size`` (views count their own size)."""
    return t.numel() * t.element_size()


def unique_tensors(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors with distinct storage (by device and data pointer): a tied weight, or a
    parameter that appears in two models, is counted once."""
    seen: set[tuple[str, int]] = set()
    out = []
    for t in tensors:
        if t is None or t.numel() == 0:
            continue
        key = (str(t.device), t.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        out.append(t)
    return out


def model_bytes(model: nn.Module) -> dict[str, int]:
    """``{"weights", "trainable", "grads", "buffers"}`` bytes of one model.

    ``weights``: every parameter (tied ones once); ``trainable``: those with
    ``requires_grad``; ``grads``: ``.grad`` tensors that exist now; ``buffers``: e.g. rotary
    frequencies.
    """
    params = unique_tensors(p for p in model.parameters())
    return {
        "weights": sum(tensor_bytes(p) for p in params),
        "trainable": sum(tensor_bytes(p) for p in params if p.requires_grad),
        "grads": sum(tensor_bytes(p.grad) for p in unique_tensors(p.grad for p in params if p.grad is not None)),
        "buffers": sum(tensor_bytes(b) for b in unique_tensors(model.buffers())),
    }


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in ``optimizer.state`` (AdamW: ``exp_avg``, ``exp_avg_sq``, ``step``).

    Empty before the first ``step()``: torch creates the state lazily.
    """
    ts = [v for st in optimizer.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    return sum(tensor_bytes(t) for t in unique_tensors(ts))


# --------------------------------------------------------------------------- critic
class ValueModel(nn.Module):
    """PPO's critic: a copy of the policy's decoder with a scalar head, ``V(s_t) = w·h_t + b``.

    InstructGPT initialises the value function from the reward model (Ouyang et al. 2022,
    §3.5), itself the SFT model with its unembedding replaced by a scalar head; here we copy
    the policy's decoder (``policy.get_decoder()``), the same size either way. The head
    reads the hidden state at the position that predicts completion token t, the same
    positions ``per_token_logprobs`` scores, so ``values[:, t]`` is the value of the state
    before token t is emitted.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        if not hasattr(policy, "get_decoder"):
            raise TypeError(
                f"policy of type {type(policy).__name__} has no get_decoder(); pass a transformers causal LM "
                "(e.g. Qwen2ForCausalLM), not a peft wrapper (use peft_model.get_base_model())"
            )
        self.backbone = copy.deepcopy(policy.get_decoder())
        hidden = self.backbone.config.hidden_size
        dtype = next(self.backbone.parameters()).dtype
        self.v_head = nn.Linear(hidden, 1, dtype=dtype)
        nn.init.zeros_(self.v_head.weight)
        nn.init.zeros_(self.v_head.bias)
        self.config = self.backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        """``[B, T]`` values of the last ``logits_to_keep`` positions' states."""
        h = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = h[:, -(logits_to_keep + 1) : -1, :]
        return self.v_head(h).squeeze(-1).float()


# --------------------------------------------------------------------------- PPO maths
def rlhf_token_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """Per-token rewards of RLHF-PPO (Ouyang et al. 2022, eq. 2; Ziegler et al. 2019):

        r_t = -kl_coef * (log π_old(o_t) - log π_ref(o_t)) + [t = last token] * score

    ``scores`` ``[B]`` (the outcome reward of each completion), ``logp``/``ref_logp`` ``[B, T]``,
    ``mask`` ``[B, T]`` 1 on completion tokens (a prefix of each row). Without a reference
    (``ref_logp=None``) the KL part is 0. Unlike GRPO, the KL is part of the reward here.
    """
    m = mask.float()
    r = torch.zeros_like(logp, dtype=torch.float32)
    if ref_logp is not None and kl_coef:
        r = r - kl_coef * (logp.float() - ref_logp.float()) * m
    lengths = m.sum(-1).long()
    if (lengths == 0).any():
        raise ValueError("a completion has no tokens in mask; every row needs at least one completion token")
    rows = torch.arange(r.shape[0], device=r.device)
    r[rows, lengths - 1] += scores.to(r.device, torch.float32)
    return r


def gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv 1506.02438, eq. 16):

        δ_t = r_t + γ V_{t+1} - V_t,        A_t = Σ_l (γλ)^l δ_{t+l} = δ_t + γλ A_{t+1}

    with ``V`` = 0 after the last completion token (the episode ends at EOS). The returns,
    the critic's regression target, are ``R_t = A_t + V_t``. λ = 1 gives the Monte Carlo
    return minus V_t; λ = 0 the one-step TD error. All ``[B, T]``; ``mask`` is 1 on the
    completion tokens (a prefix of each row); outputs are 0 outside it.
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(
            f"rewards, values and mask must share one shape [B, T]; got {tuple(rewards.shape)}, "
            f"{tuple(values.shape)}, {tuple(mask.shape)}"
        )
    if not 0 <= gamma <= 1 or not 0 <= lam <= 1:
        raise ValueError(f"gamma and lam must be in [0, 1]; got gamma={gamma}, lam={lam}")
    m = mask.float()
    r, v = rewards.float() * m, values.float() * m
    T = r.shape[1]
    adv = torch.zeros_like(r)
    last = torch.zeros_like(r[:, 0])
    for t in reversed(range(T)):
        next_v = v[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = r[:, t] + gamma * next_v - v[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        adv[:, t] = last
    return adv, (adv + v) * m


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None = 0.2,
) -> torch.Tensor:
    """Clipped value loss (PPO as in OpenAI baselines and TRL's ``PPOTrainer``):

        L_V = 1/2 * mean_t max((V_t - R_t)^2, (clip(V_t, V_old ± c) - R_t)^2)

    over the completion tokens. ``clip_range=None`` gives the plain squared error.
    """
    err = (values - returns) ** 2
    if clip_range is not None:
        clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
        err = torch.maximum(err, (clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)


# --------------------------------------------------------------------------- batches
def random_rollout(
    vocab_size: int,
    num_prompts: int,
    group_size: int,
    prompt_len: int,
    completion_len: int,
    eos_token_id: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Rollout:
    """A synthetic :class:`Rollout` of full-length completions (no EOS) for memory
    measurements: the same token counts for every method, no generation needed."""
    if min(vocab_size, num_prompts, group_size, prompt_len, completion_len) < 1:
        raise ValueError("vocab_size, num_prompts, group_size, prompt_len and completion_len must all be >= 1")
    g = torch.Generator().manual_seed(seed)
    B = num_prompts * group_size
    low = 1 if eos_token_id == 0 else 0
    ids = torch.randint(low, vocab_size, (B, prompt_len + completion_len), generator=g)
    ids[ids == eos_token_id] = (eos_token_id + 1) % vocab_size
    return Rollout(
        prompts=[""] * B,
        completions=[""] * B,
        prompt_ids=ids[:, :prompt_len].to(device),
        prompt_mask=torch.ones(B, prompt_len, dtype=torch.long, device=device),
        completion_ids=ids[:, prompt_len:].to(device),
        completion_mask=torch.ones(B, completion_len, device=device),
        truncated=torch.ones(B, dtype=torch.bool, device=device),
        group_size=group_size,
        prompt_index=torch.arange(num_prompts).repeat_interleave(group_size),
    )


def take_groups(ro: Rollout, num_prompts: int) -> Rollout:
    """The first ``num_prompts`` groups of a rollout (all G completions of each), e.g. to
    measure memory on a slice of a real training batch."""
    if not 1 <= num_prompts <= ro.num_prompts:
        raise ValueError(f"num_prompts must be in 1..{ro.num_prompts} (the rollout's prompts), got {num_prompts}")
    return ro.select_groups(range(num_prompts))


# --------------------------------------------------------------------------- setups
@dataclass
class GRPOSetup:
    """What a GRPO step holds: the policy, its optimizer, a reference only when needed."""

    policy: nn.Module
    optimizer: torch.optim.Optimizer
    ref_model: nn.Module | None
    beta: float
    use_lora: bool

    def models(self) -> dict[str, nn.Module]:
        out = {"policy": self.policy}
        if self.ref_model is not None:
            out["reference"] = self.ref_model
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.optimizer}


@dataclass
class PPOSetup:
    """What an RLHF-PPO step holds: policy, critic (same-size decoder + value head), their
    optimizers, and the reference (a frozen copy, or the adapter switched off with LoRA)."""

    policy: nn.Module
    value_model: nn.Module
    optimizer: torch.optim.Optimizer
    value_optimizer: torch.optim.Optimizer
    ref_model: nn.Module | None
    kl_coef: float
    use_lora: bool

    def models(self) -> dict[str, nn.Module]:
        out = {"policy": self.policy, "critic": self.value_model}
        if self.ref_model is not None:
            out["reference"] = self.ref_model
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.optimizer, "critic": self.value_optimizer}


def _lora(model: nn.Module, r: int, targets: list[str], extra_trainable: list[str] | None = None) -> nn.Module:
    from peft import LoraConfig

    from grpo_lib.models import add_lora_adapter

    cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=targets, modules_to_save=extra_trainable)
    return add_lora_adapter(model, cfg)


_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _frozen_copy(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _adamw(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    # foreach=False: the per-parameter loop, so the optimizer's temporaries are those of
    # one tensor at a time (the fused/foreach paths allocate a copy of all of them).
    return torch.optim.AdamW(params, lr=lr, foreach=False)


def make_grpo_setup(
    model: nn.Module, beta: float = 0.04, use_lora: bool = False, lora_r: int = 16, lr: float = 1e-5
) -> GRPOSetup:
    """A copy of ``model`` set up as GRPO trains it: with ``beta > 0`` a frozen reference
    copy (full fine-tuning) or none (LoRA: the adapter is switched off instead)."""
    policy = copy.deepcopy(model)
    if use_lora:
        policy = _lora(policy, lora_r, _LORA_TARGETS)
    else:
        for p in policy.parameters():
            p.requires_grad_(True)
    ref = _frozen_copy(model) if (beta > 0 and not use_lora) else None
    return GRPOSetup(policy=policy, optimizer=_adamw(policy, lr), ref_model=ref, beta=beta, use_lora=use_lora)


def make_ppo_setup(
    model: nn.Module, kl_coef: float = 0.04, use_lora: bool = False, lora_r: int = 16, lr: float = 1e-5
) -> PPOSetup:
    """A copy of ``model`` set up as RLHF-PPO trains it: policy, critic (``ValueModel``, a
    decoder of the same size), reference (frozen copy; with LoRA the adapter switched off).
    With LoRA the critic is a second frozen decoder with its own adapter and a trained head."""
    policy = copy.deepcopy(model)
    critic = ValueModel(model)
    if use_lora:
        policy = _lora(policy, lora_r, _LORA_TARGETS)
        critic = _lora(critic, lora_r, _LORA_TARGETS, extra_trainable=["v_head"])
    else:
        for p in policy.parameters():
            p.requires_grad_(True)
    ref = _frozen_copy(model) if (kl_coef > 0 and not use_lora) else None
    return PPOSetup(
        policy=policy,
        value_model=critic,
        optimizer=_adamw(policy, lr),
        value_optimizer=_adamw(critic, lr),
        ref_model=ref,
        kl_coef=kl_coef,
        use_lora=use_lora,
    )


def _ref_logprobs(policy: nn.Module, ref_model: nn.Module | None, ro: Rollout) -> torch.Tensor:
    with torch.no_grad():
        if ref_model is not None:
            return per_token_logprobs(ref_model, ro.input_ids, ro.attention_mask, ro.logits_to_keep)
        with policy.disable_adapter():  # LoRA: the base model is the reference
            return per_token_logprobs(policy, ro.input_ids, ro.attention_mask, ro.logits_to_keep)


# --------------------------------------------------------------------------- steps
def grpo_step(setup: GRPOSetup, ro: Rollout, rewards: torch.Tensor, epsilon: float = 0.2) -> dict[str, float]:
    """One GRPO update (μ = 1) as ``GRPOTrainer`` does it, generation excluded:
    group advantages, reference log-probs when β > 0, ``grpo_loss``, backward, AdamW."""
    policy = setup.policy
    policy.train()
    adv = group_advantages(rewards.float(), ro.group_size).to(ro.completion_ids.device)
    mask = ro.completion_mask.float()
    ref_logp = _ref_logprobs(policy, setup.ref_model, ro) if setup.beta > 0 else None
    setup.optimizer.zero_grad(set_to_none=True)
    logp = per_token_logprobs(policy, ro.input_ids, ro.attention_mask, ro.logits_to_keep)
    loss, m = grpo_loss(logp, None, adv, mask, ref_logp, beta=setup.beta, epsilon=epsilon, loss_type="grpo")
    loss.backward()
    setup.optimizer.step()
    return {"loss": loss.item(), **m}


def ppo_step(
    setup: PPOSetup,
    ro: Rollout,
    scores: torch.Tensor,
    epsilon: float = 0.2,
    gamma: float = 1.0,
    lam: float = 0.95,
    value_clip: float | None = 0.2,
    vf_coef: float = 0.1,
) -> dict[str, float]:
    """One RLHF-PPO update, generation excluded (TRL ``PPOTrainer``'s order):

    1. no-grad passes: log π_old (policy), log π_ref, V_old (critic);
    2. per-token rewards (``rlhf_token_rewards``), GAE (``gae_advantages``), advantages
       whitened over the batch's completion tokens;
    3. policy forward and critic forward with gradients; loss = clipped surrogate with
       per-token advantages (token mean) + ``vf_coef`` x ``value_loss``; one backward;
       one AdamW step each.
    """
    policy, critic = setup.policy, setup.value_model
    ids, attn, T = ro.input_ids, ro.attention_mask, ro.logits_to_keep
    mask = ro.completion_mask.float()
    with torch.no_grad():
        policy.eval()
        critic.eval()
        old_logp = per_token_logprobs(policy, ids, attn, T)
        old_values = critic(ids, attn, T)
    ref_logp = _ref_logprobs(policy, setup.ref_model, ro) if setup.kl_coef > 0 else None
    rewards = rlhf_token_rewards(scores, old_logp, ref_logp, mask, setup.kl_coef)
    adv, returns = gae_advantages(rewards, old_values, mask, gamma=gamma, lam=lam)
    mean = masked_mean(adv, mask)
    var = masked_mean((adv - mean) ** 2, mask)
    adv = (adv - mean) * torch.rsqrt(var + 1e-8) * mask

    policy.train()
    critic.train()
    setup.optimizer.zero_grad(set_to_none=True)
    setup.value_optimizer.zero_grad(set_to_none=True)
    logp = per_token_logprobs(policy, ids, attn, T)
    values = critic(ids, attn, T)
    ratio = torch.exp(logp - old_logp)
    # The clipped surrogate of grpo_lib.losses.policy_loss, with one advantage per *token*.
    pg = -torch.minimum(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv)
    pg_loss = masked_mean(pg, mask)
    vf_loss = value_loss(values, old_values, returns, mask, value_clip)
    loss = pg_loss + vf_coef * vf_loss
    loss.backward()
    setup.optimizer.step()
    setup.value_optimizer.step()
    return {"loss": loss.item(), "pg_loss": pg_loss.item(), "vf_loss": vf_loss.item()}


# --------------------------------------------------------------------------- measuring
def static_bytes(setup: GRPOSetup | PPOSetup) -> dict[str, int]:
    """Bytes alive between steps, by part: ``<model>/weights``, ``<model>/grads``,
    ``<model>/optimizer`` (``/buffers`` too). Parameters shared between models (LoRA's
    base) are counted once, under the first model that holds them."""
    out: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    opts = setup.optimizers()
    for name, model in setup.models().items():
        w = g = 0
        for p in model.parameters():
            key = (str(p.device), p.untyped_storage().data_ptr())
            if key in seen:
                continue
            seen.add(key)
            w += tensor_bytes(p)
            if p.grad is not None:
                g += tensor_bytes(p.grad)
        out[f"{name}/weights"] = w
        out[f"{name}/grads"] = g
        out[f"{name}/buffers"] = sum(tensor_bytes(b) for b in unique_tensors(model.buffers()))
        if name in opts:
            out[f"{name}/optimizer"] = optimizer_state_bytes(opts[name])
    return out


@dataclass
class StepMemory:
    """Memory of one training step.

    ``static``: bytes by part (weights, grads, optimizer state) after the step, from
    ``static_bytes``. ``at_start``: bytes alive when the step began (weights and optimizer
    state; gradients were freed by ``zero_grad``). ``rise``: the largest rise of allocated
    bytes above ``at_start`` during the step (activations, logits, gradients, temporaries),
    read from ``source``. ``peak = at_start + rise``. ``end_rise``: allocated bytes left at
    the end, above ``at_start`` (the gradients, a check on the reading).
    """

    method: str
    static: dict[str, int]
    at_start: int
    rise: int
    end_rise: int
    source: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def peak(self) -> int:
        return self.at_start + self.rise

    @property
    def static_total(self) -> int:
        return sum(self.static.values())

    @property
    def activations(self) -> int:
        """Peak minus everything that persists (weights, grads, optimizer state): the
        step's transient memory (activations, logits, temporaries)."""
        return self.peak - self.static_total

    def by_group(self) -> dict[str, int]:
        """``weights`` (all models), ``grads``, ``optimizer``, ``transient`` (peak − static)."""
        g = {"weights": 0, "grads": 0, "optimizer": 0}
        for k, v in self.static.items():
            part = k.split("/")[-1]
            g["weights" if part in ("weights", "buffers") else part] += v
        g["transient"] = max(self.activations, 0)
        return g


def _profiler_rise(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``fn`` under the CPU profiler; return its result, the peak and the final value of
    the running sum of the allocator's (de)allocation events during it."""
    from torch.profiler import ProfilerActivity, profile

    # kineto prints start/stop lines on file descriptor 2: silence them, not Python's warnings.
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda x: x[0])
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return result, peak, cur


def measure_step(
    setup: GRPOSetup | PPOSetup,
    ro: Rollout,
    rewards: torch.Tensor,
    warmup: bool = True,
    **step_kwargs: Any,
) -> StepMemory:
    """Measure the peak memory of one training step of ``setup`` on rollout ``ro``.

    ``warmup=True`` runs one unmeasured step first so AdamW's state exists (the steady
    state of training; the first step of a run has none yet). Gradients are freed
    (``zero_grad(set_to_none=True)``) before the measured step, as the step itself does.
    """
    is_ppo = isinstance(setup, PPOSetup)
    step = (lambda: ppo_step(setup, ro, rewards, **step_kwargs)) if is_ppo else (
        lambda: grpo_step(setup, ro, rewards, **step_kwargs)
    )
    if warmup:
        step()
    for opt in setup.optimizers().values():
        opt.zero_grad(set_to_none=True)
    gc.collect()
    at_start = sum(static_bytes(setup).values())
    device = ro.completion_ids.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        metrics = step()
        torch.cuda.synchronize(device)
        rise = torch.cuda.max_memory_allocated(device) - base
        end_rise = torch.cuda.memory_allocated(device) - base
        source = "torch.cuda.max_memory_allocated"
    else:
        metrics, rise, end_rise = _profiler_rise(step)
        source = "torch.profiler CPU allocator events"
    return StepMemory(
        method="ppo" if is_ppo else "grpo",
        static=static_bytes(setup),
        at_start=at_start,
        rise=rise,
        end_rise=end_rise,
        source=source,
        metrics=metrics,
    )


def compare_memory(
    model: nn.Module,
    ro: Rollout,
    rewards: torch.Tensor,
    beta: float = 0.04,
    use_lora: bool = False,
    lora_r: int = 16,
) -> dict[str, StepMemory]:
    """Peak step memory of GRPO (β as given, and β = 0) and of RLHF-PPO with a critic and a
    reference (``kl_coef = beta``), each on its own copy of ``model``, on the same rollout.

    Returns ``{"grpo": ..., "grpo_beta0": ..., "ppo": ...}``; each setup is freed before
    the next is built, so they do not share memory.
    """
    out: dict[str, StepMemory] = {}
    plans: list[tuple[str, Callable[[], GRPOSetup | PPOSetup]]] = [
        ("grpo", lambda: make_grpo_setup(model, beta=beta, use_lora=use_lora, lora_r=lora_r)),
        ("grpo_beta0", lambda: make_grpo_setup(model, beta=0.0, use_lora=use_lora, lora_r=lora_r)),
        ("ppo", lambda: make_ppo_setup(model, kl_coef=beta, use_lora=use_lora, lora_r=lora_r)),
    ]
    for name, build in plans:
        setup = build()
        out[name] = measure_step(setup, ro, rewards)
        out[name].method = name
        del setup
        gc.collect()
        if ro.completion_ids.device.type == "cuda":
            torch.cuda.empty_cache()
    return out
