"""benchmarks/_common.ratio_summary: per-round ratios of interleaved timings, their spread, and the
"too busy to trust" flag, against hand-made timings."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_common", Path(__file__).resolve().parents[1] / "benchmarks" / "_common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_load_that_lasts_a_round_cancels_in_the_per_round_ratio():
    load = [1.0, 3.0, 1.2, 2.5, 1.0, 4.0, 1.1]  # a busy machine slows whole rounds
    den = [0.4 * x for x in load]
    num = [1.05 * d for d in den]
    r = common.ratio_summary(num, den)
    assert r["median"] == pytest.approx(1.05) and r["relative_spread"] == pytest.approx(0.0, abs=1e-9)
    assert r["min_based"] == pytest.approx(1.05) and r["trusted"] and r["rounds"] == 7
    # the ratio of medians would have been fooled by load hitting one variant's rounds only
    assert statistics.median(num) / statistics.median(den) == pytest.approx(1.05)


def test_a_wide_spread_is_flagged():
    den = [1.0] * 9
    num = [0.9, 1.4, 1.0, 2.1, 0.95, 1.6, 1.0, 1.3, 2.4]  # another job hit some rounds of one variant
    r = common.ratio_summary(num, den, max_spread=0.10)
    ratios = sorted(num)
    q = statistics.quantiles(ratios, n=4)
    assert (r["q25"], r["median"], r["q75"]) == pytest.approx(tuple(q), abs=1e-4)
    assert r["relative_spread"] == pytest.approx((q[2] - q[0]) / q[1], abs=1e-4)
    assert r["min_based"] == pytest.approx(0.9) and not r["trusted"]


def test_median_and_fastest_rounds_that_disagree_are_flagged():
    den = [1.0] * 8 + [0.5]  # the reference variant once ran alone: its fastest round is far faster
    num = [1.0] * 9
    r = common.ratio_summary(num, den, max_spread=0.10)
    assert r["relative_spread"] == 0.0 and r["min_based"] == pytest.approx(2.0) and not r["trusted"]


def test_unequal_lists_are_refused():
    with pytest.raises(ValueError, match="equal"):
        common.ratio_summary([1.0], [1.0, 2.0])
