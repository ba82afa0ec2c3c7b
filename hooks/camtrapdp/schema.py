"""Camtrap DP 1.0.2 table fields and a validator that needs no outside library.

The field list, types and constraints are those of the official table schemas
(deployments-, media-, observations-table-schema.json, Camtrap DP 1.0.2; 1.0 and 1.0.1 have
the same fields).  The checks mirror what `frictionless validate` does with them (types,
required, enums, ranges, patterns, unique keys, foreign keys) plus the profile's required
package properties, so a package is checked before it replaces anything even when
frictionless is not installed; the package descriptor is also checked against the official
profile itself (profile.py, jsonschema).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from deepfaune_plugin.hooks.camtrapdp.profile import profile_errors

MISSING = frozenset({"", "NA", "NaN", "nan"})
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
TRUE_VALUES = frozenset({"true", "True", "TRUE", "1"})
FALSE_VALUES = frozenset({"false", "False", "FALSE", "0"})
FILE_PATH_PATTERN = r"^(?=^[^./~])(^((?!\.{2}).)*$).*$"
SCHEMA_BASE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/{version}/"


@dataclass(frozen=True)
class F:
    """One field of a Camtrap DP table schema."""

    name: str
    type: str  # string, number, integer, datetime, boolean, any
    required: bool = False
    unique: bool = False
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None


DEPLOYMENTS = (
    F("deploymentID", "string", required=True, unique=True),
    F("locationID", "string"),
    F("locationName", "string"),
    F("latitude", "number", required=True, minimum=-90, maximum=90),
    F("longitude", "number", required=True, minimum=-180, maximum=180),
    F("coordinateUncertainty", "integer", minimum=1),
    F("deploymentStart", "datetime", required=True),
    F("deploymentEnd", "datetime", required=True),
    F("setupBy", "string"),
    F("cameraID", "string"),
    F("cameraModel", "string"),
    F("cameraDelay", "integer", minimum=0),
    F("cameraHeight", "number", minimum=0),
    F("cameraDepth", "number", minimum=0),
    F("cameraTilt", "integer", minimum=-90, maximum=90),
    F("cameraHeading", "integer", minimum=0, maximum=360),
    F("detectionDistance", "number", minimum=0),
    F("timestampIssues", "boolean"),
    F("baitUse", "boolean"),
    F("featureType", "string", enum=(
        "roadPaved", "roadDirt", "trailHiking", "trailGame", "roadUnderpass", "roadOverpass", "roadBridge",
        "culvert", "burrow", "nestSite", "carcass", "waterSource", "fruitingTree")),
    F("habitat", "string"),
    F("deploymentGroups", "string"),
    F("deploymentTags", "string"),
    F("deploymentComments", "string"),
)
MEDIA = (
    F("mediaID", "string", required=True, unique=True),
    F("deploymentID", "string", required=True),
    F("captureMethod", "string", enum=("activityDetection", "timeLapse")),
    F("timestamp", "datetime", required=True),
    F("filePath", "string", required=True, pattern=FILE_PATH_PATTERN),
    F("filePublic", "boolean", required=True),
    F("fileName", "string"),
    F("fileMediatype", "string", required=True, pattern=r"^(image|video|audio)/.*$"),
    F("exifData", "any"),
    F("favorite", "boolean"),
    F("mediaComments", "string"),
)
OBSERVATIONS = (
    F("observationID", "string", required=True, unique=True),
    F("deploymentID", "string", required=True),
    F("mediaID", "string"),
    F("eventID", "string"),
    F("eventStart", "datetime", required=True),
    F("eventEnd", "datetime", required=True),
    F("observationLevel", "string", required=True, enum=("media", "event")),
    F("observationType", "string", required=True,
      enum=("animal", "human", "vehicle", "blank", "unknown", "unclassified")),
    F("cameraSetupType", "string", enum=("setup", "calibration")),
    F("scientificName", "string"),
    F("count", "integer", minimum=1),
    F("lifeStage", "string", enum=("adult", "subadult", "juvenile")),
    F("sex", "string", enum=("female", "male")),
    F("behavior", "string"),
    F("individualID", "string"),
    F("individualPositionRadius", "number", minimum=0),
    F("individualPositionAngle", "number", minimum=-90, maximum=90),
    F("individualSpeed", "number", minimum=0),
    F("bboxX", "number", minimum=0, maximum=1),
    F("bboxY", "number", minimum=0, maximum=1),
    F("bboxWidth", "number", minimum=1e-15, maximum=1),
    F("bboxHeight", "number", minimum=1e-15, maximum=1),
    F("classificationMethod", "string", enum=("human", "machine")),
    F("classifiedBy", "string"),
    F("classificationTimestamp", "datetime"),
    F("classificationProbability", "number", minimum=0, maximum=1),
    F("observationTags", "string"),
    F("observationComments", "string"),
)
TABLES = {"deployments": DEPLOYMENTS, "media": MEDIA, "observations": OBSERVATIONS}
FOREIGN_KEYS = {  # table -> [(field, referenced table, referenced field)]
    "media": [("deploymentID", "deployments", "deploymentID")],
    "observations": [("deploymentID", "deployments", "deploymentID"), ("mediaID", "media", "mediaID")],
}

CONTRIBUTOR_ROLES = ("contact", "principalInvestigator", "rightsHolder", "publisher", "contributor")
SAMPLING_DESIGNS = ("simpleRandom", "systematicRandom", "clusteredRandom", "experimental", "targeted", "opportunistic")
CAPTURE_METHODS = ("activityDetection", "timeLapse")
TAXON_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species", "subspecies")


@dataclass(frozen=True)
class Issue:
    """One validation failure; `row` is 1-based over data rows (None for package-level issues)."""

    where: str  # "observations.csv", "datapackage.json"...
    row: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        at = self.where + (f" row {self.row}" if self.row is not None else "")
        return f"{at}{' ' + self.field if self.field else ''}: {self.message}"


def parse_datetime(text: str) -> datetime:
    """A Camtrap DP datetime (offset required); ValueError otherwise."""
    value = datetime.strptime(text, DATETIME_FORMAT)
    if value.tzinfo is None:  # pragma: no cover - %z always yields an aware value
        raise ValueError("no UTC offset")
    return value


def deployment_days(rows: Iterable[Mapping[str, str]]) -> dict[str, float]:
    """deploymentID -> days between deploymentStart and deploymentEnd (the trap-days of camtrapR's camera
    operation for a camera that ran throughout); rows without two readable dates are left out."""
    days: dict[str, float] = {}
    for row in rows:
        try:
            span = parse_datetime(row.get("deploymentEnd", "")) - parse_datetime(row.get("deploymentStart", ""))
        except (TypeError, ValueError):
            continue
        if span.total_seconds() >= 0 and row.get("deploymentID"):
            days[row["deploymentID"]] = days.get(row["deploymentID"], 0.0) + span.total_seconds() / 86400
    return days


def deployment_coordinates(rows: Iterable[Mapping[str, str]]) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """deploymentID -> (latitude, longitude) for the review page's map, and why each row left out was (a
    latitude or longitude that is missing, not a finite number, or out of range), naming the row (1-based
    over data rows, as `Issue`)."""
    coords: dict[str, tuple[float, float]] = {}
    refused: list[str] = []
    for n, row in enumerate(rows, start=1):
        ident = row.get("deploymentID", "")
        values, bad = [], []
        for name, limit in (("latitude", 90.0), ("longitude", 180.0)):
            text = (row.get(name) or "").strip()
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not (math.isfinite(value) and -limit <= value <= limit):
                bad.append(f"{name} {text!r} is not a number in [-{limit:g}, {limit:g}]")
            values.append(value)
        if not ident:
            continue  # no station to place (the table's own validation says so)
        if bad:
            refused.append(f"row {n} (deploymentID {ident!r}): {'; '.join(bad)}; not on the map")
        else:
            coords[ident] = (values[0], values[1])
    return coords, refused


def format_datetime(value: datetime) -> str:
    """ISO 8601 with seconds and offset ("Z" for UTC), which `DATETIME_FORMAT` parses."""
    text = value.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def check_value(spec: F, text: str) -> str | None:
    """Why `text` is not a valid value of `spec` (None when valid); `text` is already non-missing."""
    value: Any = text
    try:
        if spec.type == "number":
            value = float(text)
            if math.isnan(value):
                return f"{text!r} is not a number"
        elif spec.type == "integer":
            if not re.fullmatch(r"[+-]?\d+", text):
                return f"{text!r} is not an integer"
            value = int(text)
        elif spec.type == "datetime":
            parse_datetime(text)
        elif spec.type == "boolean":
            if text not in TRUE_VALUES | FALSE_VALUES:
                return f"{text!r} is not a boolean (true/false)"
    except ValueError:
        if spec.type == "datetime":
            return f"{text!r} is not a datetime YYYY-MM-DDThh:mm:ss with a UTC offset (Z or +hh:mm)"
        return f"{text!r} is not a {spec.type}"
    if spec.enum is not None and text not in spec.enum:
        return f"{text!r} is not one of {', '.join(spec.enum)}"
    if spec.minimum is not None and value < spec.minimum:
        return f"{text} is below the minimum {spec.minimum}"
    if spec.maximum is not None and value > spec.maximum:
        return f"{text} is above the maximum {spec.maximum}"
    if spec.pattern is not None and not re.match(spec.pattern, text):
        return f"{text!r} does not match the pattern {spec.pattern}"
    return None


def validate_rows(where: str, fields: Sequence[F], header: Sequence[str], rows: Iterable[Mapping[str, str]],
                  only_rows: set[int] | None = None) -> list[Issue]:
    """Field-level checks and unique keys; `only_rows` (1-based) restricts field checks to some rows.

    Unique keys are always checked over every row: a new row that duplicates an old key is an error.
    """
    issues: list[Issue] = []
    missing_columns = [f.name for f in fields if f.name not in header]
    if only_rows is None:  # a table-level fault, not one of some rows
        for name in missing_columns:
            issues.append(Issue(where, None, name, "column is missing (every field of the schema is expected)"))
    extra = [name for name in header if name not in {f.name for f in fields}]
    if extra and only_rows is None:
        issues.append(Issue(where, None, None, f"columns not in the schema: {', '.join(extra)}"))
    if only_rows is None and not missing_columns and not extra and list(header) != [f.name for f in fields]:
        issues.append(Issue(where, None, None, "columns are not in the schema's order"))
    seen: dict[str, dict[str, int]] = {f.name: {} for f in fields if f.unique}
    for n, row in enumerate(rows, start=1):
        check = only_rows is None or n in only_rows
        for spec in fields:
            text = row.get(spec.name, "") or ""
            if text in MISSING:
                if spec.required and check and spec.name not in missing_columns:
                    issues.append(Issue(where, n, spec.name, "required value is missing"))
                continue
            if spec.unique:
                first = seen[spec.name].setdefault(text, n)
                if first != n and (only_rows is None or n in only_rows or first in only_rows):
                    issues.append(Issue(where, n, spec.name, f"{text!r} is already used by row {first}"))
            if check:
                why = check_value(spec, text)
                if why:
                    issues.append(Issue(where, n, spec.name, why))
    return issues


def validate_foreign_keys(where: str, table: str, rows: Iterable[Mapping[str, str]],
                          keys: Mapping[str, set[str]], only_rows: set[int] | None = None) -> list[Issue]:
    """`keys`: referenced table name -> its key values."""
    issues: list[Issue] = []
    for n, row in enumerate(rows, start=1):
        if only_rows is not None and n not in only_rows:
            continue
        for field, ref_table, ref_field in FOREIGN_KEYS.get(table, ()):
            value = row.get(field, "") or ""
            if value in MISSING or ref_table not in keys:
                continue
            if value not in keys[ref_table]:
                issues.append(Issue(where, n, field, f"{value!r} is not a {ref_field} of {ref_table}"))
    return issues


def _is_date(text: Any) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")
        return True
    except (TypeError, ValueError):
        return False


def _is_datetime(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def validate_descriptor(descriptor: Mapping[str, Any], where: str = "datapackage.json") -> list[Issue]:
    """The Camtrap DP profile's package-level requirements (not GeoJSON geometry details): the checks below
    in plain words, then the official profile's JSON Schema (profile.py) for everything else."""
    issues: list[Issue] = []

    def bad(field: str, message: str) -> None:
        issues.append(Issue(where, None, field, message))

    for key in ("resources", "profile", "created", "contributors", "project", "spatial", "temporal", "taxonomic"):
        if key not in descriptor:
            bad(key, "required property is missing")
    if "name" in descriptor and not re.fullmatch(r"[-a-z0-9._/]+", str(descriptor["name"])):
        bad("name", f"{descriptor['name']!r} must be lowercase letters, digits, '-', '.', '_' or '/'")
    if "created" in descriptor and not _is_datetime(descriptor["created"]):
        bad("created", f"{descriptor['created']!r} is not an ISO 8601 date-time")
    contributors = descriptor.get("contributors", [])
    if not isinstance(contributors, list) or not contributors:
        bad("contributors", "needs at least one contributor")
    else:
        for i, c in enumerate(contributors):
            if not isinstance(c, Mapping):
                bad(f"contributors[{i}]", "must be an object")
            elif "role" in c and c["role"] not in CONTRIBUTOR_ROLES:
                bad(f"contributors[{i}].role", f"{c['role']!r} is not one of {', '.join(CONTRIBUTOR_ROLES)}")
    names = [r.get("name") for r in descriptor.get("resources", []) if isinstance(r, Mapping)]
    for name in TABLES:
        if name not in names:
            bad("resources", f"no resource named {name!r}")
    for r in descriptor.get("resources", []):
        if isinstance(r, Mapping) and r.get("name") in TABLES:
            for key in ("path", "profile", "schema"):
                if key not in r:
                    bad(f"resources[{r['name']}].{key}", "required property is missing")
            if r.get("profile", "tabular-data-resource") != "tabular-data-resource":
                bad(f"resources[{r['name']}].profile", "must be 'tabular-data-resource'")
    project = descriptor.get("project")
    if isinstance(project, Mapping):
        for key in ("title", "samplingDesign", "captureMethod", "individualAnimals", "observationLevel"):
            if key not in project:
                bad(f"project.{key}", "required property is missing")
        if "samplingDesign" in project and project["samplingDesign"] not in SAMPLING_DESIGNS:
            bad("project.samplingDesign", f"{project['samplingDesign']!r} is not one of {', '.join(SAMPLING_DESIGNS)}")
        methods = project.get("captureMethod", [])
        if not isinstance(methods, list) or not methods or any(m not in CAPTURE_METHODS for m in methods) \
                or len(set(methods)) != len(methods):
            bad("project.captureMethod", f"must be a non-empty list of distinct {', '.join(CAPTURE_METHODS)}")
        if "individualAnimals" in project and not isinstance(project["individualAnimals"], bool):
            bad("project.individualAnimals", "must be true or false")
        levels = project.get("observationLevel", [])
        if not isinstance(levels, list) or any(lv not in ("media", "event") for lv in levels):
            bad("project.observationLevel", "must be a list of 'media' and/or 'event'")
    elif project is not None:
        bad("project", "must be an object")
    temporal = descriptor.get("temporal")
    if isinstance(temporal, Mapping):
        for key in ("start", "end"):
            if not _is_date(temporal.get(key)):
                bad(f"temporal.{key}", f"{temporal.get(key)!r} is not a date YYYY-MM-DD")
    elif temporal is not None:
        bad("temporal", "must be an object")
    spatial = descriptor.get("spatial")
    if spatial is not None and (not isinstance(spatial, Mapping) or "type" not in spatial):
        bad("spatial", "must be a GeoJSON object")
    taxonomic = descriptor.get("taxonomic", [])
    if not isinstance(taxonomic, list):
        bad("taxonomic", "must be a list")
        taxonomic = []
    for i, t in enumerate(taxonomic):
        if not isinstance(t, Mapping) or not isinstance(t.get("scientificName"), str):
            bad(f"taxonomic[{i}]", "needs a scientificName")
            continue
        if "taxonRank" in t and t["taxonRank"] not in TAXON_RANKS:
            bad(f"taxonomic[{i}].taxonRank", f"{t['taxonRank']!r} is not one of {', '.join(TAXON_RANKS)}")
        names = t.get("vernacularNames", {})
        if not isinstance(names, Mapping) or any(
                not re.fullmatch(r"[a-z]{3}", k) or not isinstance(v, str) for k, v in names.items()):
            bad(f"taxonomic[{i}].vernacularNames", "keys must be ISO 639-3 codes (3 lowercase letters), values text")
    said = [i.field or "" for i in issues]
    for field, needs in profile_errors(descriptor):  # the official profile itself: what the checks above miss
        if not any(field == f or field.startswith((f + ".", f + "[")) for f in said):
            said.append(field)
            bad(field, needs)
    return issues
