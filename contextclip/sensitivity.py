"""The sensitivity study: when does the contextual term help? (notebook 08, profile ``sensitivity``)

What it is:
- ``grid(cfg)``: the training runs of the study. alpha = 0 (CLIP: the contextual term is off, so
  the variant and h do not matter) once; every other alpha of ``sens_alphas`` for each
  ``cx_variant`` of ``sens_variants`` at the profile's h (``bandwidth``); then every h of
  ``sens_bandwidths`` at the profile's alpha, for each variant. Each point is trained for every
  seed of ``seeds``, with the same seeds as CLIP, so each difference is paired by seed.
- ``run_study(cfg, runs_dir, results_dir)``: trains (or resumes, or reuses) each run with
  ``multirun.fit_runs`` and evaluates zero-shot on each set of ``study_datasets`` (``sens_datasets``;
  by default the primary endpoints' sets) with ``evaluate_runs``; the
  rows go to ``results_dir/sensitivity_metrics.csv`` (the columns of ``metrics.csv``; ``method``
  is the point's label, ``clip`` or ``cx-<variant>-a<alpha>-h<h>``).
- ``study_table(results_dir)``: per point, the mean ± std over seeds, the 95% t-band of that mean,
  and ContextCLIP - CLIP paired by seed with its 95% interval (``results.paired_difference``),
  its half-width and whether it excludes 0. Built from the files alone.
- ``variant_sentence`` / ``bandwidth_sentence`` / ``readme_section``: text generated from the
  intervals; ``plots.sensitivity_figure`` draws the figure.

The study reports; it chooses nothing. No setting of any profile is picked from it.

What it is not: no training loop (``train``), no metric arithmetic (``zeroshot``), no drawing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contextclip import fileio, results
from contextclip.config import Config, ConfigError
from contextclip.errors import MissingFileError

__all__ = ["GridPoint", "grid", "study_datasets", "run_study", "study_table", "variant_sentence",
           "bandwidth_sentence", "by_dataset", "table_sentence", "figure_sentence", "markdown", "write_outputs", "readme_section",
           "METRICS_FILE", "TABLE_NAME", "FIGURE_NAME"]

METRICS_FILE = "sensitivity_metrics.csv"
PER_ITEM_DIR = "sensitivity"  # results/<profile>/sensitivity/per_item/<label>-seed<k>/: single-seed bootstrap
TABLE_NAME = "sensitivity"  # results/<profile>/sensitivity.{md,csv}
FIGURE_NAME = "fig_sensitivity_alpha"  # figures/<profile>/fig_sensitivity_alpha.png
_LABEL = re.compile(r"^cx-(?P<variant>[a-z_]+)-a(?P<alpha>[0-9.e+-]+)-h(?P<h>[0-9.e+-]+)$")


@dataclass(frozen=True)
class GridPoint:
    """One setting of the study: CLIP (alpha = 0) or ContextCLIP with a variant, alpha and h."""

    alpha: float
    variant: str = ""
    bandwidth: float = math.nan

    @property
    def method(self) -> str:
        return "clip" if self.alpha == 0 else "contextclip"

    @property
    def label(self) -> str:
        return "clip" if self.alpha == 0 else f"cx-{self.variant}-a{self.alpha:g}-h{self.bandwidth:g}"

    def config(self, cfg: Config) -> Config:
        """The profile's config with this point's loss settings (CLIP: alpha 0, set by ``fit``)."""
        if self.alpha == 0:
            return cfg
        return cfg.updated({"alpha": self.alpha, "cx_variant": self.variant, "bandwidth": self.bandwidth})

    def run_name(self, cfg: Config) -> str:
        """Run folder stem: ``clip`` / ``contextclip`` for the profile's own two runs (so notebook 02's
        runs are reused), the label otherwise."""
        own = (self.alpha, self.variant, self.bandwidth) == (cfg.loss.alpha, cfg.loss.cx_variant, cfg.loss.bandwidth)
        return self.method if self.alpha == 0 or own else self.label


def parse_label(label: str) -> GridPoint:
    """The point a ``sensitivity_metrics.csv`` label stands for (the inverse of ``GridPoint.label``)."""
    if label == "clip":
        return GridPoint(0.0)
    m = _LABEL.match(label)
    if not m:
        raise ValueError(f"{label!r} is not a sensitivity label (clip or cx-<variant>-a<alpha>-h<h>)")
    return GridPoint(float(m["alpha"]), m["variant"], float(m["h"]))


def grid(cfg: Config) -> list[GridPoint]:
    """The study's points, CLIP first; see the module docstring."""
    s = cfg.sensitivity
    if 0.0 not in s.sens_alphas:
        raise ConfigError(f"config key 'sens_alphas': {s.sens_alphas} must include 0, the CLIP baseline every "
                          "point is compared with")
    points = [GridPoint(0.0)]
    for variant in s.sens_variants:
        points += [GridPoint(a, variant, cfg.loss.bandwidth) for a in s.sens_alphas if a > 0]
    if cfg.loss.alpha > 0:
        for variant in s.sens_variants:
            points += [GridPoint(cfg.loss.alpha, variant, h) for h in s.sens_bandwidths]
    return list(dict.fromkeys(points))


