"""Tests of contextclip.losses against naive loop references written here, plus invariants.

The references below loop over every pair with float64 torch scalars (so autograd gives their
gradients too) and spell each equation out one line at a time; the library is vectorised fp32.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextclip import losses as L
from contextclip.losses import CX_VARIANTS, DEGENERATE_NORM, ContextCLIPLoss, clip_loss, contextual_loss

VARIANTS = list(CX_VARIANTS)


# ----------------------------------------------------------------------------- naive references
def _dot(a, b):
    return sum(ai * bi for ai, bi in zip(a, b))


def _normalise(v, tol=DEGENERATE_NORM):
    """v / ||v||, or all zeros when ||v|| <= tol (the library's documented zero-vector rule)."""
    norm = torch.sqrt(sum(vi * vi for vi in v))
    if norm <= tol:
        return [vi * 0 for vi in v]
    return [vi / norm for vi in v]


def _rows(m):
    return [list(row) for row in m.double()]


def naive_clip(img, txt, tau=1.0, lam=0.75):
    img_pts = [_normalise(r) for r in _rows(img)]
    txt_pts = [_normalise(r) for r in _rows(txt)]
    n = len(img_pts)
    total = 0.0
    for i in range(n):
        # Eq. 2: image i against every caption k
        num = torch.exp(_dot(img_pts[i], txt_pts[i]) / tau)
        den = sum(torch.exp(_dot(img_pts[i], txt_pts[k]) / tau) for k in range(n))
        l_i2t = -torch.log(num / den)
        # Eq. 3: caption i against every image k
        den_t = sum(torch.exp(_dot(txt_pts[i], img_pts[k]) / tau) for k in range(n))
        l_t2i = -torch.log(num / den_t)
        total = total + lam * l_i2t + (1 - lam) * l_t2i
    return total / n  # Eq. 4


def naive_cx_points(X, Y, h, eps, cos=_dot, centre=True, max_over="generated"):
    """Eq. 5-9 over point lists X (generated) and Y (target), each point a list of scalars.

    ``centre=True``: centre both sets on the mean of Y and L2-normalise each point.
    (``max_over`` and ``centre`` exist only so a test can show that the perturbed formulas differ.)
    """
    if centre:
        dim = len(Y[0])
        mu = [sum(y[k] for y in Y) / len(Y) for k in range(dim)]
        X = [_normalise([x[k] - mu[k] for k in range(dim)]) for x in X]
        Y = [_normalise([y[k] - mu[k] for k in range(dim)]) for y in Y]
    n, m = len(X), len(Y)
    d = [[torch.clamp(1 - cos(X[i], Y[j]), min=0) for j in range(m)] for i in range(n)]
    cx = [[None] * m for _ in range(n)]
    for i in range(n):
        d_min = min(d[i])  # nearest target of generated point i
        dt = [d[i][j] / (d_min + eps) for j in range(m)]  # Eq. 6
        w = [torch.exp((1 - dt[j]) / h) for j in range(m)]  # Eq. 7
        s = sum(w)
        for j in range(m):
            cx[i][j] = w[j] / s  # Eq. 8
    if max_over == "generated":
        cx_total = sum(max(cx[i][j] for i in range(n)) for j in range(m)) / m  # Eq. 5 (Mechrez)
    else:  # the paper's literal "max_j" typo, to show it gives another number
        cx_total = sum(max(cx[i][j] for j in range(m)) for i in range(n)) / n
    return -torch.log(cx_total)  # Eq. 9


def naive_contextual(img, txt, h=0.5, eps=1e-5, variant="batch"):
    img_pts = [_normalise(r) for r in _rows(img)]  # Algorithm 1, lines 10-11
    txt_pts = [_normalise(r) for r in _rows(txt)]
    if variant == "batch":
        return naive_cx_points(img_pts, txt_pts, h, eps)
    if variant == "feature_columns":
        cols_i = [[row[k] for row in img_pts] for k in range(len(img_pts[0]))]
        cols_t = [[row[k] for row in txt_pts] for k in range(len(txt_pts[0]))]
        return naive_cx_points(cols_i, cols_t, h, eps)
    if variant == "per_sample_features":
        per = []
        for x, y in zip(img_pts, txt_pts):
            mu = sum(y) / len(y)  # scalar mean of this sample's text features
            xc = _normalise([v - mu for v in x])  # whole row normalised
            yc = _normalise([v - mu for v in y])
            pts_x, pts_y = [[v] for v in xc], [[v] for v in yc]  # each scalar is a point
            per.append(naive_cx_points(pts_x, pts_y, h, eps, centre=False))
        return sum(per) / len(per)
    raise AssertionError(variant)


def _pair(n, d, seed, noise=None):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g) * (1 + 3 * torch.rand(n, 1, generator=g))  # varied norms
    txt = torch.randn(n, d, generator=g) if noise is None else img + noise * torch.randn(n, d, generator=g)
    return img, txt


