"""Figures are drawn from cached embeddings and run histories alone (encoders are never called)."""

import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from eval_fakes import CapSet, ClassSet, PerfectEncoder, TinyModel
from test_evaluate import make_run  # noqa: E402

import contextclip.encoding as encoding  # noqa: E402
import contextclip.evaluate as evaluate  # noqa: E402
from contextclip.evaluate import embed_dataset  # noqa: E402
from contextclip.plots import retrieval_grid_from_runs, training_curves, tsne_from_runs  # noqa: E402


@pytest.fixture
def runs(tmp_path):
    ds = ClassSet.make(n_per_class=15, n_classes=5, noise=70)
    caps, names = CapSet.make(n_images=10, per_image=2)
    out = {}
    encoders = {"clip": (TinyModel(ds.classnames, seed=3), TinyModel(names, seed=3)),
                "contextclip": (PerfectEncoder(ds.classnames), PerfectEncoder(names))}
    for method, (enc, enc_caps) in encoders.items():
        run, cfg = make_run(tmp_path, method)
        embed_dataset(run, "fake", cfg, model=enc, dataset=ds)
        embed_dataset(run, "fakecaps", cfg, model=enc_caps, dataset=caps)
        with open(run / "history.jsonl", "w") as fh:
            for step in range(1, 6):
                fh.write(json.dumps({"type": "step", "global_step": step, "loss": 3 - 0.2 * step,
                                     "contrastive_loss": 2 - 0.1 * step,
                                     "contextual_loss": 0.0 if method == "clip" else 1 - 0.05 * step}) + "\n")
            fh.write(json.dumps({"type": "epoch", "global_step": 5, "val_loss": 2.2, "val_contrastive_loss": 1.6,
                                 "val_contextual_loss": 0.0 if method == "clip" else 0.7}) + "\n")
        out[method] = run
    return out, caps


@pytest.fixture
def no_encoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a plotting function tried to encode")

    for module in (encoding, evaluate):
        for name in ("encode_images", "encode_texts", "image_features"):
            monkeypatch.setattr(module, name, boom)


def test_tsne_figures_from_cache(runs, no_encoding, tmp_path):
    run_dirs, _ = runs
    fig = tsne_from_runs(run_dirs, "fake", "image", out_dir=tmp_path / "figs", perplexity=10, max_points=60)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 and all("silhouette" in t for t in titles)
    assert titles[0].startswith("CLIP") and titles[1].startswith("ContextCLIP")
    # the perfect encoder's classes are perfectly separated in the original space
    assert float(titles[1].split("(cosine) ")[1]) > 0.9
    assert (tmp_path / "figs" / "fig6_tsne_image_fake.png").exists()
    assert (tmp_path / "figs" / "fig6_tsne_image_fake.pdf").exists()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ClassSet.make(n_classes=5).classnames
    fig = tsne_from_runs(run_dirs, "fake", "text", out_dir=tmp_path / "figs", perplexity=10)
    assert (tmp_path / "figs" / "fig7_tsne_text_fake.png").exists()


def test_retrieval_grid_and_curves(runs, no_encoding, tmp_path):
    run_dirs, caps = runs
    fig = retrieval_grid_from_runs(run_dirs, "fakecaps", caps.images, n_queries=3, k=4, out_dir=tmp_path)
    assert (tmp_path / "fig5_retrieval_grid.png").exists()
    texts = " ".join(t.get_text() for sf in fig.subfigs for t in sf.texts + [sf._suptitle] if t is not None)
    assert "query 1" in texts
    labels = [ax.get_xlabel() for ax in fig.get_axes()]
    assert len(labels) == 3 * 4 * 2
    ctx_labels = [ax.get_xlabel() for sf in fig.subfigs for ax in sf.subfigs[1].axes]
    assert sum(lab == "#1 \u2713" for lab in ctx_labels) == 3  # the perfect encoder ranks every true image 1st
    fig = training_curves(run_dirs, out_dir=tmp_path)
    assert (tmp_path / "fig_training_curves.pdf").exists()
    contrastive, contextual = fig.axes[:2]
    assert "Contrastive" in contrastive.get_title() and "Contextual" in contextual.get_title()
    assert contrastive.get_ylabel() and contextual.get_ylabel() and contrastive.get_xlabel()
    # CLIP is not trained on the contextual term: only its validation markers are in that panel
    assert [lab for lab in contextual.get_legend_handles_labels()[1] if lab.startswith("CLIP")] == [
        "CLIP (contrastive only), validation"]


def test_training_curves_mean_and_band_over_seeds(tmp_path):
    """Two seeds of one method: one mean line (the average of the runs) and a min-max band."""
    runs = {}
    for seed, offset in ((0, 0.0), (1, 1.0)):
        run = tmp_path / f"contextclip-seed{seed}"
        run.mkdir()
        with open(run / "history.jsonl", "w") as fh:
            for step in (1, 2, 3):
                fh.write(json.dumps({"type": "step", "global_step": step, "contrastive_loss": 2.0 + offset,
                                     "contextual_loss": 1.0 + offset}) + "\n")
        runs[run.name] = run
    fig = training_curves(runs)
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.get_lines() if "train" in ln.get_label()]
    assert list(line.get_ydata()) == [2.5, 2.5, 2.5]
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == 2.0 and ys.max() == 3.0
    labels = fig.legends[0].get_texts()
    assert sum("range over seeds" in t.get_text() for t in labels) == 1  # one legend entry per method, not per run


def test_grid_frames_every_correct_image_of_a_duplicate_caption():
    """A caption written for two images makes both correct: the mask, and the frames drawn from it."""
    import torch

    from contextclip.plots import grid_positives, retrieval_grid

    cache = {"text_image": torch.tensor([0, 1, 2, 2]), "image": torch.zeros(3, 4),
             "captions": ["a red circle", "a red circle", "a blue square", "a green star"]}
    pos = grid_positives(cache)
    assert pos.tolist() == [[True, True, False], [True, True, False], [False, False, True], [False, False, True]]
    images = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    topk = {"clip": torch.tensor([[2, 1, 0]]), "contextclip": torch.tensor([[0, 1, 2]])}
    fig = retrieval_grid(["a red circle"], images, topk, pos[:1])
    framed = [[ax.spines["top"].get_visible() for ax in sf.axes] for sf in fig.subfigs[0].subfigs]
    assert framed == [[False, True, True], [True, True, False]]


def test_tsne_rejects_caption_sets(runs):
    run_dirs, _ = runs
    with pytest.raises(ValueError, match="classification"):
        tsne_from_runs(run_dirs, "fakecaps")
    with pytest.raises(FileNotFoundError, match="evaluate"):
        tsne_from_runs(run_dirs, "nothing")


def test_teaching_figures_of_notebook_00():
    """The CX heatmap titles read the loss off the matrix; the diagram is labelled from the config."""
    import torch

    from contextclip.losses import contextual_loss, cx_matrix
    from contextclip.plots import architecture_diagram, cx_heatmaps

    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    fig = cx_heatmaps({"random": cx_matrix(img, txt, 0.5)})
    assert f"{contextual_loss(img, txt, 0.5).item():.3f}" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    fig = architecture_diagram("resnet18", "minilm", 64, "mlp", alpha=0.25, bandwidth=0.1, learned_scale=False)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for needed in ("resnet18", "minilm", "[N, 64]", "(mlp)", "0.25", "h = 0.1", "(fixed)"):
        assert needed in texts, needed
