"""The result store: every file's raw model outputs, kept as the run goes, in one SQLite file per user.

Keyed by the file's content (a BLAKE2b hash of all its bytes) and by the fingerprint of the models and settings
that produced it; the path is only kept to show and order.  So a season moved, renamed, mounted elsewhere or
reached through its TimelapseData.ddb / datapackage.json finds its results, and a file edited in place (e.g.
`exiftool -P`, same size and mtime) is computed again.  What the hash of each file was, with the file's status when
it was read, is remembered (known_files.py), so an unchanged file is not read again.  A run killed at any moment resumes where it stopped; a
new threshold, language or host re-decides from here without running a model.  Failures are not stored: they
are retried.

Beside each result it keeps what the classifier's heads read for each classified crop (the `features` table:
float16, about 2 KiB per crop for DeepFaune's ViT-L), so a head fitted later on people's labels can re-decide a
season without running a model; `read_features` reads them back in bulk.

It also keeps what people decided in `deepfaune review` (the `human` table): those labels are no cache, nothing
can compute them again, so `store clear` keeps them unless asked by name (`--drop-labels`, after writing them to
a CSV).  The file is marked as ours (PRAGMA application_id): any other file given as `--store` (a Timelapse .ddb,
another program's database) is refused before anything is written to it.
"""
from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from dataclasses import astuple, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import DeepfauneError
from .bulk import without_gc
from .known_files import FileIdentity, KnownFiles, forget_unused
from .known_files import content_hash as content_hash  # its name here since it was written (RESULTS.md)
from .types import (ANIMAL, CONTAINER_DATE, EXIF_DATE, FILE_DATE, HUMAN_FIELDS, PERSON, VEHICLE, AnimalLogits,
                    REPEAT_CONFIRM, REPEAT_RESTORE, Detection, HumanBoxes, HumanFields, HumanLabel, MediaItem,
                    RawResult, RepeatDecision)

SCHEMA_VERSION = 2
#: PRAGMA application_id of a result store ("DFrs"): what tells our file from any other SQLite database.
APPLICATION_ID = 0x44467273
_SQLITE_MAGIC = b"SQLite format 3\x00"
PAGE_SIZE = 16384  # of a new store (SQLite's default is 4096); a store made before keeps its own
LOOKUP_BATCH = 500  # keys per query: under SQLite's oldest limit of 999 variables


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


FLOAT16_MAX = float(np.finfo(np.float16).max)  # features beyond it (none seen) are clipped, never made inf


def feature_rows(fingerprint: str, content: str, raw: RawResult) -> list[tuple]:
    """(fingerprint, content, frame, box, dim, float16 bytes) of every classified crop of `raw`: an image's
    selected box (frame -1), each sampled frame's of a video (repeated frames once)."""
    rows: dict[tuple[int, int], tuple] = {}
    for r in (raw.frames or [raw]):
        if r.features is None or r.selected is None:
            continue
        frame = -1 if not raw.frames else int(r.frame_number if r.frame_number is not None else -1)
        values = np.clip(np.asarray(r.features, dtype=np.float32).reshape(-1), -FLOAT16_MAX, FLOAT16_MAX)
        rows[(frame, r.selected)] = (fingerprint, content, frame, int(r.selected), int(values.size),
                                     values.astype("<f2").tobytes())
    return list(rows.values())


def encode(raw: RawResult) -> str:
    """Lossless JSON: floats round-trip exactly, logits as their float32 bytes; a video's frames nested."""
    return json.dumps(_to_dict(raw), separators=(",", ":"))


def decode(relpath: str, payload: str) -> RawResult:
    return _from_dict(relpath, json.loads(payload))


class StoreError(DeepfauneError, RuntimeError):
    """The store cannot be used as it is (not ours, of another schema, not writable): the message says why and
    what to do."""


