"""Where a profile's artefacts and the data live, all under the repository root (docs/architecture.md shows the tree).

``runs/<profile>/<method>-seed<k>/`` one training run each (``contextclip.runs``), plus the
executed notebooks and the pipeline's state; ``results/<profile>/`` ``metrics.csv``, the tables
and per-item credits; ``figures/<profile>/`` the PNG/PDF figures; ``resolve_root(data_root)`` the
data folder a config names. Every module asks here.
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
