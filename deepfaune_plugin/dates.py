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
from .types import CONTAINER_DATE, EXIF_DATE, FILE_DATE, HOST_DATE, MediaItem, RawResult

#: Dates the file itself carries and that no host date overrides.
EMBEDDED = (EXIF_DATE, CONTAINER_DATE)
#: What reading a file can find (kept in the result store with its outputs, so a resumed run reads nothing).
CARRIED = (EXIF_DATE, CONTAINER_DATE, FILE_DATE)


def carried_date(item: MediaItem) -> tuple[datetime | None, str]:
    """(date, source) the file carries, whatever its host knows: EXIF for an image; a video's container
    date, else its file time."""
    if not item.is_video:
        date = read_exif_date_safely(item.path)
        return date, EXIF_DATE if date else ""
    return video_date(item.path)


def date_for(item: MediaItem) -> tuple[datetime | None, str]:
    """(date, source) a run gives `item`, by the rule above (read from the file: for a source's own listing,
    e.g. a Camtrap DP package made before any model runs)."""
    date, source = carried_date(item)
    return _with_host_date(item, date, source)


def read_carried(item: MediaItem, raw: RawResult) -> None:
    """The file's own date into a freshly computed `raw`, read once, where the file is at hand (the run's
    sink, a Dask worker), unless the backend read it already while decoding."""
    if raw.failure is None and raw.date_source not in CARRIED:
        raw.date, raw.date_source = carried_date(item)


def resolve(item: MediaItem, raw: RawResult) -> RawResult:
    """`raw` (computed or reused, its file's date already read) dated by the rule for this run: the host's
    date over a file time, and a warning for a date no camera could have taken (1970, the future...).
    Reads no file: it runs on every result of every run."""
    if raw.failure is not None:
        return raw
    raw.date, raw.date_source = _with_host_date(item, raw.date, raw.date_source)
    suspect = suspect_date(raw.date)
    if suspect and suspect not in raw.warnings:
        raw.warnings.append(suspect)
    return raw


def _with_host_date(item: MediaItem, date: datetime | None, source: str) -> tuple[datetime | None, str]:
    if source not in EMBEDDED and item.timestamp is not None:
        return item.timestamp, HOST_DATE
    return date, source
