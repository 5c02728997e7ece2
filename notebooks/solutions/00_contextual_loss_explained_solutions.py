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
# # Solutions · 00 The contextual loss, explained
#
# Worked answers to the exercises at the end of `00_contextual_loss_explained.ipynb`. Each answer
# computes its numbers here and checks the claim it makes, so the solution cannot drift from the library.
# **Runtime:** about 10 s (CPU).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read

# %%
import math

import torch

from contextclip import exercises
from contextclip.losses import ContextCLIPLoss, contextual_loss
from contextclip.notebook_utils import setup_notebook, show_table

cfg = setup_notebook(profile)
h, eps, D = cfg.loss.bandwidth, cfg.loss.cx_eps, cfg.model.embed_dim
gen = torch.Generator().manual_seed(0)

# %% [markdown]
# ## 1. Images equal to their captions; every image the same vector
#
# *Prediction:* identical sets give $CX_{ii} \approx 1$ (each caption's nearest image is at distance 0,
# every other one is $1/\epsilon$ times further), so $CX \approx 1$ and $\mathcal{L}_{CX} \approx 0$. If every
# image is the same vector, every row of $CX_{ij}$ is the same distribution, the column maxima sum to 1,
# $CX = 1/N$ and $\mathcal{L}_{CX} = \log N$, the upper bound.

# %%
N = cfg.train.batch_size
text = torch.randn(N, D, generator=gen)
same = torch.randn(1, D, generator=gen).expand(N, D)
rows = [{"batch": "images = captions", "L_CX": contextual_loss(text, text, h, eps).item(), "expected": 0.0},
        {"batch": "one image vector for all", "L_CX": contextual_loss(same, text, h, eps).item(),
         "expected": math.log(N)}]
show_table(rows, caption=f"N = {N}, h = {h:g}", floatfmt="{:.4f}")
exercises.cx_extremes(rows[0]["L_CX"], rows[1]["L_CX"], N)

# %% [markdown]
# ## 2. The batch size and the yardstick $\log N$
#
# *What you should have seen:* the random batch's loss grows with $N$ and stays a roughly constant
# fraction of $\log N$, its upper bound. A loss value means little without $N$: 3.0 is poor for
# $N = 32$ ($\log 32 = 3.47$) and good for $N = 256$ ($\log 256 = 5.55$). Compare runs at the same batch size.

# %%
rows = []
for n in (8, 32, 128, 256):
    t = torch.randn(n, D, generator=gen)
    loss = contextual_loss(torch.randn(n, D, generator=gen), t, h, eps).item()
    rows.append({"N": n, "random L_CX": loss, "log N": math.log(n), "fraction of log N": loss / math.log(n)})
show_table(rows, caption="Random batches: L_CX against its upper bound", floatfmt="{:.3f}")
exercises.cx_grows_with_batch(rows)

# %% [markdown]
# ## 3. $\alpha$ and the noise in the explorer
#
# *What you should have seen:* with no noise $\mathcal{L}_{CX} = 0$, so $\alpha$ moves nothing: only
# $\alpha \mathcal{L}_{CX}$ depends on $\alpha$, and it is 0. As the noise grows, **both** terms rise, and
# $\mathcal{L}_{CX}$ rises by more (at these settings from 0 to about 1.9, against 0.001 to about 0.7 for
# $\mathcal{L}_{CLIP}$), while staying below its ceiling $\log N$. Why: $\mathcal{L}_{CLIP}$ at $\tau = 0.1$ only asks
# whether each image's *own* caption is still the closest by a margin of a few tenths of a cosine,
# and a noisy image is still closer to its own caption than to any other. $\mathcal{L}_{CX}$ divides every distance by
# the nearest one (Eq. 6): without noise the nearest distance is 0, so every other caption is
# $1/\epsilon$ times further and $CX_{ii} = 1$; with noise the nearest caption is no longer at
# distance 0, the ratios $\tilde d_{ij}$ fall towards 1, the rows of $CX_{ij}$ flatten and
# $\mathcal{L}_{CX}$ climbs towards $\log N$ even though the pairing is still right.
# The $\alpha = 0$ rows show the real $\mathcal{L}_{CX}$: `ContextCLIPLoss` computes it for CLIP too
# (detached: it is reported, not trained on).

# %%
tau, k = 0.1, min(16, N)
direction = torch.randn(k, D, generator=gen) * text[:k].norm(dim=1, keepdim=True) / math.sqrt(D)
rows = []
for noise in (0.0, 0.5, 1.0, 3.0):
    for alpha in (0.0, 2.0):
        terms = ContextCLIPLoss(alpha=alpha, bandwidth=h, eps=eps)(text[:k] + noise * direction, text[:k], 1 / tau)
        rows.append({"noise": noise, "alpha": alpha, **{n: v.item() for n, v in terms.items()}})
show_table(rows, caption=f"{k} pairs, tau = {tau}, h = {h:g}", floatfmt="{:.3f}")
at = {(r["noise"], r["alpha"]): r for r in rows}
rise_clip = at[3.0, 0.0]["contrastive_loss"] - at[0.0, 0.0]["contrastive_loss"]
rise_cx = at[3.0, 0.0]["contextual_loss"] - at[0.0, 0.0]["contextual_loss"]
print(f"from noise 0 to 3: L_CLIP rises by {rise_clip:.2f}, L_CX by {rise_cx:.2f} (ceiling log {k} = {math.log(k):.2f})")
exercises.noise_response(at, k)
