"""Shared test set-up: the test helpers (``train_fakes``, ``eval_fakes``) are importable from every
test (pytest puts this folder on ``sys.path``), fail points start disarmed, and ``fail_at`` arms one.
"""

from __future__ import annotations

import pytest

from contextclip import failpoints


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
