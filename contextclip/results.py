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
- The three-way verdict of each row (``three_way``): the 95% interval of ContextCLIP - CLIP against
  0 and against the paper's claimed gain (ContextCLIP - CLIP in the paper's Table 1/2):
  *supports the paper* (excludes 0, on the paper's side), *contradicts the paper* (excludes the
  paper's gain), *inconclusive* (holds both). An embedded stand-in row is compared with the gain
  of the paper row it plays and labelled as a stand-in; a row without a paper figure (linear
  probe, mean-per-class recall, retrieval) only says whether its interval excludes 0. The
  interval's half-width is the smallest difference the run could have detected.
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
    "three_way", "Comparison", "summarize", "SUPPORTS", "CONTRADICTS", "INCONCLUSIVE", "EXCLUDES_ZERO",
    "HOLDS_ZERO", "NO_INTERVAL", "VERDICTS", "VERDICT_LEGEND", "row_sentence", "row_name", "is_stand_in", "cell_text", "diff_text",
]

NOT_RUN = "not run: missing"

#: verdict labels (the three-way verdict against the paper, and the two for rows without a paper figure)
SUPPORTS, CONTRADICTS, INCONCLUSIVE = "supports the paper", "contradicts the paper", "inconclusive"
EXCLUDES_ZERO, HOLDS_ZERO, NO_INTERVAL = "excludes 0", "holds 0", "no interval"
VERDICTS = (SUPPORTS, CONTRADICTS, INCONCLUSIVE, EXCLUDES_ZERO, HOLDS_ZERO, NO_INTERVAL)
VERDICT_LEGEND = (
    "Verdict: *supports the paper* = the interval excludes 0 on the side of the paper's gain; *contradicts the "
    "paper* = it excludes the paper's gain; *inconclusive* = it holds both; rows without a paper figure only say "
    "whether the interval excludes 0. A *stand-in* (an embedded set that plays a paper row) is compared with the "
    "gain of the row it plays: different data, model size and budget, so only the sign and size of the gain are "
    "compared, never the accuracies.")
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
        out.update(ci_low=lo, ci_high=hi, ci_method=f"t over {len(seeds)} seeds")
        return out
    pair = (per_item or {}).get(seeds[0])
    if pair is not None and pair[0] is not None and pair[1] is not None and len(pair[0]) == len(pair[1]):
        lo, hi = paired_bootstrap(pair[0], pair[1], samples)
        out.update(ci_low=lo, ci_high=hi, ci_method=f"bootstrap over {len(pair[0])} test items, 1 seed")
    else:
        out.update(ci_low=math.nan, ci_high=math.nan, ci_method="1 seed, no per-item results")
    return out


def three_way(ci_low: float, ci_high: float, paper_gain: float = math.nan) -> str:
    """The verdict of one interval of ContextCLIP - CLIP against 0 and the paper's claimed gain.

    With a paper gain: ``SUPPORTS`` when the interval excludes 0 on the side of the paper's gain
    (whether or not it also holds the gain itself), else ``CONTRADICTS`` when it excludes the
    paper's gain, else ``INCONCLUSIVE`` (it holds both 0 and the gain). Without one (NaN):
    ``EXCLUDES_ZERO`` or ``HOLDS_ZERO``. No interval (NaN bounds): ``NO_INTERVAL``.
    """
    if math.isnan(ci_low) or math.isnan(ci_high):
        return NO_INTERVAL
    holds_zero = ci_low <= 0.0 <= ci_high
    if math.isnan(paper_gain):
        return HOLDS_ZERO if holds_zero else EXCLUDES_ZERO
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
            paper_gain = round(p_ctx - p_clip, 2)  # the paper's figures have two decimals
            rows.append({
                "task": task, "dataset": dataset, "plays": plays_label, "metric": metric,
                "n": int(m["n"].max()), "chance": float(chance.iloc[0]) if len(chance) else math.nan,
                "clip_mean": c_mean, "clip_std": c_std, "clip_seeds": c_k,
                "contextclip_mean": x_mean, "contextclip_std": x_std, "contextclip_seeds": x_k,
                **diff, "half_width": (diff["ci_high"] - diff["ci_low"]) / 2,
                "paper_clip": p_clip, "paper_contextclip": p_ctx, "paper_diff": paper_gain,
                "paper_is_analogue": bool(paper_row) and not paper_key,
                "verdict": three_way(diff["ci_low"], diff["ci_high"], paper_gain),
                "status": "ok",
            })
    cols = ["task", "dataset", "plays", "metric", "n", "chance", "clip_mean", "clip_std", "clip_seeds",
            "contextclip_mean", "contextclip_std", "contextclip_seeds", "diff", "ci_low", "ci_high", "ci_method",
            "paired_seeds", "half_width", "paper_clip", "paper_contextclip", "paper_diff", "paper_is_analogue",
            "verdict", "status"]
    return pd.DataFrame(rows, columns=cols)


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


