"""What camtrapR reads back: its record table, a camera-trap table, a species folder tree.

The record table has recordTable()'s columns, in its order and formats, so that read.csv()
gives what camtrapR's own functions expect; DeepFaune's columns follow n_images, where
recordTable() puts its extra metadata columns.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from deepfaune_plugin.api import (HEAD_COLUMN, HUMAN_FIELDS, STANDIN_COLUMN, STANDIN_VALUE, TOO_SMALL, UNDEFINED,
                                  AnimalDecision, Decision, HostError, MediaItem, atomic_output, escape_formula,
                                  format_date, species_in_file)

from deepfaune_plugin.hooks.camtrapr.independence import IndependentRecord, Record, r_collation_key

RECORD_COLUMNS = [
    "Station", "Camera", "Species", "DateTimeOriginal", "Date", "Time",
    "delta.time.secs", "delta.time.mins", "delta.time.hours", "delta.time.days",
    "Directory", "FileName", "n_images",
]
DEEPFAUNE_COLUMNS = ["score", "top1", "seqnum", "predictionbase", "scorebase", "count"]
CAMERA_TABLE_COLUMNS = ["Station", "Camera", "Setup_date", "Retrieval_date"]
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # how R writes a POSIXct, and camtrapR's recordDateTimeFormat
NA = "NA"
#: What a person recorded, as columns after DeepFaune's (a count they gave is in `count`).
#: (a count replaces `count`; counts per species are records of their own, one per species)
PEOPLE_COLUMNS = [name for name in HUMAN_FIELDS if name not in ("count", "species_counts")]

#: prediction keys that are not animals, and the --include value that lets each through
NON_ANIMAL_KEYS = ("undefined", "empty", "human", "vehicle")
FAILED_KEY = "failed"


class CamtrapROutputError(HostError):
    pass


@dataclass(frozen=True)
class Image:
    """One classified file, ready to become a camtrapR record."""

    item: MediaItem
    decision: Decision
    species: str
    directory: str
    filename: str
    #: `--every-animal`: the image's animal boxes of this record's species (its count, score and top1), or ()
    #: for DeepFaune's own record of the image.
    animals: tuple[AnimalDecision, ...] = ()
    #: A person's count of this record's species (HumanFields.species_counts), or None.
    counted: int | None = None
    #: A record of another species than the file's label, which a person counted: what else they recorded
    #: (sex...) is the label's record's, not this one's.
    other_species: bool = False


#: The answers of a file's own that stay a record beside its species records (`--every-animal`): no animal's.
BESIDE_BOXES = ("human", "vehicle")


def species_records(boxes: Sequence[AnimalDecision], include: Iterable[str]) -> dict[str, tuple[AnimalDecision, ...]]:
    """key -> an image's boxes of it: one record per species the image shows (camtrapR's multi-species form).
    A box too small to classify is an animal of unknown species: it counts as "undefined", which, as a file's
    own undefined answer, is a record only with --include undefined."""
    allowed = set(include)
    out: dict[str, tuple[AnimalDecision, ...]] = {}
    for key, group in species_in_file(boxes).items():
        key = UNDEFINED if key == TOO_SMALL else key
        if key in NON_ANIMAL_KEYS and key not in allowed:
            continue
        out[key] = out.get(key, ()) + tuple(group)
    return out


def select(decisions: Iterable[Decision], include: Iterable[str]) -> list[Decision]:
    """Animal decisions, plus the non-animal kinds asked for; failures never."""
    allowed = set(include)
    out = []
    for d in decisions:
        if d.failure or d.prediction_key == FAILED_KEY:
            continue
        if d.prediction_key in NON_ANIMAL_KEYS and d.prediction_key not in allowed:
            continue
        out.append(d)
    return out


def to_record(image: Image) -> Record:
    return Record(station=image.item.station or NA, species=image.species, time=image.decision.date,
                  camera=image.item.camera, payload=image)


def _num(value: float | int) -> str:
    """A number as R's write.csv prints it: integers without a decimal point, no float noise."""
    if isinstance(value, int):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def people_columns(records: Sequence[IndependentRecord]) -> list[str]:
    """The columns of what people recorded (sex, life_stage, behaviour, individual, comment; a count replaces
    `count`) that some record's file has a value for: none, and the table is as before."""
    given = {name for ind in records if (h := ind.record.payload.decision.human) is not None
             for name in h.fields.given()}
    return [c for c in PEOPLE_COLUMNS if c in given]


def record_rows(records: Sequence[IndependentRecord], has_camera: bool,
                standin: bool = False, head: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The record table; a stand-in run's (RunResults.standin) ends with a STANDIN_COLUMN saying so in every row
    (only theirs: a real run's table keeps recordTable()'s columns and DeepFaune's), after HEAD_COLUMN, the
    adapted head that decided (RunResults.head, `run --adapted`; only then). The people's columns
    (`people_columns`) follow DeepFaune's, the record's own file's values."""
    people = people_columns(records)
    header = [c for c in RECORD_COLUMNS if has_camera or c != "Camera"] + DEEPFAUNE_COLUMNS + people \
        + ([HEAD_COLUMN] if head else []) + ([STANDIN_COLUMN] if standin else [])
    rows = []
    for ind in records:
        image: Image = ind.record.payload
        d, when = image.decision, ind.record.time
        score, top1, count = d.score, d.top1, d.count
        if image.animals:  # one species' boxes in the image: its own count, its best box's score and top1
            best = max(image.animals, key=lambda a: a.raw_score)
            score, top1, count = best.score, best.top1, len(image.animals)
        if image.counted is not None:
            count = image.counted
        row = [ind.record.station]
        if has_camera:
            row.append(image.item.camera if image.item.camera is not None else NA)
        row += [
            image.species, format_date(when, DATETIME_FORMAT), format_date(when, "%Y-%m-%d"), when.strftime("%H:%M:%S"),
            _num(ind.delta_secs), _num(ind.delta_mins), _num(ind.delta_hours), _num(ind.delta_days),
            image.directory, image.filename, _num(ind.n_images),
            _num(score), top1, _num(d.seqnum), d.predictionbase, _num(d.scorebase), _num(count),
        ] + [d.human.fields.text(c) if d.human is not None and not image.other_species else "" for c in people] \
            + ([head] if head else []) + ([STANDIN_VALUE] if standin else [])
        rows.append(row)
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """UTF-8 without BOM (read.csv(fileEncoding = "UTF-8") reads it; a BOM would rename the first column)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows([escape_formula(v) for v in row] for row in rows)  # names as text in spreadsheets
    return Path(path)


def camera_table(images: Iterable[tuple[MediaItem, datetime]], has_camera: bool) -> tuple[list[str], list[list[str]]]:
    """Station, [Camera,] Setup_date, Retrieval_date: first and last image time of each station (camera)."""
    spans: dict[tuple[str, str | None], list[datetime]] = {}
    for item, when in images:
        key = (item.station or NA, item.camera if has_camera else None)
        span = spans.setdefault(key, [when, when])
        span[0], span[1] = min(span[0], when), max(span[1], when)
    header = [c for c in CAMERA_TABLE_COLUMNS if has_camera or c != "Camera"]
    rows = []
    for (station, camera), (first, last) in sorted(spans.items(),
                                                   key=lambda kv: (r_collation_key(kv[0][0]), r_collation_key(kv[0][1] or ""))):
        row = [station] + ([camera if camera is not None else NA] if has_camera else [])
        rows.append(row + [format_date(first, DATETIME_FORMAT), format_date(last, DATETIME_FORMAT)])
    return header, rows
