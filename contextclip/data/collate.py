"""Batching image-caption pairs: stack the uint8 images, tokenise the captions per batch.

``PairCollator`` is a picklable callable (DataLoader workers need that): captions are padded
to the longest one in the batch and truncated at ``max_length``. A truncation is said, not
silent: ``n_truncated`` counts the captions cut so far and the first one raises a
``CaptionTruncatedWarning`` (once per collator) naming the caption, its token count and the
``max_length`` knob. No normalisation here; images stay uint8 until the model's ``encode_image``.
"""

from __future__ import annotations

import warnings

import torch


class CaptionTruncatedWarning(UserWarning):
    """A caption was longer than ``max_length`` tokens and was cut to it."""


class PairCollator:
    """``tokenize`` False: no token ids (``input_ids`` and ``attention_mask`` are None), for training on
    cached text features, where the tokenizer was about a third of a step's time."""

    def __init__(self, tokenizer, max_length: int, tokenize: bool = True):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.tokenize = bool(tokenize)
        self.n_truncated = 0  # captions cut at max_length so far (in this process)

    def __call__(self, batch: list[tuple[torch.Tensor, str]]) -> dict:
        if not batch:
            raise ValueError("PairCollator got an empty batch")
        images = torch.stack([img for img, _ in batch])
        if images.dtype != torch.uint8:
            raise TypeError(f"PairCollator expects uint8 images, got {images.dtype}")
        captions = [str(cap) for _, cap in batch]
        if not self.tokenize:
            return {"images": images, "input_ids": None, "attention_mask": None, "captions": captions}
        tok = self.tokenizer(captions, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        if tok["input_ids"].shape[1] >= self.max_length:  # some caption reached the limit: was it cut?
            self._count_truncated(captions, tok["attention_mask"].sum(1))
        return {"images": images, "input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "captions": captions}

    def _count_truncated(self, captions: list[str], kept) -> None:
        at_limit = [c for c, k in zip(captions, kept.tolist()) if k >= self.max_length]
        full = self.tokenizer(at_limit, truncation=False)["input_ids"]
        cut = [(c, len(ids)) for c, ids in zip(at_limit, full) if len(ids) > self.max_length]
        if cut and self.n_truncated == 0:
            c, n = cut[0]
            warnings.warn(f"caption {c[:60]!r}{'...' if len(c) > 60 else ''} has {n} tokens and is truncated to "
                          f"max_length={self.max_length} (later ones are counted in n_truncated, not shown); "
                          "raise the max_length knob to keep captions whole", CaptionTruncatedWarning, stacklevel=3)
        self.n_truncated += len(cut)
