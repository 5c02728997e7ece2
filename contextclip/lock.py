"""One writer per folder: an advisory lock on a run folder or a results folder.

``folder_lock(folder, what)`` is a context manager holding ``folder/.lock`` for its block. The
lock is an ``fcntl.flock`` on that file, so the operating system releases it when the holder
exits in any way (``kill -9`` included); the file also records who holds it (pid, host, start
time, command), which is what a refused writer is told:

    run folder runs/smoke/clip-seed0 is in use by pid 4711 on host lab1 since 2026-11-30 16:50:03
    (python -m contextclip train ...); wait for it to finish (or pass --wait), or stop it with `kill 4711`

The rule for a second writer: it is refused at once (``FolderBusyError``, exit code 2 from the
CLI), or with ``wait=True`` (``--wait``) it waits until the holder is done and then goes on
(a second ``train`` then finds the run finished and does not train it again).

Stale locks: a record whose lock is no longer held (its process died) is taken over, and the
taker says so on stderr. A process started by the holder (a notebook kernel of ``reproduce``)
inherits the holder's token in ``CONTEXTCLIP_LOCKS`` and may write to the folder without
taking the lock again; so may the holder itself in a nested block (``evaluate_run`` holds the
results folder and ``append_metrics`` asks for it again). The lock is advisory: code that ignores it is not stopped, and it is
only as reliable as ``flock`` on the file system (local disks: yes; some network file systems:
no).

This module locks; it does not know what a run or a results folder holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from contextclip.errors import FolderBusyError, storage_error

LOCK_NAME = ".lock"
ENV_TOKENS = "CONTEXTCLIP_LOCKS"  # tokens of locks held by this process's ancestors, os.pathsep-separated
_HELD: set[str] = set()  # tokens of the locks this process holds now: a nested block does not lock again


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_NAME


def read_holder(folder: Path) -> dict:
    """The holder record of ``folder``'s lock file (empty when absent or unreadable)."""
    try:
        d = json.loads(lock_path(folder).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def describe(holder: dict) -> str:
    if not holder:
        return "another process (no holder record)"
    cmd = f" ({holder['command']})" if holder.get("command") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}{cmd}"


def _inherited(holder: dict) -> bool:
    """True when this process, or an ancestor that started it, holds the lock of this record."""
    tokens = {t for t in os.environ.get(ENV_TOKENS, "").split(os.pathsep) if t} | _HELD
    return bool(holder.get("token")) and holder["token"] in tokens


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "folder", *, wait: bool = False, poll_s: float = 0.5,
                export: bool = False, enabled: bool = True) -> Iterator[dict | None]:
    """Hold ``folder/.lock`` for the block; ``FolderBusyError`` naming the holder if it is taken.

    ``wait``: wait for the holder instead of refusing. ``export``: put the lock's token in
    ``CONTEXTCLIP_LOCKS`` for the block, so processes started inside it (notebook kernels) may
    write without the lock. ``enabled=False`` makes it a no-op (ranks other than 0 under torchrun).
    Yields the holder record written, or None when no lock was taken.
    """
    if not enabled:
        yield None
        return
    folder = Path(folder)
    if _inherited(read_holder(folder)):  # our parent holds it for us (a pipeline's notebook kernel)
        yield None
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise storage_error(lock_path(folder), exc) from None
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = read_holder(folder)
                if _inherited(holder):
                    yield None
                    return
                if not wait:
                    raise FolderBusyError(
                        f"{what} {folder} is in use by {describe(holder)}; wait for it to finish "
                        f"(or pass --wait), or stop it with `kill {holder.get('pid', '<pid>')}`"
                    ) from None
                if not told:
                    print(f"{what} {folder} is in use by {describe(holder)}; waiting for it", file=sys.stderr,
                          flush=True)
                    told = True
                time.sleep(poll_s)
        stale = read_holder(folder)
        if stale and stale.get("pid") != os.getpid():
            print(f"{what} {folder}: taking over a stale lock left by {describe(stale)} (that process is gone)",
                  file=sys.stderr, flush=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": _command(),
                  "token": uuid.uuid4().hex}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        old_env = os.environ.get(ENV_TOKENS)
        if export:
            os.environ[ENV_TOKENS] = os.pathsep.join(t for t in (old_env, record["token"]) if t)
        _HELD.add(record["token"])
        try:
            yield record
        finally:
            _HELD.discard(record["token"])
            if export:
                if old_env is None:
                    os.environ.pop(ENV_TOKENS, None)
                else:
                    os.environ[ENV_TOKENS] = old_env
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released cleanly: no holder record left behind
    finally:
        os.close(fd)  # closing the descriptor releases the flock


__all__ = ["FolderBusyError", "folder_lock", "read_holder", "describe", "lock_path", "LOCK_NAME", "ENV_TOKENS"]
