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
# # Solutions · 03 Zero-shot classification
#
# Worked answers to the exercises at the end of `03_zero_shot.ipynb`. Reads what `03_zero_shot`
# wrote (`results/<profile>/`); run it first. **Runtime:** a few seconds.

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read

# %%
import pandas as pd

from contextclip import results
from contextclip.notebook_utils import profile_paths, setup_notebook, show_markdown, show_table
from contextclip.zeroshot import chance_levels

cfg = setup_notebook(profile)
paths = profile_paths(cfg)
table = pd.read_csv(paths.results / "table1_zero_shot.csv")
table = table[table["status"] == "ok"]

# %% [markdown]
# ## 1. Chance
#
# *What you should have seen:* with C classes a uniform guess is right with probability 1/C (top-1)
# and 5/C (top-5): 10 % and 50 % for 10 classes. The `chance` column of Table 1 is exactly that.

# %%
rows = [{"dataset": r.dataset, "metric": r.metric, "table chance": r.chance} for r in table.itertuples()
        if r.metric in ("top1", "top5")]
show_table(rows)
assert chance_levels(10) == {"chance_top1": 10.0, "chance_top5": 50.0}

# %% [markdown]
# ## 2. Fewer test images, wider interval
#
# *What you should have seen:* with one seed the interval is a paired bootstrap over test images, so
# its width shrinks like $1/\sqrt{n}$: 100 images instead of 300 give an interval about
# $\sqrt{3} \approx 1.7$ times wider.

# %%
seed, name = cfg.train.seeds[0], cfg.data.zero_shot_datasets[0]
clip = results.load_per_item(paths.results, "clip", seed, "zero_shot", name)["top1"]
ctx = results.load_per_item(paths.results, "contextclip", seed, "zero_shot", name)["top1"]
rows = []
for n in (100, len(clip)):
    lo, hi = results.paired_bootstrap(clip[:n], ctx[:n], samples=1000)
    rows.append({"test images": n, "ci_low": lo, "ci_high": hi, "width": hi - lo})
show_table(rows, caption=f"{name}, top-1, ContextCLIP - CLIP (percentage points)")
show_markdown(f"Width with 100 images / width with {len(clip)}: {rows[0]['width'] / max(rows[1]['width'], 1e-9):.2f} "
              f"(1/sqrt(n) predicts {(len(clip) / 100) ** 0.5:.2f}; when the two models disagree on only a few "
              "images, as after a short smoke training, the bootstrap is coarse and the ratio noisy).")

# %% [markdown]
# ## 3. An interval that holds 0
#
# *What you should have seen:* neither better nor worse. An interval holding 0 says the data cannot
# tell the two apart at this size; it does not say they are equal. To decide, shrink the interval:
# more seeds (the embedded profile has 3), more test images, or both.

# %%
holds = table[(table["ci_low"] <= 0) & (table["ci_high"] >= 0)]
show_markdown("Rows whose 95 % interval holds 0 (undecided): " + (", ".join(
    f"{r.dataset} {r.metric} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]" for r in holds.itertuples()) or "none"))
