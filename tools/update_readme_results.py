"""Rewrite the README's generated sections from the files `make reproduce` wrote.

Usage: ``.venv/bin/python tools/update_readme_results.py [--profile embedded]`` after
``make reproduce``. Sections, each between two HTML comment markers:

- "The answer": the primary endpoints of the answer profiles (``ANSWER_PROFILES``: the embedded
  regime's ``answer`` and the ``pretrained`` regime), both seed blocks each, with their forest plots
  (drawn by notebook 07 of each profile) and what replicates;
- "Results (<profile> profile)": the tables and the reading, rendered from the one comparison
  summary of ``contextclip.results.summarize`` (``results/<profile>/metrics.csv``), plus the run
  facts (notebook times, training seconds, held-out contextual loss);
- "Ablation": an overlay profile's ContextCLIP beside the baseline's two methods;
- "Sensitivity" (one section per study of ``SENS_PROFILES``): one generated sentence per zero-shot set on
  the table and on the figure, from ``results/<study>/``;
- "What the kit found": the plain-words summary of ``contextclip.summary_text`` (same comparison).

The run facts are read from ``runs/<profile>/`` (git-ignored) and written to
``results/<profile>/run_facts.json`` (committed); notebook times are taken only from a pass that
trained every run (one that reused trained runs keeps the saved times), so that ``tests/test_readme_numbers.py`` can
regenerate every number of the sections from committed files and fail when the README drifts.
Without ``runs/<profile>/`` the committed ``run_facts.json`` is used. Nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contextclip import results  # noqa: E402 - after the path set-up above
from contextclip.config import load_config  # noqa: E402
from contextclip.pipeline import reused_runs  # noqa: E402
from contextclip.runs import SUMMARY  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ANS_BEGIN, ANS_END = "<!-- answer:begin -->", "<!-- answer:end -->"
#: the profiles whose job is the answer, each with the regime it measures (README order)
ANSWER_PROFILES = (("answer", "embedded regime: ResNet-10 trained from scratch at 32 px, frozen MiniLM, tau 0.07 learned"),
                   ("pretrained", "pretrained regime: ImageNet EfficientNet-Lite0 and MiniLM both frozen (LiT), "
                                  "the paper's tau = 1.0 (learned) and lambda = 0.75"))
ABL_BEGIN, ABL_END = "<!-- ablation:begin -->", "<!-- ablation:end -->"
SENS_BEGIN, SENS_END = "<!-- sensitivity:begin -->", "<!-- sensitivity:end -->"
#: the sensitivity studies: profile -> (markers, the README heading's regime)
SENS_PROFILES = {"sensitivity": ((SENS_BEGIN, SENS_END), "embedded regime, 1 epoch per run"),
                 "sensitivity_pretrained": (("<!-- sensitivity_pretrained:begin -->",
                                             "<!-- sensitivity_pretrained:end -->"), "pretrained regime")}
FOUND_BEGIN, FOUND_END = "<!-- findings:begin -->", "<!-- findings:end -->"
RUN_FACTS = "run_facts.json"


# --------------------------------------------------------------------------- run facts
def collect_run_facts(profile: str, runs_root: Path) -> dict:
    """Training seconds, seeds, held-out L_CX and notebook times of ``runs_root/<profile>``."""
    runs = runs_root / profile
    summaries = [json.loads(p.read_text()) for p in sorted(runs.glob(f"*-seed*/{SUMMARY}"))]
    times, reused = [], 0
    for nb in sorted((runs / "notebooks").glob("0*.ipynb")):
        if nb.name.endswith((".failed.ipynb", ".running.ipynb")):
            continue
        executed = json.loads(nb.read_text())
        reused += reused_runs(executed)
        meta = executed["metadata"].get("papermill", {})
        if meta.get("duration") is not None:
            times.append([nb.stem, round(float(meta["duration"]), 1)])
    cx = {m: [s["final_val_contextual_loss"] for s in summaries
              if s.get("method") == m and s.get("final_val_contextual_loss") is not None]
          for m in ("clip", "contextclip")}
    return {"source": f"runs/{profile}/ (summary.json of each run, the executed notebooks' papermill durations)",
            "machine": platform.machine(), "notebook_seconds": times,
            "runs": len(summaries), "seeds": sorted({s["seed"] for s in summaries}),
            "train_seconds": [round(s["seconds"], 1) for s in summaries],
            "epochs": sorted({s["epochs"] for s in summaries if "epochs" in s}),
            "val_contextual_loss": {m: round(sum(v) / len(v), 4) for m, v in cx.items() if v},
            "reused_runs": reused}


def run_facts(profile: str, runs_root: Path | None = None, write: bool = True, results_root: Path | None = None) -> dict:
    """The run facts: collected from the run folders when they exist (and saved), else the saved ones."""
    saved = (results_root or ROOT / "results") / profile / RUN_FACTS
    runs_root = runs_root or ROOT / "runs"
    if list((runs_root / profile).glob(f"*-seed*/{SUMMARY}")):
        facts = collect_run_facts(profile, runs_root)
        if facts["reused_runs"] and saved.exists():
            # the last pass reused trained runs: its notebook times are not those of a reproduce from
            # scratch, so the saved times (of the last pass that trained) stay
            kept = json.loads(saved.read_text(encoding="utf-8"))
            facts["notebook_seconds"] = kept["notebook_seconds"]
            facts["reused_runs"] = kept.get("reused_runs", 0)
        if write:
            saved.write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
        return facts
    if saved.exists():
        return json.loads(saved.read_text(encoding="utf-8"))
    raise SystemExit(f"error: neither {runs_root / profile} (run folders) nor {saved} exists; "
                     f"run `make reproduce PROFILE={profile}` first")


# --------------------------------------------------------------------------- sections
def comparison(profile: str, results_dir: Path | None = None) -> results.Comparison:
    """The comparison summary of a profile, with that profile's bootstrap setting (nothing written)."""
    cfg = load_config(profile)
    return results.summarize(results_dir or ROOT / "results" / profile, cfg.profile, write=False,
                             **results.profile_options(cfg))


