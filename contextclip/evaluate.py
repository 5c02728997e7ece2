"""Evaluation of one trained run: cached embeddings, then one task, then rows in metrics.csv.

What it is:
- ``embed_dataset(run_dir, name)``: encodes an evaluation set once per (run, dataset) and caches
  it in ``run_dir/embeddings/<name>.pt``, keyed by a fingerprint of the checkpoint (its SHA-256),
  the dataset name, what it reads from disk (``registry.source_digest``: every file's path, size
  and mtime), ``eval_max_images`` and ``image_size``: a retrained run or a changed file invalidates it.
  Classification sets: joint-space image embeddings, tower features (for the probe), labels,
  class-prompt embeddings (Table 1) and per-prompt embeddings (Fig. 7), official splits.
  Caption sets: each image embedded once, every caption embedded, and each caption's image index;
  generated sets also the attribute matches (bool [n_captions, n_images]: the image satisfies what
  the caption states) and each caption's claim (JSON).
- ``evaluate_run(run_dir, task, dataset)``: runs ``zero_shot`` / ``fine_tune`` / ``linear_probe`` /
  ``retrieval`` and appends (method, seed, task, dataset, metric, value, n, run, checkpoint) rows to
  ``results/<profile>/metrics.csv`` (replacing the same run's earlier rows, never another run's),
  holding the results folder's lock (``contextclip/lock.py``), plus per-item
  correctness for the single-seed bootstrap. A missing dataset raises ``DatasetMissing`` unless
  ``missing_datasets: skip``, which records a ``"not run: missing"`` row instead.

What it is not: no metric arithmetic (``zeroshot``, ``retrieval``, ``finetune``) and no tables
(``results``). Figures read the caches written here and never call the encoders.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from contextclip import fileio
from contextclip.config import REPO_ROOT, TASKS, Config, ConfigError, config_from_json, read_json
from contextclip.data import DatasetMissing
from contextclip.encoding import encode_images, encode_texts, image_features
from contextclip.errors import DatasetError, MissingFileError
from contextclip.finetune import fine_tune, linear_probe, make_splits
from contextclip.image_cache import embed_features, frozen_tower_features, image_embeddings
from contextclip.layout import paths_for, resolve_root
from contextclip.lock import folder_lock
from contextclip.results import NOT_RUN
from contextclip.results_io import append_metrics, save_per_item
from contextclip.retrieval import EXACT_SUFFIX, caption_positives, recall_and_chance
from contextclip.runs import CHECKPOINT, CONFIG, SUMMARY, check_checkpoint, load_trained, read_summary
from contextclip.schemas import Choice, damaged, problem
from contextclip.zeroshot import GENERIC_TEMPLATES, chance_levels, class_embeddings, zero_shot_from_embeddings

__all__ = ["TASKS", "CACHE_VERSION", "embed_dataset", "evaluate_run", "run_identity", "checkpoint_fingerprint",
           "results_dir_for", "load_embeddings", "cache_path"]

CACHE_VERSION = 3  # 2: the key covers the dataset's files; 3: caption sets hold attribute matches
#: what every embedding cache holds (``embed_dataset``); one that does not is recomputed, or named by ``load_embeddings``
EMBEDDINGS_CACHE = {"fingerprint": str, "dataset": str, "checkpoint": str, "kind": Choice("captions", "classification"),
                    "image": torch.Tensor}


# --------------------------------------------------------------------------- run folder
def run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise MissingFileError(f"{path} does not exist: {run_dir} is not a training run folder "
                                "(train one with `python -m contextclip train ... --out DIR`)")
    return config_from_json(path)


def run_identity(run_dir: Path) -> tuple[str, int]:
    """(method, seed) from ``summary.json``, else from the folder name ``<method>-seed<k>``."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).exists():
        s = read_summary(run_dir)
        return s["method"], s["seed"]
    m = re.fullmatch(r"(clip|contextclip)-seed(\d+)", run_dir.name)
    if not m:
        raise ConfigError(f"{run_dir}: no summary.json with method/seed and the folder name is not "
                         "'<method>-seed<k>'; finish training or rename the folder")
    return m.group(1), int(m.group(2))


def _identity_or_none(run_dir: Path) -> tuple[str, int] | None:
    """``run_identity`` when the folder says it (summary or ``<method>-seed<k>`` name), else None."""
    try:
        return run_identity(run_dir)
    except ConfigError:
        return None


