"""Misuse and lying files: every case is something a demanding user did or could do.

Classes: pipeline steps reused only on matching digests (failed and killed steps rolled back);
metrics rows that name their run; config values that are not finite or not sane and YAML that
attacks; images and manifests that lie; files that are not what they say; disks that fail; and
every user mistake ending in one or two lines with exit code 2. The disk cases mount real small
or read-only tmpfs file systems (skipped where mounting is not allowed).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_inputs import png_declaring
from notebook_fakes import tiny_notebook
from PIL import Image

from contextclip.config import (
    KNOB_SECTION,
    REPO_ROOT,
    SECTIONS,
    Config,
    ConfigError,
    _field_types,
    load_config,
    parse_override,
    save_config,
)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(REPO_ROOT)}
for _k in ("CONTEXTCLIP_FAILPOINT", "CONTEXTCLIP_LOCKS", "CONTEXTCLIP_DEBUG"):
    ENV.pop(_k, None)
SMALL = ["n_pairs=96", "val_fraction=0.3", "epochs=1", "batch_size=16", "device=cpu"]


def _cli(*args: str, cwd: Path = REPO_ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contextclip", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _one_or_two_lines(res: subprocess.CompletedProcess) -> str:
    err = res.stderr.strip()
    assert res.returncode == 2, (res.returncode, res.stdout[-1500:], err[-2500:])
    assert "Traceback" not in err, err[-2500:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines and len(err.splitlines()) <= 2, err
    return err


# ============================================================================ pipeline reuse


def _reproduce(nbs, root, **kw):
    from contextclip.pipeline import reproduce

    return reproduce("smoke", notebooks=nbs, root=root, progress_bar=False, cell_timeout=120, log=print, **kw)


STEP = ["from pathlib import Path\nPath('results/smoke').mkdir(parents=True, exist_ok=True)\n"
        "Path('figures/smoke').mkdir(parents=True, exist_ok=True)\n"
        "with open('ran.txt', 'a') as fh:\n    fh.write('a\\n')",
        "Path('results/smoke/table.md').write_text('partial')",
        "Path('figures/smoke/fig.png').write_text('new figure')",
        "if Path('fail').exists():\n    raise RuntimeError('the data went away')",
        "Path('results/smoke/table.md').write_text('final')"]


def test_a_step_whose_recorded_output_changed_is_run_again(tmp_path):
    a = tiny_notebook(tmp_path / "01_a.ipynb", STEP)
    assert _reproduce([a], tmp_path) == 0
    table = tmp_path / "results/smoke/table.md"
    stat = table.stat()
    table.write_text("FINAL")  # same size, other bytes
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same time stamp
    assert _reproduce([a], tmp_path) == 0
    assert (tmp_path / "ran.txt").read_text().split() == ["a", "a"]
    assert table.read_text() == "final"
    assert _reproduce([a], tmp_path) == 0  # now it matches again: skipped
    assert (tmp_path / "ran.txt").read_text().split() == ["a", "a"]


def test_a_failed_step_is_rolled_back_and_always_rerun(tmp_path, capsys):
    a = tiny_notebook(tmp_path / "01_a.ipynb", STEP)
    assert _reproduce([a], tmp_path) == 0
    fig = tmp_path / "figures/smoke/fig.png"
    fig.unlink()
    # the same inputs fail half-way (the data went away) after rewriting the table and drawing a figure
    (tmp_path / "fail").write_text("x")
    assert _reproduce([a], tmp_path, force=True) == 1
    err = capsys.readouterr().err
    assert "cell 5" in err and "the data went away" in err  # params 0, injected 1, STEP from 2 and "rolled back" in err
    assert (tmp_path / "results/smoke/table.md").read_text() == "final"  # its earlier, finished content
    assert not fig.exists()  # the failed run's new figure does not stand as finished ...
    kept = tmp_path / "runs/smoke/notebooks/01_a.failed-outputs"
    assert [p.read_text() for p in kept.rglob("fig.png")] == ["new figure"]  # ... it is kept aside
    # next time, without --force, the step runs again (its record is gone), and succeeds
    (tmp_path / "fail").unlink()
    assert _reproduce([a], tmp_path) == 0
    assert (tmp_path / "ran.txt").read_text().split() == ["a", "a", "a"]
    assert fig.read_text() == "new figure"


@pytest.mark.slow
def test_a_killed_step_is_rolled_back_at_the_next_start(tmp_path):
    kill = ("import os, signal\nfrom pathlib import Path\nif not Path('killed').exists():\n"
            "    Path('killed').write_text('x')\n    os.kill(os.getppid(), signal.SIGKILL)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)")
    a = tiny_notebook(tmp_path / "01_a.ipynb", STEP[:3] + [kill] + STEP[4:])
    script = (f"from contextclip.pipeline import reproduce\nraise SystemExit(reproduce('smoke', notebooks={[str(a)]!r},"
              f" root={str(tmp_path)!r}, progress_bar=False, cell_timeout=120))")
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == -9, res.stderr[-2000:]
    assert (tmp_path / "results/smoke/table.md").read_text() == "partial"  # half-written, pipeline dead
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "01_a was interrupted last time" in res.stdout and "rolled back" in res.stdout
    assert (tmp_path / "results/smoke/table.md").read_text() == "final"
    assert (tmp_path / "ran.txt").read_text().split() == ["a", "a"]


def test_a_dead_kernel_names_the_cell(tmp_path, capsys):
    a = tiny_notebook(tmp_path / "01_a.ipynb", ["x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"])
    assert _reproduce([a], tmp_path) == 1
    err = capsys.readouterr().err
    assert "notebook 01_a failed at cell 3 starting `import os, signal`" in err, err
    assert "the kernel died" in err


# ============================================================================ rows name their run
def _rows(run: str, value: float, method="clip", seed=0) -> list[dict]:
    return [dict(method=method, seed=seed, task="zero_shot", dataset="digits", metric="top1", value=value, n=10,
                 run=run, checkpoint="abc")]


def test_another_run_adds_rows_and_never_replaces_the_pipelines(tmp_path):
    from contextclip.results import append_metrics, build_tables, read_metrics

    csv = tmp_path / "metrics.csv"
    append_metrics(csv, _rows("runs/smoke/clip-seed0", 50.0) + _rows("runs/smoke/contextclip-seed0", 60.0,
                                                                      "contextclip"))
    append_metrics(csv, _rows("runs/other", 10.0))  # evaluate --run runs/other: same method and seed
    df = read_metrics(csv)
    assert sorted(df["run"]) == ["runs/other", "runs/smoke/clip-seed0", "runs/smoke/contextclip-seed0"]
    append_metrics(csv, _rows("runs/smoke/clip-seed0", 55.0))  # re-evaluating a run replaces its own rows
    df = read_metrics(csv)
    assert len(df) == 3 and df.loc[df.run == "runs/smoke/clip-seed0", "value"].tolist() == [55.0]
    tables = build_tables(tmp_path, "smoke", bootstrap_samples=20)
    row = tables["table1_zero_shot"].iloc[0]
    assert row["clip_mean"] == 55.0 and row["contextclip_mean"] == 60.0  # runs/other is not in the table
    md = (tmp_path / "table1_zero_shot.md").read_text()
    assert "Runs summarised: `runs/smoke/clip-seed0`, `runs/smoke/contextclip-seed0`" in md


def test_old_metrics_files_without_run_columns_are_read_and_replaced(tmp_path):
    from contextclip.results import append_metrics, read_metrics

    csv = tmp_path / "metrics.csv"
    csv.write_text("method,seed,task,dataset,metric,value,n\nclip,0,zero_shot,digits,top1,40,10\n")
    assert read_metrics(csv)["run"].tolist() == [""]
    append_metrics(csv, _rows("runs/smoke/clip-seed0", 45.0))
    df = read_metrics(csv)
    assert df["value"].tolist() == [45.0] and df["run"].tolist() == ["runs/smoke/clip-seed0"]


def test_two_runs_with_the_layout_name_in_one_table_is_an_error_naming_both(tmp_path):
    from contextclip.results import append_metrics, build_tables

    append_metrics(tmp_path / "metrics.csv", _rows("/a/clip-seed0", 1.0) + _rows("/b/clip-seed0", 2.0))
    with pytest.raises(ValueError, match="/a/clip-seed0, /b/clip-seed0.*--results"):
        build_tables(tmp_path)


def test_evaluate_writes_the_run_and_its_checkpoint_and_keeps_per_item_files_apart(tmp_path):
    from eval_fakes import ClassSet, PerfectEncoder

    from contextclip.evaluate import checkpoint_fingerprint, evaluate_run
    from contextclip.results import read_metrics
    from contextclip.runs import checkpoint_record

    ds = ClassSet.make(n_per_class=5, n_classes=4)
    results = tmp_path / "results"
    runs = []
    for folder in ("clip-seed0", "other"):
        run = tmp_path / folder
        run.mkdir()
        cfg = Config().updated({"ft_epochs": 1, "batch_size": 16})
        save_config(cfg, run / "config.json")
        (run / "checkpoint.pt").write_bytes(f"weights of {folder}".encode())
        (run / "summary.json").write_text(json.dumps(  # a finished run records the checkpoint it reports on
            {"method": "clip", "seed": 0, "checkpoint": checkpoint_record(run / "checkpoint.pt")}))
        evaluate_run(run, "zero_shot", "fake", results, cfg, model=PerfectEncoder(ds.classnames), data=ds)
        runs.append(run)
    df = read_metrics(results / "metrics.csv")
    assert set(df["run"]) == {str(r.resolve()) for r in runs}
    assert set(df["checkpoint"]) == {checkpoint_fingerprint(r)[:12] for r in runs}
    names = sorted(p.name for p in (results / "per_item").iterdir())
    assert names[0] == "clip-seed0" and names[1].startswith("clip-seed0@other-") and len(names) == 2


# ============================================================================ config
FLOAT_KNOBS = sorted(k for k, s in KNOB_SECTION.items() if _field_types(SECTIONS[s])[k] is float)


@pytest.mark.parametrize("knob", FLOAT_KNOBS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_knob_refuses_non_finite_values(knob, value):
    with pytest.raises(ConfigError, match=rf"'{knob}'.*(finite|out of range)"):
        Config().updated({knob: value})


@pytest.mark.parametrize("text", ["lr_image=.inf", "temperature=.inf", "alpha=.nan", "bandwidth=-.inf"])
def test_non_finite_values_from_the_command_line_are_refused(text):
    with pytest.raises(ConfigError, match="finite"):
        load_config("smoke", [text])


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    assert load_config("smoke", ["lr_image=1e-4"]).train.lr_image == 1e-4
    y = tmp_path / "p.yaml"
    y.write_text("base: smoke\ntrain:\n  lr_text: 3E-5\n  lr_head: +2e-3\nloss:\n  cx_eps: 1e-7\n")
    cfg = load_config(y)
    assert (cfg.train.lr_text, cfg.train.lr_head, cfg.loss.cx_eps) == (3e-5, 2e-3, 1e-7)
    assert parse_override("x=1e") == ("x", "1e")  # not a number: stays text (and is then refused by type)


@pytest.mark.parametrize("seeds", [[-1], [2**32], ["0"], [True], [0.5]])
def test_seeds_out_of_range_or_of_the_wrong_type_are_refused(seeds):
    with pytest.raises(ConfigError, match="seed"):
        Config().updated({"seeds": seeds})


def test_a_negative_seed_on_the_command_line_is_exit_2_and_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    res = _cli("train", "--profile", "smoke", "--method", "clip", "--seed", "-1", "--out", str(out))
    assert "--seed -1 is not a valid seed" in _one_or_two_lines(res)
    assert not out.exists()


def test_base_cycles_and_deep_chains_are_refused_in_milliseconds(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    (tmp_path / "self.yaml").write_text(f"base: {tmp_path / 'self.yaml'}\n")
    for name in ("a", "self"):
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="cycle"):
            load_config(tmp_path / f"{name}.yaml")
        assert time.perf_counter() - t0 < 0.5
    for i in range(12):
        base = "smoke" if i == 0 else str(tmp_path / f"d{i - 1}.yaml")
        (tmp_path / f"d{i}.yaml").write_text(f"base: {base}\n")
    with pytest.raises(ConfigError, match="nest more than"):
        load_config(tmp_path / "d11.yaml")
    (tmp_path / "l.yaml").write_text("base: [smoke]\n")
    with pytest.raises(ConfigError, match="'base' must be a profile name"):
        load_config(tmp_path / "l.yaml")


BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def test_an_alias_bomb_in_a_list_knob_is_refused_in_milliseconds(tmp_path):
    y = tmp_path / "bomb.yaml"
    y.write_text("base: smoke\n" + BOMB.replace("i: &i", "train:\n  seeds: &i"))
    assert y.stat().st_size < 1200
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases.*expand"):
        load_config(y)
    assert time.perf_counter() - t0 < 0.5
    flow = "[" + ", ".join(["*x"] * 50) + "]"
    with pytest.raises(ConfigError):  # an alias on the command line has no anchor: refused as bad YAML
        load_config("smoke", [f"seeds={flow}"])


def test_a_self_referencing_list_and_a_huge_list_are_refused(tmp_path):
    y = tmp_path / "loop.yaml"
    y.write_text("base: smoke\ntrain:\n  seeds: &s [0, *s]\n")
    with pytest.raises(ConfigError, match="seed"):
        load_config(y)
    with pytest.raises(ConfigError, match="at most 1000"):
        Config().updated({"seeds": list(range(5000))})
    with pytest.raises(ConfigError, match="names"):
        Config().updated({"zero_shot_datasets": [["digits"]]})


def test_a_yaml_file_that_is_not_utf8_is_named(tmp_path):
    y = tmp_path / "latin.yaml"
    y.write_bytes("base: smoke\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(y)


# ============================================================================ images and manifests
def test_a_long_thin_image_under_the_pixel_cap_is_refused_from_its_header(tmp_path):
    from contextclip.data.images import ImageProblem, decode_image

    # sides beyond 16,384 px; a 16-bit grey 9,000 x 9,000 (81 M pixels, under the 89 M cap) that would
    # take ~900 MB on its way to RGB
    for w, h, depth in ((16, 5_000_000, 8), (20_000, 20, 8), (9_000, 9_000, 16)):
        t0 = time.perf_counter()
        with pytest.raises(ImageProblem) as err:
            decode_image(png_declaring(w, h, depth))
        assert err.value.kind == "decompression bomb" and time.perf_counter() - t0 < 1.0, err.value
    assert decode_image(png_declaring(16, 16)).size == (16, 16)  # the header trick itself is a valid PNG


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_float_image_with_one_non_finite_pixel_is_a_named_bad_row(tmp_path, bad):
    from contextclip.data.checks import check_manifest

    arr = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    arr[3, 5] = bad
    Image.fromarray(arr, "F").save(tmp_path / "f.tif")
    Image.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32), "F").save(tmp_path / "ok.tif")
    (tmp_path / "m.csv").write_text("image,caption\nf.tif,a float image\nok.tif,a fine float image\n")
    rep = check_manifest(tmp_path / "m.csv")
    assert [(p.line, p.kind) for p in rep.problems] == [(2, "non-finite pixels")]
    assert "x=5, y=3" in rep.problems[0].reason and len(rep.good) == 1


def _good_png(folder: Path, name: str) -> None:
    Image.new("RGB", (20, 20), (10, 20, 30)).save(folder / name)


@pytest.mark.slow
def test_an_unclosed_quote_is_named_with_its_line_in_data_check_and_training(tmp_path):
    for n in "abc":
        _good_png(tmp_path, f"{n}.png")
    m = tmp_path / "m.csv"
    m.write_text('image,caption\na.png,fine\nb.png,"never closed\nc.png,swallowed\n')
    res = _cli("data", "check", str(m))
    assert "line 3: a quote" in _one_or_two_lines(res)
    res = _cli("train", "--profile", "smoke", "--method", "clip", "--out", str(tmp_path / "run"),
               "--set", "train_data=manifest", "--set", f"manifest={m}")
    assert "line 3: a quote" in _one_or_two_lines(res)
    # quotes that do close (a doubled quote, a caption over two lines) are fine
    m.write_text('image,caption\na.png,"he said ""hi"""\nb.png,"two\nlines"\n')
    from contextclip.data.checks import check_manifest

    assert len(check_manifest(m).good) == 2


