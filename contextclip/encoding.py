"""Batched, gradient-free encoding of images and captions with a trained model, for evaluation.

What it is: the loops that turn a dataset's ``uint8`` images or caption strings into embeddings,
``eval_batch_size`` at a time, on the model's device. The ``model`` is anything with
``encode_image(uint8 [B,3,H,W])``, ``encode_text(input_ids, attention_mask)``, ``tokenize(list[str])``
(and ``image_features`` for the tower output) -- ``ContextCLIPModel`` or a fake in the tests.

What it is not: no caching of results (``contextclip.evaluate`` caches embeddings per run), no
metrics (``zeroshot``, ``retrieval``). One exception: the output of a *frozen* text tower comes
from the process-wide store of ``contextclip.frozen_features`` (see ``encode_texts``), because
every run of a profile shares that tower.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contextclip.frozen_features import frozen_text_features
from contextclip.model import model_device

__all__ = ["model_device", "take_images", "n_images", "encode_images", "encode_texts", "image_features"]


def n_images(images) -> int:
    return int(images.shape[0]) if isinstance(images, torch.Tensor) else len(images)


def take_images(images, idx) -> torch.Tensor:
    """uint8 [len(idx), 3, H, W] from a tensor, or from a Dataset whose items are (image, ...)."""
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(idx, dtype=torch.long)]
    out = []
    for i in idx:
        item = images[int(i)]
        out.append(item[0] if isinstance(item, (tuple, list)) else item)
    return torch.stack(out)


def _batched_images(model, images, fn_name: str, batch_size: int, indices=None) -> torch.Tensor:
    idx = torch.arange(n_images(images)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    device = model_device(model)
    fn = getattr(model, fn_name)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(idx), batch_size):
            batch = take_images(images, idx[start : start + batch_size]).to(device)
            if batch.dtype != torch.uint8:
                raise TypeError(f"images must be uint8 [B,3,H,W] (see docs/architecture.md), got {batch.dtype}")
            chunks.append(fn(batch).float().cpu())
    if not chunks:
        raise ValueError("no images to encode (the dataset is empty)")
    return torch.cat(chunks)


def _in_eval_mode(model, fn_name: str, images, batch_size: int, indices) -> torch.Tensor:
    """``_batched_images`` with the model in eval mode, restoring its previous mode afterwards."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        return _batched_images(model, images, fn_name, batch_size, indices)
    finally:
        if was_training:
            model.train()


def encode_images(model, images, batch_size: int = 256, indices=None) -> torch.Tensor:
    """L2-normalised joint-space image embeddings [N, D] (``model.encode_image``)."""
    return _in_eval_mode(model, "encode_image", images, batch_size, indices)


def image_features(model, images, batch_size: int = 256, indices=None) -> torch.Tensor:
    """Image-tower output before the projection head [N, F] (``model.image_features``), not normalised."""
    return _in_eval_mode(model, "image_features", images, batch_size, indices)


def encode_texts(model, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised joint-space text embeddings [len(texts), D].

    When the model's text tower is frozen (``model.freeze_text``), the tower's output is taken from
    the process-wide store (``frozen_features.frozen_text_features``, keyed by a fingerprint of its
    weights); only the (trained) head runs per run.
    Equal to the direct path up to padding-dependent float rounding (tests/test_evaluate.py).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no captions to encode")
    device = model_device(model)
    frozen = getattr(model, "freeze_text", False) is True and hasattr(model, "embed_text_features")
    if frozen:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                feats = frozen_text_features(model, texts, batch_size=batch_size)
                return torch.cat([model.embed_text_features(feats[i : i + batch_size].to(device)).float().cpu()
                                  for i in range(0, len(texts), batch_size)])
        finally:
            model.train(was_training)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tok = model.tokenize(texts[start : start + batch_size])
                emb = model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
                chunks.append(emb.float().cpu())
    finally:
        if was_training:
            model.train()
    return torch.cat(chunks)
