"""The two training losses of ContextCLIP: the CLIP contrastive loss and the contextual loss.

What it is: ``clip_loss`` (Eq. 2-4 of the paper, the ConVIRT form with a weight ``lambda`` on
the image->text direction), ``contextual_loss`` (Eq. 5-9, the contextual loss of Mechrez et
al. 2018 applied to the projected image and text embeddings, in three readings of what a
"point" is) and ``ContextCLIPLoss``, which adds them (Eq. 1: ``L = L_CLIP + alpha * L_CX``)
and returns each term by name so the training loop can log them.

What it is not: no model, no gathering across processes (``contextclip.distributed`` gathers
the embeddings of the global batch before they reach these functions), no logit-scale
parameter (the model owns it and passes ``logit_scale = 1 / temperature`` in).

Numerics, for every function here:
- Inputs are ``[N, D]`` tensors of any float dtype; the maths runs in float32 with autocast
  switched off, so bf16/fp16 inputs inside ``torch.autocast`` are safe. The result is fp32.
- Embeddings are L2-normalised inside (Algorithm 1, lines 10-11), so the losses depend only
  on each embedding's direction; very large or very small norms are harmless.
- **Zero vectors have a defined result** (no error): a row that is all zeros, or a point
  whose centred vector is shorter than ``DEGENERATE_NORM`` (for example every caption in
  the batch being identical), has no direction and is mapped to the zero vector: cosine 0
  with every other point, so distance 1, and no gradient flows through its direction.
  This keeps a degenerate batch from stopping a long run; see docs/decisions.md.
- Non-finite inputs (NaN/inf) are not checked (that would cost a device sync every step)
  and give a non-finite loss, which the training loop reports.
- Each normalisation and the ``"batch"`` contextual term are single autograd nodes with their
  gradients written out (``_UnitRows``, ``_CXBatch``), and ``ContextCLIPLoss`` normalises each input
  once for both terms: per-operation overhead, not arithmetic, was most of a locked-tower training
  step. tests/test_losses.py holds them to the plain autograd graph of the same formulas (ties and
  dropped rows included) and to ``gradcheck``.

Where our contextual loss differs from the paper's wording (details in docs/decisions.md):
- The paper calls ``d_ij`` a cosine *similarity*, but Eq. 6-7 only make sense for a
  non-negative *distance* whose minimum is the best match; we use ``d_ij = 1 - cos``.
- The paper does not mention centring; as every reference implementation does, both sets
  are centred on the mean of the *target* set (text) before the cosine.
- The paper's Eq. 5 reads ``max_j``; Mechrez et al. take the max over the generated points
  ``i`` and the mean over the targets ``j``, and so do we.
- What a "point" is: batch items (``"batch"``, default; our reading: the paper says
  ``|U| = |V| = 256`` points per image and text "in a batch of image-text pairs"), each scalar
  feature of one sample's embedding (``"per_sample_features"``, the authors' sibling code) or
  each embedding dimension as a vector over the batch (``"feature_columns"``).
- The bandwidth ``h = 0.5`` is ours: the paper gives no value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CX_VARIANTS",
    "DEGENERATE_NORM",
    "ContextCLIPLoss",
    "clip_loss",
    "contextual_loss",
    "cx_matrix",
]

# A (unit-scale) vector shorter than this has no reliable direction and is treated as zero.
# Inputs are L2-normalised before centring, so centring's rounding error is ~1e-7 (fp32):
# 1e-5 leaves a wide margin while never touching vectors that differ in any real way.
DEGENERATE_NORM = 1e-5

#: The loss terms ``ContextCLIPLoss`` returns, in the order histories and tables list them.
TERMS = ("loss", "contrastive_loss", "contextual_loss")


# ----------------------------------------------------------------------------- helpers
def _check_pair(image_emb: Tensor, text_emb: Tensor, what: str) -> None:
    for name, t in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{what}: {name} must have shape [N, D], got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{what}: {name} must be a float tensor, got {t.dtype}")
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"{what}: {name} is empty, shape {tuple(t.shape)}")
    if image_emb.shape != text_emb.shape:
        raise ValueError(
            f"{what}: image_emb {tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)} "
            "must have the same shape [N, D] (one caption per image)"
        )


def _unit_rows(x: Tensor, tol: float, rescale: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Forward of the row normalisation: (unit rows, what ``_unit_rows_backward`` needs).

    ``y = x / s`` (``s`` = the row's max |x|, when ``rescale``; then squares can neither overflow nor
    underflow), ``n = sqrt(max(|y|^2, tol^2))``, rows ``y / n`` where ``n > tol``, else exactly 0.
    """
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny) if rescale else None
    y = x / scale if rescale else x
    norm = (y * y).sum(dim=-1, keepdim=True).clamp_min(tol * tol).sqrt()  # [N, 1]
    keep = ~(norm <= tol)  # NaN norms are kept, so NaN inputs give a NaN loss (not a silent zero)
    out = torch.where(keep, y / norm, torch.zeros_like(y))
    return out, (out, norm, keep, *((scale,) if rescale else ()))


