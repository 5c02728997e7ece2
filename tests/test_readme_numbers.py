"""Number drift: every number the README's generated sections, each ``report.md`` and each table
file quote is regenerated here from the committed ``results/<profile>/metrics.csv`` (and the
committed run facts); a hand edit, a stale section or a changed metrics.csv fails the test.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from contextclip import results, sensitivity
from contextclip.config import load_config
from contextclip.runs import already_trained_line

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def _committed_profiles() -> list[str]:
    """Profiles whose results are committed (a local results/smoke from `make test` is not)."""
    try:
        out = subprocess.run(["git", "ls-files", "results/*/metrics.csv"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
        names = {Path(p).parent.name for p in out}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every results folder
        names = {p.name for p in RESULTS.iterdir() if (p / "metrics.csv").exists()}
    return sorted(names - {"sensitivity"})


PROFILES = _committed_profiles()


def _tool():
    spec = importlib.util.spec_from_file_location("update_readme_results", ROOT / "tools" / "update_readme_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def numbers(text: str) -> Counter:
    return Counter(re.findall(r"[-+]?\d+(?:\.\d+)?", text))


def drift(quoted: str, regenerated: str) -> str:
    """'' when equal; else the numbers that differ, for a readable failure."""
    if quoted == regenerated:
        return ""
    a, b = numbers(quoted), numbers(regenerated)
    first = next((f"{x!r} != {y!r}" for x, y in zip(quoted.splitlines(), regenerated.splitlines()) if x != y), "")
    return (f"first differing line: {first[:300]}; quoted but not regenerated: {sorted((a - b).elements())[:20]}; "
            f"regenerated but not quoted: {sorted((b - a).elements())[:20]} "
            "(rerun `.venv/bin/python tools/update_readme_results.py` or notebook 07)")


def _regenerated_sections(results_root: Path, tmp_path: Path) -> dict:
    tool = _tool()
    # an empty runs root: the committed run_facts.json is what the README was rendered from
    return tool.sections("embedded", "ablation_feature_columns", runs_root=tmp_path / "no_runs",
                         write_facts=False, results_root=results_root)


@pytest.mark.skipif(not (RESULTS / "embedded" / "metrics.csv").exists(), reason="no embedded results committed")
def test_readme_sections_are_regenerated_from_metrics(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tool = _tool()
    for (begin, end), new in _regenerated_sections(RESULTS, tmp_path).items():
        quoted = tool.block(readme, begin, end)
        assert quoted is not None, f"README lacks the section {begin}"
        assert not drift(quoted, new), f"README section {begin}: {drift(quoted, new)}"


@pytest.mark.parametrize("profile", PROFILES)
def test_report_and_tables_are_regenerated_from_metrics(profile):
    cfg = load_config(profile)
    comp = results.summarize(RESULTS / profile, cfg.profile, write=False, **results.profile_options(cfg))
    report = (RESULTS / profile / "report.md").read_text(encoding="utf-8")
    quoted = report.split("\n## Environment", 1)[0]
    new = comp.report_markdown().rstrip("\n")
    assert not drift(quoted.rstrip("\n"), new), f"{profile}/report.md: {drift(quoted.rstrip(chr(10)), new)}"
    for name in results.TABLES:
        md = (RESULTS / profile / f"{name}.md").read_text(encoding="utf-8")
        assert not drift(md, comp.table_file(name)), f"{profile}/{name}.md: {drift(md, comp.table_file(name))}"


@pytest.mark.skipif(not (RESULTS / "sensitivity" / sensitivity.METRICS_FILE).exists(),
                    reason="no sensitivity results committed")
def test_sensitivity_table_is_regenerated_from_its_metrics():
    cfg = load_config("sensitivity")
    table = sensitivity.study_table(RESULTS / "sensitivity", bootstrap_samples=cfg.eval.bootstrap_samples)
    new = sensitivity.markdown(table, cfg)
    quoted = (RESULTS / "sensitivity" / f"{sensitivity.TABLE_NAME}.md").read_text(encoding="utf-8")
    assert not drift(quoted, new), f"sensitivity.md: {drift(quoted, new)}"


@pytest.mark.skipif(not (RESULTS / "embedded" / "metrics.csv").exists(), reason="no embedded results committed")
def test_a_changed_metric_is_caught(tmp_path):
    """The check can fail: one value moved in a copy of metrics.csv changes the regenerated README."""
    root = tmp_path / "results"
    for p in ("embedded", "ablation_feature_columns"):
        if (RESULTS / p).exists():
            shutil.copytree(RESULTS / p, root / p)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tool = _tool()
    df = pd.read_csv(root / "embedded" / "metrics.csv")
    i = df.index[(df["task"] == "zero_shot") & (df["metric"] == "top1") & (df["method"] == "contextclip")][0]
    df.loc[i, "value"] += 3.0
    df.to_csv(root / "embedded" / "metrics.csv", index=False)
    new = _regenerated_sections(root, tmp_path)[(tool.BEGIN, tool.END)]
    assert drift(tool.block(readme, tool.BEGIN, tool.END), new)


def test_notebook_times_come_only_from_a_pass_that_trained(tmp_path):
    """A reproduce that reused trained runs (only evaluation ran again) keeps the saved notebook times."""
    import json

    tool = _tool()
    runs, results_root = tmp_path / "runs" / "p", tmp_path / "results"
    (runs / "clip-seed0").mkdir(parents=True)
    (runs / "notebooks").mkdir()
    (results_root / "p").mkdir(parents=True)
    (runs / "clip-seed0" / "summary.json").write_text(json.dumps(
        {"method": "clip", "seed": 0, "seconds": 40.0, "epochs": 12, "final_val_contextual_loss": 1.5}))

    def executed(seconds: float, output: str) -> str:
        return json.dumps({"metadata": {"papermill": {"duration": seconds}}, "cells": [
            {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": output}]}]})

    (runs / "notebooks" / "02_train.ipynb").write_text(executed(360.0, "clip seed 0: 12 epochs\n"))
    first = tool.run_facts("p", tmp_path / "runs", write=True, results_root=results_root)
    assert first["notebook_seconds"] == [["02_train", 360.0]] and first["reused_runs"] == 0
    # a second pass: the run was already trained, so notebook 02 took seconds, not minutes
    (runs / "notebooks" / "02_train.ipynb").write_text(
        executed(20.0, already_trained_line(runs / "clip-seed0", 1.2) + "\n"))
    second = tool.run_facts("p", tmp_path / "runs", write=True, results_root=results_root)
    assert second["notebook_seconds"] == [["02_train", 360.0]]
    saved = json.loads((results_root / "p" / "run_facts.json").read_text())
    assert saved["notebook_seconds"] == [["02_train", 360.0]]


@pytest.mark.skipif(not (RESULTS / "embedded" / "metrics.csv").exists(), reason="no embedded results committed")
def test_readme_plain_words_summary_is_generated(tmp_path):
    """The README's "What the kit found" is ``summary_text.plain_summary`` of the committed results, and
    its numbers are those of Table 1 (a changed metrics.csv changes the text)."""
    tool = _tool()
    new = _regenerated_sections(RESULTS, tmp_path)[(tool.FOUND_BEGIN, tool.FOUND_END)]
    quoted = tool.block((ROOT / "README.md").read_text(encoding="utf-8"), tool.FOUND_BEGIN, tool.FOUND_END)
    assert quoted is not None and not drift(quoted, new), drift(quoted or "", new)
    profile = "answer" if (RESULTS / "answer" / "metrics.csv").exists() else "embedded"  # the verdict's profile
    comp = tool.comparison(profile)
    row = comp.tables["table1_zero_shot"]
    row = row[(row["dataset"] == "mnist_test") & (row["metric"] == "top1")].iloc[0]
    assert f"results/{profile}/" in new
    assert f"{row['clip_mean']:.0f}% (CLIP) and {row['contextclip_mean']:.0f}% (ContextCLIP)" in new
    assert f"{row['ci_low']:+.1f} to {row['ci_high']:+.1f}" in new


def test_plain_words_summary_on_smoke_is_only_the_banner():
    from contextclip import presentation, summary_text

    comp = _tool().comparison("embedded")
    text = summary_text.plain_summary(comp, "smoke", verdicts=False)
    assert text.strip() == presentation.banner("smoke", False)


def test_readme_class_route_is_the_measured_one():
    """The README's 90-minute route lists the steps of benchmarks/class_plan.py's ROUTE with the
    computer times of benchmarks/results/class_route.json, and adds up to at most 90 minutes."""
    import json

    measured = json.loads((ROOT / "benchmarks" / "results" / "class_route.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    route = readme[readme.index("**A 90-minute class.**"):readme.index("<!-- findings:begin -->")]
    for i, step in enumerate(measured["route"], 1):
        line = next(x for x in route.splitlines() if x.startswith(f"| {i} | `{step['notebook']}` | `{step['profile']}`"))
        assert line.endswith(f"| {step['computer_s']:.0f} | {step['people_min']} |"), line
    total = measured["people_min"] + 10 + measured["computer_min"]  # + 5 min opening, 5 min closing
    assert total <= 90 and f"{total:.0f} minutes in all" in route
