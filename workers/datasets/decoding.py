"""What an image file holds, and why it failed to decode, in words a person can act on.

Torch-free: the data check (workers.check_data) and the loaders share it.
"""
from __future__ import annotations

import re
from pathlib import Path

# Leading bytes of the formats the loaders decode (torchvision.io.decode_image: JPEG, PNG, GIF, WebP).
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
EXTENSION_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".webp": "WEBP"}
# torchvision prefixes its messages with the C++ function, file and line: noise to a reader.
_CPP_LOCATION = re.compile(r"^[\w:()]+, \S+\.(?:cpp|h):\d+, ")


def sniff_format(head: bytes) -> str | None:
    """The image format the first bytes of a file announce, or None if they announce none."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in SIGNATURES if head.startswith(signature)), None)


def expected_format(path: str | Path) -> str | None:
    """The format a file's extension promises, or None for an extension the loaders do not know."""
    return EXTENSION_FORMATS.get(Path(path).suffix.lower())


def content_problem(path: str | Path, data: bytes) -> str | None:
    """Why these bytes are not an image at all (empty, or no image signature); None if they might be."""
    if not data:
        return "empty file (0 bytes)"
    if sniff_format(data[:16]) is None:
        return f"not an image: {len(data)} bytes starting {data[:8]!r}, no JPEG/PNG/GIF/WebP signature"
    return None


def ends_early(fmt: str | None, data: bytes) -> bool:
    """Whether a JPEG or PNG lacks its end marker: the usual shape of a copy cut short."""
    # Some writers pad after the end marker, so look in the tail rather than at the last bytes.
    if fmt == "JPEG":
        return b"\xff\xd9" not in data[-4096:]
    if fmt == "PNG":
        return b"IEND" not in data[-4096:]
    return False


def decode_problem(path: str | Path, data: bytes, exc: BaseException) -> str:
    """The problem behind a decoder's exception, with the decoder's own words in parentheses."""
    found = content_problem(path, data)
    if found:
        return found
    fmt = sniff_format(data[:16])
    detail = _CPP_LOCATION.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if "truncated" in detail.lower() or "premature end" in detail.lower() or ends_early(fmt, data):
        return f"truncated {fmt} ({len(data)} bytes; {detail})"
    return f"corrupt {fmt} ({len(data)} bytes; {detail})"
