"""Steady-state training throughput: a bare PyTorch loop vs the kit's step, CLIP vs ContextCLIP.

What it is: a hand-run benchmark (never a timed test). For ``--profile P`` it builds the
profile's towers and training batches (the kit's datasets, augmentation and collator, collated
once before timing so that every variant gets the same inputs) and times

  (a) ``bare``        a plain PyTorch loop written here: uint8 -> float normalisation, the image
                      tower, the text tower (or the frozen tower's cached features, as the kit
                      uses them), two linear/MLP heads, CLIP's loss written out, Adam;
  (b) ``clip``        the kit's ``contextclip.train.train_step`` with alpha = 0;
  (c) ``contextclip`` the same with the profile's alpha (the contextual term on).

Each variant is warmed up, then the variants are timed in many short interleaved rounds
(``--rounds``, each running every variant for ``--steps`` optimiser steps, in a fresh random
order per round so that no variant always follows another), so that machine noise (other jobs
on a shared box) hits all of them alike. A ratio is computed per round (b / a and c / b measured
seconds apart) and reported as the median over rounds with its quartiles, its relative spread and
the ratio of the fastest rounds (other jobs only ever add time); when the spread is wider than
``--max-spread`` or the two estimates disagree, the script warns that the ratio is not to be
trusted and says so in the JSON (``trusted: false``). Pairs per second = steps x batch / median
seconds of a round. ``--threads 1,2`` also times (b) at each
torch thread count, interleaved the same way. The data pipeline (augmentation + collation, the
kit's DataLoader) is timed separately as ``loader_pairs_per_s``.

What it is not: a measure of the data pipeline inside the step (inputs are pre-collated, the
same for all variants) or of evaluation (``benchmarks/eval.py``).

The last printed line is one JSON object (also saved to
``benchmarks/results/train_step_<profile>.json``) with ``bare_pairs_per_s``, ``clip_pairs_per_s``,
``contextclip_pairs_per_s``, ``trainer_vs_bare`` (b / a) and ``contextual_overhead``
(step time c / step time b), each with its ``*_spread`` summary (quartiles, relative spread,
fastest-round ratio, ``trusted``), and the load average before and after.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_step.py --profile embedded
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, ratio_summary, save, sync  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bare_step(model, opt, images, text_in, scale_param, max_scale: float, lam: float, autocast) -> torch.Tensor:
    """(a): one step of a plain CLIP loop on ``model``'s towers and heads, nothing of the kit's loop."""
    dev = scale_param.device
    mean, std = model.pixel_mean, model.pixel_std
    with autocast():
        x = (images.to(dev, non_blocking=True).float().div_(255.0) - mean) / std
        x = x.contiguous(memory_format=torch.channels_last)  # the layout of the kit's towers
        img_f = model.image_tower(x)
        if isinstance(text_in, torch.Tensor):  # a frozen text tower's cached features
            txt_f = text_in
        else:
            ids, mask = (t.to(dev, non_blocking=True) for t in text_in)
            hidden = model.text_tower(input_ids=ids, attention_mask=mask).last_hidden_state
            if model.pooling == "cls":
                txt_f = hidden[:, 0]
            else:
                m = mask.unsqueeze(-1).to(hidden.dtype)
                txt_f = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        ie, te = model.image_head(img_f), model.text_head(txt_f)
    ie, te = F.normalize(ie.float(), dim=-1), F.normalize(te.float(), dim=-1)
    logits = scale_param.exp().clamp(max=max_scale) * ie @ te.t()
    target = torch.arange(len(ie), device=dev)
    loss = lam * F.cross_entropy(logits, target) + (1 - lam) * F.cross_entropy(logits.t(), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--rounds", type=int, default=21, help="interleaved rounds (more rounds: a tighter spread)")
    ap.add_argument("--steps", type=int, default=2, help="optimiser steps per variant per round")
    ap.add_argument("--max-spread", type=float, default=0.10,
                    help="warn when a ratio's interquartile range over rounds exceeds this share of it")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--num-threads", type=int, default=0,
                    help="torch threads for (a), (b), (c); 0 = leave torch's default (one per core)")
    ap.add_argument("--threads", default="", help="comma list of torch thread counts to compare for (b)")
    ap.add_argument("--loader-batches", type=int, default=5)
    ap.add_argument("--out", default=None, help="result JSON path (default benchmarks/results/train_step_<profile>.json)")
    args = ap.parse_args(argv)

    from contextclip import distributed as D
    from contextclip import runs as R
    from contextclip import train as T
    from contextclip.config import load_config, parse_override
    from contextclip.data import PairCollator, build_pair_datasets
    from contextclip.model import to_device
    from contextclip.train_caches import cached_caption_features, loader

    overrides = dict(parse_override(s) for s in args.set)
    base = load_config(args.profile, overrides)
    device = D.init_distributed(base.train.device).device
    cfg_clip, cfg_cx = base.for_method("clip"), base.for_method("contextclip")
    autocast = T.autocast_factory(device, base.train.precision)
    B = base.train.batch_size

    train_ds, _ = build_pair_datasets(base, seed=0)
    n_batches = max(args.steps, 1)
    batches_idx = T.epoch_batches(len(train_ds), B, 0, 0)[:n_batches]

    def build(cfg):
        R.seed_everything(0)
        m = to_device(T.build_model(cfg), device)  # as fit does
        m.train()
        return m

    models = {"bare": build(cfg_clip), "clip": build(cfg_clip), "contextclip": build(cfg_cx)}
    ref = models["clip"]
    collate = PairCollator(ref.tokenizer, base.model.max_length)

    # the data pipeline alone (augmentation + collation in the kit's DataLoader)
    loader_idx = T.epoch_batches(len(train_ds), B, 0, 1)[:args.loader_batches]
    t = time.perf_counter()
    batches = [b for b in loader(train_ds, loader_idx, collate, base, device, 0)]
    loader_pps = len(loader_idx) * B / (time.perf_counter() - t)
    batches = [collate([train_ds[i] for i in idx]) for idx in batches_idx]

    use_text_cache = base.train.cache_frozen_features and ref.freeze_text
    text_cache = None
    if use_text_cache:
        text_cache = cached_caption_features(ref, R.dataset_captions(train_ds), autocast, base, device)
    use_img_cache = base.train.cache_frozen_features and ref.freeze_image and not base.data.augment
    img_cache = None
    if use_img_cache:
        img_cache = T.FrozenFeatureCache.for_images(ref, train_ds, collate, base, autocast)

    # (a) inputs: the same batches; cached features looked up once, before timing
    bare_inputs = []
    for b in batches:
        text_in = text_cache.lookup(b["captions"]) if text_cache is not None else (b["input_ids"], b["attention_mask"])
        bare_inputs.append((b["images"], text_in))
    bare = models["bare"]
    bare_opt = torch.optim.Adam([p for p in bare.parameters() if p.requires_grad], lr=base.train.lr_head,
                                weight_decay=base.train.weight_decay)
    if use_img_cache:
        print("note: the profile caches frozen image features; the bare loop still runs the image tower",
              file=sys.stderr)

    kit = {}
    for name, cfg in (("clip", cfg_clip), ("contextclip", cfg_cx)):
        m = models[name]
        opt = T.make_optimizer(m, cfg)
        kit[name] = (m, T.make_loss(cfg), opt, T.make_scheduler(opt, cfg, 10**6), cfg)

    def run_bare(k: int):
        last = None
        for i in range(k):
            images, text_in = bare_inputs[i % len(bare_inputs)]
            last = bare_step(bare, bare_opt, images, text_in, bare.logit_scale, bare.max_logit_scale,
                             base.loss.image_to_text_weight, autocast)
        return last

    def run_kit(name: str):
        m, loss_fn, opt, sched, cfg = kit[name]
        parts = T.StepParts(m, loss_fn, opt, autocast, sched, cfg.train.grad_clip,
                            caches=T.FrozenCaches(text_cache, img_cache))

        def go(k: int):
            out = None
            for i in range(k):
                out = T.train_step(parts, batches[i % len(batches)], batches_idx[i % len(batches)])
            return out["finite"]
        return go

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    threads0 = torch.get_num_threads()
    variants = [("bare", run_bare, threads0), ("clip", run_kit("clip"), threads0),
                ("contextclip", run_kit("contextclip"), threads0)]
    for n in [int(x) for x in args.threads.split(",") if x.strip()]:
        variants.append((f"clip@{n}threads", run_kit("clip"), n))

    for _name, fn, n in variants:  # warm-up (allocator, oneDNN/cuDNN kernel choice, caches)
        torch.set_num_threads(n)
        fn(args.warmup)
        sync(device)
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    order_rng = random.Random(0)
    for r in range(args.rounds):
        for name, fn, n in order_rng.sample(variants, len(variants)):
            torch.set_num_threads(n)
            sync(device)
            t = time.perf_counter()
            flag = fn(args.steps)
            bool(flag)  # one host sync per round (the kit's loop syncs every log_every steps)
            sync(device)
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {args.steps * B / v[-1]:.1f}" for k, v in times.items())
              + " pairs/s", file=sys.stderr)
    torch.set_num_threads(threads0)

    pps = {k: args.steps * B / median(v) for k, v in times.items()}
    step_s = {k: median(v) / args.steps for k, v in times.items()}
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    trainer = ratio_summary(times["clip"], times["bare"], args.max_spread)
    overhead = ratio_summary(times["contextclip"], times["clip"], args.max_spread)
    result = {
        "benchmark": "train_step", "profile": args.profile, "overrides": overrides, "batch_size": B,
        "rounds": args.rounds, "steps_per_round": args.steps, "warmup_steps": args.warmup,
        "image_tower": base.model.image_tower, "text_tower": base.model.text_tower,
        "image_size": base.data.image_size, "precision": "bf16" if autocast is not contextlib.nullcontext else "fp32",
        "text_features_cached": text_cache is not None, "image_features_cached": img_cache is not None,
        "bare_pairs_per_s": round(pps["bare"], 2), "clip_pairs_per_s": round(pps["clip"], 2),
        "contextclip_pairs_per_s": round(pps["contextclip"], 2),
        "trainer_vs_bare": trainer["median"], "trainer_vs_bare_spread": trainer,
        "contextual_overhead": overhead["median"], "contextual_overhead_spread": overhead,
        "trusted": trainer["trusted"] and overhead["trusted"],
        "load_average_before": [round(x, 2) for x in load_before] if load_before else None,
        "load_average_after": [round(x, 2) for x in load_after] if load_after else None,
        "step_seconds": {k: round(v, 5) for k, v in step_s.items()},
        "round_seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "torch_threads": threads0, "loader_pairs_per_s": round(loader_pps, 1), "loader_workers": base.train.num_workers,
        **{f"pairs_per_s_{k.split('@')[1]}": round(v, 2) for k, v in pps.items() if "@" in k},
        "machine": machine(device),
    }
    print(f"{'variant':<22}{'pairs/s':>10}{'s/step':>10}")
    for k in pps:
        print(f"{k:<22}{pps[k]:>10.1f}{step_s[k]:>10.4f}")
    for label, r in (("trainer_vs_bare", trainer), ("contextual_overhead", overhead)):
        print(f"{label} {r['median']:.3f} (rounds' quartiles {r['q25']:.3f}-{r['q75']:.3f}, spread "
              f"{100 * r['relative_spread']:.1f}%, fastest rounds {r['min_based']:.3f}, {r['rounds']} rounds)")
    print(f"loader {loader_pps:.0f} pairs/s")
    if not result["trusted"]:
        print(f"WARNING: a ratio's spread over rounds is wider than {100 * args.max_spread:.0f}% or its median and "
              f"fastest-round estimates disagree (load average {result['load_average_before']} -> "
              f"{result['load_average_after']} on {os.cpu_count()} cores): the machine is too busy for these "
              "ratios to be trusted; rerun on a quiet machine or with more --rounds", file=sys.stderr)
    save(f"train_step_{args.profile}", result, args.out)
    return result


if __name__ == "__main__":
    main()