#: zero-shot sets whose top-1 level the reading states, with how to say what they measure
LEVELS = (("mnist_test", "on the {n:,} real MNIST test digits (never tuned on)"),
          ("mnist_real", "on the {n:,} real MNIST digits"),
          ("mnist_test_heldout_templates", "with prompt templates that occur in no training caption"),
          ("novel_shapes", "on shapes that no training caption names (held-out classes)"))


def levels(comp: results.Comparison) -> str:
    """Both methods' zero-shot top-1 on the sets that say what the models learnt, with chance."""
    t1 = comp.tables["table1_zero_shot"]
    paper = results.load_paper_results()["tables"]["zero_shot"]["mnist"]["top1"]
    text = ""
    for name, what in LEVELS:
        row = t1[(t1["dataset"] == name) & (t1["metric"] == "top1") & (t1["status"] == "ok")]
        if row.empty:
            continue
        r = row.iloc[0]
        text += (f"Zero-shot top-1 {what.format(n=int(r['n']))}: {r['clip_mean']:.1f}% (CLIP) and "
                 f"{r['contextclip_mean']:.1f}% (ContextCLIP), chance {r['chance']:.1f}%"
                 + (f" (the paper reports {paper['clip']:.2f} and {paper['contextclip']:.2f} on the full MNIST test "
                    "set with its CC3M-trained models)" if name.startswith("mnist") and "templates" not in name else "")
                 + ". ")
    return text


