"""Train-time image augmentation, deterministic per (seed, epoch, index).

Chosen for transfer from rendered glyphs to real handwritten digits: a smooth elastic warp and
an affine map (rotation, scale, shear, shift) in one resampling, stroke thickening/thinning,
blur, brightness/contrast jitter and sensor noise. Nothing here changes what a caption says:
no flips (left/right, 6/9), no hue changes (colour words), and scenes whose captions name a
position or a relation (``mild=True``) get only small geometric changes.

``rng_for(seed, epoch, index)`` gives the generator, so a resumed run sees exactly the same
augmented images. Works on ``uint8 [H, W, 3]`` numpy arrays; never touches captions or torch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def rng_for(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of one item in one epoch (independent of worker layout)."""
    return np.random.default_rng([int(seed) & 0x7FFFFFFF, int(epoch), int(index), 0xA06])


def _background(img: np.ndarray) -> np.ndarray:
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def augment(img: np.ndarray, rng: np.random.Generator, mild: bool = False) -> np.ndarray:
    """One random augmentation of ``img`` (uint8 [H, W, 3]) -> uint8 [H, W, 3]."""
    h, w, _ = img.shape
    scale_px = h / 32.0
    bg = _background(img)
    x = img.astype(np.float32)

    # stroke width: grey dilation/erosion of the foreground (which one depends on polarity)
    if not mild and rng.random() < 0.35:
        k = max(2, int(round(2 * scale_px)))
        dark_bg = bg.mean() < 128
        thicken = rng.random() < 0.6
        use_max = dark_bg == thicken
        op = ndimage.grey_dilation if use_max else ndimage.grey_erosion
        x = np.stack([op(x[..., c], size=(k, k)) for c in range(3)], axis=-1)

    # geometry: inverse map output -> input coordinates, affine + elastic, one resampling
    rot = math.radians(rng.uniform(-6, 6) if mild else rng.uniform(-15, 15))
    sc = rng.uniform(0.92, 1.05) if mild else rng.uniform(0.8, 1.12)
    shear = 0.0 if mild else rng.uniform(-0.2, 0.2)
    shift = (0.04 if mild else 0.1) * h
    tx, ty = rng.uniform(-shift, shift), rng.uniform(-shift, shift)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    u, v = xx - cx - tx, yy - cy - ty
    ca, sa = math.cos(rot), math.sin(rot)
    src_x = (ca * u + sa * v) / sc
    src_y = (-sa * u + ca * v) / sc
    src_x = src_x - shear * src_y
    if not mild and rng.random() < 0.5:  # elastic: smooth random displacement field
        alpha = rng.uniform(0.5, 1.5) * scale_px
        grid = rng.normal(0.0, 1.0, size=(2, 4, 4)).astype(np.float32)
        field = np.stack([ndimage.zoom(g, (h / 4, w / 4), order=3)[:h, :w] for g in grid])
        src_x = src_x + alpha * field[0]
        src_y = src_y + alpha * field[1]
    coords = np.stack([src_y + cy, src_x + cx])
    x = np.stack([ndimage.map_coordinates(x[..., c], coords, order=1, mode="constant", cval=float(bg[c]))
                  for c in range(3)], axis=-1)

    if rng.random() < 0.3:  # blur
        sigma = rng.uniform(0.3, 0.9) * scale_px
        x = np.stack([ndimage.gaussian_filter(x[..., c], sigma) for c in range(3)], axis=-1)
    if rng.random() < 0.5:  # brightness / contrast (same factor on every channel: hue is kept)
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.9, 1.1) + mean + rng.uniform(-10, 10)
    if rng.random() < 0.3:
        x = x + rng.normal(0.0, rng.uniform(1, 6), size=x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
