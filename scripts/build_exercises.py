"""Build the learner and solution notebooks from the one source of each exercise set.

    python scripts/build_exercises.py            # write exercises/NN_*.ipynb and solutions/NN_*.ipynb
    python scripts/build_exercises.py --check    # exit 1 if a committed notebook differs (CI runs this)

The source of exercise set ``NN_topic`` is ``exercises/src/NN_topic.py``, a Python file in
the "percent" cell format (the format jupytext, VS Code, PyCharm and Spyder read as cells;
this script parses it itself, no jupytext needed)::

    # %% [markdown]
    # ## Exercise 1 · The group advantage
    # %% tags=["parameters"]
    PROFILE = "smoke"
    # %%
    def group_advantages(rewards, group_size, eps=1e-4):
        grouped = rewards.view(-1, group_size)      # scaffolding: kept in both versions
        ### HINT: subtract the group mean, divide by the group std plus eps
        ### BEGIN SOLUTION
        centred = grouped - grouped.mean(dim=1, keepdim=True)
        return (centred / (grouped.std(dim=1, keepdim=True) + eps)).reshape(-1)
        ### END SOLUTION

The markers follow nbgrader's convention (``### BEGIN SOLUTION`` / ``### END SOLUTION``):

* learner version (``exercises/``): each solution block becomes
  ``raise NotImplementedError("hint: ...")`` at the marker's indentation, the hint being
  the ``### HINT:`` lines just above it; in a markdown cell the block becomes
  "*Your answer here.*";
* solution version (``solutions/``): the marker and hint lines are removed.

Because the markers are comments, the source itself runs: ``python exercises/src/02_group_baseline.py``
executes the solution. Lines before the first ``# %%`` are a note for authors and are
dropped. Cell ids are stable (``c00``, ``c01``, ...) so that diffs stay small.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
SRC_DIR = ROOT / "exercises" / "src"
EXERCISE_DIR = ROOT / "exercises"
SOLUTION_DIR = ROOT / "solutions"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"
ANSWER_PLACEHOLDER = "*Your answer here.*"

_CELL_RE = re.compile(r"^# %%(?P<rest>.*)$")
_TAGS_RE = re.compile(r"tags\s*=\s*(?P<tags>\[[^\]]*\])")


class SourceError(ValueError):
    """A malformed exercise source; the message names the file and line."""


@dataclass
class Cell:
    kind: str  # "code" or "markdown"
    lines: list[str]
    tags: list[str] = field(default_factory=list)
    line_no: int = 0  # 1-based line of the "# %%" header, for error messages


def parse_percent(text: str, path: Path) -> list[Cell]:
    """Split a percent-format file into cells. Markdown lines lose their leading ``# ``."""
    cells: list[Cell] = []
    current: Cell | None = None
    for no, line in enumerate(text.splitlines(), start=1):
        m = _CELL_RE.match(line)
        if m:
            rest = m.group("rest").strip()
            kind = "markdown" if rest.startswith("[markdown]") else "code"
            tags: list[str] = []
            t = _TAGS_RE.search(rest)
            if t:
                try:
                    tags = json.loads(t.group("tags"))
                except json.JSONDecodeError as err:
                    raise SourceError(f"{path}:{no}: tags must be a JSON list, got {t.group('tags')}: {err}") from None
            current = Cell(kind, [], tags, no)
            cells.append(current)
            continue
        if current is None:
            continue  # the authors' note before the first cell
        if current.kind == "markdown":
            if line.strip() and not (line.startswith("# ") or line == "#"):
                raise SourceError(f"{path}:{no}: a markdown line must start with '# ' (got {line!r})")
            current.lines.append(line[2:] if line.startswith("# ") else "")
        else:
            current.lines.append(line)
    for cell in cells:  # trim blank lines around each cell
        while cell.lines and not cell.lines[-1].strip():
            cell.lines.pop()
        while cell.lines and not cell.lines[0].strip():
            cell.lines.pop(0)
    return cells