def _unit_rows_backward(g: Tensor, out: Tensor, norm: Tensor, keep: Tensor, *scale: Tensor) -> Tensor:
    """``(g - out <out, g>) / (n s)`` on kept rows (the Jacobian of ``y / |y|``), exactly 0 on dropped rows."""
    grad = (g - out * (out * g).sum(dim=-1, keepdim=True)) / norm
    if scale:
        grad = grad / scale[0]
    return torch.where(keep, grad, torch.zeros_like(grad))


class _UnitRows(torch.autograd.Function):
    """Rows L2-normalised (``_unit_rows``) as one autograd node with a closed-form backward.

    The forward values of the elementwise autograd graph it replaces, and its gradient up to float
    rounding, in about 8 backward ops instead of a graph of about 15 nodes (those normalisations
    were most of a locked-tower step's cost); ``tests/test_losses.py`` checks it against that graph
    and with ``gradcheck``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, tol: float, rescale: bool) -> Tensor:  # noqa: D102 - see the class
        out, saved = _unit_rows(x, tol, rescale)
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):  # noqa: D102 - see the class
        return _unit_rows_backward(g, *ctx.saved_tensors), None, None


def _unit(v: Tensor, tol: float = DEGENERATE_NORM) -> Tensor:
    """L2-normalise the rows of ``v``; rows with norm <= ``tol`` become exactly zero.

    The divisor is clamped at ``tol`` and no gradient reaches a dropped row, so both the value and
    the gradient are finite for zero and near-zero vectors (``_UnitRows``).
    """
    return _UnitRows.apply(v, tol, False)


def _directions(emb: Tensor) -> Tensor:
    """fp32 L2-normalised rows (Algorithm 1, lines 10-11), safe for any norm.

    Each row is first divided by its (detached) largest absolute entry so that squares can
    neither overflow (norms up to fp32 max) nor underflow; the result is scale invariant, so
    dividing by a per-row constant leaves the gradient exact. All-zero rows stay zero.
    """
    return _UnitRows.apply(emb.float(), DEGENERATE_NORM, True)  # [N, D], rows of norm 1 or exactly 0


def _cx_from_distances(d: Tensor, bandwidth: float, eps: float) -> Tensor:
    """Eq. 6-8 and 5 for distances ``d[..., i, j]`` (i: generated points, j: target points).

    Returns the contextual similarity CX, one value per leading index (a scalar for 2-D ``d``).
    """
    cx_ij = _cx_ij(d, bandwidth, eps)  # Eq. 6-8, [..., N, M]
    # Eq. 5: for each target j the best-matching generated point i, averaged over targets.
    return cx_ij.amax(dim=-2).mean(dim=-1)  # [...]


def _cx_ij(d: Tensor, bandwidth: float, eps: float) -> Tensor:
    """Eq. 6-8: the matrix CX_ij (rows: generated points i, a distribution over the targets j)."""
    return _cx_ij_steps(d, bandwidth, eps)[-1]  # [..., N, M]


def _cx_ij_steps(raw: Tensor, bandwidth: float, eps: float) -> tuple[Tensor, ...]:
    """Eq. 6-8 step by step: (d, d_min, d_min + eps, d_tilde, CX_ij) for distances ``raw``
    (``_CXBatch``'s backward reads the intermediate ones)."""
    d = raw.clamp_min(0.0)  # distances are >= 0 (rounding can make 1 - cos slightly negative)
    d_min = d.amin(dim=-1, keepdim=True)  # nearest target of each generated point, [..., N, 1]
    den = d_min + eps
    d_tilde = d / den  # Eq. 6: relative distance, [..., N, M]
    # Eq. 7-8: w_ij = exp((1 - dt_ij)/h), CX_ij = w_ij / sum_k w_ik, as a stable softmax over
    # the targets j (never raw exp: (1 - dt)/h reaches -1e7 for h = 0.01).
    return d, d_min, den, d_tilde, torch.softmax((1.0 - d_tilde) / bandwidth, dim=-1)


# ----------------------------------------------------------------------------- CLIP (Eq. 2-4)
def _clip_from_logits(logits: Tensor, image_to_text_weight: float) -> Tensor:
    labels = torch.arange(logits.shape[0], device=logits.device)  # pair i matches caption i
    loss_i2t = F.cross_entropy(logits, labels)  # Eq. 2: image v_i -> its caption u_i, softmax over texts
    loss_t2i = F.cross_entropy(logits.t(), labels)  # Eq. 3: caption u_i -> its image v_i
    lam = image_to_text_weight
    return lam * loss_i2t + (1.0 - lam) * loss_t2i  # Eq. 4 (mean over the N pairs inside CE)


def _check_weight(image_to_text_weight: float) -> float:
    lam = float(image_to_text_weight)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"image_to_text_weight (lambda of Eq. 4) must be in [0, 1], got {lam}")
    return lam


