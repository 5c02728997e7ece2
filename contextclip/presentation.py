"""How a profile's comparison is shown: with verdicts, or (``eval.verdicts: false``, the smoke
profile) with a banner that its numbers measure nothing and no verdict column.

What it is: a thin layer over ``contextclip.results``: it takes what ``Comparison`` and
``to_markdown`` render (a comparison built with ``verdicts=False`` has no verdict column: that is
decided there, once) and, for such a comparison, puts a banner first and leaves out the verdict
sentences. Notebooks 03, 04, 06 and 07 and ``report.md`` render through it.

What it is not: no statistics and no verdict rule (``results.three_way`` decides; nothing here
changes a number).
"""

from __future__ import annotations

from pathlib import Path

from contextclip import fileio, results

#: the banner of a profile whose numbers measure nothing (``eval.verdicts: false``)
NO_VERDICT_BANNER = (
    "> **These numbers measure nothing.** The `{profile}` profile trains tiny, randomly initialised towers "
    "for seconds to check that every step of the kit runs end to end. Its accuracies sit near chance and "
    "its differences and intervals are noise, so no verdict is given. For numbers that mean something, "
    "use the `embedded` profile (`make reproduce`)."
)


def banner(profile: str | None, verdicts: bool) -> str:
    """The Markdown banner for a profile without verdicts; ``""`` when verdicts are shown."""
    return "" if verdicts else NO_VERDICT_BANNER.format(profile=profile or "this")


def table_markdown(comparison: results.Comparison, name: str, **kwargs) -> str:
    """``comparison.table_markdown(name)`` (no verdict column when the comparison has no verdicts),
    with the banner first when it has none."""
    text = comparison.table_markdown(name, **kwargs)
    if comparison.verdicts:
        return text
    return banner(comparison.profile, False) + "\n\n" + text


def differences(table, verdicts: bool) -> str:
    """One bullet per row: ``results.verdict`` with verdicts; otherwise only the difference and its interval."""
    if verdicts:
        return results.verdict(table)
    lines = []
    for _, r in table.iterrows():
        if r["status"] != "ok" or r["diff"] != r["diff"]:
            continue
        lines.append(f"- {results.row_name(r)}: ContextCLIP − CLIP = {results.diff_text(r)} (no verdict on this profile)")
    return "\n".join(lines)


def report_markdown(comparison: results.Comparison, environment: dict | None) -> str:
    """``report.md``: ``comparison.report_markdown`` with verdicts; otherwise the banner, the tables
    (without a verdict column) and the environment (no headline, no verdict sentences)."""
    if comparison.verdicts:
        return comparison.report_markdown(environment)
    text = f"# Report ({comparison.profile} profile)\n\n{banner(comparison.profile, False)}\n\n"
    text += "\n".join(comparison.table_markdown(name) for name in comparison.tables)
    if environment:
        text += "\n## Environment\n\n" + "\n".join(f"- {k}: {v}" for k, v in environment.items()) + "\n"
    return text


def rewrite_table_files(results_dir: Path, comparison: results.Comparison) -> None:
    """For a comparison without verdicts, put the banner first in the ``table*.md`` files
    ``results.summarize`` wrote (they already have no verdict column; the ``.csv`` files keep every column)."""
    if comparison.verdicts:
        return
    for name in comparison.tables:
        text = banner(comparison.profile, False) + "\n\n" + comparison.table_file(name)
        fileio.atomic_write(Path(results_dir) / f"{name}.md", text)


def saved_rows(results_dir: Path, tasks, datasets, methods, seeds):
    """The rows of ``results_dir/metrics.csv`` a notebook shows instead of evaluating again: these
    tasks, datasets, methods and seeds, as ``evaluate.evaluate_runs`` would have returned them."""
    m = results.read_metrics(Path(results_dir) / "metrics.csv")
    return m[m["task"].isin(list(tasks)) & m["dataset"].isin(list(datasets)) & m["method"].isin(list(methods))
             & m["seed"].isin([int(s) for s in seeds])].reset_index(drop=True)
