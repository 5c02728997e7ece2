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
# # 08 · Sensitivity: when does the contextual term help?
#
# **Purpose.** The paper reports one setting ($\alpha = 0.5$, no $h$ given) and tuned nothing in
# public. Here ContextCLIP is trained at every $\alpha$ of `sens_alphas` for each reading of a
# "point" (`sens_variants`, see notebook 00) and at every bandwidth $h$ of `sens_bandwidths`, with the
# same seeds as CLIP ($\alpha = 0$), and each setting's zero-shot accuracy is compared with CLIP's
# seed by seed: a 95 % interval per setting, a figure of accuracy against $\alpha$ with its band, and
# one sentence per variant generated from the intervals. The study reports; nothing is chosen from it.
#
# **Inputs.** The profile's pairs (as `02_train`) and its zero-shot sets `sens_datasets` (by default the
# sets of the profile's primary endpoints).
# **Outputs.** Runs in `runs/<profile>/`; `results/<profile>/sensitivity_metrics.csv`,
# `results/<profile>/sensitivity.{md,csv}`; `figures/<profile>/fig_sensitivity_alpha.{png,pdf}`.
#
# **Runtime.** smoke: 15 s, reusing 2 trained runs (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); sensitivity: 12 min 55 s (measured, 2 CPU cores, 2026-12-01). Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).
# CPU cores); sensitivity: see `configs/sensitivity.yaml` (its header gives the measured time);
# embedded and paper do not run this notebook (their `notebooks` list stops at 07).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | sensitivity | sensitivity_pretrained
sens_alphas = None  # alpha values, 0 (CLIP) included (None: the profile value)
sens_variants = None  # contextual-loss variants swept at every alpha (None: the profile value)
sens_bandwidths = None  # h values swept at the profile alpha (None: the profile value)
sens_datasets = None  # zero-shot sets the study reports (None: the profile value; empty: the primary endpoints' sets)
seeds = None  # seeds of every setting, paired across settings (None: the profile value)
epochs = None  # passes over the training pairs per run (None: the profile value)
bootstrap_samples = None  # resamples for the interval when only one seed is paired (None: the profile value)

# %%
from contextclip import plots, sensitivity
from contextclip.notebook_utils import (
    knob_table,
    profile_paths,
    setup_notebook,
    show_figure,
    show_markdown,
    show_table,
)

cfg = setup_notebook(profile, sens_alphas=sens_alphas, sens_variants=sens_variants, sens_bandwidths=sens_bandwidths,
                     sens_datasets=sens_datasets, seeds=seeds, epochs=epochs, bootstrap_samples=bootstrap_samples)
paths = profile_paths(cfg)
points = sensitivity.grid(cfg)
show_table(knob_table(cfg, ["sens_alphas", "sens_variants", "sens_bandwidths", "alpha", "bandwidth", "seeds",
                            "epochs", "image_tower", "n_pairs"]), caption="The study")
print(f"{len(points)} settings x {len(cfg.train.seeds)} seeds = {len(points) * len(cfg.train.seeds)} runs, "
      f"zero-shot on {', '.join(sensitivity.study_datasets(cfg))}")

# %% [markdown]
# ## 1. Train and evaluate every setting
#
# `fit` resumes or reuses finished runs, so an interrupted study continues where it stopped.
# alpha = 0 is CLIP: the contextual term is off, so it is trained once per seed and shared by
# every variant.

# %%
rows = sensitivity.run_study(cfg, paths.runs, paths.results)
print(f"{len(rows)} rows written to {paths.results / sensitivity.METRICS_FILE}")

# %% [markdown]
# ## 2. The table: each setting against CLIP, paired by seed

# %%
table = sensitivity.study_table(paths.results, bootstrap_samples=cfg.eval.bootstrap_samples)
sensitivity.write_outputs(table, cfg, paths.results)
show_markdown(sensitivity.table_markdown(table))
# what this notebook is for: every setting of the grid is in the table of every set, each compared with CLIP
for dataset, rows in sensitivity.by_dataset(table):
    assert sorted(rows["label"]) == sorted(p.label for p in points), (dataset, rows["label"].tolist())
    assert (rows["verdict"] != "baseline").sum() == len(points) - 1, dataset
assert [d for d, _ in sensitivity.by_dataset(table)] == sorted(sensitivity.study_datasets(cfg))

# %% [markdown]
# ## 3. Accuracy against alpha, with its band
#
# Each curve starts at CLIP (alpha = 0, the dashed line and its band); the band around a curve is
# the 95 % t-interval of the mean accuracy over seeds (none with one seed). Whether a setting
# differs from CLIP is read from the paired interval of the table, not from overlapping bands.

# %%
show_figure(plots.sensitivity_figure(table, cfg.loss.alpha, cfg.loss.bandwidth, out_dir=paths.figures))

# %% [markdown]
# ## 4. What the intervals say, one sentence per variant

# %%
said = sensitivity.sentences(table, cfg)
show_markdown("\n".join(f"- {s}" for s in said))
# every alpha of every variant is accounted for in its sentence (per zero-shot set: one sentence per variant, in
# order, then one on h)
variants = cfg.sensitivity.sens_variants
for k, (dataset, _) in enumerate(sensitivity.by_dataset(table)):
    for variant, sentence in zip(variants, said[k * (len(variants) + 1):]):
        assert f"`{variant}`" in sentence and dataset in sentence
        assert all(f"{a:g}" in sentence for a in cfg.sensitivity.sens_alphas if a > 0)

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/08_sensitivity_solutions.ipynb`.
#
# 1. **Predict, then run.** Which setting should match CLIP exactly, seed by seed, whatever the
#    variant? Find it in the table.
# 2. **Change a parameter.** Rerun with more `seeds`. Which column of the table should change most,
#    the mean accuracy or the width of the interval?
# 3. **Explain a result.** A curve of the figure lies above CLIP's band at one alpha, yet the table
#    calls that setting inconclusive. How can both be true?
#
# **Next:** `docs/decisions.md` says which settings are the paper's and which are ours; the README
# links this table and figure.
