"""Read an image file the way DeepFaune's detector sees it, or say clearly why not.

DeepFaune lets OpenCV read files (IMREAD_COLOR: EXIF orientation applied, grey/16-bit/alpha
reduced to 8-bit BGR) and calls an unreadable file "empty".  We read the same pixels, through
``cv2.imdecode`` on the file's bytes so non-ASCII paths work everywhere, and raise ``MediaError``
with a reason a user can act on instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)


class MediaError(Exception):
    """A file that cannot be used, with a human-readable reason (``str(err)`` is the reason)."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else str(path)


def image_format(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def jpeg_is_complete(data: np.ndarray) -> bool:
    """True when the JPEG bytes end with the EOI marker FF D9 (trailing zero padding ignored)."""
    nonzero = np.flatnonzero(data)
    if len(nonzero) < 2:
        return False
    end = nonzero[-1]
    return bool(data[end] == 0xD9 and data[end - 1] == 0xFF)


def _read_bytes(path: Path) -> np.ndarray:
    try:
        if path.is_dir():
            raise MediaError("not a file (a directory)", path)
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise MediaError("file not found", path) from None
    except PermissionError:
        raise MediaError("cannot read: permission denied", path) from None
    except OSError as err:
        raise MediaError(f"cannot read: {err.strerror or err}", path) from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The file's pixels as 8-bit BGR HxWx3 (EXIF orientation applied), or MediaError."""
    path = Path(path)
    data = _read_bytes(path)
    if data.size == 0:
        raise MediaError("zero-byte file", path)
    kind = image_format(data[:16].tobytes())
    if kind == "JPEG" and not jpeg_is_complete(data):
        raise MediaError("truncated JPEG (no end marker)", path)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        if kind is None:
            raise MediaError("not an image (unrecognised format)", path)
        raise MediaError(f"corrupt or unsupported {kind} image (cannot decode)", path)
    if image.ndim == 2:  # defensive: IMREAD_COLOR already gives 3 channels
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image