def checkpoint_fingerprint(run_dir: Path) -> str:
    """SHA-256 of ``checkpoint.pt`` (memoised by size and mtime in ``embeddings/fingerprint.json``)."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if not ckpt.exists():
        raise MissingFileError(f"{ckpt} does not exist; train the run before evaluating it")
    st = ckpt.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    memo = run_dir / "embeddings" / "fingerprint.json"
    try:
        d = json.loads(memo.read_text()) if memo.exists() else {}
    except (OSError, ValueError):  # a damaged memo is recomputed
        d = {}
    if isinstance(d, dict) and d.get("stamp") == stamp and isinstance(d.get("sha256"), str):
        return d["sha256"]
    h = hashlib.sha256()
    with open(ckpt, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    memo.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write(memo, json.dumps({"stamp": stamp, "sha256": h.hexdigest()}))
    return h.hexdigest()


def results_dir_for(cfg: Config) -> Path:
    return paths_for(cfg.profile).results


def _device(cfg: Config) -> torch.device:
    if cfg.train.device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


# --------------------------------------------------------------------------- datasets
def _get_dataset(name: str, cfg: Config):
    """Classification sets: every image ('all', official splits in ``splits``); caption sets: the test split.

    The registry applies ``eval_max_images`` (a deterministic subset per split).
    """
    from contextclip.data.registry import DATASETS, get_dataset

    kind = DATASETS[name].kind if name in DATASETS else None
    return get_dataset(name, cfg, split="test" if kind == "captions" else "all")


def _classification_view(ds):
    """The fields evaluation needs, with official splits (if any) as index tensors."""
    labels = torch.as_tensor(ds.labels, dtype=torch.long)
    splits = None
    if getattr(ds, "splits", None):
        splits = {k: torch.as_tensor(v, dtype=torch.long) for k, v in ds.splits.items() if v is not None}
    return SimpleNamespace(name=ds.name, images=ds.images, labels=labels, classnames=list(ds.classnames),
                           templates=list(ds.templates), splits=splits)


def _is_caption_set(ds) -> bool:
    return hasattr(ds, "captions") and not hasattr(ds, "labels")


# --------------------------------------------------------------------------- embeddings cache
def cache_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "embeddings" / f"{name}.pt"


def load_embeddings(run_dir: Path, name: str) -> dict:
    """The cached embeddings of one dataset, without checking the fingerprint (for plots)."""
    path = cache_path(run_dir, name)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist; run `python -m contextclip evaluate --run {run_dir} "
                                f"--task zero_shot --dataset {name}` (or retrieval for caption sets) first")
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - cut short, not a torch file
        raise ConfigError(f"embedding cache {path} is damaged ({type(exc).__name__}); delete it and rerun the "
                          "evaluation (or the notebook) that writes it") from None
    bad = problem(cached, EMBEDDINGS_CACHE)
    if bad:
        raise damaged(path, bad, "delete it and rerun the evaluation (or the notebook) that writes it")
    return cached


def _load_cache(path: Path) -> dict | None:
    """The cache at ``path``, or None when it cannot be read (cut short, not a torch file: it is recomputed)."""
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        print(f"embedding cache {path} is damaged ({type(exc).__name__}); recomputing it", file=sys.stderr)
        return None
    bad = problem(cached, EMBEDDINGS_CACHE)
    if bad:
        print(f"embedding cache {path} is damaged ({bad}); recomputing it", file=sys.stderr)
        return None
    return cached


def _cache_key(run_dir: Path, name: str, cfg: Config) -> tuple[dict, str]:
    """What an embedding cache depends on, and its SHA-256 fingerprint."""
    from contextclip.data.registry import source_digest

    key = {"version": CACHE_VERSION, "checkpoint": checkpoint_fingerprint(run_dir), "dataset": name,
           "source": source_digest(name, cfg.data.data_root),
           "eval_max_images": cfg.data.eval_max_images, "image_size": cfg.data.image_size}
    return key, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def embed_dataset(run_dir: Path, name: str, cfg: Config | None = None, *, model=None, dataset=None,
                  force: bool = False) -> dict:
    """Cached embeddings of dataset ``name`` for the run in ``run_dir`` (computed on a cache miss only).

    ``model`` / ``dataset`` may be given to skip loading them (tests, notebooks that hold them).
    """
    run_dir = Path(run_dir)
    cfg = cfg or run_config(run_dir)
    key, fingerprint = _cache_key(run_dir, name, cfg)
    path = cache_path(run_dir, name)
    if path.exists() and not force:
        cached = _load_cache(path)
        if cached is not None and cached.get("fingerprint") == fingerprint:
            return cached
    if dataset is None:
        dataset = _get_dataset(name, cfg)
        key, fingerprint = _cache_key(run_dir, name, cfg)  # building may add files (MNIST's .gz unpacked)
    if model is None:
        model, _ = load_trained(run_dir, device=_device(cfg), expect=_identity_or_none(run_dir))
    bs = cfg.eval.eval_batch_size
    out: dict = {"fingerprint": fingerprint, "dataset": name, "checkpoint": key["checkpoint"]}
    if _is_caption_set(dataset):
        captions = [list(c) for c in dataset.captions]
        if any(len(c) == 0 for c in captions):
            raise DatasetError(f"dataset {name}: some images have no caption; every image needs at least one")
        flat = [c for caps in captions for c in caps]
        image = image_embeddings(model, dataset.images, resolve_root(cfg.data.data_root), bs, _images_key(key))
        out.update(kind="captions", index=torch.arange(len(captions)),
                   image=image,  # each image once
                   text=encode_texts(model, flat, bs), captions=flat,
                   text_image=torch.as_tensor([i for i, caps in enumerate(captions) for _ in caps]))
        matches = dataset.attribute_matches() if hasattr(dataset, "attribute_matches") else None
        if matches is not None:  # generated sets: every image that satisfies what a caption states
            out.update(attribute_matches=torch.from_numpy(matches),
                       claims=[json.dumps(c, sort_keys=True) for claims in dataset.claims for c in claims])
    else:
        view = _classification_view(dataset)
        class_emb, prompt_emb = class_embeddings(model, view.classnames, view.templates, bs, return_prompts=True)
        # Fig. 7 points: every class name in the dataset's templates and in a fixed generic list
        tsne_templates = list(dict.fromkeys(list(view.templates) + list(GENERIC_TEMPLATES)))
        if tsne_templates[: len(view.templates)] == list(view.templates):  # own prompts: already in prompt_emb
            extra = tsne_templates[len(view.templates):]
            tsne_emb = prompt_emb if not extra else torch.cat(
                [prompt_emb, class_embeddings(model, view.classnames, extra, bs, return_prompts=True)[1]], dim=1)
        else:  # a template list with repeats: encode the deduplicated list as it is
            _, tsne_emb = class_embeddings(model, view.classnames, tsne_templates, bs, return_prompts=True)
        same = (getattr(dataset, "info", None) or {}).get("same_images_as")
        shared = _shared_image_embeddings(run_dir, key["checkpoint"], same)
        image, features = shared if shared is not None else _image_embeddings_and_features(
            model, view.images, bs, cfg, _images_key(key))
        out.update(kind="classification", image=image, features=features,
                   labels=view.labels, classnames=view.classnames, templates=view.templates,
                   class_emb=class_emb, prompt_emb=prompt_emb,
                   tsne_text_emb=tsne_emb.reshape(-1, tsne_emb.shape[-1]),
                   tsne_text_labels=torch.arange(len(view.classnames)).repeat_interleave(len(tsne_templates)),
                   splits=view.splits)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.torch_save(out, path)
    return out


def _images_key(key: dict) -> dict:
    """What a dataset's images depend on (its file-list digest, cap and size): the embedding cache's
    key without the checkpoint, for the shared image-feature cache."""
    return {k: v for k, v in key.items() if k not in ("checkpoint", "version")}


def _image_embeddings_and_features(model, images, bs: int, cfg: Config | None = None,
                                   images_key: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(joint-space embeddings, tower features) of every image, with ONE pass of the image tower:
    the embeddings are the head applied to the features (``encode_image`` = head(tower(x))).
    A frozen image tower's features come from the disk cache that every run of the profile shares
    (``contextclip.image_cache``); only the head runs per run.
    Models without ``embed_image_features`` (test fakes) are encoded twice."""
    feats = frozen_tower_features(model, images, resolve_root(cfg.data.data_root) if cfg is not None else None, bs,
                                  images_key)
    if feats is None:
        feats = image_features(model, images, bs)
    if not hasattr(model, "embed_image_features"):
        return encode_images(model, images, bs), feats
    return embed_features(model, feats, bs), feats


