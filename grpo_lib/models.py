"""Loading a policy for LoRA GRPO: device, dtype, tokenizer, adapter, checkpointing.

``load_policy("Qwen/Qwen2.5-0.5B-Instruct")`` returns ``(model, tokenizer)`` ready for
``grpo_lib.trainer.GRPOTrainer``; the same call with a local folder (the tiny chat model
of ``grpo_lib.chat_tiny``) is the CPU smoke path. The decisions it makes, and why:

* **Device**: CUDA, then Apple MPS, then the CPU (``grpo_lib.device.pick_device``).
* **Dtype** (``plan_precision``; notebook 07, section 1): bf16 only on compute capability ≥ 8
  (A100, L4, H100). A T4 (capability 7.5) has no native bf16 although
  ``torch.cuda.is_bf16_supported()`` says True, so there the base weights are fp16 and
  the gradients need a loss scaler (``torch.amp.GradScaler``): fp16's smallest normal
  number is 6.1e-5 and a GRPO token gradient (advantage / number of tokens in the
  batch, ~1e-5) falls below it. fp32 on the CPU and on MPS.
* **LoRA** (Hu et al. 2021, arXiv 2106.09685): ``W x + (alpha / r) B A x`` with ``B = 0``
  at the start, on every linear layer but the output head (peft's
  ``target_modules="all-linear"``), rank 32, alpha 64: verl's GSM8K LoRA baseline for
  Qwen2.5-0.5B uses rank 32 and advises rank ≥ 32 for small models (verl docs,
  ``algo/baseline.md``, ``advance/ppo_lora.rst``). The adapter weights are kept in fp32
  whatever the base dtype, so that the optimizer's small updates are not rounded away
  (peft's ``autocast_adapter_dtype=True`` does this; we check it).
* **Reference policy**: with LoRA, π_ref is the base model, i.e. the same module inside
  ``with model.disable_adapter():``; no second copy in memory (the trainer does this).
* **Gradient checkpointing** (default on CUDA): activations are recomputed in the
  backward pass instead of stored. With peft the embedding output must require grad
  (``enable_input_require_grads``), otherwise the checkpointed blocks see only frozen
  inputs and no gradient reaches the adapters. The KV cache is off while training
  (``config.use_cache = False``) and on for generation: ``generate`` in ``eval()`` mode
  with ``use_cache=True`` (what ``sample_groups`` and ``evaluate`` pass) uses it, since
  transformers only drops the cache when checkpointing *and* training.
* **Generation defaults**: instruct checkpoints ship sampling defaults in
  ``generation_config.json`` (Qwen2.5-Instruct: ``repetition_penalty=1.05``,
  ``temperature=0.7``, ``top_p=0.8``, ``top_k=20``). GRPO must sample from exactly the
  distribution whose log-probabilities it trains on, and evaluation is plain greedy, so
  they are reset to neutral values (TRL's GRPOTrainer does the same).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from grpo_lib.device import needs_grad_scaler, pick_device, pick_dtype

__all__ = [
    "DEFAULT_MODEL",
    "Precision",
    "plan_precision",
    "lora_config",
    "load_policy",
    "load_tokenizer",
    "count_parameters",
    "adapter_state",
    "generation_mode",
    "reset_generation_config",
]

#: The course's default policy for the full profile (the 1.5B is the option for >= 24 GB).
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


@dataclass(frozen=True)
class Precision:
    """Where and in which number format a policy lives.

    Attributes:
        device: where the model runs.
        dtype: the base (frozen) weights and the forward computation.
        adapter_dtype: the trainable (LoRA) weights and their optimizer state: fp32.
        grad_scaler: True when the loss must be scaled (fp16): use
            ``torch.amp.GradScaler(device.type)`` around ``backward``/``step``.
        reason: one line saying why, for the notebook to print.
    """

    device: torch.device
    dtype: torch.dtype
    adapter_dtype: torch.dtype
    grad_scaler: bool
    reason: str


def plan_precision(
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    capability: tuple[int, int] | None = None,
) -> Precision:
    """Decide device and dtypes (notebook 07, section 1). ``capability`` overrides the GPU's
    ``torch.cuda.get_device_capability()`` (tests, or planning for a GPU you do not have).

    =================  =============  ===========  ============
    device             capability     base dtype   grad scaler
    =================  =============  ===========  ============
    CUDA (T4, V100)    7.x            fp16         yes
    CUDA (A100, L4)    8.x            bf16         no
    CUDA (H100)        9.0            bf16         no
    MPS, CPU           n/a            fp32         no
    =================  =============  ===========  ============

    The LoRA weights are fp32 in every case.
    """
    dev = pick_device(device)
    chosen = pick_dtype(dev, dtype, capability=capability)
    if dev.type == "cuda":
        cap = capability if capability is not None else torch.cuda.get_device_capability(dev)
        where = f"CUDA capability {cap[0]}.{cap[1]}"
        if chosen == torch.bfloat16:
            why = f"{where} >= 8.0: native bf16 (fp32's exponent range, no loss scaling needed)"
        elif chosen == torch.float16:
            why = (f"{where}: fp16 weights with a GradScaler (no native bf16 below 8.0; "
                   "torch.cuda.is_bf16_supported() would count emulation)")
        else:
            why = f"{where}: {chosen} as asked"
    else:
        why = f"{dev.type}: {chosen} ({'as asked' if dtype != 'auto' else 'no fast half precision here'})"
    return Precision(device=dev, dtype=chosen, adapter_dtype=torch.float32,
                     grad_scaler=needs_grad_scaler(chosen), reason=why)


def lora_config(r: int = 32, alpha: float = 64.0, dropout: float = 0.0,
                target_modules: str | list[str] = "all-linear", **kwargs: Any):
    """A peft ``LoraConfig`` for a causal LM: rank ``r``, scale ``alpha / r``, every linear
    layer but the output head (``"all-linear"``). ``alpha = 2 r`` keeps the update's scale
    at 2 for any rank (verl's GSM8K LoRA runs: r = 32, alpha = 32 to 64)."""
    from peft import LoraConfig

    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"lora rank r must be an int >= 1, got {r!r} (32 is advised for a 0.5B model)")
    if not alpha > 0:
        raise ValueError(f"lora alpha must be > 0, got {alpha!r} (2 * r is the usual choice)")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                      bias="none", task_type="CAUSAL_LM", **kwargs)


