"""Fine-tuning and linear probing of a trained image tower (Table 2).

What it is:
- ``make_splits``: train/val/test indices. The official test split where the dataset has one,
  the rest split 80/20 train/val; otherwise 70/20/10. Always stratified by class and seeded.
- ``fine_tune``: end-to-end fine-tuning of the image path (tower + image head W_I) with a
  linear classifier on top, ``logits = scale * normalise(encode_image(x)) @ W.T``. W starts
  from the zero-shot class embeddings (``ft_init: zeroshot``), so epoch 0 *is* the zero-shot
  classifier, or from a random matrix (``ft_init: random``). Adam at ``ft_lr``, at most
  ``ft_epochs`` epochs, early stopping on validation top-1 with ``ft_patience``; the epoch with
  the best validation top-1 (epoch 0 included) is scored on the test split.
- ``linear_probe``: scikit-learn logistic regression on frozen, L2-normalised tower features;
  the inverse regularisation C is chosen on the validation split from ``PROBE_C_GRID`` (grown
  until the choice is bracketed), then the probe is refit on train + val and scored on test.

What it is not: the model passed in is never modified (fine-tuning works on a copy); no result
files are written here (``contextclip.evaluate``).
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from contextclip.config import check_choice
from contextclip.encoding import encode_images, n_images, take_images
from contextclip.zeroshot import class_embeddings, per_sample_topk, topk_accuracy

__all__ = ["make_splits", "FineTuneClassifier", "fine_tune", "linear_probe", "PROBE_C_GRID"]

#: inverse L2 strengths tried first by the linear probe (CLIP used a finer sweep of the same kind);
#: the grid grows by decades when the best C is at one of its ends (see ``linear_probe``)
PROBE_C_GRID: tuple[float, ...] = (1e-3, 1e-2, 0.1, 1.0)
PROBE_MAX_EXTENSIONS = 3
PROBE_MAX_ITER = 1000


# --------------------------------------------------------------------------- splits
def _stratified_parts(indices: np.ndarray, labels: np.ndarray, fractions: tuple[float, ...],
                      rng: np.random.Generator) -> list[np.ndarray]:
    """Split ``indices`` into len(fractions) parts, class by class, in the given proportions."""
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels[indices]):
        idx = indices[labels[indices] == c]
        idx = idx[rng.permutation(len(idx))]
        # sizes of all but the first part are rounded; the first (train) takes the remainder
        sizes = [int(round(f * len(idx))) for f in fractions[1:]]
        start = len(idx) - sum(sizes)
        parts[0].extend(idx[:start].tolist())
        for j, s in enumerate(sizes, start=1):
            parts[j].extend(idx[start : start + s].tolist())
            start += s
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def make_splits(labels, official: dict | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """``{"train", "val", "test"}`` index tensors (see the module docstring for the rule)."""
    labels = np.asarray(torch.as_tensor(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    everything = np.arange(len(labels))
    if official is not None and official.get("test") is not None:
        test = np.unique(np.asarray(torch.as_tensor(official["test"]), dtype=np.int64))
        if len(test) == 0 or test.max() >= len(labels) or test.min() < 0:
            raise ValueError(f"official test split has {len(test)} indices, some outside [0, {len(labels)})")
        rest = np.setdiff1d(everything, test)
        train, val = _stratified_parts(rest, labels, (0.8, 0.2), rng)  # 80/20 of the rest
    else:
        train, val, test = _stratified_parts(everything, labels, (0.7, 0.2, 0.1), rng)  # 70/20/10
    for name, part in (("train", train), ("val", val), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"the {name} split is empty ({len(labels)} labelled images); use a larger dataset")
    return {"train": torch.as_tensor(train), "val": torch.as_tensor(val), "test": torch.as_tensor(test)}


# --------------------------------------------------------------------------- fine-tuning
class FineTuneClassifier(nn.Module):
    """``logits = scale * normalise(model.encode_image(x)) @ W.T`` with W [C, D] learned."""

    def __init__(self, model: nn.Module, init_weight: torch.Tensor, scale: float):
        super().__init__()
        self.model = model
        self.weight = nn.Parameter(init_weight.detach().clone().float())
        self.scale = float(scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(self.model.encode_image(images).float(), dim=-1)
        return self.scale * emb @ self.weight.to(emb.device).T


def _model_scale(model) -> float:
    if hasattr(model, "clamped_logit_scale"):
        return float(model.clamped_logit_scale().detach().cpu())
    return 100.0


def _logits(clf: FineTuneClassifier, images, idx: torch.Tensor, batch_size: int) -> torch.Tensor:
    clf.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            out.append(clf(take_images(images, idx[s : s + batch_size])).float().cpu())
    return torch.cat(out)


def _unfreeze(model: nn.Module) -> None:
    """End-to-end: every parameter may learn; only the image path receives gradients."""
    model.requires_grad_(True)
    if hasattr(model, "freeze_image"):
        model.freeze_image = False


def fine_tune(model, dataset, cfg, seed: int = 0, splits: dict | None = None, per_item: bool = False,
              class_emb: torch.Tensor | None = None) -> dict:
    """Fine-tune a copy of ``model`` on a ``ClassificationSet``; test top-1/top-5 of the best-on-val epoch.

    ``cfg.eval``: ``ft_epochs`` (max epochs; 0 = score the initial classifier), ``ft_lr``,
    ``ft_patience``, ``ft_init`` (zeroshot | random), ``eval_batch_size``; ``cfg.train.batch_size``
    is the fine-tuning batch. Returns a flat dict (``top1``, ``top5``, ``val_top1`` per epoch,
    ``best_epoch``, ``epochs_run``, ``n``, ``n_train``, ``n_val``, ``n_classes``).
    """
    ev = cfg.eval
    torch.manual_seed(seed)
    labels = torch.as_tensor(dataset.labels, dtype=torch.long)
    if len(labels) != n_images(dataset.images):
        raise ValueError(f"dataset {dataset.name}: {n_images(dataset.images)} images but {len(labels)} labels")
    splits = splits or make_splits(labels, getattr(dataset, "splits", None), seed)
    n_classes = len(dataset.classnames)
    work = copy.deepcopy(model)
    _unfreeze(work)
    device = next(work.parameters()).device
    if check_choice("ft_init", ev.ft_init) == "zeroshot":
        init = class_emb if class_emb is not None else class_embeddings(work, dataset.classnames, dataset.templates,
                                                                          ev.eval_batch_size)
    else:  # random
        g = torch.Generator().manual_seed(seed)
        dim = class_emb.shape[1] if class_emb is not None else encode_images(work, dataset.images, 2,
                                                                             indices=[0]).shape[1]
        init = torch.randn(n_classes, dim, generator=g) / math.sqrt(dim)
    clf = FineTuneClassifier(work, init.to(device), _model_scale(work)).to(device)
    opt = torch.optim.Adam([p for p in clf.parameters() if p.requires_grad], lr=ev.ft_lr)
    bs_eval, bs_train = ev.eval_batch_size, cfg.train.batch_size
    train_idx, val_idx, test_idx = splits["train"], splits["val"], splits["test"]

    def val_top1() -> float:
        return topk_accuracy(_logits(clf, dataset.images, val_idx, bs_eval), labels[val_idx], ks=(1,))["top1"]

    history = [val_top1()]  # epoch 0 = the initial classifier (zero-shot when ft_init = zeroshot)
    best, best_epoch, best_state, bad_epochs = history[0], 0, copy.deepcopy(clf.state_dict()), 0
    g = torch.Generator().manual_seed(seed)
    stopped = False  # True when validation stopped it (ft_patience epochs without a better val top-1)
    for epoch in range(1, ev.ft_epochs + 1):
        clf.train()
        if hasattr(work, "train"):
            work.train()
        order = train_idx[torch.randperm(len(train_idx), generator=g)]
        for s in range(0, len(order), bs_train):
            idx = order[s : s + bs_train]
            loss = F.cross_entropy(clf(take_images(dataset.images, idx)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        history.append(val_top1())
        if history[-1] > best:
            best, best_epoch, best_state, bad_epochs = history[-1], epoch, copy.deepcopy(clf.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= ev.ft_patience:
                stopped = True
                break
    clf.load_state_dict(best_state)
    logits = _logits(clf, dataset.images, test_idx, bs_eval)
    y = labels[test_idx]
    out = {**topk_accuracy(logits, y), "n": len(test_idx), "n_train": len(train_idx), "n_val": len(val_idx),
           "n_classes": n_classes, "best_epoch": best_epoch, "epochs_run": len(history) - 1,
           "stopped_on_validation": stopped,
           "val_top1": history}
    if per_item:
        out["per_item"] = {f"top{k}": per_sample_topk(logits, y, k) for k in (1, 5) if k <= n_classes}
        out["test_index"] = test_idx.numpy()
    return out


# --------------------------------------------------------------------------- linear probe
def _probe_fit(c: float, x: np.ndarray, y: np.ndarray, seed: int, max_iter: int = PROBE_MAX_ITER):
    """One L-BFGS logistic regression, single-threaded (the same bits on every run), warnings kept.

    Returns (model, converged). A ConvergenceWarning is not silenced: it is caught, the fit is
    repeated with 10x the iterations, and a fit that still does not converge is reported as such
    (and its warning re-issued).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    for iters in (max_iter, 10 * max_iter):
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
            warnings.simplefilter("always", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=iters, tol=1e-6, random_state=seed).fit(x, y)
        bad = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not bad:
            return clf, True
    warnings.warn(f"linear probe: L-BFGS did not converge at C={c} in {10 * max_iter} iterations "
                  f"({bad[-1].message})", ConvergenceWarning, stacklevel=3)
    return clf, False


