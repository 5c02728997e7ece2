"""Reliability drills: killed runs resume exactly and never leave a half-written file.

Training runs are real ``python -m contextclip train`` subprocesses, killed with SIGKILL at named
points through the fail-point switch ``contextclip.failpoints`` (environment variable
``CONTEXTCLIP_FAILPOINT="<point>#<n>"``: the process SIGKILLs itself the n-th time it reaches the
point, no cleanup runs, exactly as under ``kill -9``). Results files are checked by making the
writer "die" (an exception no code catches) between writing its temporary copy and renaming it,
and in the middle of writing it. The ``reproduce`` drill runs throwaway notebooks whose cells
SIGKILL the pipeline process. Everything runs on the CPU, offline, smoke-sized.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from notebook_fakes import tiny_notebook

from contextclip.config import REPO_ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
ENV.pop("CONTEXTCLIP_FAILPOINT", None)
# 96 pairs, 30 % held out: 67 train pairs = 4 steps of 16 per epoch, 29 val pairs = 2 val batches;
# a mid-epoch checkpoint at step 2 and one at each epoch end.
SETS = ["n_pairs=96", "val_fraction=0.3", "epochs=2", "batch_size=16", "checkpoint_every=2", "log_every=1",
        "device=cpu"]


def _cmd(out: Path, data_root: Path) -> list[str]:
    cmd = [sys.executable, "-m", "contextclip", "train", "--profile", "smoke", "--method", "contextclip",
           "--seed", "5", "--out", str(out), "--no-progress"]
    for s in SETS + [f"data_root={data_root}"]:
        cmd += ["--set", s]
    return cmd


def _train(out: Path, data_root: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(ENV, **({"CONTEXTCLIP_FAILPOINT": kill_at} if kill_at else {}))
    return subprocess.run(_cmd(out, data_root), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _ckpt(run: Path) -> dict:
    # weights_only: what the kit itself uses; a half-written file would raise here
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def _history(run: Path) -> list[dict]:
    drop = ("time", "epoch_seconds")
    return [{k: v for k, v in json.loads(s).items() if k not in drop}
            for s in (run / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, data_root):
    """The uninterrupted run (same seed, same command)."""
    out = tmp_path_factory.mktemp("baseline") / "run"
    res = _train(out, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text())


def _assert_same_as_baseline(run: Path, baseline) -> dict:
    out, want = baseline
    got = json.loads((run / "summary.json").read_text())
    assert got["final_val_loss"] == want["final_val_loss"]  # exactly, on the CPU
    assert got["steps"] == want["steps"] and got["final_logit_scale"] == want["final_logit_scale"]
    a, b = _ckpt(out)["model"], _ckpt(run)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), [
        k for k in a if not torch.equal(a[k], b[k])]
    assert _history(run) == _history(out)  # no line lost, none duplicated
    return got


@pytest.mark.slow  # several train subprocesses (~20-35 s on 2 shared cores)
def test_sigkill_mid_epoch_in_validation_and_inside_checkpoint_writes_then_resume_is_exact(
        baseline, data_root, tmp_path):
    run = tmp_path / "run"
    # (kill point, (epoch, step) of the checkpoint that must be on disk afterwards)
    drills = [
        ("write:checkpoint.pt#1", None),  # before any checkpoint exists, with 2 history lines logged
        ("step#3", (0, 2)),  # mid-epoch 1, one step after the step-2 checkpoint
        ("val_batch#2", (0, 2)),  # in the validation pass of epoch 1 (its 2nd batch)
        ("write:checkpoint.pt#2", (1, 0)),  # epoch-1 checkpoint written; step-2 one killed before its rename
        ("write:summary.json#1", (2, 0)),  # training done, killed while writing summary.json
    ]
    for point, expected in drills:
        res = _train(run, data_root, point)
        assert res.returncode == -signal.SIGKILL, (point, res.returncode, res.stderr[-2000:])
        if expected is None:
            assert not (run / "checkpoint.pt").exists() and len(_history(run)) == 2
            continue
        ckpt = _ckpt(run)
        assert (ckpt["epoch"], ckpt["step"]) == expected, point
        assert not (run / "summary.json").exists(), point
        if point.startswith("write:checkpoint"):
            # the new checkpoint was complete in its temporary file, the old one still in place
            assert len(list(run.glob("checkpoint.pt.*.tmp"))) == 1
    res = _train(run, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_as_baseline(run, baseline)
    assert not list(run.glob("*.tmp"))  # the killed writers' temporary files were removed at the next start


@pytest.mark.slow  # several train subprocesses (~20-35 s on 2 shared cores)
def test_killed_twice_at_random_points_reports_the_same_final_val_loss(baseline, data_root, tmp_path):
    """Two kills at random drill points (seeded; any step, validation batch or file write)."""
    rng = random.Random(8)
    run = tmp_path / "run"
    # a full run reaches 8 steps + 4 validation batches + 7 file writes (config.json, environment.json,
    # data_report.json, 3 checkpoints, summary.json) = 19 fail points; the second kill counts in the resumed
    # run's own points. (This seed draws 4 and 6: after step 1, then after step 2 of the rerun.)
    first = rng.randint(1, 12)
    second = rng.randint(1, 14)
    for n in (first, second):
        res = _train(run, data_root, f"*#{n}")
        assert res.returncode == -signal.SIGKILL, (n, res.returncode, res.stderr[-2000:])
        if (run / "checkpoint.pt").exists():
            _ckpt(run)  # never unloadable
    res = _train(run, data_root)
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_as_baseline(run, baseline)


def test_a_truncated_checkpoint_is_named_with_the_fix(baseline, data_root, tmp_path):
    """Not a kill (those never truncate it) but a bad copy: the error names the file and --fresh."""
    out, _ = baseline
    run = tmp_path / "copy"
    run.mkdir()
    data = (out / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    res = _train(run, data_root)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"checkpoint {run / 'checkpoint.pt'} cannot be loaded" in res.stderr and "--fresh" in res.stderr
    assert "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- results files
class _Killed(BaseException):
    """Stands for a crash mid-write: no ``except Exception`` in the kit catches it."""


def _row(method, seed, value):
    return dict(method=method, seed=seed, task="zero_shot", dataset="digits", metric="top1", value=value, n=10)


def test_metrics_csv_and_tables_are_old_or_new_never_half_written(tmp_path, monkeypatch):
    from contextclip import failpoints, fileio, results

    metrics = tmp_path / "metrics.csv"
    results.append_metrics(metrics, [_row("clip", 0, 50.0), _row("contextclip", 0, 55.0)])
    old = metrics.read_bytes()
    results.build_tables(tmp_path, "smoke", bootstrap_samples=10)
    old_table = (tmp_path / "table1_zero_shot.md").read_bytes()
    old_csv = (tmp_path / "table1_zero_shot.csv").read_bytes()

    # 1. killed between the complete temporary file and the rename (the fail point of every atomic write)
    for target, write in (("metrics.csv", lambda: results.append_metrics(metrics, [_row("clip", 1, 60.0)])),
                          ("table1_zero_shot.csv", lambda: results.build_tables(tmp_path, "smoke", 10)),
                          ("table1_zero_shot.md", lambda: results.build_tables(tmp_path, "smoke", 10))):
        monkeypatch.setenv(failpoints.ENV, f"write:{target}#1,raise")
        failpoints.reset()
        with pytest.raises(failpoints.FailPointError):
            write()
    monkeypatch.delenv(failpoints.ENV)
    assert metrics.read_bytes() == old and (tmp_path / "table1_zero_shot.md").read_bytes() == old_table
    assert (tmp_path / "table1_zero_shot.csv").read_bytes() == old_csv
    assert not list(tmp_path.glob("*.tmp"))  # a writer that fails removes its temporary file

    # 2. killed in the middle of writing: half the content reaches the temporary file, then death
    def half_then_die(fh):
        fh.write(b"method,seed\nclip,")
        raise _Killed

    with pytest.raises(_Killed):
        fileio.atomic_write(metrics, half_then_die)
    assert metrics.read_bytes() == old and len(results.read_metrics(metrics)) == 2
    # a SIGKILLed writer leaves its temporary file: the next start removes it (its pid is gone)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"metrics.csv.{int(dead.stdout)}.tmp"
    stale.write_text("method,seed\nclip,")
    assert fileio.clean_stale_tmp(tmp_path) == [stale] and not stale.exists()

    # 3. the next run completes and ignores the leftovers
    results.append_metrics(metrics, [_row("clip", 1, 60.0)])
    assert len(results.read_metrics(metrics)) == 3
    tables = results.build_tables(tmp_path, "smoke", bootstrap_samples=10)
    assert (tmp_path / "table1_zero_shot.md").read_bytes() != old_table and len(tables["table1_zero_shot"])


# ----------------------------------------------------------------------------- reproduce


def _step_cells(tag: str, kill_where: str | None = None) -> list[str]:
    """Cells that log ``tag`` to runs.txt, add a metrics row with the real API, and maybe SIGKILL.

    ``kill_where``: ``"start"`` (before the notebook's work: the kill falls between two steps)
    or ``"middle"`` (after its metrics row, before its last cell); only on the first attempt.
    """
    kill = ("import os, signal\nfrom pathlib import Path\n"
            f"if not Path('killed-{tag}').exists():\n"
            f"    Path('killed-{tag}').write_text('x')\n"
            "    os.kill(os.getppid(), signal.SIGKILL)  # the reproduce process (papermill's parent)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)")
    cells = [kill] if kill_where == "start" else []
    cells.append(f"with open('runs.txt', 'a') as fh:\n    fh.write('{tag}\\n')")
    cells.append("from contextclip.results import append_metrics\n"
                 f"append_metrics('results/smoke/metrics.csv', [dict(method='clip', seed=0, task='zero_shot', "
                 f"dataset='{tag}', metric='top1', value=1.0, n=1)])")
    if kill_where == "middle":
        cells.append(kill)
    cells.append(f"open('done-{tag}', 'w').write('ok')")
    return cells


@pytest.mark.slow  # several seconds: in make test, not in make test-fast
def test_reproduce_killed_inside_and_between_notebooks_resumes_without_redoing(tmp_path):
    from contextclip.pipeline import read_state, reproduce

    nbs = [tiny_notebook(tmp_path / "01_a.ipynb", _step_cells("a")),
           tiny_notebook(tmp_path / "02_b.ipynb", _step_cells("b", "middle")),
           tiny_notebook(tmp_path / "03_c.ipynb", _step_cells("c", "start"))]
    script = (f"from contextclip.pipeline import reproduce\n"
              f"raise SystemExit(reproduce('smoke', notebooks={[str(p) for p in nbs]!r}, root={str(tmp_path)!r}, "
              "progress_bar=False, cell_timeout=120))")
    state_path = tmp_path / "runs" / "smoke" / "pipeline_state.json"
    runs_txt = tmp_path / "runs.txt"

    # 1st attempt: a finishes, b is killed in its middle (after it added its metrics row)
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stdout[-2000:] + res.stderr[-2000:]
    assert list(read_state(state_path)["notebooks"]) == ["01_a"]
    assert runs_txt.read_text().split() == ["a", "b"]
    assert sorted(pd.read_csv(tmp_path / "results/smoke/metrics.csv")["dataset"]) == ["a", "b"]  # whole file

    # 2nd attempt: a is skipped, b reruns and finishes, c is killed before doing anything
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stdout[-2000:] + res.stderr[-2000:]
    assert "01_a: inputs unchanged, skipped" in res.stdout
    assert list(read_state(state_path)["notebooks"]) == ["01_a", "02_b"]
    assert runs_txt.read_text().split() == ["a", "b", "b"]
    json.loads(state_path.read_text())  # the state file is always whole

    # 3rd attempt (in this process): only c runs; the rows are not duplicated (same key replaces)
    rc = reproduce("smoke", notebooks=nbs, root=tmp_path, progress_bar=False, cell_timeout=120, log=lambda m: None)
    assert rc == 0
    assert runs_txt.read_text().split() == ["a", "b", "b", "c"]
    assert sorted(pd.read_csv(tmp_path / "results/smoke/metrics.csv")["dataset"]) == ["a", "b", "c"]
    assert all((tmp_path / f"done-{t}").exists() for t in "abc")
    executed = tmp_path / "runs" / "smoke" / "notebooks"
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb"]
