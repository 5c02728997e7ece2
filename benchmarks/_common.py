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
