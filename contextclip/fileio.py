"""Atomic file writes: a file is either its old version or its complete new one, never half written.

Every writer in the kit goes through ``atomic_write``: the content goes to a temporary file
beside the target (``<name>.<pid>.tmp``), is flushed to disk, then renamed over the target with
``os.replace`` (atomic on POSIX and Windows). A process killed in between leaves the old file
intact and a stale ``.tmp``; ``clean_stale_tmp`` (called when a run or results folder is
opened) removes those whose writer is no longer alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from contextclip import failpoints

_TMP = re.compile(r"^(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def tmp_path(path: Path) -> Path:
    """The temporary sibling of ``path`` this process writes before renaming."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[IO[bytes]], Any], *,
                 fsync: bool = True) -> Path:
    """Write ``content`` (text, bytes, or a function writing to a binary file) to ``path`` atomically.

    ``fsync`` makes the new content durable before the rename (the default; turn it off only for
    files that are cheap to recompute). The temporary file is removed when writing fails.
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        failpoints.hit(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 4 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _plain(o: Any) -> Any:
    return o.item() if hasattr(o, "item") else str(o)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """``obj`` as indented, key-sorted JSON (tensors and numpy scalars as numbers), atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path``, atomically."""
    import torch

    if os.environ.get(failpoints.ENV):  # drills: the fail point ``writing:<name>`` fires inside torch.save
        return atomic_write(path, lambda fh: torch.save(obj, _Hooked(fh, Path(path).name)))
    return atomic_write(path, lambda fh: torch.save(obj, fh))


class _Hooked:
    """A binary file whose first ``write`` reaches the fail point ``writing:<name>`` (drills only)."""

    def __init__(self, fh: IO[bytes], name: str):
        self.fh, self.name, self.hit = fh, name, False

    def write(self, data) -> int:
        n = self.fh.write(data)
        if not self.hit:
            self.hit = True
            failpoints.hit(f"writing:{self.name}")
        return n

    def flush(self) -> None:
        self.fh.flush()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the block, then act on it: a write that must not be cut short
    (a checkpoint) finishes, and ``KeyboardInterrupt`` is raised after it, as usual. Without this,
    an interrupt inside ``torch.save``'s C++ writer surfaces as a write failure. Outside the main
    thread (where signals cannot be handled) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got and old is not signal.SIG_IGN:
            if callable(old):
                old(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
            else:
                raise KeyboardInterrupt


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def clean_stale_tmp(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Remove the ``<name>.<pid>.tmp`` files in ``folder`` left by writers that died; returns them.

    Files of a live process (another writer at work) are left alone; a missing folder is fine.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in (folder.rglob("*.tmp") if recursive else folder.glob("*.tmp")):
        m = _TMP.match(p.name)
        if m and p.is_file() and not _alive(int(m["pid"])):
            try:
                p.unlink()
                removed.append(p)
            except OSError:  # read-only folder: harmless, the target file is intact
                pass
    return removed
