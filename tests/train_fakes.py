"""A tiny in-test pair dataset for the model and training tests: coloured squares.

Item = (uint8 image [3, S, S], caption str), as contextclip.data's pair datasets give. Each of
the pairs is a distinct (square colour, background colour, size) combination that a small CNN
with global pooling can tell apart, so image <-> caption retrieval on the set has one right
answer per image. ``set_epoch`` records the calls (the training loop must make them).
"""

from __future__ import annotations

import torch

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (230, 220, 40),
           "white": (250, 250, 250), "purple": (150, 40, 200), "orange": (250, 140, 20), "cyan": (30, 220, 220)}
BACKGROUNDS = {"black": (10, 10, 10), "grey": (128, 128, 128), "brown": (110, 70, 30), "pink": (250, 170, 200)}
SIZES = {"small": 0.25, "medium": 0.5, "large": 0.75}


class SquaresPairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 64, size: int = 32, offset: int = 0):
        combos = [(c, b, z) for z in SIZES for b in BACKGROUNDS for c in COLOURS]
        if n + offset > len(combos):
            raise ValueError(f"at most {len(combos)} distinct squares")
        self.items = combos[offset:offset + n]
        self.size = size
        self.epochs_seen: list[int] = []
        self.captions = [f"a {z} {c} square on a {b} background" for c, b, z in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __getitem__(self, i: int):
        colour, bg, z = self.items[i]
        s = self.size
        img = torch.tensor(BACKGROUNDS[bg], dtype=torch.uint8).view(3, 1, 1).repeat(1, s, s)
        side = max(2, round(SIZES[z] * s))
        a = (s - side) // 2
        img[:, a:a + side, a:a + side] = torch.tensor(COLOURS[colour], dtype=torch.uint8).view(3, 1, 1)
        return img, self.captions[i]


def smoke_cfg(**over):
    """The smoke profile on the CPU with per-step checks and equal learning rates, plus ``over``."""
    from contextclip.config import load_config

    base = {"log_every": 1, "device": "cpu", "lr_image": 1e-3, "lr_text": 1e-3, "lr_head": 1e-3}
    return load_config("smoke", {**base, **over})


def checkpoint_state(run_dir):
    """The model state dict saved in ``run_dir/checkpoint.pt`` (weights_only loading)."""
    from pathlib import Path

    return torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def poisoned_loss(cfg, method: str, at: int):
    """``method``'s training loss, except that its ``at``-th call (1-based) gives a NaN contrastive
    term; pass it to ``fit(..., loss_fn=...)``."""
    from contextclip.train import make_loss

    loss = make_loss(cfg.for_method(method))
    calls = {"n": 0}

    def forward(img, txt, scale):
        out = loss(img, txt, scale)
        calls["n"] += 1
        if calls["n"] == at:
            out = {**out, "contrastive_loss": out["contrastive_loss"] * float("nan")}
            out["loss"] = out["contrastive_loss"] + out["contextual_loss"]
        return out

    return forward


def rehearsal_tree(tmp_path_factory, params):
    """A rehearsal fixture tree (``data make-rehearsal``) of ``params`` in a fresh temporary folder."""
    from contextclip.data.rehearsal import make_rehearsal_tree

    root = tmp_path_factory.mktemp("rehearsal")
    make_rehearsal_tree(root, params, log=lambda m: None)
    return root
