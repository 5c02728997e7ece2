"""``data prepare NAME``: fetch what can be fetched, say exactly what to place where otherwise,
then verify by loading the set and printing the real counts.

- embedded sets: generated/loaded and cached; counts printed;
- CIFAR-10/100, MNIST: ``torchvision.datasets.*(download=True)`` (needs internet);
- CC3M: img2dataset on a subset of the Google TSV found in ``ROOT/cc3m/`` (the exact command is
  printed when img2dataset is not installed);
- RESISC45, Birdsnap, Flickr8k: manual downloads; the instructions name the files and folders.

Every function returns an exit code (0 = the set is there and loads).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from contextclip.config import Config
from contextclip.data import registry, synthetic
from contextclip.data.audit import audit
from contextclip.errors import DatasetError, UnknownDatasetError
from contextclip.data.sets import CaptionSet, DatasetMissing

MANUAL = {
    "resisc45": """RESISC45 (NWPU-RESISC45, 31,500 images, 45 classes x 700, 256x256) is a manual download.
  1. Get NWPU-RESISC45.rar from the authors' OneDrive link (https://gcheng-nwpu.github.io/#Datasets),
     or the zip that torchgeo uses (https://huggingface.co/datasets/torchgeo/resisc45, NWPU-RESISC45.zip).
  2. Unpack it so that the class folders are here:
       {root}/resisc45/airplane/airplane_001.jpg ... {root}/resisc45/wetland/wetland_700.jpg
     (a {root}/resisc45/NWPU-RESISC45/<class>/ level is also accepted).
  3. Optional official split: put torchgeo's resisc45-test.txt (6,300 names) in {root}/resisc45/;
     without it the whole set is the zero-shot test set and fine-tuning splits it 70/20/10.""",
    "birdsnap": """Birdsnap v1.1 is a list of Flickr URLs (many are dead now; expect fewer than 49,829 images).
  1. Download http://thomasberg.org/datasets/birdsnap/1.1/birdsnap.tgz and unpack it to {root}/birdsnap/
     (species.txt, images.txt, test_images.txt, get_birdsnap.py).
  2. cd {root}/birdsnap && python get_birdsnap.py     (downloads into download/images/<species dir>/,
     and lists what it got in download/success.txt and fail.txt)
     The kit reads {root}/birdsnap/download/images/<dir>/*.jpg (or images/<dir>/), class names from
     species.txt (common names, apostrophes dropped, hyphens as spaces) and the test split from
     test_images.txt.
  3. Check it: python -m contextclip data prepare birdsnap --root {root} --allow-missing
     (dead links make the splits smaller than images.txt says; the missing ones are counted and named).""",
    "flickr8k": """Flickr8k is a manual download (Kaggle account needed).
  1. kaggle datasets download -d adityajn105/flickr8k   (or the Kaggle web page), and unzip it to
     {root}/flickr8k/ so that there are {root}/flickr8k/captions.txt and {root}/flickr8k/Images/*.jpg (8,091).
  2. Karpathy split (1,000 test images): put Flickr_8k.testImages.txt (and trainImages/devImages)
     from Flickr8k_text.zip, or Karpathy's dataset_flickr8k.json, in {root}/flickr8k/.""",
}


def _cfg(root: Path, image_size: int = 32) -> Config:
    return Config().updated({"data_root": str(root), "image_size": image_size})


def verify(name: str, root: Path, allow_missing: bool = False) -> int:
    """Audit the set against its official lists (``data/audit.py``), then load it and print the counts.

    A damaged file raises ``DatasetError`` naming it; a split smaller than its list raises one too,
    unless ``allow_missing`` (``--allow-missing``): then the missing items are printed and it goes on.
    """
    report = audit(name, root)
    if report is not None:
        for line in report.lines:
            print(f"{name}: {line}")
        if report.shrinks and not allow_missing:
            raise DatasetError(
                f"{name} under {root} is incomplete: {'; '.join(report.shrinks)} (the lines above name them). Put "
                "the missing files in place, or pass --allow-missing to use what is there (the numbers are then "
                "not on the official split)")
        if report.shrinks:
            print(f"{name}: going on without the missing items (--allow-missing): {'; '.join(report.shrinks)}")
    cfg = _cfg(root)
    kind = registry.DATASETS[name].kind
    try:  # classification sets: every image, so that the official split (if any) is reported
        ds = registry.get_dataset(name, cfg, split="test" if kind == "captions" else "all")
    except DatasetMissing as exc:
        print(f"missing: {exc}")
        return 1
    if isinstance(ds, CaptionSet):
        n_caps = sum(len(c) for c in ds.captions)
        what = "test split" if name == "flickr8k" else "loaded"
        print(f"{name}: ready: {len(ds)} images ({what}), {n_caps} captions (found on disk: {ds.n_found})")
    else:
        counts = np.bincount(ds.labels.numpy(), minlength=len(ds.classnames))
        splits = {k: len(v) for k, v in (ds.splits or {}).items()}
        print(f"{name}: ready: {len(ds)} images, {len(ds.classnames)} classes, per class min {counts.min()} "
              f"max {counts.max()}" + (f", official splits {splits}" if splits else ", no official split"))
    return 0


def prepare_synthetic(root: Path, params: synthetic.CorpusParams | None = None) -> int:
    """Generate (or find in the cache) one corpus; by default the embedded profile's."""
    if params is None:
        from contextclip.config import load_config

        params = synthetic.params_for(load_config("embedded"))
    c = synthetic.load_or_generate(params, root)
    st = synthetic.corpus_stats(c)
    print(f"synthetic: {st['n_images']} images, {st['distinct_captions']} distinct captions of {st['n_captions']}, "
          f"kinds {st['kinds']}, cache {synthetic.cache_path(c.params, root)}")
    return 0


def prepare_torchvision(name: str, root: Path) -> int:
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST}[name]
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        print(f"download of {name} failed ({type(exc).__name__}: {exc}).\n"
              f"Without internet: copy the files a machine with internet downloaded with\n"
              f"  python -m contextclip data prepare {name} --root {root}\n"
              f"into {root} (the kit expects {root}/{registry.DATASETS[name].expects}).")
        return 1
    return verify(name, root)


def img2dataset_command(tsv: Path, out: Path, processes: int = 8) -> list[str]:
    return ["img2dataset", "--url_list", str(tsv), "--input_format", "tsv", "--url_col", "url",
            "--caption_col", "caption", "--output_format", "webdataset", "--output_folder", str(out),
            "--image_size", "256", "--resize_mode", "keep_ratio", "--processes_count", str(processes),
            "--thread_count", "32", "--enable_wandb", "False"]


def cc3m_subset_tsv(tsv: Path, out: Path, n_rows: int, seed: int = 0) -> int:
    """Write ``n_rows`` rows of the Google TSV (``caption<TAB>url``, no header) chosen by seed,
    with the header img2dataset needs. Returns the number of rows written."""
    lines = [ln for ln in tsv.read_text(encoding="utf-8", errors="replace").splitlines() if "\t" in ln]
    if lines and lines[0].lower().startswith("caption\turl"):
        lines = lines[1:]
    idx = np.sort(np.random.default_rng([seed, len(lines)]).permutation(len(lines))[:n_rows])
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("caption\turl\n")
        for i in idx:
            fh.write(lines[i] + "\n")
    return len(idx)


def prepare_cc3m(root: Path, n_pairs: int = 6000, allow_missing: bool = False) -> int:
    base = root / "cc3m"
    if registry.DATASETS["cc3m"].present(root):
        return verify("cc3m", root, allow_missing)
    base.mkdir(parents=True, exist_ok=True)
    tsvs = sorted(p for p in base.glob("*.tsv") if not p.name.startswith("subset"))
    if not tsvs:
        print(f"CC3M: put Google's Train_GCC-training.tsv (https://ai.google.com/research/ConceptualCaptions/download)\n"
              f"in {base}/ and run this command again. It will pick {2 * n_pairs} rows by seed (twice the\n"
              f"{n_pairs} pairs needed, because many links are dead) and download them with img2dataset.")
        return 1
    subset = base / f"subset_seed0_{2 * n_pairs}.tsv"
    n = cc3m_subset_tsv(tsvs[0], subset, 2 * n_pairs)
    cmd = img2dataset_command(subset, base)
    print(f"CC3M: {n} rows chosen from {tsvs[0].name} -> {subset.name}")
    if shutil.which("img2dataset") is None:
        print("img2dataset is not installed. Install it and run:\n  pip install img2dataset\n  " + " ".join(cmd))
        return 1
    print("running: " + " ".join(cmd))
    rc = subprocess.call(cmd)
    if rc != 0:
        print(f"img2dataset exited with {rc}")
        return rc
    return verify("cc3m", root, allow_missing)


def prepare(name: str, root: Path, allow_missing: bool = False) -> int:
    """Fetch or check dataset ``name`` under ``root``: 0 when it is there and whole, 1 when it must be fetched
    (the instructions are printed); a damaged file or an incomplete split raises ``DatasetError`` (exit 2)."""
    root = Path(root)
    if name not in registry.DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(registry.DATASETS))}")
    if name == "synthetic":
        return prepare_synthetic(root)
    spec = registry.DATASETS[name]
    if spec.embedded:
        return verify(name, root)
    if name in ("cifar10", "cifar100", "mnist"):
        if spec.present(root):
            return verify(name, root, allow_missing)
        return prepare_torchvision(name, root)
    if name == "cc3m":
        return prepare_cc3m(root, allow_missing=allow_missing)
    if spec.present(root):
        return verify(name, root, allow_missing)
    print(MANUAL[name].format(root=root))
    return 1
