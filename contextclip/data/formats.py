"""Readers for the real datasets' on-disk formats (no network, no torch models).

- CIFAR-10/100 python pickles, read with a restricted unpickler (only the numpy array types
  the files contain; anything else is refused), so a tampered file cannot run code;
- MNIST idx files under ``root/MNIST/raw`` (gzipped ones are unpacked beside them, as
  torchvision's download does) for ``torchvision.datasets.MNIST``;
- class-per-folder trees (ImageFolder layout) for RESISC45, and Birdsnap's ``species.txt`` +
  ``images/<dir>/`` + ``test_images.txt``;
- Flickr8k's Kaggle ``captions.txt`` (``image,caption``, 5 per image) with a Karpathy split
  file; img2dataset output (webdataset ``.tar`` shards of ``.jpg``+``.txt``, or its ``files``
  folder layout).

Each reader returns plain lists/arrays and raises ``FileNotFoundError`` naming what is missing.
"""

from __future__ import annotations

import csv
import gzip
import io
import pickle
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np

from contextclip import fileio
from contextclip.errors import DatasetError, MissingFileError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


# ------------------------------------------------------------------------------ CIFAR
class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")


def _load_pickle(path: Path, name: str = "cifar10") -> dict:
    """One CIFAR pickle as a dict; ``DatasetError`` naming the file when it is cut short, damaged or tampered."""
    fix = (f"delete {Path(path).parent} and run `python -m contextclip data prepare {name}` again (or unpack the "
           "archive again)")
    try:
        with open(path, "rb") as fh:
            d = _SafeUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise DatasetError(f"{path} cannot be read as a CIFAR python pickle ({type(exc).__name__}: {first}); it is "
                           f"damaged (a download or an unpacking cut short?) or not a plain CIFAR file. What to do: "
                           f"{fix}") from None
    if not isinstance(d, dict):
        raise DatasetError(f"{path} holds a {type(d).__name__}, not a CIFAR batch (a dict). What to do: {fix}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def read_cifar(root: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 [N, 32, 32, 3], int64 labels, torchvision class names) of one CIFAR split."""
    folder, train_files, test_files, meta, label_key, names_key = CIFAR_LAYOUT[name]
    base = Path(root) / folder
    files = train_files if split == "train" else test_files
    missing = [f for f in files + [meta] if not (base / f).is_file()]
    if missing:
        raise MissingFileError(f"{base}: missing {missing}")
    n_classes = 10 if name == "cifar10" else 100
    fix = f"delete {base} and run `python -m contextclip data prepare {name}` again"
    xs, ys = [], []
    for f in files:
        d = _load_pickle(base / f, name)
        data, labels = d.get("data"), d.get(label_key)
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{base / f}: 'data' is not an N x 3072 array of 32 x 32 RGB images "
                               f"({getattr(data, 'shape', type(data).__name__)}); it is damaged. What to do: {fix}")
        y = np.asarray(labels if labels is not None else [], dtype=np.int64)
        if len(y) != len(data) or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
            raise DatasetError(f"{base / f}: {len(y)} labels for {len(data)} images, or labels outside 0..{n_classes - 1}"
                               f"; it is damaged. What to do: {fix}")
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y)
    meta_d = _load_pickle(base / meta, name)
    if not isinstance(meta_d.get(names_key), list) or len(meta_d[names_key]) != n_classes:
        raise DatasetError(f"{base / meta}: '{names_key}' is not a list of {n_classes} class names; it is damaged. "
                           f"What to do: {fix}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta_d[names_key]]
    return np.concatenate(xs), np.concatenate(ys), names


# ------------------------------------------------------------------------------ MNIST
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def ensure_mnist_raw(root: Path) -> Path:
    """Unpack ``*.gz`` idx files in ``root/MNIST/raw`` where the raw file is missing."""
    raw = Path(root) / "MNIST" / "raw"
    for pair in MNIST_FILES.values():
        for f in pair:
            if not (raw / f).is_file() and (raw / f"{f}.gz").is_file():
                try:
                    with gzip.open(raw / f"{f}.gz", "rb") as src:  # atomically: a half-unpacked file never counts
                        fileio.atomic_write(raw / f, lambda dst, src=src: shutil.copyfileobj(src, dst), fsync=False)
                except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                    raise DatasetError(f"{raw / (f + '.gz')} cannot be unpacked ({type(exc).__name__}: {exc}); it is "
                                       "damaged (a download cut short?). What to do: delete it and run `python -m "
                                       f"contextclip data prepare mnist --root {Path(root)}` again") from None
    return raw


def mnist_present(root: Path) -> bool:
    raw = Path(root) / "MNIST" / "raw"  # torchvision checks the train and the test files
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for pair in MNIST_FILES.values() for f in pair)


