# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: ContextCLIP (.venv)
#     language: python
#     name: contextclip
# ---

# %% [markdown]
# # 00 · The contextual loss, explained
#
# **Purpose.** Learn what ContextCLIP adds to CLIP: the loss of Eq. 1,
# $\mathcal{L} = \mathcal{L}_{CLIP} + \alpha\,\mathcal{L}_{CX}$, term by term, with the paper's
# equations beside the library code (`contextclip.losses`). We check the library against a naive
# loop, look at how $\mathcal{L}_{CX}$ behaves on aligned, shuffled and random pairs for each of the
# three readings of "point", see what the bandwidth $h$ does, and why the paper's "cosine similarity"
# in Eq. 6 has to be a *distance*.
#
# **Inputs.** None: toy embeddings drawn here with the profile's batch size and embedding size.
# **Outputs.** Figures shown inline and saved to `runs/<profile>/by_hand/figures/00_*.png` (git-ignored;
# `make reproduce` saves them to `figures/<profile>/`).
# **Runtime.** smoke: 17 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 5 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
batch_size = None  # N, the number of image-text pairs in a toy batch (None: the profile value)
embed_dim = None  # D, the size of the joint embedding (None: the profile value, 256 in the paper)
bandwidth = None  # h of Eq. 7 (None: the profile value, 0.5)
alpha = None  # weight of the contextual term in Eq. 1 (None: the profile value, 0.5)
cx_eps = None  # epsilon of Eq. 6 (None: the profile value, 1e-5)
seeds = None  # the first seed draws the toy embeddings (None: the profile value)
pipeline_run = False  # set by make reproduce only: save figures to figures/<profile>/ (by hand: runs/<profile>/by_hand/)

# %%
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch

from contextclip import plots
from contextclip.losses import CX_VARIANTS, ContextCLIPLoss, clip_loss, contextual_loss, cx_matrix
from contextclip.notebook_utils import (
    figures_dir,
    interactive_frontend,
    setup_notebook,
    show_figure,
    show_table,
)

cfg = setup_notebook(profile, batch_size=batch_size, embed_dim=embed_dim, bandwidth=bandwidth,
                     alpha=alpha, cx_eps=cx_eps, seeds=seeds, pipeline_run=pipeline_run)
N, D = cfg.train.batch_size, cfg.model.embed_dim
h, eps = cfg.loss.bandwidth, cfg.loss.cx_eps
figures = figures_dir(cfg, pipeline_run)
gen = torch.Generator().manual_seed(cfg.train.seeds[0])
print(f"toy batch: N = {N} pairs, D = {D} dimensions, h = {h:g}, alpha = {cfg.loss.alpha:g}, eps = {eps:g}")

# %% [markdown]
# ## 1. Toy embeddings
#
# A batch of $N$ captions embedded as text vectors $u_i \in \mathbb{R}^D$, and three kinds of image
# embeddings $v_i$ to compare against them:
#
# - **aligned**: each image is its caption's vector plus 5 % noise (a well-trained model);
# - **shuffled**: the aligned images in a random order (right content, wrong pairing);
# - **random**: unrelated vectors (an untrained model).

# %%
text = torch.randn(N, D, generator=gen)
noise = torch.randn(N, D, generator=gen) * text.norm(dim=1, keepdim=True) / math.sqrt(D)
batches = {
    "aligned": text + 0.05 * noise,
    "shuffled": (text + 0.05 * noise)[torch.randperm(N, generator=gen)],
    "random": torch.randn(N, D, generator=gen),
}
show_table({name: {"mean cosine with its caption": torch.cosine_similarity(img, text).mean().item()}
            for name, img in batches.items()}, caption="How close each image is to its own caption")


# %% [markdown]
# ## 2. The CLIP loss (Eq. 2-4)
#
# With L2-normalised embeddings, $\langle v_i, u_k\rangle$ is a cosine. Image $i$ should pick its own
# caption among the $N$ (Eq. 2), caption $i$ its own image (Eq. 3), weighted $\lambda = 0.75$ towards
# image$\to$text (Eq. 4):
#
# $$\ell_i^{(v\to u)} = -\log \frac{\exp(\langle v_i, u_i\rangle/\tau)}{\sum_k \exp(\langle v_i, u_k\rangle/\tau)},\qquad
# \mathcal{L}_{CLIP} = \frac1N\sum_i \lambda\,\ell_i^{(v\to u)} + (1-\lambda)\,\ell_i^{(u\to v)}$$
#
# (the paper writes the $\log$ without the minus sign; a loss to minimise needs it). The naive loop
# below is the equation, one pair at a time; `clip_loss` is the library's batched version.

