"""Benchmark: seconds per GRPO step, evaluation time and peak memory of the full GSM8K profile
on a randomly initialised model with Qwen2.5-0.5B-Instruct's exact architecture.

    python benchmarks/gpu_qwen_step.py                  # on a CUDA GPU: the full profile
    python benchmarks/gpu_qwen_step.py --quick          # anywhere (CPU): 2 layers, short lengths

No model hub is reachable from the machines this project can use, so there are no real
weights: the model is ``Qwen2ForCausalLM`` built from the public configuration below, with
random weights, loaded through ``grpo_lib.models.load_policy`` (dtype by GPU, fp32 LoRA
r = 32 on every linear layer, gradient checkpointing on CUDA), trained by ``GRPOTrainer``
with ``grpo_lib.presets_gsm8k.gsm8k_config()`` (G = 8, 64 completions a step, cap 300
tokens, micro-batches of 8). What that changes, and what it does not:

* the compute of a step is set by the shapes (layers, width, vocabulary, batch, lengths),
  not by the weights' values, so the time and memory of a step with a given number of
  tokens are the real model's;
* a random model almost never emits EOS (1 chance in 151936 a token), so **every
  completion runs to the cap**: the measured step is the profile's longest. The real
  model writes a median of about 274 tokens on GSM8K (TRL issue #6263), so expect a real
  step somewhat shorter;
* the tokenizer is a stand-in with the same vocabulary size and Qwen's special-token ids
  (``<|endoftext|>`` 151643, ``<|im_start|>`` 151644, ``<|im_end|>`` 151645); prompts are
  ``--prompt-tokens`` random tokens inside a ChatML template (default 128: the median GSM8K
  test question is 222 characters and the course's system prompt 217, at ~4 characters a
  token, plus ~15 template tokens: an estimate, Qwen's tokenizer is not available here);
* the reward is a pseudo-random score of each completion's text, so every group has a
  signal and is trained (no zero-advantage group is skipped: the worst case).

Measured: ``--steps`` training steps (the first is a warm-up and is reported apart), one
batched greedy evaluation of ``--eval-prompts`` prompts of ``--eval-max-new-tokens`` tokens
(batch ``--eval-batch-size``, also to the cap), the peak CUDA memory, and the pre-flight's
step time and forecast for the profile's 200 steps, to check it against the measured steps.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info, set_threads, write_json  # noqa: E402

#: Qwen/Qwen2.5-0.5B-Instruct's config.json, as published on the Hugging Face hub
#: (https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/config.json).
QWEN25_05B_INSTRUCT_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
#: Its generation_config.json: both ids end a turn (same source, generation_config.json).
QWEN25_EOS_IDS = [151645, 151643]
SPECIALS = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>"}
CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + '<|im_end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant ' }}{%- endif -%}"
)


def stand_in_tokenizer(vocab_size: int):
    """A word-level tokenizer with ``vocab_size`` ids: ``w<i>`` words and Qwen's specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {SPECIALS.get(i, f"w{i}"): i for i in range(vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token="w0", padding_side="left")
    tok.chat_template = CHATML
    return tok