# ----------------------------------------------------------------------------- CLIP
@pytest.mark.parametrize("tau,lam", [(1.0, 0.75), (0.07, 0.75), (0.5, 0.0), (2.0, 1.0), (0.1, 0.5)])
def test_clip_loss_matches_naive_value_and_gradient(tau, lam):
    img, txt = _pair(6, 5, seed=1)
    a, b = img.clone().requires_grad_(), txt.clone().requires_grad_()
    got = clip_loss(a, b, temperature=tau, image_to_text_weight=lam)
    got.backward()
    a64, b64 = img.double().requires_grad_(), txt.double().requires_grad_()
    want = naive_clip(a64, b64, tau, lam)
    want.backward()
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=1e-4, atol=1e-6)


def test_clip_lambda_weights_the_image_to_text_direction():
    img, txt = _pair(6, 5, seed=2)
    # lambda = 1 is the pure image->text CE over rows of I @ T.T: swapping roles gives lambda = 0
    assert clip_loss(img, txt, 0.3, 1.0).item() == pytest.approx(clip_loss(txt, img, 0.3, 0.0).item(), rel=1e-6)
    assert abs(clip_loss(img, txt, 0.3, 1.0).item() - clip_loss(img, txt, 0.3, 0.0).item()) > 1e-3


def test_learned_temperature_tensor_gets_the_right_gradient():
    img, txt = _pair(8, 6, seed=3)
    tau = torch.tensor(0.3, requires_grad=True)
    clip_loss(img, txt, temperature=tau).backward()
    tau64 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    naive_clip(img.double(), txt.double(), tau64).backward()
    assert tau.grad is not None and torch.isfinite(tau.grad)
    assert tau.grad.item() == pytest.approx(tau64.grad.item(), rel=1e-4)

    # Through ContextCLIPLoss, as 1/tau = exp(log-scale) the model learns.
    log_scale = torch.tensor(math.log(1 / 0.3), requires_grad=True)
    out = ContextCLIPLoss(alpha=0.5)(img, txt, log_scale.exp())
    out["loss"].backward()
    assert log_scale.grad is not None and log_scale.grad.item() != 0.0
    # d/d(log s) = d/d tau * d tau/d(log s) = tau.grad * (-tau); CX does not depend on s
    assert log_scale.grad.item() == pytest.approx(-0.3 * tau64.grad.item(), rel=1e-4)


# ----------------------------------------------------------------------------- contextual loss
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n,d,h,seed", [(5, 4, 0.5, 0), (7, 3, 0.2, 1), (4, 6, 1.0, 2), (6, 6, 0.1, 3)])
def test_contextual_loss_matches_naive_value_and_gradient(variant, n, d, h, seed):
    img, txt = _pair(n, d, seed=seed, noise=0.7 if seed % 2 else None)
    a, b = img.clone().requires_grad_(), txt.clone().requires_grad_()
    got = contextual_loss(a, b, bandwidth=h, eps=1e-5, variant=variant)
    got.backward()
    a64, b64 = img.double().requires_grad_(), txt.double().requires_grad_()
    want = naive_contextual(a64, b64, h, 1e-5, variant)
    want.backward()
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-5)
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=2e-3, atol=1e-5)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=2e-3, atol=1e-5)


