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
# # Solutions · 01 The data
#
# Worked answers to the exercises at the end of `01_data.ipynb`; every number is computed here.
# **Runtime:** about 20 s on the smoke profile (CPU).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read

# %%
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from contextclip import exercises
from contextclip.config import load_config
from contextclip.data import build_pair_datasets
from contextclip.notebook_utils import setup_notebook, show_table
from contextclip.train import epoch_batches

cfg = setup_notebook(profile)

# %% [markdown]
# ## 1. Pairs and steps
#
# *What you should have seen:* the validation pairs are `val_fraction` of `n_pairs` (rounded), the rest
# are training pairs, and an epoch is `n_train // batch_size` steps (the last partial batch is dropped:
# the contrastive loss compares every pair with the others of its batch, so batches keep one size).

# %%
train_ds, val_ds = build_pair_datasets(cfg)
n_train, n_val = len(train_ds), len(val_ds)
steps = len(epoch_batches(n_train, cfg.train.batch_size, seed=0, epoch=0))  # the batches fit() takes
show_table([{"n_pairs": cfg.data.n_pairs, "val_fraction": cfg.data.val_fraction, "train": n_train,
             "validation": n_val, "batch_size": cfg.train.batch_size, "steps per epoch": steps}])
exercises.split_sizes(cfg.data.n_pairs, cfg.data.val_fraction, n_train, n_val, cfg.train.batch_size, steps)

# %% [markdown]
# ## 2. Augmentation across epochs
#
# *What you should have seen:* with `augment: false` each pair is the same image in every epoch;
# with `augment: true` each epoch draws a new, seeded augmentation (and possibly another caption).

# %%
def epoch_images(augment):
    ds, _ = build_pair_datasets(load_config(profile, {"augment": augment}))
    out = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        out.append(torch.stack([ds[i][0] for i in range(6)]))
    return out


same = {augment: torch.equal(*epoch_images(augment)) for augment in (False, True)}
show_table([{"augment": a, "epoch 0 images == epoch 1 images": s} for a, s in same.items()])
exercises.augmentation_per_epoch(same)

# %% [markdown]
# ## 3. Why the manifest check stops
#
# *What you should have seen:* exit code 1 with both bad rows named: the missing file and the blank
# caption. Skipping them silently would train on fewer pairs than you think, or on an image paired
# with an empty caption; naming them lets you fix the data or opt in to `--skip-bad`, which writes a
# cleaned copy you can inspect.

# %%
demo = Path(tempfile.mkdtemp(prefix="manifest_exercise_"))
img, cap = val_ds[0]
Image.fromarray(img.permute(1, 2, 0).numpy()).save(demo / "ok.png")
(demo / "pairs.csv").write_text(f'image,caption\nok.png,"{cap}"\nmissing.png,a missing image\nok.png,   \n')
check = subprocess.run([sys.executable, "-m", "contextclip", "data", "check", str(demo / "pairs.csv")],
                       capture_output=True, text=True)
print(check.stdout + check.stderr)
exercises.manifest_check_stops(check.returncode, check.stdout + check.stderr,
                                ["line 3: missing.png", "line 4: ok.png: empty caption"])
