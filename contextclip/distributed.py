"""Process-group helpers for training under ``torchrun`` (PyTorch DDP), and the global batch.

What it is: ``init_distributed`` (reads torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, NCCL
on CUDA, gloo on CPU, a plain single-process ``DistInfo`` otherwise), ``all_gather_with_grad``
and ``gather_embeddings`` (an autograd all-gather so that the losses see the global batch),
and the small helpers the training loop uses: ``barrier``, ``is_main``, ``cleanup``. Every helper is the identity / a no-op when
the process group is not initialised, so single-process code calls them unconditionally.

What it is not: no sampler, no DDP wrapping, no checkpointing (``contextclip.train`` and ``contextclip.runs`` do those).

How the global-batch loss gets the single-process gradient (tested in
tests/test_distributed.py): every rank gathers the embeddings of all ranks (with gradient)
and computes the *same* full loss ``L`` on the global batch. ``all_gather_with_grad``'s
backward *sums* the gradient of every rank's copy of ``L`` for each rank's slice, so rank r's
local embeddings receive ``W * dL/dI_r``; DDP then *averages* parameter gradients over the W
ranks, which gives ``(1/W) * sum_r W * dL/dI_r * dI_r/dtheta = dL/dtheta``: exactly the
gradient of one process on the concatenated batch. (In general the effective objective is the
mean over ranks of the per-rank losses; every rank computing the full global loss makes that
mean equal to ``L``.) A learned temperature is used directly by each rank's identical ``L``,
so DDP's average of identical gradients is again ``dL/dscale``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from contextclip.config import CHOICES, check_choice
from contextclip.errors import LaunchError

__all__ = [
    "DistInfo",
    "all_gather_with_grad",
    "barrier",
    "cleanup",
    "gather_embeddings",
    "init_distributed",
    "is_distributed",
    "is_main",
]

DEVICE_PREFS = CHOICES["device"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits. ``backend`` is ``None`` for a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    is_main: bool = True
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def _pick_device(device_pref: str, local_rank: int) -> torch.device:
    check_choice("device", device_pref)
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise LaunchError("device 'cuda' was asked for but torch.cuda.is_available() is False; use device=auto or cpu")
    if device_pref in ("auto", "cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise LaunchError(
                f"LOCAL_RANK={local_rank} but this node has only {n} CUDA device(s); "
                f"start torchrun with --nproc_per_node <= {n}"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def is_distributed() -> bool:
    """True when a process group is initialised (under torchrun after ``init_distributed``)."""
    return dist.is_available() and dist.is_initialized()


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the process group torchrun describes, or describe the single process.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and torchrun's ``MASTER_ADDR``/``MASTER_PORT``
    through ``init_method="env://"``). ``WORLD_SIZE`` > 1 starts NCCL on CUDA (``cuda:LOCAL_RANK``
    becomes the current device) or gloo on CPU; without those variables, or with
    ``WORLD_SIZE=1``, nothing is initialised and ``backend`` is ``None``. ``device_pref`` is
    the config's ``device`` knob: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    Calling it again in an initialised process returns the same description.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = _pick_device(device_pref, local_rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world_size}: need 0 <= RANK < WORLD_SIZE")
    if world_size == 1 and not is_distributed():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistInfo(0, 1, local_rank, device, True, None)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not is_distributed():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise LaunchError(
                    f"WORLD_SIZE={world_size} but {var} is not set: start training with torchrun "
                    "(for example `torchrun --standalone --nproc_per_node=2 -m contextclip train ...`)"
                )
        kwargs: dict[str, Any] = {"backend": backend, "init_method": "env://", "rank": rank, "world_size": world_size}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
    else:
        backend = dist.get_backend()
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world_size, local_rank, device, rank == 0, backend)


def cleanup() -> None:
    """Leave the process group (no-op when none)."""
    if is_distributed():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0, and in a single process. Logging, checkpoints and evaluation use it."""
    return not is_distributed() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's ``[n_r, ...]`` tensor in rank order (sizes may differ).

    Backward: the gradient of the *sum over ranks* of each rank's loss with respect to this
    rank's slice, i.e. an all-reduce (SUM) of the incoming gradients, then this rank's rows.
    An all-reduce rather than a reduce-scatter keeps it working on gloo; the tensors are
    embeddings (``[global_batch, 256]``), so the extra traffic is negligible.
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        n_local = torch.tensor([t.shape[0]], device=t.device, dtype=torch.long)
        sizes = [torch.zeros_like(n_local) for _ in range(world)]
        dist.all_gather(sizes, n_local)
        counts = [int(s.item()) for s in sizes]
        n_max = max(counts)
        padded = t.contiguous()
        if t.shape[0] < n_max:  # all_gather needs equal shapes: pad, gather, strip
            pad = t.new_zeros((n_max - t.shape[0], *t.shape[1:]))
            padded = torch.cat([padded, pad], dim=0)
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        ctx.counts, ctx.rank = counts, rank
        return torch.cat([p[:c] for p, c in zip(parts, counts)], dim=0)  # [sum_r n_r, ...]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # sum of every rank's dL_s/d(global)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]]


def all_gather_with_grad(t: Tensor) -> Tensor:
    """Every rank's ``t`` concatenated along dim 0 in rank order, differentiable.

    The identity (the same tensor) when not distributed. Ranks may hold different numbers of
    rows (a short last batch). See the module docstring for why the gradient is exact.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return t
    return _AllGatherWithGrad.apply(t)


def gather_embeddings(image_emb: Tensor, text_emb: Tensor) -> tuple[Tensor, Tensor]:
    """The global batch's ``(image_emb, text_emb)``, ``[global_batch, D]`` each, with gradient.

    Row order is rank-major; both losses are invariant to a joint reordering of the pairs, so
    the loss equals the single-process loss on the same pairs whatever the sampler's order.
    """
    if image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(f"gather_embeddings: {image_emb.shape[0]} image rows but {text_emb.shape[0]} text rows")
    return all_gather_with_grad(image_emb), all_gather_with_grad(text_emb)
