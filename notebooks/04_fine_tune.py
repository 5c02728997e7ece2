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
# # 04 · Fine-tuning and the linear probe (Table 2)
#
# **Purpose.** How good are the learned image features once labels are allowed? Two ways:
# end-to-end **fine-tuning** of the image tower with a linear head initialised from the zero-shot class
# embeddings (Table 2 of the paper), and a **linear probe**, a logistic regression on frozen features.
# Splits: the official test split where one exists, otherwise 70/20/10, stratified and seeded.
#
# **Inputs.** The trained runs of `02_train`; the profile's `fine_tune_datasets`.
# **Outputs.** Opened by hand on a profile with saved results (`results/<profile>/metrics.csv`, e.g. the
# committed `embedded` ones), it **shows them** and writes nothing. With `recompute = True` (or when nothing
# is saved) it fine-tunes into `runs/<profile>/by_hand/results/` (git-ignored); only `make reproduce`
# writes rows to `results/<profile>/metrics.csv` and `results/<profile>/table2_fine_tune.{md,csv}`.
#
# **Runtime.** smoke: 32 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 65 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to evaluate (None: the profile value: clip and contextclip)
seeds = None  # seeds to evaluate (None: the profile value; each must have been trained by 02_train)
fine_tune_datasets = None  # classification sets for Table 2 (None: the profile value)
ft_epochs = None  # maximum fine-tuning epochs, with early stopping (None: the profile value)
eval_max_images = None  # cap per evaluation set, 0 means all (None: the profile value)
bootstrap_samples = None  # resamples for the interval when only one seed is paired (None: the profile value)
recompute = False  # True: fine-tune and probe again (into runs/<profile>/by_hand/) instead of showing saved results
pipeline_run = False  # set by make reproduce only: write the profile's results/ (never set it by hand)

# %%
import pandas as pd

from contextclip import presentation, results
from contextclip.evaluate import evaluate_runs
from contextclip.notebook_utils import notebook_outputs, setup_notebook, show_markdown, show_table

cfg = setup_notebook(profile, methods=methods, seeds=seeds, fine_tune_datasets=fine_tune_datasets,
                     ft_epochs=ft_epochs, eval_max_images=eval_max_images, bootstrap_samples=bootstrap_samples,
                     recompute=recompute, pipeline_run=pipeline_run)
out = notebook_outputs(cfg, recompute, pipeline_run)  # what is shown, and where anything computed goes
paths = out.paths

# %% [markdown]
# ## 1. Fine-tune and probe every run on every set
#
# Fine-tuning stops when validation top-1 has not improved for `ft_patience` epochs
# (`stopped_on_validation` = 1; `ft_epochs` is only a cap). The probe's C is chosen on validation
# from a grid that grows until the choice is bracketed (`C_bracketed` = 1).

# %%
if out.compute:
    run_dirs = [paths.run_dir(method, seed) for method in cfg.train.methods for seed in cfg.train.seeds]
    rows = evaluate_runs(run_dirs, "fine_tune", cfg.data.fine_tune_datasets, paths.results, cfg=cfg)
    rows += evaluate_runs(run_dirs, "linear_probe", cfg.data.fine_tune_datasets, paths.results, cfg=cfg)
    per_run = pd.DataFrame(rows)
else:  # the saved rows (the line printed by the first cell says which)
    per_run = presentation.saved_rows(paths.results, ["fine_tune", "linear_probe"], cfg.data.fine_tune_datasets,
                                      cfg.train.methods, cfg.train.seeds)
per_run = per_run[per_run["metric"].isin(["top1", "top5", "best_epoch", "epochs_run", "stopped_on_validation", "C",
                                          "C_bracketed"])]
show_table(per_run.pivot_table(index=["task", "dataset", "metric"], columns=["method", "seed"], values="value"),
           caption="Fine-tuning and linear probe, per run")

# %% [markdown]
# ## 2. Table 2 beside the paper

# %%
comparison = results.summarize(paths.results, cfg.profile, write=out.compute,  # writes tables only when computing
                               **results.profile_options(cfg))
if out.compute:
    presentation.rewrite_table_files(paths.results, comparison)
show_markdown(presentation.table_markdown(comparison, "table2_fine_tune"))
show_markdown(presentation.differences(comparison.tables["table2_fine_tune"], cfg.eval.verdicts))
# both evaluations ran for every run and set, and their accuracies are percentages
assert set(map(tuple, per_run[["task", "dataset"]].drop_duplicates().to_numpy())) == {
    (t, d) for t in ("fine_tune", "linear_probe") for d in cfg.data.fine_tune_datasets}
assert per_run[per_run["metric"] == "top1"]["value"].between(0, 100).all()

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/04_fine_tune_solutions.ipynb`.
#
# 1. **Predict, then run.** Which is higher, end-to-end fine-tuning or the linear probe on frozen
#    features? By more or less than 5 points?
# 2. **Change a parameter.** Look at `best_epoch` in the per-run table, then rerun with a larger
#    `ft_epochs` (and `recompute = True`). What does a `best_epoch` equal to `ft_epochs` tell you?
# 3. **Explain a result.** Compare the ContextCLIP - CLIP difference on `digits` after fine-tuning
#    with the zero-shot difference on the same set (notebook 03). Why does fine-tuning shrink it?
#
# **Next:** `05_tsne.ipynb` looks at the embeddings themselves.
