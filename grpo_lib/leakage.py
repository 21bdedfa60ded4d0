"""Benchmark leakage: does an evaluation problem appear among the training prompts?

Two checks, the ones published contamination studies use:

* **exact**: the evaluation text equals a training text after normalisation (Unicode NFKC,
  lower case, punctuation removed, whitespace collapsed);
* **near-duplicate**: the evaluation text shares a word ``n``-gram (``n = 13``) with a
  training text, after the same normalisation. An evaluation text shorter than ``n``
  words counts when it appears whole inside a training text. This is the rule of GPT-3
  (Brown et al. 2020, arXiv 2005.14165, Appendix C: "13-gram overlap", and "the whole
  example when it is shorter than 13-grams"). Llama 2 (Touvron et al. 2023, arXiv
  2307.09288, Appendix A.6) uses a token-level variant (matched spans of 10 or more
  tokens, with a share of the example that must be covered); we follow GPT-3, which needs
  no tokenizer.

Prompts carry a template (``"Q: ... A:"``, a chat system prompt) that every text shares and
that alone could be 13 words long; ``strip_template=True`` (the default) removes, after
normalisation, the longest run of words that *all* texts start with and the longest they
all end with, so only the problems are compared.

An evaluation is called **held-out** only when both counts are 0; otherwise the report
lists the overlapping items (:class:`LeakageReport`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LeakItem", "LeakageReport", "check_leakage", "normalize_text"]

_PUNCT_RE = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, lower case, punctuation replaced by a space, whitespace collapsed.

    >>> normalize_text("Ann has 3 PENS.  She buys 4 more!")
    'ann has 3 pens she buys 4 more'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r:.60}")
    t = unicodedata.normalize("NFKC", text).lower()
    t = _PUNCT_RE.sub(" ", t)
    return _SPACE_RE.sub(" ", t).strip()


@dataclass
class LeakItem:
    """One evaluation item found in the training texts.

    ``kind`` is ``"exact"`` or ``"ngram"``; ``evidence`` the shared text (the whole
    normalised text, or the first shared n-gram); texts are cut to 200 characters.
    """

    eval_index: int
    train_index: int
    kind: str
    evidence: str
    eval_text: str
    train_text: str


@dataclass
class LeakageReport:
    """The result of :func:`check_leakage`.

    ``exact`` and ``near`` list the evaluation items found (an item is in one list only:
    exact wins). ``held_out`` is True only when both are empty.
    """

    n: int
    num_train: int
    num_eval: int
    exact: list[LeakItem] = field(default_factory=list)
    near: list[LeakItem] = field(default_factory=list)
    template_stripped: tuple[str, str] = ("", "")  # the shared (normalised) words removed: prefix, suffix
    method: str = ""

    @property
    def num_overlapping(self) -> int:
        """Evaluation items that overlap the training texts (exact or near-duplicate)."""
        return len(self.exact) + len(self.near)

    @property
    def held_out(self) -> bool:
        """True only when no evaluation item overlaps a training text."""
        return self.num_overlapping == 0

    def verdict(self) -> str:
        """One line: ``held-out`` with the counts, or ``NOT held-out`` with the counts."""
        counts = (f"{len(self.exact)} exact and {len(self.near)} {self.n}-gram near-duplicate(s) "
                  f"of {self.num_eval} evaluation items in {self.num_train} training texts")
        if self.held_out:
            return f"held-out: 0 overlaps ({counts})"
        return f"NOT held-out: {self.num_overlapping} evaluation items overlap the training data ({counts})"

    def to_dict(self, max_items: int | None = None) -> dict[str, Any]:
        """JSON-ready; ``max_items`` caps each list (the counts stay exact)."""
        cut = (lambda xs: xs) if max_items is None else (lambda xs: xs[:max_items])
        return {
            "held_out": self.held_out,
            "verdict": self.verdict(),
            "method": self.method,
            "n": self.n,
            "num_train": self.num_train,
            "num_eval": self.num_eval,
            "num_exact": len(self.exact),
            "num_near": len(self.near),
            "template_stripped": list(self.template_stripped),
            "exact": [asdict(x) for x in cut(self.exact)],
            "near": [asdict(x) for x in cut(self.near)],
        }

    def __str__(self) -> str:
        lines = [self.verdict()]
        for item in self.exact + self.near:
            lines.append(f"  eval[{item.eval_index}] ~ train[{item.train_index}] ({item.kind}): {item.evidence!r:.100}")
        return "\n".join(lines)


def _common_affixes(word_lists: Sequence[list[str]]) -> tuple[int, int]:
    """Lengths (in words) of the longest prefix and suffix shared by every word list."""
    if len(word_lists) < 2:
        return 0, 0
    shortest = min(len(w) for w in word_lists)
    first = word_lists[0]
    pre = 0
    while pre < shortest and all(w[pre] == first[pre] for w in word_lists):
        pre += 1
    suf = 0
    while suf < shortest - pre and all(w[-1 - suf] == first[-1 - suf] for w in word_lists):
        suf += 1
    return pre, suf


def _cut(s: str) -> str:
    return s if len(s) <= 200 else s[:197] + "..."


def check_leakage(
    train_texts: Sequence[str],
    eval_texts: Sequence[str],
    n: int = 13,
    strip_template: bool = True,
) -> LeakageReport:
    """Find evaluation items that appear (exactly or as a near-duplicate) in the training texts.

    Args:
        train_texts: the training prompts (or questions).
        eval_texts: the evaluation prompts (or questions), in the same form.
        n: the n-gram length of the near-duplicate check (GPT-3's 13).
        strip_template: remove the longest run of (normalised) words that every text of both
            lists starts with, and the longest every text ends with (a prompt template).

    Returns a :class:`LeakageReport`; ``report.held_out`` is True only when no item overlaps.
    Cost: one pass over the training texts' n-grams (GSM8K's 7,473 training questions:
    about a second).
    """
    for name, texts in (("train_texts", train_texts), ("eval_texts", eval_texts)):
        if isinstance(texts, str):
            raise TypeError(f"{name} must be a list of strings, not one string: wrap it as [text]")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{name} must hold strings only (prompts or questions)")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (words per n-gram; GPT-3 used 13), got {n!r}")
    train_texts, eval_texts = list(train_texts), list(eval_texts)
    train_words = [normalize_text(t).split() for t in train_texts]
    eval_words = [normalize_text(t).split() for t in eval_texts]
    pre, suf = _common_affixes(train_words + eval_words) if strip_template else (0, 0)
    some = (train_words + eval_words)[0] if pre or suf else []
    prefix, suffix = " ".join(some[:pre]), " ".join(some[len(some) - suf:]) if suf else ""
    train_norm = [" ".join(w[pre: len(w) - suf]) for w in train_words]
    eval_norm = [" ".join(w[pre: len(w) - suf]) for w in eval_words]

    exact_index: dict[str, int] = {}
    for i, t in enumerate(train_norm):
        exact_index.setdefault(t, i)
    grams: dict[int, dict[str, int]] = {}  # length -> n-gram text -> first training index

    def index_of(m: int) -> dict[str, int]:
        if m not in grams:
            table: dict[str, int] = {}
            for i, t in enumerate(train_norm):
                w = t.split()
                for j in range(len(w) - m + 1):
                    table.setdefault(" ".join(w[j: j + m]), i)
            grams[m] = table
        return grams[m]

    report = LeakageReport(
        n=n, num_train=len(train_texts), num_eval=len(eval_texts), template_stripped=(prefix, suffix),
        method=(f"exact match after normalisation (NFKC, lower case, no punctuation) and {n}-gram word overlap "
                f"(GPT-3, arXiv 2005.14165, Appendix C; a text shorter than {n} words counts when found whole)"),
    )
    for k, t in enumerate(eval_norm):
        if not t:
            continue
        if t in exact_index:
            i = exact_index[t]
            report.exact.append(LeakItem(k, i, "exact", _cut(t), _cut(eval_texts[k]), _cut(train_texts[i])))
            continue
        w = t.split()
        m = min(n, len(w))
        table = index_of(m)
        for j in range(len(w) - m + 1):
            g = " ".join(w[j: j + m])
            if g in table:
                i = table[g]
                report.near.append(LeakItem(k, i, "ngram", g, _cut(eval_texts[k]), _cut(train_texts[i])))
                break
    return report
