"""Read an image file the way DeepFaune's detector sees it, or say clearly why not.

DeepFaune lets OpenCV read files (``cv2.imread``, IMREAD_COLOR: EXIF orientation applied, grey,
CMYK, 16-bit and alpha reduced to 8-bit BGR, GIF's first frame) and calls an unreadable file
"empty".  We read the same pixels through ``cv2.imdecode`` on the file's bytes (so non-ASCII
and non-UTF-8 paths work everywhere) and raise ``MediaError`` with a reason a user can act on.

Truncated JPEGs (a card pulled out mid-write) are decoded as far as their data goes, exactly as
``cv2.imread`` does: its file reader ends a short stream with a fake end marker, its memory reader
gives up, so we append that marker ourselves (pixel-identical to imread, checked in the tests)
and flag the file with ``TRUNCATED_WARNING``.

What libjpeg, libpng and OpenCV print while decoding ("Corrupt JPEG data: ...") is caught
(engine/quiet.py) and becomes the file's warning, or, for a file that cannot be used, the
``details`` of its MediaError; the terminal shows none of it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..paths import NotRegularFileError, open_regular
from .quiet import decoder_messages, summarise

_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
_JPEG_EOI = np.array([0xFF, 0xD9], dtype=np.uint8)
#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

TRUNCATED_WARNING = "truncated JPEG: decoded the part present"
#: Largest image we decode: 2^28 pixels (268 MP, 805 MB as BGR); camera traps take 3-50 MP, and a
#: corrupt or hostile header claiming more must fail at once instead of exhausting memory.
MAX_PIXELS = 1 << 28
#: Largest file we read into memory: no camera-trap image comes near; a video or disk image renamed
#: .jpg does.
MAX_FILE_BYTES = 1 << 30
#: OpenCV's own limit (its decoders refuse larger images); read once, as OpenCV does.
_env_limit = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "")
OPENCV_MAX_PIXELS = int(_env_limit) if _env_limit.isdigit() else 1 << 30


class MediaError(Exception):
    """A file that cannot be used, with a human-readable reason (``str(err)`` is the reason)."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None, details: tuple[str, ...] = ()):
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else str(path)
        self.details = details  # what the decoder itself printed, for the file's `warning` column


@dataclass(frozen=True)
class Decoded:
    """Pixels plus what the user should know about them (e.g. a truncated file)."""

    image: np.ndarray  # 8-bit BGR, HxWx3
    warnings: tuple[str, ...] = ()


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


def _jpeg_segments(head: bytes):
    """(marker, offset) of each JPEG marker segment up to and including the first scan (SOS)."""
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        yield marker, pos
        if marker == 0xDA:
            return
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(head[pos + 2:pos + 4], "big")


