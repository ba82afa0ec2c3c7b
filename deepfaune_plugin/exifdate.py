"""The date DeepFaune forms sequences with: EXIF DateTimeOriginal (tag 36867).

DeepFaune 1.4.1 (fileManager.getDateFromMetadata) reads `PIL.Image.open(f)._getexif()[36867]`
for .png/.jpg/.jpeg/.tiff/.bmp/.gif files, keeps the raw text, and parses it later with
`strptime("%Y:%m:%d %H:%M:%S")`; anything missing or unparsable makes the image a sequence of
its own.  We read the same tag with `exifread` (headers only, stopping at the tag) because it
never decodes pixels and does not need the whole file.  Deliberate tolerances, each rarer than
a camera without a clock: padding NULs/spaces around the text are ignored (DeepFaune would
call such a date unparsable) and the tag is also accepted from IFD0, where a few tools put it.
"""
from __future__ import annotations

import logging
from datetime import datetime
from os import PathLike

import exifread

from .paths import open_regular

EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"
_ZERO_DATE = "0000:00:00 00:00:00"  # what cameras without a set clock write
_TAG_KEYS = ("EXIF DateTimeOriginal", "Image DateTimeOriginal")

# exifread logs a warning for every file without EXIF; in a batch of thousands that is noise.
_exif_logger = logging.getLogger("exifread")
if _exif_logger.level == logging.NOTSET:
    _exif_logger.setLevel(logging.ERROR)


def parse_exif_datetime(text: str | bytes | None) -> datetime | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" → datetime; None when absent, blank ("0000:00:00 ...") or malformed."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not isinstance(text, str):
        return None
    text = text.strip("\x00 \t\r\n")
    if not text or text == _ZERO_DATE:
        return None
    try:
        return datetime.strptime(text, EXIF_DATE_FORMAT)
    except ValueError:
        return None


def read_exif_date(path: str | PathLike[str]) -> datetime | None:
    """DateTimeOriginal of an image file, or None when it has none (or its EXIF is broken).

    Raises OSError only when the file itself cannot be opened.
    """
    with open_regular(path) as fh:  # never a FIFO's endless wait
        try:
            tags = exifread.process_file(
                fh, stop_tag="DateTimeOriginal", details=False, extract_thumbnail=False
            )
        except Exception:  # exifread raises assorted errors on corrupt EXIF blocks
            return None
    for key in _TAG_KEYS:
        tag = tags.get(key)
        if tag is not None:
            value = getattr(tag, "values", tag)
            date = parse_exif_datetime(value if isinstance(value, (str, bytes)) else str(value))
            if date is not None:
                return date
    return None


def read_exif_date_safely(path: str | PathLike[str]) -> datetime | None:
    """`read_exif_date`, with a file that cannot be opened counting as undated (its decoding reports why)."""
    try:
        return read_exif_date(path)
    except OSError:
        return None
