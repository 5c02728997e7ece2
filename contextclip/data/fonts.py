"""The fonts the generated corpus renders with: matplotlib's bundled TrueType files, found offline.

Each font style has a path inside matplotlib's ``mpl-data/fonts/ttf`` folder and the words a
caption may use for it (``serif``, ``bold``, ``italic`` ...). This module only finds and loads
fonts; drawing happens in ``synthetic.py``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import matplotlib
from PIL import ImageFont

from contextclip.errors import MissingFileError


@dataclass(frozen=True)
class FontStyle:
    name: str  # short id, e.g. "dejavu-serif-bold"
    file: str  # file name inside mpl-data/fonts/ttf
    family: str  # caption word: "sans-serif" | "serif" | "monospace"
    bold: bool
    italic: bool
    letters: bool = True  # False where the font's letters are not plain Latin letters


def _styles() -> tuple[FontStyle, ...]:
    out = []
    for fam, stem, word, bold_s, it_s in (
        ("sans", "DejaVuSans", "sans-serif", "Bold", "Oblique"),
        ("mono", "DejaVuSansMono", "monospace", "Bold", "Oblique"),
        ("serif", "DejaVuSerif", "serif", "Bold", "Italic"),
    ):
        for bold in (False, True):
            for italic in (False, True):
                suffix = (bold_s if bold else "") + (it_s if italic else "")
                file = f"{stem}-{suffix}.ttf" if suffix else f"{stem}.ttf"
                name = f"dejavu-{fam}" + ("-bold" if bold else "") + ("-italic" if italic else "")
                out.append(FontStyle(name, file, word, bold, italic))
    for bold in (False, True):
        for italic in (False, True):
            suffix = {(0, 0): "", (1, 0): "Bol", (0, 1): "Italic", (1, 1): "BolIta"}[(bold, italic)]
            name = "stix" + ("-bold" if bold else "") + ("-italic" if italic else "")
            out.append(FontStyle(name, f"STIXGeneral{suffix}.ttf", "serif", bold, italic))
    out += [
        FontStyle("cm-roman", "cmr10.ttf", "serif", False, False),
        FontStyle("cm-sans", "cmss10.ttf", "sans-serif", False, False),
        FontStyle("cm-typewriter", "cmtt10.ttf", "monospace", False, False),
        FontStyle("cm-bold", "cmb10.ttf", "serif", True, False),
        FontStyle("cm-italic", "cmti10.ttf", "serif", False, True),
        # old-style numerals (digits of varying height): a useful "handwriting-like" variety
        FontStyle("cm-math-italic", "cmmi10.ttf", "serif", False, True, letters=False),
    ]
    return tuple(out)


FONT_STYLES: tuple[FontStyle, ...] = _styles()


def font_dir() -> str:
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


def font_path(style: FontStyle) -> str:
    path = os.path.join(font_dir(), style.file)
    if not os.path.exists(path):
        raise MissingFileError(
            f"font {style.file} not found in matplotlib's data folder {font_dir()}; "
            "reinstall matplotlib (pip install -r requirements.txt)"
        )
    return path


@functools.lru_cache(maxsize=512)
def load_font(style_name: str, size: int) -> ImageFont.FreeTypeFont:
    style = next(s for s in FONT_STYLES if s.name == style_name)
    return ImageFont.truetype(font_path(style), size)
