"""Batch run of the numbered notebooks with papermill: ``python -m contextclip reproduce --profile P``.

What it does, per notebook ``notebooks/0*.ipynb`` in order:

1. reads the names the notebook's ``parameters`` cell declares (parsed from the tagged cell);
2. builds the parameters to inject: ``profile`` plus, for every declared config knob, its value
   in ``configs/P.yaml`` (with any ``overrides``), plus explicit per-notebook ``notebook_params``,
   plus ``pipeline_run = True`` where declared (notebooks 03-07: the pipeline alone writes the
   profile's ``results/`` and ``figures/``; a run by hand writes under ``runs/P/by_hand/``).
   A key the notebook does not declare is an error naming the notebook and the key
   (papermill itself only warns);
3. skips the notebook when its fingerprint is unchanged (notebook source, injected parameters,
   resolved config, the package's source, and the outputs of the notebooks before it) and every
   output it recorded still has the SHA-256 it recorded, unless ``force``;
4. executes it with the kit's ``contextclip`` kernel (``contextclip.lab``), cwd = repository root, a per-cell timeout,
   into ``runs/P/notebooks/<name>.ipynb`` (a failing run is kept as ``<name>.failed.ipynb``),
   streaming the kernel's stdout/stderr to ``runs/P/notebooks/<name>.log`` (``tail -f`` it);
5. after success only, records the fingerprint and the files it wrote, with their digests, in
   ``runs/P/pipeline_state.json`` (written atomically).

Before a notebook runs, its record is removed from the state and the results and figures
folders are backed up; a notebook that fails (or is killed: the next ``reproduce`` finds its
``running`` mark) has the files it wrote there moved to ``runs/P/notebooks/<name>.failed-outputs/``
and the ones it changed restored, so nothing it half-wrote survives as finished, and it always
runs again. Run folders are not rolled back: a training checkpoint resumes by itself.

A failing notebook stops the run with exit code 1 and a message naming the notebook, the cell
and the error (a dead kernel included); earlier notebooks' outputs and state are left as they were.
One ``reproduce`` per profile at a time: it holds the locks of ``runs/P`` and ``results/P``
(``contextclip/lock.py``); a second one stops naming the first, or waits with ``wait``.

This module runs notebooks; it computes no results itself (the notebooks call the library).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contextclip import fileio
from contextclip.config import KNOB_SECTION, REPO_ROOT, Config, ConfigError, load_config
from contextclip.errors import DatasetsMissingError, PipelineError
from contextclip.lab import KERNEL_NAME  # the kit's kernel; `make setup` installs it
from contextclip.layout import paths_for
from contextclip.lock import LOCK_NAME, folder_lock
from contextclip.runs import ALREADY_TRAINED
from contextclip.schemas import PIPELINE_STATE, damaged, validate

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PACKAGE_DIR = Path(__file__).resolve().parent
STATE_FILE = "pipeline_state.json"
STATE_VERSION = 1

#: per-cell timeout in seconds, per profile (a hung cell otherwise runs until the job limit);
#: profiles not listed use DEFAULT_CELL_TIMEOUT_S. Override with reproduce(cell_timeout=...).
CELL_TIMEOUT_S: dict[str, int] = {"smoke": 600, "embedded": 1800, "paper": 12 * 3600}
DEFAULT_CELL_TIMEOUT_S = 4 * 3600


#: the notebook parameter the pipeline sets to True (a notebook run by hand leaves it False)
PIPELINE_RUN = "pipeline_run"


# ----------------------------------------------------------------------------- parameters
#: what ``train.fit`` prints for a finished run it returns without training again
REUSED_RUN_LINE = f": {ALREADY_TRAINED} ("


def reused_runs(nb: dict) -> int:
    """How many trained runs an executed notebook (as JSON) reused instead of training: the
    "already trained" lines of its outputs. Timings of a pass that reused runs do not time training."""
    n = 0
    for c in nb.get("cells", []):
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                n += "".join(o.get("text", "")).count(REUSED_RUN_LINE)
    return n


def parameters_cell(nb: Any, name: str = "notebook") -> tuple[int, str]:
    """Index and source of the single code cell tagged ``parameters`` (error if none or several)."""
    found = [(i, c) for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not found:
        raise PipelineError(f"{name}: no code cell is tagged 'parameters'; tag the cell of defaults")
    if len(found) > 1:
        raise PipelineError(f"{name}: {len(found)} cells are tagged 'parameters'; papermill needs exactly one")
    i, cell = found[0]
    return i, cell.source


def declared_parameters(notebook: Path | Any, name: str | None = None) -> dict[str, Any]:
    """``name -> default`` of the top-level assignments in the ``parameters`` cell.

    Defaults must be literals (numbers, strings, booleans, None, lists/dicts of them), as papermill
    expects; anything else is an error naming the line.
    """
    nb = _read(notebook) if isinstance(notebook, (str, Path)) else notebook
    label = name or (Path(notebook).stem if isinstance(notebook, (str, Path)) else "notebook")
    _, src = parameters_cell(nb, label)
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise PipelineError(f"{label}: the parameters cell is not valid Python: {exc}") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            raise PipelineError(
                f"{label}: parameters cell line {node.lineno}: only `name = literal` assignments are allowed"
            )
        try:
            out[target] = ast.literal_eval(value)
        except ValueError:
            raise PipelineError(
                f"{label}: parameter '{target}' (line {node.lineno}) must be a literal value"
            ) from None
    return out


def notebook_parameters(
    notebook: Path, cfg: Config, profile: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The parameters injected into ``notebook``: profile + declared knobs from ``cfg`` + ``extra``.

    Raises ``PipelineError`` naming the notebook and the key when ``extra`` holds a name the
    notebook does not declare, or when the notebook does not declare ``profile``.
    """
    name = Path(notebook).stem
    declared = declared_parameters(notebook, name)
    if "profile" not in declared:
        raise PipelineError(f"notebook {name}: its parameters cell does not declare 'profile'")
    params: dict[str, Any] = {"profile": profile}
    for key in declared:
        if key in KNOB_SECTION:
            params[key] = cfg.get(key)
    if PIPELINE_RUN in declared:  # only the pipeline writes the profile's results/ and figures/ (layout.outputs_for)
        params[PIPELINE_RUN] = True
    for key, value in (extra or {}).items():
        if key not in declared:
            raise PipelineError(
                f"notebook {name}: parameter '{key}' is not declared in its parameters cell; "
                f"it declares {sorted(declared)}"
            )
        params[key] = value
    return params


