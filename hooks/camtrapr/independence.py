"""camtrapR's temporal independence, as `recordTable()` applies it (camtrapR 2.x–3.0.x).

Per station, camtrapR (recordTable → removeDuplicatesOfRecords → assessTemporalIndependence):

0. stations come in the order list.dirs() gives (R's locale collation: `r_collation_key`), and every
   sort below compares species and cameras the same way, as order() does in a UTF-8 locale;
1. sorts the records by species, [camera when cameras are independent], time, and drops every
   record whose (time, species[, camera]) was already seen: same-second images collapse to the
   first one (`removeDuplicateRecords = TRUE`, its default and forced when minDeltaTime > 0);
2. re-sorts by species then time (a stable sort: ties keep the camera order);
3. walks the rows: the earliest record of a species (at a camera, when cameras are independent)
   is independent with delta 0; any other record gets delta = its time minus the latest earlier
   record of the same species [and camera], counting only independent ones for
   "lastIndependentRecord", and is independent when delta >= minDeltaTime * 60 s (or delta is 0);
4. n_images of an independent record counts the rows of its species [and camera] whose time is
   not earlier than its own and that lie before the *next independent row of the table* (any
   species/camera; with independent cameras this can cut an event short: camtrapR does so too);
5. keeps the independent rows, rounding seconds to 0 decimals, then minutes = secs / 60,
   hours = minutes / 60 and days = hours / 24, each rounded to 1 decimal from the previous
   *rounded* value, with R's `round()` (R >= 4.0.0: the nearer of the two decimal candidates,
   ties to even), which differs from Python's round, e.g. 3 s = 0.05 min → 0 in R.
"""
from __future__ import annotations

import bisect
import math
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

LAST_INDEPENDENT = "lastIndependentRecord"
LAST_RECORD = "lastRecord"
COMPARED_TO = (LAST_INDEPENDENT, LAST_RECORD)


def r_round(x: float, digits: int = 0) -> float:
    """R (>= 4.0.0) `round(x, digits)`: the nearer of floor/ceiling at `digits` decimals, ties to even.

    Both candidates and both distances are computed in doubles, as R does, so a value like 0.05
    (just above 1/20 in binary) is a tie between 0.0 and 0.1 and goes to the even 0.0.
    """
    if not math.isfinite(x):
        return x
    if digits == 0:
        return float(round(x))  # nearbyint: half to even, as R
    if x < 0:
        return -r_round(-x, digits)
    p10 = 10.0 ** digits
    x10 = p10 * x
    i10 = math.floor(x10)
    down = i10 / p10
    up = math.ceil(x10) / p10
    diff = (up - x) - (x - down)
    if diff < 0 or (diff == 0 and i10 % 2 == 1):
        return up
    return down


def _primary_class(ch: str) -> int:
    """Where a character's kind sorts in the Unicode collation R uses: spaces, punctuation and symbols,
    digits, then letters (other scripts after Latin by code point)."""
    if ch.isspace():
        return 0
    if ch.isdigit():
        return 2
    if ch.isalpha():
        return 3
    return 1


def r_collation_key(text: str) -> tuple:
    """A sort key that orders strings as R's `order()` does in a UTF-8 locale (ICU / CLDR root collation).

    Three levels, as the Unicode Collation Algorithm: letters first without case or accents
    ("Épervier" sorts with "epervier", before "Fox"), then accents (e < é), then case (lowercase
    first: "fox" < "Fox"). Strings equal at every level are ties, which R's order() (and Python's
    stable sort) keep in their input order.  Python's default order would put every capital before
    every lowercase letter and every accented letter after "z", so stations "b", "A", "é" would not
    come out as camtrapR lists them.
    """
    decomposed = unicodedata.normalize("NFD", text)
    base = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    primary = tuple((_primary_class(ch), ch) for ch in base)
    secondary = unicodedata.normalize("NFD", text.casefold())
    tertiary = tuple(0 if not ch.isupper() else 1 for ch in decomposed if not unicodedata.combining(ch))
    return primary, secondary, tertiary


def _camera_key(camera: str | None) -> tuple:
    return r_collation_key(camera or "")


