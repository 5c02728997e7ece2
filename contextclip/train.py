"""Training: ``fit`` one ContextCLIP (or CLIP, alpha = 0) model on (image, caption) pairs.

What it is: the optimisation loop of the paper's Sec. 6 (Adam with weight decay, separate
learning rates for the image tower, the text tower and the heads, fixed batch, epochs), with
a held-out validation loss each epoch, atomic checkpoints holding the full state (model,
optimiser, scheduler, epoch, step within the epoch, every RNG state, config), exact resume
(mid-epoch included), ``history.jsonl`` / ``summary.json`` / ``config.json`` /
``environment.json`` in the run folder, a cache for the features of a frozen tower, and
training under ``torchrun`` (DDP) with the losses over the global batch.

What it is not: no model definition (``model.py``), no loss formulas (``losses.py``), no
dataset code (``contextclip.data``), no evaluation (``evaluate.py``).

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
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contextclip import distributed as D
from contextclip.config import REPO_ROOT, Config, ConfigError, save_config
from contextclip.losses import ContextCLIPLoss, contextual_loss
from contextclip.model import ContextCLIPModel, build_model

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
HISTORY = "history.jsonl"
TERMS = ("loss", "contrastive_loss", "contextual_loss")

#: Config keys that do not change what a run computes: a checkpoint or finished run made with
#: other values of these is still "the same run" (evaluation knobs, logging, workers, paths).
RESULT_NEUTRAL_KEYS = frozenset({
    "num_workers", "log_every", "checkpoint_every", "seeds", "methods", "data_root", "missing_datasets",
    "zero_shot_datasets", "fine_tune_datasets", "retrieval_dataset", "tsne_dataset", "eval_max_images",
})


class RunMismatchError(ConfigError):
    """The run folder holds a checkpoint or finished run made with a different config."""


class NonFiniteLossError(RuntimeError):
    """A loss term, the gradient or an embedding became NaN or infinite; no weights after it were saved."""


class CheckpointError(ConfigError):
    """A checkpoint file cannot be loaded (damaged, cut short, or not plain weights: refused)."""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; any failure is a ``CheckpointError`` naming the file.

    ``weights_only`` loading never runs code from the file: a pickle that would call a function
    (a malicious ``__reduce__``) is refused, not executed (tests/test_reliability_inputs.py).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged zip, refused pickle, wrong file type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {first[:200]}). It is damaged (e.g. a "
            "copy cut short) or not a plain-weights ContextCLIP checkpoint (only weights_only loading is "
            "allowed). Pass --fresh (fit(..., fresh=True)) to discard it and train from the start"
        ) from None


_DRILL_SEEN = [0]


def _drill(point: str) -> None:
    """Crash drill (tests/test_reliability_resume.py): SIGKILL this process at a named point.

    Does nothing unless the environment variable ``CONTEXTCLIP_KILL_AT`` is ``"<point>#<n>"``:
    then the n-th time ``point`` is reached (``*`` matches every point) the process kills itself
    with SIGKILL, i.e. without any cleanup, exactly like an external ``kill -9``. Points: ``step``
    (after an optimiser step), ``val_batch`` (inside the validation pass), ``write:<file name>``
    (a file's temporary copy is complete but not yet renamed over the old one).
    """
    spec = os.environ.get("CONTEXTCLIP_KILL_AT")
    if not spec:
        return
    name, _, n = spec.partition("#")
    if name in (point, "*"):
        _DRILL_SEEN[0] += 1
        if _DRILL_SEEN[0] == int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- config comparison
def result_config(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """Flat view of a saved config restricted to the keys that change a run's result."""
    flat: dict[str, Any] = {}
    for section, values in cfg_dict.items():
        if section in ("profile", "eval") or not isinstance(values, dict):
            continue
        flat.update({k: v for k, v in values.items() if k not in RESULT_NEUTRAL_KEYS})
    return flat


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``["key: saved -> current", ...]`` over the result-changing keys (and method, seed)."""
    a, b = result_config(saved), result_config(current)
    for extra in ("method", "seed"):
        if extra in saved or extra in current:
            a[extra], b[extra] = saved.get(extra), current.get(extra)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# --------------------------------------------------------------------------- RNG state
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain types (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


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


class _FallbackCollator:
    """(uint8 image, caption) items -> batch dict; used only when contextclip.data has no PairCollator."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items):
        images = torch.stack([it[0] for it in items])
        captions = [it[1] for it in items]
        enc = self.tokenizer(captions, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"images": images, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "captions": captions}


def make_collator(tokenizer, max_length: int):
    try:
        from contextclip.data import PairCollator
    except ImportError:
        return _FallbackCollator(tokenizer, max_length)
    return PairCollator(tokenizer, max_length)


def _loader(ds, batches: Sequence[Sequence[int]], collate, cfg: Config, device: torch.device, seed: int):
    from torch.utils.data import DataLoader

    # A private generator: creating the iterator must not consume the global torch RNG, or a
    # mid-epoch resume would diverge from an uninterrupted run.
    return DataLoader(ds, batch_sampler=list(batches), collate_fn=collate, num_workers=cfg.train.num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- frozen-feature cache
class FrozenFeatureCache:
    """Tower features (before the head) of a frozen tower, computed once per caption or image.

    Valid only while the tower is truly frozen: eval mode, no gradient, and the same input each
    time (captions never change; an image only when there is no augmentation). ``fit`` enforces
    this; cached and live features agree within float rounding (tests/test_train.py states the
    tolerance). Features are computed in a fixed order (sorted captions / dataset order), so a
    resumed run gets bit-identical cached features.
    """

    def __init__(self, feats: torch.Tensor, index: dict | None = None):
        self.feats = feats
        self.index = index

    @classmethod
    @torch.no_grad()
    def for_captions(cls, model: ContextCLIPModel, captions: Sequence[str], autocast, chunk: int = 256):
        unique = sorted(set(captions), key=lambda c: (len(c), c))  # similar lengths share padding
        parts = []
        for i in range(0, len(unique), chunk):
            tok = model.tokenize(unique[i:i + chunk])
            with autocast():
                parts.append(model.text_features(tok["input_ids"], tok["attention_mask"]))
        return cls(torch.cat(parts), {c: j for j, c in enumerate(unique)})

    @classmethod
    @torch.no_grad()
    def for_images(cls, model: ContextCLIPModel, ds, collate, cfg: Config, autocast, chunk: int = 256):
        parts = []
        batches = [list(range(i, min(i + chunk, len(ds)))) for i in range(0, len(ds), chunk)]
        for batch in _loader(ds, batches, collate, cfg, model.device, 0):
            with autocast():
                parts.append(model.image_features(batch["images"]))
        return cls(torch.cat(parts))

    def lookup(self, keys) -> torch.Tensor:
        if self.index is not None:
            keys = [self.index[k] for k in keys]
        return self.feats[torch.as_tensor(list(keys), device=self.feats.device)]

    def lookup_captions(self, model: ContextCLIPModel, captions: Sequence[str], autocast) -> torch.Tensor:
        """Features of ``captions``; any caption not seen when the cache was built is added first."""
        new = sorted({c for c in captions if c not in self.index}, key=lambda c: (len(c), c))
        if new:
            extra = FrozenFeatureCache.for_captions(model, new, autocast)
            self.index.update({c: j + len(self.feats) for c, j in extra.index.items()})
            self.feats = torch.cat([self.feats, extra.feats])
        return self.lookup(captions)


def _cached_caption_features(model: ContextCLIPModel, captions: Sequence[str], autocast, cfg: Config,
                             device: torch.device) -> FrozenFeatureCache:
    """``FrozenFeatureCache.for_captions``, kept on disk under ``<data_root>/cache/text_features``.

    The runs of a profile (methods x seeds) share one frozen text tower and one caption set, so
    the features are computed once per machine. The key hashes everything they depend on: the
    tower's weights, pooling, max_length, the captions, the precision and the device type.
    """
    import hashlib

    from contextclip.data.registry import resolve_root
    from contextclip.encoding import frozen_text_fingerprint

    h = hashlib.sha256(frozen_text_fingerprint(model).encode())  # tower weights, pooling, max_length
    with autocast():
        dtype = str(torch.get_autocast_dtype(device.type)) if torch.is_autocast_enabled(device.type) else "fp32"
    unique = sorted(set(captions))
    h.update(json.dumps([model.pooling, model.max_length, dtype, device.type, str(torch.__version__), unique]).encode())
    path = resolve_root(cfg.data.data_root) / "cache" / "text_features" / f"{h.hexdigest()[:32]}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return FrozenFeatureCache(saved["feats"].to(device), dict(zip(saved["captions"], range(len(unique)))))
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
            pass
    cache = FrozenFeatureCache.for_captions(model, unique, autocast)
    if D.is_main():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            order = sorted(cache.index, key=cache.index.get)
            _atomic_save({"feats": cache.feats.cpu(), "captions": order}, path)
        except OSError:  # a read-only data folder only costs the recomputation next time
            pass
    return cache


def _dataset_captions(ds) -> list[str]:
    """Every caption a pair dataset can return (all captions of each image when it has several)."""
    if hasattr(ds, "captions_of"):
        return [c for k in range(len(ds)) for c in ds.captions_of(k)]
    caps = getattr(ds, "captions", None)
    if caps is not None and len(caps) == len(ds) and all(isinstance(c, str) for c in caps):
        return list(caps)
    return [ds[i][1] for i in range(len(ds))]


# --------------------------------------------------------------------------- optimiser
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
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=t.weight_decay)
    raise ConfigError(f"config key 'optimizer': {t.optimizer!r} is not one of ['adam', 'adamw']")


def make_scheduler(opt: torch.optim.Optimizer, cfg: Config, total_steps: int):
    """``none`` or ``cosine`` (per step, from each group's lr to 0, no warm-up)."""
    if cfg.train.scheduler == "none":
        return None
    if cfg.train.scheduler == "cosine":
        total = max(1, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    raise ConfigError(f"config key 'scheduler': {cfg.train.scheduler!r} is not one of ['none', 'cosine']")


def _make_loss(cfg: Config) -> ContextCLIPLoss:
    l = cfg.loss  # noqa: E741
    return ContextCLIPLoss(alpha=l.alpha, bandwidth=l.bandwidth, eps=l.cx_eps, variant=l.cx_variant,
                           image_to_text_weight=l.image_to_text_weight)


# --------------------------------------------------------------------------- files
def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:  # the old file stays whole until the new one is complete on disk
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    _drill(f"write:{path.name}")
    os.replace(tmp, path)


def _plain(o: Any) -> Any:
    return o.item() if hasattr(o, "item") else str(o)


def _atomic_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n", encoding="utf-8")
    _drill(f"write:{path.name}")
    os.replace(tmp, path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info(device: torch.device, world_size: int) -> dict[str, Any]:
    import torchvision
    import transformers

    return {
        "python": sys.version.split()[0], "torch": str(torch.__version__), "torchvision": torchvision.__version__,
        "transformers": transformers.__version__, "numpy": np.__version__, "platform": platform.platform(),
        "hostname": socket.gethostname(), "git_commit": _git_commit(), "device": _device_name(device),
        "world_size": world_size, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }


def _device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def _autocast_factory(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if bf16:
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


# --------------------------------------------------------------------------- one step
#: Per-step diagnostics returned by ``train_step`` besides the loss terms (all device tensors).
_CHECK_KEYS = ("grad_norm", "image_finite", "text_finite", "finite", "logit_scale")


def train_step(model: ContextCLIPModel, loss_fn, optimizer: torch.optim.Optimizer, batch: dict, autocast, *,
               forward=None, scheduler=None, grad_clip: float = 0.0, idx=None,
               text_cache: FrozenFeatureCache | None = None,
               image_cache: FrozenFeatureCache | None = None) -> dict[str, torch.Tensor]:
    """One optimiser step on one batch (the body of ``fit``'s loop; also timed by benchmarks/train_step.py).

    Forward under ``autocast`` (cached features of a frozen tower replace its input when a cache
    is given; ``idx`` are the batch's dataset indices for the image cache), the embeddings
    gathered over ranks and the losses in fp32, backward, gradient norm (clipped when
    ``grad_clip > 0``), optimiser step, CLIP's clamp of the learned log(1/tau), scheduler step.
    ``forward`` is the module to call (the DDP wrapper under torchrun; ``model`` otherwise).

    Returns detached *device* tensors and never waits for the device: the ``TERMS``, ``grad_norm``,
    ``image_finite`` / ``text_finite`` (every embedding finite), ``finite`` (all of these) and
    ``logit_scale``. The caller checks ``finite`` (``fit`` does so every ``log_every`` steps and
    before every checkpoint write, so a non-finite step never reaches a checkpoint).
    """
    fwd = forward if forward is not None else model
    with autocast():
        img_f = image_cache.lookup(idx) if image_cache is not None else None
        txt_f = text_cache.lookup_captions(model, batch["captions"], autocast) if text_cache is not None else None
        img_emb, txt_emb, scale = fwd(batch["images"] if img_f is None else None,
                                      batch["input_ids"], batch["attention_mask"],
                                      image_feats=img_f, text_feats=txt_f)
    # the losses in fp32, over the global batch (identity without torchrun)
    img_emb, txt_emb = D.gather_embeddings(img_emb.float(), txt_emb.float())
    terms = loss_fn(img_emb, txt_emb, scale.float())
    values = torch.stack([terms[k].detach() for k in TERMS])
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    grads = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    gnorm = (nn.utils.clip_grad_norm_(grads, grad_clip) if grad_clip > 0
             else nn.utils.get_total_norm([p.grad for p in grads]))
    # The loss terms, the embeddings and the gradient norm are all checked (a NaN can surface in
    # any of them first), on the device; the caller reads the flag at its next check point.
    img_ok, txt_ok = torch.isfinite(img_emb.detach()).all(), torch.isfinite(txt_emb.detach()).all()
    finite = torch.isfinite(values).all() & torch.isfinite(gnorm) & img_ok & txt_ok
    optimizer.step()
    if model.logit_scale.requires_grad:  # as CLIP: the learned log(1/tau) itself stays <= log(max)
        with torch.no_grad():
            model.logit_scale.clamp_(max=math.log(model.max_logit_scale))
    if scheduler is not None:
        scheduler.step()
    return {**{k: values[i] for i, k in enumerate(TERMS)}, "grad_norm": gnorm.detach(), "image_finite": img_ok,
            "text_finite": txt_ok, "finite": finite, "logit_scale": scale.detach()}


# --------------------------------------------------------------------------- fit
def fit(cfg: Config, method: str, seed: int, out_dir: Path, fresh: bool = False, train_ds=None, val_ds=None,
        progress: bool = True) -> dict:
    """Train ``method`` ("clip" = alpha 0, or "contextclip") with ``seed`` into ``out_dir``.

    Resumes from ``out_dir/checkpoint.pt`` (mid-epoch included) and returns the summary of a
    finished run without training, unless ``fresh``. A run folder made with a different
    config is refused (``RunMismatchError`` naming the differing keys). Returns the summary.
    """
    cfg = cfg.for_method(method)
    out_dir = Path(out_dir)
    info = D.init_distributed(cfg.train.device)
    device, world, rank, main = info.device, info.world_size, info.rank, info.is_main
    if cfg.train.batch_size % world:
        raise ConfigError(f"config key 'batch_size': {cfg.train.batch_size} (the global batch) must be divisible "
                          f"by the number of processes ({world}); per-device batch = batch_size // world_size")
    per_device = cfg.train.batch_size // world
    global_batch = per_device * world
    current = {**cfg.to_dict(), "method": method, "seed": seed}
    ckpt_path, summary_path, hist_path = out_dir / CHECKPOINT, out_dir / SUMMARY, out_dir / HISTORY

    # ---- an existing run folder: finished, resumable, or a different run
    if fresh:
        if main:
            for p in (ckpt_path, summary_path, hist_path):
                p.unlink(missing_ok=True)
        D.barrier()
    elif summary_path.exists() and (out_dir / "config.json").exists():
        saved = {**json.loads((out_dir / "config.json").read_text()), **{
            k: json.loads(summary_path.read_text()).get(k) for k in ("method", "seed")}}
        diff = config_differences(saved, current)
        if diff:
            raise RunMismatchError(_mismatch_message(out_dir, diff))
        summary = json.loads(summary_path.read_text())
        if main:
            print(f"{out_dir}: already trained (final_val_loss={summary['final_val_loss']}); "
                  "pass --fresh to train again", file=sys.stderr)
        return summary
    ckpt = None
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        diff = config_differences({**ckpt["config"], "method": ckpt["method"], "seed": ckpt["seed"]}, current)
        if diff:
            raise RunMismatchError(_mismatch_message(out_dir, diff))

    # ---- data, model, optimiser
    if train_ds is None and val_ds is None:
        from contextclip.data import build_pair_datasets

        train_ds, val_ds = build_pair_datasets(cfg, seed=seed)
    n_train, n_val = len(train_ds), (len(val_ds) if val_ds is not None else 0)
    steps_per_epoch = n_train // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(f"config key 'batch_size': the global batch {global_batch} is larger than the {n_train} "
                          "training pairs; lower batch_size or raise n_pairs")
    seed_everything(seed)
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, cfg.train.epochs * steps_per_epoch)
    loss_fn = _make_loss(cfg)
    autocast = _autocast_factory(device, cfg.train.precision)
    collate = make_collator(model.tokenizer, cfg.model.max_length)

    start_epoch, start_step, elapsed, train_time = 0, 0, 0.0, 0.0
    val_terms: dict[str, float] | None = None
    epoch_sums = [0.0] * len(TERMS)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        start_epoch, start_step = int(ckpt["epoch"]), int(ckpt["step"])
        elapsed, train_time = float(ckpt["seconds"]), float(ckpt["train_seconds"])
        epoch_sums = [float(x) for x in ckpt["epoch_sums"]]
        val_terms = ckpt["val_terms"]
        if main and hist_path.exists() and hist_path.stat().st_size > int(ckpt["history_bytes"]):
            with open(hist_path, "r+b") as fh:  # drop lines logged after the checkpoint: they are redone
                fh.truncate(int(ckpt["history_bytes"]))
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None:  # starting at step 0: lines a killed earlier attempt logged are redone
            hist_path.unlink(missing_ok=True)
        save_config(cfg, out_dir / "config.json")
        _atomic_json(environment_info(device, world), out_dir / "environment.json")
        if getattr(train_ds, "report", None):
            _atomic_json(train_ds.report, out_dir / "data_report.json")
    D.barrier()

    # ---- frozen-tower feature caches (valid only for a truly frozen tower, see FrozenFeatureCache)
    use_cache = cfg.train.cache_frozen_features
    text_cache = img_cache_train = img_cache_val = None
    if use_cache and model.freeze_text:
        caps = _dataset_captions(train_ds) + (_dataset_captions(val_ds) if val_ds is not None else [])
        text_cache = _cached_caption_features(model, caps, autocast, cfg, device)
    if use_cache and model.freeze_image:
        if not cfg.data.augment:
            img_cache_train = FrozenFeatureCache.for_images(model, train_ds, collate, cfg, autocast)
        if val_ds is not None:
            img_cache_val = FrozenFeatureCache.for_images(model, val_ds, collate, cfg, autocast)

    ddp = model
    if info.distributed:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    if ckpt is not None:  # last: building the model and caches above must not disturb the restored RNG
        set_rng_state(ckpt["rng"])
        del ckpt
    global_step = start_epoch * steps_per_epoch + start_step
    log_every = cfg.train.log_every

    def write_history(record: dict) -> None:
        if main:
            with open(hist_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def save_checkpoint(epoch: int, step: int) -> None:
        if main:
            state = {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "epoch": epoch, "step": step, "global_step": global_step, "rng": rng_state(),
                "config": cfg.to_dict(), "method": method, "seed": seed, "seconds": elapsed,
                "train_seconds": train_time, "epoch_sums": list(epoch_sums), "val_terms": val_terms,
                "history_bytes": hist_path.stat().st_size if hist_path.exists() else 0,
                "world_size": world, "torch": str(torch.__version__),
            }
            _atomic_save(state, ckpt_path)
        D.barrier()

    from tqdm.auto import tqdm

    pending: list[torch.Tensor] = []  # per-step device rows not yet checked for finiteness
    pending_at: list[tuple[int, int, int]] = []  # their (epoch, step, global step)

    def check_finite(at_step: int) -> None:
        """One host sync for all steps since the last check; raises naming the first bad step."""
        if not pending:
            return
        rows = torch.stack(pending).tolist()
        where = list(pending_at)
        pending.clear()
        pending_at.clear()
        for (ep, st, gs), row in zip(where, rows):
            if row[-2] == 1.0:  # "finite": loss terms, gradient norm and embeddings
                continue
            vals = dict(zip(TERMS + _CHECK_KEYS, row))
            raise NonFiniteLossError(
                f"non-finite loss or gradient at epoch {ep} step {st} (global step {gs}): "
                + ", ".join(f"{k}={vals[k]:.6g}" for k in TERMS)
                + f", gradient norm={vals['grad_norm']:.6g}, image embeddings finite={vals['image_finite'] == 1}, "
                f"text embeddings finite={vals['text_finite'] == 1}, logit_scale={vals['logit_scale']:.6g}. "
                f"Training stopped at step {at_step} (checked every log_every={log_every} steps and before "
                "every checkpoint, so that no step waits for the host); no weights from that step on were "
                f"saved: {ckpt_path if ckpt_path.exists() else 'no checkpoint'} is unchanged. Try lower "
                "learning rates, precision=fp32, grad_clip > 0, or a larger temperature/bandwidth."
            )

    for epoch in range(start_epoch, cfg.train.epochs):
        t_epoch = time.perf_counter()
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        batches = epoch_batches(n_train, global_batch, seed, epoch)[:steps_per_epoch]
        first = start_step if epoch == start_epoch else 0
        if first == 0:
            epoch_sums = [0.0] * len(TERMS)
        local = [b[rank * per_device:(rank + 1) * per_device] for b in batches[first:]]
        loader = _loader(train_ds, local, collate, cfg, device, seed * 1000 + epoch)
        model.train()
        window = torch.zeros(len(TERMS), device=device)
        n_window = 0
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"{method} s{seed} epoch {epoch + 1}/{cfg.train.epochs}",
                   disable=not (progress and main), leave=False, dynamic_ncols=True)
        for step, (idx, batch) in enumerate(zip(local, loader), start=first + 1):
            t0 = time.perf_counter()
            out = train_step(model, loss_fn, opt, batch, autocast, forward=ddp, scheduler=sched,
                             grad_clip=cfg.train.grad_clip, idx=idx, text_cache=text_cache,
                             image_cache=img_cache_train)
            values = torch.stack([out[k] for k in TERMS])
            pending.append(torch.cat([values, torch.stack([out[k].float() for k in _CHECK_KEYS])]))
            pending_at.append((epoch + 1, step, global_step + 1))
            global_step += 1
            window += values
            n_window += 1
            dt = time.perf_counter() - t0
            train_time += dt
            elapsed += dt
            if step % log_every == 0 or step == steps_per_epoch:
                check_finite(step)
                means = (window / n_window).tolist()
                for i, v in enumerate((window).tolist()):
                    epoch_sums[i] += v
                window.zero_()
                n_window = 0
                rec = {"type": "step", "epoch": epoch + 1, "step": step, "global_step": global_step,
                       **dict(zip(TERMS, means)), "logit_scale": float(model.clamped_logit_scale().detach()),
                       **{f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(opt.param_groups)},
                       "time": round(elapsed, 3)}
                write_history(rec)
                bar.set_postfix({k.replace("_loss", ""): f"{v:.3f}" for k, v in zip(TERMS, means)})
            bar.update(1)
            if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0 and step < steps_per_epoch:
                check_finite(step)  # never write weights that followed a non-finite step
                if n_window:  # fold the open window into the epoch sums so that a resume can continue them
                    for i, v in enumerate(window.tolist()):
                        epoch_sums[i] += v
                    window.zero_()
                    n_window = 0
                save_checkpoint(epoch, step)
            _after_step(epoch, step)
            _drill("step")
        bar.close()
        # ---- validation on the held-out pairs (each rank takes every world-th batch; no augmentation)
        t_val = time.perf_counter()
        val_terms = evaluate_loss(model, loss_fn, val_ds, collate, cfg, autocast, global_batch, text_cache,
                                  img_cache_val) if n_val >= 2 else None
        elapsed += time.perf_counter() - t_val
        train_means = {f"train_{k}": s / steps_per_epoch for k, s in zip(TERMS, epoch_sums)}
        write_history({"type": "epoch", "epoch": epoch + 1, "global_step": global_step, **train_means,
                       **({f"val_{k}": v for k, v in val_terms.items()} if val_terms else {}),
                       "logit_scale": float(model.clamped_logit_scale().detach()),
                       **{f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(opt.param_groups)},
                       "epoch_seconds": round(time.perf_counter() - t_epoch, 3), "time": round(elapsed, 3)})
        if main and progress:
            vl = f"{val_terms['loss']:.4f}" if val_terms else "n/a"
            print(f"{method} seed {seed} epoch {epoch + 1}/{cfg.train.epochs}: train loss "
                  f"{train_means['train_loss']:.4f}, val loss {vl}, 1/tau {float(model.clamped_logit_scale().detach()):.2f}",
                  file=sys.stderr)
        save_checkpoint(epoch + 1, 0)

    summary = {
        "final_val_loss": val_terms["loss"] if val_terms else None,
        **({f"final_val_{k}": v for k, v in val_terms.items() if k != "loss"} if val_terms else {}),
        "final_logit_scale": float(model.clamped_logit_scale().detach()),
        "epochs": cfg.train.epochs, "steps": global_step, "seconds": round(elapsed, 3),
        "train_seconds": round(train_time, 3),
        "pairs_per_second": round(global_step * global_batch / train_time, 2) if train_time > 0 else None,
        "method": method, "seed": seed, "profile": cfg.profile, "n_train": n_train, "n_val": n_val,
        "per_device_batch": per_device, "global_batch": global_batch, "world_size": world,
        "device": _device_name(device), "torch": str(torch.__version__),
        "frozen_feature_cache": {"text": text_cache is not None, "image_train": img_cache_train is not None,
                                 "image_val": img_cache_val is not None},
    }
    if main:
        _atomic_json(summary, summary_path)
    D.barrier()
    return summary


def _after_step(epoch: int, step: int) -> None:
    """Hook called after every optimiser step (a no-op; tests replace it to simulate a crash)."""


def _mismatch_message(out_dir: Path, diff: list[str]) -> str:
    return (f"run folder {out_dir} was made with a different config ({'; '.join(diff)}; saved -> now). "
            "Pass --fresh (fit(..., fresh=True)) to discard it and start over, or choose another --out")


@torch.no_grad()
def evaluate_loss(model: ContextCLIPModel, loss_fn: ContextCLIPLoss, ds, collate, cfg: Config, autocast,
                  global_batch: int, text_cache: FrozenFeatureCache | None = None,
                  img_cache: FrozenFeatureCache | None = None) -> dict[str, float]:
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
    for idx, batch in zip(mine, _loader(ds, mine, collate, cfg, model.device, 0)):
        _drill("val_batch")
        with autocast():
            img_f = img_cache.lookup(idx) if img_cache is not None else None
            txt_f = text_cache.lookup_captions(model, batch["captions"], autocast) if text_cache is not None else None
            img, txt, scale = model(batch["images"] if img_f is None else None, batch["input_ids"],
                                    batch["attention_mask"], image_feats=img_f, text_feats=txt_f)
        terms = loss_fn(img.float(), txt.float(), scale.float())
        if getattr(loss_fn, "alpha", None) == 0:
            # CLIP does not train on L_CX, but its value is measured on held-out pairs for both
            # methods, so the curves can show whether CLIP lowers it anyway (it is not in "loss").
            terms = {**terms, "contextual_loss": contextual_loss(img.float(), txt.float(), loss_fn.bandwidth,
                                                                 loss_fn.eps, loss_fn.variant)}
        n = len(idx)
        sums += torch.stack([terms[k].double() * n for k in TERMS] + [torch.tensor(float(n), device=sums.device,
                                                                                   dtype=torch.float64)])
    if D.is_distributed():
        torch.distributed.all_reduce(sums)
    model.train(was_training)
    total = float(sums[-1])
    return {k: float(s) / total for k, s in zip(TERMS, sums[:-1].tolist())}


# --------------------------------------------------------------------------- loading
def load_trained(run_dir: Path, device: str | torch.device = "cpu", require_finished: bool = True):
    """``(model, cfg)`` of a run folder, from its checkpoint, in eval mode on ``device``."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train first with `python -m contextclip train "
                                f"--profile P --method M --seed S --out {run_dir}`")
    ckpt = load_checkpoint(path)
    cfg = Config.from_dict(ckpt["config"], source=str(path))
    if require_finished and int(ckpt["epoch"]) < cfg.train.epochs:
        raise RuntimeError(f"run {run_dir} is not finished (epoch {ckpt['epoch']} of {cfg.train.epochs}); "
                           "run the same train command again to resume it")
    model = build_model(cfg, pretrained=False)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, cfg
