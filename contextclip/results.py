"""Results files and the tables: metrics.csv, Table 1 / Table 2 / retrieval beside the paper, seed statistics.

What it is:
- ``append_metrics(path, rows)``: long-format ``metrics.csv`` (columns ``METRIC_COLUMNS``), written
  atomically (temporary file + ``os.replace``, under a lock file); rows of the same
  (method, seed, task, dataset) are replaced, so re-evaluating a run never duplicates it.
- ``save_per_item`` / ``load_per_item``: per-test-item correctness (0/1, or a fraction on ties)
  of one evaluation, kept beside metrics.csv for the single-seed bootstrap.
- ``build_tables(results_dir)``: ``table1_zero_shot``, ``table2_fine_tune`` (fine-tuning and
  linear probe) and ``table3_retrieval`` as ``.md`` and ``.csv``. Per dataset and metric: CLIP
  and ContextCLIP mean +- sample std over seeds, the paired difference ContextCLIP - CLIP with
  its 95% interval, n, chance, and the paper's number (``assets/paper_results.json``; only for
  the paper's own datasets -- an embedded analogue names the paper row it plays).
  The interval is a Student-t interval over the paired seed differences when >= 2 seeds are
  paired, and a paired percentile bootstrap over test items when one seed is.
- ``verdict(table)``: plain sentences saying which differences are inside their interval.

What it is not: nothing is evaluated or encoded here; tables are built from files alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from contextclip import fileio

__all__ = [
    "METRIC_COLUMNS", "NOT_RUN", "TABLES", "read_metrics", "append_metrics", "save_per_item", "load_per_item",
    "load_paper_results", "paired_difference", "comparison_table", "build_tables", "verdict", "to_markdown",
]

METRIC_COLUMNS = ["method", "seed", "task", "dataset", "metric", "value", "n"]
NOT_RUN = "not run: missing"

#: table name -> (tasks, metrics); retrieval metrics are filled in from what metrics.csv holds
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "table1_zero_shot": (("zero_shot",), ("top1", "top5", "mean_per_class_recall")),
    "table2_fine_tune": (("fine_tune", "linear_probe"), ("top1", "top5")),
    "table3_retrieval": (("retrieval",), ()),
}


# --------------------------------------------------------------------------- metrics.csv
def read_metrics(path: Path) -> pd.DataFrame:
    """Read and check a metrics.csv; an empty frame (with the columns) when the file is absent."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=METRIC_COLUMNS)
    df = pd.read_csv(path, dtype={"method": str, "task": str, "dataset": str, "metric": str})
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {METRIC_COLUMNS}. "
                         "Delete the file and re-run the evaluation to rebuild it.")
    for col in ("seed", "value", "n"):
        bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise ValueError(f"{path}, line {row}: column '{col}' is not a number ({df[col].iloc[row - 2]!r})")
    df["seed"] = df["seed"].astype(int)
    df["value"] = pd.to_numeric(df["value"])
    df["n"] = pd.to_numeric(df["n"]).fillna(0).astype(int)
    return df[METRIC_COLUMNS]


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_metrics(path: Path, rows: list[dict]) -> pd.DataFrame:
    """Add ``rows`` to metrics.csv, replacing earlier rows of the same (method, seed, task, dataset)."""
    path = Path(path)
    new = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    for i, r in enumerate(rows):
        if set(METRIC_COLUMNS) - set(r):
            raise ValueError(f"row {i} lacks {sorted(set(METRIC_COLUMNS) - set(r))}: {r}")
    with _locked(path):
        fileio.clean_stale_tmp(path.parent)  # left by a writer killed mid-write
        old = read_metrics(path)
        if len(new):
            keys = set(map(tuple, new[["method", "seed", "task", "dataset"]].astype(str).to_numpy()))
            old_keys = old[["method", "seed", "task", "dataset"]].astype(str).apply(tuple, axis=1)
            old = old[~old_keys.isin(keys)] if len(old) else old
        out = pd.concat([old, new], ignore_index=True) if len(old) else new
        out = out.sort_values(["task", "dataset", "method", "seed", "metric"], kind="stable")
        fileio.atomic_write(path, out.to_csv(index=False, float_format="%.6g"))
    return out


