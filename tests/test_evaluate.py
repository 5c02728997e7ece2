"""evaluate_run / embed_dataset with fake encoders and in-test datasets: caching, rows, replacement."""

from pathlib import Path

import pytest
import torch
from eval_fakes import CapSet, ClassSet, ConstantEncoder, PerfectEncoder, TinyModel

from contextclip.config import Config, save_config
from contextclip.evaluate import embed_dataset, evaluate_run
from contextclip.results import build_tables, read_metrics


def make_run(root: Path, method="clip", seed=0, **overrides) -> tuple[Path, Config]:
    run = root / f"{method}-seed{seed}"
    run.mkdir(parents=True)
    cfg = Config().updated({"ft_epochs": 1, "batch_size": 16, **overrides})
    save_config(cfg, run / "config.json")
    (run / "checkpoint.pt").write_bytes(f"weights of {method} {seed}".encode())
    return run, cfg


def test_second_embed_call_does_not_encode_and_retraining_invalidates(tmp_path):
    run, cfg = make_run(tmp_path)
    ds = ClassSet.make(n_per_class=5, n_classes=4)
    enc = PerfectEncoder(ds.classnames)
    first = embed_dataset(run, "fake", cfg, model=enc, dataset=ds)
    calls = (enc.image_calls, enc.text_calls)
    assert calls[0] > 0 and calls[1] > 0
    again = embed_dataset(run, "fake", cfg, model=enc, dataset=ds)
    assert (enc.image_calls, enc.text_calls) == calls
    assert torch.equal(first["image"], again["image"])
    assert (run / "embeddings" / "fake.pt").exists()
    assert first["tsne_text_emb"].shape[0] == first["tsne_text_labels"].shape[0] > 4 * len(ds.templates)
    (run / "checkpoint.pt").write_bytes(b"retrained weights")
    embed_dataset(run, "fake", cfg, model=enc, dataset=ds)
    assert enc.image_calls > calls[0]


def test_each_image_embedded_once_for_caption_sets(tmp_path):
    run, cfg = make_run(tmp_path)
    caps, names = CapSet.make(n_images=9, per_image=3)
    enc = PerfectEncoder(names)
    cache = embed_dataset(run, "fakecaps", cfg, model=enc, dataset=caps)
    assert cache["image"].shape[0] == 9 and cache["text"].shape[0] == 27
    assert cache["text_image"].tolist() == [i for i in range(9) for _ in range(3)]


@pytest.mark.threads(2)
def test_evaluate_every_task_writes_rows_and_replaces(tmp_path):
    results = tmp_path / "results"
    ds = ClassSet.make(n_per_class=20, n_classes=5)
    caps, names = CapSet.make(n_images=12, per_image=2)
    for method, enc in (("clip", ConstantEncoder()), ("contextclip", PerfectEncoder(ds.classnames))):
        run, cfg = make_run(tmp_path, method)
        rows = evaluate_run(run, "zero_shot", "fake", results, cfg, model=enc, data=ds)
        got = {r["metric"]: r["value"] for r in rows}
        if method == "clip":
            assert got["top1"] == pytest.approx(20.0) and got["chance_top1"] == 20.0
        else:
            assert got["top1"] == 100.0 and got["top5"] == 100.0
        assert all(r["n"] == 100 and r["method"] == method and r["seed"] == 0 for r in rows)
        lp = evaluate_run(run, "linear_probe", "fake", results, cfg, model=enc, data=ds)
        assert {r["metric"] for r in lp} >= {"top1", "top5", "C"}
    tiny_run, cfg = make_run(tmp_path / "t", "clip", 1)
    ft = evaluate_run(tiny_run, "fine_tune", "fake", results, cfg, model=TinyModel(ds.classnames), data=ds)
    assert {r["metric"] for r in ft} >= {"top1", "top5", "best_epoch"} and ft[0]["n"] == 10
    ret_run, cfg = make_run(tmp_path / "r", "contextclip", 2)
    ret = evaluate_run(ret_run, "retrieval", "fakecaps", results, cfg, model=PerfectEncoder(names), data=caps)
    got = {r["metric"]: (r["value"], r["n"]) for r in ret}
    assert got["text_to_image_R@1"] == (100.0, 24) and got["image_to_text_R@1"] == (100.0, 12)
    assert got["chance_text_to_image_R@1"][0] == pytest.approx(100 / 12)
    before = len(read_metrics(results / "metrics.csv"))
    evaluate_run(ret_run, "retrieval", "fakecaps", results, cfg, model=PerfectEncoder(names), data=caps)
    assert len(read_metrics(results / "metrics.csv")) == before
    with pytest.raises(ValueError, match="needs a caption set"):
        evaluate_run(ret_run, "retrieval", "fake", results, cfg, model=PerfectEncoder(names), data=ds)
    tables = build_tables(results)
    t1 = tables["table1_zero_shot"]
    r = t1[t1.metric == "top1"].iloc[0]
    assert r["diff"] == pytest.approx(80.0) and "bootstrap" in r["ci_method"] and r.ci_low > 60
    assert (results / "per_item" / "clip-seed0" / "zero_shot__fake.npz").exists()