def clip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    temperature: float | Tensor = 1.0,
    image_to_text_weight: float = 0.75,
) -> Tensor:
    """Bidirectional InfoNCE loss of CLIP in the ConVIRT form (Eq. 2-4), a scalar fp32 tensor.

    ``logits = I @ T.T / temperature`` with ``I``, ``T`` the L2-normalised rows of
    ``image_emb``, ``text_emb`` (``[N, D]``, pair ``i`` is row ``i`` of both), and
    ``L = lambda * CE(logits, arange) + (1 - lambda) * CE(logits.T, arange)`` with
    ``lambda = image_to_text_weight`` on the image->text direction (the paper: 0.75).
    ``temperature`` is a positive float or a 0-d tensor (a learned temperature gets a gradient).
    """
    _check_pair(image_emb, text_emb, "clip_loss")
    lam = _check_weight(image_to_text_weight)
    if not isinstance(temperature, Tensor) and not float(temperature) > 0:
        raise ValueError(f"clip_loss: temperature must be > 0, got {temperature}")
    with torch.autocast(device_type=image_emb.device.type, enabled=False):
        return _clip_from_directions(_directions(image_emb), _directions(text_emb), temperature, lam)


def _clip_from_directions(img: Tensor, txt: Tensor, temperature: float | Tensor, lam: float) -> Tensor:
    """Eq. 2-4 on unit rows ``img``, ``txt`` ([N, D] fp32)."""
    tau = temperature.float() if isinstance(temperature, Tensor) else float(temperature)
    logits = img @ txt.t() / tau  # Eq. 2-3: cosine similarities / tau, [N, N]
    return _clip_from_logits(logits, lam)


# ----------------------------------------------------------------------------- contextual (Eq. 5-9)
def _batch_distances(img: Tensor, txt: Tensor) -> Tensor:
    """d_ij = 1 - cos(x_i, y_j) after centring both sets on the target mean, [N, N]."""
    mu_y = txt.mean(dim=0, keepdim=True)  # mean of the target set, [1, D]
    x = _unit(img - mu_y)  # centred on the target mean, L2-normalised, [N, D]
    y = _unit(txt - mu_y)  # [N, D]
    return 1.0 - x @ y.t()  # cosine distance d_ij = 1 - cos(x_i, y_j), [N, N]


