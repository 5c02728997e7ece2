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
# # 02 · Train CLIP and ContextCLIP
#
# **Purpose.** Train both methods on the profile's pairs, for each of its seeds: CLIP is ContextCLIP
# with $\alpha = 0$ (`cfg.for_method("clip")`), so the two runs differ only in the contextual term.
# `fit` resumes an interrupted run from its checkpoint and returns a finished run's summary without
# training again, so re-running this notebook is cheap.
#
# **Inputs.** The pairs of `01_data` (built again here, cached under `data/`).
# **Outputs.** `runs/<profile>/<method>-seed<k>/` (config, environment, history, checkpoint, summary);
# `fig_training_curves.{png,pdf}` in `runs/<profile>/by_hand/figures/` (git-ignored; `make reproduce` saves it
# to `figures/<profile>/`).
#
# **Runtime.** smoke: 39 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 6 min 02 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
methods = None  # methods to train, from clip | contextclip (None: the profile value: both)
seeds = None  # one run per method and seed (None: the profile value)
epochs = None  # passes over the training pairs (None: the profile value; a finished run with other epochs is refused)
alpha = None  # weight of the contextual term for contextclip runs (None: the profile value; clip always uses 0)
fresh = False  # True: delete these runs and train them again (needed after changing epochs or alpha)
pipeline_run = False  # set by make reproduce only: save figures to figures/<profile>/ (by hand: runs/<profile>/by_hand/)

# %%
import copy
import math

import torch
import torch.nn.functional as F

from contextclip import plots
from contextclip.data import build_pair_datasets
from contextclip.data.collate import PairCollator
from contextclip.losses import ContextCLIPLoss, contextual_loss
from contextclip.model import build_model, pool_tokens
from contextclip.multirun import fit_runs
from contextclip.notebook_utils import (
    figures_dir,
    knob_table,
    profile_paths,
    setup_notebook,
    show_figure,
    show_table,
)
from contextclip.runs import seed_everything
from contextclip.train import StepParts, make_optimizer, train_step

cfg = setup_notebook(profile, methods=methods, seeds=seeds, epochs=epochs, alpha=alpha, fresh=fresh,
                     pipeline_run=pipeline_run)
paths = profile_paths(cfg)
show_table(knob_table(cfg, ["image_tower", "text_tower", "embed_dim", "alpha", "bandwidth", "cx_variant",
                            "temperature", "learn_temperature", "epochs", "batch_size", "lr_image", "lr_text",
                            "lr_head", "ema_decay", "seeds"]), caption="What is trained")

# %% [markdown]
# ## 1. Train (or resume, or reuse) each run
#
# The pairs are built once and shared by every run. Progress bars show the running loss; a finished
# run prints its summary at once. With `train_workers` > 1 (embedded: 2) the runs train side by side in
# that many processes, one CPU thread each; every run gets the same result as when trained alone.
# With `ema_decay` > 0 (embedded: 0.995) a run also keeps a moving average of its weights, updated
# after every step; the validation loss and every later notebook use that average, which varies
# less from seed to seed than the last weights do (`contextclip/ema.py`).

# %%
train_ds, val_ds = build_pair_datasets(cfg)
# seed by seed, both methods of a seed together: a run stopped part-way leaves complete pairs
jobs = [(method, seed, paths.run_dir(method, seed)) for seed in cfg.train.seeds for method in cfg.train.methods]
summaries = fit_runs(cfg, jobs, train_ds, val_ds, workers=cfg.train.train_workers, fresh=fresh)
cols = ["method", "seed", "epochs", "final_val_loss", "seconds", "pairs_per_second", "n_train", "global_batch"]
show_table([{k: s.get(k) for k in cols} for s in summaries], caption="Training runs")
# the two methods differ in alpha alone, and every run ended with a finite validation loss
assert {k for k, v in cfg.for_method("clip").to_flat().items() if v != cfg.to_flat()[k]} <= {"alpha"}
assert all(s["final_val_loss"] == s["final_val_loss"] for s in summaries), summaries

# %% [markdown]
# ## 2. The loss terms
#
# `history.jsonl` of each run holds the total loss, the contrastive term and the contextual term per
# logging step, and the validation loss per epoch. CLIP does not train on the contextual term, but its
# value is measured for both methods (on the training batches and on the held-out pairs), so the
# contextual panel shows whether CLIP lowers it anyway.
# The two terms get a panel each: the totals are not
# comparable (CLIP's is the contrastive term alone, ContextCLIP's adds alpha times the contextual term).
# With several seeds, the line is their mean and the band their range.

# %%
runs = {f"{m}-seed{s}": paths.run_dir(m, s) for m in cfg.train.methods for s in cfg.train.seeds}
show_figure(plots.training_curves(runs, out_dir=figures_dir(cfg, pipeline_run)))  # saved as fig_training_curves.png/.pdf

# %% [markdown]
# ## 3. Under the hood: one training step by hand
#
# `fit` repeats `train.train_step` over the batches. Here is that step written out, on a fresh
# ContextCLIP model and the first training batch: forward through both towers, the two loss terms,
# backward, the optimiser step. A copy of the same model takes the library's `train_step` on the same
# batch; afterwards the loss terms and the gradients of the two copies must agree up to float
# rounding, and so must every weight whose gradient is above rounding noise (Adam's first update is
# about lr x sign(gradient), so where a gradient is noise around 0 the two steps may point either way). (The learning-rate schedule steps
# once per step outside this; with `precision: bf16` the library runs the towers under autocast.)

