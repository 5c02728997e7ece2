"""Rewrite the README's generated sections from the files `make reproduce` wrote.

Usage: ``.venv/bin/python tools/update_readme_results.py [--profile embedded]`` after
``make reproduce``. Sections, each between two HTML comment markers:

- "Results (<profile> profile)": the tables and the reading, rendered from the one comparison
  summary of ``contextclip.results.summarize`` (``results/<profile>/metrics.csv``), plus the run
  facts (notebook times, training seconds, held-out contextual loss);
- "Ablation": an overlay profile's ContextCLIP beside the baseline's two methods;
- "Sensitivity": one generated sentence per contextual-loss variant from ``results/sensitivity/``.

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
ABL_BEGIN, ABL_END = "<!-- ablation:begin -->", "<!-- ablation:end -->"
SENS_BEGIN, SENS_END = "<!-- sensitivity:begin -->", "<!-- sensitivity:end -->"
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
    return results.summarize(results_dir or ROOT / "results" / profile, cfg.profile,
                             cfg.eval.bootstrap_samples, write=False, seeds=cfg.train.seeds)


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
             "paired differences and *detectable ±* its half-width. Full tables: [`results/" + profile
             + "/`](results/" + profile + "/); regenerate this section with "
             "`.venv/bin/python tools/update_readme_results.py`.", "",
             "**Table 1 analogue: zero-shot top-1.** " + results.VERDICT_LEGEND, ""]
    lines += comp.table_markdown("table1_zero_shot", ("top1",), 1, compact=True, title=False).splitlines()[:-2]
    lines += ["", "**Table 2 analogue: fine-tuning and linear probe, top-1**", ""]
    lines += comp.table_markdown("table2_fine_tune", ("top1",), 1, compact=True, title=False).splitlines()[:-2]
    lines += ["", "**Retrieval on held-out captioned scenes (Fig. 1/5 made quantitative)**", ""]
    lines += comp.table_markdown("table3_retrieval", ("text_to_image_R@1", "text_to_image_R@10",
                                                      "image_to_text_R@1", "image_to_text_R@10"),
                                 1, compact=True, title=False).splitlines()[:-2]
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
    comp = comparison(profile, results_root / profile)
    out = {(BEGIN, END): section(profile, comp, run_facts(profile, runs_root, write_facts, results_root))}
    if ablation and (results_root / ablation / "metrics.csv").exists():
        out[(ABL_BEGIN, ABL_END)] = ablation_section(ablation, profile, comparison(ablation, results_root / ablation),
                                                     comp, ablation_variant(ablation))
    from contextclip import sensitivity

    sens = results_root / "sensitivity"
    if (sens / sensitivity.METRICS_FILE).exists():
        out[(SENS_BEGIN, SENS_END)] = sensitivity.readme_section(
            sens, SENS_BEGIN, SENS_END, facts=run_facts("sensitivity", runs_root, write_facts, results_root))
    return out


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
        text = _replace(text, begin, end, new, anchor)
        anchor = end
        print(new + "\n")
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
