"""Each numbered notebook has one source: its jupytext py:percent file. The `.ipynb` beside it
(what papermill and nbval run) must hold the same cells, in the same order, with the same tags.
Fix a failure with `make notebooks` (syncs the pair and strips outputs)."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
IPYNBS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")) + sorted((NB_DIR / "solutions").glob("*.ipynb"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_notebook_has_its_pair_and_no_orphans():
    assert IPYNBS, f"no notebooks found in {NB_DIR}"
    stems_ipynb = {p.stem for p in IPYNBS}
    stems_py = {p.stem for p in [*NB_DIR.glob("[0-9][0-9]_*.py"), *(NB_DIR / "solutions").glob("*.py")]}
    assert stems_ipynb == stems_py, (
        f"unpaired: .ipynb only {sorted(stems_ipynb - stems_py)}, .py only {sorted(stems_py - stems_ipynb)}")


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_pair_is_in_sync(ipynb):
    py = ipynb.with_suffix(".py")
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", (
        f"{ipynb.name}: metadata.jupytext.formats must be 'ipynb,py:percent' (so JupyterLab saves both)")
    from_py = jupytext.read(py)
    a, b = _cells(nb), _cells(from_py)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"{ipynb.name} cell {i} differs from {py.name}; run `make notebooks`"
    assert len(a) == len(b), f"{ipynb.name} has {len(a)} cells, {py.name} {len(b)}; run `make notebooks`"


def test_the_sync_check_catches_a_drift(tmp_path):
    """The comparison above is not vacuous: an edited .py no longer matches its notebook."""
    src = IPYNBS[0]
    nb = nbformat.read(src, as_version=4)
    text = src.with_suffix(".py").read_text(encoding="utf-8") + "\n# %%\nprint('a new cell')\n"
    edited = jupytext.reads(text, fmt="py:percent")
    assert _cells(nb) != _cells(edited)