# %%
ctx_cfg = cfg.for_method("contextclip")
seed_everything(cfg.train.seeds[0])
model = build_model(ctx_cfg).train()
twin = copy.deepcopy(model)  # the library's copy
collate = PairCollator(model.tokenizer, ctx_cfg.model.max_length)
batch = collate([train_ds[i] for i in range(ctx_cfg.train.batch_size)])
lam, a, h = ctx_cfg.loss.image_to_text_weight, ctx_cfg.loss.alpha, ctx_cfg.loss.bandwidth

# forward: towers -> heads -> L2-normalise (the paper's I_e and T_e), and the logit scale 1/tau
opt = make_optimizer(model, ctx_cfg)
torch.manual_seed(0)  # the same dropout masks as the library's copy below
img_feat = model.image_tower(model.preprocess(batch["images"]))  # [N, image_dim]
hidden = model.text_tower(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
txt_feat = pool_tokens(hidden, batch["attention_mask"], model.pooling)  # [N, text_dim]
I_e = F.normalize(model.image_head(img_feat), dim=-1)  # [N, D]
T_e = F.normalize(model.text_head(txt_feat), dim=-1)  # [N, D]
scale = model.logit_scale.exp().clamp(max=model.max_logit_scale)  # 1/tau
# the two loss terms (Eq. 2-4 and Eq. 5-9) and Eq. 1
logits = scale * I_e @ T_e.T  # [N, N]; pair i is the diagonal
target = torch.arange(len(logits))
l_clip = lam * F.cross_entropy(logits, target) + (1 - lam) * F.cross_entropy(logits.T, target)
l_cx = contextual_loss(I_e, T_e, h, ctx_cfg.loss.cx_eps, ctx_cfg.loss.cx_variant)
loss = l_clip + a * l_cx
# backward and the optimiser step
opt.zero_grad()
loss.backward()
if ctx_cfg.train.grad_clip > 0:
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], ctx_cfg.train.grad_clip)
opt.step()
with torch.no_grad():  # CLIP's clamp of the learned log(1/tau)
    model.logit_scale.clamp_(max=math.log(model.max_logit_scale))

# the library's step on the twin, same batch, same dropout masks
twin_opt = make_optimizer(twin, ctx_cfg)
torch.manual_seed(0)
twin_loss = ContextCLIPLoss(alpha=a, bandwidth=h, eps=ctx_cfg.loss.cx_eps, variant=ctx_cfg.loss.cx_variant,
                            image_to_text_weight=lam)
lib = train_step(StepParts(twin, twin_loss, twin_opt, grad_clip=ctx_cfg.train.grad_clip), batch)
by_hand = {"loss": loss.item(), "contrastive_loss": l_clip.item(), "contextual_loss": l_cx.item()}
pairs = [(p, q) for p, q in zip(model.parameters(), twin.parameters()) if p.grad is not None]
grad_scale = max(q.grad.abs().max().item() for _, q in pairs)
grad_gap = max((p.grad - q.grad).abs().max().item() for p, q in pairs) / grad_scale
# Adam's first update is about lr * sign(gradient): where a gradient is rounding noise around 0, its
# sign (and so the step) may differ between two equal computations. Compare where the gradient is real.
weight_gap = max(((p - q).abs() * (q.grad.abs() > 1e-3 * grad_scale)).max().item() for p, q in pairs)
lr = max(g["lr"] for g in twin_opt.param_groups)
show_table([{"term": k, "by hand": v, "train_step": lib[k].item()} for k, v in by_hand.items()],
           caption="One step, by hand and by the library", floatfmt="{:.6f}")
print(f"gradients: largest difference {grad_gap:.1e} x the largest gradient; weights after the "
      f"step (where |gradient| > 1e-3 x the largest): largest difference {weight_gap:.1e}, against a step of "
      f"about lr = {lr:g}")
assert all(abs(v - lib[k].item()) < 1e-5 for k, v in by_hand.items())
assert grad_gap < 1e-4  # the same gradients, up to float rounding
assert weight_gap < 0.05 * lr  # equal steps wherever the gradient is above rounding noise

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/02_train_solutions.ipynb`.
#
# 1. **Predict, then run.** In section 3, set `a = 0` before the step. Which of the two towers'
#    weights would change differently, and what does that say about how CLIP is trained here?
#    Check by comparing one step with `alpha = 0` and one with `alpha = 0.5`.
# 2. **Change a parameter.** Rerun with `alpha = 2.0` and `fresh = True` (the parameters cell).
#    Look at the contextual-term panel: does ContextCLIP's training contextual loss fall faster than with
#    0.5? Does its contrastive term suffer?
# 3. **Explain a result.** CLIP's validation contextual loss (the markers in the right panel) goes
#    down although CLIP is never trained on it. Why?
#
# **Next:** `03_zero_shot.ipynb` classifies unseen images with class-name prompts (Table 1).
