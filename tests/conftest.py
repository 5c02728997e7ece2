"""Shared test set-up: the test helpers (``train_fakes``, ``eval_fakes``) are importable from every
test (pytest puts this folder on ``sys.path``), fail points start disarmed, and ``fail_at`` arms one.

Process-wide state is set and reset here, per test, so that no test depends on which ran before it
in the same process: torch's thread count (one thread, or ``@pytest.mark.threads(n)``) and the
frozen text tower's feature store (``contextclip.frozen_features``), empty at the start of each test.
"""

from __future__ import annotations

import pytest
import torch

from contextclip import failpoints, frozen_features


@pytest.fixture(autouse=True)
def _torch_threads(request):
    """One torch thread (2 shared cores: one thread per process is faster under load), or the number
    a ``@pytest.mark.threads(n)`` marker asks for; the process's count is put back afterwards."""
    marker = request.node.get_closest_marker("threads")
    before = torch.get_num_threads()
    torch.set_num_threads(marker.args[0] if marker else 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _empty_text_store():
    """Each test starts with an empty process-wide store of frozen text features (the disk copies stay)."""
    frozen_features.clear_text_store()
    yield
    frozen_features.clear_text_store()


@pytest.fixture(autouse=True)
def _disarmed_fail_points(monkeypatch):
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.reset()
    yield
    failpoints.reset()


@pytest.fixture
def fail_at(monkeypatch):
    """``fail_at("step#3")``: the 3rd optimiser step of this process raises ``FailPointError``."""

    def arm(spec: str) -> None:
        failpoints.reset()
        monkeypatch.setenv(failpoints.ENV, f"{spec},raise")

    def disarm() -> None:
        monkeypatch.delenv(failpoints.ENV, raising=False)
        failpoints.reset()

    arm.disarm = disarm
    return arm
