"""Train several runs (methods x seeds) on one pair dataset, one after another or in worker processes.

What it is: ``fit_runs(cfg, runs, train_ds, val_ds, workers)``, what notebook 02 calls.

- ``workers = 1``: ``train.fit`` for each run in turn, in this process (the smoke default).
- ``workers = k > 1``: every augmented training item of every epoch is drawn once here (the pair
  dataset keeps them, see ``data/pairs.py``; only the captions when the images' features come from
  the frozen-feature cache), then ``k`` forked processes, each with
  ``max(1, threads // k)`` torch threads, train the runs in parallel. Each run sees the same items
  in the same order as with ``workers = 1``, so at the same thread count its weights are the same
  bit for bit (``tests/test_multirun.py``); another thread count changes only the floating-point
  summation order. Small convolutional towers on a
  few CPU cores use one core per process better than several cores per step.

What it is not: distributed training of one run (that is ``torchrun``, see ``train.fit``). On CUDA
the runs stay in this process whatever ``workers`` says (one GPU is not shared by forked trainers).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import torch

__all__ = ["fit_runs", "prefill_augmentations", "prefill_captions"]

_SHARED: dict = {}  # what forked workers inherit: the config and the two pair datasets


def _draw_epoch(epoch: int) -> tuple:
    """One epoch's items as (uint8 array [n, ...], captions): sent back by value in one piece
    (torch tensors would each travel as a shared-memory file descriptor)."""
    ds = _SHARED["train"]
    ds.set_epoch(epoch)
    items = [ds[k] for k in range(len(ds))]
    return torch.stack([img for img, _ in items]).numpy(), [cap for _, cap in items]


def prefill_augmentations(train_ds, epochs: int, workers: int = 1) -> None:
    """Draw every training item of every epoch once (kept by the dataset for reuse); epochs are
    drawn in ``workers`` forked processes (an item depends only on its epoch and index)."""
    if not hasattr(train_ds, "keep_items"):
        return
    if workers <= 1:
        for epoch in range(epochs):
            train_ds.set_epoch(epoch)
            for k in range(len(train_ds)):
                train_ds[k]
    else:
        _SHARED["train"] = train_ds
        try:
            with multiprocessing.get_context("fork").Pool(min(workers, epochs), initializer=_init_worker,
                                                          initargs=(1,)) as pool:
                for epoch, (images, captions) in enumerate(pool.imap(_draw_epoch, range(epochs))):
                    train_ds.keep_items(epoch, list(zip(torch.from_numpy(images).unbind(0), captions)))
        finally:
            _SHARED.pop("train", None)
    train_ds.set_epoch(0)


def prefill_captions(train_ds, epochs: int) -> None:
    """Draw every training item's caption of every epoch once (``train_ds.caption``, no image), here
    in the parent, so that every forked run looks them up instead of drawing them again."""
    if not hasattr(train_ds, "caption"):
        return
    for epoch in range(epochs):
        train_ds.set_epoch(epoch)
        for k in range(len(train_ds)):
            train_ds.caption(k)
    train_ds.set_epoch(0)


def _init_worker(threads: int) -> None:
    """Each forked worker: ``threads`` torch threads, and its output to the process's real streams.

    A worker forked from a Jupyter kernel must not write through the kernel's output objects
    (``sys.stdout``/``sys.stderr`` and logging handlers bound to them, e.g. a weights-loading bar):
    they talk to the kernel's sockets, which a child shares with its parent.
    """
    import logging

    torch.set_num_threads(threads)
    real = {"stdout": sys.__stdout__, "stderr": sys.__stderr__}
    for name, stream in real.items():
        setattr(sys, name, stream if stream is not None else open(os.devnull, "w"))  # noqa: SIM115
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream not in (sys.__stdout__, sys.__stderr__):
                h.setStream(sys.stderr)
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # no notebook widgets (display messages) from a child
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _fit_one(job: tuple[str, int, str]) -> dict:
    from contextclip.train import fit

    method, seed, run_dir = job
    return fit(_SHARED["cfg"], method, seed, Path(run_dir), fresh=_SHARED["fresh"], train_ds=_SHARED["train"],
               val_ds=_SHARED["val"], progress=False)


def fit_runs(cfg, runs: list[tuple[str, int, Path]], train_ds, val_ds, workers: int = 1,
             progress: bool = True, fresh: bool = False) -> list[dict]:
    """Train (or resume, or reuse) each ``(method, seed, run_dir)``; their summaries, in order.
    ``fresh``: start every run again, as ``fit(..., fresh=True)``."""
    from contextclip.train import fit

    cuda = cfg.train.device in ("auto", "cuda") and torch.cuda.is_available()
    if workers <= 1 or len(runs) <= 1 or cuda:
        return [fit(cfg, m, s, Path(d), fresh=fresh, train_ds=train_ds, val_ds=val_ds, progress=progress)
                for m, s, d in runs]
    workers = min(int(workers), len(runs))
    from contextclip.train_caches import inputs_all_cached

    if inputs_all_cached(cfg):
        prefill_captions(train_ds, cfg.train.epochs)  # the steps read captions alone
    else:
        prefill_augmentations(train_ds, cfg.train.epochs, workers)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked children tokenise too
    _SHARED.update(cfg=cfg, train=train_ds, val=val_ds, fresh=fresh)
    threads = max(1, torch.get_num_threads() // workers)
    ctx = multiprocessing.get_context("fork")
    jobs = [(m, int(s), str(d)) for m, s, d in runs]
    out: list[dict] = []
    try:
        with ctx.Pool(workers, initializer=_init_worker, initargs=(threads,), maxtasksperchild=1) as pool:
            for summary in pool.imap(_fit_one, jobs):
                if progress:
                    print(f"{summary['method']} seed {summary['seed']}: {summary['epochs']} epochs, "
                          f"final val loss {summary.get('final_val_loss')}, {summary.get('seconds') or 0:.0f} s", flush=True)
                out.append(summary)
    finally:
        _SHARED.clear()
    return out
