"""The ledger: what DeepFaune wrote into a Timelapse .ddb, kept in a hidden JSON file beside it.

The .ddb itself gets nothing Timelapse does not know, so what a re-run needs to know about its
own earlier writes lives in `.deepfaune-timelapse.json`:
``{ddb file name: {section: {DataTable Id: entry}}}``, where a section is either a DataLabel (the
value DeepFaune put in that field, so that a re-run refreshes it and keeps a person's) or
`DETECTIONS` (the recognitions DeepFaune's own detector wrote, which --use-existing-detections
must not take for another detector's).  An unreadable ledger counts as empty: losing it only
makes DeepFaune more careful, never overwrites a person's value.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from deepfaune_plugin.api import atomic_output, parse_json

LEDGER_NAME = ".deepfaune-timelapse.json"
DETECTIONS = "#detections"  # the section of DeepFaune's own recognitions; a DataLabel never starts with '#'


def ledger_path(ddb: Path) -> Path:
    return ddb.parent / LEDGER_NAME


def _load(ddb: Path) -> dict[str, Any]:
    try:
        data = parse_json(ledger_path(ddb).read_text(encoding="utf-8"), str(ledger_path(ddb)))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def has_ledger(ddb: Path) -> bool:
    """Whether the ledger holds anything for this .ddb (a run that wrote into it left a record here)."""
    sections = _load(ddb).get(ddb.name)
    return isinstance(sections, dict) and bool(sections)


def read_ledger(ddb: Path, section: str) -> dict[int, Any]:
    """One section of this .ddb's ledger by DataTable Id; entries whose key is not an Id are left out."""
    sections = _load(ddb).get(ddb.name)
    entries = sections.get(section) if isinstance(sections, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {int(key): value for key, value in entries.items() if key.isascii() and key.isdigit()}


def write_ledger(ddb: Path, section: str, entries: Mapping[int, Any]) -> Path:
    """Replace one section of this .ddb's ledger (by Id order), keeping the other sections and .ddb files."""
    data = _load(ddb)
    sections = data.get(ddb.name)
    if not isinstance(sections, dict):
        sections = data[ddb.name] = {}
    sections[section] = {str(key): value for key, value in sorted(entries.items())}
    path = ledger_path(ddb)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return path
