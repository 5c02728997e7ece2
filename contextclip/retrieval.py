"""Retrieval metrics: Recall@K in both directions and top-k lookups (Figures 1 and 5, made quantitative).

What it is: the ranking arithmetic shared by every evaluation in the kit.

- ``hits_at_k(scores, positives, k)``: per query, the credit of "a positive is among the top k"
  (1 = hit, 0 = miss). Ties are handled deterministically by *expected credit under a uniformly
  random order of tied items* (see ``docs/decisions.md, "Evaluation"``): a query whose positive is
  tied with 3 negatives at rank 1 gets 1/4 at k=1. This makes a constant scorer score exactly
  chance and removes any dependence on ``torch.topk``'s tie order.
- ``recall_at_k(scores [n_texts, n_images], positives)``: CLIP_benchmark's definition.
  text->image ("image retrieval"): for each caption, is a positive image (its own, or one the
  caption is equally true of, see below) in the top k images? image->text ("text retrieval"): for
  each image, is **any** caption it is a positive of in the top k captions?
- ``caption_positives``: which images answer each caption. Always the image it was written for and
  every image with a caption of identical text; for generated sets also every image whose attributes
  satisfy what the caption states (``matches``, from ``synthetic.claim_matrix``): "an italic number
  three" is answered by every italic 3. Real caption sets (Flickr8k) have no such attributes.
- ``recall_and_chance``: recall@K with per-item credits and the chance level of the same positives,
  under one metric-name suffix (``"_exact"`` for the caption-only numbers kept beside the default).
- ``topk_images(text_emb, image_emb, k)``: indices of the k most similar images per caption
  (for the grids), ties broken towards the lower image index.

What it is not: no encoding happens here. Embeddings are computed (once per image, however many
captions it has) and cached by ``contextclip.evaluate.embed_dataset``.
"""

from __future__ import annotations

import torch

__all__ = ["hits_at_k", "recall_at_k", "recall_and_chance", "topk_images", "caption_positives", "EXACT_SUFFIX"]

#: Metric-name suffix of the caption-only recall (own image and identical texts), kept beside the
#: attribute-matched default of generated sets for one release.
EXACT_SUFFIX = "_exact"


