"""GRPO in TRL's ``GRPOTrainer`` with a grpo_lib preset: its model, data and reward functions,
unchanged, on one device or many (``accelerate launch``).

The preset (``grpo_lib.presets``: ``tiny``, ``gsm8k-qwen0.5b-lora``, ...) gives the model, the
training rows, the reward functions with their weights and a grpo_lib ``GRPOConfig``; this script
maps that config to TRL's names (notebook 08, section 2) and hands everything to TRL. Which
devices run it is decided by the launcher, not by this script::

    # one machine, several GPUs, data parallel (launch/multi_gpu.yaml: set num_processes)
    accelerate launch --config_file launch/multi_gpu.yaml scripts/trl_grpo.py --preset gsm8k-qwen0.5b-lora
    # the same with DeepSpeed ZeRO-2 (optimizer state and gradients sharded; pip install deepspeed)
    accelerate launch --config_file launch/deepspeed_zero2.yaml scripts/trl_grpo.py --preset gsm8k-qwen0.5b-lora
    # two processes on the CPU (gloo): what tests/test_multiprocess_trl.py runs
    accelerate launch --config_file launch/cpu_2proc.yaml scripts/trl_grpo.py --preset tiny --max-steps 4
    # one process, no launcher
    python scripts/trl_grpo.py --preset tiny --max-steps 4

The batch keeps grpo_lib's meaning whatever the number of processes N: the preset's
``per_device_train_batch_size`` is the number of completions of one optimizer step (prompts x G),
in TRL's terms ``per_device_train_batch_size x gradient_accumulation_steps x N``. So the same
preset trains with the same global batch on 1, 2 or 8 processes; each process generates and
scores its share, TRL gathers the rewards across processes before the group statistics.

``--use-vllm`` turns on TRL's vLLM generation (colocate mode; CUDA GPUs and ``pip install vllm``
only). ``--record DIR`` writes what the multi-process test checks: ``rank<r>.json`` from every
process when it finishes, and from the main process ``steps.jsonl``, one line per step with the
step's gathered prompts, completions and the reward of every function, as TRL logged them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline unless the caller says otherwise

__all__ = ["trl_batch_layout", "to_trl_kwargs", "main"]


def trl_batch_layout(completions_per_step: int, num_processes: int, micro_batch_size: int | None) -> tuple[int, int]:
    """TRL's ``(per_device_train_batch_size, gradient_accumulation_steps)`` for a global batch.

    ``completions_per_step = per_device_train_batch_size x gradient_accumulation_steps x num_processes``;
    the micro-batch is grpo_lib's ``micro_batch_size`` (default: all of a process's share at once).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if completions_per_step % num_processes:
        raise ValueError(f"per_device_train_batch_size={completions_per_step} (completions per step) is not divisible "
                         f"by the {num_processes} processes: choose a multiple of {num_processes}")
    share = completions_per_step // num_processes
    micro = min(micro_batch_size or share, share)
    if share % micro:
        raise ValueError(f"each of the {num_processes} processes gets {share} completions per step, not a multiple of "
                         f"micro_batch_size={micro_batch_size}: change micro_batch_size or the batch")
    return micro, share // micro


#: grpo_lib GRPOConfig fields that TRL's GRPOConfig has under the same name and meaning
SAME_NAME = ["num_generations", "temperature", "top_p", "top_k", "beta", "epsilon", "epsilon_high",
             "num_iterations", "loss_type", "scale_rewards", "importance_sampling_level",
             "mask_truncated_completions", "learning_rate", "weight_decay", "adam_beta1", "adam_beta2",
             "max_grad_norm", "lr_scheduler_type", "warmup_steps", "max_steps", "gradient_checkpointing", "seed",
             "logging_steps"]


