"""metrics.csv handling, seed statistics, the tables, the verdict, and the paper asset vs the paper text."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from contextclip.results import (
    NOT_RUN,
    append_metrics,
    build_tables,
    load_paper_results,
    paired_bootstrap,
    read_metrics,
    save_per_item,
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
    text = verdict(t1)
    assert "0 is inside the interval" in text and "+6.16" in text and "not run" in text


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
    # an analogue shows the paper's figure of the row it plays, marked as such, never compared
    assert (r.paper_clip, r.paper_contextclip, r.paper_is_analogue) == (12.26, 18.42, True)
    md = (tmp_path / "table1_zero_shot.md").read_text()
    assert "(12.26)" in md and "(18.42)" in md and "not comparable" in md
    text = verdict(pd.DataFrame([r]))
    assert "0 is outside the interval: ContextCLIP is better" in text and "The paper reports" not in text
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:10])