def hits_at_k(scores: torch.Tensor, positives: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row credit in [0, 1] that a positive column is ranked within the top ``k``.

    ``scores`` [n_queries, n_items] (higher = more similar), ``positives`` bool of the same shape.
    Let m be the best score of a positive item, g the number of items scoring strictly above m,
    t the number of items scoring exactly m and p how many of those are positives. Under a
    random order of the tied items the first positive lands within the top k with probability
    1 - C(t - p, r) / C(t, r) where r = k - g (0 if r <= 0, 1 if r > t - p).
    Without ties this is the usual indicator ``rank of best positive < k``.
    """
    if scores.shape != positives.shape or scores.dim() != 2:
        raise ValueError(
            f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} must be the same 2-d shape"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores = scores.detach().to(torch.float64)
    positives = positives.to(torch.bool)
    if not bool(positives.any(dim=1).all()):
        bad = (~positives.any(dim=1)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{int((~positives.any(dim=1)).sum())} rows have no positive item (first rows: {bad})")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; the embeddings are broken (check the checkpoint)")
    neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype)
    best_pos = torch.where(positives, scores, neg_inf).max(dim=1, keepdim=True).values  # m, [n, 1]
    greater = (scores > best_pos).sum(dim=1)  # g: only negatives can beat the best positive
    tied = scores == best_pos
    t = tied.sum(dim=1)  # tied items, positives included
    p = (tied & positives).sum(dim=1)  # tied positives (>= 1)
    r = (k - greater).clamp(min=0)  # slots left for the tied group
    # P(no positive among the first r tied items) = prod_{i<r} (t - p - i) / (t - i)
    miss = torch.ones_like(scores[:, 0])
    for i in range(int(r.max().item()) if len(r) else 0):
        active = i < r
        factor = ((t - p - i).clamp(min=0).to(scores.dtype)) / (t - i).clamp(min=1).to(scores.dtype)
        miss = torch.where(active, miss * factor, miss)
    return (1.0 - miss).to(torch.float64)


def caption_positives(text_image: torch.Tensor, n_images: int, captions: list[str] | None = None,
                      matches: torch.Tensor | None = None) -> torch.Tensor:
    """Bool [n_texts, n_images]: caption i belongs to image ``text_image[i]``.

    With ``captions`` (the text of each caption row), a caption is also a positive for every
    other image that has a caption with exactly the same text: a generated set may describe
    two images with the same words ("the digit 7"), and retrieving either one is correct.
    With ``matches`` (bool [n_texts, n_images]: image j has every attribute caption i states),
    every matching image is a positive too (attribute-matched positives of generated sets).
    """
    text_image = torch.as_tensor(text_image, dtype=torch.long)
    pos = torch.zeros(len(text_image), n_images, dtype=torch.bool)
    pos[torch.arange(len(text_image)), text_image] = True
    if matches is not None:
        matches = torch.as_tensor(matches, dtype=torch.bool)
        if matches.shape != pos.shape:
            raise ValueError(f"attribute matches {tuple(matches.shape)} do not fit {len(text_image)} captions x "
                             f"{n_images} images; delete the embedding cache and evaluate again")
        pos |= matches
    if captions is not None:
        if len(captions) != len(text_image):
            raise ValueError(f"{len(captions)} caption texts for {len(text_image)} caption rows")
        images_of: dict[str, set[int]] = {}
        for text, img in zip(captions, text_image.tolist()):
            images_of.setdefault(text, set()).add(img)
        for row, text in enumerate(captions):
            if len(images_of[text]) > 1:
                pos[row, sorted(images_of[text])] = True
    return pos


def recall_at_k(
    scores: torch.Tensor,
    positives: torch.Tensor,
    ks: tuple[int, ...] | list[int] = (1, 5, 10),
    per_item: bool = False,
) -> dict:
    """Recall@K in percent, both directions, CLIP_benchmark's definition.

    ``scores`` [n_texts, n_images] (e.g. ``text_emb @ image_emb.T``); ``positives`` bool, True
    where the caption describes the image. Returns ``{"text_to_image_R@k": %, "image_to_text_R@k": %}``.
    With ``per_item=True`` also returns ``"per_item"``: {metric name: credits per query (numpy)}
    (texts for text->image, images for image->text), used for the bootstrap intervals.
    """
    scores = torch.as_tensor(scores)
    positives = torch.as_tensor(positives, dtype=torch.bool)
    out: dict = {}
    items: dict = {}
    for k in ks:
        t2i = hits_at_k(scores, positives, k)  # for each caption: its image within the top k
        i2t = hits_at_k(scores.T, positives.T, k)  # for each image: any caption within the top k
        out[f"text_to_image_R@{k}"] = 100.0 * float(t2i.mean())
        out[f"image_to_text_R@{k}"] = 100.0 * float(i2t.mean())
        items[f"text_to_image_R@{k}"] = t2i.numpy()
        items[f"image_to_text_R@{k}"] = i2t.numpy()
    if per_item:
        out["per_item"] = items
    return out


def recall_and_chance(scores: torch.Tensor, positives: torch.Tensor, ks, suffix: str = "") -> tuple[dict, dict]:
    """``(metrics, per_item)``: recall@K in both directions and the chance level of the same positives
    (the recall of a constant scorer under the tie rule, ``chance_<metric>``), every name ending in
    ``suffix``; ``per_item`` holds the per-query credits of each recall metric (for the bootstrap)."""
    res = recall_at_k(scores, positives, ks, per_item=True)
    items = res.pop("per_item")
    chance = recall_at_k(torch.zeros(positives.shape), positives, ks)
    metrics = {**{f"{m}{suffix}": v for m, v in res.items()}, **{f"chance_{m}{suffix}": v for m, v in chance.items()}}
    return metrics, {f"{m}{suffix}": v for m, v in items.items()}


def topk_images(text_emb: torch.Tensor, image_emb: torch.Tensor, k: int) -> torch.Tensor:
    """LongTensor [n_texts, k]: the k images most similar to each caption, best first.

    Both inputs are (normalised) embeddings; similarity is the dot product. Ties go to the lower
    image index (a stable sort), so the grids are reproducible.
    """
    k = min(int(k), image_emb.shape[0])
    scores = text_emb.to(torch.float32) @ image_emb.to(torch.float32).T
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, :k]
