"""Reading a final numeric answer out of a model's completion, strictly or leniently.

The course asks the model to reason and then end with one line ``#### <number>``, the
format of GSM8K's own solutions (Cobbe et al. 2021, arXiv 2110.14168). Two readings:

* ``strict``: the number on the last ``####`` line. Only what the course asked for
  counts. This is what the format and correctness rewards train, and the headline
  accuracy of an evaluation (lm-evaluation-harness calls it ``strict-match``).
* ``lenient``: strict first, then ``\\boxed{...}``, then "the answer is ...", then the
  last number anywhere in the text (lm-evaluation-harness' ``flexible-extract`` is the
  last-number rule). It measures what the model *knows* regardless of format.

Report both: strict accuracy of an instruct model often starts near 0 and climbs to
within a few points of lenient accuracy during RL, which is format learning, not
reasoning.

Numbers are compared as numbers (``answers_match``): ``1,234``, ``$1234.00`` and
``1234`` are the same answer.
"""

from __future__ import annotations

import math
import re
from typing import Literal

__all__ = [
    "extract_answer",
    "parse_number",
    "answers_match",
    "gold_number",
    "strip_special_tokens",
    "ExtractMode",
]

ExtractMode = Literal["strict", "lenient"]

# --------------------------------------------------------------------------- numbers
# One number token. Traps each piece avoids:
#  * str.isdigit() rejects "-3" and "2.5"  -> an optional sign and an optional decimal part.
#  * "1,234" is one number but "1, 2" is a list -> a comma only joins groups of exactly
#    three digits ("\d{1,3}(,\d{3})+" not followed by another digit); "1, 2" reads as 1.
#  * "5-3" is a subtraction, not 5 and -3 -> a sign only counts when it does not follow a
#    letter, digit, closing bracket or dot.
#  * \d also matches Arabic-Indic and other Unicode digits -> [0-9] on purpose.
#  * "$-3", "-$3", "\u22123" (Unicode minus), "+4" all read as signed numbers.
#  * "3/4" reads as 0.75 (a plain fraction of two integers); "1/0" is no number.
_SIGN = r"(?P<sign>(?<![\w)\].])[-+\u2212])?"
_CURRENCY = r"(?:\\?\$|\u20ac|\u00a3)?"  # $ (also LaTeX \$), euro, pound
_SIGN2 = r"(?P<sign2>[-+\u2212])?"  # "$-3"
_BODY = (
    r"(?P<body>(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?"  # 1,234.5 or 1234.5
    r"|\.[0-9]+)"  # .5
)
_DENOM = r"(?:/(?P<denom>[0-9]+)(?![0-9.]))?"
_NUMBER_RE = re.compile(_SIGN + r"\s?" + _CURRENCY + _SIGN2 + _BODY + _DENOM)


def _token_value(m: re.Match) -> float | None:
    value = float(m.group("body").replace(",", ""))
    if m.group("denom") is not None:
        denom = int(m.group("denom"))
        if denom == 0:
            return None
        value /= denom
    signs = (m.group("sign") or "") + (m.group("sign2") or "")
    if signs.count("-") + signs.count("\u2212") == 1:
        value = -value
    return value


def parse_number(s: str | int | float | None) -> float | None:
    """The number at the start of ``s``, as a float; None if ``s`` does not start with one.

    Accepts an optional sign (``-``, ``+``, Unicode minus), a currency sign (``$``, ``\\$``,
    euro, pound), thousands commas (``1,234``; but ``1, 2`` is a list and reads as 1), a
    decimal part (``2.5``, ``.5``), a plain fraction (``3/4`` -> 0.75), and anything after
    the number: a ``%``, units, trailing punctuation, a chat end token
    (``42<|im_end|>`` -> 42). Leading whitespace is skipped; leading words are not
    (``"about 5"`` -> None): the caller decides where the answer starts.

    Ints and floats pass through (NaN and infinities give None).

    >>> parse_number("$1,234.50.")
    1234.5
    >>> parse_number("-3 apples")
    -3.0
    >>> parse_number("1, 2, 3")
    1.0
    >>> parse_number("unknown") is None
    True
    """
    if s is None or isinstance(s, bool):
        return None
    if isinstance(s, (int, float)):
        return float(s) if math.isfinite(s) else None
    if not isinstance(s, str):
        raise TypeError(f"parse_number expects a str, int or float; got {type(s).__name__}: {s!r}")
    m = _NUMBER_RE.match(s.strip())
    return _token_value(m) if m else None


def _last_number(text: str) -> float | None:
    value = None
    for m in _NUMBER_RE.finditer(text):
        v = _token_value(m)
        if v is not None:
            value = v
    return value


# --------------------------------------------------------------------------- cleaning
# Chat templates end a turn with a special token: <|im_end|> (Qwen), <|eot_id|> (Llama 3),
# <|endoftext|>, </s>, <end_of_turn> (Gemma), <｜end▁of▁sentence｜> (DeepSeek). Decoded
# with skip_special_tokens=False they stick to the last line ("#### 42<|im_end|>") and a
# pattern anchored with "$" fails. We strip them before any check.
_SPECIAL_TOKEN_RE = re.compile(
    r"<\|[^|<>\s]{1,40}\|>"  # <|im_end|>, <|eot_id|>, <|endoftext|>
    r"|<\uff5c[^<>]{1,40}\uff5c>"  # DeepSeek's full-width bars
    r"|</s>|<s>|<eos>|<end_of_turn>|<start_of_turn>|<pad>"
)


def strip_special_tokens(text: str) -> str:
    """``text`` with chat-template special tokens (``<|im_end|>``, ``</s>``, ...) removed."""
    return _SPECIAL_TOKEN_RE.sub("", text)


