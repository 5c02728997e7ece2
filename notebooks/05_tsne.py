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
# # 05 · t-SNE of the embeddings (Figures 6 and 7)
#
# **Purpose.** The paper's claim that embeddings learned with the contextual loss are "more
# structured": image embeddings (Fig. 6) and text embeddings of class prompts (Fig. 7) of one
# classification set, projected to 2-D with t-SNE, CLIP beside ContextCLIP, one colour per class,
# the same t-SNE settings and seed for both. Judge by eye, and remember that t-SNE pictures are not
# measurements: Tables 1-2 are.
#
# **Inputs.** The trained runs of `02_train` (first seed); the profile's `tsne_dataset`.
# **Outputs.** `fig6_tsne_image_<dataset>.png`, `fig7_tsne_text_<dataset>.png`: opened by hand on a profile
# with saved results it **shows** the saved figures of `figures/<profile>/`; with `recompute = True` (or
# when nothing is saved) it draws them into `runs/<profile>/by_hand/figures/` (git-ignored); only
# `make reproduce` writes `figures/<profile>/`.
#
# **Runtime.** smoke: 28 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 9 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
seeds = None  # the runs of the first seed are drawn (None: the profile value)
tsne_dataset = None  # classification set whose embeddings are drawn (None: the profile value)
tsne_perplexity = None  # t-SNE perplexity (None: the profile value)
tsne_max_points = None  # points per plot, a stratified subset (None: the profile value)
recompute = False  # True: project the embeddings again (into runs/<profile>/by_hand/) instead of showing saved figures
pipeline_run = False  # set by make reproduce only: write the profile's figures/ (never set it by hand)

# %%
from contextclip import plots
from contextclip.evaluate import embed_dataset
from contextclip.notebook_utils import (
    notebook_outputs,
    setup_notebook,
    show_figure,
    show_saved_figure,
    show_table,
)

cfg = setup_notebook(profile, seeds=seeds, tsne_dataset=tsne_dataset, tsne_perplexity=tsne_perplexity,
                     tsne_max_points=tsne_max_points, recompute=recompute, pipeline_run=pipeline_run)
out = notebook_outputs(cfg, recompute, pipeline_run)  # what is shown, and where anything drawn goes
paths = out.paths
seed = cfg.train.seeds[0]
run_dirs = {m: paths.run_dir(m, seed) for m in ("clip", "contextclip")}

# %% [markdown]
# ## 1. Embeddings (cached by `03_zero_shot` when the set was evaluated there; computing runs only)

# %%
caches = {m: embed_dataset(d, cfg.data.tsne_dataset, cfg) for m, d in run_dirs.items()} if out.compute else {}
if caches:
    show_table([{"method": m, "images": len(c["labels"]), "classes": len(c["classnames"]),
                 "text points": len(c["tsne_text_labels"])} for m, c in caches.items()],
               caption=f"{cfg.data.tsne_dataset}: what is projected")

# %% [markdown]
# ## 2. Figure 6: image embeddings

# %%
if out.compute:
    fig = plots.tsne_from_runs(run_dirs, cfg.data.tsne_dataset, kind="image", out_dir=paths.figures,
                               perplexity=cfg.eval.tsne_perplexity, seed=seed, max_points=cfg.eval.tsne_max_points)
    show_figure(fig)  # saved as fig6_tsne_image_<dataset>.png/.pdf
    # both panels project the same images (same labels, same order): only the model differs
    assert caches["clip"]["labels"].tolist() == caches["contextclip"]["labels"].tolist()
else:
    show_saved_figure(paths.figures / f"fig6_tsne_image_{cfg.data.tsne_dataset}.png")

# %% [markdown]
# ## 3. Figure 7: text embeddings of the class prompts

# %%
if out.compute:
    fig = plots.tsne_from_runs(run_dirs, cfg.data.tsne_dataset, kind="text", out_dir=paths.figures,
                               perplexity=cfg.eval.tsne_perplexity, seed=seed, max_points=cfg.eval.tsne_max_points)
    show_figure(fig)  # saved as fig7_tsne_text_<dataset>.png/.pdf
else:
    show_saved_figure(paths.figures / f"fig7_tsne_text_{cfg.data.tsne_dataset}.png")

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/05_tsne_solutions.ipynb`.
#
# 1. **Predict, then run.** Each panel gives two silhouette scores: in the 2-d map and in the
#    original embedding space. Which of the two can `tsne_perplexity` change?
# 2. **Change a parameter.** Rerun with `recompute = True` and `tsne_perplexity = 5`, then `50`. How do
#    the clusters and the 2-d silhouette move?
# 3. **Explain a result.** Why does this notebook say that t-SNE pictures are not measurements?
#    What would a different t-SNE seed do to the pictures, and to the numbers?
#
# **Next:** `06_retrieval.ipynb`.
