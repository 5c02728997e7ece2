"""Read first, recompute on request; no verdicts on smoke.

- ``layout.outputs_for``: only the pipeline writes ``results/<profile>/`` and ``figures/<profile>/``;
  by hand a notebook shows the saved results, and anything it computes goes to the git-ignored
  ``runs/<profile>/by_hand/``.
- ``pipeline.notebook_parameters`` sets ``pipeline_run`` for notebooks 03-07, nothing else does.
- Notebook 07 run by hand on the committed ``embedded`` results leaves ``git status`` clean.
- ``presentation``: a profile without verdicts gets a banner and no verdict column.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from contextclip import presentation, results
from contextclip.config import REPO_ROOT, load_config
from contextclip.layout import BY_HAND, outputs_for, paths_for
from contextclip.pipeline import PIPELINE_RUN, declared_parameters, notebook_parameters

WRITERS = ("03_zero_shot", "04_fine_tune", "05_tsne", "06_retrieval", "07_report")


def test_outputs_rule(tmp_path):
    base = paths_for("p", tmp_path)
    nothing_saved = outputs_for("p", root=tmp_path)
    assert nothing_saved.compute and nothing_saved.mode == "by_hand"
    assert nothing_saved.paths.results == tmp_path / "runs" / "p" / BY_HAND / "results"
    assert nothing_saved.paths.figures == tmp_path / "runs" / "p" / BY_HAND / "figures"
    assert nothing_saved.paths.run_dir("clip", 0) == base.run_dir("clip", 0)  # the same trained runs
    base.results.mkdir(parents=True)
    (base.results / "metrics.csv").write_text("method,seed,task,dataset,metric,value,n\n")
    saved = outputs_for("p", root=tmp_path)
    assert not saved.compute and saved.mode == "saved" and saved.paths == base
    again = outputs_for("p", recompute=True, root=tmp_path)
    assert again.compute and again.paths.results == nothing_saved.paths.results  # never the saved folder
    pipeline = outputs_for("p", pipeline_run=True, root=tmp_path)
    assert pipeline.compute and pipeline.paths == base
    assert "recompute = True" in saved.note() and "make reproduce" in nothing_saved.note()


def test_by_hand_outputs_are_git_ignored():
    out = outputs_for("embedded", recompute=True)
    probe = [str((out.paths.results / "metrics.csv").relative_to(REPO_ROOT)),
             str((out.paths.figures / "fig6_tsne_image_digits.png").relative_to(REPO_ROOT))]
    done = subprocess.run(["git", "check-ignore", *probe], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == probe, done.stdout + done.stderr


@pytest.mark.parametrize("name", ("00_contextual_loss_explained", "01_data", "02_train") + WRITERS)
def test_only_the_pipeline_sets_pipeline_run(name):
    nb = REPO_ROOT / "notebooks" / f"{name}.ipynb"
    declared = declared_parameters(nb)
    assert declared[PIPELINE_RUN] is False  # by hand: the git-ignored runs/<profile>/by_hand/
    if name in WRITERS:
        assert declared["recompute"] is False
    assert notebook_parameters(nb, load_config("smoke"), "smoke")[PIPELINE_RUN] is True


def test_figures_of_00_to_02_by_hand_are_git_ignored():
    from contextclip.notebook_utils import figures_dir

    cfg = load_config("embedded")
    assert figures_dir(cfg, pipeline_run=True) == paths_for("embedded").figures
    by_hand = figures_dir(cfg) / "00_cx_heatmaps.png"
    probe = str(by_hand.relative_to(REPO_ROOT))
    done = subprocess.run(["git", "check-ignore", probe], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{probe} is not git-ignored"


def test_smoke_has_no_verdicts_embedded_has():
    assert load_config("smoke").eval.verdicts is False
    assert load_config("embedded").eval.verdicts is True


def test_no_verdict_rendering_on_the_committed_tables():
    """The comparison built without verdicts is the one mechanism: no column, no sentences, a banner."""
    comparison = results.summarize(REPO_ROOT / "results" / "embedded", "embedded", write=False)
    without = results.summarize(REPO_ROOT / "results" / "embedded", "embedded", write=False, verdicts=False)
    full = presentation.table_markdown(comparison, "table1_zero_shot")
    assert full == comparison.table_markdown("table1_zero_shot")  # with verdicts: untouched
    bare = presentation.table_markdown(without, "table1_zero_shot")
    assert bare.startswith("> **These numbers measure nothing.**")
    rows_full = [line for line in full.splitlines() if line.startswith("|")]
    rows_bare = [line for line in bare.splitlines() if line.startswith("|")]
    assert len(rows_full) == len(rows_bare) > 2
    for a, b in zip(rows_full, rows_bare):
        assert a.count("|") == b.count("|") + 1  # one column fewer on every line
    assert "verdict" not in rows_bare[0] and "contradicts" not in bare and "supports" not in bare
    report = presentation.report_markdown(without, {"python": sys.version.split()[0]})
    assert "measure nothing" in report and "contradicts" not in report and "inconclusive" not in report
    assert "verdict" not in report.split("## Environment")[0].replace("no verdict", "").replace("No verdicts", "")
    assert presentation.report_markdown(comparison, None) == comparison.report_markdown(None)
    bullets = presentation.differences(without.tables["table1_zero_shot"], False)
    assert "no verdict" in bullets and "contradicts" not in bullets


@pytest.mark.slow  # several seconds: in make test, not in make test-fast
def test_notebook_07_by_hand_on_embedded_leaves_git_clean(tmp_path):
    """The real thing: papermill runs 07 on the committed embedded results; nothing tracked changes."""
    pytest.importorskip("papermill")
    tracked = ["results", "figures", "README.md"]
    before = subprocess.run(["git", "status", "--porcelain", "--", *tracked], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout
    import papermill

    from contextclip.lab import KERNEL_NAME

    papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "07_report.ipynb"), str(tmp_path / "07.ipynb"),
                               parameters={"profile": "embedded"}, kernel_name=KERNEL_NAME, cwd=str(REPO_ROOT),
                               progress_bar=False)
    after = subprocess.run(["git", "status", "--porcelain", "--", *tracked], cwd=REPO_ROOT,
                           capture_output=True, text=True).stdout
    assert after == before
    assert "showing the saved results" in (tmp_path / "07.ipynb").read_text(encoding="utf-8")


def test_wide_tables_scroll_sideways_in_the_notebooks():
    from contextclip.notebook_utils import SCROLL_CLOSE, SCROLL_OPEN, scrollable

    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    wrapped = scrollable(table)
    assert wrapped.startswith(SCROLL_OPEN + "\n\n") and wrapped.endswith("\n\n" + SCROLL_CLOSE)
    assert "overflow-x: auto" in SCROLL_OPEN and table in wrapped  # the Markdown itself is unchanged
    assert scrollable("a sentence, no table") == "a sentence, no table"
