"""Every notebook of the course, executed top to bottom in the smoke profile.

papermill injects ``PROFILE = "smoke"`` after each notebook's ``parameters`` cell, exactly as
an instructor or CI would run it. The notebooks' own ``assert`` statements are what make a run
mean something: an error or a failed assertion fails the test.

    pytest -m notebook                       # all notebooks
    pytest -m notebook -k 03                 # one
    pytest -m "not notebook"                 # the fast unit tests only
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p for folder in ("notebooks", "solutions") for p in (ROOT / folder).glob("*.ipynb")
)
IDS = [f"{p.parent.name}/{p.name}" for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert any(p.parent.name == "notebooks" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_clean_and_parametrised(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
    assert not with_outputs, f"{path.name}: cells {with_outputs} store outputs; run python scripts/strip_notebooks.py"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert tagged[0].source.lstrip().startswith("PROFILE ="), f"{path.name}: the parameters cell must start with PROFILE ="


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
