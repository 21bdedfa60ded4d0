"""grpo_lib.rewards: TRL signature, chat-style completions, the format traps, validation."""

from __future__ import annotations

import re

import pytest

from grpo_lib.rewards import (
    completion_text,
    correctness_reward,
    format_reward,
    lenient_correctness_reward,
)

ALL = [correctness_reward, lenient_correctness_reward, format_reward]


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_names_for_trl_metrics():
    # TRL logs rewards/<reward_func.__name__>/mean.
    assert [f.__name__ for f in ALL] == [
        "correctness_reward", "lenient_correctness_reward", "format_reward"]


COMPLETIONS = [
    "9 * 2 = 18\n#### 18",          # right, formatted
    "9 * 2 = 18\n#### 17",          # wrong, formatted
    "The answer is 18.",            # right, unformatted
    "#### 18<|im_end|>",            # right, formatted, end token
    "I think 18.\n#### 18\nDone.",  # right, but text after the answer line
    "no idea",                      # nothing
]


def test_correctness_strict_vs_lenient_by_hand():
    gold = [18] * len(COMPLETIONS)
    assert correctness_reward(None, COMPLETIONS, gold) == [1, 0, 0, 1, 1, 0]
    assert lenient_correctness_reward(None, COMPLETIONS, gold) == [1, 0, 1, 1, 1, 0]
    assert format_reward(None, COMPLETIONS) == [1, 1, 0, 1, 0, 0]


def test_chat_style_completions_give_the_same_rewards():
    gold = ["18"] * len(COMPLETIONS)
    prompts = [[{"role": "user", "content": "q"}]] * len(COMPLETIONS)
    for f in ALL:
        assert f(prompts, [chat(c) for c in COMPLETIONS], answer=gold) == f(
            prompts, COMPLETIONS, answer=gold)


def test_trl_style_keyword_call_with_extra_columns():
    # TRL calls reward_func(prompts=..., completions=..., completion_ids=..., **columns)
    out = correctness_reward(prompts=["p", "p"], completions=["#### 3", "#### 4"],
                             completion_ids=[[1], [2]], answer=[3, 3], question=["q", "q"],
                             trainer_state=None)
    assert out == [1.0, 0.0]
    assert all(isinstance(r, float) for r in out)


def test_gold_may_be_a_full_gsm8k_solution_or_a_comma_string():
    sol = "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    assert correctness_reward(None, ["#### 18", "#### 9"], [sol, sol]) == [1.0, 0.0]
    assert correctness_reward(None, ["#### 1200", "#### 1,200.00"], ["1,200", 1200]) == [1.0, 1.0]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Step one.\nStep two.\n#### 42", 1.0),
        ("#### -3", 1.0),                       # isdigit / \d+ trap
        ("so\n#### 2.5", 1.0),                  # decimal
        ("so\n#### 1,234", 1.0),
        ("so\n#### 42<|im_end|>", 1.0),         # chat end token
        ("so\n#### 42\n\n   \n", 1.0),          # trailing blank lines
        ("so\n#### 42<|eot_id|>\n", 1.0),
        ("so\n####42", 1.0),
        ("so\n#### 42\nmore text", 0.0),        # answer line is not last
        ("so\n#### forty-two", 0.0),
        ("so\n#### ", 0.0),
        ("so\n##### 42", 0.0),                  # a heading, not the marker
        ("The answer is 42", 0.0),
        ("", 0.0),
        ("<|im_end|>", 0.0),
        ("#### 0", 1.0),                        # the degenerate completion that games it
    ],
)
def test_format_reward_cases(text, expected):
    assert format_reward(None, [text]) == [expected]
    assert format_reward(None, [chat(text)]) == [expected]


def test_format_reward_beats_the_dotall_trap():
    text = "First 3 + 4 = 7.\nThen 7 * 2 = 14.\n#### 14"
    # The naive pattern seen in tutorials: without DOTALL "." stops at the newline.
    naive = re.compile(r"^.*#### \d+$")
    assert naive.match(text) is None
    assert format_reward(None, [text]) == [1.0]


@pytest.mark.parametrize("f", ALL)
def test_mismatched_lengths_name_the_argument(f):
    with pytest.raises(ValueError, match=r"prompts has 1 items but completions has 2"):
        f(["p"], ["#### 1", "#### 2"], answer=[1, 2])
    if f is not format_reward:
        with pytest.raises(ValueError, match=r"answer has 3 items but completions has 2"):
            f(None, ["#### 1", "#### 2"], answer=[1, 2, 3])
        with pytest.raises(ValueError, match=r"answer is required"):
            f(None, ["#### 1"], answer=None)


def test_unreadable_gold_names_the_index():
    with pytest.raises(ValueError, match=r"answer\[1\]: cannot read a gold answer"):
        correctness_reward(None, ["#### 1", "#### 2"], [1, "two"])


def test_completion_text():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    assert completion_text([{"role": "user", "content": "q"},
                            {"role": "assistant", "content": "a1"},
                            {"role": "assistant", "content": "a2"}]) == "a2"
    assert completion_text([{"content": "x"}]) == "x"  # TRL docs omit the role
    assert completion_text([{"role": "assistant",
                             "content": [{"type": "text", "text": "#### 5"}]}]) == "#### 5"
    with pytest.raises(ValueError, match="no assistant message"):
        completion_text([{"role": "user", "content": "q"}])
    with pytest.raises(TypeError, match="a completion must be a str"):
        completion_text(42)  # type: ignore[arg-type]
