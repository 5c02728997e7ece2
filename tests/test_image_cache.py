"""The disk cache of a frozen image tower's features (contextclip/image_cache.py): its key (each part
invalidates it), equality of cached and fresh features, a damaged file recomputed with a message,
two writers, and training plus evaluation sharing one copy."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from train_fakes import SquaresPairs, smoke_cfg

from contextclip import image_cache as IC
from contextclip.model import build_model
from contextclip.train import autocast_factory, fit, load_trained


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(smoke_cfg(freeze_image=True, freeze_text=True, **kw)).eval()


def _images(n: int = 12, seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_cached_features_equal_fresh_ones_and_are_read_back_from_disk(tmp_path):
    model, images = _model(), _images()
    fresh = IC.compute_image_features(model, images, batch_size=5)
    first = IC.cached_image_features(model, images, tmp_path, batch_size=5)
    assert torch.equal(first, fresh)
    files = list((tmp_path / "cache" / "image_features").glob("*.pt"))
    assert len(files) == 1
    IC.clear_memory()
    stamp = files[0].stat().st_mtime_ns
    again = IC.cached_image_features(model, images, tmp_path, batch_size=5)
    assert torch.equal(again, fresh) and files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    # the features match the model's own forward pass on the same images
    assert torch.allclose(model.image_features(images).detach(), fresh, atol=1e-5)


def test_every_part_of_the_key_changes_the_file(tmp_path):
    model, images = _model(), _images()
    base = IC.feature_path(tmp_path, IC.feature_key(model, images))
    other_weights = _model(seed=1)  # another tower
    assert IC.feature_path(tmp_path, IC.feature_key(other_weights, images)) != base
    bf16 = autocast_factory(torch.device("cpu"), "bf16")  # another precision
    assert IC.feature_path(tmp_path, IC.feature_key(model, images, bf16)) != base
    bigger = _model()  # another input size (the same weights)
    bigger.image_size = 48
    assert IC.feature_path(tmp_path, IC.feature_key(bigger, images)) != base
    renorm = _model()  # another preprocessing (normalisation)
    renorm.pixel_std = renorm.pixel_std * 2
    assert IC.feature_path(tmp_path, IC.feature_key(renorm, images)) != base
    changed = images.clone()  # one pixel of one image
    changed[3, 0, 5, 5] ^= 1
    assert IC.feature_path(tmp_path, IC.feature_key(model, changed)) != base
    assert IC.feature_path(tmp_path, IC.feature_key(model, images[:-1])) != base  # the file list
    # a dataset read from files is keyed by what the caller says it depends on (its file-list digest)
    ds = [(img,) for img in images]
    k1 = IC.feature_key(model, ds, images_key={"source": "abc", "eval_max_images": 0})
    k2 = IC.feature_key(model, ds, images_key={"source": "abd", "eval_max_images": 0})
    assert IC.feature_path(tmp_path, k1) != IC.feature_path(tmp_path, k2)
    with pytest.raises(ValueError, match="images_key"):
        IC.feature_key(model, ds)
    # and the same inputs give the same file: the key is deterministic
    assert IC.feature_path(tmp_path, IC.feature_key(_model(), images.clone())) == base


def test_a_trained_tower_is_refused(tmp_path):
    torch.manual_seed(0)
    model = build_model(smoke_cfg(freeze_image=False)).eval()
    with pytest.raises(ValueError, match="frozen image tower"):
        IC.cached_image_features(model, _images(), tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other key", "wrong rows"])
def test_a_damaged_cache_file_is_recomputed_with_a_message(tmp_path, capsys, damage):
    model, images = _model(), _images()
    fresh = IC.cached_image_features(model, images, tmp_path)
    path = IC.feature_path(tmp_path, IC.feature_key(model, images))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "other key":
        saved = torch.load(path, weights_only=True)
        torch.save({"key": {**saved["key"], "tower": "0" * 64}, "feats": saved["feats"]}, path)
    else:
        saved = torch.load(path, weights_only=True)
        torch.save({"key": saved["key"], "feats": saved["feats"][:-2]}, path)
    IC.clear_memory()
    capsys.readouterr()
    again = IC.cached_image_features(model, images, tmp_path)
    err = capsys.readouterr().err
    assert str(path) in err and "recomputing it" in err and len(err.strip().splitlines()) == 1
    assert torch.equal(again, fresh)
    assert torch.equal(torch.load(path, weights_only=True)["feats"], fresh)  # the file was rewritten whole


def _writer(root: str, barrier, out):
    torch.set_num_threads(1)
    model, images = _model(), _images(n=200)
    barrier.wait()  # both compute and write the same file at the same moment
    feats = IC.cached_image_features(model, images, Path(root), batch_size=16)
    out.put(hashlib.sha256(feats.numpy().tobytes()).hexdigest())


@pytest.mark.slow  # several seconds: in make test, not in make test-fast
def test_two_writers_leave_one_whole_file(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    digests = {out.get(timeout=5), out.get(timeout=5)}
    files = list((tmp_path / "cache" / "image_features").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temporary file left behind
    saved = torch.load(files[0], weights_only=True)
    assert len(digests) == 1 and hashlib.sha256(saved["feats"].numpy().tobytes()).hexdigest() in digests


class DigestSquares(SquaresPairs):
    """Coloured squares with a content digest: what lets training key their features on disk."""

    def content_digest(self) -> str:
        return hashlib.sha256(json.dumps([self.items, self.size]).encode()).hexdigest()


def test_training_runs_share_one_copy_and_get_the_same_result(tmp_path):
    cfg = smoke_cfg(epochs=2, batch_size=16, freeze_text=True, freeze_image=True, augment=False,
                    data_root=str(tmp_path / "data"))
    train, val = DigestSquares(48), DigestSquares(16, offset=48)
    a = fit(cfg, "contextclip", 0, tmp_path / "a", train_ds=train, val_ds=val, progress=False)
    files = sorted((tmp_path / "data" / "cache" / "image_features").glob("*.pt"))
    assert len(files) == 2  # the training and the validation images
    stamps = [f.stat().st_mtime_ns for f in files]
    IC.clear_memory()  # as a new process: read from disk
    b = fit(cfg, "contextclip", 0, tmp_path / "b", train_ds=train, val_ds=val, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert a["final_val_loss"] == b["final_val_loss"] and a["frozen_feature_cache"]["image_train"]
    # without the cache (the tower run on every batch), the same run agrees to float rounding
    c = fit(cfg.updated({"cache_frozen_features": False}), "contextclip", 0, tmp_path / "c", train_ds=train,
            val_ds=val, progress=False)
    assert c["final_val_loss"] == pytest.approx(a["final_val_loss"], rel=1e-4)
    model, _ = load_trained(tmp_path / "a")
    assert model.freeze_image


def test_a_checkpoint_leaves_out_frozen_pretrained_towers_and_checks_them_on_load(tmp_path):
    """MiniLM frozen: the same weights in every run, so the checkpoint records their fingerprint
    instead of 90 MB of tensors; loading rebuilds the tower and refuses other weights."""
    from contextclip.runs import RunMismatchError, load_checkpoint

    cfg = smoke_cfg(epochs=1, batch_size=16, freeze_text=True, text_tower="minilm", augment=False)
    train, val = DigestSquares(32), DigestSquares(16, offset=32)
    fit(cfg, "contextclip", 0, tmp_path / "run", train_ds=train, val_ds=val, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert set(ckpt["frozen_towers"]) == {"text_tower"}
    assert not any(k.startswith("text_tower.") for k in ckpt["model"]) and any(k.startswith("image_tower.")
                                                                             for k in ckpt["model"])
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_size < 20e6  # MiniLM alone is about 90 MB
    model, _ = load_trained(tmp_path / "run")
    with torch.no_grad():
        tok = model.tokenize([train[0][1]])
        emb = model.encode_text(tok["input_ids"], tok["attention_mask"])
    assert torch.isfinite(emb).all() and model.freeze_text
    # a run resumed or loaded against other pretrained weights is refused, naming the tower
    ckpt["frozen_towers"]["text_tower"] = "0" * 64
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(RunMismatchError, match="text_tower weights"):
        load_trained(tmp_path / "run")
