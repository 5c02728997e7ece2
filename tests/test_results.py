"""metrics.csv handling, seed statistics, the tables, the verdict, and the paper asset vs the paper text."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from contextclip.results import (
    AT_CEILING,
    BETTER,
    CONTRADICTS,
    EXPLORATORY,
    INCONCLUSIVE,
    NO_DIFFERENCE,
    NO_INTERVAL,
    NOT_RUN,
    PRIMARY,
    SUPPORTS,
    WORSE,
    append_metrics,
    build_tables,
    holm,
    load_paper_results,
    mde80,
    paired_bootstrap,
    paired_p_value,
    read_metrics,
    save_per_item,
    sign_verdict,
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
    assert "stand-in: MNIST 12.26 / 18.42 (+6.16)" in md and "for its sign only" in md
    # a stand-in gets a sign verdict only; the paper's gain on the row it plays is shown for its sign
    text = verdict(pd.DataFrame([r]))
    assert r.verdict == BETTER and "**ContextCLIP better**" in text
    assert "stand-in for MNIST: the paper's gain there is +6.16; only its sign carries over, and it agrees" in text
    assert "supports" not in md.split("Verdict:")[0] and "| ContextCLIP better |" in md
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:10])


def naive_three_way(lo, hi, gain):
    """The issue's definitions, written out case by case."""
    if math.isnan(lo):
        return NO_INTERVAL
    if math.isnan(gain):
        return BETTER if lo > 0 else (WORSE if hi < 0 else NO_DIFFERENCE)
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
    (-1.0, 1.0, math.nan, NO_DIFFERENCE),
    (0.1, 1.0, math.nan, BETTER),
    (-1.0, -0.1, math.nan, WORSE),
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


def test_headline_comes_from_the_primary_endpoints_and_never_says_not_reproduced(tmp_path):
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
    comp = summarize(tmp_path, "smoke", primary=("zero_shot/mnist_real/top1", "zero_shot/mnist_real/top5"))
    excl = comp.excluding_zero()
    assert sorted(excl["metric"]) == ["top1", "top5"] and set(excl["task"]) == {"zero_shot", "linear_probe"}
    head = comp.headline()
    # the headline names the primaries, and no exploratory row, even one whose interval excludes 0
    assert head.startswith("Primary endpoints: ") and "mnist_real zero-shot top5: " in head
    assert "mnist_real zero-shot top1: " in head and "digits linear-probe" not in head
    assert "Exploratory rows (2, not adjusted for multiplicity): 1 ContextCLIP better, 1 no detectable difference" in head
    assert set(comp.rows()["role"]) == {PRIMARY, EXPLORATORY} and comp.counts(PRIMARY)[WORSE] == 1
    report = comp.report_markdown({"python": "3"})
    for text in (head, report, comp.table_markdown("table1_zero_shot")):
        assert "not reproduced" not in text and "supports the paper" not in text
        assert "contradicts the paper" not in text
    assert report.count("\n- ") == 4 + 1  # one bullet per compared row, plus the environment line
    # the primaries come first in the table, marked
    table = comp.table_markdown("table1_zero_shot").splitlines()
    assert table[4].startswith("| **primary** |") and table[5].startswith("| **primary** |")


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
    assert "2 no interval" in comp.headline()


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


# --------------------------------------------------------------------------- sign verdicts, primaries, blocks
@pytest.mark.parametrize("lo, hi, clip, expected", [
    (0.2, 3.0, 50.0, BETTER),            # above 0
    (-3.0, -0.2, 50.0, WORSE),           # below 0
    (-2.0, 2.5, 50.0, NO_DIFFERENCE),    # holds 0, plenty of headroom
    (-0.9, 1.3, 98.3, NO_DIFFERENCE),    # holds 0; CLIP leaves 1.7 points, more than the half-width 1.1
    (-0.9, 1.3, 99.2, AT_CEILING),       # holds 0, 0.8 points of headroom < half-width 1.1
    (-1.5, -0.1, 99.9, WORSE),           # at the ceiling but the interval excludes 0: the sign wins
    (math.nan, math.nan, 50.0, NO_INTERVAL),
])
def test_sign_verdict_on_constructed_rows(lo, hi, clip, expected):
    assert sign_verdict(lo, hi, clip) == expected


def test_a_stand_in_never_gets_a_verdict_about_the_size_of_the_papers_gain(tmp_path):
    """mnist_test plays MNIST (paper gain +6.16): a narrow interval around -1 used to 'contradict the
    paper'; now it says only which method is better."""
    rows = []
    for s in range(6):
        rows += [row("clip", s, "zero_shot", "mnist_test", "top1", 78.0 + s % 2),
                 row("contextclip", s, "zero_shot", "mnist_test", "top1", 77.0 + s % 2 + 0.1 * s),
                 row("clip", s, "fine_tune", "digits", "top1", 99.3 + 0.1 * (s % 2)),
                 row("contextclip", s, "fine_tune", "digits", "top1",
                     99.3 + 0.1 * (s % 2) + [-1.0, 0.8, -0.5, 1.2, -0.9, 0.6][s])]
    append_metrics(tmp_path / "metrics.csv", rows)
    comp = summarize(tmp_path, "embedded", write=False)
    verdicts = dict(zip(comp.rows()["dataset"], comp.rows()["verdict"]))
    assert verdicts["mnist_test"] == WORSE
    assert verdicts["digits"] == AT_CEILING  # fine-tune at 99.35: less headroom than the half-width
    assert not set(verdicts.values()) & {SUPPORTS, CONTRADICTS, INCONCLUSIVE}


