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
#: Camera clocks reset to their factory date, or set to 9999 by a slip: dates outside this window are written as
#: read (they are the file's) but flagged as suspect and kept out of the charts' ranges.
PLAUSIBLE_FROM = datetime(1990, 1, 1)
_ZERO_DATE = "0000:00:00 00:00:00"  # what cameras without a set clock write
_TAG_KEYS = ("EXIF DateTimeOriginal", "Image DateTimeOriginal")

# exifread logs a warning for every file without EXIF; in a batch of thousands that is noise.
_exif_logger = logging.getLogger("exifread")
if _exif_logger.level == logging.NOTSET:
    _exif_logger.setLevel(logging.ERROR)


def format_date(value: datetime, fmt: str = EXIF_DATE_FORMAT) -> str:
    """`value.strftime(fmt)` with a four-digit year always: glibc writes year 1 as "1", which R's parsers
    (and camtrapR's, Timelapse's) refuse; "0001" they read."""
    return value.strftime(fmt.replace("%Y", f"{value.year:04d}"))


def plausible_until(now: datetime | None = None) -> datetime:
    now = now or datetime.now()
    return now.replace(year=now.year + 1) if not (now.month == 2 and now.day == 29) else now.replace(
        year=now.year + 1, day=28)


def suspect_date(value: datetime | None, now: datetime | None = None) -> str | None:
    """The warning for a date outside 1990..now + 1 year, or None."""
    if value is None:
        return None
    naive = value.replace(tzinfo=None)
    until = plausible_until(now)
    if PLAUSIBLE_FROM <= naive <= until:
        return None
    return (f"suspect date {format_date(naive)} (outside {PLAUSIBLE_FROM.year}..{until.year}): check the camera's "
            "clock; kept out of the review page's charts")


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
