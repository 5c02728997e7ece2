"""The embedded pretraining corpus: rendered scenes with true, varied captions, deterministic by seed.

A *scene spec* is a JSON-able dict that says everything about one image: background, objects
(digits, letters or shapes, each with colour, size, font, stroke, angle and position) and, for
two-object scenes, their spatial relation. ``render`` turns a spec into a ``uint8 [H, W, 3]``
array at any size (drawn at a supersampled size with PIL, then box-downsampled);
``describe`` turns a spec into several captions, every one of them true of the image
(checked by ``tests/test_data_synthetic.py`` with the spec and the pixels).

What it generates (fractions are ``CorpusParams`` fields):
- digits 0-9 in 22 font styles of matplotlib's bundled fonts; 40% of them "MNIST style" (white,
  thick, centred on black, the look of the real digits the kit is evaluated on), the rest in
  any colour, size, position and angle on light or dark backgrounds;
- letters (those that do not look like digits);
- 10 shapes x 12 colours x 3 sizes, filled or outlined, some placed in a named cell of the image;
- two-object scenes with a relation ("a small red circle to the left of a blue star").

``load_or_generate`` caches a corpus as a ``.npz`` (uint8 images, captions, specs as JSON)
under ``data_root/synthetic/`` keyed by a hash of the parameters and of this file's source, so
a changed parameter or a changed generator regenerates. Train-time augmentation lives in
``augment.py``; the torch Datasets in ``pairs.py``. This module never touches torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from contextclip import fileio
from contextclip.data.fonts import FONT_STYLES, load_font

GENERATOR_VERSION = "1"

# Object colours. Names are the caption words; a synonym list gives variety.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 130, 20),
    "yellow": (245, 215, 35),
    "green": (40, 165, 60),
    "cyan": (40, 200, 215),
    "blue": (40, 80, 225),
    "purple": (135, 55, 185),
    "pink": (245, 125, 190),
    "brown": (125, 75, 35),
    "white": (250, 250, 250),
    "gray": (135, 135, 135),
    "black": (15, 15, 15),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "gray": ("gray", "grey"),
    "purple": ("purple", "violet"),
    "cyan": ("cyan", "turquoise"),
}
# Backgrounds: name -> (rgb, tone). Tone is the caption word "light" or "dark".
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], str]] = {
    "white": ((250, 250, 250), "light"),
    "light gray": ((212, 212, 212), "light"),
    "cream": ((245, 236, 210), "light"),
    "pale blue": ((218, 230, 245), "light"),
    "black": ((0, 0, 0), "dark"),
    "dark gray": ((50, 50, 50), "dark"),
    "navy": ((18, 24, 64), "dark"),
    "dark brown": ((48, 32, 22), "dark"),
}
SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "pentagon", "hexagon", "diamond", "cross", "heart", "arrow",
)
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "square block"),
    "triangle": ("triangle",),
    "star": ("star", "five-pointed star"),
    "pentagon": ("pentagon",),
    "hexagon": ("hexagon",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "heart": ("heart",),
    "arrow": ("arrow", "arrow pointing right"),
}
# Held-out classes: shapes that no training caption names (never in the corpus, never in a
# caption template); the ``novel_shapes`` evaluation set measures zero-shot in the paper's sense.
NOVEL_SHAPES: tuple[str, ...] = ("octagon", "crescent", "trapezoid", "semicircle", "oval", "parallelogram")
# The primary held-out-class set ``novel_classes``: 24 classes no training caption names, chosen
# and written down before any result on them (docs/decisions.md, "Primary endpoints"): the six
# novel shapes, four more shapes, and 14 typographic symbols (the corpus draws digits and letters,
# never a symbol). Class name -> shape name (rendered as a polygon) or the symbol's character
# (rendered as a glyph in the fonts that draw it; see ``SYMBOL_FONTS``).
NOVEL_CLASS_SHAPES: tuple[str, ...] = NOVEL_SHAPES + ("kite", "hourglass", "lightning bolt", "teardrop")
NOVEL_CLASS_SYMBOLS: dict[str, str] = {
    "question mark": "?", "exclamation mark": "!", "ampersand": "&", "at sign": "@", "hash sign": "#",
    "percent sign": "%", "dollar sign": "$", "asterisk": "*", "equals sign": "=", "euro sign": "\u20ac",
    "pound sign": "\u00a3", "musical note": "\u266a", "infinity sign": "\u221e", "section sign": "\u00a7",
}
NOVEL_CLASSES: tuple[str, ...] = NOVEL_CLASS_SHAPES + tuple(NOVEL_CLASS_SYMBOLS)
# Symbols are drawn in the DejaVu styles only: each has every symbol above (the Computer Modern
# files map some code points to other glyphs, STIX lacks two).
SYMBOL_FONTS: tuple[str, ...] = tuple(f.name for f in FONT_STYLES if f.name.startswith("dejavu"))
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# letters that cannot be mistaken for digits (no O, I, l, S, Z, B, G, q, g, b ...)
LETTERS = "ACDEFHJKLMNPRTUVWXYacdefhkmnrtuvwxy"
# longer side of an object as a fraction of the image side
SIZES_SINGLE = {"small": (0.26, 0.36), "medium": (0.46, 0.58), "large": (0.70, 0.86)}
SIZES_PAIR = {"small": (0.19, 0.24), "medium": (0.27, 0.32), "large": (0.35, 0.39)}
POSITIONED_SIZE = (0.24, 0.29)  # objects placed in a named cell of a 3 x 3 grid are small
ROWS = ("top", "middle", "bottom")
COLS = ("left", "centre", "right")

# stream ids keep the pretraining corpus and every held-out set on disjoint random streams
STREAMS = {"corpus": 1, "synthetic_captions": 2, "shapes10": 3, "colour_shapes": 4, "novel_shapes": 5,
           "novel_classes": 6}


@dataclass(frozen=True)
class CorpusParams:
    """Everything that decides the generated images (hashed into the cache key)."""

    n: int = 6000
    image_size: int = 32
    seed: int = 0
    stream: str = "corpus"
    digit_fraction: float = 0.72
    letter_fraction: float = 0.05
    shape_fraction: float = 0.13  # single shapes; the rest are two-object scenes
    mnist_style_fraction: float = 0.4  # share of digits drawn white, thick and centred on black
    captions_per_image: int = 5

    def key(self) -> str:
        src = Path(__file__).read_bytes() + Path(__file__).with_name("fonts.py").read_bytes()
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + GENERATOR_VERSION
        return hashlib.sha256(blob.encode() + src).hexdigest()[:16]


# ----------------------------------------------------------------------------- helpers
def _lum(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def contrasting_colours(bg_rgb, min_lum_diff: float = 60.0, pool=None) -> list[str]:
    """Object colours readable on ``bg_rgb`` (luminance difference of at least ``min_lum_diff``)."""
    pool = pool or list(COLOURS)
    return [c for c in pool if abs(_lum(COLOURS[c]) - _lum(bg_rgb)) >= min_lum_diff]


def nearest_colour(rgb, pool=None) -> str:
    pool = pool or list(COLOURS)
    rgb = np.asarray(rgb, dtype=float)
    return min(pool, key=lambda c: float(((np.asarray(COLOURS[c]) - rgb) ** 2).sum()))


def _jitter(rgb, rng, amount=12) -> list[int]:
    return [int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _shape_polygon(shape: str) -> list[tuple[float, float]] | None:
    """Unit polygon (x right, y down, in [-1, 1]); None for the circle (an ellipse)."""
    def regular(k, r=1.0, phase=-math.pi / 2):
        return [(r * math.cos(phase + 2 * math.pi * i / k), r * math.sin(phase + 2 * math.pi * i / k)) for i in range(k)]

    if shape == "circle":
        return None
    if shape == "square":
        return [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    if shape == "triangle":
        return [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
    if shape == "star":
        pts = []
        for i in range(10):
            r = 1.0 if i % 2 == 0 else 0.42
            a = -math.pi / 2 + math.pi * i / 5
            pts.append((r * math.cos(a), r * math.sin(a) + 0.08))
        return pts
    if shape == "pentagon":
        return [(x, y + 0.08) for x, y in regular(5)]
    if shape == "hexagon":
        return regular(6, phase=0.0)
    if shape == "diamond":
        return [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)]
    if shape == "cross":
        a, b = 0.3, 0.95
        return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
    if shape == "heart":
        pts = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -y / 17.0 + 0.05))
        return pts
    if shape == "octagon":
        return regular(8, phase=math.pi / 8)
    if shape == "crescent":  # outer arc through the left, inner arc of a circle through its tips
        outer = [(math.cos(t), math.sin(t)) for t in np.linspace(math.pi / 3, 5 * math.pi / 3, 24)]
        inner = [(0.5 + 0.866 * math.cos(t), 0.866 * math.sin(t)) for t in np.linspace(1.5 * math.pi, 0.5 * math.pi, 18)]
        return outer + inner[1:-1]
    if shape == "trapezoid":
        return [(-0.5, -0.6), (0.5, -0.6), (1.0, 0.6), (-1.0, 0.6)]
    if shape == "semicircle":
        return [(math.cos(t), 0.4 - math.sin(t)) for t in np.linspace(0.0, math.pi, 24)]
    if shape == "oval":
        return [(math.cos(t), 0.55 * math.sin(t)) for t in np.linspace(0.0, 2 * math.pi, 40, endpoint=False)]
    if shape == "parallelogram":
        return [(-0.6, -0.55), (1.0, -0.55), (0.6, 0.55), (-1.0, 0.55)]
    if shape == "kite":
        return [(0.0, -1.0), (0.6, -0.35), (0.0, 1.0), (-0.6, -0.35)]
    if shape == "hourglass":
        return [(-0.75, -1.0), (0.75, -1.0), (0.12, 0.0), (0.75, 1.0), (-0.75, 1.0), (-0.12, 0.0)]
    if shape == "lightning bolt":
        return [(0.15, -1.0), (-0.6, 0.15), (-0.05, 0.15), (-0.3, 1.0), (0.6, -0.2), (0.05, -0.2), (0.4, -1.0)]
    if shape == "teardrop":  # a circle in the lower part, its top drawn out to a point
        arc = [(0.62 * math.cos(t), 0.35 + 0.62 * math.sin(t)) for t in np.linspace(-math.pi / 6, 7 * math.pi / 6, 30)]
        return [(0.0, -1.0)] + arc
    if shape == "arrow":
        return [(-1.0, -0.22), (0.2, -0.22), (0.2, -0.6), (1.0, 0.0), (0.2, 0.6), (0.2, 0.22), (-1.0, 0.22)]
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES + NOVEL_CLASS_SHAPES}")


def _object_mask(obj: dict, canvas: int) -> Image.Image:
    """Greyscale coverage mask (L) of one object, sized for a canvas of ``canvas`` pixels."""
    side = max(4, int(round(obj["size_frac"] * canvas)))
    if obj["kind"] == "shape":
        ss = 2  # extra supersampling for polygon edges
        big = side * ss
        mask = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(mask)
        width = max(2, int(round(big * 0.13)))
        poly = _shape_polygon(obj["label"])
        r = big / 2 - 1
        if poly is None:
            box = [1, 1, big - 2, big - 2]
            if obj["filled"]:
                draw.ellipse(box, fill=255)
            else:
                draw.ellipse(box, outline=255, width=width)
        else:
            a = math.radians(obj["angle"])
            ca, sa = math.cos(a), math.sin(a)
            pts = [(big / 2 + r * (x * ca - y * sa), big / 2 + r * (x * sa + y * ca)) for x, y in poly]
            if obj["filled"]:
                draw.polygon(pts, fill=255)
            else:
                draw.polygon(pts, outline=255, width=width)
        return mask.resize((side, side), Image.Resampling.BOX)
    # glyph: draw big, crop to ink, scale to the target height, rotate
    fsize = max(16, side * 2)
    font = load_font(obj["font"], fsize)
    stroke = int(round(obj["stroke"] * fsize))
    x0, y0, x1, y1 = font.getbbox(obj["label"], stroke_width=stroke)
    pad = 2 + stroke
    img = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - x0, pad - y0), obj["label"], font=font, fill=255,
                             stroke_width=stroke, stroke_fill=255)
    bbox = img.getbbox()
    if bbox is None:  # pragma: no cover - every font style in FONT_STYLES draws every glyph used
        raise RuntimeError(f"font {obj['font']} drew nothing for {obj['label']!r}")
    img = img.crop(bbox)
    h = side
    w = max(2, int(round(img.width * h / img.height * obj.get("aspect", 1.0))))
    if w > side * 1.1:  # wide glyphs (M, W) are limited by width instead
        h = max(2, int(round(h * side * 1.1 / w)))
        w = int(round(side * 1.1))
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    if obj["angle"]:
        img = img.rotate(obj["angle"], resample=Image.Resampling.BICUBIC, expand=True)
    return img


def render(spec: dict, size: int) -> tuple[np.ndarray, list[list[float]]]:
    """Draw a scene spec at ``size`` x ``size``: (uint8 [size, size, 3], object boxes as fractions).

    Boxes are (x0, y0, x1, y1) of each object's pasted mask, as fractions of the image side.
    """
    ss = max(1, min(4, 128 // size)) if size < 128 else 1
    canvas_px = size * ss
    bg = tuple(spec["bg_rgb"])
    canvas = Image.new("RGB", (canvas_px, canvas_px), bg)
    boxes = []
    for obj in spec["objects"]:
        mask = _object_mask(obj, canvas_px)
        w, h = mask.size
        if w > canvas_px or h > canvas_px:  # a rotated large glyph can overflow: shrink to fit
            f = canvas_px / max(w, h) * 0.98
            mask = mask.resize((max(1, int(w * f)), max(1, int(h * f))), Image.Resampling.LANCZOS)
            w, h = mask.size
        cx, cy = obj["centre"][0] * canvas_px, obj["centre"][1] * canvas_px
        if obj.get("centre_of_mass"):  # as MNIST: the ink's centre of mass goes to the centre point
            m = np.asarray(mask, dtype=np.float64)
            ys, xs = np.indices(m.shape)
            cx += w / 2 - (xs * m).sum() / m.sum()
            cy += h / 2 - (ys * m).sum() / m.sum()
        x0 = int(round(min(max(cx - w / 2, 0), canvas_px - w)))
        y0 = int(round(min(max(cy - h / 2, 0), canvas_px - h)))
        canvas.paste(Image.new("RGB", (w, h), tuple(obj["rgb"])), (x0, y0), mask)
        boxes.append([x0 / canvas_px, y0 / canvas_px, (x0 + w) / canvas_px, (y0 + h) / canvas_px])
    if ss > 1:
        canvas = canvas.resize((size, size), Image.Resampling.BOX)
    arr = np.asarray(canvas, dtype=np.float32)
    rng = np.random.default_rng(spec["noise_seed"])
    if spec["gradient"]:
        g = np.linspace(-1.0, 1.0, size, dtype=np.float32) * spec["gradient"]
        ramp = g[None, :] if spec["gradient_axis"] == 0 else g[:, None]
        arr += ramp[..., None]
    if spec["noise"]:
        arr += rng.normal(0.0, spec["noise"], size=arr.shape).astype(np.float32)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8), boxes


# ------------------------------------------------------------------------ scene specs
def _background(rng, tone: str | None = None) -> str:
    names = [n for n, (_, t) in BACKGROUNDS.items() if tone is None or t == tone]
    return _pick(rng, names)


def _base_spec(rng, bg_name: str) -> dict:
    return {
        "background": bg_name,
        "bg_rgb": list(BACKGROUNDS[bg_name][0]),
        "tone": BACKGROUNDS[bg_name][1],
        "objects": [],
        "relation": None,
        "position": None,
        "mnist_style": False,
        "gradient": float(rng.uniform(4, 14)) if rng.random() < 0.3 else 0.0,
        "gradient_axis": int(rng.integers(2)),
        "noise": float(rng.uniform(1, 4)) if rng.random() < 0.4 else 0.0,
        "noise_seed": int(rng.integers(2**31)),
    }


def _glyph_obj(rng, kind: str, label: str, colour: str, size_name: str, size_frac: float,
               centre, angle_max: float, stroke_max: float) -> dict:
    if kind == "symbol":
        fonts = [f for f in FONT_STYLES if f.name in SYMBOL_FONTS]
    else:
        fonts = [f for f in FONT_STYLES if kind == "digit" or f.letters]
    font = _pick(rng, fonts)
    return {
        "kind": kind, "label": label, "colour": colour, "rgb": _jitter(COLOURS[colour], rng),
        "size": size_name, "size_frac": size_frac, "centre": list(centre),
        "font": font.name, "family": font.family, "bold": font.bold, "italic": font.italic,
        "stroke": float(rng.uniform(0.0, stroke_max)), "angle": float(rng.uniform(-angle_max, angle_max)),
        "aspect": float(rng.uniform(0.85, 1.15)), "filled": True,
    }


def _shape_obj(rng, shape: str, colour: str, size_name: str, size_frac: float, centre) -> dict:
    return {
        "kind": "shape", "label": shape, "colour": colour, "rgb": _jitter(COLOURS[colour], rng),
        "size": size_name, "size_frac": size_frac, "centre": list(centre),
        "angle": float(rng.uniform(-12, 12)), "filled": bool(rng.random() < 0.8),
    }


def _free_centre(rng, frac: float) -> tuple[float, float]:
    half = min(0.5, frac * 0.62)  # rotated boxes are up to ~1.25x wider
    return (float(rng.uniform(half, 1 - half)), float(rng.uniform(half, 1 - half)))


def _single_spec(rng, kind: str, label: str, colour_pool=None, mnist_style=False,
                 allow_position=True) -> dict:
    if mnist_style:
        spec = _base_spec(rng, "black")
        spec["gradient"], spec["noise"] = 0.0, spec["noise"] * 0.5
        spec["mnist_style"] = True
        frac = float(rng.uniform(0.60, 0.76))
        centre = (0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03))
        obj = _glyph_obj(rng, kind, label, "white", "large" if frac >= 0.7 else "medium", frac,
                         centre, angle_max=12, stroke_max=0.06)
        obj["stroke"] = float(rng.uniform(0.02, 0.06))  # thick, like a pen stroke
        obj["centre_of_mass"] = True
        spec["objects"].append(obj)
        return spec
    bgs = [b for b, (rgb, _) in BACKGROUNDS.items() if contrasting_colours(rgb, pool=colour_pool)]
    spec = _base_spec(rng, _pick(rng, bgs))
    colour = _pick(rng, contrasting_colours(spec["bg_rgb"], pool=colour_pool))
    if allow_position and rng.random() < 0.2:
        row, col = int(rng.integers(3)), int(rng.integers(3))
        frac = float(rng.uniform(*POSITIONED_SIZE))
        centre = ((col + 0.5) / 3 + rng.uniform(-0.03, 0.03), (row + 0.5) / 3 + rng.uniform(-0.03, 0.03))
        spec["position"] = [ROWS[row], COLS[col]]
        size_name = "small"
        angle_max = 8.0
    else:
        size_name = _pick(rng, list(SIZES_SINGLE))
        frac = float(rng.uniform(*SIZES_SINGLE[size_name]))
        centre = _free_centre(rng, frac)
        angle_max = 20.0
    if kind == "shape":
        obj = _shape_obj(rng, label, colour, size_name, frac, centre)
    else:
        obj = _glyph_obj(rng, kind, label, colour, size_name, frac, centre, angle_max, stroke_max=0.06)
    spec["objects"].append(obj)
    return spec


def _pair_spec(rng) -> dict:
    spec = _base_spec(rng, _background(rng))
    pool = contrasting_colours(spec["bg_rgb"])
    c1 = _pick(rng, pool)
    c2 = _pick(rng, [c for c in pool if c != c1 and nearest_colour(COLOURS[c]) != c1])
    relation = "left" if rng.random() < 0.6 else "above"
    spec["relation"] = relation
    for k, colour in enumerate((c1, c2)):
        size_name = _pick(rng, list(SIZES_PAIR))
        frac = float(rng.uniform(*SIZES_PAIR[size_name]))
        half = frac * 0.55
        along = float(rng.uniform(half + 0.01, 0.49 - half)) + 0.5 * k  # each object in its own half
        across = float(rng.uniform(half, 1 - half))
        centre = (along, across) if relation == "left" else (across, along)
        if rng.random() < 0.25:
            obj = _glyph_obj(rng, "digit", str(int(rng.integers(10))), colour, size_name, frac, centre,
                             angle_max=8, stroke_max=0.05)
        else:
            obj = _shape_obj(rng, _pick(rng, SHAPES), colour, size_name, frac, centre)
            obj["angle"] = float(rng.uniform(-8, 8))
        spec["objects"].append(obj)
    return spec


# --------------------------------------------------------------------------- captions
_VOWEL_LETTERS = set("AEFHILMNORSXaefhilmnorsx")


def _article(word: str) -> str:
    w = word.strip("\"'")
    if len(w) == 1 and w.isalpha():
        return "an" if w in _VOWEL_LETTERS else "a"
    if w.startswith("8") or w in ("11", "18"):
        return "an"
    if w[:1].lower() in "aeiou" and not w.lower().startswith(("one", "uni", "use")):
        return "an"
    return "a"


def _finish(text: str) -> str:
    text = re.sub(r"\ba~ (\S+)", lambda m: f"{_article(m.group(1))} {m.group(1)}", text)
    text = re.sub(r"^A~ (\S+)", lambda m: f"{_article(m.group(1)).capitalize()} {m.group(1)}", text)
    return re.sub(r"\s+", " ", text).strip()


def _cw(rng, colour: str) -> str:
    return _pick(rng, COLOUR_WORDS.get(colour, (colour,)))


def _pos_phrase(position) -> str:
    row, col = position
    if row == "middle" and col == "centre":
        return "centre"
    if row == "middle":
        return col
    if col == "centre":
        return row
    return f"{row} {col}"


DIGIT_TEMPLATES = (
    "the digit {w}", "the number {d}", "the number {w}", "a~ {d}", "the numeral {d}",
    "a picture of the digit {d}", "an image of the number {w}", "a photo of the number {d}",
    "a~ {c} {d}", "a~ {d} written in {c}", "the digit {d} in {c}", "a~ {c} number {w} on a~ {bg} background",
    "a~ {c} {d} on a~ {tone} background", "a~ {sz} {c} digit {w}", "the number {w} written in {c} on {bg}",
    "a~ {d} in a~ {family} font", "a~ {c} {w} on a~ {bg} background", "a single digit: {d}",
    "the figure {d}", "a drawing of the number {w}", "a~ {sz} {d}", "{d}", "the digit {d} drawn in {c}",
)
DIGIT_BOLD = ("a bold {d}", "the number {w} in bold")
DIGIT_ITALIC = ("a slanted {d}", "an italic number {w}")
DIGIT_MNIST = ("a white {d} on a black background", "a thick white digit {w} on black",
               "a white number {d} centred on a black background")
LETTER_TEMPLATES = (
    "the letter {L}", "a~ {c} letter {L}", "the letter {L} in {c}", "a~ {L} written in {c}",
    "the character {L}", "a~ {case} letter {L}", "a~ {c} {L} on a~ {bg} background",
    "a drawing of the letter {L}", "a~ {sz} {c} letter {L}", "the {case} letter {L} on a~ {tone} background",
)
SHAPE_TEMPLATES = (
    "a~ {c} {s}", "a drawing of a~ {c} {s}", "a~ {sz} {c} {s}", "a~ {s}", "a~ {c} {s} on a~ {bg} background",
    "a~ {s} coloured {c}", "a~ {sz} {s} in {c}", "a picture of a~ {fill} {c} {s}",
    "a~ {c} {s} on a~ {tone} background", "one {c} {s}", "a~ {s} drawn in {c}", "a simple {c} {s}",
    "a~ {fill} {s}", "a~ {sz} {fill} {c} {s} on {bg}",
)
POSITION_TEMPLATES = (
    "a~ {sz} {c} {thing} in the {pos}", "a~ {c} {thing} in the {pos} of the image",
    "a~ {thing} in the {pos}", "a~ {sz} {thing} placed in the {pos}",
)
LEFT_TEMPLATES = (
    "a~ {A} to the left of a~ {B}", "a~ {B} to the right of a~ {A}", "a~ {A} on the left and a~ {B} on the right",
    "a~ {A} next to a~ {B}", "a~ {A} and a~ {B}", "two objects: a~ {A} and a~ {B}",
    "a~ {A} left of a~ {B} on a~ {bg} background", "a~ {B} on the right and a~ {A} on the left",
)
ABOVE_TEMPLATES = (
    "a~ {A} above a~ {B}", "a~ {B} below a~ {A}", "a~ {A} on top and a~ {B} at the bottom", "a~ {B} under a~ {A}",
    "a~ {A} and a~ {B}", "two objects: a~ {B} and a~ {A}", "a~ {A} above a~ {B} on a~ {tone} background",
)


def _obj_phrase(rng, obj: dict, with_size: bool) -> tuple[str, dict]:
    """One object of a two-object caption, and what the phrase states about it (its claim)."""
    c = _cw(rng, obj["colour"])
    size = f"{obj['size']} " if with_size and obj["size"] != "medium" else ""
    claim = {"kind": obj["kind"], "label": obj["label"], "colour": obj["colour"], **({"size": obj["size"]} if size else {})}
    if obj["kind"] == "shape":
        return f"{size}{c} {_pick(rng, SHAPE_WORDS[obj['label']])}", claim
    d = obj["label"]
    return _pick(rng, (f"{size}{c} {d}", f"{size}{c} digit {d}", f"{size}{c} number {DIGIT_WORDS[int(d)]}")), claim


def _is_bold(obj: dict) -> bool:
    """A glyph the captions may call bold: a bold font, or a thick stroke."""
    return bool(obj["bold"] or obj["stroke"] > 0.05)


def describe(spec: dict, rng: np.random.Generator, k: int = 5, claims: list | None = None) -> list[str]:
    """``k`` captions (distinct where the templates allow), each true of the rendered spec.

    With a list ``claims``, the claim of each returned caption is appended to it (``caption_claim``:
    the attributes the caption names, recorded from its template as it is written). The captions
    and the random stream are the same with or without it.
    """
    objs = spec["objects"]
    bg = spec["background"]
    tone = "dark" if spec["tone"] == "dark" else "light"
    if spec["relation"] is not None:
        templates = LEFT_TEMPLATES if spec["relation"] == "left" else ABOVE_TEMPLATES

        def make(t):
            a = _obj_phrase(rng, objs[0], rng.random() < 0.5)
            b = _obj_phrase(rng, objs[1], rng.random() < 0.5)
            return t.format(A=a[0], B=b[0], bg=bg, tone=tone), (t, (a[1], b[1]))
    else:
        o = objs[0]
        ctx = {"c": None, "bg": bg, "tone": tone, "sz": o["size"] if o["size"] != "medium" else "medium-sized"}
        if o["kind"] == "digit":
            templates = DIGIT_TEMPLATES + (DIGIT_BOLD if _is_bold(o) else ()) \
                + (DIGIT_ITALIC if o["italic"] else ()) + (DIGIT_MNIST * 2 if spec["mnist_style"] else ())
            ctx.update(d=o["label"], w=DIGIT_WORDS[int(o["label"])], family=o["family"])
        elif o["kind"] == "letter":
            templates = LETTER_TEMPLATES
            ctx.update(L=o["label"], case="capital" if o["label"].isupper() else "lowercase")
        else:
            templates = SHAPE_TEMPLATES
            ctx.update(fill="filled" if o["filled"] else "outlined")
        if spec["position"] is not None:
            templates = templates + POSITION_TEMPLATES * 3
            ctx["pos"] = _pos_phrase(spec["position"])

        def make(t):
            c = dict(ctx, c=_cw(rng, o["colour"]))
            if o["kind"] == "shape":
                c["s"] = _pick(rng, SHAPE_WORDS[o["label"]])
            c["thing"] = c.get("s") or (f"digit {o['label']}" if o["kind"] == "digit" else f"letter {o['label']}")
            return t.format(**c), (t, None)

    order = rng.permutation(len(templates))
    if spec["relation"] is None and spec["position"] is not None:  # the first caption names the position
        first = len(templates) - 1 - int(rng.integers(len(POSITION_TEMPLATES)))
        order = np.concatenate([[first], order[order != first]])
    out: list[str] = []
    said: list[tuple] = []  # (template, object claims of a pair) of each caption
    for j in range(max(k * 3, len(templates))):
        text, source = make(templates[order[j % len(order)]])
        cap = _finish(text)
        if cap not in out:
            out.append(cap)
            said.append(source)
        if len(out) == k:
            break
    while len(out) < k:  # very few templates: repeat (never happens with the sets above)
        out.append(out[len(out) % max(1, len(out))])
        said.append(said[len(said) % max(1, len(said))])
    if claims is not None:
        claims.extend(caption_claim(t, spec, pair) for t, pair in said)
    return out


# ------------------------------------------------------------------- what captions state
# A caption's *claim* is what it says about the image, recorded from its template when it is
# written (never parsed from the text afterwards): {"objects": [one dict per object named, with
# the attributes the caption names: kind and label always, and colour, size, family, filled,
# bold, italic where named], "relation": ..., and the scene attributes it names: "background",
# "tone", "position", "mnist_style"}. "relation" is "left" / "above" (objects listed left to right
# or top to bottom), "beside" (a horizontal pair, either order: "next to") or None (any
# arrangement, either order). An image *satisfies* a claim when it shows that many objects and
# its attributes (``scene_facts``) include every stated one. Retrieval counts every image that
# satisfies a caption as a correct answer to it (``claim_matrix``; docs/decisions.md, "Retrieval").

#: Scene-level attributes (the others belong to an object).
SCENE_ATTRIBUTES = ("background", "tone", "position", "mnist_style")
#: Template field -> the attribute it names (the label fields name kind and label).
FIELD_ATTRIBUTES = {"c": "colour", "sz": "size", "family": "family", "fill": "filled", "bg": "background",
                    "tone": "tone", "pos": "position"}
LABEL_FIELDS = ("d", "w", "L", "s", "thing")
#: Attributes a template names in its fixed words rather than in a field.
TEMPLATE_FACTS: dict[str, dict] = {
    **{t: {"bold": True} for t in DIGIT_BOLD},
    **{t: {"italic": True} for t in DIGIT_ITALIC},
    **dict(zip(DIGIT_MNIST, (  # "thick" and "centred" are the MNIST look (thick pen stroke, centre of mass)
        {"colour": "white", "background": "black"},
        {"colour": "white", "background": "black", "mnist_style": True},
        {"colour": "white", "background": "black", "mnist_style": True}))),
}
#: Two-object templates -> the relation they state.
PAIR_RELATIONS: dict[str, str | None] = {
    "a~ {A} to the left of a~ {B}": "left", "a~ {B} to the right of a~ {A}": "left",
    "a~ {A} on the left and a~ {B} on the right": "left", "a~ {A} next to a~ {B}": "beside",
    "a~ {A} and a~ {B}": None, "two objects: a~ {A} and a~ {B}": None,
    "a~ {A} left of a~ {B} on a~ {bg} background": "left", "a~ {B} on the right and a~ {A} on the left": "left",
    "a~ {A} above a~ {B}": "above", "a~ {B} below a~ {A}": "above", "a~ {A} on top and a~ {B} at the bottom": "above",
    "a~ {B} under a~ {A}": "above", "two objects: a~ {B} and a~ {A}": None,
    "a~ {A} above a~ {B} on a~ {tone} background": "above",
}


def scene_facts(spec: dict) -> dict:
    """Every attribute a caption could name, of the image a spec draws (JSON-able)."""
    objects = []
    for o in spec["objects"]:
        f = {"kind": o["kind"], "label": o["label"], "colour": o["colour"], "size": o["size"],
             "filled": bool(o.get("filled", True))}
        if o["kind"] != "shape":
            f.update(family=o["family"], bold=_is_bold(o), italic=bool(o["italic"]))
        objects.append(f)
    return {"objects": objects, "relation": spec["relation"], "background": spec["background"],
            "tone": spec["tone"], "position": spec["position"], "mnist_style": bool(spec["mnist_style"])}


def caption_claim(template: str, spec: dict, pair_claims: tuple[dict, dict] | None = None) -> dict:
    """What a caption written from ``template`` for ``spec`` states: the attributes its fields and
    fixed words name, with the values of that image (``pair_claims``: the two object phrases')."""
    facts = scene_facts(spec)
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    scene = {FIELD_ATTRIBUTES[f]: facts[FIELD_ATTRIBUTES[f]] for f in fields
             if FIELD_ATTRIBUTES.get(f) in SCENE_ATTRIBUTES}
    scene.update({a: v for a, v in TEMPLATE_FACTS.get(template, {}).items() if a in SCENE_ATTRIBUTES})
    if pair_claims is not None:
        if template not in PAIR_RELATIONS:
            raise KeyError(f"two-object template {template!r} has no entry in PAIR_RELATIONS")
        return {"objects": [dict(c) for c in pair_claims], "relation": PAIR_RELATIONS[template], **scene}
    o = facts["objects"][0]
    obj = {"kind": o["kind"], "label": o["label"]} if fields & set(LABEL_FIELDS) else {}
    obj.update({FIELD_ATTRIBUTES[f]: o[FIELD_ATTRIBUTES[f]] for f in fields
                if f in FIELD_ATTRIBUTES and FIELD_ATTRIBUTES[f] not in SCENE_ATTRIBUTES})
    obj.update({a: v for a, v in TEMPLATE_FACTS.get(template, {}).items() if a not in SCENE_ATTRIBUTES})
    return {"objects": [obj], "relation": None, **scene}


def satisfies(facts: dict, claim: dict) -> bool:
    """Whether an image (its ``scene_facts``) shows everything a caption's claim states."""
    objs = facts["objects"]
    if len(objs) != len(claim["objects"]):
        return False
    if any(facts.get(a) != claim[a] for a in SCENE_ATTRIBUTES if a in claim):
        return False
    relation = claim.get("relation")
    if relation in ("left", "above"):
        orders = [objs] if facts["relation"] == relation else []
    elif relation == "beside":
        orders = [objs, objs[::-1]] if facts["relation"] == "left" else []
    elif relation is None:
        orders = [objs, objs[::-1]] if len(objs) == 2 else [objs]
    else:
        raise ValueError(f"claim relation {relation!r} is not one of left, above, beside, None")
    return any(all(all(f.get(a) == v for a, v in c.items()) for f, c in zip(order, claim["objects"]))
               for order in orders)


def claim_matrix(claims: list[dict], facts: list[dict]) -> np.ndarray:
    """Bool [n_claims, n_images]: image j satisfies claim i (identical claims are matched once)."""
    by_labels: dict[tuple, list[int]] = {}
    for j, f in enumerate(facts):
        by_labels.setdefault(tuple(sorted(o["label"] for o in f["objects"])), []).append(j)
    out = np.zeros((len(claims), len(facts)), dtype=bool)
    done: dict[str, list[int]] = {}
    for i, claim in enumerate(claims):
        key = json.dumps(claim, sort_keys=True)
        if key not in done:
            labels = [o.get("label") for o in claim["objects"]]
            pool = by_labels.get(tuple(sorted(labels)), []) if all(labels) else range(len(facts))
            done[key] = [j for j in pool if satisfies(facts[j], claim)]
        out[i, done[key]] = True
    return out


# ------------------------------------------------------------------------- the corpus
@dataclass
class Corpus:
    """Generated images with their captions and specs (one list of captions per image)."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    captions: list[list[str]]
    specs: list[dict]
    params: CorpusParams
    seconds: float = 0.0  # generation time (0 when loaded from the cache)
    claims: list[list[dict]] | None = None  # what each caption states (``caption_claim``), like ``captions``

    def __len__(self) -> int:
        return len(self.specs)


def params_for(cfg) -> CorpusParams:
    """The pretraining corpus of a config: ``n_pairs`` scenes at ``image_size``, ``digit_fraction``
    of them one digit (letters and single shapes keep their shares while they fit, and two-object
    scenes fill the rest)."""
    return CorpusParams(n=cfg.data.n_pairs, image_size=cfg.data.image_size, digit_fraction=cfg.data.digit_fraction)


def _kind_plan(p: CorpusParams) -> list[str]:
    # the digit share is exact; letters, then shapes, shrink when the shares add up to more than 1
    n_digit = min(p.n, int(round(p.n * p.digit_fraction)))
    n_letter = min(p.n - n_digit, int(round(p.n * p.letter_fraction)))
    n_shape = min(p.n - n_digit - n_letter, int(round(p.n * p.shape_fraction)))
    n_pair = max(0, p.n - n_digit - n_letter - n_shape)
    kinds = ["digit"] * n_digit + ["letter"] * n_letter + ["shape"] * n_shape + ["pair"] * n_pair
    rng = np.random.default_rng([p.seed, STREAMS[p.stream], 0])
    return [kinds[i] for i in rng.permutation(len(kinds))][: p.n]


def scene_specs(p: CorpusParams) -> list[dict]:
    """The specs of a corpus; scene ``i`` depends only on (seed, stream, i) and its kind."""
    specs = []
    counters: Counter = Counter()
    for i, kind in enumerate(_kind_plan(p)):
        rng = np.random.default_rng([p.seed, STREAMS[p.stream], 1, i])
        j = counters[kind]
        counters[kind] += 1
        if kind == "digit":
            spec = _single_spec(rng, "digit", str(j % 10), mnist_style=rng.random() < p.mnist_style_fraction)
        elif kind == "letter":
            spec = _single_spec(rng, "letter", LETTERS[j % len(LETTERS)])
        elif kind == "shape":
            spec = _single_spec(rng, "shape", SHAPES[j % len(SHAPES)])
        else:
            spec = _pair_spec(rng)
        spec["kind"] = kind
        spec["index"] = i
        specs.append(spec)
    return specs


def generate(p: CorpusParams) -> Corpus:
    """Render the corpus of ``p`` (no cache)."""
    t0 = time.perf_counter()
    specs = scene_specs(p)
    images = np.empty((len(specs), p.image_size, p.image_size, 3), dtype=np.uint8)
    captions, claims = [], []
    for i, spec in enumerate(specs):
        images[i], spec["boxes"] = render(spec, p.image_size)
        rng = np.random.default_rng([p.seed, STREAMS[p.stream], 2, i])
        claims.append([])
        captions.append(describe(spec, rng, p.captions_per_image, claims=claims[-1]))
    return Corpus(images, captions, specs, p, seconds=time.perf_counter() - t0, claims=claims)


def cache_path(p: CorpusParams, data_root: str | Path) -> Path:
    return Path(data_root) / "synthetic" / f"{p.stream}-n{p.n}-s{p.image_size}-seed{p.seed}-{p.key()}.npz"


def save_corpus(c: Corpus, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = [cap for caps in c.captions for cap in caps]
    offsets = np.cumsum([0] + [len(caps) for caps in c.captions]).astype(np.int64)
    fileio.atomic_write(path, lambda fh: np.savez_compressed(
        fh, images=c.images, captions=np.array(flat, dtype=str), offsets=offsets,
        specs=np.array(json.dumps(c.specs)), params=np.array(json.dumps(dataclasses.asdict(c.params))),
        seconds=np.array(c.seconds), claims=np.array(json.dumps(c.claims)),
    ))


def load_corpus(path: Path) -> Corpus:
    with np.load(path, allow_pickle=False) as z:
        flat = [str(s) for s in z["captions"]]
        off = z["offsets"]
        caps = [flat[off[i]: off[i + 1]] for i in range(len(off) - 1)]
        params = CorpusParams(**json.loads(str(z["params"])))
        claims = json.loads(str(z["claims"])) if "claims" in z.files else None
        return Corpus(z["images"], caps, json.loads(str(z["specs"])), params, seconds=float(z["seconds"]),
                      claims=claims)


def load_or_generate(p: CorpusParams, data_root: str | Path | None) -> Corpus:
    """The corpus of ``p`` from the cache under ``data_root`` (generated and saved on a miss).

    ``data_root=None`` generates without caching. A cache file that cannot be read (or lacks the
    captions' claims) is regenerated (and overwritten), never trusted.
    """
    if data_root is None:
        return generate(p)
    path = cache_path(p, data_root)
    if path.exists():
        try:
            c = load_corpus(path)
            if c.params == p and c.images.shape == (p.n, p.image_size, p.image_size, 3) and c.claims is not None:
                return c
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            pass
    c = generate(p)
    save_corpus(c, path)
    return c


def corpus_stats(c: Corpus) -> dict:
    """Diversity and balance of a corpus: distinct captions, counts per kind, label, colour."""
    all_caps = [cap for caps in c.captions for cap in caps]
    kinds = Counter(s["kind"] for s in c.specs)
    digits = Counter(s["objects"][0]["label"] for s in c.specs if s["kind"] == "digit")
    shapes = Counter(o["label"] for s in c.specs for o in s["objects"] if o["kind"] == "shape")
    colours = Counter(o["colour"] for s in c.specs for o in s["objects"])
    fonts = Counter(o["font"] for s in c.specs for o in s["objects"] if o["kind"] != "shape")
    return {
        "n_images": len(c),
        "n_captions": len(all_caps),
        "distinct_captions": len(set(all_caps)),
        "distinct_first_captions": len({caps[0] for caps in c.captions}),
        "kinds": dict(sorted(kinds.items())),
        "digits": dict(sorted(digits.items())),
        "shapes": dict(sorted(shapes.items())),
        "colours": dict(sorted(colours.items())),
        "backgrounds": dict(sorted(Counter(s["background"] for s in c.specs).items())),
        "font_styles": len(fonts),
        "mnist_style": sum(bool(s["mnist_style"]) for s in c.specs),
        "relations": dict(Counter(s["relation"] for s in c.specs if s["relation"])),
        "positioned": sum(s["position"] is not None for s in c.specs),
        "generation_seconds": round(c.seconds, 3),
    }


# --------------------------------------------------------------- held-out class sets
def class_set_specs(name: str, n_per_class: int, seed: int = 0) -> tuple[list[dict], list[int], list[str]]:
    """Specs, labels and class names of ``shapes10``, ``colour_shapes`` (held-out renderings of
    trained classes), ``novel_shapes`` (held-out classes: six shapes no training caption names) or
    ``novel_classes`` (the primary held-out-class set: ``NOVEL_CLASSES``, 10 shapes and 14 symbols)."""
    stream = STREAMS[name]
    if name == "shapes10":
        classes = [(None, s) for s in SHAPES]
        names = list(SHAPES)
    elif name == "novel_shapes":
        classes = [(None, s) for s in NOVEL_SHAPES]
        names = list(NOVEL_SHAPES)
    elif name == "novel_classes":
        classes = [(None, s) for s in NOVEL_CLASSES]
        names = list(NOVEL_CLASSES)
    elif name == "colour_shapes":
        pool = [c for c in COLOURS if c not in ("white", "gray", "black", "cyan")]  # 8 hues
        classes = [(c, s) for c in pool for s in SHAPES]
        names = [f"{c} {s}" for c, s in classes]
    else:
        raise ValueError(f"unknown class set {name!r}")
    specs, labels = [], []
    for label, (colour, shape) in enumerate(classes):
        for j in range(n_per_class):
            rng = np.random.default_rng([seed, stream, 1, label, j])
            pool = None if colour is None else [colour]
            if shape in NOVEL_CLASS_SYMBOLS:
                spec = _single_spec(rng, "symbol", NOVEL_CLASS_SYMBOLS[shape], colour_pool=pool, allow_position=False)
                spec["kind"] = "symbol"
            else:
                spec = _single_spec(rng, "shape", shape, colour_pool=pool, allow_position=False)
                spec["kind"] = "shape"
            specs.append(spec)
            labels.append(label)
    return specs, labels, names
