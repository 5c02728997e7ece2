"""Run ``contextclip.train.fit`` from a script under torchrun (tests/test_train_ddp.py).

Usage: torchrun ... tests/ddp_driver.py OUT_DIR '{"key": value, ...}'  (smoke profile overrides).
A crash is armed from the test with the fail-point switch (``contextclip.failpoints``), e.g.
``CONTEXTCLIP_FAILPOINT="step#3,exit,rank=0"``: rank 0 leaves without clean-up after its 3rd step.
"""

import json
import sys

import torch

from contextclip.config import load_config
from contextclip.train import fit

torch.set_num_threads(1)
fit(load_config("smoke", json.loads(sys.argv[2])), "contextclip", 0, sys.argv[1], progress=False)