def test_naive_reference_is_tight_enough_to_catch_formula_slips():
    """The tolerance above would catch the likely mistakes: each perturbed formula is far off."""
    img, txt = _pair(6, 5, seed=4)  # unrelated sets: L_CX well above 0
    img_pts = [_normalise(r) for r in _rows(img)]
    txt_pts = [_normalise(r) for r in _rows(txt)]
    lib = contextual_loss(img, txt).item()
    assert lib > 0.3
    assert lib == pytest.approx(naive_cx_points(img_pts, txt_pts, 0.5, 1e-5).item(), rel=1e-4)
    slips = {
        "max over targets (paper's literal Eq. 5)": naive_cx_points(img_pts, txt_pts, 0.5, 1e-5, max_over="target"),
        "no centring": naive_cx_points(img_pts, txt_pts, 0.5, 1e-5, centre=False),
        "text as the generated set": naive_cx_points(txt_pts, img_pts, 0.5, 1e-5),
        "bandwidth 0.45": naive_cx_points(img_pts, txt_pts, 0.45, 1e-5),
    }
    for name, value in slips.items():
        assert abs(value.item() - lib) > 1e-3, name


@pytest.mark.parametrize("seed", range(6))
def test_batch_variant_is_between_zero_and_log_n(seed):
    n = 4 + 5 * seed
    img, txt = _pair(n, 8, seed=seed, noise=[None, 0.1, 1.0][seed % 3])
    value = contextual_loss(img, txt).item()
    assert -1e-6 <= value <= math.log(n) + 1e-6
    cols = contextual_loss(img, txt, variant="feature_columns").item()
    assert -1e-6 <= cols <= math.log(8) + 1e-6


def test_batch_variant_reaches_both_bounds():
    img, _ = _pair(10, 16, seed=5)
    assert contextual_loss(img, img.clone()).item() == pytest.approx(0.0, abs=1e-6)  # identical sets: CX = 1
    one_caption = torch.randn(1, 16).repeat(10, 1)  # every target identical: no contrast, CX = 1/N
    assert contextual_loss(img, one_caption).item() == pytest.approx(math.log(10), abs=1e-5)


def test_batch_variant_ignores_the_order_of_each_set():
    img, txt = _pair(12, 8, seed=6, noise=0.5)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    base = contextual_loss(img, txt).item()
    assert contextual_loss(img[perm], txt).item() == pytest.approx(base, abs=1e-6)
    assert contextual_loss(img, txt[perm]).item() == pytest.approx(base, abs=1e-6)
    # ... which is a real property: the per-sample variant does depend on the pairing.
    per = contextual_loss(img, txt, variant="per_sample_features").item()
    assert abs(contextual_loss(img[perm], txt, variant="per_sample_features").item() - per) > 1e-4
    cols = contextual_loss(img, txt, variant="feature_columns").item()
    assert abs(contextual_loss(img[perm], txt, variant="feature_columns").item() - cols) > 1e-4


@pytest.mark.parametrize("variant,margin", [("batch", 1.0), ("feature_columns", 1.0)])
def test_aligned_pairs_give_lower_loss_than_random(variant, margin):
    img, _ = _pair(32, 64, seed=7)
    aligned = img + 0.05 * torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    unrelated = torch.randn(32, 64, generator=torch.Generator().manual_seed(2))
    assert contextual_loss(img, aligned, variant=variant) + margin < contextual_loss(img, unrelated, variant=variant)


def test_per_sample_variant_is_nearly_constant_as_documented():
    img, _ = _pair(32, 256, seed=8)
    aligned = img + 0.05 * torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    unrelated = torch.randn(32, 256, generator=torch.Generator().manual_seed(2))
    a = contextual_loss(img, aligned, variant="per_sample_features").item()
    r = contextual_loss(img, unrelated, variant="per_sample_features").item()
    assert abs(a - math.log(256)) < 0.05 and abs(r - math.log(256)) < 0.05
    assert abs(a - r) < 0.01