def study_datasets(cfg: Config) -> list[str]:
    """The zero-shot sets the study reports: ``sens_datasets``; else the sets of the profile's zero-shot
    top-1 primary endpoints (``eval.primary_endpoints``); else its first zero-shot set."""
    if cfg.sensitivity.sens_datasets:
        return list(cfg.sensitivity.sens_datasets)
    primary = [e.split("/")[1] for e in cfg.eval.primary_endpoints if e.startswith("zero_shot/") and e.endswith("/top1")]
    if primary:
        return primary
    if not cfg.data.zero_shot_datasets:
        raise ConfigError("config key 'sens_datasets': empty, and the profile has no primary endpoints or "
                          "zero_shot_datasets to default to; name the zero-shot sets, e.g. [mnist_test]")
    return [cfg.data.zero_shot_datasets[0]]


# --------------------------------------------------------------------------- running
def run_study(cfg: Config, runs_dir: Path, results_dir: Path, *, progress: bool = True,
              log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train and evaluate every point and seed (finished runs are reused); returns the new rows.

    A point's seeds are trained ``train_workers`` at a time (``multirun.fit_runs``: side by side in
    worker processes, bit for bit the runs one after another would give at one thread each), then
    each run is evaluated on every set of ``study_datasets``.
    """
    from contextclip.data import build_pair_datasets
    from contextclip.evaluate import evaluate_runs
    from contextclip.multirun import fit_runs

    runs_dir, results_dir = Path(runs_dir), Path(results_dir)
    datasets = study_datasets(cfg)
    points = grid(cfg)
    train_ds, val_ds = build_pair_datasets(cfg)  # one set of pairs for every run, as notebook 02
    rows = []
    for k, point in enumerate(points, 1):
        pcfg = point.config(cfg)
        jobs = [(point.method, seed, runs_dir / f"{point.run_name(cfg)}-seed{seed}") for seed in cfg.train.seeds]
        log(f"[{k}/{len(points)}] {point.label}, seeds {', '.join(str(s) for s in cfg.train.seeds)} -> "
            f"{runs_dir / point.run_name(cfg)}-seed*")
        fit_runs(pcfg, jobs, train_ds, val_ds, workers=cfg.train.train_workers, progress=progress)
        for _, seed, run_dir in jobs:
            # per-run scratch results (the model loaded once for every set): the run's own rows and
            # per-item credits, then relabelled here
            evaluated = evaluate_runs([run_dir], "zero_shot", datasets, results_dir=run_dir / "eval")
            for dataset in datasets:
                per_item = results.load_per_item(run_dir / "eval", point.method, seed, "zero_shot", dataset)
                if per_item is not None:
                    results.save_per_item(results_dir / PER_ITEM_DIR, point.label, seed, "zero_shot", dataset,
                                          per_item)
            new = [{**r, "method": point.label} for r in evaluated]
            results.append_metrics(results_dir / METRICS_FILE, new)  # after each run: a stop loses nothing
            rows += new
    return pd.DataFrame(rows, columns=results.METRIC_COLUMNS)


# --------------------------------------------------------------------------- the table
def _band(values: np.ndarray) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` over seeds (NaN with fewer than 2)."""
    if len(values) < 2:
        return math.nan, math.nan
    return results.t_interval(values)


