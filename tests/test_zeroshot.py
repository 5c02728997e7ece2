"""Zero-shot metrics and the prompt-ensemble classifier against naive references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from eval_fakes import ClassSet, ConstantEncoder, PerfectEncoder

from contextclip.zeroshot import (
    chance_levels,
    class_embeddings,
    evaluate_zero_shot,
    format_prompt,
    mean_per_class_recall,
    topk_accuracy,
    zero_shot_from_embeddings,
)


def naive_topk(logits, targets, k):
    hits = 0
    for row, t in zip(logits.tolist(), targets.tolist()):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits += t in order[:k]
    return 100.0 * hits / len(targets)


def test_topk_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 12, generator=g)
    targets = torch.randint(0, 12, (200,), generator=g)
    out = topk_accuracy(logits, targets)
    assert out["top1"] == pytest.approx(naive_topk(logits, targets, 1))
    assert out["top5"] == pytest.approx(naive_topk(logits, targets, 5))


def test_top5_only_with_five_classes():
    assert set(topk_accuracy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))) == {"top1"}
    assert "chance_top5" not in chance_levels(3)
    assert chance_levels(10) == {"chance_top1": 10.0, "chance_top5": 50.0}
    assert chance_levels(5)["chance_top5"] == 100.0


def test_ties_give_expected_credit():
    # all classes tied: every sample gets 1/C at top-1 and 5/C at top-5, whatever the targets
    out = topk_accuracy(torch.zeros(7, 10), torch.tensor([0, 0, 0, 3, 9, 9, 2]))
    assert out == {"top1": pytest.approx(10.0), "top5": pytest.approx(50.0)}
    # target tied with one other class at the top: half credit
    logits = torch.tensor([[2.0, 2.0, 0.0, -1.0, -2.0, -3.0]])
    assert topk_accuracy(logits, torch.tensor([1]))["top1"] == pytest.approx(50.0)


def test_mean_per_class_recall_matches_naive():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(90, 4, generator=g)
    targets = torch.cat([torch.zeros(60), torch.ones(20), torch.full((10,), 2)]).long()
    pred = logits.argmax(1)
    want = np.mean([float((pred[targets == c] == c).float().mean()) for c in (0, 1, 2)]) * 100
    assert mean_per_class_recall(logits, targets) == pytest.approx(want)
    # the per-item weights used by the bootstrap average back to the same number
    W = F.normalize(torch.randn(4, 5, generator=g), dim=-1)
    emb = torch.randn(90, 5, generator=g)
    res = zero_shot_from_embeddings(emb, targets, W, per_item=True)
    assert 100 * res["per_item"]["mean_per_class_recall"].mean() == pytest.approx(res["mean_per_class_recall"])
    assert 100 * res["per_item"]["top1"].mean() == pytest.approx(res["top1"])


def test_class_embeddings_average_of_normalised_templates():
    enc = PerfectEncoder(classnames=["cat", "dog"], dim=6)
    templates = ["a photo of a {}.", "a {c} drawing"]
    W = class_embeddings(enc, ["cat", "dog"], templates)
    for i, c in enumerate(["cat", "dog"]):
        prompts = [format_prompt(t, c) for t in templates]
        e = F.normalize(enc.embed_texts(prompts), dim=-1)
        want = F.normalize(e.mean(0), dim=-1)
        assert torch.allclose(W[i], want, atol=1e-6)
    assert torch.allclose(W.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="slot"):
        format_prompt("no slot", "cat")


def test_perfect_encoder_scores_100_and_constant_scores_chance():
    ds = ClassSet.make(n_per_class=6, n_classes=8)
    perfect = evaluate_zero_shot(PerfectEncoder(ds.classnames), ds)
    assert perfect["top1"] == 100.0 and perfect["mean_per_class_recall"] == 100.0
    const = evaluate_zero_shot(ConstantEncoder(), ds)
    assert const["top1"] == pytest.approx(const["chance_top1"]) == pytest.approx(12.5)
    assert const["top5"] == pytest.approx(const["chance_top5"])
    assert const["n"] == 48 and const["n_classes"] == 8