# %%
def naive_clip_loss(v, u, tau=1.0, lam=0.75):
    """Eq. 2-4 with Python loops, for checking only."""
    v = [x / x.norm() for x in v]
    u = [x / x.norm() for x in u]
    n = len(v)
    total = 0.0
    for i in range(n):
        i2t = -math.log(math.exp(float(v[i] @ u[i]) / tau) / sum(math.exp(float(v[i] @ u[k]) / tau) for k in range(n)))
        t2i = -math.log(math.exp(float(u[i] @ v[i]) / tau) / sum(math.exp(float(u[i] @ v[k]) / tau) for k in range(n)))
        total += lam * i2t + (1 - lam) * t2i
    return total / n


tau = 0.1
rows = []
for name, img in batches.items():
    rows.append({"batch": name, "naive loop": naive_clip_loss(img, text, tau),
                 "clip_loss": clip_loss(img, text, temperature=tau).item()})
clip_table = pd.DataFrame(rows).set_index("batch")
assert all(abs(a - b) < 1e-4 for a, b in zip(clip_table["naive loop"], clip_table["clip_loss"]))
show_table(clip_table, caption=f"CLIP loss at tau = {tau}: the loop and the library agree", floatfmt="{:.5f}")
loss_of = clip_table["clip_loss"]
assert loss_of["aligned"] < loss_of["random"] < loss_of["shuffled"]
print(f"aligned {loss_of['aligned']:.2f} < random {loss_of['random']:.2f} < shuffled {loss_of['shuffled']:.2f}")


# %% [markdown]
# The shuffled batch has the same images as the aligned one, yet its CLIP loss is the **highest**
# of the three, well above the random batch's: each shuffled image is very close to *some* caption,
# only not to its own, so the softmax confidently picks the wrong one (a random image spreads its
# bets and loses less). The contrastive loss is about **pairing**.
#
# ## 3. The contextual loss (Eq. 5-9)
#
# Take the image embeddings as the "generated" points $x_i$ and the text embeddings as the targets $y_j$.
# Both sets are centred on the mean of the targets and L2-normalised (as in Mechrez et al. 2018; the
# paper does not say). Then
#
# | Eq. | meaning | code in `contextclip/losses.py` |
# |---|---|---|
# | 6 | $\tilde d_{ij} = d_{ij} / (\min_k d_{ik} + \epsilon)$, distance relative to $x_i$'s nearest target | `d_tilde = d / (d_min + eps)` |
# | 7 | $w_{ij} = \exp\big((1-\tilde d_{ij})/h\big)$, from distances to similarities | inside the softmax |
# | 8 | $CX_{ij} = w_{ij} / \sum_k w_{ik}$, normalised over the targets | `torch.softmax((1 - d_tilde) / h, dim=-1)` |
# | 5 | $CX = \frac1N \sum_j \max_i CX_{ij}$, each target's best match | `cx_ij.amax(dim=-2).mean(dim=-1)` |
# | 9 | $\mathcal{L}_{CX} = -\log CX$ | `-torch.log(cx)` |
#
# with $d_{ij} = 1 - \cos(x_i, y_j)$, a cosine **distance** (section 6 explains why). The paper's
# Eq. 5 reads $\max_j$; the max is over the generated points $i$, as in Mechrez et al.
# Since $1/N \le CX \le 1$, we have $0 \le \mathcal{L}_{CX} \le \log N$.
#
# The naive version, one point pair at a time:

# %%
def naive_cx_loss(x, y, h=0.5, eps=1e-5, distance=True, centre=True):
    """Eq. 5-9 with Python loops. x: generated points, y: target points (lists of vectors)."""
    mu = sum(y) / len(y) if centre else 0 * y[0]            # mean of the targets
    x = [(p - mu) / (p - mu).norm() for p in x]             # centre on it, L2-normalise
    y = [(q - mu) / (q - mu).norm() for q in y]
    cx = []
    for xi in x:
        cos = [float(xi @ yj) for yj in y]
        d = [max(1.0 - c, 0.0) for c in cos] if distance else cos   # d_ij (a distance, or the paper's wording)
        d_min = min(d)
        w = [math.exp((1.0 - dij / (d_min + eps)) / h) for dij in d]  # Eq. 6-7
        cx.append([wij / sum(w) for wij in w])                        # Eq. 8: one row per x_i
    cx_score = sum(max(cx[i][j] for i in range(len(x))) for j in range(len(y))) / len(y)  # Eq. 5
    return -math.log(cx_score)                                         # Eq. 9


