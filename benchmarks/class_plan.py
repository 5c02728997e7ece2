"""Wall time of each lesson, in class order: every numbered notebook, then its worked solutions.

What it is: a hand-run benchmark for the class plan in the README. It executes
``notebooks/NN_*.ipynb`` and ``notebooks/solutions/NN_*_solutions.ipynb`` in order with papermill and
the kit's kernel at ``--profile`` (02 with ``fresh = True``, so training is timed, not reused), the
way a student's laptop would run them, and saves ``benchmarks/results/class_plan_<P>.json``
(machine, load average, seconds per notebook); the last printed line is that JSON. Executed copies
go to ``runs/<P>/class_plan/``.

With ``--route`` it times the README's 90-minute class route instead (``ROUTE`` below: which
notebook, on which profile, with which parameters, and the minutes of reading and discussion the
route plans around it) and saves ``benchmarks/results/class_route.json``; the README's route table
is that file's ``route`` rows. Notebooks on ``embedded`` read its committed results (nothing is
recomputed or written, see ``contextclip.layout.outputs_for``); 00 and 02 run live on ``smoke``.

What it is not: the pipeline (``make reproduce`` runs the notebooks with their fingerprints and skips).

    MPLBACKEND=Agg .venv/bin/python benchmarks/class_plan.py --profile smoke
    MPLBACKEND=Agg .venv/bin/python benchmarks/class_plan.py --route
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


#: The 90-minute class route: (notebook, profile, parameters, what the class does, reading + discussion
#: minutes). Computer time is measured by ``--route``; the minutes of people are the plan's.
ROUTE: list[dict] = [
    {"notebook": "00_contextual_loss_explained", "profile": "smoke", "params": {},
     "cells": "sections 1-5, 7 and 8 (the sliders), then exercise 3",
     "discuss": "Eq. 5-9 against the naive loop; why L_CX cannot tell a shuffled batch from an aligned one; "
                "what h does; exercise 3: which term reacts to noise, and why L_CX stops at log N",
     "people_min": 25},
    {"notebook": "02_train", "profile": "smoke", "params": {"fresh": True},
     "cells": "sections 1-2 (train both methods, the loss curves); section 3 is for reading at home",
     "discuss": "CLIP is ContextCLIP at alpha = 0; CLIP lowers L_CX without being trained on it (exercise 3)",
     "people_min": 10},
    {"notebook": "03_zero_shot", "profile": "embedded", "params": {},
     "cells": "all: the prompt overlap, the committed per-run table and Table 1",
     "discuss": "which sets are zero-shot in the paper's sense; a paired difference and its interval; "
                "what a stand-in row may and may not be compared with",
     "people_min": 15},
    {"notebook": "05_tsne", "profile": "embedded", "params": {},
     "cells": "sections 2-3 (the committed figures)",
     "discuss": "why a t-SNE picture is not a measurement (exercise 3)",
     "people_min": 5},
    {"notebook": "06_retrieval", "profile": "embedded", "params": {},
     "cells": "section 1 (Recall@K) and the committed grid",
     "discuss": "what counts as a correct image; chance level of Recall@K",
     "people_min": 8},
    {"notebook": "07_report", "profile": "embedded", "params": {},
     "cells": "sections 1-4 (tables and verdict)",
     "discuss": "supports / contradicts / inconclusive; why inconclusive is not 'not reproduced' (exercise 3); "
                "the plain-words summary and the glossary in the README",
     "people_min": 12},
]


def time_route(out=None) -> dict:
    """Run every step of ``ROUTE`` once, in order, and record its wall time and the load around it."""
    import papermill as pm

    from contextclip.lab import KERNEL_NAME

    out_dir = REPO / "runs" / "class_route"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in ROUTE:
        path = REPO / "notebooks" / f"{step['notebook']}.ipynb"
        load_before = os.getloadavg()[0]
        t = time.perf_counter()
        pm.execute_notebook(str(path), str(out_dir / f"{step['notebook']}_{step['profile']}.ipynb"),
                            parameters={"profile": step["profile"], **step["params"]}, kernel_name=KERNEL_NAME,
                            cwd=str(REPO), progress_bar=False)
        row = {**step, "computer_s": round(time.perf_counter() - t, 1),
               "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        print({k: row[k] for k in ("notebook", "profile", "computer_s", "load_1min")}, flush=True)
        rows.append(row)
    computer_min = sum(r["computer_s"] for r in rows) / 60
    result = {"benchmark": "class_route", "machine": machine(), "route": rows,
              "computer_min": round(computer_min, 1), "people_min": sum(r["people_min"] for r in rows),
              "total_min": round(computer_min + sum(r["people_min"] for r in rows), 1)}
    save("class_route", result, out)
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--out", default=None)
    ap.add_argument("--route", action="store_true", help="time the README's 90-minute class route instead")
    args = ap.parse_args(argv)
    if args.route:
        return time_route(args.out)
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
