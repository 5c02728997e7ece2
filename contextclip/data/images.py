"""Decoding user and dataset images safely into RGB, and resizing them to the profile's size.

``decode_image`` fully decodes one file or byte string (so truncated files fail here, not in
the middle of an epoch), refuses decompression bombs from the header before decoding, applies
the EXIF orientation and converts grey, RGBA, palette (with transparency), CMYK, 16-bit and
float images to RGB. Every failure is an ``ImageProblem`` with a short ``kind`` (the counts
``data check`` prints) and a reason. ``to_square_uint8`` resizes (shorter side, then centre
crop, as CLIP does) to a ``uint8 [H, W, 3]`` array. No torch here.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from contextclip.errors import ImageProblem

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently accepted

MIN_SIDE = 16  # smaller images are rejected as "too small"
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_SIDE = 16_384  # a longer declared side is refused before decoding (a 16 x 5,000,000 strip, say)
MAX_DECODED_BYTES = 512 << 20  # declared width x height x bytes per pixel of the mode, checked before decoding
#: PIL modes the kit turns into RGB; an image in any other mode is an "unreadable mode" row
RGB_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
          "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode not in RGB_MODES:
        raise ImageProblem("unreadable mode", f"image mode {mode!r} cannot be converted to RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):  # 16/32-bit or float grey: rescale
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0 * 255.0
        else:
            bad = ~np.isfinite(arr)
            if bad.any():  # NaN or inf in a float image: refuse, never read it as black
                y, x = (int(v) for v in np.argwhere(bad)[0])
                raise ImageProblem("non-finite pixels", f"{int(bad.sum())} pixel(s) are NaN or infinite "
                                   f"(first at x={x}, y={y})")
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):  # composite on white
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


def _bytes_per_pixel(mode: str) -> int:
    """Bytes per decoded pixel of a PIL mode, and what the conversion to RGB adds (float64 grey: 8)."""
    if mode in ("I", "F") or mode.startswith("I;16"):
        return 8 + 3  # rescaled through a float64 array, then RGB
    try:
        return max(3, Image.getmodebands(mode)) + 3
    except (KeyError, ValueError):
        return 8


def decode_image(source: str | Path | bytes, *, min_side: int = MIN_SIDE,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, check and fully decode an image; returns an RGB PIL image or raises ImageProblem."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ImageProblem("missing file", f"{path} does not exist")
        if not path.is_file():
            raise ImageProblem("missing file", f"{path} is not a file")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if len(data) == 0:
        raise ImageProblem("empty file", "the file has 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageProblem("decompression bomb", str(exc)) from None
        except UnidentifiedImageError:
            raise ImageProblem("not an image", "PIL cannot identify the file as an image") from None
        except Exception as exc:  # noqa: BLE001 - any decoder error is a bad file
            raise ImageProblem("not an image", f"{type(exc).__name__}: {exc}") from None
        w, h = img.size
        if w * h > max_pixels:  # from the header, before decoding
            raise ImageProblem("decompression bomb", f"{w}x{h} = {w * h} pixels exceeds the limit {max_pixels}")
        if max(w, h) > MAX_SIDE:
            raise ImageProblem("decompression bomb", f"{w}x{h}: a side longer than {MAX_SIDE} pixels")
        decoded = w * h * _bytes_per_pixel(img.mode)  # only the first frame of a multi-frame file is decoded
        if decoded > MAX_DECODED_BYTES:
            raise ImageProblem("decompression bomb", f"{w}x{h} {img.mode} would take {decoded / 2**20:.0f} MiB "
                               f"to decode (limit {MAX_DECODED_BYTES / 2**20:.0f} MiB)")
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageProblem("decompression bomb", str(exc)) from None
        except OSError as exc:
            raise ImageProblem("truncated file", f"decoding failed: {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise ImageProblem("truncated file", f"decoding failed: {type(exc).__name__}: {exc}") from None
    if min(w, h) < min_side:
        raise ImageProblem("too small", f"{w}x{h} is smaller than {min_side} pixels on a side")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
        pass
    try:
        return _to_rgb(img)
    except ImageProblem:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImageProblem("unreadable mode", f"mode {img.mode!r}: {type(exc).__name__}: {exc}") from None


def to_square_uint8(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop: uint8 [size, size, 3]."""
    w, h = img.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None if s > 0.5 else 2.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.array(img.convert("RGB"), dtype=np.uint8)  # writable copy


def load_square(source, size: int, **kw) -> np.ndarray:
    return to_square_uint8(decode_image(source, **kw), size)


def array_to_square(arr: np.ndarray, size: int) -> np.ndarray:
    """A uint8 grey [H, W] or RGB [H, W, 3] array resized to uint8 [size, size, 3]."""
    img = Image.fromarray(arr.astype(np.uint8), "L" if arr.ndim == 2 else "RGB")
    return to_square_uint8(img.convert("RGB"), size)
