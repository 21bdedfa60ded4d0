"""``GRPOTrainer``: the GRPO loop, one readable step at a time.

One training step (DeepSeekMath, arXiv 2402.03300, Algorithm 1, inner loop):

1. take ``prompts_per_step`` prompts (a fixed, seeded order: the same seed gives the same
   batches, and a resumed run picks up at the same place);
2. sample G completions per prompt with the current policy (``sample_groups``: by default
   each prompt prefilled once and its cache shared by the group, ``config.sampler``) —
   this policy is π_old;
3. score every completion with each reward function ``f(prompts, completions, **columns)``
   (TRL's signature; dataset columns such as ``answer`` are passed through) and sum them
   with ``reward_weights``;
4. advantages relative to the group (``group_advantages``; ``advantage_estimator`` switches to REINFORCE++); with ``beta = 0`` a group whose
   advantages are all 0 adds exactly nothing to the loss, so it is left out of the
   forward and backward (``skip_zero_advantage_groups``; the loss keeps the full batch's
   normaliser, so the gradient is the same);
5. log π_old only when ``num_iterations > 1`` (with μ = 1, π_old = π_θ and
   ``grpo_loss`` uses ``logp.detach()``); log π_ref only when ``beta > 0`` (with LoRA the
   reference is the base model with the adapter switched off, peft's
   ``disable_adapter()``; with full fine-tuning a frozen copy made at start);
6. μ = ``num_iterations`` updates: ``grpo_loss`` → backward → clip the gradient norm →
   AdamW step. When the frozen weights are fp16 (a T4), the loss is scaled before
   ``backward`` and the gradients unscaled before clipping (``torch.amp.GradScaler``;
   Micikevicius et al. 2018, arXiv 1710.03740, §3.2): GRPO's per-token gradients are small
   enough to underflow fp16 otherwise. Trainable weights must be fp32 (or bf16).

Metrics are logged per step under TRL's names (``reward``, ``reward_std``,
``rewards/<func>/mean``, ``frac_reward_zero_std``, ``kl``, ``clip_ratio/*``,
``completions/mean_length``, ``completions/clipped_ratio``, ``entropy``, ``loss``,
``grad_norm``, ``learning_rate``) plus ``step_time``, ``generation_time`` and
``tokens_per_second``. They go to ``trainer.log_history``, to
``output_dir/metrics.jsonl`` and to every callback.

Checkpoints (every ``save_steps``) hold the trainable weights, the optimizer and
scheduler, every RNG state, the step (which fixes the data position) and the metrics so
far; ``train(resume_from_checkpoint=True)`` continues as if the run had never stopped.
"""

from __future__ import annotations

import copy
import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from grpo_lib.advantages import compute_advantages, zero_std_fraction
from grpo_lib.config import GRPOConfig
from grpo_lib.device import pick_device
from grpo_lib.logprobs import per_token_logprobs
from grpo_lib.losses import grpo_loss, sampler_importance_weights
from grpo_lib.rollout import Rollout, concat_rollouts, sample_groups, shared_prefix_logprobs
from grpo_lib.utils import seed_everything

__all__ = ["GRPOTrainer", "TrainerCallback", "RewardFunc", "reward_func_name", "TrainingInterrupted",
           "RESUME_SAFE_FIELDS", "resume_config_changes"]

RewardFunc = Callable[..., list]

#: Metric keys that measure time, not the run: they differ between identical runs.
TIMING_KEYS = ("step_time", "generation_time", "tokens_per_second", "wall_time")

