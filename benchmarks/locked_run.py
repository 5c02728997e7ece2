"""How long a locked-tower run trains on cached features: the seconds ``summary.json`` records.

What it is: a hand-run benchmark (never a timed test) of the pretrained regime's target, a run on
cached features that trains in under 10 s. It runs the kit's own command,

    python -m contextclip train --profile P --method M --seed S --out <tmp> --fresh --no-progress

for CLIP and ContextCLIP in turn, ``--repeats`` times each (the order alternates, so that a busy
spell on the machine does not fall on one method only), and reads each run's ``summary.json``:
``seconds`` (training + validation, the target's measure) and ``train_seconds`` (optimiser steps).
Per method: every run's seconds, the median, the fastest and the slowest, milliseconds per step,
and whether the median is under ``--target``; the load average before and after. The image and
caption features must already be on disk (any run of the profile writes them; the first run here
writes them if not, and its seconds then include nothing of that: the caches are built before the
clock of ``summary.json`` starts).

What it is not: the whole process (interpreter start, tower loading, reading the caches are outside
``summary.json``'s seconds; the wall time of each command is reported beside them).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/locked_run.py --profile pretrained --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def one_run(profile: str, method: str, seed: int, out: Path, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "contextclip", "train", "--profile", profile, "--method", method,
           "--seed", str(seed), "--out", str(out), "--fresh", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    env = json.loads((out / "environment.json").read_text(encoding="utf-8"))
    return {"seconds": summary["seconds"], "train_seconds": summary["train_seconds"], "wall_seconds": round(wall, 2),
            "steps": summary["steps"], "torch_threads": env.get("torch_threads")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="pretrained")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=10.0, help="seconds a run should stay under")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--out", default=None, help="result JSON path (default benchmarks/results/locked_run_<profile>.json)")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {"clip": [], "contextclip": []}
    with tempfile.TemporaryDirectory(prefix="locked_run_") as tmp:
        for r in range(args.repeats):
            order = ["clip", "contextclip"] if r % 2 == 0 else ["contextclip", "clip"]
            for method in order:
                res = one_run(args.profile, method, args.seed, Path(tmp) / f"{method}_{r}", args.set)
                runs[method].append(res)
                print(f"{method} repeat {r + 1}: {res['seconds']:.2f} s (summary.json), {res['wall_seconds']:.1f} s wall",
                      flush=True)
    result = {"benchmark": "locked_run", "profile": args.profile, "seed": args.seed, "overrides": args.set,
              "target_seconds": args.target, **machine("cpu")}
    for method, rs in runs.items():
        secs = [x["seconds"] for x in rs]
        steps = rs[0]["steps"]
        result[method] = {
            "seconds": secs, "median_seconds": round(median(secs), 3), "fastest_seconds": min(secs),
            "slowest_seconds": max(secs), "steps": steps,
            "ms_per_step": round(1e3 * median([x["train_seconds"] for x in rs]) / steps, 3) if steps else None,
            "wall_seconds": [x["wall_seconds"] for x in rs], "run_torch_threads": rs[0]["torch_threads"],
            "median_under_target": median(secs) < args.target,
        }
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    save(f"locked_run_{args.profile}", result, args.out)
    return result


if __name__ == "__main__":
    main()
