"""What the kit found, in plain words, generated from a profile's results.

What it is: ``plain_summary(comparison, ...)`` turns the comparison summary of ``results.summarize``
(``results/<profile>/metrics.csv``) into a few sentences a student or a reader without statistics
can follow: how well the models do against guessing, whether the contextual term helped on the sets
that matter most, how many comparisons went which way, and what the numbers cannot say. The README's
"What the kit found" section is this text (``tools/update_readme_results.py`` renders it; a test
regenerates it).

What it is not: no statistics of its own and no verdict rule. It counts intervals by their sign
(an interval above 0: ContextCLIP better; below 0: worse; across 0: no detectable difference), the
same reading ``results.three_way`` makes without a paper figure; the verdict labels stay in
``contextclip.results``.
"""

from __future__ import annotations

import math

from contextclip.results import BETTER, WORSE, Comparison

#: zero-shot sets the summary speaks about first, with what they measure in plain words
KEY_SETS = (
    ("novel_classes", "24 kinds of shapes and symbols that no training caption names (the strictest test of "
                      "zero-shot, a primary endpoint)"),
    ("mnist_test", "real handwritten MNIST digits that were never used to tune anything"),
    ("mnist_real", "real handwritten MNIST digits"),
    ("novel_shapes", "shapes that no training caption names (the strictest test of zero-shot)"),
)


def _direction(lo: float, hi: float) -> str:
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no detectable difference"


def _points(x: float) -> str:
    return f"{abs(x):.1f} point{'s' if abs(round(x, 1)) != 1 else ''}"


def plain_summary(comp: Comparison, profile: str, val_contextual_loss: dict | None = None,
                  verdicts: bool = True) -> str:
    """The plain-words summary (Markdown bullets) of one profile's comparison; for a profile without
    verdicts (``eval.verdicts: false``, smoke) only the banner that its numbers measure nothing."""
    if not verdicts:
        from contextclip.presentation import banner

        return banner(profile, verdicts) + "\n"
    rows = comp.rows()
    if rows.empty:
        return f"The `{profile}` profile has no paired CLIP/ContextCLIP results yet."
    k = int(rows["paired_seeds"].max())  # the seeds the tables summarise (block A when there are two blocks)
    lines = [f"In plain words, what the `{profile}` profile found ({k} training seeds per method"
             + ("; a second block of other seeds is in the answer section" if comp.replication else "")
             + "; each number is a mean over seeds):", ""]
    t1 = rows[(rows["task"] == "zero_shot") & (rows["metric"] == "top1")]
    for name, what in KEY_SETS:
        r = t1[t1["dataset"] == name]
        if r.empty:
            continue
        r = r.iloc[0]
        lo, hi, d = r["ci_low"], r["ci_high"], r["diff"]
        way = _direction(lo, hi) if not (math.isnan(lo) or math.isnan(hi)) else "not measurable"
        if way in ("better", "worse") and r["verdict"] not in (BETTER, WORSE):
            way = "not called"  # a primary whose Holm-adjusted p is not below 0.05 (results.comparison_table)
        lines.append(
            f"- On {what}, the models name the right class from its name alone {r['clip_mean']:.0f}% (CLIP) and "
            f"{r['contextclip_mean']:.0f}% (ContextCLIP) of the time, where guessing gets {r['chance']:.0f}%. "
            + ("Adding the contextual loss made no difference we could detect"
               f" (ContextCLIP {'+' if d >= 0 else '−'}{_points(d)}; the 95% interval, {lo:+.1f} to {hi:+.1f}, "
               "includes 0)." if way == "no detectable difference" else
               f"With the contextual loss ContextCLIP did {way}: {_points(d)} {'higher' if d > 0 else 'lower'} "
               f"(95% interval {lo:+.1f} to {hi:+.1f}, which excludes 0)." if way in ("better", "worse") else
               f"ContextCLIP {'+' if d >= 0 else '−'}{_points(d)} (95% interval {lo:+.1f} to {hi:+.1f}): the interval "
               f"alone excludes 0, but with two primary endpoints tested the Holm-adjusted p is {r['p_holm']:.3f}, "
               "not below 0.05, so it is not counted as a difference." if way == "not called" else
               "The difference has no interval (too few seeds)."))
    rows = rows[~rows["metric"].astype(str).str.endswith("_exact")]  # the old retrieval count, shown beside
    have = rows[rows["ci_low"].notna() & rows["ci_high"].notna()]
    better = int((have["verdict"] == BETTER).sum())
    worse = int((have["verdict"] == WORSE).sum())
    lines.append(
        f"- Over all {len(have)} comparisons with an interval (every set and metric of zero-shot, fine-tuning, "
        f"linear probe and retrieval), ContextCLIP was better in {better}, worse in {worse}, and "
        f"indistinguishable from CLIP in {len(have) - better - worse}.")
    paper = rows[rows["paper_diff"].notna() & rows["ci_low"].notna()]
    if len(paper):
        up, down = int((paper["ci_low"] > 0).sum()), int((paper["ci_high"] < 0).sum())
        lines.append(
            f"- The paper reports gains for ContextCLIP. Of our {len(paper)} rows that stand for a row of the "
            f"paper, ContextCLIP was better in {up}, worse in {down}, and indistinguishable in "
            f"{len(paper) - up - down}. These are stand-ins (generated training data, small models, minutes of "
            "training on a CPU): only the direction of a gain carries over to them, never its size, and they "
            "say nothing about the paper's own numbers.")
    if val_contextual_loss and {"clip", "contextclip"} <= set(val_contextual_loss):
        lines.append(
            f"- The contextual term itself does what it is trained for: on held-out pairs it is "
            f"{val_contextual_loss['contextclip']:.2f} for ContextCLIP against {val_contextual_loss['clip']:.2f} "
            "for CLIP, which is not trained on it." + (" Lowering it did not buy accuracy in any comparison here."
                                                        if better == 0 else ""))
    lines.append("- Another machine will give somewhat different numbers (training is exact on one machine, not "
                 "across processors); they should stay within the intervals.")
    return "\n".join(lines) + "\n"
