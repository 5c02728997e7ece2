"""The worked solutions' claims are checks that can fail: each check of ``contextclip.exercises``
passes on numbers where its claim holds and raises ``AssertionError`` when the premise is flipped.

One flip per solution notebook (00-08), on numbers computed here where that is cheap (notebook 00's
loss terms) and on small constructed numbers otherwise; plus a static check that every solution
calls the checks and every check is called by a solution.
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path

import pytest
import torch

from contextclip import exercises
from contextclip.losses import ContextCLIPLoss

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def _swap(rows: dict, a: str, b: str) -> dict:
    return {key: {**v, a: v[b], b: v[a]} for key, v in rows.items()}


def test_00_noise_response_on_the_notebook_settings_and_flipped():
    """16 pairs, tau 0.1, h 0.5: L_CLIP 0.001 -> ~0.6 and L_CX 0 -> ~1.9 from noise 0 to 3."""
    gen = torch.Generator().manual_seed(0)
    k, d = 16, 256
    text = torch.randn(k, d, generator=gen)
    direction = torch.randn(k, d, generator=gen) * text.norm(dim=1, keepdim=True) / math.sqrt(d)
    at = {}
    for noise in (0.0, 1.0, 3.0):
        for alpha in (0.0, 2.0):
            terms = ContextCLIPLoss(alpha=alpha, bandwidth=0.5)(text + noise * direction, text, 10.0)
            at[noise, alpha] = {n: v.item() for n, v in terms.items()}
    exercises.noise_response(at, k)  # the claim holds on the real numbers
    assert at[3.0, 0.0]["contextual_loss"] > 1.0  # measured at alpha 0, not a stand-in 0
    with pytest.raises(AssertionError, match="rises by"):
        exercises.noise_response(_swap(at, "contrastive_loss", "contextual_loss"), k)  # the old, false premise
    stand_in = {key: {**v, "contextual_loss": 0.0} if key[1] == 0 else v for key, v in at.items()}
    with pytest.raises(AssertionError, match="computed at alpha 0"):
        exercises.noise_response(stand_in, k)  # a loss that reports 0 for an uncomputed term is caught


def test_00_extremes_and_growth_flipped():
    exercises.cx_extremes(0.0, math.log(32), 32)
    with pytest.raises(AssertionError):
        exercises.cx_extremes(math.log(32), 0.0, 32)
    rows = [{"N": n, "random L_CX": 0.8 * math.log(n)} for n in (8, 32, 128)]
    exercises.cx_grows_with_batch(rows)
    with pytest.raises(AssertionError):
        exercises.cx_grows_with_batch(rows[::-1])


def test_01_augmentation_flipped():
    exercises.augmentation_per_epoch({False: True, True: False})
    with pytest.raises(AssertionError):
        exercises.augmentation_per_epoch({False: False, True: True})
    exercises.split_sizes(320, 0.1, 288, 32, 32, 9)
    with pytest.raises(AssertionError):
        exercises.split_sizes(320, 0.1, 288, 32, 32, 10)  # a partial last batch is dropped, not counted


def test_02_gradient_parts_and_weighted_sum_flipped():
    norms = {"image tower": 0.3, "text tower": 0.1, "image head": 0.2, "text head": 0.4, "logit scale": 0.0}
    exercises.contextual_gradient_parts(norms)
    with pytest.raises(AssertionError):
        exercises.contextual_gradient_parts({**norms, "logit scale": 0.05})
    terms = {"loss": 3.0 + 2.0 * 1.5, "contrastive_loss": 3.0, "contextual_loss": 1.5}
    exercises.loss_is_weighted_sum(terms, 2.0)
    with pytest.raises(AssertionError):
        exercises.loss_is_weighted_sum(terms, 0.5)
    exercises.falls_during_training(3.18, 2.93)
    with pytest.raises(AssertionError):
        exercises.falls_during_training(2.93, 3.18)


def test_03_chance_width_and_undecided_flipped():
    rows = [{"dataset": "d", "classes": 10, "metric": "top1", "table chance": 10.0},
            {"dataset": "d", "classes": 10, "metric": "top5", "table chance": 50.0},
            {"dataset": "n", "classes": 6, "metric": "top1", "table chance": 100 / 6},
            {"dataset": "n", "classes": 4, "metric": "top5", "table chance": 100.0}]
    exercises.chance_column(rows)
    flipped = [{**r, "table chance": {"top1": 50.0, "top5": 10.0}[r["metric"]]} if r["dataset"] == "d" else r
               for r in rows]
    with pytest.raises(AssertionError):
        exercises.chance_column(flipped)
    exercises.fewer_items_wider(6.0, 3.5, 100, 300)
    with pytest.raises(AssertionError):
        exercises.fewer_items_wider(3.5, 6.0, 100, 300)
    exercises.undecided_rows([{"ci_low": -1.2, "ci_high": 0.8}])
    with pytest.raises(AssertionError):
        exercises.undecided_rows([{"ci_low": 0.4, "ci_high": 2.0}])


def test_04_best_epoch_and_shrinking_flipped():
    exercises.best_epoch_in_range([2, 3], [3, 3], 3)
    with pytest.raises(AssertionError):
        exercises.best_epoch_in_range([4, 3], [3, 3], 3)
    exercises.best_epoch_in_range([0], [1], 1)  # the zero-shot head was best
    exercises.fine_tuning_shrinks(-2.4, 0.2)  # the committed embedded numbers on digits
    with pytest.raises(AssertionError):
        exercises.fine_tuning_shrinks(0.2, -2.4)


def test_05_tsne_flipped():
    rows = [{"2-d silhouette": s2, "256-d silhouette (cosine)": 0.12} for s2 in (0.31, 0.27, 0.35)]
    exercises.tsne_is_a_picture(rows, original="256-d silhouette (cosine)")
    flipped = [{"2-d silhouette": 0.3, "256-d silhouette (cosine)": s} for s in (0.31, 0.27, 0.35)]
    with pytest.raises(AssertionError):
        exercises.tsne_is_a_picture(flipped, original="256-d silhouette (cosine)")


def test_06_retrieval_flipped():
    exercises.retrieval_chance(0.25, 0.25, 500)
    with pytest.raises(AssertionError):
        exercises.retrieval_chance(0.1, 0.1, 500)  # below one image in n
    exercises.framed_share({5: 40.0, 10: 60.0}, {5: 38.0, 10: 60.0})
    with pytest.raises(AssertionError):
        exercises.framed_share({5: 60.0, 10: 40.0}, {5: 38.0, 10: 40.0})
    exercises.two_directions({"text_to_image": 2500, "image_to_text": 500})
    with pytest.raises(AssertionError):
        exercises.two_directions({"text_to_image": 500, "image_to_text": 2500})


def test_07_interval_source_flipped():
    rows = [{"paired_seeds": 1, "ci_method": "bootstrap over 300 test items, 1 seed"},
            {"paired_seeds": 7, "ci_method": "t over 7 seeds"}]
    exercises.interval_source(rows)
    flipped = [{**a, "ci_method": b["ci_method"]} for a, b in zip(rows, rows[::-1])]
    with pytest.raises(AssertionError):
        exercises.interval_source(flipped)
    exercises.resamples_add_no_evidence(-1.0, -1.1, 4.0)
    with pytest.raises(AssertionError):
        exercises.resamples_add_no_evidence(-1.0, -3.0, 4.0)


def test_08_baseline_flipped():
    exercises.clip_is_the_baseline(["baseline", "holds 0"], [0.0, 0.5])
    with pytest.raises(AssertionError):
        exercises.clip_is_the_baseline(["holds 0", "baseline"], [0.0, 0.5])


def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "exercises"}


def test_every_solution_checks_its_claims_and_every_check_is_used():
    files = sorted(SOLUTIONS.glob("0*_solutions.py"))
    assert len(files) == 9
    used: set[str] = set()
    for f in files:
        calls = _calls(f)
        assert calls, f"{f.name} checks none of its claims through contextclip.exercises"
        used |= calls
    checks = {name for name, fn in inspect.getmembers(exercises, inspect.isfunction)
              if fn.__module__ == exercises.__name__ and not name.startswith("_")}
    assert used <= checks, used - checks
    assert checks <= used, f"checks no solution calls: {sorted(checks - used)}"