# ---------------------------------------------------------------------------- fingerprints
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the package's source (``*.py`` and assets), so a library change reruns the notebooks."""
    h = hashlib.sha256()
    for p in sorted(package_dir.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".json", ".txt", ".yaml", ".csv") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(package_dir)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def notebook_source_hash(nb: Any) -> str:
    """Hash of the cells' types, sources and tags (not outputs or execution counts)."""
    cells = [[c.cell_type, c.source, sorted(c.get("metadata", {}).get("tags", []))] for c in nb.cells]
    return _sha(json.dumps(cells, sort_keys=True).encode())


def fingerprint(nb_hash: str, params: dict[str, Any], cfg: Config, pkg_hash: str, upstream: str) -> str:
    """The inputs of one notebook step; equal fingerprints mean the step need not run again."""
    blob = json.dumps({"notebook": nb_hash, "parameters": params, "config": cfg.to_dict(),
                       "package": pkg_hash, "upstream": upstream}, sort_keys=True, default=str)
    return _sha(blob.encode())


def _snapshot(dirs: Sequence[Path], exclude: Sequence[Path]) -> dict[str, tuple[int, int]]:
    """``path -> (size, mtime_ns)`` of every file under ``dirs``, minus ``exclude``."""
    snap: dict[str, tuple[int, int]] = {}
    excl = [e.resolve() for e in exclude]
    for d in dirs:
        if not d.exists():
            continue
        for p in d.rglob("*"):
            rp = p.resolve()
            if (not p.is_file() or any(rp == e or e in rp.parents for e in excl) or p.suffix in (".tmp", ".lock")
                    or p.name == LOCK_NAME):
                continue
            st = p.stat()
            snap[str(rp)] = (st.st_size, st.st_mtime_ns)
    return snap


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def latest_digests(state: dict[str, Any], order: Sequence[str]) -> dict[str, str]:
    """``file -> digest`` recorded by the last step (in run order) that wrote it (metrics.csv: the last evaluator)."""
    out: dict[str, str] = {}
    for name in order:
        outputs = state["notebooks"].get(name, {}).get("outputs")
        if isinstance(outputs, dict):
            out.update(outputs)
    return out


