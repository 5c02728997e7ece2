"""The notebooks' setup cell: parameters go through the config; None keeps the profile's value."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from contextclip.config import REPO_ROOT, ConfigError, load_config  # noqa: E402
from contextclip.notebook_utils import image_grid, profile_paths, setup_notebook, show_figure  # noqa: E402


def test_setup_notebook_validates_through_the_config(tmp_path, capsys):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = setup_notebook("smoke", epochs=None, seeds=[3, 4], bandwidth=0.25)
        assert os.getcwd() == str(REPO_ROOT), "setup_notebook runs notebooks from the repository root"
    finally:
        os.chdir(cwd)
    base = load_config("smoke")
    assert cfg.train.epochs == base.train.epochs  # None = the profile's value
    assert cfg.train.seeds == [3, 4] and cfg.loss.bandwidth == 0.25
    out = capsys.readouterr().out
    assert "changed from the profile: bandwidth=0.25, seeds=[3, 4]" in out
    # a value equal to the profile's (what papermill injects) is not reported as a change
    setup_notebook("smoke", chdir=False, epochs=base.train.epochs)
    assert "changed" not in capsys.readouterr().out

    with pytest.raises(ConfigError, match="not config knobs"):
        setup_notebook("smoke", chdir=False, epoch=3)
    with pytest.raises(ConfigError, match="'bandwidth'.*out of range"):
        setup_notebook("smoke", chdir=False, bandwidth=-1.0)
    with pytest.raises(ConfigError, match="'epochs'.*integer"):
        setup_notebook("smoke", chdir=False, epochs="three")
    with pytest.raises(ConfigError, match="unknown profile"):
        setup_notebook("smokee", chdir=False)


def test_paths_and_figure_helpers(tmp_path):
    cfg = load_config("embedded")
    paths = profile_paths(cfg, root=tmp_path)
    assert paths.run_dir("clip", 2) == tmp_path / "runs" / "embedded" / "clip-seed2"
    assert paths.results == tmp_path / "results" / "embedded"
    with pytest.raises(ConfigError):
        paths.run_dir("clap", 0)
    import torch

    fig = image_grid(torch.zeros(5, 3, 8, 8, dtype=torch.uint8), [f"caption {i}" for i in range(5)], ncols=3)
    assert len([a for a in fig.axes if a.images]) == 5
    out = tmp_path / "f" / "grid.png"
    show_figure(fig, out)
    assert out.stat().st_size > 0 and not plt.fignum_exists(fig.number)


def test_a_parameter_injected_but_not_declared_is_an_error():
    """papermill only warns about `-p profil smoke`; setup_notebook fails, naming the name."""
    from contextclip.notebook_utils import _check_injected, injected_parameters

    history = ["", 'profile = "smoke"  # declared\n', '# Parameters\nprofil = "smoke"\nseeds = [1]\n',
               "x = 1\n"]  # a student's own cell is not an injected one
    assert injected_parameters(history) == {"profil", "seeds"}
    with pytest.raises(ConfigError, match="'profil' are not declared by this notebook"):
        _check_injected({"profile", "seeds"}, history)
    _check_injected({"profile", "seeds", "profil"}, history)  # all declared: fine
    _check_injected({"profile"}, ["", "x = 1\n"])  # nothing injected: fine


def test_notebook_only_parameters_are_type_checked():
    cfg = setup_notebook("smoke", chdir=False, quiet=True, fresh=True, epochs=2)
    assert cfg.train.epochs == 2
    with pytest.raises(ConfigError, match="'fresh'.*not a bool"):
        setup_notebook("smoke", chdir=False, quiet=True, fresh="yes")


def test_tables_print_no_negative_zero_and_float_indexes_short():
    import pandas as pd

    from contextclip.notebook_utils import _number_formatter

    fmt = _number_formatter("{:.3f}")
    assert (fmt(-1e-9), fmt(-0.25), fmt(0.5)) == ("0.000", "-0.250", "0.500")
    sty = pd.DataFrame({"loss": [-1e-9]}, index=pd.Index([0.3], name="h")).style.format({"loss": fmt})
    assert "-0.000" not in sty.to_html()


@pytest.mark.slow
def test_papermill_by_hand_fails_with_one_line(tmp_path):
    """The README's recipe with a mistyped name or an unknown profile: the cell fails, one line says why."""
    import nbformat
    import papermill as pm
    from nbformat.v4 import new_code_cell, new_notebook

    from contextclip.lab import KERNEL_NAME

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "ContextCLIP (.venv)", "language": "python"}
    params = new_code_cell('profile = "smoke"  # profile\nseeds = None  # seeds\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell("from contextclip.notebook_utils import setup_notebook\n"
                                      "cfg = setup_notebook(profile, chdir=False, seeds=seeds)")]
    src = tmp_path / "nb.ipynb"
    nbformat.write(nb, src)
    env_pp = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env_pp if env_pp else "")
    try:
        for params_in, expected in (({"profil": "smoke"}, "'profil' are not declared"),
                                    ({"profile": "nosuch"}, "unknown profile 'nosuch'")):
            with pytest.raises(pm.PapermillExecutionError) as info:
                pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), parameters=params_in,
                                    kernel_name=KERNEL_NAME, progress_bar=False, cwd=str(tmp_path))
            assert info.value.ename == "ConfigError" and expected in info.value.evalue
            assert len(info.value.traceback) == 1, info.value.traceback  # one line, not a traceback
        pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), parameters={"seeds": [3]},
                            kernel_name=KERNEL_NAME, progress_bar=False, cwd=str(tmp_path))
    finally:
        os.environ["PYTHONPATH"] = env_pp
