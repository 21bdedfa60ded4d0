"""A synthetic task family shaped like GSM8K, small enough for a tiny model on a CPU.

Each problem is a short templated word problem about one-digit quantities. Its worked
solution writes one equation per line and ends, exactly like GSM8K, in a line
``#### <number>``, so the same answer extraction (``grpo_lib.answers.extract_answer``)
and the same reward functions (``grpo_lib.rewards``) serve both tasks::

    Q: Ann has 3 pens. She buys 4 more. Then she gives away 2. How many pens does Ann have?
    A:
    3+4=7
    7-2=5
    #### 5

Difficulty knob: ``difficulty`` is the largest number of reasoning steps (1 to 3); a
problem has between 1 and ``difficulty`` steps, drawn uniformly. Operands are 1..9
(multiplication keeps the product below 100; subtraction never goes below 0).

Two habits: besides the worked solution, ``shortcut_solution`` gives the answer a hurried
solver writes, "add up every number in the question" (``#### 3+4+2`` -> ``#### 9``), with no
working. It is right only when every step is an addition. ``scripts/pretrain_tiny.py``
mixes both habits into the tiny model's supervised data, the way a real base model has
seen both careful and careless solutions; ``shows_work`` tells them apart in a sample.
GRPO's reward is the only thing that says which habit pays.

Train/test split: a problem belongs to the test split iff a hash of its question text
falls in a fixed bucket (``TEST_BUCKET``, about 1 in 8). Train sampling rejects every
test-bucket question and vice versa, so the two splits never share a question,
whatever the seeds or sizes.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "Problem",
    "make_problem",
    "make_dataset",
    "format_prompt",
    "split_of",
    "shortcut_solution",
    "shows_work",
    "shows_work_reward",
    "PROMPT_TEMPLATE",
]

Split = Literal["train", "test"]

#: The prompt the model sees; the completion is the worked solution plus EOS.
PROMPT_TEMPLATE = "Q: {question}\nA:\n"

#: 1 in ``_NUM_BUCKETS`` questions (by hash) is reserved for the test split.
_NUM_BUCKETS = 8
TEST_BUCKET = 0

_NAMES = ["Ann", "Ben", "Cal", "Dee", "Eva", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lou"]
_ITEMS = ["pens", "apples", "cards", "books", "eggs", "coins", "shells", "cups", "toys", "balls"]
_PRONOUN = {
    "Ann": "She", "Ben": "He", "Cal": "He", "Dee": "She", "Eva": "She", "Fay": "She",
    "Gus": "He", "Hal": "He", "Ivy": "She", "Jon": "He", "Kim": "She", "Lou": "He",
}


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, the worked solution (ending ``#### n``), the answer."""

    question: str
    solution: str
    answer: int
    num_steps: int

    @property
    def prompt(self) -> str:
        return format_prompt(self.question)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompt"] = self.prompt
        return d


def format_prompt(question: str) -> str:
    """The prompt string for a question (``PROMPT_TEMPLATE``)."""
    return PROMPT_TEMPLATE.format(question=question)


def shortcut_solution(question: str) -> str:
    """The careless habit: ``#### <sum of every number written in the question>``, no working.

    >>> shortcut_solution("Ann has 3 pens. She buys 4 more. Then she gives away 2. How many pens does Ann have?")
    '#### 9'
    """
    numbers = [int(x) for x in re.findall(r"\d+", question)]
    if not numbers:
        raise ValueError(f"question has no number to add up: {question!r}")
    return f"#### {sum(numbers)}"


def shows_work(completion: str) -> bool:
    """True if the completion writes at least one equation (``a<op>b=c``) before its ``####`` line."""
    head = completion.split("####", 1)[0]
    return re.search(r"\d\s*[-+*/]\s*\d+\s*=", head) is not None


def shows_work_reward(prompts, completions, **columns) -> list[float]:
    """TRL-signature diagnostic: 1.0 where the completion shows its work (:func:`shows_work`).

    The tiny preset passes it with weight 0: it does not change the reward, but the trainer
    logs it as ``rewards/shows_work_reward/mean``, the fraction of sampled completions that
    use the careful habit, so a run shows *what* GRPO changed.
    """
    from grpo_lib.rewards import completion_text

    return [1.0 if shows_work(completion_text(c)) else 0.0 for c in completions]