def header_size(data: bytes | np.ndarray, kind: str | None) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header without decoding, or None when not found."""
    head = bytes(data[: 1 << 16])  # JPEG frame headers come after EXIF (at most 64 KB per segment)
    if kind == "PNG" and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if kind == "JPEG":
        for marker, pos in _jpeg_segments(head):
            if marker in _JPEG_SOF and pos + 9 <= len(head):
                return int.from_bytes(head[pos + 7:pos + 9], "big"), int.from_bytes(head[pos + 5:pos + 7], "big")
    return None


def jpeg_scan_bytes(data: bytes | np.ndarray) -> int:
    """How many bytes of compressed pixels follow the first scan header (0 when the file stops before)."""
    buf = bytes(data)
    for marker, pos in _jpeg_segments(buf):
        if marker == 0xDA and pos + 4 <= len(buf):
            return max(0, len(buf) - (pos + 2 + int.from_bytes(buf[pos + 2:pos + 4], "big")))
    return 0


def _read_bytes(path: Path) -> np.ndarray:
    try:
        if path.is_dir():
            raise MediaError("not a file (a directory)", path)
        with open_regular(path) as fh:  # a FIFO named x.jpg would make a plain read wait forever
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise MediaError(f"file too large for an image ({size / 2**30:.1f} GiB; limit "
                                 f"{MAX_FILE_BYTES / 2**30:.0f} GiB)", path)
            return np.fromfile(path, dtype=np.uint8)  # checked regular just now, on the open descriptor
    except NotRegularFileError as err:
        raise MediaError(str(err), path) from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise MediaError("broken symbolic link (its target does not exist)", path) from None
        # Every host checks its files exist when it lists them: a missing one has gone since.
        raise MediaError("file vanished during the run", path) from None
    except PermissionError:
        raise MediaError("cannot read: permission denied", path) from None
    except OSError as err:
        raise MediaError(f"cannot read: {err.strerror or err}", path) from None


def _too_large(data: np.ndarray, kind: str | None) -> str | None:
    size = header_size(data, kind)
    if size is not None and size[0] * size[1] > min(MAX_PIXELS, OPENCV_MAX_PIXELS):
        return f"image too large: {size[0]}×{size[1]} pixels (limit {min(MAX_PIXELS, OPENCV_MAX_PIXELS):,})"
    return None


def _imdecode(data: np.ndarray, path: Path, kind: str | None) -> np.ndarray | None:
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as err:  # OpenCV's own size limit, or a decoder assertion
        if "MAX_IMAGE_PIXELS" in str(err):
            raise MediaError(f"image too large (over OpenCV's limit of {OPENCV_MAX_PIXELS:,} pixels)", path) from None
        raise MediaError(f"corrupt or unsupported {kind or 'image'} (cannot decode)", path) from None
    except MemoryError:
        raise MediaError("not enough memory to decode this image", path) from None


#: libjpeg's words for a stream that stops early: TRUNCATED_WARNING already says so.
_LIBJPEG_TRUNCATED = ("Corrupt JPEG data: premature end of data segment", "Premature end of JPEG file")


def decode_image(path: str | os.PathLike) -> Decoded:
    """The file's pixels as 8-bit BGR HxWx3 (EXIF orientation applied) and warnings, or MediaError."""
    path = Path(path)
    data = _read_bytes(path)
    if data.size == 0:
        raise MediaError("zero-byte file", path)
    kind = image_format(data[:16].tobytes())
    if reason := _too_large(data, kind):
        raise MediaError(reason, path)
    messages: list[str] = []
    try:
        with decoder_messages() as messages:
            image, warnings = _decode(data, path, kind)
    except MediaError as err:
        err.details = (summarise(messages),) if messages else ()
        raise
    if TRUNCATED_WARNING in warnings:
        messages = [m for m in messages if m not in _LIBJPEG_TRUNCATED]
    return Decoded(image, warnings + ((summarise(messages),) if messages else ()))


def _decode(data: np.ndarray, path: Path, kind: str | None) -> tuple[np.ndarray, tuple[str, ...]]:
    warnings: tuple[str, ...] = ()
    image = _imdecode(data, path, kind)
    if image is None and kind == "JPEG" and not jpeg_is_complete(data):
        if jpeg_scan_bytes(data) == 0:  # cut in its headers: libjpeg would show zero bits as pixels
            raise MediaError("truncated JPEG: no image data present", path)
        image = _imdecode(np.concatenate([data, _JPEG_EOI]), path, kind)
        if image is None:
            raise MediaError("truncated JPEG: the part present cannot be decoded", path)
        warnings = (TRUNCATED_WARNING,)
    if image is None:
        if kind is None:
            raise MediaError("not an image (unrecognised format)", path)
        raise MediaError(f"corrupt or unsupported {kind} image (cannot decode)", path)
    if image.ndim == 2:  # defensive: IMREAD_COLOR already gives 3 channels
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image, warnings


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels only (see decode_image); for callers that have nowhere to put a warning."""
    return decode_image(path).image
