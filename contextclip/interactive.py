"""Your own caption: rank a caption set's images for a typed caption with two trained runs, and score one image.

What it is (the logic behind notebook 06's caption box):
- ``caption_box_runs(profile, seed)``: which trained runs the box uses: on ``smoke``, the
  ``embedded`` runs when both checkpoints are present (trained models make the box worth typing
  into), else the smoke runs; on any other profile, that profile's runs.
- ``CaptionExplorer(runs)``: loads each run's model once and reads the cached embeddings of its
  caption set and of one classification set (computed there if missing, ``evaluate.embed_dataset``).
  ``explorer.query(caption, k, image_index)`` encodes the caption with every model, ranks the
  caption set's images by cosine similarity (``retrieval.topk_images``) and gives each model's
  zero-shot class probabilities for image ``image_index`` of the classification set: a softmax,
  at the model's learned temperature, over the same class embeddings as Table 1
  (``zeroshot.class_embeddings``). Returns a ``CaptionQuery``.
- ``query_caption(runs, caption, k)``: the same, with the explorer kept between calls;
  ``explorer_for(cfg)``: the explorer a notebook of profile ``cfg.profile`` uses.
- ``caption_box(explorer, example, k)``: the ipywidgets of the box (a text field, a button, the
  figure as an image) and its callback; ``notebooks/06_retrieval.py`` only displays them.

Correct images: a typed caption is free text, so nothing is framed, unless it is word for word a
caption of the set, whose positives (``plots.grid_positives``: the attribute-matched ones for
generated sets) are then framed and counted. The figure is ``plots.caption_query_figure``.

What it is not: no metric is computed or written here; nothing is trained.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from contextclip.config import METHOD_LABELS, Config, load_config
from contextclip.encoding import encode_texts, take_images
from contextclip.errors import MissingFileError
from contextclip.evaluate import embed_dataset, run_config
from contextclip.layout import paths_for
from contextclip.retrieval import topk_images
from contextclip.runs import CHECKPOINT, CONFIG, load_trained

__all__ = ["CaptionQuery", "CaptionExplorer", "caption_box_runs", "explorer_for", "query_caption", "caption_box",
           "EXAMPLE_CAPTION"]

#: The caption the box shows before anyone types (a caption of the generated retrieval set).
EXAMPLE_CAPTION = "an italic number three"
METHODS_SHOWN = ("clip", "contextclip")


@dataclass
class CaptionQuery:
    """What a typed caption retrieves (per method) and one image's zero-shot class scores (per method)."""

    caption: str
    dataset: str  # the caption set searched
    k: int
    topk: dict[str, torch.Tensor]  # method -> LongTensor [k]: image indices into the caption set, best first
    similarity: dict[str, torch.Tensor]  # method -> [k] cosine similarity of caption and image
    top_images: dict[str, torch.Tensor]  # method -> uint8 [k, 3, H, W]
    positives: torch.Tensor | None  # bool [n_images] when the caption is one of the set's, else None
    class_dataset: str
    image_index: int
    image: torch.Tensor  # uint8 [3, H, W]: the classification set's image that is scored
    true_label: int
    classnames: list[str]
    class_probs: dict[str, torch.Tensor]  # method -> [C] softmax over the class prompts
    profile: str = ""  # the profile of the runs used
    runs: dict[str, str] = field(default_factory=dict)

    def n_correct(self, method: str) -> int | None:
        """How many of ``method``'s top k are correct images (None for free text)."""
        if self.positives is None:
            return None
        return int(self.positives[self.topk[method]].sum())


def caption_box_runs(profile: str = "smoke", seed: int | None = None, root: Path | None = None,
                     own_seeds=None) -> dict[str, Path]:
    """``{"clip": run_dir, "contextclip": run_dir}`` for the caption box (see the module docstring).

    ``seed``: the runs' seed (None: the first seed of the profile whose runs are used; ``own_seeds``,
    the notebook's, for its own profile, which may be a YAML file rather than a named profile).
    Raises ``FileNotFoundError`` naming the training notebook when no such runs are trained.
    """
    candidates = ["embedded", "smoke"] if profile == "smoke" else [profile]
    tried = []
    for name in candidates:
        if seed is not None:
            s = int(seed)
        elif name == profile and own_seeds:
            s = int(list(own_seeds)[0])
        else:
            s = load_config(name).train.seeds[0]
        paths = paths_for(name, root)
        runs = {m: paths.run_dir(m, s) for m in METHODS_SHOWN}
        if all((r / CHECKPOINT).exists() and (r / CONFIG).exists() for r in runs.values()):
            return runs
        tried.append(", ".join(str(r / CHECKPOINT) for r in runs.values()))
    raise MissingFileError(f"no trained runs for the caption box (looked for {'; '.join(tried)}); "
                           f"run 02_train.ipynb with profile = {profile!r} first")


