"""Evaluation speed: images/s of zero-shot feature extraction and the wall time of each task.

What it is: a hand-run benchmark. It copies a trained run's ``checkpoint.pt`` and config into a
scratch folder (so no cached embeddings are reused), then times (1) ``encode_images`` on the
first zero-shot dataset (images/s, after one warm-up batch) and (2) ``evaluate_run`` for every
task of the profile: zero-shot on each ``zero_shot_datasets`` entry (this includes embedding the
dataset and its prompts), fine-tuning and the linear probe on each ``fine_tune_datasets`` entry,
retrieval on ``retrieval_dataset``. Results go to ``benchmarks/results/eval_<profile>.json``;
the last printed line is that JSON.

What it is not: training (``train_step.py``) or the notebooks (``pipeline.py``).

    .venv/bin/python benchmarks/eval.py --run runs/embedded/clip-seed0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished run folder (has checkpoint.pt, config.json, summary.json)")
    ap.add_argument("--tasks", default="zero_shot,fine_tune,linear_probe,retrieval")
    ap.add_argument("--num-threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)

    from contextclip.encoding import encode_images
    from contextclip.evaluate import _classification_view, _get_dataset, evaluate_run, run_config
    from contextclip.runs import CHECKPOINT, CONFIG, SUMMARY, load_trained

    src = Path(args.run)
    cfg = run_config(src)
    tasks = [t for t in args.tasks.split(",") if t]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / src.name
        run.mkdir()
        for f in (CHECKPOINT, CONFIG, SUMMARY):
            shutil.copy2(src / f, run / f)
        t = time.perf_counter()
        model, _ = load_trained(run, device="cpu")
        load_s = time.perf_counter() - t

        name = cfg.data.zero_shot_datasets[0]
        view = _classification_view(_get_dataset(name, cfg))
        n = len(view.labels)
        bs = cfg.eval.eval_batch_size
        encode_images(model, view.images, bs, indices=torch.arange(min(bs, n)))  # warm-up
        t = time.perf_counter()
        encode_images(model, view.images, bs)
        enc_s = time.perf_counter() - t

        jobs = []
        if "zero_shot" in tasks:
            jobs += [("zero_shot", d) for d in cfg.data.zero_shot_datasets]
        for task in ("fine_tune", "linear_probe"):
            if task in tasks:
                jobs += [(task, d) for d in cfg.data.fine_tune_datasets]
        if "retrieval" in tasks and cfg.data.retrieval_dataset:
            jobs.append(("retrieval", cfg.data.retrieval_dataset))
        timings = []
        for task, d in jobs:
            t = time.perf_counter()
            rows = evaluate_run(run, task, d, Path(tmp) / "results", cfg, model=model)
            dt = time.perf_counter() - t
            timings.append({"task": task, "dataset": d, "seconds": round(dt, 2), "rows": len(rows)})
            print(f"{task:<13}{d:<20}{dt:8.2f} s", file=sys.stderr)
    result = {
        "benchmark": "eval", "profile": cfg.profile, "run": str(src), "load_trained_seconds": round(load_s, 2),
        "zero_shot_encode": {"dataset": name, "images": n, "seconds": round(enc_s, 3),
                             "images_per_s": round(n / enc_s, 1), "batch_size": bs},
        "tasks": timings, "total_task_seconds": round(sum(x["seconds"] for x in timings), 2),
        "image_tower": cfg.model.image_tower, "image_size": cfg.data.image_size, "machine": machine("cpu"),
    }
    print(json.dumps({k: result[k] for k in ("zero_shot_encode", "total_task_seconds")}), file=sys.stderr)
    save(f"eval_{cfg.profile}", result, args.out)
    return result


if __name__ == "__main__":
    main()
