"""The training loop: overfitting, determinism, exact resume, refusals, NaN stop, feature cache, CLI.

CPU only, offline, seeded; torch limited to 2 threads. Runs use the tiny smoke towers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_fakes import SquaresPairs, checkpoint_state, poisoned_loss, smoke_cfg

from contextclip.config import REPO_ROOT, load_config
from contextclip.data import PairCollator
from contextclip.failpoints import FailPointError
from contextclip.train import FrozenFeatureCache, NonFiniteLossError, RunMismatchError, fit, load_trained

_cfg = smoke_cfg
_state = checkpoint_state


def _history(run_dir):
    drop = ("time", "epoch_seconds")
    lines = (Path(run_dir) / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(s).items() if k not in drop} for s in lines]


def _retrieval_r1(model, ds):
    with torch.no_grad():
        imgs = torch.stack([ds[i][0] for i in range(len(ds))])
        sim = model.encode_image(imgs) @ model.encode_text(**model.tokenize(ds.captions)).T
    target = torch.arange(len(ds))
    return 100 * (sim.argmax(1) == target).float().mean().item(), 100 * (sim.argmax(0) == target).float().mean().item()


# ----------------------------------------------------------------------------- learning
def test_overfit_64_pairs(tmp_path):
    ds = SquaresPairs(64)
    cfg = _cfg(epochs=15, batch_size=32, log_every=100)
    summary = fit(cfg, "contextclip", 0, tmp_path / "run", train_ds=ds, val_ds=SquaresPairs(16, offset=64),
                  progress=False)
    epochs = [h for h in _history(tmp_path / "run") if h["type"] == "epoch"]
    assert len(epochs) == 15 and summary["epochs"] == 15 and summary["n_train"] == 64
    assert epochs[-1]["train_loss"] <= 0.5 * epochs[0]["train_loss"]
    model, _ = load_trained(tmp_path / "run")
    assert not model.training
    i2t, t2i = _retrieval_r1(model, ds)
    assert i2t >= 90 and t2i >= 90, (i2t, t2i)
    assert ds.epochs_seen == list(range(15))  # set_epoch called at each epoch start


# ----------------------------------------------------------------------------- determinism and resume
def _resume_cfg(tmp_path_factory):
    # the data module's generated corpus with augmentation (seeded by seed, epoch, index), the MLP
    # head (dropout draws from the torch RNG), AdamW and a cosine schedule: every piece of state matters
    root = tmp_path_factory.getbasetemp() / "data"
    # and a weight average (ema_decay), which a resume must continue exactly too
    return _cfg(n_pairs=80, val_fraction=0.2, batch_size=16, epochs=3, checkpoint_every=2, head="mlp",
                optimizer="adamw", scheduler="cosine", ema_decay=0.8, data_root=str(root))


def _averages(run_dir):
    return torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)["ema"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    cfg = _resume_cfg(tmp_path_factory)
    out = tmp_path_factory.mktemp("baseline")
    return cfg, out, fit(cfg, "contextclip", 3, out, progress=False)


def test_same_seed_gives_identical_weights(baseline, tmp_path):
    cfg, out, summary = baseline
    again = fit(cfg, "contextclip", 3, tmp_path / "again", progress=False)
    a, b = _state(out), _state(tmp_path / "again")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again["final_val_loss"] == summary["final_val_loss"]
    other = fit(cfg.updated({"epochs": 1}), "contextclip", 4, tmp_path / "other", progress=False)
    assert other["seed"] == 4 and not torch.equal(_state(tmp_path / "other")["image_head.proj.weight"],
                                                   a["image_head.proj.weight"])


def test_kill_mid_epoch_and_resume_ends_exactly_like_an_uninterrupted_run(baseline, tmp_path, fail_at):
    cfg, out, summary = baseline
    run = tmp_path / "resumed"
    fail_at("step#7")  # epoch 2 (4 steps an epoch), step 3: one step after the mid-epoch checkpoint at step 2
    with pytest.raises(FailPointError):
        fit(cfg, "contextclip", 3, run, progress=False)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    assert not (run / "summary.json").exists()
    fail_at.disarm()
    resumed = fit(cfg, "contextclip", 3, run, progress=False)
    a, b = _state(out), _state(run)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    ea, eb = _averages(out), _averages(run)
    assert ea["updates"] == eb["updates"] == 12
    assert all(torch.equal(ea["shadow"][k], eb["shadow"][k]) for k in ea["shadow"])
    assert resumed["final_val_loss"] == summary["final_val_loss"]
    assert _history(run) == _history(out)  # the lines logged after the checkpoint were not duplicated
    # a finished run is not retrained
    t0 = time.perf_counter()
    again = fit(cfg, "contextclip", 3, run, progress=False)
    assert again == json.loads((run / "summary.json").read_text()) and time.perf_counter() - t0 < 5


def test_summary_and_run_folder(baseline):
    cfg, out, s = baseline
    for name in ("config.json", "environment.json", "history.jsonl", "checkpoint.pt", "summary.json"):
        assert (out / name).exists(), name
    for key in ("final_val_loss", "epochs", "seconds", "pairs_per_second", "method", "seed", "n_train", "n_val",
                "per_device_batch", "global_batch", "device", "torch"):
        assert key in s, key
    assert (s["n_train"], s["n_val"], s["global_batch"], s["per_device_batch"]) == (64, 16, 16, 16)
    assert s["steps"] == 3 * 4
    env = json.loads((out / "environment.json").read_text())
    assert {"python", "torch", "transformers", "hostname", "git_commit", "device"} <= set(env)
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["batch_size"] == 16 and saved["loss"]["alpha"] == 0.5
    hist = _history(out)
    assert [h["epoch"] for h in hist if h["type"] == "epoch"] == [1, 2, 3]
    assert all(h["lr_heads"] >= 0 for h in hist)
    assert hist[-1]["lr_heads"] < 1e-4  # cosine schedule ends near 0


def test_load_trained_gives_the_weight_average_and_on_request_the_trained_weights(baseline):
    cfg, out, summary = baseline
    averaged, _ = load_trained(out)
    trained, _ = load_trained(out, averaged=False)
    ema, raw = _averages(out)["shadow"], _state(out)
    name = "image_head.net.0.weight" if "image_head.net.0.weight" in ema else next(k for k in ema if "head" in k)
    assert torch.equal(averaged.state_dict()[name], ema[name])
    assert torch.equal(trained.state_dict()[name], raw[name])
    assert not torch.equal(ema[name], raw[name])  # 12 steps at decay 0.8: the average lags the weights
    # the validation loss of the summary is that of the averaged weights, the ones evaluated
    assert summary["final_val_loss"] == json.loads((out / "summary.json").read_text())["final_val_loss"]


# ----------------------------------------------------------------------------- refusals
def test_a_knob_added_later_counts_as_its_default_in_older_runs():
    """A run folder written before a knob existed has no value for it: it behaved as the knob's
    default, so only a non-default value now makes it another run."""
    from contextclip.runs import config_differences

    cfg = load_config("smoke")
    old = cfg.to_dict()
    del old["model"]["image_width"], old["data"]["digit_fraction"]  # as saved before these knobs
    assert config_differences(old, cfg.to_dict()) == []
    assert config_differences(old, cfg.updated({"image_tower": "resnet10", "image_width": 32}).to_dict()) == [
        "image_tower: 'tiny_cnn' -> 'resnet10'", "image_width: 64 -> 32"]


def test_other_config_is_refused_unless_fresh(tmp_path, fail_at):
    ds, val = SquaresPairs(32), SquaresPairs(8, offset=32)
    cfg = _cfg(epochs=1, batch_size=16)
    fit(cfg, "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    other = cfg.updated({"lr_head": 5e-3})
    with pytest.raises(RunMismatchError, match=r"lr_head: 0\.001 -> 0\.005.*--fresh"):
        fit(other, "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    with pytest.raises(RunMismatchError, match="alpha"):  # the other method is another run
        fit(cfg, "contextclip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    # result-neutral knobs (logging, workers) do not make it another run
    assert fit(cfg.updated({"log_every": 7}), "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    s = fit(other, "clip", 0, tmp_path, fresh=True, train_ds=ds, val_ds=val, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr_head"] == 5e-3 and s["epochs"] == 1
    # a mid-run checkpoint from another config is refused too
    fail_at("step#1")
    with pytest.raises(FailPointError):
        fit(cfg.updated({"checkpoint_every": 1, "epochs": 2}), "clip", 0, tmp_path / "mid", train_ds=ds,
            val_ds=val, progress=False)
    with pytest.raises(RunMismatchError, match="batch_size"):
        fit(cfg.updated({"batch_size": 8, "epochs": 2}), "clip", 0, tmp_path / "mid", train_ds=ds, val_ds=val,
            progress=False)


def test_a_run_of_other_training_numerics_is_refused_not_reused(tmp_path, fail_at):
    """A run saved before the arithmetic changed (no key: version 1) would mix two numerics in a profile."""
    from contextclip import runs as R

    ds, val = SquaresPairs(32), SquaresPairs(8, offset=32)
    cfg = _cfg(epochs=1, batch_size=16)
    s = fit(cfg, "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    assert s[R.NUMERICS_KEY] == R.TRAINING_NUMERICS
    summary = json.loads((tmp_path / "summary.json").read_text())
    del summary[R.NUMERICS_KEY]  # as written before the key existed
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunMismatchError, match=rf"training_numerics: 1 -> {R.TRAINING_NUMERICS}.*--fresh"):
        fit(cfg, "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    # a mid-run checkpoint of the older arithmetic is not resumed either
    fail_at("step#1")
    mid = cfg.updated({"checkpoint_every": 1, "epochs": 2})
    with pytest.raises(FailPointError):
        fit(mid, "clip", 0, tmp_path / "mid", train_ds=ds, val_ds=val, progress=False)
    ckpt = torch.load(tmp_path / "mid" / "checkpoint.pt", weights_only=False)
    assert ckpt.pop(R.NUMERICS_KEY) == R.TRAINING_NUMERICS
    torch.save(ckpt, tmp_path / "mid" / "checkpoint.pt")
    with pytest.raises(RunMismatchError, match="training_numerics: 1 ->"):
        fit(mid, "clip", 0, tmp_path / "mid", train_ds=ds, val_ds=val, progress=False)


def test_non_finite_loss_stops_with_the_step_named(tmp_path):
    cfg = _cfg(epochs=1, batch_size=8, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 3 .*contrastive_loss=nan.*contextual_loss="):
        fit(cfg, "contextclip", 0, tmp_path, train_ds=SquaresPairs(32), val_ds=None, progress=False,
            loss_fn=poisoned_loss(cfg, "contextclip", 3))
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (tmp_path / "summary.json").exists()


# ----------------------------------------------------------------------------- frozen-feature cache
def test_cached_frozen_features_agree_with_live_ones():
    from contextclip.model import build_model

    torch.manual_seed(0)
    model = build_model(_cfg(freeze_text=True, freeze_image=True)).eval()
    ds = SquaresPairs(24)
    text = FrozenFeatureCache.for_captions(model, ds.captions + ds.captions[:5], lambda: torch.autocast("cpu",
                                                                                                       enabled=False))
    assert text.feats.shape[0] == 24  # once per distinct caption
    subset = [ds.captions[i] for i in (3, 17, 0)]  # another batch composition, other padding
    live = model.text_features(**model.tokenize(subset))
    torch.testing.assert_close(text.lookup(subset), live, rtol=0, atol=1e-5)  # tolerance: 1e-5 absolute
    collate = PairCollator(model.tokenizer, 32)
    images = FrozenFeatureCache.for_images(model, ds, collate, _cfg(), lambda: torch.autocast("cpu", enabled=False))
    live_img = model.image_features(torch.stack([ds[i][0] for i in (5, 1)]))
    torch.testing.assert_close(images.lookup([5, 1]), live_img, rtol=0, atol=1e-5)


def test_training_with_the_cache_matches_training_without(tmp_path):
    ds, val = SquaresPairs(32), SquaresPairs(16, offset=32)
    cfg = _cfg(epochs=2, batch_size=16, freeze_text=True, freeze_image=True, augment=False, head="linear",
               data_root=str(tmp_path / "data"))
    with_cache = fit(cfg, "contextclip", 0, tmp_path / "a", train_ds=ds, val_ds=val, progress=False)
    on_disk = list((tmp_path / "data" / "cache" / "text_features").glob("*.pt"))
    assert len(on_disk) == 1  # the caption features are kept for the next run of the profile
    reused = fit(cfg, "contextclip", 0, tmp_path / "a2", train_ds=ds, val_ds=val, progress=False)
    assert reused["final_val_loss"] == with_cache["final_val_loss"]
    assert all(torch.equal(v, _state(tmp_path / "a2")[k]) for k, v in _state(tmp_path / "a").items())
    without = fit(cfg.updated({"cache_frozen_features": False}), "contextclip", 0, tmp_path / "b", train_ds=ds,
                  val_ds=val, progress=False)
    assert with_cache["frozen_feature_cache"] == {"text": True, "image_train": True, "image_val": True}
    assert without["frozen_feature_cache"] == {"text": False, "image_train": False, "image_val": False}
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    assert abs(with_cache["final_val_loss"] - without["final_val_loss"]) < 1e-5
    # with augmentation the training images change every epoch: no image cache for training
    aug = fit(cfg.updated({"augment": True, "epochs": 1}), "contextclip", 0, tmp_path / "c", train_ds=ds,
              val_ds=val, progress=False)
    assert aug["frozen_feature_cache"] == {"text": True, "image_train": False, "image_val": True}


# ----------------------------------------------------------------------------- command line
@pytest.mark.slow  # several seconds: in make test, not in make test-fast
def test_cli_smoke_train_then_second_run_returns_without_training(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "contextclip", "train", "--profile", "smoke", "--method", "contextclip", "--seed",
           "0", "--out", str(tmp_path / "run"), "--no-progress"]
    first = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["method"] == "contextclip" and summary["n_train"] > 0
    assert "final_val_loss=" in first.stdout
    mtime = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    second = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "already trained" in second.stdout  # informational: stdout, not stderr
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == mtime
    bad = subprocess.run(cmd + ["--set", "lr_head=0.5"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 2 and "lr_head" in bad.stderr and "--fresh" in bad.stderr


def test_clip_runs_report_the_held_out_contextual_loss_without_training_on_it(tmp_path):
    """CLIP's val contextual loss is measured (for the curves) but never part of its loss."""
    import json

    from train_fakes import SquaresPairs

    from contextclip.train import fit

    cfg = load_config("smoke", {"epochs": 1, "batch_size": 8, "n_pairs": 48, "val_fraction": 0.25})
    train_ds, val_ds = SquaresPairs(32), SquaresPairs(16, offset=32)
    fit(cfg, "clip", 0, tmp_path / "clip", train_ds=train_ds, val_ds=val_ds, progress=False)
    summary = json.loads((tmp_path / "clip" / "summary.json").read_text())
    assert summary["final_val_contextual_loss"] > 0
    assert summary["final_val_loss"] == summary["final_val_contrastive_loss"]


