"""Strip outputs and execution counts from the exercise and solution notebooks.

    python scripts/strip_notebooks.py               # every notebook in exercises/ and solutions/
    python scripts/strip_notebooks.py --check       # exit 1 if any of them has outputs

The lessons in notebooks/ are the exception: they are committed WITH the outputs of one documented
execution (python scripts/execute_notebooks.py), so that a learner sees results without running
anything. Exercises and solutions stay stripped: the learner's own run is the point of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("exercises", "solutions")  # notebooks/: scripts/execute_notebooks.py


def notebooks() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def strip(nb) -> bool:
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.outputs or cell.execution_count is not None:
                changed = True
            cell.outputs, cell.execution_count = [], None
        for key in ("execution", "papermill"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in ("papermill", "widgets"):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report notebooks that carry outputs")
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    dirty = []
    for path in args.paths or notebooks():
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    for path in dirty:
        print(("has outputs: " if args.check else "stripped: ") + str(path))
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