def check_ours(path: Path) -> None:
    """Refuse, before anything is written, a file that is not a result store: a new or empty file is fine, an
    SQLite database is ours when it carries our application_id (or, from before the id, our meta table's
    schema row); anything else (a Timelapse .ddb, another program's database, a photo) is left untouched."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return
        if not path.is_file():
            raise StoreError(f"result store {path}: not a file; give --store a file name")
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as err:
        raise StoreError(f"result store {path}: cannot be read ({err.strerror or err})") from None
    refuse = (f"result store {path}: not a deepfaune result store ({{why}}); nothing was written to it: "
              "give --store a new file name (or leave --store out for the user's own store)")
    if head != _SQLITE_MAGIC:
        raise StoreError(refuse.format(why="not an SQLite file"))
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            if app_id == APPLICATION_ID:
                return
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            ours = app_id == 0 and {"meta", "raw"} <= tables and db.execute(
                "SELECT 1 FROM meta WHERE key='schema'").fetchone() is not None
        finally:
            db.close()
    except sqlite3.Error as err:  # e.g. a store of ours in WAL mode on a read-only disk: say that, not "not ours"
        why = unwritable(path)
        raise StoreError(f"result store {path}: SQLite cannot open it to check that it is a result store ({err})"
                         + (f": {why}" if why else "") + "; nothing was written to it") from None
    if not ours:
        raise StoreError(refuse.format(why="an SQLite database of another program (e.g. a data manager's own database)"))


def unwritable(path: Path) -> str | None:
    """Why the store at `path` cannot be written (a read-only file, folder or disk), or None."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"the disk holding {folder} is read-only"
    except (OSError, AttributeError):  # no statvfs (Windows): os.access below says it
        pass
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    return None


def _not_writable(path: Path, why: str) -> StoreError:
    return StoreError(f"result store {path}: cannot be written: {why}; run with --no-store (nothing kept "
                      "between runs) or --store PATH on a writable disk")


#: People's labels: one row per reviewer per file (two reviewers' labels of a file live side by side), with
#: what else they recorded (HUMAN_FIELDS; "" / NULL: not recorded).
HUMAN_TABLE = """CREATE TABLE {exists}{name} (
    content TEXT NOT NULL, size INTEGER NOT NULL, relpath TEXT NOT NULL,
    label TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL,
    count INTEGER, sex TEXT NOT NULL DEFAULT '', life_stage TEXT NOT NULL DEFAULT '',
    behaviour TEXT NOT NULL DEFAULT '', individual TEXT NOT NULL DEFAULT '', comment TEXT NOT NULL DEFAULT '',
    species_counts TEXT NOT NULL DEFAULT '', PRIMARY KEY (content, size, reviewer));"""
_HUMAN_ROW = ("content", "size", "relpath", "label", "reviewer", "at", *HUMAN_FIELDS)
#: The boxes people drew in `deepfaune review`, one record per file and reviewer (a JSON list of
#: [category, x, y, w, h], fractions of the image): people's data like their labels, kept by content.
HUMAN_BOXES_TABLE = """CREATE TABLE IF NOT EXISTS human_boxes (
    content TEXT NOT NULL, size INTEGER NOT NULL, relpath TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL,
    boxes TEXT NOT NULL, PRIMARY KEY (content, size, reviewer));"""
#: What people decided about the places `--drop-repeats` set aside (issue 32): one record per place and reviewer,
#: the place named by its station and its box (a JSON [x1, y1, x2, y2], fractions of the image).
REPEAT_DECISIONS_TABLE = """CREATE TABLE IF NOT EXISTS repeat_decisions (
    station TEXT NOT NULL, box TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL, decision TEXT NOT NULL,
    PRIMARY KEY (station, box, reviewer));"""
MAX_REPEAT_DECISIONS = 100_000  # far more places than a season has: a store holding more was not made by us
MAX_HUMAN_BOXES = 200  # boxes one person may draw on one file: far more than any picture holds


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _migrate_human(db: sqlite3.Connection) -> None:
    """A store of before people's fields (one label per file, whoever gave it) takes the new table, every label
    kept as it was, in one transaction: a crash leaves the old table whole. A store of before counts per species
    gains that column (empty: not recorded), its rows untouched."""
    if "count" in _columns(db, "human"):
        if "species_counts" not in _columns(db, "human"):
            with db:
                db.execute("BEGIN IMMEDIATE")
                if "species_counts" not in _columns(db, "human"):  # another process may have added it meanwhile
                    db.execute("ALTER TABLE human ADD COLUMN species_counts TEXT NOT NULL DEFAULT ''")
        return
    with db:
        db.execute("BEGIN IMMEDIATE")
        if "count" in _columns(db, "human"):  # another process migrated it meanwhile
            return
        db.execute(HUMAN_TABLE.format(name="human_new", exists=""))
        db.execute("INSERT INTO human_new (content, size, relpath, label, reviewer, at) "
                   "SELECT content, size, relpath, label, reviewer, at FROM human")
        db.execute("DROP TABLE human")
        db.execute("ALTER TABLE human_new RENAME TO human")