def test_a_header_only_manifest_is_an_error(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("image,caption\n\n")
    res = _cli("data", "check", str(m))
    assert "has a header but no rows" in _one_or_two_lines(res)


def test_oversized_fields_are_named_rows_and_the_rest_is_used(tmp_path):
    from contextclip.data.checks import check_manifest

    for n in "ab":
        _good_png(tmp_path, f"{n}.png")
    m = tmp_path / "m.csv"
    m.write_text(f"image,caption\na.png,{'x' * 200_000}\nb.png,fine\n{'p' * 300_000}.png,y\n")
    rep = check_manifest(m)
    assert [(p.line, p.kind) for p in rep.problems] == [(2, "oversized field"), (4, "oversized field")]
    assert "200,000 characters" in rep.problems[0].reason and len(rep.good) == 1


# ============================================================================ files that lie
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One finished smoke run (1 epoch, 96 pairs) and its data root, trained once for this module."""
    root = tmp_path_factory.mktemp("trained")
    run, data = root / "clip-seed0", root / "data"
    res = _cli("train", "--profile", "smoke", "--method", "clip", "--out", str(run), "--no-progress",
               *sum((["--set", s] for s in SMALL + [f"data_root={data}"]), []))
    assert res.returncode == 0, res.stderr[-2000:]
    return run, data


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _train_again(run: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return _cli("train", "--profile", "smoke", "--method", "clip", "--out", str(run), "--no-progress", *extra,
                *sum((["--set", s] for s in SMALL + [f"data_root={data}"]), []))


@pytest.mark.slow
def test_a_torch_file_holding_something_else_as_the_checkpoint_is_named(tmp_path, trained):
    run = _copy_run(trained[0], tmp_path / "clip-seed0")
    (run / "summary.json").unlink()
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    for other in (state, torch.zeros(3), [1, 2]):
        torch.save(other, run / "checkpoint.pt")
        err = _one_or_two_lines(_train_again(run, trained[1]))
        assert f"checkpoint {run / 'checkpoint.pt'} is a torch file but not a ContextCLIP" in err and "--fresh" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["summary.json", "config.json"])
@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe\x00"])
def test_garbage_summary_or_config_json_is_named(tmp_path, trained, name, content):
    from contextclip.evaluate import evaluate_run

    run = _copy_run(trained[0], tmp_path / "clip-seed0")
    (run / name).write_bytes(content)
    with pytest.raises(ConfigError, match=rf"{name}.*damaged"):
        evaluate_run(run, "zero_shot", "digits", tmp_path / "results")


@pytest.mark.slow
def test_garbage_summary_json_through_the_cli_is_one_line(tmp_path, trained):
    run = _copy_run(trained[0], tmp_path / "clip-seed0")
    (run / "summary.json").write_text("{garbage")
    err = _one_or_two_lines(_train_again(run, trained[1]))
    assert "summary.json is not valid JSON" in err and "delete it" in err


def test_a_truncated_embeddings_cache_is_recomputed(tmp_path):
    from eval_fakes import PerfectEncoder, fake_run_with_cache

    from contextclip.evaluate import cache_path, embed_dataset, load_embeddings

    run, cfg, ds, model, first = fake_run_with_cache(tmp_path)
    path = cache_path(run, "fake")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ConfigError, match="embedding cache .* is damaged"):
        load_embeddings(run, "fake")
    enc = PerfectEncoder(ds.classnames)
    again = embed_dataset(run, "fake", cfg, model=enc, dataset=ds)
    assert enc.image_calls > 0 and torch.equal(first["image"], again["image"])
    assert torch.equal(load_embeddings(run, "fake")["image"], first["image"])  # rewritten whole


def test_a_garbage_metrics_csv_is_named(tmp_path):
    from contextclip.results import read_metrics

    p = tmp_path / "metrics.csv"
    p.write_bytes(b"\x00\x01\x02garbage\n\xff")
    with pytest.raises(ValueError, match="metrics.csv"):
        read_metrics(p)


# ============================================================================ disks that fail
def _mount_tmpfs(where: Path, *options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                         capture_output=True)
    return res.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "size=8m"):
        pytest.skip("mounting a tmpfs is not allowed here")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "ro", "size=1m"):
        pytest.skip("mounting a tmpfs is not allowed here")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_write_names_the_file_and_leaves_no_tmp(tmp_path, small_disk, trained):
    run = small_disk / "run"
    err = _one_or_two_lines(_train_again(run, trained[1]))
    assert f"cannot write {run / 'checkpoint.pt'}: No space left on device" in err and "free some space" in err
    assert not list(run.glob("*.tmp")) and "enforce fail" not in err


@pytest.mark.slow
def test_a_read_only_folder_is_named_for_train_and_evaluate(read_only_disk, trained):
    err = _one_or_two_lines(_train_again(read_only_disk / "run", trained[1]))
    assert str(read_only_disk / "run") in err and "Read-only file system" in err
    err = _one_or_two_lines(_cli("evaluate", "--run", str(trained[0]), "--task", "zero_shot", "--dataset",
                                 "shapes10", "--results", str(read_only_disk / "results")))
    assert "Read-only file system" in err


# ============================================================================ no traceback for a user's mistake
@pytest.mark.slow
def test_user_mistakes_are_one_or_two_lines_with_exit_code_2(tmp_path, trained):
    run, data = trained
    unfinished = _copy_run(run, tmp_path / "clip-seed1")
    ck = torch.load(unfinished / "checkpoint.pt", weights_only=True)
    ck["epoch"], ck["seed"] = 0, 1  # a run of seed 1 stopped after its first checkpoint: no summary yet
    torch.save(ck, unfinished / "checkpoint.pt")
    (unfinished / "summary.json").unlink()
    cases = {
        "missing manifest": (["train", "--profile", "smoke", "--method", "clip", "--out", str(tmp_path / "r1"),
                              "--set", "train_data=manifest", "--set", f"manifest={tmp_path / 'nope.csv'}"],
                             "nope.csv does not exist"),
        "no such run": (["evaluate", "--run", str(tmp_path / "nope"), "--task", "zero_shot", "--dataset", "digits"],
                        "config.json does not exist"),
        "unfinished run": (["evaluate", "--run", str(unfinished), "--task", "zero_shot", "--dataset", "digits",
                            "--results", str(tmp_path / "res")], "is not finished"),
        "missing dataset": (["evaluate", "--run", str(run), "--task", "zero_shot", "--dataset", "cifar10",
                             "--results", str(tmp_path / "res")], "data prepare cifar10"),
        "cuda without a GPU": (["train", "--profile", "smoke", "--method", "clip", "--out", str(tmp_path / "r2"),
                                "--set", "device=cuda"], "device 'cuda'"),
        "wrong task for the set": (["evaluate", "--run", str(run), "--task", "retrieval", "--dataset", "digits",
                                    "--results", str(tmp_path / "res")], "needs a caption set"),
        "profile missing": (["reproduce", "--profile", "nope"], "unknown profile"),
        "wrong image_weights path": (["train", "--profile", "smoke", "--method", "clip", "--out", str(tmp_path / "r3"),
                                      "--set", f"image_weights={tmp_path / 'no-weights.pt'}"], "no such file"),
        "damaged metrics.csv": (["evaluate", "--run", str(run), "--task", "zero_shot", "--dataset", "digits",
                                 "--results", str(tmp_path / "damaged")], "missing column(s)"),
        "unknown dataset": (["evaluate", "--run", str(run), "--task", "zero_shot", "--dataset", "cifar11",
                             "--results", str(tmp_path / "res")], "unknown dataset 'cifar11'; known datasets"),
    }
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "metrics.csv").write_text("not,the,columns\n1,2,3\n")
    one_line = {"wrong image_weights path", "damaged metrics.csv", "unknown dataset"}
    if torch.cuda.is_available():
        del cases["cuda without a GPU"]
    env_root = {"missing dataset": True}
    for name, (args, expect) in cases.items():
        if name in env_root:  # point the run at an empty data root through its config
            cfg = json.loads((run / "config.json").read_text())
            cfg["data"]["data_root"] = str(tmp_path / "empty")
            moved = _copy_run(run, tmp_path / "moved" / "clip-seed0")
            (moved / "config.json").write_text(json.dumps(cfg))
            args = [str(moved) if a == str(run) else a for a in args]
        err = _one_or_two_lines(_cli(*args))
        assert expect in err, (name, err)
        assert name not in one_line or len(err.splitlines()) == 1, (name, err)


def test_a_nan_stop_and_a_busy_folder_are_user_errors_and_a_bug_is_not():
    from contextclip.errors import UserError, user_error
    from contextclip.lock import FolderBusyError
    from contextclip.train import NonFiniteLossError

    assert str(user_error(NonFiniteLossError("loss is NaN at epoch 1, step 3"))).startswith("loss is NaN")
    assert str(user_error(FolderBusyError("run folder x is in use"))).startswith("run folder")
    path_error = user_error(FileNotFoundError(2, "No such file or directory", "/x/y.csv"))
    assert isinstance(path_error, UserError) and str(path_error).startswith("cannot use /x/y.csv")
    assert user_error(KeyError("config")) is None and user_error(ZeroDivisionError()) is None
    assert user_error(OSError(5, "Input/output error")) is None  # a failing disk is not the user's to fix


def test_every_error_class_a_user_can_cause_is_a_user_error():
    """The CLI catches ``UserError`` only: each error type the kit raises for a user's mistake derives from it."""
    import importlib
    import pkgutil

    import contextclip
    from contextclip import errors

    in_errors = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert len(in_errors) >= 18 and all(issubclass(e, errors.UserError) for e in in_errors)
    elsewhere = set()  # exception classes defined outside errors.py: only the test-only fail point and a warning
    for info in pkgutil.walk_packages(contextclip.__path__, "contextclip."):
        if info.name == "contextclip.errors":
            continue
        module = importlib.import_module(info.name)
        elsewhere |= {f"{info.name}.{k}" for k, v in vars(module).items()
                      if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == info.name}
    assert elsewhere == {"contextclip.failpoints.FailPointError", "contextclip.data.collate.CaptionTruncatedWarning"}
    for cli in ("cli.py", "data/cli.py"):
        source = (REPO_ROOT / "contextclip" / cli).read_text(encoding="utf-8")
        caught = set(re.findall(r"\bexcept\s*\(?\s*(\w+)", source))
        assert caught <= {"KeyboardInterrupt", "UserError"}, (cli, caught)


def test_a_learning_rate_that_would_overflow_adam_is_refused():
    with pytest.raises(ConfigError, match="'lr_image'.*<= 10"):
        load_config("smoke", ["lr_image=1e38"])


def test_debug_shows_the_traceback_and_a_kit_bug_keeps_it(tmp_path, fail_at):
    from contextclip import cli
    from contextclip.failpoints import FailPointError

    res = _cli("--debug", "train", "--profile", "smoke", "--method", "clip", "--seed", "-1", "--out",
               str(tmp_path / "r"))
    assert res.returncode == 1 and "Traceback" in res.stderr and "ConfigError" in res.stderr
    fail_at("write:config.json#1")  # an error that is not a UserError stands for a bug in the kit
    with pytest.raises(FailPointError):
        cli.main(["train", "--method", "clip", "--out", str(tmp_path / "r"), "--no-progress",
                  "--set", f"data_root={tmp_path / 'data'}", "--set", "n_pairs=40", "--set", "batch_size=8"])
