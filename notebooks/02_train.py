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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train CLIP and ContextCLIP
#
# **Purpose.** Train both methods on the profile's pairs, for each of its seeds: CLIP is ContextCLIP
# with $\alpha = 0$ (`cfg.for_method("clip")`), so the two runs differ only in the contextual term.
# `fit` resumes an interrupted run from its checkpoint and returns a finished run's summary without
# training again, so re-running this notebook is cheap.
#
# **Inputs.** The pairs of `01_data` (built again here, cached under `data/`).
# **Outputs.** `runs/<profile>/<method>-seed<k>/` (config, environment, history, checkpoint, summary);
# `figures/<profile>/fig_training_curves.{png,pdf}`.
#
# **Runtime.** smoke: not measured yet; embedded: 4 min 48 s (measured, 2 CPU cores, 2026-11-28); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to train, from clip | contextclip (None: the profile value: both)
seeds = None  # one run per method and seed (None: the profile value)
epochs = None  # passes over the training pairs (None: the profile value; a finished run with other epochs is refused)

# %%


from contextclip import plots
from contextclip.data import build_pair_datasets
from contextclip.multirun import fit_runs
from contextclip.notebook_utils import knob_table, profile_paths, setup_notebook, show_figure, show_table

cfg = setup_notebook(profile, methods=methods, seeds=seeds, epochs=epochs)
paths = profile_paths(cfg)
show_table(knob_table(cfg, ["image_tower", "text_tower", "embed_dim", "alpha", "bandwidth", "cx_variant",
                            "temperature", "learn_temperature", "epochs", "batch_size", "lr_image", "lr_text",
                            "lr_head", "seeds"]), caption="What is trained")

# %% [markdown]
# ## 1. Train (or resume, or reuse) each run
#
# The pairs are built once and shared by every run. Progress bars show the running loss; a finished
# run prints its summary at once. With `train_workers` > 1 (embedded: 2) the runs train side by side in
# that many processes, one CPU thread each; every run gets the same result as when trained alone.

# %%
train_ds, val_ds = build_pair_datasets(cfg)
jobs = [(method, seed, paths.run_dir(method, seed)) for method in cfg.train.methods for seed in cfg.train.seeds]
summaries = fit_runs(cfg, jobs, train_ds, val_ds, workers=cfg.train.train_workers)
cols = ["method", "seed", "epochs", "final_val_loss", "seconds", "pairs_per_second", "n_train", "global_batch"]
show_table([{k: s.get(k) for k in cols} for s in summaries], caption="Training runs")
# the two methods differ in alpha alone, and every run ended with a finite validation loss
assert {k for k, v in cfg.for_method("clip").to_flat().items() if v != cfg.to_flat()[k]} <= {"alpha"}
assert all(s["final_val_loss"] == s["final_val_loss"] for s in summaries), summaries

# %% [markdown]
# ## 2. The loss terms
#
# `history.jsonl` of each run holds the total loss, the contrastive term and the contextual term per
# logging step, and the validation loss per epoch. CLIP does not train on the contextual term (its training
# value is 0), but its value on the held-out pairs is measured for both methods (the validation curves).

# %%
runs = {f"{m}-seed{s}": paths.run_dir(m, s) for m in cfg.train.methods for s in cfg.train.seeds}
show_figure(plots.training_curves(runs, out_dir=paths.figures))  # saved as fig_training_curves.png/.pdf

# %% [markdown]
# **Next:** `03_zero_shot.ipynb` classifies unseen images with class-name prompts (Table 1).
