"""GSM8K: loading the rows and building prompts.

GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems",
arXiv 2110.14168): 7,473 train and 1,319 test grade-school word problems. Each row is
``{"question": str, "answer": str}``; the answer is a worked solution with calculator
annotations ``<<48/2=24>>`` that ends in a line ``#### <number>``.

Where the rows come from, first match wins:

1. the ``data_dir`` argument: a folder with ``train.jsonl`` and ``test.jsonl`` in the
   format of github.com/openai/grade-school-math;
2. the environment variable ``GRPO_GSM8K_DIR`` (same folder layout);
3. the Hugging Face data set ``openai/gsm8k`` (config ``main``) through ``datasets``
   (``pip install "grpo-lib[hub]"``), which needs the hub or its local cache;
4. when none of these is available (a fresh clone, offline): the small **fixture**
   shipped with the package, ``FIXTURE_DIR`` (68 rows of each split, MIT license notice
   and source in its README). The loader says so on stderr and marks the split
   (``split.is_fixture``, and ``"fixture"`` in its repr): it is enough to run the smoke
   profiles and the tests, and never a GSM8K result. ``fixture_fallback=False`` raises
   ``GSM8KNotFoundError`` instead (a full run must use the full splits).

``local_gsm8k_dir()`` finds the course's offline copy (``GRPO_GSM8K_DIR``, else
``../shared/gsm8k`` beside a source checkout) for notebooks and tests.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grpo_lib.answers import parse_number

__all__ = [
    "GSM8KExample",
    "GSM8KSplit",
    "GSM8KFormatError",
    "GSM8KNotFoundError",
    "load_gsm8k",
    "local_gsm8k_dir",
    "clean_solution",
    "build_chat_prompt",
    "build_plain_prompt",
    "SYSTEM_PROMPT",
    "PLAIN_PROMPT_TEMPLATE",
    "ENV_VAR",
    "FIXTURE_DIR",
    "FULL_SPLIT_SIZES",
]

Split = Literal["train", "test"]

#: Environment variable naming a folder with ``train.jsonl`` and ``test.jsonl``.
ENV_VAR = "GRPO_GSM8K_DIR"

#: The small GSM8K sample shipped with the package (see its README.md for the rows chosen).
FIXTURE_DIR = Path(__file__).resolve().parent / "assets" / "gsm8k_sample"

#: Rows in the full splits (Cobbe et al. 2021): what a full copy must hold.
FULL_SPLIT_SIZES = {"train": 7473, "test": 1319}

#: The course's instruction: reason, then end with the line ``#### <number>`` (the format
#: of GSM8K's own solutions, read by ``extract_answer(mode="strict")``).
SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, showing your "
    "reasoning. Then write the final answer on its own last line in the form "
    "'#### <number>', with the number only (no units), for example:\n#### 42"
)

#: The tiny model's plain prompt (the same as ``grpo_lib.tasks.PROMPT_TEMPLATE``).
PLAIN_PROMPT_TEMPLATE = "Q: {question}\nA:\n"


@dataclass(frozen=True)
class GSM8KExample:
    """One GSM8K row.

    ``answer`` is the full worked solution as in the source; ``final_answer`` the text
    after its ``####`` (e.g. ``"1,200"``); ``final_value`` that number as a float.
    """

    question: str
    answer: str
    final_answer: str
    final_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer,
                "final_answer": self.final_answer, "final_value": self.final_value}


@dataclass
class GSM8KSplit(Sequence):
    """The rows of one split, plus where they came from and what was skipped.

    Behaves as a sequence of ``GSM8KExample`` (``len``, indexing, slicing, iteration).
    ``skipped`` lists ``(line_number, reason)`` of malformed rows dropped with
    ``skip_bad_rows=True``; ``num_skipped`` counts them. ``is_fixture`` is True when the
    rows are the small sample shipped with the package (``FIXTURE_DIR``), not the split.
    """

    split: str
    source: str
    examples: list[GSM8KExample]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    is_fixture: bool = False

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def questions(self) -> list[str]:
        return [e.question for e in self.examples]

    @property
    def final_values(self) -> list[float]:
        return [e.final_value for e in self.examples]

    def to_dicts(self) -> list[dict[str, Any]]:
        """Plain dicts, e.g. for ``datasets.Dataset.from_list``."""
        return [e.to_dict() for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.examples[i]

    def __iter__(self) -> Iterator[GSM8KExample]:
        return iter(self.examples)

    def __repr__(self) -> str:
        fixture = ", fixture=True (a sample, not the GSM8K split)" if self.is_fixture else ""
        return (f"GSM8KSplit(split={self.split!r}, rows={len(self)}, "
                f"skipped={self.num_skipped}, source={self.source!r}{fixture})")


class GSM8KFormatError(ValueError):
    """A malformed GSM8K row; the message names the file and the line."""


class GSM8KNotFoundError(FileNotFoundError):
    """No local copy given and the hub is not reachable."""


# The gold line: "#### " then the number, alone on the last line.
_FINAL_RE = re.compile(r"^####[ \t]*(?P<final>\S.*?)[ \t]*$", re.MULTILINE)


def _parse_row(row: Any) -> GSM8KExample:
    """A dict from the source as a GSM8KExample, or ValueError saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if key not in row:
            raise ValueError(f"missing field {key!r} (fields present: {sorted(row)})")
        if not isinstance(row[key], str) or not row[key].strip():
            raise ValueError(f"field {key!r} must be a non-empty string, got {row[key]!r}")
    finals = _FINAL_RE.findall(row["answer"])
    if not finals:
        raise ValueError("the answer has no final line '#### <number>'")
    value = parse_number(finals[-1])
    if value is None:
        raise ValueError(f"the final line '#### {finals[-1]}' holds no number")
    return GSM8KExample(row["question"], row["answer"], finals[-1], value)