def write_random_model(folder: Path, layers: int | None, seed: int) -> Path:
    """Save a randomly initialised model of Qwen2.5-0.5B-Instruct's configuration (and the
    stand-in tokenizer) so that ``load_policy`` loads it like a hub folder."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    kw = {k: v for k, v in QWEN25_05B_INSTRUCT_CONFIG.items() if k not in ("architectures", "model_type", "torch_dtype")}
    if layers is not None:
        kw["num_hidden_layers"] = layers
        kw["max_window_layers"] = min(kw["max_window_layers"], layers)
    config = Qwen2Config(**kw)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)  # saved as the hub's bf16 checkpoint is
    model.generation_config = GenerationConfig(bos_token_id=151643, pad_token_id=151643, eos_token_id=QWEN25_EOS_IDS)
    model.save_pretrained(folder)
    stand_in_tokenizer(config.vocab_size).save_pretrained(folder)
    return folder


def random_prompt(rng: random.Random, n_tokens: int, vocab: int) -> list[dict[str, str]]:
    words = " ".join(f"w{rng.randrange(1000, min(vocab, 150000))}" for _ in range(n_tokens))
    return [{"role": "user", "content": words}]


def pseudo_random_reward(prompts, completions, **kw):
    import zlib

    return [float(zlib.crc32(c.encode()) % 5) for c in completions]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="CPU smoke run: 2 layers, G = 4, 8 completions a step, 8-token cap, 3 steps, 8 eval prompts")
    ap.add_argument("--layers", type=int, help="override num_hidden_layers (default: Qwen's 24; --quick: 2)")
    ap.add_argument("--steps", type=int, default=4, help="training steps to time (the first is a warm-up)")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--eval-prompts", type=int, default=64)
    ap.add_argument("--eval-batch-size", type=int, default=64, help="the 0.5B preset's eval batch size")
    ap.add_argument("--eval-max-new-tokens", type=int, default=512, help="the 0.5B preset's evaluation cap")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--out", default=str(RESULTS / "gpu_qwen_step.json"))
    args = ap.parse_args(argv)
    set_threads(args.threads)

    import torch

    from grpo_lib.evaluate import evaluate
    from grpo_lib.models import load_policy
    from grpo_lib.preflight import preflight
    from grpo_lib.presets_gsm8k import gsm8k_config
    from grpo_lib.trainer import GRPOTrainer

    cuda = torch.cuda.is_available()
    layers = args.layers if args.layers is not None else (2 if args.quick else None)
    overrides = dict(output_dir=None, save_steps=0, progress_bar=False, preflight=False, doctor=False,
                     device="cuda" if cuda else "cpu", dtype=args.dtype, max_steps=200)
    if args.quick:
        overrides.update(num_generations=4, per_device_train_batch_size=8, max_new_tokens=8, micro_batch_size=4,
                         gradient_checkpointing=False)
        args.steps, args.prompt_tokens = min(args.steps, 3), min(args.prompt_tokens, 16)
        args.eval_prompts, args.eval_batch_size, args.eval_max_new_tokens = 8, 8, 8
    if not cuda:
        overrides.update(gradient_checkpointing=False)
    cfg = gsm8k_config(**overrides)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = write_random_model(Path(tmp) / "qwen2.5-0.5b-random", layers, seed=0)
        model, tok = load_policy(folder, lora=True, device=cfg.device, dtype=cfg.dtype, lora_r=cfg.lora_r,
                                 lora_alpha=cfg.lora_alpha, gradient_checkpointing=cfg.gradient_checkpointing)
        load_s = time.perf_counter() - t0
    rng = random.Random(0)
    vocab = QWEN25_05B_INSTRUCT_CONFIG["vocab_size"]
    n_rows = max(cfg.prompts_per_step * (args.steps + 2), args.eval_prompts)
    prompts = [tok.apply_chat_template(random_prompt(rng, args.prompt_tokens, vocab), add_generation_prompt=True,
                                       tokenize=False) for _ in range(n_rows)]
    rows = [{"prompt": p, "answer": "0"} for p in prompts]
    trainer = GRPOTrainer(model, tok, pseudo_random_reward, rows, cfg)
    dev = trainer.device

    # the pre-flight on this run (its two steps are undone), then the timed steps
    rep = preflight(trainer, verbose=True, raise_on_stop=False)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, lengths = [], []
    for _ in range(args.steps):
        if cuda:
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        m = trainer.training_step()
        if cuda:
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t)
        lengths.append(m["completions/mean_length"])
        trainer.global_step += 1
    train_peak = torch.cuda.max_memory_allocated(dev) if cuda else None
    steady = times[1:] if len(times) > 1 else times
    step_s = sorted(steady)[len(steady) // 2]

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
        torch.cuda.synchronize(dev)
    t = time.perf_counter()
    res = evaluate(trainer.model, tok, prompts[: args.eval_prompts], ["0"] * args.eval_prompts,
                   max_new_tokens=args.eval_max_new_tokens, batch_size=args.eval_batch_size, progress=False)
    if cuda:
        torch.cuda.synchronize(dev)
    eval_s = time.perf_counter() - t
    eval_peak = torch.cuda.max_memory_allocated(dev) if cuda else None
    per_problem = eval_s / args.eval_prompts

    gpu = torch.cuda.get_device_name(dev) if cuda else None
    result = {
        "command": "python benchmarks/gpu_qwen_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": gpu or "cpu",
        "model": "Qwen2.5-0.5B-Instruct architecture, random weights" + (f", {layers} layers" if layers else ""),
        "settings": {k: getattr(cfg, k) for k in ("num_generations", "per_device_train_batch_size", "max_new_tokens",
                                                   "micro_batch_size", "gradient_checkpointing", "lora_r", "max_steps")}
        | {"dtype": str(model.precision.dtype), "prompt_tokens": args.prompt_tokens, "steps_timed": args.steps,
           "eval_prompts": args.eval_prompts, "eval_batch_size": args.eval_batch_size,
           "eval_max_new_tokens": args.eval_max_new_tokens},
        "machine": machine_info(),
        "load_seconds": load_s,
        "step_seconds_all": times,
        "step_seconds_median_after_warmup": step_s,
        "completion_mean_length": lengths,
        "train_peak_allocated_gib": None if train_peak is None else train_peak / 2**30,
        "eval_seconds": eval_s,
        "eval_seconds_per_problem": per_problem,
        "eval_minutes_gsm8k_test_1319": per_problem * 1319 / 60,
        "eval_minutes_subset_200": per_problem * 200 / 60,
        "eval_peak_allocated_gib": None if eval_peak is None else eval_peak / 2**30,
        "eval_completion_tokens_mean": sum(r.num_tokens for r in res.records) / max(1, len(res.records)),
        "eval_truncated_share": sum(r.truncated for r in res.records) / max(1, len(res.records)),
        "gpu_total_gib": torch.cuda.get_device_properties(dev).total_memory / 2**30 if cuda else None,
        "preflight_step_seconds": rep.step_seconds,
        "preflight_forecast_200_steps_s": rep.forecast_seconds,
        "measured_200_steps_s": 200 * step_s,
        "preflight_over_measured": rep.step_seconds / step_s,
        "preflight_table": rep.table(),
    }
    write_json(args.out, result)
    print(f"{result['model']} on {result['device']} ({result['settings']['dtype']})")
    print(f"step: {step_s:.2f} s (median after the warm-up; all: {', '.join(f'{x:.2f}' for x in times)}); "
          f"pre-flight said {rep.step_seconds:.2f} s (ratio {result['preflight_over_measured']:.2f})")
    print(f"200 steps: {200 * step_s / 60:.1f} min measured, {rep.forecast_seconds / 60:.1f} min forecast")
    print(f"greedy evaluation: {per_problem:.3f} s a problem ({args.eval_prompts} prompts, batch {args.eval_batch_size}, "
          f"cap {args.eval_max_new_tokens}) -> {result['eval_minutes_gsm8k_test_1319']:.1f} min for GSM8K test")
    if cuda:
        print(f"peak memory: train {result['train_peak_allocated_gib']:.2f} GiB, eval "
              f"{result['eval_peak_allocated_gib']:.2f} GiB of {result['gpu_total_gib']:.0f} GiB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