def unit(v):
    return v / v.norm(dim=1, keepdim=True)


def naive_variant(variant, img, txt, h, eps):
    """The three readings of 'point', built from the naive loop."""
    img, txt = unit(img), unit(txt)
    if variant == "batch":                # the N batch items are the points
        return naive_cx_loss(list(img), list(txt), h, eps)
    if variant == "feature_columns":      # the D embedding dimensions are the points (vectors over the batch)
        return naive_cx_loss(list(img.T), list(txt.T), h, eps)
    losses = []                           # per_sample_features: the D scalars of one sample are the points
    for xs, ys in zip(img, txt):
        mu = ys.mean()
        xs, ys = (xs - mu) / (xs - mu).norm(), (ys - mu) / (ys - mu).norm()
        cx = []
        for xi in xs:
            d = [max(1.0 - float(xi * yj), 0.0) for yj in ys]
            w = [math.exp((1.0 - dij / (min(d) + eps)) / h) for dij in d]
            cx.append([wij / sum(w) for wij in w])
        losses.append(-math.log(sum(max(col) for col in zip(*cx)) / len(ys)))
    return sum(losses) / len(losses)


small = {k: v[:8, :16] for k, v in batches.items()}  # the per-sample loop is D*D per sample: keep it small
rows = []
for variant in CX_VARIANTS:
    for name, img in small.items():
        rows.append({"variant": variant, "batch": name,
                     "naive loop": naive_variant(variant, img, text[:8, :16], h, eps),
                     "contextual_loss": contextual_loss(img, text[:8, :16], h, eps, variant).item()})
check = pd.DataFrame(rows).set_index(["variant", "batch"])
assert ((check["naive loop"] - check["contextual_loss"]).abs() < 1e-4).all(), check
show_table(check, caption="Naive loop vs library on an 8 x 16 slice: they agree", floatfmt="{:.5f}")

# %% [markdown]
# ## 4. How $\mathcal{L}_{CX}$ behaves: aligned, shuffled, random
#
# Now the full $N \times D$ batch, for each variant. The three variants differ in what a "point" is:
#
# - `batch` (our default): the $N$ image and $N$ text embeddings of the batch are the points;
# - `feature_columns`: each of the $D$ embedding dimensions is a point, a vector over the batch;
# - `per_sample_features`: for one pair, each of the $D$ scalar features is a point (what the authors'
#   public code for a sibling project does); the loss is averaged over the batch.

# %%
rows = []
for variant in CX_VARIANTS:
    row = {"variant": variant}
    for name, img in batches.items():
        row[name] = contextual_loss(img, text, h, eps, variant).item()
    row["log N or log D (max)"] = math.log(N) if variant == "batch" else math.log(D)
    rows.append(row)
