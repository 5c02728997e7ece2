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
# # Solutions · 07 Report
#
# Worked answers to the exercises at the end of `07_report.ipynb`, from the tables it showed (the
# profile's saved results, or `runs/<profile>/by_hand/results/`; run it first). **Runtime:** a few seconds.

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read
recompute = False  # True: read your by-hand results (runs/<profile>/by_hand/), as the notebook with recompute = True

# %%
import pandas as pd

from contextclip import exercises, results
from contextclip.notebook_utils import notebook_outputs, setup_notebook, show_markdown, show_table

cfg = setup_notebook(profile, recompute=recompute)
paths = notebook_outputs(cfg, recompute).paths
t1 = pd.read_csv(paths.results / "table1_zero_shot.csv")
t1 = t1[t1["status"] == "ok"]

# %% [markdown]
# ## 1. Where the interval comes from
#
# *What you should have seen:* with one seed, a paired bootstrap over the test images (how much the
# difference would move on another draw of test images of the same size); with several seeds, a
# t-interval over the seeds' paired differences (how much it moves from one training run to another,
# usually the larger source of spread). The `ci_method` column says which, row by row.

# %%
show_table(t1[["dataset", "metric", "paired_seeds", "ci_method"]].drop_duplicates())
exercises.interval_source(t1[t1["ci_low"].notna()].to_dict("records"))

# %% [markdown]
# ## 2. More bootstrap resamples
#
# *What you should have seen:* the endpoints move by a fraction of a point: more resamples estimate
# the *same* interval more precisely (less Monte Carlo noise); they add no evidence. Only more test
# images or more seeds narrow it.

# %%
seed, name = cfg.train.seeds[0], cfg.data.zero_shot_datasets[0]
a = results.load_per_item(paths.results, "clip", seed, "zero_shot", name)["top1"]
b = results.load_per_item(paths.results, "contextclip", seed, "zero_shot", name)["top1"]
rows = [{"bootstrap samples": s, **dict(zip(("ci_low", "ci_high"), results.paired_bootstrap(a, b, samples=s)))}
        for s in (cfg.eval.bootstrap_samples, 2000)]
show_table(rows, caption=f"{name}, top-1, ContextCLIP - CLIP (points)")
exercises.resamples_add_no_evidence(rows[0]["ci_low"], rows[1]["ci_low"], rows[1]["ci_high"] - rows[1]["ci_low"])

# %% [markdown]
# ## 3. "No detectable difference" is not "not reproduced"
#
# *What you should have seen:* an interval that holds 0 is compatible with no effect and with any
# effect smaller than about its half-width, in either direction: the experiment is too small to
# tell. The half-width says how large a difference could hide in it. Row by row:

# %%
rows = [{"dataset": r.dataset, "metric": r.metric, "interval": f"[{r.ci_low:+.1f}, {r.ci_high:+.1f}]",
         "half-width": round(r.half_width, 2), "holds 0": r.ci_low <= 0 <= r.ci_high, "verdict": r.verdict}
        for r in t1.itertuples() if pd.notna(r.ci_low)]
show_table(rows)
# every interval that holds 0 says "no detectable difference" (or "at ceiling"), never better or worse
assert all(r["verdict"] in (results.NO_DIFFERENCE, results.AT_CEILING) for r in rows if r["holds 0"])
show_markdown(f"{sum(r['holds 0'] for r in rows)} of {len(rows)} intervals hold 0.")
