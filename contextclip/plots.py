"""Figures: t-SNE of image and text embeddings (Fig. 6/7), retrieval grids (Fig. 1/5), training curves.

What it is:
- ``tsne_figure``: CLIP and ContextCLIP side by side, the same points, the same t-SNE settings
  and seed, one colour per class, a legend with class names, and silhouette scores (in the 2-d
  map and in the original embedding space, cosine) in each panel title, so "more clustered"
  becomes a number. ``tsne_from_runs`` draws it from two runs' cached embeddings.
- ``retrieval_grid``: one row per query caption; the top-k images of CLIP beside those of
  ContextCLIP; every correct image (one the query caption describes, word for word) has a thick green frame. ``retrieval_grid_from_runs``
  takes the top-k from the cached embeddings (a dot product; nothing is encoded).
- ``training_curves``: every loss term of ``history.jsonl`` for each run, train steps as lines,
  validation at epoch ends as markers.
- ``sensitivity_figure``: accuracy against alpha (and h) per contextual-loss variant, with bands.
- ``save_figure``: PNG and PDF under ``figures/<profile>/``, named after the paper's figures.

What it is not: plotting never encodes images or captions and never trains; it reads the caches
written by ``contextclip.evaluate`` and the run folders. Every function returns the Figure.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from contextclip.config import METHOD_DESCRIPTIONS, METHOD_LABELS
from contextclip.encoding import take_images
from contextclip.evaluate import load_embeddings
from contextclip.losses import TERMS
from contextclip.retrieval import caption_positives, topk_images

__all__ = ["save_figure", "tsne_points", "tsne_figure", "tsne_from_runs", "retrieval_grid",
           "retrieval_grid_from_runs", "training_curves", "read_history", "sensitivity_figure", "LEGEND_LABELS"]

#: Legend labels: the method's name and what it trains on.
LEGEND_LABELS = {m: f"{METHOD_LABELS[m]} ({METHOD_DESCRIPTIONS[m]})" for m in METHOD_LABELS}
METHOD_COLOURS = {"clip": "tab:blue", "contextclip": "tab:orange"}


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


def _class_colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    return [cmap(i) if n <= 20 else cmap(i / max(n - 1, 1)) for i in range(n)]


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
    colours = _class_colours(len(classnames))
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
            ax.scatter(xy[m, 0], xy[m, 1], s=point_size, color=colours[int(c)], label=classnames[int(c)],
                       alpha=0.8, linewidths=0)
        ax.set_title(f"{_label(method)}\nsilhouette: 2-d {s2:.3f} | {x.shape[1]}-d (cosine) {sd:.3f}", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[i], markersize=7, label=name)
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


def retrieval_grid(queries: list[str], images, topk: dict, ground_truth: list, title: str = "") -> Figure:
    """One row per query caption: the top-k images of each method side by side, ground truth framed.

    ``topk``: ``{"clip": LongTensor [Q, k], "contextclip": LongTensor [Q, k]}`` (image indices into
    ``images``); ``ground_truth[q]``: the index (or set of indices) of the query's true image(s).
    """
    methods = list(topk)
    q_n, k = next(iter(topk.values())).shape
    fig = plt.figure(figsize=(1.45 * k * len(methods) + 0.6, 2.05 * q_n + 0.7))
    rows = fig.subfigures(q_n, 1, hspace=0.0) if q_n > 1 else [fig.subfigures(1, 1)]
    for q, row in enumerate(np.atleast_1d(rows)):
        gt = ground_truth[q]
        gt = {int(g) for g in gt} if isinstance(gt, (list, tuple, set)) else {int(gt)}
        row.suptitle("\n".join(textwrap.wrap(f'query {q + 1}: "{queries[q]}"', 95)), fontsize=11, y=0.99,
                     fontweight="bold")
        blocks = row.subfigures(1, len(methods), wspace=0.04)
        for block, method in zip(np.atleast_1d(blocks), methods):
            idx = topk[method][q].tolist()
            found = [r + 1 for r, i in enumerate(idx) if i in gt]
            many = "a true image" if len(gt) > 1 else "true image"
            sub = f"{_label(method).split(' (')[0]}: " + (f"{many} at rank {found[0]}" if found else
                                                           f"{'no true image' if len(gt) > 1 else 'true image not'} in top {k}")
            block.text(0.5, 0.80, sub, ha="center", va="bottom", fontsize=10,
                       color=METHOD_COLOURS.get(method, "black"), fontweight="bold")
            axes = block.subplots(1, k)
            imgs = take_images(images, idx)
            for r, (ax, i) in enumerate(zip(np.atleast_1d(axes), idx)):
                ax.imshow(_hwc(imgs[r]), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                hit = i in gt
                for spine in ax.spines.values():
                    spine.set_visible(hit)
                    spine.set_edgecolor("limegreen")
                    spine.set_linewidth(4 if hit else 0)
                ax.set_xlabel(f"#{r + 1}" + (" (true)" if hit else ""), fontsize=9,
                              color="green" if hit else "black")
            block.subplots_adjust(left=0.02, right=0.98, top=0.78, bottom=0.12, wspace=0.08)
    if title:
        fig.suptitle(title, fontsize=13, y=1.0 + 0.25 / q_n)
    return fig


def retrieval_grid_from_runs(runs: dict, dataset: str, images, n_queries: int = 4, k: int = 5,
                             out_dir: Path | None = None, seed: int = 0, name: str = "fig5_retrieval_grid") -> Figure:
    """Fig. 1/5 from the cached embeddings of two runs (top-k by dot product; nothing is encoded).

    ``images``: the caption set's images (tensor or Dataset) in dataset order; the cache's
    ``index`` maps cached rows to them. Queries: the first caption of ``n_queries`` images drawn
    with ``seed``; the same queries for every method.
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
    index = first["index"]
    topk = {m: index[topk_images(c["text"][q_rows], c["image"], k)] for m, c in caches.items()}
    positives = caption_positives(text_image, n_img, first["captions"])  # identical captions: every image
    gt = [{int(index[i]) for i in torch.nonzero(positives[r]).flatten().tolist()} for r in q_rows]
    fig = retrieval_grid(queries, images, topk, gt, title=f"Text-to-image retrieval on {dataset} (top {k})")
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig


