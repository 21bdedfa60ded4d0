"""Named training recipes for ``python -m grpo_lib.train --preset NAME``.

A preset bundles what a run needs besides the algorithm: a config, a model loader, a
data loader (train rows and held-out evaluation rows), reward functions with weights,
and evaluation settings. The tiny preset is defined here; others (e.g. a GSM8K LoRA
preset on a 0.5B model) are added with :func:`register_preset`::

    register_preset(Preset(name="gsm8k-qwen0.5b-lora", config=..., load_model=...,
                           load_data=..., reward_funcs=[...]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from grpo_lib.config import GRPOConfig

__all__ = ["Preset", "PRESETS", "register_preset", "get_preset", "tiny_preset"]

Rows = list[dict[str, Any]]


@dataclass
class Preset:
    """One recipe.

    Attributes:
        name: the ``--preset`` name.
        description: one line for ``--help``.
        config: the default :class:`GRPOConfig` (the CLI overrides fields of a copy).
        load_model: ``f(config) -> (model, tokenizer)``.
        load_data: ``f(seed) -> (train_rows, eval_rows)``; rows are dicts with ``prompt``
            and ``answer`` (and any column the reward functions want).
        reward_funcs: TRL-signature reward functions; ``reward_weights`` one weight each.
        eval_max_new_tokens, eval_batch_size: greedy evaluation settings.
        eval_steps: evaluate a subset of ``eval_subset`` rows every this many steps
            (0 = only before and after), for the accuracy curve.
        eval_stop_strings: passed to ``evaluate`` (cut a base model's invented next question).
        torch_threads: ``torch.set_num_threads`` for the run (None = torch's default).
        model_name_or_path: the model the preset trains (for the record and ``--help``).
        retarget: ``f(model_name_or_path, dataset_name) -> Preset``, the same recipe on
            another model or data folder (``--model_name_or_path``/``--dataset_name``);
            None when the preset does not allow it.
    """

    name: str
    config: GRPOConfig
    load_model: Callable[[GRPOConfig], tuple[Any, Any]]
    load_data: Callable[[int], tuple[Rows, Rows]]
    reward_funcs: list[Callable]
    reward_weights: list[float] | None = None
    description: str = ""
    eval_max_new_tokens: int = 256
    eval_batch_size: int = 32
    eval_steps: int = 0
    eval_subset: int = 200
    eval_stop_strings: tuple[str, ...] = field(default_factory=tuple)
    torch_threads: int | None = None
    model_name_or_path: str | None = None
    retarget: Callable[[str | None, str | None], "Preset"] | None = None

    def with_config(self, **overrides: Any) -> "Preset":
        """A copy whose config has ``overrides`` applied (and validated)."""
        cfg = GRPOConfig.from_dict({**self.config.to_dict(), **overrides})
        return replace(self, config=cfg)


PRESETS: dict[str, Callable[[], Preset]] = {}


def register_preset(name: str, factory: Callable[[], Preset]) -> None:
    """Add a preset; ``factory`` builds it lazily (so importing presets stays cheap)."""
    PRESETS[name] = factory


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return PRESETS[name]()


# ---------------------------------------------------------------------------- tiny
TINY_TRAIN_SIZE = 4000
TINY_EVAL_SIZE = 500


def _tiny_model(config: GRPOConfig):
    from grpo_lib.tiny import load_tiny_model, load_tiny_tokenizer

    return load_tiny_model(), load_tiny_tokenizer()


def _tiny_data(seed: int) -> tuple[Rows, Rows]:
    from grpo_lib.tasks import make_dataset

    # The training prompts depend on the run's seed; the held-out test set never does
    # (seed 0, the same 500 problems as the checkpoint card), so runs compare.
    train = [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(TINY_TRAIN_SIZE, "train", seed=1000 + seed)]
    test = [{"prompt": p.prompt, "answer": p.answer} for p in make_dataset(TINY_EVAL_SIZE, "test", seed=0)]
    return train, test


def tiny_preset() -> Preset:
    """GRPO on the shipped tiny model and the synthetic task, sized for 2 CPU cores.

    Full fine-tuning, G = 8, 16 prompts a step, temperature 0.7, learning rate 1e-4,
    μ = 1, β = 0 (no reference pass), token-mean loss ("dapo"), std-scaled advantages,
    grad-norm clip 1.0, 100 steps, the shared-prefix sampler. The checkpoint has two habits
    (``scripts/pretrain_tiny.py``): worked solutions and a careless "add up every number";
    greedy decoding mostly picks the careless one. ``shows_work_reward`` is logged with
    weight 0, so the run shows the habit switching.

    Measured (benchmarks/tiny_grpo.py, greedy strict accuracy on the 500 held-out
    problems, one torch thread, 2-core machine): 250 steps 28.8% -> 80.8% in 466 s; the share
    of sampled completions that show work went 0.40 -> 0.90 in 30 steps, and the accuracy on
    the 200-problem subset was 80% at step 25 and 83-84% from step 200 on. See the README
    for the 100-step figure.
    """
    from grpo_lib.rewards import correctness_reward
    from grpo_lib.tasks import shows_work_reward

    cfg = GRPOConfig(
        num_generations=8,
        per_device_train_batch_size=128,  # 16 prompts x 8 completions
        max_new_tokens=40,
        temperature=0.7,  # measured: twice the early gain of 1.0 on this checkpoint
        beta=0.0,
        epsilon=0.2,
        num_iterations=1,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=1e-4,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        max_steps=100,
        seed=0,
        device="cpu",
        dtype="float32",
        logging_steps=1,
        save_steps=25,
        output_dir="runs/tiny",
    )
    return Preset(
        name="tiny",
        description="the shipped tiny model on the synthetic task, full fine-tuning on the CPU (~2-4 min)",
        config=cfg,
        model_name_or_path="grpo_lib/assets/tiny (shipped)",
        load_model=_tiny_model,
        load_data=_tiny_data,
        # shows_work_reward, weight 0: not rewarded, only logged (rewards/shows_work_reward/mean)
        reward_funcs=[correctness_reward, shows_work_reward],
        reward_weights=[1.0, 0.0],
        eval_max_new_tokens=40,
        eval_batch_size=250,
        eval_steps=10,
        eval_subset=200,
        # One thread: the tiny model's matrices are too small to gain from a second core,
        # and on a busy 2-core machine two threads fighting another process were measured
        # at 28 s a step against 0.85 s with one.
        torch_threads=1,
    )


register_preset("tiny", tiny_preset)


# The GSM8K LoRA presets live in their own module and register themselves on import.
from grpo_lib import presets_gsm8k  # noqa: E402,F401
