"""Reliability drills, bad inputs: the cases the data, config and train tests do not cover.

Each test gives one defined outcome: a clear error naming the thing and what to do, or (only
when ``skip_bad`` asks for it) a counted skip. docs/reliability.md lists every case of the issue
with the test that covers it, here or in the other test files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from hostile_inputs import png, png_declaring
from train_fakes import SquaresPairs

from contextclip.config import REPO_ROOT, ConfigError, load_config
from contextclip.data import build_pair_datasets
from contextclip.data.checks import ManifestError, check_manifest
from contextclip.data.collate import CaptionTruncatedWarning, PairCollator
from contextclip.data.images import decode_image
from contextclip.runs import CheckpointError, load_checkpoint, load_trained
from contextclip.train import fit


# ----------------------------------------------------------------------------- images
def test_one_by_one_image_is_too_small(tmp_path):
    (tmp_path / "dot.png").write_bytes(png((1, 1)))
    with pytest.raises(ValueError, match=r"too small: 1x1 is smaller than 16 pixels"):
        decode_image(tmp_path / "dot.png")


def test_decompression_bomb_is_refused_from_the_header_without_decoding(tmp_path):
    import time

    (tmp_path / "bomb.png").write_bytes(png_declaring(60_000, 60_000))  # 3.6e9 pixels, 65 bytes on disk
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        decode_image(tmp_path / "bomb.png")
    assert info.value.kind == "decompression bomb" and time.perf_counter() - t0 < 2
    # just above the default limit (PIL's warning level, not its 2x hard limit): refused too
    (tmp_path / "big.png").write_bytes(png_declaring(10_000, 9_000))
    with pytest.raises(ValueError, match=r"decompression bomb: .*90000000 pixels"):
        decode_image(tmp_path / "big.png")
    # a lower limit of the caller's is applied from the header, before decoding
    (tmp_path / "mid.png").write_bytes(png_declaring(3_000, 3_000))
    with pytest.raises(ValueError, match=r"decompression bomb: 3000x3000 = 9000000 pixels exceeds the limit 1000000"):
        decode_image(tmp_path / "mid.png", max_pixels=1_000_000)
    assert time.perf_counter() - t0 < 2


def _bad_image_files(d: Path) -> dict[str, str]:
    """One file per bad image kind: name -> the kind data check must report."""
    (d / "empty.png").write_bytes(b"")
    (d / "trunc.png").write_bytes(png((64, 64))[:-40])
    (d / "page.jpg").write_text("<html>404 not found</html>")
    (d / "dot.png").write_bytes(png((1, 1)))
    (d / "bomb.png").write_bytes(png_declaring(60_000, 60_000))
    return {"gone.png": "missing file", "empty.png": "empty file", "trunc.png": "truncated file",
            "page.jpg": "not an image", "dot.png": "too small", "bomb.png": "decompression bomb"}


def test_every_bad_image_kind_fails_fast_or_is_a_counted_skip_never_a_blank(tmp_path):
    bad = _bad_image_files(tmp_path)
    rows = []
    for i in range(12):
        (tmp_path / f"ok{i}.png").write_bytes(png(colour=(20 * i, 100, 0)))
        rows.append(f"ok{i}.png,good image {i}")
    rows[5:5] = [f"{name},bad {kind}" for name, kind in bad.items()]
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("image,caption\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cfg = load_config("smoke", {"train_data": "manifest", "manifest": str(manifest), "data_root": str(tmp_path),
                                "val_fraction": 0.25})
    # default: fail fast, naming the first bad row (line 7 = header + 5 good rows + 1) and the kind
    with pytest.raises(ManifestError, match=r"line 7: gone\.png: missing file"):
        build_pair_datasets(cfg)
    # skip_bad: dropped and counted per kind, and every item left is a real decoded image
    train, val = build_pair_datasets(cfg.updated({"skip_bad": True}))
    assert len(train) + len(val) == 12
    assert train.report["n_bad"] == len(bad)
    assert train.report["bad_by_kind"] == {kind: 1 for kind in bad.values()}
    captions = [train[i][1] for i in range(len(train))] + [val[i][1] for i in range(len(val))]
    assert all(c.startswith("good image") for c in captions)
    assert all(int(val[i][0].max()) > 0 for i in range(len(val)))  # no zero image stands in for a bad one


def test_a_run_on_skipped_rows_records_the_counts_in_the_run_folder(tmp_path):
    for i in range(20):
        (tmp_path / f"ok{i}.png").write_bytes(png(colour=(10 * i, 50, 200 - 5 * i)))
    (tmp_path / "trunc.png").write_bytes(png((64, 64))[:-40])
    rows = [f"ok{i}.png,image number {i}" for i in range(20)] + ["trunc.png,cut short", "gone.png,not there"]
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("image,caption\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cfg = load_config("smoke", {"train_data": "manifest", "manifest": str(manifest), "data_root": str(tmp_path),
                                "skip_bad": True, "epochs": 1, "batch_size": 8, "device": "cpu"})
    fit(cfg, "clip", 0, tmp_path / "run", progress=False)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["n_bad"] == 2 and report["bad_by_kind"] == {"missing file": 1, "truncated file": 1}


# ----------------------------------------------------------------------------- captions
@pytest.fixture(scope="module")
def tokenizer():
    from contextclip.model import build_model

    return build_model(load_config("smoke")).tokenizer


def test_caption_longer_than_the_token_limit_is_truncated_and_said(tokenizer):
    img = torch.zeros(3, 8, 8, dtype=torch.uint8)
    collate = PairCollator(tokenizer, max_length=12)
    long = "a red square on a blue background next to a green circle under a yellow sun at noon"
    fits = "a red square"
    with pytest.warns(CaptionTruncatedWarning, match=r"has \d+ tokens and is truncated to max_length=12.*max_length"):
        batch = collate([(img, long), (img, fits)])
    assert batch["input_ids"].shape[1] == 12 and collate.n_truncated == 1
    assert batch["attention_mask"][1].sum() < 12  # the short one is padded, not cut
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once; later ones are only counted
        collate([(img, long), (img, long + " again")])
        # a caption of exactly max_length tokens is not a truncation
        exact = tokenizer.decode(tokenizer(long)["input_ids"][1:11])
        assert len(tokenizer(exact)["input_ids"]) == 12
        collate([(img, exact)])
    assert collate.n_truncated == 3


def test_empty_and_whitespace_captions_are_named_rows(tmp_path):
    (tmp_path / "good.png").write_bytes(png())
    m = tmp_path / "pairs.csv"
    m.write_text('image,caption\ngood.png,fine\ngood.png,\ngood.png,"\t  "\ngood.png,""\n', encoding="utf-8")
    rep = check_manifest(m)
    assert [(p.line, p.kind) for p in rep.problems] == [(3, "empty caption"), (4, "empty caption"),
                                                         (5, "empty caption")]
    assert len(rep.good) == 1

# ----------------------------------------------------------------------------- manifests
def test_absolute_paths_and_symlinks_out_of_the_folder_are_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(png())
    (data / "good.png").write_bytes(png())
    (data / "link.png").symlink_to(outside)
    m = data / "pairs.csv"
    m.write_text(f"image,caption\ngood.png,fine\n{outside},absolute\nlink.png,a symlink out\n", encoding="utf-8")
    rep = check_manifest(m)
    assert [(p.line, p.kind) for p in rep.problems] == [(3, "path escapes folder"), (4, "path escapes folder")]
    assert "outside the manifest folder" in str(rep.problems[0]) and len(rep.good) == 1


# ----------------------------------------------------------------------------- configs
def test_unknown_key_suggests_the_near_miss():
    with pytest.raises(ConfigError, match=r"unknown key 'bandwith' \(did you mean 'bandwidth'\?\)"):
        load_config("smoke", {"bandwith": 0.3})
    with pytest.raises(ConfigError, match=r"unknown key 'loss\.alpah' \(did you mean 'alpha'\?\)"):
        load_config("smoke", {"loss.alpah": 0.3})


def test_cli_bad_set_is_exit_code_2_naming_the_key(capsys):
    from contextclip.cli import main

    for bad, words in ((["batch_size=1"], ["batch_size", ">= 2"]), (["bandwidth=-1"], ["bandwidth"]),
                       (["epochs=two"], ["epochs", "integer"])):
        argv = ["train", "--method", "clip", "--out", "/nonexistent/never-created"]
        for s in bad:
            argv += ["--set", s]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and all(w in err for w in words), err
    assert not Path("/nonexistent/never-created").exists()


def test_global_batch_larger_than_the_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"'batch_size'.*larger than the 8 training pairs"):
        fit(load_config("smoke", {"batch_size": 16, "device": "cpu"}), "clip", 0, tmp_path,
            train_ds=SquaresPairs(8), val_ds=None, progress=False)


# ----------------------------------------------------------------------------- checkpoints
def _finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished")
    cfg = load_config("smoke", {"epochs": 1, "batch_size": 8, "device": "cpu"})
    fit(cfg, "clip", 0, run, train_ds=SquaresPairs(16), val_ds=SquaresPairs(4, offset=16), progress=False)
    return cfg, run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return _finished_run(tmp_path_factory)


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_checkpoint"])
def test_damaged_checkpoint_names_the_file_and_suggests_fresh(finished, tmp_path, damage):
    cfg, run = finished
    data = (run / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes({"truncated": data[: len(data) // 3], "empty": b"",
                                              "not_a_checkpoint": b"<html>not found</html>"}[damage])
    pattern = re.escape(f"checkpoint {tmp_path / 'checkpoint.pt'} cannot be loaded") + ".*--fresh"
    with pytest.raises(CheckpointError, match=pattern):
        load_trained(tmp_path)
    with pytest.raises(CheckpointError, match=pattern):
        fit(cfg, "clip", 0, tmp_path, train_ds=SquaresPairs(16), val_ds=SquaresPairs(4, offset=16), progress=False)
    # --fresh is the way out it names
    s = fit(cfg, "clip", 0, tmp_path, fresh=True, train_ds=SquaresPairs(16), val_ds=SquaresPairs(4, offset=16),
            progress=False)
    assert s["epochs"] == 1 and load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for any code an attacker would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_untrusted_checkpoint_is_refused_without_running_its_code(finished, tmp_path):
    cfg, run = finished
    good = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    marker = tmp_path / "code-ran"
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    torch.save({**good, "model": {**good["model"], "extra": _Payload(marker)}}, evil_dir / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint .*evil/checkpoint\.pt cannot be loaded \(Unpickling"):
        load_trained(evil_dir)
    with pytest.raises(CheckpointError, match="weights_only"):
        fit(cfg, "clip", 0, evil_dir, train_ds=SquaresPairs(16), val_ds=SquaresPairs(4, offset=16), progress=False)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil_dir / "checkpoint.pt")
    assert not marker.exists(), "the payload ran"
    # the file really is malicious: a full unpickle (what weights_only prevents) runs the payload
    torch.load(evil_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert marker.exists()


def test_the_package_only_loads_safely():
    """Every torch.load passes weights_only=True; no pickle, unsafe YAML or pickled numpy anywhere."""
    calls, offenders = 0, []
    for path in sorted((REPO_ROOT / "contextclip").rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", src):
            calls += 1
            depth, i = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(src[i], 0)
                i += 1
            if "weights_only=True" not in src[m.end():i]:
                offenders.append(f"{path.name}: {src[m.start():i]}")
        for bad in (r"weights_only\s*=\s*False", r"yaml\.load\(", r"yaml\.unsafe_load", r"pickle\.loads?\(",
                    r"read_pickle\(", r"allow_pickle\s*=\s*True", r"Loader\s*=\s*yaml\.(Unsafe|Full)?Loader"):
            offenders += [f"{path.name}: {bad}" for _ in re.finditer(bad, src)]
    assert calls >= 3 and not offenders, offenders
    from PIL import Image as PILImage

    assert PILImage.MAX_IMAGE_PIXELS is not None and PILImage.MAX_IMAGE_PIXELS <= 89_478_485
    assert os.environ.get("CONTEXTCLIP_FAILPOINT") is None  # the crash drill is off in a normal run