def section(profile: str, comp: results.Comparison, facts: dict) -> str:
    times = facts["notebook_seconds"]
    total = sum(t for _, t in times)
    per_nb = ", ".join(f"{name.split('_', 1)[0]} {t:.0f} s" for name, t in times)
    seeds = facts.get("seeds") or sorted(set(comp.rows()["clip_seeds"].astype(int)))
    runs = (f"{facts['runs']} training runs (CLIP and ContextCLIP x seeds {seeds})"
            + (f", {min(facts['train_seconds']):.0f}-{max(facts['train_seconds']):.0f} s each"
               if facts.get("train_seconds") else "") + ". ") if facts.get("runs") else ""
    lines = [BEGIN, f"## Results ({profile} profile)", "",
             f"Produced by `make reproduce` (profile `{profile}`) on one {facts['machine']} machine with "
             f"2 CPU cores, no GPU: **{total / 60:.1f} minutes** for the {len(times)} notebooks "
             f"({per_nb}), after the one-time `make setup`. {runs}"
             f"Values: mean ± std over the seeds, in percent; the interval is a 95% t-interval over the seeds' "
             "paired differences, *half-width ±* its half-width and *MDE80 ±* the difference detectable with 80% power. "
             "**A quick look**: 4 seeds of the recipe whose verdict is the `answer` profile's (2 x 18 seeds, "
             "[The answer](#the-answer-does-the-contextual-term-help)). Full tables: [`results/" + profile
             + "/`](results/" + profile + "/); regenerate this section with "
             "`.venv/bin/python tools/update_readme_results.py`.", "",
             "**Table 1 analogue: zero-shot top-1.** " + results.VERDICT_LEGEND, ""]
    lines += comp.table_markdown("table1_zero_shot", ("top1",), 1, compact=True, title=False).splitlines()[:-2]
    lines += ["", "**Table 2 analogue: fine-tuning and linear probe, top-1**", ""]
    lines += comp.table_markdown("table2_fine_tune", ("top1",), 1, compact=True, title=False).splitlines()[:-2]
    lines += ["", "**Retrieval on held-out captioned scenes (Fig. 1/5 made quantitative)**", ""]
    shown = ("text_to_image_R@1", "text_to_image_R@1_exact", "text_to_image_R@10",
             "image_to_text_R@1", "image_to_text_R@1_exact", "image_to_text_R@10")
    lines += comp.table_markdown("table3_retrieval", shown, 1, compact=True, title=False).splitlines()[:-2]
    if comp.tables["table3_retrieval"]["metric"].astype(str).str.endswith("_exact").any():
        lines += ["", "A retrieved image counts as correct when it has every attribute the caption states "
                  "(\"an italic number three\": any italic 3); the `_exact` rows count only the image the caption "
                  "was written for and images with an identical caption, as before (kept for one release)."]
    reading = f"**Reading.** {levels(comp)}{comp.headline()} "
    cx = facts.get("val_contextual_loss", {})
    if "clip" in cx and "contextclip" in cx:
        reading += (f"The contextual term itself does what it is trained for: the held-out L_CX is "
                    f"{cx['contextclip']:.2f} for ContextCLIP against {cx['clip']:.2f} for CLIP, which is not "
                    "trained on it (`final_val_contextual_loss` in each run's `summary.json`). ")
    reading += ("`results/" + profile + "/report.md` (notebook 07) gives the verdict of every row, "
                "every metric included.")
    lines += ["", reading]
    figs = ROOT / "figures" / profile
    shown = sorted(figs.glob("fig6_tsne_image_*.png"))[:1] + sorted(figs.glob("fig5_*.png"))[:1]
    if shown:
        lines += ["", " ".join(f"![{p.stem}](figures/{profile}/{p.name})" for p in shown)]
    lines += ["", END]
    return "\n".join(lines)


