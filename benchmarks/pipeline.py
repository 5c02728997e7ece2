"""Wall time of each notebook of ``python -m contextclip reproduce --profile P``.

What it is: a hand-run benchmark that reads the executed notebooks under
``runs/<P>/notebooks/`` (papermill writes each notebook's ``duration`` and every cell's duration
into the metadata) and reports per-notebook seconds, the total and the slowest cells, and how many
trained runs each notebook reused instead of training (``reused_runs``: the "already trained"
lines of its output; a pass that reused runs does not time training). With
``--run`` it first runs ``reproduce`` itself (``--force`` to rerun notebooks whose inputs did not
change) and also times the whole command. Saves ``benchmarks/results/pipeline_<P>.json``; the
last printed line is that JSON.

What it is not: a way to run the pipeline with other settings (use ``make reproduce``).

    .venv/bin/python benchmarks/pipeline.py --profile embedded            # read the last run
    .venv/bin/python benchmarks/pipeline.py --profile embedded --run --force
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, save  # noqa: E402

from contextclip.pipeline import reused_runs  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def notebook_times(nb_dir: Path, top: int = 3) -> list[dict]:
    rows = []
    for p in sorted(nb_dir.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(p.read_text(encoding="utf-8"))
        meta = nb.get("metadata", {}).get("papermill", {})
        cells = []
        for i, c in enumerate(nb.get("cells", [])):
            d = c.get("metadata", {}).get("papermill", {}).get("duration")
            if d is not None:
                first = "".join(c.get("source", "")).strip().splitlines()[:1]
                cells.append({"cell": i, "seconds": round(float(d), 2), "first_line": first[0][:80] if first else ""})
        rows.append({"notebook": p.stem, "seconds": round(float(meta["duration"]), 2) if meta.get("duration") else None,
                     "status": meta.get("exception") and "failed" or ("ok" if meta.get("duration") else "unknown"),
                     "start": meta.get("start_time"), "reused_runs": reused_runs(nb), "slowest_cells": sorted(cells, key=lambda c: -c["seconds"])[:top]})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--run", action="store_true", help="run reproduce first and time it")
    ap.add_argument("--force", action="store_true", help="with --run: rerun every notebook")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    wall = None
    if args.run:
        from contextclip.pipeline import reproduce

        t = time.perf_counter()
        rc = reproduce(args.profile, force=args.force)
        wall = round(time.perf_counter() - t, 1)
        if rc:
            print(f"reproduce returned {rc}; timings below are of what ran", file=sys.stderr)
    from contextclip.config import load_config

    name = load_config(args.profile).profile
    nb_dir = REPO / "runs" / name / "notebooks"
    if not nb_dir.exists():
        raise SystemExit(f"{nb_dir} does not exist: run `python -m contextclip reproduce --profile {args.profile}` "
                         "first, or pass --run")
    rows = notebook_times(nb_dir)
    for r in rows:
        reused = f" (reused {r['reused_runs']} trained runs)" if r["reused_runs"] else ""
        print(f"{r['notebook']:<20}{r['seconds'] if r['seconds'] is not None else 'n/a':>10} s  {r['status']}{reused}",
              file=sys.stderr)
    total = round(sum(r["seconds"] or 0 for r in rows), 1)
    result = {"benchmark": "pipeline", "profile": name, "notebooks": rows, "total_notebook_seconds": total,
              "reproduce_wall_seconds": wall, "machine": machine("cpu")}
    save(f"pipeline_{name}", result, args.out)
    return result


if __name__ == "__main__":
    main()
