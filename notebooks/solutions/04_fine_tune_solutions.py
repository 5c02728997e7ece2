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
# # Solutions · 04 Fine-tuning and the linear probe
#
# Worked answers to the exercises at the end of `04_fine_tune.ipynb`. Reads the `metrics.csv` that 03 and
# 04 showed (the profile's saved results, or `runs/<profile>/by_hand/results/`; run 03 and 04 first).
# **Runtime:** a few seconds.

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read
recompute = False  # True: read your by-hand results (runs/<profile>/by_hand/), as the notebook with recompute = True

# %%
from contextclip import exercises, results
from contextclip.notebook_utils import notebook_outputs, setup_notebook, show_markdown, show_table

cfg = setup_notebook(profile, recompute=recompute)
paths = notebook_outputs(cfg, recompute).paths
m = results.read_metrics(paths.results / "metrics.csv")
top1 = m[m["metric"] == "top1"].pivot_table(index=["method", "seed"], columns=["task", "dataset"], values="value")

# %% [markdown]
# ## 1. Fine-tuning against the linear probe
#
# *What you should have seen:* the numbers below, per run; which is higher is an outcome of the run,
# not a rule, so this answer reports it rather than asserting it. Fine-tuning can adapt the image
# tower to the labels, the probe only draws a line through frozen features, so fine-tuning is usually
# at least as good; with a tiny tower and few epochs the probe can come out ahead.

# %%
name = cfg.data.fine_tune_datasets[0]
both = top1[[("fine_tune", name), ("linear_probe", name)]]
show_table(both, caption=f"{name}: top-1 (%)")
gap = (both[("fine_tune", name)] - both[("linear_probe", name)]).mean()
show_markdown(f"Fine-tuning minus linear probe, mean over runs: {gap:+.1f} points: "
              f"{'fine-tuning' if gap > 0 else 'the probe'} is higher, by {'more' if abs(gap) > 5 else 'less'} "
              "than 5 points.")

# %% [markdown]
# ## 2. `best_epoch`
#
# *What you should have seen:* early stopping keeps the epoch with the best validation accuracy. A
# `best_epoch` equal to `ft_epochs` means the last epoch was still the best: validation accuracy was
# still rising, so more epochs could help. A smaller one means it had stopped improving.

# %%
ft = m[m["task"] == "fine_tune"].pivot_table(index=["method", "seed", "dataset"], columns="metric", values="value")
show_table(ft[["best_epoch", "epochs_run"]], caption=f"ft_epochs = {cfg.eval.ft_epochs}")
exercises.best_epoch_in_range(ft["best_epoch"].tolist(), ft["epochs_run"].tolist(), cfg.eval.ft_epochs)
best = ft["best_epoch"]
at_end = int((best == cfg.eval.ft_epochs).sum())
show_markdown(f"{at_end} of {len(best)} runs were still improving at the last epoch.")

# %% [markdown]
# ## 3. Fine-tuning shrinks the difference
#
# *What you should have seen:* after fine-tuning, both models were trained on the same labels, so
# most of what pretraining gave (or did not give) is overwritten; the zero-shot number uses the
# pretrained embeddings alone. Differences between pretraining methods show most in zero-shot.
# Checked below on profiles that give verdicts (embedded: -2.4 points zero-shot, +0.2 after fine-tuning,
# on `digits`); on smoke both differences are noise around 0, so the numbers are shown, not judged.

# %%
rows = []
for task in ("zero_shot", "fine_tune"):
    if (task, name) in top1:
        col = top1[(task, name)]
        rows.append({"task": task, "CLIP": col.xs("clip").mean(), "ContextCLIP": col.xs("contextclip").mean(),
                     "ContextCLIP - CLIP": col.xs("contextclip").mean() - col.xs("clip").mean()})
show_table(rows, caption=f"{name}, top-1 (%), mean over seeds")
if len(rows) == 2 and cfg.eval.verdicts:  # on smoke (no verdicts) both differences are noise: reported, not judged
    exercises.fine_tuning_shrinks(rows[0]["ContextCLIP - CLIP"], rows[1]["ContextCLIP - CLIP"])
