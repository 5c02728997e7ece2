"""Training: ``fit`` one ContextCLIP (or CLIP, alpha = 0) model on (image, caption) pairs.

The optimisation loop of the paper's Sec. 6 (Adam with weight decay, separate learning rates
for the image tower, the text tower and the heads, fixed batch, epochs) with a held-out
validation loss each epoch, exact resume (mid-epoch included) and training under ``torchrun``
(DDP) with the losses over the global batch. The run folder (checkpoints, digests, RNG state,
loading a trained model) is ``contextclip.runs``; the frozen-tower feature caches are
``contextclip.train_caches``.

Batches. ``batch_size`` is the *global* batch: each epoch draws one seeded permutation of the
training pairs (seeded by ``(seed, epoch)``), cuts it into consecutive global batches (the
last incomplete one is dropped), and under ``torchrun`` rank r takes rows
``[r * per_device, (r + 1) * per_device)`` of each, ``per_device = batch_size // world_size``.
So a DDP run sees exactly the global batches of a single-process run; the embeddings are
gathered with gradient and every rank computes the loss of the whole global batch
(``contextclip.distributed``). Batch-norm statistics stay per device (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from contextclip import distributed as D
from contextclip import failpoints, fileio
from contextclip import runs as R
from contextclip.config import Config, ConfigError, check_choice, check_seed, read_json, save_config
from contextclip.data import PairCollator, build_pair_datasets
from contextclip.ema import WeightAverage
from contextclip.image_cache import cached_image_features
from contextclip.layout import resolve_root
from contextclip.lock import folder_lock
from contextclip.losses import TERMS, ContextCLIPLoss
from contextclip.model import ContextCLIPModel, build_model, to_device
from contextclip.runs import (
    CheckpointError,
    NonFiniteLossError,
    RunMismatchError,
    RunNotFinishedError,
    load_trained,
)
from contextclip.train_caches import FrozenFeatureCache, cached_caption_features, loader

__all__ = ["fit", "train_step", "StepParts", "FrozenCaches", "forward_with_caches", "evaluate_loss", "make_optimizer",
           "make_scheduler", "make_loss", "autocast_factory", "OPTIMIZERS", "SCHEDULERS", "epoch_batches", "val_batches", "FrozenFeatureCache", "NonFiniteLossError", "RunMismatchError",
           "CheckpointError", "RunNotFinishedError", "load_trained", "TERMS"]


# --------------------------------------------------------------------------- batches
def epoch_batches(n: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's global batches: a permutation seeded by (seed, epoch), full batches only."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i:i + global_batch] for i in range(0, n - global_batch + 1, global_batch)]


def val_batches(n: int, global_batch: int) -> list[list[int]]:
    """Consecutive validation batches of the global batch size (a last batch of < 2 pairs is dropped)."""
    out = [list(range(i, min(i + global_batch, n))) for i in range(0, n, global_batch)]
    return [b for b in out if len(b) >= 2]


# --------------------------------------------------------------------------- optimiser
#: optimizer name -> class (the ``optimizer`` knob)
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(model: ContextCLIPModel, cfg: Config) -> torch.optim.Optimizer:
    """Adam (paper: coupled L2 weight decay) or AdamW; one parameter group per lr.

    Weight decay applies to every trained weight except ``logit_scale`` (decaying log(1/tau)
    would pull the temperature towards 1, which is not regularisation of the model).
    """
    t = cfg.train
    trainable = lambda mod: [p for p in mod.parameters() if p.requires_grad]  # noqa: E731
    groups = [
        {"name": "image_tower", "params": trainable(model.image_tower), "lr": t.lr_image},
        {"name": "text_tower", "params": trainable(model.text_tower), "lr": t.lr_text},
        {"name": "heads", "params": trainable(model.image_head) + trainable(model.text_head), "lr": t.lr_head},
        {"name": "logit_scale", "params": [model.logit_scale] if model.logit_scale.requires_grad else [],
         "lr": t.lr_head,
         "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    # fused: one kernel per step over all weights (CPU and CUDA); the for-loop implementation took
    # a tenth of a CPU step of the embedded profile (benchmarks/train_step.py)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return OPTIMIZERS[check_choice("optimizer", t.optimizer)](groups, weight_decay=t.weight_decay, fused=fused)


def _cosine(opt: torch.optim.Optimizer, total_steps: int):
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))


#: scheduler name -> builder(optimizer, total_steps) (the ``scheduler`` knob); ``none`` keeps the lr
SCHEDULERS: dict[str, Callable] = {"none": lambda opt, total_steps: None, "cosine": _cosine}


def make_scheduler(opt: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """``none`` or ``cosine`` (per step, from each group's lr to 0, no warm-up)."""
    return SCHEDULERS[check_choice("scheduler", cfg.train.scheduler)](opt, total_steps)


def make_loss(cfg: Config) -> ContextCLIPLoss:
    """The loss of ``cfg`` (build it from ``cfg.for_method(method)`` for one method's run)."""
    l = cfg.loss  # noqa: E741
    return ContextCLIPLoss(alpha=l.alpha, bandwidth=l.bandwidth, eps=l.cx_eps, variant=l.cx_variant,
                           image_to_text_weight=l.image_to_text_weight)


def autocast_factory(device: torch.device, precision: str):
    """A no-argument context-manager factory: bf16 autocast (``bf16``, or ``auto`` on CUDA) or nothing."""
    check_choice("precision", precision)
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if bf16:
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


# --------------------------------------------------------------------------- one step
#: Per-step diagnostics returned by ``train_step`` besides the loss terms (all device tensors).
_CHECK_KEYS = ("grad_norm", "image_finite", "text_finite", "weights_finite", "finite", "logit_scale")


@dataclass(frozen=True)
class FrozenCaches:
    """Cached features of a frozen tower that replace its input in the forward pass (either may be None)."""

    text: FrozenFeatureCache | None = None  # by caption
    image: FrozenFeatureCache | None = None  # by dataset index


def forward_with_caches(forward, model: ContextCLIPModel, batch: dict, idx, autocast,
                        caches: FrozenCaches | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``forward(...)`` of one collated batch under ``autocast``: (image_emb, text_emb, logit_scale).

    Cached features of a frozen tower replace its input when ``caches`` holds them (``idx``: the
    batch's dataset indices, for the image cache). ``forward`` is the module to call (the DDP wrapper
    under torchrun, else ``model``); the text cache looks new captions up through ``model``.
    """
    caches = caches if caches is not None else FrozenCaches()
    with autocast():
        img_f = caches.image.lookup(idx) if caches.image is not None else None
        txt_f = caches.text.lookup_captions(model, batch["captions"], autocast) if caches.text is not None else None
        return forward(batch["images"] if img_f is None else None, batch["input_ids"], batch["attention_mask"],
                       image_feats=img_f, text_feats=txt_f)


@dataclass
class StepParts:
    """What one optimisation step works with; ``fit`` builds it once per epoch, benchmarks build their own."""

    model: ContextCLIPModel
    loss_fn: Any  # (img, txt, scale) -> {TERMS...}
    optimizer: torch.optim.Optimizer
    autocast: Any = contextlib.nullcontext
    scheduler: Any = None
    grad_clip: float = 0.0
    forward: Any = None  # the DDP wrapper under torchrun; None: the model
    caches: FrozenCaches | None = None  # the training set's frozen-tower features


def train_step(parts: StepParts, batch: dict, idx=None) -> dict[str, torch.Tensor]:
    """One optimiser step on one batch (the body of ``fit``'s loop; also timed by benchmarks/train_step.py).

    Forward under ``autocast`` (``forward_with_caches``; ``idx`` are the batch's dataset indices for
    the image cache), the embeddings gathered over ranks and the losses in fp32, backward, gradient
    norm (clipped when ``grad_clip > 0``), optimiser step, CLIP's clamp of the learned log(1/tau),
    scheduler step.

    Returns detached *device* tensors and never waits for the device: the ``TERMS``, ``grad_norm``,
    ``image_finite`` / ``text_finite`` (every embedding finite), ``weights_finite`` (every trained
    weight after the update), ``finite`` (all of these) and ``logit_scale``. The caller checks
    ``finite`` (``fit`` does so every ``log_every`` steps and before every checkpoint write, so a
    non-finite step never reaches a checkpoint).
    """
    model, optimizer = parts.model, parts.optimizer
    img_emb, txt_emb, scale = forward_with_caches(parts.forward if parts.forward is not None else model, model,
                                                  batch, idx, parts.autocast, parts.caches)
    # the losses in fp32, over the global batch (identity without torchrun)
    img_emb, txt_emb = D.gather_embeddings(img_emb.float(), txt_emb.float())
    terms = parts.loss_fn(img_emb, txt_emb, scale.float())
    values = torch.stack([terms[k].detach() for k in TERMS])
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    grads = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    gnorm = (nn.utils.clip_grad_norm_(grads, parts.grad_clip) if parts.grad_clip > 0
             else nn.utils.get_total_norm([p.grad for p in grads]))
    # The loss terms, the embeddings, the gradient norm and the weights after the update are all
    # checked (a NaN can surface in any of them first), on the device; the caller reads the flag
    # at its next check point.
    img_ok, txt_ok = torch.isfinite(img_emb.detach()).all(), torch.isfinite(txt_emb.detach()).all()
    optimizer.step()
    if model.logit_scale.requires_grad:  # as CLIP: the learned log(1/tau) itself stays <= log(max)
        with torch.no_grad():
            model.logit_scale.clamp_(max=math.log(model.max_logit_scale))
    if parts.scheduler is not None:
        parts.scheduler.step()
    # a sum of finite weights is finite (it could overflow only past ~1e38): 10x cheaper than a max-norm
    weights_ok = torch.isfinite(torch.stack([p.detach().sum() for g in optimizer.param_groups for p in g["params"]]).sum())
    finite = torch.isfinite(values).all() & torch.isfinite(gnorm) & img_ok & txt_ok & weights_ok
    return {**{k: values[i] for i, k in enumerate(TERMS)}, "grad_norm": gnorm.detach(), "image_finite": img_ok,
            "text_finite": txt_ok, "weights_finite": weights_ok, "finite": finite, "logit_scale": scale.detach()}


# --------------------------------------------------------------------------- the run's state
@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint and restored on resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed within the current epoch
    global_step: int = 0
    seconds: float = 0.0  # training + validation time
    train_seconds: float = 0.0  # optimiser steps only
    epoch_sums: list[float] = field(default_factory=lambda: [0.0] * len(TERMS))  # of the logged windows
    val_terms: dict[str, float] | None = None  # the last validation's mean loss terms

    def as_checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step, "seconds": self.seconds,
                "train_seconds": self.train_seconds, "epoch_sums": list(self.epoch_sums),
                "val_terms": self.val_terms}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], steps_per_epoch: int) -> Progress:
        epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        return cls(epoch, step, epoch * steps_per_epoch + step, float(ckpt["seconds"]), float(ckpt["train_seconds"]),
                   [float(x) for x in ckpt["epoch_sums"]], ckpt["val_terms"])


@dataclass
class Run:
    """Everything one ``fit`` call trains with: built once by ``_start``, then advanced epoch by epoch."""

    cfg: Config
    method: str
    seed: int
    out_dir: Path
    model: ContextCLIPModel
    forward: nn.Module  # the DDP wrapper under torchrun, else the model
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Any
    autocast: Any
    collate: Any
    train_ds: Any
    val_ds: Any
    data: dict[str, Any]  # runs.data_digest of the datasets
    dist: D.DistInfo
    global_batch: int
    steps_per_epoch: int
    progress: bool
    state: Progress
    text_cache: FrozenFeatureCache | None = None
    image_cache_train: FrozenFeatureCache | None = None
    image_cache_val: FrozenFeatureCache | None = None
    window: torch.Tensor | None = None  # sums of the loss terms since the last logged line
    n_window: int = 0
    epoch_started: float = 0.0  # perf_counter() at the epoch's start
    pending: list = field(default_factory=list)  # per-step device rows not yet checked for finiteness
    pending_at: list = field(default_factory=list)  # their (epoch, step, global step)
    ema: WeightAverage | None = None  # the weight average evaluated (train.ema_decay > 0)

    @property
    def main(self) -> bool:
        return self.dist.is_main

    @property
    def per_device(self) -> int:
        return self.global_batch // self.dist.world_size

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / R.CHECKPOINT

    def lrs(self) -> dict[str, float]:
        return {f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups)}

    def logit_scale(self) -> float:
        return float(self.model.clamped_logit_scale().detach())

    def log(self, record: dict) -> None:
        if self.main:
            with open(self.out_dir / R.HISTORY, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def fold_window(self) -> list[float]:
        """Add the open window to the epoch sums and empty it; returns the window's means."""
        means = (self.window / max(self.n_window, 1)).tolist()
        for i, v in enumerate(self.window.tolist()):
            self.state.epoch_sums[i] += v
        self.window.zero_()
        self.n_window = 0
        return means

    def check_finite(self, at_step: int) -> None:
        """One host sync for all steps since the last check; raises naming the first bad step."""
        if not self.pending:
            return
        rows = torch.stack(self.pending).tolist()
        where = list(self.pending_at)
        self.pending.clear()
        self.pending_at.clear()
        for (ep, st, gs), row in zip(where, rows):
            vals = dict(zip(TERMS + _CHECK_KEYS, row))
            if vals["finite"] == 1.0:
                continue
            path = self.checkpoint_path
            raise NonFiniteLossError(
                f"non-finite loss, gradient or weights at epoch {ep} step {st} (global step {gs}): "
                + ", ".join(f"{k}={vals[k]:.6g}" for k in TERMS)
                + f", gradient norm={vals['grad_norm']:.6g}, image embeddings finite={vals['image_finite'] == 1}, "
                f"text embeddings finite={vals['text_finite'] == 1}, weights finite after the update="
                f"{vals['weights_finite'] == 1}, logit_scale={vals['logit_scale']:.6g}. Training stopped at step "
                f"{at_step} (checked every log_every={self.cfg.train.log_every} steps and before every checkpoint, "
                "so that no step waits for the host); no weights from that step on were saved: "
                f"{path if path.exists() else 'no checkpoint'} is unchanged. Try lower learning rates or weight "
                "decay, precision=fp32, grad_clip > 0, or a larger temperature/bandwidth."
            )

    def save_checkpoint(self) -> None:
        """Check every step since the last check, then write the full state (rank 0)."""
        self.check_finite(self.state.step)  # never write weights that followed a non-finite step
        if self.main:
            hist = self.out_dir / R.HISTORY
            weights, frozen_towers = R.model_state(self.model, self.cfg)
            R.save_checkpoint({
                "model": weights, "frozen_towers": frozen_towers, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                **self.state.as_checkpoint(), "rng": R.rng_state(), "config": self.cfg.to_dict(),
                "method": self.method, "seed": self.seed, R.NUMERICS_KEY: R.TRAINING_NUMERICS, "data": self.data,
                "history_bytes": hist.stat().st_size if hist.exists() else 0,
                "world_size": self.dist.world_size, "torch": str(torch.__version__),
            }, self.checkpoint_path)
        D.barrier()


# --------------------------------------------------------------------------- fit
def fit(cfg: Config, method: str, seed: int, out_dir: Path, fresh: bool = False, train_ds=None, val_ds=None,
        progress: bool = True, loss_fn=None, wait: bool = False) -> dict:
    """``_fit`` holding the run folder's lock (``contextclip.lock``): one writer per run folder.

    A second writer is refused with the holder named (``FolderBusyError``), or waits (``wait``).
    """
    check_seed(seed)
    R.claim_run_folder(Path(out_dir), write=False)  # the user's folder is refused before a lock file is put in it
    with folder_lock(out_dir, "run folder", wait=wait, enabled=os.environ.get("RANK", "0") == "0"):
        return _fit(cfg, method, seed, out_dir, fresh, train_ds, val_ds, progress, loss_fn)


def _fit(cfg: Config, method: str, seed: int, out_dir: Path, fresh: bool = False, train_ds=None, val_ds=None,
         progress: bool = True, loss_fn=None) -> dict:
    """Train ``method`` ("clip" = alpha 0, or "contextclip") with ``seed`` into ``out_dir``; returns the summary.

    Resumes from ``out_dir/checkpoint.pt`` (mid-epoch included) and returns the summary of a
    finished run without training, unless ``fresh``. A run folder made with a different config,
    or a checkpoint trained on other data, is refused (``RunMismatchError`` naming what
    differs). ``train_ds`` / ``val_ds`` replace the config's datasets; ``loss_fn`` replaces
    ``make_loss(cfg.for_method(method))`` (a callable ``(img, txt, scale) -> {TERMS...}``).
    """
    cfg = cfg.for_method(method)
    out_dir = Path(out_dir)
    dist = D.init_distributed(cfg.train.device)
    if cfg.train.batch_size % dist.world_size:
        raise ConfigError(f"config key 'batch_size': {cfg.train.batch_size} (the global batch) must be divisible "
                          f"by the number of processes ({dist.world_size}); per-device batch = batch_size // "
                          "world_size")
    finished = _open_run_folder(cfg, method, seed, out_dir, fresh, dist)
    if finished is not None:
        return finished
    run = _start(cfg, method, seed, out_dir, dist, train_ds, val_ds, progress, loss_fn)
    for epoch in range(run.state.epoch, cfg.train.epochs):
        _train_epoch(run, epoch)
        run.state.val_terms, val_seconds = _validate(run)
        run.state.seconds += val_seconds
        _end_epoch(run, epoch)
    return _finish(run)


def _open_run_folder(cfg: Config, method: str, seed: int, out_dir: Path, fresh: bool,
                     dist: D.DistInfo) -> dict | None:
    """Clean up or check an existing run folder; the summary when the run is already finished."""
    summary_path = out_dir / R.SUMMARY
    if dist.is_main:
        fileio.clean_stale_tmp(out_dir)
    R.claim_run_folder(out_dir, write=False)  # before --fresh: the user's files are never deleted
    if fresh:
        if dist.is_main:
            for name in (R.CHECKPOINT, R.SUMMARY, R.HISTORY):
                (out_dir / name).unlink(missing_ok=True)
        D.barrier()
        return None
    if summary_path.exists() and (out_dir / R.CONFIG).exists():
        summary = R.read_summary(out_dir)
        saved_config = read_json(out_dir / R.CONFIG)
        saved = {**saved_config, **R.run_identity(summary.get("method"), summary.get("seed"),
                                                   summary.get(R.NUMERICS_KEY))}
        R.refuse_other_config(out_dir, saved, {**cfg.to_dict(), **R.run_identity(method, seed)})
        R.check_checkpoint(out_dir, summary, saved_config)  # the checkpoint it reports on is the run's own
        if dist.is_main:
            print(R.already_trained_line(out_dir, summary.get("final_val_loss")), flush=True)
        return summary
    return None


def _start(cfg: Config, method: str, seed: int, out_dir: Path, dist: D.DistInfo, train_ds, val_ds,
           progress: bool, loss_fn) -> Run:
    """Data, model, optimiser and caches, restored from the checkpoint when there is one."""
    ckpt_path = out_dir / R.CHECKPOINT
    ckpt = R.load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if ckpt is not None:
        R.refuse_other_config(out_dir, {**ckpt["config"], **R.run_identity(ckpt["method"], ckpt["seed"],
                                                                            ckpt.get(R.NUMERICS_KEY))},
                              {**cfg.to_dict(), **R.run_identity(method, seed)})
    if train_ds is None and val_ds is None:
        train_ds, val_ds = build_pair_datasets(cfg, seed=seed)
    global_batch = cfg.train.batch_size
    steps_per_epoch = len(train_ds) // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(f"config key 'batch_size': the global batch {global_batch} is larger than the "
                          f"{len(train_ds)} training pairs; lower batch_size or raise n_pairs")
    data = R.data_digest(train_ds, val_ds, getattr(train_ds, "report", None))
    if ckpt is not None:
        R.refuse_other_data(out_dir, ckpt.get("data"), data)

    R.seed_everything(seed)
    model = to_device(build_model(cfg), dist.device)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, cfg.train.epochs * steps_per_epoch)
    state = _restore(ckpt, model, opt, sched, steps_per_epoch, ckpt_path) if ckpt is not None else Progress()
    ema = WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    if ema is not None and ckpt is not None:
        ema.load_state_dict(ckpt["ema"])
    if dist.is_main:
        R.claim_run_folder(out_dir)  # the kit's marker first: from now on the folder is the kit's
        _write_run_files(cfg, out_dir, dist, train_ds, None if ckpt is None else int(ckpt["history_bytes"]))
    D.barrier()

    autocast = autocast_factory(dist.device, cfg.train.precision)
    run = Run(cfg=cfg, method=method, seed=seed, out_dir=out_dir, model=model, forward=model, optimizer=opt,
              scheduler=sched, loss_fn=loss_fn if loss_fn is not None else make_loss(cfg), autocast=autocast,
              collate=PairCollator(model.tokenizer, cfg.model.max_length), train_ds=train_ds, val_ds=val_ds,
              data=data, dist=dist, global_batch=global_batch, steps_per_epoch=steps_per_epoch, progress=progress,
              state=state, window=torch.zeros(len(TERMS), device=dist.device), ema=ema)
    _build_caches(run)
    if run.text_cache is not None:  # every caption's features are cached: the batches need no token ids
        run.collate.tokenize = False
    if dist.distributed:
        run.forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    if ckpt is not None:  # last: building the model and caches above must not disturb the restored RNG
        R.set_rng_state(ckpt["rng"])
    return run


def _restore(ckpt: dict, model: ContextCLIPModel, opt: torch.optim.Optimizer, sched, steps_per_epoch: int,
             path: Path) -> Progress:
    """Load the checkpoint's weights (``path``'s), optimiser and scheduler states; returns where the run stood."""
    R.restore_model(model, ckpt["model"], ckpt.get("frozen_towers"), path)
    opt.load_state_dict(ckpt["optimizer"])
    if sched is not None:
        sched.load_state_dict(ckpt["scheduler"])
    return Progress.from_checkpoint(ckpt, steps_per_epoch)


def _write_run_files(cfg: Config, out_dir: Path, dist: D.DistInfo, train_ds, history_bytes: int | None) -> None:
    """The files that describe the run (config, environment, data report), and the history cut back to
    the ``history_bytes`` the checkpoint saw (None: starting at step 0, so no history). Rank 0 only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hist_path = out_dir / R.HISTORY
    if history_bytes is None:  # starting at step 0: lines a killed earlier attempt logged are redone
        hist_path.unlink(missing_ok=True)
    elif hist_path.exists() and hist_path.stat().st_size > history_bytes:
        with open(hist_path, "r+b") as fh:  # drop lines logged after the checkpoint: they are redone
            fh.truncate(history_bytes)
    save_config(cfg, out_dir / R.CONFIG)
    fileio.write_json(R.environment_info(dist.device, dist.world_size), out_dir / R.ENVIRONMENT)
    if getattr(train_ds, "report", None):
        fileio.write_json(train_ds.report, out_dir / R.DATA_REPORT)


def _build_caches(run: Run) -> None:
    """Frozen-tower feature caches (valid only for a truly frozen tower, see FrozenFeatureCache)."""
    cfg, model = run.cfg, run.model
    if not cfg.train.cache_frozen_features:
        return
    if model.freeze_text:
        caps = R.dataset_captions(run.train_ds) + (R.dataset_captions(run.val_ds) if run.val_ds is not None else [])
        run.text_cache = cached_caption_features(model, caps, run.autocast, cfg, run.dist.device)
    if model.freeze_image:
        if not cfg.data.augment:
            run.image_cache_train = _image_cache(run, run.train_ds)
        if run.val_ds is not None:
            run.image_cache_val = _image_cache(run, run.val_ds)


def _image_cache(run: Run, ds) -> FrozenFeatureCache:
    """A frozen image tower's features of ``ds`` (fixed images), from the disk cache shared by every run
    and by evaluation (``contextclip.image_cache``) when the dataset has a content digest."""
    if not hasattr(ds, "content_digest"):
        return FrozenFeatureCache.for_images(run.model, ds, run.collate, run.cfg, run.autocast)
    feats = cached_image_features(run.model, ds, resolve_root(run.cfg.data.data_root),
                                  autocast=run.autocast, write=run.main,
                                  images_key={"pairs": ds.content_digest(), "n": len(ds)},
                                  take=lambda d, idx: run.collate([d[i] for i in idx])["images"])
    return FrozenFeatureCache(feats.to(run.dist.device))


def _train_epoch(run: Run, epoch: int) -> None:
    """The optimiser steps of one epoch (from the checkpoint's step when resuming into it)."""
    cfg, st = run.cfg, run.state
    run.epoch_started = time.perf_counter()
    if hasattr(run.train_ds, "set_epoch"):
        run.train_ds.set_epoch(epoch)
    batches = epoch_batches(len(run.train_ds), run.global_batch, run.seed, epoch)[:run.steps_per_epoch]
    first = st.step if epoch == st.epoch else 0
    if first == 0:
        st.epoch_sums = [0.0] * len(TERMS)
    st.epoch, st.step = epoch, first
    r, per = run.dist.rank, run.per_device
    local = [b[r * per:(r + 1) * per] for b in batches[first:]]
    caches = FrozenCaches(run.text_cache, run.image_cache_train)
    batches_of_rank = loader(run.train_ds, local, run.collate, cfg, run.dist.device, run.seed * 1000 + epoch, caches)
    run.model.train()
    run.window.zero_()
    run.n_window = 0
    bar = tqdm(total=run.steps_per_epoch, initial=first, desc=f"{run.method} s{run.seed} epoch {epoch + 1}/"
               f"{cfg.train.epochs}", disable=not (run.progress and run.main), leave=False, dynamic_ncols=True)
    parts = StepParts(run.model, run.loss_fn, run.optimizer, run.autocast, run.scheduler, cfg.train.grad_clip,
                      run.forward, caches)
    for step, (idx, batch) in enumerate(zip(local, batches_of_rank), start=first + 1):
        t0 = time.perf_counter()
        out = train_step(parts, batch, idx)
        if run.ema is not None:
            run.ema.update(run.model)
        values = torch.stack([out[k] for k in TERMS])
        run.pending.append(torch.cat([values, torch.stack([out[k].float() for k in _CHECK_KEYS])]))
        st.global_step += 1
        st.step = step
        run.pending_at.append((epoch + 1, step, st.global_step))
        run.window += values
        run.n_window += 1
        dt = time.perf_counter() - t0
        st.train_seconds += dt
        st.seconds += dt
        if step % cfg.train.log_every == 0 or step == run.steps_per_epoch:
            run.check_finite(step)
            means = run.fold_window()
            run.log({"type": "step", "epoch": epoch + 1, "step": step, "global_step": st.global_step,
                     **dict(zip(TERMS, means)), "logit_scale": run.logit_scale(), **run.lrs(),
                     "time": round(st.seconds, 3)})
            bar.set_postfix({k.replace("_loss", ""): f"{v:.3f}" for k, v in zip(TERMS, means)})
        bar.update(1)
        if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0 and step < run.steps_per_epoch:
            if run.n_window:  # fold the open window into the epoch sums so that a resume can continue them
                run.fold_window()
            run.save_checkpoint()
        failpoints.hit("step")
    bar.close()


def _validate(run: Run) -> tuple[dict[str, float] | None, float]:
    """Mean loss terms on the held-out pairs (None without at least 2) and the seconds it took, for the
    weights the run is evaluated with (the weight average when ``ema_decay > 0``)."""
    t0 = time.perf_counter()
    if run.val_ds is None or len(run.val_ds) < 2:
        return None, time.perf_counter() - t0
    with run.ema.applied(run.model) if run.ema is not None else contextlib.nullcontext():  # the weights evaluated
        terms = evaluate_loss(run.model, run.loss_fn, run.val_ds, run.collate, run.cfg, run.autocast,
                              run.global_batch, FrozenCaches(run.text_cache, run.image_cache_val))
    return terms, time.perf_counter() - t0


def _end_epoch(run: Run, epoch: int) -> None:
    """The epoch's history line, a progress line, and the end-of-epoch checkpoint."""
    st, t = run.state, run.cfg.train
    train_means = {f"train_{k}": s / run.steps_per_epoch for k, s in zip(TERMS, st.epoch_sums)}
    val = st.val_terms
    run.log({"type": "epoch", "epoch": epoch + 1, "global_step": st.global_step, **train_means,
             **({f"val_{k}": v for k, v in val.items()} if val else {}), "logit_scale": run.logit_scale(),
             **run.lrs(), "epoch_seconds": round(time.perf_counter() - run.epoch_started, 3),
             "time": round(st.seconds, 3)})
    if run.main and run.progress:
        vl = f"{val['loss']:.4f}" if val else "n/a"
        print(f"{run.method} seed {run.seed} epoch {epoch + 1}/{t.epochs}: train loss {train_means['train_loss']:.4f}, "
              f"val loss {vl}, 1/tau {run.logit_scale():.2f}", flush=True)
    st.epoch, st.step = epoch + 1, 0
    run.save_checkpoint()


def _finish(run: Run) -> dict:
    """Write ``summary.json`` (the run is finished once it exists) and return it."""
    st, val, n_val = run.state, run.state.val_terms, len(run.val_ds) if run.val_ds is not None else 0
    summary = {
        "final_val_loss": val["loss"] if val else None,
        **({f"final_val_{k}": v for k, v in val.items() if k != "loss"} if val else {}),
        "final_logit_scale": run.logit_scale(),
        "epochs": run.cfg.train.epochs, "steps": st.global_step, "seconds": round(st.seconds, 3),
        "train_seconds": round(st.train_seconds, 3),
        "pairs_per_second": (round(st.global_step * run.global_batch / st.train_seconds, 2)
                             if st.train_seconds > 0 else None),
        "method": run.method, "seed": run.seed, R.NUMERICS_KEY: R.TRAINING_NUMERICS, "profile": run.cfg.profile,
        "n_train": len(run.train_ds),
        "n_val": n_val, "per_device_batch": run.per_device, "global_batch": run.global_batch,
        "world_size": run.dist.world_size, "device": R.device_name(run.dist.device), "torch": str(torch.__version__),
        "data": run.data,
        "frozen_feature_cache": {"text": run.text_cache is not None, "image_train": run.image_cache_train is not None,
                                 "image_val": run.image_cache_val is not None},
    }
    if run.main:  # the checkpoint this summary reports on: `train` and `evaluate` check it is still that one
        summary["checkpoint"] = R.checkpoint_record(run.checkpoint_path)
        fileio.write_json(summary, run.out_dir / R.SUMMARY)
    D.barrier()
    return summary


@torch.no_grad()
def evaluate_loss(model: ContextCLIPModel, loss_fn: ContextCLIPLoss, ds, collate, cfg: Config, autocast,
                  global_batch: int, caches: FrozenCaches | None = None) -> dict[str, float]:
    """Mean loss terms over consecutive held-out batches of the global batch size (eval mode).

    Under torchrun rank r computes batches r, r + W, ...; the sums are added over ranks.
    The contextual term is measured for CLIP runs too (alpha = 0: it is reported, not added to
    ``loss``), so ``val_contextual_loss`` compares the two methods on the same footing.
    """
    was_training = model.training
    model.eval()
    batches = val_batches(len(ds), global_batch)
    world, rank = (torch.distributed.get_world_size(), torch.distributed.get_rank()) if D.is_distributed() else (1, 0)
    mine = batches[rank::world]
    sums = torch.zeros(len(TERMS) + 1, dtype=torch.float64, device=model.device)
    for idx, batch in zip(mine, loader(ds, mine, collate, cfg, model.device, 0, caches)):
        failpoints.hit("val_batch")
        img, txt, scale = forward_with_caches(model, model, batch, idx, autocast, caches)
        # ContextCLIPLoss measures L_CX for CLIP (alpha = 0) too, without adding it to "loss", so the
        # curves can show whether CLIP lowers it anyway.
        terms = loss_fn(img.float(), txt.float(), scale.float())
        n = len(idx)
        sums += torch.stack([terms[k].double() * n for k in TERMS] + [torch.tensor(float(n), device=sums.device,
                                                                                   dtype=torch.float64)])
    if D.is_distributed():
        torch.distributed.all_reduce(sums)
    model.train(was_training)
    total = float(sums[-1])
    return {k: float(s) / total for k, s in zip(TERMS, sums[:-1].tolist())}
