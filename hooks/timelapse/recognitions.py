"""Put a recognition file into a .ddb exactly as Timelapse's own "Import recognition data" stores it.

Followed step by step from Timelapse 2.5 (FileDatabase.JsonDeserializeRecognizerFileAsync,
RecognizerTrimAndSortRecognitionsAsNeeded, PopulateRecognitionTablesFromRecognizerAsync with
merging on, RecognitionDatabases.CreateRecognitionTables / PopulateTables, RecognitionUtilities):

- trimming: box x, y -= 0.002 and w, h += 0.004 (float constants), negatives → 0, every value
  and every confidence rounded to 3 decimals (.NET Math.Round: scale, round half to even,
  unscale); detections under max(0.03, conservative/2.5) dropped; only the best classification
  at or above max(0.03, typical_classification/2.5) kept; each file's detections then sorted by
  frame_number with .NET's List.Sort (an unstable introsort: `dotnet_sort`);
- merging (what "Merge" does when recognitions exist): info fields taken from the newer
  detector version, thresholds the smaller of the two; detection and classification categories
  matched by label (new labels get new numbers), unions of categories and descriptions; every
  file of the new file loses its old detections, which are replaced; other files keep theirs;
- storage: category keys as text in STRING columns (so SQLite keeps them as integers: compare
  as text), conf as the float32's shortest text, bbox as "x, y, w, h" with .NET's shortest
  double text, one best classification per detection, one row (category 0, conf 0, bbox '')
  for an image without detections, nothing for a failed image; a detection of a file that is not
  a .jpg/.jpeg (a video) also gets a DetectionsVideo (frame_number, frame_rate, detectionID) row,
  and is dropped when the file's frame_rate is not > 0.

Deliberate differences, each keeping more of the user's data than Timelapse would:
a failed image keeps the detections it had (Timelapse deletes them), every duplicate row of a
file is cleared (Timelapse clears only the first, then adds to all, duplicating), detection
categories are renumbered on every detection of an image (Timelapse only on the first match),
and a taxonomy description missing on one side is filled from the other instead of failing.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping, Sequence

import numpy as np

from deepfaune_plugin.api import atomic_output, own_folder

from deepfaune_plugin.hooks.timelapse.ddb import (DATA_TABLE, FieldSpec, TimelapseError, check_schema, connect_readonly, locked_message,
                            table_columns, table_names)

RECOGNITION_TABLES = ("Info", "DetectionCategories", "ClassificationCategories", "Detections", "DetectionsVideo")
#: Timelapse's CreateRecognitionTables, column for column (types as its Sql constants spell them).
RECOGNITION_DDL = {
    "Info": "CREATE TABLE Info ( infoID INTEGER PRIMARY KEY, detector STRING, megadetector_version STRING DEFAULT "
            "'vUnknown', detection_completion_time STRING, classifier STRING, classification_completion_time STRING, "
            "typical_detection_threshold REAL DEFAULT '0.2', conservative_detection_threshold REAL DEFAULT '0.05', "
            "typical_classification_threshold REAL DEFAULT '0.5' )",
    "DetectionCategories": "CREATE TABLE DetectionCategories ( category STRING PRIMARY KEY, label STRING )",
    "ClassificationCategories": "CREATE TABLE ClassificationCategories ( classification STRING PRIMARY KEY, "
                                "label STRING, description STRING DEFAULT '' )",
    "Detections": "CREATE TABLE Detections ( detectionID INTEGER PRIMARY KEY, category STRING, conf REAL, "
                  "bbox STRING, classification STRING, classification_conf REAL, Id INTEGER, "
                  "FOREIGN KEY ( Id ) REFERENCES DataTable ( Id ) ON DELETE CASCADE )",
    "DetectionsVideo": "CREATE TABLE DetectionsVideo ( frame_number INTEGER, frame_rate REAL, detectionID INTEGER, "
                       "FOREIGN KEY ( detectionID ) REFERENCES Detections ( detectionID ) ON DELETE CASCADE )",
    "Classifications": "CREATE TABLE Classifications ( classificationID INTEGER PRIMARY KEY, category STRING, "
                       "conf REAL, detectionID INTEGER )",
}
INDEXES = ("CREATE INDEX IF NOT EXISTS IndexDetectionID ON Detections ( Id )",
           "CREATE INDEX IF NOT EXISTS IndexDetectionVideoID ON DetectionsVideo ( detectionID )")
EMPTY_CATEGORY, EMPTY_LABEL = "0", "Empty"
MIN_DETECTION = float(np.float32(0.03))  # RecognizerValues.MinimumDetectionValue, a float widened to double
MIN_CLASSIFICATION = float(np.float32(0.03))
DEFAULT_TYPICAL_DETECTION = 0.2
DEFAULT_CONSERVATIVE_DETECTION = 0.05
DEFAULT_TYPICAL_CLASSIFICATION = 0.5
MD_VERSION_UNKNOWN = "vUnknown"
JPG_SUFFIXES = (".jpg", ".jpeg")
BOX_SHIFT = (float(np.float32(-0.002)), float(np.float32(-0.002)), float(np.float32(0.004)), float(np.float32(0.004)))
FIELD_TYPES = ("Note", "MultiLine", "FixedChoice")


# --- .NET number behaviour --------------------------------------------------------------------

def dotnet_round(value: float, digits: int = 3) -> float:
    """Math.Round(double, digits) of .NET Core: value * 10^d rounded half to even, / 10^d."""
    power = 10.0 ** digits
    return round(float(value) * power) / power


def dotnet_double_text(value: float) -> str:
    """double.ToString() (shortest round-trip) of .NET Core 3+ for ordinary magnitudes."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def dotnet_float_text(value: float) -> str:
    """float.ToString() (shortest round-trip of the single) of .NET Core 3+."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def compare_ordinal(a: str, b: str) -> int:
    """String.CompareOrdinal: difference of the first differing UTF-16 units, else of the lengths."""
    for x, y in zip(a, b):
        if x != y:
            return ord(x) - ord(y)
    return len(a) - len(b)


def newer_version_preferred(db_version: str | None, new_version: str | None) -> bool:
    """RecognitionUtilities.IsMegadetectorVersionSameHigherInDestination, quirk included (== -1)."""
    if db_version == new_version:
        return True
    if not db_version or not db_version.strip() or db_version == MD_VERSION_UNKNOWN:
        return True
    if not new_version or not new_version.strip() or new_version == MD_VERSION_UNKNOWN:
        return False
    return compare_ordinal(db_version, new_version) == -1


def dotnet_sort(items: Sequence[Any], key) -> list[Any]:
    """List<T>.Sort(Comparison<T>) of .NET Core (ArraySortHelper's introsort) comparing key(item) values.

    Not stable: past 16 items, equal keys (a video frame's boxes) come out in the order its
    median-of-three quicksort leaves them, which decides the detectionIDs Timelapse gives them.
    """
    keys = list(items)
    if len(keys) > 1:
        _intro_sort(keys, 0, len(keys), 2 * len(keys).bit_length(), _comparer(key))  # 2 * (floor(log2 n) + 1)
    return keys


def _comparer(key):
    def compare(a, b) -> int:
        ka, kb = key(a), key(b)
        return (ka > kb) - (ka < kb)
    return compare


def _swap_if_greater(a: list, compare, i: int, j: int) -> None:
    if compare(a[i], a[j]) > 0:
        a[i], a[j] = a[j], a[i]


def _intro_sort(a: list, lo: int, size: int, depth: int, compare) -> None:
    """Sort a[lo:lo + size] in place: IntroSort with IntrosortSizeThreshold 16."""
    while size > 1:
        if size <= 16:
            if size == 2:
                _swap_if_greater(a, compare, lo, lo + 1)
            elif size == 3:
                _swap_if_greater(a, compare, lo, lo + 1)
                _swap_if_greater(a, compare, lo, lo + 2)
                _swap_if_greater(a, compare, lo + 1, lo + 2)
            else:
                _insertion_sort(a, lo, size, compare)
            return
        if depth == 0:
            _heap_sort(a, lo, size, compare)
            return
        depth -= 1
        p = _partition(a, lo, size, compare)
        _intro_sort(a, lo + p + 1, size - p - 1, depth, compare)
        size = p


def _partition(a: list, lo: int, size: int, compare) -> int:
    """PickPivotAndPartition: median of three, pivot parked at hi - 1; returns its index from lo."""
    hi = size - 1
    middle = hi >> 1
    _swap_if_greater(a, compare, lo, lo + middle)
    _swap_if_greater(a, compare, lo, lo + hi)
    _swap_if_greater(a, compare, lo + middle, lo + hi)
    pivot = a[lo + middle]
    a[lo + middle], a[lo + hi - 1] = a[lo + hi - 1], a[lo + middle]
    left, right = 0, hi - 1
    while left < right:
        left += 1
        while compare(a[lo + left], pivot) < 0:
            left += 1
        right -= 1
        while compare(pivot, a[lo + right]) < 0:
            right -= 1
        if left >= right:
            break
        a[lo + left], a[lo + right] = a[lo + right], a[lo + left]
    if left != hi - 1:
        a[lo + left], a[lo + hi - 1] = a[lo + hi - 1], a[lo + left]
    return left


def _insertion_sort(a: list, lo: int, size: int, compare) -> None:
    for i in range(size - 1):
        t = a[lo + i + 1]
        j = i
        while j >= 0 and compare(t, a[lo + j]) < 0:
            a[lo + j + 1] = a[lo + j]
            j -= 1
        a[lo + j + 1] = t


def _heap_sort(a: list, lo: int, n: int, compare) -> None:
    def down(i: int, n: int) -> None:
        d = a[lo + i - 1]
        while i <= n >> 1:
            child = 2 * i
            if child < n and compare(a[lo + child - 1], a[lo + child]) < 0:
                child += 1
            if not compare(d, a[lo + child - 1]) < 0:
                break
            a[lo + i - 1] = a[lo + child - 1]
            i = child
        a[lo + i - 1] = d

    for i in range(n >> 1, 0, -1):
        down(i, n)
    for i in range(n, 1, -1):
        a[lo], a[lo + i - 1] = a[lo + i - 1], a[lo]
        down(1, i - 1)


# --- reading and trimming the recognition file -------------------------------------------------

def _f32(value) -> float:
    return float(np.float32(float(value)))


def _threshold(meta: Mapping[str, Any] | None, key: str, minimum: float) -> float:
    value = (meta or {}).get(key)
    if value is None:
        return minimum
    scaled = _f32(value) / 2.5
    return scaled if scaled > minimum else minimum


def trim_recognitions(recognizer: Mapping[str, Any]) -> dict[str, Any]:
    """RecognizerTrimAndSortRecognitionsAsNeeded on a copy: what Timelapse keeps of a recognition file."""
    rec = json.loads(json.dumps(recognizer))  # fresh objects, as deserialising the file gives
    info = rec.get("info") or {}
    min_det = _threshold(info.get("detector_metadata"), "conservative_detection_threshold", MIN_DETECTION)
    min_cls = _threshold(info.get("classifier_metadata"), "typical_classification_threshold", MIN_CLASSIFICATION)
    for image in rec.get("images") or ():
        detections = image.get("detections")
        if detections is None:
            continue
        kept = []
        for det in detections:
            bbox = det.get("bbox")
            if bbox is not None:
                shifted = [float(v) + s for v, s in zip(bbox, BOX_SHIFT)] + [float(v) for v in bbox[4:]]
                det["bbox"] = [0.0 if v < 0 else dotnet_round(v) for v in shifted]
            det["conf"] = _f32(dotnet_round(_f32(det.get("conf", 0.0))))
            if det["conf"] < min_det:
                continue
            best, best_conf = None, -1.0
            for c in reversed(det.get("classifications") or []):
                conf = float(c[1])
                if conf < min_cls:
                    continue
                if conf > best_conf:
                    best, best_conf = c, conf
            det["classifications"] = [] if best is None else [[str(best[0]), dotnet_round(best_conf)]]
            kept.append(det)
        image["detections"] = dotnet_sort(kept, lambda d: int(d.get("frame_number", 0) or 0))
    return rec


# --- merging with what the database holds ----------------------------------------------------

def remap_categories(db: Mapping[str, str], new: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]] | None:
    """RemapAndReplaceCategoryNumbersIfNeeded: new categories renumbered to the database's by label.

    Returns (renumbered categories, old number → new number), or None when nothing changes.
    """
    if not db or not new:
        return None
    top = max((int(k) for k in db if str(k).lstrip("-").isdigit()), default=-1) + 1
    db_by_label = {label: key for key, label in db.items()}
    if len(db_by_label) != len(db) or len(set(new.values())) != len(new):
        return None  # duplicate labels: Timelapse gives up remapping
    remapped: dict[str, str] = {}
    mapping: dict[str, str] = {}
    for key, label in new.items():
        if label in db_by_label:
            remapped[db_by_label[label]] = label
            if db_by_label[label] != key:
                mapping[key] = db_by_label[label]
        else:
            remapped[str(top)] = label
            mapping[key] = str(top)
            top += 1
    return (remapped, mapping) if mapping else None


def merge_dictionaries(a: Mapping[str, str] | None, b: Mapping[str, str] | None) -> dict[str, str] | None:
    """Dictionaries.MergeDictionaries: the union, or None when a key has two values."""
    merged = dict(a or {})
    for key, value in (b or {}).items():
        if key in merged and merged[key] != value:
            return None
        merged[key] = value
    return merged


def merge_descriptions(db: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """Union of descriptions; an empty one yields to a filled one, otherwise the new file's wins."""
    merged = dict(db)
    for key, value in new.items():
        if value or not merged.get(key):
            merged[key] = value
    return merged


def merge_info(db: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """RecognitionUtilities.DetermineRecognitionInfoToUse (database first, new file second)."""
    new_first = newer_version_preferred(_text(db.get("megadetector_version")),
                                        _text(new.get("megadetector_version")))
    pick = new if new_first else db
    out = {key: pick.get(key) for key in ("megadetector_version", "detector", "detection_completion_time",
                                          "classifier", "classification_completion_time")}
    for key, default in (("typical_detection_threshold", DEFAULT_TYPICAL_DETECTION),
                         ("typical_classification_threshold", DEFAULT_TYPICAL_CLASSIFICATION),
                         ("conservative_detection_threshold", DEFAULT_CONSERVATIVE_DETECTION)):
        values = [_f32(default if d.get(key) is None else d.get(key)) for d in (db, new)]
        out[key] = min(values)
    return out


def _text(value) -> str | None:
    return None if value is None else str(value)


def _info_from_file(info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Info row a recognition file's `info` gives (PopulateRecognizerInfoWithDefaultValuesAsNeeded)."""
    info = info or {}
    det = info.get("detector_metadata") or {}
    cls = info.get("classifier_metadata") or {}
    return {
        "detector": info.get("detector") if info.get("detector") is not None else MD_VERSION_UNKNOWN,
        "megadetector_version": det.get("megadetector_version") or MD_VERSION_UNKNOWN,
        "detection_completion_time": info.get("detection_completion_time"),
        "classifier": info.get("classifier"),
        "classification_completion_time": info.get("classification_completion_time"),
        "typical_detection_threshold": _or_default(det, "typical_detection_threshold", DEFAULT_TYPICAL_DETECTION),
        "conservative_detection_threshold": _or_default(det, "conservative_detection_threshold",
                                                        DEFAULT_CONSERVATIVE_DETECTION),
        "typical_classification_threshold": _or_default(cls, "typical_classification_threshold",
                                                        DEFAULT_TYPICAL_CLASSIFICATION),
    }


def _or_default(meta: Mapping[str, Any], key: str, default: float) -> float:
    value = meta.get(key)
    return _f32(default if value is None else value)


# --- the database side -----------------------------------------------------------------------

@dataclass
class ImportReport:
    merged: bool = False  # recognitions were already there and were merged with
    images: int = 0  # images of the file matched to DataTable rows
    rows: int = 0  # DataTable rows that received detections
    detections: int = 0  # Detections rows written
    unmatched: list[str] = field(default_factory=list)  # files of the recognition file not in DataTable
    failed_kept: list[str] = field(default_factory=list)  # failed files whose earlier detections were kept
    field_written: int = 0
    field_kept: list[tuple[str, str]] = field(default_factory=list)  # (relpath, user value kept)
    field_rejected: list[tuple[str, str]] = field(default_factory=list)  # (relpath, label not in the choices)
    field_values: dict[int, str] = field(default_factory=dict)  # DataTable Id -> the value DeepFaune holds there
    field_kept_ids: set[int] = field(default_factory=set)  # rows whose value a person changed
    backup: Path | None = None
    flag: "ImportReport | None" = None  # the reviewed flag field's own field_* counts (--reviewed-field)
    people: dict[str, "ImportReport"] = field(default_factory=dict)  # people's fields (--count-field...), by DataLabel


def _rows_by_file(conn: sqlite3.Connection) -> dict[tuple[str, str], list[int]]:
    index: dict[tuple[str, str], list[int]] = {}
    for rid, name, folder in conn.execute(f"SELECT Id, File, RelativePath FROM {DATA_TABLE} ORDER BY Id"):
        index.setdefault((name or "", folder or ""), []).append(int(rid))
    return index


def split_file(path: str) -> tuple[str, str]:
    """(file name, RelativePath) as Timelapse's Path.GetFileName / GetDirectoryName give them on Windows."""
    p = PureWindowsPath(path.replace("/", "\\"))
    folder = str(p.parent)
    return p.name, "" if folder == "." else folder


def _ensure_tables(conn: sqlite3.Connection) -> bool:
    """Create the recognition tables Timelapse creates on a first import; True when they already held rows."""
    tables = table_names(conn)
    if "Classifications" in tables and conn.execute("SELECT 1 FROM Classifications LIMIT 1").fetchone():
        raise TimelapseError("this database holds recognitions in Timelapse's pre-2.3.2.9 layout (a filled "
                             "Classifications table); open it once in a current Timelapse to update it, then run again")
    for name in (*RECOGNITION_TABLES, "Classifications"):
        if name not in tables:
            conn.execute(RECOGNITION_DDL[name])
    if "description" not in table_columns(conn, "ClassificationCategories"):
        conn.execute("ALTER TABLE ClassificationCategories ADD COLUMN description STRING DEFAULT ''")
    return conn.execute("SELECT 1 FROM Detections LIMIT 1").fetchone() is not None


def _db_dict(conn: sqlite3.Connection, sql: str) -> dict[str, str]:
    return {str(k): ("" if v is None else str(v)) for k, v in conn.execute(sql)}


def import_recognitions(conn: sqlite3.Connection, recognizer: Mapping[str, Any],
                        keep_failed: bool = True) -> ImportReport:
    """Timelapse's merge import, inside the caller's transaction."""
    rec = trim_recognitions(recognizer)
    images = rec.get("images") or []
    report = ImportReport()
    report.merged = _ensure_tables(conn)
    info = _info_from_file(rec.get("info"))
    det_cats = {str(k): str(v) for k, v in (rec.get("detection_categories") or {}).items()}
    cls_cats = {str(k): str(v) for k, v in (rec.get("classification_categories") or {}).items()}
    descriptions = {str(k): str(v) for k, v in (rec.get("classification_category_descriptions") or {}).items()}
    rows = _rows_by_file(conn)
    start_id = 1

    if report.merged:
        row = conn.execute("SELECT * FROM Info LIMIT 1").fetchone()
        names = [d[0] for d in conn.execute("SELECT * FROM Info LIMIT 0").description]
        db_info = dict(zip(names, row)) if row else {}
        if db_info:
            info = merge_info(db_info, info)
        db_det = _db_dict(conn, "SELECT category, label FROM DetectionCategories")
        db_det.pop(EMPTY_CATEGORY, None)
        remap = remap_categories(db_det, det_cats)
        if remap:
            det_cats, mapping = remap
            for image in images:
                for det in image.get("detections") or ():
                    det["category"] = mapping.get(str(det["category"]), str(det["category"]))
        merged = merge_dictionaries(db_det, det_cats)
        if merged is None:
            raise TimelapseError("the database's detection categories cannot be merged with DeepFaune's "
                                 f"({db_det} vs {det_cats}); nothing was changed")
        det_cats = merged
        db_cls = _db_dict(conn, "SELECT classification, label FROM ClassificationCategories")
        db_desc = _db_dict(conn, "SELECT classification, description FROM ClassificationCategories")
        remap = remap_categories(db_cls, cls_cats)
        if remap:
            cls_cats, mapping = remap
            descriptions = {mapping.get(k, k): v for k, v in descriptions.items()}
            for image in images:
                for det in image.get("detections") or ():
                    for c in det.get("classifications") or ():
                        c[0] = mapping.get(str(c[0]), str(c[0]))
        merged = merge_dictionaries(db_cls, cls_cats)
        if merged is None:
            raise TimelapseError("the database's classification categories cannot be merged with DeepFaune's; "
                                 "nothing was changed")
        cls_cats = merged
        descriptions = merge_descriptions(db_desc, descriptions)
        start_id = max(1, conn.execute("SELECT COALESCE(MAX(detectionID), 0) FROM Detections").fetchone()[0]) + 1
        for image in images:
            name, folder = split_file(image["file"])
            if image.get("detections") is None and keep_failed:
                ids = rows.get((name, folder), ())
                if any(conn.execute("SELECT 1 FROM Detections WHERE Id = ? LIMIT 1", (rid,)).fetchone() for rid in ids):
                    report.failed_kept.append(image["file"])
                continue
            for rid in rows.get((name, folder), ()):
                conn.execute("DELETE FROM DetectionsVideo WHERE detectionID IN "
                             "(SELECT detectionID FROM Detections WHERE Id = ?)", (rid,))
                conn.execute("DELETE FROM Detections WHERE Id = ?", (rid,))
    else:
        conn.execute("DELETE FROM DetectionsVideo")
        conn.execute("DELETE FROM Detections")

    for table in ("Info", "DetectionCategories", "ClassificationCategories"):
        conn.execute(f"DELETE FROM {table}")
    _insert_info(conn, info)
    if EMPTY_CATEGORY not in det_cats:
        conn.execute("INSERT INTO DetectionCategories (category, label) VALUES (?, ?)", (EMPTY_CATEGORY, EMPTY_LABEL))
    conn.executemany("INSERT INTO DetectionCategories (category, label) VALUES (?, ?)", list(det_cats.items()))
    conn.executemany(
        "INSERT INTO ClassificationCategories (classification, label, description) VALUES (?, ?, ?)",
        [(k, v, descriptions.get(k, "")) for k, v in cls_cats.items()],
    )
    _populate_detections(conn, images, rows, start_id, report)
    for sql in INDEXES:
        conn.execute(sql)
    return report


def _insert_info(conn: sqlite3.Connection, info: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO Info (infoID, detector, detection_completion_time, classifier, classification_completion_time, "
        "megadetector_version, typical_detection_threshold, conservative_detection_threshold, "
        "typical_classification_threshold) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
        (info.get("detector"), info.get("detection_completion_time"), info.get("classifier"),
         info.get("classification_completion_time"), info.get("megadetector_version"),
         dotnet_float_text(info["typical_detection_threshold"]),
         dotnet_float_text(info["conservative_detection_threshold"]),
         dotnet_float_text(info["typical_classification_threshold"])),
    )


def bbox_text(bbox) -> str:
    if bbox is None or len(bbox) != 4:
        return ""
    return ", ".join(dotnet_double_text(v) for v in bbox)


def _populate_detections(conn: sqlite3.Connection, images: Sequence[Mapping[str, Any]],
                         rows: Mapping[tuple[str, str], list[int]], start_id: int, report: ImportReport) -> None:
    """RecognitionDatabases.PopulateTables: Detections and DetectionsVideo rows."""
    next_id = start_id
    detections, videos = [], []
    for image in images:
        dets = image.get("detections")
        if dets is None:
            continue
        name, folder = split_file(image["file"])
        ids = rows.get((name, folder))
        if not ids:
            report.unmatched.append(image["file"])
            continue
        report.images += 1
        is_jpg = name.lower().endswith(JPG_SUFFIXES)
        frame_rate = image.get("frame_rate") or 0
        for rid in ids:
            report.rows += 1
            included = False
            for det in dets:
                det_id = next_id
                next_id += 1
                included = True  # Timelapse marks the file before the frame-rate check (then no Empty row)
                frame_number = int(det.get("frame_number", 0) or 0)
                if not is_jpg and not (frame_number >= 0 and frame_rate > 0):
                    continue  # a video detection without a usable frame rate is dropped
                classes = det.get("classifications") or []
                cls, cls_conf = (None, None) if not classes else (str(classes[0][0]),
                                                                  dotnet_double_text(float(classes[0][1])))
                detections.append((det_id, rid, str(det["category"]), dotnet_float_text(det["conf"]),
                                   bbox_text(det.get("bbox")), cls, cls_conf))
                if not is_jpg:
                    videos.append((frame_number, dotnet_float_text(frame_rate), det_id))
            if not included:
                detections.append((next_id, rid, EMPTY_CATEGORY, "0", "", None, None))
                next_id += 1
    conn.executemany(
        "INSERT INTO Detections (detectionID, Id, category, conf, bbox, classification, classification_conf) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", detections)
    conn.executemany("INSERT INTO DetectionsVideo (frame_number, frame_rate, detectionID) VALUES (?, ?, ?)", videos)
    report.detections += len(detections)


# --- a user field ------------------------------------------------------------------------------

def check_field(fields: Mapping[str, FieldSpec], name: str) -> FieldSpec:
    """The field `--field NAME` designates, or a TimelapseError saying why it cannot take a label."""
    spec = fields.get(name)
    if spec is None:
        by_label = {k.casefold(): k for k in fields}
        hint = f" (did you mean {by_label[name.casefold()]!r}?)" if name.casefold() in by_label else ""
        usable = [k for k, f in fields.items() if f.type in FIELD_TYPES]
        raise TimelapseError(f"--field {name}: no such data field in the template{hint}; "
                             f"fields that can take a label: {', '.join(usable) or 'none'}")
    if spec.type not in FIELD_TYPES:
        raise TimelapseError(f"--field {name}: a {spec.type} field cannot hold a species label; "
                             f"use a Note or a FixedChoice field")
    return spec


#: A Flag field that marks the files a person labelled (`deepfaune review`) when --reviewed-field names none.
REVIEWED_FLAG = "reviewed"
#: How Timelapse stores a Flag: lowercase text.
FLAG_TRUE, FLAG_FALSE = "true", "false"


def check_flag(fields: Mapping[str, FieldSpec], name: str) -> FieldSpec:
    """The Flag field `--reviewed-field NAME` designates, or a TimelapseError saying why it cannot be used."""
    spec = fields.get(name)
    flags = [k for k, f in fields.items() if f.type == "Flag" and k != "DeleteFlag"]
    if spec is None:
        by_label = {k.casefold(): k for k in fields}
        hint = f" (did you mean {by_label[name.casefold()]!r}?)" if name.casefold() in by_label else ""
        raise TimelapseError(f"--reviewed-field {name}: no such data field in the template{hint}; "
                             f"Flag fields: {', '.join(flags) or 'none'}")
    if spec.type != "Flag" or name == "DeleteFlag":
        raise TimelapseError(f"--reviewed-field {name}: a {spec.type} field, not a Flag (a checkbox); "
                             f"Flag fields: {', '.join(flags) or 'none'}")
    return spec


#: The field types that can hold what a person recorded: a count also in a Counter or a whole-number field.
PEOPLE_FIELD_TYPES = {"count": ("Counter", "IntegerPositive", "IntegerAny", *FIELD_TYPES)}


def check_people_field(fields: Mapping[str, FieldSpec], option: str, name: str, kind: str) -> FieldSpec:
    """The field `--<option> NAME` designates for a person's `kind` (count, sex...), or a TimelapseError."""
    spec = fields.get(name)
    types = PEOPLE_FIELD_TYPES.get(kind, FIELD_TYPES)
    usable = [k for k, f in fields.items() if f.type in types]
    if spec is None:
        by_label = {k.casefold(): k for k in fields}
        hint = f" (did you mean {by_label[name.casefold()]!r}?)" if name.casefold() in by_label else ""
        raise TimelapseError(f"--{option} {name}: no such data field in the template{hint}; fields that can take "
                             f"a {kind.replace('_', ' ')}: {', '.join(usable) or 'none'}")
    if spec.type not in types:
        raise TimelapseError(f"--{option} {name}: a {spec.type} field cannot hold a {kind.replace('_', ' ')}; "
                             f"fields that can: {', '.join(usable) or 'none'}")
    return spec


def default_flag(fields: Mapping[str, FieldSpec]) -> FieldSpec | None:
    """The template's Flag field named "Reviewed" (DataLabel or Label, any case), if it has one."""
    for spec in fields.values():
        if spec.type == "Flag" and REVIEWED_FLAG in (spec.data_label.casefold(), spec.label.strip().casefold()):
            return spec
    return None


def choice_for(spec: FieldSpec, label: str) -> str | None:
    """The value to store for `label`: itself for a Note, the matching choice for a FixedChoice."""
    if spec.type != "FixedChoice":
        return label
    if label in spec.choices:
        return label
    folded = [c for c in spec.choices if c.casefold() == label.casefold()]
    return folded[0] if len(folded) == 1 else None


def write_field(conn: sqlite3.Connection, spec: FieldSpec, values: Mapping[str, str],
                previous: Mapping[int, str], report: ImportReport) -> None:
    """Set `spec` on every DataTable row of each relpath to its label.

    Only empty values, the template's default (Timelapse writes it into every new row) and the
    values DeepFaune itself wrote last time (`previous`, by row Id) are replaced: anything else was
    typed by a person and is kept (reported).  A label that is none of a FixedChoice's choices is
    reported; it, and an empty label (no value this time), take a value DeepFaune wrote there last time
    back to the template's default: it answered another question (e.g. a label given in `deepfaune
    review`, since withdrawn).
    """
    column = spec.data_label.replace('"', '""')
    rows = _rows_by_file(conn)
    for relpath, label in sorted(values.items()):
        stored = choice_for(spec, label) if label else None  # "": no value this time (e.g. a label without a taxon)
        if stored is None and label:
            report.field_rejected.append((relpath, label))
        name, folder = split_file(relpath)
        for rid in rows.get((name, folder), ()):
            current = conn.execute(f'SELECT "{column}" FROM {DATA_TABLE} WHERE Id = ?', (rid,)).fetchone()[0]
            current = "" if current is None else str(current)
            if stored is None:  # no value for this label: only our own stale one is taken back
                if current and current != spec.default and previous.get(rid) == current:
                    conn.execute(f'UPDATE {DATA_TABLE} SET "{column}" = ? WHERE Id = ?', (spec.default, rid))
                    report.field_values[rid] = spec.default
                continue
            # empty, the template's default (what Timelapse wrote, nobody changed it) or DeepFaune's own: ours
            if current and current != stored and current != spec.default and previous.get(rid) != current:
                report.field_kept.append((relpath, current))
                report.field_kept_ids.add(rid)
                continue
            if current != stored:
                conn.execute(f'UPDATE {DATA_TABLE} SET "{column}" = ? WHERE Id = ?', (stored, rid))
            report.field_written += 1
            report.field_values[rid] = stored


# --- the whole write: lock, backup, one transaction --------------------------------------------

def backup_path(ddb: Path, when: datetime | None = None) -> Path:
    stamp = (when or datetime.now()).strftime("%Y-%m-%d.%H-%M-%S")
    folder = own_folder(ddb.parent, "Backups")  # a real folder beside the .ddb, never a link to elsewhere
    candidate = folder / f"{ddb.stem}.{stamp}.before-deepfaune{ddb.suffix}"
    n = 2
    while candidate.exists():
        candidate = folder / f"{ddb.stem}.{stamp}.before-deepfaune-{n}{ddb.suffix}"
        n += 1
    return candidate


def _fk_violations(conn: sqlite3.Connection) -> set[tuple]:
    return {tuple(r) for r in conn.execute("PRAGMA foreign_key_check")}


def write_ddb(ddb: Path, recognizer: Mapping[str, Any], field_spec: FieldSpec | None = None,
              field_values: Mapping[str, str] | None = None, previous: Mapping[int, str] | None = None,
              wait: float = 30.0, keep_failed: bool = True,
              flag: tuple[FieldSpec, Mapping[str, str], Mapping[int, str]] | None = None,
              people: Sequence[tuple[FieldSpec, Mapping[str, str], Mapping[int, str]]] = ()) -> ImportReport:
    """Back up `ddb` into Backups/, then import and fill the field in one transaction (all or nothing).

    `flag`: (a Flag field, relpath -> "true"/"false", what DeepFaune wrote there last time by row Id), written
    like the field in the same transaction; its counts go to `report.flag`. `people`: the same for each field
    holding what a person recorded (--count-field...), counts in `report.people` by DataLabel."""
    ddb = Path(ddb)
    conn = sqlite3.connect(ddb, timeout=wait, isolation_level=None)
    backup: Path | None = None
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise TimelapseError(locked_message(ddb, wait, err)) from err
        try:
            check_schema(conn, ddb)
            backup = backup_path(ddb)
            _snapshot(ddb, backup, wait)
            before = _fk_violations(conn)
            report = import_recognitions(conn, recognizer, keep_failed=keep_failed)
            if field_spec is not None and field_values:
                write_field(conn, field_spec, field_values, previous or {}, report)
            if flag is not None:
                report.flag = ImportReport()
                write_field(conn, flag[0], flag[1], flag[2], report.flag)
            for spec, values, earlier in people:
                report.people[spec.data_label] = ImportReport()
                write_field(conn, spec, values, earlier, report.people[spec.data_label])
            new = _fk_violations(conn) - before
            if new:
                raise TimelapseError(f"{ddb}: the update would break {len(new)} foreign key(s), e.g. {sorted(new)[0]}; "
                                     "nothing was changed")
            conn.execute("COMMIT")
        except BaseException as err:
            conn.execute("ROLLBACK")
            if backup is not None:
                backup.unlink(missing_ok=True)
            if isinstance(err, sqlite3.Error):  # a trigger that aborts, a view where a table belongs...
                raise TimelapseError(f"{ddb}: the database refused the update ({type(err).__name__}: {err}); "
                                     "nothing was changed. Check its triggers and that DataTable and Detections "
                                     "are tables (as Timelapse makes them), not views") from None
            raise
        report.backup = backup
        return report
    finally:
        conn.close()


def _snapshot(ddb: Path, target: Path, wait: float) -> None:
    """A consistent copy of the committed database, taken while we hold the write lock."""
    source = connect_readonly(ddb, wait)
    try:
        with atomic_output(target) as part:
            copy_conn = sqlite3.connect(part)
            try:
                source.backup(copy_conn)
            finally:
                copy_conn.close()
    finally:
        source.close()
