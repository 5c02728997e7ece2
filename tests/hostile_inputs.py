"""Hostile and odd inputs for the data checks, made in memory: the one generator the tests share.

``png(...)`` is a real image of a given size, mode and colour; ``png_declaring(w, h, bit_depth)`` is a
well-formed PNG (every CRC right) whose header declares ``w`` x ``h`` pixels while it holds a few
bytes of 16 x 16 pixel data: a decompression bomb, a long thin strip or a 16-bit giant that a
reader must refuse from the header, before decoding. At 16 x 16 it is an ordinary valid image.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png(size=(32, 32), mode: str = "RGB", colour=(200, 30, 30)) -> bytes:
    """A real PNG of ``size`` filled with ``colour`` in PIL ``mode``."""
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def png_declaring(width: int, height: int, bit_depth: int = 8, crc_right: bool = True) -> bytes:
    """A 16 x 16 grey PNG whose header claims ``width`` x ``height`` at ``bit_depth`` (its CRC recomputed,
    unless ``crc_right`` is False: then the header is also damaged)."""
    data = bytearray(png((16, 16), "L", 128))
    ihdr = data[12:29]  # b"IHDR" + 13 bytes: width, height, bit depth, colour type, ...
    ihdr[4:13] = struct.pack(">IIB", width, height, bit_depth)
    data[12:29] = ihdr
    if crc_right:
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)
