"""The papermill pipeline: parameter checks, failure reporting, skip-if-unchanged, one real notebook.

Tiny throwaway notebooks are written into ``tmp_path`` and run with the venv's kernel; the
outputs go under ``tmp_path`` (``root=``), never into the repository's runs/ or results/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from contextclip.config import ConfigError
from contextclip.pipeline import (
    PipelineError,
    declared_parameters,
    notebook_parameters,
    read_state,
    reproduce,
)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def _write_nb(path: Path, params_src: str, body: list[str]) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "contextclip", "display_name": "ContextCLIP (.venv)", "language": "python"}
    cell = new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell("# tiny"), cell] + [new_code_cell(s) for s in body]
    nbformat.write(nb, path)
    return path


PARAMS = 'profile = "smoke"  # profile\nepochs = None  # passes\nnote = "x"  # free text\n'


def _writer(tag: str) -> list[str]:
    """Cells that append one line (tag, epochs, note) to results/<profile>/log.txt under the cwd."""
    return [
        "from pathlib import Path\nout = Path('results') / profile\nout.mkdir(parents=True, exist_ok=True)",
        f"with open(out / 'log.txt', 'a') as fh:\n    fh.write(f'{tag} {{epochs}} {{note}}\\n')\n"
        f"(out / '{tag}.txt').write_text(str(epochs))",
    ]


def _log_lines(root: Path) -> list[str]:
    p = root / "results" / "smoke" / "log.txt"
    return p.read_text().splitlines() if p.exists() else []


def _run(nbs, root, **kw):
    return reproduce("smoke", notebooks=nbs, root=root, progress_bar=False, cell_timeout=120, **kw)


def test_declared_parameters_and_injection(tmp_path):
    nb = _write_nb(tmp_path / "00_a.ipynb", PARAMS, ["pass"])
    assert declared_parameters(nb) == {"profile": "smoke", "epochs": None, "note": "x"}
    from contextclip.config import load_config

    cfg = load_config("smoke", {"epochs": 5})
    # profile + the declared config knob from the config; `note` is not a knob so keeps its default
    assert notebook_parameters(nb, cfg, "smoke") == {"profile": "smoke", "epochs": 5}
    assert notebook_parameters(nb, cfg, "smoke", {"note": "y"})["note"] == "y"


def test_unknown_key_is_rejected_naming_notebook_and_key(tmp_path):
    a = _write_nb(tmp_path / "00_a.ipynb", PARAMS, _writer("a"))
    with pytest.raises(PipelineError, match=r"notebook 00_a: parameter 'batch_sise' is not declared"):
        _run([a], tmp_path, notebook_params={"00_a": {"batch_sise": 3}})
    # a config knob that no notebook declares would have no effect: rejected too
    with pytest.raises(PipelineError, match=r"lr_image"):
        _run([a], tmp_path, overrides={"lr_image": 0.1})
    # an unknown config key is the config's error
    with pytest.raises(ConfigError, match=r"unknown key 'epoks'"):
        _run([a], tmp_path, overrides={"epoks": 1})
    # a parameters cell with a non-literal is refused before running
    bad = _write_nb(tmp_path / "01_b.ipynb", 'profile = "smoke"  # p\nx = len([1])  # no\n', ["pass"])
    with pytest.raises(PipelineError, match=r"01_b: parameter 'x'.*literal"):
        declared_parameters(bad)
    assert not (tmp_path / "results").exists(), "nothing may run when parameters are bad"


def test_failing_notebook_names_cell_and_keeps_earlier_state(tmp_path, capsys):
    a = _write_nb(tmp_path / "00_a.ipynb", PARAMS, _writer("a"))
    b = _write_nb(tmp_path / "01_b.ipynb", PARAMS, ["x = 1", "raise ValueError('broken on purpose')"])
    rc = _run([a, b], tmp_path)
    assert rc == 1
    err = capsys.readouterr().err
    assert "notebook 01_b failed at cell" in err and "ValueError" in err and "broken on purpose" in err
    # the failing cell index points at the raise (markdown 0, params 1, injected 2, x=1 3, raise 4)
    assert "cell 4 " in err
    state_path = tmp_path / "runs" / "smoke" / "pipeline_state.json"
    state = read_state(state_path)
    assert list(state["notebooks"]) == ["00_a"], "only the notebook that succeeded is recorded"
    assert (tmp_path / "runs" / "smoke" / "notebooks" / "00_a.ipynb").exists()
    assert (tmp_path / "runs" / "smoke" / "notebooks" / "01_b.failed.ipynb").exists()
    assert _log_lines(tmp_path) == ["a 3 x"]
    # a second run: 00_a is unchanged and skipped (its outputs untouched), 01_b fails again
    before = state_path.read_text()
    assert _run([a, b], tmp_path) == 1
    assert _log_lines(tmp_path) == ["a 3 x"]
    assert state_path.read_text() == before


def test_skip_if_unchanged_force_and_upstream_change(tmp_path):
    a = _write_nb(tmp_path / "00_a.ipynb", PARAMS, _writer("a"))
    b = _write_nb(tmp_path / "01_b.ipynb", PARAMS, _writer("b"))
    assert _run([a, b], tmp_path) == 0
    assert _log_lines(tmp_path) == ["a 3 x", "b 3 x"]  # smoke profile's epochs = 3 injected
    executed = nbformat.read(tmp_path / "runs/smoke/notebooks/01_b.ipynb", as_version=4)
    assert executed.metadata["papermill"]["parameters"] == {"profile": "smoke", "epochs": 3}
    assert executed.metadata["kernelspec"]["name"] == "contextclip"

    assert _run([a, b], tmp_path) == 0  # nothing changed: both skipped
    assert len(_log_lines(tmp_path)) == 2

    # changing a parameter of the downstream notebook reruns only it
    assert _run([a, b], tmp_path, notebook_params={"01_b": {"note": "y"}}) == 0
    assert _log_lines(tmp_path)[2:] == ["b 3 y"]

    # a changed knob reruns both (its value differs in both fingerprints)
    assert _run([a, b], tmp_path, overrides={"epochs": 1}) == 0
    assert _log_lines(tmp_path)[3:] == ["a 1 x", "b 1 x"]

    # deleting an output of the first notebook reruns it, and the second because its upstream changed
    (tmp_path / "results" / "smoke" / "a.txt").unlink()
    (tmp_path / "results" / "smoke" / "log.txt").write_text("")
    assert _run([a, b], tmp_path, overrides={"epochs": 1}) == 0
    assert _log_lines(tmp_path) == ["a 1 x", "b 1 x"]

    # --force reruns everything
    assert _run([a, b], tmp_path, overrides={"epochs": 1}, force=True) == 0
    assert len(_log_lines(tmp_path)) == 4
    state = json.loads((tmp_path / "runs/smoke/pipeline_state.json").read_text())
    assert set(state["notebooks"]) == {"00_a", "01_b"}
    assert all(e["seconds"] > 0 for e in state["notebooks"].values())


@pytest.mark.slow  # several seconds: in make test, not in make test-fast
def test_real_notebook_with_injected_parameters(tmp_path):
    """One papermill run of notebook 00 with a changed knob (bandwidth), the path `reproduce` uses."""
    import papermill as pm

    src = REPO / "notebooks" / "00_contextual_loss_explained.ipynb"
    if not src.exists():
        pytest.fail(f"{src} is missing")
    out = tmp_path / "00_out.ipynb"
    pm.execute_notebook(str(src), str(out), parameters={"profile": "smoke", "bandwidth": 0.2},
                        kernel_name="contextclip", cwd=str(REPO), progress_bar=False, execution_timeout=300)
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata["papermill"]["parameters"]["bandwidth"] == 0.2
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "'bandwidth': 0.2" in text or '"bandwidth": 0.2' in text, "the injected value reached the config"


def test_missing_datasets_stop_the_run_before_any_notebook(tmp_path, capsys):
    """A profile whose data is absent fails before anything runs, naming the prepare command."""
    from contextclip.pipeline import DatasetsMissingError, reproduce

    over = {"zero_shot_datasets": ["cifar10"], "data_root": str(tmp_path / "no_data")}
    with pytest.raises(DatasetsMissingError, match="data prepare cifar10"):
        reproduce("smoke", overrides=over, root=tmp_path)
    assert not (tmp_path / "runs").exists()
    # with missing_datasets: skip it says so and goes on (here: no notebooks, so nothing runs)
    from contextclip.config import load_config
    from contextclip.pipeline import _check_data

    _check_data(load_config("smoke", {**over, "missing_datasets": "skip"}))
    assert "going on without cifar10" in capsys.readouterr().out
