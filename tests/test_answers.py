"""grpo_lib.answers: every GSM8K gold answer, and a table of tricky completions."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from grpo_lib.answers import (
    answers_match,
    extract_answer,
    gold_number,
    parse_number,
    strip_special_tokens,
)

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = Path(os.environ.get("GRPO_GSM8K_DIR") or REPO.parent / "shared" / "gsm8k")


FIXTURE_DIR = REPO / "grpo_lib" / "assets" / "gsm8k_sample"


def _gold_rows(split: str, folder: Path):
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        pytest.skip(f"the full GSM8K splits are not here ({path} is missing; a fresh clone has none): "
                    "set GRPO_GSM8K_DIR to a folder holding train.jsonl and test.jsonl to check "
                    "every gold answer; the shipped fixture is checked either way")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("split,expected_rows,where", [
    ("train", 7473, "full"), ("test", 1319, "full"), ("train", 68, "fixture"), ("test", 68, "fixture")])
def test_every_gsm8k_gold_answer_extracts_strictly(split, expected_rows, where):
    rows = _gold_rows(split, GSM8K_DIR if where == "full" else FIXTURE_DIR)
    assert len(rows) == expected_rows
    failures = []
    for i, row in enumerate(rows):
        # Independent reading: the text after the one "####", commas removed, int().
        tail = row["answer"].split("####")[-1].strip()
        expected = float(int(tail.replace(",", "")))
        got = extract_answer(row["answer"], mode="strict")
        if got != expected:
            failures.append((i, tail, got))
        # The lenient reading agrees, and the answer matches its own gold string.
        assert extract_answer(row["answer"], mode="lenient") == got
        assert answers_match(got, tail)
    assert failures == [], f"{len(failures)} gold answers misread, first: {failures[:5]}"


# (completion, strict, lenient, what it checks)
TRICKY = [
    ("48 / 2 = 24\n#### 24", 24, 24, "the course format"),
    ("#### 72", 72, 72, "answer only"),
    ("####72", 72, 72, "no space after the marker"),
    ("so she loses money.\n#### -3", -3, -3, "negative: isdigit() would reject it"),
    ("#### \u22123", -3, -3, "Unicode minus sign"),
    ("#### 2.5", 2.5, 2.5, "decimal: isdigit() would reject it"),
    ("#### .5", 0.5, 0.5, "decimal without a leading zero"),
    ("#### 1,234", 1234, 1234, "thousands comma"),
    ("#### 1,234,567", 1234567, 1234567, "two thousands commas"),
    ("#### $1,234.50.", 1234.5, 1234.5, "currency, comma, decimal, full stop"),
    ("#### $-3", -3, -3, "sign after the currency"),
    ("#### -$3", -3, -3, "sign before the currency"),
    ("#### 50%", 50, 50, "percent sign"),
    ("#### 18 dollars", 18, 18, "trailing unit"),
    ("#### 18.", 18, 18, "trailing full stop"),
    ("#### 3/4", 0.75, 0.75, "a plain fraction"),
    ("#### 1, 2, 3", 1, 1, "a list is not the number 123"),
    ("#### 1,23", 1, 1, "a comma not followed by 3 digits is no thousands separator"),
    ("Reasoning.\n#### 42<|im_end|>", 42, 42, "Qwen chat end token glued to the answer"),
    ("Reasoning.\n#### 42</s>", 42, 42, "Llama-2 style end token"),
    ("Reasoning.\n#### 42<|eot_id|>\n", 42, 42, "Llama-3 end token and a newline"),
    ("#### 42\nThat is all.", 42, 42, "text after the answer line (the DOTALL/MULTILINE trap)"),
    ("#### 10\nWait, I made a mistake.\n#### 12", 12, 12, "the last answer line wins"),
    ("#### Step 1\n3 + 4 = 7\n#### 7\n#### Check\n7 is right", 7, 7,
     "markdown headings are not answers"),
    ("##### 5", None, 5, "five hashes is a heading, not the marker"),
    ("####\n42", None, 42, "number on the line after the marker is not the format"),
    ("#### forty-two", None, None, "words are not numbers"),
    ("#### The answer is 9", None, 9, "strict wants the number right after ####"),
    ("#### **9**", None, 9, "markdown bold is not the format"),
    ("The answer is 12.", None, 12, "'the answer is' only counts leniently"),
    ("So the final answer is: -3.5 degrees.", None, -3.5, "negative decimal with a unit"),
    ("Answer: $1,000", None, 1000, "'Answer:' with currency and comma"),
    ("We get \\boxed{17}.", None, 17, "boxed"),
    ("\\boxed{\\frac{1}{2}}", None, 0.5, "boxed fraction with nested braces"),
    ("\\boxed{1,000}", None, 1000, "boxed with a thousands comma"),
    ("\\boxed{12\\text{ apples}}", None, 12, "boxed with \\text units"),
    ("\\boxed{3} is wrong, the answer is \\boxed{4}", None, 4, "the last box wins"),
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars", None, 18, "last number"),
    ("16-3-4=<<16-3-4=9>>9 eggs", None, 9, "'3-4' is a subtraction, not -4"),
    ("It dropped to -7 degrees", None, -7, "a real negative at the end"),
    ("I have 3 apples and 4 pears.", None, 4, "last number, full stop after it"),
    ("I do not know.", None, None, "no number at all"),
    ("", None, None, "empty completion"),
    ("<|im_end|>", None, None, "only an end token"),
    ("#### 12\n\\boxed{13}", 12, 12, "strict has priority over boxed in lenient mode"),
    ("The answer is 5 and then #### 6", 6, 6, "the marker mid-line still counts"),
]


@pytest.mark.parametrize("text,strict,lenient,why", TRICKY, ids=[t[3] for t in TRICKY])
def test_tricky_completions(text, strict, lenient, why):
    assert extract_answer(text, mode="strict") == strict
    assert extract_answer(text, mode="lenient") == lenient


def test_table_is_large_enough():
    assert len(TRICKY) >= 30


@pytest.mark.parametrize(
    "s,expected",
    [("7", 7), ("-7", -7), ("+7", 7), ("  7 ", 7), ("$7.00", 7), ("1,000,000", 1e6),
     ("0.125", 0.125), ("2/0", None), ("abc", None), ("about 5", None), ("", None),
     (5, 5), (2.5, 2.5), (None, None), (float("nan"), None), (True, None)],
)
def test_parse_number(s, expected):
    assert parse_number(s) == expected


def test_parse_number_rejects_other_types():
    with pytest.raises(TypeError, match="parse_number"):
        parse_number([1, 2])


def test_extract_answer_bad_arguments():
    with pytest.raises(ValueError, match="mode must be"):
        extract_answer("#### 1", mode="loose")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"completion\[-1\]\['content'\]"):
        extract_answer([{"role": "assistant", "content": "#### 1"}])  # type: ignore[arg-type]


def test_answers_match_is_numeric():
    assert answers_match("1,234", 1234)
    assert answers_match("$18.00", "18")
    assert answers_match(0.1 + 0.2, 0.3)
    assert not answers_match(17, 18)
    assert not answers_match(None, 18)
    assert not answers_match("unknown", "unknown")
    assert answers_match(1000.4, 1000, tol=1e-3)  # relative tolerance
    assert not answers_match(1000.4, 1000)


def test_gold_number_reads_every_form():
    assert gold_number(18) == 18.0
    assert gold_number("1,200") == 1200.0
    assert gold_number("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18") == 18.0
    with pytest.raises(ValueError, match="cannot read a gold answer"):
        gold_number("eighteen")


def test_strip_special_tokens():
    assert strip_special_tokens("a<|im_end|>b</s><|endoftext|>") == "ab"
    assert not math.isnan(extract_answer("#### 3<|im_end|><|endoftext|>"))
