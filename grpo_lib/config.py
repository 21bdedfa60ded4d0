"""``GRPOConfig``: every knob of a GRPO run, validated before any work starts.

Field names follow TRL's ``GRPOConfig`` where the concept is the same, so a learner can
move between this trainer and TRL's: ``num_generations`` (G), ``beta`` (KL weight),
``epsilon``/``epsilon_high`` (clip range, DAPO's clip-higher), ``num_iterations`` (μ,
policy updates per rollout), ``loss_type`` (``"grpo"``: sequence mean of token means as
in DeepSeekMath eq. 3; ``"dapo"``: token mean over the batch; ``"dr_grpo"``: sum over a
constant), ``scale_rewards`` (``"group"``, ``"batch"``, ``"none"``; Dr. GRPO drops the
std), ``importance_sampling_level`` (``"token"``, or GSPO's ``"sequence"``),
``max_completion_length`` (here also ``max_new_tokens``), ``per_device_train_batch_size``
(completions per step, as in TRL: ``prompts_per_step * num_generations``).

``GRPOConfig(num_generations=1)`` raises at once, with every problem found listed, each
naming the field, the value received and the fix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["GRPOConfig", "LOSS_TYPES", "SCALE_REWARDS", "IMPORTANCE_LEVELS", "LR_SCHEDULERS"]

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_LEVELS = ("token", "sequence")
LR_SCHEDULERS = ("constant", "linear", "cosine")
DTYPES = ("auto", "float32", "bfloat16", "float16")
KL_KINDS = ("k1", "k2", "k3")
#: ``report_to`` values, under transformers/TRL's names ("none", "all", "tensorboard").
#: metrics.jsonl is always written when ``output_dir`` is set; "jsonl" names it explicitly.
REPORT_TO = ("none", "all", "tensorboard", "jsonl")
ROLLOUT_DTYPES = ("float32", "bfloat16", "float16")
#: TRL's ``vllm_importance_sampling_mode`` values (``grpo_lib.losses.SAMPLER_CORRECTION_MODES``).
SAMPLER_CORRECTION_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")

_DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class GRPOConfig:
    """Hyperparameters of a GRPO run (DeepSeekMath, arXiv 2402.03300, section 4.1).

    Sampling
        num_generations: G, completions per prompt (>= 2: advantages compare within a group).
        per_device_train_batch_size: completions per step, a multiple of G
            (``prompts_per_step = per_device_train_batch_size // num_generations``).
        max_new_tokens / max_completion_length: the completion length cap (one value; TRL
            calls it ``max_completion_length``, ``generate`` calls it ``max_new_tokens``).
        temperature, top_p, top_k: sampling; ``top_k=0`` disables top-k.
        sampler: ``"shared_prefix"`` (each group's prompt prefilled once, then a plain decode
            loop) or ``"generate"`` (transformers' ``generate``); the same distribution,
            see ``grpo_lib.rollout``. Not a TRL field (TRL's fast path is ``use_vllm``).
    Objective
        beta: weight of the k3 KL penalty to the reference policy; 0 = no reference pass.
        epsilon, epsilon_high: clip range ``[1 - epsilon, 1 + epsilon_high]``
            (``epsilon_high=None`` means symmetric).
        num_iterations: μ, policy updates per rollout; with μ = 1 the ratio is exactly 1.
        loss_type: ``"grpo"`` | ``"dapo"`` | ``"dr_grpo"`` (see ``grpo_lib.losses``).
        scale_rewards: ``"group"`` | ``"batch"`` | ``"none"`` (see ``grpo_lib.advantages``).
        advantage_estimator: ``"grpo"`` (the group's baseline, ``scale_rewards``),
            ``"reinforce++"`` (REINFORCE++, Hu 2025, arXiv 2501.03262: the batch's mean and std)
            or ``"reinforce++-baseline"`` (the group's mean, then the batch's mean and std);
            OpenRLHF's option name. See ``grpo_lib.advantages.compute_advantages``.
        importance_sampling_level: ``"token"`` | ``"sequence"`` (GSPO).
        mask_truncated_completions: drop completions without EOS from the loss (DAPO).
        kl_kind: the KL estimator used when ``beta > 0`` (``"k3"`` as in the paper).
        reward_weights: one weight per reward function (None = all 1.0).
    Optimisation
        learning_rate, weight_decay, adam_beta1, adam_beta2, max_grad_norm (None = no clip),
        lr_scheduler_type (``"constant"`` | ``"linear"`` | ``"cosine"``), warmup_steps,
        max_steps, micro_batch_size (completions per forward/backward; None = whole batch),
        share_prompt_prefix (run each group's prompt once and reuse its KV cache for the
        G completions: same log-probs and gradient, less compute; see
        ``grpo_lib.rollout.shared_prefix_logprobs``; None = on unless
        ``gradient_checkpointing``, which needs the cache off).
        skip_zero_advantage_groups (no forward or backward for a group whose advantages are
        all 0, e.g. every completion right: with ``beta = 0`` its loss terms are exactly 0,
        so the gradient is unchanged, the loss keeps the full batch's normaliser; None = on
        when ``beta == 0``; True with ``beta > 0`` is an error, the KL term is not 0. The
        entropy and clip metrics are then over the updated groups' tokens).
    After vanilla GRPO (notebook 09)
        filter_groups: DAPO's dynamic sampling (arXiv 2503.14476, §3.2; verl's
            ``algorithm.filter_groups.enable``; TRL has no such option): drop every group whose
            rewards are all equal and sample more prompts until ``prompts_per_step`` informative
            groups are found. The loss is GRPO's over the kept groups, unchanged.
        max_num_gen_batches: at most this many sampling rounds per step (verl's name). When
            they are used up, the step trains on the informative groups found so far (fewer
            than ``prompts_per_step``; none = a zero gradient) and logs
            ``sampling/filter_groups_exhausted = 1``.
        rollout_dtype: None (sample with the learner itself) or ``"bfloat16"`` /
            ``"float16"`` / ``"float32"``: sample with a copy of the policy in that dtype,
            re-synced from the learner before every step, as a vLLM engine is (verl:
            ``actor_rollout_ref.rollout.dtype``). Then π_sampler ≠ π_θ even with μ = 1.
        vllm_importance_sampling_correction, vllm_importance_sampling_mode,
        vllm_importance_sampling_clip_max, vllm_importance_sampling_clip_min: TRL's names for
            the truncated importance-sampling correction (Yao et al. 2025), see
            ``grpo_lib.losses.sampler_importance_weights``. Off by default here (TRL turns it
            on only with vLLM); the default mode is Yao et al.'s ``"token_truncate"`` (TRL's
            default is ``"sequence_mask"``).
    Model
        use_lora, lora_r, lora_alpha, lora_dropout, lora_target_modules,
        gradient_checkpointing, device (``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"mps"``),
        dtype (``"auto"`` | ``"float32"`` | ``"bfloat16"`` | ``"float16"``): the dtype a model
        loader (``grpo_lib.models.load_policy``, the presets) loads the weights in; the
        trainer takes the model in whatever dtype it arrives and, when its frozen weights
        are fp16, scales the loss with ``torch.amp.GradScaler``.
    Bookkeeping
        seed, output_dir (None = write nothing), logging_steps, save_steps (0 = never),
        progress_bar, save_total_limit (keep only the newest N ``checkpoint-*`` folders;
        None = keep all; TRL's name), report_to (TRL's name: ``"none"`` = only
        ``output_dir/metrics.jsonl``, always written; ``"tensorboard"`` also writes
        TensorBoard event files to ``output_dir/tensorboard``, needs ``pip install
        "grpo-lib[tensorboard]"``; ``"all"`` = every installed one; a list is accepted).
    Before and during the run
        preflight: at the start of a fresh ``train()``, run ``grpo_lib.preflight`` (two
            measured steps, undone afterwards; a table of checks; a hard stop only when the
            run cannot learn). doctor: watch the metrics while training and warn once per
            known failure (``grpo_lib.doctor``; a NaN loss stops the run).
        time_budget: the wall time the run may take (seconds, or ``"60m"``, ``"1h30m"``);
            the pre-flight forecast is compared with it. None = no budget.
    """

    # sampling
    num_generations: int = 8
    per_device_train_batch_size: int = 128
    max_new_tokens: int = _DEFAULT_MAX_NEW_TOKENS
    max_completion_length: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    sampler: str = "shared_prefix"
    # objective
    beta: float = 0.0
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    advantage_estimator: str = "grpo"
    importance_sampling_level: str = "token"
    mask_truncated_completions: bool = False
    kl_kind: str = "k3"
    reward_weights: list[float] | None = None
    # optimisation
    learning_rate: float = 1e-6
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    max_grad_norm: float | None = 1.0
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    max_steps: int = 100
    micro_batch_size: int | None = None
    share_prompt_prefix: bool | None = None
    skip_zero_advantage_groups: bool | None = None
    # after vanilla GRPO: dynamic sampling, a sampler that is not the learner
    filter_groups: bool = False
    max_num_gen_batches: int = 8
    rollout_dtype: str | None = None
    vllm_importance_sampling_correction: bool = False
    vllm_importance_sampling_mode: str = "token_truncate"
    vllm_importance_sampling_clip_max: float | None = 3.0
    vllm_importance_sampling_clip_min: float | None = None
    # model
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    gradient_checkpointing: bool = False
    device: str = "auto"
    dtype: str = "auto"
    # bookkeeping
    seed: int = 0
    output_dir: str | None = None
    logging_steps: int = 1
    save_steps: int = 0
    progress_bar: bool = True
    save_total_limit: int | None = None
    report_to: str | list[str] = "none"
    # before and during the run (grpo_lib.preflight, grpo_lib.doctor)
    preflight: bool = True
    time_budget: str | float | None = None
    doctor: bool = True

    # ------------------------------------------------------------------ derived
    @property
    def prompts_per_step(self) -> int:
        """Distinct prompts per step: ``per_device_train_batch_size // num_generations``."""
        return self.per_device_train_batch_size // self.num_generations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GRPOConfig":
        """Build from a dict, rejecting unknown keys (a typo must not pass silently)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown GRPOConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    # --------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        errors: list[str] = []

        def bad(name: str, fix: str) -> None:
            errors.append(f"{name}={getattr(self, name)!r}: {fix}")

        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        def is_num(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        # alias: max_completion_length (TRL) == max_new_tokens (generate)
        if self.max_completion_length is not None:
            if not is_int(self.max_completion_length) or self.max_completion_length < 1:
                bad("max_completion_length", "use a positive int (tokens per completion)")
            elif self.max_new_tokens not in (_DEFAULT_MAX_NEW_TOKENS, self.max_completion_length):
                errors.append(
                    f"max_completion_length={self.max_completion_length!r} and max_new_tokens={self.max_new_tokens!r} "
                    "disagree: they are the same setting, give only one"
                )
            else:
                self.max_new_tokens = self.max_completion_length
        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            bad("max_new_tokens", "use a positive int (tokens per completion)")
        else:
            self.max_completion_length = self.max_new_tokens

        # sampling
        G = self.num_generations
        if not is_int(G) or G < 2:
            bad("num_generations", "GRPO compares completions within a group: use an int >= 2 (8 is TRL's default)")
        bs = self.per_device_train_batch_size
        if not is_int(bs) or bs < 1:
            bad("per_device_train_batch_size", "use a positive int: completions per step = prompts_per_step * num_generations")
        elif is_int(G) and G >= 2 and bs % G != 0:
            errors.append(
                f"per_device_train_batch_size={bs!r} is not divisible by num_generations={G!r}: every prompt needs a "
                f"full group; use a multiple of {G}, e.g. {max(1, bs // G) * G}"
            )
        if not is_num(self.temperature) or self.temperature <= 0:
            bad("temperature", "use a float > 0 (1.0 samples from the model as is; greedy is for evaluation)")
        if not is_num(self.top_p) or not 0 < self.top_p <= 1:
            bad("top_p", "use a float in (0, 1]; 1.0 disables nucleus sampling")
        if not is_int(self.top_k) or self.top_k < 0:
            bad("top_k", "use an int >= 0; 0 disables top-k")
        if self.sampler not in ("shared_prefix", "generate"):
            bad("sampler", "use 'shared_prefix' (prefill each prompt once) or 'generate' (transformers' generate)")

        # objective
        if not is_num(self.beta) or self.beta < 0:
            bad("beta", "use a float >= 0 (0.0 = no KL penalty and no reference model; the paper used 0.04)")
        if not is_num(self.epsilon) or self.epsilon <= 0:
            bad("epsilon", "use a float > 0, e.g. 0.2 (the ratio is clipped to [1 - epsilon, 1 + epsilon])")
        elif self.epsilon >= 1 and self.importance_sampling_level == "token":
            bad("epsilon", "use a float in (0, 1): 1 - epsilon must stay positive")
        if self.epsilon_high is not None:
            if not is_num(self.epsilon_high) or self.epsilon_high <= 0:
                bad("epsilon_high", "use None (symmetric) or a float > 0, e.g. 0.28 (DAPO clip-higher)")
            elif is_num(self.epsilon) and self.epsilon_high < self.epsilon:
                bad("epsilon_high", f"clip-higher means epsilon_high >= epsilon={self.epsilon}; raise it or use None")
        if not is_int(self.num_iterations) or self.num_iterations < 1:
            bad("num_iterations", "use an int >= 1 (mu, policy updates per rollout; 1 = on-policy)")
        if self.loss_type not in LOSS_TYPES:
            bad("loss_type", f"use one of {LOSS_TYPES}")
        if self.scale_rewards is True:
            self.scale_rewards = "group"
        elif self.scale_rewards is False:
            self.scale_rewards = "none"
        if self.scale_rewards not in SCALE_REWARDS:
            bad("scale_rewards", f"use one of {SCALE_REWARDS} (True means 'group', False means 'none')")
        from grpo_lib.advantages import ADVANTAGE_ESTIMATORS

        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            bad("advantage_estimator", f"use one of {ADVANTAGE_ESTIMATORS} ('grpo' is DeepSeekMath's group baseline)")
        if self.importance_sampling_level not in IMPORTANCE_LEVELS:
            bad("importance_sampling_level", f"use one of {IMPORTANCE_LEVELS} ('sequence' is GSPO)")
        if not isinstance(self.mask_truncated_completions, bool):
            bad("mask_truncated_completions", "use True or False")
        if self.kl_kind not in KL_KINDS:
            bad("kl_kind", f"use one of {KL_KINDS}")
        if self.reward_weights is not None:
            rw = self.reward_weights
            if not isinstance(rw, (list, tuple)) or not rw or not all(is_num(w) for w in rw):
                bad("reward_weights", "use None or a non-empty list of finite floats, one per reward function")
            else:
                self.reward_weights = [float(w) for w in rw]

        # optimisation
        if not is_num(self.learning_rate) or self.learning_rate <= 0:
            bad("learning_rate", "use a float > 0 (1e-6 for a large model in the paper; ~5e-5 for the tiny model)")
        if not is_num(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", "use a float >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            v = getattr(self, name)
            if not is_num(v) or not 0 <= v < 1:
                bad(name, "use a float in [0, 1)")
        if self.max_grad_norm is not None and (not is_num(self.max_grad_norm) or self.max_grad_norm <= 0):
            bad("max_grad_norm", "use None (no clipping) or a float > 0, e.g. 1.0")
        if self.lr_scheduler_type not in LR_SCHEDULERS:
            bad("lr_scheduler_type", f"use one of {LR_SCHEDULERS}")
        if not is_int(self.max_steps) or self.max_steps < 1:
            bad("max_steps", "use an int >= 1")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            bad("warmup_steps", "use an int >= 0")
        elif is_int(self.max_steps) and self.max_steps >= 1 and self.warmup_steps > self.max_steps:
            bad("warmup_steps", f"must not exceed max_steps={self.max_steps}")
        if self.micro_batch_size is not None and (not is_int(self.micro_batch_size) or self.micro_batch_size < 1):
            bad("micro_batch_size", "use None (whole batch in one pass) or a positive int of completions")

        if self.share_prompt_prefix is None:
            # Default: share the prefix, unless checkpointing (which needs the cache off) is on.
            self.share_prompt_prefix = self.gradient_checkpointing is not True
        if not isinstance(self.share_prompt_prefix, bool):
            bad("share_prompt_prefix", "use True, False or None (= not gradient_checkpointing)")
        elif self.share_prompt_prefix:
            if self.gradient_checkpointing is True:
                errors.append(
                    "share_prompt_prefix=True and gradient_checkpointing=True: the shared prefix needs the KV cache, "
                    "which checkpointing disables; set one of them to False"
                )
            if (
                is_int(self.micro_batch_size)
                and is_int(G)
                and G >= 2
                and self.micro_batch_size >= 1
                and self.micro_batch_size % G != 0
            ):
                errors.append(
                    f"micro_batch_size={self.micro_batch_size!r} with share_prompt_prefix=True must hold whole groups: "
                    f"use a multiple of num_generations={G}, or share_prompt_prefix=False"
                )

        if self.skip_zero_advantage_groups is None:
            self.skip_zero_advantage_groups = is_num(self.beta) and self.beta == 0
        if not isinstance(self.skip_zero_advantage_groups, bool):
            bad("skip_zero_advantage_groups", "use True, False or None (= on when beta == 0)")
        elif self.skip_zero_advantage_groups and is_num(self.beta) and self.beta > 0:
            errors.append(
                f"skip_zero_advantage_groups=True with beta={self.beta!r}: a group with zero advantages still has a "
                "KL term, so skipping it would change the gradient; set it to None/False, or beta=0"
            )

        # after vanilla GRPO
        for name in ("filter_groups", "vllm_importance_sampling_correction"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "use True or False")
        if not is_int(self.max_num_gen_batches) or self.max_num_gen_batches < 1:
            bad("max_num_gen_batches", "use an int >= 1: sampling rounds per step with filter_groups (1 = no refill)")
        if self.rollout_dtype is not None and self.rollout_dtype not in ROLLOUT_DTYPES:
            bad("rollout_dtype", f"use None (the learner samples) or one of {ROLLOUT_DTYPES}")
        if self.vllm_importance_sampling_mode not in SAMPLER_CORRECTION_MODES:
            bad("vllm_importance_sampling_mode", f"use one of {SAMPLER_CORRECTION_MODES} (TRL's names)")
        cmax, cmin = self.vllm_importance_sampling_clip_max, self.vllm_importance_sampling_clip_min
        if cmax is not None and (not is_num(cmax) or cmax <= 0):
            bad("vllm_importance_sampling_clip_max", "use None or a float > 0, e.g. 3.0 (TRL's default; Yao et al. use 2)")
        if cmin is not None and (not is_num(cmin) or cmin < 0):
            bad("vllm_importance_sampling_clip_min", "use None or a float >= 0")
        elif cmin is not None and is_num(cmax) and cmin >= cmax:
            bad("vllm_importance_sampling_clip_min", f"must be below vllm_importance_sampling_clip_max={cmax}")
        if (self.vllm_importance_sampling_correction is True and cmax is None
                and self.vllm_importance_sampling_mode in ("token_truncate", "sequence_truncate")):
            errors.append("vllm_importance_sampling_correction=True with mode "
                          f"{self.vllm_importance_sampling_mode!r} and no clip: untruncated weights have unbounded "
                          "variance; set vllm_importance_sampling_clip_max (e.g. 3.0)")

        # model
        for name in ("use_lora", "gradient_checkpointing", "progress_bar"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "use True or False")
        if not is_int(self.lora_r) or self.lora_r < 1:
            bad("lora_r", "use an int >= 1 (rank of the LoRA update; >= 32 advised for a 0.5B model)")
        if not is_num(self.lora_alpha) or self.lora_alpha <= 0:
            bad("lora_alpha", "use a float > 0 (often 2 * lora_r)")
        if not is_num(self.lora_dropout) or not 0 <= self.lora_dropout < 1:
            bad("lora_dropout", "use a float in [0, 1)")
        if (
            not isinstance(self.lora_target_modules, (list, tuple))
            or not self.lora_target_modules
            or not all(isinstance(m, str) and m for m in self.lora_target_modules)
        ):
            bad("lora_target_modules", "use a non-empty list of module names, e.g. ['q_proj', 'v_proj']")
        if not isinstance(self.device, str) or self.device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            bad("device", "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.dtype not in DTYPES:
            bad("dtype", f"use one of {DTYPES}")

        # bookkeeping
        if not is_int(self.seed) or self.seed < 0:
            bad("seed", "use an int >= 0")
        if self.output_dir is not None and not isinstance(self.output_dir, str):
            try:
                self.output_dir = str(self.output_dir)  # accept pathlib.Path
            except Exception:  # pragma: no cover
                bad("output_dir", "use a path string or None")
        if not is_int(self.logging_steps) or self.logging_steps < 1:
            bad("logging_steps", "use an int >= 1")
        if not is_int(self.save_steps) or self.save_steps < 0:
            bad("save_steps", "use an int >= 0 (0 = never save a checkpoint)")
        elif self.save_steps > 0 and self.output_dir is None:
            bad("save_steps", "checkpoints need a place: set output_dir, or save_steps=0")
        if self.save_total_limit is not None and (not is_int(self.save_total_limit) or self.save_total_limit < 1):
            bad("save_total_limit", "use None (keep every checkpoint) or an int >= 1 (keep the newest N)")
        reports = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        if not isinstance(reports, (list, tuple)) or not all(isinstance(r, str) for r in reports) \
                or any(r not in REPORT_TO for r in reports):
            bad("report_to", f"use one of {REPORT_TO} or a list of them (metrics.jsonl is always written)")
        elif any(r != "none" for r in reports) and self.output_dir is None:
            bad("report_to", "reports need a place: set output_dir, or report_to='none'")

        # before and during the run
        for name in ("preflight", "doctor"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "use True or False")
        if self.time_budget is not None:
            from grpo_lib.preflight import parse_duration

            try:
                parse_duration(self.time_budget)
            except (TypeError, ValueError):
                bad("time_budget", "use None, seconds (a number > 0) or a duration such as '60m', '1h30m', '90s'")

        if errors:
            raise ValueError("invalid GRPOConfig:\n  - " + "\n  - ".join(errors))
