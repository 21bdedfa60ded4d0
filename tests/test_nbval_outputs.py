"""The stored outputs of the lessons' deterministic cells match a fresh execution (nbval).

Lessons are committed with the outputs of ``python scripts/execute_notebooks.py`` (smoke profile,
seeded, one thread). A cell whose output is exact (a worked example, a table, an identity) carries the
comment ``# NBVAL_CHECK_OUTPUT``; this test re-executes every lesson that has such cells with
``pytest --nbval-lax`` in the same profile and fails when a marked cell's output changed (a changed
library, model or notebook that left a stale number behind). Unmarked cells are executed, not compared;
``tests/nbval_sanitize.cfg`` masks durations and memory addresses. Run it alone:

    pytest tests/test_nbval_outputs.py -m notebook
    # what it runs, for one notebook:
    OMP_NUM_THREADS=1 PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= \\
      MPLBACKEND=module://matplotlib_inline.backend_inline \\
      pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks/00_welcome.ipynb
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
MARKER = "# NBVAL_CHECK_OUTPUT"
CHECKED = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if MARKER in p.read_text(encoding="utf-8"))


def _profile_env(tmp_path: Path) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rc = tmp_path / "matplotlibrc"
    rc.write_text(f"figure.dpi: {module.DPI}\nsavefig.dpi: {module.DPI}\n")
    return {**os.environ, **module.ENV, "MATPLOTLIBRC": str(rc)}


def _nbval(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
         "-p", "no:cacheprovider", "-q", str(path)],
        cwd=ROOT, env=_profile_env(tmp_path), capture_output=True, text=True, timeout=1200,
    )


def test_some_lessons_have_checked_cells():
    assert any(p.name.startswith("05_") for p in CHECKED), "notebook 05 lost its # NBVAL_CHECK_OUTPUT cells"


@pytest.mark.notebook
@pytest.mark.parametrize("path", CHECKED, ids=[p.name for p in CHECKED])
def test_stored_outputs_match_a_fresh_execution(path: Path, tmp_path: Path):
    import torch

    if torch.backends.mps.is_available():  # pick_device("auto") would take the Apple GPU: other samples
        pytest.skip("the stored outputs come from a CPU execution; this machine would run the notebooks on MPS")
    result = _nbval(path, tmp_path)
    assert result.returncode == 0, (
        f"nbval: the stored outputs of {path.name} differ from a fresh execution (or it failed). If the change is "
        f"intended, run python scripts/execute_notebooks.py {path.relative_to(ROOT)} and commit.\n"
        + result.stdout[-6000:] + result.stderr[-2000:])


@pytest.mark.notebook
def test_nbval_fails_when_a_stored_output_is_stale(tmp_path: Path):
    """The check can fail: change one stored number of a checked cell and nbval must report it."""
    import nbformat

    src = ROOT / "notebooks" / "00_welcome.ipynb"
    nb = nbformat.read(src, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and MARKER in c.source and "group_advantages" in c.source)
    stream = next(o for o in cell.outputs if o.output_type == "stream")
    assert "0.866" in stream.text
    stream.text = stream.text.replace("0.866", "0.867", 1)
    stale = ROOT / "notebooks" / f"_stale_copy_{os.getpid()}.ipynb"   # same folder: the notebook reads ../
    try:
        nbformat.write(nb, stale)
        result = _nbval(stale, tmp_path)
    finally:
        stale.unlink(missing_ok=True)
    assert result.returncode != 0 and "0.867" in result.stdout, result.stdout[-3000:]
