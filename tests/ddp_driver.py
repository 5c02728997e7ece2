"""Run ``contextclip.train.fit`` from a script under torchrun (tests/test_train_ddp.py).

Usage: torchrun ... tests/ddp_driver.py OUT_DIR '{"key": value, ...}'  (smoke profile overrides).
With CRASH_AT="epoch,step" in the environment, rank 0 dies (os._exit, like a SIGKILL: no
clean-up, no exception handling) right after that optimiser step.
"""

import json
import os
import sys

import torch

import contextclip.train as T
from contextclip.config import load_config

torch.set_num_threads(1)
crash = os.environ.get("CRASH_AT")
if crash:
    at = tuple(int(x) for x in crash.split(","))

    def _die(epoch, step):
        if (epoch, step) == at and int(os.environ.get("RANK", "0")) == 0:
            os._exit(17)

    T._after_step = _die

T.fit(load_config("smoke", json.loads(sys.argv[2])), "contextclip", 0, sys.argv[1], progress=False)
