"""Reliability drills, numerics: what tests/test_losses.py does not already cover.

- bf16 autocast over the whole ``ContextCLIPLoss`` (embeddings made by a bf16 matmul, as in
  training), every variant, batch 2-256, bandwidth 0.01-2, duplicates, near-identical sets and
  large norms: finite loss and finite gradients, logit scale included;
- the gradient stays bounded as the nearest distance d_min -> 0 (the known failure of the
  contextual loss: d/d_min of d / (d_min + eps) is about 1e10 with eps = 1e-5);
- training: the learned temperature stays clamped as in CLIP (the parameter itself, even with a
  huge learning rate pushing it up); a NaN gradient with a finite loss, or a NaN embedding,
  stops training before the optimiser step, naming the step and the loss terms, and never writes
  NaN weights.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from train_fakes import SquaresPairs

import contextclip.train as T
from contextclip import distributed
from contextclip.config import load_config
from contextclip.losses import CX_VARIANTS, ContextCLIPLoss, contextual_loss
from contextclip.train import NonFiniteLossError, fit

VARIANTS = list(CX_VARIANTS)


def _inputs(mode: str, n: int, d: int, seed: int, scale: float):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randn(n, d, generator=g)
    if mode == "duplicates":
        x = x[torch.randint(0, max(1, n // 3), (n,), generator=g)]
        y = y[torch.randint(0, max(1, n // 3), (n,), generator=g)]
    elif mode == "near_identical":
        y = x + 1e-4 * torch.randn(n, d, generator=g)
    elif mode == "large_norm":
        x, y = x * scale, y * scale
    return x, y


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["random", "duplicates", "near_identical", "large_norm"]),
    variant=st.sampled_from(VARIANTS),
    n=st.integers(2, 256),
    bandwidth=st.floats(0.01, 2.0),
    scale=st.floats(1e2, 1e4),
    seed=st.integers(0, 2**16),
    tau=st.floats(0.01, 1.0),
)
def test_full_loss_under_bf16_autocast_is_finite_with_finite_gradients(mode, variant, n, bandwidth, scale, seed, tau):
    d = 16
    x, y = _inputs(mode, n, d, seed, scale)
    # embeddings come out of a bf16 matmul, as from the towers under autocast in training
    proj_i, proj_t = torch.eye(d).requires_grad_(), torch.eye(d).requires_grad_()
    log_scale = torch.tensor(math.log(1 / tau), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img, txt = x @ proj_i, y @ proj_t
        assert img.dtype == torch.bfloat16
        out = ContextCLIPLoss(alpha=0.5, bandwidth=bandwidth, variant=variant)(img, txt, log_scale.exp())
    out["loss"].backward()
    for name, value in out.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), (name, value)
    for grad in (proj_i.grad, proj_t.grad, log_scale.grad):
        assert grad is not None and torch.isfinite(grad).all()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    variant=st.sampled_from(VARIANTS),
    n=st.integers(4, 128),
    k=st.integers(1, 4),
    gap=st.sampled_from([0.0, 1e-9, 1e-7, 1e-5, 1e-3]),
    bandwidth=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_gradient_stays_bounded_as_the_nearest_distance_goes_to_zero(variant, n, k, gap, bandwidth, seed):
    """k pairs are (nearly) identical, d_min -> 0 for them; the others are random."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g)
    y[:k] = x[:k] + gap * torch.randn(k, 16, generator=g)
    x.requires_grad_()
    y.requires_grad_()
    contextual_loss(x, y, bandwidth=bandwidth, variant=variant).backward()
    # the unstable formula gives ~1e10 here; the library's stays of the order of the random case (< 1)
    assert x.grad.norm() < 50 and y.grad.norm() < 50, (float(x.grad.norm()), float(y.grad.norm()))


# ----------------------------------------------------------------------------- training
def _cfg(**over):
    base = {"log_every": 1, "device": "cpu", "epochs": 1, "batch_size": 8, "lr_image": 1e-3, "lr_text": 1e-3,
            "lr_head": 1e-3}
    return load_config("smoke", {**base, **over})


def test_learned_temperature_stays_clamped_even_with_a_huge_lr(tmp_path):
    # starts above the clamp (1/tau = 1000 > 100) and is pushed up with lr 10
    cfg = _cfg(temperature=0.001, lr_head=10.0, checkpoint_every=1, epochs=2)
    loss = T.make_loss(cfg.for_method("contextclip"))

    def push_scale_up(img, txt, scale):
        out = loss(img, txt, scale)
        return {**out, "loss": out["loss"] - scale}  # rewards a larger 1/tau (momentum keeps pushing)

    fit(cfg, "contextclip", 0, tmp_path, train_ds=SquaresPairs(32), val_ds=SquaresPairs(8, offset=32), progress=False,
        loss_fn=push_scale_up)
    limit = math.log(cfg.loss.max_logit_scale)
    param = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]["logit_scale"]
    assert float(param) <= limit + 1e-6, f"log(1/tau) = {float(param)} > log(max_logit_scale) = {limit}"
    scales = [json.loads(s)["logit_scale"] for s in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert len(scales) == 10 and max(scales) <= cfg.loss.max_logit_scale + 1e-3
    assert max(scales) >= cfg.loss.max_logit_scale - 1e-3  # it was pushed to the clamp, not beyond


@pytest.mark.parametrize("poison", ["nan_gradient", "nan_embedding"])
def test_non_finite_gradient_or_embedding_stops_before_writing_nan_weights(tmp_path, monkeypatch, poison):
    """The loss value stays finite here (the losses map a NaN row to a zero vector): the guard must
    still stop at the step, name it and the loss terms, and leave the finite checkpoint."""
    cfg = _cfg(checkpoint_every=1)
    loss, real_gather = T.make_loss(cfg.for_method("contextclip")), distributed.gather_embeddings
    calls = {"loss": 0, "gather": 0}

    def poisoned(img, txt, scale):
        calls["loss"] += 1
        out = loss(img, txt, scale)
        if calls["loss"] == 3 and poison == "nan_gradient":  # value + 0, gradient 0 * inf = NaN
            out = {**out, "loss": out["loss"] + 0 * torch.sqrt(img.sum() - img.sum().detach())}
        return out

    def gather(img, txt):  # the embeddings the training step sees (one NaN row at step 3)
        calls["gather"] += 1
        img, txt = real_gather(img, txt)
        if calls["gather"] == 3 and poison == "nan_embedding":
            img = torch.cat([img[:1] * float("nan"), img[1:]])
        return img, txt

    monkeypatch.setattr(distributed, "gather_embeddings", gather)  # where train_step looks it up
    with pytest.raises(NonFiniteLossError) as info:
        fit(cfg, "contextclip", 0, tmp_path, train_ds=SquaresPairs(32), val_ds=None, progress=False, loss_fn=poisoned)
    msg = str(info.value)
    assert "epoch 1 step 3 " in msg and "contrastive_loss=" in msg and "contextual_loss=" in msg
    assert ("gradient norm=nan" in msg) if poison == "nan_gradient" else ("image embeddings finite=False" in msg)
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, bad
    assert not (tmp_path / "summary.json").exists()
