"""Features of a frozen text tower, computed once per process: the store evaluation and training share.

A tower that is frozen (eval mode, no gradient) gives the same features for the same input, so
neither training nor evaluation need run it more than once per input. ``frozen_text_features`` is
the one frozen-text cache: a process-wide store of text-tower features keyed by (tower
fingerprint, precision), then by caption, shared by training (its captions) and evaluation
(prompts and retrieval captions, through ``encoding.encode_texts``): every run of a profile with a
frozen text tower (CLIP and ContextCLIP, every seed) shares the tower's weights.

What it is not: nothing about training. The per-run caches (``FrozenFeatureCache``), the disk copy
of the training captions' entries (``cached_caption_features``) and the training ``DataLoader``
factory live in ``contextclip.train_caches``, which evaluation never imports.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence

import torch

from contextclip.model import model_device

__all__ = ["clear_text_store", "frozen_text_features", "frozen_text_fingerprint", "precision_name",
           "remember_text_features"]

# Frozen text-tower features by (tower fingerprint, precision), then by caption (float32, CPU).
_TEXT_STORE: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
_STORE_MAX_ENTRIES = 200_000  # about 300 MB of 384-wide features; the store is emptied beyond it


def frozen_text_fingerprint(model) -> str:
    """SHA-256 of the frozen tower's weights + pooling + max_length (computed once per model)."""
    fp = getattr(model, "_frozen_text_fp", None)
    if fp is None:
        h = hashlib.sha256()
        for name, t in model.text_tower.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        h.update(f"{model.pooling}|{model.max_length}".encode())
        fp = h.hexdigest()
        model._frozen_text_fp = fp
    return fp


def precision_name(autocast: Callable, device: torch.device) -> str:
    """``"fp32"``, or the dtype ``autocast`` computes in on ``device`` (part of every feature key)."""
    with autocast():
        return str(torch.get_autocast_dtype(device.type)) if torch.is_autocast_enabled(device.type) else "fp32"


def clear_text_store() -> None:
    """Forget every stored frozen text feature of this process (the disk copies stay)."""
    _TEXT_STORE.clear()


@torch.no_grad()
def frozen_text_features(model, texts: Sequence[str], autocast: Callable = contextlib.nullcontext,
                         batch_size: int = 256, recompute: bool = False) -> torch.Tensor:
    """Text-tower output [len(texts), F] (float32, CPU) for a frozen tower, from and into the store.

    Captions not in the store are computed ``batch_size`` at a time, sorted by (length, text) so
    that similar lengths share padding. ``recompute``: compute all of ``texts`` in that order even if
    stored (training does, so that its features do not depend on what ran before in the process).
    The caller puts the model in eval mode.
    """
    device = model_device(model)
    if sum(len(m) for m in _TEXT_STORE.values()) > _STORE_MAX_ENTRIES:
        _TEXT_STORE.clear()
    store = _TEXT_STORE.setdefault((frozen_text_fingerprint(model), precision_name(autocast, device)), {})
    todo = sorted(set(texts) if recompute else {t for t in texts if t not in store}, key=lambda t: (len(t), t))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        tok = model.tokenize(chunk)
        with autocast():
            feats = model.text_features(tok["input_ids"].to(device), tok["attention_mask"].to(device))
        store.update(zip(chunk, feats.float().cpu()))
    return torch.stack([store[t] for t in texts])


def remember_text_features(model, precision: str, texts: Sequence[str], feats: torch.Tensor) -> None:
    """Put ``feats`` (one row per text, float32, CPU) of the frozen tower of ``model`` into the store."""
    _TEXT_STORE.setdefault((frozen_text_fingerprint(model), precision), {}).update(zip(texts, feats))
