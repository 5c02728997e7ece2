"""Known-answer fake encoders and in-test datasets for the evaluation tests (no real model needed).

Images are uint8 [N, 3, 8, 8]; pixel [0, 0, 0] stores the label, the rest is a class pattern plus
noise. ``PerfectEncoder`` reads the label pixel (so it is always right), ``ConstantEncoder`` maps
everything to one vector (so it scores chance), ``TinyModel`` is a small trainable model for the
fine-tuning tests. All count how often they encode, for the caching tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Text(nn.Module):
    """Fake tokenizer: input_ids index into the list of texts seen so far."""

    def __init__(self, classnames, dim):
        super().__init__()
        self.classnames = list(classnames)
        self.dim = dim
        self._texts: list[str] = []
        self.text_calls = 0
        self.image_calls = 0

    def tokenize(self, captions):
        start = len(self._texts)
        self._texts.extend(captions)
        ids = torch.arange(start, start + len(captions)).unsqueeze(1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def text_vector(self, text: str) -> torch.Tensor:
        # the class whose name appears in the text (longest match), plus a small text-specific wiggle
        hits = [i for i, c in enumerate(self.classnames) if c in text]
        v = torch.zeros(self.dim)
        if hits:
            v[max(hits, key=lambda i: len(self.classnames[i]))] = 1.0
        g = torch.Generator().manual_seed(sum(map(ord, text)) % 10_000)
        return v + 0.05 * torch.randn(self.dim, generator=g)

    def embed_texts(self, texts):
        return torch.stack([self.text_vector(t) for t in texts])

    def encode_text(self, input_ids, attention_mask):
        self.text_calls += 1
        return F.normalize(self.embed_texts([self._texts[i] for i in input_ids[:, 0].tolist()]), dim=-1)


class PerfectEncoder(_Text):
    def __init__(self, classnames, dim=None):
        super().__init__(classnames, dim or max(len(classnames), 4))

    def image_features(self, images):
        return F.one_hot(images[:, 0, 0, 0].long(), self.dim).float()

    def encode_image(self, images):
        self.image_calls += 1
        return F.normalize(self.image_features(images), dim=-1)


class ConstantEncoder(_Text):
    def __init__(self, dim=8):
        super().__init__([], dim)

    def image_features(self, images):
        return torch.ones(len(images), self.dim)

    def encode_image(self, images):
        self.image_calls += 1
        return F.normalize(torch.ones(len(images), self.dim), dim=-1)

    def encode_text(self, input_ids, attention_mask):
        self.text_calls += 1
        return F.normalize(torch.ones(len(input_ids), self.dim), dim=-1)


class TinyModel(_Text):
    """Linear image tower + linear head; text = class one-hot (fixed)."""

    def __init__(self, classnames, feat=16, seed=0):
        super().__init__(classnames, len(classnames) + 2)
        torch.manual_seed(seed)
        self.tower = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, feat), nn.ReLU())
        self.head = nn.Linear(feat, self.dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def image_features(self, images):
        return self.tower(images.float() / 255.0)

    def encode_image(self, images):
        self.image_calls += 1
        return F.normalize(self.head(self.image_features(images)), dim=-1)

    def clamped_logit_scale(self):
        return self.logit_scale.exp().clamp(max=100.0)


@dataclass
class ClassSet:
    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classnames: list
    templates: list
    splits: dict | None = None

    @classmethod
    def make(cls, n_per_class=10, n_classes=4, seed=0, name="fake", splits=None, noise=60):
        g = torch.Generator().manual_seed(seed)
        patterns = torch.randint(0, 256, (n_classes, 3, 8, 8), generator=g).float()
        labels = torch.arange(n_classes).repeat_interleave(n_per_class)
        imgs = patterns[labels] + noise * torch.randn(len(labels), 3, 8, 8, generator=g)
        imgs = imgs.clamp(0, 255).to(torch.uint8)
        imgs[:, 0, 0, 0] = labels.to(torch.uint8)
        names = [f"class{i}x" for i in range(n_classes)]
        return cls(name, imgs, labels, names, ["a photo of a {}.", "a sketch of a {}."], splits)


@dataclass
class CapSet:
    name: str
    images: torch.Tensor
    captions: list

    @classmethod
    def make(cls, n_images=12, per_image=3):
        base = ClassSet.make(n_per_class=1, n_classes=n_images)
        caps = [[f"{c} variant {j}" for j in range(per_image)] for c in base.classnames]
        return cls("fakecaps", base.images, caps), base.classnames


def fake_run_with_cache(tmp_path):
    """A run folder ``clip-seed0`` (config, a placeholder checkpoint) whose embeddings of a 4-class fake set
    are cached by ``embed_dataset``: ``(run, cfg, dataset, model, first embeddings)``."""
    from contextclip.config import Config, save_config
    from contextclip.evaluate import embed_dataset

    run = tmp_path / "clip-seed0"
    run.mkdir()
    cfg = Config().updated({"batch_size": 16})
    save_config(cfg, run / "config.json")
    (run / "checkpoint.pt").write_bytes(b"weights")
    ds = ClassSet.make(n_per_class=5, n_classes=4)
    model = PerfectEncoder(ds.classnames)
    return run, cfg, ds, model, embed_dataset(run, "fake", cfg, model=model, dataset=ds)
