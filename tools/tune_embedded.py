"""Tune a profile (embedded, or ``--profile pretrained``) on MNIST *validation* digits only, and keep a
record of every try.

Each variant is ``configs/<profile>.yaml`` plus ``--set`` overrides; it is trained for the given
methods and seeds and scored by zero-shot top-1 on ``mnist_val`` (the 1,000 validation digits).
The 4,000 test digits (``mnist_test``) are never loaded here. Every result is appended, with the
machine load, to ``benchmarks/results/tuning_<profile>.jsonl``, the record behind the choices
listed in docs/decisions.md ("embedded profile: chosen on validation"; the pretrained regime's
image size and epochs).

    python tools/tune_embedded.py --name r10-e8 --set image_tower=resnet10 --set epochs=8 \
        --methods clip contextclip --seeds 0

Runs go to ``runs/tuning/<name>/<method>-seed<k>/`` (``runs/tuning-<profile>/...`` for other profiles) (git-ignored); a finished run is reused.
``--summary`` prints a recorded variant's means and paired differences (with their SD) and trains nothing:

    python tools/tune_embedded.py --name w32-e12-d085-ema0.995 --summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECORD = REPO / "benchmarks" / "results" / "tuning_embedded.jsonl"


def record_for(profile: str) -> Path:
    return REPO / "benchmarks" / "results" / f"tuning_{profile}.jsonl"
VALIDATION_SET = "mnist_val"


def summarize(name: str, record: Path = RECORD) -> str:
    """The recorded tries of ``name``: per method the seeds' top-1 and mean, and the paired
    differences ContextCLIP - CLIP with their mean and sample SD, for every score the record holds
    (``top1``, and ``top1_trained_weights`` for runs that kept a weight average)."""
    import statistics

    rows = [r for r in map(json.loads, record.read_text(encoding="utf-8").splitlines()) if r["name"] == name]
    if not rows:
        raise SystemExit(f"error: no try named {name!r} in {record}")
    lines = [f"{name} ({rows[0]['dataset']}):"]
    for key in ("top1_trained_weights", "top1"):
        by = {m: {r["seed"]: r[key] for r in rows if r["method"] == m and key in r} for m in ("clip", "contextclip")}
        if not by["clip"]:
            continue
        means = {m: statistics.mean(v.values()) for m, v in by.items() if v}
        lines.append(f"  {key}: " + "; ".join(f"{m} {[v[s] for s in sorted(v)]} mean {means[m]:.2f}"
                                             for m, v in by.items() if v))
        seeds = sorted(set(by["clip"]) & set(by["contextclip"]))
        if len(seeds) >= 2:
            d = [by["contextclip"][s] - by["clip"][s] for s in seeds]
            lines.append(f"    paired differences (seeds {seeds}): {[round(x, 2) for x in d]}, mean "
                         f"{statistics.mean(d):.2f}, SD {statistics.stdev(d):.2f}; mean of both methods "
                         f"{statistics.mean(means.values()):.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="variant name (run folder and record key)")
    ap.add_argument("--summary", action="store_true",
                    help="print the recorded tries of --name (means, paired differences and their SD); train nothing")
    ap.add_argument("--profile", default="embedded", help="the profile tuned (configs/PROFILE.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of the profile")
    ap.add_argument("--methods", nargs="+", default=["clip", "contextclip"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--record", type=Path, default=None, help="default: benchmarks/results/tuning_PROFILE.jsonl")
    args = ap.parse_args(argv)
    args.record = args.record or record_for(args.profile)
    if args.summary:
        print(summarize(args.name, args.record))
        return 0

    import torch

    from contextclip.config import load_config
    from contextclip.data import build_pair_datasets
    from contextclip.data.registry import get_dataset
    from contextclip.train import fit, load_trained
    from contextclip.zeroshot import evaluate_zero_shot

    cfg = load_config(args.profile, args.set)
    train_ds, val_ds = build_pair_datasets(cfg)
    val = get_dataset(VALIDATION_SET, cfg)
    args.record.parent.mkdir(parents=True, exist_ok=True)
    for method in args.methods:
        for seed in args.seeds:
            folder = "tuning" if args.profile == "embedded" else f"tuning-{args.profile}"
            run_dir = REPO / "runs" / folder / args.name / f"{method}-seed{seed}"
            t0 = time.perf_counter()
            summary = fit(cfg, method, seed, run_dir, train_ds=train_ds, val_ds=val_ds, progress=False)
            model, _ = load_trained(run_dir)
            res = evaluate_zero_shot(model, val, cfg)
            extra = {}
            if cfg.train.ema_decay > 0:  # the same run's trained (not averaged) weights, for a paired comparison
                raw, _ = load_trained(run_dir, averaged=False)
                extra["top1_trained_weights"] = round(evaluate_zero_shot(raw, val, cfg)["top1"], 2)
            row = {"name": args.name, "profile": args.profile, "overrides": args.set, "method": method, "seed": seed,
                   "dataset": VALIDATION_SET, "top1": round(res["top1"], 2), **extra, "n": res["n"],
                   "train_seconds": summary["train_seconds"], "wall_seconds": round(time.perf_counter() - t0, 1),
                   "final_val_loss": summary["final_val_loss"], "load_average": [round(x, 2) for x in os.getloadavg()],
                   "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
            print(json.dumps(row), flush=True)
            with open(args.record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
