"""Features of a frozen image tower, on disk, computed once per machine.

When the image tower is frozen (``freeze_image``) and the images are fixed (no augmentation), its
output for an image never changes, so every run of a profile (both methods, every seed) and every
evaluation of those runs can share one copy of the features: a run then trains and is evaluated
through its linear heads only. ``cached_image_features`` keeps them under
``<data_root>/cache/image_features/<key>.pt``.

The key covers everything the features depend on (``feature_key``):
- the tower: a SHA-256 of its weights (``image_tower_fingerprint``), its name, and the
  preprocessing (the size images are resized to, the normalisation mean and std);
- the arithmetic: precision (fp32 or the autocast dtype), device type and torch version;
- the images: a SHA-256 of their uint8 bytes when they are one tensor, else what the caller
  passes (``images_key``: for a dataset read from files, its file-list digest, size and cap).
A file whose stored key, shape or values do not match (another key part, a file cut short, a
non-finite value) is recomputed, with a one-line message naming it. Two processes may compute the
same file at the same time: each writes a private temporary file and renames it into place
(``fileio.torch_save``), so a reader sees either no file or a whole one, and both contain the
same features.

What it is not: no per-run state, nothing about training or ranks (the caller says whether this
process may write), no heads. Evaluation (``contextclip.evaluate``) and training both use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from contextclip import fileio
from contextclip.encoding import encode_images, n_images, take_images
from contextclip.model import tower_fingerprint

__all__ = ["CACHE_VERSION", "image_tower_fingerprint", "images_digest", "feature_key", "feature_path",
           "cached_image_features", "compute_image_features", "embed_features", "frozen_tower_features",
           "image_embeddings", "clear_memory"]

CACHE_VERSION = 1
_MEMORY: dict[str, torch.Tensor] = {}  # key digest -> features, for the runs of one process
_MEMORY_MAX_BYTES = 2 << 30


def clear_memory() -> None:
    """Forget the features held in this process (the disk copies stay)."""
    _MEMORY.clear()


def image_tower_fingerprint(model) -> str:
    """SHA-256 of the image tower's weights and buffers (computed once per model object)."""
    fp = getattr(model, "_image_tower_fp", None)
    if fp is None:
        fp = tower_fingerprint(model.image_tower)
        model._image_tower_fp = fp
    return fp


def images_digest(images: torch.Tensor) -> str:
    """SHA-256 of a uint8 image tensor's shape and bytes."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _precision(autocast: Callable, device: torch.device) -> str:
    with autocast():
        return str(torch.get_autocast_dtype(device.type)) if torch.is_autocast_enabled(device.type) else "fp32"


def feature_key(model, images, autocast: Callable = contextlib.nullcontext, images_key: dict | None = None) -> dict:
    """Everything the image features of ``images`` depend on (see the module docstring)."""
    device = model.device
    if isinstance(images, torch.Tensor):
        what = {"digest": images_digest(images)}
    elif images_key is not None:
        what = dict(images_key)
    else:
        raise ValueError("images that are not one uint8 tensor need an images_key (their file-list digest)")
    return {"version": CACHE_VERSION, "tower": image_tower_fingerprint(model),
            "tower_name": str(getattr(getattr(model, "cfg", None), "image_tower", type(model.image_tower).__name__)),
            "image_size": int(model.image_size), "mean": [round(float(v), 8) for v in model.pixel_mean.flatten()],
            "std": [round(float(v), 8) for v in model.pixel_std.flatten()],
            "precision": _precision(autocast, device), "device_type": device.type, "torch": str(torch.__version__),
            "images": what}


def feature_path(data_root: str | Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return Path(data_root) / "cache" / "image_features" / f"{digest[:32]}.pt"


@torch.no_grad()
def compute_image_features(model, images, batch_size: int = 256, autocast: Callable = contextlib.nullcontext,
                           take: Callable | None = None) -> torch.Tensor:
    """The tower's output [N, F] (float32, CPU), ``batch_size`` images at a time, in eval mode.

    ``images`` is a uint8 tensor [N, 3, H, W], or anything ``take(images, idx)`` turns into one.
    """
    take = take or take_images
    n = n_images(images)
    if n == 0:
        raise ValueError("no images to encode (the dataset is empty)")
    was_training = model.training
    model.eval()
    try:
        parts = []
        for start in range(0, n, batch_size):
            batch = take(images, list(range(start, min(start + batch_size, n))))
            with autocast():
                parts.append(model.image_features(batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts)


def _read(path: Path, key: dict, n: int) -> torch.Tensor | None:
    """The features stored at ``path`` if they are whole and belong to ``key``; else None (and why, on stderr)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - cut short, not a torch file: recomputed
        print(f"image feature cache {path} is damaged ({type(exc).__name__}); recomputing it", file=sys.stderr)
        return None
    feats = saved.get("feats") if isinstance(saved, dict) else None
    if not isinstance(feats, torch.Tensor) or saved.get("key") != key:
        print(f"image feature cache {path} holds other features than expected; recomputing it", file=sys.stderr)
        return None
    if feats.dim() != 2 or feats.shape[0] != n or not bool(torch.isfinite(feats).all()):
        print(f"image feature cache {path} has shape {tuple(feats.shape)} or non-finite values, expected {n} "
              "finite rows; recomputing it", file=sys.stderr)
        return None
    return feats.float()


