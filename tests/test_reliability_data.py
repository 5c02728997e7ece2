"""Dataset preparers on damaged paper datasets: every file named, every missing item counted.

The fixtures are the rehearsal tree (``python -m contextclip data make-rehearsal``: format-exact
copies of what each paper dataset leaves on disk), written once, small, and damaged per test
in a copy: a CIFAR pickle cut in half, an idx file with a wrong magic, a Flickr8k split naming
an image that is not there, a webdataset sample without its caption. ``data prepare`` must name
the file and the problem with exit code 2, and an official split that shrinks is an error
unless ``--allow-missing``.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from train_fakes import rehearsal_tree

from contextclip.cli import main
from contextclip.data.rehearsal import RehearsalParams

SMALL = RehearsalParams(per_class=1, birdsnap_per_class=3, birdsnap_species=12, cc3m_pairs=20, flickr_images=12,
                        max_side=64)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return rehearsal_tree(tmp_path_factory, SMALL)


@pytest.fixture
def copy(tree, tmp_path):
    """A fresh copy of one dataset's folder of the tree, to damage: ``copy("flickr8k") -> root``."""

    def make(*folders: str) -> Path:
        for f in folders:
            shutil.copytree(tree / f, tmp_path / f)
        return tmp_path

    return make


def _prepare(capsys, name: str, root: Path, *extra: str) -> tuple[int, str, str]:
    rc = main(["data", "prepare", name, "--root", str(root), *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line(rc: int, err: str) -> str:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_a_truncated_cifar_pickle_is_named(copy, capsys):
    root = copy("cifar-10-batches-py")
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    rc, _, err = _prepare(capsys, "cifar10", root)
    err = _one_line(rc, err)
    assert f"{batch} cannot be read as a CIFAR python pickle" in err and "data prepare cifar10" in err, err


def test_a_cifar_batch_with_wrong_contents_is_named(copy, capsys):
    import pickle

    root = copy("cifar-100-python")
    path = root / "cifar-100-python" / "test"
    with open(path, "rb") as fh:
        d = pickle.load(fh, encoding="latin1")
    d["fine_labels"] = d["fine_labels"][:-1]  # one label short
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=2)
    rc, _, err = _prepare(capsys, "cifar100", root)
    assert f"{path}: " in _one_line(rc, err) and "labels for" in err


@pytest.mark.parametrize("damage", ["magic", "cut", "gz"])
def test_a_damaged_mnist_idx_file_is_named(copy, capsys, damage):
    root = copy("MNIST")
    raw = root / "MNIST" / "raw"
    f = raw / "t10k-images-idx3-ubyte"
    if damage == "magic":
        f.write_bytes(b"\x00\x00\x09\x03" + f.read_bytes()[4:])
        needle = "its first four bytes are 00 00 09 03, expected 00 00 08 03"
    elif damage == "cut":
        f.write_bytes(f.read_bytes()[:-100])
        needle = "it is cut short"
    else:
        f.unlink()
        gz = raw / "t10k-images-idx3-ubyte.gz"
        gz.write_bytes(gz.read_bytes()[:40])
        f, needle = gz, "cannot be unpacked"
    rc, _, err = _prepare(capsys, "mnist", root)
    err = _one_line(rc, err)
    assert str(f) in err and needle in err and "data prepare mnist" in err, err


def test_a_flickr8k_split_that_shrinks_is_an_error_unless_allowed(copy, capsys):
    root = copy("flickr8k")
    base = root / "flickr8k"
    split = base / "Flickr_8k.testImages.txt"
    names = split.read_text().split()
    split.write_text("\n".join(names + ["999_not_downloaded.jpg"]) + "\n")  # a name with no image
    (base / "Images" / names[0]).unlink()  # and a listed image moved away
    rc, out, err = _prepare(capsys, "flickr8k", root)
    err = _one_line(rc, err)
    assert "test split has" in err and f"of the {len(names) + 1} items" in err and "--allow-missing" in err, err
    assert f"test split: {len(names) + 1} listed in the Karpathy split file, {len(names) - 1} found, 2 missing" in out
    assert "999_not_downloaded.jpg (no image)" in out and f"{names[0]} (no image)" in out
    rc, out, err = _prepare(capsys, "flickr8k", root, "--allow-missing")
    assert rc == 0 and "going on without the missing items" in out and f"ready: {len(names) - 1} images" in out


def test_birdsnap_dead_links_and_resisc45_split_files_are_counted(copy, capsys):
    root = copy("birdsnap", "resisc45")
    rc, out, err = _prepare(capsys, "birdsnap", root)  # the fixture has dead links, as the real download
    assert "images.txt lists" in _one_line(rc, err) and "missing (" in out
    assert _prepare(capsys, "birdsnap", root, "--allow-missing")[0] == 0
    rc, out, err = _prepare(capsys, "resisc45", root)
    assert rc == 0 and "test split: 45 listed in resisc45-test.txt, 45 found" in out, out + err
    victim = next((root / "resisc45" / "NWPU-RESISC45" / "airplane").glob("airplane_001.jpg"))
    victim.unlink()
    rc, out, err = _prepare(capsys, "resisc45", root)
    assert "test split has 44 of the 45 items" in _one_line(rc, err) and "airplane_001.jpg" in out


def _strip_caption(shard: Path) -> str:
    """Rewrite ``shard`` without the ``.txt`` of its first sample; returns that sample's key."""
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    key = members[0][0].name.rsplit(".", 1)[0]
    with tarfile.open(shard, "w") as tf:
        for m, blob in members:
            if m.name != f"{key}.txt":
                tf.addfile(m, io.BytesIO(blob))
    return key


def test_a_webdataset_sample_without_a_caption_is_named_in_prepare_and_training(copy, capsys):
    from contextclip.config import Config
    from contextclip.data import build_pair_datasets
    from contextclip.errors import ImageProblem

    root = copy("cc3m")
    shard = sorted((root / "cc3m").glob("*.tar"))[0]
    key = _strip_caption(shard)
    rc, out, err = _prepare(capsys, "cc3m", root)
    err = _one_line(rc, err)
    assert f"{shard.name}:{key} (no caption (.txt))" in out and "1 samples skipped" in err, out + err
    cfg = Config().updated({"train_data": "cc3m", "data_root": str(root), "n_pairs": 10, "val_fraction": 0.2})
    with pytest.raises(ImageProblem, match=f"cc3m item {shard.name}:{key}: no caption"):
        build_pair_datasets(cfg)
    train, _ = build_pair_datasets(cfg.updated({"skip_bad": True}))
    assert train.report["bad_by_kind"]["missing field"] == 1
    assert train.report["bad_rows"][0]["key"] == f"{shard.name}:{key}"


def test_a_truncated_webdataset_shard_is_named(copy, capsys):
    root = copy("cc3m")
    shard = sorted((root / "cc3m").glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:700])
    rc, _, err = _prepare(capsys, "cc3m", root)
    assert f"webdataset shard {shard} cannot be read" in _one_line(rc, err)


def test_an_unknown_dataset_name_is_one_line(tmp_path, capsys):
    rc, _, err = _prepare(capsys, "cifar11", tmp_path)
    assert "unknown dataset 'cifar11'" in _one_line(rc, err)



def test_a_damaged_image_in_a_folder_dataset_is_named(copy, capsys):
    root = copy("resisc45")
    victim = root / "resisc45" / "NWPU-RESISC45" / "beach" / "beach_002.jpg"
    victim.write_bytes(victim.read_bytes()[:200])  # a download cut short
    rc, _, err = _prepare(capsys, "resisc45", root)
    err = _one_line(rc, err)
    assert str(victim) in err and "truncated" in err.lower(), err
