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
    assert sum(lab == "#1 (true)" for lab in ctx_labels) == 3  # the perfect encoder ranks every true image 1st
    fig = training_curves(run_dirs, out_dir=tmp_path)
    assert (tmp_path / "fig_training_curves.pdf").exists()
    assert len(fig.axes[0].get_lines()) == 4  # 2 runs x (train, validation)


def test_tsne_rejects_caption_sets(runs):
    run_dirs, _ = runs
    with pytest.raises(ValueError, match="classification"):
        tsne_from_runs(run_dirs, "fakecaps")
    with pytest.raises(FileNotFoundError, match="evaluate"):
        tsne_from_runs(run_dirs, "nothing")
