"""The human classifications a Camtrap DP package already holds, as DeepFaune keys (Manifest.human_labels).

What `deepfaune evaluate` and the review page compare DeepFaune's decisions with.  Only people's observations
count: classificationMethod "human", or no method at all when the row is not one of this plugin's (a row
DeepFaune wrote, by its classifiedBy or its observationID, stays DeepFaune's answer even with its method
cleared); the media whose only observations are DeepFaune's own are counted and said.  An animal's
scientificName becomes a DeepFaune key through the taxonomy table (`taxonomy.key_for_name`), helped by what the
package's `taxonomic` list says of the name (genus, family, order, class); blank is "empty", human and vehicle
are themselves, unknown and unclassified label nothing.

A media-level observation says what one media shows; an event-level one (no mediaID) applies to every media of
its deployment whose timestamp lies within eventStart..eventEnd, for media without media-level observations of
their own.  A media several observations label gets all their keys: the label rule (`taxonomy.LabelReader`)
says whether they name one class of the model (a heron, bird, and a mallard, anseriform, are both bird
unless the bird option is on); a media one of whose observations names no DeepFaune class is left out, and said.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from datetime import datetime
from typing import Any, Iterable, Mapping

from deepfaune_plugin.api import Problem, key_for_name

from deepfaune_plugin.hooks.camtrapdp.observations import (ID_PREFIX, REVIEW_ID_PREFIX, MediaInfo, is_ours,
                                                           classified_by_deepfaune)
from deepfaune_plugin.hooks.camtrapdp.schema import MISSING, parse_datetime

_TYPES = {"blank": "empty", "human": "human", "vehicle": "vehicle"}
_NOTHING = frozenset({"unknown", "unclassified"})
_UNMAPPED = "\x00"  # an animal no DeepFaune class names: the media stays unlabelled
_RANKS = ("genus", "family", "order", "class")


def higher_ranks(descriptor: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """scientificName -> {genus, family, order, class} as the package's `taxonomic` list gives them."""
    out: dict[str, dict[str, str]] = {}
    entries = descriptor.get("taxonomic") if isinstance(descriptor, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("scientificName"), str):
            continue
        out[entry["scientificName"].strip()] = {rank: entry[rank].strip() for rank in _RANKS
                                                if isinstance(entry.get(rank), str) and entry[rank].strip()}
    return out


def by_deepfaune(row: Mapping[str, str]) -> bool:
    """A row this plugin wrote as DeepFaune's answer: its machine rows, also once a person or a tool cleared the
    classificationMethod (classifiedBy and observationID still say whose it is)."""
    method = (row.get("classificationMethod") or "").strip()
    if method == "human":
        return False  # a person's, be it a `deepfaune review` label or one of ours a person took over
    oid = (row.get("observationID") or "").strip()
    return classified_by_deepfaune(row.get("classifiedBy") or "") or \
        (oid.startswith(ID_PREFIX) and not oid.startswith(REVIEW_ID_PREFIX))


def is_human(row: Mapping[str, str]) -> bool:
    method = (row.get("classificationMethod") or "").strip()
    return method == "human" or (method in MISSING and not is_ours(row) and not by_deepfaune(row))


def _time(text: str) -> datetime | None:
    try:
        return parse_datetime((text or "").strip())
    except (TypeError, ValueError):
        return None


def human_labels(rows: Iterable[Mapping[str, str]], media: Mapping[str, MediaInfo],
                 descriptor: Mapping[str, Any]) -> tuple[dict[str, str | tuple[str, ...]], list[Problem]]:
    """{relpath: DeepFaune key, or the keys of several observations} for the listed `media` that people
    classified, and notes on what was left out."""
    ranks = higher_ranks(descriptor)
    names: dict[str, tuple[str | None, str]] = {}
    unmapped: dict[str, list[str]] = defaultdict(list)  # name -> media ids it labels

    def label(row: Mapping[str, str]) -> str | None:
        kind = (row.get("observationType") or "").strip()
        if kind in _TYPES:
            return _TYPES[kind]
        if kind != "animal":
            return None  # unknown, unclassified, or no type: says nothing DeepFaune could be right about
        name = " ".join((row.get("scientificName") or "").split())
        if not name or name in MISSING:
            return None
        if name not in names:
            names[name] = key_for_name(name, ranks.get(name))
        key = names[name][0]
        return key if key is not None else _UNMAPPED + name

    by_id = {info.media_id: rel for rel, info in media.items()}
    media_level: dict[str, set[str]] = defaultdict(set)
    event_level: dict[str, set[str]] = defaultdict(set)
    timeline: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for rel, info in media.items():
        when = _time(info.timestamp)
        if when is not None:
            timeline[info.deployment_id].append((when, rel))
    for entries in timeline.values():
        entries.sort()
    times = {dep: [t for t, _ in entries] for dep, entries in timeline.items()}
    ours: set[str] = set()  # media DeepFaune's own rows classify
    for row in rows:
        if not is_human(row):
            media_id = (row.get("mediaID") or "").strip()
            if media_id in by_id and by_deepfaune(row):
                ours.add(by_id[media_id])
            continue
        value = label(row)
        if value is None:
            continue
        media_id = (row.get("mediaID") or "").strip()
        if media_id and media_id not in MISSING:
            if media_id in by_id:
                media_level[by_id[media_id]].add(value)
            continue
        dep = (row.get("deploymentID") or "").strip()
        start, end = _time(row.get("eventStart", "")), _time(row.get("eventEnd", ""))
        if dep not in timeline or start is None or end is None:
            continue
        entries = timeline[dep]
        for i in range(bisect_left(times[dep], start), bisect_right(times[dep], end)):
            event_level[entries[i][1]].add(value)

    labels: dict[str, str | tuple[str, ...]] = {}
    problems: list[Problem] = []
    only_ours: list[str] = []
    for rel in media:
        values = media_level.get(rel) or event_level.get(rel)
        if not values:
            if rel in ours:
                only_ours.append(rel)
            continue
        missed = sorted(v[1:] for v in values if v.startswith(_UNMAPPED))
        for name in missed:
            unmapped[name].append(rel)
        if not missed:
            labels[rel] = next(iter(values)) if len(values) == 1 else tuple(sorted(values))
    for name, rels in sorted(unmapped.items()):
        problems.append(Problem(rels[0], f"human observation {name!r} ({len(rels)} file(s), e.g. this one): "
                                         f"{names[name][1]}; left out of the evaluation", skipped=0))
    if only_ours:
        problems.append(Problem(only_ours[0], f"{len(only_ours)} file(s), e.g. this one, have only observations "
                                              "DeepFaune wrote (classifiedBy DeepFaune): its own answers, not "
                                              "people's labels; left out of the evaluation", skipped=0))
    return labels, problems
