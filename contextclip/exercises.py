"""The claims the worked solutions make, as checks on the numbers each solution computes.

What it is: one small function per exercise claim (``notebooks/solutions/NN_*_solutions.py`` call
them). Each takes the numbers a solution computed and raises ``AssertionError`` (with the numbers
in the message) when the claim is false on them; it returns nothing otherwise. Keeping the checks
here, not inline, lets ``tests/test_solutions_claims.py`` call each with its premise flipped and see
it fail: a check that passes whatever the numbers would be no check.

What it is not: no training, no evaluation, no file reading; the solutions compute, these judge.
The checks raise explicitly (never a bare ``assert``), so ``python -O`` does not silence them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _claim(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


# ----------------------------------------------------------------------------- 00 the contextual loss
def cx_extremes(identical: float, one_vector: float, n: int, tol: float = 1e-3) -> None:
    """Exercise 00.1: images equal to their captions give L_CX = 0; one image vector for all gives log N."""
    _claim(abs(identical) < tol, f"images = captions should give L_CX = 0, got {identical:.4f}")
    _claim(abs(one_vector - math.log(n)) < tol,
           f"one image vector for all should give L_CX = log N = {math.log(n):.4f}, got {one_vector:.4f}")


def cx_grows_with_batch(rows: Sequence[Mapping]) -> None:
    """Exercise 00.2: a random batch's L_CX grows with N and stays below its ceiling log N.

    ``rows``: ``{"N", "random L_CX"}`` in increasing N.
    """
    losses = [r["random L_CX"] for r in rows]
    _claim(all(a < b for a, b in zip(losses, losses[1:])), f"random L_CX does not grow with N: {losses}")
    _claim(all(r["random L_CX"] <= math.log(r["N"]) + 1e-6 for r in rows),
           f"random L_CX above log N: {[(r['N'], r['random L_CX']) for r in rows]}")


def noise_response(at: Mapping[tuple[float, float], Mapping[str, float]], k: int) -> None:
    """Exercise 00.3: the loss terms as noise is added to the images of ``k`` aligned pairs.

    ``at[(noise, alpha)]`` holds the terms of ``ContextCLIPLoss`` (``loss``, ``contrastive_loss``,
    ``contextual_loss``); noise 0 and the largest noise, alpha 0 and a larger alpha, must be present.
    Claims: without noise L_CX = 0, so alpha moves nothing; L_CX is the same at every alpha (it is
    computed, not switched off, at alpha 0); from no noise to the largest, L_CX rises by more than
    L_CLIP (at tau = 0.1 CLIP still finds each image's own caption), and stays within log k.
    """
    noises = sorted({n for n, _ in at})
    alphas = sorted({a for _, a in at})
    lo, hi, a0, a1 = noises[0], noises[-1], alphas[0], alphas[-1]
    _claim(lo == 0 and a0 == 0 and a1 > 0, f"needs noise 0 and alpha 0 and a larger alpha, got {sorted(at)}")
    _claim(abs(at[lo, a1]["loss"] - at[lo, a0]["loss"]) < 1e-3,
           f"without noise alpha should move nothing: loss {at[lo, a0]['loss']:.4f} at alpha 0, "
           f"{at[lo, a1]['loss']:.4f} at alpha {a1:g}")
    for n in noises:
        _claim(abs(at[n, a0]["contextual_loss"] - at[n, a1]["contextual_loss"]) < 1e-6,
               f"L_CX at noise {n:g} differs between alpha 0 and {a1:g}: it must be computed at alpha 0 too")
    rise_clip = at[hi, a0]["contrastive_loss"] - at[lo, a0]["contrastive_loss"]
    rise_cx = at[hi, a0]["contextual_loss"] - at[lo, a0]["contextual_loss"]
    _claim(rise_cx > rise_clip > 0,
           f"from noise 0 to {hi:g}: L_CX rises by {rise_cx:.3f}, L_CLIP by {rise_clip:.3f}; "
           "the claim is that both rise and L_CX by more")
    _claim(max(v["contextual_loss"] for v in at.values()) <= math.log(k) + 1e-6, f"L_CX above log {k}")


# ----------------------------------------------------------------------------- 01 data
def split_sizes(n_pairs: int, val_fraction: float, n_train: int, n_val: int, batch_size: int,
                steps: int) -> None:
    """Exercise 01.1: validation = val_fraction of the pairs (rounded), the rest train, steps = n_train // batch."""
    _claim(n_train + n_val == n_pairs, f"train {n_train} + validation {n_val} != n_pairs {n_pairs}")
    _claim(abs(n_val - val_fraction * n_pairs) <= 1, f"validation {n_val} is not {val_fraction} x {n_pairs}")
    _claim(steps == n_train // batch_size, f"{steps} steps per epoch, expected {n_train} // {batch_size}")


def augmentation_per_epoch(same_images: Mapping[bool, bool]) -> None:
    """Exercise 01.2: ``same_images[augment]`` = epoch 0 and epoch 1 show the same images.

    Without augmentation they do; with it each epoch draws new ones.
    """
    _claim(same_images[False], "with augment false, epochs 0 and 1 should show the same images")
    _claim(not same_images[True], "with augment true, epochs 0 and 1 should show different images")


def manifest_check_stops(returncode: int, output: str, bad_rows: Sequence[str]) -> None:
    """Exercise 01.3: the manifest check exits 1 and names every bad row."""
    _claim(returncode == 1, f"the check should exit with 1, got {returncode}")
    missing = [b for b in bad_rows if b not in output]
    _claim(not missing, f"the check's output does not name {missing}")


# ----------------------------------------------------------------------------- 02 train
def contextual_gradient_parts(norms: Mapping[str, float]) -> None:
    """Exercise 02.1: L_CX sends a gradient to both towers and both heads, none to the logit scale."""
    towers = {k: v for k, v in norms.items() if k != "logit scale"}
    _claim(all(v > 0 for v in towers.values()), f"every tower and head should get a gradient from L_CX: {towers}")
    _claim(norms["logit scale"] == 0.0, f"the logit scale got a gradient from L_CX: {norms['logit scale']}")


def loss_is_weighted_sum(terms: Mapping[str, float], alpha: float, tol: float = 1e-4) -> None:
    """Exercise 02.2: a run's loss is L_CLIP + alpha * L_CX (Eq. 1), so alpha = 2 weighs L_CX 4x more than 0.5."""
    expected = terms["contrastive_loss"] + alpha * terms["contextual_loss"]
    _claim(abs(terms["loss"] - expected) <= tol * max(1.0, abs(expected)),
           f"loss {terms['loss']:.5f} != {terms['contrastive_loss']:.5f} + {alpha:g} x {terms['contextual_loss']:.5f}")


def falls_during_training(first: float, final: float, what: str = "CLIP's validation L_CX") -> None:
    """Exercise 02.3: a quantity (CLIP's validation L_CX) is lower after the last epoch than after the first."""
    _claim(final < first, f"{what} did not fall: {first:.4f} after epoch 1, {final:.4f} after the last")


# ----------------------------------------------------------------------------- 03 zero-shot
def chance_column(rows: Sequence[Mapping]) -> None:
    """Exercise 03.1: the chance column is 1/C (top-1) and min(1, 5/C) (top-5), in percent.

    ``rows``: ``{"classes", "metric", "table chance"}`` with metric top1 or top5.
    """
    for r in rows:
        c = r["classes"]
        expected = 100.0 / c if r["metric"] == "top1" else min(100.0, 500.0 / c)
        _claim(abs(r["table chance"] - expected) < 1e-6,
               f"{r.get('dataset', '')} {r['metric']}: chance {r['table chance']} with {c} classes, expected {expected:g}")


def fewer_items_wider(width_small: float, width_full: float, n_small: int, n_full: int) -> None:
    """Exercise 03.2: an interval over fewer test images is wider (bootstrap width ~ 1/sqrt(n));
    ``width_small`` is the mean width over random draws of ``n_small`` images."""
    _claim(n_small < n_full, f"needs fewer images in the small draw: {n_small} vs {n_full}")
    _claim(width_small > width_full, f"width with {n_small} images {width_small:.2f} is not above "
                                     f"the width with {n_full} {width_full:.2f}")


def undecided_rows(rows: Sequence[Mapping]) -> None:
    """Exercise 03.3: a row whose interval holds 0 tells neither "better" nor "worse": the kit's own
    rule (``results.three_way`` without a paper figure) gives it the label of an interval holding 0,
    not the label of one that excludes 0."""
    from contextclip.results import three_way  # late: results pulls in pandas, the checks above do not

    holds, excludes = three_way(-1.0, 1.0), three_way(1.0, 2.0)
    for r in rows:
        label = three_way(r["ci_low"], r["ci_high"])
        _claim(label == holds and label != excludes,
               f"{r.get('dataset', '')} {r.get('metric', '')}: [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] is "
               f"labelled {label!r}, not {holds!r}")


# ----------------------------------------------------------------------------- 04 fine-tuning
def best_epoch_in_range(best_epochs: Sequence[float], epochs_run: Sequence[float], ft_epochs: int) -> None:
    """Exercise 04.2: early stopping keeps the best epoch: 0 <= best_epoch <= epochs run <= ft_epochs
    (0: the zero-shot head before any fine-tuning epoch was best on validation)."""
    for b, e in zip(best_epochs, epochs_run):
        _claim(0 <= b <= e <= ft_epochs, f"best_epoch {b:g}, epochs run {e:g}, ft_epochs {ft_epochs}")


def fine_tuning_shrinks(zero_shot_diff: float, fine_tune_diff: float) -> None:
    """Exercise 04.3: after fine-tuning, ContextCLIP - CLIP is smaller in size than in zero-shot."""
    _claim(abs(fine_tune_diff) < abs(zero_shot_diff),
           f"|fine-tune difference| {abs(fine_tune_diff):.2f} is not below |zero-shot difference| "
           f"{abs(zero_shot_diff):.2f}")


# ----------------------------------------------------------------------------- 05 t-SNE
def tsne_is_a_picture(rows: Sequence[Mapping], original: str, projected: str = "2-d silhouette") -> None:
    """Exercises 05.1-3: the silhouette in the original space is one number whatever t-SNE does;
    the 2-d silhouette changes with the perplexity and the t-SNE seed."""
    orig = {round(r[original], 9) for r in rows}
    flat = {round(r[projected], 9) for r in rows}
    _claim(len(orig) == 1, f"the original-space silhouette should not depend on t-SNE: {sorted(orig)}")
    _claim(len(flat) > 1, f"the 2-d silhouette should move with perplexity and seed: {sorted(flat)}")


# ----------------------------------------------------------------------------- 06 retrieval
def retrieval_chance(metrics_chance: float, expected: float, n_images: int) -> None:
    """Exercise 06.1: chance R@1 = mean over captions of (correct images / n_images), >= 100 / n_images."""
    _claim(abs(metrics_chance - expected) < 1e-4, f"metrics.csv chance {metrics_chance:.4f} != {expected:.4f}")
    _claim(metrics_chance >= 100 / n_images - 1e-9, f"chance {metrics_chance:.4f} below 100 / {n_images}")


def framed_share(found: Mapping[int, float], recall: Mapping[int, float]) -> None:
    """Exercise 06.2: ``found[K]`` = % of captions with a framed image in the top K; it is at least
    Recall@K (a framed image is a positive, and the caption's own image is one), and grows with K."""
    ks = sorted(found)
    for k in ks:
        _claim(found[k] >= recall[k] - 1e-3,  # float32 means against metrics.csv's rounding
               f"K = {k}: {found[k]:.2f}% framed is below Recall@{k} {recall[k]:.2f}")
    _claim(all(found[a] <= found[b] + 1e-9 for a, b in zip(ks, ks[1:])),
           f"framed share falls as K grows: {found}")


def two_directions(n_queries: Mapping[str, int]) -> None:
    """Exercise 06.3: the two directions ask different questions: text-to-image has one query per
    caption, image-to-text one per image, and there are more captions than images."""
    _claim(n_queries["text_to_image"] > n_queries["image_to_text"],
           f"expected more caption queries than image queries: {dict(n_queries)}")


# ----------------------------------------------------------------------------- 07 report
def interval_source(rows: Sequence[Mapping]) -> None:
    """Exercise 07.1: one paired seed -> a bootstrap over test items; several -> a t-interval over seeds.

    ``rows``: ``{"paired_seeds", "ci_method"}`` of rows that have an interval.
    """
    for r in rows:
        k, method = int(r["paired_seeds"]), str(r["ci_method"])
        ok = method.startswith("bootstrap") if k == 1 else method.startswith(f"t over {k} seeds")
        _claim(ok, f"{r.get('dataset', '')} {r.get('metric', '')}: {k} paired seed(s) but the interval is {method!r}")


def resamples_add_no_evidence(low_a: float, low_b: float, width: float, share: float = 0.25) -> None:
    """Exercise 07.2: more bootstrap resamples move an endpoint by a small share of the interval's width."""
    _claim(abs(low_a - low_b) < share * width,
           f"the lower end moved by {abs(low_a - low_b):.3f}, more than {share:g} x the width {width:.3f}")


# ----------------------------------------------------------------------------- 08 sensitivity
def clip_is_the_baseline(verdicts: Sequence[str], alphas: Sequence[float]) -> None:
    """Exercise 08.1: exactly one setting is the baseline, and it is alpha = 0 (CLIP)."""
    base = [a for v, a in zip(verdicts, alphas) if v == "baseline"]
    _claim(len(base) == 1 and float(base[0]) == 0, f"baseline settings (alpha): {base}, expected exactly [0]")
