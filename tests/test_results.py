"""metrics.csv handling, seed statistics, the tables, the verdict, and the paper asset vs the paper text."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from contextclip.results import (
    CONTRADICTS,
    EXCLUDES_ZERO,
    HOLDS_ZERO,
    INCONCLUSIVE,
    NO_INTERVAL,
    NOT_RUN,
    SUPPORTS,
    append_metrics,
    build_tables,
    load_paper_results,
    paired_bootstrap,
    read_metrics,
    save_per_item,
    summarize,
    three_way,
    verdict,
)

# Table 1-2 excerpt of the paper text, kept in the repo so the check always runs; the full
# paper text is also checked when the team's shared copy is present.
PAPER_SOURCES = [Path(__file__).resolve().parent / "fixtures" / "paper_tables.txt"]
if Path("/work/shared/paper/contextclip-paper.txt").exists():
    PAPER_SOURCES.append(Path("/work/shared/paper/contextclip-paper.txt"))


def row(method, seed, task, dataset, metric, value, n=100):
    return dict(method=method, seed=seed, task=task, dataset=dataset, metric=metric, value=value, n=n)


def parse_paper_table(text: str, caption: str) -> dict:
    start = text.index(caption)
    out = {}
    for line in text[start:].splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) == 5 and re.fullmatch(r"[\d.]+", cells[1].strip()):
            out[cells[0].strip()] = [float(c) for c in cells[1:]]
        elif out and not line.strip():
            break
    return out


@pytest.mark.parametrize("paper", PAPER_SOURCES, ids=lambda p: p.name)
def test_paper_asset_matches_the_paper_text(paper):
    text = paper.read_text(encoding="utf-8")
    asset = load_paper_results()["tables"]
    for task, caption in (("zero_shot", "Table 1:"), ("fine_tune", "Table 2:")):
        parsed = parse_paper_table(text, caption)
        assert len(parsed) == 5
        by_label = {v["label"]: v for v in asset[task].values()}
        assert set(by_label) == set(parsed)
        for label, (c1, x1, c5, x5) in parsed.items():
            e = by_label[label]
            assert (e["top1"]["clip"], e["top1"]["contextclip"], e["top5"]["clip"], e["top5"]["contextclip"]) == (
                c1, x1, c5, x5), label


def test_append_replaces_same_run_and_is_atomic(tmp_path):
    path = tmp_path / "metrics.csv"
    append_metrics(path, [row("clip", 0, "zero_shot", "digits", "top1", 10.0)])
    append_metrics(path, [row("clip", 1, "zero_shot", "digits", "top1", 11.0)])
    append_metrics(path, [row("clip", 0, "zero_shot", "digits", "top1", 12.0),
                          row("clip", 0, "zero_shot", "digits", "top5", 50.0)])
    df = read_metrics(path)
    assert len(df) == 3
    assert df[(df.seed == 0) & (df.metric == "top1")]["value"].tolist() == [12.0]
    assert not list(tmp_path.glob("*.tmp*"))


def test_bad_metrics_file_names_the_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("method,seed,task,dataset,metric,value,n\nclip,0,zero_shot,d,top1,abc,3\n")
    with pytest.raises(ValueError, match="line 2.*value"):
        read_metrics(path)
    path.write_text("method,seed\nclip,0\n")
    with pytest.raises(ValueError, match="missing column"):
        read_metrics(path)


def test_table_over_seeds_mean_std_t_interval(tmp_path):
    clip = {0: 10.0, 1: 12.0, 2: 17.0}
    ctx = {0: 13.0, 1: 12.5, 2: 21.0}
    rows = []
    for s in clip:
        rows += [row("clip", s, "zero_shot", "mnist", "top1", clip[s], 5000),
                 row("contextclip", s, "zero_shot", "mnist", "top1", ctx[s], 5000),
                 row("clip", s, "zero_shot", "mnist", "chance_top1", 10.0, 5000),
                 row("contextclip", s, "zero_shot", "mnist", "chance_top1", 10.0, 5000)]
    rows.append(row("clip", 0, "zero_shot", "birdsnap", NOT_RUN, math.nan, 0))
    append_metrics(tmp_path / "metrics.csv", rows)
    tables = build_tables(tmp_path, "smoke")
    t1 = tables["table1_zero_shot"]
    r = t1[(t1.dataset == "mnist") & (t1.metric == "top1")].iloc[0]
    assert r.clip_mean == pytest.approx(13.0) and r.clip_std == pytest.approx(np.std([10, 12, 17], ddof=1))
    d = np.array([3.0, 0.5, 4.0])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert r["diff"] == pytest.approx(d.mean())
    assert (r.ci_low, r.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.paper_clip == 12.26 and r.paper_contextclip == 18.42 and r.chance == 10.0
    assert t1[t1.dataset == "birdsnap"].iloc[0].status == NOT_RUN
    md = (tmp_path / "table1_zero_shot.md").read_text()
    assert NOT_RUN in md and "13.00 ± 3.61 (3 seeds)" in md
    assert (tmp_path / "table2_fine_tune.csv").exists() and (tmp_path / "table3_retrieval.md").exists()
    text = verdict(t1)  # [-1.97, +6.97] holds 0 and the paper's MNIST gain (+6.16)
    assert "**inconclusive**" in text and "+6.16" in text and "not run" in text and "not reproduced" not in text
    assert r.verdict == INCONCLUSIVE and r.half_width == pytest.approx(half)
    assert "(stand-in)" not in md and "| inconclusive |" in md


def test_single_seed_uses_paired_bootstrap_over_items(tmp_path):
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.3).astype(float)
    b = (rng.random(400) < 0.6).astype(float)
    save_per_item(tmp_path, "clip", 0, "zero_shot", "digits", {"top1": a})
    save_per_item(tmp_path, "contextclip", 0, "zero_shot", "digits", {"top1": b})
    append_metrics(tmp_path / "metrics.csv", [row("clip", 0, "zero_shot", "digits", "top1", 100 * a.mean(), 400),
                                              row("contextclip", 0, "zero_shot", "digits", "top1", 100 * b.mean(), 400)])
    r = build_tables(tmp_path, bootstrap_samples=300)["table1_zero_shot"].iloc[0]
    # naive bootstrap loop with the same random stream
    g = np.random.default_rng(0)
    diffs = [np.mean((b - a)[g.integers(0, 400, size=400)]) for _ in range(300)]
    lo, hi = np.percentile(diffs, [2.5, 97.5]) * 100
    assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi))
    assert r.ci_low > 0 and "bootstrap" in r.ci_method and r.plays == "MNIST"
    # an analogue shows the paper's figures of the row it plays, marked as a stand-in
    assert (r.paper_clip, r.paper_contextclip, r.paper_is_analogue) == (12.26, 18.42, True)
    md = (tmp_path / "table1_zero_shot.md").read_text()
    assert "stand-in: MNIST 12.26 / 18.42 (+6.16)" in md and "never the accuracies" in md
    # a stand-in is compared with the gain of the paper row it plays (MNIST, +6.16), labelled as such
    text = verdict(pd.DataFrame([r]))
    assert r.verdict == SUPPORTS and "**supports the paper**" in text and "+6.16 on MNIST" in text
    assert "stands in" in text and "supports the paper (stand-in)" in md
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:10])


def naive_three_way(lo, hi, gain):
    """The issue's definitions, written out case by case."""
    if math.isnan(lo):
        return NO_INTERVAL
    if math.isnan(gain):
        return EXCLUDES_ZERO if (lo > 0 or hi < 0) else HOLDS_ZERO
    excludes_zero_on_paper_side = (gain > 0 and lo > 0) or (gain < 0 and hi < 0)
    if excludes_zero_on_paper_side:
        return SUPPORTS
    if gain < lo or gain > hi:
        return CONTRADICTS
    return INCONCLUSIVE


