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
# # 07 · Report: our numbers beside the paper's, and what they say
#
# **Purpose.** One page with the answer: first the primary endpoints (declared before the runs:
# zero-shot top-1 on held-out classes and on the real MNIST test digits) in one forest plot, with
# both seed blocks where the profile has two; then Table 1 (zero-shot) and Table 2 (fine-tuning,
# linear probe) beside the paper's numbers and chance, retrieval Recall@K, the figures, the
# decisions we took where the paper is silent, the environment and the time it took. Every row's
# verdict comes from its 95 % interval of ContextCLIP - CLIP: on a stand-in (an embedded set that
# plays a paper row) only its sign (ContextCLIP better, worse, no detectable difference, or at
# ceiling); the size of the paper's gain is compared only on the paper's own dataset and metric.
# Everything here is rendered from one comparison summary, `results.summarize`, the same one
# `report.md` and the README's results section are rendered from.
#
# **Inputs.** `results/<profile>/metrics.csv` (from 03, 04, 06), `figures/<profile>/`, the run folders.
# **Outputs.** The tables rewritten (`results/<profile>/table*.{md,csv}`) and
# `results/<profile>/report.md` (the verdict and the environment).
#
# **Runtime.** smoke: not measured yet; embedded: 4 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
bootstrap_samples = None  # resamples for single-seed intervals (None: the profile value)

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, display

from contextclip import plots, results
from contextclip.config import REPO_ROOT
from contextclip.notebook_utils import (
    environment_summary,
    pipeline_timings,
    profile_paths,
    setup_notebook,
    show_markdown,
    show_table,
)

cfg = setup_notebook(profile, bootstrap_samples=bootstrap_samples)
paths = profile_paths(cfg)
comparison = results.summarize(paths.results, cfg.profile, **results.profile_options(cfg))

# %% [markdown]
# ## 1. Table 1: zero-shot classification

# %%
show_markdown(comparison.table_markdown("table1_zero_shot"))

# %% [markdown]
# ## 2. Table 2: fine-tuning and linear probe

# %%
show_markdown(comparison.table_markdown("table2_fine_tune"))

# %% [markdown]
# ## 3. Retrieval

# %%
show_markdown(comparison.table_markdown("table3_retrieval"))

# %% [markdown]
# ## 4. Verdict
#
# The headline comes from the primary endpoints only; every other row is exploratory. One sentence
# per row follows. *Half-width* is the interval's half-width: a true difference smaller than that
# could hide inside the interval. *No detectable difference* is not a failure to reproduce: it says
# this run cannot tell the two methods apart at that size.

# %%
show_markdown(comparison.headline() + "\n\n" + comparison.reading())
# the facts this section exists to show: every primary endpoint is in the headline, and every
# compared row carries one of the verdicts
assert all(results.row_name(r) in comparison.headline() for _, r in comparison.primary().iterrows())
assert set(comparison.rows()["verdict"]) <= set(results.VERDICTS), comparison.rows()["verdict"].unique()

# %% [markdown]
# ### The answer in one picture
#
# ContextCLIP - CLIP with its 95 % interval per row: primary endpoints first (starred), block A as
# a filled dot, block B (a second, disjoint set of seeds) as an open square, the dashed line at 0,
# and a grey bar at each row's ceiling (100 - CLIP: no gain can be larger).

# %%
forest = comparison.forest_rows()
if len(forest):
    plots.forest_plot({f"{cfg.profile} profile": forest}, paths.figures)
    plt.show()

# %% [markdown]
# ## 5. Figures

# %%
pngs = sorted(paths.figures.glob("fig*.png"))
for png in pngs:
    show_markdown(f"`{png.relative_to(REPO_ROOT)}`")
    display(Image(filename=str(png), width=800))
print(f"{len(pngs)} figures in {paths.figures.relative_to(REPO_ROOT)}")

# %% [markdown]
# ## 6. Decisions
#
# Where the paper is silent or ambiguous we chose, wrote down why and how to switch: see
# [`docs/decisions.md`](../docs/decisions.md). Its headings:

# %%
decisions = REPO_ROOT / "docs" / "decisions.md"
heads = [line.lstrip("#").strip() for line in decisions.read_text(encoding="utf-8").splitlines()
         if line.startswith("## ")]
show_markdown("\n".join(f"- {h}" for h in heads))

# %% [markdown]
# ## 7. Environment and time taken

# %%
env = environment_summary()
show_table(pd.DataFrame({"value": {k: str(v) for k, v in env.items()}}), caption="Environment")
runs = []
for summary_path in sorted(paths.runs.glob("*-seed*/summary.json")):
    s = json.loads(summary_path.read_text())
    runs.append({"run": summary_path.parent.name, "train seconds": s.get("seconds"),
                 "pairs/s": s.get("pairs_per_second"), "final val loss": s.get("final_val_loss")})
show_table(runs, caption="Training time per run")
timings = pipeline_timings(cfg)
if len(timings):
    show_table(timings, caption="Notebooks of the last `reproduce` run (seconds; this one still running)")

# %%
report = paths.results / "report.md"
report.write_text(comparison.report_markdown(env), encoding="utf-8")
print(f"wrote {report.relative_to(REPO_ROOT)}")

# %% [markdown]
# ## Exercises
#
# Worked solutions: `notebooks/solutions/07_report_solutions.ipynb`.
#
# 1. **Predict, then run.** With one seed (the smoke profile), where does each 95 % interval come
#    from? With seven seeds (embedded)?
# 2. **Change a parameter.** Rerun with `bootstrap_samples = 2000`. How much do the interval
#    endpoints move, and is that a change in the evidence?
# 3. **Explain a result.** The verdict calls a row "no detectable difference" when its interval holds
#    0. Why is that not the same as "not reproduced", and what does its half-width tell you?
