"""The Makefile's commands, read with ``make -n`` (what would run, nothing started)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry(*args: str) -> str:
    # the setup prerequisite is satisfied by -o (treated as old and up to date): only the recipe prints
    # --no-print-directory: run from `make test` (CI), a sub-make would print "Entering directory" lines
    out = subprocess.run(["make", "-n", "--no-print-directory", "-o", "setup", "-o", ".venv/.installed", *args],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_lab_serves_the_repository_root_opens_notebook_00_and_passes_flags():
    cmd = _dry("lab", "ARGS=--allow-root --no-browser")
    line = next(x for x in cmd.splitlines() if "jupyter lab" in x)
    assert f'--ServerApp.root_dir="{REPO}"' in line  # exercises/, solutions/, README.md reachable
    assert "--allow-root --no-browser" in line
    assert line.rstrip().endswith("notebooks/00_welcome.ipynb")
    assert "HF_HUB_OFFLINE" not in line  # the lab keeps the caller's network policy


def test_only_the_test_targets_go_offline():
    assert "HF_HUB_OFFLINE=1" in _dry("test") and "HF_HUB_OFFLINE=1" in _dry("test-fast")
    train = _dry("train", "ARGS=--overwrite")
    assert "HF_HUB_OFFLINE" not in train and train.rstrip().endswith("--overwrite")
