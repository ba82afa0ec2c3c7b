"""The recognitions already in a .ddb (MegaDetector's...) as known boxes: what --use-existing-detections reads.

Timelapse's import (2.5; reproduced in timelapse_import.trim_recognitions) widened every box
before storing it: x, y − 0.002 and w, h + 0.004 (float32 constants), a negative value set to
0, every value rounded to 3 decimals.  `untrim` undoes that as far as it can: a coordinate
comes back exactly when the detector's value had at most 3 decimals, otherwise within 0.0005
(MegaDetector writes 4; 0.0005 of a 4000-pixel-wide photo is 2 pixels); a corner stored as 0
(the detector's x or y was below 0.0025) comes back as 0.  Confidences are stored as the
detector wrote them (3 decimals) and come back exactly.  Timelapse's unstable sort may
reorder an image's boxes past 16 of them: that only matters for a tie on the top confidence.

Which rows count: every image detection (not video) whose category label is animal, person
(or human) or vehicle; an image with only an "Empty" row was processed and has no box.  Rows
that DeepFaune's own detector wrote here (--write-ddb without --use-existing-detections) are
not another detector's: the ledger beside the .ddb remembers, per DataTable row, the detector
mode and a digest of the rows DeepFaune wrote, and such rows are skipped while unchanged (a
later import of MegaDetector's results replaces them and makes them usable again).  Without
that ledger (deleted, or a .ddb copied alone) the .ddb itself is the witness: when its Info
names DeepFaune's detector, or its classification categories are DeepFaune's (see
`deepfaune_wrote_here`), DeepFaune's rows cannot be told from another detector's, so the run
is refused rather than classifying DeepFaune's own boxes as if MegaDetector had found them.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from deepfaune_plugin.api import ANIMAL, EXISTING_DETECTIONS, JSON_THRESHOLD, PERSON, VEHICLE, KnownBox, taxa

from deepfaune_plugin.hooks.timelapse.ddb import TimelapseError, connect_readonly, reading, table_columns, table_names
from deepfaune_plugin.hooks.timelapse.recognitions import BOX_SHIFT
from deepfaune_plugin.hooks.timelapse.ledger import DETECTIONS, LEDGER_NAME, read_ledger, write_ledger

#: Info.detector as timelapse_json.build_info writes it: "DeepFaune 1.4 detector, mode DFbsMDS (...)"
OWN_DETECTOR = re.compile(r"^DeepFaune \S+ detector, mode (\S+)")
LABELS = {"animal": ANIMAL, "person": PERSON, "human": PERSON, "vehicle": VEHICLE}
EMPTY_LABELS = ("empty",)


def untrim(stored: Sequence[float]) -> tuple[float, float, float, float]:
    """The detector's (x, y, w, h) from the box Timelapse stored (see the module docstring for the residual)."""
    out = []
    for value, shift in zip(stored, BOX_SHIFT):  # the shift Timelapse's import applied
        if value <= 0.0 and shift < 0:  # the corner was clamped at 0 (or was 0)
            out.append(0.0)
        else:
            out.append(max(0.0, round(float(value) - shift, 3)))
    return tuple(out)


