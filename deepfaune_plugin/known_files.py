"""A file's content key, and the memory of it that spares reading an unchanged file again.

The result store finds a file's results by a hash of all its bytes (so a moved season finds them, and an edited
file does not).  Reading every byte of a season each time it is opened costs as much as a model would for small
files, and the disk's whole read time for camera-size ones; so the store remembers, per absolute path, the file's
status when it was read (size, mtime, ctime, inode, device) and the hash found.  A file whose status is the same
is not read again; any difference reads it again.  ctime is what makes this safe: the kernel sets it to the
current time on every change of the file (its bytes, its times, a rename over it), and no program can set it back,
so an in-place edit that restores size and mtime (`exiftool -P` writing in place, `touch -r`) still shows.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Sequence

from .types import MediaItem

_CHUNK = 1 << 20  # bytes read per step while hashing
BATCH = 500  # paths per query: under SQLite's oldest limit of 999 variables
#: A file changed less than this before it was read is not remembered: a second change within the same tick of
#: the file system's clock (a few ms; 2 s on FAT) would leave every time as it was (git's "racily clean" files).
RACY_NS = 3_000_000_000

TABLE = """
CREATE TABLE IF NOT EXISTS known_files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, device INTEGER NOT NULL, content TEXT NOT NULL);
"""


def hash_file(path) -> tuple[str, os.stat_result]:
    """BLAKE2b-128 of the size and every byte of the file, and the file's status taken before the first byte was
    read (so a change during the read shows as another status next time).

    Why all of it: an in-place edit (camera dates fixed by exiftool) keeps size and mtime and may touch only the
    header, so nothing less than the whole content tells files apart.  The read is the one decoding needs anyway:
    the decoder reads the same bytes again from the OS page cache, and BLAKE2b runs at about 1 GB/s on one core
    (benchmarks/RESULTS.md gives the figure per image)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb", buffering=0) as fh:
        status = os.fstat(fh.fileno())
        h.update(str(status.st_size).encode() + b"\0")
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest(), status


def content_hash(path) -> str:
    """The file's content key (`hash_file`), read now."""
    return hash_file(path)[0]


@dataclass(frozen=True)
class FileIdentity:
    """What makes two files the same for the store: their bytes (the path only orders the output)."""
    content: str
    size: int


def _int64(value: int) -> int:
    """An inode or device number as SQLite can keep it (signed 64 bits; some file systems give larger)."""
    return ((value + (1 << 63)) % (1 << 64)) - (1 << 63)


def signature(status: os.stat_result) -> tuple[int, int, int, int, int]:
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns, _int64(status.st_ino), _int64(status.st_dev))


def path_key(item: MediaItem) -> str:
    """The file's absolute path as SQLite can keep it: a name that is not UTF-8 (its bytes kept by Python as
    surrogates, which SQLite's text refuses) is written "bytes:" + its bytes in hex. An absolute path starts with
    "/" or a drive, never "bytes:", so two files never share a key."""
    path = os.path.abspath(item.path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "bytes:" + os.fsencode(path).hex()
    return path


def path_keys(items: Sequence[MediaItem]) -> list[str]:
    """`path_key` of each item; on POSIX the folder's part made absolute once per folder, not once per file (a
    season is 100,000 files in a few hundred folders).  The same keys: a plain name ("." and ".." aside) joined to
    a normalised absolute folder is already normal."""
    if os.name != "posix":
        return [path_key(item) for item in items]
    folders: dict[str, str | None] = {}
    keys = []
    for item in items:
        head, name = os.path.split(os.fspath(item.path))
        if head not in folders:
            absolute = os.path.abspath(head or os.curdir)
            folders[head] = absolute if _utf8(absolute) else None
        folder = folders[head]
        if folder is None or name in ("", os.curdir, os.pardir) or not _utf8(name):
            keys.append(path_key(item))
        else:
            keys.append(os.path.join(folder, name))
    return keys


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class KnownFiles:
    """The store's memory of the files it has read: path -> (status, content key).  Only a cache: dropping it
    costs one read of each file, never a result or a label."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.db.executescript(TABLE)
        self.edited: list[str] = []  # relpaths found with other bytes than the store last read at their path
        self.read = 0  # files read for their content (the others were known)

    def identities(self, items: Sequence[MediaItem]) -> list[FileIdentity | None]:
        """The content key of each item, in their order (None: unreadable now): from memory where the file's
        status is the one it had when it was read, else read now (and remembered)."""
        status: list[tuple[str, os.stat_result] | None] = []
        for item, key in zip(items, path_keys(items)):
            try:
                status.append((key, os.stat(item.path)))
            except OSError:
                status.append(None)
        known = self._remembered([s[0] for s in status if s is not None])
        found: list[FileIdentity | None] = []
        rows = []
        for item, stat in zip(items, status):
            found.append(None)
            if stat is None:
                continue
            key, now = stat
            before = known.get(key)
            if before is not None and before[:5] == signature(now):
                found[-1] = FileIdentity(before[5], now.st_size)
                continue
            started = time.time_ns()
            try:
                content, read = hash_file(item.path)
            except OSError:
                continue
            self.read += 1
            if before is not None and before[5] != content:
                self.edited.append(item.relpath)
            found[-1] = FileIdentity(content, read.st_size)
            if read.st_ctime_ns < started - RACY_NS:
                rows.append((key, *signature(read), content))
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO known_files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return found

    def identity(self, item: MediaItem) -> FileIdentity | None:
        return self.identities([item])[0]

    def _remembered(self, keys: Sequence[str]) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        for start in range(0, len(keys), BATCH):
            part = keys[start:start + BATCH]
            rows = self.db.execute("SELECT path, size, mtime_ns, ctime_ns, inode, device, content FROM known_files "
                                   f"WHERE path IN ({','.join('?' * len(part))})", part)
            for path, *rest in rows.fetchall():
                out[path] = tuple(rest)
        return out

    def take_edited(self) -> list[str]:
        """The files found edited since the store last read them (each said once: the list is emptied)."""
        edited, self.edited = self.edited, []
        return edited


def forget_unused(db: sqlite3.Connection) -> None:
    """Drop what is remembered of files whose content has neither a stored result nor a person's label."""
    db.execute("DELETE FROM known_files WHERE content NOT IN (SELECT content FROM raw) "
               "AND content NOT IN (SELECT content FROM human)")