def _splits_of(dataset: str, labels, official, seed: int) -> dict:
    """``make_splits`` with the dataset named in its error (e.g. a split left empty by too few images)."""
    try:
        return make_splits(labels, official, seed)
    except ValueError as exc:
        counts = np.bincount(np.asarray(torch.as_tensor(labels)))
        raise DatasetError(f"dataset {dataset}: {exc} (images per class: min {counts.min()}, max {counts.max()}; "
                         "the 80/20 train/val split of the non-test images needs about 3 per class)") from None


def _shared_image_embeddings(run_dir: Path, checkpoint: str, same_images_as: str | None):
    """(embeddings, features) from the cache of the set whose images these are (the same digits
    with other prompts: ``info["same_images_as"]``), if it holds this checkpoint's; else None."""
    if not same_images_as:
        return None
    other = cache_path(run_dir, same_images_as)
    if not other.exists():
        return None
    cached = _load_cache(other)  # a damaged one is not shared (this set's images are encoded again)
    if cached is not None and cached.get("checkpoint") == checkpoint and cached.get("kind") == "classification" \
            and "features" in cached:
        return cached["image"], cached["features"]
    return None


# --------------------------------------------------------------------------- tasks
def _zero_shot_index(cache: dict) -> torch.Tensor:
    splits = cache.get("splits")
    if splits and splits.get("test") is not None and len(splits["test"]):
        return torch.as_tensor(splits["test"])  # the official test split
    return torch.arange(len(cache["labels"]))


