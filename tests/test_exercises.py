"""Exercises and solutions are generated from one source, and the learner versions are real blanks.

* ``scripts/build_exercises.py --check`` passes: the committed notebooks are what the sources give.
* The build script turns solution blocks into ``raise NotImplementedError("hint: ...")`` and
  markdown answers into a placeholder, removes every marker, and refuses malformed sources.
* Every lesson from 01 to 07 has exercises (12 or more in all), each followed by its check.
* Executed in-process, every learner notebook reaches each check, and each check says the
  exercise is "not written yet" (the solutions are executed by tests/test_notebooks.py).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_exercises as bx  # noqa: E402

EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
LESSONS = ["01", "02", "03", "04", "05", "06", "07"]
CHECK_CALL = re.compile(r"^check_(\w+)\((\w+)\)", re.MULTILINE)


def test_committed_notebooks_match_their_sources(capsys):
    assert bx.main(["--check"]) == 0, capsys.readouterr().err


def test_every_lesson_has_exercises_and_there_are_at_least_12():
    counts = {}
    for path in EXERCISES:
        nb = nbformat.read(path, as_version=4)
        counts[path.name[:2]] = sum(c.source.count("raise NotImplementedError(") for c in nb.cells
                                    if c.cell_type == "code")
    assert all(counts.get(n, 0) >= 1 for n in LESSONS), counts
    assert sum(counts.values()) >= 12, counts


@pytest.mark.parametrize("path", EXERCISES, ids=[p.name for p in EXERCISES])
def test_learner_and_solution_versions(path: Path):
    learner = nbformat.read(path, as_version=4)
    solution = nbformat.read(ROOT / "solutions" / path.name, as_version=4)
    for nb in (learner, solution):
        nbformat.validate(nb)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0].source.startswith('PROFILE = "smoke"')
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text and "### HINT" not in text
        assert f"notebooks/{path.name}" in nb.cells[0].source, "the title cell links to its lesson"
    learner_text = "\n".join(c.source for c in learner.cells)
    assert "raise NotImplementedError(" not in "\n".join(c.source for c in solution.cells if c.cell_type == "code")
    assert re.search(r'raise NotImplementedError\(\s*"hint: ', learner_text), "every blank carries a hint"
    assert len(learner.cells) == len(solution.cells)
    # each exercise function is checked right after it is defined
    defined = {m.group(2) for c in learner.cells for m in CHECK_CALL.finditer(c.source)}
    blanks = [c for c in learner.cells if c.cell_type == "code" and "raise NotImplementedError(" in c.source]
    for cell in blanks:
        name = re.search(r"^def (\w+)", cell.source, re.MULTILINE).group(1)
        assert name in defined, f"{path.name}: {name} has no check_...({name}) cell"


@pytest.mark.parametrize("path", EXERCISES, ids=[p.name for p in EXERCISES])
def test_learner_notebook_checks_say_not_written_yet(path: Path, capsys):
    """Run the learner version's cells in one namespace: each check must report the blank."""
    from grpo_lib.checks import CheckFailed

    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(path.parent)
    checked = 0
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if CHECK_CALL.match(cell.source):
                with pytest.raises(CheckFailed, match="not written yet"):
                    exec(compile(cell.source, f"{path.name}", "exec"), namespace)
                checked += 1
                continue
            try:
                exec(compile(cell.source, f"{path.name}", "exec"), namespace)
            except NotImplementedError:
                pass  # a demonstration cell that uses a blank: expected in the learner version
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt

        plt.close("all")
    assert checked >= 2


# ------------------------------------------------------------------ the build script itself
SOURCE = '''# note for authors, dropped
# %% [markdown]
# # Title
#
# Question?
# ### BEGIN SOLUTION
# The answer.
# ### END SOLUTION
# %% tags=["parameters"]
PROFILE = "smoke"
# %%
def f(x):
    y = x + 1  # scaffolding stays
    ### HINT: return y squared
    ### BEGIN SOLUTION
    return y * y
    ### END SOLUTION
'''


def _build(text: str, version: str) -> nbformat.NotebookNode:
    cells = bx.parse_percent(text, Path("src.py"))
    return nbformat.reads(bx.build_notebook(cells, version, Path("src.py")), as_version=4)


def test_build_renders_both_versions():
    ex, sol = _build(SOURCE, "exercise"), _build(SOURCE, "solution")
    assert [c.cell_type for c in ex.cells] == ["markdown", "code", "code"]
    assert ex.cells[0].source == "# Title\n\nQuestion?\n*Your answer here.*"
    assert sol.cells[0].source == "# Title\n\nQuestion?\nThe answer."
    assert ex.cells[1].metadata["tags"] == ["parameters"] and ex.cells[1].source == 'PROFILE = "smoke"'
    assert ex.cells[2].source == ('def f(x):\n    y = x + 1  # scaffolding stays\n'
                                  '    raise NotImplementedError("hint: return y squared")')
    assert sol.cells[2].source == "def f(x):\n    y = x + 1  # scaffolding stays\n    return y * y"
    namespace: dict = {}
    exec(sol.cells[2].source, namespace)
    assert namespace["f"](2) == 9
    exec(ex.cells[2].source, namespace)
    with pytest.raises(NotImplementedError, match="hint: return y squared"):
        namespace["f"](2)
    assert [c.id for c in ex.cells] == ["c00", "c01", "c02"]


