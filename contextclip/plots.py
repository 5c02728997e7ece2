"""Figures: t-SNE of image and text embeddings (Fig. 6/7), retrieval grids (Fig. 1/5), training curves.

What it is:
- ``tsne_figure``: CLIP and ContextCLIP side by side, the same points, the same t-SNE settings
  and seed, one colour per class, a legend with class names, and silhouette scores (in the 2-d
  map and in the original embedding space, cosine) in each panel title, so "more clustered"
  becomes a number. ``tsne_from_runs`` draws it from two runs' cached embeddings.
- ``retrieval_grid``: one row per query caption; the top-k images of CLIP beside those of
  ContextCLIP; every correct image (a positives mask: the query's own image, any image with an
  identical caption and, for generated sets, any image with every attribute the caption states)
  has a thick frame. ``retrieval_grid_from_runs`` takes the top-k from the
  cached embeddings (a dot product; nothing is encoded). ``caption_query_figure``: notebook 06's
  caption box (a typed caption's top-k per method, one image's zero-shot class scores).
- ``training_curves``: the contrastive and the contextual term in separate panels (their sum
  weights them by alpha, so totals of CLIP and ContextCLIP are not comparable); per method the
  mean over seeds as a line and the range over seeds as a band, validation at epoch ends as markers.
- ``PALETTE``/``use_palette``: the Okabe-Ito colour-blind-safe palette, used for every figure.
- teaching figures of notebook 00: ``cx_heatmaps`` (CX_ij of given matrices), ``loss_explorer``
  (the loss terms beside their CX_ij, redrawn by the sliders), ``architecture_diagram``.
- ``sensitivity_figure``: accuracy against alpha (and h) per contextual-loss variant, with bands.
- ``forest_plot``: the answer in one picture: ContextCLIP - CLIP with its 95% interval per row,
  primary endpoints first and marked, both seed blocks, zero and each row's ceiling drawn.
- ``save_figure``: PNG and PDF under ``figures/<profile>/``, named after the paper's figures.

What it is not: plotting never encodes images or captions and never trains; it reads the caches
written by ``contextclip.evaluate`` and the run folders. Every function returns the Figure.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from contextclip.config import METHOD_DESCRIPTIONS, METHOD_LABELS
from contextclip.encoding import take_images
from contextclip.errors import DamagedFileError, MissingFileError
from contextclip.evaluate import load_embeddings
from contextclip.retrieval import caption_positives, topk_images
from contextclip.runs import HISTORY
from contextclip.schemas import HISTORY_LINE, problem

__all__ = ["save_figure", "tsne_points", "tsne_figure", "tsne_from_runs", "retrieval_grid",
           "retrieval_grid_from_runs", "training_curves", "read_history", "sensitivity_figure", "LEGEND_LABELS",
           "grid_positives", "PALETTE", "use_palette", "cx_heatmaps", "loss_explorer", "architecture_diagram",
           "caption_query_figure", "forest_plot"]

#: Legend labels: the method's name and what it trains on.
LEGEND_LABELS = {m: f"{METHOD_LABELS[m]} ({METHOD_DESCRIPTIONS[m]})" for m in METHOD_LABELS}
#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
#: deficiency. Order: blue, vermillion, bluish green, orange, reddish purple, sky blue, yellow, black.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: Markers that, with the palette, keep more than 8 classes apart.
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
#: ten class colours, all distinct and none yellow on white: Paul Tol's colour-blind-safe "muted"
#: scheme without its pale sand, plus black and Okabe-Ito orange (smallest CIE76 distance between two of
#: them 25 for normal vision, 15 under simulated protanopia, 17 under deuteranopia; see docs/decisions.md)
CLASS_PALETTE = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#CC6677", "#882255", "#AA4499",
                 "#000000", "#E69F00"]
#: The frame of a correct image in retrieval grids (the palette's bluish green).
CORRECT_COLOUR = PALETTE[2]

METHOD_COLOURS = {"clip": PALETTE[0], "contextclip": PALETTE[1]}


def use_palette() -> None:
    """Make the colour-blind-safe palette matplotlib's default colour cycle (and viridis its colour map)."""
    from cycler import cycler

    plt.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)
    plt.rcParams["image.cmap"] = "viridis"


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """``out_dir/name.png`` (150 dpi) and ``out_dir/name.pdf``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _label(method: str) -> str:
    return LEGEND_LABELS.get(method, method)


def _class_styles(n: int) -> list[tuple[str, str]]:
    """``(colour, marker)`` per class: the 10 class colours, then the next marker for the next 10
    (so 10 classes get 10 different colours, and every pair differs up to 120 classes)."""
    k = len(CLASS_PALETTE)
    return [(CLASS_PALETTE[i % k], MARKERS[(i // k) % len(MARKERS)]) for i in range(n)]


# --------------------------------------------------------------------------- t-SNE
def _subsample(labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    if len(labels) <= max_points:
        return np.arange(len(labels))
    return np.sort(np.random.default_rng(seed).permutation(len(labels))[:max_points])


def tsne_points(emb: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-d t-SNE of L2-normalised embeddings (PCA init, automatic learning rate, fixed seed)."""
    from sklearn.manifold import TSNE

    emb = np.asarray(emb, dtype=np.float64)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    perplexity = float(min(perplexity, max(2.0, (len(emb) - 1) / 3)))  # t-SNE needs perplexity < n
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(emb)