def to_markdown(table: pd.DataFrame, title: str | None = None, metrics: tuple[str, ...] | None = None,
                digits: int = 2, compact: bool = False) -> str:
    """The one Markdown rendering of a comparison table (the results files, notebook 07, the README).

    ``metrics`` keeps only those rows; ``compact`` drops the seed counts and the interval method
    (the README's short form); ``digits`` is the number of decimals of our numbers.
    """
    head = ["task", "dataset (plays)", "metric", "n", "chance", "CLIP", "ContextCLIP", "ContextCLIP − CLIP [95% CI]",
            "detectable ±", "paper CLIP / ContextCLIP (gain)", "verdict"]
    lines = ([f"## {title}", ""] if title else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        if metrics is not None and r["status"] != NOT_RUN and r["metric"] not in metrics:
            continue
        ds = r["dataset"] + (f" ({r['plays']})" if isinstance(r["plays"], str) and r["plays"] else "")
        if r["status"] == NOT_RUN:
            lines.append(f"| {r['task']} | {ds} | | | | {NOT_RUN} | {NOT_RUN} | | | | |")
            continue
        lines.append("| " + " | ".join([
            r["task"], ds, r["metric"], str(int(r["n"])), _fmt(r["chance"], 1 if compact else 2),
            cell_text(r["clip_mean"], r["clip_std"], int(r["clip_seeds"]), digits, not compact),
            cell_text(r["contextclip_mean"], r["contextclip_std"], int(r["contextclip_seeds"]), digits, not compact),
            diff_text(r, digits, not compact), _fmt(r["half_width"], digits) or "-", _paper_cell(r),
            r["verdict"] + (" (stand-in)" if is_stand_in(r) and r["verdict"] in (SUPPORTS, CONTRADICTS, INCONCLUSIVE)
                            else ""),
        ]) + " |")
    lines += ["", "Values in percent; mean ± sample std over seeds; the interval is a 95% interval of the paired "
              "difference and *detectable ±* its half-width (the smallest difference the run could detect). "
              + VERDICT_LEGEND]
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
                 seeds=None) -> dict:
    """Write table1/2/3 as .md and .csv under ``results_dir`` from its metrics.csv (the runs of
    ``seeds``, or of every seed when None); returns the frames."""
    return summarize(results_dir, profile, bootstrap_samples, seeds=seeds).tables


def row_name(r) -> str:
    """``dataset task metric`` of a row, as the sentences and the headline name it."""
    return f"{r['dataset']} {r['task'].replace('_', '-')} {r['metric']}"


def _gain_phrase(r) -> str:
    gain = f"the paper's gain of {r['paper_diff']:+.2f}"
    if is_stand_in(r):
        gain += f" on {r['plays']} (this set stands in for that row)"
    return gain


def row_sentence(r) -> str:
    """One sentence for one table row: the difference, its interval, the detectable size, the verdict."""
    if r["status"] == NOT_RUN:
        return f"{r['dataset']} {r['task']}: not run (dataset missing)."
    if math.isnan(r["diff"]):
        return f"{row_name(r)}: no paired CLIP/ContextCLIP result to compare."
    head = f"{row_name(r)}: ContextCLIP − CLIP = {r['diff']:+.2f} points"
    v = r["verdict"]
    if v == NO_INTERVAL:
        return f"{head} ({r['ci_method']}; no interval, so no conclusion)."
    head += (f", 95% CI [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] ({r['ci_method']}; smallest detectable "
             f"difference ±{r['half_width']:.2f}): **{v}**")
    side = "better" if r["ci_low"] > 0 else "worse"
    if v == SUPPORTS:
        tail = f"; the interval excludes 0 on the side of {_gain_phrase(r)}"
        if not r["ci_low"] <= r["paper_diff"] <= r["ci_high"]:
            size = "smaller" if abs(r["diff"]) < abs(r["paper_diff"]) else "larger"
            tail += f", though not the paper's gain itself (ours is {size})"
    elif v == CONTRADICTS:
        tail = f"; the interval excludes {_gain_phrase(r)}"
        tail += ", and 0 too: ContextCLIP is " + side if not r["ci_low"] <= 0 <= r["ci_high"] else ", and holds 0"
    elif v == INCONCLUSIVE:
        tail = f"; the interval holds both 0 and {_gain_phrase(r)}, so this run cannot tell them apart"
    elif v == EXCLUDES_ZERO:
        tail = f" (no paper figure for this row): ContextCLIP is {side}"
    else:
        tail = " (no paper figure for this row): no difference detectable at this size"
    return head + tail + "."


def verdict(table: pd.DataFrame) -> str:
    """One bullet per row of a comparison table (``row_sentence``)."""
    return "\n".join(f"- {row_sentence(r)}" for _, r in table.iterrows())


