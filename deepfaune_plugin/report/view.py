"""What the review page shows, as plain JSON-ready data computed from a run (no HTML, no images).

Keeping the numbers here, in Python, means the page's summary is the same arithmetic as the
result table and can be tested without a browser; the page's script only lays it out.
"""
from __future__ import annotations

import math
from array import array
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..exifdate import PLAUSIBLE_FROM, format_date, plausible_until
from .._version import __version__
from ..boxes import normalised_box
from ..animals import box_entries, species_entries
from ..types import ANIMAL, EMPTY, FILE_DATE, PERSON, TOO_SMALL, VEHICLE, AnimalDecision, Decision, MediaItem, \
    RawResult
from .record import recorded_settings

#: A sequence whose animal score is at most this far above the threshold is worth a second look.
REVIEW_MARGIN = 0.1
CATEGORY_KEYS = {EMPTY: "empty", ANIMAL: "animal", PERSON: "person", VEHICLE: "vehicle"}
_UNDEFINED = "undefined"
_LAST_LABEL_KEYS = ("undefined", "human", "vehicle", "empty")  # shown after the species, in this order
_EPS = 1e-9
#: camtrapR's usual minDeltaTime: a sequence of a species at a station starts an independent event when it
#: starts more than this after the previous independent one (deltaTimeComparedTo = "lastIndependentRecord").
INDEPENDENCE_MINUTES = 30
_EPOCH = datetime(1970, 1, 1)

#: (relpath) -> (thumbnail URL or None, full-size URL or None, whether that URL is a video to play),
#: relative to the page.
Links = Callable[[str], "tuple[str | None, str | None, bool]"]


def station_of(item: MediaItem | None, relpath: str) -> str:
    """The host's station when it knows one, else the top-level folder ("" for files at the root)."""
    if item is not None and item.station:
        return str(item.station)
    folder, _, name = relpath.rpartition("/")
    if folder and name not in ("", ".") and not relpath.startswith("/"):
        return _top_folder(folder)  # a file in a folder: the folder's first part
    parts = PurePosixPath(relpath).parts
    return parts[0] if len(parts) > 1 else ""


@lru_cache(maxsize=4096)
def _top_folder(folder: str) -> str:
    """The first part of a file's folder, parsed once per folder (a season: a few folders, 100,000 files)."""
    parts = PurePosixPath(folder).parts
    return parts[0] if parts else ""


def review_reason(d: Decision, threshold: float) -> str | None:
    """'undefined', 'near' (score within REVIEW_MARGIN above the threshold) or None."""
    if d.failure or d.category != ANIMAL:
        return None
    if d.prediction_key == _UNDEFINED or d.prediction_key.endswith(" " + _UNDEFINED):
        return "undefined"
    if d.score <= threshold + REVIEW_MARGIN + _EPS:
        return "near"
    return None


def _stamp(value: datetime | None) -> str | None:
    return format_date(value, "%Y-%m-%d %H:%M:%S") if value else None


def _norm_box(box, raw: RawResult | None) -> list[float] | None:
    if box is None or raw is None or not raw.width or not raw.height:
        return None
    return list(normalised_box(box, raw.width, raw.height, decimals=5))


def _label_rank(key: str) -> int:
    return _LAST_LABEL_KEYS.index(key) + 1 if key in _LAST_LABEL_KEYS else 0


