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
# # Solutions · 09 The locked-tower regime
#
# Worked answers to the exercises at the end of `09_pretrained_regime.ipynb`, on the runs it trained
# (`runs/<profile>/locked_regime/`; run 09 first). **Runtime:** a minute on smoke (three more seeds and
# two 4-epoch runs train here).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | pretrained

# %%
from contextclip import image_cache, regime
from contextclip.data import build_pair_datasets
from contextclip.model import build_model
from contextclip.notebook_utils import profile_paths, setup_notebook, show_markdown, show_table

cfg = regime.locked(setup_notebook(profile))
paths = profile_paths(cfg)
runs_dir = paths.runs / "locked_regime"
train_ds, val_ds = build_pair_datasets(cfg)
datasets = regime.datasets_of(cfg)[:1]

# %% [markdown]
# ## 1. More seeds
#
# *What you should have seen:* seeds 0-2 are reused (their run folders are finished: "already
# trained"), seeds 3-5 train. The interval's half-width shrinks roughly as t(n-1)/sqrt(n) times the
# spread of the paired differences: with 6 seeds it is usually narrower than with 3, but the spread
# itself is re-estimated, so it can also grow.

# %%
few = regime.paired(regime.train_and_score(cfg, [0, 1, 2], runs_dir, datasets, train_ds, val_ds))
more = regime.paired(regime.train_and_score(cfg, [0, 1, 2, 3, 4, 5], runs_dir, datasets, train_ds, val_ds))
width = {n: float(t["ci_high"].iloc[0] - t["ci_low"].iloc[0]) for n, t in ((3, few), (6, more))}
show_table([{"seeds": n, "interval width": w} for n, w in width.items()])
# both intervals exist (spread over seeds); the 6-seed one rests on twice the seeds
assert all(w == w for w in width.values()) and int(more["seeds"].iloc[0]) == 6 and int(few["seeds"].iloc[0]) == 3

# %% [markdown]
# ## 2. Why the cache is allowed here
#
# *What you should have seen:* a cached feature is valid only if the tower would give the same output
# again. Here the tower is frozen (no gradient, eval mode) and the images are fixed, so it would. In
# the embedded profile the image tower's weights change at every step and each epoch draws new
# augmentations, so yesterday's features are not today's. The kit refuses to cache a trained tower:

# %%
trained = build_model(cfg.updated({"freeze_image": False})).eval()
try:
    image_cache.cached_image_features(trained, train_ds, None)
    refused = False
except ValueError as exc:
    refused = "frozen image tower" in str(exc)
    show_markdown(f"`{exc}`")
assert refused

# %% [markdown]
# ## 3. Fewer epochs
#
# *What you should have seen:* the optimiser steps scale with the epochs (4 of the profile's epochs
# take about 4/E of the time); whether accuracy moves by more than the spread over seeds is what the
# table answers on your machine; on smoke's tiny random towers it barely moves from chance.

# %%
short = regime.train_and_score(cfg.updated({"epochs": 4}), [0], paths.runs / "locked_regime_4ep", datasets,
                               train_ds, val_ds)
full = regime.train_and_score(cfg, [0], runs_dir, datasets, train_ds, val_ds)
show_table([{"epochs": 4, "train seconds": float(short["train_seconds"].mean()), "top1": float(short["top1"].mean())},
            {"epochs": cfg.train.epochs, "train seconds": float(full["train_seconds"].mean()),
             "top1": float(full["top1"].mean())}])
if cfg.train.epochs > 4:  # fewer passes never cost more optimiser time
    assert short["train_seconds"].mean() < full["train_seconds"].mean() * 1.5