def _rows(method: str, seed: int, task: str, dataset: str, metrics: dict, n: int | dict) -> list[dict]:
    rows = []
    for metric, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            nn = n[metric] if isinstance(n, dict) else n
            rows.append(dict(method=method, seed=seed, task=task, dataset=dataset, metric=metric,
                             value=float(value), n=int(nn)))
    return rows


def run_label(run_dir: Path) -> str:
    """How metrics.csv names a run: its folder relative to the repository, or absolute outside it."""
    p = Path(run_dir).resolve()
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


def evaluate_run(run_dir: Path, task: str, dataset: str, results_dir: Path | None = None,
                 cfg: Config | None = None, *, model=None, data=None, wait: bool = False) -> list[dict]:
    """Evaluate one run on one task and dataset; append the rows to ``<results_dir>/metrics.csv``.

    Holds the results folder's lock: another writer is refused naming the holder (or, with
    ``wait``, waited for). The rows name the run (folder and checkpoint digest).
    """
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not one of {list(TASKS)}")
    run_dir = Path(run_dir)
    cfg = cfg or run_config(run_dir)
    method, seed = run_identity(run_dir)
    if (run_dir / SUMMARY).exists():  # rows are named after the summary: its checkpoint must be the run's
        check_checkpoint(run_dir, read_summary(run_dir), read_json(run_dir / CONFIG),
                         sha256=lambda: checkpoint_fingerprint(run_dir))  # memoised by size and time stamp
    results_dir = Path(results_dir) if results_dir is not None else results_dir_for(cfg)
    with folder_lock(results_dir, "results folder", wait=wait):
        rows = _evaluate(run_dir, task, dataset, results_dir, cfg, method, seed, model, data)
    return rows