def read_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 28, 28], int64 labels) through ``torchvision.datasets.MNIST`` (download=False)."""
    from torchvision.datasets import MNIST

    if not mnist_present(root):
        raise MissingFileError(f"{Path(root) / 'MNIST' / 'raw'}: missing some of {[f for p in MNIST_FILES.values() for f in p]} (raw or .gz)")
    raw = ensure_mnist_raw(root)
    img_name, lab_name = MNIST_FILES[split]
    n_img = check_idx(raw / img_name, 3, (28, 28))[0]
    n_lab = check_idx(raw / lab_name, 1)[0]
    if n_img != n_lab:
        raise DatasetError(f"{raw / img_name} holds {n_img} images but {raw / lab_name} {n_lab} labels; one of them is "
                           f"from another download. What to do: delete {raw} and run `python -m contextclip data "
                           "prepare mnist` again")
    ds = MNIST(str(root), train=(split == "train"), download=False)
    return ds.data.numpy().astype(np.uint8), ds.targets.numpy().astype(np.int64)


def check_idx(path: Path, ndim: int, item_shape: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The dimensions of a uint8 idx file, after checking its header (magic ``00 00 08 <ndim>``), the item
    shape and the file's size; ``DatasetError`` naming the file and the problem otherwise."""
    path = Path(path)
    fix = (f"delete it (and its .gz) and run `python -m contextclip data prepare mnist --root "
           f"{path.parents[2]}` again")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4 + 4 * ndim)
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] != ndim:
        raise DatasetError(f"{path} is not an idx file of uint8 with {ndim} dimension(s) (its first four bytes are "
                           f"{head[:4].hex(' ')}, expected 00 00 08 {ndim:02x}); it is damaged or another file. "
                           f"What to do: {fix}")
    if len(head) < 4 + 4 * ndim:
        raise DatasetError(f"{path} ends inside its header ({size} bytes). What to do: {fix}")
    dims = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if item_shape and dims[1:] != item_shape:
        raise DatasetError(f"{path}: items of {' x '.join(map(str, dims[1:]))} pixels, expected "
                           f"{' x '.join(map(str, item_shape))}. What to do: {fix}")
    want = 4 + 4 * ndim + int(np.prod(dims))
    if size != want:
        raise DatasetError(f"{path} has {size} bytes, but its header ({' x '.join(map(str, dims))}) needs {want}: "
                           f"it is {'cut short' if size < want else 'longer than it says'}. What to do: {fix}")
    return dims


