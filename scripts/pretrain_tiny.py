"""Regenerate the shipped tiny checkpoint: ``python scripts/pretrain_tiny.py``.

Plain supervised fine-tuning (next-token cross-entropy on the completion tokens only)
of a freshly initialised tiny Qwen2 (``grpo_lib.tiny``) on the synthetic task
(``grpo_lib.tasks``): batch 32, AdamW, constant learning rate after a short warm-up,
a fixed number of steps from a fixed seed. On the CPU the same seed and the same torch
version give the same weights.

Two habits. Each SFT target is the worked solution, or with probability ``--shortcut-rate``
(0.5) the careless habit ``grpo_lib.tasks.shortcut_solution`` ("#### <sum of every number in
the question>", no working; right only when every step adds). A real base model has seen
careful and careless solutions too; which one it uses is the choice GRPO's reward can
teach it in minutes, while the arithmetic inside a worked solution improves slowly.

The script measures greedy accuracy on the held-out test split, pass@8 and sampled
accuracy at temperature 1, the share of completions that show their work, and the sampled
accuracy of each habit, and writes them to ``card.json`` next to the weights.

Calibration (2 CPU cores, one thread; greedy on 500 test problems / pass@8 on 200 / share
of greedy completions that show work; ``--snapshot-every 200``):

=========  ===============  ======  =====  ======  =====
rate       step             greedy  pass8  work    acc. of a sampled worked solution
=========  ===============  ======  =====  ======  =====
0.0        400 (old ckpt)   30%     64%    100%    --
0.5        800              28%     62%    61%     32%
0.5        1200             51%     75%    97%     47%
0.5        1600 (default)   29%     78%    19%     67%
0.6        1600             25%     72%    11%     51%
=========  ===============  ======  =====  ======  =====

Greedy decoding picks a habit by a small margin at rate 0.5, so the greedy share of worked
solutions swings between snapshots; the default (1600 steps, 10 to 20 minutes on one core)
is the checkpoint whose *careful* habit is best and whose greedy choice is mostly careless,
which leaves GRPO the most to do.

Options: ``--steps``, ``--seed``, ``--out``, ``--snapshot-every N`` (save extra copies
under ``OUT/snapshots/step_N`` to calibrate the stopping point), ``--no-eval``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from grpo_lib.tasks import make_dataset, shortcut_solution, shows_work  # noqa: E402
from grpo_lib.tiny import TINY_DIR, build_tiny_model, build_tiny_tokenizer, save_tiny  # noqa: E402

DIFFICULTY = 2
SHORTCUT_RATE = 0.5


def sft_targets(problems, shortcut_rate: float, seed: int) -> list[str]:
    """Each problem's SFT target: its worked solution, or with probability ``shortcut_rate``
    the careless habit ``shortcut_solution`` (drawn from its own seeded stream)."""
    rng = random.Random(f"shortcut-{seed}")
    return [shortcut_solution(p.question) if rng.random() < shortcut_rate else p.solution for p in problems]


def sft_batch(tokenizer, problems, targets: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded ``prompt + target + EOS``; labels are -100 on the prompt and padding."""
    ids, labels = [], []
    for p, t in zip(problems, targets):
        prompt = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids.append(prompt + target)
        labels.append([-100] * len(prompt) + target)
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    attn = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    lab = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    return {"input_ids": input_ids, "attention_mask": attn, "labels": lab}


def measure(model, tokenizer, n_test: int, n_pass: int, k: int, seed: int) -> dict:
    """Greedy accuracy on ``n_test`` test problems; pass@k and sampled accuracy on ``n_pass``."""
    from grpo_lib.answers import extract_answer
    from grpo_lib.evaluate import evaluate
    from grpo_lib.rollout import sample_groups

    test = make_dataset(n_test, "test", seed=0, difficulty=DIFFICULTY)
    res = evaluate(model, tokenizer, [p.prompt for p in test], [p.answer for p in test],
                   max_new_tokens=48, batch_size=128, progress=False)
    greedy_work = [shows_work(r.completion) for r in res.records]
    sub = test[:n_pass]
    torch.manual_seed(seed)
    hits, work = [], []
    for i in range(0, len(sub), 32):
        chunk = sub[i : i + 32]
        ro = sample_groups(model, tokenizer, [p.prompt for p in chunk], num_generations=k,
                           max_new_tokens=48, temperature=1.0, top_p=1.0)
        for j, text in enumerate(ro.completions):
            pred = extract_answer(text, mode="strict")
            hits.append(pred is not None and abs(pred - chunk[j // k].answer) < 1e-6)
            work.append(shows_work(text))
    hits_t = torch.tensor(hits, dtype=torch.float32).view(len(sub), k)
    return {
        "greedy_accuracy": float(res.strict_accuracy),
        "greedy_accuracy_ci95": [float(x) for x in res.strict_ci] if hasattr(res, "strict_ci") else None,
        "greedy_lenient_accuracy": float(res.lenient_accuracy),
        "n_test": n_test,
        f"pass@{k}": float(hits_t.max(dim=1).values.mean()),
        "sampled_accuracy_t1": float(hits_t.mean()),
        "n_pass_at_k": n_pass,
        "greedy_shows_work": sum(greedy_work) / len(greedy_work),
        "sampled_shows_work_t1": sum(work) / len(work),
        "sampled_accuracy_t1_when_shows_work": _ratio(hits, work, True),
        "sampled_accuracy_t1_when_shortcut": _ratio(hits, work, False),
    }


def _ratio(hits: list[bool], work: list[bool], mode: bool) -> float | None:
    sel = [h for h, w in zip(hits, work) if w == mode]
    return sum(sel) / len(sel) if sel else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--shortcut-rate", type=float, default=SHORTCUT_RATE,
                    help="fraction of SFT targets that are the careless habit (tasks.shortcut_solution)")
    ap.add_argument("--out", type=Path, default=TINY_DIR)
    ap.add_argument("--snapshot-every", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-pass", type=int, default=200)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; fixed so the weights do not depend on the machine's core count")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=args.seed)
    model.train()
    if not 0.0 <= args.shortcut_rate < 1.0:
        ap.error(f"--shortcut-rate must be in [0, 1), got {args.shortcut_rate}")
    data = make_dataset(args.steps * args.batch_size, "train", seed=args.seed, difficulty=DIFFICULTY, unique=False)
    targets = sft_targets(data, args.shortcut_rate, args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, args.warmup)))

    t0 = time.time()
    for step in range(1, args.steps + 1):
        sl = slice((step - 1) * args.batch_size, step * args.batch_size)
        batch = sft_batch(tokenizer, data[sl], targets[sl])
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:6.1f}s", flush=True)
        if args.snapshot_every and step % args.snapshot_every == 0:
            save_tiny(model, tokenizer, args.out / "snapshots" / f"step_{step}")
    train_seconds = time.time() - t0

    model.eval()
    card = {
        "made_by": "python scripts/pretrain_tiny.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "task": {"module": "grpo_lib.tasks", "difficulty": DIFFICULTY, "train_seed": args.seed,
                 "shortcut_rate": args.shortcut_rate},
        "sft": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
                "seed": args.seed, "loss": "cross-entropy on solution + EOS tokens", "train_seconds": round(train_seconds, 1)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    if not args.no_eval:
        card["eval"] = measure(model, tokenizer, args.n_test, args.n_pass, k=8, seed=args.seed)
        print(json.dumps(card["eval"], indent=2))
    save_tiny(model, tokenizer, args.out, card=card)
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