def load_tokenizer(model_name_or_path: str | os.PathLike, **kwargs: Any):
    """The model's tokenizer with left padding (generation continues from the last
    column) and a pad token (EOS where the checkpoint defines none)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if _is_local_dir(model_name_or_path):
        kwargs.setdefault("local_files_only", True)  # a folder: never ask the hub
    if _declares_generic_tokenizer(model_name_or_path):
        # AutoTokenizer would pick the class registered for the model type (Qwen2Tokenizer
        # for a qwen2 config) and rebuild its pre-tokenizer, which splits differently from
        # the folder's tokenizer.json (the tiny character tokenizer loses its spaces).
        tok = PreTrainedTokenizerFast.from_pretrained(str(model_name_or_path), **kwargs)
    else:
        tok = AutoTokenizer.from_pretrained(str(model_name_or_path), **kwargs)
    tok.padding_side = "left"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"{model_name_or_path}: the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
        tok.pad_token = tok.eos_token
    return tok


def _is_local_dir(path: str | os.PathLike) -> bool:
    """True for an existing local folder (a saved model), as opposed to a hub id."""
    return os.path.isdir(os.fspath(path))


def _declares_generic_tokenizer(path: str | os.PathLike) -> bool:
    """True for a local folder whose tokenizer_config.json names the generic fast class."""
    import json
    from pathlib import Path

    cfg = Path(path) / "tokenizer_config.json"
    if not cfg.is_file():
        return False
    declared = json.loads(cfg.read_text()).get("tokenizer_class")
    return declared in ("PreTrainedTokenizerFast", "TokenizersBackend")


def reset_generation_config(model: Any, tokenizer: Any) -> None:
    """Neutral generation defaults: no repetition penalty, no top-k/top-p, greedy unless
    asked. A sampler that applies a repetition penalty samples from a distribution that
    the learner's log-probabilities do not describe (an unmarked off-policy error)."""
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return
    gc.repetition_penalty = 1.0
    gc.do_sample = False
    gc.temperature = 1.0
    gc.top_p = 1.0
    gc.top_k = None
    gc.max_length = None
    if gc.pad_token_id is None:
        gc.pad_token_id = tokenizer.pad_token_id
    if gc.eos_token_id is None:
        gc.eos_token_id = tokenizer.eos_token_id