@dataclasses.dataclass
class Comparison:
    """The comparison summary of one results folder: every view of the verdict is rendered from it."""

    profile: str | None
    tables: dict[str, pd.DataFrame]
    runs: list[str] = dataclasses.field(default_factory=list)  # the run folders the tables summarise

    def runs_line(self) -> str:
        """``Runs summarised: ...`` (the line under each table's ``.md``)."""
        names = ", ".join(f"`{r}`" for r in self.runs) if self.runs else "(not recorded)"
        return f"\nRuns summarised: {names}\n"

    def rows(self) -> pd.DataFrame:
        """Every compared row of every table (``table`` column added), not-run rows left out."""
        frames = [t.assign(table=name) for name, t in self.tables.items() if len(t)]
        if not frames:
            return pd.DataFrame(columns=["table"])
        out = pd.concat(frames, ignore_index=True)
        return out[(out["status"] == "ok") & out["diff"].notna()]

    def excluding_zero(self) -> pd.DataFrame:
        """The rows whose 95% interval excludes 0 (whatever their verdict)."""
        r = self.rows()
        return r[(r["ci_low"] > 0) | (r["ci_high"] < 0)] if len(r) else r

    def counts(self) -> dict[str, int]:
        """``verdict -> number of rows`` over all compared rows."""
        r = self.rows()
        return {v: int((r["verdict"] == v).sum()) for v in VERDICTS} if len(r) else {}

    def headline(self) -> str:
        """A short paragraph: the verdict counts, the detectable differences, every interval excluding 0."""
        r = self.rows()
        if r.empty:
            return "No paired CLIP/ContextCLIP results to compare yet."
        c = self.counts()
        with_paper = r[r["paper_diff"].notna()]
        stand_ins = sum(is_stand_in(x) for _, x in with_paper.iterrows())
        none_paper = int((with_paper["verdict"] == NO_INTERVAL).sum())  # no interval, with / without a paper figure
        none_other = c[NO_INTERVAL] - none_paper
        text = (f"Three-way verdict on the {len(with_paper)} rows with a paper figure"
                + (f" ({stand_ins} of them embedded stand-ins, compared with the gain of the paper row they play)"
                   if stand_ins else "")
                + f": {c[SUPPORTS]} support the paper, {c[CONTRADICTS]} contradict it, {c[INCONCLUSIVE]} are "
                "inconclusive (the interval holds both 0 and the paper's gain)"
                + (f", {none_paper} {'has' if none_paper == 1 else 'have'} no interval (no spread over the seeds, "
                   "or one seed without per-item results)" if none_paper else "") + ". ")
        no_paper = len(r) - len(with_paper)
        if no_paper:
            text += (f"Of the {no_paper} rows without a paper figure, {c[EXCLUDES_ZERO]} "
                     f"{'has' if c[EXCLUDES_ZERO] == 1 else 'have'} an interval that excludes 0"
                     + (f" and {none_other} {'has' if none_other == 1 else 'have'} none" if none_other else "") + ". ")
        top1 = r[(r["task"] == "zero_shot") & (r["metric"] == "top1") & r["half_width"].notna()]
        if len(top1):
            text += (f"Smallest detectable difference on zero-shot top-1 (the intervals' half-width): "
                     f"±{top1['half_width'].min():.1f} to ±{top1['half_width'].max():.1f} points. ")
        excl = self.excluding_zero()
        if excl.empty:
            text += f"None of the {len(r)} intervals excludes 0."
        else:
            items = "; ".join(f"{row_name(x)} {x['diff']:+.2f} [{x['ci_low']:+.2f}, {x['ci_high']:+.2f}] ({x['verdict']})"
                              for _, x in excl.iterrows())
            text += f"Intervals that exclude 0 ({len(excl)} of {len(r)}): {items}."
        return text

    def table_markdown(self, name: str, metrics: tuple[str, ...] | None = None, digits: int = 2,
                       compact: bool = False, title: bool = True) -> str:
        heading = TABLE_TITLES[name] + (f" ({self.profile} profile)" if self.profile else "") if title else None
        return to_markdown(self.tables[name], heading, metrics, digits, compact)

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
              write: bool = True, seeds=None) -> Comparison:
    """Build the comparison summary from ``results_dir/metrics.csv`` (and per-item files).

    ``seeds``: summarise the runs of these seeds only (the profile's; None: every seed found).
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
    tables = {name: comparison_table(df, tasks, metrics, results_dir, bootstrap_samples)
              for name, (tasks, metrics) in TABLES.items()}
    comparison = Comparison(profile, tables, runs)
    if write:
        for name, table in tables.items():  # atomic: a kill mid-write leaves the old table, never half a one
            fileio.atomic_write(results_dir / f"{name}.csv", table.to_csv(index=False, float_format="%.4g"))
            fileio.atomic_write(results_dir / f"{name}.md", comparison.table_file(name))
    return comparison
