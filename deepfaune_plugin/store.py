"""The result store: every file's raw model outputs, kept as the run goes, in one SQLite file.

Keyed by the file's identity (path relative to the source, size, mtime; a quick content hash
when only the mtime changed) and by the fingerprint of the models and settings that produced
it.  A run killed at any moment resumes where it stopped; a new threshold, language or host
re-decides from here without running a model.  Failures are not stored: they are retried.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .types import CONTAINER_DATE, EXIF_DATE, FILE_DATE, Detection, MediaItem, RawResult

SCHEMA_VERSION = 1
LOOKUP_BATCH = 500  # keys per query: under SQLite's oldest limit of 999 variables
_SAMPLE = 65536  # bytes hashed at each end of a file for its quick content hash


@dataclass(frozen=True)
class FileIdentity:
    relpath: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, item: MediaItem) -> "FileIdentity | None":
        try:
            st = os.stat(item.path)
        except OSError:
            return None
        return cls(item.relpath, st.st_size, st.st_mtime_ns)


def quick_hash(path: Path, size: int) -> str:
    """sha256 of the size and the first and last 64 KiB: enough to recognise a copied file."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_SAMPLE))
        if size > 2 * _SAMPLE:
            fh.seek(size - _SAMPLE)
            h.update(fh.read(_SAMPLE))
    return h.hexdigest()


def _array(values: np.ndarray | None) -> str | None:
    if values is None:
        return None
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.float32).tobytes()).decode("ascii")


def _unarray(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).copy()


_STORED_DATES = (EXIF_DATE, CONTAINER_DATE, FILE_DATE)  # found in the file itself; a host's date is re-applied


def _to_dict(raw: RawResult) -> dict:
    data = {
        "w": raw.width, "h": raw.height,
        "det": [[*d.box, d.conf, d.category, d.source] for d in raw.detections],
        "sel": raw.selected,
        "logits": _array(raw.logits), "bird": _array(raw.bird_logits),
        "warnings": raw.warnings,
    }
    if raw.date is not None and raw.date_source == EXIF_DATE:
        data["exif_date"] = raw.date.isoformat()
    elif raw.date is not None and raw.date_source in _STORED_DATES:
        data["date"], data["date_source"] = raw.date.isoformat(), raw.date_source
    if raw.frame_number is not None:
        data["frame"] = raw.frame_number
    if raw.frame_rate is not None:
        data["fps"] = raw.frame_rate
    if raw.failure is not None:  # only a video's unreadable frames: failed files are not stored
        data["failure"] = raw.failure
    if raw.frames:
        data["frames"] = [_to_dict(f) for f in raw.frames]
    return data


def _from_dict(relpath: str, data: dict) -> RawResult:
    raw = RawResult(
        relpath=relpath, width=data["w"], height=data["h"],
        detections=[Detection((d[0], d[1], d[2], d[3]), d[4], d[5], d[6]) for d in data["det"]],
        selected=data["sel"], logits=_unarray(data["logits"]), bird_logits=_unarray(data["bird"]),
        warnings=list(data.get("warnings", [])),
        failure=data.get("failure"), frame_number=data.get("frame"), frame_rate=data.get("fps"),
        frames=[_from_dict(relpath, f) for f in data.get("frames", [])],
    )
    if data.get("exif_date"):
        raw.date, raw.date_source = datetime.fromisoformat(data["exif_date"]), EXIF_DATE
    elif data.get("date"):
        raw.date, raw.date_source = datetime.fromisoformat(data["date"]), data["date_source"]
    return raw


def encode(raw: RawResult) -> str:
    """Lossless JSON: floats round-trip exactly, logits as their float32 bytes; a video's frames nested."""
    return json.dumps(_to_dict(raw), separators=(",", ":"))


def decode(relpath: str, payload: str) -> RawResult:
    return _from_dict(relpath, json.loads(payload))


class ResultStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS raw (
                fingerprint TEXT NOT NULL, relpath TEXT NOT NULL,
                size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, quick_hash TEXT,
                payload TEXT NOT NULL, PRIMARY KEY (fingerprint, relpath));
            """
        )
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: result store of schema {row[0]}, expected {SCHEMA_VERSION}; "
                               "delete it (it only caches model outputs) or use --store elsewhere")

    def close(self) -> None:
        self.db.close()

    def lookup(self, fingerprint: str, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        """Stored results of the files whose identity still matches; the others must be computed."""
        found: dict[str, RawResult] = {}
        wanted = {item.relpath: item for item in items}
        names = list(wanted)
        for start in range(0, len(names), LOOKUP_BATCH):  # by key: a chunk's cost, not the whole store's
            keys = names[start:start + LOOKUP_BATCH]
            rows = self.db.execute(
                "SELECT relpath, size, mtime_ns, quick_hash, payload FROM raw WHERE fingerprint=? AND relpath IN "
                f"({','.join('?' * len(keys))})", (fingerprint, *keys))
            for row in rows.fetchall():
                self._match(wanted[row[0]], *row, found)
        return found

    @staticmethod
    def _match(item: MediaItem, relpath: str, size: int, mtime_ns: int, qhash, payload: str,
               found: dict[str, RawResult]) -> None:
        """Keep a stored row whose file is still the same (size, then mtime or content)."""
        ident = FileIdentity.of(item)
        if ident is None or ident.size != size:
            return
        if ident.mtime_ns != mtime_ns:
            try:
                if qhash is None or quick_hash(item.path, size) != qhash:
                    return
            except OSError:
                return
        found[relpath] = decode(relpath, payload)

    def save(self, fingerprint: str, batch: Iterable[tuple[MediaItem, RawResult]]) -> int:
        """Store a batch in one transaction (failures skipped); returns how many were stored."""
        rows = []
        for item, raw in batch:
            ident = FileIdentity.of(item)
            if raw.failure is not None or ident is None:
                continue
            try:
                qhash = quick_hash(item.path, ident.size)
            except OSError:
                continue
            rows.append((fingerprint, item.relpath, ident.size, ident.mtime_ns, qhash, encode(raw)))
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)


def default_store_path(source: Path) -> Path:
    """One store per source, in the user cache (never inside the user's data)."""
    from .modelstore import user_cache_dir

    resolved = Path(source).resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return user_cache_dir() / "results" / f"{resolved.name or 'root'}-{key}.sqlite"