def _load_jsonl(path: Path, skip_bad_rows: bool) -> tuple[list[GSM8KExample], list[tuple[int, str]]]:
    examples, skipped = [], []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue  # a trailing blank line is not a row
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"bad JSON ({err.msg} at column {err.colno})") from None
                examples.append(_parse_row(row))
            except ValueError as err:
                if not skip_bad_rows:
                    raise GSM8KFormatError(
                        f"{path}:{lineno}: {err}. Fix or remove that line, or pass "
                        "skip_bad_rows=True to skip malformed rows (they are counted)."
                    ) from None
                skipped.append((lineno, str(err)))
    return examples, skipped


def _load_hub(split: str, skip_bad_rows: bool) -> tuple[list[GSM8KExample], list[tuple[int, str]], str]:
    how_to_fix = (
        "Either (1) pass data_dir= (or set the environment variable "
        f"{ENV_VAR}) to a folder holding train.jsonl and test.jsonl from "
        "github.com/openai/grade-school-math (in this course: ../shared/gsm8k), or "
        "(2) install the hub extra (pip install \"grpo-lib[hub]\") and run once with "
        "access to the Hugging Face hub so that 'openai/gsm8k' (config 'main') is cached."
    )
    try:
        import datasets  # optional dependency: the "hub" extra
    except ImportError:
        raise GSM8KNotFoundError(
            f"GSM8K: no local folder given ({ENV_VAR} is not set) and the 'datasets' "
            f"package is not installed. {how_to_fix}"
        ) from None
    try:
        ds = datasets.load_dataset("openai/gsm8k", "main", split=split)
    except Exception as err:  # offline, no cache, network error: all the same fix
        raise GSM8KNotFoundError(
            f"GSM8K: no local folder given ({ENV_VAR} is not set) and the Hugging Face "
            f"data set 'openai/gsm8k' could not be loaded ({type(err).__name__}: "
            f"{str(err)[:200]}). {how_to_fix}"
        ) from err
    examples, skipped = [], []
    for i, row in enumerate(ds):
        try:
            examples.append(_parse_row(row))
        except ValueError as err:
            if not skip_bad_rows:
                raise GSM8KFormatError(f"openai/gsm8k[{split}] row {i}: {err}") from None
            skipped.append((i, str(err)))
    return examples, skipped, f"hf://openai/gsm8k/main/{split}"