class _CXBatch(torch.autograd.Function):
    """``-log CX`` of the ``"batch"`` variant (Eq. 5-9 on ``_batch_distances``) as one autograd node.

    The forward runs the same operations as ``_batch_distances`` and ``_cx_from_distances`` (the same
    values; Eq. 6-8 through the same ``_cx_ij_steps``); the backward is written out (the derivative of each step, in reverse, with PyTorch's own
    conventions: ``clamp_min`` passes the gradient where its input is >= 0, ``amin``/``amax`` share it
    evenly between tied entries). One node instead of an autograd graph of about 30 nodes, whose
    bookkeeping made most of a locked-tower step's time. ``tests/test_losses.py`` checks it against the autograd
    graph of the same formulas and with ``gradcheck``.
    """

    @staticmethod
    def forward(ctx, img: Tensor, txt: Tensor, bandwidth: float, eps: float) -> Tensor:  # noqa: D102
        mu_y = txt.mean(dim=0, keepdim=True)  # mean of the target set, [1, D]
        x, saved_x = _unit_rows(img - mu_y, DEGENERATE_NORM, False)  # centred, L2-normalised, [N, D]
        y, saved_y = _unit_rows(txt - mu_y, DEGENERATE_NORM, False)  # [M, D]
        raw = 1.0 - x @ y.t()  # cosine distance d_ij = 1 - cos(x_i, y_j), [N, M]
        d, d_min, den, d_tilde, cx_ij = _cx_ij_steps(raw, bandwidth, eps)  # Eq. 6-8
        best = cx_ij.amax(dim=-2, keepdim=True)  # Eq. 5: max over the generated points, [1, M]
        cx = best.mean()
        ctx.bandwidth = bandwidth
        ctx.n_saved = (len(saved_x), len(saved_y))
        ctx.save_for_backward(raw, d, d_min, den, d_tilde, cx_ij, best, cx, *saved_x, *saved_y)  # saved_x[0] is x
        return 0.0 - torch.log(cx)  # Eq. 9

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):  # noqa: D102 - see the class
        raw, d, d_min, den, d_tilde, cx_ij, best, cx, *rest = ctx.saved_tensors
        saved_x, saved_y = rest[:ctx.n_saved[0]], rest[ctx.n_saved[0]:]
        x, y = saved_x[0], saved_y[0]  # the centred unit rows
        g_best = (-g / cx) / best.shape[-1]  # through -log and the mean over targets, one value
        at_max = cx_ij == best  # [N, M]
        g_cx = at_max * (g_best / at_max.sum(dim=-2, keepdim=True))  # amax over i, ties share
        g_z = cx_ij * (g_cx - (g_cx * cx_ij).sum(dim=-1, keepdim=True))  # softmax over j
        g_dt = g_z * (-1.0 / ctx.bandwidth)
        g_den = -(g_dt * d_tilde).sum(dim=-1, keepdim=True) / den  # d(d / den)/d den = -d_tilde / den
        at_min = d == d_min  # amin over j, ties share
        g_d = g_dt / den + at_min * (g_den / at_min.sum(dim=-1, keepdim=True))
        g_cos = torch.where(raw >= 0, g_d, torch.zeros_like(g_d)).neg_()  # clamp_min, then d = 1 - cos
        g_xc = _unit_rows_backward(g_cos @ y, *saved_x)
        g_yc = _unit_rows_backward(g_cos.t() @ x, *saved_y)
        g_mu = -(g_xc.sum(dim=0, keepdim=True) + g_yc.sum(dim=0, keepdim=True))  # both were centred on mu_y
        return g_xc, g_yc + g_mu / g_yc.shape[0], None, None


def _cx_batch(img: Tensor, txt: Tensor, bandwidth: float, eps: float) -> Tensor:
    """Points are the batch items: X = image rows (generated), Y = text rows (target)."""
    return _CXBatch.apply(img, txt, bandwidth, eps)  # Eq. 5-9 (0 - log: an exact match reads 0.0, not -0.0)


def _cx_feature_columns(img: Tensor, txt: Tensor, bandwidth: float, eps: float) -> Tensor:
    """Points are the embedding dimensions: column k of [N, D] is a point in R^N (D points)."""
    return _cx_batch(img.t(), txt.t(), bandwidth, eps)  # same maths on [D, N]