def parse_bbox(text: Any) -> tuple[float, float, float, float] | None:
    """Timelapse's bbox text "x, y, w, h" as floats, or None when it is not four numbers."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        return None
    return values if len(values) == 4 and all(np.isfinite(values)) else None


@dataclass
class ExistingDetections:
    """What a .ddb holds from other detectors, by DataTable Id: () means processed, nothing found."""

    detector: str | None = None  # Info.detector (e.g. "md_v5a.0.0.pt")
    megadetector_version: str | None = None
    boxes: dict[int, tuple[KnownBox, ...]] = field(default_factory=dict)
    other_labels: Counter = field(default_factory=Counter)  # boxes dropped: category labels DeepFaune has not
    bad_boxes: int = 0  # rows whose bbox is not four numbers
    own_rows: int = 0  # DataTable rows whose recognitions DeepFaune's own detector wrote (skipped)

    def boxes_for(self, ids: Iterable[int]) -> tuple[KnownBox, ...] | None:
        """The boxes of a file (its first DataTable row that has any), or None."""
        for rid in ids:
            if rid in self.boxes:
                return self.boxes[rid]
        return None


def row_digests(conn: sqlite3.Connection, ids: Iterable[int] | None = None) -> dict[int, str]:
    """DataTable Id -> a digest of its Detections rows (what the ledger compares to spot a later import)."""
    if ids is not None:
        ids = list(ids)
        if not ids:  # nothing to compare: the table is not read at all
            return {}
    rows: dict[int, list] = {}
    for rid, *values in conn.execute(
            "SELECT Id, CAST(category AS TEXT), conf, bbox, CAST(classification AS TEXT), classification_conf "
            "FROM Detections ORDER BY detectionID"):
        rows.setdefault(int(rid), []).append(values)
    wanted = rows.keys() if ids is None else [i for i in ids if i in rows]
    return {rid: hashlib.sha256(json.dumps(rows[rid]).encode()).hexdigest()[:16] for rid in wanted}


def written_by_deepfaune(ddb: Path) -> dict[int, dict[str, str]]:
    """Ledger: DataTable Id -> {"mode": detector mode, "rows": digest} of the recognitions DeepFaune wrote."""
    return {rid: entry for rid, entry in read_ledger(ddb, DETECTIONS).items() if isinstance(entry, dict)}


def record_written(ddb: Path, ids: Iterable[int], mode: str, timeout: float = 30.0) -> Path:
    """After --write-ddb: remember which rows DeepFaune wrote, with which detector mode."""
    conn = connect_readonly(ddb, timeout)
    try:
        digests = row_digests(conn, ids)
    finally:
        conn.close()
    entries = read_ledger(ddb, DETECTIONS)
    entries.update((rid, {"mode": mode, "rows": digest}) for rid, digest in digests.items())
    return write_ledger(ddb, DETECTIONS, entries)


def read_existing(ddb: Path, timeout: float = 5.0) -> ExistingDetections:
    """The image recognitions of other detectors in `ddb`, as known boxes by DataTable Id."""
    with reading(ddb, timeout, "cannot read its recognitions") as conn:
        return _read(conn, ddb)


def _read(conn: sqlite3.Connection, ddb: Path) -> ExistingDetections:
    tables = table_names(conn)
    found = ExistingDetections()
    if not {"Detections", "DetectionCategories"} <= tables:
        return found
    if "Info" in tables:
        row = conn.execute("SELECT detector, megadetector_version FROM Info LIMIT 1").fetchone()
        if row:
            found.detector, found.megadetector_version = row
    labels = {str(k): str(v or "").strip().lower()
              for k, v in conn.execute("SELECT CAST(category AS TEXT), label FROM DetectionCategories")}
    video = "AND x.detectionID NOT IN (SELECT detectionID FROM DetectionsVideo)" if "DetectionsVideo" in tables else ""
    own = written_by_deepfaune(ddb)
    witness = None if own else deepfaune_wrote_here(conn, found.detector)
    if witness:
        raise TimelapseError(
            f"{ddb}: --use-existing-detections, but DeepFaune has written recognitions into this database "
            f"({witness}) and {LEDGER_NAME}, which tells its rows from another detector's, is missing: "
            "DeepFaune's own boxes could be classified as if MegaDetector had found them. "
            f"Put {LEDGER_NAME} back beside the .ddb, or import MegaDetector's results again in Timelapse "
            "(replacing the recognitions), or run without --use-existing-detections")
    digests = row_digests(conn, [rid for rid, entry in own.items() if entry.get("mode") != EXISTING_DETECTIONS])
    skip = {rid for rid, digest in digests.items() if own[rid].get("rows") == digest}
    found.own_rows = len(skip)
    boxes: dict[int, list[KnownBox]] = {}
    for rid, category, conf, bbox in conn.execute(
            f"SELECT x.Id, CAST(x.category AS TEXT), x.conf, x.bbox FROM Detections x WHERE x.Id IS NOT NULL {video} "
            "ORDER BY x.detectionID"):
        rid = int(rid)
        if rid in skip:
            continue
        mine = boxes.setdefault(rid, [])
        label = labels.get(str(category), "")
        if str(category) == "0" or label in EMPTY_LABELS:
            continue
        if label not in LABELS:
            found.other_labels[label or f"category {category}"] += 1
            continue
        stored = parse_bbox(bbox)
        if stored is None:
            found.bad_boxes += 1
            continue
        x, y, w, h = untrim(stored)
        mine.append(KnownBox(x, y, w, h, float(conf or 0.0), LABELS[label]))
    found.boxes = {rid: tuple(b) for rid, b in boxes.items()}
    return found


def own_detector(detector: str | None) -> bool:
    """True when Info.detector names DeepFaune's own detector (not the "existing" boxes of another one)."""
    match = OWN_DETECTOR.match(detector or "")
    return match is not None and match.group(1) != EXISTING_DETECTIONS


