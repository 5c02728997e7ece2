"""Batching image-caption pairs: stack the uint8 images, tokenise the captions per batch.

``PairCollator`` is a picklable callable (DataLoader workers need that): captions are padded
to the longest one in the batch and truncated at ``max_length``. No normalisation here;
images stay uint8 until the model's ``encode_image``.
"""

from __future__ import annotations

import torch


class PairCollator:
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def __call__(self, batch: list[tuple[torch.Tensor, str]]) -> dict:
        if not batch:
            raise ValueError("PairCollator got an empty batch")
        images = torch.stack([img for img, _ in batch])
        if images.dtype != torch.uint8:
            raise TypeError(f"PairCollator expects uint8 images, got {images.dtype}")
        captions = [str(cap) for _, cap in batch]
        tok = self.tokenizer(captions, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"images": images, "input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "captions": captions}
