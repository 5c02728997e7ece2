"""Speed-ups change no number beyond a stated tolerance, and the GPU check runs on a CPU.

Each test names the speed-up and its tolerance:
- the finiteness check without a per-step host sync: bit-identical weights whatever log_every,
  and a non-finite step is still named and never reaches a checkpoint;
- ``train_step`` (the factored loop body timed by benchmarks/train_step.py) is what ``fit`` runs:
  bit-identical weights;
- uint8 images normalised on the device: equal to a float reference within 1e-6;
- captions padded per batch: text features equal to padding to max_length within 1e-5;
- channels_last: image features within 1e-4 (relative) of the default layout;
- bf16 autocast with the losses in fp32: loss dtypes fp32, values within 5e-2 of fp32;
- benchmarks/gpu_check.py --cpu-smoke runs and prints its JSON.
The frozen-feature cache has its equivalence tests in tests/test_train.py.
CPU only, offline, seeded, smoke-size towers, one torch thread.
"""

from __future__ import annotations

import json

import pytest
import torch
from train_fakes import SquaresPairs, checkpoint_state, poisoned_loss, smoke_cfg

import contextclip.train as T
from contextclip.config import REPO_ROOT
from contextclip.data import PairCollator
from contextclip.model import IMAGENET_MEAN, IMAGENET_STD, build_model
from contextclip.runs import seed_everything
from contextclip.train import NonFiniteLossError, fit

_cfg = smoke_cfg
_state = checkpoint_state


# ----------------------------------------------------------------------------- no per-step host sync
def test_log_every_changes_no_weight(tmp_path):
    """The finiteness check moved from every step to log points: tolerance 0 (bit-identical)."""
    ds, val = SquaresPairs(48), SquaresPairs(8, offset=48)
    runs = {}
    for log_every in (1, 5):
        cfg = _cfg(epochs=1, batch_size=8, log_every=log_every, head="mlp")
        runs[log_every] = fit(cfg, "contextclip", 0, tmp_path / str(log_every), train_ds=ds, val_ds=val,
                              progress=False)
    a, b = _state(tmp_path / "1"), _state(tmp_path / "5")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[1]["final_val_loss"] == runs[5]["final_val_loss"]


def test_deferred_check_names_the_first_bad_step_and_writes_no_nan(tmp_path):
    """Checked every log_every=5 steps and before each checkpoint (every 4): NaN at step 6 is found
    at the end-of-epoch check (step 8), named as step 6; the step-4 checkpoint stays, finite."""
    cfg = _cfg(epochs=1, batch_size=4, log_every=5, checkpoint_every=4)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 6 \(global step 6\).*contrastive_loss=nan.*"
                                                 r"stopped at step 8"):
        fit(cfg, "contextclip", 0, tmp_path, train_ds=SquaresPairs(32), val_ds=None, progress=False,
            loss_fn=poisoned_loss(cfg, "contextclip", 6))
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (tmp_path / "summary.json").exists()


