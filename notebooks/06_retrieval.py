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
# # 06 · Text-to-image retrieval (Figures 1 and 5, and Recall@K)
#
# **Purpose.** Given a caption, which images does each model rank first? The paper shows grids
# (Fig. 1 and 5); we draw the same grids, CLIP beside ContextCLIP for the same queries, and measure
# retrieval with Recall@K in both directions (an image counts as found when any caption it answers is
# in the top K, as in CLIP_benchmark). Then type your own caption (section 3).
#
# **What counts as correct.** On the generated caption set every image's attributes are known
# (digit, colour, size, style, place...), and the generator records which of them each caption
# states. An image *answers* a caption when it has every attribute the caption states: "an italic
# number three" is answered by every italic 3, not only by the image it was written for. The
# `*_exact` rows keep the old count (the caption's own image, or one with word-for-word the same
# caption) for comparison. Real caption sets (Flickr8k) have no attributes: own image only.
#
# **Inputs.** The trained runs of `02_train`; the profile's `retrieval_dataset` (held-out captioned
# scenes for smoke/embedded, the Flickr8k Karpathy 1K test split for paper).
# **Outputs.** Opened by hand on a profile with saved results (`results/<profile>/metrics.csv`, e.g. the
# committed `embedded` ones), it **shows them** (recall rows, Table 3, the saved grid) and writes nothing.
# With `recompute = True` (or when nothing is saved) it evaluates into `runs/<profile>/by_hand/`
# (git-ignored); only `make reproduce` writes rows to `results/<profile>/metrics.csv`,
# `results/<profile>/table3_retrieval.{md,csv}` and `figures/<profile>/fig5_retrieval_<dataset>.png`.
#
# **Runtime.** smoke: 35 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 20 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to evaluate (None: the profile value: clip and contextclip)
seeds = None  # seeds to evaluate; the grid uses the first (None: the profile value)
retrieval_dataset = None  # caption set for recall@K and the grids (None: the profile value)
retrieval_ks = None  # the K of Recall@K (None: the profile value, [1, 5, 10])
grid_queries = None  # query captions in the grid (None: the profile value)
grid_k = None  # images shown per query (None: the profile value)
recompute = False  # True: evaluate the runs again (into runs/<profile>/by_hand/) instead of showing saved results
pipeline_run = False  # set by make reproduce only: write the profile's results/ and figures/ (never set it by hand)

# %%
import pandas as pd
from IPython.display import display

from contextclip import plots, presentation, results
from contextclip.data.registry import get_dataset
from contextclip.evaluate import embed_dataset, evaluate_runs
from contextclip.interactive import EXAMPLE_CAPTION, caption_box, explorer_for
from contextclip.notebook_utils import (
    interactive_frontend,
    notebook_outputs,
    setup_notebook,
    show_figure,
    show_markdown,
    show_saved_figure,
    show_table,
)

cfg = setup_notebook(profile, methods=methods, seeds=seeds, retrieval_dataset=retrieval_dataset,
                     retrieval_ks=retrieval_ks, grid_queries=grid_queries, grid_k=grid_k, recompute=recompute,
                     pipeline_run=pipeline_run)
out = notebook_outputs(cfg, recompute, pipeline_run)  # what is shown, and where anything computed goes
paths = out.paths
name = cfg.data.retrieval_dataset

# %% [markdown]
# ## 1. Recall@K for every run

# %%
if out.compute:
    run_dirs = [paths.run_dir(method, seed) for method in cfg.train.methods for seed in cfg.train.seeds]
    per_run = pd.DataFrame(evaluate_runs(run_dirs, "retrieval", [name], paths.results, cfg=cfg))
else:  # the saved rows (the line printed by the first cell says which)
    per_run = presentation.saved_rows(paths.results, ["retrieval"], [name], cfg.train.methods, cfg.train.seeds)
per_run = per_run[~per_run["metric"].str.startswith("chance")]
show_table(per_run.pivot_table(index="metric", columns=["method", "seed"], values="value"),
           caption=f"Recall@K on {name} (percent)")
comparison = results.summarize(paths.results, cfg.profile, write=out.compute,  # writes tables only when computing
                               **results.profile_options(cfg))
if out.compute:
    presentation.rewrite_table_files(paths.results, comparison)
show_markdown(presentation.table_markdown(comparison, "table3_retrieval"))
# recall@K never falls as K grows, in both directions, for every run
recall = per_run.pivot_table(index=["method", "seed"], columns="metric", values="value")
for direction in ("text_to_image", "image_to_text"):
    by_k = recall[[f"{direction}_R@{k}" for k in sorted(cfg.eval.retrieval_ks)]].to_numpy()
    assert (by_k[:, 1:] >= by_k[:, :-1] - 1e-9).all(), by_k

# %% [markdown]
# ## 2. The retrieval grid (Fig. 1/5)
#
# Each row is a query caption; the images are each model's top-K, best first, framed green (and
# ticked) when the image answers the caption: it has every attribute the caption states.

# %%
seed = cfg.train.seeds[0]
run_dirs = {m: paths.run_dir(m, seed) for m in ("clip", "contextclip")}
if out.compute:
    for run_dir in run_dirs.values():
        embed_dataset(run_dir, name, cfg)  # cached by section 1; recomputed only if missing
    fig = plots.retrieval_grid_from_runs(run_dirs, name, get_dataset(name, cfg).images,
                                         n_queries=cfg.eval.grid_queries, k=cfg.eval.grid_k, out_dir=paths.figures,
                                         seed=seed, name=f"fig5_retrieval_{name}")
    show_figure(fig)  # saved as fig5_retrieval_<dataset>.png/.pdf
else:
    show_saved_figure(paths.figures / f"fig5_retrieval_{name}.png")

# %% [markdown]
# ## 3. Your own caption
#
# Type a caption and press Enter (or **Search**): each model encodes it and ranks the retrieval set's
# images; below, one image of the profile's digit set with each model's zero-shot class scores
# (the classifier of Table 1: a softmax over the class prompts; change the image number to try
# another). The box uses the `embedded` runs when they are trained (smoke models are untrained and
# rank almost at random), else this profile's. A caption of the set (word for word) has its correct
# images framed; for your own words nothing is framed, since no attributes are known. In a batch run
# (`make test`, `make reproduce`) nobody types, so the example caption is drawn as a figure.

# %%
explorer = explorer_for(cfg)
k = min(cfg.eval.grid_k, explorer.n_images)  # a small caption set (a rehearsal fixture) has fewer images
if interactive_frontend():
    box, search = caption_box(explorer, EXAMPLE_CAPTION, k=k)
    display(box)
else:
    show_figure(plots.caption_query_figure(explorer.query(EXAMPLE_CAPTION, k)))

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/06_retrieval_solutions.ipynb`.
#
# 1. **Predict, then run.** What text-to-image Recall@1 does a random ranking reach on this set?
#    Compare with the chance rows of `metrics.csv`.
# 2. **Change a parameter.** Rerun with `grid_k = 10` and `recompute = True`. How many more framed (correct) images do you
#    expect in the grid, and how does that relate to Recall@5 and Recall@10?
# 3. **Explain a result.** Image-to-text and text-to-image recall differ. Why are they not the same
#    number, when both use the same similarity matrix?
#
# **Next:** `07_report.ipynb` puts everything together.
