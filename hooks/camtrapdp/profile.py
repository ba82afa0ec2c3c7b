"""The official Camtrap DP 1.0.2 profile (a JSON Schema), checked with jsonschema before a descriptor is written.

Why: a hand-written check misses what the profile says (e.g. `licenses` needs two entries, one per scope), and
frictionless then rejects a package we wrote. The profile and the Data Package schema it builds on ship inside
this package (schemas/, see its NOTICE.md): no network, no dependency on a folder beside the checkout.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, Mapping

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

PROFILE = "camtrap-dp-profile.json"
DATA_PACKAGE_URL = "https://specs.frictionlessdata.io/schemas/data-package.json"
GEOJSON_URL = "http://json.schemastore.org/geojson.json"
#: GeoJSON's own schema is not shipped: `spatial` must be an object with a geometry type (the rest unchecked)
GEOJSON_STANDIN = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
#: what the profile says in words only ("at least a license for the content of the package and one for the media")
LICENSE_SCOPES = ("data", "media")


def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("schemas", name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> tuple[jsonschema.protocols.Validator, dict[str, Any]]:
    profile = _load(PROFILE)
    registry = Registry().with_resources([
        (DATA_PACKAGE_URL, Resource.from_contents(_load("data-package-1.0-schema.json"), default_specification=DRAFT7)),
        (GEOJSON_URL, Resource.from_contents(GEOJSON_STANDIN, default_specification=DRAFT7)),
    ])
    cls = jsonschema.validators.validator_for(profile, default=jsonschema.Draft4Validator)
    return cls(profile, registry=registry), profile


def _field(error: jsonschema.ValidationError) -> str:
    """Where the error is, as "licenses[0].scope"; a missing property is named itself."""
    path = list(error.absolute_path)
    missing = re.fullmatch(r"'(.+)' is a required property", error.message) if error.validator == "required" else None
    if missing:
        path.append(missing.group(1))
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(package)"


def _needs(error: jsonschema.ValidationError) -> str:
    """What the field needs, in words: jsonschema's own message names the whole value, which may be long."""
    kind, value = error.validator, error.validator_value
    if kind == "required":
        return "required property is missing"
    if kind == "minItems":
        return f"needs at least {value} entries, has {len(error.instance)}"
    if kind == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, value))}"
    if kind == "type":
        return f"must be {' or '.join(value) if isinstance(value, list) else value}, not {type(error.instance).__name__}"
    text = error.message
    return text if len(text) <= 200 else text[:200] + "..."


def _said(error: jsonschema.ValidationError) -> str:
    """The profile's own words about the field, when they say what it requires."""
    description = str(error.schema.get("description", "")) if isinstance(error.schema, Mapping) else ""
    said = [s.strip() for s in description.split(". ") if "require" in s]
    return f" (Camtrap DP: {said[-1].rstrip('.')})" if said else ""


def profile_errors(descriptor: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, what it needs) for each place the descriptor breaks the official profile."""
    validator, _ = _validator()
    found = []
    for error in validator.iter_errors(descriptor):
        if error.validator in ("anyOf", "oneOf") and error.context:  # the alternatives' own errors say more
            error = jsonschema.exceptions.best_match(error.context)
        found.append((_field(error), _needs(error) + _said(error)))
    yield from sorted(set(found))
    licenses = descriptor.get("licenses")
    if isinstance(licenses, list) and len(licenses) >= 2:
        scopes = {lic.get("scope") for lic in licenses if isinstance(lic, Mapping)}
        missing = [s for s in LICENSE_SCOPES if s not in scopes]
        if missing:
            yield "licenses", (f"needs a license with scope {' and '.join(missing)} (Camtrap DP requires one for "
                               "the content of the package, scope data, and one for the media files, scope media)")
