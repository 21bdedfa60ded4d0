"""Reward functions for GSM8K-style answers, with TRL's signature.

Every function here is ``f(prompts, completions, answer, **kwargs) -> list[float]``, the
signature of TRL's ``GRPOTrainer`` reward functions: the trainer passes the prompts, the
completions and every data set column by name (so a column named ``answer`` arrives as
``answer=``), plus extras such as ``completion_ids`` that we ignore through ``**kwargs``.
TRL logs each function as ``rewards/<__name__>/mean``; our names are
``correctness_reward``, ``lenient_correctness_reward`` and ``format_reward``.

A completion is either a plain string or, with a chat data set, a list of messages
``[{"role": "assistant", "content": "..."}]``; both are accepted.

The gold ``answer`` may be a number, a number string (``"1,200"``) or a whole GSM8K
solution ending in ``#### <number>`` (``openai/gsm8k``'s ``answer`` column is the whole
solution: a reward that compares against it as a string is always 0).

Rewards are 0/1. Combine them with weights in the trainer (e.g. correctness 1.0,
format 0.2): a format reward alone is gamed by a completion that is nothing but
``#### 0`` (see notebook 06's reward-hacking lab).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grpo_lib.answers import answers_match, extract_answer, gold_number, strip_special_tokens

__all__ = [
    "correctness_reward",
    "lenient_correctness_reward",
    "format_reward",
    "completion_text",
    "SoftOverlongPunishment",
    "soft_overlong_punishment",
]


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The text of one completion: the string itself, or the content of the last
    assistant message of a chat-style completion (``[{"role", "content"}, ...]``).

    Trap avoided: calling ``re.search`` on a chat-style completion (a list) raises a
    TypeError deep inside the trainer, and ``str(completion)`` silently scores the
    Python repr of the list instead of the text.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, dict) for m in completion):
        messages = [m for m in completion if m.get("role", "assistant") == "assistant"]
        if not messages:
            raise ValueError(
                f"chat-style completion has no assistant message: {completion!r}; expected "
                "[{'role': 'assistant', 'content': '...'}]"
            )
        content = messages[-1].get("content")
        if isinstance(content, list):  # multimodal style: [{"type": "text", "text": ...}]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ValueError(f"assistant message has no text 'content': {messages[-1]!r}")
        return content
    raise TypeError(
        "a completion must be a str or a list of {'role', 'content'} messages; got "
        f"{type(completion).__name__}: {completion!r:.80}"
    )


def _check_lengths(prompts: Sequence | None, completions: Sequence, **columns: Sequence) -> None:
    n = len(completions)
    if prompts is not None and len(prompts) != n:
        raise ValueError(
            f"prompts has {len(prompts)} items but completions has {n}: pass one prompt per "
            "completion (repeat each prompt G times for a group of G completions)"
        )
    for name, values in columns.items():
        if values is None:
            raise ValueError(f"{name} is required: pass the gold answers, one per completion")
        if len(values) != n:
            raise ValueError(
                f"{name} has {len(values)} items but completions has {n}: pass one {name} "
                "per completion (repeat each gold answer G times for a group of G completions)"
            )


def _golds(answer: Sequence) -> list[float]:
    golds = []
    for i, a in enumerate(answer):
        try:
            golds.append(gold_number(a))
        except ValueError as err:
            raise ValueError(f"answer[{i}]: {err}") from None
    return golds


def _correctness(prompts, completions, answer, mode) -> list[float]:
    _check_lengths(prompts, completions, answer=answer)
    golds = _golds(answer)
    return [
        1.0 if answers_match(extract_answer(completion_text(c), mode=mode), g) else 0.0
        for c, g in zip(completions, golds)
    ]


def correctness_reward(prompts: Sequence | None, completions: Sequence, answer: Sequence,
                       **kwargs: Any) -> list[float]:
    """1.0 where the STRICT answer (the number on the last ``#### <number>`` line) equals
    the gold answer numerically, else 0.0.

    Traps avoided: numbers compared as numbers (``"1,234"`` == ``1234``; ``-3`` and
    ``2.5`` are read, which ``str.isdigit`` would reject); the chat end token
    (``#### 42<|im_end|>``) is stripped; a full GSM8K solution as gold is reduced to its
    final number.
    """
    return _correctness(prompts, completions, answer, "strict")


def lenient_correctness_reward(prompts: Sequence | None, completions: Sequence,
                               answer: Sequence, **kwargs: Any) -> list[float]:
    """1.0 where the LENIENT answer (strict, else ``\\boxed{}``, else "the answer is",
    else the last number) equals the gold answer numerically, else 0.0.

    Trap it exposes: trained on, the last-number fallback pays for a completion that
    lists many numbers; use it to measure, and train on ``correctness_reward``.
    """
    return _correctness(prompts, completions, answer, "lenient")


# The answer line: exactly four hashes at the start of the line, a number, then at most
# a unit or punctuation (what extract_answer's strict mode reads) and nothing after.
_ANSWER_LINE_RE = re.compile(r"^[ \t]*(?<!#)####(?!#)[ \t]*(?P<rest>.*)$")


def format_reward(prompts: Sequence | None, completions: Sequence, answer: Sequence | None = None,
                  **kwargs: Any) -> list[float]:
    """1.0 where the completion's LAST non-empty line is ``#### <number>``, else 0.0.

    The course's format is "reasoning, then a final line ``#### <number>``". We check it
    line by line instead of with one regex over the whole text, avoiding three traps seen
    in published GRPO notebooks:
      * ``re.match(r"^.*#### \\d+$", text)`` without ``re.DOTALL`` never matches a
        multi-line completion (``.`` stops at a newline), so the reward is always 0;
      * ``\\d+`` (like ``str.isdigit``) rejects ``-3`` and ``2.5``;
      * the chat end token (``#### 42<|im_end|>``) or a trailing newline breaks a ``$``
        anchor; we strip end tokens and trailing whitespace first.
    It does not check that there IS reasoning, nor that the number is right: a completion
    that is only ``#### 0`` earns 1.0. Weight it below correctness.
    ``answer`` is accepted and ignored, so the trainer can pass every column.
    """
    _check_lengths(prompts, completions)
    rewards = []
    for c in completions:
        lines = [ln for ln in strip_special_tokens(completion_text(c)).splitlines() if ln.strip()]
        ok = False
        if lines:
            m = _ANSWER_LINE_RE.match(lines[-1])
            ok = m is not None and extract_answer(lines[-1], mode="strict") is not None
        rewards.append(1.0 if ok else 0.0)
    return rewards


def soft_overlong_punishment(length: int, max_completion_len: int, soft_punish_cache: int) -> float:
    """DAPO's soft overlong punishment of one completion of ``length`` tokens (arXiv 2503.14476, eq. 13)::

        R_length = 0                                   if length <= L_max - L_cache
                 = ((L_max - L_cache) - length) / L_cache   if L_max - L_cache < length <= L_max
                 = -1                                  if length > L_max

    ``L_max = max_completion_len`` (the hard cap), ``L_cache = soft_punish_cache`` (the
    width of the ramp); a completion cut at the cap gets -1, one ``L_cache / 2`` tokens
    short of it -0.5. DAPO used L_max = 20480, L_cache = 4096. Added to the correctness
    reward, it ranks a long correct answer below a short correct one, which truncation
    masking (``mask_truncated_completions``) cannot do.
    """
    if soft_punish_cache < 0 or soft_punish_cache > max_completion_len:
        raise ValueError(
            f"soft_punish_cache must be in [0, max_completion_len={max_completion_len}], got {soft_punish_cache}"
        )
    if length <= max_completion_len - soft_punish_cache:
        return 0.0
    if length <= max_completion_len:
        return ((max_completion_len - soft_punish_cache) - length) / soft_punish_cache
    return -1.0


class SoftOverlongPunishment:
    """``soft_overlong_punishment`` as a TRL-signature reward function (TRL:
    ``trl.rewards.get_soft_overlong_punishment``, logged as ``soft_overlong_punishment_reward``).

    ``f(prompts, completions, completion_ids=None, **columns) -> list[float]``. The length
    of a completion is ``len(completion_ids[i])`` when the trainer passes the ids (TRL
    does, EOS included), else the number of tokens of its text under ``tokenizer`` (this
    course's trainer passes text; the EOS is not in the text, so a finished completion
    counts one token less than in TRL; a truncated one, which has no EOS, counts the same).

    Args:
        max_completion_len: L_max, the completion cap (``GRPOConfig.max_completion_length``).
        soft_punish_cache: L_cache, the ramp's width in tokens (> 0).
        tokenizer: needed only when ``completion_ids`` are not passed.
    """

    __name__ = "soft_overlong_punishment_reward"

    def __init__(self, max_completion_len: int, soft_punish_cache: int, tokenizer: Any = None) -> None:
        if not isinstance(max_completion_len, int) or max_completion_len < 1:
            raise ValueError(f"max_completion_len must be a positive int (the completion cap), got {max_completion_len!r}")
        if not isinstance(soft_punish_cache, int) or not 0 < soft_punish_cache <= max_completion_len:
            raise ValueError(
                f"soft_punish_cache must be an int in (0, max_completion_len={max_completion_len}], got "
                f"{soft_punish_cache!r}; DAPO used a fifth of the cap (4096 of 20480)"
            )
        self.max_completion_len = max_completion_len
        self.soft_punish_cache = soft_punish_cache
        self.tokenizer = tokenizer

    def lengths(self, completions: Sequence, completion_ids: Sequence[Sequence[int]] | None = None) -> list[int]:
        """Token counts of the completions (see the class docstring)."""
        if completion_ids is not None:
            if len(completion_ids) != len(completions):
                raise ValueError(f"completion_ids has {len(completion_ids)} rows for {len(completions)} completions")
            return [len(ids) for ids in completion_ids]
        if self.tokenizer is None:
            raise ValueError(
                "SoftOverlongPunishment needs completion_ids (TRL passes them) or a tokenizer: "
                "SoftOverlongPunishment(max_completion_len, soft_punish_cache, tokenizer=tok)"
            )
        return [len(self.tokenizer(completion_text(c), add_special_tokens=False)["input_ids"]) for c in completions]

    def __call__(self, prompts: Sequence | None = None, completions: Sequence = (),
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float]:
        if completion_ids is not None and not completions:
            completions = [""] * len(completion_ids)
        _check_lengths(prompts, completions)
        return [
            soft_overlong_punishment(n, self.max_completion_len, self.soft_punish_cache)
            for n in self.lengths(completions, completion_ids)
        ]
