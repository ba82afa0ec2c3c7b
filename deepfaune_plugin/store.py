"""The result store: every file's raw model outputs, kept as the run goes, in one SQLite file per user.

Keyed by the file's content (a BLAKE2b hash of all its bytes) and by the fingerprint of the models and settings
that produced it; the path is only kept to show and order.  So a season moved, renamed, mounted elsewhere or
reached through its TimelapseData.ddb / datapackage.json finds its results, and a file edited in place (e.g.
`exiftool -P`, same size and mtime) is computed again.  A run killed at any moment resumes where it stopped; a
new threshold, language or host re-decides from here without running a model.  Failures are not stored: they
are retried.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .types import CONTAINER_DATE, EXIF_DATE, FILE_DATE, AnimalLogits, Detection, HumanLabel, MediaItem, RawResult

SCHEMA_VERSION = 2
LOOKUP_BATCH = 500  # keys per query: under SQLite's oldest limit of 999 variables
_CHUNK = 1 << 20  # bytes read per step while hashing


def content_hash(path: Path) -> str:
    """BLAKE2b-128 of the size and every byte of the file.

    Why all of it: an in-place edit (camera dates fixed by exiftool) keeps size and mtime and may touch only the
    header, so nothing less than the whole content tells files apart.  The read is the one decoding needs anyway:
    the decoder reads the same bytes again from the OS page cache, and BLAKE2b runs at about 1 GB/s on one core
    (benchmarks/RESULTS.md gives the figure per image)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb", buffering=0) as fh:
        h.update(str(os.fstat(fh.fileno()).st_size).encode() + b"\0")
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class FileIdentity:
    """What makes two files the same for the store: their bytes (the path only orders the output)."""
    content: str
    size: int

    @classmethod
    def of(cls, item: MediaItem) -> "FileIdentity | None":
        try:
            return cls(content_hash(item.path), os.stat(item.path).st_size)
        except OSError:
            return None


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
    if raw.animals is not None:  # --every-animal only: a default run's entry is as it always was
        data["animals"] = [[a.index, _array(a.logits), _array(a.bird_logits)] for a in raw.animals]
    return data


def _from_dict(relpath: str, data: dict) -> RawResult:
    raw = RawResult(
        relpath=relpath, width=data["w"], height=data["h"],
        detections=[Detection((d[0], d[1], d[2], d[3]), d[4], d[5], d[6]) for d in data["det"]],
        selected=data["sel"], logits=_unarray(data["logits"]), bird_logits=_unarray(data["bird"]),
        warnings=list(data.get("warnings", [])),
        failure=data.get("failure"), frame_number=data.get("frame"), frame_rate=data.get("fps"),
        frames=[_from_dict(relpath, f) for f in data.get("frames", [])],
        animals=None if "animals" not in data else [
            AnimalLogits(index, _unarray(logits), _unarray(bird)) for index, logits, bird in data["animals"]],
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
    def __init__(self, path: Path, shared: bool = False):
        """`shared`: used from another thread than this one (the review server's; the caller serialises)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=not shared)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS raw (
                fingerprint TEXT NOT NULL, content TEXT NOT NULL, relpath TEXT NOT NULL,
                size INTEGER NOT NULL, stored_at REAL NOT NULL,
                payload TEXT NOT NULL, PRIMARY KEY (fingerprint, content));
            CREATE TABLE IF NOT EXISTS human (
                content TEXT NOT NULL, size INTEGER NOT NULL, relpath TEXT NOT NULL,
                label TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (content, size));
            """
        )
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: result store of schema {row[0]}, expected {SCHEMA_VERSION}; "
                               "delete it (it only caches model outputs) or use --store elsewhere")
        self._seen: dict[str, FileIdentity] = {}  # path -> identity hashed by lookup, reused by save
        self._last: dict[str, FileIdentity] = {}  # path -> identity, of the last lookup's files (human labels)

    def close(self) -> None:
        self.db.close()

    def _identity(self, item: MediaItem) -> FileIdentity | None:
        ident = self._seen.pop(str(item.path), None)
        return ident if ident is not None else FileIdentity.of(item)

    def lookup(self, fingerprint: str, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        """Stored results of the files whose content is known; the others must be computed.

        Each file is hashed once here; `save` reuses that hash, so a computed file is read once for its
        identity and once (from the page cache) by its decoder."""
        found: dict[str, RawResult] = {}
        wanted: dict[str, list[MediaItem]] = {}
        self._last = {}
        for item in items:
            ident = FileIdentity.of(item)
            if ident is None:
                continue  # unreadable now: computing it will say why
            self._seen[str(item.path)] = self._last[str(item.path)] = ident
            wanted.setdefault(ident.content, []).append(item)
        keys_all = list(wanted)
        for start in range(0, len(keys_all), LOOKUP_BATCH):  # by key: a chunk's cost, not the whole store's
            keys = keys_all[start:start + LOOKUP_BATCH]
            rows = self.db.execute(
                "SELECT content, payload FROM raw WHERE fingerprint=? AND content IN "
                f"({','.join('?' * len(keys))})", (fingerprint, *keys))
            for content, payload in rows.fetchall():
                for item in wanted[content]:  # identical copies share one stored result
                    found[item.relpath] = decode(item.relpath, payload)
                    self._seen.pop(str(item.path), None)
        return found

    def save(self, fingerprint: str, batch: Iterable[tuple[MediaItem, RawResult]]) -> int:
        """Store a batch in one transaction (failures skipped); returns how many were stored."""
        rows = []
        now = time.time()
        for item, raw in batch:
            if raw.failure is not None:
                self._seen.pop(str(item.path), None)
                continue
            ident = self._identity(item)
            if ident is None:
                continue
            rows.append((fingerprint, ident.content, item.relpath, ident.size, now, encode(raw)))
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)


    # -- what people decided (`deepfaune review`): by content too, so a label follows a moved or renamed file,
    # and apart from any model's outputs, so no new model or setting ever replaces it.

    def human_labels(self, items: Sequence[MediaItem]) -> dict[str, HumanLabel]:
        """The people's labels of `items`, by relpath (files nobody labelled are left out).  Asked of every chunk
        of every run: with no label kept at all (the usual case) it reads no file."""
        found: dict[str, HumanLabel] = {}
        if not self._has_human():
            return found
        wanted: dict[tuple[str, int], list[MediaItem]] = {}
        for item in items:
            ident = self._last.get(str(item.path)) or FileIdentity.of(item)
            if ident is not None:
                wanted.setdefault((ident.content, ident.size), []).append(item)
        keys_all = list(wanted)
        for start in range(0, len(keys_all), LOOKUP_BATCH):
            keys = [k for k, _ in keys_all[start:start + LOOKUP_BATCH]]
            rows = self.db.execute(f"SELECT content, size, label, reviewer, at FROM human WHERE content IN "
                                   f"({','.join('?' * len(keys))})", keys)
            for content, size, label, reviewer, at in rows.fetchall():
                for item in wanted.get((content, size), ()):
                    found[item.relpath] = HumanLabel(label, reviewer, datetime.fromisoformat(at))
        return found

    def _has_human(self) -> bool:
        return self.db.execute("SELECT 1 FROM human LIMIT 1").fetchone() is not None

    def set_human(self, entries: Iterable[tuple[MediaItem, str | None]], reviewer: str) -> int:
        """Record (or, with label None, forget) people's labels, all in one transaction; returns the files changed.
        A file that cannot be read now is refused (ValueError naming it): a label must name the bytes it is for."""
        rows, gone = [], []
        at = datetime.now().isoformat(timespec="seconds")
        for item, label in entries:
            ident = self._last.get(str(item.path)) or FileIdentity.of(item)
            if ident is None:
                raise ValueError(f"{item.relpath}: cannot be read, so its label cannot be kept")
            if label is None:
                gone.append((ident.content, ident.size))
            else:
                rows.append((ident.content, ident.size, item.relpath, label, reviewer, at))
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO human VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.db.executemany("DELETE FROM human WHERE content=? AND size=?", gone)
        return len(rows) + len(gone)