@pytest.mark.parametrize("lo, hi, gain, expected", [
    (-9.4, 8.6, 6.16, INCONCLUSIVE),     # holds both
    (-9.4, 3.9, 6.16, CONTRADICTS),      # excludes the gain, holds 0
    (-11.2, -2.8, 0.37, CONTRADICTS),    # excludes both, on the wrong side
    (1.0, 9.0, 6.16, SUPPORTS),          # excludes 0 on the paper's side, holds the gain
    (0.5, 2.0, 6.16, SUPPORTS),          # on the paper's side, but smaller than claimed
    (-3.0, -0.5, -1.93, SUPPORTS),       # the paper's loss (RESISC45 zero-shot top-1), reproduced
    (0.5, 3.0, -1.93, CONTRADICTS),
    (-1.0, 1.0, math.nan, HOLDS_ZERO),
    (0.1, 1.0, math.nan, EXCLUDES_ZERO),
    (math.nan, math.nan, 6.16, NO_INTERVAL),
])
def test_three_way_verdict(lo, hi, gain, expected):
    assert three_way(lo, hi, gain) == expected == naive_three_way(lo, hi, gain)


def test_three_way_agrees_with_the_definitions_on_random_intervals():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        lo, hi = sorted(rng.normal(0, 5, 2))
        gain = float(rng.choice([rng.normal(0, 5), math.nan]))
        assert three_way(lo, hi, gain) == naive_three_way(lo, hi, gain), (lo, hi, gain)


