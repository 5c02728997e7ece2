"""metrics.csv and per-item files: written under the results folder's one lock (``contextclip.lock``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from contextclip import results, results_io
from contextclip.config import REPO_ROOT
from contextclip.errors import DamagedFileError, UserError
from contextclip.lock import LOCK_NAME, folder_lock, read_holder

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
ENV.pop("CONTEXTCLIP_LOCKS", None)


def _row(seed: int, value: float, run: str = "") -> dict:
    return dict(method="clip", seed=seed, task="zero_shot", dataset="digits", metric="top1", value=value, n=10,
                run=run)


def test_results_reexports_the_io_functions():
    for name in ("read_metrics", "append_metrics", "save_per_item", "load_per_item", "is_layout_run",
                 "METRIC_COLUMNS"):
        assert getattr(results, name) is getattr(results_io, name)


def test_append_metrics_takes_the_folder_lock_and_no_second_lock_file(tmp_path):
    results_io.append_metrics(tmp_path / "metrics.csv", [_row(0, 50.0)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK_NAME, "metrics.csv"])
    assert read_holder(tmp_path) == {}  # released


def test_append_metrics_inside_the_callers_own_lock_does_not_wait_for_itself(tmp_path):
    with folder_lock(tmp_path, "results folder") as rec:
        with folder_lock(tmp_path, "results folder") as nested:
            assert nested is None  # the holder's nested block takes nothing
        t0 = time.perf_counter()
        results_io.append_metrics(tmp_path / "metrics.csv", [_row(0, 50.0)])
        assert time.perf_counter() - t0 < 5 and read_holder(tmp_path)["token"] == rec["token"]
    assert len(results_io.read_metrics(tmp_path / "metrics.csv")) == 1


def test_append_metrics_waits_for_another_writer_of_the_folder(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from contextclip.lock import folder_lock
        with folder_lock({str(tmp_path)!r}, "results folder"):
            print("held", flush=True)
            time.sleep(2.0)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        results_io.append_metrics(tmp_path / "metrics.csv", [_row(0, 50.0)])
        assert time.perf_counter() - t0 > 1.0  # it waited for the holder
    finally:
        holder.wait(timeout=60)
    assert results_io.read_metrics(tmp_path / "metrics.csv")["value"].tolist() == [50.0]


@pytest.mark.parametrize("text", ["method,seed\nclip,0\n", "\"unclosed,quote\n1,2\n",
                                  "method,seed,task,dataset,metric,value,n\nclip,x,zero_shot,d,top1,1,3\n"])
def test_a_damaged_metrics_file_is_a_user_error_naming_it(tmp_path, text):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(DamagedFileError) as info:
        results_io.read_metrics(path)
    assert isinstance(info.value, UserError) and str(path) in str(info.value)


def test_per_item_files_round_trip_and_another_run_gets_its_own_folder(tmp_path):
    a = np.array([1.0, 0.0, 0.5])
    results_io.save_per_item(tmp_path, "clip", 0, "zero_shot", "digits", {"top1": a})
    other = results_io.save_per_item(tmp_path, "clip", 0, "zero_shot", "digits", {"top1": 1 - a}, run="/x/mine")
    assert np.array_equal(results_io.load_per_item(tmp_path, "clip", 0, "zero_shot", "digits")["top1"], a)
    assert other.parent.name.startswith("clip-seed0@mine-") and other.exists()
    assert results_io.load_per_item(tmp_path, "clip", 1, "zero_shot", "digits") is None