def _cx_per_sample_features(img: Tensor, txt: Tensor, bandwidth: float, eps: float) -> Tensor:
    """Points are the D scalar features of one sample (the authors' sibling code), per sample.

    For sample n: centre both rows on the scalar mean of the text row, L2-normalise each row,
    and take ``cos[n, i, j] = x[n, i] * y[n, j]`` (an outer product, [N, D, D]); then the usual
    Eq. 5-9 per sample and the mean over the batch. Without the authors' x10000 scale and abs().
    """
    mu_y = txt.mean(dim=1, keepdim=True)  # per-sample scalar target mean, [N, 1]
    x = _unit(img - mu_y)  # [N, D]
    y = _unit(txt - mu_y)  # [N, D]
    d = 1.0 - x.unsqueeze(2) * y.unsqueeze(1)  # d[n, i, j] = 1 - x_ni * y_nj, [N, D, D]
    cx = _cx_from_distances(d, bandwidth, eps)  # Eq. 5-8 per sample, [N]
    return (0.0 - torch.log(cx)).mean()  # Eq. 9 per sample, then the batch mean


# Registry: variant name -> function(img_dirs [N, D], txt_dirs [N, D], bandwidth, eps) -> scalar
CX_VARIANTS: dict[str, Callable[[Tensor, Tensor, float, float], Tensor]] = {
    "batch": _cx_batch,
    "per_sample_features": _cx_per_sample_features,
    "feature_columns": _cx_feature_columns,
}


def contextual_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    bandwidth: float = 0.5,
    eps: float = 1e-5,
    variant: str = "batch",
) -> Tensor:
    """Contextual loss ``L_CX = -log CX(X, Y)`` (Eq. 5-9), a scalar fp32 tensor.

    X = image embeddings (the "generated" set), Y = text embeddings (the target), both
    ``[N, D]``. Each row is L2-normalised first; then, per ``variant`` (what a point is):

    - ``"batch"`` (default): the N batch items are the points. Centre both sets on the mean of
      Y, L2-normalise, ``d_ij = 1 - cos(x_i, y_j)`` clamped at 0,
      ``dt_ij = d_ij / (min_k d_ik + eps)``, ``CX_ij = softmax_j((1 - dt_ij) / h)``,
      ``CX = mean_j max_i CX_ij``. Since ``1/N <= CX <= 1``, ``0 <= L_CX <= log N``. It does
      not depend on the order of either set, so it cannot tell a right pairing from a
      shuffled one (the CLIP term does that).
    - ``"feature_columns"``: the D embedding dimensions are the points (each a vector over the
      batch); the same maths on the transposed matrices, ``0 <= L_CX <= log D``. Unlike
      ``"batch"`` it does depend on which caption is paired with which image.
    - ``"per_sample_features"``: for each sample the D scalar features are the points; one
      ``L_CX`` per sample, averaged over the batch. Nearly constant (about log D) whatever
      the alignment; kept to match the authors' sibling code.

    ``bandwidth`` is h of Eq. 7 (> 0), ``eps`` the constant of Eq. 6 (> 0).
    """
    _check_pair(image_emb, text_emb, "contextual_loss")
    if variant not in CX_VARIANTS:
        raise ValueError(f"contextual_loss: unknown variant {variant!r}; choose one of {sorted(CX_VARIANTS)}")
    bandwidth, eps = float(bandwidth), float(eps)
    if not bandwidth > 0:
        raise ValueError(f"contextual_loss: bandwidth h must be > 0, got {bandwidth}")
    if not eps > 0:
        raise ValueError(f"contextual_loss: eps must be > 0 (it keeps Eq. 6 finite for exact matches), got {eps}")
    with torch.autocast(device_type=image_emb.device.type, enabled=False):
        img, txt = _directions(image_emb), _directions(text_emb)  # [N, D] each, fp32
        return CX_VARIANTS[variant](img, txt, bandwidth, eps)


def cx_matrix(image_emb: Tensor, text_emb: Tensor, bandwidth: float = 0.5, eps: float = 1e-5) -> Tensor:
    """The matrix CX_ij of Eq. 8 for the ``"batch"`` variant, ``[N, N]`` fp32 (for figures and teaching).

    Row i (image i) is a distribution over the captions j; ``contextual_loss`` (``"batch"``) is
    ``-log(mean_j max_i CX_ij)`` of this matrix.
    """
    _check_pair(image_emb, text_emb, "cx_matrix")
    with torch.autocast(device_type=image_emb.device.type, enabled=False):
        img, txt = _directions(image_emb), _directions(text_emb)
        return _cx_ij(_batch_distances(img, txt), float(bandwidth), float(eps))


