"""The tables and seed statistics: Table 1 / Table 2 / retrieval beside the paper, from metrics.csv.

What it is:
- Reading and writing ``metrics.csv`` and the per-item files is ``contextclip.results_io``
  (``read_metrics``, ``append_metrics``, ``save_per_item``, ``load_per_item``, importable from here too).
- Which runs the tables summarise (``table_runs``): per method and seed, the run whose folder has
  the layout's name ``<method>-seed<k>`` (the pipeline's), and, when ``seeds`` is given (the
  notebooks and the README tool give the profile's), only those seeds: a profile whose seed list
  or recipe changed leaves the rows of its former seeds in metrics.csv and out of the tables.
  Other runs' rows stay in metrics.csv and out of the tables. Each table's ``.md`` names the runs
  it summarises.
- ``build_tables(results_dir)`` (= ``summarize(...).tables``): ``table1_zero_shot``, ``table2_fine_tune`` (fine-tuning and
  linear probe) and ``table3_retrieval`` as ``.md`` and ``.csv``. Per dataset and metric: CLIP
  and ContextCLIP mean +- sample std over seeds, the paired difference ContextCLIP - CLIP with
  its 95% interval, n, chance, and the paper's numbers (``assets/paper_results.json``; an
  embedded stand-in shows those of the paper row it plays, labelled "stand-in").
  The interval is a Student-t interval over the paired seed differences when >= 2 seeds are
  paired, and a paired percentile bootstrap over test items when one seed is.
- The verdict of each row. On a stand-in (every embedded or pretrained set, whatever paper row it
  plays) a sign verdict only (``sign_verdict``): *ContextCLIP better* / *worse* (the 95% interval
  of ContextCLIP - CLIP excludes 0 on that side), *at ceiling* (it holds 0 and CLIP leaves less
  headroom than the interval's half-width), or *no detectable difference* (it holds 0; the
  half-width says how large a difference could hide in it). Only on the paper's own dataset and
  metric (the paper profile) is the interval held against the size of the paper's gain
  (``three_way``: supports / contradicts / inconclusive).
- Primary endpoints (``primary``, from the profile's ``primary_endpoints``) are marked, get a
  paired t-test p-value Holm-adjusted over the primaries, and make the headline; every other row is
  exploratory. With ``replication_seeds`` the seeds form two disjoint blocks: the tables are block
  A's, and block B's rows are kept beside (``Comparison.replication``) with the agreement rule.
- ``summarize(results_dir)``: the one comparison summary (``Comparison``) that notebook 07,
  ``report.md`` and the README's results section are all rendered from: the tables, the verdict
  counts, every interval that excludes 0, one sentence per row, one Markdown table renderer.

What it is not: nothing is evaluated or encoded here; tables are built from files alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from contextclip import fileio
from contextclip.results_io import (  # noqa: F401 - metrics.csv and per-item files, importable from here too
    METRIC_COLUMNS,
    RUN_COLUMNS,
    append_metrics,
    is_layout_run,
    load_per_item,
    read_metrics,
    save_per_item,
)

__all__ = [
    "METRIC_COLUMNS", "NOT_RUN", "TABLES", "read_metrics", "append_metrics", "save_per_item", "load_per_item",
    "load_paper_results", "paired_difference", "comparison_table", "build_tables", "verdict", "to_markdown",
    "three_way", "sign_verdict", "mde80", "paired_p_value", "holm", "Comparison", "summarize", "SUPPORTS",
    "CONTRADICTS", "INCONCLUSIVE", "BETTER", "WORSE", "NO_DIFFERENCE", "AT_CEILING", "NO_INTERVAL", "VERDICTS",
    "VERDICT_LEGEND", "PRIMARY", "EXPLORATORY", "row_sentence", "row_name", "is_stand_in", "cell_text", "diff_text",
    "endpoint_key", "profile_options",
]

NOT_RUN = "not run: missing"

#: verdict labels. On a stand-in (any embedded or pretrained set): the sign only.
BETTER, WORSE = "ContextCLIP better", "ContextCLIP worse"
NO_DIFFERENCE, AT_CEILING = "no detectable difference", "at ceiling"
#: ... and on the paper's own dataset and metric: the interval against the size of the paper's gain.
SUPPORTS, CONTRADICTS, INCONCLUSIVE = "supports the paper", "contradicts the paper", "inconclusive"
NO_INTERVAL = "no interval"
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE, AT_CEILING, SUPPORTS, CONTRADICTS, INCONCLUSIVE, NO_INTERVAL)
PRIMARY, EXPLORATORY = "primary", "exploratory"
ALPHA_FAMILY = 0.05  # the family-wise level of the primary endpoints (Holm)
VERDICT_LEGEND = (
    "Verdict: on a stand-in (an embedded or pretrained set, whatever paper row it plays) the sign only: "
    "*ContextCLIP better* / *worse* = the interval lies above / below 0; *at ceiling* = it holds 0 and CLIP's "
    "headroom (100 - CLIP) is smaller than the half-width; *no detectable difference* = it holds 0. The paper's "
    "gain is shown beside a stand-in for its sign only (other data, towers and budget); it is compared in size "
    "(*supports* / *contradicts* / *inconclusive*) only on the paper's own dataset and metric. *primary* rows are "
    "the endpoints declared before the runs; every other row is exploratory (not adjusted for multiplicity).")
TABLE_TITLES = {"table1_zero_shot": "Table 1: zero-shot classification",
                "table2_fine_tune": "Table 2: fine-tuning and linear probe",
                "table3_retrieval": "Retrieval Recall@K (Fig. 1/5 made quantitative)"}

#: table name -> (tasks, metrics); retrieval metrics are filled in from what metrics.csv holds
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "table1_zero_shot": (("zero_shot",), ("top1", "top5", "mean_per_class_recall")),
    "table2_fine_tune": (("fine_tune", "linear_probe"), ("top1", "top5")),
    "table3_retrieval": (("retrieval",), ()),
}


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
    if len(seeds) >= 2 and np.ptp(diffs) == 0:
        # Every seed gives the same difference (both methods at a ceiling or at chance, say): a
        # t-interval would be a single point and "exclude" every other value. No interval.
        out.update(ci_low=math.nan, ci_high=math.nan,
                   ci_method=f"no spread: all {len(seeds)} seeds give the same difference")
        return out
    if len(seeds) >= 2:
        lo, hi = t_interval(diffs)
        out.update(ci_low=lo, ci_high=hi, ci_method=f"t over {len(seeds)} seeds", sd=float(diffs.std(ddof=1)),
                   p_value=paired_p_value(diffs), mde80=mde80(float(diffs.std(ddof=1)), len(seeds)))
        return out
    pair = (per_item or {}).get(seeds[0])
    if pair is not None and pair[0] is not None and pair[1] is not None and len(pair[0]) == len(pair[1]):
        lo, hi = paired_bootstrap(pair[0], pair[1], samples)
        out.update(ci_low=lo, ci_high=hi, ci_method=f"bootstrap over {len(pair[0])} test items, 1 seed")
    else:
        out.update(ci_low=math.nan, ci_high=math.nan, ci_method="1 seed, no per-item results")
    return out


def paired_p_value(diffs) -> float:
    """Two-sided paired t-test p-value of the mean of ``diffs`` against 0 (NaN without spread)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or np.ptp(d) == 0:
        return math.nan
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def mde80(sd: float, n: int) -> float:
    """The paired difference detectable with 80% power at two-sided 5% with ``n`` seeds and this SD:
    (t_{0.975,n-1} + t_{0.80,n-1}) * sd / sqrt(n)."""
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return math.nan
    return float((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.80, n - 1)) * sd / math.sqrt(n))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count)."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (len(idx) - rank) * p_values[i]))
        out[i] = running
    return out


