"""Rollout throughput: one ``generate`` call for all groups, against one completion at a time.

GRPO needs G completions of every prompt. ``grpo_lib.rollout.sample_groups`` repeats each
prompt G times and samples all ``N * G`` completions in ONE batched ``generate`` call (KV
cache on). The naive loop calls ``generate`` once per completion. Same model, prompts,
sampling settings and token budget; four ways:

- ``shared_prefix``: ``sample_groups(..., sampler="shared_prefix")``, one batch, each distinct
  prompt prefilled once and its KV cache repeated G times, then a plain decode loop (the
  trainer's default);
- ``grouped``: ``sample_groups(model, tok, prompts, G)``, one ``generate`` call for the whole batch;
- ``per_prompt``: ``sample_groups(model, tok, [prompt], G)``, one call per prompt;
- ``one_at_a_time``: ``sample_groups(model, tok, [prompt], 1)``, N * G calls.

Throughput = real completion tokens (up to and including EOS) / wall seconds. A batched
call also computes past a sequence's EOS until the longest one stops (the padding is
wasted work), which is why the real-token count is the fair numerator.

Usage::

    python benchmarks/rollout_throughput.py             # N = 8 prompts, G = 8, 40 tokens, 3 repeats
    python benchmarks/rollout_throughput.py --quick     # N = 2, G = 4, 8 tokens, 1 repeat

Writes ``benchmarks/results/rollout_throughput.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_tiny, fmt_table, machine_info, set_threads, write_json  # noqa: E402

MODES = ("shared_prefix", "grouped", "per_prompt", "one_at_a_time")


def run_mode(mode: str, model, tok, prompts: list[str], G: int, max_new_tokens: int, seed: int) -> dict[str, float]:
    """Sample every completion of ``prompts`` the ``mode`` way; return tokens, calls, seconds."""
    import torch

    from grpo_lib.rollout import sample_groups

    torch.manual_seed(seed)
    kw = dict(max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, top_k=0)
    tokens = calls = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        if mode == "shared_prefix":
            ro = sample_groups(model, tok, prompts, G, sampler="shared_prefix", **kw)
            tokens, calls = int(ro.completion_mask.sum()), 1
        elif mode == "grouped":
            ro = sample_groups(model, tok, prompts, G, **kw)
            tokens, calls = int(ro.completion_mask.sum()), 1
        elif mode == "per_prompt":
            for p in prompts:
                ro = sample_groups(model, tok, [p], G, **kw)
                tokens, calls = tokens + int(ro.completion_mask.sum()), calls + 1
        elif mode == "one_at_a_time":
            for p in prompts:
                for _ in range(G):
                    ro = sample_groups(model, tok, [p], 1, **kw)
                    tokens, calls = tokens + int(ro.completion_mask.sum()), calls + 1
        else:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    wall = time.perf_counter() - t0
    return {"tokens": tokens, "generate_calls": calls, "seconds": wall, "tokens_per_s": tokens / wall}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-prompts", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=8, help="G")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3, help="each mode is run this many times, interleaved")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.num_prompts, a.num_generations, a.max_new_tokens, a.repeats = 2, 4, 8, 1
    set_threads(a.threads)

    from grpo_lib.tasks import make_dataset

    model, tok, kind = load_tiny()
    model.eval()
    prompts = [q.prompt for q in make_dataset(a.num_prompts, "train", seed=a.seed)]
    for mode in ("grouped", "shared_prefix"):
        run_mode(mode, model, tok, prompts[:1], 2, 2, a.seed)  # warm-up (first-call overheads)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for r in range(a.repeats):  # interleaved, so a load change hits every mode
        for mode in MODES:
            runs[mode].append(run_mode(mode, model, tok, prompts, a.num_generations, a.max_new_tokens, a.seed + r))

    summary = {}
    for mode in MODES:
        rs = runs[mode]
        summary[mode] = {
            "tokens_per_s": statistics.median(x["tokens_per_s"] for x in rs),
            "seconds": statistics.median(x["seconds"] for x in rs),
            "tokens": statistics.fmean(x["tokens"] for x in rs),
            "generate_calls": rs[0]["generate_calls"],
        }
    base = summary["one_at_a_time"]["tokens_per_s"]
    for mode in MODES:
        summary[mode]["speedup_vs_one_at_a_time"] = summary[mode]["tokens_per_s"] / base

    rows = [[m, summary[m]["generate_calls"], summary[m]["tokens"], summary[m]["seconds"], summary[m]["tokens_per_s"],
             summary[m]["speedup_vs_one_at_a_time"]] for m in MODES]
    print(fmt_table(rows, ["mode", "generate calls", "tokens", "seconds", "tokens/s", "speed-up"]))
    machine = machine_info()
    print(f"model: {kind}; N = {a.num_prompts}, G = {a.num_generations}, max {a.max_new_tokens} new tokens; "
          f"load average {machine['load_average_1_5_15']}")
    payload = {
        "benchmark": "rollout_throughput",
        "command": "python benchmarks/rollout_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: getattr(a, k) for k in ("num_prompts", "num_generations", "max_new_tokens", "repeats",
                                                 "seed", "threads", "quick")},
        "model": kind,
        "machine": machine,
        "summary": summary,
        "runs": runs,
    }
    out = a.out or RESULTS / ("rollout_throughput_quick.json" if a.quick else "rollout_throughput.json")
    write_json(out, payload)
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    main()
