"""Fail points: make the process fail at a named point, to prove that a crash there loses nothing.

One switch, the environment variable ``CONTEXTCLIP_FAILPOINT``, unset in normal use (then
``hit`` returns at once). Its value is ``<point>#<n>[,<action>][,rank=<r>]``: the n-th time this
process reaches ``point`` (``*`` matches every point) it

- ``kill`` (the default): SIGKILLs itself, without any clean-up, exactly like an external ``kill -9``;
- ``exit``: leaves with ``os._exit(17)`` (no clean-up either; portable to every OS);
- ``raise``: raises ``FailPointError`` (an in-process test catches it and resumes);
- ``interrupt``: sends itself SIGINT, as Ctrl-C in the terminal does.

``rank=<r>`` restricts it to the process of that rank under ``torchrun``. Points:
``step`` (after an optimiser step), ``val_batch`` (inside the validation pass) and
``write:<file name>`` (a file's temporary copy is complete on disk but not yet renamed over the
old one, ``contextclip.fileio``) and ``writing:<file name>`` (inside ``torch.save``, after its first
block: only ``fileio.torch_save`` has it).
"""

from __future__ import annotations

import os
import signal

ENV = "CONTEXTCLIP_FAILPOINT"
_seen: dict[str, int] = {}  # times each spec's point was reached in this process


class FailPointError(RuntimeError):
    """Raised at a fail point whose action is ``raise``."""


def reset() -> None:
    """Forget how often each point was reached (a test arming the same spec twice in one process)."""
    _seen.clear()


def hit(point: str) -> None:
    """Fail here when ``CONTEXTCLIP_FAILPOINT`` names this point and its count is reached."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    where, *options = [s.strip() for s in spec.split(",")]
    name, _, n = where.partition("#")
    if name not in (point, "*"):
        return
    action, rank = "kill", None
    for opt in options:
        if opt.startswith("rank="):
            rank = int(opt[5:])
        elif opt in ("kill", "exit", "raise", "interrupt"):
            action = opt
        else:
            raise ValueError(f"{ENV}={spec!r}: unknown option {opt!r} (kill, exit, raise, interrupt or rank=<r>)")
    if rank is not None and int(os.environ.get("RANK", "0")) != rank:
        return
    _seen[spec] = _seen.get(spec, 0) + 1
    if _seen[spec] != int(n or 1):
        return
    if action == "raise":
        raise FailPointError(f"fail point {point!r} reached ({ENV}={spec})")
    if action == "exit":
        os._exit(17)
    if action == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
        return
    os.kill(os.getpid(), signal.SIGKILL)
