"""Notebook 06's caption box without a browser: the query function, the figure and the widget callback.

Known-answer fake encoders (``eval_fakes``): a caption naming class ``i`` is closest to image ``i``.
"""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from eval_fakes import CapSet, ClassSet, PerfectEncoder  # noqa: E402
from test_evaluate import make_run  # noqa: E402

import contextclip.data.registry as registry  # noqa: E402
import contextclip.interactive as interactive  # noqa: E402


@pytest.fixture
def explorer(tmp_path, monkeypatch):
    caps, names = CapSet.make(n_images=8, per_image=2)
    classes = ClassSet.make(n_per_class=3, n_classes=4)
    runs = {}
    for method in ("clip", "contextclip"):
        runs[method], cfg = make_run(tmp_path, method, retrieval_dataset="fakecaps", tsne_dataset="fake")
    sets = {"fakecaps": caps, "fake": classes}
    monkeypatch.setattr(registry, "get_dataset", lambda name, cfg, split="test": sets[name])
    monkeypatch.setattr(interactive, "load_trained", lambda run, device="cpu": (PerfectEncoder(names), cfg))
    interactive._EXPLORERS.clear()
    return runs, names, classes


def test_query_caption_ranks_images_and_scores_one_image(explorer):
    runs, names, classes = explorer
    res = interactive.query_caption(runs, f"{names[5]} variant 1", k=3, image_index=4)
    for method in ("clip", "contextclip"):
        assert res.topk[method][0].item() == 5 and len(res.topk[method]) == 3
        assert res.similarity[method][0] > res.similarity[method][1]
        assert res.top_images[method].shape == (3, 3, 8, 8)
        assert torch.equal(res.top_images[method][0], CapSet.make(n_images=8, per_image=2)[0].images[5])
        probs = res.class_probs[method]
        assert probs.shape == (4,) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)
        assert int(probs.argmax()) == res.true_label == 1  # image 4 is of class 1; the perfect encoder says so
    # a caption of the set: its correct image is known and counted; free text: nothing is
    assert res.positives is not None and res.positives.nonzero().flatten().tolist() == [5]
    assert res.n_correct("clip") == 1
    free = interactive.query_caption(runs, "a drawing nobody wrote", k=2)
    assert free.positives is None and free.n_correct("clip") is None
    assert len(interactive._EXPLORERS) == 1  # the runs were loaded once
    with pytest.raises(ValueError, match="type a caption"):
        interactive.query_caption(runs, "   ")
    with pytest.raises(ValueError, match="between 1 and 8"):
        interactive.query_caption(runs, "x", k=9)
    with pytest.raises(ValueError, match="images 0 to 11"):
        interactive.query_caption(runs, "x", image_index=12)
    from contextclip.plots import caption_query_figure

    fig = caption_query_figure(res)
    texts = [t.get_text() for sf in fig.subfigs[0].subfigs for t in sf.texts]
    assert any("CLIP: 1 correct in top 3" in t for t in texts)
    labels = [ax.get_xlabel() for sf in fig.subfigs[0].subfigs for ax in sf.axes]
    assert sum("\u2713" in lab for lab in labels) == 2  # image 5 is first for both methods
    bar = fig.subfigs[1].axes[1]
    assert [t.get_text() for t in bar.get_xticklabels()] == classes.classnames


def test_caption_box_callback_updates_the_figure(explorer):
    runs, names, _ = explorer
    ex = interactive.CaptionExplorer(runs)
    box, search = interactive.caption_box(ex, example=f"{names[2]} variant 0", k=3)
    (text, button, number), status, image = box.children[0].children, box.children[1], box.children[2]
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and "1 correct in top 3" in status.value  # the example, drawn at once
    text.value = f"{names[6]} variant 1"  # typing and pressing Enter commits the value
    assert image.value != first and names[6] in status.value
    second = image.value
    text.value = "something of my own"
    assert "your own words" in status.value and image.value != second
    third = image.value
    text.value = ""  # a bad input: the message, and the last figure stays
    assert "type a caption" in status.value and image.value == third
    text.value = f"{names[1]} variant 0"
    button.click()
    number.value = 7
    assert "1 correct" in status.value and image.value != third
    assert search() is not None


def test_caption_box_runs_prefers_trained_embedded_runs(tmp_path):
    def train(profile):
        for method in ("clip", "contextclip"):
            run = tmp_path / "runs" / profile / f"{method}-seed0"
            run.mkdir(parents=True)
            (run / "config.json").write_text("{}")
            (run / "checkpoint.pt").write_bytes(b"x")

    with pytest.raises(FileNotFoundError, match="02_train"):
        interactive.caption_box_runs("smoke", root=tmp_path)
    train("smoke")
    assert interactive.caption_box_runs("smoke", root=tmp_path, seed=0) == {
        m: tmp_path / "runs" / "smoke" / f"{m}-seed0" for m in ("clip", "contextclip")}
    train("embedded")
    assert interactive.caption_box_runs("smoke", root=tmp_path, seed=0) == {
        m: tmp_path / "runs" / "embedded" / f"{m}-seed0" for m in ("clip", "contextclip")}
    with pytest.raises(FileNotFoundError, match="paper"):
        interactive.caption_box_runs("paper", root=tmp_path, seed=0)
