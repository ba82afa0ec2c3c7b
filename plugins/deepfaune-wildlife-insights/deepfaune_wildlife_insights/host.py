"""The `wildlife-insights` host: a Wildlife Insights project export in, DeepFaune's identifications out.

Reading: each image of `images*.csv` is looked for in the media folder (`--wi-media`, default: the export's
folder) as `<deployment_id>/<filename>`, then `<filename>`, then `location` when it is a relative path; what is
not there is reported and skipped. Writing: a copy of the images table with DeepFaune's identifications
(output.py says where), never the export's own files. A plain Station/[Camera/] folder tree with `--output
NEWDIR` becomes a bulk-upload set instead (bulk.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Mapping

from deepfaune_plugin.api import (MEDIA_SUFFIXES, STANDIN_MARK, Host, HostOption, Manifest, MediaItem, Problem,
                                  RunResults, UnsafePathError, hookimpl, safe_relative, say)

from . import bulk, output
from .export import Export, ExportError, csv_bytes, is_export, parse_date, read_export
from .identify import header_with_identifications, identified_rows, person_labels

MAX_LISTED = 10
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")  # C:\photos\... written on Windows


@dataclass
class ExportState:
    """What read() learnt and write() needs (Manifest.host_state)."""

    export: Export
    image_ids: dict[str, str] = field(default_factory=dict)  # relpath -> image_id


class WildlifeInsightsHost(Host):
    name = "wildlife-insights"
    description = ("a Wildlife Insights export (images*.csv, deployments*.csv): identifications into a copy of "
                   "images.csv; or a Station/[Camera/] folder tree made a bulk-upload set with --output NEWDIR")
    priority = 20  # an export is a specific marker; the plain folder host (0) is the last resort
    options = (
        HostOption("wi-media", "folder holding the export's images (as DEPLOYMENT_ID/FILENAME or FILENAME; "
                               "default: the export's folder)"),
        HostOption("wi-project-id", "bulk-upload set: its project_id (default: the source folder's name)"),
        HostOption("wi-location-prefix", "bulk-upload set: put before each image's path in `location`, e.g. "
                                         "gs://BUCKET/PROJECT/ (default: the path alone)"),
    )

    def detect(self, source: Path) -> bool:
        return is_export(Path(source))

    # ------------------------------------------------------------------ read
    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        source = Path(source)
        if not source.is_dir():
            raise ExportError(f"{source}: not a folder (give the unzipped Wildlife Insights export)")
        target = Path(options["output"]) if options.get("output") else None
        if not is_export(source):
            if target is not None and output.is_file_target(target):
                raise ExportError(f"--output {target}: a bulk-upload set is a folder of four CSVs; give a new folder")
            if target is not None:
                output.check_folder_target(target, source)
            return bulk.read_tree(source, options, self.name)
        export = read_export(source)
        self._check_target(target, export)
        media = Path(options.get("wi_media") or source)
        if not media.is_dir():
            raise ExportError(f"--wi-media {media}: not a folder")
        state = ExportState(export)
        problems: list[Problem] = []
        items = self._items(export, media, state, problems)
        if not items:
            raise ExportError(f"{export.images.path}: none of its {len(export.images.rows)} images is in {media} "
                              "(as DEPLOYMENT_ID/FILENAME or FILENAME); give the media folder with --wi-media")
        trap_days, coordinates = _deployment_facts(export)
        labels = person_labels(export.images.rows)  # what `deepfaune evaluate` compares with
        return Manifest(root=media, items=items, problems=problems, host=self.name, host_state=state,
                        trap_days=trap_days, station_coordinates=coordinates,
                        human_labels={rel: labels[i] for rel, i in state.image_ids.items() if i in labels})

    @staticmethod
    def _check_target(target: Path | None, export: Export) -> None:
        if target is None:
            return
        if output.is_file_target(target):
            output.check_file_target(target, [t.path for t in export.tables.values()])
        else:
            output.check_folder_target(target, export.root)

    @staticmethod
    def _items(export: Export, media: Path, state: ExportState, problems: list[Problem]) -> list[MediaItem]:
        table = export.images
        stations = {r["deployment_id"]: (r.get("placename") or r["deployment_id"], r.get("camera_id") or None)
                    for r in export.deployments.rows}
        items: list[MediaItem] = []
        seen: dict[str, str] = {}  # relpath -> image_id
        handled: set[str] = set()
        missing: list[str] = []
        for number, row in enumerate(table.rows, 2):
            image_id, deployment = row.get("image_id", ""), row.get("deployment_id", "")
            if not image_id or image_id in handled:
                continue  # an image's further identification rows
            handled.add(image_id)
            try:
                found = _find(media, row, table.path)
            except UnsafePathError as err:
                problems.append(Problem(image_id, f"{table.path.name} line {number}: {err}; skipped"))
                continue
            if found is None:
                missing.append(image_id)
                continue
            path, rel = found
            if rel in seen:
                problems.append(Problem(rel, f"{table.path.name} line {number}: image {image_id} is the same file as "
                                             f"image {seen[rel]}; skipped"))
                continue
            if path.suffix.lower() not in MEDIA_SUFFIXES:
                problems.append(Problem(rel, f"{table.path.name} line {number}: not an image or video; skipped"))
                continue
            seen[rel] = image_id
            station, camera = stations.get(deployment, (deployment, None))
            stamp = parse_date(row.get("timestamp", ""))
            if stamp is None and row.get("timestamp", "").strip():
                problems.append(Problem(rel, f"{table.path.name} line {number}: timestamp {row['timestamp']!r} is "
                                             "not a date; the file's own date is used", skipped=0))
            items.append(MediaItem(path=path, relpath=rel, group=deployment, timestamp=stamp, station=station,
                                   camera=camera, host_key=image_id))
        state.image_ids = seen
        if missing:
            more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
            problems.append(Problem(table.path.name, f"{len(missing)} images not found in {media}: "
                                                     f"{', '.join(missing[:MAX_LISTED])}{more}", skipped=len(missing)))
        return items

    # ------------------------------------------------------------------ write
    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        state = manifest.host_state
        version = results.classes.version
        if results.head:  # `run --adapted NAME`: the site head decided; identified_by says so
            version = f"{version}, adapted head {results.head}"
        if results.standin:  # random weights: every identification says so, and a later real run replaces it
            version = f"{version} ({STANDIN_MARK})"
        if isinstance(state, bulk.TreeState):
            written = output.write_folder(Path(options["output"]), bulk.tree_files(state, results.decisions, version))
            say(f"wildlife-insights: bulk-upload set written to {Path(options['output'])} (fill in the deployments' "
                "latitude and longitude before uploading)")
            return written
        export: Export = state.export
        table = export.images
        if table.path.read_bytes() != table.data:
            raise ExportError(f"{table.path}: changed while DeepFaune was running; nothing was written (run again)")
        decisions = {state.image_ids[d.relpath]: d for d in results.decisions if d.relpath in state.image_ids}
        header = header_with_identifications(table.header)
        rows, written, kept = identified_rows(header, table.rows, decisions, version)
        data = csv_bytes(header, rows)
        target = Path(options.get("output") or export.root / output.DEFAULT_NAME)
        if kept:
            say(f"wildlife-insights: {_images(kept)} a person identified left as they are")
        if output.is_file_target(target):
            files = [output.write_file(target, data)]
        else:
            copies = {"images.csv": data}
            copies.update({f"{name}.csv": t.data for name, t in export.tables.items() if name != "images"})
            files = output.write_folder(target, copies)
        say(f"wildlife-insights: {_images(written)} identified by DeepFaune {version} in {target} "
            f"({table.path.name} itself is unchanged)")
        return files


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


def _find(media: Path, row: Mapping[str, str], listing: Path) -> tuple[Path, str] | None:
    """The image's file under `media` and its path there, or None; names that leave `media` are refused."""
    name = row.get("filename", "").strip()
    location = row.get("location", "").strip()
    if not name and location:
        name = re.split(r"[\\/]", location.rstrip("/\\"))[-1]  # the last name of a URL or a Windows path
    candidates = []
    if name:
        deployment = row.get("deployment_id", "").strip()
        if deployment:
            candidates.append(f"{deployment}/{name}")
        candidates.append(name)
    if location and "://" not in location and not PurePath(location).is_absolute() and not _DRIVE.match(location):
        candidates.append(location)  # a relative path; an absolute or remote one names no file of the media folder
    for rel in candidates:
        path = safe_relative(media, rel, manifest=listing)
        if path.is_file():
            return path, Path(rel).as_posix()
    return None


def _deployment_facts(export: Export) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Trap-days and coordinates per station (placename, else deployment_id), where the deployments say them."""
    days: dict[str, float] = {}
    where: dict[str, tuple[float, float]] = {}
    for row in export.deployments.rows:
        station = row.get("placename") or row.get("deployment_id", "")
        start, end = parse_date(row.get("start_date", "")), parse_date(row.get("end_date", ""))
        if start and end and end > start:
            days[station] = days.get(station, 0.0) + (end - start).total_seconds() / 86400
        try:
            lat, lon = float(row.get("latitude", "")), float(row.get("longitude", ""))
        except ValueError:
            continue
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            where[station] = (lat, lon)
    return days, where


@hookimpl
def register_hosts(register):
    register(WildlifeInsightsHost())
