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
4. advantages relative to the group (``group_advantages``); with ``beta = 0`` a group whose
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from grpo_lib.advantages import group_advantages, zero_std_fraction
from grpo_lib.config import GRPOConfig
from grpo_lib.device import pick_device
from grpo_lib.logprobs import per_token_logprobs
from grpo_lib.losses import grpo_loss
from grpo_lib.rollout import Rollout, sample_groups, shared_prefix_logprobs
from grpo_lib.utils import seed_everything

__all__ = ["GRPOTrainer", "TrainerCallback", "RewardFunc", "reward_func_name"]

RewardFunc = Callable[..., list]

#: Metric keys that measure time, not the run: they differ between identical runs.
TIMING_KEYS = ("step_time", "generation_time", "tokens_per_second", "wall_time")


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

    Args:
        model: a transformers causal LM (or a peft model). With ``config.use_lora`` and a
            plain model, a LoRA adapter is added (``lora_r``, ``lora_alpha``, ...).
        tokenizer: its tokenizer (pad and eos tokens set; left padding is enforced for
            generation).
        reward_funcs: one function or a list, each ``f(prompts, completions, **columns)
            -> list[float | None]`` (None = "not applicable", ignored in the sum).
        train_dataset: a list of dicts with a ``"prompt"`` key and any other columns
            (passed to the reward functions), or a list of prompt strings.
        config: a :class:`GRPOConfig`.
        reward_weights: overrides ``config.reward_weights``; one float per function.
        callbacks: :class:`TrainerCallback` objects or functions ``f(step, metrics)``.
    """

    #: The trainer scales the loss when the model's frozen weights are fp16.
    SUPPORTS_GRAD_SCALER = True

    def __init__(
        self,
        model,
        tokenizer,
        reward_funcs: RewardFunc | Sequence[RewardFunc],
        train_dataset: Sequence[dict] | Sequence[str],
        config: GRPOConfig | None = None,
        reward_weights: Sequence[float] | None = None,
        callbacks: Sequence[Any] | None = None,
    ) -> None:
        self.config = config if config is not None else GRPOConfig()
        if not isinstance(self.config, GRPOConfig):
            raise TypeError(f"config must be a GRPOConfig, got {type(self.config).__name__}")
        cfg = self.config

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
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules),
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lora)
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
        rows = [self.dataset[i] for i in self.batch_indices(self.global_step)]
        rep_rows = [r for r in rows for _ in range(G)]

        ro = sample_groups(
            self.model,
            self.tokenizer,
            [r["prompt"] for r in rows],
            num_generations=G,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            sampler=cfg.sampler,
        )
        t_gen = time.perf_counter() - t0

        per_func = self.compute_rewards(ro.prompts, ro.completions, rep_rows)  # [F, B]
        rewards = torch.nansum(per_func * self.reward_weights[:, None], dim=0)  # [B]
        advantages = group_advantages(rewards, G, scale=cfg.scale_rewards).to(self.device)

        mask = ro.completion_mask.float()
        if cfg.mask_truncated_completions:
            mask = mask * (~ro.truncated).float().unsqueeze(1)
        # The normalisers of the full batch: every loss below is a share of the full-batch loss.
        B = ro.batch_size
        total_tokens = mask.sum().clamp(min=1.0)
        # A group whose advantages are all 0 (all its completions scored alike) adds exactly 0
        # to the loss when beta == 0: skip its forward and backward (config.skip_zero_advantage_groups).
        upd, upd_adv, upd_mask = ro, advantages, mask
        if cfg.skip_zero_advantage_groups:
            live = (advantages.view(-1, G) != 0).any(dim=1)
            if not bool(live.all()):
                upd = ro.select_groups(live.nonzero().squeeze(1).cpu())
                upd_adv = advantages.view(-1, G)[live].flatten()
                upd_mask = mask.view(-1, G, mask.shape[1])[live].flatten(0, 1)
        old_logp = (self._logprobs_no_grad(self.model, upd)
                    if cfg.num_iterations > 1 and upd.batch_size else None)
        ref_logp = self.reference_logprobs(upd) if cfg.beta > 0 else None

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
            if upd.batch_size == 0 or not self.scaler.is_enabled():
                # Nothing was scaled (no forward ran, or no fp16): the scaler has no scale to
                # unscale with (GradScaler asserts), and an all-zero gradient cannot overflow.
                gn = _clip_and_norm(self.model, cfg.max_grad_norm)
                self.optimizer.step()
                stepped = True
            else:
                self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
                gn = _clip_and_norm(self.model, cfg.max_grad_norm)
                scale_before = self.scaler.get_scale()
                self.scaler.step(self.optimizer)  # skipped if the scaled gradient overflowed
                self.scaler.update()
                # update() lowers the scale exactly when it skipped the step (inf/NaN gradient)
                stepped = self.scaler.get_scale() >= scale_before
            if stepped:  # a skipped update leaves the schedule where it was (as HF Trainer and TRL)
                self.scheduler.step()
            losses.append(step_loss)
            grad_norms.append(gn)
        t_step = time.perf_counter() - t0

        # ---- metrics, under TRL's names
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
        self.last_rollout, self.last_rewards = ro, rewards
        self.last_reward_parts = per_func  # [n_funcs, B], read by grpo_lib.preflight
        return metrics

    # ------------------------------------------------------------------- train
    def train(self, resume_from_checkpoint: bool | str | Path | None = None) -> list[dict[str, float]]:
        """Run until ``config.max_steps``; returns the list of per-step metrics.

        ``resume_from_checkpoint``: True = the newest ``checkpoint-*`` in ``output_dir``
        (start fresh if none), or a checkpoint folder.
        """
        cfg = self.config
        if resume_from_checkpoint:
            path = self._find_checkpoint(resume_from_checkpoint)
            if path is not None:
                self.load_checkpoint(path)
        if cfg.preflight and self.global_step == 0:  # grpo_lib.preflight: checks and forecast, steps undone
            from grpo_lib.preflight import preflight

            self.preflight_report = preflight(self)
        out_dir = Path(cfg.output_dir) if cfg.output_dir else None
        metrics_file = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
            # Rewrite the log up to where we (re)start, so a resumed run's file has no duplicates.
            with open(out_dir / "metrics.jsonl", "w") as fh:
                for m in self.log_history:
                    fh.write(json.dumps(m) + "\n")
            metrics_file = open(out_dir / "metrics.jsonl", "a")

        for cb in self.callbacks:
            if (f := _cb(cb, "on_train_begin")) is not None:
                f(self)
        bar = None
        if cfg.progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.global_step, desc="GRPO", unit="step", dynamic_ncols=True)
        try:
            while self.global_step < cfg.max_steps:
                metrics = self.training_step()
                self.global_step += 1
                for cb in self.callbacks:
                    if (f := _cb(cb, "on_step_end")) is not None:
                        f(self.global_step, metrics)
                self.log_history.append(metrics)
                if metrics_file is not None and (
                    self.global_step % cfg.logging_steps == 0 or self.global_step == cfg.max_steps
                ):
                    metrics_file.write(json.dumps(metrics) + "\n")
                    metrics_file.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward']:.3f}", len=f"{metrics['completions/mean_length']:.0f}")
                if cfg.save_steps and self.global_step % cfg.save_steps == 0:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if metrics_file is not None:
                metrics_file.close()
        for cb in self.callbacks:
            if (f := _cb(cb, "on_train_end")) is not None:
                f(self)
        return self.log_history

    # -------------------------------------------------------------- checkpoints
    def _find_checkpoint(self, spec: bool | str | Path) -> Path | None:
        if spec is True:
            if not self.config.output_dir:
                raise ValueError("resume_from_checkpoint=True needs config.output_dir")
            cands = sorted(
                Path(self.config.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
            )
            cands = [c for c in cands if (c / "trainer_state.json").exists()]
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

    def save_model(self, path: str | Path) -> Path:
        """Save the model (or the LoRA adapter) and tokenizer with ``save_pretrained``."""
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return path


# ---------------------------------------------------------------------- helpers
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

