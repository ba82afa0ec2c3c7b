"""Sequence numbers exactly as DeepFaune 1.4.1 assigns them (fileManager.findSequences).

DeepFaune lists a folder's images with `sorted()` on their paths, visits the directories in
the order they first appear in that list, and inside each directory orders the images with
`np.argsort` of their raw EXIF date strings ("YYYY:MM:DD HH:MM:SS", or "NA" when there is
none, which sorts after every date).  Walking that order, an image starts a new sequence
unless both it and the previous image have a date and the gap is <= maxlag seconds.  Numbers
are global, from 1, directory after directory.

Here the path is the entry's name (the manifest's relative path: same order as DeepFaune's
absolute paths under one root) and the directory is the entry's group.  Ties in the date
order only matter for undated images (dated ties always share a sequence); they are broken by
the very same `np.argsort` call DeepFaune makes, which is name order for up to 16 images in a
group and numpy's introsort order beyond.  Without names, manifest order stands in for name
order.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence, Union

import numpy as np

from .exifdate import format_date

if TYPE_CHECKING:  # names only: `types.Manifest.blocks` calls this module, so it never imports `types` back
    from .types import MediaItem

Entry = Union[tuple[str, "datetime | None"], tuple[str, "datetime | None", str]]

_UNDATED = "NA"  # DeepFaune's placeholder; sorts after any "YYYY:..." string


def _sort_text(date: datetime | None) -> str:
    if date is None:
        return _UNDATED
    text = format_date(date)  # four-digit years, so that the text sorts as the dates do
    return f"{text}.{date.microsecond:06d}" if date.microsecond else text


def _joins(previous: datetime | None, current: datetime | None, maxlag: timedelta) -> bool:
    if previous is None or current is None:
        return False
    try:
        return current - previous <= maxlag
    except TypeError:  # naive vs aware datetimes: not comparable, so not the same sequence
        return False


def file_order(entries: Sequence[Entry]) -> list[int]:
    """Indices of `entries` in DeepFaune's listing order: by name when every entry has one."""
    if entries and all(len(e) > 2 and e[2] is not None for e in entries):
        return sorted(range(len(entries)), key=lambda i: entries[i][2])  # type: ignore[misc]
    return list(range(len(entries)))


def assign_sequences(entries: Sequence[Entry], maxlag: float, first: int = 1) -> list[int]:
    """Sequence number (from `first`) of each (group, date[, name]) entry, in the entries' order: a run's
    later chunks go on from the previous chunk's last number, as in one table."""
    if maxlag < 0:
        raise ValueError(f"maxlag must be >= 0 seconds, got {maxlag}")
    lag = timedelta(seconds=maxlag)
    blocks: dict[str, list[int]] = {}
    for i in file_order(entries):
        blocks.setdefault(entries[i][0], []).append(i)  # dict keeps first-appearance order

    seqnums = [0] * len(entries)
    current = first - 1
    for members in blocks.values():
        texts = np.array([_sort_text(entries[i][1]) for i in members])
        ordered = [members[k] for k in np.argsort(texts)]
        previous: datetime | None = None
        for position, i in enumerate(ordered):
            date = entries[i][1]
            if position == 0 or not _joins(previous, date, lag):
                current += 1
            seqnums[i] = current
            previous = date
    return seqnums


def sequence_unit(item: MediaItem) -> str:
    """What an item forms sequences within: its group, except that a video is always a sequence of its own
    (DeepFaune's video mode never pools two videos)."""
    return f"{item.group}\x00{item.relpath}" if item.is_video else item.group


def sequence_blocks(items: Sequence[MediaItem]) -> list[list[MediaItem]]:
    """`items` cut into the blocks sequences never cross, in the order DeepFaune numbers them (by first
    name), each block in name order: a run can decide, write and forget one block after another."""
    blocks: dict[str, list[MediaItem]] = {}
    for item in sorted(items, key=lambda it: it.relpath):
        blocks.setdefault(sequence_unit(item), []).append(item)  # dict keeps first-appearance order
    return list(blocks.values())


def chunks(blocks: Iterable[list[MediaItem]], size: int) -> Iterator[list[MediaItem]]:
    """Whole blocks gathered into lists of at least `size` items (the last may be smaller)."""
    chunk: list[MediaItem] = []
    for block in blocks:
        chunk.extend(block)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