# --------------------------------------------------------------------------- training curves
def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; train the run first")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {i}: not valid JSON ({exc})") from None
    return out



def training_curves(runs: dict, out_dir: Path | None = None, name: str = "fig_training_curves") -> Figure:
    """One panel per loss term; each run a colour; train steps as lines, validation as markers.

    ``runs``: ``{label: run_dir}``; a label starting with the method name (``"clip"``,
    ``"contextclip-seed1"``) gets that method's colour.
    """
    fig, axes = plt.subplots(1, len(TERMS), figsize=(5 * len(TERMS), 4), squeeze=False)
    for label, run in runs.items():
        hist = read_history(run)
        method = "contextclip" if label.startswith("contextclip") else "clip" if label.startswith("clip") else label
        colour = METHOD_COLOURS.get(method)
        steps = [h for h in hist if h.get("type", "step") == "step"]
        epochs = [h for h in hist if h.get("type") == "epoch"]
        for ax, term in zip(axes[0], TERMS):
            xs = [h.get("global_step", i) for i, h in enumerate(steps) if term in h]
            ys = [h[term] for h in steps if term in h]
            name_l = _label(label) if label in LEGEND_LABELS else label
            if ys and not (method == "clip" and term == "contextual_loss"):  # CLIP never computes it in training
                ax.plot(xs, ys, color=colour, lw=1.5, alpha=0.85, label=f"{name_l} train",
                        marker="." if len(ys) < 30 else None)
            vx = [h["global_step"] for h in epochs if f"val_{term}" in h]
            vy = [h[f"val_{term}"] for h in epochs if f"val_{term}" in h]
            if vy:
                ax.plot(vx, vy, color=colour, marker="o", ls="--", ms=6, label=f"{name_l} validation")
    for ax, term in zip(axes[0], TERMS):
        ax.set_title(term.replace("_", " ") + (" (CLIP: measured on validation only, not trained on)"
                                               if term == "contextual_loss" else ""), fontsize=11)
        ax.set_xlabel("optimisation step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("Training curves: total loss = contrastive + alpha * contextual", fontsize=12)
    ncol = min(len(labels), 4) or 1  # a long legend wraps into rows instead of widening the figure
    rows = -(-len(labels) // ncol) if labels else 0
    fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.3 * rows)
    fig.tight_layout(rect=(0, min(0.45, 0.05 + 0.3 * rows / fig.get_figheight()), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig


VARIANT_COLOURS = {"batch": "tab:orange", "feature_columns": "tab:green", "per_sample_features": "tab:purple"}


def sensitivity_figure(table, alpha: float, bandwidth: float, out_dir: Path | None = None,
                       name: str = "fig_sensitivity_alpha") -> Figure:
    """Accuracy against alpha per contextual-loss variant, with the 95% band of the mean over seeds
    (left), and against h at the profile's alpha (right). ``table``: ``sensitivity.study_table``.

    alpha = 0 is CLIP, shared by every variant (its band is drawn in grey across the panel);
    the x positions are evenly spaced and labelled with the values.
    """
    clip = table[table["label"] == "clip"].iloc[0]
    pts = table[table["label"] != "clip"]
    variants = list(dict.fromkeys(pts["variant"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    panels = [(axes[0], "alpha", np.isclose(pts["bandwidth"], bandwidth), f"alpha (h = {bandwidth:g})"),
              (axes[1], "bandwidth", np.isclose(pts["alpha"], alpha), f"bandwidth h (alpha = {alpha:g})")]
    for ax, key, keep, xlabel in panels:
        sub = pts[keep]
        values = sorted(set(sub[key]) | ({0.0} if key == "alpha" else set()))
        pos = {v: i for i, v in enumerate(values)}
        ax.axhline(clip["mean"], color="tab:blue", lw=1, ls="--", label=f"CLIP (alpha 0): {clip['mean']:.1f}%")
        if not np.isnan(clip["band_low"]):
            ax.axhspan(clip["band_low"], clip["band_high"], color="tab:blue", alpha=0.12)
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
    k = int(table["seeds"].min())
    axes[0].set_ylabel(f"{clip['dataset']} zero-shot {clip['metric']} (%)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"When does the contextual term help? Mean over {k} seed{'s' if k > 1 else ''}, "
                 "band = 95% t-interval of the mean", fontsize=11)
    fig.tight_layout()
    if out_dir is not None:
        save_figure(fig, out_dir, name)
    return fig