def test_long_hints_wrap_into_valid_python():
    src = "# %%\ndef g():\n    ### HINT: " + "a very long hint " * 12 + "\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    ex = _build(src, "exercise")
    assert max(len(line) for line in ex.cells[0].source.splitlines()) <= 100
    namespace: dict = {}
    exec(ex.cells[0].source, namespace)
    with pytest.raises(NotImplementedError, match="hint: a very long hint"):
        namespace["g"]()


@pytest.mark.parametrize(
    "body, message",
    [
        ("    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("    return 1\n    ### END SOLUTION\n", "without"),
        ("    ### BEGIN SOLUTION\n    ### HINT: no\n    return 1\n    ### END SOLUTION\n", "above"),
        ("    ### HINT: orphan\n    return 1\n", "right above"),
    ],
)
def test_malformed_sources_are_refused(body: str, message: str):
    with pytest.raises(bx.SourceError, match=message):
        _build("# %%\ndef h():\n" + body, "exercise")


def test_check_mode_reports_drift_and_stale_files(tmp_path: Path, monkeypatch, capsys):
    src_dir, ex_dir, sol_dir = tmp_path / "exercises" / "src", tmp_path / "exercises", tmp_path / "solutions"
    src_dir.mkdir(parents=True)
    sol_dir.mkdir()
    (src_dir / "01_demo.py").write_text(SOURCE)
    for name, value in dict(ROOT=tmp_path, SRC_DIR=src_dir, EXERCISE_DIR=ex_dir, SOLUTION_DIR=sol_dir).items():
        monkeypatch.setattr(bx, name, value)
    assert bx.main(["--check"]) == 1 and "missing" in capsys.readouterr().err
    assert bx.main([]) == 0
    assert bx.main(["--check"]) == 0
    (sol_dir / "01_demo.ipynb").write_text((sol_dir / "01_demo.ipynb").read_text().replace("y * y", "y ** 2"))
    assert bx.main(["--check"]) == 1 and "differs from its source" in capsys.readouterr().err
    (ex_dir / "99_orphan.ipynb").write_text("{}")
    bx.main([])
    assert bx.main(["--check"]) == 1 and "no source" in capsys.readouterr().err


# ------------------------------------------------------------------ the cells after a check
def _run_with(path: Path, name: str, replacement, stop_at: str) -> dict:
    """Execute a solution notebook in one namespace, with ``name`` replaced by ``replacement`` right
    after its definition, skipping ``check_...`` cells, up to the first cell containing ``stop_at``
    (that cell included); returns the namespace. Exceptions propagate."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        for cell in nb.cells:
            if cell.cell_type != "code" or CHECK_CALL.match(cell.source):
                continue
            exec(compile(cell.source, path.name, "exec"), namespace)
            if re.search(rf"^def {name}\(", cell.source, re.MULTILINE):
                namespace[name] = replacement
            if stop_at in cell.source:
                return namespace
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt

        plt.close("all")
    raise AssertionError(f"no cell contains {stop_at!r}")


SOLUTION_04 = ROOT / "solutions" / "04_kl_and_reference.ipynb"


def _k3(logp, ref_logp):
    x = ref_logp - logp
    return x.exp() - x - 1


def _k3_reversed(logp, ref_logp):
    x = logp - ref_logp
    return x.exp() - x - 1


def test_k3_monte_carlo_cells_pass_with_k3():
    ns = _run_with(SOLUTION_04, "k3", _k3, "exact_kl_gradient")
    assert ns["z_rev"] < 5 and ns["z_fwd"] > 10


@pytest.mark.parametrize("cell", ["k3 Monte Carlo", "exact_kl_gradient"])
def test_reversed_k3_fails_the_monte_carlo_cells(cell: str):
    """Both the value cell and the gradient cell must reject k3 with x reversed, with a pointer to the fix."""
    value_cell_done = cell == "exact_kl_gradient"
    replacement = _k3_reversed
    if value_cell_done:  # get past the value cell with the right k3, then swap in the reversed one
        ns = _run_with(SOLUTION_04, "k3", _k3, "k3 Monte Carlo")
        nb = nbformat.read(SOLUTION_04, as_version=4)
        source = next(c.source for c in nb.cells if "exact_kl_gradient" in c.source)
        ns["k3"] = replacement
        with pytest.raises(AssertionError, match="fix k3 first"):
            exec(compile(source, "gradient cell", "exec"), ns)
        return
    with pytest.raises(AssertionError, match="fix k3 first"):
        _run_with(SOLUTION_04, "k3", replacement, cell)


@pytest.mark.parametrize("path, name, wrong, stop_at", [
    ("01_reinforce.ipynb", "reinforce_loss", lambda lp, r, m: (r[:, None] * lp * m).sum(-1).mean(), "g_rf"),
    ("02_group_baseline.ipynb", "group_advantages", lambda r, G, eps=1e-4: r - r.mean(), "adv = group_advantages"),
    ("03_ratios_and_clipping.ipynb", "clipped_surrogate", lambda lp, old, a, epsilon=0.2: lp * 0 + 1.0,
     "loss value at μ = 1"),
])
def test_a_cell_after_a_failed_check_says_to_fix_the_exercise(path: str, name: str, wrong, stop_at: str):
    with pytest.raises(AssertionError, match=f"fix {name} first"):
        _run_with(ROOT / "solutions" / path, name, wrong, stop_at)