# ----------------------------------------------------------------------------- ContextCLIPLoss
@pytest.mark.parametrize("scale", [1.0, 2.0, 0.5, 16.0])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_alpha_zero_is_exactly_the_clip_loss(scale, as_tensor):
    img, txt = _pair(8, 6, seed=9)
    s = torch.tensor(scale) if as_tensor else scale
    out = ContextCLIPLoss(alpha=0.0)(img, txt, s)
    expected = clip_loss(img, txt, temperature=1.0 / s)
    assert torch.equal(out["loss"], expected)  # bitwise
    assert torch.equal(out["contrastive_loss"], expected)
    assert set(out) == {"contrastive_loss", "contextual_loss", "loss"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_alpha_zero_reports_the_real_contextual_term_without_its_gradient(variant):
    """CLIP (alpha = 0) reports L_CX as computed, never a stand-in 0, and trains on L_CLIP alone."""
    img, txt = _pair(8, 6, seed=9)
    a, b = img.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    out = ContextCLIPLoss(alpha=0.0, bandwidth=0.3, variant=variant)(a, b, 4.0)
    measured = contextual_loss(img, txt, 0.3, variant=variant)
    assert torch.equal(out["contextual_loss"], measured) and measured.item() > 0.01  # a real, non-zero value
    assert not out["contextual_loss"].requires_grad
    out["loss"].backward()
    a_ref, b_ref = img.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    clip_loss(a_ref, b_ref, temperature=0.25).backward()
    assert torch.equal(a.grad, a_ref.grad) and torch.equal(b.grad, b_ref.grad)  # the gradient is CLIP's, bit for bit


@pytest.mark.parametrize("variant", VARIANTS)
def test_contextclip_loss_adds_alpha_times_the_contextual_term(variant):
    img, txt = _pair(8, 6, seed=10)
    out = ContextCLIPLoss(alpha=0.3, bandwidth=0.2, variant=variant)(img, txt, 4.0)
    cx = contextual_loss(img, txt, bandwidth=0.2, variant=variant)
    assert torch.equal(out["contextual_loss"], cx)
    assert torch.equal(out["contrastive_loss"], clip_loss(img, txt, temperature=0.25))
    assert out["loss"].item() == pytest.approx(out["contrastive_loss"].item() + 0.3 * cx.item(), rel=1e-6)
    assert out["contextual_loss"].item() > 0


# ----------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_vectors_have_the_documented_defined_result(variant):
    img, txt = _pair(6, 5, seed=11)
    img[2] = 0.0
    txt[4] = 0.0
    a, b = img.clone().requires_grad_(), txt.clone().requires_grad_()
    got = contextual_loss(a, b, variant=variant)
    got.backward()
    want = naive_contextual(img.double(), txt.double(), 0.5, 1e-5, variant)  # zero row -> zero vector
    assert torch.isfinite(got) and got.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-5)
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()

    c = clip_loss(a, b)
    a.grad = None
    c.backward()
    assert c.item() == pytest.approx(naive_clip(img.double(), txt.double()).item(), rel=1e-5)
    assert torch.equal(a.grad[2], torch.zeros(5))  # a zero embedding has no direction to move


def test_all_zero_inputs_give_log_n():
    z = torch.zeros(5, 4, requires_grad=True)
    assert clip_loss(z, z).item() == pytest.approx(math.log(5), abs=1e-6)  # all logits 0
    cx = contextual_loss(z, z)
    cx.backward()
    assert cx.item() == pytest.approx(math.log(5), abs=1e-6) and torch.equal(z.grad, torch.zeros(5, 4))