def _silhouettes(emb: np.ndarray, xy: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
        return float("nan"), float("nan")
    return float(silhouette_score(xy, labels)), float(silhouette_score(emb, labels, metric="cosine"))


def tsne_figure(embeddings: dict, labels, classnames: list[str], title: str = "", perplexity: float = 30.0,
                seed: int = 0, max_points: int = 1000, point_size: float | None = None) -> Figure:
    """Side-by-side t-SNE panels, one per method (``{"clip": [N, D], "contextclip": [N, D]}``).

    The same points (a seeded subset of at most ``max_points``), the same settings and seed in
    every panel. Panel titles carry the silhouette score in 2-d and in the original space.
    """
    labels = np.asarray(torch.as_tensor(labels))
    keep = _subsample(labels, max_points, seed)
    point_size = point_size or (8.0 if len(keep) > 1500 else 14.0 if len(keep) > 400 else 28.0)
    styles = _class_styles(len(classnames))
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5.2 * len(embeddings) + 2.2, 5.2), squeeze=False)
    for ax, (method, emb) in zip(axes[0], embeddings.items()):
        emb = np.asarray(torch.as_tensor(emb).float())
        if len(emb) != len(labels):
            raise ValueError(f"{method}: {len(emb)} embeddings but {len(labels)} labels")
        x, y = emb[keep], labels[keep]
        xy = tsne_points(x, perplexity, seed)
        s2, sd = _silhouettes(x, xy, y)
        for c in np.unique(y):
            m = y == c
            colour, marker = styles[int(c)]
            ax.scatter(xy[m, 0], xy[m, 1], s=point_size, color=colour, marker=marker, label=classnames[int(c)],
                       alpha=0.8, linewidths=0)
        ax.set_title(f"{_label(method)}\nsilhouette: 2-d {s2:.3f} | {x.shape[1]}-d (cosine) {sd:.3f}", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker=styles[i][1], linestyle="", color=styles[i][0], markersize=7, label=name)
               for i, name in enumerate(classnames)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=10, title="class",
               frameon=False, ncol=1 if len(classnames) <= 20 else 2)
    perp = min(perplexity, max(2.0, (len(keep) - 1) / 3))
    fig.suptitle(f"{title}\n(t-SNE, perplexity {perp:g}, PCA init, seed {seed}, {len(keep)} points)", fontsize=12)
    fig.tight_layout()
    return fig


def tsne_from_runs(runs: dict, dataset: str, kind: str = "image", out_dir: Path | None = None,
                   perplexity: float = 30.0, seed: int = 0, max_points: int = 1000) -> Figure:
    """Fig. 6 (``kind="image"``) or Fig. 7 (``kind="text"``) from cached embeddings of two runs.

    ``runs``: ``{"clip": run_dir, "contextclip": run_dir}``. Text points are every class name in
    the dataset's templates and a fixed list of generic prompts (see ``docs/decisions``).
    """
    if kind not in ("image", "text"):
        raise ValueError(f"kind must be 'image' or 'text', got {kind!r}")
    caches = {m: load_embeddings(r, dataset) for m, r in runs.items()}
    first = next(iter(caches.values()))
    if first.get("kind") != "classification":
        raise ValueError(f"dataset {dataset!r} is not a classification set; t-SNE needs class labels")
    key, lab = ("image", "labels") if kind == "image" else ("tsne_text_emb", "tsne_text_labels")
    labels = first[lab]
    for m, c in caches.items():
        if not torch.equal(c[lab], labels):
            raise ValueError(f"run {runs[m]} cached a different {dataset} subset; re-run its evaluation")
    what = "Image embeddings" if kind == "image" else "Text embeddings (class prompts)"
    fig = tsne_figure({m: c[key] for m, c in caches.items()}, labels, list(first["classnames"]),
                      f"{what}: {dataset}", perplexity, seed, max_points)
    if out_dir is not None:
        save_figure(fig, out_dir, f"fig{6 if kind == 'image' else 7}_tsne_{kind}_{dataset}")
    return fig