def deepfaune_wrote_here(conn: sqlite3.Connection, detector: str | None) -> str | None:
    """What in the .ddb shows that DeepFaune wrote recognitions into it, or None.

    Info.detector naming DeepFaune's detector is the plain case.  Timelapse's merge keeps the
    Info of whichever side its version test prefers (a DeepFaune run over MegaDetector's import
    usually leaves MegaDetector's Info), but it always keeps the union of the classification
    categories, and DeepFaune's carry taxonomy descriptions starting with its own guids.
    """
    if own_detector(detector):
        return f"Info.detector is {detector!r}"
    if "ClassificationCategories" not in table_names(conn) or \
            "description" not in table_columns(conn, "ClassificationCategories"):
        return None
    guids = {t.guid for t in taxa().values()}
    for label, description in conn.execute("SELECT label, description FROM ClassificationCategories"):
        if str(description or "").split(";", 1)[0] in guids:
            return f"its classification category {label!r} is DeepFaune's"
    return None


def summary(existing: ExistingDetections, ddb_name: str) -> str:
    return (f"classifying the boxes already in {ddb_name} (detector: {existing.detector or 'unknown'}) with "
            f"DeepFaune's rules for MegaDetector results: boxes above {JSON_THRESHOLD:g}, the most confident one per "
            "image; no detector is run")


def notes(existing: ExistingDetections) -> list[str]:
    """What was left out of the boxes read (the run's warnings)."""
    out = []
    if existing.own_rows:
        out.append(f"{existing.own_rows} file(s) hold recognitions DeepFaune's own detector wrote, not another "
                   "detector's: they are reported as having no existing detections")
    if existing.other_labels:
        labels = ", ".join(f"{k} ({n})" for k, n in sorted(existing.other_labels.items()))
        out.append(f"boxes of categories DeepFaune does not use were ignored: {labels}")
    if existing.bad_boxes:
        out.append(f"{existing.bad_boxes} box(es) with an unreadable bbox were ignored")
    return out


def describe_existing(info: dict[str, Any], existing: ExistingDetections) -> dict[str, Any]:
    """A recognition file's `info` naming the detector whose boxes were classified, not a DeepFaune detector.

    Keeping that detector's name and version also makes Timelapse's merge keep them in Info.
    """
    info["detector"] = existing.detector or "unknown detector (boxes read from the Timelapse database)"
    meta = info.setdefault("detector_metadata", {})
    if existing.megadetector_version:
        meta["megadetector_version"] = existing.megadetector_version
    meta["typical_detection_threshold"] = JSON_THRESHOLD
    meta["conservative_detection_threshold"] = JSON_THRESHOLD
    if isinstance(info.get("deepfaune"), dict):
        info["deepfaune"]["detections_from"] = existing.detector or "unknown"
    return info


def ids_written(items: Iterable, raw: Mapping[str, Any]) -> list[int]:
    """DataTable Ids of the items a run wrote recognitions for (failed files keep theirs, so are left out)."""
    out: list[int] = []
    for item in items:
        result = raw.get(item.relpath)
        if result is not None and result.failure is None:
            out.extend(int(i) for i in (item.host_key or ()))
    return out
