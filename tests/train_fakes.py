"""A tiny in-test pair dataset for the model and training tests: coloured squares on a grid.

Item = (uint8 image [3, S, S], caption str), as contextclip.data's pair datasets give. Each of
the ``n`` pairs is a distinct (colour, row, column) combination, so image -> caption retrieval
on the training set has one right answer per image. Optional ``set_epoch`` records the calls.
"""

from __future__ import annotations

import torch

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (230, 220, 40),
           "white": (250, 250, 250), "purple": (150, 40, 200), "orange": (250, 140, 20), "cyan": (30, 220, 220)}
ROWS = ("top", "upper", "lower", "bottom")
COLS = ("far left", "left", "right", "far right")


class SquaresPairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 64, size: int = 32, offset: int = 0):
        combos = [(c, r, k) for c in COLOURS for r in range(4) for k in range(4)]
        if n + offset > len(combos):
            raise ValueError(f"at most {len(combos)} distinct squares")
        self.items = combos[offset:offset + n]
        self.size = size
        self.epochs_seen: list[int] = []
        self.captions = [f"a {c} square in the {ROWS[r]} row, {COLS[k]}" for c, r, k in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __getitem__(self, i: int):
        colour, r, k = self.items[i]
        s = self.size
        cell = s // 4
        img = torch.full((3, s, s), 20, dtype=torch.uint8)
        img[:, r * cell:(r + 1) * cell, k * cell:(k + 1) * cell] = torch.tensor(COLOURS[colour], dtype=torch.uint8).view(3, 1, 1)
        return img, self.captions[i]
