"""What a prepared paper dataset holds against what its official lists say: ``audit(name, root)``.

For each paper dataset, the lists that come with it (split files, ``images.txt``, img2dataset's
``*_stats.json``) say what a complete copy holds; the audit counts what is really on disk and
names what is missing or skipped:

- RESISC45: torchgeo's ``resisc45-{train,val,test}.txt`` against the class folders;
- Birdsnap: ``images.txt`` and ``test_images.txt`` against ``download/images/`` (dead Flickr links);
- Flickr8k: the Karpathy split files against ``captions.txt`` and ``Images/``;
- CC3M (img2dataset output): ``successes`` in ``*_stats.json`` against the samples in the
  shards, and every sample without a caption (or without an image);
- CIFAR-10/100 and MNIST: every file is read and checked (``formats.read_cifar``,
  ``formats.check_idx``); CIFAR-10's ``batches.meta`` says how many images each batch holds.

``Audit.shrinks`` lists each way a split is smaller than its list says. ``data prepare`` prints
the audit and stops (exit code 2) when something shrinks, unless ``--allow-missing`` is given:
an official split that silently loses images is not the paper's split any more.

This module reads and counts; it does not download and does not build datasets (``sets.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from contextclip.data import formats
from contextclip.errors import DatasetError

#: at most this many missing or skipped names are shown per line
SHOWN = 3


@dataclass
class Audit:
    name: str
    lines: list[str] = field(default_factory=list)  # what was counted, one line each
    shrinks: list[str] = field(default_factory=list)  # each split smaller than its official list

    def count(self, what: str, listed: int, found: int, missing: list[str], source: str) -> None:
        """One line ``what: N listed in SOURCE, M found, K missing (first: ...)``; a shrink when K > 0."""
        line = f"{what}: {listed} listed in {source}, {found} found"
        if missing:
            shown = ", ".join(sorted(missing)[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
            line += f", {len(missing)} missing ({shown})"
            self.shrinks.append(f"{what} has {found} of the {listed} items {source} lists")
        self.lines.append(line)

    def skipped(self, what: str, items: list[tuple[str, str]]) -> None:
        """One line naming items that are on disk but unusable (a sample without a caption)."""
        if not items:
            return
        shown = ", ".join(f"{k} ({why})" for k, why in items[:SHOWN]) + (", ..." if len(items) > SHOWN else "")
        self.lines.append(f"{what}: {len(items)} skipped: {shown}")
        self.shrinks.append(f"{len(items)} {what} skipped")


def _split_names(path: Path) -> set[str]:
    return formats.read_split_list(path)


def audit_resisc45(root: Path) -> Audit:
    a = Audit("resisc45")
    base = formats.resisc_folder(root)
    if base is None:
        return a
    paths, _, classes = formats.read_class_folders(base)
    on_disk = {p.name for p in paths}
    a.lines.append(f"{len(paths)} images in {len(classes)} class folders under {base}")
    for split in ("train", "val", "test"):
        f = next((p for p in (base / f"resisc45-{split}.txt", base.parent / f"resisc45-{split}.txt") if p.is_file()),
                 None)
        if f is not None:
            listed = _split_names(f)
            a.count(f"{split} split", len(listed), len(listed & on_disk), sorted(listed - on_disk), f.name)
    return a


def audit_birdsnap(root: Path) -> Audit:
    a = Audit("birdsnap")
    base = Path(root) / "birdsnap"
    images = base / "images" if (base / "images").is_dir() else base / "download" / "images"
    on_disk = {str(p.relative_to(images)) for p in formats._images_in(images)} if images.is_dir() else set()
    for what, f in (("images", base / "images.txt"), ("test split", base / "test_images.txt")):
        if not f.is_file():
            continue
        listed = {ln.split("\t")[2] if "\t" in ln else ln.strip() for ln in
                  f.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()}
        listed = {x for x in listed if x.lower().endswith(formats.IMAGE_EXTS)}
        a.count(what, len(listed), len(listed & on_disk), sorted(listed - on_disk), f.name)
    return a


def audit_flickr8k(root: Path) -> Audit:
    a = Audit("flickr8k")
    base = Path(root) / "flickr8k"
    caps, splits = formats.read_flickr8k(base)
    img_dir = formats.flickr8k_image_dir(base)
    on_disk = {p.name for p in img_dir.iterdir() if p.is_file()} if img_dir.is_dir() else set()
    a.lines.append(f"{len(caps)} images with captions in the captions file, {len(on_disk)} files in {img_dir}")
    for split in ("train", "val", "test"):
        if split in splits:
            listed = splits[split]
            usable = {n for n in listed if n in caps and n in on_disk}
            a.count(f"{split} split", len(listed), len(usable),
                    [f"{n} (no image)" if n not in on_disk else f"{n} (no caption)" for n in sorted(listed - usable)],
                    "the Karpathy split file")
    return a


def audit_cc3m(root: Path) -> Audit:
    from contextclip.data.sets import cc3m_items

    a = Audit("cc3m")
    base = Path(root) / "cc3m"
    skipped: list[tuple[str, str]] = []
    items = cc3m_items(root, skipped)
    stats = sorted(base.glob("*_stats.json"))
    if stats:
        expected = 0
        for f in stats:
            try:
                d = json.loads(f.read_text(encoding="utf-8"))
                expected += int(d["successes"])
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{f} is not an img2dataset stats file ({type(exc).__name__}: {exc}); it is "
                                   "damaged. What to do: move it away, or download that shard again") from None
        found = len(items)
        line = f"samples: {expected} downloaded according to {len(stats)} *_stats.json, {found} with image and caption"
        a.lines.append(line)
        if found < expected:
            a.shrinks.append(f"the shards hold {found} of the {expected} samples their stats files report")
    else:
        a.lines.append(f"samples: {len(items)} with image and caption (no *_stats.json to compare with)")
    a.skipped("samples", skipped)
    return a


def audit_cifar(name: str, root: Path) -> Audit:
    a = Audit(name)
    folder, train_files, test_files, meta, _, _ = formats.CIFAR_LAYOUT[name]
    for split in ("train", "test"):
        x, _, _ = formats.read_cifar(root, name, split)  # reads and checks every file of the split
        a.lines.append(f"{split}: {len(x)} images")
    if name == "cifar10":
        per = formats._load_pickle(Path(root) / folder / meta, name).get("num_cases_per_batch")
        if isinstance(per, int):
            for f in train_files + test_files:
                n = len(formats._load_pickle(Path(root) / folder / f, name)["data"])
                if n != per:
                    a.shrinks.append(f"{f} holds {n} images, batches.meta says {per}")
    return a


def audit_mnist(root: Path) -> Audit:
    a = Audit("mnist")
    raw = formats.ensure_mnist_raw(root)
    for split, (img, lab) in formats.MNIST_FILES.items():
        n_img = formats.check_idx(raw / img, 3, (28, 28))[0]
        n_lab = formats.check_idx(raw / lab, 1)[0]
        if n_img != n_lab:
            raise DatasetError(f"{raw / img} holds {n_img} images but {raw / lab} {n_lab} labels. What to do: delete "
                               f"{raw} and run `python -m contextclip data prepare mnist` again")
        a.lines.append(f"{split}: {n_img} images")
    return a


AUDITS = {
    "resisc45": audit_resisc45, "birdsnap": audit_birdsnap, "flickr8k": audit_flickr8k, "cc3m": audit_cc3m,
    "cifar10": lambda root: audit_cifar("cifar10", root), "cifar100": lambda root: audit_cifar("cifar100", root),
    "mnist": audit_mnist,
}


def audit(name: str, root: Path) -> Audit | None:
    """The audit of a paper dataset under ``root`` (None for the embedded sets, which have no lists)."""
    fn = AUDITS.get(name)
    return fn(Path(root)) if fn is not None else None


__all__ = ["AUDITS", "Audit", "audit"]