def split_of(question: str) -> Split:
    """Which split a question belongs to: a stable hash (sha1) of its text, not Python's ``hash``."""
    h = int.from_bytes(hashlib.sha1(question.encode("utf-8")).digest()[:4], "big")
    return "test" if h % _NUM_BUCKETS == TEST_BUCKET else "train"


def _first_step(rng: random.Random, name: str, item: str) -> tuple[str, str, int]:
    """The opening sentence(s) and first equation; returns (text, equation, value)."""
    kind = rng.choice(["add", "sub", "mul"])
    if kind == "add":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        text = f"{name} has {a} {item}. {_PRONOUN[name]} buys {b} more."
        return text, f"{a}+{b}={a + b}", a + b
    if kind == "sub":
        a = rng.randint(2, 9)
        b = rng.randint(1, a - 1)
        text = f"{name} has {a} {item}. {_PRONOUN[name]} loses {b}."
        return text, f"{a}-{b}={a - b}", a - b
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    text = f"{name} has {a} bags with {b} {item} each."
    return text, f"{a}*{b}={a * b}", a * b


def _next_step(rng: random.Random, name: str, value: int) -> tuple[str, str, int]:
    """A follow-up sentence acting on the running value; returns (text, equation, value)."""
    options = ["add", "mul"] if value < 2 else ["add", "sub", "mul"]
    if value > 20:
        options = ["add", "sub"]
    kind = rng.choice(options)
    pron = _PRONOUN[name]
    if kind == "add":
        b = rng.randint(1, 9)
        return f"Then {pron.lower()} gets {b} more.", f"{value}+{b}={value + b}", value + b
    if kind == "sub":
        b = rng.randint(1, min(9, value - 1))
        return f"Then {pron.lower()} gives away {b}.", f"{value}-{b}={value - b}", value - b
    b = rng.randint(2, 4)
    word = {2: "doubles", 3: "triples", 4: "quadruples"}[b]
    return f"Then {pron.lower()} {word} them.", f"{value}*{b}={value * b}", value * b


def make_problem(rng: random.Random, difficulty: int = 2) -> Problem:
    """Draw one problem with 1..``difficulty`` steps from ``rng`` (a ``random.Random``)."""
    if not isinstance(difficulty, int) or not 1 <= difficulty <= 3:
        raise ValueError(f"difficulty must be an int in 1..3 (max number of steps), got {difficulty!r}")
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    num_steps = rng.randint(1, difficulty)
    text, eq, value = _first_step(rng, name, item)
    sentences, equations = [text], [eq]
    for _ in range(num_steps - 1):
        text, eq, value = _next_step(rng, name, value)
        sentences.append(text)
        equations.append(eq)
    question = " ".join(sentences) + f" How many {item} does {name} have?"
    solution = "\n".join(equations) + f"\n#### {value}"
    return Problem(question=question, solution=solution, answer=value, num_steps=num_steps)


def make_dataset(
    n: int,
    split: Split = "train",
    seed: int = 0,
    difficulty: int = 2,
    unique: bool = True,
) -> list[Problem]:
    """``n`` problems of one split, reproducible from ``seed``.

    Problems whose question hashes to the other split are rejected, so train and test
    never overlap. With ``unique=True`` no question repeats within the list (the test
    split holds only a few thousand distinct questions at difficulty 1: ask for fewer).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # Different streams for the two splits, so train seed 0 and test seed 0 differ.
    rng = random.Random(f"{split}-{seed}-{difficulty}")
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(
                f"could only draw {len(out)} distinct {split} problems of difficulty {difficulty} "
                f"(asked n={n}); ask for fewer or pass unique=False"
            )
        p = make_problem(rng, difficulty)
        if split_of(p.question) != split:
            continue
        if unique:
            if p.question in seen:
                continue
            seen.add(p.question)
        out.append(p)
    return out