# --------------------------------------------------------------------------- retrieval grid
def _hwc(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy()


#: Retrieval-grid sizes: inches per image, and font sizes (points) of image labels, method lines and
#: query titles. With ~1.2 in per image the figure of 2 x 5 images is ~12.6 in wide (1,900 px at 150 dpi),
#: so a 1,200-px notebook column shows 12-pt labels at ~13 px.
GRID_IMAGE_INCHES = 1.2
GRID_FONTS = {"label": 12, "method": 13, "query": 14, "title": 15}
CORRECT_MARK = "\u2713"  # check mark under a correct image (with its green frame)


def _image_strip(block, imgs, labels: list[str], hits: list[bool]) -> None:
    """One row of images in ``block`` (a subfigure), each with a label below; correct ones framed green."""
    axes = block.subplots(1, len(labels))
    for r, (ax, label, hit) in enumerate(zip(np.atleast_1d(axes), labels, hits)):
        ax.imshow(_hwc(imgs[r]), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(hit)
            spine.set_edgecolor(CORRECT_COLOUR)
            spine.set_linewidth(5 if hit else 0)
        ax.set_xlabel(label, fontsize=GRID_FONTS["label"], color=CORRECT_COLOUR if hit else "black",
                      fontweight="bold" if hit else "normal", labelpad=4)


def retrieval_grid(queries: list[str], images, topk: dict, positives, title: str = "") -> Figure:
    """One row per query caption: the top-k images of each method side by side, every correct image framed.

    ``topk``: ``{"clip": LongTensor [Q, k], "contextclip": LongTensor [Q, k]}`` (image indices into
    ``images``); ``positives``: bool [Q, n_images], True where image j is a correct answer to query
    q (the same index space as ``topk``). A list of ints or of sets of ints (the true image(s) of
    each query) is also accepted. A correct image has a green frame and a check mark by its rank.
    """
    methods = list(topk)
    q_n, k = next(iter(topk.values())).shape
    positives = _positives_mask(positives, q_n, topk)
    fig = plt.figure(figsize=(GRID_IMAGE_INCHES * k * len(methods) + 0.6, 1.95 * q_n + 0.8))
    rows = fig.subfigures(q_n, 1, hspace=0.0) if q_n > 1 else [fig.subfigures(1, 1)]
    wrap = max(40, int(GRID_IMAGE_INCHES * k * len(methods) * 7.5))  # characters per title line
    for q, row in enumerate(np.atleast_1d(rows)):
        n_pos = int(positives[q].sum())
        row.suptitle("\n".join(textwrap.wrap(f'query {q + 1}: "{queries[q]}"'
                                             + (f" ({n_pos} correct images)" if n_pos > 1 else ""), wrap)),
                     fontsize=GRID_FONTS["query"], y=0.995, fontweight="bold")
        blocks = row.subfigures(1, len(methods), wspace=0.04)
        for block, method in zip(np.atleast_1d(blocks), methods):
            idx = topk[method][q].tolist()
            hits = [bool(positives[q, i]) for i in idx]
            found = [r + 1 for r, hit in enumerate(hits) if hit]
            sub = f"{_label(method).split(' (')[0]}: " + (
                f"{len(found)} correct in top {k}, first at #{found[0]}" if found else f"none correct in top {k}")
            block.text(0.5, 0.79, sub, ha="center", va="bottom", fontsize=GRID_FONTS["method"],
                       color=METHOD_COLOURS.get(method, "black"), fontweight="bold")
            _image_strip(block, take_images(images, idx),
                         [f"#{r + 1} {CORRECT_MARK}" if hit else f"#{r + 1}" for r, hit in enumerate(hits)], hits)
            block.subplots_adjust(left=0.02, right=0.98, top=0.77, bottom=0.14, wspace=0.1)
    if title:
        fig.suptitle(title + f"  ({CORRECT_MARK} green frame: a correct image)", fontsize=GRID_FONTS["title"],
                     y=1.0 + 0.3 / q_n)
    return fig


def caption_query_figure(result) -> Figure:
    """A typed caption's top-k images for each method side by side (above), and one image's zero-shot
    class probabilities for each method (below). ``result``: an ``interactive.CaptionQuery``.

    Images under a caption of the set that are correct answers are framed; free text frames nothing.
    """
    methods = list(result.topk)
    k = result.k
    width = max(GRID_IMAGE_INCHES * k * len(methods) + 0.6, 9.0)
    fig = plt.figure(figsize=(width, 5.9))
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.2, 2.6], hspace=0.06)
    known = result.positives is not None
    head = f'"{result.caption}"' + (f"  ({int(result.positives.sum())} correct images in {result.dataset})" if known
                                    else f"  (your own words: nothing framed; {result.dataset})")
    top.suptitle("\n".join(textwrap.wrap(head, int(width * 7))), fontsize=GRID_FONTS["query"], fontweight="bold",
                 y=0.99)
    for block, method in zip(np.atleast_1d(top.subfigures(1, len(methods), wspace=0.04)), methods):
        idx = result.topk[method].tolist()
        hits = [bool(result.positives[i]) for i in idx] if known else [False] * len(idx)
        n = result.n_correct(method)
        block.text(0.5, 0.78, _label(method).split(" (")[0] + (f": {n} correct in top {k}" if known else f": top {k}"),
                   ha="center", va="bottom", fontsize=GRID_FONTS["method"], color=METHOD_COLOURS.get(method, "black"),
                   fontweight="bold")
        sims = result.similarity[method].tolist()
        _image_strip(block, result.top_images[method],
                     [f"#{r + 1} {CORRECT_MARK if hit else ''}\ncos {sim:.2f}" for r, (hit, sim) in enumerate(zip(hits, sims))],
                     hits)
        block.subplots_adjust(left=0.02, right=0.98, top=0.74, bottom=0.26, wspace=0.1)
    ax_img, ax_bar = bottom.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3.2]})
    ax_img.imshow(_hwc(result.image), interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title(f"{result.class_dataset} image #{result.image_index}\ntrue class: "
                     f"{result.classnames[result.true_label]}", fontsize=GRID_FONTS["label"])
    names = list(result.classnames)
    probs = {m: np.asarray(result.class_probs[m], dtype=float) for m in methods}
    keep = np.argsort(-np.max(np.stack(list(probs.values())), axis=0), kind="stable")[:10]  # at most 10 classes
    keep = np.sort(keep)
    x = np.arange(len(keep))
    bar_w = 0.8 / len(methods)
    for j, method in enumerate(methods):
        ax_bar.bar(x + (j - (len(methods) - 1) / 2) * bar_w, 100 * probs[method][keep], bar_w,
                   color=METHOD_COLOURS.get(method), label=_label(method).split(" (")[0]
                   + f": predicts {names[int(np.argmax(probs[method]))]}")
    ax_bar.set_xticks(x, [names[i] for i in keep], fontsize=GRID_FONTS["label"] - 1,
                      rotation=30 if max(len(names[i]) for i in keep) > 6 else 0)
    for tick, i in zip(ax_bar.get_xticklabels(), keep):
        if i == result.true_label:
            tick.set_fontweight("bold")
    ax_bar.set_xlabel("class (the true one in bold)", fontsize=GRID_FONTS["label"] - 1)
    ax_bar.set_ylabel("zero-shot probability (%)", fontsize=GRID_FONTS["label"] - 1)
    ax_bar.set_ylim(0, 100)
    ax_bar.grid(axis="y", alpha=0.3)
    ax_bar.legend(fontsize=GRID_FONTS["label"] - 1, loc="upper right", frameon=False)
    shown = "" if len(keep) == len(names) else f" (the {len(keep)} most likely of {len(names)} classes)"
    ax_bar.set_title(f"Zero-shot class scores: softmax over the class prompts{shown}", fontsize=GRID_FONTS["label"])
    bottom.subplots_adjust(left=0.04, right=0.99, top=0.86, bottom=0.16, wspace=0.15)
    return fig


def _positives_mask(positives, q_n: int, topk: dict) -> torch.Tensor:
    """``positives`` as a bool [Q, n_images] tensor (from a mask, or from per-query ints/sets)."""
    if isinstance(positives, (torch.Tensor, np.ndarray)) and np.ndim(positives) == 2:
        mask = torch.as_tensor(positives, dtype=torch.bool)
    else:
        sets = [{int(g) for g in p} if isinstance(p, (list, tuple, set)) else {int(p)} for p in positives]
        n = 1 + max([max(s) for s in sets if s] + [int(t.max()) for t in topk.values()])
        mask = torch.zeros(len(sets), n, dtype=torch.bool)
        for q, s in enumerate(sets):
            mask[q, sorted(s)] = True
    if mask.shape[0] != q_n:
        raise ValueError(f"positives has {mask.shape[0]} rows for {q_n} queries")
    return mask


def grid_positives(cache: dict, exact: bool = False) -> torch.Tensor:
    """Bool [n_captions, n_cached_images]: caption i describes image j, the same positives recall@K
    counts: its own image, every image with a caption of exactly the same text and, for generated
    sets, every image that satisfies what the caption states (``exact=True``: not those)."""
    matches = None if exact else cache.get("attribute_matches")
    return caption_positives(cache["text_image"], int(cache["image"].shape[0]), [str(c) for c in cache["captions"]],
                             matches)


def retrieval_grid_from_runs(runs: dict, dataset: str, images, n_queries: int = 4, k: int = 5,
                             out_dir: Path | None = None, seed: int = 0, name: str = "fig5_retrieval_grid") -> Figure:
    """Fig. 1/5 from the cached embeddings of two runs (top-k by dot product; nothing is encoded).

    ``images``: the caption set's images (tensor or Dataset) in dataset order; the cache's
    ``index`` maps cached rows to them. Queries: the first caption of ``n_queries`` images drawn
    with ``seed``; the same queries for every method. Correct images: ``grid_positives``.
    """
    caches = {m: load_embeddings(r, dataset) for m, r in runs.items()}
    first = next(iter(caches.values()))
    if first.get("kind") != "captions":
        raise ValueError(f"dataset {dataset!r} is not a caption set; retrieval grids need captions")
    text_image = first["text_image"]
    n_img = int(first["image"].shape[0])
    chosen = np.sort(np.random.default_rng(seed).permutation(n_img)[: min(n_queries, n_img)])
    q_rows = [int(torch.nonzero(text_image == i)[0]) for i in chosen]  # first caption of each chosen image
    queries = [first["captions"][r] for r in q_rows]
    index = torch.as_tensor(first["index"])
    topk = {m: index[topk_images(c["text"][q_rows], c["image"], k)] for m, c in caches.items()}
    pos_cached = grid_positives(first)[q_rows]  # [Q, n_cached], cached-row space
    positives = torch.zeros(len(q_rows), int(index.max()) + 1, dtype=torch.bool)
    positives[:, index] = pos_cached  # dataset-index space, like topk
    fig = retrieval_grid(queries, images, topk, positives, title=f"Text-to-image retrieval on {dataset} (top {k})")
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig


# --------------------------------------------------------------------------- training curves
def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / HISTORY
    if not path.exists():
        raise MissingFileError(f"{path} does not exist; train the run first")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DamagedFileError(f"{path}, line {i}: not valid JSON ({exc})") from None
            bad = problem(record, HISTORY_LINE)
            if bad:
                raise DamagedFileError(f"{path}, line {i}: {bad}; the file was edited or written by something "
                                       "else. What to do: restore it, or train the run again with --fresh")
            out.append(record)
    return out


#: The panels of ``training_curves``: history key, title, y-axis label.
CURVE_PANELS = (
    ("contrastive_loss", "Contrastive term (CLIP loss, Eq. 2-4)", "$L_{CLIP}$ (nats)"),
    ("contextual_loss", "Contextual term (Eq. 5-9)", "$L_{CX}$ (nats)"),
)


def _method_of(label: str) -> str:
    return "contextclip" if label.startswith("contextclip") else "clip" if label.startswith("clip") else label


def _mean_band(series: list[tuple[list, list]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps shared by every run, and the mean, min and max over runs at those steps."""
    common = sorted(set.intersection(*(set(xs) for xs, _ in series))) if series else []
    table = np.array([[dict(zip(xs, ys))[x] for x in common] for xs, ys in series], dtype=float)
    if not common:
        return np.array([]), np.array([]), np.array([]), np.array([])
    return np.array(common), table.mean(0), table.min(0), table.max(0)


def training_curves(runs: dict, out_dir: Path | None = None, name: str = "fig_training_curves") -> Figure:
    """The contrastive and contextual terms in separate panels; per method, the mean over seeds and a band.

    ``runs``: ``{label: run_dir}``; a label starting with a method name (``"clip"``,
    ``"contextclip-seed1"``) is grouped with that method's other seeds. Train steps: the mean over
    the method's runs as a line and the range (min to max) over runs as a band; validation at each
    epoch end: the mean as markers. CLIP is not trained on the contextual term, so its panel shows
    CLIP's validation values only (what its embeddings would score).
    """
    groups: dict[str, list[list[dict]]] = {}
    for label, run in runs.items():
        groups.setdefault(_method_of(label), []).append(read_history(run))
    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(6 * len(CURVE_PANELS), 4.2), squeeze=False)
    for method, hists in groups.items():
        colour = METHOD_COLOURS.get(method)
        n = len(hists)
        for ax, (term, _, _) in zip(axes[0], CURVE_PANELS):
            train = [([h.get("global_step", i) for i, h in enumerate(hs) if h.get("type", "step") == "step" and term in h],
                      [h[term] for h in hs if h.get("type", "step") == "step" and term in h]) for hs in hists]
            train = [t for t in train if t[1]]
            # CLIP is not trained on L_CX: its panel shows validation values only (runs from before
            # ContextCLIPLoss measured L_CX at alpha 0 recorded a stand-in 0 for the training steps)
            if train and not (method == "clip" and term == "contextual_loss"):
                xs, mean, lo, hi = _mean_band(train)
                ax.plot(xs, mean, color=colour, lw=1.8, marker="." if len(xs) < 30 else None,
                        label=f"{_label(method)}, train (mean of {n} seed{'s' * (n > 1)})")
                if n > 1:
                    ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0, label=f"{_label(method)}, range over seeds")
            val = [([h["global_step"] for h in hs if h.get("type") == "epoch" and f"val_{term}" in h],
                    [h[f"val_{term}"] for h in hs if h.get("type") == "epoch" and f"val_{term}" in h]) for hs in hists]
            val = [v for v in val if v[1]]
            if val:
                xs, mean, lo, hi = _mean_band(val)
                ax.errorbar(xs, mean, yerr=[mean - lo, hi - mean] if n > 1 else None, color=colour, marker="o",
                            ls="--", ms=6, capsize=3, label=f"{_label(method)}, validation")
    for ax, (term, title, ylabel) in zip(axes[0], CURVE_PANELS):
        ax.set_title(title + ("\n(CLIP: validation only, it is not trained on it)" if term == "contextual_loss" else ""),
                     fontsize=11)
        ax.set_xlabel("optimisation step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    seen: dict[str, object] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.suptitle("Training curves (ContextCLIP minimises contrastive + alpha x contextual; CLIP the contrastive term)",
                 fontsize=12)
    ncol = 2
    rows = -(-len(seen) // ncol) if seen else 0
    fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.3 * rows)
    fig.tight_layout(rect=(0, min(0.45, 0.05 + 0.3 * rows / fig.get_figheight()), 1, 1))
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig


VARIANT_COLOURS = {"batch": PALETTE[1], "feature_columns": PALETTE[2], "per_sample_features": PALETTE[4]}


def sensitivity_figure(table, alpha: float, bandwidth: float, out_dir: Path | None = None,
                       name: str = "fig_sensitivity_alpha") -> Figure:
    """Accuracy against alpha per contextual-loss variant, with the 95% band of the mean over seeds
    (left), and against h at the profile's alpha (right); one row of panels per zero-shot set.
    ``table``: ``sensitivity.study_table``.

    alpha = 0 is CLIP, shared by every variant (its band is drawn in grey across the panel);
    the x positions are evenly spaced and labelled with the values.
    """
    sets = list(dict.fromkeys(table["dataset"]))
    fig, grid = plt.subplots(len(sets), 2, figsize=(11, 4.2 * len(sets)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for axes, ds in zip(grid, sets):
        _sensitivity_row(axes, table[table["dataset"] == ds], alpha, bandwidth)
    k = int(table["seeds"].min())
    fig.suptitle(f"When does the contextual term help? Mean over {k} seed{'s' if k > 1 else ''}, "
                 "band = 95% t-interval of the mean", fontsize=11)
    fig.tight_layout()
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig


def _sensitivity_row(axes, table, alpha: float, bandwidth: float) -> None:
    """The two panels of one zero-shot set (see ``sensitivity_figure``)."""
    clip = table[table["label"] == "clip"].iloc[0]
    pts = table[table["label"] != "clip"]
    variants = list(dict.fromkeys(pts["variant"]))
    panels = [(axes[0], "alpha", np.isclose(pts["bandwidth"], bandwidth), f"alpha (h = {bandwidth:g})"),
              (axes[1], "bandwidth", np.isclose(pts["alpha"], alpha), f"bandwidth h (alpha = {alpha:g})")]
    for ax, key, keep, xlabel in panels:
        sub = pts[keep]
        values = sorted(set(sub[key]) | ({0.0} if key == "alpha" else set()))
        pos = {v: i for i, v in enumerate(values)}
        ax.axhline(clip["mean"], color=PALETTE[0], lw=1, ls="--", label=f"CLIP (alpha 0): {clip['mean']:.1f}%")
        if not np.isnan(clip["band_low"]):
            ax.axhspan(clip["band_low"], clip["band_high"], color=PALETTE[0], alpha=0.12)
        for v in variants:
            rows = sub[sub["variant"] == v].sort_values(key)
            if rows.empty:
                continue
            if key == "alpha":  # every alpha curve starts at CLIP
                xs = [pos[0.0]] + [pos[a] for a in rows[key]]
                ys = [clip["mean"], *rows["mean"]]
                lo = [clip["band_low"], *rows["band_low"]]
                hi = [clip["band_high"], *rows["band_high"]]
            else:
                xs, ys = [pos[h] for h in rows[key]], list(rows["mean"])
                lo, hi = list(rows["band_low"]), list(rows["band_high"])
            colour = VARIANT_COLOURS.get(v)
            ax.plot(xs, ys, marker="o", color=colour, label=f"ContextCLIP, {v}")
            if not np.all(np.isnan(np.asarray(lo, dtype=float))):
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.18)
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{clip['dataset']} zero-shot {clip['metric']} (%)")
    axes[0].legend(fontsize=8, loc="best")


# --------------------------------------------------------------------------- teaching figures (notebook 00)
def _cx_loss(cx: float) -> float:
    """L_CX = -log CX for a title: CX <= 1, so rounding above 1 reads 0.000 (never -0.000)."""
    return max(0.0, -math.log(min(cx, 1.0)))


def _index_ticks(ax, shape: tuple[int, int]) -> None:
    """Integer ticks (row and column indices) on a matrix image, at most about 8 per axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)


def cx_heatmaps(matrices: dict, title: str = "") -> Figure:
    """One heatmap of CX_ij (Eq. 8) per batch (``{"aligned": [N, N], ...}``), one colour scale for all.

    Rows are images i, columns captions j; each row sums to 1. The panel title gives
    ``CX = mean_j max_i CX_ij`` (Eq. 5) and ``L_CX = -log CX`` (Eq. 9) read from the matrix.
    """
    mats = {k: np.asarray(torch.as_tensor(v).detach().float()) for k, v in matrices.items()}
    vmax = max(float(m.max()) for m in mats.values())
    fig, axes = plt.subplots(1, len(mats), figsize=(3.9 * len(mats) + 1.2, 3.9), squeeze=False,
                             layout="constrained")  # constrained: no label runs into the next panel
    for i, (ax, (name, m)) in enumerate(zip(axes[0], mats.items())):
        im = ax.imshow(m, vmin=0.0, vmax=vmax, cmap="viridis", interpolation="nearest")
        cx = float(m.max(axis=0).mean())
        ax.set_title(f"{name}\nCX = {cx:.3f}, $L_{{CX}}$ = {_cx_loss(cx):.3f}", fontsize=10)
        ax.set_xlabel("caption j (target)")
        if i == 0:  # one y-label for the row of panels: they share it
            ax.set_ylabel("image i (generated)")
        _index_ticks(ax, m.shape)
    fig.colorbar(im, ax=axes[0].tolist(), label="$CX_{ij}$ (each row sums to 1)", shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def loss_explorer(terms: dict, cx: torch.Tensor, alpha: float, title: str = "") -> Figure:
    """Left: the loss terms as labelled bars (``contrastive_loss``, ``alpha x contextual``, ``loss``);
    right: the CX_ij matrix they come from. Drawn again by notebook 00's sliders."""
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.1, 1]})
    names = ["$L_{CLIP}$", rf"$\alpha\,L_{{CX}}$ ($\alpha$ = {alpha:g})", "$L$ = sum"]
    values = [float(terms["contrastive_loss"]), alpha * float(terms["contextual_loss"]), float(terms["loss"])]
    bars = ax.bar(names, values, color=[PALETTE[0], PALETTE[1], PALETTE[7]])
    ax.bar_label(bars, fmt="%.3f", fontsize=9)  # a zero-height bar still reads 0.000
    ax.set_ylabel("loss (nats)")
    ax.set_ylim(0, max(values + [1e-3]) * 1.2)
    m = np.asarray(torch.as_tensor(cx).detach().float())
    im = hm.imshow(m, vmin=0.0, cmap="viridis", interpolation="nearest")
    hm.set_xlabel("caption j")
    hm.set_ylabel("image i")
    _index_ticks(hm, m.shape)
    hm.set_title("$CX_{ij}$", fontsize=10)
    fig.colorbar(im, ax=hm, shrink=0.85)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def architecture_diagram(image_tower: str = "image tower", text_tower: str = "text tower", embed_dim: int = 256,
                         head: str = "linear", alpha: float = 0.5, bandwidth: float = 0.5,
                         learned_scale: bool = True) -> Figure:
    """The model and its two losses as boxes and arrows (paper Fig. 3 with Eq. 1), labelled from a config."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.set_xlim(0, 12)
    ax.set_ylim(0.4, 4.6)
    ax.axis("off")

    def box(x, y, w, h, text, colour, bold=False):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", facecolor=colour, alpha=0.25,
                                    edgecolor=colour, lw=1.5))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9,
                fontweight="bold" if bold else "normal")
        return (x, y, w, h)

    def arrow(a, b, text=""):
        (x0, y0, w0, h0), (x1, y1, _, h1) = a, b
        start, end = (x0 + w0, y0 + h0 / 2), (x1, y1 + h1 / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.25", lw=1.2))
        if text:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=7.5,
                    color="0.25")

    img_in = box(0.1, 3.2, 1.3, 0.8, "image\nuint8 [N,3,H,W]", PALETTE[7])
    txt_in = box(0.1, 0.6, 1.3, 0.8, "caption\ntokens [N,L]", PALETTE[7])
    img_tower = box(2.0, 3.2, 1.7, 0.8, f"image tower\n{image_tower}", PALETTE[0], True)
    txt_tower = box(2.0, 0.6, 1.7, 0.8, f"text tower\n{text_tower}", PALETTE[0], True)
    img_head = box(4.3, 3.2, 1.6, 0.8, f"head $W_I$ ({head})\n+ L2-normalise", PALETTE[2])
    txt_head = box(4.3, 0.6, 1.6, 0.8, f"head $W_T$ ({head})\n+ L2-normalise", PALETTE[2])
    img_emb = box(6.4, 3.2, 1.2, 0.8, f"$I_e$\n[N, {embed_dim}]", PALETTE[5])
    txt_emb = box(6.4, 0.6, 1.2, 0.8, f"$T_e$\n[N, {embed_dim}]", PALETTE[5])
    scale = box(6.4, 1.9, 1.2, 0.8, "logit scale\n$1/\\tau = e^t$" + (" (learned)" if learned_scale else " (fixed)"), PALETTE[4])
    clip = box(8.4, 2.6, 1.9, 0.9, "$L_{CLIP}$ (Eq. 2-4)\nsoftmax of $I_e T_e^\\top/\\tau$\nover the batch", PALETTE[0])
    cx = box(8.4, 0.9, 1.9, 0.9, f"$L_{{CX}}$ (Eq. 5-9)\nimages vs captions\nbandwidth h = {bandwidth:g}", PALETTE[1])
    total = box(10.7, 1.75, 1.2, 0.9, f"$L = L_{{CLIP}}$\n$+ \\alpha L_{{CX}}$\n($\\alpha$ = {alpha:g})", PALETTE[7], True)
    for a, b in ((img_in, img_tower), (txt_in, txt_tower)):
        arrow(a, b)
    arrow(img_tower, img_head, "features")
    arrow(txt_tower, txt_head, "features")
    arrow(img_head, img_emb)
    arrow(txt_head, txt_emb)
    for a in (img_emb, txt_emb, scale):
        arrow(a, clip)
    for a in (img_emb, txt_emb):
        arrow(a, cx)
    arrow(clip, total)
    arrow(cx, total)
    ax.text(6, 4.45, "ContextCLIP = CLIP + one weighted term: CLIP is the same model trained with alpha = 0",
            ha="center", fontsize=10, fontweight="bold")
    return fig


def forest_plot(panels: dict, out_dir: Path | None = None, name: str = "fig_answer_forest") -> Figure:
    """ContextCLIP - CLIP with 95% intervals, one panel per ``panels`` entry (title -> the frame of
    ``Comparison.forest_rows``): primary endpoints first, in bold with a star; block A as a filled
    dot, block B (the replication) as an open square just below; a dashed line at 0 and, per row, a
    grey bar at the ceiling (100 - CLIP's mean, the largest gain the row could show) when it is in view."""
    panels = {t: df for t, df in panels.items() if df is not None and len(df)}
    if not panels:
        raise ValueError("no rows to draw: evaluate the runs first (notebooks 03 and 06)")
    heights = [max(2.0, 0.42 * df["label"].nunique() + 1.0) for df in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.2, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (title, df) in zip(axes[:, 0], panels.items()):
        labels = list(dict.fromkeys(df["label"]))
        lo = float(np.nanmin(df["ci_low"].to_numpy(dtype=float)))
        hi = float(np.nanmax(df["ci_high"].to_numpy(dtype=float)))
        span = max(hi, 0.0) - min(lo, 0.0)
        xmin, xmax = min(lo, 0.0) - 0.08 * span - 0.5, max(hi, 0.0) + 0.08 * span + 0.5
        for i, lab in enumerate(labels):
            y = len(labels) - 1 - i
            rows = df[df["label"] == lab]
            for _, r in rows.iterrows():
                dy, style = (0.0, dict(marker="o", mfc=PALETTE[0], mec=PALETTE[0], color=PALETTE[0])) \
                    if r["block"] == "A" else (-0.25, dict(marker="s", mfc="white", mec=PALETTE[1], color=PALETTE[1]))
                if np.isfinite(r["ci_low"]):
                    ax.plot([r["ci_low"], r["ci_high"]], [y + dy, y + dy], lw=2, color=style["color"])
                ax.plot([r["diff"]], [y + dy], ls="none", ms=6, marker=style["marker"], mfc=style["mfc"],
                        mec=style["mec"])
            headroom = float(rows["headroom"].iloc[0])
            if headroom < xmax:
                ax.plot([headroom, headroom], [y - 0.4, y + 0.25], color="0.55", lw=3, solid_capstyle="butt")
        ax.axvline(0.0, color="black", ls="--", lw=1)
        primary = [df[df["label"] == lab]["role"].iloc[0] == "primary" for lab in labels]
        ax.set_yticks(range(len(labels))[::-1])
        ax.set_yticklabels([("\u2605 " if p else "") + lab for lab, p in zip(labels, primary)])
        for tick, p in zip(ax.get_yticklabels(), primary):
            tick.set_fontweight("bold" if p else "normal")
        ax.set_xlim(xmin, xmax)
        ax.set_ylim(-0.8, len(labels) - 0.4)
        n = {b: int(df[df["block"] == b]["seeds"].max()) for b in ("A", "B") if (df["block"] == b).any()}
        ax.set_title(f"{title}: " + ", ".join(f"block {b} ({k} seeds)" for b, k in n.items()), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("ContextCLIP \u2212 CLIP, percentage points (95% interval over seeds)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PALETTE[0], marker="o", lw=2, label="block A"),
               Line2D([], [], color=PALETTE[1], marker="s", mfc="white", lw=2, label="block B (replication)"),
               Line2D([], [], color="0.55", lw=3, label="ceiling (100 \u2212 CLIP)"),
               Line2D([], [], color="black", ls="--", lw=1, label="no difference")]
    axes[0, 0].legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig
