"""Files the kit wrote, read back after a user (or a crash) changed them; folders that are not the kit's.

Each case is one a hostile user tried: a FIFO at a lock path, a pipeline state edited into
nonsense, a fake "running" mark, the user's own files in ``--out``, a checkpoint copied in from
another run, a relative ``base:``, Ctrl-C inside a checkpoint write, and the commands a user gets
wrong (an unknown dataset, ``--out`` naming a file, ``data check /dev/zero``). CPU, offline,
smoke-sized; the trainings are the 96-pair smoke run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from notebook_fakes import tiny_notebook

from contextclip.cli import main
from contextclip.config import REPO_ROOT, load_config
from contextclip.errors import CheckpointError, DamagedFileError, UserError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(REPO_ROOT)}
for _k in ("CONTEXTCLIP_FAILPOINT", "CONTEXTCLIP_LOCKS", "CONTEXTCLIP_DEBUG"):
    ENV.pop(_k, None)
SMALL = ["n_pairs=96", "val_fraction=0.3", "epochs=1", "batch_size=16", "device=cpu"]


def _cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contextclip", *args], cwd=REPO_ROOT, env=env or ENV,
                          capture_output=True, text=True, timeout=timeout)


def _train_args(method: str, out: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--profile", "smoke", "--method", method, "--out", str(out), "--no-progress", *extra,
            *sum((["--set", s] for s in SMALL + [f"data_root={data}"]), [])]


def _one_line(rc: int, err: str) -> str:
    """The stderr of a user's mistake: exit code 2, one ``error:`` line, no traceback."""
    assert rc == 2, (rc, err[-2000:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def _main(capsys, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err


# ============================================================================ locks
def test_a_fifo_at_the_lock_path_is_named_at_once_instead_of_hanging(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / ".lock")
    t0 = time.time()
    res = _cli(*_train_args("clip", run, tmp_path / "data"), timeout=60)  # hung for ever before
    err = _one_line(res.returncode, res.stderr)
    assert f"{run / '.lock'} is a FIFO (named pipe)" in err and "Move it away" in err, err
    assert time.time() - t0 < 60


def test_a_folder_at_the_lock_path_is_named(tmp_path, capsys):
    from contextclip.errors import LockPathError
    from contextclip.lock import folder_lock, read_holder

    run = tmp_path / "run"
    (run / ".lock").mkdir(parents=True)
    with pytest.raises(LockPathError, match=r"\.lock is a folder, not the lock file of this run folder"):
        with folder_lock(run, "run folder"):
            pass
    with pytest.raises(LockPathError):
        read_holder(run)
    (run / ".lock").rmdir()
    (run / ".lock").write_text(json.dumps({"pid": "not a pid", "host": ["x"], "token": 5}))
    assert read_holder(run) == {}  # garbage fields are dropped, not an error


# ============================================================================ pipeline state
STEP = ["from pathlib import Path\nPath('results/smoke').mkdir(parents=True, exist_ok=True)\n"
        "with open('ran.txt', 'a') as fh:\n    fh.write('a\\n')",
        "Path('results/smoke/table.md').write_text('final')"]


def _reproduce(nbs, root, **kw):
    from contextclip.pipeline import reproduce

    return reproduce("smoke", notebooks=nbs, root=root, progress_bar=False, cell_timeout=120, log=print, **kw)


@pytest.mark.parametrize("damage, named", [
    (lambda s: {**s, "running": {"notebook": "03_zero_shot", "before": 5}}, "key 'running.before' should be an object"),
    (lambda s: {**s, "running": {"notebook": "03_zero_shot"}}, "key 'running.before' is missing"),
    (lambda s: {**s, "notebooks": {**s["notebooks"], "03_zero_shot": "garbage"}},
     "key 'notebooks.03_zero_shot' should be an object"),
    (None, "not valid JSON"),  # cut short
])
def test_a_damaged_pipeline_state_is_named_and_nothing_reruns(tmp_path, damage, named):
    from contextclip.pipeline import read_state, write_state

    a = tiny_notebook(tmp_path / "01_a.ipynb", STEP)
    state_path = tmp_path / "runs/smoke/pipeline_state.json"
    state_path.parent.mkdir(parents=True)
    write_state(state_path, {"version": 1, "notebooks": {}})
    if damage is None:
        state_path.write_text(state_path.read_text()[:9])
    else:
        state_path.write_text(json.dumps(damage(read_state(state_path))))
    before = state_path.read_bytes()
    with pytest.raises(DamagedFileError) as err:
        _reproduce([a], tmp_path)
    msg = str(err.value)
    assert str(state_path) in msg and named in msg and "delete it: every notebook then runs again" in msg, msg
    assert "\n" not in msg and state_path.read_bytes() == before and not (tmp_path / "ran.txt").exists()


def test_a_fake_running_mark_never_moves_finished_outputs(tmp_path):
    a = tiny_notebook(tmp_path / "01_a.ipynb", STEP)
    assert _reproduce([a], tmp_path) == 0
    state_path = tmp_path / "runs/smoke/pipeline_state.json"
    state = json.loads(state_path.read_text())
    state["running"] = {"notebook": "03_zero_shot", "before": {}}  # well-formed, but nothing backs it
    state_path.write_text(json.dumps(state))
    assert _reproduce([a], tmp_path) == 0
    assert (tmp_path / "results/smoke/table.md").read_text() == "final"  # finished work stays in place
    assert not list((tmp_path / "runs/smoke/notebooks").glob("*.failed-outputs/**/table.md"))
    assert (tmp_path / "ran.txt").read_text().split() == ["a"]  # and the finished step is not rerun


# ============================================================================ config
def test_a_relative_base_is_read_from_the_yaml_files_folder(tmp_path, monkeypatch):
    sub = tmp_path / "profiles"
    sub.mkdir()
    (sub / "parent.yaml").write_text("base: smoke\ntrain:\n  batch_size: 24\n")
    (sub / "child.yaml").write_text("base: parent.yaml\nloss:\n  alpha: 0.25\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(sub / "child.yaml")
    assert cfg.train.batch_size == 24 and cfg.loss.alpha == 0.25


# ============================================================================ run folders
def test_the_users_files_in_out_are_never_trained_over_nor_deleted(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "own config"}')
    (out / "history.jsonl").write_text('{"my": "notes"}\n')
    for extra in ((), ("--fresh",)):
        rc, err = _main(capsys, *_train_args("clip", out, tmp_path / "data", *extra))
        err = _one_line(rc, err)
        assert "holds files the kit did not write (config.json, history.jsonl)" in err, err
    assert (out / "config.json").read_text() == '{"my": "own config"}'
    assert (out / "history.jsonl").read_text() == '{"my": "notes"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.jsonl"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A finished CLIP run and a finished ContextCLIP run (smoke, 96 pairs, one epoch), trained once here."""
    from contextclip.train import fit

    root = tmp_path_factory.mktemp("two_runs")
    cfg = load_config("smoke", SMALL + [f"data_root={root / 'data'}"])
    for method in ("clip", "contextclip"):
        fit(cfg, method, 0, root / f"{method}-seed0", progress=False)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def test_a_checkpoint_copied_from_another_run_is_refused_by_evaluate_and_train(tmp_path, two_runs, capsys):
    run = _copy(two_runs / "clip-seed0", tmp_path / "clip-seed0")
    shutil.copy(two_runs / "contextclip-seed0" / "checkpoint.pt", run / "checkpoint.pt")  # same size, other run
    results = tmp_path / "results"
    rc, err = _main(capsys, "evaluate", "--run", str(run), "--task", "zero_shot", "--dataset", "digits",
                    "--results", str(results))
    err = _one_line(rc, err)
    assert "is not the checkpoint this run finished with" in err and "--fresh" in err, err
    assert not results.exists()  # no rows under the wrong name, and no empty folder
    rc, err = _main(capsys, *_train_args("clip", run, two_runs / "data"))
    assert "is not the checkpoint this run finished with" in _one_line(rc, err)
    # a summary written before summaries recorded their checkpoint: the checkpoint's own identity decides
    summary = json.loads((run / "summary.json").read_text())
    del summary["checkpoint"]
    (run / "summary.json").write_text(json.dumps(summary))
    rc, err = _main(capsys, "evaluate", "--run", str(run), "--task", "zero_shot", "--dataset", "digits",
                    "--results", str(results))
    err = _one_line(rc, err)
    assert "was trained as another run" in err and "method: 'contextclip' -> 'clip'" in err, err


def test_a_plainly_copied_run_folder_is_still_the_run_and_is_not_retrained(tmp_path, two_runs, capsys):
    run = tmp_path / "clip-seed0"
    run.mkdir()
    for p in (two_runs / "clip-seed0").iterdir():  # a plain copy: new modification times, same bytes
        if p.is_file() and p.name != ".lock":
            shutil.copyfile(p, run / p.name)
    assert main(_train_args("clip", run, two_runs / "data")) == 0
    assert "already trained" in capsys.readouterr().out


def test_non_finite_weights_in_a_checkpoint_are_refused_naming_them(tmp_path, two_runs):
    from contextclip.runs import load_trained

    run = _copy(two_runs / "clip-seed0", tmp_path / "clip-seed0")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["model"]["logit_scale"] = torch.tensor(float("nan"))
    torch.save(ckpt, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="holds non-finite weights \\(logit_scale\\)"):
        load_trained(run)
    if ckpt.get("ema"):
        ckpt["model"]["logit_scale"] = torch.tensor(1.0)
        next(iter(ckpt["ema"]["shadow"].values())).fill_(float("nan"))
        torch.save(ckpt, run / "checkpoint.pt")
        with pytest.raises(CheckpointError, match="weight average"):
            load_trained(run)


def test_a_damaged_summary_is_named_with_the_key(tmp_path, two_runs, capsys):
    run = _copy(two_runs / "clip-seed0", tmp_path / "clip-seed0")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "seed": "zero"}))
    rc, err = _main(capsys, *_train_args("clip", run, two_runs / "data"))
    err = _one_line(rc, err)
    assert "summary.json is damaged: key 'seed' should be an integer, not 'zero'" in err and "delete it" in err


@pytest.mark.slow
def test_ctrl_c_inside_a_checkpoint_write_is_an_interrupt_and_the_rerun_finishes(tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    env = {**ENV, "CONTEXTCLIP_FAILPOINT": "writing:checkpoint.pt#1,interrupt"}  # Ctrl-C inside torch.save
    res = _cli(*_train_args("clip", out, data), env=env)
    assert res.returncode == 130, res.stderr[-2000:]
    assert "interrupted" in res.stderr and "Traceback" not in res.stderr and "cannot write" not in res.stderr
    torch.load(out / "checkpoint.pt", weights_only=True)  # the write finished before the interrupt was acted on
    res = _cli(*_train_args("clip", out, data))
    assert res.returncode == 0 and "final_val_loss" in res.stdout, res.stderr[-2000:]


# ============================================================================ one exit code per kind
def test_refused_commands_say_one_line_and_leave_no_folder(tmp_path, two_runs, capsys):
    results = tmp_path / "new" / "results"
    rc, err = _main(capsys, "evaluate", "--run", str(two_runs / "clip-seed0"), "--task", "zero_shot",
                    "--dataset", "no_such_set", "--results", str(results))
    assert "unknown dataset 'no_such_set'; known datasets:" in _one_line(rc, err)
    assert not (tmp_path / "new").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    rc, err = _main(capsys, *_train_args("clip", a_file, tmp_path / "data"))
    assert f"{a_file} is a file, not a folder" in _one_line(rc, err) and a_file.read_text() == "mine"
    rc, err = _main(capsys, "data", "check", "/dev/zero")
    assert "/dev/zero is not a regular file" in _one_line(rc, err)
    out = tmp_path / "weights" / "run"
    rc, err = _main(capsys, *_train_args("clip", out, tmp_path / "data", "--set",
                                         f"image_weights={tmp_path / 'missing.pt'}"))
    _one_line(rc, err)
    assert not (tmp_path / "weights").exists()


def test_user_errors_are_one_root(tmp_path):
    from contextclip.errors import ForeignFolderError, LockPathError, UnknownDatasetError

    for cls in (DamagedFileError, LockPathError, ForeignFolderError, UnknownDatasetError):
        assert issubclass(cls, UserError)
    assert issubclass(UnknownDatasetError, KeyError) and str(UnknownDatasetError("x y")) == "x y"


# ============================================================================ reproduce --wait
LATE_WRITER = ["from pathlib import Path\nPath('runs/smoke').mkdir(parents=True, exist_ok=True)\n"
               "with open('ran.txt', 'a') as fh:\n    fh.write('a\\n')",
               # a process the step starts (as forked trainers are) still writing its output after the kernel ends
               "import subprocess, sys, time\n"
               "code = ('import time\\nfh = open(\"runs/smoke/late.txt\", \"w\")\\nfh.write(\"part\")\\nfh.flush()\\n'\n"
               "        'open(\"ready\", \"w\").close()\\ntime.sleep(2.5)\\nfh.write(\" and the rest\")\\nfh.close()')\n"
               "subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
               "while not Path('ready').exists():\n    time.sleep(0.05)"]


def test_outputs_are_recorded_once_their_writers_are_done_so_the_next_reproduce_skips(tmp_path):
    """The cause of a ``reproduce --wait`` that reran finished notebooks: a step's outputs were digested
    while a process it started was still writing one; the next run found other bytes and reran it."""
    from contextclip.pipeline import read_state

    a = tiny_notebook(tmp_path / "01_a.ipynb", LATE_WRITER)
    assert _reproduce([a], tmp_path) == 0
    late = tmp_path / "runs/smoke/late.txt"
    assert late.read_text() == "part and the rest"  # the step waited for the writer before recording
    outputs = read_state(tmp_path / "runs/smoke/pipeline_state.json")["notebooks"]["01_a"]["outputs"]
    from contextclip.fileio import sha256_file

    assert outputs[str(late.resolve())] == sha256_file(late)
    (tmp_path / "ready").unlink()
    assert _reproduce([a], tmp_path) == 0
    assert (tmp_path / "ran.txt").read_text().split() == ["a"]  # skipped: nothing it recorded has changed


@pytest.mark.slow
def test_ctrl_c_on_reproduce_rolls_back_without_a_kernel_traceback(tmp_path):
    cells = ["from pathlib import Path\nPath('results/smoke').mkdir(parents=True, exist_ok=True)\n"
             "Path('results/smoke/table.md').write_text('half')\nPath('started').write_text('x')\n"
             "import time\ntime.sleep(120)"]
    a = tiny_notebook(tmp_path / "01_a.ipynb", cells)
    script = (f"import sys\nfrom pathlib import Path\nimport contextclip.pipeline as P\nfrom contextclip.cli import main\n"
              f"orig = P.reproduce\nP.reproduce = lambda profile, force=False, wait=False: orig(profile, force=force, "
              f"wait=wait, notebooks=[Path({str(a)!r})], root=Path({str(tmp_path)!r}), progress_bar=False)\n"
              f"sys.exit(main(['reproduce', '--profile', 'smoke']))")
    p = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # SIGINT is not ignored in a Popen child
    t0 = time.time()
    while not (tmp_path / "started").exists():
        assert p.poll() is None and time.time() - t0 < 120, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to the pipeline (the kernel has its own session)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and "interrupted" in err and "01_a: interrupted" in out, err[-3000:]
    assert not (tmp_path / "results/smoke/table.md").exists()  # what the step half-wrote is rolled back
    assert "running" not in json.loads((tmp_path / "runs/smoke/pipeline_state.json").read_text())


# ============================================================================ caches and histories
def test_a_history_line_of_the_wrong_shape_is_named(tmp_path):
    from contextclip.plots import read_history

    (tmp_path / "history.jsonl").write_text('{"type": "step", "epoch": 1, "global_step": 1}\n'
                                            '{"type": "step", "epoch": "one", "global_step": 2}\n')
    with pytest.raises(DamagedFileError, match=r"history.jsonl, line 2: key 'epoch' should be an integer, not 'one'"):
        read_history(tmp_path)


def test_an_embedding_cache_holding_something_else_is_recomputed_or_named(tmp_path):
    from eval_fakes import PerfectEncoder, fake_run_with_cache

    from contextclip.evaluate import cache_path, embed_dataset, load_embeddings

    run, cfg, ds, model, first = fake_run_with_cache(tmp_path)
    torch.save({"fingerprint": first["fingerprint"], "kind": "classification"}, cache_path(run, "fake"))
    with pytest.raises(DamagedFileError, match="fake.pt is damaged: key 'dataset' is missing"):
        load_embeddings(run, "fake")
    enc = PerfectEncoder(ds.classnames)
    again = embed_dataset(run, "fake", cfg, model=enc, dataset=ds)  # the right fingerprint, but not a cache
    assert enc.image_calls > 0 and torch.equal(first["image"], again["image"])


def test_a_damaged_decoded_image_cache_is_decoded_again(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from contextclip.data.sets import FileImages, decoded_cache

    paths = []
    for k in range(3):
        p = tmp_path / f"{k}.png"
        Image.fromarray(np.full((20, 20, 3), 40 * k, np.uint8)).save(p)
        paths.append(p)
    ds = FileImages(paths, [0, 1, 2], 16)
    first = decoded_cache(ds, tmp_path / "decoded")
    want = [first[i][0].clone() for i in range(3)]
    blob = first.path.read_bytes()
    first.path.write_bytes(blob[: len(blob) // 2])
    again = decoded_cache(ds, tmp_path / "decoded")
    assert "is damaged; decoding the images again" in capsys.readouterr().err
    assert all(bool((again[i][0] == want[i]).all()) for i in range(3))
