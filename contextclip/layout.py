"""Where a profile's artefacts live, all under the repository root (docs/architecture.md shows the tree).

``runs/<profile>/<method>-seed<k>/`` one training run each (``contextclip.runs``), plus the
executed notebooks and the pipeline's state; ``results/<profile>/`` ``metrics.csv``, the tables
and per-item credits; ``figures/<profile>/`` the PNG/PDF figures. Every module asks here.
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


def paths_for(profile: str, root: Path | None = None) -> ProfilePaths:
    """The folders of the profile named ``profile`` under ``root`` (default: the repository root)."""
    root = Path(root) if root is not None else REPO_ROOT
    return ProfilePaths(runs=root / "runs" / profile, results=root / "results" / profile,
                        figures=root / "figures" / profile)
