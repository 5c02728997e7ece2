"""Image-caption pair datasets for pretraining: ``build_pair_datasets(cfg, seed) -> (train, val)``.

Sources (``cfg.data.train_data``):
- ``synthetic``: the generated corpus (``synthetic.py``), ``n_pairs`` scenes, cached;
- ``manifest``: an ``image,caption`` CSV (``cfg.data.manifest``), every row checked first by
  ``checks.check_manifest``: a bad row stops here unless ``skip_bad``, which drops and counts it;
- ``cc3m``: img2dataset output under ``data_root/cc3m``; ``n_pairs`` of them chosen by a fixed
  seeded permutation, each decoded once up front (bad ones: stop, or skip and take the next);
- ``flickr8k``: the Karpathy train split (image with its 5 captions).

Items are ``(uint8 tensor [3, H, W], caption str)``. The train set samples one of an image's
captions and (when ``augment``) augments the image with a generator seeded by
``(seed, epoch, index)`` (``set_epoch`` is called by the train loop), so a resumed run is exact
and worker layout does not matter. The val set never augments and always uses the first
caption. ``train.report`` holds what was found and dropped (the train loop writes it to
``data_report.json``). The train/val split uses a fixed seed, so every run and method is
validated on the same pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from contextclip.config import check_choice
from contextclip.data import formats, synthetic
from contextclip.data.augment import augment, rng_for
from contextclip.data.checks import ManifestError, check_manifest
from contextclip.data.images import ImageProblem, load_square
from contextclip.data.registry import resolve_root
from contextclip.data.sets import SUBSET_SEED, DatasetMissing, cc3m_items, load_ref

SPLIT_SEED = 0
MEMO_BYTES = 512 * 2**20  # augmented training items kept for reuse by later runs (uint8 pixels)


class ArraySource:
    """In-memory uint8 images [N, H, W, 3] with their captions."""

    def __init__(self, images: np.ndarray, captions: list[list[str]], mild: list[bool] | None = None):
        self.images, self.captions = images, captions
        self.mild = mild or [False] * len(captions)

    def __len__(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def content_digest(self) -> str:
        """sha256 of the images and captions (computed once per source)."""
        if getattr(self, "_digest", None) is None:
            h = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
            h.update(json.dumps(self.captions).encode())
            self._digest = h.hexdigest()
        return self._digest


class RefSource:
    """Images decoded from files or tar members on access (already checked when built)."""

    def __init__(self, refs: list, captions: list[list[str]], size: int, names: list[str]):
        self.refs, self.captions, self.size, self.names = refs, captions, int(size), names
        self.mild = [False] * len(captions)

    def __len__(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> np.ndarray:
        try:
            return load_ref(self.refs[i], self.size)
        except ImageProblem as exc:  # changed on disk since it was checked
            raise ImageProblem(exc.kind, f"{self.names[i]}: {exc.reason}") from None

    def content_digest(self) -> str:
        """sha256 of the captions, image references and image file sizes (no image is decoded)."""
        if getattr(self, "_digest", None) is None:
            sizes: dict[str, int | None] = {}
            for _, r in self.refs:
                path = r[0] if isinstance(r, (tuple, list)) else r  # a tar member's ref starts with the tar
                if str(path) not in sizes:
                    try:
                        sizes[str(path)] = os.stat(path).st_size
                    except (OSError, TypeError):
                        sizes[str(path)] = None
            blob = json.dumps([[list(map(str, ref)) if isinstance(ref, (tuple, list)) else str(ref)
                                for ref in self.refs], self.captions, sizes], default=str)
            self._digest = hashlib.sha256(blob.encode()).hexdigest()
        return self._digest


class PairDataset(Dataset):
    """(uint8 [3, H, W], caption) items of ``source`` at ``indices``; see the module docstring."""

    def __init__(self, source, indices, *, train: bool, augment: bool, seed: int = 0, name: str = "",
                 report: dict | None = None):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.train, self.augment, self.seed, self.epoch = bool(train), bool(augment and train), int(seed), 0
        self.name = name
        self.report = report or {}
        # (epoch, k) -> item: an item depends only on (seed, epoch, k), so every run that shares this
        # dataset object (all methods and seeds of notebook 02) augments each image once per epoch
        self._memo: dict[tuple[int, int], tuple[torch.Tensor, str]] = {}
        self._memo_bytes = 0
        self._caption_memo: dict[tuple[int, int], str] = {}  # (epoch, k) -> caption, see ``caption``

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def content_digest(self) -> str:
        """sha256 of the source's content and the indices this dataset takes from it."""
        h = hashlib.sha256(self.source.content_digest().encode())
        h.update(self.indices.tobytes())
        return h.hexdigest()

    def captions_of(self, k: int) -> list[str]:
        return self.source.captions[int(self.indices[k])]

    def caption(self, k: int) -> str:
        """The caption item ``k`` has in this epoch (``self[k][1]``), without reading its image: the
        first draw of the item's generator picks it, before any augmentation. Kept per (epoch, k)
        for the other runs sharing this dataset (a generator costs more than the rest of a lookup)."""
        caps = self.captions_of(k)
        if not self.train or len(caps) == 1:
            return caps[0]
        key = (self.epoch, int(k))
        if key not in self._caption_memo:
            self._caption_memo[key] = caps[int(rng_for(self.seed, self.epoch, k).integers(len(caps)))]
        return self._caption_memo[key]

    def __getitem__(self, k: int):
        if not self.train:
            return self._item(k)
        key = (self.epoch, int(k))
        if key in self._memo:
            img, cap = self._memo[key]
            return img.clone(), cap
        img, cap = self._item(k)
        if self._memo_bytes + img.numel() <= MEMO_BYTES:  # small images only (the embedded profile)
            self._memo[key] = (img, cap)
            self._memo_bytes += img.numel()
        return img.clone(), cap

    def keep_items(self, epoch: int, items: list) -> None:
        """Keep the already drawn ``items`` (index order) of ``epoch`` for reuse (within the memory cap)."""
        for k, (img, cap) in enumerate(items):
            if (epoch, k) not in self._memo and self._memo_bytes + img.numel() <= MEMO_BYTES:
                self._memo[(epoch, k)] = (img, cap)
                self._memo_bytes += img.numel()

    def _item(self, k: int):
        i = int(self.indices[k])
        img = self.source.image(i)
        caps = self.source.captions[i]
        if self.train:
            rng = rng_for(self.seed, self.epoch, k)
            cap = caps[int(rng.integers(len(caps)))] if len(caps) > 1 else caps[0]
            if self.augment:
                img = augment(img, rng, mild=self.source.mild[i])
        else:
            cap = caps[0]
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous(), cap


