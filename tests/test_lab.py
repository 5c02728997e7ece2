"""``make lab``'s command line and the kit's kernel (no server is started here; tests/test_browser.py does)."""

from __future__ import annotations

import pytest

from contextclip.config import REPO_ROOT
from contextclip.lab import KERNEL_DISPLAY_NAME, KERNEL_NAME, kernel_installed, lab_argv, lab_env
from contextclip.pipeline import KERNEL_NAME as PIPELINE_KERNEL


def test_lab_opens_the_repository_root_on_localhost_with_the_kits_kernel():
    argv = lab_argv(port=8899, token="abc")
    assert f"--ServerApp.root_dir={REPO_ROOT}" in argv
    assert "--ServerApp.ip=127.0.0.1" in argv
    assert f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}" in argv
    assert "--IdentityProvider.token=abc" in argv and "--ServerApp.port=8899" in argv
    assert not any("token=''" in a or a.endswith("token=") for a in lab_argv()), "token authentication stays on"
    with pytest.raises(ValueError, match="token"):
        lab_argv(token="")


def test_lab_kernel_draws_inline():
    """The Agg backend of batch runs must not reach the Lab's kernel (plt.show() would show nothing)."""
    env = lab_env({"MPLBACKEND": "Agg", "PATH": "/usr/bin"})
    assert "MPLBACKEND" not in env and env["PATH"] == "/usr/bin"


def test_one_kernel_name_everywhere():
    assert PIPELINE_KERNEL == KERNEL_NAME == "contextclip" and "ContextCLIP" in KERNEL_DISPLAY_NAME
    assert kernel_installed(), "run `make setup` (it installs the kit's Jupyter kernel)"