def test_official_test_split_is_used_for_zero_shot(tmp_path):
    run, cfg = make_run(tmp_path)
    ds = ClassSet.make(n_per_class=20, n_classes=4, splits={"train": torch.arange(60), "test": torch.arange(60, 80)})
    rows = evaluate_run(run, "zero_shot", "fake", tmp_path / "res", cfg, model=PerfectEncoder(ds.classnames), data=ds)
    assert {r["n"] for r in rows} == {20}
    cache = embed_dataset(run, "fake", cfg)  # from the cache: no model or data needed
    assert torch.equal(cache["splits"]["test"], torch.arange(60, 80)) and cache["image"].shape[0] == 80


def test_bad_task_and_run_folder(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        evaluate_run(tmp_path, "nope", "fake")
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate_run(tmp_path, "zero_shot", "fake")


@pytest.mark.slow
@pytest.mark.threads(2)
def test_smoke_runs_evaluate_every_task_end_to_end(tmp_path):
    """Train CLIP and ContextCLIP smoke runs, evaluate every task through the CLI, build tables and figures."""
    import matplotlib

    matplotlib.use("Agg")
    from contextclip.cli import main
    from contextclip.config import load_config
    from contextclip.data import DatasetMissing, get_dataset
    from contextclip.plots import retrieval_grid_from_runs, training_curves, tsne_from_runs
    from contextclip.train import fit

    cfg = load_config("smoke", {"n_pairs": 64, "epochs": 1, "batch_size": 16, "eval_max_images": 60,
                                "ft_epochs": 1})
    runs = {}
    for method in ("clip", "contextclip"):
        runs[method] = tmp_path / "runs" / f"{method}-seed0"
        fit(cfg.for_method(method), method, 0, runs[method], progress=False)
    results = tmp_path / "results"
    jobs = [("zero_shot", "digits"), ("linear_probe", "digits"), ("fine_tune", "digits"),
            ("retrieval", "synthetic_captions")]
    for run in runs.values():
        for task, dataset in jobs:
            assert main(["evaluate", "--run", str(run), "--task", task, "--dataset", dataset,
                         "--results", str(results)]) == 0
    df = read_metrics(results / "metrics.csv")
    for task, dataset in jobs:
        got = df[(df.task == task) & (df.dataset == dataset)]
        assert set(got.method) == {"clip", "contextclip"}, (task, dataset)
        assert got["value"].between(0, 100).all()
    tables = build_tables(results, "smoke", bootstrap_samples=50)
    # retrieval: attribute-matched recall (the default) and the caption-only rows beside it, R@1/5/10 x 2 directions
    assert len(tables["table1_zero_shot"]) == 3 and len(tables["table3_retrieval"]) == 12
    ret = df[(df.task == "retrieval")].set_index(["method", "metric"])["value"]
    for method in ("clip", "contextclip"):
        for name in ("text_to_image_R@1", "image_to_text_R@5", "chance_text_to_image_R@1"):
            assert ret[(method, name)] >= ret[(method, name + "_exact")] - 1e-9, (method, name)
    assert ret[("clip", "chance_text_to_image_R@1")] > ret[("clip", "chance_text_to_image_R@1_exact")]
    # missing paper datasets: an error naming the prepare step, or a "not run" row when skipping
    empty_root = {"data_root": str(tmp_path / "nodata")}
    with pytest.raises(DatasetMissing):
        evaluate_run(runs["clip"], "zero_shot", "cifar10", results, cfg.updated(empty_root))
    rows = evaluate_run(runs["clip"], "zero_shot", "cifar10", results,
                        cfg.updated({**empty_root, "missing_datasets": "skip"}))
    assert rows[0]["metric"] == "not run: missing"
    # figures from the caches and histories alone
    tsne_from_runs(runs, "digits", "image", out_dir=tmp_path / "figs")
    caps = get_dataset("synthetic_captions", cfg, "test")
    retrieval_grid_from_runs(runs, "synthetic_captions", caps.images, out_dir=tmp_path / "figs")
    training_curves(runs, out_dir=tmp_path / "figs")
    assert len(list((tmp_path / "figs").glob("*.png"))) == 3


def test_evaluate_runs_loads_each_model_and_dataset_once_and_matches_evaluate_run(tmp_path):
    import contextclip.evaluate as ev

    ds = ClassSet.make(n_per_class=5, n_classes=4)
    runs = [make_run(tmp_path / "a", "clip", s)[0] for s in (0, 1)]
    cfg = make_run(tmp_path / "cfg")[1]
    loads, builds = [], []
    load = lambda run_dir, device="cpu": (loads.append(run_dir) or PerfectEncoder(ds.classnames), cfg)  # noqa: E731
    build = lambda name, cfg: builds.append(name) or ds  # noqa: E731
    rows = ev.evaluate_runs(runs, "zero_shot", ["fake", "fake2"], tmp_path / "res", cfg=cfg, get_dataset=build,
                            load_model=load)
    assert loads == runs and sorted(builds) == ["fake", "fake2"]  # one load per run, one build per set
    assert {(r["dataset"], r["metric"], r["value"]) for r in rows if r["metric"] == "top1"} == {
        ("fake", "top1", 100.0), ("fake2", "top1", 100.0)}
    # a second pass reads the caches: nothing is loaded or built, and the rows are the same
    loads.clear(), builds.clear()
    again = ev.evaluate_runs(runs, "zero_shot", ["fake", "fake2"], tmp_path / "res", cfg=cfg, get_dataset=build)
    assert loads == [] and builds == [] and again == rows
    single = evaluate_run(runs[0], "zero_shot", "fake", tmp_path / "res", cfg=cfg)
    assert single == [r for r in rows if r["seed"] == 0 and r["dataset"] == "fake"]


def test_frozen_text_store_matches_the_direct_path_and_skips_the_tower():
    from contextclip import encoding
    from contextclip.config import load_config
    from contextclip.model import build_model

    torch.manual_seed(0)
    model = build_model(load_config("smoke", {"freeze_text": True})).eval()
    texts = ["a red circle", "the digit seven written in blue", "a red circle", "a small green star above a 3"]
    with torch.no_grad():
        tok = model.tokenize(texts)
        direct = model.encode_text(tok["input_ids"], tok["attention_mask"])
    memo = encoding.encode_texts(model, texts, batch_size=2)
    assert torch.allclose(memo, direct, atol=1e-5)
    calls = []
    handle = model.text_tower.register_forward_hook(lambda *a: calls.append(1))
    again = encoding.encode_texts(model, list(reversed(texts)), batch_size=2)
    handle.remove()
    assert calls == [] and torch.allclose(again, memo.flip(0), atol=1e-6)
    # a model whose text tower trains is never served from the memo
    trained = build_model(load_config("smoke")).eval()
    calls.clear()
    handle = trained.text_tower.register_forward_hook(lambda *a: calls.append(1))
    encoding.encode_texts(trained, texts)
    handle.remove()
    assert calls


def test_training_and_evaluation_share_one_frozen_text_store():
    """Captions whose features training computed are not run through the tower again by evaluation."""
    import contextlib

    from contextclip import encoding
    from contextclip.config import load_config
    from contextclip.model import build_model
    from contextclip.train_caches import FrozenFeatureCache

    torch.manual_seed(0)
    model = build_model(load_config("smoke", {"freeze_text": True})).eval()
    captions = ["the digit seven", "a red circle", "a small green star above a 3"]
    cache = FrozenFeatureCache.for_captions(model, captions, contextlib.nullcontext)
    calls = []
    handle = model.text_tower.register_forward_hook(lambda *a: calls.append(1))
    emb = encoding.encode_texts(model, captions)
    handle.remove()
    assert calls == []
    with torch.no_grad():
        expected = model.embed_text_features(cache.lookup(captions))
    assert torch.allclose(emb, expected.float(), atol=1e-6)
