"""Every notebook of the course: stored outputs, parameters, and a smoke-profile execution.

Lessons (``notebooks/``) are committed WITH the outputs of one documented execution
(``python scripts/execute_notebooks.py``: smoke profile, seeded, one thread, PNG figures), so that a
notebook opened on GitHub or Colab shows its results; exercises and solutions are committed stripped
(``python scripts/strip_notebooks.py``). ``tests/test_nbval_outputs.py`` checks that the stored outputs
of the deterministic cells match a fresh execution.

papermill injects ``PROFILE = "smoke"`` after each notebook's ``parameters`` cell, exactly as
an instructor or CI would run it. The notebooks' own ``assert`` statements are what make a run
mean something: an error or a failed assertion fails the test.

    pytest -m notebook                       # all notebooks
    pytest -m notebook -k 03                 # one
    pytest -m "not notebook"                 # the fast unit tests only
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p for folder in ("notebooks", "solutions") for p in (ROOT / folder).glob("*.ipynb")
)
IDS = [f"{p.parent.name}/{p.name}" for p in NOTEBOOKS]
STRIPPED = sorted(p for folder in ("exercises", "solutions") for p in (ROOT / folder).glob("*.ipynb"))
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Lessons not yet executed with scripts/execute_notebooks.py (they must still be stripped). Transitional:
# empty it once every lesson has been executed and committed with its outputs.
NOT_YET_EXECUTED: set[str] = set()  # by number (NN_*.ipynb): lessons not yet brought under the stored-outputs regime


def _execute_notebooks_module():
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_notebooks():
    assert any(p.parent.name == "notebooks" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_parametrised(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert tagged[0].source.lstrip().startswith('PROFILE = "smoke"'), (
        f"{path.name}: the parameters cell must start with PROFILE = \"smoke\" (the profile of the stored outputs)")


@pytest.mark.parametrize("path", STRIPPED, ids=[f"{p.parent.name}/{p.name}" for p in STRIPPED])
def test_exercises_and_solutions_are_stripped(path: Path):
    nb = nbformat.read(path, as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"{path.name}: cells {with_outputs} store outputs; run python scripts/strip_notebooks.py"


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_stores_the_outputs_of_one_clean_execution(path: Path):
    """Executed top to bottom (execution counts 1..n), no error or stderr, PNG figures, within the budget."""
    nb = nbformat.read(path, as_version=4)
    if path.name[:2] in NOT_YET_EXECUTED:
        stored = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not stored, f"{path.name} is listed as not yet executed but stores outputs in cells {stored}"
        return
    problems = _execute_notebooks_module().problems(nb)
    assert not problems, f"{path.name}: " + "; ".join(problems) + " (python scripts/execute_notebooks.py)"


def test_output_checks_catch_a_bad_execution():
    """The rules above fail on what they guard against: an out-of-order, failed, oversized execution."""
    problems = _execute_notebooks_module().problems
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")])
    nb.cells[0].execution_count, nb.cells[1].execution_count = 1, 2
    assert problems(nb) == []
    nb.cells[1].execution_count = 5
    assert any("execution counts" in p for p in problems(nb))
    nb.cells[1].execution_count = 2
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])]
    assert any("error" in p for p in problems(nb))
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "A" * 2_000_000})]
    assert any("budget" in p for p in problems(nb))
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg/>"})]
    assert any("PNG" in p for p in problems(nb))


def _sources(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    return path.read_text()


def test_beta_slider_holds_every_beta_the_course_names():
    """Notebook 05's β widget offers exactly the values the course names, so a browser cannot snap one
    of them to a neighbour (a FloatLogSlider sent 0.0316 back for 0.04)."""
    nb = nbformat.read(ROOT / "notebooks" / "05_grpo_end_to_end.ipynb", as_version=4)
    cell = next(c.source for c in nb.cells if "BETA_CHOICES =" in c.source)
    choices = next(ast.literal_eval(node.value) for node in ast.walk(ast.parse(cell))
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "BETA_CHOICES")
    assert 'description="β (KL)"' in cell and "SelectionSlider(" in cell and "value=0.04" in cell
    named = set()
    for path in [*LESSONS, *sorted((ROOT / "exercises" / "src").glob("*.py"))]:
        text = _sources(path)
        named |= {float(v) for v in re.findall(r"(?:\bbeta|β)\s*=\s*(\d+(?:\.\d+)?(?:e-?\d+)?)\b", text)}
        for values in re.findall(r"BETAS\s*=\s*\[([^\]]*)\]", text):
            named |= {float(v) for v in values.split(",") if v.strip()}
    assert {0.0, 0.04} <= named, named  # the scan finds what it should
    missing = sorted(named - set(choices))
    assert not missing, f"β values named in the course but not on notebook 05's slider: {missing}"

    import ipywidgets as widgets

    slider = widgets.SelectionSlider(options=[(f"{b:g}", b) for b in choices], value=0.04)
    for b in named:
        slider.index = [v for _, v in slider.options].index(b)   # what a browser sends: an index
        assert slider.value == b


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_smoke_profile(path: Path, tmp_path: Path):
    import papermill as pm

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        parameters={"PROFILE": "smoke"},
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=900,
    )
    print(f"{path.parent.name}/{path.name}: {time.perf_counter() - t0:.1f} s")


@pytest.mark.notebook
def test_wrong_parameter_type_fails_with_a_clear_message(tmp_path: Path):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError, match="SEED must be int, got str"):
        pm.execute_notebook(
            str(ROOT / "notebooks" / "00_welcome.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"PROFILE": "smoke", "SEED": "zero"},
            kernel_name="python3",
            progress_bar=False,
        )