def test_bf16_autocast_inputs_are_computed_in_fp32():
    torch.manual_seed(0)
    tower_i, tower_t = torch.nn.Linear(12, 8), torch.nn.Linear(10, 8)
    x, y = torch.randn(16, 12), torch.randn(16, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img, txt = tower_i(x), tower_t(y)
        assert img.dtype == torch.bfloat16
        out = ContextCLIPLoss(alpha=0.5, bandwidth=0.05)(img, txt, torch.tensor(10.0))
    assert all(v.dtype == torch.float32 for v in out.values())
    ref = ContextCLIPLoss(alpha=0.5, bandwidth=0.05)(img.float(), txt.float(), 10.0)
    assert out["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-6)
    out["loss"].backward()
    assert torch.isfinite(tower_i.weight.grad).all() and tower_i.weight.grad.abs().sum() > 0


def test_bad_inputs_are_clear_errors():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        contextual_loss(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        clip_loss(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="float tensor"):
        clip_loss(a.long(), a.long())
    with pytest.raises(ValueError, match="unknown variant 'rows'.*batch"):
        contextual_loss(a, a, variant="rows")
    with pytest.raises(ValueError, match="bandwidth"):
        contextual_loss(a, a, bandwidth=0.0)
    with pytest.raises(ValueError, match="eps"):
        contextual_loss(a, a, eps=0.0)
    with pytest.raises(ValueError, match="temperature"):
        clip_loss(a, a, temperature=-1.0)
    with pytest.raises(ValueError, match="image_to_text_weight"):
        clip_loss(a, a, image_to_text_weight=1.5)
    with pytest.raises(ValueError, match="alpha"):
        ContextCLIPLoss(alpha=-0.1)


_MODES = ["random", "duplicates", "near_identical", "huge", "tiny", "one_caption", "zero_rows", "aligned"]


def _make_case(mode, n, d, seed, scale):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g)
    txt = torch.randn(n, d, generator=g)
    if mode == "duplicates":
        img = img[torch.randint(0, max(1, n // 3), (n,), generator=g)]
        txt = txt[torch.randint(0, max(1, n // 3), (n,), generator=g)]
    elif mode == "near_identical":
        txt = img + 1e-6 * torch.randn(n, d, generator=g)
    elif mode == "aligned":
        txt = img.clone()
    elif mode == "huge":
        img, txt = img * scale * 1e30, txt * scale * 1e30
    elif mode == "tiny":
        img, txt = img * 1e-30, txt * 1e-30
    elif mode == "one_caption":
        txt = txt[:1].repeat(n, 1)
    elif mode == "zero_rows":
        img[: max(1, n // 4)] = 0.0
        txt[-1] = 0.0
    return img, txt


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(_MODES),
    variant=st.sampled_from(VARIANTS),
    n=st.integers(2, 256),
    d=st.sampled_from([1, 2, 8, 33]),
    bandwidth=st.floats(0.01, 2.0),
    scale=st.floats(1.0, 1e6),
    seed=st.integers(0, 2**16),
    learned_tau=st.floats(0.01, 10.0),
)
def test_losses_and_gradients_are_finite_everywhere(mode, variant, n, d, bandwidth, scale, seed, learned_tau):
    img, txt = _make_case(mode, n, d, seed, scale)
    a, b = img.requires_grad_(), txt.requires_grad_()
    log_scale = torch.tensor(math.log(1 / learned_tau), requires_grad=True)
    out = ContextCLIPLoss(alpha=0.5, bandwidth=bandwidth, variant=variant)(a, b, log_scale.exp())
    out["loss"].backward()
    for name, value in out.items():
        assert torch.isfinite(value), (name, value)
    n_points = {"batch": n, "feature_columns": d, "per_sample_features": d}[variant]
    assert -1e-5 <= out["contextual_loss"].item() <= math.log(n_points) + 1e-4
    for g in (a.grad, b.grad, log_scale.grad):
        assert g is not None and torch.isfinite(g).all()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    variant=st.sampled_from(VARIANTS),
    n=st.integers(2, 64),
    bandwidth=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_bf16_inputs_stay_finite(variant, n, bandwidth, seed):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, 16, generator=g).bfloat16().requires_grad_()
    txt = img.detach().clone().requires_grad_() if seed % 2 else torch.randn(n, 16, generator=g).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = contextual_loss(img, txt, bandwidth=bandwidth, variant=variant)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(img.grad.float()).all()


@pytest.mark.parametrize("variant", sorted(CX_VARIANTS))
def test_nan_inputs_give_a_nan_loss_not_a_silent_zero(variant):
    """A NaN embedding must surface as a NaN loss (the training loop then stops), never be masked."""
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    img[2, 5] = float("nan")
    assert torch.isnan(contextual_loss(img, txt, variant=variant))
    assert torch.isnan(clip_loss(img, txt))
    txt[0, 0] = float("inf")
    assert not torch.isfinite(contextual_loss(img.nan_to_num(), txt, variant=variant))


def test_cx_matrix_is_the_matrix_behind_the_batch_loss():
    """Rows of CX_ij are distributions over the captions, and -log(mean_j max_i CX_ij) is L_CX."""
    from contextclip.losses import cx_matrix

    g = torch.Generator().manual_seed(5)
    img, txt = torch.randn(7, 12, generator=g), torch.randn(7, 12, generator=g)
    m = cx_matrix(img, txt, 0.3, 1e-5)
    assert m.shape == (7, 7) and torch.allclose(m.sum(dim=1), torch.ones(7))
    assert torch.allclose(-torch.log(m.amax(dim=0).mean()), contextual_loss(img, txt, 0.3, 1e-5, "batch"))
    aligned = cx_matrix(txt + 0.01 * img, txt)
    assert torch.equal(aligned.argmax(dim=1), torch.arange(7))  # aligned pairs: the diagonal dominates


# ----------------------------------------------------------------------------- closed-form backward
def _graph_unit(v, tol=DEGENERATE_NORM):
    """The elementwise autograd graph the library's one-node normalisation replaces (same formulas)."""
    norm = (v * v).sum(dim=-1, keepdim=True).clamp_min(tol * tol).sqrt()
    return torch.where(~(norm <= tol), v / norm, torch.zeros_like(v))


def _graph_directions(emb):
    x = emb.float() if emb.dtype != torch.float64 else emb
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return _graph_unit(x / scale)


def _graph_cx_batch(img, txt, h, eps):
    mu = txt.mean(dim=0, keepdim=True)
    d = (1.0 - _graph_unit(img - mu) @ _graph_unit(txt - mu).t()).clamp_min(0.0)
    cx_ij = torch.softmax((1.0 - d / (d.amin(dim=-1, keepdim=True) + eps)) / h, dim=-1)
    return 0.0 - torch.log(cx_ij.amax(dim=-2).mean(dim=-1))


def _graph_loss(img, txt, variant, h, eps, alpha, tau, lam):
    i, t = _graph_directions(img), _graph_directions(txt)
    logits = i @ t.t() / tau
    labels = torch.arange(len(i))
    clip = lam * torch.nn.functional.cross_entropy(logits, labels) + \
        (1 - lam) * torch.nn.functional.cross_entropy(logits.t(), labels)
    cx = _graph_cx_batch(i, t, h, eps) if variant == "batch" else _graph_cx_batch(i.t(), t.t(), h, eps)
    return clip + alpha * cx


def _degenerate_batches():
    """Random, plus the cases where a closed-form backward can go wrong: ties and dropped rows."""
    g = torch.Generator().manual_seed(21)
    img, txt = torch.randn(8, 12, generator=g), torch.randn(8, 12, generator=g)
    dup_img = img.clone()
    dup_img[3] = dup_img[5]  # tied maxima of CX_ij over the images
    dup_txt = txt.clone()
    dup_txt[1] = dup_txt[6]  # tied minima of d_ij over the captions
    zero = img.clone()
    zero[2] = 0.0  # a dropped row (no direction)
    same = txt[:1].repeat(8, 1)  # every caption identical: every centred caption is dropped
    return {"random": (img, txt), "tied images": (dup_img, txt), "tied captions": (img, dup_txt),
            "zero image": (zero, txt), "identical captions": (img, same), "aligned": (txt + 1e-3 * img, txt)}


@pytest.mark.parametrize("variant", ["batch", "feature_columns"])
@pytest.mark.parametrize("case", sorted(_degenerate_batches()))
def test_one_node_loss_matches_the_elementwise_graph(variant, case):
    """The loss and both gradients equal those of the plain autograd graph of the same formulas."""
    img, txt = _degenerate_batches()[case]
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        got_in = [img.to(dtype).requires_grad_(), txt.to(dtype).requires_grad_()]
        want_in = [img.to(dtype).requires_grad_(), txt.to(dtype).requires_grad_()]
        if dtype == torch.float64:  # the library's loss computes in fp32: call its pieces in float64
            i, t = (L._UnitRows.apply(v, DEGENERATE_NORM, True) for v in got_in)
            got = L._clip_from_directions(i, t, 0.5, 0.75) + 0.5 * L.CX_VARIANTS[variant](i, t, 0.3, 1e-5)
        else:
            loss_fn = ContextCLIPLoss(alpha=0.5, bandwidth=0.3, variant=variant, image_to_text_weight=0.75)
            got = loss_fn(*got_in, torch.tensor(2.0))["loss"]  # logit scale 2: tau 0.5
        want = _graph_loss(*want_in, variant, 0.3, 1e-5, 0.5, 0.5, 0.75)
        got.backward()
        want.backward()
        assert torch.allclose(got, want, rtol=tol, atol=tol), (case, dtype, got.item(), want.item())
        for a, b in zip(got_in, want_in):
            assert torch.isfinite(a.grad).all()
            assert torch.allclose(a.grad, b.grad, rtol=tol, atol=tol), (case, dtype, (a.grad - b.grad).abs().max())


def test_one_node_functions_pass_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: L._UnitRows.apply(v, DEGENERATE_NORM, True), (x,))
    assert torch.autograd.gradcheck(lambda v: L._UnitRows.apply(v, DEGENERATE_NORM, False), (x,))
    assert torch.autograd.gradcheck(lambda a, b: L._CXBatch.apply(a, b, 0.4, 1e-5), (x, y))
