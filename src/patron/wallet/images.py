"""Small PNGs for a pass that has no artwork of its own: no imaging library, just the format."""

from __future__ import annotations

import struct
import zlib

RGB = tuple[int, int, int]


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def badge_png(width: int, height: int, background: RGB, foreground: RGB) -> bytes:
    """A `width`×`height` RGB PNG: `background` with a centred disc in `foreground`."""
    if width < 1 or height < 1:
        raise ValueError("an image needs at least one pixel each way")
    cx, cy = (width - 1) / 2, (height - 1) / 2
    radius_sq = (min(width, height) * 0.3) ** 2
    bg, fg = bytes(background), bytes(foreground)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type "None" for every scanline
        for x in range(width):
            rows += fg if (x - cx) ** 2 + (y - cy) ** 2 <= radius_sq else bg
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )
