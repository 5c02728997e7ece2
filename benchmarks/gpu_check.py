"""Paper-scale check on a GPU: ResNet-50 at 224 px + BERT-base (random), bf16, pairs/s, memory, eval time.

What it is: the body of ``benchmarks/gpu_check.sh`` (one prepared check of at most ~8 minutes
for an H100/H200-class card), in two parts.

Part 1, the model step alone. Both towers are built from their architectures with random
weights (torchvision ``resnet50(weights=None)``, ``transformers.BertModel(BertConfig())`` =
BERT-base), so nothing is downloaded; inputs are random uint8 images and random token ids of
``--seq-len`` tokens, kept on the device (the kit's data path: uint8 on the device, normalised
there). One step = the kit's ``ContextCLIPLoss`` (losses in fp32) on the two towers + linear
heads, backward, AdamW; bf16 autocast, channels_last, cudnn.benchmark. For each batch size:
warm-up, timed steps between two synchronisations, pairs/s and peak GPU memory; compared with
~3,300 pairs/s (realistic 1x H100, ../shared/reference/ecosystem-notes.md B3) and 22 pairs/s
(the reference code, B1). The last line printed is one JSON object (also saved to
``benchmarks/results/gpu_check.json`` unless ``--out``).

Part 2, the kit's own path (``kit`` in the JSON): the rehearsal fixtures at their real sizes
(``contextclip.data.rehearsal``, CC3M images 256 px on the short side) into a temporary folder,
then ``contextclip.train.fit`` on the CC3M copy with the ``paper_rehearsal`` profile at the paper's
224 px, ``image_tower: resnet50``, ``text_tower: bert_base_random`` (bert-base-uncased's shape,
random), ``precision: bf16`` (the model in channels_last, as ``fit`` does on CUDA), for each
``--kit-batches`` a fixed number of epochs over the pairs (steps = epochs x pairs / batch), data
decoded by ``--workers`` DataLoader workers: pairs/s of the training steps (``summary.json``) and
peak GPU memory. Then ``evaluate_runs(zero_shot)`` on the five Table 1 sets of the fixture: wall
time and images/s. The result goes to ``benchmarks/results/gpu_<card>.json``.

What it is not: a measure of a real run's accuracy (random towers, generated images).

``--cpu-smoke`` runs the same code with tiny sizes on the CPU (ResNet-50 at 32 px, a 2-layer
BERT, batch 4, 1 step, no warm-up; the kit part at 32 px with tiny_cnn + tiny_bert, small fixtures,
batch 8, 10 images per evaluation split)
so the script is tested without a GPU (tests/test_perf_equivalence.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save, sync  # noqa: E402

REALISTIC_H100_PAIRS_PER_S = 3300.0  # ecosystem-notes B3: both towers trainable, L = 32, plain PyTorch AMP
REFERENCE_CODE_PAIRS_PER_S = 22.0  # ecosystem-notes B1: the code the paper says it used (fp32)
PAPER_PAIR_STEPS = 6000 * 30  # 6K pairs x 30 epochs


class PaperScaleModel(nn.Module):
    def __init__(self, image_size: int, bert_layers: int, bert_hidden: int, embed_dim: int = 256):
        super().__init__()
        import torchvision
        from transformers import BertConfig, BertModel

        self.image = torchvision.models.resnet50(weights=None)
        self.image.fc = nn.Identity()
        heads = max(1, bert_hidden // 64)
        self.text = BertModel(BertConfig(hidden_size=bert_hidden, num_hidden_layers=bert_layers,
                                         num_attention_heads=heads, intermediate_size=4 * bert_hidden),
                              add_pooling_layer=False)
        self.image_head = nn.Linear(2048, embed_dim, bias=False)
        self.text_head = nn.Linear(bert_hidden, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1))

    def forward(self, images_uint8, ids, mask):
        x = (images_uint8.float().div_(255.0) - self.mean) / self.std
        x = x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x
        img = self.image_head(self.image(x))
        hidden = self.text(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        txt = self.text_head((hidden * m).sum(1) / m.sum(1).clamp_min(1.0))
        return img, txt, self.logit_scale.exp().clamp(max=100.0)


def measure(model, opt, loss_fn, batch: int, image_size: int, seq_len: int, steps: int, warmup: int,
            device: torch.device, autocast) -> dict:
    g = torch.Generator(device="cpu").manual_seed(batch)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=g).to(device)
    ids = torch.randint(1000, 30000, (batch, seq_len), generator=g).to(device)
    mask = torch.ones(batch, seq_len, dtype=torch.long, device=device)

    def step():
        with autocast():
            img, txt, scale = model(images, ids, mask)
        terms = loss_fn(img.float(), txt.float(), scale.float())  # losses in fp32
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return terms["loss"].detach()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    last = None
    for _ in range(steps):
        last = step()
    sync(device)
    dt = time.perf_counter() - t
    pps = steps * batch / dt
    return {
        "batch": batch, "steps": steps, "seconds": round(dt, 4), "pairs_per_s": round(pps, 1),
        "loss_finite": bool(torch.isfinite(last)),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "vs_realistic_h100": round(pps / REALISTIC_H100_PAIRS_PER_S, 3),
        "vs_reference_code": round(pps / REFERENCE_CODE_PAIRS_PER_S, 1),
        "paper_run_seconds_at_this_rate": round(PAPER_PAIR_STEPS / pps, 1),
    }


def card_slug(device: torch.device) -> str:
    """``nvidia_h200`` from "NVIDIA H200" (the result file's name); ``cpu_smoke`` on the CPU."""
    if device.type != "cuda":
        return "cpu_smoke"
    import re

    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


def kit_rehearsal(device: torch.device, batches: list[int], *, cpu_smoke: bool, epochs: int, pairs: int,
                  workers: int, work_dir: Path) -> dict:
    """Fixtures at real sizes -> ``fit`` per batch size -> zero-shot on the Table 1 sets (see the docstring)."""
    from contextclip.config import load_config
    from contextclip.data.rehearsal import RehearsalParams, make_rehearsal_tree
    from contextclip.evaluate import evaluate_runs
    from contextclip.runs import CHECKPOINT

    data_root = work_dir / "data"
    t = time.perf_counter()
    params = (RehearsalParams(per_class=1, birdsnap_per_class=3, cc3m_pairs=pairs, flickr_images=6, max_side=64)
              if cpu_smoke else RehearsalParams(per_class=3, birdsnap_per_class=3, cc3m_pairs=pairs))
    make_rehearsal_tree(data_root, params, log=lambda m: print(m, file=sys.stderr))
    fixture_s = time.perf_counter() - t
    over = {"data_root": str(data_root), "n_pairs": pairs, "val_fraction": 0.0, "epochs": epochs,
            "seeds": [0], "num_workers": workers, "log_every": 1000, "eval_max_images": 0}
    over.update({"image_size": 32, "image_tower": "tiny_cnn", "text_tower": "tiny_bert", "device": "cpu",
                 "precision": "fp32", "eval_max_images": 10} if cpu_smoke else
                {"image_size": 224, "image_tower": "resnet50", "text_tower": "bert_base_random", "device": "cuda",
                 "precision": "bf16"})
    rows, run_dir = [], None
    for b in batches:
        cfg = load_config("paper_rehearsal", {**over, "batch_size": b})
        run_dir = work_dir / "runs" / f"contextclip-seed0-b{b}"
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        try:
            from contextclip.train import fit

            s = fit(cfg, "contextclip", 0, run_dir, fresh=True, progress=False)
        except torch.OutOfMemoryError:
            rows.append({"batch": b, "error": "out of memory"})
            continue
        rows.append({"batch": b, "steps": s["steps"], "pairs_per_s": s["pairs_per_second"],
                     "train_seconds": s["train_seconds"], "wall_seconds": round(time.perf_counter() - t, 1),
                     "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                     if device.type == "cuda" else None})
        print(f"kit fit batch {b}: {rows[-1]}", file=sys.stderr)
    zs = None
    if run_dir is not None and (run_dir / CHECKPOINT).exists():
        sets = list(cfg.data.zero_shot_datasets)
        t = time.perf_counter()
        out = evaluate_runs([run_dir], "zero_shot", sets, work_dir / "results", cfg=cfg)
        secs = time.perf_counter() - t
        n_images = sum(int(r["n"]) for r in out if r["metric"] == "top1")
        zs = {"datasets": sets, "seconds": round(secs, 2), "test_images": n_images,
              "note": "every image of each set is encoded (all splits); top-1 is on the test split"}
    return {"fixture_seconds": round(fixture_s, 1), "fixture": asdict(params),
            "epochs": epochs, "pairs": pairs, "workers": workers, "rows": rows, "zero_shot": zs,
            "image_size": over["image_size"], "image_tower": over["image_tower"], "text_tower": over["text_tower"],
            "precision": over["precision"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (tests the script)")
    ap.add_argument("--batches", default="32,128,256", help="comma list of batch sizes")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=0.5, help="contextual weight (0 = CLIP)")
    ap.add_argument("--max-seconds", type=float, default=240.0, help="skip the remaining batch sizes after this")
    ap.add_argument("--out", default=None)
    ap.add_argument("--kit-batches", default="32,128", help="batch sizes of the kit part (0 or empty: skip it)")
    ap.add_argument("--kit-epochs", type=int, default=3, help="epochs over the CC3M copy per batch size")
    ap.add_argument("--kit-pairs", type=int, default=1024, help="CC3M pairs the fixture holds")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers of the kit part")
    ap.add_argument("--work-dir", default=None, help="where the fixtures and runs go (default: a temporary folder)")
    args = ap.parse_args(argv)

    from contextclip.losses import ContextCLIPLoss

    t_start = time.perf_counter()
    if args.cpu_smoke:
        device, image_size, layers, hidden = torch.device("cpu"), 32, 2, 128
        batches, steps, warmup = [4], 1, 0
        autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device visible; run with --cpu-smoke to test the script on the CPU")
        device, image_size, layers, hidden = torch.device("cuda"), 224, 12, 768
        batches, steps, warmup = [int(b) for b in args.batches.split(",")], args.steps, args.warmup
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model = PaperScaleModel(image_size, layers, hidden).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=1e-4,
                            **({"fused": True} if device.type == "cuda" else {}))
    loss_fn = ContextCLIPLoss(alpha=args.alpha)
    rows, skipped = [], []
    for b in batches:
        if time.perf_counter() - t_start > args.max_seconds:
            skipped.append(b)
            continue
        try:
            rows.append(measure(model, opt, loss_fn, b, image_size, args.seq_len, steps, warmup, device, autocast))
        except torch.OutOfMemoryError:
            skipped.append(b)
            torch.cuda.empty_cache()
            continue
        print(f"batch {b}: {rows[-1]['pairs_per_s']} pairs/s, peak {rows[-1]['peak_memory_gib']} GiB", file=sys.stderr)
    kit = None
    kit_batches = [int(b) for b in str(args.kit_batches).split(",") if b.strip() and int(b) > 0]
    if kit_batches:
        import tempfile

        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
        work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="gpu_check_"))
        if args.cpu_smoke:
            kit = kit_rehearsal(device, [8], cpu_smoke=True, epochs=1, pairs=24, workers=0, work_dir=work)
        else:
            kit = kit_rehearsal(device, kit_batches, cpu_smoke=False, epochs=args.kit_epochs, pairs=args.kit_pairs,
                                workers=args.workers, work_dir=work)
    best = max(rows, key=lambda r: r["pairs_per_s"]) if rows else None
    result = {
        "benchmark": "gpu_check", "cpu_smoke": args.cpu_smoke, "image_size": image_size, "bert_layers": layers,
        "bert_hidden": hidden, "seq_len": args.seq_len, "alpha": args.alpha,
        "precision": "fp32" if args.cpu_smoke else "bf16", "rows": rows, "skipped_batches": skipped,
        "best_pairs_per_s": best["pairs_per_s"] if best else None,
        "best_batch": best["batch"] if best else None,
        "realistic_h100_pairs_per_s": REALISTIC_H100_PAIRS_PER_S,
        "reference_code_pairs_per_s": REFERENCE_CODE_PAIRS_PER_S,
        "kit": kit, "wall_seconds": round(time.perf_counter() - t_start, 1), "machine": machine(device),
    }
    save(f"gpu_{card_slug(device)}", result, args.out)
    return result


if __name__ == "__main__":
    main()
