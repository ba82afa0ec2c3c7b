"""Creating a new Camtrap DP 1.0.2 package from a plain folder or a camtrapR station tree.

One deployment per station folder (the first folder level, as camtrapR's inDir/Station/...).
Nothing about the place or time is guessed: coordinates and deployment dates come from a CSV
the user gives (--deployments-csv), contributors and project from a metadata file
(--package-metadata), the UTC offset of the camera clocks from the CSV or --utc-offset.
Media without an EXIF date cannot have a Camtrap DP timestamp and are left out (reported).
A video's timestamp is its container's creation time, else its file's modification time
(reported: an AVI carries no date), as DeepFaune dates videos.
The package is assembled in a temporary sibling folder, validated, then renamed into place.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import mimetypes
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping


from deepfaune_plugin.api import (FILE_DATE, MEDIA_SUFFIXES, FolderLock, Manifest, MediaItem, Problem, RunResults,
                                  UntrustedInputError, date_for, iter_media, load_yaml, place_file, read_user_text,
                                  staging_dir)

from deepfaune_plugin.hooks.camtrapdp.observations import MediaInfo, build_rows, classification_time, update_descriptor
from deepfaune_plugin.hooks.camtrapdp.package import PackageError
from deepfaune_plugin.hooks.camtrapdp.schema import (DEPLOYMENTS, MEDIA, OBSERVATIONS, SAMPLING_DESIGNS, SCHEMA_BASE,
                               deployment_coordinates, deployment_days, format_datetime, parse_datetime,
                               validate_descriptor, validate_foreign_keys, validate_rows)

VERSION = "1.0.2"
STATION_COLUMNS = ("station", "Station", "deploymentID", "locationName")
OFFSET_COLUMN = "utcOffset"
_OFFSET = re.compile(r"^(?:Z|UTC|[+-]\d{2}:?\d{2})$")
#: fileMediatype of videos, fixed here (the platform's MIME table varies: .m4v, .asf...).
VIDEO_MEDIATYPES = {".mp4": "video/mp4", ".avi": "video/x-msvideo", ".mov": "video/quicktime", ".m4v": "video/x-m4v",
                    ".mpeg": "video/mpeg", ".mpg": "video/mpeg", ".mkv": "video/x-matroska", ".asf": "video/x-ms-asf"}
METADATA_EXAMPLE = """contributors:
  - title: Jane Doe
    email: jane@example.org
    role: principalInvestigator
project:
  title: Wolves of the Vercors
  samplingDesign: opportunistic        # simpleRandom, systematicRandom, clusteredRandom, experimental, targeted
  captureMethod: [activityDetection]   # and/or timeLapse
