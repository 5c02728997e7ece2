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
# # Solutions · 05 t-SNE of the embeddings
#
# Worked answers to the exercises at the end of `05_tsne.ipynb`, on the cached image embeddings of the
# ContextCLIP run (run 03 and 05 first). **Runtime:** about 30 s (four small t-SNE maps).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read

# %%
import numpy as np
from sklearn.metrics import silhouette_score

from contextclip import exercises
from contextclip.evaluate import load_embeddings
from contextclip.notebook_utils import profile_paths, setup_notebook, show_table
from contextclip.plots import tsne_points

cfg = setup_notebook(profile)
paths = profile_paths(cfg)
cache = load_embeddings(paths.run_dir("contextclip", cfg.train.seeds[0]), cfg.data.tsne_dataset)
keep = np.random.default_rng(0).permutation(len(cache["labels"]))[: min(300, len(cache["labels"]))]
emb, labels = cache["image"].float().numpy()[keep], cache["labels"].numpy()[keep]
emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)

# %% [markdown]
# ## 1 and 2. Perplexity changes the picture, not the embeddings
#
# *What you should have seen:* the silhouette in the original space does not depend on t-SNE at all
# (the same number in every row); the 2-d silhouette moves with the perplexity. Small perplexities
# break classes into many small islands; large ones merge them.

# %%
rows = []
for perplexity, seed in ((5, 0), (30, 0), (50, 0), (30, 1)):
    xy = tsne_points(emb, perplexity, seed)
    rows.append({"perplexity": perplexity, "t-SNE seed": seed, "2-d silhouette": silhouette_score(xy, labels),
                 f"{emb.shape[1]}-d silhouette (cosine)": silhouette_score(emb, labels, metric="cosine")})
show_table(rows, floatfmt="{:.3f}")
exercises.tsne_is_a_picture(rows, original=f"{emb.shape[1]}-d silhouette (cosine)")

# %% [markdown]
# ## 3. Not a measurement
#
# *What you should have seen:* another t-SNE seed (last row above) gives another picture and another
# 2-d silhouette from the same embeddings. A picture that changes with a random seed and a free
# parameter cannot carry a comparison on its own; the accuracies of Tables 1-2 (and the silhouette in
# the original space) can.
