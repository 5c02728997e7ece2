"""What the evaluation sets share with the pretraining pairs: near-duplicate images and prompts or
captions that occur word for word among the training captions.

- ``nearest_train_distance(eval_images, train_images)``: for every evaluation image, the RMS pixel
  difference (0-255 scale, RGB, at the profile's image size) to its nearest training image. Two
  renderings count as near-duplicates below ``NEAR_DUPLICATE_RMS``; byte-equal images have 0.
- ``verbatim_overlap(texts, training_captions)``: how many texts occur among the training
  captions, compared case-insensitively without surrounding spaces or a final full stop ("the
  number 7." and "the number 7" are the same prompt).
- ``leakage_report(cfg)``: both, for every evaluation set of a profile (zero-shot prompts of the
  classification sets, captions of the caption set). Notebook 01 shows it; the data card quotes
  it; ``tests/test_leakage.py`` holds the embedded profile to it.

What it is not: no training and no evaluation metrics. It reads the same cached pairs and sets the
pipeline uses.
"""

from __future__ import annotations

import numpy as np
import torch

from contextclip.zeroshot import format_prompt

__all__ = ["NEAR_DUPLICATE_RMS", "normalise_text", "verbatim_overlap", "nearest_train_distance",
           "prompts_of", "leakage_report"]

#: RMS pixel difference (0-255, at 32 px) under which an evaluation image counts as a near-duplicate
#: of a training image: the same scene re-rendered with other sensor noise or colour jitter stays
#: below it. For scale: the closest two images inside the embedded corpus (digit_fraction 0.85) are
#: 5.8 apart, and real MNIST digits are >= 25 from every training image (data/README.md, "What the
#: evaluation shares with training").
NEAR_DUPLICATE_RMS = 5.0


def normalise_text(text: str) -> str:
    t = " ".join(str(text).lower().split())
    return t[:-1].rstrip() if t.endswith(".") else t


def verbatim_overlap(texts, training_captions) -> dict:
    """``{"n": len(texts), "verbatim": how many occur among the training captions, "examples": [...]}``."""
    train = {normalise_text(c) for c in training_captions}
    hits = [t for t in texts if normalise_text(t) in train]
    return {"n": len(texts), "verbatim": len(hits), "examples": hits[:5]}


def _flat(images) -> torch.Tensor:
    """uint8 [N, 3, H, W] or [N, H, W, 3] (tensor or array) -> float32 [N, 3*H*W] (channel-first)."""
    x = torch.as_tensor(np.asarray(images))
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    return x.reshape(len(x), -1).to(torch.float32)


def nearest_train_distance(eval_images, train_images, chunk: int = 512) -> np.ndarray:
    """RMS pixel difference of each evaluation image to its nearest training image (same size)."""
    e, t = _flat(eval_images), _flat(train_images)
    if e.shape[1] != t.shape[1]:
        raise ValueError(f"evaluation images have {e.shape[1]} values each, training images {t.shape[1]}: "
                         "compare them at the same image size")
    t_sq = (t * t).sum(1)
    out = []
    for s in range(0, len(e), chunk):
        b = e[s:s + chunk]
        d2 = (b * b).sum(1, keepdim=True) + t_sq[None, :] - 2.0 * b @ t.T
        out.append(torch.sqrt(d2.min(dim=1).values.clamp(min=0.0) / e.shape[1]))
    return torch.cat(out).numpy() if out else np.zeros(0)


def prompts_of(ds) -> list[str]:
    """Every zero-shot prompt of a classification set (each class in each template)."""
    return [format_prompt(t, c) for c in ds.classnames for t in ds.templates]


def leakage_report(cfg, datasets=None) -> list[dict]:
    """One row per evaluation set of ``cfg`` (or of ``datasets``): near-duplicates and verbatim texts.

    Only defined for the generated corpus (``train_data: synthetic``), whose images are in memory.
    """
    from contextclip.data.pairs import build_pair_datasets
    from contextclip.data.registry import DATASETS, get_dataset

    if cfg.data.train_data != "synthetic":
        raise ValueError("leakage_report compares with the generated corpus (train_data: synthetic); "
                         f"this profile trains on {cfg.data.train_data!r}")
    train, val = build_pair_datasets(cfg)
    source = train.source
    train_images = source.images
    captions = [c for caps in source.captions for c in caps]
    names = datasets if datasets is not None else list(dict.fromkeys(
        list(cfg.data.zero_shot_datasets) + list(cfg.data.fine_tune_datasets) + [cfg.data.retrieval_dataset]))
    rows = []
    for name in names:
        kind = DATASETS[name].kind
        ds = get_dataset(name, cfg, split="test" if kind == "captions" else "all")
        images = ds.images if isinstance(ds.images, torch.Tensor) else torch.stack([ds.images[i][0]
                                                                                 for i in range(len(ds.images))])
        dist = nearest_train_distance(images, train_images)
        texts = [c for caps in ds.captions for c in caps] if kind == "captions" else prompts_of(ds)
        overlap = verbatim_overlap(texts, captions)
        rows.append({"dataset": name, "kind": "captions" if kind == "captions" else "prompts",
                     "n_images": len(dist), "near_duplicates": int((dist < NEAR_DUPLICATE_RMS).sum()),
                     "byte_equal": int((dist == 0).sum()), "min_rms": round(float(dist.min()), 2),
                     "median_rms": round(float(np.median(dist)), 2), "n_texts": overlap["n"],
                     "texts_in_training_captions": overlap["verbatim"],
                     "distinct_texts": len({normalise_text(t) for t in texts})})
    return rows


def prompt_overlap(cfg, datasets=None) -> list[dict]:
    """Per zero-shot set: its prompts, and how many occur word for word among the training captions
    (cheap: no image is compared). Only for the generated corpus (``train_data: synthetic``)."""
    from contextclip.data.pairs import build_pair_datasets
    from contextclip.data.registry import get_dataset

    if cfg.data.train_data != "synthetic":
        raise ValueError("prompt_overlap compares with the generated corpus (train_data: synthetic); "
                         f"this profile trains on {cfg.data.train_data!r}")
    train, _ = build_pair_datasets(cfg)
    captions = [c for caps in train.source.captions for c in caps]
    rows = []
    for name in (datasets if datasets is not None else cfg.data.zero_shot_datasets):
        ds = get_dataset(name, cfg, split="all")
        ov = verbatim_overlap(prompts_of(ds), captions)
        rows.append({"dataset": name, "templates": len(ds.templates), "classes": len(ds.classnames),
                     "prompts": ov["n"], "prompts_in_training_captions": ov["verbatim"]})
    return rows


def main(argv=None) -> int:
    """``python -m contextclip.data.leakage [PROFILE]``: the leakage report as a markdown table."""
    import sys

    from contextclip.config import load_config

    args = sys.argv[1:] if argv is None else argv
    cfg = load_config(args[0] if args else "embedded")
    rows = leakage_report(cfg)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
