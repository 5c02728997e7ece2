"""Fine-tuning and the linear probe: splits, epoch 0 = zero-shot, learning, probe against a naive fit."""

import numpy as np
import pytest
import torch
from eval_fakes import ClassSet, PerfectEncoder, TinyModel
from sklearn.linear_model import LogisticRegression

from contextclip.config import Config
from contextclip.finetune import FineTuneClassifier, fine_tune, linear_probe, make_splits
from contextclip.zeroshot import class_embeddings, topk_accuracy, zero_shot_from_embeddings


def cfg(**kw):
    return Config().updated({"ft_epochs": 0, "ft_lr": 1e-2, "ft_patience": 2, "batch_size": 16, **kw})


def test_splits_without_official_are_70_20_10_stratified_and_seeded():
    labels = torch.arange(5).repeat_interleave(20)
    s = make_splits(labels, None, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [70, 20, 10]
    for k, per_class in (("train", 14), ("val", 4), ("test", 2)):
        assert np.bincount(labels[s[k]].numpy()).tolist() == [per_class] * 5
    allidx = torch.cat([s["train"], s["val"], s["test"]]).sort().values
    assert torch.equal(allidx, torch.arange(100))  # a partition
    assert torch.equal(make_splits(labels, None, seed=3)["test"], s["test"])
    assert not torch.equal(make_splits(labels, None, seed=4)["test"], s["test"])


def test_splits_with_official_test_use_it_and_80_20_the_rest():
    labels = torch.arange(4).repeat(50)  # 200
    test = torch.arange(150, 200)
    s = make_splits(labels, {"train": torch.arange(150), "test": test}, seed=0)
    assert torch.equal(s["test"], test)
    assert len(s["train"]) == 120 and len(s["val"]) == 30
    assert not set(s["val"].tolist()) & set(test.tolist())


@pytest.mark.threads(2)
def test_epoch0_equals_zero_shot_exactly():
    ds = ClassSet.make(n_per_class=15, n_classes=5, noise=90)
    model = TinyModel(ds.classnames, seed=1)
    W = class_embeddings(model, ds.classnames, ds.templates)
    clf = FineTuneClassifier(model, W, scale=7.0).eval()
    with torch.no_grad():
        ft_logits = clf(ds.images)
    zs = zero_shot_from_embeddings(model.encode_image(ds.images).detach(), ds.labels, W)
    assert topk_accuracy(ft_logits, ds.labels) == pytest.approx({"top1": zs["top1"], "top5": zs["top5"]})
    assert torch.equal(ft_logits.argmax(1), (model.encode_image(ds.images) @ W.T).argmax(1))
    # and through fine_tune with zero epochs, on its test split
    out = fine_tune(model, ds, cfg(ft_epochs=0), seed=0, per_item=True)
    idx = torch.as_tensor(out["test_index"])
    zs_test = zero_shot_from_embeddings(model.encode_image(ds.images[idx]).detach(), ds.labels[idx], W)
    assert out["top1"] == pytest.approx(zs_test["top1"]) and out["best_epoch"] == 0


@pytest.mark.threads(2)
def test_fine_tuning_learns_and_leaves_the_model_untouched():
    ds = ClassSet.make(n_per_class=30, n_classes=4, noise=40)
    model = TinyModel(ds.classnames, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = fine_tune(model, ds, cfg(ft_epochs=0, ft_init="random"), seed=0)
    out = fine_tune(model, ds, cfg(ft_epochs=15, ft_patience=15, ft_init="random"), seed=0)
    assert out["top1"] > max(start["top1"], 80.0)
    assert out["n"] == 12 and out["n_train"] == 84 and out["n_val"] == 24
    assert len(out["val_top1"]) == out["epochs_run"] + 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_early_stopping_respects_patience():
    ds = ClassSet.make(n_per_class=10, n_classes=4)
    out = fine_tune(PerfectTrainable(ds.classnames), ds, cfg(ft_epochs=10, ft_patience=1), seed=0)
    assert out["top1"] == 100.0 and out["epochs_run"] == 1 and out["best_epoch"] == 0
    assert out["stopped_on_validation"]  # validation stopped it, not the epoch cap
    capped = fine_tune(PerfectTrainable(ds.classnames), ds, cfg(ft_epochs=1, ft_patience=5), seed=0)
    assert not capped["stopped_on_validation"]


class PerfectTrainable(PerfectEncoder):
    """Already perfect; one dummy parameter so an optimiser can be built. Val never improves."""

    def __init__(self, classnames):
        super().__init__(classnames)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, images):
        return super().encode_image(images) + 0 * self.dummy


def test_linear_probe_matches_a_naive_sklearn_fit():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(40)
    feats = torch.randn(3, 6, generator=g)[labels] + 0.8 * torch.randn(120, 6, generator=g)
    s = make_splits(labels, None, seed=0)
    grid = (0.01, 0.1, 1.0, 10.0)
    out = linear_probe(feats, labels, s, seed=0, c_grid=grid, max_extensions=0)
    # naive: L2-normalise, standardise on the fitted images, pick C on val, refit on train+val, score test
    x = torch.nn.functional.normalize(feats, dim=-1).double().numpy()
    y = labels.numpy()
    tr, va, te = (s[k].numpy() for k in ("train", "val", "test"))

    def z(fit, idx):
        return (x[idx] - x[fit].mean(0)) / x[fit].std(0)

    accs = {c: (LogisticRegression(C=c, max_iter=5000, tol=1e-6).fit(z(tr, tr), y[tr]).predict(z(tr, va)) == y[va]).mean()
            for c in grid}
    best = max(grid, key=lambda c: (accs[c], -c))
    both = np.r_[tr, va]
    pred = LogisticRegression(C=best, max_iter=5000, tol=1e-6).fit(z(both, both), y[both]).predict(z(both, te))
    assert out["C"] == best
    assert out["top1"] == pytest.approx(100.0 * (pred == y[te]).mean())
    assert "top5" not in out  # 3 classes


def test_linear_probe_brackets_its_choice_converges_and_is_bit_reproducible():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(50)
    feats = torch.randn(4, 16, generator=g)[labels] + 2.0 * torch.randn(200, 16, generator=g)
    s = make_splits(labels, None, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a warning would fail the test
        a = linear_probe(feats, labels, s, seed=0, c_grid=(1e3, 1e4))  # starts at the weak-regularisation end
        b = linear_probe(feats, labels, s, seed=0, c_grid=(1e3, 1e4))
    tried = sorted(float(c) for c in a["val_top1_by_C"])
    assert tried[0] < 1e3  # the grid grew towards stronger regularisation
    assert a["C_bracketed"]
    acc = {float(c): v for c, v in a["val_top1_by_C"].items()}
    assert acc[a["C"]] == max(acc.values())
    assert a["converged"]
    assert a == b or (a["C"] == b["C"] and a["top1"] == b["top1"] and a["val_top1_by_C"] == b["val_top1_by_C"])


def test_linear_probe_perfect_features():
    labels = torch.arange(6).repeat_interleave(10)
    feats = torch.nn.functional.one_hot(labels, 6).float()
    out = linear_probe(feats, labels, make_splits(labels, None, seed=1), seed=1)
    assert out["top1"] == 100.0 and out["top5"] == 100.0
