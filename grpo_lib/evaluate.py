"""Held-out evaluation: batched greedy generation, strict and lenient accuracy with 95% CIs.

The protocol the course uses everywhere (see notebook 06 for why):

* on held-out prompts (GSM8K's 1,319 test questions, or the synthetic test split), never
  on training prompts;
* greedy decoding (``do_sample=False``), so the number is a property of the model, not
  of a sampling seed;
* strict accuracy (the course's ``#### <number>`` format) and lenient accuracy
  (``\\boxed{}``, "the answer is", last number) reported separately: a rise in strict
  accuracy alone is format learning;
* a 95% confidence interval with every accuracy. With n items the half-width is about
  ``1.96 * sqrt(p (1 - p) / n)``: +-18 points on 30 items, +-2.7 on 1,319 (p = 0.5).

The same function serves the tiny model and a real one; only the prompts differ
(``grpo_lib.gsm8k.build_plain_prompt`` or ``build_chat_prompt``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from grpo_lib.answers import answers_match, extract_answer, gold_number
from grpo_lib.logprobs import stop_token_ids

__all__ = ["EvalRecord", "EvalResult", "evaluate", "pass_at_k", "wilson_interval"]

Z_95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (Wilson 1927; Brown, Cai & DasGupta
    2001 recommend it over the normal "Wald" interval, which collapses to a width of
    0 at k = 0 or k = n and undercovers for small n)::

        center = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2)),   p = k / n

    Returns ``(center - half, center + half)``, inside [0, 1].
    """
    if n <= 0:
        raise ValueError(f"n must be positive to compute an interval; got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n={n}; got k={k}")
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At k = 0 (k = n) the lower (upper) end is exactly 0 (1); rounding would give 1e-17.
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


def pass_at_k(n: int, c: int | Sequence[int] | torch.Tensor, k: int) -> float:
    """Unbiased estimate of pass@k, averaged over problems (Chen et al. 2021, arXiv 2107.03374,
    eq. 1): with n samples of a problem of which c are correct,

        pass@k = 1 - C(n - c, k) / C(n, k)

    the probability that k samples drawn without replacement from the n contain a correct one
    (exactly 1 when n - c < k). ``c`` is one count or one count per problem; the result is
    the mean over problems. pass@1 is the mean per-sample accuracy c / n.
    """
    if not isinstance(n, int) or not isinstance(k, int) or isinstance(n, bool) or isinstance(k, bool):
        raise TypeError(f"n and k must be int; got n={n!r}, k={k!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n} (the samples drawn per problem); got k={k}")
    counts = torch.as_tensor(c).reshape(-1).tolist()
    if not counts:
        raise ValueError("c is empty: pass one count of correct samples per problem")
    values = []
    for ci in counts:
        if ci != int(ci) or not 0 <= ci <= n:
            raise ValueError(f"each count c must be an integer between 0 and n={n}; got {ci}")
        ci = int(ci)
        values.append(1.0 if n - ci < k else 1.0 - math.comb(n - ci, k) / math.comb(n, k))
    return sum(values) / len(values)


@dataclass
class EvalRecord:
    """One evaluated prompt: what went in, what came out, how it was read and scored."""

    index: int
    prompt: str
    completion: str
    gold: float
    strict_pred: float | None
    lenient_pred: float | None
    strict_correct: bool
    lenient_correct: bool
    num_tokens: int
    truncated: bool