class CaptionExplorer:
    """Loaded models and cached embeddings of two (or more) runs, for repeated caption queries.

    ``runs``: ``{method: run_dir}``; ``cfg``: the config whose datasets are used (default: the
    first run's ``config.json``); ``class_dataset``: the classification set whose image is scored
    (default: the config's ``tsne_dataset``, digits in every profile).
    """

    def __init__(self, runs: dict, cfg: Config | None = None, class_dataset: str | None = None):
        from contextclip.data.registry import get_dataset

        if not runs:
            raise ValueError("no runs given; pass {'clip': run_dir, 'contextclip': run_dir}")
        self.runs = {m: Path(r) for m, r in runs.items()}
        self.cfg = cfg or run_config(next(iter(self.runs.values())))
        self.dataset = self.cfg.data.retrieval_dataset
        self.class_dataset = class_dataset or self.cfg.data.tsne_dataset
        self.models, self.caption_caches, self.class_caches = {}, {}, {}
        captions = get_dataset(self.dataset, self.cfg, split="test")
        classes = get_dataset(self.class_dataset, self.cfg, split="all")
        self.images, self.class_images = captions.images, classes.images
        for method, run in self.runs.items():
            model, _ = load_trained(run)
            self.models[method] = model
            self.caption_caches[method] = embed_dataset(run, self.dataset, self.cfg, model=model, dataset=captions)
            self.class_caches[method] = embed_dataset(run, self.class_dataset, self.cfg, model=model, dataset=classes)
        first = next(iter(self.caption_caches.values()))
        self.captions = [str(c) for c in first["captions"]]
        from contextclip.plots import grid_positives

        self._positives = grid_positives(first)  # [n_captions, n_images]
        self.n_images = int(first["image"].shape[0])
        self.n_class_images = int(next(iter(self.class_caches.values()))["image"].shape[0])

    def positives_of(self, caption: str) -> torch.Tensor | None:
        """Bool [n_images]: the correct images of a caption of the set (typed word for word, case and
        spacing ignored); None for any other text."""
        norm = " ".join(caption.lower().split())
        rows = [i for i, c in enumerate(self.captions) if " ".join(c.lower().split()) == norm]
        return self._positives[rows].any(dim=0) if rows else None

    def query(self, caption: str, k: int = 5, image_index: int = 0) -> CaptionQuery:
        """Top-``k`` images of every run for ``caption``, and image ``image_index``'s class scores."""
        caption = str(caption).strip()
        if not caption:
            raise ValueError("type a caption first (an empty caption ranks nothing)")
        if not 1 <= int(k) <= self.n_images:
            raise ValueError(f"k = {k}: choose between 1 and {self.n_images} (the images of {self.dataset})")
        if not 0 <= int(image_index) < self.n_class_images:
            raise ValueError(f"image_index = {image_index}: {self.class_dataset} has images 0 to "
                             f"{self.n_class_images - 1}")
        k, image_index = int(k), int(image_index)
        topk, sims, tops, probs = {}, {}, {}, {}
        for method, model in self.models.items():
            text = encode_texts(model, [caption])  # [1, D], normalised
            cache = self.caption_caches[method]
            index = torch.as_tensor(cache["index"])
            order = topk_images(text, cache["image"], k)[0]  # rows of the cache, best first
            topk[method] = index[order]
            sims[method] = (text.float() @ cache["image"][order].float().T)[0]
            tops[method] = take_images(self.images, topk[method].tolist())
            cc = self.class_caches[method]
            with torch.no_grad():
                scale = float(model.clamped_logit_scale()) if hasattr(model, "clamped_logit_scale") else 1.0
            logits = scale * cc["image"][image_index].float() @ cc["class_emb"].float().T  # Table 1's classifier
            probs[method] = torch.softmax(logits, dim=-1)
        cc = next(iter(self.class_caches.values()))
        return CaptionQuery(
            caption=caption, dataset=self.dataset, k=k, topk=topk, similarity=sims, top_images=tops,
            positives=self.positives_of(caption), class_dataset=self.class_dataset, image_index=image_index,
            image=take_images(self.class_images, [image_index])[0], true_label=int(cc["labels"][image_index]),
            classnames=list(cc["classnames"]), class_probs=probs, profile=self.cfg.profile,
            runs={m: str(r) for m, r in self.runs.items()})