def write_idx(path: Path, arr: np.ndarray) -> None:
    """Write a uint8 array in idx format (used by tests to make fixtures; gz if path ends .gz)."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    blob = header + arr.tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(blob)
    else:
        Path(path).write_bytes(blob)


# ------------------------------------------------------------------ folders of classes
def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def read_class_folders(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """ImageFolder layout ``root/<class>/*.jpg``: (paths, labels, folder names sorted)."""
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for k, c in enumerate(classes):
        for p in _images_in(root / c):
            paths.append(p)
            labels.append(k)
    return paths, labels, classes


def resisc_folder(root: Path) -> Path | None:
    """The folder of RESISC45's 45 class folders under ``root`` (as extracted, or one level up), or None."""
    for cand in (Path(root) / "resisc45" / "NWPU-RESISC45", Path(root) / "resisc45"):
        if cand.is_dir() and any(d.is_dir() and d.name in ("airplane", "sea_ice") for d in cand.iterdir()):
            return cand
    return None


def read_split_list(path: Path) -> set[str]:
    """A split file: one image name (or relative path) per line; header-like lines are skipped."""
    out = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        s = line.strip().split(",")[0].split("\t")[0].strip()
        if s and s.lower().endswith(IMAGE_EXTS):
            out.add(s)
    return out


def read_birdsnap(root: Path) -> tuple[list[Path], list[int], list[str], set[str] | None]:
    """(paths, labels, common names, test paths relative to images/) of a Birdsnap folder."""
    root = Path(root)
    species = root / "species.txt"
    if not species.is_file():
        raise MissingFileError(f"{species} is missing")
    with open(species, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or not {"id", "common", "dir"} <= set(rows[0]):
        raise DatasetError(f"{species}: expected tab-separated columns id, common, scientific, dir")
    rows.sort(key=lambda r: int(r["id"]))
    names = [r["common"] for r in rows]
    images = root / "images" if (root / "images").is_dir() else root / "download" / "images"
    paths, labels = [], []
    for k, r in enumerate(rows):
        for p in _images_in(images / r["dir"]) if (images / r["dir"]).is_dir() else []:
            paths.append(p)
            labels.append(k)
    test = read_split_list(root / "test_images.txt") if (root / "test_images.txt").is_file() else None
    return paths, labels, names, test


# --------------------------------------------------------------------------- Flickr8k
def read_flickr8k(root: Path) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(image name -> its captions, split name -> image names) of a Flickr8k folder.

    Captions: Kaggle ``captions.txt`` (``image,caption``) or the original
    ``Flickr8k.token.txt`` (``name.jpg#k<TAB>caption``). Splits: ``Flickr_8k.{train,dev,test}Images.txt``
    (= the Karpathy split), Karpathy's ``dataset_flickr8k.json``, or CLIP_benchmark's
    ``flickr8k_{split}_karpathy.txt`` (``image,caption`` lines).
    """
    import json

    root = Path(root)
    caps: dict[str, list[str]] = {}
    if (root / "captions.txt").is_file():
        with open(root / "captions.txt", encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
                raise DatasetError(f"{root / 'captions.txt'}: expected the header 'image,caption', got {header!r}")
            for row in reader:
                if len(row) >= 2 and row[0].strip():
                    caps.setdefault(row[0].strip(), []).append(",".join(row[1:]).strip())
    elif (root / "Flickr8k.token.txt").is_file():
        for line in (root / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                key, cap = line.split("\t", 1)
                caps.setdefault(key.split("#")[0].strip(), []).append(cap.strip())
    else:
        raise MissingFileError(f"{root}: neither captions.txt (Kaggle) nor Flickr8k.token.txt found")
    splits: dict[str, set[str]] = {}
    for split, orig in (("train", "train"), ("val", "dev"), ("test", "test")):
        for candidate in (root / f"Flickr_8k.{orig}Images.txt", root / f"flickr8k_{split}_karpathy.txt"):
            if candidate.is_file():
                splits[split] = read_split_list(candidate)
                break
    if not splits and (root / "dataset_flickr8k.json").is_file():
        d = json.loads((root / "dataset_flickr8k.json").read_text(encoding="utf-8"))
        for im in d["images"]:
            splits.setdefault({"restval": "train"}.get(im["split"], im["split"]), set()).add(im["filename"])
    return caps, splits


def flickr8k_image_dir(root: Path) -> Path:
    for name in ("Images", "Flicker8k_Dataset", "Flickr8k_Dataset", "images"):
        if (Path(root) / name).is_dir():
            return Path(root) / name
    return Path(root) / "Images"


# ------------------------------------------------------------------ img2dataset output
def index_webdataset(folder: Path, skipped: list[tuple[str, str]] | None = None
                     ) -> list[tuple[str, tuple[str, int, int], str]]:
    """[(key, (tar path, data offset, size), caption)] of every image+caption in ``folder/*.tar``.

    A sample with an image and no caption (or a caption and no image) is not listed; it is
    appended to ``skipped`` as ``(shard:key, reason)``. A shard that cannot be
    read (cut short, not a tar file) raises ``DatasetError`` naming it.
    """
    out = []
    for tar_path in sorted(Path(folder).glob("*.tar")):
        members: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(tar_path, "r") as tf:
                for m in tf.getmembers():
                    if not m.isfile():
                        continue
                    stem, _, ext = m.name.rpartition(".")
                    members.setdefault(stem, {})[ext.lower()] = m
                for stem in sorted(members):
                    exts = members[stem]
                    img = next((exts[e] for e in ("jpg", "jpeg", "png", "webp") if e in exts), None)
                    if img is None or "txt" not in exts:
                        if skipped is not None and (img is not None or "txt" in exts):
                            skipped.append((f"{tar_path.name}:{stem}", "no caption (.txt)" if img is not None
                                            else "a caption without an image"))
                        continue
                    raw = tf.extractfile(exts["txt"]).read()
                    caption = raw.decode("utf-8", errors="replace").strip()  # empty: a bad item for the caller
                    out.append((f"{tar_path.name}:{stem}", (str(tar_path), img.offset_data, img.size), caption))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetError(f"webdataset shard {tar_path} cannot be read ({type(exc).__name__}: {exc}); it is "
                               "damaged (a download or a copy cut short?). What to do: download that shard again "
                               "(img2dataset) or move it away") from None
    return out


def read_tar_member(ref: tuple[str, int, int]) -> bytes:
    path, offset, size = ref
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def index_image_text_folder(folder: Path, skipped: list[tuple[str, str]] | None = None
                            ) -> list[tuple[str, Path, str]]:
    """img2dataset's ``files`` layout: ``folder/**/<key>.jpg`` beside ``<key>.txt`` (images without a
    caption file are appended to ``skipped``)."""
    out = []
    for p in _images_in(Path(folder)):
        txt = p.with_suffix(".txt")
        if txt.is_file():
            out.append((str(p.relative_to(folder)), p, txt.read_text(encoding="utf-8", errors="replace").strip()))
        elif skipped is not None:
            skipped.append((str(p.relative_to(folder)), "no caption (.txt)"))
    return out


def make_webdataset_shard(path: Path, items: list[tuple[str, bytes, str]]) -> None:
    """Write an img2dataset-style shard (``key.jpg``, ``key.txt``, ``key.json``); for tests and tools."""
    import json

    with tarfile.open(path, "w") as tf:
        for key, img_bytes, caption in items:
            for ext, blob in (("jpg", img_bytes), ("txt", caption.encode("utf-8")),
                              ("json", json.dumps({"key": key, "caption": caption}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