def study_table(results_dir: Path, metric: str = "top1", bootstrap_samples: int = 1000) -> pd.DataFrame:
    """One row per point (CLIP first): accuracy over seeds with its band, and the paired difference."""
    results_dir = Path(results_dir)
    df = results.read_metrics(results_dir / METRICS_FILE)
    df = df[(df["task"] == "zero_shot") & (df["metric"] == metric)]
    if df.empty:
        raise MissingFileError(f"{results_dir / METRICS_FILE} has no zero-shot {metric} rows; run notebook 08 "
                                "(or `make reproduce PROFILE=sensitivity`) first")
    out = []
    for dataset, g in df.groupby("dataset", sort=True):
        clip = dict(zip(g[g["method"] == "clip"]["seed"], g[g["method"] == "clip"]["value"]))
        labels = sorted(set(g["method"]), key=lambda lab: (lab != "clip", _sort_key(parse_label(lab))))
        for label in labels:
            point = parse_label(label)
            by = dict(zip(g[g["method"] == label]["seed"], g[g["method"] == label]["value"]))
            vals = np.array([by[s] for s in sorted(by)], dtype=float)
            lo, hi = _band(vals)
            row = {"dataset": dataset, "metric": metric, "label": label, "variant": point.variant or "-",
                   "alpha": point.alpha, "bandwidth": point.bandwidth, "seeds": len(vals), "n": int(g["n"].max()),
                   "mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                   "band_low": lo, "band_high": hi}
            if label == "clip":
                row.update(diff=math.nan, ci_low=math.nan, ci_high=math.nan, ci_method="", half_width=math.nan,
                           verdict="baseline")
            else:
                per_item = {}
                for s in set(clip) & set(by):
                    a = results.load_per_item(results_dir / PER_ITEM_DIR, "clip", s, "zero_shot", dataset)
                    b = results.load_per_item(results_dir / PER_ITEM_DIR, label, s, "zero_shot", dataset)
                    per_item[s] = (a.get(metric) if a else None, b.get(metric) if b else None)
                d = results.paired_difference(clip, by, per_item, bootstrap_samples)
                row.update(diff=d["diff"], ci_low=d["ci_low"], ci_high=d["ci_high"], ci_method=d["ci_method"],
                           half_width=(d["ci_high"] - d["ci_low"]) / 2,
                           verdict=results.three_way(d["ci_low"], d["ci_high"]))
            out.append(row)
    return pd.DataFrame(out)


def _sort_key(p: GridPoint) -> tuple:
    return (p.variant, p.bandwidth if not math.isnan(p.bandwidth) else 0.0, p.alpha)


def _alpha_rows(table: pd.DataFrame, variant: str, bandwidth: float) -> pd.DataFrame:
    t = table[(table["variant"] == variant) & np.isclose(table["bandwidth"], bandwidth)]
    return t.sort_values("alpha")


def _h_rows(table: pd.DataFrame, variant: str, alpha: float) -> pd.DataFrame:
    t = table[(table["variant"] == variant) & np.isclose(table["alpha"], alpha)]
    return t.sort_values("bandwidth")


def _grouped(rows: pd.DataFrame, key: str, name: str) -> str:
    def vals(sub):
        return ", ".join(f"{v:g}" for v in sub[key])

    def each(sub):
        return "; ".join(f"{name} {r[key]:g}: {r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
                         for _, r in sub.iterrows())

    no_ci = rows[rows["ci_low"].isna()]
    rows = rows[rows["ci_low"].notna()]
    helps, hurts = rows[rows["ci_low"] > 0], rows[rows["ci_high"] < 0]
    holds = rows[(rows["ci_low"] <= 0) & (rows["ci_high"] >= 0)]
    parts = []
    if len(helps):
        parts.append(f"is better than CLIP at {name} {vals(helps)} ({each(helps)})")
    if len(hurts):
        parts.append(f"is worse than CLIP at {name} {vals(hurts)} ({each(hurts)})")
    if len(holds):
        parts.append(f"is not distinguishable from CLIP at {name} {vals(holds)} (the intervals hold 0; half-widths "
                     f"±{holds['half_width'].min():.1f} to ±{holds['half_width'].max():.1f} points)")
    if len(no_ci):
        parts.append(f"has no interval at {name} {vals(no_ci)} (one seed and no per-item results)")
    return "; ".join(parts)


def variant_sentence(table: pd.DataFrame, variant: str, bandwidth: float) -> str:
    """One sentence on one variant across alpha, generated from its intervals."""
    rows = _alpha_rows(table, variant, bandwidth)
    if rows.empty:
        return f"`{variant}`: not in this study."
    ds, metric, k = rows["dataset"].iloc[0], rows["metric"].iloc[0], int(rows["seeds"].min())
    return (f"`{variant}` (h = {bandwidth:g}, {ds} zero-shot {metric}, {k} seed{'s' if k > 1 else ''}): ContextCLIP "
            f"{_grouped(rows, 'alpha', 'alpha')}.")


def bandwidth_sentence(table: pd.DataFrame, alpha: float) -> str:
    """One sentence on the bandwidth h at the profile's alpha, over every variant."""
    parts = []
    for variant in sorted(set(table["variant"]) - {"-"}):
        rows = _h_rows(table, variant, alpha)
        if len(rows) > 1:
            parts.append(f"`{variant}` {_grouped(rows, 'bandwidth', 'h')}")
    if not parts:
        return f"Bandwidth h: only one value at alpha = {alpha:g} in this study."
    return f"Bandwidth h at alpha = {alpha:g}: " + "; ".join(parts) + "."


def table_sentence(table: pd.DataFrame) -> str:
    """One sentence on the whole table: how many intervals exclude 0, and which."""
    pts = table[table["label"] != "clip"]
    excl = pts[(pts["ci_low"] > 0) | (pts["ci_high"] < 0)]
    ds, metric = table["dataset"].iloc[0], table["metric"].iloc[0]
    text = (f"{len(excl)} of the {len(pts)} ContextCLIP settings have a 95% interval of ContextCLIP − CLIP "
            f"({ds} zero-shot {metric}, paired by seed) that excludes 0")
    if len(excl):
        text += ": " + "; ".join(f"{r['variant']} alpha {r['alpha']:g} h {r['bandwidth']:g} {r['diff']:+.1f} "
                                 f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" for _, r in excl.iterrows())
    hw = pts["half_width"].dropna()
    if len(hw):
        text += f" (interval half-widths ±{hw.min():.1f} to ±{hw.max():.1f} points)"
    return text + "."


def figure_sentence(table: pd.DataFrame) -> str:
    """One sentence on the figure: what it shows, CLIP's level, the best and worst settings."""
    clip = table[table["label"] == "clip"].iloc[0]
    pts = table[table["label"] != "clip"]
    best, worst = pts.loc[pts["mean"].idxmax()], pts.loc[pts["mean"].idxmin()]
    k = int(table["seeds"].min())
    return (f"{clip['dataset']} zero-shot {clip['metric']} against alpha for {pts['variant'].nunique()} variant(s), "
            f"mean over {k} seed{'s' if k > 1 else ''} with the 95% t-band of the mean: CLIP (alpha = 0) "
            f"{clip['mean']:.1f}%, the best setting {best['variant']} alpha {best['alpha']:g} h {best['bandwidth']:g} "
            f"{best['mean']:.1f}%, the worst {worst['variant']} alpha {worst['alpha']:g} h {worst['bandwidth']:g} "
            f"{worst['mean']:.1f}%.")


def by_dataset(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table's rows per zero-shot set, in the order the table lists them."""
    return [(ds, table[table["dataset"] == ds]) for ds in dict.fromkeys(table["dataset"])]


def sentences(table: pd.DataFrame, cfg: Config) -> list[str]:
    """Per zero-shot set of the table: one sentence per variant, then one on h."""
    variants = [v for v in cfg.sensitivity.sens_variants if v in set(table["variant"])]
    several = table["dataset"].nunique() > 1  # then the sentence on h names its set
    return [s for ds, t in by_dataset(table)
            for s in [variant_sentence(t, v, cfg.loss.bandwidth) for v in variants]
            + [(f"{ds}: " if several else "") + bandwidth_sentence(t, cfg.loss.alpha)]]


def table_markdown(table: pd.DataFrame, title: str | None = None) -> str:
    """The table in Markdown: one per zero-shot set (under a heading each when there are several)."""
    parts = by_dataset(table)
    if len(parts) == 1:
        return _one_table_markdown(table, title)
    return "\n".join(([f"## {title}", ""] if title else [])
                     + [_one_table_markdown(t, f"{ds} zero-shot {t['metric'].iloc[0]}", level=3) for ds, t in parts])


def _one_table_markdown(table: pd.DataFrame, title: str | None = None, level: int = 2) -> str:
    head = ["variant", "alpha", "h", "seeds", "accuracy (mean ± std)", "95% band of the mean",
            "ContextCLIP − CLIP [95% CI]", "half-width ±", "verdict"]
    lines = ([f"{'#' * level} {title}", ""] if title else []) + ["| " + " | ".join(head) + " |",
                                                               "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        band = "-" if math.isnan(r["band_low"]) else f"[{r['band_low']:.1f}, {r['band_high']:.1f}]"
        diff = "-" if math.isnan(r["diff"]) else results.diff_text(r, 1, False)
        h = "-" if math.isnan(r["bandwidth"]) else f"{r['bandwidth']:g}"
        lines.append("| " + " | ".join([
            r["variant"], f"{r['alpha']:g}", h, str(int(r["seeds"])),
            results.cell_text(r["mean"], r["std"], int(r["seeds"]), 1, False), band, diff,
            "-" if math.isnan(r["half_width"]) else f"{r['half_width']:.1f}", r["verdict"]]) + " |")
    ds, metric = table["dataset"].iloc[0], table["metric"].iloc[0]
    lines += ["", f"{ds} zero-shot {metric} in percent (n = {int(table['n'].max())} images). alpha = 0 is CLIP (the "
              "contextual term is off, so variant and h do not apply), trained once per seed; every other row "
              "is compared with it seed by seed (95% t-interval of the paired differences; with one seed, a "
              "paired bootstrap over the test images). *Half-width ±* is the interval's half-width; the verdict "
              "is its sign (ContextCLIP better, worse, or no detectable difference). Exploratory: no interval "
              "is adjusted for the number of settings compared, and nothing is chosen from them."]
    return "\n".join(lines) + "\n"


def markdown(table: pd.DataFrame, cfg: Config) -> str:
    """``sensitivity.md``: the table, then one sentence per variant and one on h."""
    return (table_markdown(table, f"Sensitivity: when does the contextual term help? ({cfg.profile} profile)")
            + "\n" + "\n".join(f"- {s}" for s in sentences(table, cfg)) + "\n"
            + (f"\n{_coverage(table, cfg).strip()}\n" if _coverage(table, cfg) else ""))


def write_outputs(table: pd.DataFrame, cfg: Config, results_dir: Path) -> tuple[Path, Path]:
    """``sensitivity.csv`` and ``sensitivity.md`` (the table and the generated sentences)."""
    results_dir = Path(results_dir)
    csv, md = results_dir / f"{TABLE_NAME}.csv", results_dir / f"{TABLE_NAME}.md"
    fileio.atomic_write(csv, table.to_csv(index=False, float_format="%.4g"))
    fileio.atomic_write(md, markdown(table, cfg))
    return csv, md


def _coverage(table: pd.DataFrame, cfg: Config) -> str:
    """'' when the results hold every setting of the profile; else which are missing, said plainly."""
    wanted = [p.label for p in grid(cfg)]
    missing = [lab for lab in wanted if lab not in set(table["label"])]
    if not missing:
        return ""
    return (f" **Partial:** these results hold {len(wanted) - len(missing)} of the profile's {len(wanted)} settings; "
            f"not yet run: {', '.join(f'`{m}`' for m in missing)} (`make reproduce PROFILE={cfg.profile}` resumes "
            "and adds them).")


def readme_section(results_dir: Path, begin: str, end: str, profile: str = "sensitivity",
                   facts: dict | None = None, regime: str = "") -> str:
    """The README's sensitivity section: a link to the table and to the figure, one generated sentence each.

    What was run is read from the results (settings, seeds) and ``facts`` (epochs per run and the
    notebook's time, from the run folders), not from today's profile YAML.
    """
    from contextclip.config import load_config

    cfg = load_config(profile)
    facts = facts or {}
    table = study_table(results_dir, bootstrap_samples=cfg.eval.bootstrap_samples)
    pts = table[table["label"] != "clip"]
    alphas = sorted({0.0, *pts["alpha"]})
    hs = sorted(set(pts["bandwidth"]))
    epochs = facts.get("epochs") or []
    # the notebook's time only from a pass that trained every run (one that reused runs took seconds)
    seconds = sum(t for _, t in facts.get("notebook_seconds", [])) if not facts.get("reused_runs") else 0
    rel = f"results/{profile}"
    lines = [begin, "## Sensitivity: when does the contextual term help?" + (f" ({regime})" if regime else ""), "",
             f"`make reproduce PROFILE={profile}` (notebook `08_sensitivity`) trains CLIP and ContextCLIP for alpha "
             f"in {{{', '.join(f'{a:g}' for a in alphas)}}} with each contextual-loss variant "
             f"({', '.join(f'`{v}`' for v in dict.fromkeys(pts['variant']))}) and h in "
             f"{{{', '.join(f'{h:g}' for h in hs)}}}, {int(table['seeds'].min())} seeds each (one block of seeds: "
             "no second block replicates these intervals)"
             + (f", {'/'.join(str(e) for e in epochs)} epoch{'s' if epochs != [1] else ''} per run" if epochs else "")
             + (f"; {seconds / 60:.0f} minutes on this 2-core machine" if seconds else "")
             + f" (`configs/{profile}.yaml`). Beyond the paper, which reports one setting; exploratory (no "
             "interval adjusted for the number of settings), and nothing is chosen from it."
             + _coverage(table, cfg), "",
             f"- [Table (`{rel}/{TABLE_NAME}.md`)]({rel}/{TABLE_NAME}.md): "
             + " ".join(table_sentence(t) for _, t in by_dataset(table)),
             f"- [Figure (`figures/{profile}/{FIGURE_NAME}.png`)](figures/{profile}/{FIGURE_NAME}.png): "
             + " ".join(figure_sentence(t) for _, t in by_dataset(table)), "", end]
    return "\n".join(lines)
