"""Wall time of each lesson, in class order: every numbered notebook, then its worked solutions.

What it is: a hand-run benchmark for the class plan in the README. It executes
``notebooks/NN_*.ipynb`` and ``notebooks/solutions/NN_*_solutions.ipynb`` in order with papermill and
the kit's kernel at ``--profile`` (02 with ``fresh = True``, so training is timed, not reused), the
way a student's laptop would run them, and saves ``benchmarks/results/class_plan_<P>.json``
(machine, load average, seconds per notebook); the last printed line is that JSON. Executed copies
go to ``runs/<P>/class_plan/``.

What it is not: the pipeline (``make reproduce`` runs the notebooks with their fingerprints and skips).

    MPLBACKEND=Agg .venv/bin/python benchmarks/class_plan.py --profile smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, save  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import papermill as pm

    from contextclip.lab import KERNEL_NAME
    from contextclip.pipeline import list_notebooks

    out_dir = REPO / "runs" / args.profile / "class_plan"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for nb in list_notebooks():
        solution = nb.parent / "solutions" / f"{nb.stem}_solutions.ipynb"
        row = {"notebook": nb.stem}
        for key, path, params in (("notebook_s", nb, {"profile": args.profile}),
                                  ("solutions_s", solution, {"profile": args.profile})):
            if key == "notebook_s" and nb.stem.startswith("02_"):
                params["fresh"] = True
            if not path.exists():
                row[key] = None
                continue
            t = time.perf_counter()
            pm.execute_notebook(str(path), str(out_dir / path.name), parameters=params, kernel_name=KERNEL_NAME,
                                cwd=str(REPO), progress_bar=False)
            row[key] = round(time.perf_counter() - t, 1)
        print(row, flush=True)
        rows.append(row)
    result = {"benchmark": "class_plan", "profile": args.profile, "machine": machine(), "notebooks": rows,
              "total_s": round(sum((r["notebook_s"] or 0) + (r["solutions_s"] or 0) for r in rows), 1)}
    save(f"class_plan_{args.profile}", result, args.out)
    return result


if __name__ == "__main__":
    main()
