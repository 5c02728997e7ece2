"""Where a profile's artefacts and the data live, all under the repository root (docs/architecture.md shows the tree).

``runs/<profile>/<method>-seed<k>/`` one training run each (``contextclip.runs``), plus the
executed notebooks and the pipeline's state; ``results/<profile>/`` ``metrics.csv``, the tables
and per-item credits; ``figures/<profile>/`` the PNG/PDF figures; ``resolve_root(data_root)`` the
data folder a config names. Every module asks here.

Who writes ``results/<profile>/`` and ``figures/<profile>/`` (``outputs_for``): only the pipeline
(``make reproduce``, which passes ``pipeline_run=True`` to the notebooks). A notebook run by hand
(JupyterLab, papermill) *shows* the profile's saved results when ``results/<profile>/metrics.csv``
exists (committed, or left by ``make reproduce``) and writes nothing there; with ``recompute=True``,
or when there is nothing saved to show, it computes into ``runs/<profile>/by_hand/results`` and
``runs/<profile>/by_hand/figures`` (``runs/`` is git-ignored), so a by-hand run never replaces the
pipeline's rows and never changes a tracked file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contextclip.config import METHODS, REPO_ROOT, ConfigError


@dataclass(frozen=True)
class ProfilePaths:
    """The run, results and figures folders of one profile, all absolute."""

    runs: Path  # runs/<profile>/: one folder per <method>-seed<k>, executed notebooks, pipeline state
    results: Path  # results/<profile>/: metrics.csv, table1/table2/table3 .md/.csv, per_item/
    figures: Path  # figures/<profile>/: PNGs named after the paper's figures

    def run_dir(self, method: str, seed: int) -> Path:
        """``runs/<profile>/<method>-seed<k>/``."""
        if method not in METHODS:
            raise ConfigError(f"method {method!r} is not one of {list(METHODS)}")
        return self.runs / f"{method}-seed{int(seed)}"


def resolve_root(data_root: str | Path) -> Path:
    """``data_root`` as a path: absolute as given; relative to the repository root in a
    checkout (so notebooks running in ``notebooks/`` find the same ``data/``), else to the cwd."""
    p = Path(data_root).expanduser()
    if p.is_absolute():
        return p
    if (REPO_ROOT / "configs").is_dir() and (REPO_ROOT / "contextclip").is_dir():
        return REPO_ROOT / p
    return Path.cwd() / p


def paths_for(profile: str, root: Path | None = None) -> ProfilePaths:
    """The folders of the profile named ``profile`` under ``root`` (default: the repository root)."""
    root = Path(root) if root is not None else REPO_ROOT
    return ProfilePaths(runs=root / "runs" / profile, results=root / "results" / profile,
                        figures=root / "figures" / profile)


#: the folder under ``runs/<profile>/`` that by-hand notebook runs write their results and figures to
BY_HAND = "by_hand"


def by_hand_paths(profile: str, root: Path | None = None) -> ProfilePaths:
    """``runs/<profile>/by_hand/{results,figures}``: where a notebook run by hand writes (the same run folders)."""
    base = paths_for(profile, root)
    return ProfilePaths(runs=base.runs, results=base.runs / BY_HAND / "results",
                        figures=base.runs / BY_HAND / "figures")


@dataclass(frozen=True)
class Outputs:
    """Where one notebook run reads and writes, and whether it computes or shows saved results."""

    paths: ProfilePaths  # results and figures to read (and, when ``compute``, to write); runs: the profile's
    compute: bool  # True: evaluate and write under ``paths``; False: show what is saved there, write nothing
    mode: str  # "pipeline" | "saved" | "by_hand"

    def note(self) -> str:
        """One line a notebook prints: what it shows and where it writes."""
        res = _shown(self.paths.results)
        if self.mode == "pipeline":
            return f"make reproduce: writing the profile's results to {res}/ and figures to {_shown(self.paths.figures)}/"
        if self.mode == "saved":
            return (f"showing the saved results in {res}/ (nothing is recomputed or written); set recompute = True "
                    f"to evaluate again into {_shown(self.paths.runs / BY_HAND)}/")
        return (f"by hand: computing into {res}/ and {_shown(self.paths.figures)}/ (git-ignored; "
                "only make reproduce writes results/ and figures/)")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def outputs_for(profile: str, *, recompute: bool = False, pipeline_run: bool = False,
                root: Path | None = None) -> Outputs:
    """The rule of the module docstring: the pipeline writes the profile's folders; by hand, the saved
    results are shown unless ``recompute``, and anything computed goes to ``runs/<profile>/by_hand/``."""
    base = paths_for(profile, root)
    if pipeline_run:
        return Outputs(base, True, "pipeline")
    if not recompute and (base.results / "metrics.csv").is_file():
        return Outputs(base, False, "saved")
    return Outputs(by_hand_paths(profile, root), True, "by_hand")