@dataclass(frozen=True)
class Record:
    """One image of one species at one station (camera optional); `payload` travels untouched."""

    station: str
    species: str
    time: datetime
    camera: str | None = None
    payload: Any = None


@dataclass(frozen=True)
class IndependentRecord:
    """A record camtrapR keeps, with its delta times (rounded as camtrapR rounds them) and n_images."""

    record: Record
    delta_secs: float
    delta_mins: float
    delta_hours: float
    delta_days: float
    n_images: int


def remove_duplicates(records: Sequence[Record], cameras_independent: bool = False) -> list[Record]:
    """Sort by species, [camera,] time and keep the first record of each (time, species[, camera])."""
    if cameras_independent:
        ordered = sorted(records, key=lambda r: (r_collation_key(r.species), _camera_key(r.camera), r.time))
    else:
        ordered = sorted(records, key=lambda r: (r_collation_key(r.species), r.time))
    seen: set[tuple] = set()
    kept = []
    for r in ordered:
        key = (r.time, r.species, r.camera if cameras_independent else None)
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept


def _deltas(secs: float) -> tuple[float, float, float, float]:
    s = r_round(secs, 0)
    mins = r_round(s / 60, 1)
    hours = r_round(mins / 60, 1)
    days = r_round(hours / 24, 1)
    return s, mins, hours, days


def assess_station(
    records: Sequence[Record],
    min_delta_time: int = 0,
    compared_to: str = LAST_INDEPENDENT,
    cameras_independent: bool = False,
) -> list[IndependentRecord]:
    """The independent records of one station, in camtrapR's order (species, then time)."""
    if compared_to not in COMPARED_TO:
        raise ValueError(f"deltaTimeComparedTo must be one of {', '.join(COMPARED_TO)}, got {compared_to!r}")
    if min_delta_time < 0:
        raise ValueError(f"minDeltaTime must be >= 0 minutes, got {min_delta_time}")
    rows = remove_duplicates(records, cameras_independent)
    rows.sort(key=lambda r: (r_collation_key(r.species), r.time))  # stable: ties keep the camera order of step 1

    # After step 1 the times of one unit (species, or species + camera) strictly increase down
    # the table, so "the latest earlier record" is the unit's previous row (or its last
    # independent one) and "rows of the unit not earlier than row i" are its rows from i on.
    units: dict[tuple, list[int]] = {}
    last_independent: dict[tuple, int] = {}
    independent = [False] * len(rows)
    delta = [0.0] * len(rows)
    for i, r in enumerate(rows):
        unit = (r.species, r.camera if cameras_independent else None)
        members = units.setdefault(unit, [])
        if not members:  # the unit's earliest record
            independent[i] = True
        else:
            ref = members[-1] if compared_to == LAST_RECORD else last_independent[unit]
            secs = (r.time - rows[ref].time).total_seconds()
            delta[i] = secs
            independent[i] = secs >= min_delta_time * 60 or secs == 0
        if independent[i]:
            last_independent[unit] = i
        members.append(i)

    position = {i: (unit, k) for unit, members in units.items() for k, i in enumerate(members)}
    starts = [i for i, flag in enumerate(independent) if flag]
    out = []
    for n, i in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else len(rows)
        unit, k = position[i]
        members = units[unit]
        n_images = bisect.bisect_left(members, stop, lo=k) - k
        out.append(IndependentRecord(rows[i], *_deltas(delta[i]), n_images=n_images))
    return out


def assess(
    records: Sequence[Record],
    min_delta_time: int = 0,
    compared_to: str = LAST_INDEPENDENT,
    cameras_independent: bool = False,
) -> list[IndependentRecord]:
    """All stations, each assessed on its own (as recordTable does station folder by folder), stations sorted
    as R's list.dirs() lists them (locale collation)."""
    by_station: dict[str, list[Record]] = {}
    for r in records:
        by_station.setdefault(r.station, []).append(r)
    out: list[IndependentRecord] = []
    for station in sorted(by_station, key=r_collation_key):
        out.extend(assess_station(by_station[station], min_delta_time, compared_to, cameras_independent))
    return out