def _per_item_path(results_dir: Path, method: str, seed: int, task: str, dataset: str) -> Path:
    return Path(results_dir) / "per_item" / f"{method}-seed{seed}" / f"{task}__{dataset}.npz"


def save_per_item(results_dir: Path, method: str, seed: int, task: str, dataset: str, arrays: dict) -> Path:
    """Per-item credits of one evaluation (one array per metric), for the single-seed bootstrap."""
    path = _per_item_path(results_dir, method, seed, task, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write(path, lambda fh: np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()}))
    return path


def load_per_item(results_dir: Path, method: str, seed: int, task: str, dataset: str) -> dict | None:
    path = _per_item_path(results_dir, method, seed, task, dataset)
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- statistics
def load_paper_results() -> dict:
    with resources.files("contextclip").joinpath("assets/paper_results.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of paired differences (needs >= 2 values)."""
    from scipy import stats

    diffs = np.asarray(diffs, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    return float(diffs.mean() - half), float(diffs.mean() + half)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(b) - mean(a) (in percent) resampling the same test items for both."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired bootstrap needs two equal-length 1-d arrays, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    d = b - a
    out = np.empty(samples)
    chunk = max(1, 2_000_000 // len(d))
    for s in range(0, samples, chunk):
        m = min(chunk, samples - s)
        out[s : s + m] = d[rng.integers(0, len(d), size=(m, len(d)))].mean(axis=1)
    lo, hi = np.percentile(out, [50 * (1 - level), 50 * (1 + level)])
    return 100.0 * float(lo), 100.0 * float(hi)


def paired_difference(clip: dict[int, float], ctx: dict[int, float], per_item: dict[int, tuple] | None = None,
                      samples: int = 1000) -> dict:
    """ContextCLIP - CLIP over the seeds both have, with a 95% interval and how it was computed."""
    seeds = sorted(set(clip) & set(ctx))
    if not seeds:
        return {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "ci_method": "no paired seeds",
                "paired_seeds": 0}
    diffs = np.array([ctx[s] - clip[s] for s in seeds])
    out = {"diff": float(diffs.mean()), "paired_seeds": len(seeds)}
    if len(seeds) >= 2:
        lo, hi = t_interval(diffs)
        out.update(ci_low=lo, ci_high=hi, ci_method=f"t over {len(seeds)} seeds")
        return out
    pair = (per_item or {}).get(seeds[0])
    if pair is not None and pair[0] is not None and pair[1] is not None and len(pair[0]) == len(pair[1]):
        lo, hi = paired_bootstrap(pair[0], pair[1], samples)
        out.update(ci_low=lo, ci_high=hi, ci_method=f"bootstrap over {len(pair[0])} test items, 1 seed")
    else:
        out.update(ci_low=math.nan, ci_high=math.nan, ci_method="1 seed, no per-item results")
    return out


# --------------------------------------------------------------------------- tables
def _fmt(x: float, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _mean_std(values: dict[int, float]) -> tuple[float, float, int]:
    v = np.array(list(values.values()), dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def _retrieval_metrics(df: pd.DataFrame) -> tuple[str, ...]:
    names = [m for m in df["metric"].unique() if "R@" in m and not m.startswith("chance")]
    return tuple(sorted(names, key=lambda m: (not m.startswith("text_to_image"), int(m.split("@")[1]))))


def comparison_table(df: pd.DataFrame, tasks: tuple[str, ...], metrics: tuple[str, ...],
                     results_dir: Path | None = None, bootstrap_samples: int = 1000) -> pd.DataFrame:
    """One row per (task, dataset, metric): both methods over seeds, the paired difference, the paper."""
    paper = load_paper_results()
    rows = []
    sub = df[df["task"].isin(tasks)]
    for (task, dataset), g in sub.groupby(["task", "dataset"], sort=True):
        paper_task = "fine_tune" if task == "fine_tune" else ("zero_shot" if task == "zero_shot" else None)
        paper_key = dataset if dataset in paper["tables"]["zero_shot"] else None
        plays = paper["analogues"].get(dataset)
        plays_label = paper["tables"]["zero_shot"][plays]["label"] if plays else ""
        if paper_key:
            plays_label = paper["tables"]["zero_shot"][paper_key]["label"]
        not_run = g[g["metric"] == NOT_RUN]
        task_metrics = metrics or _retrieval_metrics(g)
        if len(not_run) and len(g) == len(not_run):
            rows.append({"task": task, "dataset": dataset, "plays": plays_label, "metric": "",
                         "status": NOT_RUN})
            continue
        for metric in task_metrics:
            m = g[g["metric"] == metric]
            if m.empty:
                continue
            by = {meth: dict(zip(m[m["method"] == meth]["seed"], m[m["method"] == meth]["value"]))
                  for meth in ("clip", "contextclip")}
            per_item = None
            if results_dir is not None:
                per_item = {}
                for s in set(by["clip"]) & set(by["contextclip"]):
                    a = load_per_item(results_dir, "clip", s, task, dataset)
                    b = load_per_item(results_dir, "contextclip", s, task, dataset)
                    per_item[s] = (a.get(metric) if a else None, b.get(metric) if b else None)
            c_mean, c_std, c_k = _mean_std(by["clip"])
            x_mean, x_std, x_k = _mean_std(by["contextclip"])
            diff = paired_difference(by["clip"], by["contextclip"], per_item, bootstrap_samples)
            chance = g[g["metric"] == f"chance_{metric}"]["value"]
            p_clip = p_ctx = math.nan
            paper_row = paper_key or plays  # an analogue shows the paper's figure for the row it plays
            if paper_task and paper_row and metric in ("top1", "top5"):
                entry = paper["tables"][paper_task][paper_row][metric]
                p_clip, p_ctx = entry["clip"], entry["contextclip"]
            rows.append({
                "task": task, "dataset": dataset, "plays": plays_label, "metric": metric,
                "n": int(m["n"].max()), "chance": float(chance.iloc[0]) if len(chance) else math.nan,
                "clip_mean": c_mean, "clip_std": c_std, "clip_seeds": c_k,
                "contextclip_mean": x_mean, "contextclip_std": x_std, "contextclip_seeds": x_k,
                **diff,
                "paper_clip": p_clip, "paper_contextclip": p_ctx, "paper_diff": p_ctx - p_clip,
                "paper_is_analogue": bool(paper_row) and not paper_key,
                "status": "ok",
            })
    cols = ["task", "dataset", "plays", "metric", "n", "chance", "clip_mean", "clip_std", "clip_seeds",
            "contextclip_mean", "contextclip_std", "contextclip_seeds", "diff", "ci_low", "ci_high", "ci_method",
            "paired_seeds", "paper_clip", "paper_contextclip", "paper_diff", "paper_is_analogue", "status"]
    return pd.DataFrame(rows, columns=cols)


def _paper_cell(value: float, analogue: bool) -> str:
    text = _fmt(value)
    if not text:
        return "-"
    return f"({text})" if analogue is True else text


def _cell(mean: float, std: float, k: int) -> str:
    if k == 0 or math.isnan(mean):
        return "-"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if k > 1 else "") + f" ({k} seed{'s' if k > 1 else ''})"


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """Human-readable Markdown of a comparison table."""
    head = ["task", "dataset (plays)", "metric", "n", "chance", "CLIP", "ContextCLIP", "ContextCLIP − CLIP [95% CI]",
            "paper CLIP", "paper ContextCLIP"]
    lines = [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        ds = r["dataset"] + (f" ({r['plays']})" if isinstance(r["plays"], str) and r["plays"] else "")
        if r["status"] == NOT_RUN:
            lines.append(f"| {r['task']} | {ds} | | | | {NOT_RUN} | {NOT_RUN} | | | |")
            continue
        diff = "-" if math.isnan(r["diff"]) else f"{r['diff']:+.2f}"
        if not math.isnan(r["ci_low"]):
            diff += f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] ({r['ci_method']})"
        elif not math.isnan(r["diff"]):
            diff += f" ({r['ci_method']})"
        lines.append("| " + " | ".join([
            r["task"], ds, r["metric"], str(int(r["n"])), _fmt(r["chance"]),
            _cell(r["clip_mean"], r["clip_std"], int(r["clip_seeds"])),
            _cell(r["contextclip_mean"], r["contextclip_std"], int(r["contextclip_seeds"])),
            diff, *(_paper_cell(r[k], r["paper_is_analogue"]) for k in ("paper_clip", "paper_contextclip")),
        ]) + " |")
    lines += ["", "Values in percent. Mean ± sample std over seeds. An embedded set in brackets plays that paper",
              "row but is a different dataset: the paper's figure for that row is shown in brackets, for scale",
              "only (different data, model size and training budget; not comparable)."]
    return "\n".join(lines) + "\n"


def build_tables(results_dir: Path, profile: str | None = None, bootstrap_samples: int = 1000) -> dict:
    """Write table1/2/3 as .md and .csv under ``results_dir`` from its metrics.csv; returns the frames."""
    results_dir = Path(results_dir)
    df = read_metrics(results_dir / "metrics.csv")
    if df.empty:
        raise FileNotFoundError(f"{results_dir / 'metrics.csv'} is missing or empty; run "
                                "`python -m contextclip evaluate ...` (or notebooks 03-06) first")
    titles = {"table1_zero_shot": "Table 1: zero-shot classification",
              "table2_fine_tune": "Table 2: fine-tuning and linear probe",
              "table3_retrieval": "Retrieval Recall@K (Fig. 1/5 made quantitative)"}
    out = {}
    for name, (tasks, metrics) in TABLES.items():
        table = comparison_table(df, tasks, metrics, results_dir, bootstrap_samples)
        title = titles[name] + (f" ({profile} profile)" if profile else "")
        fileio.atomic_write(results_dir / f"{name}.csv", table.to_csv(index=False, float_format="%.4g"))
        fileio.atomic_write(results_dir / f"{name}.md", to_markdown(table, title))
        out[name] = table
    return out


def verdict(table: pd.DataFrame) -> str:
    """Plain-language reading of each difference and its 95% interval (and the paper's claim)."""
    lines = []
    for _, r in table.iterrows():
        name = f"{r['dataset']} {r['task'].replace('_', '-')} {r['metric']}"
        if r["status"] == NOT_RUN:
            lines.append(f"- {r['dataset']} {r['task']}: not run (dataset missing).")
            continue
        if math.isnan(r["diff"]):
            lines.append(f"- {name}: no paired CLIP/ContextCLIP result to compare.")
            continue
        s = f"- {name}: ContextCLIP − CLIP = {r['diff']:+.2f} points"
        if math.isnan(r["ci_low"]):
            s += f" ({r['ci_method']}; no interval, so no conclusion)."
        else:
            s += f", 95% CI [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] ({r['ci_method']}): "
            if r["ci_low"] <= 0 <= r["ci_high"]:
                s += "0 is inside the interval, so the difference is not distinguishable from noise."
            else:
                s += "0 is outside the interval: ContextCLIP is " + ("better." if r["diff"] > 0 else "worse.")
            if not math.isnan(r["paper_diff"]) and r.get("paper_is_analogue") is not True:
                inside = r["ci_low"] <= r["paper_diff"] <= r["ci_high"]
                s += (f" The paper reports {r['paper_diff']:+.2f}, which is "
                      f"{'inside' if inside else 'outside'} our interval.")
        if isinstance(r["plays"], str) and r["plays"] and r["dataset"] not in ("cifar10", "cifar100", "mnist",
                                                                                "resisc45", "birdsnap"):
            s += f" ({r['dataset']} plays the paper's {r['plays']} row; the numbers are not comparable.)"
        lines.append(s)
    return "\n".join(lines)
