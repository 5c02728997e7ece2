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
# showed: the profile's saved results, or the by-hand ones (`runs/<profile>/by_hand/results/`) when
# nothing is saved or `recompute = True`; run 03 first. **Runtime:** about 10 s.

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read
recompute = False  # True: read your by-hand results (runs/<profile>/by_hand/), as the notebook with recompute = True

# %%
import numpy as np
import pandas as pd

from contextclip import exercises, results
from contextclip.data.registry import get_dataset
from contextclip.notebook_utils import notebook_outputs, setup_notebook, show_markdown, show_table

cfg = setup_notebook(profile, recompute=recompute)
paths = notebook_outputs(cfg, recompute).paths
table = pd.read_csv(paths.results / "table1_zero_shot.csv")
table = table[table["status"] == "ok"]

# %% [markdown]
# ## 1. Chance
#
# *What you should have seen:* with C classes a uniform guess is right with probability 1/C (top-1)
# and 5/C (top-5): 10 % and 50 % for 10 classes. The `chance` column of Table 1 is exactly that.

# %%
classes = {name: len(get_dataset(name, cfg).classnames) for name in set(table["dataset"])}
rows = [{"dataset": r.dataset, "classes": classes[r.dataset], "metric": r.metric, "table chance": r.chance}
        for r in table.itertuples() if r.metric in ("top1", "top5")]
show_table(rows)
exercises.chance_column(rows)

# %% [markdown]
# ## 2. Fewer test images, wider interval
#
# *What you should have seen:* with one seed the interval is a paired bootstrap over test images, so
# its width shrinks like $1/\sqrt{n}$: 100 images instead of 300 give an interval about
# $\sqrt{3} \approx 1.7$ times wider. One draw of 100 images can mislead (if the two models happen to
# agree on all of them the interval has width 0), so below the width is averaged over 20 random draws.

# %%
seed, name = cfg.train.seeds[0], cfg.data.zero_shot_datasets[0]
clip = results.load_per_item(paths.results, "clip", seed, "zero_shot", name)["top1"]
ctx = results.load_per_item(paths.results, "contextclip", seed, "zero_shot", name)["top1"]
draws = [np.random.default_rng(i).choice(len(clip), 100, replace=False) for i in range(20)]
widths = [np.subtract(*results.paired_bootstrap(clip[d], ctx[d], samples=1000)[::-1]) for d in draws]
lo, hi = results.paired_bootstrap(clip, ctx, samples=1000)
rows = [{"test images": 100, "width (mean of 20 draws)": float(np.mean(widths))},
        {"test images": len(clip), "width (mean of 20 draws)": hi - lo}]
show_table(rows, caption=f"{name}, top-1, ContextCLIP - CLIP: width of the 95 % interval (percentage points)")
ratio = rows[0]["width (mean of 20 draws)"] / max(rows[1]["width (mean of 20 draws)"], 1e-9)
show_markdown(f"Width with 100 images / width with {len(clip)}: {ratio:.2f} (1/sqrt(n) predicts "
              f"{(len(clip) / 100) ** 0.5:.2f}; when the two models disagree on only a few images, as after a short "
              "smoke training, the bootstrap is coarse and the ratio noisy).")
exercises.fewer_items_wider(rows[0]["width (mean of 20 draws)"], rows[1]["width (mean of 20 draws)"], 100,
                            len(clip))

# %% [markdown]
# ## 3. An interval that holds 0
#
# *What you should have seen:* neither better nor worse. An interval holding 0 says the data cannot
# tell the two apart at this size; it does not say they are equal. To decide, shrink the interval:
# more seeds (the embedded profile has 7), more test images, or both.

# %%
holds = table[(table["ci_low"] <= 0) & (table["ci_high"] >= 0)]
show_markdown("Rows whose 95 % interval holds 0 (undecided): " + (", ".join(
    f"{r.dataset} {r.metric} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]" for r in holds.itertuples()) or "none"))
exercises.undecided_rows(holds.to_dict("records"))