def test_summary_names_every_interval_that_excludes_zero_and_never_says_not_reproduced(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    shifts = {("zero_shot", "mnist_real", "top5"): -7.0, ("zero_shot", "mnist_real", "top1"): 0.0,
              ("linear_probe", "digits", "top1"): 3.0, ("retrieval", "synthetic_captions", "text_to_image_R@1"): 0.0}
    for (task, ds, metric), shift in shifts.items():
        for s in range(5):
            base = 50 + rng.normal(0, 2)
            rows += [row("clip", s, task, ds, metric, base), row("contextclip", s, task, ds, metric,
                                                                  base + shift + rng.normal(0, 0.3))]
    append_metrics(tmp_path / "metrics.csv", rows)
    comp = summarize(tmp_path, "smoke")
    excl = comp.excluding_zero()
    assert sorted(excl["metric"]) == ["top1", "top5"] and set(excl["task"]) == {"zero_shot", "linear_probe"}
    head = comp.headline()
    assert "mnist_real zero-shot top5 -6.95 [" in head and "digits linear-probe top1 +2.92 [" in head
    assert "Intervals that exclude 0 (2 of 4)" in head
    # top-1 holds 0 but, being narrow, excludes the paper's +6.16: contradicts too, without excluding 0
    assert comp.counts()[CONTRADICTS] == 2 and comp.counts()[EXCLUDES_ZERO] == 1
    report = comp.report_markdown({"python": "3"})
    for text in (head, report, comp.table_markdown("table1_zero_shot")):
        assert "not reproduced" not in text
    assert report.count("\n- ") == 4 + 1  # one bullet per compared row, plus the environment line


def test_seeds_that_all_give_the_same_difference_have_no_interval_and_no_verdict(tmp_path):
    """Both methods at a ceiling (100% top-5 on every seed) say nothing: a zero-width t-interval
    would "exclude" the paper's gain and be counted as contradicting it."""
    from contextclip.results import paired_difference

    d = paired_difference({0: 100.0, 1: 100.0, 2: 100.0}, {0: 100.0, 1: 100.0, 2: 100.0})
    assert d["diff"] == 0.0 and math.isnan(d["ci_low"]) and math.isnan(d["ci_high"])
    assert d["ci_method"].startswith("no spread") and three_way(d["ci_low"], d["ci_high"], 0.52) == NO_INTERVAL
    assert not math.isnan(paired_difference({0: 50.0, 1: 51.0}, {0: 50.5, 1: 51.0})["ci_low"])  # spread: an interval
    rows = []
    for s in range(3):  # one row with a paper figure at the ceiling, one without, one ordinary
        rows += [row("clip", s, "fine_tune", "mnist", "top5", 100.0), row("contextclip", s, "fine_tune", "mnist", "top5", 100.0),
                 row("clip", s, "linear_probe", "digits", "top5", 100.0),
                 row("contextclip", s, "linear_probe", "digits", "top5", 100.0),
                 row("clip", s, "zero_shot", "mnist", "top1", 50.0 + s), row("contextclip", s, "zero_shot", "mnist", "top1", 60.0 + 2 * s)]
    append_metrics(tmp_path / "metrics.csv", rows)
    comp = summarize(tmp_path, "smoke")
    assert comp.counts()[NO_INTERVAL] == 2 and comp.counts()[CONTRADICTS] == 0
    head = comp.headline()
    assert "Three-way verdict on the 2 rows with a paper figure" in head
    assert "1 has no interval" in head and "and 1 has none" in head


def test_tables_summarise_the_profile_seeds_only(tmp_path):
    """A profile whose seed list changed (or whose recipe changed and dropped seeds) keeps the old
    seeds' rows in metrics.csv, but the tables count only the seeds they are given."""
    rows = []
    for s in range(5):
        run = f"runs/p/{{}}-seed{s}"
        old = s >= 3  # seeds 3 and 4: rows of an earlier recipe, far apart from the others
        rows += [dict(row("clip", s, "zero_shot", "mnist", "top1", 50.0 + s), run=run.format("clip"), checkpoint="a"),
                 dict(row("contextclip", s, "zero_shot", "mnist", "top1", 50.0 + s + (-30.0 if old else 1.0)),
                      run=run.format("contextclip"), checkpoint="b")]
    append_metrics(tmp_path / "metrics.csv", rows)
    every = summarize(tmp_path, "smoke", write=False).tables["table1_zero_shot"].iloc[0]
    assert every["paired_seeds"] == 5
    comp = summarize(tmp_path, "smoke", write=False, seeds=[0, 1, 2])
    r = comp.tables["table1_zero_shot"].iloc[0]
    assert r["paired_seeds"] == 3 and r["diff"] == pytest.approx(1.0) and r["clip_seeds"] == 3
    assert comp.runs == sorted(f"runs/p/{m}-seed{s}" for m in ("clip", "contextclip") for s in range(3))
    assert len(read_metrics(tmp_path / "metrics.csv")) == 10  # nothing removed from metrics.csv
    with pytest.raises(FileNotFoundError, match=r"no rows of seeds \[7\]"):
        summarize(tmp_path, "smoke", write=False, seeds=[7])
