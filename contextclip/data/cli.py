"""``python -m contextclip data ...``: prepare one dataset, every dataset of a profile, or check a
manifest. Argument parsing is in ``contextclip/cli.py``; this module only runs the command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from contextclip.data import prepare as prep
from contextclip.data import registry, synthetic
from contextclip.data.checks import check_manifest, write_clean


def run_check(manifest: Path, skip_bad: bool = False) -> int:
    """Print the report of ``manifest``: 0 when every row is good (or a clean copy was written), 1 with bad rows.

    A manifest that is unusable as a whole raises ``ManifestError`` (the CLI's exit code 2).
    """
    report = check_manifest(manifest)
    print(report.format())
    if not report.problems:
        print("all rows are good")
        return 0
    if skip_bad:
        out = write_clean(report)
        print(f"wrote {len(report.good)} good rows to {out} (the original is unchanged)")
        return 0
    print(f"{len(report.problems)} bad row(s); fix them or rerun with --skip-bad to write a cleaned copy")
    return 1


def run_prepare_profile(profile: str) -> int:
    from contextclip.config import load_config

    cfg = load_config(profile)
    root = registry.resolve_root(cfg.data.data_root)
    rc = 0
    if cfg.data.train_data == "synthetic":
        rc |= prep.prepare_synthetic(root, synthetic.params_for(cfg))
    for name in registry.required_datasets(cfg):
        print(f"--- {name}")
        rc |= prep.prepare(name, root)
    missing = registry.check_datasets(cfg)
    if missing:
        print(registry.missing_message(cfg, missing))
    return 1 if (rc or missing) else 0


def run(args) -> int:
    cmd = args.data_command
    if cmd == "prepare":
        root = args.root if args.root.is_absolute() else registry.resolve_root(args.root)
        return prep.prepare(args.name, root, allow_missing=args.allow_missing)
    if cmd == "prepare-profile":
        return run_prepare_profile(args.profile)
    if cmd == "make-rehearsal":
        from contextclip.data.rehearsal import RehearsalParams, make_rehearsal_tree

        root = args.root if args.root.is_absolute() else registry.resolve_root(args.root)
        params = RehearsalParams(per_class=args.per_class, birdsnap_per_class=args.birdsnap_per_class,
                                 birdsnap_species=args.birdsnap_species,
                                 cc3m_pairs=args.cc3m_pairs, cc3m_layout=args.cc3m_layout,
                                 flickr_images=args.flickr_images, max_side=args.max_side)
        make_rehearsal_tree(root, params, force=args.force)
        return 0
    if cmd == "check":
        return run_check(args.manifest, args.skip_bad)
    print(f"unknown data command {cmd!r}", file=sys.stderr)
    return 2
