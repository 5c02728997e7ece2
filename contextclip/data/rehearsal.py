"""Rehearsal fixtures: small, format-exact copies of what each paper dataset leaves on disk.

``make_rehearsal_tree(root, RehearsalParams())`` writes, under ``root``, the files that the
``data prepare`` instructions of ``data/README.md`` leave behind for the real sets, with
generated images (noise, a class-coloured shape, the class name as text; scenes from the
synthetic renderer for the caption sets) and a few images per class:

- ``cc3m/``: img2dataset output, ``--output_format webdataset`` (``00000.tar`` ... holding
  ``<key>.jpg``, ``<key>.txt``, ``<key>.json``, plus ``<shard>_stats.json``; keys have gaps
  where downloads "failed") or ``--output_format files`` (``00000/<key>.jpg`` ...); images
  resized as img2dataset's ``--resize_mode keep_ratio --image_size 256`` leaves them
  (shorter side 256). The ``.parquet`` per shard is not written (the kit does not read it);
- ``cifar-10-batches-py/`` and ``cifar-100-python/``: the python pickles (protocol 2, the
  keys and types of the real files) that ``torchvision.datasets.CIFAR10/100`` read, 32 x 32;
- ``MNIST/raw/``: the four idx files, gzipped and unpacked (as torchvision's download leaves
  them), 28 x 28;
- ``resisc45/``: ``NWPU-RESISC45/<class>/<class>_NNN.jpg`` (256 x 256, the unpacked archive)
  with torchgeo's ``resisc45-{train,val,test}.txt``;
- ``birdsnap/``: ``species.txt``, ``images.txt``, ``test_images.txt`` (the tgz) and what
  ``get_birdsnap.py`` leaves: ``download/images/<dir>/<file>.jpg`` plus ``success.txt`` /
  ``fail.txt`` (some images "failed", as dead Flickr links do). The 500 species names are
  generated (the real list is not shipped), with apostrophes and hyphens as in the real one;
- ``flickr8k/``: Kaggle's ``captions.txt`` (``image,caption``, 5 per image, captions with
  unquoted commas) and ``Images/*.jpg``, with the Karpathy split files
  ``Flickr_8k.{train,dev,test}Images.txt``.

``REHEARSAL.json`` at the root records the parameters; ``make_rehearsal_tree`` does nothing
when it matches (pass ``force=True`` to rewrite). The numbers a rehearsal produces measure
nothing about the method: the images are generated and the towers are random.

What is not here: the loaders (``formats.py``, ``sets.py``), which read these files exactly as
they read the real ones.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from contextclip import fileio
from contextclip.data import formats, synthetic
from contextclip.data.sets import classnames_for
from contextclip.errors import ConfigError

LAYOUT_VERSION = 2
MARKER = "REHEARSAL.json"

CIFAR10_META_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_COARSE = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]
_BIRD_WORDS = ["Black-capped", "Say's", "Red-winged", "Lesser", "Greater", "Northern", "Cassin's", "Golden",
               "Spotted", "White-throated", "Eastern", "Western", "Brown", "Blue", "Scarlet", "Least",
               "Hooded", "Swainson's", "Yellow-bellied", "American"]
_BIRD_KINDS = ["Warbler", "Sparrow", "Flycatcher", "Vireo", "Thrush", "Wren", "Hawk", "Owl", "Finch", "Tern",
               "Gull", "Heron", "Plover", "Sandpiper", "Woodpecker", "Swallow", "Oriole", "Tanager",
               "Grosbeak", "Kingbird", "Phoebe", "Jay", "Duck", "Grebe", "Quail"]
_PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left_cheek", "left_eye", "left_leg",
          "left_wing", "nape", "right_cheek", "right_eye", "right_leg", "right_wing", "tail", "throat"]


@dataclass(frozen=True)
class RehearsalParams:
    """What the fixture tree holds (recorded in ``REHEARSAL.json``)."""

    per_class: int = 3  # test images per class; the training parts get max(3, per_class) or more per class
    birdsnap_per_class: int = 3  # non-test images per species in images.txt (+1 in test_images.txt)
    birdsnap_species: int = 500  # Birdsnap's 500; fewer (the first N of species.txt) for a quick CI tree
    cc3m_pairs: int = 240  # image+caption pairs img2dataset "downloaded"
    cc3m_layout: str = "webdataset"  # webdataset | files (img2dataset --output_format)
    flickr_images: int = 60  # split like Karpathy's 6,000/1,000/1,000 (here 4/6, 1/6, 1/6)
    max_side: int = 0  # 0: real sizes (CC3M 256 short side, RESISC45 256, Flickr/Birdsnap ~500); else a cap
    seed: int = 0

    def __post_init__(self):
        if self.cc3m_layout not in ("webdataset", "files"):
            raise ConfigError(f"cc3m_layout {self.cc3m_layout!r}: use 'webdataset' or 'files'")
        if self.per_class < 1 or self.birdsnap_per_class < 3 or self.cc3m_pairs < 2 or self.flickr_images < 6:
            raise ConfigError("per_class must be >= 1, birdsnap_per_class >= 3 (fine-tuning's 80/20 train/val split "
                             "needs 3 non-test images per class), cc3m_pairs >= 2, flickr_images >= 6")
        if not 2 <= self.birdsnap_species <= 500:
            raise ConfigError(f"birdsnap_species {self.birdsnap_species}: use 2..500 (Birdsnap has 500 species)")


# ----------------------------------------------------------------------------- images
def _size(p: RehearsalParams, w: int, h: int) -> tuple[int, int]:
    if p.max_side and max(w, h) > p.max_side:
        s = p.max_side / max(w, h)
        return max(16, round(w * s)), max(16, round(h * s))
    return w, h


def _font(px: int):
    try:
        return ImageFont.load_default(size=max(8, px))
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def class_image(text: str, k: int, n_classes: int, w: int, h: int, rng: np.random.Generator,
                grey: bool = False) -> Image.Image:
    """Noise around a class colour, a class shape, and the class name written on it."""
    hue = (k * 0.618034) % 1.0
    base = np.array([np.sin(2 * np.pi * (hue + t)) for t in (0, 1 / 3, 2 / 3)]) * 80 + 128
    small = np.clip(base + rng.normal(0, 30, (max(2, h // 8), max(2, w // 8), 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR)  # smooth noise: small JPEGs
    d = ImageDraw.Draw(img)
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    r = min(w, h) * rng.uniform(0.2, 0.3)
    fill = tuple(int(255 - c) for c in base)
    box = (cx - r, cy - r, cx + r, cy + r)
    [d.ellipse, d.rectangle, lambda b, fill: d.polygon([(b[0], b[3]), ((b[0] + b[2]) / 2, b[1]), (b[2], b[3])],
                                                       fill=fill)][k % 3](box, fill=fill)
    d.text((max(1, w * 0.05), max(1, h * 0.05)), text, fill=(255, 255, 255), font=_font(max(8, h // 8)))
    return img.convert("L") if grey else img


def _digit(k: int, rng: np.random.Generator) -> np.ndarray:
    """A 28 x 28 MNIST-like digit: white on black, centred, jittered."""
    img = Image.new("L", (28, 28), 0)
    d = ImageDraw.Draw(img)
    d.text((14 + rng.integers(-2, 3), 14 + rng.integers(-2, 3)), str(k), fill=255, font=_font(20), anchor="mm")
    return np.asarray(img, dtype=np.uint8)


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _scene(spec_rng_seed: int, i: int, w: int, h: int) -> tuple[Image.Image, list[str]]:
    """A rendered synthetic scene (its true captions) pasted on a noise canvas of w x h."""
    params = synthetic.CorpusParams(n=1, image_size=min(w, h), seed=spec_rng_seed * 100_003 + i)
    spec = synthetic.scene_specs(params)[0]
    arr, spec["boxes"] = synthetic.render(spec, min(w, h))
    caps = synthetic.describe(spec, np.random.default_rng([spec_rng_seed, i]), 5)
    rng = np.random.default_rng([spec_rng_seed, i, 1])
    noise = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    canvas = Image.fromarray(noise, "RGB").resize((w, h), Image.Resampling.BILINEAR)
    canvas.paste(Image.fromarray(arr, "RGB"), ((w - arr.shape[1]) // 2, (h - arr.shape[0]) // 2))
    return canvas, caps


# ----------------------------------------------------------------------------- writers
def _write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar(root: Path, name: str, p: RehearsalParams) -> dict:
    """CIFAR-10 (5 train batches + test_batch + batches.meta) or CIFAR-100 (train, test, meta)."""
    folder = formats.CIFAR_LAYOUT[name][0]
    base = Path(root) / folder
    base.mkdir(parents=True, exist_ok=True)
    n_cls = 10 if name == "cifar10" else 100
    names = CIFAR10_META_NAMES if name == "cifar10" else [c.replace(" ", "_") for c in classnames_for("cifar100")]
    rng = np.random.default_rng([p.seed, n_cls])

    def batch(n_per_class: int, label: str) -> dict:
        labels = np.tile(np.arange(n_cls), n_per_class)
        rng.shuffle(labels)
        data = np.stack([np.asarray(class_image(names[k][:4], k, n_cls, 32, 32, rng)).transpose(2, 0, 1).reshape(-1)
                         for k in labels]).astype(np.uint8)
        files = [f"{names[k]}_s_{rng.integers(10**6):06d}.png" for k in labels]
        d = {"batch_label": label, "data": data, "filenames": files}
        if name == "cifar10":
            d["labels"] = [int(k) for k in labels]
        else:
            d["fine_labels"] = [int(k) for k in labels]
            d["coarse_labels"] = [int(k) % 20 for k in labels]
        return d

    counts = {}
    if name == "cifar10":
        for i in range(1, 6):
            b = batch(p.per_class, f"training batch {i} of 5")
            _write_pickle(base / f"data_batch_{i}", b)
        _write_pickle(base / "test_batch", batch(p.per_class, "testing batch 1 of 1"))
        _write_pickle(base / "batches.meta", {"num_cases_per_batch": n_cls * p.per_class, "label_names": names,
                                              "num_vis": 3072})
        (base / "readme.html").write_text("<meta HTTP-EQUIV=\"REFRESH\" content=\"0; "
                                          "url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n")
        counts = {"train": 5 * n_cls * p.per_class, "test": n_cls * p.per_class}
    else:
        n_train = max(3, p.per_class)  # fine-tuning splits the train part 80/20 per class: 3 leave 1 for val
        _write_pickle(base / "train", batch(n_train, "training batch 1 of 1"))
        _write_pickle(base / "test", batch(p.per_class, "testing batch 1 of 1"))
        _write_pickle(base / "meta", {"fine_label_names": names, "coarse_label_names": CIFAR100_COARSE})
        counts = {"train": n_cls * n_train, "test": n_cls * p.per_class}
    return counts


def write_mnist(root: Path, p: RehearsalParams) -> dict:
    """``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` and their ``.gz``."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, n_per in (("train", max(3, 2 * p.per_class)), ("test", p.per_class)):
        rng = np.random.default_rng([p.seed, 28, len(split)])
        labels = np.tile(np.arange(10), n_per)
        rng.shuffle(labels)
        images = np.stack([_digit(int(k), rng) for k in labels])
        img_name, lab_name = formats.MNIST_FILES[split]
        for fname, arr in ((img_name, images), (lab_name, labels.astype(np.uint8))):
            formats.write_idx(raw / f"{fname}.gz", arr)
            formats.write_idx(raw / fname, arr)
        counts[split] = len(labels)
    return counts


def write_resisc45(root: Path, p: RehearsalParams) -> dict:
    """``resisc45/NWPU-RESISC45/<class>/<class>_NNN.jpg`` + torchgeo's split files."""
    base = Path(root) / "resisc45"
    folders = [c.replace(" ", "_") for c in classnames_for("resisc45")]
    rng = np.random.default_rng([p.seed, 45])
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    w, h = _size(p, 256, 256)
    for k, folder in enumerate(folders):
        d = base / "NWPU-RESISC45" / folder
        d.mkdir(parents=True, exist_ok=True)
        n_rest = max(3, 2 * p.per_class)  # torchgeo's train + val (the kit fine-tunes on them, 80/20)
        for i in range(1, p.per_class + n_rest + 1):
            fname = f"{folder}_{i:03d}.jpg"
            (d / fname).write_bytes(_jpeg(class_image(folder.replace("_", " "), k, 45, w, h, rng)))
            part = "test" if i <= p.per_class else "val" if i % 2 == 0 else "train"
            splits[part].append(fname)
    for s, names in splits.items():
        (base / f"resisc45-{s}.txt").write_text("\n".join(names) + "\n")
    return {s: len(v) for s, v in splits.items()}


def birdsnap_species() -> list[tuple[str, str]]:
    """500 generated (common name, dir) pairs shaped like Birdsnap's ("Say's Phoebe" -> "Says_Phoebe")."""
    out = []
    for a in _BIRD_WORDS:
        for b in _BIRD_KINDS:
            common = f"{a} {b}"
            out.append((common, common.replace("'", "").replace(" ", "_")))
    return out[:500]


def write_birdsnap(root: Path, p: RehearsalParams) -> dict:
    """The Birdsnap tgz's text files and what get_birdsnap.py downloads into ``download/images``."""
    base = Path(root) / "birdsnap"
    images_dir = base / "download" / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    species = birdsnap_species()[: p.birdsnap_species]
    rng = np.random.default_rng([p.seed, 500])
    with open(base / "species.txt", "w", encoding="utf-8") as fh:
        fh.write("id\tcommon\tscientific\tdir\n")
        for k, (common, dirname) in enumerate(species, 1):
            fh.write(f"{k}\t{common}\tAvis {dirname.lower()}\t{dirname}\n")
    header = ["url", "md5", "path", "species_id", "bb_x1", "bb_y1", "bb_x2", "bb_y2"]
    header += [f"{part}_{ax}" for part in _PARTS for ax in ("x", "y")]
    rows, test, ok, fail = [], [], [], []
    for k, (common, dirname) in enumerate(species, 1):
        (images_dir / dirname).mkdir(exist_ok=True)
        for i in range(p.birdsnap_per_class + 1):
            rel = f"{dirname}/{rng.integers(10**9):09d}.jpg"
            w, h = _size(p, int(rng.integers(400, 640)), int(rng.integers(300, 480)))
            blob = _jpeg(class_image(common, k, 500, w, h, rng))
            url = f"http://farm{k % 9 + 1}.staticflickr.com/{k}/{rel.split('/')[1]}"
            rows.append([url, _md5(blob), rel, str(k), "10", "12", str(w - 10), str(h - 12)] + ["-1"] * (2 * len(_PARTS)))
            if i == 0:
                test.append(rel)
            if (k * 7 + i) % 37 == 0:  # a dead link: listed, never downloaded
                fail.append(rel)
                continue
            (images_dir / rel).write_bytes(blob)
            ok.append(rel)
    with open(base / "images.txt", "w", encoding="utf-8") as fh:
        fh.write("\t".join(header) + "\n")
        fh.writelines("\t".join(r) + "\n" for r in rows)
    (base / "test_images.txt").write_text("path\n" + "\n".join(test) + "\n")
    (base / "download" / "success.txt").write_text("\n".join(ok) + "\n")
    (base / "download" / "fail.txt").write_text("\n".join(fail) + "\n")
    return {"listed": len(rows), "downloaded": len(ok), "failed": len(fail), "test_listed": len(test)}


def _md5(blob: bytes) -> str:
    import hashlib

    return hashlib.md5(blob).hexdigest()  # noqa: S324 - Birdsnap's images.txt holds md5 sums


def write_flickr8k(root: Path, p: RehearsalParams) -> dict:
    """Kaggle's ``captions.txt`` + ``Images/`` and the Karpathy split files of Flickr8k_text.zip."""
    base = Path(root) / "flickr8k"
    (base / "Images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([p.seed, 8000])
    names, lines = [], ["image,caption"]
    for i in range(p.flickr_images):
        name = f"{1000000000 + int(rng.integers(10**9))}_{int(rng.integers(16**10)):010x}.jpg"
        w, h = _size(p, 500, int(rng.choice([333, 375, 500])))
        img, caps = _scene(p.seed + 8, i, w, h)
        (base / "Images" / name).write_bytes(_jpeg(img))
        for j, c in enumerate(caps):  # Kaggle's file: unquoted, commas inside captions, " ." endings
            c = c.rstrip(".")
            lines.append(f"{name},{c}, seen from above ." if j == 1 else f"{name},{c} .")
        names.append(name)
    (base / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    n_test = n_dev = p.flickr_images // 6
    parts = {"test": names[:n_test], "dev": names[n_test:n_test + n_dev], "train": names[n_test + n_dev:]}
    for s, v in parts.items():
        (base / f"Flickr_8k.{s}Images.txt").write_text("\n".join(v) + "\n")
    return {s: len(v) for s, v in parts.items()}


def write_cc3m(root: Path, p: RehearsalParams, shard_size: int = 100) -> dict:
    """img2dataset output for a CC3M subset: webdataset shards or the files layout."""
    base = Path(root) / "cc3m"
    base.mkdir(parents=True, exist_ok=True)
    n_written, n_failed, shard, k = 0, 0, 0, 0
    while n_written < p.cc3m_pairs:
        items, stats_fail = [], 0
        for j in range(shard_size):
            if n_written + len(items) >= p.cc3m_pairs:
                break
            key = f"{shard:05d}{j:04d}"
            if (k * 13) % 29 == 5:  # a failed download: a gap in the keys, counted in the stats
                stats_fail += 1
                k += 1
                continue
            rng = np.random.default_rng([p.seed, 3, k])
            ow, oh = int(rng.integers(300, 900)), int(rng.integers(300, 900))
            s = 256 / min(ow, oh)  # --resize_mode keep_ratio --image_size 256
            w, h = _size(p, max(256, round(ow * s)), max(256, round(oh * s)))
            img, caps = _scene(p.seed + 3, k, w, h)
            meta = {"url": f"http://example.invalid/cc3m/{k}.jpg", "caption": caps[0], "key": key,
                    "status": "success", "error_message": None, "width": w, "height": h,
                    "original_width": ow, "original_height": oh, "exif": "{}", "sha256": None}
            items.append((key, _jpeg(img), caps[0], meta))
            k += 1
        if p.cc3m_layout == "webdataset":
            _write_shard(base / f"{shard:05d}.tar", items)
        else:
            d = base / f"{shard:05d}"
            d.mkdir(exist_ok=True)
            for key, blob, cap, meta in items:
                (d / f"{key}.jpg").write_bytes(blob)
                (d / f"{key}.txt").write_text(cap, encoding="utf-8")
                (d / f"{key}.json").write_text(json.dumps(meta))
        (base / f"{shard:05d}_stats.json").write_text(json.dumps({
            "count": len(items) + stats_fail, "successes": len(items), "failed_to_download": stats_fail,
            "failed_to_resize": 0, "status_dict": {"success": len(items), "HTTP Error 404": stats_fail}}, indent=4))
        n_written += len(items)
        n_failed += stats_fail
        shard += 1
    return {"pairs": n_written, "failed": n_failed, "shards": shard, "layout": p.cc3m_layout}


def _write_shard(path: Path, items) -> None:
    with tarfile.open(path, "w") as tf:
        for key, blob, cap, meta in items:
            for ext, data in (("jpg", blob), ("txt", cap.encode("utf-8")), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


WRITERS = {
    "cc3m": write_cc3m,
    "cifar10": lambda root, p: write_cifar(root, "cifar10", p),
    "cifar100": lambda root, p: write_cifar(root, "cifar100", p),
    "mnist": write_mnist,
    "resisc45": write_resisc45,
    "birdsnap": write_birdsnap,
    "flickr8k": write_flickr8k,
}
#: the folder each writer owns under the root (removed before a rewrite)
FOLDERS = {"cc3m": "cc3m", "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "mnist": "MNIST",
           "resisc45": "resisc45", "birdsnap": "birdsnap", "flickr8k": "flickr8k"}


def read_marker(root: Path) -> dict | None:
    try:
        return json.loads((Path(root) / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def make_rehearsal_tree(root: Path, params: RehearsalParams | None = None, force: bool = False,
                        log=print) -> dict:
    """Write every paper set's fixture under ``root``; a no-op when ``REHEARSAL.json`` matches."""
    import time

    root = Path(root)
    params = params or RehearsalParams()
    wanted = {"version": LAYOUT_VERSION, "params": asdict(params)}
    marker = read_marker(root)
    if not force and marker and {k: marker.get(k) for k in wanted} == wanted:
        log(f"rehearsal fixtures already in {root} ({MARKER} matches); nothing to do")
        return marker
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)  # written last: a half-written tree is never "ready"
    counts, t0 = {}, time.perf_counter()
    for name, writer in WRITERS.items():
        shutil.rmtree(root / FOLDERS[name], ignore_errors=True)
        t = time.perf_counter()
        counts[name] = writer(root, params)
        log(f"{name}: {counts[name]} ({time.perf_counter() - t:.1f} s) -> {root / FOLDERS[name]}")
    out = {**wanted, "counts": counts, "seconds": round(time.perf_counter() - t0, 1)}
    fileio.atomic_write(root / MARKER, json.dumps(out, indent=2) + "\n")
    log(f"wrote rehearsal fixtures for {len(counts)} sets in {out['seconds']} s; "
        f"check each with: python -m contextclip data prepare NAME --root {root}")
    return out


def gz_only(root: Path) -> None:
    """Remove the unpacked MNIST idx files, leaving the ``.gz`` (as a manual download would)."""
    raw = Path(root) / "MNIST" / "raw"
    for pair in formats.MNIST_FILES.values():
        for f in pair:
            if (raw / f"{f}.gz").is_file():
                (raw / f).unlink(missing_ok=True)