@contextmanager
def quiet_peft_checkpointing_warning() -> Iterator[None]:
    """Silence one FutureWarning that is about peft's code, not the caller's.

    peft (<= 0.21) reads ``model.is_gradient_checkpointing`` (when wrapping a model and when
    saving an adapter), an alias that transformers 5 deprecated in favour of
    ``is_activation_checkpointing``. Only that message is silenced, only inside the block.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def add_lora_adapter(model, config, **kwargs):
    """``peft.get_peft_model(model, config, **kwargs)`` without peft's FutureWarning
    (:func:`quiet_peft_checkpointing_warning`). Every LoRA wrap in grpo_lib goes through here."""
    from peft import get_peft_model

    with quiet_peft_checkpointing_warning():
        return get_peft_model(model, config, **kwargs)

def load_policy(
    model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
    lora: bool | Any | None = True,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    gradient_checkpointing: bool | None = None,
    lora_r: int = 32,
    lora_alpha: float = 64.0,
    lora_dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    adapter_path: str | os.PathLike | None = None,
    trainable: bool = True,
    capability: tuple[int, int] | None = None,
    attn_implementation: str | None = None,
    **from_pretrained_kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for GRPO: see the module docstring for every decision.

    Args:
        model_name_or_path: a hub id (``"Qwen/Qwen2.5-0.5B-Instruct"``) or a local folder.
        lora: True = a new adapter from ``lora_r``/``lora_alpha``/``lora_dropout``/
            ``target_modules``; a peft ``LoraConfig`` = that adapter; False/None = full
            fine-tuning (every weight trains, the trainer then keeps a frozen copy as
            reference when beta > 0).
        device, dtype, capability: see :func:`plan_precision`.
        gradient_checkpointing: None = on for CUDA, off elsewhere (on the CPU the tiny
            model does not need it and it costs a second forward pass).
        adapter_path: load this saved adapter (``model.save_pretrained`` output) instead
            of creating one; ``trainable=False`` loads it frozen for evaluation.
        attn_implementation: passed to ``from_pretrained`` when given (e.g. "sdpa").
        **from_pretrained_kwargs: anything else for ``AutoModelForCausalLM.from_pretrained``.

    Returns:
        ``(model, tokenizer)``; ``model.precision`` holds the :class:`Precision` used.
    """
    from transformers import AutoModelForCausalLM

    prec = plan_precision(device, dtype, capability=capability)
    if "torch_dtype" in from_pretrained_kwargs:
        raise TypeError("torch_dtype was renamed dtype in transformers 5: pass dtype= to load_policy")
    tokenizer = load_tokenizer(model_name_or_path)
    kwargs = dict(from_pretrained_kwargs)
    if _is_local_dir(model_name_or_path):
        kwargs.setdefault("local_files_only", True)  # a folder: works with the hub on or off
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(str(model_name_or_path), dtype=prec.dtype, **kwargs)
    model.to(prec.device)
    reset_generation_config(model, tokenizer)

    use_gc = (prec.device.type == "cuda") if gradient_checkpointing is None else bool(gradient_checkpointing)
    use_lora = adapter_path is not None or (lora is not None and lora is not False)
    if use_gc:
        # non-reentrant checkpointing (the PyTorch recommendation) + input grads for peft
        _enable_checkpointing(model)
        if use_lora:
            model.enable_input_require_grads()
    model.config.use_cache = not use_gc  # training forward passes; generate() turns it on in eval mode

    if use_lora:
        from peft import PeftModel

        for p in model.parameters():  # the base is frozen; only the adapter trains
            p.requires_grad_(False)
        if adapter_path is not None:
            with quiet_peft_checkpointing_warning():
                model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=trainable,
                                                  autocast_adapter_dtype=True)
        else:
            cfg = lora if not isinstance(lora, bool) else lora_config(lora_r, lora_alpha, lora_dropout, target_modules)
            model = add_lora_adapter(model, cfg, autocast_adapter_dtype=True)
        # Keep the adapter in fp32 whatever the base dtype (peft does it for fp16/bf16;
        # done here explicitly so that the guarantee does not hang on a default).
        for p in model.parameters():
            if p.requires_grad and p.dtype != prec.adapter_dtype:
                p.data = p.data.to(prec.adapter_dtype)
        model.to(prec.device)
    else:
        for p in model.parameters():
            p.requires_grad_(trainable)
    model.precision = prec  # type: ignore[attr-defined]
    model.eval()
    return model, tokenizer


def _enable_checkpointing(model: Any) -> None:
    """transformers >= 5.x calls it activation checkpointing; 4.x gradient checkpointing."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers 4.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def count_parameters(model: Any) -> dict[str, int | float]:
    """``{"trainable", "total", "fraction"}``: how much of the model the optimizer sees."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": train, "total": total, "fraction": train / max(total, 1)}


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    """A CPU copy of every trainable tensor (the LoRA weights), to compare before/after."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


@contextmanager
def generation_mode(model: Any) -> Iterator[Any]:
    """``with generation_mode(model): model.generate(...)``: eval mode and the KV cache on,
    restored afterwards. ``sample_groups`` and ``evaluate`` already do this themselves;
    use it for your own ``generate`` calls on a checkpointed training model."""
    was_training = model.training
    cfg = getattr(model, "config", None)
    old = getattr(cfg, "use_cache", None)
    model.eval()
    if cfg is not None:
        cfg.use_cache = True
    try:
        yield model
    finally:
        if cfg is not None:
            cfg.use_cache = old
        if was_training:
            model.train()

