"""Results files: ``metrics.csv`` and the per-item credits beside it, read and written safely.

- ``append_metrics(path, rows)``: long-format ``metrics.csv`` (columns ``METRIC_COLUMNS``), written
  atomically (temporary file + ``os.replace``) while holding the results folder's lock
  (``contextclip.lock.folder_lock``, waiting for another writer; a caller that holds it already,
  as ``evaluate_run`` does, is not locked out). Each row names the run it came from (``run``: its
  folder; ``checkpoint``: the first 12 hex digits of its checkpoint's SHA-256). Rows of the same
  (run, task, dataset) are replaced, so re-evaluating a run never duplicates it, and evaluating
  another run adds rows, never replacing another run's.
- ``read_metrics(path)``: the file, checked; a damaged one is a ``DamagedFileError`` naming the file,
  the line or the columns, and what to do.
- ``save_per_item`` / ``load_per_item``: per-test-item correctness (0/1, or a fraction on ties) of
  one evaluation, kept beside metrics.csv for the single-seed bootstrap.
- ``is_layout_run``: whether a row's run folder has the layout's name ``<method>-seed<k>``.

What it is not: no statistics and no tables (``contextclip.results`` builds those from these files).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from contextclip import fileio
from contextclip.errors import DamagedFileError
from contextclip.lock import folder_lock

__all__ = ["METRIC_COLUMNS", "RUN_COLUMNS", "read_metrics", "append_metrics", "is_layout_run", "per_item_path",
           "save_per_item", "load_per_item"]

METRIC_COLUMNS = ["method", "seed", "task", "dataset", "metric", "value", "n", "run", "checkpoint"]
RUN_COLUMNS = ("run", "checkpoint")  # absent from metrics.csv files written before rows named their run


# --------------------------------------------------------------------------- metrics.csv
def read_metrics(path: Path) -> pd.DataFrame:
    """Read and check a metrics.csv; an empty frame (with the columns) when the file is absent."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=METRIC_COLUMNS)
    try:
        df = pd.read_csv(path, dtype={"method": str, "task": str, "dataset": str, "metric": str, "run": str,
                                      "checkpoint": str}, keep_default_na=False, na_values={"value": ["", "nan"]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{path} is not a readable CSV ({str(exc).strip()[:120]}); delete it and re-run the "
                               "evaluations (or notebooks 03-06) to rebuild it") from None
    for col in RUN_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise DamagedFileError(f"{path}: missing column(s) {missing}; expected {METRIC_COLUMNS}. "
                               "Delete the file and re-run the evaluation to rebuild it.")
    for col in ("seed", "value", "n"):
        bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise DamagedFileError(f"{path}, line {row}: column '{col}' is not a number ({df[col].iloc[row - 2]!r})")
    df["seed"] = df["seed"].astype(int)
    df["value"] = pd.to_numeric(df["value"])
    df["n"] = pd.to_numeric(df["n"]).fillna(0).astype(int)
    return df[METRIC_COLUMNS]


def is_layout_run(run: str, method: str, seed) -> bool:
    """True for rows of a run folder with the layout's name ``<method>-seed<k>`` (or rows naming no run)."""
    return run in ("", None) or Path(str(run)).name == f"{method}-seed{int(seed)}"


def append_metrics(path: Path, rows: list[dict]) -> pd.DataFrame:
    """Add ``rows`` to metrics.csv, replacing earlier rows of the same (run, method, seed, task, dataset).

    Rows without ``run``/``checkpoint`` get ``""`` there; rows written before rows named their run
    are replaced by the layout-named run of the same (method, seed, task, dataset).
    """
    path = Path(path)
    rows = [{**{c: "" for c in RUN_COLUMNS}, **r} for r in rows]
    new = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    for i, r in enumerate(rows):
        if set(METRIC_COLUMNS) - set(r):
            raise ValueError(f"row {i} lacks {sorted(set(METRIC_COLUMNS) - set(r))}: {r}")
    with folder_lock(path.parent, "results folder", wait=True):  # a no-op inside the caller's own lock
        fileio.clean_stale_tmp(path.parent)  # left by a writer killed mid-write
        old = read_metrics(path)
        if len(new) and len(old):
            cols = ["run", "method", "seed", "task", "dataset"]
            keys = set(map(tuple, new[cols].astype(str).to_numpy()))
            keys |= {("", *k[1:]) for k in keys if is_layout_run(k[0], k[1], k[2])}
            old_keys = old[cols].astype(str).apply(tuple, axis=1)
            old = old[~old_keys.isin(keys)]
        out = pd.concat([old, new], ignore_index=True) if len(old) else new
        out = out.sort_values(["task", "dataset", "method", "seed", "metric"], kind="stable")
        fileio.atomic_write(path, out.to_csv(index=False, float_format="%.6g"))
    return out


def per_item_path(results_dir: Path, method: str, seed: int, task: str, dataset: str, run: str = "") -> Path:
    name = f"{method}-seed{seed}"
    if not is_layout_run(run, method, seed):  # another run of the same method and seed: its own folder
        name += f"@{Path(run).name}-{hashlib.sha256(str(run).encode()).hexdigest()[:8]}"
    return Path(results_dir) / "per_item" / name / f"{task}__{dataset}.npz"


def save_per_item(results_dir: Path, method: str, seed: int, task: str, dataset: str, arrays: dict,
                  run: str = "") -> Path:
    """Per-item credits of one evaluation (one array per metric), for the single-seed bootstrap."""
    path = per_item_path(results_dir, method, seed, task, dataset, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write(path, lambda fh: np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()}))
    return path


def load_per_item(results_dir: Path, method: str, seed: int, task: str, dataset: str) -> dict | None:
    path = per_item_path(results_dir, method, seed, task, dataset)
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
