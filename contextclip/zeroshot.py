"""Zero-shot classification with class prompts: top-1, top-5, mean-per-class recall (Table 1).

What it is (CLIP's prompt-ensemble classifier, as in CLIP_benchmark / open_clip):
- ``class_embeddings``: each class name is put into every template of the dataset, the prompts
  are encoded and L2-normalised, averaged over templates and re-normalised (paper Sec. 4.2).
- ``zero_shot_logits``: ``logits = scale * normalise(image) @ W.T`` with W the class embeddings.
  The scale does not change any ranking.
- ``topk_accuracy`` / ``mean_per_class_recall``: percentages. Ties between classes are
  resolved by expected credit under a random order of the tied classes
  (``retrieval.hits_at_k``), so a constant classifier scores exactly chance. top-5 is
  reported only when there are at least 5 classes (CLIP_benchmark does the same).
- ``evaluate_zero_shot``: one flat dict with top1, top5, mean_per_class_recall, n, n_classes,
  chance_top1 = 100/C, chance_top5 = min(100, 500/C).

What it is not: no caching and no result files (``contextclip.evaluate``), no training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from contextclip.data.registry import resolve_root
from contextclip.encoding import encode_texts
from contextclip.image_cache import image_embeddings
from contextclip.retrieval import hits_at_k

__all__ = [
    "format_prompt",
    "class_embeddings",
    "zero_shot_logits",
    "topk_accuracy",
    "per_sample_topk",
    "mean_per_class_recall",
    "chance_levels",
    "zero_shot_from_embeddings",
    "evaluate_zero_shot",
    "GENERIC_TEMPLATES",
]

#: Extra generic prompts used only to give the text t-SNE (Fig. 7) enough points per class when a
#: dataset has a single template (MNIST, Birdsnap). Never used for the Table 1 classifier.
GENERIC_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a drawing of a {}.",
    "a sketch of a {}.",
    "a close-up photo of a {}.",
    "a blurry photo of a {}.",
    "a small {}.",
    "a large {}.",
    "a photo of the {}.",
    "a rendering of a {}.",
    "a {} on a plain background.",
    "a dark photo of a {}.",
    "a bright photo of a {}.",
    "this is a {}.",
    "there is a {} in the image.",
)


def format_prompt(template: str, classname: str) -> str:
    """Fill a template: ``"a photo of a {}."`` or ``"a photo of a {c}."``."""
    if "{c}" in template:
        return template.format(c=classname)
    if "{}" in template:
        return template.format(classname)
    raise ValueError(f"template {template!r} has no '{{}}' or '{{c}}' slot for the class name")


def class_embeddings(model, classnames: Sequence[str], templates: Sequence[str], batch_size: int = 256,
                     return_prompts: bool = False):
    """Class embeddings [C, D]: per class, mean of L2-normalised template embeddings, re-normalised.

    With ``return_prompts=True`` also returns the per-prompt embeddings [C, T, D] (for Fig. 7).
    """
    classnames, templates = list(classnames), list(templates)
    if not classnames or not templates:
        raise ValueError(f"need at least one class name and one template, got {len(classnames)} and {len(templates)}")
    prompts = [format_prompt(t, c) for c in classnames for t in templates]  # class-major order
    emb = encode_texts(model, prompts, batch_size)  # [C*T, D]
    emb = F.normalize(emb, dim=-1).view(len(classnames), len(templates), -1)  # each prompt normalised
    classes = F.normalize(emb.mean(dim=1), dim=-1)  # average over templates, re-normalise
    return (classes, emb) if return_prompts else classes


def zero_shot_logits(image_emb: torch.Tensor, class_emb: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """``scale * normalise(image) @ normalise(class).T`` -> [N, C]."""
    return scale * F.normalize(image_emb.float(), dim=-1) @ F.normalize(class_emb.float(), dim=-1).T


def _check(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if logits.dim() != 2 or targets.dim() != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits must be [n, C] and targets [n]; got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if len(targets) == 0:
        raise ValueError("no samples to score")
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ValueError(f"targets must be in [0, {logits.shape[1] - 1}], got range [{int(targets.min())}, {int(targets.max())}]")
    return logits, targets


def per_sample_topk(logits: torch.Tensor, targets: torch.Tensor, k: int) -> np.ndarray:
    """Per-sample credit in [0, 1] that the target is within the top k (expected credit on ties)."""
    logits, targets = _check(logits, targets)
    positives = F.one_hot(targets, logits.shape[1]).bool()
    return hits_at_k(logits, positives, k).numpy()


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> dict:
    """``{"top1": %, "top5": %}``; a k is skipped when there are fewer than k classes."""
    logits, targets = _check(logits, targets)
    return {
        f"top{k}": 100.0 * float(per_sample_topk(logits, targets, k).mean())
        for k in ks
        if k <= logits.shape[1]
    }


def mean_per_class_recall(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Balanced accuracy in percent: top-1 recall per class, averaged over the classes present."""
    logits, targets = _check(logits, targets)
    credit = per_sample_topk(logits, targets, 1)
    t = targets.numpy()
    return 100.0 * float(np.mean([credit[t == c].mean() for c in np.unique(t)]))


def chance_levels(n_classes: int) -> dict:
    """Chance accuracy of a uniform random guess: 100/C for top-1, min(100, 500/C) for top-5."""
    out = {"chance_top1": 100.0 / n_classes}
    if n_classes >= 5:
        out["chance_top5"] = min(100.0, 500.0 / n_classes)
    return out


def zero_shot_from_embeddings(image_emb: torch.Tensor, labels: torch.Tensor, class_emb: torch.Tensor,
                              per_item: bool = False) -> dict:
    """Flat result dict from precomputed (cached) embeddings."""
    logits = zero_shot_logits(image_emb, class_emb)
    labels = torch.as_tensor(labels, dtype=torch.long)
    n_classes = class_emb.shape[0]
    out = {**topk_accuracy(logits, labels), "mean_per_class_recall": mean_per_class_recall(logits, labels),
           "n": len(labels), "n_classes": n_classes, **chance_levels(n_classes)}
    out["chance_mean_per_class_recall"] = out["chance_top1"]
    if per_item:
        out["per_item"] = {f"top{k}": per_sample_topk(logits, labels, k) for k in (1, 5) if k <= n_classes}
        # weighted so that the mean over items is the class-balanced recall (for the bootstrap)
        y = labels.numpy()
        counts = np.bincount(y, minlength=n_classes)
        weight = len(y) / (len(np.unique(y)) * counts[y])
        out["per_item"]["mean_per_class_recall"] = out["per_item"]["top1"] * weight
    return out


def evaluate_zero_shot(model, dataset, cfg=None, per_item: bool = False) -> dict:
    """Zero-shot evaluation of ``model`` on a ``ClassificationSet`` (its images, labels, classnames, templates)."""
    bs = cfg.eval.eval_batch_size if cfg is not None else 256
    # a frozen image tower: its features from the disk cache every run shares, then this run's head
    image_emb = image_embeddings(model, dataset.images, resolve_root(cfg.data.data_root) if cfg is not None else None,
                                 bs)
    class_emb = class_embeddings(model, dataset.classnames, dataset.templates, bs)
    return zero_shot_from_embeddings(image_emb, dataset.labels, class_emb, per_item=per_item)
