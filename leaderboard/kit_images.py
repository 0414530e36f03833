"""A test image as a participant gets it: the pixels, nothing else (ARCHITECTURE.md invariant 1).

A file's metadata can name its label: an EXIF comment, a PNG text chunk, a camera's file name, a time.
JPEG and PNG keep their pixels bit for bit (the scans and chunks that carry them are copied, the
others dropped), so a box in the held labels still lands on the same pixels; any other format is
decoded and written again as PNG. Every result is decoded once with Pillow: what cannot be read is
refused at creation, naming the file, rather than shipped.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaderboard.errors import ChallengeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks a decoder needs for the pixels; text, times, EXIF, ICC profiles and the rest are dropped.
PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
# JPEG markers without a length field (SOI, EOI, RSTn, TEM).
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}
_APP14 = 0xEE  # Adobe: says whether 3 or 4 components are YCbCr/YCCK; decoding needs it
_COM = 0xFE


@dataclass(frozen=True)
class KitFile:
    data: bytes
    ext: str  # "jpg" or "png"
    media_type: str


def strip_jpeg(data: bytes) -> bytes:
    """The JPEG without APPn segments (EXIF, XMP, ICC, JFIF, ...; Adobe's APP14 kept) and comments, lossless."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no JPEG start-of-image marker")
    out = bytearray(b"\xff\xd8")
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise ValueError(f"expected a marker at byte {i}")
        while i < len(data) and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= len(data):
            raise ValueError("cut short after a marker")
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            if marker == 0xD9:
                return bytes(out)
            continue
        if i + 2 > len(data):
            raise ValueError("cut short in a segment header")
        (length,) = struct.unpack(">H", data[i:i + 2])
        end = i + length
        if length < 2 or end > len(data):
            raise ValueError(f"segment 0x{marker:02X} runs past the end")
        if marker == 0xDA:  # start of scan: the rest (entropy-coded data, later scans, EOI) is pixels
            out += bytes((0xFF, marker)) + data[i:]
            return bytes(out)
        if not ((0xE0 <= marker <= 0xEF and marker != _APP14) or marker == _COM):
            out += bytes((0xFF, marker)) + data[i:end]
        i = end
    raise ValueError("no scan data")


def strip_png(data: bytes) -> bytes:
    """The PNG with only the chunks that make its pixels (IHDR, PLTE, tRNS, IDAT, IEND), lossless."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("no PNG signature")
    out = bytearray(PNG_SIGNATURE)
    i = len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        end = i + 12 + length
        if end > len(data):
            raise ValueError(f"chunk {kind!r} runs past the end")
        if kind in PNG_KEEP:
            out += data[i:end]
        i = end
        if kind == b"IEND":
            return bytes(out)
    raise ValueError("no IEND chunk")


def png_bytes(pixels: Any) -> bytes:
    """An H x W (x C) uint8 array as a PNG, losslessly, with no ancillary chunk."""
    import numpy as np
    from PIL import Image

    array = np.ascontiguousarray(np.asarray(pixels))
    if array.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False)
    return strip_png(buffer.getvalue())


def _decodes(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def clean_image(data: bytes, name: str | Path) -> KitFile:
    """The image file's bytes without metadata; ChallengeError naming `name` when it is no readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        if data[:2] == b"\xff\xd8":
            kit = KitFile(strip_jpeg(data), "jpg", "image/jpeg")
        elif data.startswith(PNG_SIGNATURE):
            kit = KitFile(strip_png(data), "png", "image/png")
        else:  # any other format Pillow reads: its pixels as PNG
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            import numpy as np

            kit = KitFile(png_bytes(np.asarray(converted)), "png", "image/png")
        _decodes(kit.data)
    except (ValueError, OSError, UnidentifiedImageError, struct.error) as exc:
        raise ChallengeError(f"{name}: not a readable image ({exc})") from None
    return kit
