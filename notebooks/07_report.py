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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Report: our numbers beside the paper's, and what they say
#
# **Purpose.** One page with the answer: Table 1 (zero-shot) and Table 2 (fine-tuning, linear probe)
# beside the paper's numbers and chance, retrieval Recall@K, the figures, the decisions we took
# where the paper is silent, the environment and the time it took, and a plain-language verdict
# computed from the numbers: which ContextCLIP - CLIP differences lie outside their 95 % interval.
#
# **Inputs.** `results/<profile>/metrics.csv` (from 03, 04, 06), `figures/<profile>/`, the run folders.
# **Outputs.** The tables rewritten (`results/<profile>/table*.{md,csv}`) and
# `results/<profile>/report.md` (the verdict and the environment).
#
# **Runtime.** smoke: not measured yet; embedded: 4 s (measured, 2 CPU cores, 2026-11-28); paper: not measured yet. Source: `benchmarks/results/pipeline_<profile>.json` (`python tools/notebook_runtimes.py`).

# %% tags=["parameters"]
profile = "smoke"  # which configs/<profile>.yaml to read: smoke | embedded | paper
bootstrap_samples = None  # resamples for single-seed intervals (None: the profile value)

# %%
import json

import pandas as pd
from IPython.display import Image, display

from contextclip import results
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
tables = results.build_tables(paths.results, cfg.profile, bootstrap_samples=cfg.eval.bootstrap_samples)

# %% [markdown]
# ## 1. Table 1: zero-shot classification

# %%
show_table(paths.results / "table1_zero_shot.md")

# %% [markdown]
# ## 2. Table 2: fine-tuning and linear probe

# %%
show_table(paths.results / "table2_fine_tune.md")

# %% [markdown]
# ## 3. Retrieval

# %%
show_table(paths.results / "table3_retrieval.md")

# %% [markdown]
# ## 4. Verdict
#
# Computed from the tables by `results.verdict`: for each dataset and metric, whether 0 (no
# difference) lies inside the 95 % interval of ContextCLIP - CLIP, and whether the paper's reported
# difference does.

# %%
verdict = "\n\n".join(f"**{title}**\n\n" + results.verdict(tables[key]) for key, title in [
    ("table1_zero_shot", "Zero-shot (Table 1)"), ("table2_fine_tune", "Fine-tuning and linear probe (Table 2)"),
    ("table3_retrieval", "Retrieval")])
t1 = tables["table1_zero_shot"]
t1 = t1[(t1["status"] == "ok") & (t1["metric"] == "top1")]
outside = t1[(t1["ci_low"] > 0) | (t1["ci_high"] < 0)]
better, worse = int((outside["diff"] > 0).sum()), int((outside["diff"] < 0).sum())
summary = (f"On zero-shot top-1, ContextCLIP is better than CLIP on {better} and worse on {worse} of "
           f"{len(t1)} sets with 95 % confidence; on the other {len(t1) - better - worse} the difference "
           "is not distinguishable from noise.")
show_markdown(summary + "\n\n" + verdict)

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
report.write_text(f"# Report ({cfg.profile} profile)\n\n{summary}\n\n{verdict}\n\n## Environment\n\n"
                  + "\n".join(f"- {k}: {v}" for k, v in env.items()) + "\n", encoding="utf-8")
print(f"wrote {report.relative_to(REPO_ROOT)}")
