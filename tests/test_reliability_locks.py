"""One writer per folder: two real processes on one run folder, one results folder, one profile.

Every test here starts real processes (``python -c`` holders, ``python -m contextclip train``,
``reproduce`` in a subprocess); nothing is mocked. CPU, offline, smoke-sized.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from notebook_fakes import tiny_notebook

from contextclip.config import REPO_ROOT
from contextclip.lock import FolderBusyError, folder_lock, read_holder

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(REPO_ROOT)}
for _k in ("CONTEXTCLIP_FAILPOINT", "CONTEXTCLIP_LOCKS", "CONTEXTCLIP_DEBUG"):
    ENV.pop(_k, None)
SETS = ["n_pairs=96", "val_fraction=0.3", "epochs=4", "batch_size=16", "log_every=1", "device=cpu"]


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    """A real process that takes ``folder``'s lock, says so, holds it ``seconds`` and exits."""
    code = textwrap.dedent(f"""
        import sys, time
        from contextclip.lock import folder_lock
        with folder_lock({str(folder)!r}, "run folder"):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    p = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_held_lock_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    p = _holder(folder, 60)
    try:
        with pytest.raises(FolderBusyError) as err, folder_lock(folder, "run folder"):
            pass
        msg = str(err.value)
        assert f"pid {p.pid}" in msg and socket.gethostname() in msg and "since 20" in msg, msg
        assert "--wait" in msg and f"kill {p.pid}" in msg and "\n" not in msg
    finally:
        p.send_signal(signal.SIGKILL)  # dies holding it: no cleanup runs
        p.wait()
    assert read_holder(folder)["pid"] == p.pid  # the stale record is still there
    with folder_lock(folder, "run folder") as rec:
        assert rec["pid"] == os.getpid()
    assert f"taking over a stale lock left by pid {p.pid}" in capsys.readouterr().err
    assert read_holder(folder) == {}  # released cleanly: no record left


def test_wait_waits_for_the_holder_then_goes_on(tmp_path):
    folder = tmp_path / "run"
    p = _holder(folder, 2.0)
    t0 = time.time()
    with folder_lock(folder, "run folder", wait=True, poll_s=0.1) as rec:
        assert rec["pid"] == os.getpid() and read_holder(folder)["pid"] == os.getpid()
        assert time.time() - t0 > 1.0  # it waited for the holder's 2 s
    p.wait()


def test_a_garbage_lock_file_is_not_an_error(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_bytes(b"\x00\xffnot json")
    with folder_lock(folder, "run folder") as rec:
        assert rec["pid"] == os.getpid()


def _train_cmd(out: Path, data_root: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "contextclip", "train", "--profile", "smoke", "--method", "contextclip",
           "--seed", "3", "--out", str(out), "--no-progress", *extra]
    for s in SETS + [f"data_root={data_root}"]:
        cmd += ["--set", s]
    return cmd


def _wait_for_lock(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while read_holder(folder).get("pid") != proc.pid:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the first process ended without the lock: {out[-1500:]} {err[-1500:]}")
        assert time.time() - t0 < timeout, "the first process never took the lock"
        time.sleep(0.1)


@pytest.mark.slow
def test_second_train_on_a_busy_run_folder_is_refused_or_waits_and_history_is_never_doubled(tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    first = subprocess.Popen(_train_cmd(out, data), cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _wait_for_lock(out, first)
    refused, waiter = (subprocess.Popen(_train_cmd(out, data, *extra), cwd=REPO_ROOT, env=ENV,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                       for extra in ((), ("--wait",)))
    r_out, r_err = refused.communicate(timeout=600)
    assert first.poll() is None, "the first train ended before the second asked: make it longer"
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    w_out, w_err = waiter.communicate(timeout=600)

    assert refused.returncode == 2, r_err[-2000:]
    assert f"pid {first.pid}" in r_err and "Traceback" not in r_err
    assert len(r_err.strip().splitlines()) <= 2, r_err
    assert waiter.returncode == 0, w_err[-2000:]
    assert "waiting for it" in w_err and "already trained" in w_out  # waited, then did not train again
    history = [json.loads(s) for s in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history if r["type"] == "epoch"] == [1, 2, 3, 4]  # recorded once each
    assert [r["global_step"] for r in history if r["type"] == "step"] == list(range(1, 17))
    assert json.loads((out / "summary.json").read_text())["steps"] == 16


@pytest.mark.slow
def test_two_reproduce_of_one_profile_never_double_a_history_or_a_row(tmp_path):
    # a step that appends to a history, waits for the test's go, and writes a metrics row through the results lock
    # (which the kernel may take: it inherits the pipeline's token)
    cells = ["with open('runs/smoke/history.txt', 'a') as fh:\n    fh.write('epoch\\n')",
             "import time\nfrom pathlib import Path\nt0 = time.time()\n"
             "while not Path('release').exists() and time.time() - t0 < 120:\n    time.sleep(0.2)",
             "from contextclip.lock import folder_lock\nfrom contextclip.results import append_metrics\n"
             "with folder_lock('results/smoke', 'results folder'):\n"
             "    append_metrics('results/smoke/metrics.csv', [dict(method='clip', seed=0, task='zero_shot', "
             "dataset='a', metric='top1', value=1.0, n=1, run='runs/smoke/clip-seed0')])"]
    nbs = [tiny_notebook(tmp_path / "01_a.ipynb", cells)]
    (tmp_path / "runs" / "smoke").mkdir(parents=True)

    def start(wait: bool) -> subprocess.Popen:
        script = textwrap.dedent(f"""
            import sys
            from contextclip.errors import UserError
            from contextclip.pipeline import reproduce
            try:
                rc = reproduce('smoke', notebooks={[str(p) for p in nbs]!r}, root={str(tmp_path)!r},
                               progress_bar=False, cell_timeout=120, wait={wait})
            except UserError as exc:
                print(f"error: {{exc}}", file=sys.stderr)
                rc = 2
            raise SystemExit(rc)
        """)
        return subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start(False)
    _wait_for_lock(tmp_path / "runs" / "smoke", first)
    second, third = start(False), start(True)
    s_out, s_err = second.communicate(timeout=300)
    (tmp_path / "release").write_text("go")
    f_out, f_err = first.communicate(timeout=300)
    t_out, t_err = third.communicate(timeout=300)
    assert first.returncode == 0, f_out[-2000:] + f_err[-2000:]
    assert second.returncode == 2 and f"pid {first.pid}" in s_err and "Traceback" not in s_err, s_err
    assert third.returncode == 0 and "inputs unchanged, skipped" in t_out, t_out[-2000:] + t_err[-2000:]
    assert (tmp_path / "runs/smoke/history.txt").read_text().split() == ["epoch"]
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "results/smoke/metrics.csv")) == 1


def test_evaluate_refuses_a_results_folder_another_process_writes(tmp_path):
    from contextclip.cli import main

    results = tmp_path / "results"
    p = _holder(results, 60)
    try:
        run = tmp_path / "clip-seed0"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"profile": "smoke"}))
        with pytest.raises(FolderBusyError, match=f"results folder {results} is in use by pid {p.pid}"):
            from contextclip.evaluate import evaluate_run

            evaluate_run(run, "zero_shot", "digits", results)
        assert main(["evaluate", "--run", str(run), "--task", "zero_shot", "--dataset", "digits",
                     "--results", str(results)]) == 2
    finally:
        p.kill()
        p.wait()