def linear_probe(features: torch.Tensor, labels, splits: dict, seed: int = 0,
                 c_grid: tuple[float, ...] = PROBE_C_GRID, n_classes: int | None = None,
                 per_item: bool = False, max_extensions: int = PROBE_MAX_EXTENSIONS) -> dict:
    """Logistic-regression probe on frozen features [N, F]: L2-normalised, then standardised with
    the mean and spread of the images it is fitted on.

    C is picked by validation top-1 (ties -> the smaller C, i.e. the stronger regularisation).
    When the best C is at an end of the grid and beats its neighbour, the grid grows by a factor
    of 10 in that direction (at most ``max_extensions`` times), so the choice is bracketed (a
    better value on both sides, or a plateau): ``C_bracketed`` says whether it is. The probe is then refit on train + val and scored on test. Fits are single-threaded and
    deterministic: the same features give the same bits.
    """
    x = F.normalize(torch.as_tensor(features).float(), dim=-1).numpy().astype(np.float64)
    y = np.asarray(torch.as_tensor(labels), dtype=np.int64)
    n_classes = int(n_classes or (y.max() + 1))
    tr, va, te = (np.asarray(splits[k]) for k in ("train", "val", "test"))
    if len(np.unique(y[tr])) < 2:
        raise ValueError("the linear probe needs at least two classes in the training split")

    def standardise(fit_idx: np.ndarray):
        mu, sd = x[fit_idx].mean(0), x[fit_idx].std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        return lambda idx: (x[idx] - mu) / sd

    def scores(clf, xs: np.ndarray) -> torch.Tensor:
        full = np.zeros((len(xs), n_classes))  # classes absent from training get probability 0
        full[:, clf.classes_] = clf.predict_proba(xs)
        return torch.as_tensor(full)

    z = standardise(tr)
    val_acc: dict[float, float] = {}
    converged: dict[float, bool] = {}

    def try_c(c: float) -> None:
        clf, ok = _probe_fit(c, z(tr), y[tr], seed)
        converged[c] = ok
        val_acc[c] = topk_accuracy(scores(clf, z(va)), torch.as_tensor(y[va]), ks=(1,))["top1"]

    grid = sorted(float(c) for c in c_grid)
    for c in grid:
        try_c(c)
    def at_open_end() -> float | None:
        """The C to try next: one decade beyond the best C when it sits at an end of the grid
        and beats its inner neighbour (on a plateau, going further cannot win a strict max)."""
        cs = sorted(val_acc)
        best = max(cs, key=lambda c: (val_acc[c], -c))
        if len(cs) >= 2 and best == cs[0] and val_acc[cs[0]] > val_acc[cs[1]]:
            return float(f"{best / 10:.3g}")
        if len(cs) >= 2 and best == cs[-1] and val_acc[cs[-1]] > val_acc[cs[-2]]:
            return float(f"{best * 10:.3g}")
        return None

    for _ in range(max_extensions):
        nxt = at_open_end()
        if nxt is None:
            break
        try_c(nxt)
    best_c = max(val_acc, key=lambda c: (val_acc[c], -c))
    bracketed = at_open_end() is None
    fit_idx = np.concatenate([tr, va])
    z = standardise(fit_idx)
    final, final_ok = _probe_fit(best_c, z(fit_idx), y[fit_idx], seed)
    logits, yt = scores(final, z(te)), torch.as_tensor(y[te])
    out = {**topk_accuracy(logits, yt), "n": len(te), "n_train": len(tr) + len(va), "n_classes": n_classes,
           "C": best_c, "C_bracketed": bool(bracketed), "converged": bool(final_ok and all(converged.values())),
           "val_top1_by_C": {str(c): a for c, a in sorted(val_acc.items())}}
    if per_item:
        out["per_item"] = {f"top{k}": per_sample_topk(logits, yt, k) for k in (1, 5) if k <= n_classes}
        out["test_index"] = te
    return out