def default_store_path() -> Path:
    """One store per user, in the user cache (never inside the user's data), shared by every source: results
    are keyed by content, so the same files reached by another path or host find theirs."""
    from .models.installed import user_cache_dir

    return user_cache_dir() / "results" / "store.sqlite"


@dataclass(frozen=True)
class FingerprintUse:
    fingerprint: str
    entries: int
    payload_bytes: int
    newest: float


@dataclass(frozen=True)
class StoreInfo:
    path: Path
    file_bytes: int
    entries: int
    fingerprints: list[FingerprintUse]


def store_files(path: Path) -> list[Path]:
    """The store and the WAL files SQLite keeps beside it."""
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def store_info(path: Path) -> StoreInfo:
    """What the store holds, by models fingerprint (opened read-only: looking creates nothing)."""
    size = sum(p.stat().st_size for p in store_files(path))
    if not path.exists():
        return StoreInfo(path, 0, 0, [])
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT fingerprint, count(*), sum(length(payload)), max(stored_at) FROM raw "
                          "GROUP BY fingerprint ORDER BY count(*) DESC, fingerprint").fetchall()
    except sqlite3.Error as err:
        raise RuntimeError(f"{path}: not a readable result store ({err})") from err
    finally:
        db.close()
    uses = [FingerprintUse(fp, n, int(b or 0), float(t or 0)) for fp, n, b, t in rows]
    return StoreInfo(path, size, sum(u.entries for u in uses), uses)


def prune(store: ResultStore, keep: Sequence[str] = (), older_than_days: float | None = None,
          max_bytes: int | None = None) -> int:
    """Drop entries: of fingerprints not starting with one of `keep` (when given), stored more than
    `older_than_days` ago, then the oldest until the stored results fit in `max_bytes`.  Returns how many
    went; the file is compacted afterwards so the space really comes back."""
    before = store.db.execute("SELECT count(*) FROM raw").fetchone()[0]
    with store.db:
        store.db.execute("BEGIN")
        if keep:
            clause = " AND ".join("fingerprint NOT LIKE ? || '%'" for _ in keep)
            store.db.execute(f"DELETE FROM raw WHERE {clause}", tuple(keep))
        if older_than_days is not None:
            store.db.execute("DELETE FROM raw WHERE stored_at < ?", (time.time() - older_than_days * 86400,))
        if max_bytes is not None:
            total = 0
            drop_before = None
            for stored_at, length in store.db.execute(
                    "SELECT stored_at, length(payload) FROM raw ORDER BY stored_at DESC"):
                total += length
                if total > max_bytes:
                    drop_before = stored_at
                    break
            if drop_before is not None:
                store.db.execute("DELETE FROM raw WHERE stored_at <= ?", (drop_before,))
    after = store.db.execute("SELECT count(*) FROM raw").fetchone()[0]
    store.db.execute("VACUUM")
    return before - after