# ----------------------------------------------------------------------------- ContextCLIP (Eq. 1)
class ContextCLIPLoss(nn.Module):
    """``L = L_CLIP + alpha * L_CX`` (Eq. 1) with the terms returned by name.

    ``forward(image_emb, text_emb, logit_scale)`` takes ``logit_scale = 1 / temperature``
    (already exponentiated and clamped by the model; a float or a 0-d tensor) and returns
    ``{"contrastive_loss", "contextual_loss", "loss"}``, all 0-d fp32 tensors. With
    ``alpha == 0`` (the CLIP baseline) ``loss`` is the contrastive term itself (bit for bit, and so
    is its gradient); the contextual term is still computed, detached (no graph, an ``[N, N]``
    matrix), so the value reported for it is the real ``L_CX`` of the batch, never a stand-in 0.

    Under DDP, pass the embeddings of the *global* batch
    (``contextclip.distributed.gather_embeddings``), see docs/decisions.md.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        bandwidth: float = 0.5,
        eps: float = 1e-5,
        variant: str = "batch",
        image_to_text_weight: float = 0.75,
    ) -> None:
        super().__init__()
        if not float(alpha) >= 0:
            raise ValueError(f"ContextCLIPLoss: alpha must be >= 0, got {alpha}")
        if variant not in CX_VARIANTS:
            raise ValueError(f"ContextCLIPLoss: unknown variant {variant!r}; choose one of {sorted(CX_VARIANTS)}")
        if not float(bandwidth) > 0:
            raise ValueError(f"ContextCLIPLoss: bandwidth h must be > 0, got {bandwidth}")
        if not float(eps) > 0:
            raise ValueError(f"ContextCLIPLoss: eps must be > 0, got {eps}")
        self.alpha = float(alpha)
        self.bandwidth = float(bandwidth)
        self.eps = float(eps)
        self.variant = variant
        self.image_to_text_weight = _check_weight(image_to_text_weight)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, bandwidth={self.bandwidth}, eps={self.eps}, "
            f"variant={self.variant!r}, image_to_text_weight={self.image_to_text_weight}"
        )

    def forward(self, image_emb: Tensor, text_emb: Tensor, logit_scale: float | Tensor) -> dict[str, Tensor]:
        if not isinstance(logit_scale, Tensor) and not float(logit_scale) > 0:
            raise ValueError(f"ContextCLIPLoss: logit_scale (1/temperature) must be > 0, got {logit_scale}")
        temperature = 1.0 / (logit_scale.float() if isinstance(logit_scale, Tensor) else float(logit_scale))
        _check_pair(image_emb, text_emb, "ContextCLIPLoss")
        with torch.autocast(device_type=image_emb.device.type, enabled=False):
            # Algorithm 1, lines 10-11, once: both terms read the same unit rows (fp32)
            img, txt = _directions(image_emb), _directions(text_emb)
            # Eq. 2-4: clip_loss's own code, so that alpha = 0 reproduces the CLIP baseline bit for bit.
            contrastive = _clip_from_directions(img, txt, temperature, self.image_to_text_weight)
            cx = CX_VARIANTS[self.variant]
            if self.alpha == 0:
                # CLIP trains on the contrastive term alone; L_CX is measured (detached, so the loss and
                # its gradient are exactly CLIP's) and reported, so a CLIP run's L_CX can be compared.
                with torch.no_grad():
                    measured = cx(img.detach(), txt.detach(), self.bandwidth, self.eps)
                return {"contrastive_loss": contrastive, "contextual_loss": measured, "loss": contrastive}
            contextual = cx(img, txt, self.bandwidth, self.eps)  # Eq. 5-9
        return {
            "contrastive_loss": contrastive,
            "contextual_loss": contextual,
            "loss": contrastive + self.alpha * contextual,  # Eq. 1
        }