def test_deferred_check_runs_before_a_checkpoint_write(tmp_path):
    """NaN at step 3, no log point before step 5 but a checkpoint due at step 4: nothing is written."""
    cfg = _cfg(epochs=1, batch_size=4, log_every=5, checkpoint_every=4)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 3 .*stopped at step 4"):
        fit(cfg, "contextclip", 0, tmp_path, train_ds=SquaresPairs(32), val_ds=None, progress=False,
            loss_fn=poisoned_loss(cfg, "contextclip", 3))
    assert not (tmp_path / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------- train_step is fit's step
def test_train_step_in_a_plain_loop_reproduces_fit(tmp_path):
    """benchmarks/train_step.py times ``train_step``; this is the same computation as ``fit``: tolerance 0."""
    ds = SquaresPairs(32)
    cfg = _cfg(epochs=1, batch_size=8, log_every=100, cache_frozen_features=False).for_method("contextclip")
    fit(cfg, "contextclip", 0, tmp_path / "fit", train_ds=ds, val_ds=None, progress=False)

    seed_everything(0)
    model = build_model(cfg)
    opt, loss_fn = T.make_optimizer(model, cfg), T.make_loss(cfg)
    sched = T.make_scheduler(opt, cfg, 4)
    collate = PairCollator(model.tokenizer, cfg.model.max_length)
    ds.set_epoch(0)
    model.train()
    for idx in T.epoch_batches(len(ds), 8, 0, 0):
        parts = T.StepParts(model, loss_fn, opt, T.autocast_factory(torch.device("cpu"), "fp32"), sched,
                            cfg.train.grad_clip)
        out = T.train_step(parts, collate([ds[i] for i in idx]))
        assert bool(out["finite"])
    ref = _state(tmp_path / "fit")
    mine = model.state_dict()
    assert all(torch.equal(ref[k], mine[k]) for k in ref), [k for k in ref if not torch.equal(ref[k], mine[k])]


# ----------------------------------------------------------------------------- inputs
def test_uint8_images_normalised_on_the_device_match_a_float_reference():
    """Datasets give uint8; ``preprocess`` converts and normalises (tolerance 1e-6 absolute)."""
    model = build_model(_cfg())
    img = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = (img.double() / 255 - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(model.preprocess(img).double(), ref, rtol=0, atol=1e-6)
    ds = SquaresPairs(4)
    collate = PairCollator(model.tokenizer, 32)
    assert collate([ds[i] for i in range(4)])["images"].dtype == torch.uint8  # batches travel as uint8


def test_per_batch_padding_matches_padding_to_max_length():
    """Captions padded to the longest in the batch, not to max_length: text features within 1e-5."""
    torch.manual_seed(0)
    model = build_model(_cfg(max_length=48)).eval()
    caps = ["a red square", "a small blue circle in the top left corner of a grey picture", "seven"]
    short = model.tokenize(caps)
    assert short["input_ids"].shape[1] == int(short["attention_mask"].sum(1).max()) < 48
    full = model.tokenizer(caps, padding="max_length", truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        a = model.text_features(short["input_ids"], short["attention_mask"])
        b = model.text_features(full["input_ids"], full["attention_mask"])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- CUDA-side tricks, checked on the CPU
def test_channels_last_changes_image_features_within_tolerance():
    """On CUDA the model and inputs go channels_last; the layout changes only rounding (rtol 1e-4, atol 1e-5)."""
    torch.manual_seed(0)
    cfg = _cfg(image_tower="resnet18")
    model = build_model(cfg).eval()
    x = model.preprocess(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    with torch.no_grad():
        a = model.image_tower(x)
        model.to(memory_format=torch.channels_last)
        b = model.image_tower(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_keeps_the_losses_in_fp32():
    """Towers in bf16, losses in fp32: the loss terms are float32 and within 5e-2 of a full fp32 pass."""
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model(cfg).eval()
    loss_fn = T.make_loss(cfg.for_method("contextclip"))
    ds = SquaresPairs(16)
    batch = PairCollator(model.tokenizer, 32)([ds[i] for i in range(16)])
    results = {}
    for name, ac in (("fp32", T.autocast_factory(torch.device("cpu"), "fp32")),
                     ("bf16", T.autocast_factory(torch.device("cpu"), "bf16"))):
        with torch.no_grad():
            with ac():
                img, txt, scale = model(batch["images"], batch["input_ids"], batch["attention_mask"])
            if name == "bf16":
                assert img.dtype == torch.bfloat16  # the towers did run in bf16
            results[name] = loss_fn(img.float(), txt.float(), scale.float())
    for k, v in results["bf16"].items():
        assert v.dtype == torch.float32, k
        torch.testing.assert_close(v, results["fp32"][k], rtol=0, atol=5e-2)


# ----------------------------------------------------------------------------- GPU check, CPU path
def test_gpu_check_cpu_smoke(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    import gpu_check

    out = tmp_path / "gpu.json"
    result = gpu_check.main(["--cpu-smoke", "--out", str(out), "--work-dir", str(tmp_path / "work")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(out.read_text()) == result
    row = result["rows"][0]
    assert result["cpu_smoke"] and row["batch"] == 4 and row["loss_finite"] and row["pairs_per_s"] > 0
    assert result["realistic_h100_pairs_per_s"] == 3300.0 and result["reference_code_pairs_per_s"] == 22.0
    kit = result["kit"]  # the kit part: fixtures -> fit -> zero-shot on the five Table 1 sets
    assert kit["rows"][0]["batch"] == 8 and kit["rows"][0]["pairs_per_s"] > 0 and kit["rows"][0]["steps"] == 3
    assert kit["zero_shot"]["datasets"] == ["cifar10", "cifar100", "resisc45", "birdsnap", "mnist"]
    assert kit["zero_shot"]["seconds"] > 0 and kit["zero_shot"]["test_images"] > 0
