"""Recall@K and the tie-aware hit credit against naive loops written here."""

import itertools

import pytest
import torch

from contextclip.retrieval import caption_positives, hits_at_k, recall_at_k, topk_images


def naive_recall(scores, positives, k):
    """CLIP_benchmark's definition, one query at a time, for tie-free scores."""
    hits = []
    for row, pos in zip(scores.tolist(), positives.tolist()):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits.append(any(pos[j] for j in order[:k]))
    return 100.0 * sum(hits) / len(hits)


def naive_tie_credit(row, pos, k):
    """Average over every order of the tied items of 'a positive is in the top k'."""
    values = sorted(set(row), reverse=True)
    groups = [[j for j in range(len(row)) if row[j] == v] for v in values]
    total, count = 0.0, 0
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        order = [j for g in perms for j in g]
        total += any(pos[j] for j in order[:k])
        count += 1
    return total / count


def test_recall_several_captions_per_image_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    n_images, per_image = 12, 3
    text_image = torch.arange(n_images).repeat_interleave(per_image)
    img = torch.nn.functional.normalize(torch.randn(n_images, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img[text_image] + 0.9 * torch.randn(len(text_image), 8, generator=g), dim=-1)
    scores = txt @ img.T
    pos = caption_positives(text_image, n_images)
    out = recall_at_k(scores, pos, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert out[f"text_to_image_R@{k}"] == pytest.approx(naive_recall(scores, pos, k))
        assert out[f"image_to_text_R@{k}"] == pytest.approx(naive_recall(scores.T, pos.T, k))
    # image->text uses "any caption": it is at least the best single caption's rate
    assert out["image_to_text_R@1"] > 0


def test_perfect_and_constant_scorers():
    n = 20
    pos = torch.eye(n, dtype=torch.bool)
    perfect = recall_at_k(torch.eye(n), pos, ks=(1, 5))
    assert perfect["text_to_image_R@1"] == 100.0 and perfect["image_to_text_R@1"] == 100.0
    const = recall_at_k(torch.zeros(n, n), pos, ks=(1, 5))
    assert const["text_to_image_R@1"] == pytest.approx(100.0 / n)
    assert const["image_to_text_R@5"] == pytest.approx(500.0 / n)


def test_tie_credit_matches_enumeration_of_orders():
    rows = [
        ([1.0, 1.0, 1.0, 0.0, 0.5], [True, False, False, False, False]),
        ([0.2, 0.9, 0.9, 0.9, 0.1], [False, True, True, False, False]),
        ([0.9, 0.5, 0.5, 0.5, 0.5], [False, False, False, True, False]),
        ([0.3, 0.3, 0.3, 0.3, 0.3], [True, False, True, False, False]),
    ]
    scores = torch.tensor([r for r, _ in rows])
    pos = torch.tensor([p for _, p in rows])
    for k in (1, 2, 3, 4):
        got = hits_at_k(scores, pos, k)
        want = [naive_tie_credit(r, p, k) for r, p in rows]
        assert got.tolist() == pytest.approx(want), k


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no positive"):
        hits_at_k(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="same 2-d shape"):
        hits_at_k(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool), 1)


def test_topk_images_order_and_ties():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.7, 0.7]])
    top = topk_images(text, image, 3)
    assert top[0].tolist() == [1, 2, 3]  # tie between 1 and 2 goes to the lower index
    assert top[1].tolist() == [0, 3, 1]


def test_identical_captions_are_positives_for_every_image_they_describe():
    from contextclip.retrieval import caption_positives, recall_at_k

    # images 0 and 1 are both described as "the digit 7"; image 2 is not
    text_image = torch.tensor([0, 1, 2])
    texts = ["the digit 7", "the digit 7", "a red star"]
    plain = caption_positives(text_image, 3)
    dup = caption_positives(text_image, 3, texts)
    assert plain.sum() == 3 and dup.sum() == 5
    assert dup[0].tolist() == [True, True, False] and dup[2].tolist() == [False, False, True]
    # caption 0 retrieves image 1 first: a miss by image index, a hit by caption text
    scores = torch.tensor([[0.5, 0.9, 0.1], [0.5, 0.9, 0.1], [0.1, 0.2, 0.9]])
    assert recall_at_k(scores, plain, (1,))["text_to_image_R@1"] == pytest.approx(200 / 3)
    assert recall_at_k(scores, dup, (1,))["text_to_image_R@1"] == pytest.approx(100.0)
    # chance follows the positives: a constant scorer finds one of two positives among 3 at k=1 w.p. 2/3
    chance = recall_at_k(torch.zeros(3, 3), dup, (1,))["text_to_image_R@1"]
    assert chance == pytest.approx(100 * (2 / 3 + 2 / 3 + 1 / 3) / 3)
