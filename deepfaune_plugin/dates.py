"""When each file was taken: the one place a result's date is decided.

The rule, strongest first: the image's EXIF DateTimeOriginal; a video's container creation time; the date
the host knows (a Timelapse DateTime, a camtrapR record, a Camtrap DP timestamp); the video file's
modification time.  A host's date beats a file time because copying a card resets mtimes, while the
host's date came from a person or from the camera.  Everything that needs a date (the run, a Dask worker,
a Camtrap DP package made from a folder) asks here, so the table, the page and the package agree.
"""
from __future__ import annotations

from datetime import datetime

from .engine.video import video_date
from .exifdate import read_exif_date_safely, suspect_date
from .types import CONTAINER_DATE, EXIF_DATE, HOST_DATE, MediaItem, RawResult

#: Dates the file itself carries and that no host date overrides.
EMBEDDED = (EXIF_DATE, CONTAINER_DATE)


def carried_date(item: MediaItem) -> tuple[datetime | None, str]:
    """(date, source) the file carries, whatever its host knows: EXIF for an image; a video's container
    date, else its file time."""
    if not item.is_video:
        date = read_exif_date_safely(item.path)
        return date, EXIF_DATE if date else ""
    return video_date(item.path)


def date_for(item: MediaItem) -> tuple[datetime | None, str]:
    """(date, source) a run gives `item`, by the rule above."""
    date, source = carried_date(item)
    if source not in EMBEDDED and item.timestamp is not None:
        return item.timestamp, HOST_DATE
    return date, source


def read_embedded(item: MediaItem, raw: RawResult) -> None:
    """An image's EXIF date into `raw`, where the file is at hand (a Dask worker): the rest is `resolve`'s."""
    if raw.failure is None and raw.date_source not in EMBEDDED and not item.is_video:
        date = read_exif_date_safely(item.path)
        if date is not None:
            raw.date, raw.date_source = date, EXIF_DATE


def resolve(item: MediaItem, raw: RawResult) -> RawResult:
    """`raw` dated by the rule (once per file and run, computed or reused), with a warning for a date no
    camera could have taken (1970, the future...)."""
    if raw.failure is not None:
        return raw
    if raw.date_source not in EMBEDDED:  # the backend read no EXIF date: the rest of the rule
        raw.date, raw.date_source = date_for(item)
    suspect = suspect_date(raw.date)
    if suspect and suspect not in raw.warnings:
        raw.warnings.append(suspect)
    return raw