def split_indices(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a fixed-seed permutation, the last ``val_fraction`` held out."""
    n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0 and n >= 2:
        n_val = min(max(1, n_val), n - 1)
    perm = np.random.default_rng([SPLIT_SEED, n]).permutation(n)
    return np.sort(perm[: n - n_val]), np.sort(perm[n - n_val:])


# ---------------------------------------------------------------------------- sources
def _synthetic(cfg, root: Path):
    p = synthetic.params_for(cfg)
    c = synthetic.load_or_generate(p, root)
    mild = [s["relation"] is not None or s["position"] is not None for s in c.specs]
    report = {"source": "synthetic", "n_pairs": len(c), "cache": str(synthetic.cache_path(p, root)),
              "stats": synthetic.corpus_stats(c)}
    return ArraySource(c.images, c.captions, mild), report


def _manifest(cfg, root: Path):
    path = Path(cfg.data.manifest).expanduser()
    if not path.is_absolute() and not path.exists():
        path = resolve_root(".") / path
    rep = check_manifest(path)
    report = {"source": "manifest", **rep.to_dict()}
    if rep.problems and not cfg.data.skip_bad:
        raise ManifestError(
            f"{len(rep.problems)} bad row(s) in {path}:\n{rep.format(max_rows=20)}\n"
            f"Fix them, run `python -m contextclip data check {path} --skip-bad` to write a cleaned copy, "
            "or set skip_bad: true to train without them (counts go to data_report.json)."
        )
    if not rep.good:
        raise ManifestError(f"{path}: no usable rows ({len(rep.problems)} bad)")
    folder = path.parent
    refs = [("file", str(folder / rel)) for _, rel, _ in rep.good]
    names = [f"{path.name} line {line}: {rel}" for line, rel, _ in rep.good]
    return RefSource(refs, [[cap] for _, _, cap in rep.good], cfg.data.image_size, names), report


def _checked_subset(items, n_wanted: int, size: int, skip_bad: bool, label: str):
    """Take items in a fixed seeded order, decoding each; skip (and count) or stop on bad ones."""
    order = np.random.default_rng([SUBSET_SEED, len(items)]).permutation(len(items))
    kept, bad = [], []
    for j in order:
        if len(kept) == n_wanted:
            break
        key, ref, cap = items[j]
        problem = None
        if not cap.strip():
            problem = ("empty caption", "the caption is empty")
        else:
            try:
                load_ref(ref, size)
            except ImageProblem as exc:
                problem = (exc.kind, exc.reason)
        if problem:
            if not skip_bad:
                raise ImageProblem(problem[0], f"{label} item {key}: {problem[1]} (set skip_bad: true to skip bad items)")
            bad.append({"key": key, "kind": problem[0], "reason": problem[1]})
            continue
        kept.append(int(j))
    counts: dict[str, int] = {}
    for b in bad:
        counts[b["kind"]] = counts.get(b["kind"], 0) + 1
    report = {"source": label, "n_found": len(items), "n_wanted": n_wanted, "n_pairs": len(kept),
              "n_bad": len(bad), "bad_by_kind": counts, "bad_rows": bad[:200]}
    return sorted(kept), report


def _cc3m(cfg, root: Path):
    incomplete: list[tuple[str, str]] = []
    items = cc3m_items(root, incomplete)
    if incomplete and not cfg.data.skip_bad:  # a sample without its caption is named, never dropped silently
        key, why = incomplete[0]
        raise ImageProblem("missing field", f"cc3m item {key}: {why}; {len(incomplete)} such sample(s) in "
                           f"{Path(root) / 'cc3m'} (set skip_bad: true to skip and count them)")
    kept, report = _checked_subset(items, cfg.data.n_pairs, cfg.data.image_size, cfg.data.skip_bad, "cc3m")
    if incomplete:
        report["n_bad"] += len(incomplete)
        report["bad_by_kind"]["missing field"] = report["bad_by_kind"].get("missing field", 0) + len(incomplete)
        report["bad_rows"] = ([{"key": k, "kind": "missing field", "reason": why} for k, why in incomplete]
                              + report["bad_rows"])[:200]
    return RefSource([items[j][1] for j in kept], [[items[j][2]] for j in kept], cfg.data.image_size,
                     [items[j][0] for j in kept]), report


def _flickr8k(cfg, root: Path):
    base = root / "flickr8k"
    try:
        caps, splits = formats.read_flickr8k(base)
    except FileNotFoundError as exc:
        raise DatasetMissing("flickr8k", root, str(exc)) from None
    img_dir = formats.flickr8k_image_dir(base)
    pool = splits.get("train", set(caps) - splits.get("test", set()) - splits.get("val", set()))
    names = sorted(n for n in pool if n in caps)
    items = [(n, ("file", str(img_dir / n)), " ".join(caps[n])) for n in names]
    kept, report = _checked_subset(items, cfg.data.n_pairs, cfg.data.image_size, cfg.data.skip_bad, "flickr8k")
    chosen = [names[j] for j in kept]
    return RefSource([("file", str(img_dir / n)) for n in chosen], [caps[n] for n in chosen],
                     cfg.data.image_size, chosen), report


SOURCES = {"synthetic": _synthetic, "manifest": _manifest, "cc3m": _cc3m, "flickr8k": _flickr8k}


def build_pair_datasets(cfg, seed: int = 0) -> tuple[PairDataset, PairDataset]:
    """(train, val) pair datasets of ``cfg.data.train_data``; ``seed`` seeds the augmentation."""
    name = cfg.data.train_data
    check_choice("train_data", name)
    root = resolve_root(cfg.data.data_root)
    source, report = SOURCES[name](cfg, root)
    tr, va = split_indices(len(source), cfg.data.val_fraction)
    report.update({"n_train": len(tr), "n_val": len(va)})
    train = PairDataset(source, tr, train=True, augment=cfg.data.augment, seed=seed, name=name, report=report)
    val = PairDataset(source, va, train=False, augment=False, seed=seed, name=name, report=report)
    return train, val


def load_pair_image(path, size: int) -> np.ndarray:  # convenience for notebooks
    return load_square(path, size)