def outputs_unchanged(entry: dict[str, Any], latest: dict[str, str] | None = None) -> bool:
    """True when every output a step recorded still exists with the SHA-256 last recorded for it.

    ``latest``: the digests of the last writer of each file (``latest_digests``), for files that a
    later step rewrote (metrics.csv, the tables); without it, the step's own digests are compared.
    """
    outputs = entry.get("outputs")
    if not isinstance(outputs, dict):
        return False
    for f, digest in outputs.items():
        p = Path(f)
        if not p.is_file() or _file_digest(p) != (latest or {}).get(f, digest):
            return False
    return True


def _backup(dirs: Sequence[Path], backup: Path) -> dict[str, tuple[int, int]]:
    """Copy every file under ``dirs`` into ``backup`` (by absolute path); returns their snapshot."""
    if backup.exists():
        shutil.rmtree(backup)
    snap = _snapshot(dirs, [])
    for f in snap:
        dst = backup / Path(f).relative_to("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    return snap


def _restore(src: Path, dst: Path) -> None:
    """Put the backed-up ``src`` back at ``dst`` atomically: a kill leaves the old or the restored file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = fileio.tmp_path(dst)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _roll_back(dirs: Sequence[Path], backup: Path, before: dict[str, list], failed_dir: Path,
               finished: dict[str, set[str]] | None = None) -> tuple[int, int]:
    """Undo a failed step's writes under ``dirs``: new files to ``failed_dir``, changed ones restored.

    ``finished``: ``file -> digests`` recorded by finished steps; a file that still holds what a
    finished step recorded is finished work and is never moved nor replaced, whatever
    ``before`` says (a damaged or hand-made running mark cannot sweep finished results away).
    Returns (files moved or restored, finished files kept).
    """
    now = _snapshot(dirs, [])
    roots = [Path(d).resolve() for d in dirs]
    before = {f: v for f, v in before.items() if any(r == Path(f) or r in Path(f).parents for r in roots)}
    finished = finished or {}
    moved = kept = 0
    for f, stamp in now.items():
        if f in finished and _file_digest(Path(f)) in finished[f]:
            kept += f not in before or list(stamp) != list(before[f])
            continue
        if f not in before:
            dst = failed_dir / Path(f).relative_to("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dst)
            moved += 1
        elif list(stamp) != list(before[f]) and (backup / Path(f).relative_to("/")).exists():
            _restore(backup / Path(f).relative_to("/"), Path(f))
            moved += 1
    for f in before:
        if f not in now and (backup / Path(f).relative_to("/")).exists():
            _restore(backup / Path(f).relative_to("/"), Path(f))
            moved += 1
    shutil.rmtree(backup, ignore_errors=True)
    return moved, kept


#: how long a finished step waits for other processes to close files under the watched folders
WRITERS_TIMEOUT_S = 120.0


def open_by_others(dirs: Sequence[Path]) -> dict[str, int]:
    """``file -> pid`` of files under ``dirs`` that another process holds open for writing (Linux ``/proc``;
    empty elsewhere). Lock files are left out: the pipeline and its writers hold those on purpose."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return {}
    roots = [str(Path(d).resolve()) + os.sep for d in dirs]
    out: dict[str, int] = {}
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
                if not any(target.startswith(r) for r in roots) or target.endswith(LOCK_NAME) or ".lock" in target:
                    continue
                flags = int((entry / "fdinfo" / fd.name).read_text().split("flags:")[1].split()[0], 8)
            except (OSError, IndexError, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                out[target] = int(entry.name)
    return out


def _wait_for_writers(dirs: Sequence[Path], log: Callable[[str], None], name: str,
                      timeout_s: float | None = None, poll_s: float = 0.2) -> None:
    """Wait until no other process writes under ``dirs`` (at most ``timeout_s``), so that the digests a step
    records are of finished files: a process a notebook started (forked trainers, a background job) can
    outlive its kernel, and a digest of a half-written file makes the next ``reproduce`` rerun the step."""
    timeout_s = WRITERS_TIMEOUT_S if timeout_s is None else timeout_s
    deadline, told = time.monotonic() + timeout_s, False
    while True:
        busy = open_by_others(dirs)
        if not busy:
            return
        if time.monotonic() > deadline:
            log(f"{name}: {len(busy)} file(s) still open for writing after {timeout_s:.0f} s (first: "
                f"{next(iter(busy))}, pid {next(iter(busy.values()))}); recording them as they are now")
            return
        if not told:
            log(f"{name}: waiting for pid {next(iter(busy.values()))} to finish writing {next(iter(busy))}")
            told = True
        time.sleep(poll_s)


# --------------------------------------------------------------------------------- state
#: what a damaged state file's message tells the user to do
STATE_ADVICE = ("restore it from a copy if you have one; otherwise delete it: every notebook then runs again, the "
                "trainings inside resume from their checkpoints and finished runs are not trained again")


def read_state(path: Path) -> dict[str, Any]:
    """The pipeline state of a profile: empty when absent; ``DamagedFileError`` naming the file when it is not
    what the kit writes (cut short, edited, another version), so that finished work is never dropped silently."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": STATE_VERSION, "notebooks": {}}
    except (OSError, UnicodeDecodeError) as exc:
        raise damaged(path, f"it cannot be read ({getattr(exc, 'strerror', None) or exc})", STATE_ADVICE) from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(path, f"not valid JSON ({exc})", STATE_ADVICE) from None
    validate(state, PIPELINE_STATE, path, STATE_ADVICE)
    if state["version"] != STATE_VERSION:
        raise damaged(path, f"version {state['version']} is not this kit's {STATE_VERSION}", STATE_ADVICE)
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically (a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write(path, json.dumps(state, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------ running
@dataclass
class StepResult:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    message: str = ""


def _failure_message(name: str, exc: BaseException, out_path: Path) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        where = f"cell {exc.cell_index} (execution count {exc.exec_count})"
        first = (exc.source or "").strip().splitlines()
        snippet = f" starting `{first[0][:80]}`" if first else ""
        return (f"notebook {name} failed at {where}{snippet}: {exc.ename}: {exc.evalue}. "
                f"Executed copy with the traceback: {out_path}")
    cell = _failed_cell_index(out_path)
    where = f" at cell {cell}" if cell is not None else " before its first cell finished"
    snippet = ""
    if cell is not None:
        try:
            first = _read(out_path).cells[cell].source.strip().splitlines()
            snippet = f" starting `{first[0][:80]}`" if first else ""
        except Exception:  # noqa: BLE001 - the message keeps the cell number
            pass
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if type(exc).__name__ == "DeadKernelError":
        text = "the kernel died (killed, out of memory, or a crash in native code)"
    return f"notebook {name} failed{where}{snippet}: {type(exc).__name__}: {text}. Executed copy: {out_path}"


def _failed_cell_index(out_path: Path) -> int | None:
    """The index of the cell papermill marked as running or failed in a partial output notebook."""
    try:
        nb = _read(out_path)
    except Exception:  # noqa: BLE001 - a partial file may be unreadable; the message then has no cell
        return None
    meta = [c.get("metadata", {}).get("papermill", {}) for c in nb.cells]
    for i, m in enumerate(meta):
        if m.get("status") in ("failed", "running"):
            return i
    # a dead kernel or a timeout: papermill closes the cell it was in as if it had completed, so the
    # cell is the last one that started
    started = [i for i, m in enumerate(meta) if m.get("start_time")]
    return started[-1] if started else None


def _read(path: Path) -> Any:
    import nbformat

    p = Path(path)
    if not p.exists():
        raise PipelineError(f"notebook {p} does not exist")
    return nbformat.read(p, as_version=4)


def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks ``0*.ipynb`` of ``notebook_dir``, in order."""
    nbs = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        raise PipelineError(f"no numbered notebooks (NN_name.ipynb) in {notebook_dir}")
    return nbs


def select_notebooks(paths: Sequence[Path], cfg: Config) -> list[Path]:
    """The notebooks of ``paths`` the profile runs: those numbered in ``cfg.pipeline.notebooks`` (all if empty)."""
    wanted = list(cfg.pipeline.notebooks)
    if not wanted:
        return list(paths)
    by_number = {Path(p).stem[:2]: Path(p) for p in paths}
    unknown = [n for n in wanted if n not in by_number]
    if unknown:
        raise PipelineError(f"config key 'notebooks': {unknown} match no notebook; the numbered notebooks are "
                            f"{sorted(by_number)}")
    return [by_number[n] for n in sorted(wanted)]


def _check_data(cfg: Config) -> None:
    """Find missing datasets before any notebook (and so any training) runs.

    Stops with the ``data prepare`` command of each missing set, unless the profile says
    ``missing_datasets: skip``, in which case it says which rows will read "not run: missing".
    """
    from contextclip.data import check_datasets, missing_message

    missing = check_datasets(cfg)
    if not missing:
        return
    if cfg.data.missing_datasets != "skip":
        raise DatasetsMissingError(missing_message(cfg, missing))
    _log(f"going on without {', '.join(missing)} (missing_datasets: skip); their rows will read "
         "'not run: missing'")


def _check_kernel(kernel_name: str) -> None:
    """Stop before any notebook runs when Jupyter cannot find ``kernel_name`` in this environment."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise PipelineError(
            f"the Jupyter kernel {kernel_name!r} is not installed in this environment ({sys.prefix}); run "
            f"`make setup` or `{sys.executable} -m contextclip.lab --install-kernel`"
        ) from None


def _log(msg: str) -> None:
    print(f"[reproduce {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def reproduce(
    profile: str,
    force: bool = False,
    *,
    overrides: dict[str, Any] | None = None,
    notebook_params: dict[str, dict[str, Any]] | None = None,
    notebooks: Sequence[Path] | None = None,
    root: Path | None = None,
    cell_timeout: int | None = None,
    kernel_name: str = KERNEL_NAME,
    progress_bar: bool = True,
    log: Callable[[str], None] = _log,
    wait: bool = False,
) -> int:
    """Run the numbered notebooks for ``profile``; return 0 on success, 1 on a failing notebook.

    ``overrides``: config knobs changed for the whole run (each must be declared by at least one
    notebook, otherwise it would have no effect and is rejected; to change other knobs, write a
    profile YAML with ``base: P``). ``notebook_params``: ``{notebook stem: {name: value}}``, names the
    notebook must declare. ``notebooks``/``root``: other notebooks and output root (tests).
    Bad parameters raise ``ConfigError``/``PipelineError`` before any notebook runs. ``wait``: wait
    for another ``reproduce`` of the profile instead of stopping (``FolderBusyError``).
    """
    root = Path(root) if root is not None else REPO_ROOT
    # A batch run: its kernels (which inherit this environment) draw to files with the headless
    # backend, and notebook 00 shows static figures instead of sliders that no one could move.
    os.environ["MPLBACKEND"] = "Agg"
    with contextlib.ExitStack() as locks:  # taken once the parameters are known to be good
        return _reproduce(profile, force, overrides=overrides, notebook_params=notebook_params, notebooks=notebooks,
                          root=root, cell_timeout=cell_timeout, kernel_name=kernel_name,
                          progress_bar=progress_bar, log=log, locks=locks, wait=wait)


def _plan(cfg: Config, profile: str, notebooks: Sequence[Path] | None, overrides: dict[str, Any] | None,
          notebook_params: dict[str, dict[str, Any]] | None) -> list[tuple[Path, Any, dict[str, Any]]]:
    """Every notebook of the run with its parameters, resolved before anything runs (a bad key fails here)."""
    nb_paths = [Path(p) for p in notebooks] if notebooks is not None else select_notebooks(list_notebooks(), cfg)
    stems = [p.stem for p in nb_paths]
    for key in notebook_params or {}:
        if key not in stems:
            raise PipelineError(f"notebook_params names notebook {key!r}, which is not in the run {stems}")
    plan: list[tuple[Path, Any, dict[str, Any]]] = []
    declared_anywhere: set[str] = set()
    for p in nb_paths:
        nb = _read(p)
        params = notebook_parameters(p, cfg, profile, (notebook_params or {}).get(p.stem))
        declared_anywhere |= set(declared_parameters(nb, p.stem))
        plan.append((p, nb, params))
    unused = sorted(set(overrides or {}) - declared_anywhere)
    if unused:
        raise PipelineError(
            f"override(s) {unused} are not parameters of any notebook in the run, so they would have no "
            f"effect; put them in a profile YAML (`base: {cfg.profile}`) and pass its path as the profile"
        )
    return plan


@dataclass
class _Run:
    """What every step of one ``reproduce`` shares: where things go, the state record, the kernel."""

    state: dict[str, Any]
    state_path: Path
    out_dir: Path
    watched: list[Path]  # runs, results and figures: what a step wrote is found here
    rollback_dirs: list[Path]  # results and figures: restored when a step fails
    kernel_name: str
    root: Path
    timeout: int
    progress_bar: bool
    log: Callable[[str], None]

    @property
    def backup_dir(self) -> Path:
        return self.out_dir / ".backup"

    def roll_back(self, name: str) -> int:
        """Undo what the running step ``name`` wrote in results/figures; forget its running mark.

        Files that still hold what a finished step recorded are kept (and counted in the log)."""
        running = self.state.pop("running")
        finished: dict[str, set[str]] = {}
        for entry in self.state["notebooks"].values():
            for f, digest in entry["outputs"].items():
                finished.setdefault(f, set()).add(digest)
        n, kept = _roll_back(self.rollback_dirs, self.backup_dir, running["before"],
                             self.out_dir / f"{name}.failed-outputs", finished)
        write_state(self.state_path, self.state)
        if kept:
            self.log(f"{name}: {kept} file(s) hold what finished notebooks recorded; kept in place, not rolled back")
        return n


def _roll_back_interrupted(run: _Run) -> None:
    """A step killed in an earlier attempt left a running mark: undo what it half-wrote."""
    running = run.state.get("running")
    if running:  # read_state checked its shape
        name = running["notebook"]
        n = run.roll_back(name)
        run.log(f"{name} was interrupted last time; {n} file(s) it wrote were rolled back "
                f"(new ones kept in {run.out_dir / (name + '.failed-outputs')}); it runs again")


def _execute_interruptibly(execute: Callable[[Any], Any], kernel_name: str) -> Any:
    """``execute(km)`` (papermill, with the kernel manager ``km``) in a worker thread, so that Ctrl-C reaches
    this process as ``KeyboardInterrupt`` at once.

    Run in the main thread, nbclient takes SIGINT for itself and shuts the kernel down under a running
    cell, which prints the kernel's traceback to the terminal. Here an interrupt kills the kernel's
    process group, waits for the worker to notice, and is re-raised (the caller rolls the step back);
    any error of the worker is re-raised as it was.
    """
    import threading

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    km = AsyncKernelManager(kernel_name=kernel_name)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = execute(km)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            box["error"] = exc
        finally:
            if km.has_kernel:
                with contextlib.suppress(Exception):
                    run_sync(km.shutdown_kernel)(now=True)

    worker = threading.Thread(target=work, name="papermill", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        print("interrupted: stopping the notebook's kernel and rolling its step back (a few seconds)",
              file=sys.stderr, flush=True)
        _kill_kernel(km)
        worker.join(60)  # nbclient notices the dead kernel within seconds; then nothing writes any more
        raise
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _kill_kernel(km: Any) -> None:
    """SIGKILL the kernel's process group (the kernel runs in its own session), if it was started."""
    import signal

    proc = getattr(getattr(km, "provisioner", None), "process", None)
    pid = getattr(proc, "pid", None)
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


def _run_step(run: _Run, nb: Any, name: str, params: dict[str, Any], fp: str, tag: str) -> StepResult:
    """Execute one notebook; on success record its outputs' digests, on failure roll them back.

    A KeyboardInterrupt is rolled back and re-raised.
    """
    import papermill as pm

    log_path = run.out_dir / f"{name}.log"
    run.log(f"{tag} {name}: running with {json.dumps(params, default=str)} (kernel output: {log_path})")
    # not finished until it succeeds: forget its record, mark it running, back up results and figures
    run.state["notebooks"].pop(name, None)
    run.state["running"] = {"notebook": name, "before": _backup(run.rollback_dirs, run.backup_dir)}
    write_state(run.state_path, run.state)
    exclude = [run.out_dir, run.state_path]
    before = _snapshot(run.watched, exclude)
    running_path = run.out_dir / f"{name}.running.ipynb"
    out_path = run.out_dir / f"{name}.ipynb"
    t0 = time.time()
    try:
        with open(log_path, "w", encoding="utf-8") as kernel_log:
            _execute_interruptibly(lambda km: pm.execute_notebook(  # the notebook as read (and fingerprinted)
                copy.deepcopy(nb), str(running_path), parameters=params, kernel_name=run.kernel_name,
                cwd=str(run.root), progress_bar=run.progress_bar, execution_timeout=run.timeout,
                request_save_on_cell_execute=True, stdout_file=kernel_log, stderr_file=kernel_log, km=km,
            ), run.kernel_name)
    except KeyboardInterrupt:
        if running_path.exists():
            running_path.unlink()
        run.roll_back(name)
        raise
    except Exception as exc:  # noqa: BLE001 - any failure stops the run with a named cell
        failed_path = run.out_dir / f"{name}.failed.ipynb"
        if running_path.exists():
            os.replace(running_path, failed_path)
        msg = _failure_message(name, exc, failed_path)
        n = run.roll_back(name)
        if n:
            msg += (f". {n} file(s) it wrote in results/figures were rolled back (new ones kept in "
                    f"{run.out_dir / (name + '.failed-outputs')})")
        return StepResult(name, "failed", time.time() - t0, msg)
    secs = time.time() - t0
    os.replace(running_path, out_path)
    stale_failed = run.out_dir / f"{name}.failed.ipynb"
    if stale_failed.exists():
        stale_failed.unlink()
    _wait_for_writers(run.watched, run.log, name)  # a process the step started may still be writing its outputs
    after = _snapshot(run.watched, exclude)
    written = {f: v for f, v in after.items() if before.get(f) != v}
    digests = {f: _file_digest(Path(f)) for f in sorted(written)}
    run.state.pop("running", None)
    shutil.rmtree(run.backup_dir, ignore_errors=True)
    run.state["notebooks"][name] = {
        "fingerprint": fp, "output_digest": _sha(json.dumps([fp, digests], sort_keys=True).encode()),
        "outputs": digests, "parameters": params, "seconds": round(secs, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "executed": str(out_path),
    }
    write_state(run.state_path, run.state)
    return StepResult(name, "ran", secs, f"{len(written)} files written")


def _reproduce(profile, force, *, overrides, notebook_params, notebooks, root, cell_timeout, kernel_name,
               progress_bar, log, locks: contextlib.ExitStack, wait: bool) -> int:
    cfg = load_config(profile, overrides or {})
    name_of_profile = cfg.profile
    _check_data(cfg)
    _check_kernel(kernel_name)
    plan = _plan(cfg, str(profile), notebooks, overrides, notebook_params)
    stems = [p.stem for p, _, _ in plan]

    where = paths_for(name_of_profile, root)
    for folder, what in ((where.runs, f"profile {name_of_profile} (runs folder)"),
                         (where.results, "results folder")):
        locks.enter_context(folder_lock(folder, what, wait=wait, export=True))
    out_dir = where.runs / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = where.runs / STATE_FILE
    run = _Run(state=read_state(state_path), state_path=state_path, out_dir=out_dir,
               watched=[where.runs, where.results, where.figures], rollback_dirs=[where.results, where.figures],
               kernel_name=kernel_name, root=root, progress_bar=progress_bar, log=log,
               timeout=cell_timeout if cell_timeout is not None
               else CELL_TIMEOUT_S.get(name_of_profile, DEFAULT_CELL_TIMEOUT_S))
    for folder in run.watched:  # temporary files of writers killed in an earlier attempt
        fileio.clean_stale_tmp(folder, recursive=True)
    log(f"profile {name_of_profile}: {len(plan)} notebooks, executed copies in {out_dir}, "
        f"cell timeout {run.timeout} s{', forced' if force else ''}")
    _roll_back_interrupted(run)

    pkg = package_hash()
    upstream = "start"
    t_start = time.time()
    results: list[StepResult] = []
    for k, (p, nb, params) in enumerate(plan, 1):
        name, tag = p.stem, f"[{k}/{len(plan)}]"
        fp = fingerprint(notebook_source_hash(nb), params, cfg, pkg, upstream)
        entry = run.state["notebooks"].get(name, {})
        if not force and entry.get("fingerprint") == fp and (out_dir / f"{name}.ipynb").exists():
            if outputs_unchanged(entry, latest_digests(run.state, stems)):
                log(f"{tag} {name}: inputs unchanged, skipped (use --force to rerun)")
                results.append(StepResult(name, "skipped", 0.0))
                upstream = entry.get("output_digest", fp)
                continue
            log(f"{tag} {name}: an output it recorded was changed or removed since; running it again")
        try:
            step = _run_step(run, nb, name, params, fp, tag)
        except KeyboardInterrupt:
            log(f"{tag} {name}: interrupted; earlier notebooks' outputs and {state_path.name} "
                "are unchanged (the next run starts again here)")
            return 130
        results.append(step)
        if step.status == "failed":
            log(f"{tag} {name}: FAILED after {step.seconds:.1f} s")
            print(f"error: {step.message}", file=sys.stderr, flush=True)
            log(f"stopped; earlier notebooks' outputs and {state_path.name} are unchanged "
                f"(total {time.time() - t_start:.1f} s)")
            return 1
        upstream = run.state["notebooks"][name]["output_digest"]
        log(f"{tag} {name}: done in {step.seconds:.1f} s ({step.message}; elapsed {time.time() - t_start:.1f} s)")

    ran = sum(r.status == "ran" for r in results)
    log(f"finished profile {name_of_profile}: {ran} ran, {len(results) - ran} skipped, "
        f"total {time.time() - t_start:.1f} s; results in {root / 'results' / name_of_profile}, "
        f"figures in {root / 'figures' / name_of_profile}")
    return 0


__all__ = [
    "CELL_TIMEOUT_S", "KERNEL_NAME", "PipelineError", "declared_parameters", "fingerprint",
    "list_notebooks", "select_notebooks", "notebook_parameters", "package_hash", "read_state", "reproduce", "write_state",
    "ConfigError",
]
