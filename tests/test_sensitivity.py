"""The sensitivity study's grid, its table against a naive computation, the generated sentences,
the figure, and which notebooks each profile's pipeline runs. No training here: notebook 08 runs
the study end to end under nbval (smoke)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from contextclip import plots, sensitivity
from contextclip.config import ConfigError, load_config
from contextclip.pipeline import PipelineError, list_notebooks, select_notebooks
from contextclip.results import append_metrics

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def test_the_sensitivity_grid_is_alpha_by_variant_then_h():
    cfg = load_config("sensitivity")
    points = sensitivity.grid(cfg)
    variants, alphas = cfg.sensitivity.sens_variants, cfg.sensitivity.sens_alphas
    assert set(variants) == {"batch", "per_sample_features", "feature_columns"}
    assert alphas == [0.0, 0.1, 0.25, 0.5, 1.0, 2.0] and cfg.sensitivity.sens_bandwidths == [0.1, 0.5, 1.0]
    # CLIP once, then 5 alphas x 3 variants at h = 0.5, then h in {0.1, 1} x 3 variants at alpha 0.5
    assert len(points) == 1 + 5 * 3 + 2 * 3 and points[0].label == "clip"
    assert len({p.label for p in points}) == len(points)
    for p in points[1:]:
        assert sensitivity.parse_label(p.label) == p
        c = p.config(cfg)
        assert (c.loss.alpha, c.loss.cx_variant, c.loss.bandwidth) == (p.alpha, p.variant, p.bandwidth)
    # the profile's own setting trains into notebook 02's folder names, so its runs are reused
    own = [p for p in points if p.run_name(cfg) == "contextclip"]
    assert [(p.alpha, p.variant, p.bandwidth) for p in own] == [(0.5, "batch", 0.5)]


@pytest.mark.parametrize("override, words", [
    ({"sens_alphas": [0.5, 1.0]}, "must include 0"),
    ({"sens_alphas": [0.0, -1.0]}, "sens_alphas"),
    ({"sens_alphas": [0.0, float("nan")]}, "sens_alphas"),
    ({"sens_bandwidths": [0.0]}, "sens_bandwidths"),
    ({"sens_variants": ["batch", "pixels"]}, "sens_variants"),
    ({"notebooks": ["8"]}, "notebooks"),
])
def test_bad_grid_settings_are_named(override, words):
    with pytest.raises(ConfigError, match=words):
        sensitivity.grid(load_config("smoke", override))


def test_each_profile_runs_its_notebooks():
    nbs = list_notebooks(NB_DIR)
    assert [p.stem[:2] for p in select_notebooks(nbs, load_config("sensitivity"))] == ["08"]
    assert [p.stem[:2] for p in select_notebooks(nbs, load_config("embedded"))] == [f"0{i}" for i in range(8)]
    assert select_notebooks(nbs, load_config("smoke")) == nbs
    with pytest.raises(PipelineError, match="match no notebook"):
        select_notebooks(nbs, load_config("smoke", {"notebooks": ["42"]}))


def _study(tmp_path, shifts: dict, seeds=(0, 1, 2, 3), noise=0.5, dataset="mnist_real"):
    """sensitivity_metrics.csv with CLIP and points shifted by ``shifts[label]`` (+ seeded noise)."""
    rng = np.random.default_rng(0)
    rows, values = [], {}
    for s in seeds:
        base = 60 + rng.normal(0, 4)
        for label, shift in {"clip": 0.0, **shifts}.items():
            # a zero shift gets offsets that cancel over the seeds (its interval surely holds 0)
            jitter = 0.0 if label == "clip" else rng.normal(0, noise) if shift else [1, -1, 1.5, -1.5][s % 4]
            v = float(f"{base + shift + jitter:.6g}")  # as metrics.csv stores it
            values[(label, s)] = v
            rows.append(dict(method=label, seed=s, task="zero_shot", dataset=dataset, metric="top1", value=v,
                             n=4000))
    append_metrics(tmp_path / sensitivity.METRICS_FILE, rows)
    return values


def test_study_table_against_a_naive_computation(tmp_path):
    shifts = {"cx-batch-a0.1-h0.5": 0.0, "cx-batch-a2-h0.5": -10.0, "cx-feature_columns-a2-h0.5": 4.0,
              "cx-batch-a0.5-h0.1": 0.0}
    values = _study(tmp_path, shifts)
    table = sensitivity.study_table(tmp_path)
    assert table["label"].iloc[0] == "clip" and len(table) == 5
    for _, r in table.iterrows():
        v = np.array([values[(r["label"], s)] for s in range(4)])
        assert r["mean"] == pytest.approx(v.mean()) and r["std"] == pytest.approx(v.std(ddof=1))
        half = stats.t.ppf(0.975, 3) * v.std(ddof=1) / 2
        assert (r["band_low"], r["band_high"]) == pytest.approx((v.mean() - half, v.mean() + half))
        if r["label"] == "clip":
            continue
        d = v - np.array([values[("clip", s)] for s in range(4)])
        half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
        assert (r["diff"], r["ci_low"], r["ci_high"]) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
        assert r["half_width"] == pytest.approx(half)
        assert r["verdict"] == (("ContextCLIP better" if d.mean() > 0 else "ContextCLIP worse") if abs(d.mean()) > half
                                else "no detectable difference")
    by = table.set_index("label")
    assert by.loc["cx-batch-a2-h0.5", "ci_high"] < 0 and by.loc["cx-feature_columns-a2-h0.5", "ci_low"] > 0


def test_sentences_follow_the_intervals(tmp_path):
    _study(tmp_path, {"cx-batch-a0.1-h0.5": 0.0, "cx-batch-a2-h0.5": -10.0, "cx-feature_columns-a2-h0.5": 4.0,
                      "cx-feature_columns-a0.1-h0.5": 0.0, "cx-batch-a0.5-h0.1": -10.0, "cx-batch-a0.5-h0.5": 0.0})
    table = sensitivity.study_table(tmp_path)
    batch = sensitivity.variant_sentence(table, "batch", 0.5)
    assert batch.startswith("`batch` (h = 0.5, mnist_real zero-shot top1, 4 seeds)")
    assert "worse than CLIP at alpha 2 (alpha 2: -10." in batch
    assert "is not distinguishable from CLIP at alpha 0.1, 0.5" in batch and "better" not in batch
    cols = sensitivity.variant_sentence(table, "feature_columns", 0.5)
    assert "better than CLIP at alpha 2 (alpha 2: +4." in cols and "not distinguishable from CLIP at alpha 0.1" in cols
    h = sensitivity.bandwidth_sentence(table, 0.5)
    assert "`batch` is worse than CLIP at h 0.1" in h and "not distinguishable from CLIP at h 0.5" in h
    assert sensitivity.table_sentence(table).startswith("3 of the 6 ContextCLIP settings")
    fig_text = sensitivity.figure_sentence(table)
    assert "the worst batch alpha 2 h 0.5" in fig_text or "the worst batch alpha 0.5 h 0.1" in fig_text
    fig = plots.sensitivity_figure(table, 0.5, 0.5)
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_xticklabels()] == ["0", "0.1", "0.5", "2"]
    assert [t.get_text() for t in right.get_xticklabels()] == ["0.1", "0.5"]
    assert len(left.collections) >= 2  # CLIP's band and at least one variant's band


def test_one_seed_falls_back_to_the_item_bootstrap_or_says_no_interval(tmp_path):
    _study(tmp_path, {"cx-batch-a0.5-h0.5": 1.0}, seeds=(0,))
    table = sensitivity.study_table(tmp_path)
    r = table.set_index("label").loc["cx-batch-a0.5-h0.5"]
    assert math.isnan(r["ci_low"]) and r["verdict"] == "no interval"
    assert "has no interval at alpha 0.5" in sensitivity.variant_sentence(table, "batch", 0.5)


def test_the_study_reports_each_of_its_sets_apart(tmp_path):
    """Two zero-shot sets (the primary endpoints by default): a table, sentences and a row of panels each."""
    cfg = load_config("sensitivity_pretrained")
    assert sensitivity.study_datasets(cfg) == ["novel_classes", "mnist_test"]  # the primary endpoints' sets
    assert sensitivity.study_datasets(load_config("sensitivity")) == ["mnist_test"]  # pinned: its results' set
    assert sensitivity.study_datasets(load_config("smoke", {"sens_datasets": ["digits"]})) == ["digits"]
    assert {p.variant for p in sensitivity.grid(cfg)} == {"", "batch", "feature_columns"}
    _study(tmp_path, {"cx-batch-a1-h0.5": -10.0, "cx-batch-a0.5-h0.1": 0.0}, dataset="novel_classes")
    _study(tmp_path, {"cx-batch-a1-h0.5": 5.0, "cx-batch-a0.5-h0.1": 0.0}, dataset="mnist_test")
    table = sensitivity.study_table(tmp_path)
    assert [ds for ds, _ in sensitivity.by_dataset(table)] == ["mnist_test", "novel_classes"]
    assert (table["verdict"] == "baseline").sum() == 2
    said = sensitivity.sentences(table, cfg.updated({"sens_variants": ["batch"]}))
    assert len(said) == 4  # per set: one on the variant, one on h
    assert "mnist_test zero-shot" in said[0] and "better than CLIP at alpha 1" in said[0]
    assert "novel_classes zero-shot" in said[2] and "worse than CLIP at alpha 1" in said[2]
    assert said[1].startswith("mnist_test: Bandwidth h") and said[3].startswith("novel_classes: Bandwidth h")
    md = sensitivity.table_markdown(table, "Study")
    assert md.startswith("## Study") and "### mnist_test zero-shot top1" in md and "### novel_classes zero-shot" in md
    fig = plots.sensitivity_figure(table, 0.5, 0.5)
    assert len(fig.axes) == 4
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["mnist_test zero-shot top1 (%)",
                                                         "novel_classes zero-shot top1 (%)"]
