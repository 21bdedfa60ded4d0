"""Tiny helper to write a notebook from a list of cells (used while authoring notebooks).

    from nbbuild import md, code, params, write
    write("notebooks/00_x.ipynb", [md("# Title"), params('PROFILE = "smoke"'), code("print(1)")])

The .ipynb is the source of truth afterwards; edit it in JupyterLab as usual.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(text: str):
    return code(text, "parameters")


def write(path: str | Path, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell["id"] = f"c{i:02d}"
    nbformat.validate(nb)
    Path(path).write_text(nbformat.writes(nb) + "\n")
    print(f"wrote {path} ({len(cells)} cells)", file=sys.stderr)