def load_gsm8k(split: Split = "test", data_dir: str | os.PathLike | None = None, *,
               skip_bad_rows: bool = False, limit: int | None = None,
               fixture_fallback: bool = True) -> GSM8KSplit:
    """Load one GSM8K split as a ``GSM8KSplit`` of ``GSM8KExample`` rows, in file order.

    Source: ``data_dir``, else ``$GRPO_GSM8K_DIR``, else the hub data set ``openai/gsm8k``
    (config ``main``) via ``datasets``, else (``fixture_fallback=True``) the 68-row
    fixture shipped with the package, announced on stderr and marked ``is_fixture``.
    With ``fixture_fallback=False`` and neither folder nor hub: ``GSM8KNotFoundError``
    saying both ways to fix it.

    A malformed row (bad JSON, a missing or empty field, no ``#### <number>`` line)
    raises ``GSM8KFormatError`` naming ``file:line``; with ``skip_bad_rows=True`` it is
    skipped, listed in ``.skipped`` and reported in one warning.
    ``limit`` keeps the first ``limit`` rows (after skipping).

    Evaluate on ``"test"`` (held out), train on ``"train"``: never the other way round.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None; got {limit}")
    folder = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if folder is not None:
        folder = Path(folder).expanduser()
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            origin = "data_dir" if data_dir is not None else f"${ENV_VAR}"
            raise GSM8KNotFoundError(
                f"{origin}={str(folder)!r} has no {split}.jsonl: point it at a folder "
                "holding train.jsonl and test.jsonl (github.com/openai/grade-school-math "
                "format; in this course ../shared/gsm8k)"
            )
        examples, skipped = _load_jsonl(path, skip_bad_rows)
        source = str(path)
    else:
        try:
            examples, skipped, source = _load_hub(split, skip_bad_rows)
        except GSM8KNotFoundError as err:
            if not fixture_fallback:
                raise
            path = FIXTURE_DIR / f"{split}.jsonl"
            examples, skipped = _load_jsonl(path, skip_bad_rows)
            source = str(path)
            cause = err.__cause__
            hub_reason = f"{type(cause).__name__}: {cause}" if cause is not None else "the 'datasets' package is not installed"
            print(f"GSM8K {split}: using the {len(examples)}-row FIXTURE shipped with grpo_lib ({FIXTURE_DIR}), "
                  f"NOT the data set: enough to run the code, not a GSM8K result. No full copy ({ENV_VAR} is "
                  f"unset) and no hub ({hub_reason[:120]}). For the full split: set {ENV_VAR}, or install "
                  "grpo-lib[hub] with network access.", file=sys.stderr, flush=True)
    if skipped:
        first = ", ".join(f"line {n}: {why}" for n, why in skipped[:3])
        warnings.warn(f"GSM8K {split}: skipped {len(skipped)} malformed rows of {source} "
                      f"({first}{', ...' if len(skipped) > 3 else ''})", stacklevel=2)
    if limit is not None:
        examples = examples[:limit]
    is_fixture = Path(source).parent.resolve() == FIXTURE_DIR if not source.startswith("hf://") else False
    return GSM8KSplit(split=split, source=source, examples=examples, skipped=skipped, is_fixture=is_fixture)


def local_gsm8k_dir() -> Path | None:
    """The course's offline GSM8K folder: ``$GRPO_GSM8K_DIR`` if set, else
    ``<checkout>/../shared/gsm8k`` when it holds ``test.jsonl``; None otherwise (then
    ``load_gsm8k`` falls back to the hub)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    candidate = Path(__file__).resolve().parents[2] / "shared" / "gsm8k"
    return candidate if (candidate / "test.jsonl").is_file() else None


# ---------------------------------------------------------------------------- prompts
_CALC_RE = re.compile(r"<<[^<>]*>>")


def clean_solution(answer: str) -> str:
    """A GSM8K solution without its calculator annotations: ``"48/2 = <<48/2=24>>24"``
    becomes ``"48/2 = 24"``. Used for few-shot examples, so the model is not shown a
    notation it should not produce."""
    return _CALC_RE.sub("", answer)


FewShot = Sequence[GSM8KExample] | Sequence[tuple[str, str]]


def build_chat_prompt(tokenizer: Any, question: str, system_prompt: str | None = SYSTEM_PROMPT,
                      few_shot: FewShot = (), **template_kwargs: Any) -> str:
    """The prompt text for an instruct model, through the tokenizer's own chat template.

    Messages: the system prompt (if not None), then for each few-shot example a user turn
    (its question) and an assistant turn (its cleaned solution, ending ``#### n``), then
    the question. Rendered with ``add_generation_prompt=True`` so the text ends where
    the assistant's answer begins; without it the model continues the user's turn.
    ``template_kwargs`` go to ``apply_chat_template`` (e.g. ``enable_thinking=False``).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "the tokenizer has no chat template (tokenizer.chat_template is None): use "
            "build_plain_prompt(question) for a base or tiny model, or set "
            "tokenizer.chat_template"
        )
    messages: list[dict[str, str]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    for i, ex in enumerate(few_shot):
        if isinstance(ex, GSM8KExample):
            q, a = ex.question, clean_solution(ex.answer)
        elif isinstance(ex, (tuple, list)) and len(ex) == 2:
            q, a = ex
        else:
            raise TypeError(f"few_shot[{i}] must be a GSM8KExample or a (question, answer) "
                            f"pair; got {type(ex).__name__}")
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **template_kwargs)


def build_plain_prompt(question: str) -> str:
    """The tiny model's plain prompt: ``"Q: <question>\\nA:\\n"`` (no chat template)."""
    return PLAIN_PROMPT_TEMPLATE.format(question=question)
