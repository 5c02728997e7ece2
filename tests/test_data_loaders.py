"""Loaders on small fixtures written in the real on-disk formats; registry, assets, pairs, collate."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from contextclip.config import load_config
from contextclip.data import (
    DATASETS,
    CaptionSet,
    ClassificationSet,
    DatasetMissing,
    PairCollator,
    build_pair_datasets,
    check_datasets,
    formats,
    get_dataset,
)
from contextclip.data.sets import ASSETS, subset_indices
from contextclip.errors import DatasetError


def _cfg(root, **kw):
    return load_config("smoke", {"data_root": str(root), "eval_max_images": 0, **kw})


def _jpg(colour=(10, 200, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- assets
def test_templates_and_classnames_counts():
    t = json.loads((ASSETS / "templates.json").read_text())
    c = json.loads((ASSETS / "classnames.json").read_text())
    assert [len(t[k]) for k in ("cifar10", "cifar100", "resisc45", "mnist", "birdsnap")] == [18, 18, 18, 1, 1]
    assert [len(c[k]) for k in ("cifar10", "cifar100", "resisc45")] == [10, 100, 45]
    assert t["mnist"] == ['a photo of the number: "{}".'] and t["birdsnap"] == ["a photo of a {}, a type of bird."]
    assert "aquarium fish" in c["cifar100"] and "sea ice" in c["resisc45"]
    assert not any("_" in n for n in c["cifar100"] + c["resisc45"])
    assert len(set(t["cifar10"])) == 18 and len(set(t["resisc45"])) == 18


# ------------------------------------------------------------------------ CIFAR pickles
def _write_cifar(root, name, n_test=12, n_train=8):
    folder, train_files, test_files, meta, label_key, names_key = formats.CIFAR_LAYOUT[name]
    base = root / folder
    base.mkdir(parents=True)
    n_cls = 10 if name == "cifar10" else 100
    rng = np.random.default_rng(0)
    for files, n in ((train_files, n_train), (test_files, n_test)):
        for f in files:
            d = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), label_key.encode(): list(rng.integers(0, n_cls, n))}
            with open(base / f, "wb") as fh:
                pickle.dump(d, fh)
    names = [f"class_{i}".encode() for i in range(n_cls)]
    with open(base / meta, "wb") as fh:
        pickle.dump({names_key.encode(): names}, fh)
    return base


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles(tmp_path, name):
    cfg = _cfg(tmp_path)
    with pytest.raises(DatasetMissing, match=f"data prepare {name}"):
        get_dataset(name, cfg)
    _write_cifar(tmp_path, name)
    s = get_dataset(name, cfg)
    assert isinstance(s, ClassificationSet) and len(s) == 12 and s.images.shape == (12, 3, 32, 32)
    assert s.images.dtype == torch.uint8 and len(s.classnames) == (10 if name == "cifar10" else 100)
    raw = formats._load_pickle(tmp_path / formats.CIFAR_LAYOUT[name][0] / formats.CIFAR_LAYOUT[name][2][0])
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32)
    assert torch.equal(s.images[0], torch.from_numpy(first))  # channel order kept
    a = get_dataset(name, cfg, split="all")
    n_train = 8 * len(formats.CIFAR_LAYOUT[name][1])
    assert len(a) == n_train + 12 and len(a.splits["train"]) == n_train and a.splits["test"][0] == n_train
    assert torch.equal(a.images[a.splits["test"]], s.images)


def test_cifar_pickle_with_code_is_refused(tmp_path):
    base = _write_cifar(tmp_path, "cifar10")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(base / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": [0]}, fh)
    with pytest.raises(DatasetError, match="test_batch cannot be read as a CIFAR python pickle .*refusing to load "
                       "builtins.print"):
        get_dataset("cifar10", _cfg(tmp_path))


# ------------------------------------------------------------------------------ MNIST
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", 7), ("test", 5)):
        img, lab = formats.MNIST_FILES[split]
        sfx = ".gz" if gz else ""
        formats.write_idx(raw / (img + sfx), rng.integers(0, 255, (n, 28, 28)))
        formats.write_idx(raw / (lab + sfx), np.arange(n) % 10)
    s = get_dataset("mnist", _cfg(tmp_path))
    assert len(s) == 5 and s.labels.tolist() == [0, 1, 2, 3, 4] and s.images.shape == (5, 3, 32, 32)
    assert s.templates == ['a photo of the number: "{}".'] and s.classnames[3] == "3"
    assert len(get_dataset("mnist", _cfg(tmp_path), split="train")) == 7


# ---------------------------------------------------------------- ImageFolder / Birdsnap
def test_resisc45_imagefolder_with_and_without_split(tmp_path):
    base = tmp_path / "resisc45"
    for k, cls in enumerate(["airplane", "sea_ice", "thermal_power_station"]):
        (base / cls).mkdir(parents=True)
        for i in range(3):
            (base / cls / f"{cls}_{i:03d}.jpg").write_bytes(_jpg((80 * k, 50, 50), (256, 256)))
    s = get_dataset("resisc45", _cfg(tmp_path))
    assert len(s) == 9 and s.classnames == ["airplane", "sea ice", "thermal power station"] and s.splits is None
    assert len(s.templates) == 18 and s.images.shape == (9, 3, 32, 32)
    (base / "resisc45-test.txt").write_text("airplane_000.jpg\nsea_ice_001.jpg\n")
    t = get_dataset("resisc45", _cfg(tmp_path), split="all")
    assert len(t.splits["test"]) == 2 and len(t.splits["train"]) == 7 and t.info["official_split"]


def test_birdsnap_species_and_test_split(tmp_path):
    base = tmp_path / "birdsnap"
    (base / "images").mkdir(parents=True)
    rows = [("1", "Allen's Hummingbird", "Selasphorus sasin", "Allens_Hummingbird"),
            ("2", "Black-and-white Warbler", "Mniotilta varia", "Black_and_white_Warbler")]
    (base / "species.txt").write_text("id\tcommon\tscientific\tdir\n" + "\n".join("\t".join(r) for r in rows) + "\n")
    for _, _, _, d in rows:
        (base / "images" / d).mkdir()
        for i in range(2):
            (base / "images" / d / f"{i}.jpg").write_bytes(_jpg())
    (base / "test_images.txt").write_text("path\nAllens_Hummingbird/0.jpg\nBlack_and_white_Warbler/1.jpg\n")
    s = get_dataset("birdsnap", _cfg(tmp_path))
    assert s.classnames == ["Allens Hummingbird", "Black and white Warbler"]
    assert len(s) == 2 and sorted(s.labels.tolist()) == [0, 1]
    assert s.templates == ["a photo of a {}, a type of bird."]


# --------------------------------------------------------------------------- Flickr8k
def _write_flickr(tmp_path, n=6, test=("img0.jpg", "img1.jpg")):
    base = tmp_path / "flickr8k"
    (base / "Images").mkdir(parents=True)
    lines = ["image,caption"]
    for i in range(n):
        (base / "Images" / f"img{i}.jpg").write_bytes(_jpg((30 * i, 0, 0)))
        lines += [f'img{i}.jpg,"caption {k} of image {i}, with a comma"' for k in range(5)]
    (base / "captions.txt").write_text("\n".join(lines) + "\n")
    (base / "Flickr_8k.testImages.txt").write_text("\n".join(test) + "\n")
    (base / "Flickr_8k.trainImages.txt").write_text("\n".join(f"img{i}.jpg" for i in range(2, n)) + "\n")
    return base


def test_flickr8k_captions_and_karpathy_split(tmp_path):
    _write_flickr(tmp_path)
    s = get_dataset("flickr8k", _cfg(tmp_path))
    assert isinstance(s, CaptionSet) and len(s) == 2 and all(len(c) == 5 for c in s.captions)
    assert s.captions[0][0] == "caption 0 of image 0, with a comma"
    tr, va = build_pair_datasets(_cfg(tmp_path, train_data="flickr8k", n_pairs=4, val_fraction=0.25))
    assert len(tr) + len(va) == 4 and len(tr.captions_of(0)) == 5


# ----------------------------------------------------------- img2dataset / CC3M
def test_cc3m_webdataset_shard_subset_and_bad_items(tmp_path):
    (tmp_path / "cc3m").mkdir()
    items = [(f"{i:09d}", _jpg((20 * i, 100, 0)), f"caption number {i}") for i in range(10)]
    items[3] = ("000000003", b"<html>dead link</html>", "broken")
    formats.make_webdataset_shard(tmp_path / "cc3m" / "00000.tar", items[:6])
    formats.make_webdataset_shard(tmp_path / "cc3m" / "00001.tar", items[6:])
    cfg = _cfg(tmp_path, train_data="cc3m", n_pairs=10, val_fraction=0.2)
    with pytest.raises(ValueError, match="not an image.*000000003"):
        build_pair_datasets(cfg)
    cfg = cfg.updated({"skip_bad": True, "n_pairs": 6})
    tr, va = build_pair_datasets(cfg)
    tr2, _ = build_pair_datasets(cfg)
    assert len(tr) + len(va) == 6 and tr.report["n_found"] == 10
    assert [tr.captions_of(k) for k in range(len(tr))] == [tr2.captions_of(k) for k in range(len(tr2))]
    img, cap = va[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8 and cap.startswith("caption number")
    s = get_dataset("cc3m", _cfg(tmp_path, eval_max_images=4))
    assert len(s) == 4 and s.n_found == 10


def test_cc3m_files_layout(tmp_path):
    d = tmp_path / "cc3m" / "00000"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i:09d}.jpg").write_bytes(_jpg())
        (d / f"{i:09d}.txt").write_text(f"a caption {i}")
    tr, va = build_pair_datasets(_cfg(tmp_path, train_data="cc3m", n_pairs=3, val_fraction=0.0))
    assert len(tr) == 3 and len(va) == 0


# ----------------------------------------------------------------- embedded + registry
def test_embedded_sets_and_eval_cap(tmp_path):
    cfg = _cfg(tmp_path, eval_max_images=50)
    found = {"mnist_real": 5000, "mnist_val": 1000, "mnist_test": 4000, "digits": 1797, "shapes10": 1000,
             "colour_shapes": 1200, "novel_shapes": 600}
    for name in found:
        s = get_dataset(name, cfg)
        assert len(s) == 50 and s.images.shape == (50, 3, 32, 32) and s.images.dtype == torch.uint8
        assert s.n_found == found[name]
        assert s.templates and all("{}" in t for t in s.templates)
    assert len(get_dataset("colour_shapes", cfg).classnames) == 80
    c = get_dataset("synthetic_captions", cfg)
    assert len(c) == 50 and all(len(x) == 5 for x in c.captions)
    assert np.array_equal(subset_indices(1000, 50), subset_indices(1000, 50))
    m = get_dataset("mnist_real", cfg)
    assert torch.equal(m.images, get_dataset("mnist_real", cfg).images)  # same subset, cached arrays


def test_registry_names_and_missing_check(tmp_path):
    assert {"synthetic", "synthetic_captions", "mnist_real", "digits", "shapes10", "colour_shapes", "cifar10",
            "cifar100", "mnist", "resisc45", "birdsnap", "flickr8k", "cc3m"} <= set(DATASETS)
    paper = load_config("paper", {"data_root": str(tmp_path)})
    missing = check_datasets(paper)
    assert set(missing) == {"cc3m", "cifar10", "cifar100", "resisc45", "birdsnap", "mnist", "flickr8k"}
    assert check_datasets(load_config("embedded", {"data_root": str(tmp_path)})) == []
    _write_cifar(tmp_path, "cifar10")
    assert "cifar10" not in check_datasets(paper)
    with pytest.raises(DatasetMissing) as e:
        get_dataset("resisc45", paper)
    assert "python -m contextclip data prepare resisc45" in str(e.value)
    with pytest.raises(KeyError, match="known datasets"):
        get_dataset("imagenet", paper)


# ------------------------------------------------------------------ pairs + collate
def test_synthetic_pairs_are_exact_on_resume_and_val_is_plain(tmp_path):
    cfg = _cfg(tmp_path, n_pairs=60, val_fraction=0.2)
    tr, va = build_pair_datasets(cfg, seed=4)
    assert (len(tr), len(va)) == (48, 12) and tr.seed == 4
    tr.set_epoch(2)
    a = [tr[k] for k in (0, 5)]
    tr_again, va_again = build_pair_datasets(cfg, seed=4)  # a resumed run rebuilds and sets the epoch
    tr_again.set_epoch(2)
    for (x, c), k in zip(a, (0, 5)):
        y, d = tr_again[k]
        assert torch.equal(x, y) and c == d
    tr_again.set_epoch(3)
    assert not torch.equal(tr_again[0][0], a[0][0])
    assert torch.equal(va[0][0], va_again[0][0]) and va[0][1] == va.captions_of(0)[0]
    raw = torch.from_numpy(np.array(va.source.images[va.indices[0]])).permute(2, 0, 1)
    assert torch.equal(va[0][0], raw)  # val: never augmented
    no_aug, _ = build_pair_datasets(cfg.updated({"augment": False}), seed=4)
    assert torch.equal(no_aug[0][0], torch.from_numpy(np.array(no_aug.source.images[no_aug.indices[0]])).permute(2, 0, 1))
    clone = pickle.loads(pickle.dumps(tr_again))
    assert torch.equal(clone[1][0], tr_again[1][0])


def test_pair_collator_pads_to_longest_and_truncates():
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "the", "digit", "seven", "left", "of"]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/vocab.txt", "w") as fh:
            fh.write("\n".join(vocab))
        tok = BertTokenizerFast(f"{d}/vocab.txt")
    col = pickle.loads(pickle.dumps(PairCollator(tok, max_length=6)))
    imgs = [torch.zeros(3, 8, 8, dtype=torch.uint8), torch.ones(3, 8, 8, dtype=torch.uint8)]
    b = col([(imgs[0], "a red circle"), (imgs[1], "the digit seven")])
    assert b["images"].shape == (2, 3, 8, 8) and b["images"].dtype == torch.uint8
    assert b["input_ids"].shape == (2, 5) and b["attention_mask"].tolist() == [[1] * 5] * 2
    b = col([(imgs[0], "a red circle left of the digit seven"), (imgs[1], "a")])
    assert b["input_ids"].shape == (2, 6) and b["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]
    assert b["captions"] == ["a red circle left of the digit seven", "a"]
