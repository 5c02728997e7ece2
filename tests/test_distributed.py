"""contextclip.distributed: two gloo CPU processes under DDP give the single-process loss and gradients.

The spawned workers train a tiny two-tower model (two nn.Linear heads and a log-scale
temperature) for one step on their share of a fixed global batch, gathering the embeddings with
``gather_embeddings`` and computing ``ContextCLIPLoss`` on the global batch. The parent computes
the same step in one process on the whole batch and compares loss, gradients and parameters.
"""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from contextclip import distributed as cdist
from contextclip.losses import ContextCLIPLoss

WORLD = 2
N_GLOBAL, D_IMG, D_TXT, D_EMB = 10, 12, 9, 6
# name -> (alpha, variant, learn_temperature, split)
CASES = {
    "clip": (0.0, "batch", False, "interleaved"),
    "clip_learned_tau": (0.0, "batch", True, "interleaved"),
    "cx_batch": (0.5, "batch", True, "interleaved"),
    "cx_per_sample_features": (0.5, "per_sample_features", True, "interleaved"),
    "cx_feature_columns": (0.5, "feature_columns", True, "interleaved"),
    "cx_batch_uneven": (0.5, "batch", False, "uneven"),
}
LR = 0.5


class TinyTwoTower(nn.Module):
    """Two linear towers and CLIP's log-scale temperature, the shape of ContextCLIPModel.forward."""

    def __init__(self, learn_temperature: bool, tau: float = 0.5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image_head = nn.Linear(D_IMG, D_EMB)
        self.text_head = nn.Linear(D_TXT, D_EMB)
        log_scale = torch.tensor(math.log(1 / tau))
        if learn_temperature:
            self.logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("logit_scale", log_scale)

    def forward(self, x_img, x_txt):
        return self.image_head(x_img), self.text_head(x_txt), self.logit_scale.exp()


def _global_batch():
    g = torch.Generator().manual_seed(123)
    x_img = torch.randn(N_GLOBAL, D_IMG, generator=g)
    x_txt = torch.randn(N_GLOBAL, D_TXT, generator=g)
    return x_img, x_txt


def _rows_of(rank: int, split: str) -> torch.Tensor:
    if split == "interleaved":  # what DistributedSampler does: rank r gets r, r+W, r+2W, ...
        return torch.arange(rank, N_GLOBAL, WORLD)
    return torch.arange(0, 3) if rank == 0 else torch.arange(3, N_GLOBAL)  # a short last batch


def _one_step(model, loss_fn, x_img, x_txt, gather: bool):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    img, txt, scale = model(x_img, x_txt)
    if gather:
        img, txt = cdist.gather_embeddings(img, txt)
    out = loss_fn(img, txt, scale)
    out["loss"].backward()
    inner = getattr(model, "module", model)
    grads = {k: p.grad.detach().clone() for k, p in inner.named_parameters()}
    opt.step()
    params = {k: p.detach().clone() for k, p in inner.named_parameters()}
    return {k: v.detach() for k, v in out.items()}, grads, params


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    info = cdist.init_distributed("cpu")
    results = {"info": info, "is_main": cdist.is_main()}
    x_img, x_txt = _global_batch()
    for name, (alpha, variant, learn, split) in CASES.items():
        rows = _rows_of(rank, split)
        model = nn.parallel.DistributedDataParallel(TinyTwoTower(learn))
        loss_fn = ContextCLIPLoss(alpha=alpha, variant=variant, bandwidth=0.3)
        out, grads, params = _one_step(model, loss_fn, x_img[rows], x_txt[rows], gather=True)
        # The same local batch without gathering: the loss DDP would see if left local.
        local = loss_fn(*TinyTwoTower(learn)(x_img[rows], x_txt[rows]))["loss"].detach()
        results[name] = {"out": out, "grads": grads, "params": params, "local_loss": local}
    cdist.barrier()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    cdist.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _single_process(name: str):
    alpha, variant, learn, _ = CASES[name]
    x_img, x_txt = _global_batch()
    return _one_step(TinyTwoTower(learn), ContextCLIPLoss(alpha=alpha, variant=variant, bandwidth=0.3), x_img, x_txt, False)


def test_workers_joined_the_group(two_rank_results):
    for rank, res in enumerate(two_rank_results):
        info = res["info"]
        assert (info.rank, info.world_size, info.local_rank, info.backend) == (rank, WORLD, rank, "gloo")
        assert info.device == torch.device("cpu") and info.is_main == (rank == 0) == res["is_main"]


@pytest.mark.parametrize("name", list(CASES))
def test_ddp_step_equals_single_process_on_the_concatenated_batch(two_rank_results, name):
    ref_out, ref_grads, ref_params = _single_process(name)
    for res in two_rank_results:  # every rank holds the global loss and the same synced gradients
        got = res[name]
        for term in ("loss", "contrastive_loss", "contextual_loss"):
            torch.testing.assert_close(got["out"][term], ref_out[term], rtol=1e-5, atol=1e-5)
        assert set(got["grads"]) == set(ref_grads)
        for k in ref_grads:
            torch.testing.assert_close(got["grads"][k], ref_grads[k], rtol=1e-5, atol=1e-5, msg=f"{name}: grad {k}")
            torch.testing.assert_close(got["params"][k], ref_params[k], rtol=1e-5, atol=1e-5, msg=f"{name}: param {k}")
    # The comparison has teeth: the gradients are far from zero, so a factor of W (a backward that
    # forgot to sum over ranks, or a double average) would be outside the tolerance.
    assert all(g.abs().max() > 1e-3 for k, g in ref_grads.items() if k != "logit_scale")
    if CASES[name][2]:
        assert ref_grads["logit_scale"].abs() > 1e-3


def test_batch_level_losses_change_meaning_when_left_local(two_rank_results):
    """Why the gather matters: the local-batch loss is not the global one (per-sample CX aside)."""
    for name in ("clip", "cx_batch", "cx_feature_columns"):
        global_loss = two_rank_results[0][name]["out"]["loss"]
        assert abs(two_rank_results[0][name]["local_loss"] - global_loss) > 1e-3, name


# ----------------------------------------------------------------------------- single process
@pytest.fixture
def no_torchrun_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


def test_single_process_helpers_are_identities(no_torchrun_env):
    info = cdist.init_distributed("cpu")
    assert info == cdist.DistInfo(0, 1, 0, torch.device("cpu"), True, None) and not info.distributed
    t = torch.randn(4, 3, requires_grad=True)
    assert cdist.all_gather_with_grad(t) is t
    img, txt = cdist.gather_embeddings(t, t * 2)
    assert img is t and torch.equal(txt, t * 2)
    cdist.barrier()
    cdist.cleanup()
    assert cdist.is_main() and not cdist.is_distributed()


def test_misconfiguration_is_a_clear_error(no_torchrun_env, monkeypatch):
    with pytest.raises(ValueError, match="'device': 'tpu' is not one of"):
        cdist.init_distributed("tpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set.*torchrun"):
        cdist.init_distributed("cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        cdist.init_distributed("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK='one'"):
        cdist.init_distributed("cpu")
    with pytest.raises(ValueError, match="3 image rows but 2 text rows"):
        cdist.gather_embeddings(torch.zeros(3, 2), torch.zeros(2, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown on a machine without CUDA")
def test_cuda_requested_without_cuda(no_torchrun_env):
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        cdist.init_distributed("cuda")
