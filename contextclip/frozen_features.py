"""Features of a frozen tower, computed once.

A tower that is frozen (eval mode, no gradient) gives the same features for the same input, so
neither training nor evaluation need run it more than once per input:

- ``frozen_text_features``: the one frozen-text cache. A process-wide store of text-tower features
  keyed by (tower fingerprint, precision), then by caption, shared by training (its captions) and
  evaluation (prompts and retrieval captions, through ``encoding.encode_texts``): every run of a
  profile with a frozen text tower (CLIP and ContextCLIP, every seed) shares the tower's weights.
  ``cached_caption_features`` backs the training captions' entries on disk under
  ``<data_root>/cache/text_features``, so later processes load them instead of computing them.
- ``FrozenFeatureCache``: one run's features as one tensor on the training device (captions from
  the store; images, when there is no augmentation, from the image tower), indexed per batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from contextclip import distributed as D
from contextclip import fileio
from contextclip.config import Config
from contextclip.data.registry import resolve_root
from contextclip.model import ContextCLIPModel

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


def _precision(autocast: Callable, device: torch.device) -> str:
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
    from contextclip.encoding import model_device

    device = model_device(model)
    if sum(len(m) for m in _TEXT_STORE.values()) > _STORE_MAX_ENTRIES:
        _TEXT_STORE.clear()
    store = _TEXT_STORE.setdefault((frozen_text_fingerprint(model), _precision(autocast, device)), {})
    todo = sorted(set(texts) if recompute else {t for t in texts if t not in store}, key=lambda t: (len(t), t))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        tok = model.tokenize(chunk)
        with autocast():
            feats = model.text_features(tok["input_ids"].to(device), tok["attention_mask"].to(device))
        store.update(zip(chunk, feats.float().cpu()))
    return torch.stack([store[t] for t in texts])


def loader(ds, batches: Sequence[Sequence[int]], collate, cfg: Config, device: torch.device, seed: int):
    """A DataLoader over fixed ``batches`` of ``ds`` with its own seeded generator.

    A private generator: creating the iterator must not consume the global torch RNG, or a
    mid-epoch resume would diverge from an uninterrupted run.
    """
    return DataLoader(ds, batch_sampler=list(batches), collate_fn=collate, num_workers=cfg.train.num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


class FrozenFeatureCache:
    """Tower features (before the head) of a frozen tower, computed once per caption or image.

    Valid only while the tower is truly frozen: eval mode, no gradient, and the same input each
    time (captions never change; an image only when there is no augmentation). ``fit`` enforces
    this; cached and live features agree within float rounding (tests/test_train.py states the
    tolerance). Features are computed in a fixed order (sorted captions / dataset order), so a
    resumed run gets bit-identical cached features.
    """

    def __init__(self, feats: torch.Tensor, index: dict | None = None):
        self.feats = feats
        self.index = index

    @classmethod
    def for_captions(cls, model: ContextCLIPModel, captions: Sequence[str], autocast, chunk: int = 256):
        """The text tower's features of ``captions``, computed through the store in a fixed order."""
        unique = sorted(set(captions), key=lambda c: (len(c), c))
        feats = frozen_text_features(model, unique, autocast, batch_size=chunk, recompute=True)
        return cls(feats.to(model.device), {c: j for j, c in enumerate(unique)})

    @classmethod
    @torch.no_grad()
    def for_images(cls, model: ContextCLIPModel, ds, collate, cfg: Config, autocast, chunk: int = 256):
        parts = []
        batches = [list(range(i, min(i + chunk, len(ds)))) for i in range(0, len(ds), chunk)]
        for batch in loader(ds, batches, collate, cfg, model.device, 0):
            with autocast():
                parts.append(model.image_features(batch["images"]))
        return cls(torch.cat(parts))

    def lookup(self, keys) -> torch.Tensor:
        if self.index is not None:
            keys = [self.index[k] for k in keys]
        return self.feats[torch.as_tensor(list(keys), device=self.feats.device)]

    def lookup_captions(self, model: ContextCLIPModel, captions: Sequence[str], autocast) -> torch.Tensor:
        """Features of ``captions``; any caption not seen when the cache was built is added first."""
        new = sorted({c for c in captions if c not in self.index}, key=lambda c: (len(c), c))
        if new:
            extra = FrozenFeatureCache.for_captions(model, new, autocast)
            self.index.update({c: j + len(self.feats) for c, j in extra.index.items()})
            self.feats = torch.cat([self.feats, extra.feats])
        return self.lookup(captions)


def cached_caption_features(model: ContextCLIPModel, captions: Sequence[str], autocast, cfg: Config,
                             device: torch.device) -> FrozenFeatureCache:
    """``FrozenFeatureCache.for_captions``, kept on disk under ``<data_root>/cache/text_features``.

    The runs of a profile (methods x seeds) share one frozen text tower and one caption set, so
    the features are computed once per machine. The key hashes everything they depend on: the
    tower's weights, pooling, max_length, the captions, the precision and the device type.
    """
    h = hashlib.sha256(frozen_text_fingerprint(model).encode())  # tower weights, pooling, max_length
    dtype = _precision(autocast, device)
    unique = sorted(set(captions))
    h.update(json.dumps([model.pooling, model.max_length, dtype, device.type, str(torch.__version__), unique]).encode())
    path = resolve_root(cfg.data.data_root) / "cache" / "text_features" / f"{h.hexdigest()[:32]}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            feats = saved["feats"].float()
            store = _TEXT_STORE.setdefault((frozen_text_fingerprint(model), dtype), {})
            store.update(zip(saved["captions"], feats))  # evaluation in this process reuses them
            return FrozenFeatureCache(feats.to(device), dict(zip(saved["captions"], range(len(unique)))))
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
            pass
    cache = FrozenFeatureCache.for_captions(model, unique, autocast)
    if D.is_main():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            order = sorted(cache.index, key=cache.index.get)
            fileio.torch_save({"feats": cache.feats.cpu(), "captions": order}, path)
        except OSError:  # a read-only data folder only costs the recomputation next time
            pass
    return cache
