"""Command line: ``python -m contextclip <command>`` (also the ``contextclip`` console script).

Only argument parsing lives here; each command calls one library function.

A mistake a user can make (a bad key, a missing or damaged file, a busy folder, a full disk, a
bad manifest row, a NaN loss, no GPU for ``device=cuda``) is a ``UserError`` (``errors.py``): it
ends in one line ``error: ...`` naming the file, key or row and what to do, with exit code 2 and
no traceback; ``--debug`` shows the traceback. Anything else is a bug in the kit and keeps its
traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from contextclip.config import METHODS, TASKS
from contextclip.errors import UserError, os_errors_as_user_errors


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contextclip", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("reproduce", help="run the numbered notebooks with papermill for a profile")
    r.add_argument("--profile", default="embedded")
    r.add_argument("--force", action="store_true", help="rerun steps whose inputs have not changed")
    r.add_argument("--wait", action="store_true", help="wait for another reproduce of the profile instead of stopping")

    t = sub.add_parser("train", help="train one model (resumes from --out's checkpoint)")
    t.add_argument("--profile", default="smoke")
    t.add_argument("--method", choices=METHODS, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--wait", action="store_true", help="wait for another process training in --out instead of stopping")

    e = sub.add_parser("evaluate", help="one evaluation of one trained run")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--task", choices=TASKS, required=True)
    e.add_argument("--dataset", required=True)
    e.add_argument("--results", type=Path, default=None, help="results folder (default results/<profile>)")
    e.add_argument("--wait", action="store_true", help="wait for another writer of the results folder")

    d = sub.add_parser("data", help="prepare or check datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("prepare", help="fetch or check one dataset")
    dp.add_argument("name")
    dp.add_argument("--root", type=Path, default=Path("data"))
    dp.add_argument("--allow-missing", action="store_true",
                    help="go on when an official split has missing or unusable items (they are listed)")
    dpp = dsub.add_parser("prepare-profile", help="prepare every dataset a profile uses")
    dpp.add_argument("--profile", default="embedded")
    dr = dsub.add_parser("make-rehearsal", help="write small format-exact copies of the paper's datasets "
                         "(generated images) for the paper_rehearsal profile")
    dr.add_argument("--root", type=Path, default=Path("data/rehearsal"))
    dr.add_argument("--per-class", type=int, default=3, help="images per class and split")
    dr.add_argument("--birdsnap-per-class", type=int, default=3, help="non-test images per species (>= 3)")
    dr.add_argument("--birdsnap-species", type=int, default=500, help="species written (Birdsnap has 500; fewer for a quick tree)")
    dr.add_argument("--cc3m-pairs", type=int, default=240)
    dr.add_argument("--cc3m-layout", choices=("webdataset", "files"), default="webdataset",
                    help="img2dataset --output_format the CC3M copy imitates")
    dr.add_argument("--flickr-images", type=int, default=60)
    dr.add_argument("--max-side", type=int, default=0, help="cap on generated JPEG sides (0: the real sizes)")
    dr.add_argument("--force", action="store_true", help="rewrite even when REHEARSAL.json matches")
    dc = dsub.add_parser("check", help="validate an image,caption manifest")
    dc.add_argument("manifest", type=Path)
    dc.add_argument("--skip-bad", action="store_true", help="write a cleaned copy beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with os_errors_as_user_errors():  # a missing path, no permission, a full disk: the user's to fix
            return _run(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except UserError as exc:
        if args.debug or os.environ.get("CONTEXTCLIP_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "reproduce":
        from contextclip.pipeline import reproduce

        return reproduce(args.profile, force=args.force, wait=args.wait)
    if args.command == "train":
        from contextclip.config import check_seed, load_config

        check_seed(args.seed, "--seed")
        cfg = load_config(args.profile, args.overrides)  # a mistake in it is named before torch is imported
        from contextclip.train import fit

        summary = fit(cfg, args.method, args.seed, args.out, fresh=args.fresh, progress=not args.no_progress,
                      wait=args.wait)
        if summary is not None and os.environ.get("RANK", "0") == "0":  # once under torchrun
            val = summary.get("final_val_loss")
            val_text = "n/a (no validation pairs)" if val is None else f"{val:.4f}"
            print(f"run folder: {args.out}  final_val_loss={val_text}")
        return 0
    if args.command == "evaluate":
        from contextclip.evaluate import evaluate_run

        rows = evaluate_run(args.run, args.task, args.dataset, results_dir=args.results, wait=args.wait)
        for row in rows:
            print(f"{row['task']:>12} {row['dataset']:>16} {row['metric']:>22} {row['value']:8.2f}  n={row['n']}")
        return 0
    if args.command == "data":
        from contextclip.data import cli as data_cli

        return data_cli.run(args)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