class ResultStore:
    def __init__(self, path: Path, shared: bool = False):
        """`shared`: used from another thread than this one (the review server's; the caller serialises)."""
        self.path = Path(path)
        why = unwritable(self.path)
        if why:
            raise _not_writable(self.path, why)
        check_ours(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=not shared)
            self._create()
            self.known = KnownFiles(self.db)
        except (OSError, sqlite3.OperationalError) as err:  # e.g. "unable to open database file"
            raise _not_writable(self.path, unwritable(self.path) or str(err)) from err
        self._seen: dict[str, FileIdentity] = {}  # path -> identity hashed by lookup, reused by save
        self._last: dict[str, FileIdentity] = {}  # path -> identity, of the last lookup's files (human labels)

    def _create(self) -> None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if has_meta else None
        if row is not None and str(row[0]) != str(SCHEMA_VERSION):  # said before anything is written to it
            self.db.close()
            raise StoreError(f"result store {self.path}: of schema {row[0]}, expected {SCHEMA_VERSION}; "
                             "clear it (`deepfaune store clear --store FILE`) or use --store elsewhere")
        if not has_meta:  # a new file: 16 KiB pages hold 7 features rows (2 KiB each) where 4 KiB pages hold one
            self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # (benchmarks/RESULTS.md, issue 34); before WAL
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS raw (
                fingerprint TEXT NOT NULL, content TEXT NOT NULL, relpath TEXT NOT NULL,
                size INTEGER NOT NULL, stored_at REAL NOT NULL,
                payload TEXT NOT NULL, PRIMARY KEY (fingerprint, content));
            CREATE TABLE IF NOT EXISTS features (
                fingerprint TEXT NOT NULL, content TEXT NOT NULL, frame INTEGER NOT NULL, box INTEGER NOT NULL,
                dim INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (fingerprint, content, frame, box));
            """
        )
        self.db.executescript(HUMAN_TABLE.format(name="human", exists="IF NOT EXISTS "))
        _migrate_human(self.db)
        self.db.executescript(HUMAN_BOXES_TABLE)
        self.db.executescript(REPEAT_DECISIONS_TABLE)
        self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def _identity(self, item: MediaItem) -> FileIdentity | None:
        ident = self._seen.pop(str(item.path), None)
        return ident if ident is not None else self.known.identity(item)

    def _looked_up(self, item: MediaItem) -> FileIdentity | None:
        """The identity found by the last lookup, else known now (a stat, and a read only if it changed)."""
        return self._last.get(str(item.path)) or self.known.identity(item)

    def contents(self, items: Sequence[MediaItem]) -> dict[str, str]:
        """relpath -> the content key of each readable item (what `read_features` and the labels are keyed by);
        from memory where the file is as it was when last read."""
        return {item.relpath: ident.content for item, ident in zip(items, self.known.identities(items))
                if ident is not None}

    def take_edited(self) -> list[str]:
        """Files found with other bytes than this store last read at their path (each said once)."""
        return self.known.take_edited()

    @without_gc()  # a chunk, or a whole season, of stored results at once (bulk.py)
    def lookup(self, fingerprint: str, items: Sequence[MediaItem]) -> dict[str, RawResult]:
        """Stored results of the files whose content is known; the others must be computed.

        Each file's identity is found once here (read only when the store has not seen it as it is now); `save`
        reuses it, so a computed file is read once for its identity and once (from the page cache) by its
        decoder."""
        found: dict[str, RawResult] = {}
        wanted: dict[str, list[MediaItem]] = {}
        self._last = {}
        for item, ident in zip(items, self.known.identities(items)):
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
                    try:
                        found[item.relpath] = decode(item.relpath, payload)
                    except (ValueError, KeyError, TypeError, IndexError):  # a damaged entry: computed again
                        continue
                    self._seen.pop(str(item.path), None)
        return found

    def save(self, fingerprint: str, batch: Iterable[tuple[MediaItem, RawResult]], features: bool = True) -> int:
        """Store a batch in one transaction (failures skipped); returns how many were stored.  With `features`,
        the classifier's features of each classified crop too (those of a model that gives them)."""
        rows, feats = [], []
        now = time.time()
        for item, raw in batch:
            if raw.failure is not None:
                self._seen.pop(str(item.path), None)
                continue
            ident = self._identity(item)
            if ident is None:
                continue
            rows.append((fingerprint, ident.content, item.relpath, ident.size, now, encode(raw)))
            if features:
                feats.extend(feature_rows(fingerprint, ident.content, raw))
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
                if feats:  # a recomputed entry's features are its new ones only
                    self.db.executemany("DELETE FROM features WHERE fingerprint=? AND content=?",
                                        sorted({r[:2] for r in feats}))
                    self.db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)", feats)
        return len(rows)


    # -- what people decided (`deepfaune review`): by content too, so a label follows a moved or renamed file,
    # and apart from any model's outputs, so no new model or setting ever replaces it.

    def human_labels(self, items: Sequence[MediaItem]) -> dict[str, HumanLabel]:
        """The label that decides each labelled file of `items`, by relpath (files nobody labelled are left
        out): the latest given, its `others` holding the other reviewers' labels that say something else.
        Asked of every chunk of every run: with no label kept at all (the usual case) it reads no file."""
        return {rel: decider(labels) for rel, labels in self.human_records(items).items()}

    def human_records(self, items: Sequence[MediaItem]) -> dict[str, list[HumanLabel]]:
        """Every reviewer's label of each labelled file of `items`, by relpath, the latest first."""
        found: dict[str, list[HumanLabel]] = {}
        written: dict[int, int] = {}  # id of a label -> its row's rowid: the order labels were written in
        if not self._has_human():
            return found
        wanted = self._by_content(items)
        keys_all = list(wanted)
        for start in range(0, len(keys_all), LOOKUP_BATCH):
            keys = [k for k, _ in keys_all[start:start + LOOKUP_BATCH]]
            rows = self.db.execute(f"SELECT rowid, content, size, label, reviewer, at, {', '.join(HUMAN_FIELDS)} "
                                   f"FROM human WHERE content IN ({','.join('?' * len(keys))})", keys)
            for order, content, size, label, reviewer, at, *values in rows.fetchall():
                for item in wanted.get((content, size), ()):
                    given: dict[str, Any] = {n: v if v is not None or n == "count" else ""
                                             for n, v in zip(HUMAN_FIELDS, values)}
                    fields = HumanFields(**given)
                    found.setdefault(item.relpath, []).append(
                        HumanLabel(label, reviewer, self._label_date(item.relpath, label, at), fields))
                    written[id(found[item.relpath][-1])] = order
        for labels in found.values():  # the latest given first; within one second, the one written last
            labels.sort(key=lambda h: (h.at, written[id(h)]), reverse=True)
        return found

    def _by_content(self, items: Sequence[MediaItem]) -> dict[tuple[str, int], list[MediaItem]]:
        """`items` by (content, size): what people's labels and boxes are kept by (unreadable files left out)."""
        wanted: dict[tuple[str, int], list[MediaItem]] = {}
        for item in items:
            ident = self._looked_up(item)
            if ident is not None:
                wanted.setdefault((ident.content, ident.size), []).append(item)
        return wanted

    def _label_date(self, relpath: str, label: str, at) -> datetime:
        """When a person gave a label; a damaged date is refused by name (the label is a person's work: never
        dropped nor given a made-up date)."""
        try:
            return datetime.fromisoformat(at)
        except (TypeError, ValueError):
            raise StoreError(f"result store {self.path}: the label {label!r} of {relpath} has a malformed "
                             f"date {at!r} (was the store edited?); save the labels and remove them with "
                             "`deepfaune store clear --drop-labels`") from None

    def _has_human(self) -> bool:
        return self.db.execute("SELECT 1 FROM human LIMIT 1").fetchone() is not None

    def _ident(self, item: MediaItem) -> FileIdentity:
        ident = self._looked_up(item)
        if ident is None:
            raise ValueError(f"{item.relpath}: cannot be read, so its label cannot be kept")
        return ident

    def set_human(self, entries: Iterable[tuple[MediaItem, str | None]], reviewer: str,
                  fields: HumanFields | None = None) -> int:
        """Record (or, with label None, forget) `reviewer`'s labels, all in one transaction; returns the files
        changed. Another reviewer's label of the same file stays beside it. `fields`: what else they recorded
        (None: what this reviewer recorded before is kept). A file that cannot be read now is refused
        (ValueError naming it): a label must name the bytes it is for."""
        rows, gone = [], []
        at = datetime.now().isoformat(timespec="seconds")
        for item, label in entries:
            ident = self._ident(item)
            if label is None:
                gone.append((ident.content, ident.size, reviewer))
            else:
                rows.append((ident.content, ident.size, item.relpath, label, reviewer, at,
                             *(() if fields is None else astuple(fields))))
        names = _HUMAN_ROW[:6] + (HUMAN_FIELDS if fields is not None else ())
        update = ", ".join(f"{n}=excluded.{n}" for n in names if n not in ("content", "size", "reviewer"))
        # a label changed now is the latest even within the second `at` records: its row moves last (rowid)
        update += ", rowid=(SELECT max(rowid) + 1 FROM human)"
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT INTO human ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
                                f"ON CONFLICT (content, size, reviewer) DO UPDATE SET {update}", rows)
            self.db.executemany("DELETE FROM human WHERE content=? AND size=? AND reviewer=?", gone)
        return len(rows) + len(gone)

    def put_human(self, labels: Iterable[tuple[MediaItem, HumanLabel]]) -> int:
        """Keep labels as given (their reviewer, date and fields: an import), replacing that reviewer's label of
        each file, all in one transaction (a refusal keeps none). Returns how many."""
        rows = self._human_rows(labels)
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT OR REPLACE INTO human ({', '.join(_HUMAN_ROW)}) "
                                f"VALUES ({', '.join('?' * len(_HUMAN_ROW))})", rows)
        return len(rows)

    def restore_human(self, reviewer: str, previous: Iterable[tuple[MediaItem, HumanLabel | None]]) -> int:
        """Put `reviewer`'s labels of these files back as they were (the review's undo of a batch): each
        HumanLabel as it was (its date and fields), None where the file had no label of theirs; one
        transaction (a file that cannot be read now refuses all, ValueError naming it). Returns how many."""
        previous = list(previous)
        rows = self._human_rows((item, h) for item, h in previous if h is not None)
        gone = [(ident.content, ident.size, reviewer)
                for ident in (self._ident(item) for item, h in previous if h is None)]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM human WHERE content=? AND size=? AND reviewer=?", gone)
            self.db.executemany(f"INSERT OR REPLACE INTO human ({', '.join(_HUMAN_ROW)}) "
                                f"VALUES ({', '.join('?' * len(_HUMAN_ROW))})", rows)
        return len(rows) + len(gone)

    def _human_rows(self, labels: Iterable[tuple[MediaItem, HumanLabel]]) -> list[tuple]:
        rows = []
        for item, h in labels:
            ident = self._ident(item)
            rows.append((ident.content, ident.size, item.relpath, h.key, h.reviewer,
                         h.at.isoformat(timespec="seconds"), *astuple(h.fields)))
        return rows


    # -- the boxes people drew (`deepfaune review`): beside their labels, by content, one record per reviewer

    def human_boxes(self, items: Sequence[MediaItem]) -> dict[str, HumanBoxes]:
        """The boxes that decide each file of `items` a person drew boxes for, by relpath: the latest drawn
        (another reviewer's earlier drawing stays in the store). With none kept at all it reads no file."""
        found: dict[str, HumanBoxes] = {}
        if self.db.execute("SELECT 1 FROM human_boxes LIMIT 1").fetchone() is None:
            return found
        wanted = self._by_content(items)
        keys_all = [k for k, _ in wanted]
        for start in range(0, len(keys_all), LOOKUP_BATCH):
            keys = keys_all[start:start + LOOKUP_BATCH]
            rows = self.db.execute("SELECT content, size, reviewer, at, boxes FROM human_boxes "
                                   f"WHERE content IN ({','.join('?' * len(keys))})", keys)
            for content, size, reviewer, at, text in rows.fetchall():
                for item in wanted.get((content, size), ()):
                    drawn = HumanBoxes(_boxes_from_text(self.path, item.relpath, text), reviewer,
                                       self._label_date(item.relpath, "boxes", at))
                    old = found.get(item.relpath)
                    if old is None or (drawn.at, drawn.reviewer) > (old.at, old.reviewer):
                        found[item.relpath] = drawn
        return found

    def set_human_boxes(self, item: MediaItem, boxes: Sequence[tuple[int, Sequence[float]]] | None,
                        reviewer: str) -> None:
        """Keep `reviewer`'s boxes of one file (an empty list: no box at all; None: forget them, the detector's
        show again). A file that cannot be read now is refused (ValueError naming it)."""
        ident = self._ident(item)
        with self.db:
            self.db.execute("BEGIN")
            if boxes is None:
                self.db.execute("DELETE FROM human_boxes WHERE content=? AND size=? AND reviewer=?",
                                (ident.content, ident.size, reviewer))
                return
            text = json.dumps([[int(c), *(round(float(v), 6) for v in b)] for c, b in boxes])
            self.db.execute("INSERT INTO human_boxes (content, size, relpath, reviewer, at, boxes) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (content, size, reviewer) DO UPDATE SET "
                            "relpath=excluded.relpath, at=excluded.at, boxes=excluded.boxes",
                            (ident.content, ident.size, item.relpath, reviewer,
                             datetime.now().isoformat(timespec="seconds"), text))


    # -- what people decided about the places set aside as repeats (issue 32): by station and place

    def repeat_decisions(self) -> list[RepeatDecision]:
        """Every reviewer's decision on every place (a small table: one row per place a person looked at)."""
        rows = self.db.execute("SELECT station, box, reviewer, at, decision FROM repeat_decisions "
                               "ORDER BY station, box, reviewer LIMIT ?", (MAX_REPEAT_DECISIONS + 1,)).fetchall()
        if len(rows) > MAX_REPEAT_DECISIONS:
            raise StoreError(f"result store {self.path}: over {MAX_REPEAT_DECISIONS:,} decisions on repeats (was "
                             "the store edited?)")
        out = []
        for station, box, reviewer, at, decision in rows:
            where = f"the repeat decision at station {station!r}"
            if decision not in (REPEAT_CONFIRM, REPEAT_RESTORE):
                raise StoreError(f"result store {self.path}: {where} is {decision!r}, neither {REPEAT_CONFIRM!r} "
                                 f"nor {REPEAT_RESTORE!r} (was the store edited?)")
            out.append(RepeatDecision(str(station), _place_from_text(self.path, where, box), decision, str(reviewer),
                                      self._label_date(where, decision, at)))
        return out

    def set_repeat_decision(self, station: str, box: Sequence[float], decision: str | None, reviewer: str) -> None:
        """Keep `reviewer`'s decision on one place (None: forget it; the run's own rule decides again)."""
        if decision not in (REPEAT_CONFIRM, REPEAT_RESTORE, None):
            raise ValueError(f"a repeat decision is {REPEAT_CONFIRM!r} or {REPEAT_RESTORE!r}, not {decision!r}")
        key = place_text(box)
        with self.db:
            self.db.execute("BEGIN")
            if decision is None:
                self.db.execute("DELETE FROM repeat_decisions WHERE station=? AND box=? AND reviewer=?",
                                (station, key, reviewer))
                return
            self.db.execute("INSERT INTO repeat_decisions (station, box, reviewer, at, decision) VALUES "
                            "(?, ?, ?, ?, ?) ON CONFLICT (station, box, reviewer) DO UPDATE SET at=excluded.at, "
                            "decision=excluded.decision",
                            (station, key, reviewer, datetime.now().isoformat(timespec="seconds"), decision))