def explorer_for(cfg: Config, root: Path | None = None) -> CaptionExplorer:
    """The caption box's explorer for a notebook's config: the runs of ``caption_box_runs(cfg.profile)``;
    the notebook's datasets when they are its own profile's runs, else the runs' own config's."""
    runs = caption_box_runs(cfg.profile, root=root, own_seeds=cfg.train.seeds)
    own = all(Path(r).parent == paths_for(cfg.profile, root).runs for r in runs.values())
    return CaptionExplorer(runs, cfg=cfg if own else None)


_EXPLORERS: dict[tuple, CaptionExplorer] = {}


def _explorer_key(runs: dict) -> tuple:
    """Runs and their checkpoints' sizes and times: a retrained run gets a new explorer."""
    key = []
    for method, run in sorted(runs.items()):
        st = (Path(run) / CHECKPOINT).stat()
        key.append((method, str(Path(run).resolve()), st.st_size, st.st_mtime_ns))
    return tuple(key)


def query_caption(runs: dict, caption: str, k: int = 5, image_index: int = 0,
                  class_dataset: str | None = None) -> CaptionQuery:
    """``CaptionExplorer(runs).query(caption, k, image_index)``, loading each run once per process."""
    key = _explorer_key(runs) + (class_dataset,)
    if key not in _EXPLORERS:
        _EXPLORERS[key] = CaptionExplorer(runs, class_dataset=class_dataset)
    return _EXPLORERS[key].query(caption, k, image_index)


def figure_png(fig) -> bytes:
    """The figure as PNG bytes (what the box's image widget shows), and the figure closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def caption_box(explorer: CaptionExplorer, example: str = EXAMPLE_CAPTION, k: int = 5, image_index: int = 0):
    """``(box, search)``: the caption box's widgets and the callback that fills them.

    ``box`` is a VBox: a text field (Enter searches), a "Search" button, a number field for the
    scored image, a status line and the figure as an ``ipywidgets.Image``. ``search()`` reads the
    fields, runs the query and replaces the image; the button, Enter and the number field call it
    when the caption or the number differ from what is drawn. It runs once for ``example`` before
    the box is returned, so the box never opens empty. A bad input (an empty caption, an image
    number out of range) shows its message in the status line and keeps the last figure.
    """
    import ipywidgets as widgets

    from contextclip.plots import caption_query_figure

    text = widgets.Text(value=example, placeholder="type a caption, then Enter", description="caption",
                        continuous_update=False, layout=widgets.Layout(width="60%"))
    button = widgets.Button(description="Search", button_style="primary", icon="search")
    number = widgets.BoundedIntText(value=image_index, min=0, max=explorer.n_class_images - 1,
                                    description=f"{explorer.class_dataset} image", continuous_update=False,
                                    style={"description_width": "initial"}, layout=widgets.Layout(width="260px"))
    status = widgets.HTML()
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

    shown = {"key": None}  # the (caption, image number) drawn last

    def search(*_):
        try:
            result = explorer.query(text.value, k, number.value)
        except ValueError as exc:
            status.value = f"<b>{exc}</b>"
            return None
        image.value = figure_png(caption_query_figure(result))
        shown["key"] = (result.caption, number.value)
        found = "; ".join(f"{METHOD_LABELS.get(m, m)}: {n} correct in top {k}" for m in result.topk
                          if (n := result.n_correct(m)) is not None)
        status.value = (f"Top {k} of {explorer.n_images} {explorer.dataset} images for <i>{result.caption}</i> "
                        f"({result.profile} runs)" + (f"; {found}" if found else "; your own words: "
                                                      "nothing is framed (no attributes known)"))
        return result

    def on_event(*_):  # typing then clicking commits the text (leaving the field) and clicks: draw once
        if (text.value.strip(), number.value) != shown["key"]:
            search()

    button.on_click(on_event)
    text.observe(on_event, names="value")  # Enter (or leaving the field) commits the value
    number.observe(on_event, names="value")
    search()
    box = widgets.VBox([widgets.HBox([text, button, number]), status, image])
    return box, search
