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
# # 01 · The data: what each profile trains and evaluates on
#
# **Purpose.** See the image-caption pairs the models are trained on, the evaluation sets behind
# Table 1/2, the t-SNE figures and retrieval, with counts and sample grids; and learn how to bring
# your own `image,caption` manifest.
#
# **Inputs.** The profile's datasets (`contextclip.data`): generated on first use for smoke and
# embedded (cached under `data/`), prepared beforehand for paper (`make data PROFILE=paper`).
# **Outputs.** Sample grids in `runs/<profile>/by_hand/figures/01_*.png` (git-ignored; `make reproduce`
# saves them to `figures/<profile>/`); nothing else is written.
#
# **Runtime.** smoke: 28 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 11 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
train_data = None  # pretraining pairs: synthetic | manifest | cc3m | flickr8k (None: the profile value)
n_pairs = None  # number of pretraining pairs (None: the profile value)
manifest = None  # path to an image,caption CSV when train_data is "manifest" (None: the profile value)
augment = None  # random augmentation of the training images, True | False (None: the profile value)
eval_max_images = None  # cap per evaluation set, 0 means all (None: the profile value)
pipeline_run = False  # set by make reproduce only: save figures to figures/<profile>/ (by hand: runs/<profile>/by_hand/)

# %%
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from contextclip.data import build_pair_datasets
from contextclip.data.registry import DATASETS, get_dataset
from contextclip.notebook_utils import (
    figures_dir,
    image_grid,
    knob_table,
    setup_notebook,
    show_figure,
    show_table,
)

cfg = setup_notebook(profile, train_data=train_data, n_pairs=n_pairs, manifest=manifest, augment=augment,
                     eval_max_images=eval_max_images, pipeline_run=pipeline_run)
figures = figures_dir(cfg, pipeline_run)

# %% [markdown]
# ## 1. The pretraining pairs
#
# The profile's data knobs (one name per knob, as in `configs/<profile>.yaml`):

# %%
show_table(knob_table(cfg, ["train_data", "n_pairs", "image_size", "val_fraction", "augment", "manifest"]))
train_ds, val_ds = build_pair_datasets(cfg)
show_table({"split": ["train", "validation"], "pairs": [len(train_ds), len(val_ds)]},
           caption="Pretraining pairs (the validation pairs only give the validation loss)")
stats = train_ds.report.get("stats", {})
if stats:  # the generated corpus describes itself: variety and balance
    show_table([{"what": k, "value": v if not isinstance(v, dict) else ", ".join(f"{a}: {b}" for a, b in v.items())}
                for k, v in stats.items()], caption="The generated corpus")

# %% [markdown]
# Twelve validation pairs as the model sees them (images already resized to the profile's
# `image_size`; the caption is the text the text tower reads):

# %%
samples = [val_ds[i] for i in range(min(12, len(val_ds)))]
fig = image_grid([img for img, _ in samples], [cap for _, cap in samples], ncols=6,
                 title=f"{cfg.data.train_data}: validation pairs ({cfg.profile})")
show_figure(fig, figures / "01_pairs_val.png")

# %% [markdown]
# The first six training pairs as epoch 0 and epoch 1 see them: with `augment: true` each epoch
# draws a new, seeded augmentation and one of the image's captions (the validation pairs above are
# never augmented).

# %%
samples = []
for epoch in (0, 1):
    train_ds.set_epoch(epoch)
    samples += [train_ds[i] for i in range(6)]
train_ds.set_epoch(0)
# what the grid shows: with augmentation on, the same pair gives a different image each epoch (and the same without)
assert any(not torch.equal(samples[i][0], samples[i + 6][0]) for i in range(6)) == cfg.data.augment
fig = image_grid([img for img, _ in samples], [cap for _, cap in samples], ncols=6,
                 title=f"training pairs: epoch 0 (top), epoch 1 (bottom); augment = {cfg.data.augment}")
show_figure(fig, figures / "01_pairs_train.png")

# %% [markdown]
# ## 2. The evaluation sets
#
# Each evaluation set is a registry entry (`contextclip.data.registry.DATASETS`). Classification sets
# carry class names and prompt templates (zero-shot, Table 1; fine-tuning, Table 2; t-SNE, Fig. 6/7);
# caption sets carry several captions per image (retrieval, Fig. 1/5). The profile uses:

# %%
uses = {}
for name in cfg.data.zero_shot_datasets:
    uses.setdefault(name, []).append("zero-shot")
for name in cfg.data.fine_tune_datasets:
    uses.setdefault(name, []).append("fine-tune")
uses.setdefault(cfg.data.tsne_dataset, []).append("t-SNE")
uses.setdefault(cfg.data.retrieval_dataset, []).append("retrieval")

eval_sets, rows = {}, []
for name, used_for in uses.items():
    ds = get_dataset(name, cfg)
    eval_sets[name] = ds
    if hasattr(ds, "classnames"):
        rows.append({"dataset": name, "kind": "classes", "used for": ", ".join(used_for), "images": len(ds.labels),
                     "classes / captions": len(ds.classnames), "templates": str(len(ds.templates)),
                     "example text": ds.templates[0].format(ds.classnames[0])})
    else:
        rows.append({"dataset": name, "kind": "captions", "used for": ", ".join(used_for), "images": len(ds.captions),
                     "classes / captions": sum(len(c) for c in ds.captions), "templates": "-",
                     "example text": ds.captions[0][0]})
show_table(rows, caption=f"Evaluation sets of the {cfg.profile} profile (registry: {len(DATASETS)} sets)")

# %% [markdown]
# One image per class for each classification set, and the first caption of a few images of the
# caption set:

# %%
for name, ds in eval_sets.items():
    if hasattr(ds, "classnames"):
        labels = torch.as_tensor(ds.labels)
        first = [int((labels == c).nonzero()[0]) for c in range(len(ds.classnames)) if (labels == c).any()][:12]
        imgs = ds.images[first] if isinstance(ds.images, torch.Tensor) else [ds.images[i][0] for i in first]
        titles = [ds.classnames[int(labels[i])] for i in first]
    else:
        first = list(range(min(6, len(ds.captions))))
        imgs = ds.images[first] if isinstance(ds.images, torch.Tensor) else [ds.images[i][0] for i in first]
        titles = [ds.captions[i][0] for i in first]
    show_figure(image_grid(imgs, titles, ncols=6, title=name), figures / f"01_{name}.png")

# %% [markdown]
# ## 3. Bring your own pairs: an `image,caption` manifest
#
# To pretrain on your own data, write a CSV with a header and one row per pair: `image` is a path
# (absolute, or relative to the CSV's folder), `caption` the text. Check it before training:
#
# ```bash
# python -m contextclip data check my_pairs.csv            # names every bad row, exit 1 if any
# python -m contextclip data check my_pairs.csv --skip-bad # also writes a cleaned copy beside it
# ```
#
# then train with `train_data: manifest` and `manifest: my_pairs.csv` (a profile YAML with
# `base: embedded`, or `--set train_data=manifest --set manifest=my_pairs.csv`). Below, a tiny
# manifest from three validation pairs plus two bad rows, checked with the same command:

# %%
from PIL import Image

demo = Path(tempfile.mkdtemp(prefix="manifest_demo_"))
lines = ["image,caption"]
for i in range(3):
    img, cap = val_ds[i]
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(demo / f"pair{i}.png")
    lines.append(f'pair{i}.png,"{cap}"')
lines += ["missing.png,an image that is not there", "pair0.png,   "]
(demo / "pairs.csv").write_text("\n".join(lines) + "\n")
print((demo / "pairs.csv").read_text())
check = subprocess.run([sys.executable, "-m", "contextclip", "data", "check", str(demo / "pairs.csv")],
                       capture_output=True, text=True)
print(check.stdout, check.stderr, f"exit code {check.returncode}", sep="\n")

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/01_data_solutions.ipynb`.
#
# 1. **Predict, then run.** The smoke profile has `n_pairs: 320`, `val_fraction: 0.1` and
#    `batch_size: 32`. How many training pairs, validation pairs and optimisation steps per epoch
#    do you expect? Check against section 1's table.
# 2. **Change a parameter.** Rerun with `augment = False` (the parameters cell). Do epoch 0 and
#    epoch 1 see the same images for the same pairs? Predict, then compare the two rows of the second grid.
# 3. **Explain a result.** The manifest check in section 3 ends with exit code 1 and names two rows.
#    Why does the kit stop and name them instead of skipping bad rows silently?
#
# **Next:** `02_train.ipynb` trains CLIP and ContextCLIP on the pairs of section 1.
