"""Training's caches of frozen-tower features, and the training ``DataLoader`` factory.

- ``FrozenFeatureCache``: one run's features as one tensor on the training device (captions from
  the process-wide store of ``contextclip.frozen_features``; images, when there is no augmentation,
  from the image tower), indexed per batch.
- ``cached_caption_features``: backs the training captions' entries of that store on disk under
  ``<data_root>/cache/text_features``, so later processes load them instead of computing them; only
  the main process (rank 0) writes the file.
- ``loader``: a ``DataLoader`` over fixed batches with its own seeded generator (captions alone when
  both towers' features are cached).

What it is not: evaluation never imports this module (it reads the store through
``contextclip.encoding``); a test of the package's import graph holds that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from contextclip import distributed as D
from contextclip import fileio
from contextclip.config import Config
from contextclip.frozen_features import (
    frozen_text_features,
    frozen_text_fingerprint,
    precision_name,
    remember_text_features,
)
from contextclip.layout import resolve_root
from contextclip.model import ContextCLIPModel

__all__ = ["FrozenFeatureCache", "cached_caption_features", "caption_batches", "inputs_all_cached", "loader"]


def inputs_all_cached(cfg: Config) -> bool:
    """Whether a run of ``cfg`` caches the features of both towers for its training set (``train.fit``
    builds both caches then), so that its steps read captions alone (``caption_batches``)."""
    return bool(cfg.train.cache_frozen_features and cfg.model.freeze_image and cfg.model.freeze_text
                and not cfg.data.augment)


def loader(ds, batches: Sequence[Sequence[int]], collate, cfg: Config, device: torch.device, seed: int,
           caches=None):
    """A DataLoader over fixed ``batches`` of ``ds`` with its own seeded generator.

    A private generator: creating the iterator must not consume the global torch RNG, or a
    mid-epoch resume would diverge from an uninterrupted run.

    ``caches`` (``contextclip.train.FrozenCaches``) holding features of both towers, and a dataset that
    can name an item's caption without its image (``ds.caption(k)``): the batches carry captions
    only (``caption_batches``), since no image or token id would be read.
    """
    if caches is not None and caches.image is not None and caches.text is not None and hasattr(ds, "caption"):
        return caption_batches(ds, batches)
    return DataLoader(ds, batch_sampler=list(batches), collate_fn=collate, num_workers=cfg.train.num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


def caption_batches(ds, batches: Sequence[Sequence[int]]):
    """Batches of captions alone (``images``, ``input_ids``, ``attention_mask`` None), for a step whose
    image and text features both come from caches: decoding images nobody reads took about a
    fifth of a locked-tower run."""
    for idx in batches:
        yield {"images": None, "input_ids": None, "attention_mask": None,
               "captions": [str(ds.caption(int(k))) for k in idx]}


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
        return self._rows([self.index[k] for k in keys] if self.index is not None else list(keys))

    def lookup_captions(self, model: ContextCLIPModel, captions: Sequence[str], autocast) -> torch.Tensor:
        """Features of ``captions``; any caption not seen when the cache was built is added first."""
        rows = [self.index.get(c) for c in captions]
        if None in rows:
            new = sorted({c for c in captions if c not in self.index}, key=lambda c: (len(c), c))
            extra = FrozenFeatureCache.for_captions(model, new, autocast)
            self.index.update({c: j + len(self.feats) for c, j in extra.index.items()})
            self.feats = torch.cat([self.feats, extra.feats])
            rows = [self.index[c] for c in captions]
        return self._rows(rows)

    def _rows(self, rows: list[int]) -> torch.Tensor:
        # index_select: a copy of the rows as ``feats[rows]`` gives, in a third of the time
        return self.feats.index_select(0, torch.as_tensor(rows, device=self.feats.device))


def cached_caption_features(model: ContextCLIPModel, captions: Sequence[str], autocast, cfg: Config,
                             device: torch.device) -> FrozenFeatureCache:
    """``FrozenFeatureCache.for_captions``, kept on disk under ``<data_root>/cache/text_features``.

    The runs of a profile (methods x seeds) share one frozen text tower and one caption set, so
    the features are computed once per machine. The key hashes everything they depend on: the
    tower's weights, pooling, max_length, the captions, the precision and the device type.
    """
    h = hashlib.sha256(frozen_text_fingerprint(model).encode())  # tower weights, pooling, max_length
    dtype = precision_name(autocast, device)
    unique = sorted(set(captions))
    h.update(json.dumps([model.pooling, model.max_length, dtype, device.type, str(torch.__version__), unique]).encode())
    path = resolve_root(cfg.data.data_root) / "cache" / "text_features" / f"{h.hexdigest()[:32]}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            feats = saved["feats"].float()
            remember_text_features(model, dtype, saved["captions"], feats)  # evaluation in this process reuses them
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
