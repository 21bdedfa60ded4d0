"""GSM8K LoRA presets for ``python -m grpo_lib.train``.

* ``gsm8k-qwen0.5b-lora``: LoRA GRPO of ``Qwen/Qwen2.5-0.5B-Instruct`` on the GSM8K train
  split, evaluated greedily on the full 1,319-question test split before and after. For
  one CUDA GPU (a Colab T4 is enough); the settings are those of notebook 07's full
  profile, justified there.
* ``gsm8k-qwen1.5b-lora``: the same with ``Qwen/Qwen2.5-1.5B-Instruct`` (a 24 GB+ GPU).
* ``gsm8k-tiny-lora``: the same code on the CPU with the tiny chat model
  (``grpo_lib.chat_tiny``) and a few GSM8K rows: the smoke test of the path.

::

    python -m grpo_lib.train --preset gsm8k-qwen0.5b-lora --output-dir runs/gsm8k05
    python -m grpo_lib.train --preset gsm8k-qwen0.5b-lora --output-dir runs/gsm8k05 --resume

GSM8K comes from ``$GRPO_GSM8K_DIR`` / ``../shared/gsm8k`` when present, else from the
hub (``openai/gsm8k``; needs ``pip install "grpo-lib[hub]"`` and network access). The
Qwen presets refuse the small fixture shipped with the package (a real run needs the
full splits); the tiny smoke preset falls back to it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from grpo_lib.config import GRPOConfig
from grpo_lib.presets import Preset, register_preset

__all__ = ["gsm8k_config", "gsm8k_rows", "gsm8k_lora_preset", "GSM8K_REWARD_WEIGHTS", "GSM8KRows"]

#: correctness (strict ``#### n``) 1.0, format 0.2: the format reward alone is gameable
#: (a bare ``#### 0`` earns it), so it only breaks ties while the model learns the format.
GSM8K_REWARD_WEIGHTS = [1.0, 0.2]


def gsm8k_config(**overrides: Any) -> GRPOConfig:
    """The full-profile GRPO settings for a 0.5B instruct model with LoRA (see notebook 07).

    G = 8, β = 0, ε = 0.2, μ = 1, loss "dapo", scale_rewards "group", temperature 1.0:
    TRL 1.16's GRPOConfig defaults. LoRA rank 32 on all linear layers (verl: rank ≥ 32
    for a 0.5B model), alpha 64, learning rate 1.5e-5: verl's LoRA reference uses
    lr 3e-5 at alpha / r = 1; Adam moves B and A by about lr per step and the update
    ΔW = (alpha / r) B A, so alpha / r = 2 at 1.5e-5 is the same step size.
    """
    kw: dict[str, Any] = dict(
        num_generations=8,
        per_device_train_batch_size=64,  # 8 prompts x 8 completions per step
        max_new_tokens=300,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        epsilon=0.2,
        num_iterations=1,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=1.5e-5,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=200,
        micro_batch_size=8,  # completions per forward/backward: bounds the [8, T, 151936] logits
        use_lora=True,
        lora_r=32,
        lora_alpha=64.0,
        lora_dropout=0.0,
        gradient_checkpointing=True,
        device="auto",
        dtype="auto",
        seed=0,
        logging_steps=1,
        save_steps=25,
        output_dir="runs/gsm8k-qwen0.5b-lora",
    )
    kw.update(overrides)
    return GRPOConfig(**kw)


class GSM8KRows(list):
    """A list of row dicts that remembers where the rows came from: ``source`` (a file or
    ``hf://...``) and ``is_fixture`` (True: the shipped sample, not GSM8K; say so with any
    figure computed on it)."""

    def __init__(self, rows: list[dict[str, Any]], source: str, is_fixture: bool) -> None:
        super().__init__(rows)
        self.source, self.is_fixture = source, is_fixture


def gsm8k_rows(tokenizer: Any, split: str, limit: int | None = None,
               max_question_chars: int | None = None, allow_fixture: bool = True,
               data_dir: str | None = None) -> GSM8KRows:
    """GSM8K rows as ``{"prompt", "answer", "question"}``: the prompt through the
    tokenizer's chat template (``build_chat_prompt``), the answer the gold number string.
    ``max_question_chars`` keeps only short questions (the CPU smoke path).
    ``allow_fixture``: with no full copy and no hub, use the shipped 68-row sample
    (``load_gsm8k``'s fallback, announced on stderr); False raises instead.
    ``data_dir``: a folder with train.jsonl/test.jsonl (default: ``local_gsm8k_dir()``)."""
    from grpo_lib.gsm8k import build_chat_prompt, load_gsm8k, local_gsm8k_dir

    data = load_gsm8k(split, data_dir=data_dir if data_dir is not None else local_gsm8k_dir(),
                      fixture_fallback=allow_fixture)
    rows = []
    for ex in data.examples:
        if max_question_chars is not None and len(ex.question) > max_question_chars:
            continue
        rows.append({"prompt": build_chat_prompt(tokenizer, ex.question), "answer": ex.final_answer,
                     "question": ex.question})
        if limit is not None and len(rows) >= limit:
            break
    return GSM8KRows(rows, source=data.source, is_fixture=data.is_fixture)


def _loader(model_name: str | None):
    def load_model(cfg: GRPOConfig):
        from grpo_lib.models import load_policy
        from grpo_lib.utils import seed_everything

        seed_everything(cfg.seed)  # the LoRA A matrices are initialised at random: same seed, same run
        name = model_name
        if name is None:  # the tiny chat model, written next to the run
            from grpo_lib.chat_tiny import save_tiny_chat

            base = Path(cfg.output_dir) if cfg.output_dir else Path(tempfile.mkdtemp())
            # absolute: the saved adapter names its base by this path
            name = str(save_tiny_chat(base.resolve() / "tiny-chat-base"))
        return load_policy(name, lora=True, device=cfg.device, dtype=cfg.dtype, lora_r=cfg.lora_r,
                           lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           gradient_checkpointing=cfg.gradient_checkpointing)

    return load_model


def _data(model_name: str | None, n_train: int | None, n_eval: int | None, max_chars: int | None,
          data_dir: str | None = None):
    def load_data(seed: int):
        from grpo_lib.models import load_tokenizer

        if model_name is None:
            from grpo_lib.chat_tiny import tiny_chat_tokenizer

            tok = tiny_chat_tokenizer()
        else:
            tok = load_tokenizer(model_name)
        fixture_ok = model_name is None  # only the tiny smoke preset may run on the sample
        return (gsm8k_rows(tok, "train", n_train, max_chars, allow_fixture=fixture_ok, data_dir=data_dir),
                gsm8k_rows(tok, "test", n_eval, max_chars, allow_fixture=fixture_ok, data_dir=data_dir))

    return load_data


def gsm8k_lora_preset(name: str, model_name: str | None, config: GRPOConfig, *, n_train: int | None = None,
                      n_eval: int | None = None, max_question_chars: int | None = None,
                      eval_max_new_tokens: int = 512, eval_batch_size: int = 64, description: str = "",
                      data_dir: str | None = None) -> Preset:
    """A GSM8K LoRA preset; ``model_name=None`` is the tiny chat model (CPU).

    ``preset.retarget(model_name_or_path, dataset_name)`` gives the same recipe on another
    causal LM (a hub id or folder) and/or GSM8K folder (``dataset_name``: a folder with
    train.jsonl and test.jsonl, or ``"openai/gsm8k"`` for the default lookup)."""
    from grpo_lib.rewards import correctness_reward, format_reward

    def retarget(model: str | None, dataset: str | None) -> Preset:
        folder = data_dir
        if dataset is not None:
            if dataset in ("openai/gsm8k", "gsm8k"):
                folder = None
            elif Path(dataset).expanduser().is_dir():
                folder = str(Path(dataset).expanduser())
            else:
                raise ValueError(f"--dataset_name {dataset!r}: use 'openai/gsm8k' (a local copy, else the hub) or "
                                 "a folder holding GSM8K's train.jsonl and test.jsonl")
        return gsm8k_lora_preset(name, model if model is not None else model_name, config, n_train=n_train,
                                 n_eval=n_eval, max_question_chars=max_question_chars,
                                 eval_max_new_tokens=eval_max_new_tokens, eval_batch_size=eval_batch_size,
                                 description=description, data_dir=folder)

    return Preset(
        name=name,
        description=description,
        config=config,
        load_model=_loader(model_name),
        load_data=_data(model_name, n_train, n_eval, max_question_chars, data_dir),
        model_name_or_path=model_name if model_name is not None else "the tiny chat model (grpo_lib.chat_tiny)",
        retarget=retarget,
        reward_funcs=[correctness_reward, format_reward],
        reward_weights=list(GSM8K_REWARD_WEIGHTS),
        eval_max_new_tokens=eval_max_new_tokens,
        eval_batch_size=eval_batch_size,
        eval_steps=50,
        eval_subset=200,
    )


def _qwen05() -> Preset:
    return gsm8k_lora_preset(
        "gsm8k-qwen0.5b-lora", "Qwen/Qwen2.5-0.5B-Instruct", gsm8k_config(),
        description="LoRA GRPO of Qwen2.5-0.5B-Instruct on GSM8K, one CUDA GPU (T4 and up)",
    )


def _qwen15() -> Preset:
    return gsm8k_lora_preset(
        "gsm8k-qwen1.5b-lora", "Qwen/Qwen2.5-1.5B-Instruct",
        gsm8k_config(output_dir="runs/gsm8k-qwen1.5b-lora", micro_batch_size=4),
        eval_batch_size=32,
        description="LoRA GRPO of Qwen2.5-1.5B-Instruct on GSM8K, one 24 GB+ CUDA GPU",
    )


def _tiny() -> Preset:
    cfg = gsm8k_config(
        num_generations=4, per_device_train_batch_size=8, max_new_tokens=20, learning_rate=1e-3,
        max_steps=4, micro_batch_size=None, gradient_checkpointing=False, device="cpu", dtype="float32",
        save_steps=2, output_dir="runs/gsm8k-tiny-lora",
    )
    return gsm8k_lora_preset(
        "gsm8k-tiny-lora", None, cfg, n_train=16, n_eval=8, max_question_chars=160,
        eval_max_new_tokens=20, eval_batch_size=8,
        description="the GSM8K LoRA path on the CPU with the tiny chat model (smoke test, seconds)",
    )


register_preset("gsm8k-qwen0.5b-lora", _qwen05)
register_preset("gsm8k-qwen1.5b-lora", _qwen15)
register_preset("gsm8k-tiny-lora", _tiny)
