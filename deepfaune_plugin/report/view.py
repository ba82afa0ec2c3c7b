"""What the review page shows, as plain JSON-ready data computed from a run (no HTML, no images).

Keeping the numbers here, in Python, means the page's summary is the same arithmetic as the
result table and can be tested without a browser; the page's script only lays it out.
"""
from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Sequence

from .._version import __version__
from ..types import ANIMAL, EMPTY, PERSON, VEHICLE, Decision, MediaItem, RawResult

#: A sequence whose animal score is at most this far above the threshold is worth a second look.
REVIEW_MARGIN = 0.1
CATEGORY_KEYS = {EMPTY: "empty", ANIMAL: "animal", PERSON: "person", VEHICLE: "vehicle"}
_UNDEFINED = "undefined"
_LAST_LABEL_KEYS = ("undefined", "human", "vehicle", "empty")  # shown after the species, in this order
_EPS = 1e-9

#: (relpath) -> (thumbnail URL or None, full-size URL or None), relative to the page.
Links = Callable[[str], "tuple[str | None, str | None]"]


def station_of(item: MediaItem | None, relpath: str) -> str:
    """The host's station when it knows one, else the top-level folder ("" for files at the root)."""
    if item is not None and item.station:
        return str(item.station)
    parts = PurePosixPath(relpath).parts
    return parts[0] if len(parts) > 1 else ""


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
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def _norm_box(box, raw: RawResult | None) -> list[float] | None:
    if box is None or raw is None or not raw.width or not raw.height:
        return None
    x1, y1, x2, y2 = box
    return [round(x1 / raw.width, 5), round(y1 / raw.height, 5),
            round((x2 - x1) / raw.width, 5), round((y2 - y1) / raw.height, 5)]


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


def activity_bins(events: Sequence[tuple[date, str]]) -> dict[str, Any]:
    """Sequences per day and category, every day from the first to the last (zeros included): a true time axis.

    A long span (a camera clock left at 2000-01-01 makes one) is binned by week, then by month, to stay readable.
    """
    if not events:
        return {"unit": "day", "bins": []}
    first, last = min(day for day, _ in events), max(day for day, _ in events)
    span = (last - first).days
    unit = "day" if span <= 200 else "week" if span <= 1400 else "month"
    cats: dict[date, Counter] = defaultdict(Counter)
    for day, cat in events:
        cats[_bin_key(unit, day)][cat] += 1
    bins, cur, end = [], _bin_key(unit, first), _bin_key(unit, last)
    while cur <= end:
        counts = cats.get(cur, Counter())
        text = cur.strftime("%Y-%m") if unit == "month" else cur.isoformat()
        bins.append({"t": text, "n": sum(counts.values()), "cats": dict(counts)})
        cur = _next_bin(unit, cur)
    return {"unit": unit, "bins": bins}


def _settings_dict(settings) -> dict[str, Any]:
    out = {}
    for name, value in dataclasses.asdict(settings).items():
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def build_view(summary, links: Links | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The page's data: totals, label and activity counts, the review queue and every sequence."""
    results, manifest = summary.results, summary.manifest
    settings = results.settings
    links = links or (lambda rel: (None, None))
    items = {item.relpath: item for item in manifest.items}
    threshold = float(settings.threshold)

    members: dict[int, list[Decision]] = defaultdict(list)
    for d in results.decisions:
        if not d.failure:
            members[d.seqnum].append(d)

    sequences = []
    for seqnum, decisions in members.items():
        decisions.sort(key=lambda d: (d.date is None, d.date or datetime.min, d.relpath))
        head = decisions[0]
        dates = [d.date for d in decisions if d.date]
        files = []
        for d in decisions:
            raw = results.raw.get(d.relpath)
            thumb, href = links(d.relpath)
            files.append({
                "f": d.relpath, "t": thumb, "h": href, "d": _stamp(d.date),
                "pb": d.predictionbase, "sb": d.scorebase, "b": _norm_box(d.box, raw),
                "bc": None if d.box_conf is None else round(float(d.box_conf), 3),
                "bcat": CATEGORY_KEYS.get(raw.category if raw else EMPTY, "empty"),
                "n": d.count, "nh": d.humancount,
            })
        sequences.append({
            "id": seqnum, "label": head.prediction, "key": head.prediction_key,
            "cat": CATEGORY_KEYS.get(head.category, "empty"), "score": head.score, "top1": head.top1,
            "station": station_of(items.get(head.relpath), head.relpath),
            "start": _stamp(min(dates)) if dates else None, "end": _stamp(max(dates)) if dates else None,
            "review": review_reason(head, threshold), "files": files,
        })
    sequences.sort(key=lambda s: s["id"])

    per_label: dict[str, dict[str, Any]] = {}
    for s in sequences:
        entry = per_label.setdefault(s["label"], {"label": s["label"], "key": s["key"], "cat": s["cat"],
                                                  "sequences": 0, "files": 0})
        entry["sequences"] += 1
        entry["files"] += len(s["files"])
    labels = sorted(per_label.values(), key=lambda e: (_label_rank(e["key"]), -e["sequences"], e["label"]))

    per_station: dict[str, Counter] = defaultdict(Counter)
    for s in sequences:
        per_station[s["station"]][s["cat"]] += 1
    stations = [{"name": name, "sequences": sum(c.values()), "cats": dict(c)} for name, c in sorted(per_station.items())]

    events = [(datetime.strptime(s["start"][:10], "%Y-%m-%d").date(), s["cat"]) for s in sequences if s["start"]]
    activity = activity_bins(events)
    activity["undated"] = len(sequences) - len(events)

    review = [s["id"] for s in sorted((s for s in sequences if s["review"]),
                                      key=lambda s: (s["review"] != "undefined", s["score"], s["id"]))]
    failures = [{"f": rel, "reason": reason} for rel, reason in summary.failures]
    info = dict(results.backend_info or {})
    models = [{"role": role, "file": f.get("file", ""), "sha256": f.get("sha256", "")}
              for role, f in sorted((info.get("files") or {}).items())]
    started, finished = results.started, results.finished
    n_files = len(results.decisions)
    view = {
        "source": str(manifest.root),
        "host": manifest.host,
        "plugin_version": __version__,
        "model_version": info.get("model_version") or results.classes.version,
        "backend": info.get("backend") or settings.backend,
        "standin": bool(info.get("standin")),
        "models": models,
        "settings": _settings_dict(settings),
        "started": _stamp(started), "finished": _stamp(finished),
        "elapsed": round(float(summary.elapsed), 1),
        "threshold": threshold, "margin": REVIEW_MARGIN,
        "totals": {"files": n_files, "sequences": len(sequences), "failed": len(failures),
                   "problems": len(summary.problems), "review": len(review)},
        "labels": labels,
        "stations": stations,
        "activity": activity,
        "failures": failures,
        "problems": [{"f": p.relpath, "reason": p.reason} for p in summary.problems],
        "review": review,
        "sequences": sequences,
    }
    view.update(extra or {})
    return view