# ----------------------------------------------------------------------------- weights and data checked
def test_non_finite_weights_are_never_checkpointed_and_the_first_bad_step_is_named(tmp_path):
    """Decoupled weight decay of lr * wd = 1e40 sends the head weights to infinity in step 1 while the
    loss, gradient and embeddings of step 1 are finite: the stop names step 1 and writes no checkpoint.
    (Learning rates are capped at 10, so the weight decay carries the overflow.)"""
    cfg = _cfg(epochs=1, batch_size=8, log_every=100, checkpoint_every=1, optimizer="adamw", lr_head=10.0,
               weight_decay=1e39)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 1 \(global step 1\).*weights finite after the "
                                                 r"update=False.*stopped at step 1"):
        fit(cfg, "contextclip", 0, tmp_path, train_ds=SquaresPairs(32), val_ds=None, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_checkpoint_writer_refuses_non_finite_weights(tmp_path):
    from contextclip.runs import save_checkpoint

    state = {"model": {"w": torch.tensor([1.0, float("inf")]), "n": torch.tensor([3])}, "epoch": 0, "step": 5}
    with pytest.raises(NonFiniteLossError, match=r"1 weight tensor\(s\) are not finite \(w\) at epoch 0 step 5"):
        save_checkpoint(state, tmp_path / "checkpoint.pt")
    assert not list(tmp_path.iterdir())  # neither the checkpoint nor a temporary file


def test_resume_on_other_data_is_refused_naming_what_changed(tmp_path, fail_at):
    cfg = _cfg(epochs=2, batch_size=8, checkpoint_every=2)
    ds, val = SquaresPairs(32), SquaresPairs(8, offset=32)
    fail_at("step#3")
    with pytest.raises(FailPointError):
        fit(cfg, "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)
    fail_at.disarm()
    with pytest.raises(RunMismatchError, match=r"other data.*train pairs: 32 \(digest \w+\) -> 32 \(digest \w+\)"):
        fit(cfg, "clip", 0, tmp_path, train_ds=SquaresPairs(32, offset=8), val_ds=val, progress=False)
    with pytest.raises(RunMismatchError, match=r"val pairs: 8 .* -> 7"):
        fit(cfg, "clip", 0, tmp_path, train_ds=ds, val_ds=SquaresPairs(7, offset=32), progress=False)
    assert fit(cfg, "clip", 0, tmp_path, train_ds=ds, val_ds=val, progress=False)["data"]["n_train"] == 32


def test_resume_after_the_manifest_changed_is_refused(tmp_path, fail_at):
    from PIL import Image

    rows = []
    for i in range(24):
        Image.new("RGB", (20, 20), (10 * i, 255 - 10 * i, 128)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,a square of shade {i}")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("image,caption\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cfg = _cfg(train_data="manifest", manifest=str(manifest), data_root=str(tmp_path), val_fraction=0.25,
               epochs=1, batch_size=6, checkpoint_every=1, image_size=32)
    fail_at("step#2")
    with pytest.raises(FailPointError):
        fit(cfg, "clip", 0, tmp_path / "run", progress=False)
    fail_at.disarm()
    manifest.write_text("image,caption\n" + "\n".join(rows).replace("shade 5", "colour 5") + "\n", encoding="utf-8")
    with pytest.raises(RunMismatchError, match=rf"other data than {manifest}.*--fresh"):
        fit(cfg, "clip", 0, tmp_path / "run", progress=False)
    assert fit(cfg, "clip", 0, tmp_path / "run", fresh=True, progress=False)["steps"] == 3


def test_untrained_run_message_names_the_real_values(tmp_path):
    """`load_trained` on a missing run prints the command with its profile, method and seed."""
    from contextclip.train import load_trained

    run = tmp_path / "runs" / "embedded" / "contextclip-seed2"
    with pytest.raises(FileNotFoundError) as info:
        load_trained(run)
    assert f"--profile embedded --method contextclip --seed 2 --out {run}" in str(info.value)