def _ci(d, lo, hi) -> str:
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def answer_section(comps: dict[str, results.Comparison], facts: dict[str, dict]) -> str:
    """The README's answer: each answer profile's primary endpoints, both blocks, the rule's outcome."""
    lines = [ANS_BEGIN, "## The answer: does the contextual term help?", "",
             "Two primary endpoints, declared before their runs ([decisions](docs/decisions.md#the-answer-primary-"
             "endpoints-sign-verdicts-seed-blocks-written-before-their-runs)): zero-shot top-1 on **24 held-out "
             "classes** that no training caption names (`novel_classes`, 2,400 images: zero-shot in the paper's "
             "sense) and on the **4,000 real MNIST test digits** (`mnist_test`: transfer from rendered to "
             "handwritten digits), each measured in two regimes, each regime with two disjoint blocks of seeds. "
             "Block A gives the estimate; block B, other seeds of the same recipe, is the replication: it *agrees* "
             "when its mean lies inside block A's 95% interval, and a verdict *held* when both blocks give the same. "
             "Verdicts are signs only (these are stand-ins: other data, towers and budget than the paper's); "
             "Holm-adjusted p over the two primaries. Everything else in this README is exploratory.", "",
             "| regime (profile) | primary endpoint | chance | CLIP | ContextCLIP | block A: ContextCLIP − CLIP "
             "[95% CI] (seeds) | Holm p | verdict | block B [95% CI] (seeds) | B inside A | held on both |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    said = []
    for profile, comp in comps.items():
        prim = comp.primary()
        for _, x in prim.iterrows():
            b = (f"{_ci(x['b_diff'], x['b_ci_low'], x['b_ci_high'])} ({x['b_seeds']})"
                 if x["b_diff"] is not None else "-")
            lines.append(f"| `{profile}` | {x['dataset']} top-1 | {x['chance']:.1f} | "
                         f"{results.cell_text(x['clip_mean'], x['clip_std'], int(x['clip_seeds']), 1, False)} | "
                         f"{results.cell_text(x['contextclip_mean'], x['contextclip_std'], int(x['contextclip_seeds']), 1, False)} | "
                         f"{_ci(x['diff'], x['ci_low'], x['ci_high'])} ({int(x['paired_seeds'])}) | "
                         f"{results._p_cell(x)} | {results._verdict_cell(x)} | {b} | "
                         f"{'yes' if x['b_agrees'] else ('no' if x['b_agrees'] is not None else '-')} | "
                         f"{'yes' if x['held'] else ('no' if x['held'] is not None else '-')} |")
            said.append((profile, x))
    lines.append("")
    regimes = dict(ANSWER_PROFILES)
    for profile, comp in comps.items():
        prim = comp.primary()
        if prim.empty:
            continue
        f = facts.get(profile, {})
        secs = sum(t for _, t in f.get("notebook_seconds", [])) if not f.get("reused_runs") else 0
        runs = sorted(f.get("train_seconds") or [])
        took = (f", {secs / 60:.0f} min on this 2-core machine" if secs else
                (f", {len(runs)} runs of {runs[0]:.0f}-{runs[-1]:.0f} s each (median {runs[len(runs) // 2]:.0f} s) on "
                 "this 2-core machine while it was shared with other jobs; not yet timed from no runs on a quiet "
                 "machine" if runs else ""))
        words = "; ".join(f"{x['dataset']}: {x['verdict']}" + (
            f" (block B: {x['b_verdict']}, {'held' if x['held'] else 'not held'})" if x["b_verdict"] else "")
            for _, x in prim.iterrows())
        lines.append(f"- **{regimes.get(profile, profile)}** (`make reproduce PROFILE={profile}`{took}): {words}.")
    verdicts = {}
    for profile, x in said:
        verdicts.setdefault(x["dataset"], []).append((profile, x["verdict"], bool(x["held"])))
    agree = [ds for ds, v in verdicts.items() if len({w for _, w, _ in v}) == 1 and len(v) == len(comps)]
    lines.append("- **Where the regimes agree**: "
                 + (", ".join(f"{ds} ({verdicts[ds][0][1]} in both)" for ds in agree) if agree else "on neither endpoint")
                 + "; where they differ: "
                 + (", ".join(f"{ds} (" + ", ".join(f"{p}: {w}" for p, w, _ in v) + ")"
                              for ds, v in verdicts.items() if ds not in agree) or "nowhere") + ".")
    lines += ["- **What replicates.** On one machine every run is bit-identical (the same seed retrains to the same "
              "weights). Across CPUs each seed takes another floating-point path, so another machine's per-seed "
              "numbers differ: what carries over is an interval, not a number. Expect a rerun's intervals to overlap "
              "these; a finding counts here only when both seed blocks give the same verdict.", ""]
    shown = [f"figures/{p}/fig_answer_forest.png" for p in comps if (ROOT / "figures" / p / "fig_answer_forest.png").exists()]
    if shown:
        lines += [" ".join(f"![forest plot, {p.split('/')[1]} profile]({p})" for p in shown), ""]
    lines.append(ANS_END)
    return "\n".join(lines)


def ablation_section(profile: str, baseline: str, abl: results.Comparison, base: results.Comparison,
                     variant: str) -> str:
    """Zero-shot top-1 of an overlay profile's ContextCLIP beside the baseline profile's two methods."""
    t_base, t_abl = base.tables["table1_zero_shot"], abl.tables["table1_zero_shot"]
    t_base = t_base[t_base["metric"] == "top1"].set_index("dataset")
    t_abl = t_abl[t_abl["metric"] == "top1"].set_index("dataset")
    lines = [ABL_BEGIN, "## Ablation: what a \"point\" is in the contextual loss", "",
             f"`make reproduce PROFILE=configs/{profile}.yaml` reruns the embedded profile with "
             f"`cx_variant: {variant}` (each embedding dimension is a point, so the loss depends on which "
             "caption is paired with which image; the default `batch` variant does not). Zero-shot top-1, "
             f"mean ± std over seeds, ContextCLIP − CLIP with its 95% interval ({profile} vs `{baseline}` results; "
             "CLIP is the same model in both, alpha = 0):", "",
             "| dataset (plays) | CLIP | ContextCLIP, `batch` | ContextCLIP, `" + variant + "` | `" + variant
             + "` − CLIP [95% CI] | verdict |", "|---|---|---|---|---|---|"]
    for ds, r in t_abl.iterrows():
        b = t_base.loc[ds] if ds in t_base.index else None
        plays = f" ({r['plays']})" if isinstance(r["plays"], str) and r["plays"] else ""
        lines.append(f"| {ds}{plays} | {results.cell_text(r['clip_mean'], r['clip_std'], int(r['clip_seeds']), 1, False)} | "
                     + (results.cell_text(b["contextclip_mean"], b["contextclip_std"], int(b["contextclip_seeds"]), 1,
                                          False) if b is not None else "-")
                     + " | " + results.cell_text(r["contextclip_mean"], r["contextclip_std"],
                                                 int(r["contextclip_seeds"]), 1, False)
                     + f" | {results.diff_text(r, 1, False)} | {r['verdict']}"
                     + (" (stand-in)" if results.is_stand_in(r) and r["verdict"] in results.VERDICTS[:3] else "") + " |")
    excl = t_abl[(t_abl["ci_low"] > 0) | (t_abl["ci_high"] < 0)]
    same_clip = all(abs(r["clip_mean"] - t_base.loc[ds, "clip_mean"]) < 1e-9
                    for ds, r in t_abl.iterrows() if ds in t_base.index)
    lines += ["", f"Zero-shot top-1 intervals that exclude 0: {len(excl)} of {len(t_abl)}"
              + ("" if excl.empty else " (" + "; ".join(
                  f"{ds} {r['diff']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" for ds, r in excl.iterrows())
                 + ")") + ". "
              + ("CLIP's numbers are identical in both profiles, as they must be (same seeds, alpha = 0). "
                 if same_clip else "CLIP's numbers differ between the two profiles: check the runs. ")
              + ("The pairing-aware variant does not change the picture at this scale." if excl.empty
                 else "The pairing-aware variant changes the result where its interval excludes 0."), "", ABL_END]
    return "\n".join(lines)


def ablation_variant(profile: str) -> str:
    return load_config(profile).loss.cx_variant


def block(text: str, begin: str, end: str) -> str | None:
    """The text from ``begin`` to ``end`` (markers included), or None."""
    m = re.search(re.escape(begin) + ".*?" + re.escape(end), text, flags=re.S)
    return m.group(0) if m else None


def _replace(text: str, begin: str, end: str, new: str, anchor: str) -> str:
    if begin in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: new, text, flags=re.S)
    return text.replace(anchor, anchor + "\n\n" + new, 1)