#: Config fields a resumed run may change: they do not alter what was trained so far nor
#: how the next step is computed from it. Any other change is refused on resume (the
#: optimizer, scheduler and data order come from the checkpoint and would silently keep
#: the old values, or the batches and groups would no longer match).
RESUME_SAFE_FIELDS = ("max_steps", "save_steps", "logging_steps", "progress_bar", "save_total_limit",
                      "report_to", "output_dir")


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``train()`` after Ctrl-C (SIGINT): the step in progress was finished,
    and, with ``output_dir`` set, saved as ``checkpoint`` so that ``resume`` continues it.

    Attributes:
        step: the last completed step.
        checkpoint: the checkpoint folder holding that step, or None (no output_dir).
    """

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped at step {step}" + (f"; checkpoint {checkpoint}" if checkpoint else ""))
        self.step, self.checkpoint = step, checkpoint


def _finite_or_none(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics with NaN/inf replaced by None, so the line is strict JSON (null):
    ``json.dumps`` would write the bare token ``NaN``, which no JSON parser accepts."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


class TrainerCallback:
    """Subclass and override what you need. ``metrics`` may be extended in place (e.g.
    with an evaluation accuracy): what you add is logged and checkpointed with the step.
    A plain function ``f(step, metrics)`` also works as a callback (it is ``on_step_end``).
    """

    def on_train_begin(self, trainer: "GRPOTrainer") -> None: ...

    def on_step_end(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: "GRPOTrainer") -> None: ...


def reward_func_name(func: Callable) -> str:
    """The name a reward function is logged under (``rewards/<name>/mean``)."""
    f = func
    while hasattr(f, "func"):  # functools.partial
        f = f.func
    return getattr(f, "__name__", type(f).__name__)


def _cb(cb: Any, name: str) -> Callable | None:
    if hasattr(cb, name):
        return getattr(cb, name)
    if name == "on_step_end" and callable(cb):
        return cb
    return None


class GRPOTrainer:
    """Group Relative Policy Optimization on a causal LM (full fine-tuning or LoRA).

    fp16 models (a T4) are trained with a loss scaler; see ``SUPPORTS_GRAD_SCALER``.

    Positional, or with TRL's keyword names::

        GRPOTrainer(model, tokenizer, reward_funcs, train_dataset, config)
        GRPOTrainer(model=model, reward_funcs=funcs, args=config, train_dataset=rows,
                    processing_class=tokenizer)

    Args:
        model: a transformers causal LM (or a peft model). With ``config.use_lora`` and a
            plain model, a LoRA adapter is added (``lora_r``, ``lora_alpha``, ...). A string
            (hub id or folder) is loaded with ``grpo_lib.models.load_policy(lora=False)``.
        tokenizer: its tokenizer (pad and eos tokens set; left padding is enforced for
            generation). TRL's name: ``processing_class``.
        reward_funcs: one function or a list, each ``f(prompts, completions, **columns)
            -> list[float | None]`` (None = "not applicable", ignored in the sum).
        train_dataset: a list of dicts with a ``"prompt"`` key and any other columns
            (passed to the reward functions), or a list of prompt strings.
        config: a :class:`GRPOConfig`. TRL's name: ``args``.
        reward_weights: overrides ``config.reward_weights``; one float per function. The
            weights used are recorded in ``trainer.config.reward_weights`` (and config.json).
        callbacks: :class:`TrainerCallback` objects or functions ``f(step, metrics)``.
    """

    #: The trainer scales the loss when the model's frozen weights are fp16.
    SUPPORTS_GRAD_SCALER = True

    def __init__(
        self,
        model,
        tokenizer=None,
        reward_funcs: RewardFunc | Sequence[RewardFunc] | None = None,
        train_dataset: Sequence[dict] | Sequence[str] | None = None,
        config: GRPOConfig | None = None,
        reward_weights: Sequence[float] | None = None,
        callbacks: Sequence[Any] | None = None,
        *,
        args: GRPOConfig | None = None,
        processing_class=None,
    ) -> None:
        if args is not None and config is not None:
            raise TypeError("give the config once: config= (grpo_lib) or args= (TRL's name), not both")
        if processing_class is not None and tokenizer is not None:
            raise TypeError("give the tokenizer once: tokenizer= (grpo_lib) or processing_class= (TRL's name), not both")
        config = args if args is not None else config
        tokenizer = processing_class if processing_class is not None else tokenizer
        if reward_funcs is None:
            raise TypeError("reward_funcs is required: a function f(prompts, completions, **columns) or a list of them")
        if train_dataset is None:
            raise TypeError("train_dataset is required: a list of dicts with a 'prompt' key, or of prompt strings")
        self.config = config if config is not None else GRPOConfig()
        if not isinstance(self.config, GRPOConfig):
            raise TypeError(f"config must be a GRPOConfig, got {type(self.config).__name__}")
        cfg = self.config
        if isinstance(model, (str, Path)):
            from grpo_lib.models import load_policy

            model, loaded_tok = load_policy(str(model), lora=False, device=cfg.device, dtype=cfg.dtype)
            tokenizer = tokenizer if tokenizer is not None else loaded_tok
        if tokenizer is None:
            raise TypeError("a tokenizer is required: tokenizer= (grpo_lib) or processing_class= (TRL's name)")

        funcs = [reward_funcs] if callable(reward_funcs) else list(reward_funcs)
        if not funcs or not all(callable(f) for f in funcs):
            raise ValueError("reward_funcs must be a callable or a non-empty list of callables f(prompts, completions, **columns)")
        self.reward_funcs = funcs
        self.reward_names = [reward_func_name(f) for f in funcs]
        weights = reward_weights if reward_weights is not None else cfg.reward_weights
        if weights is None:
            weights = [1.0] * len(funcs)
        if len(weights) != len(funcs):
            raise ValueError(
                f"reward_weights has {len(weights)} entries but there are {len(funcs)} reward functions "
                f"({self.reward_names}); give one weight per function"
            )
        self.reward_weights = torch.tensor([float(w) for w in weights])
        if cfg.reward_weights != [float(w) for w in weights]:  # record what is used, not None
            import dataclasses

            self.config = cfg = dataclasses.replace(cfg, reward_weights=[float(w) for w in weights])

        self.dataset = self._normalise_dataset(train_dataset)
        if len(self.dataset) < cfg.prompts_per_step:
            raise ValueError(
                f"train_dataset has {len(self.dataset)} prompts, fewer than prompts_per_step={cfg.prompts_per_step} "
                "(per_device_train_batch_size // num_generations); add data or lower the batch"
            )

        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token")
        self.tokenizer = tokenizer
        self.device = pick_device(cfg.device)

        seed_everything(cfg.seed)
        model = self._prepare_model(model)
        self.model = model.to(self.device)
        self.is_peft = hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")
        # The reference policy: needed only for the KL term.
        self.ref_model = None
        if cfg.beta > 0 and not self.is_peft:
            self.ref_model = copy.deepcopy(self.model).eval()
            for p in self.ref_model.parameters():
                p.requires_grad_(False)
        self.num_reference_forwards = 0  # how many reference passes ran (0 when beta == 0)

        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        half = [n for n, p in self.model.named_parameters() if p.requires_grad and p.dtype == torch.float16]
        if half:
            raise ValueError(
                f"{len(half)} trainable parameters are float16 (e.g. {half[0]}): fp16 rounds small updates away. "
                "Keep trainable weights in float32 (grpo_lib.models.load_policy does this for LoRA adapters) "
                "or load the model in float32/bfloat16."
            )
        fp16_frozen = any(p.dtype == torch.float16 for p in self.model.parameters())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16_frozen)
        self.optimizer = torch.optim.AdamW(
            params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay,
        )
        total = cfg.max_steps * cfg.num_iterations
        warm = cfg.warmup_steps * cfg.num_iterations
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: _lr_factor(s, warm, total, cfg.lr_scheduler_type)
        )
        self.callbacks = list(callbacks or [])
        if cfg.doctor:  # grpo_lib.doctor: warns once per known failure while training
            from grpo_lib.doctor import RunDoctor

            self.callbacks.append(RunDoctor())
        self.global_step = 0
        self.log_history: list[dict[str, float]] = []
        self.last_rollout: Rollout | None = None
        self.last_rewards: torch.Tensor | None = None

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _normalise_dataset(ds: Sequence[dict] | Sequence[str]) -> list[dict]:
        rows = list(ds)
        if not rows:
            raise ValueError("train_dataset is empty")
        if all(isinstance(r, str) for r in rows):
            return [{"prompt": r} for r in rows]
        if not all(isinstance(r, dict) and "prompt" in r for r in rows):
            raise ValueError("train_dataset must be a list of prompt strings or of dicts with a 'prompt' key")
        if not all(isinstance(r["prompt"], str) for r in rows):
            raise ValueError("train_dataset 'prompt' values must be strings (apply the chat template first)")
        return rows

    def _prepare_model(self, model):
        cfg = self.config
        is_peft = hasattr(model, "peft_config")
        if cfg.use_lora and not is_peft:
            from peft import LoraConfig

            from grpo_lib.models import add_lora_adapter

            lora = LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules),
                task_type="CAUSAL_LM",
            )
            model = add_lora_adapter(model, lora)
        elif not cfg.use_lora and not is_peft:
            for p in model.parameters():
                p.requires_grad_(True)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(model, "enable_input_require_grads"):
                model.enable_input_require_grads()  # peft + checkpointing need input grads
        model.config.use_cache = not cfg.gradient_checkpointing
        return model

    # -------------------------------------------------------------- data order
    def batch_indices(self, step: int) -> list[int]:
        """Dataset rows of (0-based) ``step``: a seeded shuffle per epoch, read in order.

        A pure function of (seed, step), so a resumed run sees exactly the same batches.
        """
        n, k = len(self.dataset), self.config.prompts_per_step
        out: list[int] = []
        pos = step * k
        while len(out) < k:
            epoch, offset = divmod(pos, n)
            perm = list(range(n))
            random.Random(self.config.seed * 1_000_003 + epoch).shuffle(perm)
            take = min(k - len(out), n - offset)
            out.extend(perm[offset : offset + take])
            pos += take
        return out

    # ----------------------------------------------------------------- rewards
    def compute_rewards(self, prompts: list[str], completions: list[str], rows: list[dict]) -> torch.Tensor:
        """``[n_funcs, B]`` rewards, NaN where a function returned None."""
        columns = {key: [r[key] for r in rows] for key in rows[0] if key not in ("prompt", "completion")}
        out = []
        for name, f in zip(self.reward_names, self.reward_funcs):
            vals = f(prompts=prompts, completions=completions, **columns)
            if len(vals) != len(completions):
                raise ValueError(f"reward function {name} returned {len(vals)} values for {len(completions)} completions")
            out.append([math.nan if v is None else float(v) for v in vals])
        return torch.tensor(out, dtype=torch.float32)

    # ---------------------------------------------------------------- log-probs
    def _micro_batches(self, B: int) -> list[slice]:
        if B == 0:
            return []
        mb = self.config.micro_batch_size or B
        return [slice(i, min(i + mb, B)) for i in range(0, B, mb)]

    def sequence_logprobs(self, model, ro: Rollout, s: slice, return_entropy: bool = False):
        """log π(completion token) for rows ``s`` of a rollout, at the sampling temperature.

        ``per_token_logprobs`` over prompt + completion, or (``share_prompt_prefix``) the
        same numbers with each group's prompt run once (``shared_prefix_logprobs``).
        """
        cfg = self.config
        if cfg.share_prompt_prefix:
            return shared_prefix_logprobs(
                model, ro.prompt_ids[s], ro.prompt_mask[s], ro.completion_ids[s], ro.completion_mask[s],
                cfg.num_generations, temperature=cfg.temperature, return_entropy=return_entropy,
            )
        return per_token_logprobs(
            model, ro.input_ids[s], ro.attention_mask[s], ro.logits_to_keep,
            temperature=cfg.temperature, return_entropy=return_entropy,
        )

    @torch.no_grad()
    def _logprobs_no_grad(self, model, ro: Rollout) -> torch.Tensor:
        return torch.cat([self.sequence_logprobs(model, ro, s) for s in self._micro_batches(ro.batch_size)])

    def reference_logprobs(self, ro: Rollout) -> torch.Tensor:
        """log π_ref of the completion tokens: the adapter switched off, or the frozen copy."""
        self.num_reference_forwards += 1
        if self.is_peft:
            with self.model.disable_adapter():
                return self._logprobs_no_grad(self.model, ro)
        assert self.ref_model is not None
        return self._logprobs_no_grad(self.ref_model, ro)

    # -------------------------------------------------------------------- step
    def training_step(self) -> dict[str, float]:
        """Run one GRPO step (sampling, rewards, μ updates) and return its metrics."""
        cfg = self.config
        G = cfg.num_generations
        t0 = time.perf_counter()
        # 1-3. the step's prompts -> G completions each (pi_old) -> rewards
        rows = [self.dataset[i] for i in self.batch_indices(self.global_step)]
        ro, per_func, rewards, t_gen, extra_metrics = self._sample_informative_batch(rows)
        # 4. advantages relative to the group
        advantages = compute_advantages(rewards, G, cfg.advantage_estimator, scale=cfg.scale_rewards).to(self.device)

        mask = ro.completion_mask.float()
        if cfg.mask_truncated_completions:
            mask = mask * (~ro.truncated).float().unsqueeze(1)
        # The normalisers of the full batch: every loss below is a share of the full-batch loss.
        B = ro.batch_size
        total_tokens = mask.sum().clamp(min=1.0)
        upd, upd_adv, upd_mask = self._groups_to_update(ro, advantages, mask)
        # 5. log pi_old only for mu > 1, log pi_ref only for beta > 0
        old_logp = (self._logprobs_no_grad(self.model, upd)
                    if cfg.num_iterations > 1 and upd.batch_size else None)
        ref_logp = self.reference_logprobs(upd) if cfg.beta > 0 else None

        # 6. mu updates: grpo_loss -> backward (micro-batches) -> clip -> AdamW
        self.model.train()
        upd_tokens = upd_mask.sum().clamp(min=1.0)
        losses, grad_norms, entropies, lrs = [], [], [], []
        loss_metrics: dict[str, list[float]] = {}
        for _ in range(cfg.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            if upd.batch_size == 0:  # nothing to learn from: a zero gradient, as the full pass would give
                for param in self.model.parameters():
                    if param.requires_grad:
                        param.grad = torch.zeros_like(param)
            for s in self._micro_batches(upd.batch_size):
                logp, ent = self.sequence_logprobs(self.model, upd, s, return_entropy=True)
                loss, m = grpo_loss(
                    logp,
                    None if old_logp is None else old_logp[s],
                    upd_adv[s],
                    upd_mask[s],
                    None if ref_logp is None else ref_logp[s],
                    beta=cfg.beta,
                    epsilon=cfg.epsilon,
                    epsilon_high=cfg.epsilon_high,
                    loss_type=cfg.loss_type,
                    importance_sampling_level=cfg.importance_sampling_level,
                    max_completion_length=cfg.max_new_tokens,
                    kl_kind=cfg.kl_kind,
                    importance_weights=self._sampler_correction(upd, s, logp, old_logp, extra_metrics),
                )
                # Weight of this micro-batch in the full-batch loss (exact for every loss_type).
                if cfg.loss_type == "dapo":
                    w = (upd_mask[s].sum() / total_tokens).item()
                else:
                    w = (s.stop - s.start) / B
                self.scaler.scale(loss * w).backward()  # a no-op scale unless fp16
                step_loss += loss.item() * w
                for k, v in m.items():
                    loss_metrics.setdefault(k, []).append(v)
                entropies.append(((ent * upd_mask[s]).sum() / upd_tokens).item())
            lrs.append(self.scheduler.get_last_lr()[0])  # the rate this update uses
            gn = self._optimizer_step(scaled=upd.batch_size > 0)
            losses.append(step_loss)
            grad_norms.append(gn)
        t_step = time.perf_counter() - t0

        # 7. metrics, under TRL's names
        lengths = ro.lengths.float()
        grouped = rewards.view(-1, G)
        metrics: dict[str, float] = {
            "step": self.global_step + 1,
            "reward": rewards.mean().item(),
            "reward_std": grouped.std(dim=1).mean().item(),
            "frac_reward_zero_std": zero_std_fraction(rewards, G),
        }
        for name, vals in zip(self.reward_names, per_func):
            metrics[f"rewards/{name}/mean"] = torch.nanmean(vals).item()
            metrics[f"rewards/{name}/std"] = vals[~vals.isnan()].std().item() if (~vals.isnan()).sum() > 1 else 0.0
        if not loss_metrics:  # every group skipped: nothing was clipped
            loss_metrics = {f"clip_ratio/{key}_mean": [0.0] for key in ("low", "high", "region")}
        for k, v in loss_metrics.items():
            metrics[k] = sum(v) / len(v)
        metrics.update(
            {
                "completions/mean_length": lengths.mean().item(),
                "completions/min_length": lengths.min().item(),
                "completions/max_length": lengths.max().item(),
                "completions/clipped_ratio": ro.truncated.float().mean().item(),
                "entropy": sum(entropies) / cfg.num_iterations if entropies else float("nan"),
                "loss": sum(losses) / len(losses),
                "grad_norm": grad_norms[-1],
                "learning_rate": lrs[-1],  # the rate the (last) update of this step used
                "epoch": (self.global_step + 1) * cfg.prompts_per_step / len(self.dataset),
                **({"grad_scale": self.scaler.get_scale()} if self.scaler.is_enabled() else {}),
                "step_time": t_step,
                "generation_time": t_gen,
                "tokens_per_second": lengths.sum().item() / max(t_step, 1e-9),
            }
        )
        metrics.update(_mean_metrics(extra_metrics))
        self.last_rollout, self.last_rewards = ro, rewards
        self.last_reward_parts = per_func  # [n_funcs, B], read by grpo_lib.preflight
        return metrics

    # ----------------------------------------------------- step helpers: skip, optimizer
    def _groups_to_update(self, ro: Rollout, advantages: torch.Tensor, mask: torch.Tensor):
        """The groups that get a forward and backward: ``(rollout, advantages, mask)``.

        A group whose advantages are all 0 (all its completions scored alike) adds exactly 0
        to the loss when beta == 0, so with ``skip_zero_advantage_groups`` it is left out
        (the loss keeps the full batch's normaliser, so the gradient is unchanged).
        """
        G = self.config.num_generations
        if not self.config.skip_zero_advantage_groups:
            return ro, advantages, mask
        live = (advantages.view(-1, G) != 0).any(dim=1)
        if bool(live.all()):
            return ro, advantages, mask
        return (ro.select_groups(live.nonzero().squeeze(1).cpu()), advantages.view(-1, G)[live].flatten(),
                mask.view(-1, G, mask.shape[1])[live].flatten(0, 1))

    def _optimizer_step(self, scaled: bool) -> float:
        """Clip the gradient norm, step AdamW (through the fp16 loss scaler when it is on),
        step the schedule unless the update was skipped; returns the gradient norm.

        ``scaled``: a loss was scaled and backpropagated in this update. When none was (every
        group skipped) or there is no fp16 scaler, the scaler has no scale to unscale with
        (GradScaler asserts), and an all-zero gradient cannot overflow: a plain step.
        """
        max_norm = self.config.max_grad_norm
        if not scaled or not self.scaler.is_enabled():
            gn = _clip_and_norm(self.model, max_norm)
            self.optimizer.step()
            stepped = True
        else:
            self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
            gn = _clip_and_norm(self.model, max_norm)
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skipped if the scaled gradient overflowed
            self.scaler.update()
            # update() lowers the scale exactly when it skipped the step (inf/NaN gradient)
            stepped = self.scaler.get_scale() >= scale_before
        if stepped:  # a skipped update leaves the schedule where it was (as HF Trainer and TRL)
            self.scheduler.step()
        return gn

    # ------------------------------------------- sampling: dynamic sampling, rollout copy
    def _rollout_model(self):
        """The model that samples: the learner, or (``rollout_dtype``) a copy in that dtype
        with the learner's current weights, as a vLLM engine holds them after a weight sync."""
        dtype = self.config.rollout_dtype
        if dtype is None:
            return self.model
        copy_ = getattr(self, "_rollout_copy", None)
        if copy_ is None:
            copy_ = copy.deepcopy(self.model).to(getattr(torch, dtype)).eval()
            for p in copy_.parameters():
                p.requires_grad_(False)
            self._rollout_copy = copy_
        else:
            with torch.no_grad():
                for dst, src in zip(copy_.parameters(), self.model.parameters()):
                    dst.copy_(src)
        return copy_

    def _refill_indices(self, step: int, round_: int) -> list[int]:
        """Dataset rows of sampling round ``round_ >= 1`` of ``step`` (dynamic sampling):
        a seeded draw without replacement, a pure function of (seed, step, round), so a
        resumed run samples the same prompts."""
        rng = random.Random((self.config.seed * 1_000_003 + step) * 1_009 + round_)
        return rng.sample(range(len(self.dataset)), self.config.prompts_per_step)

    def _sample_and_score(self, rows: list[dict]) -> tuple[Rollout, torch.Tensor, torch.Tensor, float]:
        """Sample G completions for each row's prompt and score them: ``(rollout, [F, B], [B], seconds)``."""
        cfg = self.config
        t0 = time.perf_counter()
        ro = sample_groups(
            self._rollout_model(),
            self.tokenizer,
            [r["prompt"] for r in rows],
            num_generations=cfg.num_generations,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            sampler=cfg.sampler,
            return_logprobs=cfg.vllm_importance_sampling_correction or cfg.rollout_dtype is not None,
        )
        t_gen = time.perf_counter() - t0
        rep_rows = [r for r in rows for _ in range(cfg.num_generations)]
        per_func = self.compute_rewards(ro.prompts, ro.completions, rep_rows)  # [F, B]
        rewards = torch.nansum(per_func * self.reward_weights[:, None], dim=0)  # [B]
        return ro, per_func, rewards, t_gen

    def _sample_informative_batch(self, rows: list[dict]):
        """Sample and score the step's batch; with ``filter_groups``, DAPO's dynamic sampling.

        Without ``filter_groups``: one round on ``rows``, as plain GRPO. With it (DAPO,
        arXiv 2503.14476, §3.2, eq. 11: ``0 < |{o_i correct}| < G``, here: the group's
        rewards are not all equal): round 0 samples ``rows``; every group whose G rewards
        are all equal (std 0, advantage 0, no gradient) is dropped, and rounds 1, 2, ...
        sample fresh prompts (``_refill_indices``) until ``prompts_per_step`` informative
        groups are kept or ``max_num_gen_batches`` rounds are used up; the surplus of the
        last round is dropped, first groups first kept. If no round found one informative
        group, round 0's batch is used as is (its advantages are all 0). Returns ``(rollout, per_func [F, B],
        rewards [B], generation seconds, metrics lists)``.
        """
        cfg = self.config
        G = cfg.num_generations
        extra: dict[str, list[float]] = {}
        ro, per_func, rewards, t_gen = self._sample_and_score(rows)
        if not cfg.filter_groups:
            return ro, per_func, rewards, t_gen, extra
        want = cfg.prompts_per_step
        first = (ro, per_func, rewards)
        kept: list[tuple[Rollout, torch.Tensor, torch.Tensor]] = []
        n_kept, rounds, sampled, all_rewards = 0, 0, 0, []
        while True:
            rounds += 1
            sampled += ro.num_prompts
            all_rewards.append(rewards)
            live = (rewards.view(-1, G) != rewards.view(-1, G)[:, :1]).any(dim=1).nonzero().squeeze(1)
            live = live[: want - n_kept]
            if live.numel():
                rows_idx = (live[:, None] * G + torch.arange(G)).flatten()
                kept.append((ro.select_groups(live), per_func[:, rows_idx], rewards[rows_idx]))
                n_kept += live.numel()
            if n_kept >= want or rounds >= cfg.max_num_gen_batches:
                break
            more = [self.dataset[i] for i in self._refill_indices(self.global_step, rounds)]
            ro, per_func, rewards, t = self._sample_and_score(more)
            t_gen += t
        extra["sampling/num_gen_batches"] = [float(rounds)]
        extra["sampling/num_prompts_sampled"] = [float(sampled)]
        extra["sampling/informative_groups"] = [float(n_kept)]
        extra["sampling/filter_groups_exhausted"] = [float(n_kept < want)]
        extra["sampling/reward_all_sampled"] = [torch.cat(all_rewards).mean().item()]
        if not kept:  # nothing informative in any round: train on round 0 as plain GRPO would
            return (*first, t_gen, extra)
        return (
            concat_rollouts([k[0] for k in kept], self.tokenizer.pad_token_id),
            torch.cat([k[1] for k in kept], dim=1),
            torch.cat([k[2] for k in kept]),
            t_gen,
            extra,
        )

    def _sampler_correction(self, ro: Rollout, s: slice, logp: torch.Tensor, old_logp: torch.Tensor | None,
                            extra: dict[str, list[float]]) -> torch.Tensor | None:
        """Truncated importance weights for micro-batch ``s`` (``vllm_importance_sampling_correction``),
        or None; logs the sampler/learner mismatch under TRL's names whenever the sampler's
        log-probs were kept."""
        cfg = self.config
        if ro.sampler_logprobs is None:
            return None
        learner = (logp if old_logp is None else old_logp[s]).detach()
        sampler = ro.sampler_logprobs[s].to(learner.device)
        m = ro.completion_mask[s].bool()
        diff = (learner - sampler)[m].abs()
        if diff.numel():
            extra.setdefault("sampling/sampling_logp_difference/mean", []).append(diff.mean().item())
            extra.setdefault("sampling/sampling_logp_difference/max", []).append(diff.max().item())
        if not cfg.vllm_importance_sampling_correction:
            return None
        w = sampler_importance_weights(
            learner, sampler, ro.completion_mask[s], mode=cfg.vllm_importance_sampling_mode,
            clip_max=cfg.vllm_importance_sampling_clip_max, clip_min=cfg.vllm_importance_sampling_clip_min,
        )
        if m.any():
            extra.setdefault("sampling/importance_sampling_ratio/mean", []).append(w[m].mean().item())
            extra.setdefault("sampling/importance_sampling_ratio/min", []).append(w[m].min().item())
            extra.setdefault("sampling/importance_sampling_ratio/max", []).append(w[m].max().item())
        return w

    # ------------------------------------------------------------------- train
    def train(self, resume_from_checkpoint: bool | str | Path | None = None) -> list[dict[str, float]]:
        """Run until ``config.max_steps``; returns the list of per-step metrics.

        ``resume_from_checkpoint``: True = the newest ``checkpoint-*`` in ``output_dir``
        (a message says when there is none and the run starts from step 0), or a
        checkpoint folder. The checkpoint's config must match this one except for
        ``RESUME_SAFE_FIELDS`` (e.g. ``max_steps``); any other change raises ValueError
        naming each field, since training would go on with the checkpoint's state.

        Ctrl-C (SIGINT, in the main thread) finishes the step in progress, saves it as a
        checkpoint (with ``output_dir``), and raises :class:`TrainingInterrupted`; a
        second Ctrl-C stops at once (the newest checkpoint is then the last one saved).
        """
        cfg = self.config
        self._run_card_begin()  # run card: start time and the base weights' hash (grpo_lib.card)
        if resume_from_checkpoint:
            path = self._find_checkpoint(resume_from_checkpoint)
            if path is None:
                print(f"resume: no checkpoint in {cfg.output_dir}; starting from step 0", file=sys.stderr, flush=True)
            else:
                self._check_resume_config(path)
                self.load_checkpoint(path)
                print(f"resume: continuing from {path} (step {self.global_step} of {cfg.max_steps})",
                      file=sys.stderr, flush=True)
        if cfg.preflight and self.global_step == 0:  # grpo_lib.preflight: checks and forecast, steps undone
            from grpo_lib.preflight import preflight

            self.preflight_report = preflight(self)
        out_dir = Path(cfg.output_dir) if cfg.output_dir else None
        metrics_file = None
        tb = self._tensorboard_writer(out_dir)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.json").write_text(json.dumps(_finite_or_none(cfg.to_dict()), indent=2, allow_nan=False))
            # Rewrite the log up to where we (re)start, so a resumed run's file has no duplicates.
            with open(out_dir / "metrics.jsonl", "w") as fh:
                for m in self.log_history:
                    fh.write(json.dumps(_finite_or_none(m), allow_nan=False) + "\n")
            metrics_file = open(out_dir / "metrics.jsonl", "a")

        for cb in self.callbacks:
            if (f := _cb(cb, "on_train_begin")) is not None:
                f(self)
        bar = None
        if cfg.progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.global_step, desc="GRPO", unit="step", dynamic_ncols=True)
        stop = {"asked": False}
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            def on_sigint(signum, frame):
                if stop["asked"]:
                    raise KeyboardInterrupt  # a second Ctrl-C: stop now
                stop["asked"] = True
                print(f"\nCtrl-C: finishing step {self.global_step + 1}, then saving it "
                      "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

            previous_handler = signal.signal(signal.SIGINT, on_sigint)
        try:
            while self.global_step < cfg.max_steps:
                metrics = self.training_step()
                self.global_step += 1
                for cb in self.callbacks:
                    if (f := _cb(cb, "on_step_end")) is not None:
                        f(self.global_step, metrics)
                self.log_history.append(metrics)
                if self.global_step % cfg.logging_steps == 0 or self.global_step == cfg.max_steps:
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(_finite_or_none(metrics), allow_nan=False) + "\n")
                        metrics_file.flush()
                    if tb is not None:
                        for k, v in metrics.items():
                            if isinstance(v, (int, float)) and math.isfinite(v) and k != "step":
                                tb.add_scalar(k, v, self.global_step)
                        tb.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward']:.3f}", len=f"{metrics['completions/mean_length']:.0f}")
                saved = None
                if cfg.save_steps and self.global_step % cfg.save_steps == 0:
                    saved = self.save_checkpoint()
                    self._prune_checkpoints()
                if stop["asked"]:
                    if saved is None and out_dir is not None:
                        saved = self.save_checkpoint()
                        self._prune_checkpoints()
                    raise TrainingInterrupted(self.global_step, saved)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if bar is not None:
                bar.close()
            if metrics_file is not None:
                metrics_file.close()
            if tb is not None:
                tb.close()
            self._run_card_finish()  # run card: written however train() ends (grpo_lib.card)
        for cb in self.callbacks:
            if (f := _cb(cb, "on_train_end")) is not None:
                f(self)
        return self.log_history

    def _tensorboard_writer(self, out_dir: Path | None):
        """A TensorBoard ``SummaryWriter`` on ``output_dir/tensorboard`` when ``report_to``
        asks for it ("tensorboard", or "all" with tensorboard installed), else None."""
        reports = [self.config.report_to] if isinstance(self.config.report_to, str) else list(self.config.report_to)
        if out_dir is None or not ({"tensorboard", "all"} & set(reports)):
            return None
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            if "tensorboard" in reports:
                raise ImportError('report_to="tensorboard" needs the tensorboard package: '
                                  'pip install "grpo-lib[tensorboard]" (or report_to="none")')
            return None  # "all": only what is installed
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def _check_resume_config(self, checkpoint: Path) -> None:
        """Refuse to resume with settings that differ from the checkpoint's, except
        ``RESUME_SAFE_FIELDS``: the checkpoint's optimizer, scheduler and data position
        would silently keep the old values, or no longer fit the new ones."""
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        changed = resume_config_changes(state.get("config") or {}, self.config.to_dict())
        if changed:
            raise ValueError(
                f"cannot resume from {checkpoint} with changed settings:\n  - " + "\n  - ".join(changed)
                + f"\nA resumed run continues the checkpoint's run; only {', '.join(RESUME_SAFE_FIELDS)} may "
                "change. Resume with the original settings, or start a new run in another output_dir."
            )

    def _prune_checkpoints(self) -> list[Path]:
        """With ``save_total_limit = N``, delete all but the newest N ``checkpoint-*``
        folders (TRL's rule); returns the deleted ones."""
        limit = self.config.save_total_limit
        if not limit or not self.config.output_dir:
            return []
        import shutil

        done = _checkpoint_dirs(Path(self.config.output_dir))
        old = done[:-limit] if len(done) > limit else []
        for folder in old:
            shutil.rmtree(folder)
        return old

    # ---------------------------------------------------------------- run card
    def _run_card_begin(self) -> None:
        """Remember the start time and, before any update, the base weights' sha256."""
        from grpo_lib.card import begin_run_card

        begin_run_card(self)

    def _run_card_finish(self) -> None:
        """Write ``output_dir/run_card.{md,json}`` (finished, interrupted or failed)."""
        from grpo_lib.card import finish_run_card

        finish_run_card(self)

    # -------------------------------------------------------------- checkpoints
    def _find_checkpoint(self, spec: bool | str | Path) -> Path | None:
        if spec is True:
            if not self.config.output_dir:
                raise ValueError("resume_from_checkpoint=True needs config.output_dir")
            cands = _checkpoint_dirs(Path(self.config.output_dir))
            return cands[-1] if cands else None
        p = Path(spec)
        if not (p / "trainer_state.json").exists():
            raise ValueError(f"resume_from_checkpoint={str(spec)!r} is not a checkpoint folder (no trainer_state.json)")
        return p

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Save everything a resume needs to ``output_dir/checkpoint-<step>`` (or ``path``)."""
        from safetensors.torch import save_file

        if path is None:
            if not self.config.output_dir:
                raise ValueError("save_checkpoint needs a path or config.output_dir")
            path = Path(self.config.output_dir) / f"checkpoint-{self.global_step}"
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(self._trainable_state(), str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "mps_rng": torch.mps.get_rng_state() if _mps_available() else None,
                "python_rng": random.getstate(),
                "numpy_rng": _numpy_state(),
            },
            tmp / "state.pt",
        )
        state = {
            "global_step": self.global_step,
            "log_history": self.log_history,
            "num_reference_forwards": self.num_reference_forwards,
            "config": self.config.to_dict(),
        }
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        if path.exists():
            import shutil

            shutil.rmtree(path)
        tmp.rename(path)  # a checkpoint folder is complete or absent, never half-written
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore weights, optimizer, scheduler, RNG states, step and metrics from ``path``."""
        from safetensors.torch import load_file

        path = Path(path)
        weights = load_file(str(path / "trainable.safetensors"))
        own = dict(self.model.named_parameters())
        missing = [n for n, p in own.items() if p.requires_grad and n not in weights]
        if missing:
            raise ValueError(f"checkpoint {path} lacks trainable parameters {missing[:3]}...: was it made with the same model and use_lora?")
        with torch.no_grad():
            for n, t in weights.items():
                own[n].copy_(t.to(own[n].device, own[n].dtype))
        st = torch.load(path / "state.pt", weights_only=False)
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        torch.set_rng_state(st["torch_rng"])
        if st["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda_rng"])
        if st.get("mps_rng") is not None and _mps_available():  # Apple silicon samples with its own generator
            torch.mps.set_rng_state(st["mps_rng"])
        random.setstate(st["python_rng"])
        _set_numpy_state(st["numpy_rng"])
        state = json.loads((path / "trainer_state.json").read_text())
        self.global_step = state["global_step"]
        self.log_history = state["log_history"]
        self.num_reference_forwards = state.get("num_reference_forwards", 0)

    def save_model(self, path: str | Path, merged: bool = False) -> Path:
        """Save the model and tokenizer with ``save_pretrained``, loadable with
        ``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.

        Full fine-tuning: the whole model. LoRA: the adapter only (``adapter_config.json``
        names the base model; transformers loads it through peft, or use
        ``peft.AutoPeftModelForCausalLM``), or with ``merged=True`` the base with the
        adapter merged in (``merge_and_unload`` on a copy: a plain model, no peft needed).
        A ``README.md`` in the folder says which.
        """
        path = Path(path)
        if self.is_peft and merged:
            copy.deepcopy(self.model).merge_and_unload().save_pretrained(path)
            kind = "the base model with the LoRA adapter merged in (a plain transformers model)"
        elif self.is_peft:
            from grpo_lib.models import quiet_peft_checkpointing_warning

            with quiet_peft_checkpointing_warning():  # peft reads a deprecated transformers alias
                self.model.save_pretrained(path)
            base = getattr(next(iter(self.model.peft_config.values())), "base_model_name_or_path", None)
            kind = (f"a LoRA adapter for the base model {base!r} (adapter_config.json); "
                    "AutoModelForCausalLM.from_pretrained loads base + adapter when peft is installed")
        else:
            self.model.save_pretrained(path)
            kind = "the full fine-tuned model"
        self.tokenizer.save_pretrained(path)
        (path / "README.md").write_text(
            f"# GRPO model (grpo_lib), step {self.global_step}\n\nThis folder holds {kind}, and its tokenizer.\n\n"
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"model = AutoModelForCausalLM.from_pretrained({str(path)!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({str(path)!r})\n```\n"
        )
        return path