def _bin_key(unit: str, day: date) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _next_bin(unit: str, start: date) -> date:
    if unit == "week":
        return start + timedelta(days=7)
    if unit == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def activity_bins(events: Iterable[tuple[date, str]] | Counter) -> dict[str, Any]:
    """Sequences per day and category, every day from the first to the last (zeros included): a true time axis.

    `events` are (day, category) pairs, or a Counter of them.  A long span (a camera clock left at
    2000-01-01 makes one) is binned by week, then by month, to stay readable.
    """
    counted = events if isinstance(events, Counter) else Counter(events)
    # a suspect date (a reset clock, year 9999) would stretch the axis over centuries or past date.max
    low, high = PLAUSIBLE_FROM.date(), plausible_until().date()
    suspect = sum(n for (day, _), n in counted.items() if not low <= day <= high)
    counted = Counter({key: n for key, n in counted.items() if low <= key[0] <= high})
    if not counted:
        return {"unit": "day", "bins": [], "suspect": suspect}
    first, last = min(day for day, _ in counted), max(day for day, _ in counted)
    span = (last - first).days
    unit = "day" if span <= 200 else "week" if span <= 1400 else "month"
    cats: dict[date, Counter] = defaultdict(Counter)
    for (day, cat), n in counted.items():
        cats[_bin_key(unit, day)][cat] += n
    bins, cur, end = [], _bin_key(unit, first), _bin_key(unit, last)
    while cur <= end:
        counts = cats.get(cur, Counter())
        text = cur.strftime("%Y-%m") if unit == "month" else cur.isoformat()
        bins.append({"t": text, "n": sum(counts.values()), "cats": dict(counts)})
        cur = _next_bin(unit, cur)
    return {"unit": unit, "bins": bins, "suspect": suspect}


def independent_events(starts: Iterable[float], gap_minutes: float = INDEPENDENCE_MINUTES) -> int:
    """How many of these start times (seconds) begin an independent event: the first, then each one more
    than `gap_minutes` after the last independent one (camtrapR's lastIndependentRecord rule)."""
    events, last = 0, None
    for start in sorted(starts):
        if last is None or start - last > gap_minutes * 60 + _EPS:
            events, last = events + 1, start
    return events


def species_stations(starts: Mapping[tuple[str, str], Sequence[float]], undated: Mapping[tuple[str, str], int],
                     kinds: Mapping[str, tuple[str, str]], trap_days: Mapping[str, float]) -> dict[str, Any]:
    """Rows of (label, station): sequences, independent events and, where the station's deployment is known,
    trap-days and events per 100 trap-days.  Empty sequences are not detections and get no row."""
    rows = []
    for label, station in sorted(set(starts) | set(undated), key=lambda k: (_label_rank(kinds[k[0]][0]), k)):
        key, cat = kinds[label]
        if cat == "empty":
            continue
        times = starts.get((label, station), ())
        untimed = undated.get((label, station), 0)
        events = independent_events(times)
        days = trap_days.get(station)
        rows.append({"label": label, "key": key, "cat": cat, "station": station,
                     "sequences": len(times) + untimed, "events": events, "undated": untimed,
                     "trap_days": None if days is None else round(float(days), 2),
                     "rate": round(100.0 * events / days, 2) if days else None})
    return {"gap_minutes": INDEPENDENCE_MINUTES, "rows": rows}


#: The deployments map: an SVG this size (user units), the stations fitted inside the margin in a local flat
#: (equirectangular) projection about their middle latitude.  No tiles, nothing fetched.
MAP_WIDTH, MAP_HEIGHT, MAP_MARGIN = 600.0, 400.0, 40.0
MAP_MIN_SPAN_KM = 1.0  # one station alone, or stations closer than this, still get a map this wide and tall
KM_PER_DEGREE = 111.32  # km per degree of latitude (and of longitude at the equator)
SCALE_BAR_MAX = 150.0  # the scale bar's longest length, in SVG units


def km_per_degree(latitude: float) -> tuple[float, float]:
    """(km per degree of latitude, km per degree of longitude) at this latitude."""
    return KM_PER_DEGREE, KM_PER_DEGREE * math.cos(math.radians(latitude))


def scale_bar(px_per_km: float, longest: float = SCALE_BAR_MAX) -> tuple[float, float]:
    """The longest round length (1, 2 or 5 × 10^n km) that fits in `longest` SVG units: (km, its length)."""
    limit = longest / px_per_km
    step = 10.0 ** math.floor(math.log10(limit))
    km = max(m * step for m in (1, 2, 5) if m * step <= limit * (1 + 1e-9))
    return round(km, 9), round(km * px_per_km, 2)


