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
# **Outputs.** Opened by hand on a profile with saved results (e.g. the committed `embedded` ones) it
# **shows them** and writes nothing. With `recompute = True` (or when nothing is saved) it reads and
# writes `runs/<profile>/by_hand/results/` (the by-hand rows of 03-06, git-ignored); only
# `make reproduce` rewrites `results/<profile>/table*.{md,csv}` and `results/<profile>/report.md`.
# On the smoke profile a banner says its numbers measure nothing, and no verdict is given.
#
# **Runtime.** smoke: 15 s (measured, 2 CPU cores shared with other jobs at load 13, an upper bound, 2026-12-04); embedded: 4 s (measured, 2 CPU cores, 2026-12-01); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
bootstrap_samples = None  # resamples for single-seed intervals (None: the profile value)
recompute = False  # True: summarise the by-hand rows of 03-06 (runs/<profile>/by_hand/) and write the report there
pipeline_run = False  # set by make reproduce only: write the profile's results/ (never set it by hand)

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, display

from contextclip import plots, presentation, results
from contextclip.config import REPO_ROOT
from contextclip.notebook_utils import (
    environment_summary,
    notebook_outputs,
    pipeline_timings,
    setup_notebook,
    show_markdown,
    show_table,
)
from contextclip.runs import SUMMARY

cfg = setup_notebook(profile, bootstrap_samples=bootstrap_samples, recompute=recompute, pipeline_run=pipeline_run)
out = notebook_outputs(cfg, recompute, pipeline_run)  # what is shown, and where anything computed goes
paths = out.paths
comparison = results.summarize(paths.results, cfg.profile, write=out.compute,  # writes tables only when computing
                               **results.profile_options(cfg))
verdicts = cfg.eval.verdicts  # False on smoke: a banner instead of verdicts
if out.compute:
    presentation.rewrite_table_files(paths.results, comparison)

# %% [markdown]
# ## 1. Table 1: zero-shot classification

# %%
show_markdown(presentation.table_markdown(comparison, "table1_zero_shot"))

# %% [markdown]
# ## 2. Table 2: fine-tuning and linear probe

# %%
show_markdown(presentation.table_markdown(comparison, "table2_fine_tune"))

# %% [markdown]
# ## 3. Retrieval

# %%
show_markdown(presentation.table_markdown(comparison, "table3_retrieval"))

# %% [markdown]
# ## 4. Verdict
#
# The headline comes from the primary endpoints only; every other row is exploratory. One sentence
# per row follows. *Half-width* is the interval's half-width: a true difference smaller than that
# could hide inside the interval. *No detectable difference* is not a failure to reproduce: it says
# this run cannot tell the two methods apart at that size.

# %%
if verdicts:
    show_markdown(comparison.headline() + "\n\n" + comparison.reading())
else:
    show_markdown(presentation.banner(cfg.profile, verdicts) + "\n\n" + "\n".join(
        presentation.differences(t, verdicts) for t in comparison.tables.values() if len(t)))
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
    plots.forest_plot({f"{cfg.profile} profile": forest}, paths.figures if out.compute else None)
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
for summary_path in sorted(paths.runs.glob(f"*-seed*/{SUMMARY}")):
    s = json.loads(summary_path.read_text())
    runs.append({"run": summary_path.parent.name, "train seconds": s.get("seconds"),
                 "pairs/s": s.get("pairs_per_second"), "final val loss": s.get("final_val_loss")})
show_table(runs, caption="Training time per run")
timings = pipeline_timings(cfg)
if len(timings):
    show_table(timings, caption="Notebooks of the last `reproduce` run (seconds; this one still running)")

# %%
report = paths.results / "report.md"
if out.compute:
    report.write_text(presentation.report_markdown(comparison, env), encoding="utf-8")
    print(f"wrote {report}")
else:
    print(f"showing the saved {report.relative_to(REPO_ROOT)} (not rewritten; only make reproduce rewrites it)")

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