def _evaluate(run_dir: Path, task: str, dataset: str, results_dir: Path, cfg: Config, method: str, seed: int,
              model, data) -> list[dict]:
    metrics_csv = results_dir / "metrics.csv"
    run = run_label(run_dir)
    has_ckpt = (run_dir / CHECKPOINT).exists()
    ident = {"run": run, "checkpoint": checkpoint_fingerprint(run_dir)[:12] if has_ckpt else ""}
    try:
        if data is None and (task == "fine_tune" or not cache_path(run_dir, dataset).exists()):
            data = _get_dataset(dataset, cfg)
        cache = embed_dataset(run_dir, dataset, cfg, model=model, dataset=data)
    except DatasetMissing:
        if cfg.data.missing_datasets != "skip":
            raise
        rows = [dict(method=method, seed=seed, task=task, dataset=dataset, metric=NOT_RUN, value=math.nan, n=0,
                     **ident)]
        append_metrics(metrics_csv, rows)
        return rows
    kind = cache["kind"]
    if (task == "retrieval") != (kind == "captions"):
        need = "a caption set" if task == "retrieval" else "a classification set"
        raise ConfigError(f"task {task!r} needs {need}; dataset {dataset!r} is a {kind} set")
    per_item: dict = {}
    if task == "zero_shot":
        idx = _zero_shot_index(cache)
        res = zero_shot_from_embeddings(cache["image"][idx], cache["labels"][idx], cache["class_emb"], per_item=True)
        per_item = res.pop("per_item")
        rows = _rows(method, seed, task, dataset, {k: v for k, v in res.items() if k not in ("n", "n_classes")},
                     res["n"])
    elif task == "linear_probe":
        splits = _splits_of(dataset, cache["labels"], cache.get("splits"), seed)
        res = linear_probe(cache["features"], cache["labels"], splits, seed=seed,
                           n_classes=len(cache["classnames"]), per_item=True)
        per_item = res.pop("per_item")
        metrics = {"top1": res["top1"], **({"top5": res["top5"]} if "top5" in res else {}),
                   **chance_levels(res["n_classes"]), "C": res["C"], "C_bracketed": float(res["C_bracketed"]),
                   "probe_converged": float(res["converged"])}
        rows = _rows(method, seed, task, dataset, metrics, res["n"])
    elif task == "fine_tune":
        if model is None:
            model, _ = load_trained(run_dir, device=_device(cfg), expect=(method, seed))
        view = _classification_view(data)
        splits = _splits_of(dataset, view.labels, view.splits, seed)
        res = fine_tune(model, view, cfg, seed=seed, splits=splits, per_item=True, class_emb=cache["class_emb"])
        per_item = res.pop("per_item")
        metrics = {"top1": res["top1"], **({"top5": res["top5"]} if "top5" in res else {}),
                   **chance_levels(res["n_classes"]), "best_epoch": res["best_epoch"],
                   "epochs_run": res["epochs_run"], "stopped_on_validation": float(res["stopped_on_validation"])}
        rows = _rows(method, seed, task, dataset, metrics, res["n"])
    else:  # retrieval
        image, text, text_image = cache["image"], cache["text"], cache["text_image"]
        ks = tuple(cfg.eval.retrieval_ks)
        scores = text @ image.T
        exact = caption_positives(text_image, image.shape[0], cache["captions"])  # own image, identical text
        matches = cache.get("attribute_matches")
        if matches is None:  # real caption sets: the caption's own image (and identical texts) only
            metrics, per_item = recall_and_chance(scores, exact, ks)
        else:  # generated sets: every image with the stated attributes; the caption-only numbers beside
            metrics, per_item = recall_and_chance(scores, exact | matches, ks)
            m_exact, i_exact = recall_and_chance(scores, exact, ks, suffix=EXACT_SUFFIX)
            metrics, per_item = {**metrics, **m_exact}, {**per_item, **i_exact}
        n = {m: (len(text_image) if "text_to_image" in m else image.shape[0]) for m in metrics}
        rows = _rows(method, seed, task, dataset, metrics, n)
    rows = [{**r, **ident} for r in rows]
    save_per_item(results_dir, method, seed, task, dataset, {k: np.asarray(v) for k, v in per_item.items()}, run)
    append_metrics(metrics_csv, rows)
    return rows



def evaluate_runs(run_dirs, task: str, datasets, results_dir: Path | None = None,
                  cfg: Config | None = None, wait: bool = False,
                  get_dataset: Callable[[str, Config], Any] | None = None,
                  load_model: Callable[..., tuple[Any, Config]] = load_trained) -> list[dict]:
    """``evaluate_run`` for every run and dataset, loading each model and each dataset once.

    ``run_dirs`` is an iterable of run folders. A model is loaded only when some dataset needs it
    (an embedding cache is missing or stale, or the task fine-tunes); datasets are built once and
    shared by the runs. ``get_dataset(name, cfg)`` builds a set (default: the registry's, every
    image of a classification set, the test split of a caption set); ``load_model(run_dir, device=...)``
    loads a run's model (default ``runs.load_trained``). Returns all rows, in run-then-dataset order.
    """
    get_dataset = get_dataset or _get_dataset
    rows: list[dict] = []
    data_cache: dict[str, object] = {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        run_cfg = cfg or run_config(run_dir)
        model = None
        for name in datasets:
            needs_data = task == "fine_tune" or not _cache_is_fresh(run_dir, name, run_cfg)
            data = None
            if needs_data:
                if name not in data_cache:
                    try:
                        data_cache[name] = get_dataset(name, run_cfg)
                    except DatasetMissing:
                        data_cache[name] = None  # evaluate_run raises or records "not run: missing"
                data = data_cache[name]
                if data is not None and model is None:
                    model, _ = load_model(run_dir, device=_device(run_cfg))
            rows += evaluate_run(run_dir, task, name, results_dir, cfg=run_cfg, model=model, data=data, wait=wait)
    return rows


def _cache_is_fresh(run_dir: Path, name: str, cfg: Config) -> bool:
    """True when ``embed_dataset`` would return the cached embeddings without encoding."""
    path = cache_path(run_dir, name)
    if not path.exists():
        return False
    _, fingerprint = _cache_key(run_dir, name, cfg)
    cached = _load_cache(path)
    return cached is not None and cached.get("fingerprint") == fingerprint