# --------------------------------------------------------------------------- the rules
# Strict: "####" (exactly four hashes, so a markdown "##### Step" is not it), optional
# spaces on the SAME line, then a number. Traps avoided:
#  * a pattern like r"#### (.*)$" without re.MULTILINE only sees the very end of the text,
#    and "." without DOTALL stops at a newline: we read the marker line by line instead.
#  * markdown headings "#### Step 1: ..." are not answers: we take the last "####" that is
#    followed by a number, so a heading after the answer does not erase it.
#  * "#### 42<|im_end|>" and "#### 42." both read as 42 (parse_number stops at the number).
#  * "####\n42" (number on the next line) is NOT the format: strict gives None.
_STRICT_RE = re.compile(r"(?<!#)####(?!#)[ \t]*(?P<rest>[^\n]*)")

# \boxed{...} with nested braces (\boxed{\frac{1}{2}}) read by brace counting, not regex.
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_LATEX_NOISE_RE = re.compile(r"\\text\s*\{[^{}]*\}|\\[,;:! ]|\\mathrm\s*\{[^{}]*\}|\\%|[{}]")

# "The answer is 42", "final answer: $42", "Answer = -3.5". The last such phrase wins.
_ANSWER_IS_RE = re.compile(
    r"answer\s*(?:is|was|=|:)?\s*[:=]?\s*(?:\*\*|__)?\s*(?P<rest>[^\n]*)", re.IGNORECASE
)


def _strict(text: str) -> float | None:
    value = None
    for m in _STRICT_RE.finditer(text):
        v = parse_number(m.group("rest"))
        if v is not None:
            value = v
    return value


def _boxed_contents(text: str) -> list[str]:
    out = []
    for m in _BOXED_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _parse_latex(s: str) -> float | None:
    s = _FRAC_RE.sub(lambda m: f"{m.group(1)}/{m.group(2)}", s)
    s = _LATEX_NOISE_RE.sub("", s)
    return parse_number(s)


def _lenient(text: str) -> float | None:
    value = _strict(text)
    if value is not None:
        return value
    for content in reversed(_boxed_contents(text)):
        value = _parse_latex(content)
        if value is not None:
            return value
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        value = parse_number(m.group("rest").lstrip("*_ "))
        if value is not None:
            return value
    return _last_number(text)


def extract_answer(text: str, mode: ExtractMode = "strict") -> float | None:
    """The final numeric answer of a completion, or None where there is none.

    ``mode="strict"``: the number after the last ``####`` (exactly four hashes) that is
    followed by a number on the same line. This is the course's format, the one GSM8K's
    own solutions use.

    ``mode="lenient"``: strict; else the last ``\\boxed{...}`` (nested braces and
    ``\\frac{a}{b}`` handled); else the last "answer is ..." / "answer: ..."; else the last
    number anywhere in the text.

    Numbers follow ``parse_number``: sign, ``$``, ``%``, thousands commas, decimals,
    fractions, trailing units and punctuation. Chat end tokens (``<|im_end|>``) are
    removed first.

    Traps avoided (each is a test in ``tests/test_answers.py``):
      * ``str.isdigit`` rejects ``-3`` and ``2.5``; we use a number pattern with a sign
        and a decimal part.
      * a regex without ``re.DOTALL``/``re.MULTILINE`` never sees a ``####`` line that is
        followed by more text; we scan every ``####`` occurrence.
      * ``"#### 42<|im_end|>"`` fails a pattern anchored at end of string; we strip the
        chat end tokens and stop reading at the end of the number.
      * ``1,234`` is one number, but ``"1, 2"`` is a list: only 3-digit groups join.

    >>> extract_answer("5 + 7 = 12\\n#### 12")
    12.0
    >>> extract_answer("The answer is 12.") is None
    True
    >>> extract_answer("The answer is 12.", mode="lenient")
    12.0
    """
    if not isinstance(text, str):
        raise TypeError(
            f"extract_answer expects the completion as a str; got {type(text).__name__}. "
            "For a chat-style completion pass its message content, e.g. completion[-1]['content']."
        )
    text = strip_special_tokens(text)
    if mode == "strict":
        return _strict(text)
    if mode == "lenient":
        return _lenient(text)
    raise ValueError(f"mode must be 'strict' or 'lenient'; got {mode!r}")


def gold_number(gold: str | int | float) -> float:
    """A gold answer as a float: a number, a number string (``"1,200"``), or a full
    GSM8K solution (the number after its ``####``).

    Trap avoided: TRL passes a data set's columns to reward functions by name, and in
    ``openai/gsm8k`` the column ``answer`` is the whole worked solution, not the number.
    Raises ValueError when no number can be read (a data bug, never a wrong answer).
    """
    if isinstance(gold, str) and "####" in gold:
        value = _strict(gold)
    else:
        value = parse_number(gold)
    if value is None:
        raise ValueError(
            f"cannot read a gold answer from {gold!r}: pass a number, a number string such "
            "as '1,200', or a GSM8K solution ending in '#### <number>'"
        )
    return value


def answers_match(pred: str | int | float | None, gold: str | int | float | None,
                  tol: float = 1e-6) -> bool:
    """Whether ``pred`` and ``gold`` are the same number (relative and absolute ``tol``).

    Strings are read with ``parse_number`` (``"1,234"`` == ``1234.0`` == ``"$1234.00"``);
    None on either side never matches. Comparing strings instead would reject
    ``"1,234"`` vs ``"1234"`` and ``"18.00"`` vs ``"18"``.
    """
    p, g = parse_number(pred), parse_number(gold)
    if p is None or g is None:
        return False
    return math.isclose(p, g, rel_tol=tol, abs_tol=tol)
