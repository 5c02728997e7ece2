"""The tuning record's summary (tools/tune_embedded.py --summary): the numbers behind the embedded
profile's validation choices are printed by a command, from the committed record."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("tune_embedded", ROOT / "tools" / "tune_embedded.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_gives_means_paired_differences_and_their_sd(tmp_path):
    rec = tmp_path / "record.jsonl"
    rows = [("clip", 0, 70.0, 71.0), ("clip", 1, 80.0, 79.0), ("contextclip", 0, 66.0, 68.0),
            ("contextclip", 1, 72.0, 74.0)]
    rec.write_text("".join(json.dumps({"name": "v", "dataset": "mnist_val", "method": m, "seed": s, "top1": avg,
                                       "top1_trained_weights": raw}) + "\n" for m, s, avg, raw in rows)
                   + json.dumps({"name": "other", "dataset": "mnist_val", "method": "clip", "seed": 0, "top1": 1.0})
                   + "\n")
    text = _tool().summarize("v", rec)
    # averaged: differences -4 and -8 (SD 2.83); trained: -3 and -5 (SD 1.41)
    assert "paired differences (seeds [0, 1]): [-4.0, -8.0], mean -6.00, SD 2.83" in text
    assert "paired differences (seeds [0, 1]): [-3.0, -5.0], mean -4.00, SD 1.41" in text
    assert "clip [70.0, 80.0] mean 75.00" in text
    with pytest.raises(SystemExit, match="no try named"):
        _tool().summarize("missing", rec)


def test_the_committed_record_backs_the_weight_average_choice():
    text = _tool().summarize("w32-e12-d085-ema0.995")
    assert "SD 2.30; mean of both methods 75.03" in text and "SD 1.42; mean of both methods 74.86" in text