def sections(profile: str, ablation: str | None, runs_root: Path | None = None, write_facts: bool = True,
             results_root: Path | None = None) -> dict[tuple[str, str], str]:
    """Every generated README section, keyed by its markers (what the drift test regenerates)."""
    results_root = results_root or ROOT / "results"
    out = {}
    answers = {p: comparison(p, results_root / p) for p, _ in ANSWER_PROFILES
               if (results_root / p / "metrics.csv").exists()}
    if answers:
        out[(ANS_BEGIN, ANS_END)] = answer_section(
            answers, {p: run_facts(p, runs_root, write_facts, results_root) for p in answers})
    comp = comparison(profile, results_root / profile)
    facts = run_facts(profile, runs_root, write_facts, results_root)
    out[(BEGIN, END)] = section(profile, comp, facts)
    if ablation and (results_root / ablation / "metrics.csv").exists():
        out[(ABL_BEGIN, ABL_END)] = ablation_section(ablation, profile, comparison(ablation, results_root / ablation),
                                                     comp, ablation_variant(ablation))
    from contextclip import sensitivity

    for sens_profile, ((begin, end), regime) in SENS_PROFILES.items():
        sens = results_root / sens_profile
        if (sens / sensitivity.METRICS_FILE).exists():
            out[(begin, end)] = sensitivity.readme_section(
                sens, begin, end, profile=sens_profile, regime=regime,
                facts=run_facts(sens_profile, runs_root, write_facts, results_root))
    if "answer" in answers:  # the plain words speak of the verdict: the answer profile's, when it is there
        out[(FOUND_BEGIN, FOUND_END)] = findings_section("answer", answers["answer"],
                                                         run_facts("answer", runs_root, write_facts, results_root))
    else:
        out[(FOUND_BEGIN, FOUND_END)] = findings_section(profile, comp, facts)
    return out


def findings_section(profile: str, comp: results.Comparison, facts: dict) -> str:
    """The README's "What the kit found": ``summary_text.plain_summary`` between its markers."""
    from contextclip.summary_text import plain_summary

    text = plain_summary(comp, profile, facts.get("val_contextual_loss"), load_config(profile).eval.verdicts)
    return "\n".join([FOUND_BEGIN, "### What the kit found, in plain words", "",
                       f"Generated from `results/{profile}/` by `contextclip.summary_text` "
                       "(`.venv/bin/python tools/update_readme_results.py`).", "", text.rstrip(), "", FOUND_END])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--ablation", default="ablation_feature_columns",
                    help="overlay profile compared with --profile (skipped when it has no results)")
    ap.add_argument("--runs-root", type=Path, default=None,
                    help="folder holding runs/<profile>/ (default: this checkout's runs/)")
    args = ap.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    anchor = END
    for (begin, end), new in sections(args.profile, args.ablation, args.runs_root).items():
        if begin == ANS_BEGIN and begin not in text:  # a new answer section goes before the Quick start
            text = text.replace("## Quick start", new + "\n\n## Quick start", 1)
            continue
        else:
            text = _replace(text, begin, end, new, anchor)
        anchor = end
        print(new + "\n")
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
