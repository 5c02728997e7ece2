"""Write the measured notebook runtimes into the notebooks' headers and docs/notebooks.md.

The numbers come only from ``benchmarks/results/pipeline_<profile>.json`` (written by
``python benchmarks/pipeline.py --profile P``, which times the notebooks of the last
``reproduce`` run); a profile without such a file is reported as "not measured", and a pass that
reused trained runs instead of training them says so beside its time. Run
``python tools/notebook_runtimes.py`` after a new benchmark, then ``make notebooks``.
``--check`` exits 1 when a header or the table differs from the measurements.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROFILES = ("smoke", "embedded", "paper", "sensitivity")
BEGIN, END = "<!-- runtimes: begin (tools/notebook_runtimes.py) -->", "<!-- runtimes: end -->"
HEADER = re.compile(r"^# \*\*Runtime\.\*\*.*$", re.M)


def _fmt(seconds: float) -> str:
    s = round(seconds)
    return f"{s} s" if s < 90 else f"{s // 60} min {s % 60:02d} s"


def _time(m: dict, notebook: str) -> str:
    """The notebook's measured time, with the trained runs that pass reused (so trained nothing for)."""
    n = m.get("reused", {}).get(notebook, 0)
    return _fmt(m["notebooks"][notebook]) + (f", reusing {n} trained runs" if n else "")


def measurements() -> dict[str, dict]:
    """``{profile: {"notebooks": {name: seconds}, "machine": ..., "file": ...}}`` for each measured profile."""
    out = {}
    for profile in PROFILES:
        path = RESULTS / f"pipeline_{profile}.json"
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        ok = [r for r in d["notebooks"] if r.get("seconds") is not None and r.get("status") == "ok"]
        out[profile] = {"notebooks": {r["notebook"]: r["seconds"] for r in ok},
                        "reused": {r["notebook"]: r.get("reused_runs", 0) for r in ok},
                        "machine": d.get("machine", {}), "file": path.relative_to(ROOT)}
    return out


def _machine(m: dict) -> str:
    dev = "one GPU" if str(m.get("device", "cpu")).startswith("cuda") else f"{m.get('cpu_count', '?')} CPU cores"
    load, cores = (m.get("load_average") or [0])[0], m.get("cpu_count") or 0
    busy = f" shared with other jobs at load {load:.0f}, an upper bound" if cores and load > cores else ""
    return f"{dev}{busy}, {str(m.get('date', ''))[:10]}"


@functools.cache
def _listed_notebooks(profile: str) -> tuple[str, ...]:
    from contextclip.config import load_config

    return tuple(load_config(profile).pipeline.notebooks)


def runs_notebook(profile: str, notebook: str) -> bool:
    """True when ``make reproduce PROFILE=profile`` runs ``notebook`` (its ``pipeline.notebooks`` list)."""
    listed = _listed_notebooks(profile)
    return not listed or notebook[:2] in listed  # an empty list: every notebook


def header_line(notebook: str, meas: dict[str, dict]) -> str:
    """The notebook's runtime line: one entry per profile that runs it, measured or not yet."""
    parts = []
    for profile in PROFILES:
        m = meas.get(profile)
        if m and notebook in m["notebooks"]:
            parts.append(f"{profile}: {_time(m, notebook)} (measured, {_machine(m['machine'])})")
        elif runs_notebook(profile, notebook):
            parts.append(f"{profile}: not measured yet")
    return ("# **Runtime.** " + "; ".join(parts) + ". Source: `benchmarks/results/pipeline_<profile>.json` "
            "(`python tools/notebook_runtimes.py`).")


def table(meas: dict[str, dict]) -> str:
    names = sorted({p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py")})
    lines = ["| notebook | " + " | ".join(PROFILES) + " |", "|---|" + "---|" * len(PROFILES)]
    for n in names:
        cells = [_time(meas[p], n) if p in meas and n in meas[p]["notebooks"] else "not measured"
                 for p in PROFILES]
        lines.append(f"| `{n}` | " + " | ".join(cells) + " |")
    src = "; ".join(f"{p}: `{m['file']}` ({_machine(m['machine'])})" for p, m in meas.items()) or "none yet"
    return "\n".join(lines) + f"\n\nMeasured by `python benchmarks/pipeline.py --profile P`; files: {src}."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report differences (exit 1 if any)")
    args = ap.parse_args(argv)
    meas = measurements()
    stale = []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        text = nb.read_text(encoding="utf-8")
        if not HEADER.search(text):
            continue
        line = header_line(nb.stem, meas)
        new = HEADER.sub(lambda _, line=line: line, text, count=1)
        if new != text:
            stale.append(str(nb.relative_to(ROOT)))
            if not args.check:
                nb.write_text(new, encoding="utf-8")
    doc = ROOT / "docs" / "notebooks.md"
    text = doc.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
        new = text[:a] + "\n" + table(meas) + "\n" + text[b:]
        if new != text:
            stale.append(str(doc.relative_to(ROOT)))
            if not args.check:
                doc.write_text(new, encoding="utf-8")
    if stale:
        print(("out of date: " if args.check else "updated: ") + ", ".join(stale), file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
