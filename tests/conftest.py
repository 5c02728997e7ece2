"""Shared test set-up: the test helpers (``train_fakes``, ``eval_fakes``) are importable from every
test (pytest puts this folder on ``sys.path``), fail points start disarmed, and ``fail_at`` arms one.

Process-wide state is set and reset here, per test, so that no test depends on which ran before it
in the same process: torch's thread count (one thread, or ``@pytest.mark.threads(n)``) and the
process-wide stores of frozen-tower features (``frozen_features``' text store and ``image_cache``'s
memory), empty at the start of each test (their disk copies stay where each test put them).
"""

from __future__ import annotations

import pytest
import torch

from contextclip import failpoints, frozen_features, image_cache


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread_for_shared_fixtures():
    """One torch thread for what runs outside a test's own fixtures too: a module- or session-scoped
    fixture (a baseline run two tests compare against) is built before ``_torch_threads`` applies, and
    a run built with another thread count gives other floating-point sums."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
def _empty_feature_stores():
    """Each test starts with empty process-wide stores of frozen text and image features."""
    frozen_features.clear_text_store()
    image_cache.clear_memory()
    yield
    frozen_features.clear_text_store()
    image_cache.clear_memory()


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