def to_trl_kwargs(cfg: Any, num_processes: int, reward_weights: list[float] | None, output_dir: str,
                  precision_dtype: Any, on_cpu: bool) -> dict[str, Any]:
    """The keyword arguments of ``trl.GRPOConfig`` for a grpo_lib config run on ``num_processes``."""
    import torch

    micro, accum = trl_batch_layout(cfg.per_device_train_batch_size, num_processes, cfg.micro_batch_size)
    kw = {n: getattr(cfg, n) for n in SAME_NAME}
    kw.update(
        output_dir=output_dir,
        max_completion_length=cfg.max_new_tokens,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        reward_weights=reward_weights,
        bf16=precision_dtype == torch.bfloat16,
        fp16=precision_dtype == torch.float16,
        use_cpu=on_cpu,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        disable_tqdm=not cfg.progress_bar,
        report_to="none",
        dataloader_num_workers=0,
    )
    import dataclasses

    from trl import GRPOConfig as TRLConfig

    if "activation_checkpointing" in {f.name for f in dataclasses.fields(TRLConfig)}:
        # transformers 5.25 renamed gradient_checkpointing (the old name still works, with a FutureWarning)
        kw["activation_checkpointing"] = kw.pop("gradient_checkpointing")
    return kw


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gsm8k-qwen0.5b-lora", help="a grpo_lib preset (python -m grpo_lib.train --help)")
    ap.add_argument("--output-dir", help="TRL's output_dir (default: runs/trl-<preset>)")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a grpo_lib GRPOConfig field, e.g. --set per_device_train_batch_size=32")
    ap.add_argument("--threads", type=int, help="torch CPU threads per process (default: the preset's)")
    ap.add_argument("--use-vllm", action="store_true", help="generate with vLLM, colocated (CUDA only)")
    ap.add_argument("--record", type=Path, help="write rank<r>.json and steps.jsonl here (tests)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    from grpo_lib.models import plan_precision
    from grpo_lib.presets import get_preset
    from grpo_lib.train import _parse_value  # --set FIELD=VALUE as python -m grpo_lib.train reads it

    preset = get_preset(args.preset)
    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = _parse_value(v.strip())
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    if args.seed is not None:
        overrides["seed"] = args.seed
    output_dir = args.output_dir or f"runs/trl-{preset.name}"
    # The model is loaded on the CPU in fp32; accelerate moves it to this process's device and
    # runs the forward in autocast (bf16 / fp16) when the device supports it.
    overrides.update(output_dir=output_dir, device="cpu", dtype="float32")
    preset = preset.with_config(**overrides)
    cfg = preset.config
    threads = args.threads or preset.torch_threads
    if threads:
        torch.set_num_threads(threads)

    precision = plan_precision("auto")  # CUDA: bf16 (fp16 before compute capability 8.0); CPU: fp32
    on_cpu = precision.device.type == "cpu"
    # What the launcher set up: process count, rank, device, backend. Without cpu=True accelerate
    # ignores a torchrun world on a machine without CUDA (one process each); TRL's Trainer passes
    # the same flag (use_cpu), so both see one MULTI_CPU (gloo) world.
    state = PartialState(cpu=on_cpu)
    weights = preset.reward_weights if preset.reward_weights is not None else cfg.reward_weights
    trl_args = TRLConfig(**to_trl_kwargs(cfg, state.num_processes, weights, output_dir,
                                         precision.dtype, on_cpu),
                         **({"use_vllm": True, "vllm_mode": "colocate"} if args.use_vllm else {}))
    # The main process first: it downloads (or, for the tiny chat model, writes) what the others then read
    with state.main_process_first():
        model, tokenizer = preset.load_model(cfg)  # a peft model when the preset uses LoRA
        train_rows, _ = preset.load_data(cfg.seed)

    class Record(TrainerCallback):
        """Main process: each step's gathered batch, as TRL logged it (prompts, completions, rewards)."""

        trainer: Any = None

        def on_step_end(self, args_, state_, control, **kwargs):
            if args.record is None or not state.is_main_process:
                return
            logs = self.trainer._logs  # TRL's buffer of the latest generation batch, gathered over processes
            line = {"step": state_.global_step, "prompt": list(logs["prompt"]), "completion": list(logs["completion"]),
                    "rewards": {k: list(v) for k, v in logs["rewards"].items()}}
            with open(args.record / "steps.jsonl", "a") as fh:
                fh.write(json.dumps(line) + "\n")

    record = Record()
    if args.record is not None and state.is_main_process:
        args.record.mkdir(parents=True, exist_ok=True)
        (args.record / "steps.jsonl").write_text("")
    state.wait_for_everyone()

    trainer = TRLTrainer(model=model, reward_funcs=list(preset.reward_funcs), args=trl_args,
                         train_dataset=Dataset.from_list(train_rows), processing_class=tokenizer, callbacks=[record])
    record.trainer = trainer
    trainer.train()
    if cfg.save_steps:
        trainer.save_model(str(Path(output_dir) / "final-model"))

    if args.record is not None:
        import hashlib

        import accelerate
        import trl

        info = {
            "rank": state.process_index,
            "num_processes": state.num_processes,
            "distributed_type": str(state.distributed_type),
            "backend": state.backend,
            "device": str(state.device),
            "finished": True,
            "global_step": trainer.state.global_step,
            "per_device_train_batch_size": trl_args.per_device_train_batch_size,
            "gradient_accumulation_steps": trl_args.gradient_accumulation_steps,
            "generation_batch_size": trl_args.generation_batch_size,
            # the functions TRL called, and whether they are the preset's objects themselves
            "reward_funcs": [f"{f.__module__}.{f.__qualname__}" for f in trainer.reward_funcs],
            "reward_funcs_identical": [a is b for a, b in zip(trainer.reward_funcs, preset.reward_funcs)],
            "reward_weights": trainer.reward_weights.tolist(),
            # data parallel keeps one model: every process must end with the same weights
            "weights_sha256": hashlib.sha256(b"".join(
                p.detach().cpu().float().numpy().tobytes() for p in trainer.model.parameters())).hexdigest(),
            "log_history": trainer.state.log_history,
            "versions": {"torch": torch.__version__, "trl": trl.__version__, "accelerate": accelerate.__version__},
        }
        (args.record / f"rank{state.process_index}.json").write_text(json.dumps(info, indent=1))
    state.wait_for_everyone()
    if state.is_main_process:
        logs = [h for h in trainer.state.log_history if "reward" in h]
        print(f"{state.num_processes} process(es), {trainer.state.global_step} steps; reward per step: "
              f"{[round(h['reward'], 3) for h in logs]}", flush=True)
    state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
