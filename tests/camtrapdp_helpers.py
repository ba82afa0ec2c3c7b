"""Shared by the Camtrap DP tests: a small package built in code, runs with the fake backend,
and the offline `frictionless validate` recipe of hosts.md §3."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.hooks.camtrapdp.host import CamtrapDPHost
from deepfaune_plugin.hooks.camtrapdp.schema import DEPLOYMENTS
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from fakes import outcome_from_name, registry_with_fake
from imagegen import make_jpeg

BASE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/"
OBS_HEADER = ("observationID,deploymentID,mediaID,eventID,eventStart,eventEnd,observationLevel,observationType,"
              "cameraSetupType,scientificName,count,lifeStage,sex,behavior,individualID,individualPositionRadius,"
              "individualPositionAngle,individualSpeed,bboxX,bboxY,bboxWidth,bboxHeight,classificationMethod,"
              "classifiedBy,classificationTimestamp,classificationProbability,observationTags,observationComments")
T0 = datetime(2024, 5, 3, 6, 0, 0)

# (mediaID, deploymentID, file name, seconds after T0); the fake backend reads the outcome from the name
MEDIA = [
    ("m01", "dep1", "fox_1.jpg", 0),
    ("m02", "dep1", "fox_2.jpg", 2),
    ("m03", "dep1", "fox_3.jpg", 4),
    ("m04", "dep1", "empty_1.jpg", 600),
    ("m05", "dep2", "person_1.jpg", 0),
    ("m06", "dep2", "broken_1.jpg", 900),
]
# pre-existing observations: two human classifications (one with a quoted comment over two lines), one of
# another machine, all to be kept byte for byte
OBS_ROWS = (
    'h-event-1,dep1,,ev1,2024-05-03T06:00:00+02:00,2024-05-03T06:00:04+02:00,event,animal,,Vulpes vulpes,1,adult,,,,,,,,,,,'
    'human,Jane Doe,2024-06-01T10:00:00Z,,,"seen, clearly\nat dawn"\r\n'
    'h-m01,dep1,m01,ev1,2024-05-03T06:00:00+02:00,2024-05-03T06:00:00+02:00,media,animal,,Vulpes vulpes,1,,,,,,,,'
    '0.2,0.3,0.1,0.1,human,Jane Doe,2024-06-01T10:00:00Z,,,\r\n'
    'md-m05,dep2,m05,,2024-05-03T06:00:00+02:00,2024-05-03T06:00:00+02:00,media,human,,,1,,,,,,,,,,,,'
    'machine,MegaDetector v5a,2024-06-01T09:00:00Z,0.93,,\r\n'
)


def stamp(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"


def descriptor(taxonomic=None) -> dict:
    return {
        "name": "test-package",
        "resources": [
            {"name": n, "path": f"{n}.csv", "profile": "tabular-data-resource", "format": "csv",
             "mediatype": "text/csv", "encoding": "utf-8", "schema": f"{BASE}{n}-table-schema.json"}
            for n in ("deployments", "media", "observations")
        ],
        "profile": f"{BASE}camtrap-dp-profile.json",
        "created": "2024-06-01T10:00:00Z",
        "contributors": [{"title": "Jane Doe", "role": "principalInvestigator"}],
        "project": {"title": "Test", "samplingDesign": "opportunistic", "captureMethod": ["activityDetection"],
                    "individualAnimals": False, "observationLevel": ["media"]},
        "spatial": {"type": "Point", "coordinates": [5.7, 45.2]},
        "temporal": {"start": "2024-05-01", "end": "2024-05-31"},
        "taxonomic": taxonomic if taxonomic is not None else [
            {"scientificName": "Vulpes vulpes", "taxonRank": "species", "vernacularNames": {"eng": "red fox"}}],
    }


def make_package(root: Path, media=MEDIA, obs_rows: str = OBS_ROWS, extra_media_rows: list[list[str]] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "datapackage.json").write_text(json.dumps(descriptor(), indent=2) + "\n", encoding="utf-8")
    names = [f.name for f in DEPLOYMENTS]
    lines = [",".join(names)]
    for dep, lat, lon in (("dep1", "45.2", "5.7"), ("dep2", "45.3", "5.8")):
        values = {"deploymentID": dep, "latitude": lat, "longitude": lon,
                  "deploymentStart": "2024-05-01T00:00:00+02:00", "deploymentEnd": "2024-05-31T00:00:00+02:00"}
        lines.append(",".join(values.get(n, "") for n in names))
    (root / "deployments.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
                "fileMediatype", "exifData", "favorite", "mediaComments"])
    for i, (media_id, dep, name, seconds) in enumerate(media):
        rel = f"media/{dep}/{name}"
        if "broken" in name:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"not a jpeg")
        else:
            make_jpeg(root / rel, width=160, height=120, date=T0 + timedelta(seconds=seconds), seed=i)
        w.writerow([media_id, dep, "activityDetection", stamp(seconds), rel, "false", name, "image/jpeg", "", "", ""])
    for row in extra_media_rows:
        w.writerow(row)
    (root / "media.csv").write_text(buf.getvalue(), encoding="utf-8")
    (root / "observations.csv").write_bytes((OBS_HEADER + "\r\n" + obs_rows).encode("utf-8"))
    return root


def registry(rule=outcome_from_name):
    reg = registry_with_fake(rule)
    reg.hosts.pop("camtrapdp", None)
    reg.hosts["camtrapdp"] = Registered("camtrapdp", CamtrapDPHost(), "camtrapdp", "tests")
    return reg


RUN_RECORDS = ("deepfaune-run.json", "deepfaune-report.html")  # the pipeline's own log of each run


def run_on(source: Path, rule=outcome_from_name, host="auto", options=None, output=None, report=False, **settings):
    """A run with the fake backend; the host's own files only (no result store, no review page)."""
    settings.setdefault("lang", "en")
    logs: list[str] = []
    summary = run(source, RunSettings(backend="fake", **settings), host=host, host_options=options or {},
                  output=output, registry=registry(rule), progress=False, log=logs.append, store=False,
                  report=report)
    summary.written = [p for p in summary.written if Path(p).name not in RUN_RECORDS]
    return summary, logs


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's hash, except the pipeline's run record (rewritten by every run, by design)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in RUN_RECORDS}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def frictionless_validate(package: Path, spec: Path, work: Path):
    """`frictionless validate` offline (hosts.md §3): local profile, schemas and GeoJSON, run in the package."""
    import frictionless

    dst = work / "validate"
    shutil.copytree(package, dst, ignore=shutil.ignore_patterns("media", ".deepfaune*"))
    local = dst / "camtrap-dp-1.0.2"  # keeps "1.0.2" in every schema path, as the profile demands
    local.mkdir()
    for f in spec.glob("*.json"):
        shutil.copy(f, local)
    shutil.copy(Path(frictionless.__file__).parent / "assets" / "profiles" / "geojson.json", local)
    profile = json.loads((local / "camtrap-dp-profile.json").read_text(encoding="utf-8"))
    profile["allOf"][0]["$ref"] = "data-package-1.0-schema.json"
    profile["allOf"][1]["properties"]["spatial"]["$ref"] = "geojson.json"
    (local / "camtrap-dp-profile.json").write_text(json.dumps(profile), encoding="utf-8")
    dp = json.loads((dst / "datapackage.json").read_text(encoding="utf-8"))
    dp["profile"] = "camtrap-dp-1.0.2/camtrap-dp-profile.json"
    for r in dp["resources"]:
        if "schema" in r:
            r["schema"] = "camtrap-dp-1.0.2/" + r["schema"].rsplit("/", 1)[1]
    (dst / "datapackage.json").write_text(json.dumps(dp), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(dst)
    try:
        return frictionless.validate("datapackage.json")
    finally:
        os.chdir(cwd)
