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
# # 03 · Zero-shot classification (Table 1)
#
# **Purpose.** Classify held-out images from prompts alone: each class is the mean text embedding
# of its prompt templates ("the digit 7."), each image gets the class whose embedding is closest.
# What "held-out" means differs by set (data/README.md): no evaluation image is a training image or a
# near-duplicate of one, but the generated shape sets are *in-distribution* (new renderings of the
# classes the corpus names), real MNIST and sklearn digits are *transfer* from rendered to handwritten
# digits whose names the captions do use, and only `novel_shapes` holds classes that no training
# caption names (zero-shot in the paper's sense). `mnist_test` is the 4,000-digit test part; the
# embedded profile's recipe was chosen on the 1,000 validation digits (`mnist_val`), never here. Top-1, top-5 and mean-per-class recall for every run and set, then
# Table 1: CLIP and ContextCLIP (mean $\pm$ std over seeds), their paired difference with a 95 %
# interval, chance level and the paper's numbers.
#
# **Inputs.** The trained runs of `02_train`; the profile's `zero_shot_datasets`.
# **Outputs.** Opened by hand on a profile with saved results (`results/<profile>/metrics.csv`, e.g. the
# committed `embedded` ones), it **shows them** and writes nothing. With `recompute = True` (or when nothing
# is saved) it evaluates into `runs/<profile>/by_hand/results/` (git-ignored); only `make reproduce`
# writes rows to `results/<profile>/metrics.csv` and `results/<profile>/table1_zero_shot.{md,csv}`.
# Embeddings are cached in each run's `embeddings/`.
#
# **Runtime.** smoke: 32 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 28 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to evaluate (None: the profile value: clip and contextclip)
seeds = None  # seeds to evaluate (None: the profile value; each must have been trained by 02_train)
zero_shot_datasets = None  # classification sets for Table 1 (None: the profile value)
eval_max_images = None  # cap per evaluation set, 0 means all (None: the profile value)
bootstrap_samples = None  # resamples for the interval when only one seed is paired (None: the profile value)
recompute = False  # True: evaluate the runs again (into runs/<profile>/by_hand/) instead of showing saved results
pipeline_run = False  # set by make reproduce only: write the profile's results/ (never set it by hand)

# %%
import pandas as pd

from contextclip import presentation, results
from contextclip.data import leakage
from contextclip.evaluate import evaluate_runs
from contextclip.notebook_utils import notebook_outputs, setup_notebook, show_markdown, show_table

cfg = setup_notebook(profile, methods=methods, seeds=seeds, zero_shot_datasets=zero_shot_datasets,
                     eval_max_images=eval_max_images, bootstrap_samples=bootstrap_samples, recompute=recompute,
                     pipeline_run=pipeline_run)
out = notebook_outputs(cfg, recompute, pipeline_run)  # what is shown, and where anything computed goes
paths = out.paths

# %% [markdown]
# ## 1. How many prompts are training captions?
#
# A prompt that occurs word for word among the training captions was *seen* in training, with
# images of its class. `mnist_test_heldout_templates` scores the same test digits with templates that
# occur in no training caption, so the table below reports both.

# %%
if cfg.data.train_data == "synthetic":
    overlap = leakage.prompt_overlap(cfg)
    show_table(overlap, caption="Zero-shot prompts that occur verbatim among the training captions")

# %% [markdown]
# ## 2. Evaluate every run on every set (or show the saved evaluation)
#
# The images and prompts are embedded once per run and cached; re-running is fast. On a profile with
# saved results the rows are read from its `metrics.csv` instead (the line printed above says which).

# %%
if out.compute:
    run_dirs = [paths.run_dir(method, seed) for method in cfg.train.methods for seed in cfg.train.seeds]
    per_run = pd.DataFrame(evaluate_runs(run_dirs, "zero_shot", cfg.data.zero_shot_datasets, paths.results, cfg=cfg))
else:
    per_run = presentation.saved_rows(paths.results, ["zero_shot"], cfg.data.zero_shot_datasets, cfg.train.methods,
                                      cfg.train.seeds)
show_table(per_run.pivot_table(index=["dataset", "metric"], columns=["method", "seed"], values="value"),
           caption="Zero-shot, per run (percent)")

# %% [markdown]
# ## 3. Table 1: CLIP vs ContextCLIP beside the paper
#
# `results.summarize` reads `metrics.csv` alone (it never re-encodes); when this run computes, it also
# writes the tables. On the smoke profile a banner replaces the verdicts: its numbers measure nothing.
# With one seed the interval is a paired bootstrap over test images; with several, a t-interval over
# the seeds' paired differences.

# %%
comparison = results.summarize(paths.results, cfg.profile, write=out.compute,  # writes tables only when computing
                               **results.profile_options(cfg))
if out.compute:
    presentation.rewrite_table_files(paths.results, comparison)
show_markdown(presentation.table_markdown(comparison, "table1_zero_shot"))
show_markdown(presentation.differences(comparison.tables["table1_zero_shot"], cfg.eval.verdicts))
# Table 1 has every set of the profile; per run, top-1 never exceeds top-5 and both are percentages
assert set(cfg.data.zero_shot_datasets) <= set(comparison.tables["table1_zero_shot"]["dataset"])
acc = per_run.pivot_table(index=["method", "seed", "dataset"], columns="metric", values="value")
assert ((0 <= acc["top1"]) & (acc["top1"] <= acc["top5"]) & (acc["top5"] <= 100)).all()

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/03_zero_shot_solutions.ipynb`.
#
# 1. **Predict, then run.** What top-1 and top-5 accuracy does a random guess reach on a
#    10-class set? Compare with the `chance` column of Table 1.
# 2. **Change a parameter.** Rerun with `eval_max_images = 100` and `recompute = True` (your rows go to
#    `runs/<profile>/by_hand/`). Predict how the width of the 95 % interval changes (hint: with one seed
#    the interval comes from resampling test images).
# 3. **Explain a result.** Pick a row whose interval holds 0. Is ContextCLIP better, worse, or
#    neither there? What would you need to tell them apart?
#
# **Next:** `04_fine_tune.ipynb` (Table 2).
