"""The locked-tower regime in a few minutes (notebook 09): both towers frozen, image features cached.

With both towers frozen (the LiT set-up) and fixed images, a run trains only the two linear heads
and the temperature on features computed once per machine (``contextclip.image_cache`` for images,
the text-feature cache for captions), so a handful of seeds of both methods train in a minute or two
on a laptop CPU. This module is what notebook 09 calls:

- ``locked(cfg)``: the profile's config with both towers frozen and no augmentation (the
  ``pretrained`` profile already is);
- ``feature_timing(cfg, train_ds)``: seconds to compute the training images' features once, and
  to read them back from the disk cache;
- ``train_and_score(cfg, seeds, runs_dir, datasets)``: trains CLIP and ContextCLIP for each seed
  (``train.fit``; finished runs are reused) and scores zero-shot top-1 on each dataset;
- ``paired(scores)``: per dataset, both methods' means and ContextCLIP - CLIP paired by seed with its
  95% interval and sign verdict (``contextclip.results``).

What it is not: no new training loop or metric; nothing here writes under ``results/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from contextclip import image_cache, results
from contextclip.config import Config
from contextclip.data.registry import get_dataset, resolve_root
from contextclip.encoding import take_images
from contextclip.model import build_model
from contextclip.runs import load_trained
from contextclip.train import autocast_factory, fit
from contextclip.zeroshot import evaluate_zero_shot

__all__ = ["locked", "feature_timing", "train_and_score", "paired", "datasets_of"]


def locked(cfg: Config) -> Config:
    """``cfg`` with both towers frozen and fixed (unaugmented) training images."""
    return cfg.updated({"freeze_image": True, "freeze_text": True, "augment": False})


def datasets_of(cfg: Config) -> list[str]:
    """The zero-shot sets of the primary endpoints, else the profile's first two zero-shot sets."""
    prim = [e.split("/")[1] for e in cfg.eval.primary_endpoints if e.startswith("zero_shot/")]
    return list(dict.fromkeys(prim)) or list(cfg.data.zero_shot_datasets[:2])


def feature_timing(cfg: Config, train_ds) -> dict:
    """Seconds to compute the frozen image tower's features of ``train_ds`` and to load them from disk
    (the second call of a fresh process reads the file the first one wrote)."""
    model = build_model(cfg).eval()
    root = resolve_root(cfg.data.data_root)
    images = take_images(train_ds, range(len(train_ds)))
    path = image_cache.feature_path(root, image_cache.feature_key(model, images, autocast_factory(model.device, "fp32")))
    had = path.exists()
    image_cache.clear_memory()
    t0 = time.perf_counter()
    feats = image_cache.cached_image_features(model, images, root)
    first = time.perf_counter() - t0
    image_cache.clear_memory()
    t0 = time.perf_counter()
    image_cache.cached_image_features(model, images, root)
    again = time.perf_counter() - t0
    return {"images": len(images), "feature_size": int(feats.shape[1]), "first_call_s": round(first, 2),
            "first_call": "read from disk" if had else "computed and written", "from_disk_s": round(again, 3),
            "file": str(path)}


def train_and_score(cfg: Config, seeds, runs_dir: Path, datasets: list[str], train_ds=None, val_ds=None,
                    progress: bool = False, log=print) -> pd.DataFrame:
    """Train both methods for each seed into ``runs_dir/<method>-seed<k>`` and score zero-shot top-1.

    Returns one row per (method, seed, dataset): ``top1``, the run's training seconds and the seconds
    of its optimiser steps alone.
    """
    from contextclip.data import build_pair_datasets

    if train_ds is None:
        train_ds, val_ds = build_pair_datasets(cfg)
    sets = {name: get_dataset(name, cfg) for name in datasets}
    rows = []
    for seed in seeds:
        for method in cfg.train.methods:
            run_dir = Path(runs_dir) / f"{method}-seed{seed}"
            summary = fit(cfg, method, seed, run_dir, train_ds=train_ds, val_ds=val_ds, progress=progress)
            model, _ = load_trained(run_dir)
            for name, ds in sets.items():
                rows.append({"method": method, "seed": seed, "dataset": name,
                             "top1": evaluate_zero_shot(model, ds, cfg)["top1"], "seconds": summary["seconds"],
                             "train_seconds": summary["train_seconds"]})
            log(f"{method} seed {seed}: trained in {summary['train_seconds']:.1f} s (optimiser steps), "
                + ", ".join(f"{r['dataset']} {r['top1']:.1f}%" for r in rows[-len(sets):]))
    return pd.DataFrame(rows)


def paired(scores: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: both methods' mean top-1, ContextCLIP - CLIP paired by seed, its 95% interval
    (a t-interval over seeds; none with one seed) and the sign verdict."""
    out = []
    for name, g in scores.groupby("dataset", sort=False):
        by = {m: dict(zip(g[g["method"] == m]["seed"], g[g["method"] == m]["top1"])) for m in ("clip", "contextclip")}
        d = results.paired_difference(by["clip"], by["contextclip"])
        clip = float(pd.Series(by["clip"]).mean())
        out.append({"dataset": name, "seeds": d["paired_seeds"], "CLIP": clip,
                    "ContextCLIP": float(pd.Series(by["contextclip"]).mean()), "ContextCLIP - CLIP": d["diff"],
                    "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                    "verdict": results.sign_verdict(d["ci_low"], d["ci_high"], clip)})
    return pd.DataFrame(out)