def sign_verdict(ci_low: float, ci_high: float, clip_mean: float = math.nan, ceiling: float = 100.0) -> str:
    """The verdict of a stand-in row: the sign of ContextCLIP - CLIP, never the size of the paper's gain.

    ``BETTER`` / ``WORSE`` when the 95% interval excludes 0 on that side; else ``AT_CEILING`` when CLIP's
    headroom (``ceiling`` - ``clip_mean``) is smaller than the interval's half-width; else
    ``NO_DIFFERENCE``. No interval (NaN bounds): ``NO_INTERVAL``.
    """
    if math.isnan(ci_low) or math.isnan(ci_high):
        return NO_INTERVAL
    if ci_low > 0:
        return BETTER
    if ci_high < 0:
        return WORSE
    if not math.isnan(clip_mean) and ceiling - clip_mean < (ci_high - ci_low) / 2:
        return AT_CEILING
    return NO_DIFFERENCE


def endpoint_key(task: str, dataset: str, metric: str) -> str:
    """How ``primary_endpoints`` names a row: ``task/dataset/metric``."""
    return f"{task}/{dataset}/{metric}"


def three_way(ci_low: float, ci_high: float, paper_gain: float = math.nan) -> str:
    """The verdict of one interval of ContextCLIP - CLIP against 0 and the paper's claimed gain.

    Used only where the row is the paper's own dataset and metric. ``SUPPORTS`` when the interval
    excludes 0 on the side of the paper's gain (whether or not it also holds the gain itself), else
    ``CONTRADICTS`` when it excludes the paper's gain, else ``INCONCLUSIVE`` (it holds both 0 and
    the gain). Without a paper gain (NaN): the sign verdict. No interval (NaN bounds): ``NO_INTERVAL``.
    """
    if math.isnan(ci_low) or math.isnan(ci_high):
        return NO_INTERVAL
    holds_zero = ci_low <= 0.0 <= ci_high
    if math.isnan(paper_gain):
        return sign_verdict(ci_low, ci_high)
    if not holds_zero and (ci_low > 0) == (paper_gain > 0) and paper_gain != 0:
        return SUPPORTS
    if not ci_low <= paper_gain <= ci_high:
        return CONTRADICTS
    return INCONCLUSIVE


