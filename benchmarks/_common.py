"""Shared helpers of the benchmark scripts: machine description, medians, result files.

What it is: the bits every script in ``benchmarks/`` needs (a description of the machine and
software a figure was measured on, saving ``benchmarks/results/<name>.json``, the last-line JSON
print). What it is not: a benchmark itself, and not part of the ``contextclip`` package.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | str = "cpu") -> dict:
    device = torch.device(device)
    commit = None
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=5)
        commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__), "python": sys.version.split()[0],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "git_commit": commit, "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def median(xs) -> float:
    return float(statistics.median(xs))


def ratio_summary(num: list[float], den: list[float], max_spread: float = 0.10) -> dict:
    """Ratio of two interleaved timings, robust to a loaded machine.

    ``num[r]`` and ``den[r]`` were measured in the same round ``r``, so their ratio cancels load
    that lasts a round. Returns the median of the per-round ratios (the figure), its quartiles and
    relative spread ``(q75 - q25) / median``, the ratio of the fastest rounds (``min / min``: other
    jobs only ever add time), and ``trusted``: False when the spread exceeds ``max_spread`` or the
    two estimates disagree by more than ``max_spread / 2``.
    """
    if len(num) != len(den) or not num:
        raise ValueError(f"ratio_summary needs equal, non-empty lists, got {len(num)} and {len(den)}")
    ratios = sorted(n / d for n, d in zip(num, den))
    q25, med, q75 = (float(statistics.quantiles(ratios, n=4)[i]) for i in range(3)) if len(ratios) >= 2 else (
        ratios[0],) * 3
    by_min = min(num) / min(den)
    spread = (q75 - q25) / med
    trusted = spread <= max_spread and abs(by_min / med - 1) <= max_spread / 2
    return {"median": round(med, 4), "q25": round(q25, 4), "q75": round(q75, 4), "relative_spread": round(spread, 4),
            "min_based": round(by_min, 4), "rounds": len(ratios), "trusted": trusted}


def save(name: str, result: dict, out: str | None = None) -> Path:
    """Write ``result`` to ``benchmarks/results/<name>.json`` (or ``out``) and print it as the last line."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"saved {path}", file=sys.stderr)
    print(json.dumps(result, sort_keys=True))
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