licenses:                              # optional, passed through
  - {name: CC0-1.0, scope: data}
  - {path: "http://creativecommons.org/licenses/by/4.0/", scope: media}"""


@dataclass
class FolderState:
    """Manifest.host_state when a package is being created."""

    source: Path
    deployments: list[dict[str, str]]  # Camtrap DP deployments rows
    metadata: dict[str, Any]
    media: dict[str, MediaInfo] = field(default_factory=dict)  # relpath -> MediaInfo
    mediatypes: dict[str, str] = field(default_factory=dict)  # relpath -> fileMediatype
    link: bool = False


def _offset(text: str, where: str) -> timezone:
    text = text.strip()
    if not _OFFSET.match(text):
        raise PackageError(f"{where}: {text!r} is not a UTC offset such as +01:00, -05:00 or Z")
    if text in ("Z", "UTC"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _when(text: str, tz: timezone | None, end: bool, where: str) -> str:
    """A deployment date/time from the user's CSV as a Camtrap DP datetime (offset added when absent)."""
    text = text.strip()
    try:
        return format_datetime(parse_datetime(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PackageError(f"{where}: {text!r} is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDThh:mm:ss[+hh:mm])")
    if len(text) == 10 and end:  # a date alone: the whole of its last day
        value = value.replace(hour=23, minute=59, second=59)
    if value.tzinfo is None:
        if tz is None:
            raise PackageError(f"{where}: {text!r} has no UTC offset; add one (e.g. {text}+01:00), a "
                               f"{OFFSET_COLUMN} column, or --utc-offset")
        value = value.replace(tzinfo=tz)
    return format_datetime(value)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise PackageError(f"--deployments-csv: {path} not found")
    try:
        text = read_user_text(path)  # UTF-16 refused with what to do, as for datapackage.json
    except UntrustedInputError as err:
        raise PackageError(f"--deployments-csv: {err}") from None
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return [h.strip() for h in reader.fieldnames or []], rows


def read_deployments(path: Path, stations: set[str], default_tz: timezone | None
                     ) -> tuple[list[dict[str, str]], dict[str, timezone]]:
    """Deployments rows (one per CSV row) and the UTC offset of each station's camera clock."""
    header, rows = _read_csv(path)
    key = next((c for c in STATION_COLUMNS if c in header), None)
    if key is None:
        raise PackageError(f"{path}: needs a station column ({' or '.join(STATION_COLUMNS)}) naming the station folders")
    known = {f.name for f in DEPLOYMENTS}
    unknown = [h for h in header if h not in known and h not in (key, OFFSET_COLUMN, "station", "Station")]
    if unknown:
        raise PackageError(f"{path}: unknown column(s) {', '.join(unknown)}; use Camtrap DP deployment fields "
                           f"({', '.join(sorted(known))}) or {OFFSET_COLUMN}")
    missing = [c for c in ("latitude", "longitude", "deploymentStart", "deploymentEnd") if c not in header]
    if missing:
        raise PackageError(f"{path}: column(s) {', '.join(missing)} missing; coordinates and deployment dates "
                           "are never guessed")
    out: list[dict[str, str]] = []
    offsets: dict[str, timezone] = {}
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        where = f"{path} line {n}"
        station = row[key]
        if not station:
            raise PackageError(f"{where}: no station name")
        if station in seen:
            raise PackageError(f"{where}: station {station!r} is listed twice")
        seen.add(station)
        tz = _offset(row[OFFSET_COLUMN], where) if row.get(OFFSET_COLUMN) else default_tz
        for name in ("latitude", "longitude"):
            if not row[name]:
                raise PackageError(f"{where}: no {name} for station {station!r}")
        deployment = {f.name: row.get(f.name, "") for f in DEPLOYMENTS}
        deployment["deploymentID"] = station
        deployment["locationName"] = deployment["locationName"] or station
        # camtrapR's readcamtrapDP() stops on an empty locationID: the station is the location unless given
        deployment["locationID"] = deployment["locationID"] or station
        deployment["deploymentStart"] = _when(row["deploymentStart"], tz, False, f"{where} deploymentStart")
        if tz is None:  # the clock's offset, as the user wrote it on the deployment start (the end's too, if bare)
            tz = parse_datetime(deployment["deploymentStart"]).tzinfo  # type: ignore[assignment]
        deployment["deploymentEnd"] = _when(row["deploymentEnd"], tz, True, f"{where} deploymentEnd")
        offsets[station] = tz  # type: ignore[assignment]
        out.append(deployment)
    absent = sorted(stations - seen)
    if absent:
        raise PackageError(f"{path}: no row for station folder(s) {', '.join(absent)}; every station needs its "
                           "coordinates and dates (they are never guessed)")
    issues = validate_rows(str(path), DEPLOYMENTS, [f.name for f in DEPLOYMENTS], out)
    if issues:
        raise PackageError("; ".join(f"{path}: station {out[i.row - 1]['deploymentID']!r} {i.field}: {i.message}"
                                     for i in issues[:10]))
    return out, offsets


def read_metadata(path: str | None, source: Path) -> dict[str, Any]:
    if not path:
        raise PackageError("creating a Camtrap DP package needs --package-metadata FILE (YAML or JSON) with at "
                           f"least contributors and the project's sampling design and capture method, e.g.:\n"
                           f"{METADATA_EXAMPLE}")
    if not Path(path).is_file():
        raise PackageError(f"--package-metadata: {path} not found")
    try:
        data = load_yaml(path, max_bytes=1024 * 1024)
    except UntrustedInputError as err:
        raise PackageError(f"--package-metadata: {err}") from None
    if not isinstance(data, dict):
        raise PackageError(f"{path}: must hold a mapping (contributors:, project:, ...)")
    project = data.setdefault("project", {})
    if not isinstance(project, dict):
        raise PackageError(f"{path}: 'project' must be a mapping")
    project.setdefault("title", source.name)
    project.setdefault("individualAnimals", False)  # DeepFaune recognises species, not individuals
    if isinstance(project.get("captureMethod"), str):
        project["captureMethod"] = [project["captureMethod"]]
    lacking = [k for k in ("contributors",) if not data.get(k)]
    lacking += [f"project.{k}" for k in ("samplingDesign", "captureMethod") if not project.get(k)]
    if lacking:
        raise PackageError(f"{path}: {', '.join(lacking)} missing (sampling design: one of "
                           f"{', '.join(SAMPLING_DESIGNS)}); for example:\n{METADATA_EXAMPLE}")
    for key in ("created", "resources", "profile", "spatial", "temporal", "taxonomic"):
        if key in data:
            raise PackageError(f"{path}: '{key}' is computed from the data; remove it from the metadata file")
    issues = validate_descriptor({**_skeleton(), **data, "project": {**project, "observationLevel": []}})
    if issues:
        raise PackageError(f"{path}: " + "; ".join(f"{i.field}: {i.message}" if i.field else i.message
                                                   for i in issues[:10]) + "; nothing was written")
    return data


def media_id(relpath: str) -> str:
    return hashlib.sha1(relpath.encode("utf-8")).hexdigest()[:16]


def read_folder(source: Path, options: Mapping[str, Any], host: str) -> Manifest:
    source = Path(source)
    csv_path = options.get("deployments_csv")
    if not csv_path:
        raise PackageError(f"{source} is not a Camtrap DP package (no datapackage.json). To create one from this "
                           "folder, give --deployments-csv FILE (station, latitude, longitude, deploymentStart, "
                           "deploymentEnd per station folder), --package-metadata FILE and --output NEWDIR")
    metadata = read_metadata(options.get("package_metadata"), source)
    default_tz = _offset(options["utc_offset"], "--utc-offset") if options.get("utc_offset") else None

    problems: list[Problem] = []
    found: list[tuple[Path, str, str, str | None]] = []
    for path, rel in iter_media(source, MEDIA_SUFFIXES, problems=problems):
        parts = rel.split("/")
        if len(parts) == 1:
            problems.append(Problem(rel, "not in a station folder (expected SOURCE/Station/[Camera/]file); skipped"))
            continue
        found.append((path, rel, parts[0], parts[1] if len(parts) > 2 else None))
    if not found:
        raise PackageError(f"{source}: no media in station folders (expected SOURCE/Station/[Camera/]file)")
    deployments, offsets = read_deployments(Path(csv_path), {s for _, _, s, _ in found}, default_tz)
    problems += camera_ids(deployments, found)
    state = FolderState(source, deployments, metadata, link=bool(options.get("link_media")))
    items: list[MediaItem] = []
    for path, rel, station, camera in found:
        item = MediaItem(path=path, relpath=rel, group=rel.rsplit("/", 1)[0], station=station, camera=camera,
                         host_key=media_id(rel))
        date, date_source = date_for(item)  # the date the run will give it, read here for the timestamp
        if date_source == FILE_DATE:
            problems.append(Problem(rel, "video without a creation date in its container; its timestamp is the "
                                         "file's modification time (check it)", skipped=0))
        if date is None:
            problems.append(Problem(rel, f"no {'date' if item.is_video else 'EXIF date'}, so no Camtrap DP "
                                         "timestamp; left out of the package"))
            continue
        stamp = format_datetime(date.replace(tzinfo=offsets[station]))
        state.media[rel] = MediaInfo(media_id(rel), station, stamp)
        state.mediatypes[rel] = (VIDEO_MEDIATYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
                                 or "application/octet-stream")
        items.append(item)
    check_target(Path(options["output"]) if options.get("output") else default_output(source), source)
    return Manifest(root=source, items=items, problems=problems, host=host, host_state=state,
                    trap_days=deployment_days(deployments),
                    station_coordinates=deployment_coordinates(deployments)[0])  # rows checked above


def camera_ids(deployments: list[dict[str, str]], found: list[tuple[Path, str, str, str | None]]) -> list[Problem]:
    """Fill each deployment's empty cameraID from its camera folder (Station/Camera/files, as camtrapR's
    cameraID = "directory"); a station whose files lie in several camera folders, or beside them, has no
    one camera: its cameraID stays empty, said (the CSV's cameraID column always wins)."""
    cameras: dict[str, set[str | None]] = {}
    for _, _, station, camera in found:
        cameras.setdefault(station, set()).add(camera)
    notes = []
    for deployment in deployments:
        seen = cameras.get(deployment["deploymentID"], set())
        if deployment.get("cameraID") or seen in (set(), {None}):
            continue
        if len(seen) == 1:
            deployment["cameraID"] = next(iter(seen))  # type: ignore[assignment]
            continue
        named = ", ".join(sorted(c for c in seen if c is not None))
        notes.append(Problem(f"{deployment['deploymentID']}/", f"station has several camera folders ({named})"
                             + (" and files beside them" if None in seen else "") + "; one deployment holds "
                             "them all, so its cameraID is left empty (give a cameraID column in "
                             "--deployments-csv, or make each camera its own station folder)", skipped=0))
    return notes


def _skeleton() -> dict[str, Any]:
    return {
        "resources": [{"name": n, "path": f"{n}.csv", "profile": "tabular-data-resource", "format": "csv",
                       "mediatype": "text/csv", "encoding": "utf-8",
                       "schema": SCHEMA_BASE.format(version=VERSION) + f"{n}-table-schema.json"}
                      for n in ("deployments", "media", "observations")],
        "profile": SCHEMA_BASE.format(version=VERSION) + "camtrap-dp-profile.json",
        "created": "2000-01-01T00:00:00Z", "contributors": [], "project": {},
        "spatial": {"type": "Point", "coordinates": [0, 0]}, "temporal": {"start": "2000-01-01", "end": "2000-01-01"},
        "taxonomic": [],
    }


def _spatial(deployments: list[dict[str, str]]) -> dict[str, Any]:
    points = sorted({(round(float(d["longitude"]), 6), round(float(d["latitude"]), 6)) for d in deployments})
    if len(points) == 1:
        return {"type": "Point", "coordinates": list(points[0])}
    return {"type": "MultiPoint", "coordinates": [list(p) for p in points]}


def _csv(fields, rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f.name for f in fields])
    for row in rows:
        writer.writerow([row.get(f.name, "") for f in fields])
    return buf.getvalue().encode("utf-8")


def _slug(name: str) -> str:
    return re.sub(r"[^-a-z0-9._]+", "-", name.lower()).strip("-.") or "camtrap-dp-package"


def check_target(target: Path, source: Path) -> None:
    """A new package goes into a new (or empty) folder outside the source; checked before any model runs."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PackageError(f"{target}: already exists and is not empty; a new package is only written into a new "
                           "folder (give another --output)")
    try:
        target.resolve().relative_to(source.resolve())
        raise PackageError(f"{target}: the new package cannot be inside the source folder {source}")
    except ValueError:
        pass


def default_output(source: Path) -> Path:
    return source.parent / f"{source.name}-camtrapdp"


def write_package(manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
    state: FolderState = manifest.host_state
    target = Path(options["output"]) if options.get("output") else default_output(state.source)
    check_target(target, state.source)
    when = format_datetime(classification_time(results.finished))
    media = {rel: info for rel, info in state.media.items() if rel in results.raw}
    observations = build_rows(results.decisions, media, results.raw, results.classes.version,
                              results.settings.threshold, when, results.standin, results.animals, results.head)
    media_rows = [{"mediaID": info.media_id, "deploymentID": info.deployment_id,
                   "captureMethod": state.metadata["project"]["captureMethod"][0]
                   if len(state.metadata["project"]["captureMethod"]) == 1 else "",
                   "timestamp": info.timestamp, "filePath": f"media/{rel}", "filePublic": "false",
                   "fileName": rel.rsplit("/", 1)[-1], "fileMediatype": state.mediatypes[rel]}
                  for rel, info in sorted(media.items(), key=lambda kv: kv[0])]
    starts = [parse_datetime(d["deploymentStart"]) for d in state.deployments]
    ends = [parse_datetime(d["deploymentEnd"]) for d in state.deployments]
    descriptor: dict[str, Any] = {
        **_skeleton(),
        "name": _slug(target.name),
        "id": str(uuid.uuid4()),
        "created": format_datetime(datetime.now(timezone.utc).replace(microsecond=0)),
        **{k: v for k, v in state.metadata.items() if k != "project"},
        "project": {**state.metadata["project"], "observationLevel": []},
        "spatial": _spatial(state.deployments),
        "temporal": {"start": min(starts).date().isoformat(), "end": max(ends).date().isoformat()},
    }
    descriptor.setdefault("title", state.metadata["project"]["title"])
    names = {r["scientificName"] for r in observations if r.get("scientificName")}
    descriptor = update_descriptor(descriptor, names, names, results.standin)

    dep_ids = {d["deploymentID"] for d in state.deployments}
    media_ids = {r["mediaID"] for r in media_rows}
    issues = validate_descriptor(descriptor)
    for name, fields, rows in (("deployments", DEPLOYMENTS, state.deployments), ("media", MEDIA, media_rows),
                               ("observations", OBSERVATIONS, observations)):
        issues += validate_rows(f"{name}.csv", fields, [f.name for f in fields], rows)
        issues += validate_foreign_keys(f"{name}.csv", name, rows, {"deployments": dep_ids, "media": media_ids})
    if issues:
        shown = "\n  ".join(str(i) for i in issues[:20])
        raise PackageError(f"the new package would not be valid Camtrap DP; nothing was written:\n  {shown}")

    target.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(target.parent / f".{target.name}.deepfaune.lock", f"the new package {target}"):
        clear_leftovers(target)
        check_target(target, state.source)  # again, under the lock: another run may have made it meanwhile
        return _build(target, manifest, state, media, descriptor, observations, media_rows)


def clear_leftovers(target: Path) -> None:
    """Remove the half-built folders killed runs left beside `target` (hidden, ours by name; under the lock)."""
    if target.parent.is_dir():
        for part in target.parent.glob(f"{glob.escape('.' + target.name)}.*.part"):
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)


def _build(target: Path, manifest: Manifest, state: FolderState, media: Mapping[str, MediaInfo],
           descriptor: Mapping[str, Any], observations: list[dict[str, str]],
           media_rows: list[dict[str, str]]) -> list[Path]:
    """Assemble the package in a hidden folder beside `target`, then one rename makes it appear whole."""
    work = staging_dir(target)
    try:
        for rel in media:
            dest = work / "media" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            place_file(manifest.root / rel, dest, link=state.link)
        files = {"datapackage.json": (json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
                 "deployments.csv": _csv(DEPLOYMENTS, state.deployments), "media.csv": _csv(MEDIA, media_rows),
                 "observations.csv": _csv(OBSERVATIONS, observations)}
        for name, data in files.items():
            (work / name).write_bytes(data)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return [target / name for name in files]
