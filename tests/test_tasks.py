"""The synthetic task: reproducible, well-formed, and train/test never overlap."""

from __future__ import annotations

import random
import re

import pytest

from grpo_lib.answers import extract_answer
from grpo_lib.tasks import (format_prompt, make_dataset, make_problem, shortcut_solution, shows_work,
                            shows_work_reward, split_of)


def test_same_seed_same_problems_other_seed_different():
    a = make_dataset(200, "train", seed=1)
    b = make_dataset(200, "train", seed=1)
    c = make_dataset(200, "train", seed=2)
    assert a == b
    assert [p.question for p in a] != [p.question for p in c]


def test_train_and_test_never_overlap():
    train = {p.question for p in make_dataset(5000, "train", seed=0, unique=False)}
    test = {p.question for p in make_dataset(1000, "test", seed=0)}
    assert not train & test
    assert all(split_of(q) == "test" for q in test)
    assert all(split_of(q) == "train" for q in train)
    # and test sets drawn with another seed stay on their side too
    assert not train & {p.question for p in make_dataset(300, "test", seed=7)}


def test_unique_means_unique():
    ds = make_dataset(1000, "test", seed=0)
    assert len({p.question for p in ds}) == 1000


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_solution_arithmetic_is_right_and_ends_in_answer_line(difficulty):
    for p in make_dataset(300, "train", seed=3, difficulty=difficulty, unique=False):
        lines = p.solution.split("\n")
        assert lines[-1] == f"#### {p.answer}"
        assert len(lines) - 1 == p.num_steps <= difficulty
        value = None
        for line in lines[:-1]:
            m = re.fullmatch(r"(\d+)([+\-*])(\d+)=(\d+)", line)
            assert m, line
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            assert c == {"+": a + b, "-": a - b, "*": a * b}[op]
            assert value is None or a == value  # each step builds on the previous result
            value = c
        assert value == p.answer >= 0
        # the GSM8K extractor reads the tiny task's answer line
        assert extract_answer(p.solution, mode="strict") == p.answer


def test_difficulty_knob_controls_steps():
    steps1 = {p.num_steps for p in make_dataset(200, "train", difficulty=1, unique=False)}
    steps3 = {p.num_steps for p in make_dataset(400, "train", difficulty=3, unique=False)}
    assert steps1 == {1}
    assert steps3 == {1, 2, 3}


def test_bad_arguments():
    with pytest.raises(ValueError, match="difficulty"):
        make_problem(random.Random(0), difficulty=4)
    with pytest.raises(ValueError, match="split"):
        make_dataset(3, "valid")


def test_prompt_format():
    p = make_dataset(1, "test")[0]
    assert p.prompt == format_prompt(p.question) == f"Q: {p.question}\nA:\n"
    assert p.to_dict()["prompt"] == p.prompt


def test_shortcut_adds_up_every_number_of_the_question():
    q = "Ann has 3 pens. She buys 4 more. Then she gives away 2. How many pens does Ann have?"
    assert shortcut_solution(q) == "#### 9"  # the careless habit: 3 + 4 + 2, not 3 + 4 - 2 = 5
    assert shortcut_solution("Kim has 4 bags with 7 cups each. How many cups does Kim have?") == "#### 11"
    with pytest.raises(ValueError, match="no number"):
        shortcut_solution("How many pens?")
    # right exactly when every step is an addition
    for p in make_dataset(300, "train", seed=4, unique=False):
        all_adds = all("+" in line for line in p.solution.split("\n")[:-1])
        if all_adds:
            assert extract_answer(shortcut_solution(p.question), mode="strict") == p.answer


def test_shows_work_tells_the_two_habits_apart():
    for p in make_dataset(100, "train", seed=5, unique=False):
        assert shows_work(p.solution)
        assert not shows_work(shortcut_solution(p.question))
    assert not shows_work("#### 7\n3+4=7")  # working after the answer does not count
    assert shows_work("3 + 4 = 7\n#### 7")
    rewards = shows_work_reward(["q"] * 3, ["3+4=7\n#### 7", "#### 7", [{"role": "assistant", "content": "2*3=6\n#### 6"}]])
    assert rewards == [1.0, 0.0, 1.0]