@dataclass
class EvalResult:
    """Strict and lenient accuracy with 95% Wilson intervals, and every record.

    ``strict_accuracy`` / ``lenient_accuracy`` are fractions in [0, 1]; ``*_ci`` the
    interval ``(low, high)``; ``format_rate`` the fraction with a strict (``####``)
    answer at all; ``truncated_rate`` the fraction that hit ``max_new_tokens`` without
    an end token (raise ``max_new_tokens`` if it is not small).
    """

    n: int
    strict_correct: int
    lenient_correct: int
    strict_accuracy: float
    lenient_accuracy: float
    strict_ci: tuple[float, float]
    lenient_ci: tuple[float, float]
    format_rate: float
    truncated_rate: float
    max_new_tokens: int
    seconds: float
    records: list[EvalRecord] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The numbers without the records (for logs, JSON, a table)."""
        d = asdict(self)
        d.pop("records")
        return d

    def wrong(self, mode: str = "strict") -> list[EvalRecord]:
        """The records scored wrong in ``mode`` ("strict" or "lenient"), for inspection."""
        if mode not in ("strict", "lenient"):
            raise ValueError(f"mode must be 'strict' or 'lenient'; got {mode!r}")
        return [r for r in self.records if not getattr(r, f"{mode}_correct")]

    def __str__(self) -> str:
        def pct(acc: float, ci: tuple[float, float]) -> str:
            return f"{100 * acc:5.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"

        return (
            f"greedy eval on n={self.n} (95% Wilson CI)\n"
            f"  strict : {pct(self.strict_accuracy, self.strict_ci)}  ({self.strict_correct}/{self.n})\n"
            f"  lenient: {pct(self.lenient_accuracy, self.lenient_ci)}  ({self.lenient_correct}/{self.n})\n"
            f"  '####' answer present: {100 * self.format_rate:.1f}%  "
            f"truncated at {self.max_new_tokens} tokens: {100 * self.truncated_rate:.1f}%  "
            f"({self.seconds:.1f} s)"
        )


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _check(prompts: Sequence[str], answers: Sequence, max_new_tokens: int, batch_size: int) -> None:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string: wrap it as [prompt]")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: pass at least one prompt to evaluate")
    if len(prompts) != len(answers):
        raise ValueError(f"prompts has {len(prompts)} items but answers has {len(answers)}: "
                         "pass one gold answer per prompt")
    for name, v in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, P]`` ids and attention mask, each row padded on the LEFT to the longest.

    Decoder-only models continue from the last column: with right padding the pad
    tokens would sit between the prompt and the answer."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        if r:
            ids[j, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[j, width - len(r):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def evaluate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    answers: Sequence,
    *,
    max_new_tokens: int = 256,
    batch_size: int = 32,
    progress: bool = True,
    stop_strings: Sequence[str] = (),
    add_special_tokens: bool = False,
    tol: float = 1e-6,
) -> EvalResult:
    """Greedy-decode every prompt and score the completions, strict and lenient.

    Args:
        model: a causal LM with ``generate`` (transformers, peft-wrapped allowed).
        tokenizer: its tokenizer; a missing pad token falls back to the EOS token.
        prompts: the full prompt strings, already templated (``build_chat_prompt`` or
            ``build_plain_prompt``); encoded with ``add_special_tokens=False`` by default,
            since a chat template already inserts any BOS it needs.
        answers: gold answers, one per prompt: numbers, number strings, or full GSM8K
            solutions (read with ``grpo_lib.answers.gold_number``).
        max_new_tokens: completion cap; ``truncated_rate`` reports how many hit it.
        batch_size: prompts per ``generate`` call. Prompts are sorted by length so a batch
            holds similar lengths (less padding); results come back in input order.
        progress: show a tqdm progress bar.
        stop_strings: cut each completion at the first occurrence of any of these (e.g.
            ``["\\nQ:"]`` for a base model that goes on to invent the next question and
            its own ``####`` line, which the last-``####`` rule would otherwise read).
        tol: numeric tolerance of ``answers_match``.

    The model is put in ``eval()`` mode (no dropout) and restored to training mode
    afterwards if it was training; no gradients are computed. Prompts are left-padded
    here (the tokenizer's ``padding_side`` is neither read nor changed); a tokenizer
    without a pad token pads with EOS (the attention mask hides it).
    """
    _check(prompts, answers, max_new_tokens, batch_size)
    golds = [gold_number(a) for a in answers]
    eos_ids = stop_token_ids(model, tokenizer)
    if not eos_ids:
        raise ValueError("the tokenizer has no eos_token and the model's generation_config "
                         "no eos_token_id: set tokenizer.eos_token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    device = _device(model)

    encoded = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    # Sort by length (longest first: an out-of-memory error shows up in the first batch).
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    completions: list[str] = [""] * len(prompts)
    num_tokens = [0] * len(prompts)
    truncated = [False] * len(prompts)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), desc="eval (greedy)", unit="prompt")
    was_training = getattr(model, "training", False)
    start = time.perf_counter()
    model.eval()
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            input_ids, attention_mask = _left_pad([encoded[i] for i in idx], pad_id, device)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=False,
                repetition_penalty=1.0,  # plain greedy, whatever the hub's generation_config says
                max_new_tokens=max_new_tokens,
                eos_token_id=eos_ids,
                pad_token_id=pad_id,
                use_cache=True,
            )
            out = getattr(out, "sequences", out)
            for row, i in zip(out[:, input_ids.shape[1] :].tolist(), idx):
                stop = next((t for t, tok in enumerate(row) if tok in eos_ids), None)
                kept = row if stop is None else row[:stop]
                num_tokens[i] = len(kept) + (stop is not None)
                truncated[i] = stop is None
                text = tokenizer.decode(kept, skip_special_tokens=True)
                for s in stop_strings:
                    text = text.split(s, 1)[0]
                completions[i] = text
            if bar is not None:
                bar.update(len(idx))
    finally:
        if was_training:
            model.train()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start

    records = []
    for i, (prompt, completion, gold) in enumerate(zip(prompts, completions, golds)):
        s, l = extract_answer(completion, "strict"), extract_answer(completion, "lenient")
        records.append(EvalRecord(
            index=i, prompt=prompt, completion=completion, gold=gold,
            strict_pred=s, lenient_pred=l,
            strict_correct=answers_match(s, gold, tol), lenient_correct=answers_match(l, gold, tol),
            num_tokens=num_tokens[i], truncated=truncated[i],
        ))
    n = len(records)
    ks = sum(r.strict_correct for r in records)
    kl = sum(r.lenient_correct for r in records)
    return EvalResult(
        n=n, strict_correct=ks, lenient_correct=kl,
        strict_accuracy=ks / n, lenient_accuracy=kl / n,
        strict_ci=wilson_interval(ks, n), lenient_ci=wilson_interval(kl, n),
        format_rate=sum(r.strict_pred is not None for r in records) / n,
        truncated_rate=sum(truncated) / n,
        max_new_tokens=max_new_tokens, seconds=seconds, records=records,
    )