def _hint_literal(hint: str, indent: str) -> str:
    """``raise NotImplementedError("hint: ...")``, wrapped in string pieces under 100 columns."""
    message = f"hint: {hint}" if hint else "write your code here"
    one_line = f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})"
    if len(one_line) <= 100:
        return one_line
    pieces = textwrap.wrap(message, width=max(40, 92 - len(indent)), drop_whitespace=False)
    body = "\n".join(f"{indent}    {json.dumps(p, ensure_ascii=False)}" for p in pieces)
    return f"{indent}raise NotImplementedError(\n{body}\n{indent})"


def render(cell: Cell, version: str, path: Path) -> str:
    """The cell's source in the ``"exercise"`` or ``"solution"`` version."""
    out: list[str] = []
    hint: list[str] = []
    in_solution = False
    for offset, line in enumerate(cell.lines):
        stripped = line.strip()
        where = f"{path}:{cell.line_no + 1 + offset}"
        if stripped.startswith(HINT):
            if in_solution:
                raise SourceError(f"{where}: put '{HINT}' lines above '{BEGIN}', not inside the solution")
            hint.append(stripped[len(HINT):].strip())
            continue
        if stripped == BEGIN:
            if in_solution:
                raise SourceError(f"{where}: '{BEGIN}' inside another solution block")
            in_solution = True
            if version == "exercise":
                indent = line[: len(line) - len(line.lstrip())]
                if cell.kind == "code":
                    out.append(_hint_literal(" ".join(hint), indent))
                else:
                    out.append(ANSWER_PLACEHOLDER + (f" (Hint: {' '.join(hint)})" if hint else ""))
            hint = []
            continue
        if stripped == END:
            if not in_solution:
                raise SourceError(f"{where}: '{END}' without '{BEGIN}'")
            in_solution = False
            continue
        if hint:
            raise SourceError(f"{where}: '{HINT}' lines must come right above '{BEGIN}'")
        if in_solution and version == "exercise":
            continue
        out.append(line)
    if in_solution:
        raise SourceError(f"{path}:{cell.line_no}: '{BEGIN}' is never closed by '{END}'")
    if hint:
        raise SourceError(f"{path}:{cell.line_no}: '{HINT}' at the end of a cell, with no solution block after it")
    return "\n".join(out)


def build_notebook(cells: list[Cell], version: str, path: Path) -> str:
    """The notebook file's text (what ``nbformat.write`` would produce, plus a newline)."""
    nb_cells = []
    for i, cell in enumerate(cells):
        source = render(cell, version, path)
        nb_cell = new_code_cell(source) if cell.kind == "code" else new_markdown_cell(source)
        if cell.tags:
            nb_cell.metadata["tags"] = list(cell.tags)
        nb_cell["id"] = f"c{i:02d}"
        nb_cells.append(nb_cell)
    nb = new_notebook(cells=nb_cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def sources() -> list[Path]:
    return sorted(SRC_DIR.glob("[0-9][0-9]_*.py"))


def expected_files() -> dict[Path, str]:
    """Every generated path and the text it must hold."""
    files: dict[Path, str] = {}
    for src in sources():
        cells = parse_percent(src.read_text(encoding="utf-8"), src.relative_to(ROOT))
        n_blocks = sum(line.strip() == BEGIN for c in cells for line in c.lines)
        if n_blocks == 0:
            raise SourceError(f"{src.relative_to(ROOT)}: no '{BEGIN}' block, so no exercise")
        name = src.with_suffix(".ipynb").name
        files[EXERCISE_DIR / name] = build_notebook(cells, "exercise", src.relative_to(ROOT))
        files[SOLUTION_DIR / name] = build_notebook(cells, "solution", src.relative_to(ROOT))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed notebook differs")
    args = parser.parse_args(argv)
    try:
        files = expected_files()
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problems = []
    for path, text in files.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        rel = path.relative_to(ROOT)
        if args.check:
            problems.append(f"{rel} {'is missing' if current is None else 'differs from its source'}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    stale = [
        p for folder in (EXERCISE_DIR, SOLUTION_DIR) for p in sorted(folder.glob("*.ipynb")) if p not in files
    ]
    for p in stale:
        problems.append(f"{p.relative_to(ROOT)} has no source in exercises/src/ (delete it, or add its source)")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        if args.check:
            print("run: python scripts/build_exercises.py  (then commit exercises/ and solutions/)", file=sys.stderr)
        return 1
    if args.check:
        print(f"ok: {len(files)} notebooks match their sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
