"""A tiny notebook for pipeline tests: a tagged ``parameters`` cell, then the given code cells,
on the kit's kernel."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from contextclip.lab import KERNEL_DISPLAY_NAME, KERNEL_NAME


def tiny_notebook(path: Path, cells: list[str]) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    params = new_code_cell('profile = "smoke"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [new_code_cell(textwrap.dedent(c)) for c in cells]
    nbformat.write(nb, path)
    return path
