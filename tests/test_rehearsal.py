"""The paper path rehearsed: format-exact fixtures, ``data prepare`` on them, the paper_rehearsal
profile, every notebook on it (CI subset), and training under torchrun (2 CPU processes, gloo;
one torchrun per "node" through the SLURM script's c10d rendezvous).

Where torchvision verifies the real files' checksums (``torchvision.datasets.cifar.check_integrity``,
md5 of every pickle), the test reads
the fixture through torchvision's own class with only that check switched off, to show the
fixture is what torchvision reads. MNIST's loader checks only that the files exist.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from train_fakes import rehearsal_tree

from contextclip.config import REPO_ROOT, load_config
from contextclip.data import formats, get_dataset
from contextclip.data import prepare as prep
from contextclip.data.pairs import build_pair_datasets
from contextclip.data.rehearsal import MARKER, RehearsalParams, birdsnap_species, gz_only, make_rehearsal_tree

PAPER_SETS = ["cc3m", "cifar10", "cifar100", "mnist", "resisc45", "birdsnap", "flickr8k"]
#: a quick tree: Birdsnap's first 50 species (the default writes all 500), images capped at 64 px
SMALL = RehearsalParams(per_class=1, birdsnap_per_class=3, birdsnap_species=50, cc3m_pairs=40, flickr_images=18,
                        max_side=64)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return rehearsal_tree(tmp_path_factory, SMALL)


def _cfg(root, **kw):
    return load_config("smoke", {"data_root": str(root), "image_size": 32, "eval_max_images": 0, **kw})


# ------------------------------------------------------------------------------ the fixture maker
def test_marker_makes_a_second_call_a_no_op_and_force_rewrites(tree, capsys):
    marker = json.loads((tree / MARKER).read_text())
    assert marker["params"]["cc3m_pairs"] == 40 and set(marker["counts"]) == set(PAPER_SETS)
    make_rehearsal_tree(tree, SMALL)
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ValueError, match="cc3m_layout"):
        RehearsalParams(cc3m_layout="parquet")
    with pytest.raises(ValueError, match="needs 3 non-test images per class"):
        RehearsalParams(birdsnap_per_class=2)
    with pytest.raises(ValueError, match="Birdsnap has 500 species"):
        RehearsalParams(birdsnap_species=501)
    assert RehearsalParams().birdsnap_species == 500 == len(set(birdsnap_species()))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_torchvision_reads_the_cifar_pickles_like_the_kit(tree, monkeypatch, name):
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar

    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # md5 of the real files: the one switch
    for split in ("train", "test"):
        tv = cls(str(tree), train=split == "train", download=False)
        x, y, names = formats.read_cifar(tree, name, split)
        assert np.array_equal(tv.data, x) and list(tv.targets) == y.tolist()
        assert tv.classes == names
    assert len(get_dataset(name, _cfg(tree), split="test")) == len(formats.read_cifar(tree, name, "test")[1])


def test_torchvision_reads_mnist_raw_and_gz_only(tree, tmp_path):
    from torchvision.datasets import MNIST

    tv = MNIST(str(tree), train=False, download=False)  # torchvision checks only that the files exist
    x, y = formats.read_mnist(tree, "test")
    assert np.array_equal(tv.data.numpy(), x) and tv.targets.tolist() == y.tolist() and x.shape[1:] == (28, 28)
    shutil.copytree(tree / "MNIST", tmp_path / "MNIST")
    gz_only(tmp_path)
    assert not (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists()
    s = get_dataset("mnist", _cfg(tmp_path), split="all")  # unpacks the .gz beside them, as torchvision's download
    assert len(s) == 40 and (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_folder_sets_splits_and_dead_links(tree):
    from torchvision.datasets import ImageFolder

    r = get_dataset("resisc45", _cfg(tree), split="all")
    assert len(ImageFolder(str(tree / "resisc45" / "NWPU-RESISC45")).classes) == len(r.classnames) == 45
    assert {k: len(v) for k, v in r.splits.items()} == {"train": 135, "test": 45}  # torchgeo's resisc45-test.txt
    b = get_dataset("birdsnap", _cfg(tree), split="all")
    listed = len((tree / "birdsnap" / "images.txt").read_text().splitlines()) - 1
    failed = len((tree / "birdsnap" / "download" / "fail.txt").read_text().split())
    assert len(b.classnames) == SMALL.birdsnap_species and len(b) == listed - failed > 0
    assert "Says Phoebe" in b.classnames  # apostrophes dropped, as CLIP's Birdsnap names
    f = get_dataset("flickr8k", _cfg(tree))
    assert len(f) == 3 and all(len(c) == 5 for c in f.captions)  # the Karpathy test list: 18 // 6
    assert any("," in c for c in f.captions[0])  # Kaggle's unquoted commas survive


def test_large_file_sets_are_decoded_once_into_a_memmap(tree, monkeypatch):
    """At the paper's size RESISC45/Birdsnap/Flickr8k do not fit in memory: each file is decoded
    once into <data_root>/decoded/*.npy, and every later build (run, task, epoch) reads that."""
    import contextclip.data.sets as S

    monkeypatch.setattr(S, "MAX_TENSOR_BYTES", 1000)  # everything counts as "too large"
    cfg = _cfg(tree)
    a = get_dataset("resisc45", cfg, split="all")
    assert isinstance(a.images, S.MemmapImages)
    files = sorted((tree / "decoded").glob("*.npy"))
    assert len(files) == 1 and not list((tree / "decoded").glob("*.tmp"))
    stamp = files[0].stat().st_mtime_ns
    b = get_dataset("resisc45", cfg, split="all")
    assert sorted((tree / "decoded").glob("*.npy")) == files and files[0].stat().st_mtime_ns == stamp
    direct = S.FileImages([a.images.paths[3]], [0], 32)[0][0]  # the same file decoded now
    assert bool((a.images[3][0] == direct).all()) and bool((b.images[3][0] == direct).all())
    import pickle

    clone = pickle.loads(pickle.dumps(a.images))  # what a DataLoader worker receives: the path, not the pixels
    assert clone._arr is None and bool((clone[3][0] == a.images[3][0]).all())


@pytest.mark.parametrize("layout", ["webdataset", "files"])
def test_cc3m_img2dataset_layouts_train(tmp_path, layout):
    from dataclasses import replace

    root = tmp_path / layout
    make_rehearsal_tree(root, replace(SMALL, cc3m_layout=layout), log=lambda m: None)
    assert any((root / "cc3m").glob("*.tar")) == (layout == "webdataset")
    tr, va = build_pair_datasets(_cfg(root, train_data="cc3m", n_pairs=30, val_fraction=0.2))
    assert (len(tr), len(va)) == (24, 6) and tr.report["n_found"] == 40
    img, cap = tr[0]
    assert img.shape == (3, 32, 32) and cap


# --------------------------------------------------------------------------------- data prepare
@pytest.mark.parametrize("name", PAPER_SETS)
def test_prepare_says_ready_on_the_fixture(tree, capsys, name):
    # the Birdsnap fixture has dead links, as the real download does: its images.txt lists more than is there
    assert prep.prepare(name, tree, allow_missing=name == "birdsnap") == 0
    assert f"{name}: ready:" in capsys.readouterr().out


def test_prepare_on_an_empty_root_says_what_to_fetch(tmp_path, capsys, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    for cls in ("CIFAR10", "CIFAR100", "MNIST"):
        monkeypatch.setattr(tvd, cls, offline)  # no network in tests
    expected = {
        "cc3m": ["Train_GCC-training.tsv", str(tmp_path / "cc3m")],
        "resisc45": ["NWPU-RESISC45", str(tmp_path / "resisc45" / "airplane" / "airplane_001.jpg")],
        "birdsnap": ["birdsnap.tgz", "get_birdsnap.py", "download/images/<species dir>/"],
        "flickr8k": ["adityajn105/flickr8k", "Flickr_8k.testImages.txt"],
        "cifar10": ["download of cifar10 failed", f"{tmp_path}/cifar-10-batches-py/"],
        "cifar100": ["download of cifar100 failed", f"{tmp_path}/cifar-100-python/"],
        "mnist": ["download of mnist failed", f"{tmp_path}/MNIST/raw/"],
    }
    for name, needles in expected.items():
        assert prep.prepare(name, tmp_path) == 1
        out = capsys.readouterr().out
        for n in needles:
            assert n in out, (name, n, out)


# ------------------------------------------------------------------------------------- the profile
def test_paper_rehearsal_changes_only_the_commented_keys():
    paper, reh = load_config("paper").to_flat(), load_config("paper_rehearsal").to_flat()
    changed = {k for k in paper if paper[k] != reh[k]}
    assert changed == {"data_root", "n_pairs", "image_size", "image_weights", "text_tower", "epochs", "seeds",
                       "ft_epochs", "num_workers"}
    lines = (REPO_ROOT / "configs" / "paper_rehearsal.yaml").read_text().splitlines()
    for key in changed:  # each change says what the paper uses
        line = next(ln for ln in lines if ln.strip().startswith(f"{key}:"))
        assert f"# paper: {paper[key]}".replace("'", "") in line.replace("'", "").replace('"', ""), line
    assert reh["image_tower"] == "resnet50" and reh["zero_shot_datasets"] == paper["zero_shot_datasets"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_over(tree) -> list[str]:
    over = {"device": "cpu", "data_root": str(tree), "image_size": 32, "n_pairs": 32, "batch_size": 8,
            "log_every": 1}
    return [a for k, v in over.items() for a in ("--set", f"{k}={v}")]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO_ROOT)}


@pytest.mark.slow
def test_two_gloo_processes_train_paper_rehearsal(tree, tmp_path):
    """docs/scaling.md's one-node recipe on CPU: torchrun --standalone, 2 processes, global batch 8."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "contextclip",
           "train", "--profile", "paper_rehearsal", "--method", "contextclip", "--seed", "0", "--out", str(out),
           "--no-progress", *_train_over(tree)]
    r = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert (s["world_size"], s["per_device_batch"], s["global_batch"], s["profile"]) == (2, 4, 8, "paper_rehearsal")


@pytest.mark.slow
def test_slurm_script_two_nodes_through_c10d_rendezvous(tree, tmp_path):
    """tools/slurm_train.sbatch with stand-ins for srun/scontrol that start its torchrun line twice on
    this machine (two "nodes" of one process each), meeting at the c10d rendezvous it names."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho 127.0.0.1\necho 127.0.0.1\n")
    (bin_dir / "srun").write_text(  # drop srun's options, run the command once per node, fail if any fails
        "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\npids=()\n"
        "for i in $(seq 0 $((SLURM_NNODES-1))); do SLURM_NODEID=$i SLURM_PROCID=$i \"$@\" & pids+=($!); done\n"
        "rc=0; for p in \"${pids[@]}\"; do wait $p || rc=1; done; exit $rc\n")
    (bin_dir / "torchrun").write_text(f"#!/bin/sh\nexec {sys.executable} -m torch.distributed.run \"$@\"\n")
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "slurm"
    env = {**_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "node[001-002]", "NPROC_PER_NODE": "1", "RDZV_PORT": str(_free_port())}
    cmd = ["bash", str(REPO_ROOT / "tools" / "slurm_train.sbatch"), "paper_rehearsal", "contextclip", "0", str(out),
           *_train_over(tree)]
    r = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert (s["world_size"], s["per_device_batch"], s["global_batch"]) == (2, 4, 8)


# ------------------------------------------------------------------- CI subset: every notebook
@pytest.mark.slow
def test_paper_rehearsal_pipeline_fills_every_cell(tree, tmp_path):
    """`reproduce` on a smaller copy of paper_rehearsal (same loaders, notebooks and tables) from no
    runs: every (task, dataset, method) cell of Tables 1-2 and the Flickr8k retrieval has a value.

    Kept to a few CPU minutes for CI: the quick fixture tree (SMALL), 32 px, 32 pairs, one seed per
    method (the tables then take their single-seed bootstrap interval; the profile's two seeds, and
    the t-interval over seeds, run in `make reproduce PROFILE=paper_rehearsal`), and a narrow
    ResNet-10 in place of the ResNet-50: its 128 features instead of 2,048 make the fine-tuning and
    the linear probes of the five sets about ten times cheaper. The ResNet-50 builder of the paper
    path is trained by `test_two_gloo_processes_train_paper_rehearsal` and checked in test_model.py."""
    from contextclip.pipeline import reproduce

    name = "paper_rehearsal_ci"
    profile = tmp_path / f"{name}.yaml"
    profile.write_text(yaml.safe_dump({
        "base": "paper_rehearsal",
        "data": {"data_root": str(tree), "n_pairs": 32, "image_size": 32},
        "model": {"image_tower": "resnet10", "image_width": 16},
        "train": {"batch_size": 16, "seeds": [0]}, "eval": {"tsne_max_points": 200, "bootstrap_samples": 100},
    }))
    for top in ("runs", "results", "figures"):
        shutil.rmtree(REPO_ROOT / top / name, ignore_errors=True)
    assert reproduce(str(profile), progress_bar=False, cell_timeout=900) == 0
    res = REPO_ROOT / "results" / name
    metrics = __import__("pandas").read_csv(res / "metrics.csv")
    ok = metrics[metrics["metric"] == "top1"]
    for task, sets in (("zero_shot", ["cifar10", "cifar100", "resisc45", "birdsnap", "mnist"]),
                       ("fine_tune", ["cifar10", "cifar100", "resisc45", "birdsnap", "mnist"]),
                       ("linear_probe", ["cifar10", "cifar100", "resisc45", "birdsnap", "mnist"])):
        cells = ok[ok["task"] == task].groupby(["dataset", "method"])["value"].count()
        assert {(d, m) for d in sets for m in ("clip", "contextclip")} <= set(cells.index), (task, cells)
        assert (cells == 1).all(), (task, cells)  # one seed each
    rec = metrics[(metrics["task"] == "retrieval") & (metrics["dataset"] == "flickr8k")]
    assert set(rec["method"]) == {"clip", "contextclip"} and rec["value"].notna().all()
    five = {"cifar10", "cifar100", "resisc45", "birdsnap", "mnist"}
    for table, tasks, sets in (("table1_zero_shot", {"zero_shot"}, five),
                               ("table2_fine_tune", {"fine_tune", "linear_probe"}, five),
                               ("table3_retrieval", {"retrieval"}, {"flickr8k"})):
        assert (res / f"{table}.md").is_file()
        t = __import__("pandas").read_csv(res / f"{table}.csv")
        t = t[t["metric"].isin(["top1", "text_to_image_R@1", "image_to_text_R@1"])]
        assert {(a, b) for a in tasks for b in sets} == set(zip(t["task"], t["dataset"])), (table, t)
        assert t[["clip_mean", "contextclip_mean", "diff"]].notna().all().all(), (table, t)
    assert (res / "report.md").is_file()
    assert any((REPO_ROOT / "figures" / name).glob("fig6_tsne_image_cifar10.png"))


# ------------------------------------------------------------ fixes the rehearsal led to, held
def test_embed_dataset_one_tower_pass_equals_the_direct_encodings(tree, tmp_path):
    """The cache's embeddings (head applied to the one pass of tower features) and its t-SNE prompts
    (the dataset's prompts reused, the generic ones added) equal encoding everything directly."""
    import torch

    from contextclip.encoding import encode_images, image_features
    from contextclip.evaluate import embed_dataset
    from contextclip.model import build_model
    from contextclip.zeroshot import GENERIC_TEMPLATES, class_embeddings

    torch.manual_seed(0)
    cfg = _cfg(tree)
    model = build_model(cfg, pretrained=False).eval()
    ds = get_dataset("cifar10", cfg, split="all")
    (tmp_path / "checkpoint.pt").write_bytes(b"stand-in: only its hash keys the cache")
    out = embed_dataset(tmp_path, "cifar10", cfg, model=model, dataset=ds)
    torch.testing.assert_close(out["image"], encode_images(model, ds.images, 64), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["features"], image_features(model, ds.images, 64), atol=1e-5, rtol=1e-5)
    templates = list(dict.fromkeys(list(ds.templates) + list(GENERIC_TEMPLATES)))
    direct = class_embeddings(model, ds.classnames, templates, 64, return_prompts=True)[1]
    torch.testing.assert_close(out["tsne_text_emb"], direct.reshape(-1, direct.shape[-1]), atol=1e-5, rtol=1e-5)


def test_embedding_cache_misses_when_a_file_of_the_set_changes(tree, tmp_path):
    """The embeddings cache is keyed on the set's files (path, size, mtime), not only its name: a
    replaced image under the same dataset name is encoded again, an untouched tree is not."""
    from eval_fakes import ConstantEncoder

    from contextclip.evaluate import _cache_is_fresh, embed_dataset

    root = tmp_path / "data"
    shutil.copytree(tree / "resisc45", root / "resisc45")
    cfg = _cfg(root)
    ds = get_dataset("resisc45", cfg, split="all")
    run = tmp_path / "clip-seed0"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"stand-in: only its hash keys the cache")
    enc = ConstantEncoder()
    embed_dataset(run, "resisc45", cfg, model=enc, dataset=ds)
    calls = enc.image_calls
    embed_dataset(run, "resisc45", cfg, model=enc, dataset=ds)
    assert enc.image_calls == calls and _cache_is_fresh(run, "resisc45", cfg)
    img = sorted((root / "resisc45").rglob("*.jpg"))[5]
    st = img.stat()
    img.write_bytes(img.read_bytes() + b"\0")  # a re-downloaded file: new size and mtime
    assert not _cache_is_fresh(run, "resisc45", cfg)
    embed_dataset(run, "resisc45", cfg, model=enc, dataset=get_dataset("resisc45", cfg, split="all"))
    assert enc.image_calls > calls and _cache_is_fresh(run, "resisc45", cfg)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same size, new mtime
    assert not _cache_is_fresh(run, "resisc45", cfg)


def test_mnist_gz_unpacking_keeps_the_embedding_cache_fresh(tree, tmp_path):
    """Building MNIST from .gz only unpacks files beside them; the cache written after that build
    is fresh for the next run (the key is taken after the build)."""
    from eval_fakes import ConstantEncoder

    from contextclip.evaluate import _cache_is_fresh, embed_dataset

    shutil.copytree(tree / "MNIST", tmp_path / "MNIST")
    gz_only(tmp_path)
    cfg = _cfg(tmp_path)
    run = tmp_path / "clip-seed0"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"stand-in")
    assert not _cache_is_fresh(run, "mnist", cfg)
    embed_dataset(run, "mnist", cfg, model=ConstantEncoder())  # builds the set: unpacks the .gz
    assert (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file() and _cache_is_fresh(run, "mnist", cfg)


def test_decoded_cache_goes_through_the_atomic_writer_and_cleans_a_dead_writers_tmp(tree, tmp_path, monkeypatch):
    """The memory-mapped decode cache is written with ``fileio.atomic_write`` (a killed decode leaves
    no .npy that looks complete); a stale ``.tmp`` of a dead process is removed at the next decode;
    a bad image stops it naming the file and leaves no cache."""
    import contextclip.data.sets as S
    from contextclip import fileio

    written = []
    real = fileio.atomic_write
    monkeypatch.setattr(fileio, "atomic_write", lambda p, c, **k: written.append(p) or real(p, c, **k))
    paths = sorted((tree / "resisc45").rglob("*.jpg"))[:6]
    ds = S.FileImages(paths, range(6), 16)
    cache = tmp_path / "decoded"
    cache.mkdir()
    stale = cache / "abc-n6-s16.npy.999999999.tmp"  # no such pid
    stale.write_bytes(b"half")
    mm = S.decoded_cache(ds, cache, threads=2)
    assert written == [mm.path] and not stale.exists() and not list(cache.glob("*.tmp"))
    arr = np.load(mm.path)
    assert arr.shape == (6, 3, 16, 16) and arr.dtype == np.uint8
    assert all(bool((mm[i][0] == ds[i][0]).all()) for i in range(6))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        S.decoded_cache(S.FileImages([*paths, bad], range(7), 16), cache, threads=2)
    assert sorted(p.name for p in cache.iterdir()) == [mm.path.name]
