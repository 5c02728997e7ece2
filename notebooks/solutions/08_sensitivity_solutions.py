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
# # Solutions · 08 Sensitivity
#
# Worked answers to the exercises at the end of `08_sensitivity.ipynb`, from the table it wrote
# (`results/<profile>/sensitivity_metrics.csv`; run 08 first). **Runtime:** a few seconds.

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | sensitivity | sensitivity_pretrained

# %%
from contextclip import exercises, sensitivity
from contextclip.notebook_utils import profile_paths, setup_notebook, show_markdown, show_table

cfg = setup_notebook(profile)
paths = profile_paths(cfg)
table = sensitivity.study_table(paths.results, bootstrap_samples=cfg.eval.bootstrap_samples)

# %% [markdown]
# ## 1. The setting that is CLIP
#
# *What you should have seen:* alpha = 0 switches the contextual term off, so that setting **is**
# CLIP (trained once per seed and shared by every variant): the table's baseline row.

# %%
show_table(table[["dataset", "label", "variant", "alpha", "bandwidth", "seeds", "mean", "verdict"]])
for _, rows in sensitivity.by_dataset(table):  # one baseline per zero-shot set of the study
    exercises.clip_is_the_baseline(rows["verdict"].tolist(), rows["alpha"].tolist())

# %% [markdown]
# ## 2. More seeds
#
# *What you should have seen:* the means move a little (a new seed is one more draw), the intervals
# narrow: with k paired seeds a t-interval's width shrinks roughly like $t_{k-1}/\sqrt{k}$, fast from
# 2 to 3 seeds and slowly after. The study's question is whether the interval excludes 0.
#
# ## 3. Above the band, yet inconclusive
#
# *What you should have seen:* the figure's bands are intervals of each setting's mean accuracy; the
# table's verdict uses the interval of the **paired** difference with CLIP, seed by seed. Two bands can
# sit apart while the paired interval still holds 0 (and the other way round, when seeds move
# together); only the paired interval answers "does this setting beat CLIP?".

# %%
show_markdown("\n".join(f"- {s}" for s in sensitivity.sentences(table, cfg)))