def cached_image_features(model, images, data_root: str | Path | None, *, batch_size: int = 256,
                          autocast: Callable = contextlib.nullcontext, images_key: dict | None = None,
                          write: bool = True, take: Callable | None = None) -> torch.Tensor:
    """``compute_image_features`` of a frozen tower, from and into the disk cache (float32, CPU).

    ``data_root`` None: no disk copy (computed, kept in this process only). ``write``: whether this
    process writes the file (under torchrun only rank 0 does). A read-only data folder only costs
    the recomputation next time.
    """
    if not getattr(model, "freeze_image", False):
        raise ValueError("cached image features need a frozen image tower (model.freeze_image); a trained tower's "
                         "features change with every step")
    key = feature_key(model, images, autocast, images_key)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    if digest in _MEMORY:
        return _MEMORY[digest]
    n = n_images(images)
    path = feature_path(data_root, key) if data_root is not None else None
    feats = _read(path, key, n) if path is not None and path.exists() else None
    if feats is None:
        feats = compute_image_features(model, images, batch_size, autocast, take)
        if path is not None and write:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fileio.torch_save({"key": key, "feats": feats}, path)
            except OSError as exc:
                print(f"image feature cache {path} could not be written ({exc.strerror}); it is recomputed next "
                      "time", file=sys.stderr)
    if sum(t.numel() * 4 for t in _MEMORY.values()) + feats.numel() * 4 > _MEMORY_MAX_BYTES:
        _MEMORY.clear()
    _MEMORY[digest] = feats
    return feats


def frozen_tower_features(model, images, data_root: str | Path | None, batch_size: int = 256,
                          images_key: dict | None = None) -> torch.Tensor | None:
    """The cached tower features of ``images`` when ``model``'s image tower is frozen (and has a head to
    apply to them) and the images can be keyed (one uint8 tensor, or ``images_key``); else None, and
    the caller encodes the images itself. The one place evaluation decides to use the cache."""
    frozen = getattr(model, "freeze_image", False) is True and hasattr(model, "embed_image_features")
    if not frozen or data_root is None or not (isinstance(images, torch.Tensor) or images_key is not None):
        return None
    return cached_image_features(model, images, data_root, batch_size=batch_size, images_key=images_key)


def image_embeddings(model, images, data_root: str | Path | None, batch_size: int = 256,
                     images_key: dict | None = None) -> torch.Tensor:
    """Every image's joint-space embedding [N, D]: the run's head on the cached features of a frozen
    tower (``frozen_tower_features``), else ``encode_images`` (the whole model)."""
    feats = frozen_tower_features(model, images, data_root, batch_size, images_key)
    return embed_features(model, feats, batch_size) if feats is not None else encode_images(model, images, batch_size)


@torch.no_grad()
def embed_features(model, feats: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's L2-normalised joint-space image embeddings [N, D] of tower features ``feats`` (the head only)."""
    was_training = model.training
    model.eval()
    try:
        dev = model.device
        return torch.cat([model.embed_image_features(feats[i: i + batch_size].to(dev)).float().cpu()
                          for i in range(0, len(feats), batch_size)])
    finally:
        model.train(was_training)
