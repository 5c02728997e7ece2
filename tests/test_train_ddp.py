"""Training under torchrun with 2 CPU processes (gloo): same result as one process, and resume.

Both towers are frozen and the heads linear, so that nothing depends on the per-device batch
(batch-norm statistics and dropout masks do; docs/decisions.md): then a 2-process run must
end where a 1-process run on the same global batches ends. A run whose rank 0 dies mid-epoch
resumes under torchrun and ends at the same place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contextclip import failpoints
from contextclip.config import REPO_ROOT, load_config
from contextclip.model import build_model
from contextclip.train import fit

DRIVER = Path(__file__).parent / "ddp_driver.py"


def _torchrun(out, over, crash=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop(failpoints.ENV, None)
    if crash:
        env[failpoints.ENV] = crash
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(DRIVER), str(out),
           json.dumps(over)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_match_one_and_resume_after_a_kill(tmp_path):
    over = {"n_pairs": 80, "val_fraction": 0.2, "batch_size": 16, "epochs": 2, "checkpoint_every": 2,
            "augment": False, "freeze_image": True, "freeze_text": True, "head": "linear", "log_every": 1,
            "device": "cpu", "data_root": str(tmp_path / "data"), "lr_head": 1e-2}
    single = fit(load_config("smoke", over), "contextclip", 0, tmp_path / "single", progress=False)

    killed = _torchrun(tmp_path / "ddp", over, crash="step#7,exit,rank=0")  # epoch 2, step 3
    assert killed.returncode != 0
    ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["world_size"]) == (1, 2, 2)
    assert not (tmp_path / "ddp" / "summary.json").exists()

    resumed = _torchrun(tmp_path / "ddp", over)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert (summary["world_size"], summary["per_device_batch"], summary["global_batch"]) == (2, 8, 16)
    assert summary["steps"] == single["steps"] == 2 * 4
    a = torch.load(tmp_path / "single" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    b = torch.load(tmp_path / "ddp" / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    torch.manual_seed(0)
    init = build_model(load_config("smoke", over)).state_dict()
    assert (a["image_head.weight"] - init["image_head.weight"]).abs().max() > 1e-3  # the heads did train
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=2e-5)
    assert abs(summary["final_val_loss"] - single["final_val_loss"]) < 1e-4
    # rank 0 alone wrote the history: one line per step and per epoch, no duplicates after the resume
    hist = [json.loads(s) for s in (tmp_path / "ddp" / "history.jsonl").read_text().splitlines()]
    assert [(h["type"], h["global_step"]) for h in hist] == [
        ("step", 1), ("step", 2), ("step", 3), ("step", 4), ("epoch", 4),
        ("step", 5), ("step", 6), ("step", 7), ("step", 8), ("epoch", 8)]