def test_paired_p_value_mde_and_holm_against_scipy_and_by_hand():
    d = np.array([-3.0, -1.0, -2.5, 0.5, -1.5, -2.0])
    assert paired_p_value(d) == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    n, sd = 18, 3.0
    assert mde80(sd, n) == pytest.approx((stats.t.ppf(0.975, 17) + stats.t.ppf(0.8, 17)) * 3.0 / math.sqrt(18))
    # Holm: sorted p 0.01, 0.04 -> 0.02, 0.04; order kept, NaN ignored
    assert holm([0.04, 0.01, math.nan]) == pytest.approx([0.04, 0.02, math.nan], nan_ok=True)
    assert holm([0.03, 0.02]) == pytest.approx([0.04, 0.04])  # monotone: never below the previous one


def test_two_seed_blocks_are_summarised_apart_and_the_agreement_rule(tmp_path):
    """Block A (seeds 0-5) makes the tables and the headline; block B (100-105) is kept beside it;
    B agrees when its mean lies inside A's interval, and a finding holds when both verdicts match."""
    rng = np.random.default_rng(3)
    rows = []
    for s in list(range(6)) + list(range(100, 106)):
        shift_a = -3.0 if s < 100 else -2.8  # the same effect in both blocks on mnist_test
        shift_b = 2.0 if s < 100 else -2.0   # opposite signs on novel_classes: not held
        for ds, shift in (("mnist_test", shift_a), ("novel_classes", shift_b)):
            base = 60 + rng.normal(0, 1)
            rows += [row("clip", s, "zero_shot", ds, "top1", base),
                     row("contextclip", s, "zero_shot", ds, "top1", base + shift + rng.normal(0, 0.5))]
    append_metrics(tmp_path / "metrics.csv", rows)
    comp = summarize(tmp_path, "answer", write=False, primary=("zero_shot/mnist_test/top1",
                                                                "zero_shot/novel_classes/top1"),
                     replication_seeds=range(100, 106))
    assert int(comp.rows()["paired_seeds"].max()) == 6  # block A only
    prim = comp.primary().set_index("dataset")
    assert prim.loc["mnist_test", "verdict"] == WORSE and prim.loc["mnist_test", "b_verdict"] == WORSE
    assert prim.loc["mnist_test", "held"] and prim.loc["mnist_test", "b_agrees"]
    assert prim.loc["novel_classes", "verdict"] == BETTER and prim.loc["novel_classes", "b_verdict"] == WORSE
    assert not prim.loc["novel_classes", "held"] and not prim.loc["novel_classes", "b_agrees"]
    head = comp.headline()
    assert "block B (6 other seeds)" in head and "not held on both blocks" in head and "held on both blocks" in head
    # Holm over the two primaries: each adjusted p is at least its own p
    assert (prim["p_holm"] >= prim["p_value"]).all()
    forest = comp.forest_rows()
    assert list(forest["block"][:2]) == ["A", "B"] and set(forest["role"][:4]) == {PRIMARY}


def test_verdicts_can_be_left_out_for_numbers_that_measure_nothing(tmp_path):
    rows = [row(m, s, "zero_shot", "digits", "top1", 12.0 + s + (m == "contextclip") * 0.5 * s)
            for s in range(3) for m in ("clip", "contextclip")]
    append_metrics(tmp_path / "metrics.csv", rows)
    comp = summarize(tmp_path, "smoke", write=False, verdicts=False)
    md = comp.table_markdown("table1_zero_shot")
    assert "| verdict |" not in md and "No verdicts" in md and "measure nothing" in comp.headline()


def test_a_primary_is_called_only_when_holm_agrees(tmp_path):
    """The rule written before the runs: a primary endpoint is better or worse only when its interval
    excludes 0 *and* its Holm-adjusted p is below 0.05; the same row as an exploratory one is called."""
    diffs = {"a": [0.9, 0.0, 1.6, 0.4, 1.3, 0.0, 1.0, -0.2], "b": [0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.6, -0.1]}
    rows = []
    for s in range(8):
        for ds, d in diffs.items():
            rows += [row("clip", s, "zero_shot", ds, "top1", 50.0 + s),
                     row("contextclip", s, "zero_shot", ds, "top1", 50.0 + s + d[s])]
    append_metrics(tmp_path / "metrics.csv", rows)
    p_a, p_b = stats.ttest_1samp(diffs["a"], 0).pvalue, stats.ttest_1samp(diffs["b"], 0).pvalue
    assert p_a < 0.05 <= 2 * p_a < p_b  # a alone excludes 0; Holm over two endpoints does not call it
    comp = summarize(tmp_path, "x", write=False, primary=("zero_shot/a/top1", "zero_shot/b/top1"))
    r = comp.rows().set_index("dataset")
    assert r.loc["a", "ci_low"] > 0 and r.loc["a", "p_holm"] == pytest.approx(2 * p_a)
    assert r.loc["a", "verdict"] == NO_DIFFERENCE and r.loc["b", "verdict"] == NO_DIFFERENCE
    assert "after Holm (the interval excludes 0; adjusted p" in comp.table_markdown("table1_zero_shot")
    assert "does not call it" in comp.reading()
    alone = summarize(tmp_path, "x", write=False).rows().set_index("dataset")
    assert alone.loc["a", "verdict"] == BETTER  # exploratory: the interval alone decides
