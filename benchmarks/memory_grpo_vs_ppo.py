"""GRPO against PPO with a learned critic: training memory of one step, same model.

DeepSeekMath (arXiv 2402.03300, §4.1) motivates GRPO by the critic it drops: PPO's value
model "is typically another model of comparable size as the policy model". This script
puts a number on that with ``grpo_lib.memory`` (the byte accounting and the measured
peak are defined and documented there; this script only chooses the models and prints):

- ``static``: weights + gradients + AdamW state of every model a step keeps (counted);
- ``peak``: the bytes alive at the start of the step plus the largest rise of allocated
  memory during it (``torch.profiler`` allocator events on the CPU,
  ``torch.cuda.max_memory_allocated`` on CUDA). Generation is excluded: it is the same
  for both methods.

for GRPO with β > 0 (policy + frozen reference), GRPO with β = 0 (policy only) and
RLHF-PPO (policy + reference + critic), in full fine-tuning and with LoRA, on

- ``tiny``: the course's tiny model (``grpo_lib.tiny``, ~0.8M parameters): activations
  and logits weigh as much as the weights;
- ``wide``: the same architecture widened (hidden 512, 8 layers, ~25M parameters,
  random weights: memory does not depend on their values), where weights and optimizer
  state dominate, as in a real LLM.

Usage::

    python benchmarks/memory_grpo_vs_ppo.py            # both models, full FT and LoRA
    python benchmarks/memory_grpo_vs_ppo.py --quick    # tiny model, small batch, full FT only

Writes ``benchmarks/results/memory_grpo_vs_ppo.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, fmt_table, machine_info, set_threads, write_json  # noqa: E402

MiB = 1024 * 1024
WIDE = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4)


def build_model(name: str):
    from grpo_lib import tiny

    if name == "tiny":
        return tiny.load_tiny_model(), "grpo_lib.tiny.load_tiny_model()"
    if name == "wide":
        tok = tiny.build_tiny_tokenizer()
        return tiny.build_tiny_model(tok, **WIDE), f"grpo_lib.tiny.build_tiny_model(**{WIDE}) (random init)"
    raise ValueError(f"unknown model {name!r}: use 'tiny' or 'wide'")


def measure(model_name: str, use_lora: bool, a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from grpo_lib.memory import compare_memory, random_rollout

    model, how = build_model(model_name)
    n_params = sum(p.numel() for p in model.parameters())
    ro = random_rollout(
        model.config.vocab_size, a.num_prompts, a.num_generations, a.prompt_len, a.completion_len, seed=a.seed,
        eos_token_id=model.config.eos_token_id,
    )
    scores = torch.rand(ro.batch_size, generator=torch.Generator().manual_seed(a.seed)).round()
    res = compare_memory(model, ro, scores, beta=a.beta, use_lora=use_lora, lora_r=a.lora_r)
    out: dict[str, Any] = {
        "model": model_name,
        "model_source": how,
        "parameters": n_params,
        "use_lora": use_lora,
        "batch": {"completions": ro.batch_size, "prompt_len": a.prompt_len, "completion_len": a.completion_len},
        "source": next(iter(res.values())).source,
        "methods": {},
    }
    for name, m in res.items():
        out["methods"][name] = {
            "peak_mb": m.peak / MiB,
            "static_mb": m.static_total / MiB,
            "transient_mb": m.activations / MiB,
            "by_group_mb": {k: v / MiB for k, v in m.by_group().items()},
            "static_parts_mb": {k: v / MiB for k, v in m.static.items()},
        }
    g, g0, p = (out["methods"][k] for k in ("grpo", "grpo_beta0", "ppo"))
    out["ratios"] = {
        "ppo_over_grpo_peak": p["peak_mb"] / g["peak_mb"],
        "ppo_over_grpo_beta0_peak": p["peak_mb"] / g0["peak_mb"],
        "ppo_over_grpo_static": p["static_mb"] / g["static_mb"],
        "grpo_over_ppo_peak": g["peak_mb"] / p["peak_mb"],
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny", "wide"], choices=["tiny", "wide"])
    p.add_argument("--lora", choices=["both", "no", "yes"], default="both")
    p.add_argument("--num-prompts", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=8, help="G")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--completion-len", type=int, default=64)
    p.add_argument("--beta", type=float, default=0.04, help="GRPO's KL weight and PPO's kl_coef")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="tiny model, full FT, 2 prompts x 4, 16 + 16 tokens")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.models, a.lora, a.num_prompts, a.num_generations, a.prompt_len, a.completion_len = ["tiny"], "no", 2, 4, 16, 16
    set_threads(a.threads)
    loras = {"both": [False, True], "no": [False], "yes": [True]}[a.lora]

    results = []
    for model_name in a.models:
        for use_lora in loras:
            print(f"measuring {model_name}, {'LoRA' if use_lora else 'full fine-tuning'} ...", flush=True)
            results.append(measure(model_name, use_lora, a))

    rows = []
    for r in results:
        for name in ("grpo_beta0", "grpo", "ppo"):
            m = r["methods"][name]
            bg = m["by_group_mb"]
            rows.append([r["model"], f"{r['parameters'] / 1e6:.1f}M", "LoRA" if r["use_lora"] else "full", name,
                         m["peak_mb"], bg["weights"], bg["grads"], bg["optimizer"], bg["transient"]])
    print(fmt_table(rows, ["model", "params", "tuning", "method", "peak MiB", "weights", "grads", "AdamW", "transient"]))
    for r in results:
        print(f"{r['model']:>5} {'LoRA' if r['use_lora'] else 'full'}: PPO/GRPO(beta={a.beta}) peak "
              f"{r['ratios']['ppo_over_grpo_peak']:.2f}x, PPO/GRPO(beta=0) {r['ratios']['ppo_over_grpo_beta0_peak']:.2f}x")
    payload = {
        "benchmark": "memory_grpo_vs_ppo",
        "command": "python benchmarks/memory_grpo_vs_ppo.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: getattr(a, k) for k in ("num_prompts", "num_generations", "prompt_len", "completion_len",
                                                 "beta", "lora_r", "seed", "threads", "quick")},
        "machine": machine_info(),
        "results": results,
    }
    out = a.out or RESULTS / ("memory_grpo_vs_ppo_quick.json" if a.quick else "memory_grpo_vs_ppo.json")
    write_json(out, payload)
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
