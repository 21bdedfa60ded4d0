"""Course material names no document outside the repository.

A learner has the repository and the public sources it cites (papers with their section or
equation, repository files, blogs). Developer notes that are not shipped ("the course guide",
its "seeds", "§7" of it) must not be cited in anything a learner reads: the notebooks, the
exercises and their sources, the solutions, the docs and the READMEs. Cite the paper, the
file or the blog instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: (pattern, what it names), matched case-insensitively
FORBIDDEN: list[tuple[str, str]] = [
    (r"course[\s_-]*guide", "the course guide (developer notes, not in the repository)"),
    (r"guide\W{0,4}§", "a section of a guide the learner does not have"),
    (r"course'?s\s+seeds?\b", "the course's seed documents"),
    (r"\bseeds?'s?\s+headline", "the seed documents' headline numbers"),
    (r"\bthe\s+seeds'", "the seed documents"),
    (r"\bthe\s+seeds\s+(say|said|report|claim|give)", "the seed documents"),
]


def learner_files() -> list[Path]:
    """Everything a learner reads: notebooks, exercises (and their sources), solutions, docs, READMEs."""
    files: list[Path] = []
    for folder, patterns in (("notebooks", ["*.ipynb"]), ("exercises", ["*.ipynb", "*.md", "src/*.py"]),
                             ("solutions", ["*.ipynb"]), ("docs", ["**/*.md"])):
        for pattern in patterns:
            files.extend(sorted((ROOT / folder).glob(pattern)))
    files.extend(sorted(ROOT.glob("*.md")))
    return files


def offences(text: str) -> list[str]:
    found = []
    for pattern, what in FORBIDDEN:
        for m in re.finditer(pattern, text, re.IGNORECASE):
            start = max(0, m.start() - 40)
            found.append(f"{what}: ...{text[start:m.end() + 20]!r}...")
    return found


def test_the_patterns_catch_what_they_must_and_nothing_else():
    for bad in ["see the course guide §7", "(course guide, §3)", "COURSE_GUIDE section 2", "the course's seeds say",
                "the seed's headline numbers", "So the seeds' \"about half\"", "the seeds say it halves"]:
        assert offences(bad), bad
    for fine in ["DeepSeekMath §4.1.2", "DAPO (arXiv 2503.14476, §3.1)", "the same seed gives the same run",
                 "over seeds the difference stays small", "SEED = 0", "a guide to the notebooks"]:
        assert not offences(fine), fine


def test_there_are_learner_files():
    names = {p.relative_to(ROOT).parts[0] for p in learner_files()}
    assert {"notebooks", "exercises", "solutions", "docs", "README.md"} <= names


@pytest.mark.parametrize("path", learner_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_documents_outside_the_repository(path: Path):
    found = offences(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(ROOT)} cites what a learner cannot read:\n  " + "\n  ".join(found)
