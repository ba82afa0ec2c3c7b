"""A Wildlife Insights bulk-upload set (projects, cameras, deployments, images CSVs) made from a plain
Station/[Camera/]file folder tree, with DeepFaune's identifications in images.csv.

Wildlife Insights takes the images themselves from `location` (a bucket it gives the project): the set names
each file by its path in the tree, after `--wi-location-prefix` (e.g. gs://BUCKET/PROJECT/). Latitude and
longitude of each deployment are not in a folder tree: the columns are there, empty, for the user to fill.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from deepfaune_plugin.api import IMAGE_SUFFIXES, Decision, Manifest, MediaItem, Problem, date_for, iter_media

from .export import ExportError, csv_bytes
from .identify import header_with_identifications
from .taxa import identification

PROJECTS = ["project_id", "project_name", "project_short_name", "project_objectives", "project_admin",
            "project_admin_email", "country_code", "embargo", "metadata_license", "image_license"]
CAMERAS = ["project_id", "camera_id", "camera_name", "make", "model", "serial_number", "year_purchased"]
DEPLOYMENTS = ["project_id", "deployment_id", "placename", "longitude", "latitude", "start_date", "end_date",
               "camera_id", "feature_type", "quiet_period", "camera_functioning", "sensor_height",
               "sensor_orientation", "recorded_by", "remarks"]
IMAGES = ["project_id", "deployment_id", "image_id", "filename", "location", "timestamp", "license"]
DATE_FORM = "%Y-%m-%d %H:%M:%S"
#: Identifiers Wildlife Insights accepts without question: letters, digits and - _ . (others become _).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def identifier(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "unnamed"


@dataclass
class TreeState:
    """What read() learnt of the tree and write() needs (Manifest.host_state)."""

    source: Path
    project_id: str
    location_prefix: str
    dates: dict[str, datetime] = field(default_factory=dict)  # relpath -> the date a run uses
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # relpath -> (station, camera)


def read_tree(source: Path, options: Mapping[str, Any], host: str) -> Manifest:
    if not options.get("output"):
        raise ExportError(f"{source}: not a Wildlife Insights export (no images*.csv and deployments*.csv); to make "
                          "a bulk-upload set from this Station/[Camera/] folder tree, give --output NEWDIR")
    state = TreeState(source, identifier(options.get("wi_project_id") or source.resolve().name),
                      str(options.get("wi_location_prefix") or ""))
    problems: list[Problem] = []
    items: list[MediaItem] = []
    for path, rel in iter_media(source, IMAGE_SUFFIXES, problems=problems):  # Wildlife Insights takes images
        parts = rel.split("/")
        if len(parts) == 1:
            problems.append(Problem(rel, "not in a station folder (expected SOURCE/Station/[Camera/]file); skipped"))
            continue
        station, camera = parts[0], (parts[1] if len(parts) > 2 else parts[0])
        item = MediaItem(path=path, relpath=rel, group=rel.rsplit("/", 1)[0], station=station, camera=camera,
                         host_key=rel)
        date, _ = date_for(item)  # Wildlife Insights needs a timestamp per image: known before any model runs
        if date is None:
            problems.append(Problem(rel, "no EXIF date, so no Wildlife Insights timestamp; left out"))
            continue
        state.dates[rel] = date.replace(tzinfo=None)
        state.where[rel] = (station, camera)
        items.append(item)
    if not items:
        raise ExportError(f"{source}: no dated media in station folders (expected SOURCE/Station/[Camera/]file)")
    deployment_ids(set(state.where.values()), source)  # two folders that would get one id: refused now
    return Manifest(root=source, items=items, problems=problems, host=host, host_state=state)


def deployment_ids(wheres: set[tuple[str, str]], source: Path) -> dict[tuple[str, str], str]:
    """(station, camera) -> deployment_id; folder names that differ only in characters an id cannot hold
    ("St A", "St_A") would merge two deployments, so they are refused, naming both."""
    ids: dict[tuple[str, str], str] = {}
    for where in sorted(wheres):
        ids[where] = identifier(where[0] if where[0] == where[1] else f"{where[0]}_{where[1]}")
    for kind, made in (("deployment_id", ids), ("camera_id", {w: identifier(w[1]) for w in wheres})):
        by_id: dict[str, set[str]] = {}
        for where, name in made.items():
            by_id.setdefault(name, set()).add(where[1] if kind == "camera_id" else "/".join(dict.fromkeys(where)))
        clash = sorted((name, sorted(folders)) for name, folders in by_id.items() if len(folders) > 1)
        if clash:
            name, folders = clash[0]
            raise ExportError(f"{source}: folders {' and '.join(folders)} would both be {kind} {name}; rename one")
    return ids


def tree_files(state: TreeState, decisions: list[Decision], version: str) -> dict[str, bytes]:
    """The four CSVs of the set; a deployment is one station and camera, from its first to its last image."""
    deployments: dict[tuple[str, str], list[datetime]] = {}
    for rel, where in state.where.items():
        deployments.setdefault(where, []).append(state.dates[rel])
    pid = state.project_id
    dep_ids = deployment_ids(set(deployments), state.source)
    cameras = sorted({camera for _, camera in deployments})
    camera_rows = [{"project_id": pid, "camera_id": identifier(c), "camera_name": c} for c in cameras]
    dep_rows = [{"project_id": pid, "deployment_id": dep_ids[where], "placename": where[0],
                 "start_date": min(dates).strftime(DATE_FORM), "end_date": max(dates).strftime(DATE_FORM),
                 "camera_id": identifier(where[1])} for where, dates in sorted(deployments.items())]
    header = header_with_identifications(IMAGES)
    image_rows = []
    by_path = {d.relpath: d for d in decisions}
    for rel in state.where:
        row = {"project_id": pid, "deployment_id": dep_ids[state.where[rel]], "image_id": rel,
               "filename": rel.rsplit("/", 1)[-1], "location": state.location_prefix + rel,
               "timestamp": state.dates[rel].strftime(DATE_FORM)}
        decision = by_path.get(rel)
        row.update((decision and identification(decision, version, ("1", "0"))) or {})
        image_rows.append(row)
    return {"projects.csv": csv_bytes(PROJECTS, [{"project_id": pid, "project_name": pid, "project_short_name": pid}]),
            "cameras.csv": csv_bytes(CAMERAS, camera_rows),
            "deployments.csv": csv_bytes(DEPLOYMENTS, dep_rows),
            "images.csv": csv_bytes(header, image_rows)}
