"""Errors a user can cause that are not about the configuration: files that cannot be written.

``StorageError`` is a ``ConfigError`` (so the CLI reports it in a line with exit code 2, no
traceback): a disk that is full, a folder that is read-only, a quota exceeded. ``storage_error``
builds one naming the file, the system's reason, the free space and what to do.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from contextclip.config import ConfigError


class StorageError(ConfigError):
    """A file could not be written (disk full, read-only folder, quota, permissions)."""


_ADVICE = {
    errno.ENOSPC: "free some space (or choose an --out on another disk) and run the same command again",
    errno.EDQUOT: "free some of your quota and run the same command again",
    errno.EFBIG: "the file is larger than this system allows a file to be; raise the limit or use another disk",
    errno.EROFS: "the folder is on a read-only file system; choose a writable folder (--out / --results)",
    errno.EACCES: "make the folder writable for you, or choose another folder",
    errno.EPERM: "make the folder writable for you, or choose another folder",
}


def storage_error(path: Path, exc: BaseException, kept: str = "") -> StorageError:
    """A ``StorageError`` for a failed write of ``path`` (``kept``: what was left intact)."""
    path = Path(path)
    err = getattr(exc, "errno", None)
    free = _free(path)
    reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    if err is None and "enforce fail" in str(exc):  # torch.save's C++ writer hides the errno and the reason
        err = errno.ENOSPC if free is not None and free < (256 << 20) else None
        reason = "No space left on device" if err == errno.ENOSPC else "the write failed part-way"
    free_s = f"; {free / 2**20:.0f} MiB free there" if free is not None else ""
    advice = _ADVICE.get(err, "check the disk and the folder's permissions, then run the same command again")
    kept_s = f" {kept}." if kept else ""
    return StorageError(f"cannot write {path}: {reason}{free_s}.{kept_s} What to do: {advice}")


def _free(path: Path) -> int | None:
    for p in (Path(path).parent, *Path(path).parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


__all__ = ["StorageError", "storage_error"]