behaviour = pd.DataFrame(rows).set_index("variant")
show_table(behaviour, caption=f"L_CX (h = {h}) on the three kinds of batch", floatfmt="{:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.2))
behaviour[list(batches)].plot.bar(ax=ax, rot=0)
for bars in ax.containers:  # a value label on each bar: a loss of 0 is a result, not missing data
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
ax.set_ylabel("contextual loss $L_{CX}$ (nats)")
ax.set_title(f"Contextual loss by variant (N = {N}, D = {D}, h = {h})")
show_figure(fig, figures / "00_cx_variants.png")

# %% [markdown]
# What to read in the table:
#
# - `batch` separates aligned from random, but gives the **shuffled** batch the same loss as the
#   aligned one: it compares the two *sets* of embeddings and ignores which image goes with which
#   caption. Only the CLIP term (section 2) enforces the pairing; $\mathcal{L}_{CX}$ can only add
#   "the two clouds have the same shape".
# - `feature_columns` notices the shuffle (permuting the batch changes every column vector).
# - `per_sample_features` gives about $\log D$ for all three: on unit vectors in $\mathbb{R}^D$ each
#   scalar is about $\pm 1/\sqrt D$, so all distances are close to 1, every $w_{ij}$ is about the
#   same and $CX \approx 1/D$. It carries almost no alignment signal.
#
# The combined loss of Eq. 1 returns each term by name; with $\alpha = 0$ it is exactly the CLIP loss:

# %%
loss_fn = ContextCLIPLoss(alpha=cfg.loss.alpha, bandwidth=h, eps=eps, variant=cfg.loss.cx_variant)
terms = {name: {k: v.item() for k, v in loss_fn(img, text, logit_scale=1 / tau).items()}
         for name, img in batches.items()}
show_table(pd.DataFrame(terms).T, caption=f"ContextCLIPLoss (alpha = {cfg.loss.alpha}, tau = {tau})", floatfmt="{:.3f}")
baseline = ContextCLIPLoss(alpha=0.0)(batches["random"], text, logit_scale=1 / tau)
assert baseline["loss"].item() == clip_loss(batches["random"], text, temperature=tau).item()

# %% [markdown]
# ## 5. What the bandwidth $h$ does
#
# $h$ sets how sharply Eq. 7-8 prefer the nearest target. Small $h$: $CX_{ij}$ is nearly one-hot
# on $x_i$'s nearest target, and $CX$ counts how many targets are someone's nearest neighbour (a
# template-matching count). Large $h$: every row of $CX_{ij}$ tends to uniform, $CX \to 1/N$ and
# $\mathcal{L}_{CX} \to \log N$ whatever the embeddings. Below: the loss over $h$ for the aligned
# batch, a noisier batch (50 % noise) and the random batch.

# %%
hs = [0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0]
sweep_batches = {"aligned": batches["aligned"], "50% noise": text + 0.5 * noise, "random": batches["random"]}
sweep = pd.DataFrame({name: [contextual_loss(img, text, hh, eps).item() for hh in hs]
                      for name, img in sweep_batches.items()}, index=pd.Index(hs, name="h"))
show_table(sweep, caption="L_CX (batch variant) as a function of the bandwidth h", floatfmt="{:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.4))
styles = {"aligned": dict(marker="o", ms=9, mfc="none", mew=2, lw=2.5, zorder=3),  # hollow and on top:
          "50% noise": dict(marker="s", ms=5, ls="--", lw=1.5, zorder=2),          # visible where the two meet
          "random": dict(marker="^", ms=6, lw=1.5, zorder=2)}
for name in sweep:
    ax.plot(sweep.index, sweep[name], label=name, **styles[name])
ax.axhline(math.log(N), color="grey", ls=":", label="log N (upper bound)")
ax.axvline(h, color="k", lw=0.8, ls="--", label=f"profile h = {h:g}")
ax.set_xscale("log")
ax.set_xlabel("bandwidth h (log scale)")
ax.set_ylabel("$L_{CX}$ (nats)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: clear of the lines
show_figure(fig, figures / "00_cx_bandwidth.png")

# %% [markdown]
# Around $h = 0.5$ (the de-facto standard with cosine distances, and our default) the loss separates
# aligned from random clearly. With very small $h$ even random batches score well (the nearest-neighbour
# count of random points is not small), and with large $h$ everything drifts towards $\log N$.
#
# ## 6. Why the "cosine similarity" of Eq. 6 must be a distance
#
# The paper says $d_{ij}$ is "the cosine similarity of $u_i$ and $v_j$". Eq. 6 divides by the row
# minimum, and Eq. 7 gives the largest weight to the *smallest* $\tilde d_{ij}$: both assume
# $d_{ij} \ge 0$ with 0 meaning "identical", which is a distance. With a similarity the outcome
# depends on the sign of the row minimum:
#
# - if the smallest similarity in a row is negative (it usually is after centring), dividing by it
#   flips the order, and the loss happens to work;
# - if all similarities in a row are positive (embeddings without centring in the positive orthant,
#   e.g. after a ReLU), the best match gets the *largest* $\tilde d$ and the smallest weight: the loss
#   no longer tells aligned from random;
# - a minimum near zero makes $\tilde d$ explode.
#
# The naive loop with `distance=False` reads Eq. 6 literally. Here it is on the aligned and random
# batches, first centred (as above), then with all embeddings made positive (`abs`) and not centred:

# %%
rows = []
for prep, centre in [("centred on the targets' mean", True), ("all positive (abs), not centred", False)]:
    for name in ("aligned", "random"):
        img, txt = unit(batches[name]), unit(text)
        if not centre:
            img, txt = img.abs(), txt.abs()
        rows.append({"embeddings": prep, "batch": name,
                     "d = 1 - cos (distance)": naive_cx_loss(list(img), list(txt), h, eps, True, centre),
                     "d = cos (similarity, literal)": naive_cx_loss(list(img), list(txt), h, eps, False, centre)})
similarity = pd.DataFrame(rows).set_index(["embeddings", "batch"])
show_table(similarity, caption="The literal reading only works by luck of sign", floatfmt="{:.3f}")

# %% [markdown]
# With the distance, aligned pairs score near 0 and random ones near $\log N$ in both cases. With the
# literal similarity the result depends on the sign of the row minimum, i.e. on the preprocessing; that is why the library uses $d_{ij} = 1 - \cos$
# (see `docs/decisions.md`, "contextual loss").
#
# ## 7. Inside $\mathcal{L}_{CX}$: the matrix $CX_{ij}$
#
# Eq. 8 gives, for each image $i$, a distribution over the captions $j$. Below, $CX_{ij}$ for the
# first 16 pairs of each batch (`losses.cx_matrix`, the same code path as the loss). Eq. 5 then
# takes, for each caption (column), its best image, and averages.

# %%
k = min(16, N)
show_figure(plots.cx_heatmaps({name: cx_matrix(img[:k], text[:k], h, eps) for name, img in batches.items()},
                              title=f"$CX_{{ij}}$ on {k} pairs (h = {h:g})"), figures / "00_cx_heatmaps.png")

# %% [markdown]
# Aligned: a bright diagonal, every caption has an image that picks it. Shuffled: the same bright
# cells, permuted. Each column still has one bright cell, so $CX$ and $\mathcal{L}_{CX}$ are the same as
# for the aligned batch (the `batch` variant ignores the pairing). Random: no column stands out.
#
# ## 8. Try it: $h$, $\alpha$ and the noise level
#
# The sliders redraw the three loss terms and $CX_{ij}$ for a batch whose images are the captions plus
# noise. In JupyterLab (`make lab`) drag them; in a batch run (papermill, `make test`) the figure is
# drawn once, at the profile's values.

# %%
def explore(h=h, alpha=cfg.loss.alpha, noise=0.5):
    """Redraw the loss terms and CX_ij for text + noise * (random direction)."""
    img = text[:k] + noise * noise_dir[:k]
    loss = ContextCLIPLoss(alpha=alpha, bandwidth=h, eps=eps)(img, text[:k], logit_scale=1 / tau)
    fig = plots.loss_explorer({n: v.item() for n, v in loss.items()}, cx_matrix(img, text[:k], h, eps), alpha,
                              title=f"{k} pairs, noise {noise:g}, h = {h:g}, tau = {tau}")
    show_figure(fig)


noise_dir = torch.randn(N, D, generator=gen) * text.norm(dim=1, keepdim=True) / math.sqrt(D)
if interactive_frontend():
    import ipywidgets as widgets

    h_values = sorted({0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, h})  # round values: h reads 0.5, not 0.501
    widgets.interact(explore, h=widgets.SelectionSlider(options=h_values, value=h, description="h"),
                     alpha=widgets.FloatSlider(value=cfg.loss.alpha, min=0, max=2, step=0.1, description="alpha"),
                     noise=widgets.FloatSlider(value=0.5, min=0, max=3, step=0.1, description="noise"))
else:
    explore()

# %% [markdown]
# ## 9. The whole model
#
# Where the two losses sit: two towers, a head each ($W_I$, $W_T$) and L2 normalisation give the
# embeddings $I_e$, $T_e$; the logit scale $1/\tau$ only enters the CLIP term. Drawn from the profile's
# config (`plots.architecture_diagram`):

# %%
show_figure(plots.architecture_diagram(cfg.model.image_tower, cfg.model.text_tower, cfg.model.embed_dim,
                                       cfg.model.head, cfg.loss.alpha, h, cfg.loss.learn_temperature),
            figures / "00_architecture.png")

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/00_contextual_loss_explained_solutions.ipynb`.
#
# 1. **Predict, then run.** Before running anything: what is $\mathcal{L}_{CX}$ (`batch` variant) of a
#    batch whose images are exactly its captions? And of a batch where every image is the *same*
#    vector? Write your two numbers down, then compute them with `contextual_loss`.
# 2. **Change a parameter.** Rerun this notebook with `batch_size = 8` and then `batch_size = 256`
#    (the parameters cell). What happens to the random batch's $\mathcal{L}_{CX}$ in section 4, and why is
#    $\log N$ the right yardstick?
# 3. **Explain a result.** In section 8, set the noise to 0 and move $\alpha$ from 0 to 2. Which bar
#    moves and which does not? Then, at $\alpha = 0$, raise the noise step by step to 3. Both terms
#    rise: which one rises by more, $\mathcal{L}_{CLIP}$ or $\mathcal{L}_{CX}$, although each noisy
#    image is still closest to its own caption? (Hint: Eq. 6 divides by the nearest distance.) Why can
#    $\mathcal{L}_{CX}$ never pass $\log N$?
#
# **Next:** `01_data.ipynb`, what the models are trained and evaluated on.