def place_text(box: Sequence[float]) -> str:
    """A place's box as the store keys it: four fractions, 5 decimals (a place, not a pixel)."""
    return json.dumps([round(float(v), 5) for v in box])


def _place_from_text(path: Path, where: str, text: str) -> tuple[float, float, float, float]:
    try:
        data = json.loads(text)
        if not (isinstance(data, list) and len(data) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in data)):
            raise ValueError(f"{text[:60]!r} is not four fractions of the image")
    except (ValueError, TypeError) as err:
        raise StoreError(f"result store {path}: {where} has a malformed box ({err}; was the store edited?)") from None
    return (float(data[0]), float(data[1]), float(data[2]), float(data[3]))


def _boxes_from_text(path: Path, relpath: str, text: str) -> tuple[tuple[int, tuple[float, float, float, float]], ...]:
    """A human_boxes record read back; one not as written (an edited store) is refused by name, never guessed."""
    try:
        data = json.loads(text)
        if not isinstance(data, list) or len(data) > MAX_HUMAN_BOXES:
            raise ValueError("not a list of at most %d boxes" % MAX_HUMAN_BOXES)
        out = []
        for entry in data:
            category, *box = entry
            if category not in (ANIMAL, PERSON, VEHICLE) or len(box) != 4 or not all(
                    isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in box):
                raise ValueError(f"box {entry!r}")
            out.append((int(category), (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
        return tuple(out)
    except (ValueError, TypeError) as err:
        raise StoreError(f"result store {path}: the boxes a person drew on {relpath} are malformed ({err}; was "
                         "the store edited?)") from None


def decider(labels: Sequence[HumanLabel]) -> HumanLabel:
    """Of one file's labels (the latest first), the one that decides its outputs: the latest, carrying in
    `others` the other reviewers' labels that say something else (a conflict, shown side by side)."""
    latest = labels[0]
    others = tuple(h for h in labels[1:] if (h.key, h.fields) != (latest.key, latest.fields))
    return replace(latest, others=others) if others else latest


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
    feature_crops: int = 0  # classified crops with features kept
    feature_bytes: int = 0


@dataclass(frozen=True)
class StoreInfo:
    path: Path
    file_bytes: int
    entries: int
    fingerprints: list[FingerprintUse]
    labels: int = 0  # people's labels (`deepfaune review`): no cache, nothing computes them again


def store_files(path: Path) -> list[Path]:
    """The store and the WAL files SQLite keeps beside it."""
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def _read_only(path: Path) -> sqlite3.Connection:
    check_ours(path)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def store_info(path: Path) -> StoreInfo:
    """What the store holds, by models fingerprint, and how many people's labels (opened read-only: looking
    creates nothing)."""
    size = sum(p.stat().st_size for p in store_files(path))
    if not path.exists():
        return StoreInfo(path, 0, 0, [])
    db = _read_only(path)
    try:
        rows = db.execute("SELECT fingerprint, count(*), sum(length(payload)), max(stored_at) FROM raw "
                          "GROUP BY fingerprint ORDER BY count(*) DESC, fingerprint").fetchall()
        has_human = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='human'").fetchone()
        labels = db.execute("SELECT count(*) FROM human").fetchone()[0] if has_human else 0
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='human_boxes'").fetchone():
            labels += db.execute("SELECT count(*) FROM human_boxes").fetchone()[0]  # people's boxes: kept alike
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='repeat_decisions'").fetchone():
            labels += db.execute("SELECT count(*) FROM repeat_decisions").fetchone()[0]  # their word on repeats
        feats = {fp: (n, int(b or 0)) for fp, n, b in db.execute(
            "SELECT fingerprint, count(*), sum(length(data)) FROM features GROUP BY fingerprint")} \
            if _has_features(db) else {}
    except sqlite3.Error as err:
        raise StoreError(f"result store {path}: not a readable result store ({err})") from err
    finally:
        db.close()
    uses = [FingerprintUse(fp, n, int(b or 0), float(t or 0), *feats.get(fp, (0, 0))) for fp, n, b, t in rows]
    return StoreInfo(path, size, sum(u.entries for u in uses), uses, labels)


def _has_features(db: sqlite3.Connection) -> bool:
    """Whether the store has the features table (a store last written before issue 34 has not)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='features'").fetchone() is not None


@dataclass(frozen=True)
class StoredFeatures:
    """The kept features of one models fingerprint, one row per classified crop, ordered by (content, frame, box).

    `content` is the store's key of the file (`content_hash`; the people's labels of `deepfaune review` are keyed by
    it too), `frame` the video frame (-1 for an image), `box` the index of the classified box in that result's
    detections, `values` the features as float16 [rows, dim] (cast to float32 before fitting)."""

    fingerprint: str
    content: tuple[str, ...]
    frame: np.ndarray  # int32 [rows]
    box: np.ndarray  # int32 [rows]
    values: np.ndarray  # float16 [rows, dim]

    def __len__(self) -> int:
        return len(self.content)


def read_features(path: Path, fingerprint: str, contents: Iterable[str] | None = None) -> StoredFeatures:
    """The features kept under `fingerprint` (the backend's `BackendDescription.fingerprint`, or one from `store
    info`; for detector mode "existing", each file's `inference.item_fingerprint`, as its results), of every file or
    of the files whose `content` keys are given; opened read-only (nothing is created).

    A store of before issue 34, or models without the `features` output, gives none (0 rows).  Refuses (StoreError)
    a fingerprint whose rows disagree on their width: one fingerprint is one model."""
    db = _read_only(path)
    try:
        rows: list[tuple] = []
        if _has_features(db):
            query = "SELECT content, frame, box, dim, data FROM features WHERE fingerprint=?"
            if contents is None:
                rows = db.execute(query, (fingerprint,)).fetchall()
            else:
                keys = sorted(set(contents))
                for start in range(0, len(keys), LOOKUP_BATCH):
                    chunk = keys[start:start + LOOKUP_BATCH]
                    rows += db.execute(f"{query} AND content IN ({','.join('?' * len(chunk))})",
                                       (fingerprint, *chunk)).fetchall()
    except sqlite3.Error as err:
        raise StoreError(f"result store {path}: cannot read its features ({err})") from err
    finally:
        db.close()
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    dims = {r[3] for r in rows}
    if len(dims) > 1 or any(len(r[4]) != 2 * r[3] for r in rows):
        raise StoreError(f"result store {path}: the features of models {fingerprint[:16]} are damaged (widths "
                         f"{sorted(dims)}, or a row of the wrong length); `deepfaune store prune` or `clear` drops "
                         "them with their results")
    dim = dims.pop() if dims else 0
    values = np.frombuffer(b"".join(r[4] for r in rows), dtype="<f2").reshape(len(rows), dim).astype(np.float16)
    return StoredFeatures(fingerprint, tuple(r[0] for r in rows), np.array([r[1] for r in rows], np.int32),
                          np.array([r[2] for r in rows], np.int32), values)


LABEL_COLUMNS = ("relpath", "label", "reviewer", "at", "content", "size", *HUMAN_FIELDS)


def export_labels(path: Path, target: Path) -> int:
    """Write the people's labels of the store at `path` to the CSV `target` (all at once: a half-written copy
    never replaces a whole one), as stored: nothing is parsed, so a damaged row is saved too.  Returns how many."""
    import csv
    import io

    from .atomic import write_bytes_atomic
    from .table import escape_formula

    db = _read_only(path)
    try:
        held = set(_columns(db, "human"))  # a store of before people's fields has none of them
        rows = db.execute(f"SELECT {', '.join(c if c in held else 'NULL' for c in LABEL_COLUMNS)} FROM human "
                          "ORDER BY relpath, reviewer").fetchall()
    except sqlite3.Error as err:
        raise StoreError(f"result store {path}: cannot read its labels ({err})") from err
    finally:
        db.close()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    writer.writerows([escape_formula(v) for v in row] for row in rows)
    write_bytes_atomic(target, text.getvalue().encode("utf-8"))
    return len(rows)


def clear_results(store: ResultStore) -> int:
    """Drop every model output and keep the people's labels; the file is compacted.  Returns how many went."""
    with store.db:
        store.db.execute("BEGIN")
        dropped = store.db.execute("DELETE FROM raw").rowcount
        store.db.execute("DELETE FROM features")
        forget_unused(store.db)
    store.db.execute("VACUUM")
    return dropped


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
            for stored_at, length in store.db.execute(  # an entry's size: its payload and its features
                    "SELECT stored_at, length(payload) + coalesce((SELECT sum(length(data)) FROM features f WHERE "
                    "f.fingerprint=raw.fingerprint AND f.content=raw.content), 0) FROM raw ORDER BY stored_at DESC"):
                total += length
                if total > max_bytes:
                    drop_before = stored_at
                    break
            if drop_before is not None:
                store.db.execute("DELETE FROM raw WHERE stored_at <= ?", (drop_before,))
        store.db.execute("DELETE FROM features WHERE NOT EXISTS (SELECT 1 FROM raw WHERE "
                         "raw.fingerprint=features.fingerprint AND raw.content=features.content)")
        forget_unused(store.db)
    after = store.db.execute("SELECT count(*) FROM raw").fetchone()[0]
    store.db.execute("VACUUM")
    return before - after
