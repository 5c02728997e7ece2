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