# ---------------------------------------------------------------------- helpers
def resume_config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that differ between a checkpoint's config and this run's, outside
    ``RESUME_SAFE_FIELDS``, one line each (``"seed: 0 in the checkpoint, 7 now"``)."""
    changed = []
    for key, old in saved.items():
        if key in RESUME_SAFE_FIELDS or key not in now:
            continue
        if key == "reward_weights" and old is None:  # older checkpoints did not record the weights used
            continue
        if now[key] != old:
            changed.append(f"{key}: {old!r} in the checkpoint, {now[key]!r} now")
    return changed


def _checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete ``checkpoint-<step>`` folders in ``out_dir``, oldest step first (a
    ``.tmp`` folder left by a crash mid-save is not a checkpoint)."""
    found = []
    for p in out_dir.glob("checkpoint-*"):
        suffix = p.name[len("checkpoint-"):]
        if suffix.isdigit() and (p / "trainer_state.json").exists():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


def _lr_factor(step: int, warmup: int, total: int, kind: str) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def _clip_and_norm(model, max_norm: float | None) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm is None:
        norm = torch.norm(torch.stack([p.grad.detach().norm(2) for p in params]), 2)
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(norm)


def _mean_metrics(lists: dict[str, list[float]]) -> dict[str, float]:
    """Average each metric's per-micro-batch values (max for ``*/max``, min for ``*/min``)."""
    out = {}
    for k, v in lists.items():
        out[k] = max(v) if k.endswith("/max") else min(v) if k.endswith("/min") else sum(v) / len(v)
    return out


def _mps_available() -> bool:
    """True where torch's MPS backend (Apple silicon) is usable; its RNG is separate from the CPU's."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def _numpy_state():
    try:
        import numpy as np

        return np.random.get_state()
    except ImportError:  # pragma: no cover
        return None


def _set_numpy_state(state) -> None:
    if state is None:
        return
    import numpy as np

    np.random.set_state(state)

