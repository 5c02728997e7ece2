"""Every error a user can cause, in one place: the bottom layer of the package (it imports nothing from it).

A ``UserError`` means "the user must change something": a config value, a path, a busy folder, a
full disk, a damaged file, a missing dataset, a run that diverged. The command line prints its
message as one line ``error: ...`` and exits with code 2; any other exception is a bug in the kit
and keeps its traceback (exit code 1). Each message names the file, key or row and what to do.

Some classes also derive from the built-in type code used to catch before they had a common root
(``ConfigError`` is a ``ValueError``, ``MissingFileError`` a ``FileNotFoundError``), so that an
``except ValueError`` written around a call still catches what it caught.

``user_error(exc)`` turns an ``OSError`` the user must fix (a path that does not exist, no
permission, a full disk) into a ``PathError``; ``storage_error`` builds the ``StorageError`` of a
failed write, naming the file, the system's reason, the free space and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path


class UserError(Exception):
    """Something the user must change; the CLI prints the message in one line and exits with code 2."""


class ConfigError(UserError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class StorageError(UserError):
    """A file could not be written (disk full, read-only folder, quota, permissions)."""


class PathError(UserError):
    """A path the user gave cannot be used (missing, not a folder, no permission); see ``user_error``."""


class MissingFileError(UserError, FileNotFoundError):
    """A file a command needs is not there; the message names the command that writes it."""


class DamagedFileError(UserError, ValueError):
    """A file the kit reads (``metrics.csv``, ``history.jsonl``) is not in the form it writes."""


class FolderBusyError(UserError):
    """Another process holds the folder's lock."""


class LockPathError(UserError):
    """Something other than a regular file (a FIFO, a folder, a device, a link) is at a lock path."""


class RunError(UserError):
    """A run folder cannot be used as asked."""


class RunMismatchError(RunError):
    """The run folder holds a checkpoint or finished run made with a different config or other data."""


class CheckpointError(RunError):
    """A checkpoint file cannot be loaded (damaged, cut short, or not plain weights: refused)."""


class RunNotFinishedError(RunError):
    """A run folder's training has not finished (resume it first)."""


class ForeignFolderError(RunError):
    """``--out`` holds files the kit did not write: the kit neither trains there nor deletes them."""


class NonFiniteLossError(UserError, RuntimeError):
    """A loss term, the gradient, an embedding or a weight became NaN or infinite; nothing after it was saved."""


class PipelineError(UserError):
    """The pipeline cannot start: an undeclared parameter, a missing notebook or parameters cell.

    A notebook that fails while running is not an exception: ``reproduce`` returns 1.
    """


class DatasetsMissingError(PipelineError):
    """Datasets the profile needs are absent and ``missing_datasets`` is not ``skip``."""


class LaunchError(UserError, RuntimeError):
    """The process cannot start as asked (no GPU for device=cuda, torchrun variables missing)."""


class WeightsUnavailable(UserError, RuntimeError):
    """Pretrained weights or a Hugging Face model could not be found, read or downloaded."""


class ManifestError(UserError, ValueError):
    """A manifest as a whole is unusable (missing, unreadable, no image/caption columns)."""


class ImageProblem(UserError, ValueError):
    """An image that cannot be used; ``kind`` is one of the check kinds, ``reason`` says why, ``where`` which image."""

    def __init__(self, kind: str, reason: str, where: str = ""):
        super().__init__(f"{where}: {kind}: {reason}" if where else f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class DatasetError(UserError, ValueError):
    """A dataset is on disk but cannot be used as it is (a bad file, too few images for a split)."""


class UnknownDatasetError(UserError, KeyError):
    """A dataset name the registry does not know; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetMissing(UserError):
    """A dataset is not on disk; the message names the command that prepares it."""

    def __init__(self, name: str, root: Path | str, what: str):
        self.name = name
        self.root = str(root)
        super().__init__(
            f"dataset '{name}' is missing under {root}: {what}. "
            f"Prepare it with: python -m contextclip data prepare {name} --root {root}  "
            f"(see data/README.md)"
        )


# --------------------------------------------------------------------------- operating-system errors
#: errno values of OSErrors that are the user's to fix (a path, a disk, a permission), not a bug
USER_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                         errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG})


def user_error(exc: BaseException) -> UserError | None:
    """``exc`` as a ``UserError`` (itself, or a ``PathError`` for a user's ``OSError``); None for a bug."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        name = f" {exc.filename}" if exc.filename else ""
        return PathError(f"cannot use{name}: {exc.strerror or exc}. Check the path, the disk's free space "
                         "and the folder's permissions, then run the same command again")
    return None


@contextlib.contextmanager
def os_errors_as_user_errors() -> Iterator[None]:
    """Re-raise, inside the block, an ``OSError`` the user must fix as a ``PathError`` (see ``user_error``)."""
    try:
        yield
    except OSError as exc:
        err = user_error(exc)
        if err is None or err is exc:
            raise
        raise err from exc


# --------------------------------------------------------------------------- failed writes
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


__all__ = [
    "USER_ERRNOS", "CheckpointError", "ConfigError", "DamagedFileError", "DatasetError", "DatasetMissing",
    "DatasetsMissingError", "FolderBusyError", "ForeignFolderError", "ImageProblem", "LockPathError", "LaunchError", "ManifestError", "MissingFileError",
    "NonFiniteLossError", "PathError", "PipelineError", "RunError", "RunMismatchError", "RunNotFinishedError",
    "StorageError", "UnknownDatasetError", "UserError", "WeightsUnavailable", "os_errors_as_user_errors", "storage_error", "user_error",
]
