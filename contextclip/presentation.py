"""How a profile's comparison is shown: with verdicts, or (``eval.verdicts: false``, the smoke
profile) with a banner that its numbers measure nothing and no verdict column.

What it is: a thin layer over ``contextclip.results``: it takes what ``Comparison`` and
``to_markdown`` render and, for a profile without verdicts, puts a banner first, drops the
verdict column from the Markdown tables and leaves out the verdict sentences. Notebooks 03, 04
and 07 and ``report.md`` render through it.

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


def drop_verdict_column(markdown: str) -> str:
    """Remove the ``verdict`` column of every Markdown table in ``markdown`` and the verdict legend.

    A table is a run of lines starting with ``|``; its header names the columns. Tables without a
    ``verdict`` column and all other lines are left as they are.
    """
    out: list[str] = []
    drop: int | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            drop = None
            out.append(line)
            continue
        cells = line.strip().strip("|").split("|")
        if drop is None:  # a table's header
            names = [c.strip() for c in cells]
            drop = names.index("verdict") if "verdict" in names else -1
        if drop >= 0 and drop < len(cells):
            del cells[drop]
        out.append("|" + "|".join(cells) + "|")
    text = "\n".join(out) + ("\n" if markdown.endswith("\n") else "")
    legend = getattr(results, "VERDICT_LEGEND", "")
    return text.replace(" " + legend, "").replace(legend, "") if legend else text


def table_markdown(comparison: results.Comparison, name: str, verdicts: bool, **kwargs) -> str:
    """``comparison.table_markdown(name)``, with the banner and without the verdict column when not ``verdicts``."""
    text = comparison.table_markdown(name, **kwargs)
    if verdicts:
        return text
    return banner(comparison.profile, verdicts) + "\n\n" + drop_verdict_column(text)


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


def report_markdown(comparison: results.Comparison, environment: dict | None, verdicts: bool) -> str:
    """``report.md``: ``comparison.report_markdown`` with verdicts; otherwise the banner, the tables
    without their verdict column, and the environment (no headline, no verdict sentences)."""
    if verdicts:
        return comparison.report_markdown(environment)
    text = f"# Report ({comparison.profile} profile)\n\n{banner(comparison.profile, verdicts)}\n\n"
    text += "\n".join(drop_verdict_column(comparison.table_markdown(name)) for name in comparison.tables)
    if environment:
        text += "\n## Environment\n\n" + "\n".join(f"- {k}: {v}" for k, v in environment.items()) + "\n"
    return text


def rewrite_table_files(results_dir: Path, comparison: results.Comparison, verdicts: bool) -> None:
    """For a profile without verdicts, rewrite the ``table*.md`` files ``results.summarize`` wrote
    with the banner and without the verdict column (the ``.csv`` files keep every column)."""
    if verdicts:
        return
    for name in comparison.tables:
        text = banner(comparison.profile, verdicts) + "\n\n" + drop_verdict_column(comparison.table_file(name))
        fileio.atomic_write(Path(results_dir) / f"{name}.md", text)


def saved_rows(results_dir: Path, tasks, datasets, methods, seeds):
    """The rows of ``results_dir/metrics.csv`` a notebook shows instead of evaluating again: these
    tasks, datasets, methods and seeds, as ``evaluate.evaluate_runs`` would have returned them."""
    m = results.read_metrics(Path(results_dir) / "metrics.csv")
    return m[m["task"].isin(list(tasks)) & m["dataset"].isin(list(datasets)) & m["method"].isin(list(methods))
             & m["seed"].isin([int(s) for s in seeds])].reset_index(drop=True)
