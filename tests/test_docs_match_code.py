"""The repository speaks for itself: notebook runtimes come from the benchmark files, and no file
points to a note a reader of the repository cannot open."""

from __future__ import annotations

import re
import subprocess
import sys

from contextclip.config import REPO_ROOT


def test_notebook_runtimes_are_the_measured_ones():
    res = subprocess.run([sys.executable, "tools/notebook_runtimes.py", "--check"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_no_reference_to_notes_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    pattern = re.compile("DESIGN" + r"\.md|offline" + "-notes|method" + "-notes|the " + "lead|\\(issue " + r"\d")
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
