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
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from contextclip.errors import FolderBusyError, LockPathError, storage_error

LOCK_NAME = ".lock"
ENV_TOKENS = "CONTEXTCLIP_LOCKS"  # tokens of locks held by this process's ancestors, os.pathsep-separated
_HELD: set[str] = set()  # tokens of the locks this process holds now: a nested block does not lock again


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_NAME


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _not_a_file(path: Path, what: str) -> LockPathError:
    try:
        kind = _kind(os.lstat(path).st_mode)
    except OSError:
        kind = "not a regular file"
    return LockPathError(f"{path} is {kind}, not the lock file of this {what}; the kit writes a regular file "
                         f"there. Move it away (`mv {path} {path}.moved`) and run the same command again")


def _open_regular(path: Path, flags: int, what: str = "folder") -> int:
    """``os.open`` that never blocks (a FIFO opens at once) nor follows a link, and only yields a
    regular file's descriptor; anything else at ``path`` raises ``LockPathError``."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EMLINK):
            raise _not_a_file(path, what) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_a_file(path, what)
    return fd


#: a holder record is one short JSON line; a larger lock file is not read (it is garbage)
MAX_RECORD_BYTES = 64 << 10
#: the holder record's fields and their types (``contextclip.schemas`` style: anything else is ignored)
RECORD_FIELDS = {"pid": int, "host": str, "started": str, "command": str, "token": str}


def read_holder(folder: Path, what: str = "folder") -> dict:
    """The holder record of ``folder``'s lock file (empty when absent, unreadable or garbage).

    Reads only a regular file, without blocking; a FIFO or a folder at the lock path raises
    ``LockPathError`` naming it. Fields of the wrong type are dropped (a garbage record is not an error).
    """
    path = lock_path(folder)
    try:
        fd = _open_regular(path, os.O_RDONLY, what)
    except FileNotFoundError:
        return {}
    except LockPathError:
        raise
    except OSError:
        return {}
    try:
        raw = os.read(fd, MAX_RECORD_BYTES + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(raw) > MAX_RECORD_BYTES:
        return {}
    try:
        d = json.loads(raw.decode("utf-8") or "{}")
    except ValueError:
        return {}
    if not isinstance(d, dict):
        return {}
    return {k: v for k, v in d.items() if k in RECORD_FIELDS and isinstance(v, RECORD_FIELDS[k])
            and not isinstance(v, bool)}


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
    if folder.exists() and not folder.is_dir():
        raise LockPathError(f"{folder} is a file, not a folder; choose a folder path for the {what} (or move the "
                            "file away)")
    if _inherited(read_holder(folder, what)):  # our parent holds it for us (a pipeline's notebook kernel)
        yield None
        return
    created = _missing_parts(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _open_regular(lock_path(folder), os.O_RDWR | os.O_CREAT, what)
    except OSError as exc:
        _remove_created(created)
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
    except BaseException:
        os.close(fd)
        fd = -1
        _remove_created(created)  # a refused or failed command leaves no empty folder behind
        raise
    finally:
        if fd >= 0:
            os.close(fd)  # closing the descriptor releases the flock


def _missing_parts(folder: Path) -> list[Path]:
    """The folders that ``folder.mkdir(parents=True)`` would create, deepest first."""
    out = []
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def _remove_created(created: list[Path]) -> None:
    """Remove the folders this lock created if they hold nothing but the (released) lock file."""
    for d in created:  # deepest first
        with contextlib.suppress(OSError):
            lock = d / LOCK_NAME
            if lock.is_file() and not lock.is_symlink() and lock.stat().st_size == 0:
                lock.unlink()
            d.rmdir()  # fails (and is left) when anything else is in it


__all__ = ["FolderBusyError", "LockPathError", "folder_lock", "read_holder", "describe", "lock_path", "LOCK_NAME", "ENV_TOKENS"]
