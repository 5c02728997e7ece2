"""The repository speaks for itself: notebook runtimes come from the benchmark files, and no file
points to a note a reader of the repository cannot open."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from contextclip.config import REPO_ROOT
from contextclip.runs import already_trained_line


def test_notebook_runtimes_are_the_measured_ones():
    res = subprocess.run([sys.executable, "tools/notebook_runtimes.py", "--check"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


#: whole phrases that point to notes or people a reader of the repository cannot reach (written in
#: pieces so that this file does not match itself); "the leading term" is not one of them
OUTSIDE_REFERENCE = re.compile(r"\bDESIGN" + r"\.md\b|\boffline" + r"-notes\b|\bmethod" + r"-notes\b|\b[Tt]he "
                               + r"lead\b|\(issue " + r"\d")


def test_the_outside_reference_check_matches_whole_phrases():
    assert not OUTSIDE_REFERENCE.search("the leading term of Eq. 9; misleading; the leads of a cable")
    for text in ("ask the " + "lead", "The " + "lead decided", "see DESIGN" + ".md", "(issue " + "22)",
                 "method" + "-notes.md", "offline" + "-notes"):
        assert OUTSIDE_REFERENCE.search(text), text


def test_no_reference_to_notes_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    pattern = OUTSIDE_REFERENCE
    bad = []
    for name in files:
        if name.endswith((".ipynb", ".png", ".pdf", ".pt", ".npz", ".csv", ".lock")):
            continue
        try:
            text = (REPO_ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        bad += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not bad, bad


def test_a_pass_that_reused_trained_runs_says_so_beside_its_time(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tools"))
    import notebook_runtimes
    import pipeline as pipeline_benchmark

    line = already_trained_line(Path("runs/embedded/clip-seed0"), 1.2) + "\n"
    nb = {"cells": [{"outputs": [{"output_type": "stream", "name": "stdout", "text": [line, line]}]},
                    {"outputs": [{"output_type": "display_data", "data": {"text/plain": line}}]}]}
    assert pipeline_benchmark.reused_runs(nb) == 2  # stream output only
    meas = {"embedded": {"notebooks": {"02_train": 24.0}, "reused": {"02_train": 12}, "machine": {"cpu_count": 2}}}
    assert "24 s, reusing 12 trained runs" in notebook_runtimes.header_line("02_train", meas)
    meas["embedded"]["reused"] = {"02_train": 0}
    assert "24 s (measured" in notebook_runtimes.header_line("02_train", meas)


def test_runtime_headers_name_only_the_profiles_that_run_the_notebook(monkeypatch):
    """embedded and paper stop at 07 and sensitivity runs 08 alone: no "not measured yet" for a
    notebook a profile never runs; smoke (an empty list) runs every notebook."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tools"))
    import notebook_runtimes

    eight = notebook_runtimes.header_line("08_sensitivity", {})
    assert "smoke: not measured yet" in eight and "sensitivity: not measured yet" in eight
    assert "embedded" not in eight and "paper" not in eight
    two = notebook_runtimes.header_line("02_train", {})
    assert "embedded: not measured yet" in two and "sensitivity" not in two