# --------------------------------------------------------------------------- tables
def _fmt(x: float, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _mean_std(values: dict[int, float]) -> tuple[float, float, int]:
    v = np.array(list(values.values()), dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def _retrieval_metrics(df: pd.DataFrame) -> tuple[str, ...]:
    """Recall metrics in reading order: text->image first, by K, each caption-only ``_exact`` row
    (generated sets) right under the attribute-matched one it differs from."""
    names = [m for m in df["metric"].unique() if "R@" in m and not m.startswith("chance")]

    def order(m: str):
        k, _, suffix = m.split("@", 1)[1].partition("_")
        return (not m.startswith("text_to_image"), int(k), suffix)

    return tuple(sorted(names, key=order))


def comparison_table(df: pd.DataFrame, tasks: tuple[str, ...], metrics: tuple[str, ...],
                     results_dir: Path | None = None, bootstrap_samples: int = 1000,
                     primary: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per (task, dataset, metric): both methods over seeds, the paired difference, the paper.

    ``primary``: the ``task/dataset/metric`` keys of the primary endpoints (marked ``role``; their
    p-values Holm-adjusted among themselves in ``p_holm``); every other row is exploratory.
    """
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
            paper_gain = round(p_ctx - p_clip, 2)  # the paper's figures have two decimals
            rows.append({
                "task": task, "dataset": dataset, "plays": plays_label, "metric": metric,
                "n": int(m["n"].max()), "chance": float(chance.iloc[0]) if len(chance) else math.nan,
                "clip_mean": c_mean, "clip_std": c_std, "clip_seeds": c_k,
                "contextclip_mean": x_mean, "contextclip_std": x_std, "contextclip_seeds": x_k,
                **diff, "half_width": (diff["ci_high"] - diff["ci_low"]) / 2,
                "paper_clip": p_clip, "paper_contextclip": p_ctx, "paper_diff": paper_gain,
                "paper_is_analogue": bool(paper_row) and not paper_key,
                # the paper's gain is held against ours in size only on its own dataset and metric
                "verdict": (three_way(diff["ci_low"], diff["ci_high"], paper_gain) if paper_key and not
                            math.isnan(paper_gain) else sign_verdict(diff["ci_low"], diff["ci_high"], c_mean)),
                "role": PRIMARY if endpoint_key(task, dataset, metric) in primary else EXPLORATORY,
                "status": "ok",
            })
    cols = ["task", "dataset", "plays", "metric", "role", "n", "chance", "clip_mean", "clip_std", "clip_seeds",
            "contextclip_mean", "contextclip_std", "contextclip_seeds", "diff", "ci_low", "ci_high", "ci_method",
            "paired_seeds", "half_width", "sd", "mde80", "p_value", "p_holm", "paper_clip", "paper_contextclip",
            "paper_diff", "paper_is_analogue", "verdict", "status"]
    out = pd.DataFrame(rows, columns=cols)
    prim = out.index[out["role"] == PRIMARY]
    if len(prim):
        out.loc[prim, "p_holm"] = holm([float(p) for p in out.loc[prim, "p_value"]])
        # the rule written before the runs (docs/decisions.md, "The answer"): a primary endpoint is called
        # better or worse only when its interval excludes 0 *and* its Holm-adjusted p is below 0.05
        for i in prim:
            if out.at[i, "verdict"] in (BETTER, WORSE) and not float(out.at[i, "p_holm"]) < ALPHA_FAMILY:
                out.at[i, "verdict"] = NO_DIFFERENCE
    return out


def cell_text(mean: float, std: float, k: int, digits: int = 2, seeds: bool = True) -> str:
    """``mean ± std (k seeds)`` of one method, as every table of the kit writes it."""
    if k == 0 or math.isnan(mean):
        return "-"
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if k > 1 else "")
    return text + (f" ({k} seed{'s' if k > 1 else ''})" if seeds else "")


def diff_text(r, digits: int = 2, method: bool = True) -> str:
    """``+d [lo, hi] (how)`` of one comparison row."""
    if math.isnan(r["diff"]):
        return "-"
    text = f"{r['diff']:+.{digits}f}"
    if not math.isnan(r["ci_low"]):
        text += f" [{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}]"
    return text + (f" ({r['ci_method']})" if method else "")


def is_stand_in(r) -> bool:
    """Whether a row is an embedded stand-in for a paper row (bool, numpy bool or CSV text)."""
    return r.get("paper_is_analogue") in (True, "True")


def _paper_cell(r) -> str:
    if math.isnan(r["paper_clip"]):
        return "-"
    text = f"{r['paper_clip']:.2f} / {r['paper_contextclip']:.2f} ({r['paper_diff']:+.2f})"
    return f"stand-in: {r['plays']} {text}" if is_stand_in(r) else text


def _holm_held_back(r) -> bool:
    """A primary whose interval excludes 0 but whose Holm-adjusted p is not below ``ALPHA_FAMILY``."""
    p = r.get("p_holm")
    return (_role_of(r) == PRIMARY and r["verdict"] == NO_DIFFERENCE and p is not None and p == p
            and not (r["ci_low"] <= 0 <= r["ci_high"]))


def _verdict_cell(r) -> str:
    v = r["verdict"]
    if _holm_held_back(r):
        return f"{v} after Holm (the interval excludes 0; adjusted p {r['p_holm']:.3f})"
    if v == NO_DIFFERENCE and not math.isnan(r["half_width"]):
        return f"{v} (±{r['half_width']:.1f})"
    return v


def _role_of(r) -> str:
    return r["role"] if isinstance(r.get("role"), str) and r["role"] else EXPLORATORY


def _p_cell(r) -> str:
    p = r.get("p_holm") if _role_of(r) == PRIMARY else r.get("p_value")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def to_markdown(table: pd.DataFrame, title: str | None = None, metrics: tuple[str, ...] | None = None,
                digits: int = 2, compact: bool = False, verdicts: bool = True) -> str:
    """The one Markdown rendering of a comparison table (the results files, notebook 07, the README).

    ``metrics`` keeps only those rows; ``compact`` drops the seed counts and the interval method
    (the README's short form); ``digits`` is the number of decimals of our numbers; ``verdicts``
    False leaves the verdict column out (numbers that measure nothing, such as the smoke profile's).
    Primary endpoints come first, in bold.
    """
    head = ["role", "task", "dataset (plays)", "metric", "n", "chance", "CLIP", "ContextCLIP",
            "ContextCLIP − CLIP [95% CI]", "half-width ±", "MDE80 ±", "p (Holm for primary)",
            "paper CLIP / ContextCLIP (gain)"] + (["verdict"] if verdicts else [])
    lines = ([f"## {title}", ""] if title else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(range(len(table)), key=lambda i: _role_of(table.iloc[i]) != PRIMARY)
    for _, r in table.iloc[order].iterrows():
        if metrics is not None and r["status"] != NOT_RUN and r["metric"] not in metrics:
            continue
        ds = r["dataset"] + (f" ({r['plays']})" if isinstance(r["plays"], str) and r["plays"] else "")
        if r["status"] == NOT_RUN:
            lines.append(f"| | {r['task']} | {ds} | | | | {NOT_RUN} | {NOT_RUN} |" + " |" * (len(head) - 8))
            continue
        role = _role_of(r)
        cells = [f"**{role}**" if role == PRIMARY else role, r["task"], ds, r["metric"], str(int(r["n"])),
                 _fmt(r["chance"], 1 if compact else 2),
                 cell_text(r["clip_mean"], r["clip_std"], int(r["clip_seeds"]), digits, not compact),
                 cell_text(r["contextclip_mean"], r["contextclip_std"], int(r["contextclip_seeds"]), digits,
                           not compact),
                 diff_text(r, digits, not compact), _fmt(r["half_width"], digits) or "-",
                 _fmt(r.get("mde80", math.nan), digits) or "-", _p_cell(r), _paper_cell(r)]
        if verdicts:
            cells.append(_verdict_cell(r))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Values in percent; mean ± sample std over seeds; the interval is a 95% t-interval of the paired "
              "difference over seeds, *half-width ±* its half-width, and *MDE80 ±* the difference detectable with "
              "80% power at this number of seeds and spread. p: paired t-test, Holm-adjusted over the primary "
              "endpoints, unadjusted on exploratory rows. " + (VERDICT_LEGEND if verdicts else
                                                              "No verdicts: these numbers measure nothing.")]
    return "\n".join(lines) + "\n"


def table_runs(df: pd.DataFrame, source: Path | str = "metrics.csv",
               seeds=None) -> tuple[pd.DataFrame, list[str]]:
    """The rows the tables summarise (layout-named runs of ``seeds``, or of every seed when it is
    None; see the module docstring) and those runs.

    Two different layout-named runs for one (method, seed, task, dataset) are an error naming both.
    """
    keep = df[[is_layout_run(r, m, s) for r, m, s in zip(df["run"], df["method"], df["seed"])]]
    if seeds is not None:
        keep = keep[keep["seed"].isin([int(s) for s in seeds])]
    runs_per_key = keep.groupby(["method", "seed", "task", "dataset"])["run"].nunique()
    clash = runs_per_key[runs_per_key > 1]
    if len(clash):
        method, seed, task, dataset = clash.index[0]
        both = sorted(set(keep[(keep.method == method) & (keep.seed == seed) & (keep.task == task)
                               & (keep.dataset == dataset)]["run"]))
        raise ValueError(f"{source}: rows of {len(both)} runs named {method}-seed{seed} for {task} {dataset} "
                         f"({', '.join(map(str, both))}); evaluate one of them into another results folder "
                         "(--results) and remove its rows here")
    return keep, sorted(r for r in set(keep["run"]) if r)


def build_tables(results_dir: Path, profile: str | None = None, bootstrap_samples: int = 1000,
                 seeds=None, **options) -> dict:
    """Write table1/2/3 as .md and .csv under ``results_dir`` from its metrics.csv (the runs of
    ``seeds``, or of every seed when None; ``options`` as ``summarize``); returns the frames."""
    return summarize(results_dir, profile, bootstrap_samples, seeds=seeds, **options).tables


def profile_options(cfg) -> dict:
    """The ``summarize`` / ``build_tables`` keywords a profile's config sets: its bootstrap setting,
    seeds, primary endpoints, second seed block, and whether its numbers get verdicts."""
    return {"bootstrap_samples": cfg.eval.bootstrap_samples, "seeds": list(cfg.train.seeds),
            "primary": tuple(cfg.eval.primary_endpoints), "replication_seeds": tuple(cfg.eval.replication_seeds),
            "verdicts": bool(getattr(cfg.eval, "verdicts", True))}


def row_name(r) -> str:
    """``dataset task metric`` of a row, as the sentences and the headline name it."""
    return f"{r['dataset']} {r['task'].replace('_', '-')} {r['metric']}"


def _gain_phrase(r) -> str:
    return f"the paper's gain of {r['paper_diff']:+.2f}"


def row_sentence(r) -> str:
    """One sentence for one table row: the difference, its interval, its half-width, the verdict."""
    if r["status"] == NOT_RUN:
        return f"{r['dataset']} {r['task']}: not run (dataset missing)."
    if math.isnan(r["diff"]):
        return f"{row_name(r)}: no paired CLIP/ContextCLIP result to compare."
    role = _role_of(r)
    head = f"{row_name(r)} ({role}): ContextCLIP − CLIP = {r['diff']:+.2f} points"
    v = r["verdict"]
    if v == NO_INTERVAL:
        return f"{head} ({r['ci_method']}; no interval, so no conclusion)."
    head += (f", 95% CI [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] ({r['ci_method']}; half-width "
             f"±{r['half_width']:.2f}): **{v}**")
    if v == SUPPORTS:
        tail = f"; the interval excludes 0 on the side of {_gain_phrase(r)}"
        if not r["ci_low"] <= r["paper_diff"] <= r["ci_high"]:
            size = "smaller" if abs(r["diff"]) < abs(r["paper_diff"]) else "larger"
            tail += f", though not the paper's gain itself (ours is {size})"
    elif v == CONTRADICTS:
        side = "better" if r["ci_low"] > 0 else "worse"
        tail = f"; the interval excludes {_gain_phrase(r)}"
        tail += ", and 0 too: ContextCLIP is " + side if not r["ci_low"] <= 0 <= r["ci_high"] else ", and holds 0"
    elif v == INCONCLUSIVE:
        tail = f"; the interval holds both 0 and {_gain_phrase(r)}, so this run cannot tell them apart"
    elif v == AT_CEILING:
        tail = (f"; CLIP's headroom ({100 - r['clip_mean']:.1f} points) is smaller than the half-width, so this "
                "row cannot show a gain")
    elif v == NO_DIFFERENCE and _holm_held_back(r):
        tail = (f"; the interval excludes 0, but the Holm-adjusted p over the primary endpoints is "
                f"{r['p_holm']:.3f}, not below {ALPHA_FAMILY:g}, so the rule does not call it")
    elif v == NO_DIFFERENCE:
        tail = f"; a difference of up to about ±{r['half_width']:.1f} points could hide in the interval"
    else:
        tail = ""
    if is_stand_in(r) and not math.isnan(r["paper_diff"]):
        same = (r["paper_diff"] > 0) == (v == BETTER)
        tail += (f" (stand-in for {r['plays']}: the paper's gain there is {r['paper_diff']:+.2f}; only its sign "
                 f"carries over{', and it ' + ('agrees' if same else 'disagrees') if v in (BETTER, WORSE) else ''})")
    return head + tail + "."


def verdict(table: pd.DataFrame) -> str:
    """One bullet per row of a comparison table (``row_sentence``)."""
    return "\n".join(f"- {row_sentence(r)}" for _, r in table.iterrows())


@dataclasses.dataclass
class Comparison:
    """The comparison summary of one results folder: every view of the verdict is rendered from it.

    ``tables`` are block A's (the profile's seeds, less ``replication_seeds``); ``replication`` holds
    the same tables over block B's seeds (empty without a second block).
    """

    profile: str | None
    tables: dict[str, pd.DataFrame]
    runs: list[str] = dataclasses.field(default_factory=list)  # the run folders the tables summarise
    replication: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    verdicts: bool = True  # False: numbers that measure nothing (smoke), shown without verdicts

    def runs_line(self) -> str:
        """``Runs summarised: ...`` (the line under each table's ``.md``)."""
        names = ", ".join(f"`{r}`" for r in self.runs) if self.runs else "(not recorded)"
        return f"\nRuns summarised: {names}\n"

    @staticmethod
    def _compared(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
        frames = [t.assign(table=name) for name, t in tables.items() if len(t)]
        if not frames:
            return pd.DataFrame(columns=["table", "role"])
        out = pd.concat(frames, ignore_index=True)
        return out[(out["status"] == "ok") & out["diff"].notna()]

    def rows(self) -> pd.DataFrame:
        """Every compared row of every table (``table`` column added), not-run rows left out."""
        return self._compared(self.tables)

    def primary(self) -> pd.DataFrame:
        """The primary endpoints' rows (block A), each with block B's beside when there is a block B:
        ``b_diff``, ``b_ci_low``, ``b_ci_high``, ``b_seeds``, ``b_verdict``, ``b_agrees`` (B's mean inside
        A's interval) and ``held`` (both blocks give the same verdict)."""
        a = self.rows()
        a = a[a["role"] == PRIMARY].copy() if len(a) else a
        b = self._compared(self.replication)
        for col in ("b_diff", "b_ci_low", "b_ci_high", "b_seeds", "b_verdict", "b_agrees", "held"):
            a[col] = None
        for i, r in a.iterrows():
            m = b[(b["task"] == r["task"]) & (b["dataset"] == r["dataset"]) & (b["metric"] == r["metric"])] \
                if len(b) else b
            if len(m):
                x = m.iloc[0]
                a.at[i, "b_diff"], a.at[i, "b_ci_low"], a.at[i, "b_ci_high"] = x["diff"], x["ci_low"], x["ci_high"]
                a.at[i, "b_seeds"], a.at[i, "b_verdict"] = int(x["paired_seeds"]), x["verdict"]
                a.at[i, "b_agrees"] = bool(r["ci_low"] <= x["diff"] <= r["ci_high"])
                a.at[i, "held"] = bool(x["verdict"] == r["verdict"])
        return a

    def forest_rows(self, metrics: tuple[str, ...] = ("top1", "text_to_image_R@1", "image_to_text_R@1")) -> pd.DataFrame:
        """The rows of the forest plot: primaries first, then the exploratory rows of ``metrics``, each
        with block A's interval and (when there is a block B) block B's: columns ``label``, ``role``,
        ``block``, ``diff``, ``ci_low``, ``ci_high``, ``headroom`` (100 - CLIP's mean: the largest gain
        the row could show) and ``seeds``."""
        out = []
        for block, tables in (("A", self.tables), ("B", self.replication)):
            r = self._compared(tables)
            if r.empty:
                continue
            r = r[(r["role"] == PRIMARY) | r["metric"].isin(metrics)]
            for _, x in r.iterrows():
                out.append({"label": f"{x['dataset']} {x['metric']}", "role": x["role"], "block": block,
                            "diff": x["diff"], "ci_low": x["ci_low"], "ci_high": x["ci_high"],
                            "headroom": 100.0 - x["clip_mean"], "seeds": int(x["paired_seeds"])})
        df = pd.DataFrame(out, columns=["label", "role", "block", "diff", "ci_low", "ci_high", "headroom", "seeds"])
        if df.empty:
            return df
        first = {lab: i for i, lab in enumerate(dict.fromkeys(df.sort_values(
            "role", key=lambda c: c != PRIMARY, kind="stable")["label"]))}
        return df.assign(_o=df["label"].map(first)).sort_values(["_o", "block"], kind="stable").drop(columns="_o") \
            .reset_index(drop=True)

    def excluding_zero(self) -> pd.DataFrame:
        """The rows whose 95% interval excludes 0 (whatever their verdict)."""
        r = self.rows()
        return r[(r["ci_low"] > 0) | (r["ci_high"] < 0)] if len(r) else r

    def counts(self, role: str | None = None) -> dict[str, int]:
        """``verdict -> number of rows`` over the compared rows (of ``role`` only, when given)."""
        r = self.rows()
        if role is not None and len(r):
            r = r[r["role"] == role]
        return {v: int((r["verdict"] == v).sum()) for v in VERDICTS} if len(r) else {}

    def primary_sentence(self, x) -> str:
        """One primary endpoint in words: both methods, the interval, Holm's p, the verdict, block B."""
        text = (f"{row_name(x)}: CLIP {x['clip_mean']:.1f}%, ContextCLIP {x['contextclip_mean']:.1f}% "
                f"(chance {x['chance']:.1f}%, n = {int(x['n'])}), ContextCLIP − CLIP {x['diff']:+.2f} "
                f"[{x['ci_low']:+.2f}, {x['ci_high']:+.2f}] over {int(x['paired_seeds'])} seeds (half-width "
                f"±{x['half_width']:.2f}, Holm-adjusted p {_p_cell(x)})")
        if self.verdicts:
            text += f": **{_verdict_cell(x)}**"
        if x.get("b_diff") is not None and not (isinstance(x["b_diff"], float) and math.isnan(x["b_diff"])):
            text += (f"; block B ({x['b_seeds']} other seeds): {x['b_diff']:+.2f} [{x['b_ci_low']:+.2f}, "
                     f"{x['b_ci_high']:+.2f}], {'inside' if x['b_agrees'] else 'outside'} block A's interval"
                     + (f", verdict {x['b_verdict']} ({'held on both blocks' if x['held'] else 'not held on both blocks'})"
                        if self.verdicts else ""))
        return text + "."

    def headline(self) -> str:
        """A short paragraph: the primary endpoints, then what the exploratory rows show."""
        r = self.rows()
        if r.empty:
            return "No paired CLIP/ContextCLIP results to compare yet."
        if not self.verdicts:
            return (f"{len(r)} rows compared; no verdicts: these numbers measure nothing (tiny random-init towers "
                    "trained for seconds, near chance). Run `make reproduce` for the embedded profile.")
        prim = self.primary()
        text = ""
        if len(prim):
            text += "Primary endpoints: " + " ".join(self.primary_sentence(x) for _, x in prim.iterrows()) + " "
        else:
            text += "No primary endpoint is declared for this profile: every row is exploratory. "
        # the old exact-caption retrieval rows (``*_exact``) are shown beside, not counted twice
        expl = r[(r["role"] != PRIMARY) & ~r["metric"].astype(str).str.endswith("_exact")]
        if len(expl):
            c = {v: int((expl["verdict"] == v).sum()) for v in VERDICTS}
            parts = [f"{n} {v}" for v, n in c.items() if n]
            text += f"Exploratory rows ({len(expl)}, not adjusted for multiplicity): " + ", ".join(parts) + ". "
            top1 = expl[(expl["task"] == "zero_shot") & (expl["metric"] == "top1") & expl["half_width"].notna()]
            if len(top1):
                text += (f"Half-widths on exploratory zero-shot top-1: ±{top1['half_width'].min():.1f} to "
                         f"±{top1['half_width'].max():.1f} points.")
        return text.strip()

    def table_markdown(self, name: str, metrics: tuple[str, ...] | None = None, digits: int = 2,
                       compact: bool = False, title: bool = True) -> str:
        heading = TABLE_TITLES[name] + (f" ({self.profile} profile)" if self.profile else "") if title else None
        return to_markdown(self.tables[name], heading, metrics, digits, compact, self.verdicts)

    def table_file(self, name: str) -> str:
        """What ``results/<profile>/<name>.md`` holds: the table, then the runs it summarises."""
        return self.table_markdown(name) + self.runs_line()

    def reading(self) -> str:
        """One bullet per row, table by table (Markdown)."""
        parts = []
        for name, t in self.tables.items():
            if len(t):
                parts.append(f"**{TABLE_TITLES[name]}**\n\n" + verdict(t))
        return "\n\n".join(parts)

    def report_markdown(self, environment: dict | None = None) -> str:
        """``report.md``: the headline, the verdict of every row, and the environment."""
        text = f"# Report ({self.profile} profile)\n\n{self.headline()}\n\n{self.reading()}\n"
        if environment:
            text += "\n## Environment\n\n" + "\n".join(f"- {k}: {v}" for k, v in environment.items()) + "\n"
        return text


def summarize(results_dir: Path, profile: str | None = None, bootstrap_samples: int = 1000,
              write: bool = True, seeds=None, primary=(), replication_seeds=(), verdicts: bool = True) -> Comparison:
    """Build the comparison summary from ``results_dir/metrics.csv`` (and per-item files).

    ``seeds``: summarise the runs of these seeds only (the profile's; None: every seed found).
    ``primary``: the primary endpoints (``task/dataset/metric``; the profile's ``primary_endpoints``).
    ``replication_seeds``: block B (the profile's ``replication_seeds``): the tables are those of the
    other seeds (block A), and ``Comparison.replication`` holds block B's.
    ``verdicts`` False: no verdict column or verdict sentences (numbers that measure nothing).
    With ``write`` the three tables are also written as ``.md`` and ``.csv`` (atomically).
    """
    results_dir = Path(results_dir)
    df = read_metrics(results_dir / "metrics.csv")
    if df.empty:
        raise FileNotFoundError(f"{results_dir / 'metrics.csv'} is missing or empty; run "
                                "`python -m contextclip evaluate ...` (or notebooks 03-06) first")
    df, runs = table_runs(df, results_dir / "metrics.csv", seeds)
    if df.empty and seeds is not None:
        raise FileNotFoundError(f"{results_dir / 'metrics.csv'} has no rows of seeds {list(seeds)}; "
                                "run the evaluations of those seeds (notebooks 03-06) first")
    block_b = {int(x) for x in replication_seeds}
    df_a, df_b = df[~df["seed"].isin(block_b)], df[df["seed"].isin(block_b)]
    primary = tuple(primary)
    tables = {name: comparison_table(df_a, tasks, metrics, results_dir, bootstrap_samples, primary)
              for name, (tasks, metrics) in TABLES.items()}
    replication = ({name: comparison_table(df_b, tasks, metrics, results_dir, bootstrap_samples, primary)
                    for name, (tasks, metrics) in TABLES.items()} if len(df_b) else {})
    comparison = Comparison(profile, tables, runs, replication, verdicts)
    if write:
        for name, table in tables.items():  # atomic: a kill mid-write leaves the old table, never half a one
            fileio.atomic_write(results_dir / f"{name}.csv", table.to_csv(index=False, float_format="%.4g"))
            fileio.atomic_write(results_dir / f"{name}.md", comparison.table_file(name))
    return comparison
