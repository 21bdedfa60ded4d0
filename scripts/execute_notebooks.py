"""Execute the course's notebooks and store their outputs in place, so that a notebook opened on
GitHub or Colab shows its results and figures without running anything.

    python scripts/execute_notebooks.py                          # every notebooks/*.ipynb
    python scripts/execute_notebooks.py notebooks/05_grpo_end_to_end.ipynb
    python scripts/execute_notebooks.py --check                  # only check the stored outputs

The profile of the stored outputs (documented in README and CONTRIBUTING):

* each notebook as committed: ``PROFILE = "smoke"`` and its own ``SEED`` (no parameter is injected,
  so the stored source is exactly what a learner opens);
* one thread (``OMP_NUM_THREADS=1``), ``PYTHONHASHSEED=0``, offline (``HF_HUB_OFFLINE=1``), on the CPU
  (``CUDA_VISIBLE_DEVICES=""``), so that two executions print the same numbers;
* progress bars removed from the stored outputs: they are widgets that a stored notebook shows frozen;
* matplotlib's inline backend, PNG figures at ``figure.dpi = 80`` (a 10-inch figure is 800 pixels wide).
* GSM8K (lessons 06-08) from the full splits: set ``GRPO_GSM8K_DIR`` (or have ``../shared/gsm8k``);
  without them the lessons run on the shipped fixture sample and say so in their outputs.

Exercises and solutions stay stripped (``scripts/strip_notebooks.py``). A notebook whose stored
outputs exceed the size budget (``--budget-mb``, default 1.5) fails: shrink its figures or prints.
``tests/test_notebooks.py`` checks the same rules on the committed files, and
``tests/test_nbval_outputs.py`` re-executes the notebooks with nbval and compares the outputs of the
cells marked ``# NBVAL_CHECK_OUTPUT`` with the stored ones.

For authors, bringing a lesson under this regime:

1. A sentence that states a result of the run is printed by the code (an f-string, or
   ``IPython.display.Markdown``), or the cell asserts it (``assert dapo_clip <= grpo_clip``).
2. Mark the cells whose output is exact with a first line ``# NBVAL_CHECK_OUTPUT`` (exactly that
   line; an explanation goes on the next line): worked examples, tables, identities, seeded samples
   that print no timing. Not: training curves, timings, anything that loads a model with a progress
   bar in the same cell (move the loading to a cell of its own). Check with
   ``pytest tests/test_nbval_outputs.py -m notebook -k NN``; running nbval without ``-lax`` once
   (``--nbval``) shows which other cells are deterministic too.
3. ``python scripts/execute_notebooks.py notebooks/NN_*.ipynb``, look at the figures, commit; remove
   the lesson's number from ``NOT_YET_EXECUTED`` in ``tests/test_notebooks.py``.
4. After editing a lesson, execute it again: a stale output fails ``tests/test_nbval_outputs.py``
   (marked cells) and ``tests/test_notebooks.py`` (execution counts out of order, errors, stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 1.5
DPI = 80
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "HF_HUB_OFFLINE": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


def course_notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def output_bytes(nb) -> int:
    """Bytes of the stored outputs (JSON), the quantity the budget limits."""
    return sum(len(json.dumps(c.outputs)) for c in nb.cells if c.cell_type == "code")


def problems(nb, budget_mb: float = BUDGET_MB) -> list[str]:
    """What is wrong with a notebook's stored outputs; empty when it is a complete, clean execution."""
    out = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    if counts != list(range(1, len(code) + 1)):
        out.append(f"execution counts are {counts}, not 1..{len(code)} in order: execute it top to bottom "
                   "with python scripts/execute_notebooks.py")
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.outputs)]
    if errors:
        out.append(f"cells {errors} stored an error")
    stderr = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.output_type == "stream" and o.name == "stderr" for o in c.outputs)]
    if stderr:
        out.append(f"cells {stderr} stored stderr (a warning or a progress bar): fix its cause")
    size = output_bytes(nb)
    if size > budget_mb * 2**20:
        out.append(f"stored outputs are {size / 2**20:.2f} MB, over the budget of {budget_mb} MB")
    formats = {k for c in code for o in c.outputs for k in o.get("data", {}) if k.startswith("image/")}
    if formats - {"image/png"}:
        out.append(f"figures stored as {sorted(formats)}: store PNG only")
    return out


PROGRESS_BAR = re.compile(r"\d+%\|.*\||\d+it \[")  # tqdm's text: "eval: 40%|####  | 80/200 [..]", "0it [.."
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def drop_progress_bars(nb) -> None:
    """Remove tqdm's progress-bar widgets from the outputs (a stored notebook shows them frozen, often at
    0%), and keep in the notebook's widget state only the models that a remaining output displays."""
    views = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for o in cell.outputs:
            data = o.get("data", {})
            if WIDGET_VIEW in data and PROGRESS_BAR.search(str(data.get("text/plain", ""))):
                continue
            if WIDGET_VIEW in data:
                views.append(data[WIDGET_VIEW]["model_id"])
            kept.append(o)
        cell.outputs = kept
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state")
    if state is None:
        return
    keep, todo = set(), [v for v in views if v in state]
    while todo:  # the displayed widgets and every model they reference ("IPY_MODEL_<id>")
        mid = todo.pop()
        if mid in keep:
            continue
        keep.add(mid)
        todo += [m for m in re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[mid])) if m in state]
    if keep:
        nb.metadata["widgets"][WIDGET_STATE]["state"] = {k: v for k, v in state.items() if k in keep}
    else:
        del nb.metadata["widgets"]


def execute(path: Path, timeout: int = 900) -> tuple[float, int]:
    """Execute one notebook in the documented profile and write it back with its outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory() as tmp:
        rc = Path(tmp) / "matplotlibrc"
        rc.write_text(f"figure.dpi: {DPI}\nsavefig.dpi: {DPI}\n")
        os.environ["MATPLOTLIBRC"] = str(rc)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - t0
    for cell in nb.cells:  # timing metadata changes at every run: keep the diff to the outputs
        cell.metadata.pop("execution", None)
    drop_progress_bars(nb)
    nbformat.write(nb, path)
    return seconds, output_bytes(nb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to execute (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="do not execute, only check the stored outputs")
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB, help="size budget of a notebook's outputs")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.paths] or course_notebooks()
    bad = 0
    for path in paths:
        if path.parent.name in ("exercises", "solutions"):
            print(f"skipped {path.name}: exercises and solutions stay stripped", file=sys.stderr)
            continue
        if not args.check:
            seconds, size = execute(path)
            print(f"executed {path.relative_to(ROOT)} in {seconds:.0f} s, outputs {size / 1024:.0f} KB")
        found = problems(nbformat.read(path, as_version=4), args.budget_mb)
        for p in found:
            print(f"{path.relative_to(ROOT)}: {p}", file=sys.stderr)
        bad += bool(found)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