def valid_coordinates(coords: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """The stations whose (latitude, longitude) are finite numbers in range (a host's slip never breaks the page)."""
    out = {}
    for name, value in coords.items():
        try:
            lat, lon = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180:
            out[str(name)] = (lat, lon)
    return out


def project_stations(coords: Mapping[str, tuple[float, float]]) -> tuple[dict[str, tuple[float, float]], float]:
    """Each station's (x, y) on the map (SVG units, y down) and the map's scale (SVG units per km).

    x and y are km east and north of the stations' bounding box (1° of latitude = 111.32 km, 1° of longitude
    = 111.32·cos(middle latitude) km), scaled alike so that the box, at least MAP_MIN_SPAN_KM on each side,
    fits inside the margin, and centred."""
    lats = [lat for lat, _ in coords.values()]
    lons = [lon for _, lon in coords.values()]
    ky, kx = km_per_degree((min(lats) + max(lats)) / 2)
    span_x = max((max(lons) - min(lons)) * kx, MAP_MIN_SPAN_KM)
    span_y = max((max(lats) - min(lats)) * ky, MAP_MIN_SPAN_KM)
    scale = min((MAP_WIDTH - 2 * MAP_MARGIN) / span_x, (MAP_HEIGHT - 2 * MAP_MARGIN) / span_y)
    mid_lon, mid_lat = (min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2
    points = {name: (round(MAP_WIDTH / 2 + (lon - mid_lon) * kx * scale, 1),
                     round(MAP_HEIGHT / 2 - (lat - mid_lat) * ky * scale, 1))
              for name, (lat, lon) in coords.items()}
    return points, scale


def station_map(coords: Mapping[str, Any], animals: Mapping[str, int],
                species: Mapping[str, Sequence[tuple[str, int]]], stations: Iterable[str]) -> dict[str, Any] | None:
    """The deployments map's data (None when no station has coordinates): one marker per station with
    coordinates, its radius growing with its sequences with animals; `stations` seen without coordinates are
    listed as `missing`."""
    coords = valid_coordinates(coords)
    if not coords:
        return None
    points, scale = project_stations(coords)
    most = max([animals.get(name, 0) for name in coords] + [0])
    markers = []
    for name in sorted(coords):
        n = animals.get(name, 0)
        markers.append({"name": name, "lat": coords[name][0], "lon": coords[name][1],
                        "x": points[name][0], "y": points[name][1], "animals": n,
                        "r": round(5 + 9 * math.sqrt(n / most), 1) if most else 5.0,
                        "species": [[label, count] for label, count in species.get(name, ())]})
    km, length = scale_bar(scale)
    return {"width": MAP_WIDTH, "height": MAP_HEIGHT, "markers": markers, "scale": {"km": km, "px": length},
            "missing": sorted(set(stations) - set(coords))}


def _settings_dict(settings) -> dict[str, Any]:
    out = {}
    for name, value in recorded_settings(settings).items():
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


class ViewBuilder:
    """The page's data built block by block of results (whole sequences, in order): charts are counted as
    they go (file and sequence totals come from the run's tally), and each sequence is handed to `emit`
    (kept in `sequences` when there is none), so a season's page never needs the season in memory."""

    def __init__(self, threshold: float, emit: Callable[[dict[str, Any]], None] | None = None):
        self.threshold = float(threshold)
        self.sequences: list[dict[str, Any]] = []
        self.emit = emit or self.sequences.append
        self.undated = 0
        self.label_kinds: dict[str, tuple[str, str]] = {}  # label -> (key, category) of its sequences
        self.per_station: dict[str, Counter] = defaultdict(Counter)
        self.days: Counter = Counter()
        self.until = plausible_until()
        self.hours: dict[int, Counter] = defaultdict(Counter)  # hour of a sequence's start -> sequences per category
        self.file_dated = 0  # sequences dated by a video's file time: kept out of the charts
        # (label, station) -> start times (seconds) of its dated sequences, for independent events
        self.starts: dict[tuple[str, str], array] = defaultdict(lambda: array("d"))
        self.undated_pairs: Counter = Counter()
        # the review queue's sort keys, packed (17 bytes a sequence): (not undefined, score, id)
        self.review_near, self.review_score, self.review_id = array("b"), array("d"), array("q")
        self.animal_boxes: Counter | None = None  # --every-animal: boxes and "too small" ones (a page without it
        # is as it was)

    def add(self, items: Mapping[str, MediaItem], raws: Mapping[str, RawResult], decisions: Sequence[Decision],
            links: Links | None = None, animals: Sequence[AnimalDecision] | None = None) -> None:
        """`animals`: with --every-animal, every animal box of these decisions (`RunResults.animals`)."""
        links = links or (lambda rel: (None, None, False))
        members: dict[int, list[Decision]] = defaultdict(list)
        for d in decisions:
            if not d.failure:
                members[d.seqnum].append(d)
        boxes: dict[str, list[AnimalDecision]] | None = None
        if animals is not None:
            self.animal_boxes = self.animal_boxes if self.animal_boxes is not None else Counter()
            boxes = defaultdict(list)
            for a in animals:
                boxes[a.relpath].append(a)
                self.animal_boxes["boxes"] += 1
                self.animal_boxes["too_small"] += a.key == TOO_SMALL
        for seqnum in sorted(members):
            self._sequence(seqnum, members[seqnum], items, raws, links, boxes)

    def _sequence(self, seqnum: int, decisions: list[Decision], items, raws, links,
                  boxes: Mapping[str, list[AnimalDecision]] | None = None) -> None:
        decisions.sort(key=lambda d: (d.date is None, d.date or datetime.min, d.relpath))
        head = decisions[0]
        dates = [d.date for d in decisions if d.date]
        files = []
        file_dated = False  # a member dated by its file time: the sequence's dates are a guess
        for d in decisions:
            raw = raws.get(d.relpath)
            thumb, href, playable = links(d.relpath)
            source = raw.date_source if raw is not None and d.date else ""
            file_dated = file_dated or source == FILE_DATE
            entry = {
                "f": d.relpath, "t": thumb, "h": href, "d": _stamp(d.date), "ds": source,
                "pb": d.predictionbase, "sb": d.scorebase, "b": _norm_box(d.box, raw),
                "bc": None if d.box_conf is None else round(float(d.box_conf), 3),
                "bcat": CATEGORY_KEYS.get(raw.category if raw else EMPTY, "empty"),
                "n": d.count, "nh": d.humancount,
            }
            if playable and href:
                entry["v"] = 1  # a video the full view plays; its box belongs to one frame, shown in the thumbnail
                entry["fn"] = raw.frame_number if raw is not None else None
            if boxes is not None and raw is not None and raw.width and raw.height:
                entry["a"] = box_entries(boxes.get(d.relpath, ()))  # every animal box, with its own label
                entry["ar"] = round(raw.width / raw.height, 5)  # to place them on a letterboxed thumbnail
            files.append(entry)
        seq: dict[str, Any] = {
            "id": seqnum, "label": head.prediction, "key": head.prediction_key,
            "cat": CATEGORY_KEYS.get(head.category, "empty"), "score": head.score, "top1": head.top1,
            "station": station_of(items.get(head.relpath), head.relpath),
            "start": _stamp(min(dates)) if dates else None, "end": _stamp(max(dates)) if dates else None,
            "review": review_reason(head, self.threshold), "files": files,
        }
        if file_dated:
            seq["fd"] = 1
        if boxes is not None:  # the sequence's labels from its boxes, with MaxN and images
            seq["sp"] = species_entries([a for d in decisions for a in boxes.get(d.relpath, ())])
        self.label_kinds.setdefault(seq["label"], (seq["key"], seq["cat"]))
        self.per_station[seq["station"]][seq["cat"]] += 1
        pair = (seq["label"], seq["station"])
        if dates and not file_dated:
            start = min(dates).replace(tzinfo=None)  # the camera's own clock: its hour is the time of day
            self.days[(start.date(), seq["cat"])] += 1
            if PLAUSIBLE_FROM <= start <= self.until:  # a reset clock's hour says nothing either
                self.hours[start.hour][seq["cat"]] += 1
            self.starts[pair].append((start - _EPOCH).total_seconds())
        else:
            self.undated_pairs[pair] += 1
            if dates:
                self.file_dated += 1
            else:
                self.undated += 1
        if seq["review"]:
            self.review_near.append(seq["review"] != "undefined")
            self.review_score.append(seq["score"])
            self.review_id.append(seqnum)
        self.emit(seq)

    def view(self, summary, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything but the sequences (those went to `emit`)."""
        results, manifest = summary.results, summary.manifest
        settings = results.settings
        info = dict(results.backend_info or {})
        tally = summary.tally
        labels = sorted(({"label": label, "key": key, "cat": cat, "sequences": tally.sequences_per_label[label],
                          "files": tally.files_per_label[label]} for label, (key, cat) in self.label_kinds.items()),
                        key=lambda e: (_label_rank(e["key"]), -e["sequences"], e["label"]))
        stations = [{"name": name, "sequences": sum(c.values()), "cats": dict(c)}
                    for name, c in sorted(self.per_station.items())]
        activity = activity_bins(self.days)
        activity["undated"] = self.undated
        activity["file_dated"] = self.file_dated
        activity["hours"] = [{"h": hour, "n": sum(cats.values()), "cats": dict(cats)}
                             for hour, cats in ((h, self.hours.get(h, Counter())) for h in range(24))]
        near, score, ids = self.review_near, self.review_score, self.review_id
        review = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (near[i], score[i], ids[i]))]
        failures = [{"f": rel, "reason": reason} for rel, reason in summary.failures]
        seen_species: dict[str, Counter] = defaultdict(Counter)  # station -> sequences per animal label
        for (label, station) in set(self.starts) | set(self.undated_pairs):
            if self.label_kinds[label][1] == "animal":
                seen_species[station][label] += len(self.starts.get((label, station), ())) + \
                    self.undated_pairs.get((label, station), 0)
        deployments = station_map(manifest.station_coordinates,
                                  {name: c["animal"] for name, c in self.per_station.items()},
                                  {name: sorted(c.items(), key=lambda e: (-e[1], e[0])) for name, c in seen_species.items()},
                                  self.per_station)
        models = [{"role": role, "file": f.get("file", ""), "sha256": f.get("sha256", "")}
                  for role, f in sorted((info.get("files") or {}).items())]
        if results.head:  # `run --adapted`: the site head decided, from the classifier's features
            models.append({"role": "adapted head", "file": results.head, "sha256": ""})
        view = {
            "source": str(manifest.root),
            "host": manifest.host,
            "plugin_version": __version__,
            "model_version": info.get("model_version") or results.classes.version,
            "backend": info.get("backend") or settings.backend,
            "standin": results.standin,
            "models": models,
            "settings": _settings_dict(settings),
            "started": _stamp(results.started), "finished": _stamp(results.finished),
            "elapsed": round(float(summary.elapsed), 1),
            "threshold": self.threshold, "margin": REVIEW_MARGIN,
            "totals": {"files": tally.files, "sequences": tally.sequences, "failed": len(failures),
                       "problems": len(summary.problems), "review": len(review)},
            "labels": labels,
            "stations": stations,
            "activity": activity,
            "species_stations": species_stations(self.starts, self.undated_pairs, self.label_kinds,
                                                 manifest.trap_days),
            "map": deployments,
            "failures": failures,
            "problems": [{"f": p.relpath, "reason": p.reason} for p in summary.problems],
            "review": review,
        }
        if self.animal_boxes is not None:
            view["every_animal"] = {"boxes": self.animal_boxes["boxes"], "too_small": self.animal_boxes["too_small"]}
        view.update(extra or {})
        return view


def build_view(summary, links: Links | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The page's data for a run whose results were kept: totals, label and activity counts, the review
    queue and every sequence."""
    builder = ViewBuilder(summary.results.settings.threshold)
    builder.add({item.relpath: item for item in summary.manifest.items}, summary.results.raw,
                summary.results.decisions, links, summary.results.animals)
    view = builder.view(summary, extra)
    view["sequences"] = builder.sequences
    return view
