"""Putting DeepFaune observations into a package: merge, validate, back up, swap atomically."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from deepfaune_plugin.api import commit_files, own_folder, staging_dir

from deepfaune_plugin.hooks.camtrapdp.observations import is_ours, is_standin, update_descriptor
from deepfaune_plugin.hooks.camtrapdp.package import PackageError, RawTable, join_table
from deepfaune_plugin.hooks.camtrapdp.schema import (MISSING, OBSERVATIONS, Issue, parse_datetime, validate_descriptor,
                               validate_foreign_keys, validate_rows)

BACKUP_DIR = ".deepfaune_backups"
_IGNORED_ON_RERUN = ("classificationTimestamp",)


@dataclass
class Merged:
    """The new observations table: texts to write, and which rows (1-based) are this run's."""

    rows: list[dict[str, str]]
    texts: list[str]
    new_rows: set[int]
    warnings: list[str] = field(default_factory=list)


def _same_but_time(a: Mapping[str, str], b: Mapping[str, str], header: Sequence[str]) -> bool:
    return all(a.get(h, "") == b.get(h, "") for h in header if h not in _IGNORED_ON_RERUN)


def merge_observations(table: RawTable, new: list[dict[str, str]], classified: set[str],
                       known_media: set[str]) -> Merged:
    """Every row not ours kept verbatim, ours replaced for the media of this run.

    `classified`: mediaIDs classified in this run; `known_media`: every mediaID of media.csv.
    Earlier rows of ours for other media stay (e.g. remote media not fetched this time) unless
    their media left the package.  A new row equal to an earlier one except for its
    classificationTimestamp keeps the earlier text, so an unchanged re-run changes no byte.
    """
    unknown = sorted({k for row in new for k, v in row.items() if v and k not in table.header})
    if unknown:
        raise PackageError(f"observations table: no column {', '.join(unknown)} to write DeepFaune's observations into")
    new_events = {row["eventID"] for row in new}
    dropped_events: set[str] = set()
    old_ours: dict[str, tuple[dict[str, str], str]] = {}
    keep: list[tuple[dict[str, str], str]] = []
    for row, text in zip(table.rows, table.texts):
        if not is_ours(row):
            keep.append((row, text))
            continue
        old_ours[row.get("observationID", "")] = (row, text)
        media_id = row.get("mediaID", "")
        if media_id not in MISSING and (media_id in classified or media_id not in known_media):
            dropped_events.add(row.get("eventID", ""))
    surviving_media_events = set()
    for row, text in old_ours.values():
        media_id = row.get("mediaID", "")
        if media_id not in MISSING and media_id not in classified and media_id in known_media:
            surviving_media_events.add(row.get("eventID", ""))
    for row, text in old_ours.values():
        media_id = row.get("mediaID", "")
        if media_id not in MISSING:
            stale = media_id in classified or media_id not in known_media
        else:
            event = row.get("eventID", "")
            stale = event in new_events or event in dropped_events or event not in surviving_media_events
        if not stale:
            keep.append((row, text))
    rows = [r for r, _ in keep]
    texts = [t for _, t in keep]
    new_rows: set[int] = set()
    new, warnings = _clear_of_kept_ids(new, keep)
    for row in new:
        full = {h: row.get(h, "") for h in table.header}
        previous = old_ours.get(full["observationID"])
        if previous is not None and _same_but_time(previous[0], full, table.header):
            full, text = dict(previous[0]), previous[1]
        else:
            text = table.serialise(full)
        rows.append(full)
        texts.append(text)
        new_rows.add(len(rows))
    return Merged(rows, texts, new_rows, warnings)


def _clear_of_kept_ids(new: list[dict[str, str]], keep: Sequence[tuple[dict[str, str], str]]
                       ) -> tuple[list[dict[str, str]], list[str]]:
    """Our new rows, each under an observationID no kept row holds.

    A row of ours that a person validated in another tool (classificationMethod set to human, our
    observationID kept) is a person's row now: kept verbatim, never replaced. Refusing the run would block every
    later one on a clash with our own ID, so ours for that media is written as "<id>-2" (the next free number):
    the same name every run, so a re-run replaces it and an unchanged one changes no byte."""
    taken = {row.get("observationID", "") for row, _ in keep if row.get("observationID", "") not in MISSING}
    clashing = [row["observationID"] for row in new if row["observationID"] in taken]
    if not clashing:
        return new, []
    wanted = {row["observationID"] for row in new}
    out = []
    for row in new:
        oid = row["observationID"]
        if oid in taken:
            n = 2
            while f"{oid}-{n}" in taken or f"{oid}-{n}" in wanted:
                n += 1
            row = {**row, "observationID": f"{oid}-{n}"}
            taken.add(row["observationID"])
        out.append(row)
    shown = ", ".join(clashing[:3]) + (", ..." if len(clashing) > 3 else "")
    return out, [f"{len(clashing)} observation(s) with DeepFaune's own observationID ({shown}) are no longer "
                 "DeepFaune's (classificationMethod is not machine, or classifiedBy changed: validated in another "
                 "tool?): kept as a person's rows, untouched; DeepFaune's rows for those media are written under "
                 "new IDs (<id>-2). To let DeepFaune replace such a row again, set its classificationMethod back to "
                 "machine; to keep only the person's, leave it"]


def overlapping_events(rows: Sequence[Mapping[str, str]], indices: set[int]) -> list[str]:
    """Event-level rows of this run that overlap in time within a deployment (Camtrap DP says they must not)."""
    spans: dict[str, list[tuple[datetime, datetime, str]]] = {}
    seen: set[str] = set()  # an event's several rows (one per species, --every-animal) are one event
    for n in sorted(indices):
        row = rows[n - 1]
        if row.get("observationLevel") == "event" and row["eventID"] not in seen:
            seen.add(row["eventID"])
            spans.setdefault(row["deploymentID"], []).append(
                (parse_datetime(row["eventStart"]), parse_datetime(row["eventEnd"]), row["eventID"]))
    out = []
    for deployment, items in spans.items():
        items.sort()
        for (s1, e1, id1), (s2, e2, id2) in zip(items, items[1:]):
            if s2 <= e1:
                out.append(f"deployment {deployment}: events {id1} and {id2} overlap in time "
                           "(media timestamps and EXIF dates disagree?)")
    return out


def check_new(descriptor_old: Mapping[str, Any], descriptor_new: Mapping[str, Any], merged: Merged,
              header: Sequence[str], deployment_ids: set[str], media_ids: set[str], where: str) -> list[Issue]:
    """Issues this run would introduce (problems the package already had are not ours to block on)."""
    before = {str(i) for i in validate_descriptor(descriptor_old)}
    issues = [i for i in validate_descriptor(descriptor_new) if str(i) not in before]
    issues += validate_rows(where, OBSERVATIONS, header, merged.rows, only_rows=merged.new_rows)
    issues += validate_foreign_keys(where, "observations", merged.rows,
                                    {"deployments": deployment_ids, "media": media_ids}, only_rows=merged.new_rows)
    return issues


def dump_descriptor(descriptor: Mapping[str, Any]) -> bytes:
    return (json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def backup(root: Path, files: Sequence[Path], now: datetime | None = None) -> Path:
    """Copy `files` (those that exist) into <root>/.deepfaune_backups/<timestamp>/, keeping their relative paths.

    Filled under a hidden name and renamed when complete, so a backup folder is never half a backup."""
    stamp = (now or datetime.now()).strftime("%Y%m%dT%H%M%S")
    folder = own_folder(root, BACKUP_DIR)  # a real folder inside the package, never a link to elsewhere
    target = folder / stamp
    n = 1
    while target.exists() or target.is_symlink():
        n += 1
        target = folder / f"{stamp}-{n}"
    work = staging_dir(target)
    try:
        for path in files:
            if path.is_file():
                dest = work / path.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def clear_partial_backups(root: Path) -> None:
    """Remove the hidden half-filled backup folders of killed runs (under the lock: none is in use)."""
    folder = root / BACKUP_DIR
    if folder.is_dir() and not folder.is_symlink():
        for part in folder.glob(".*.part"):
            if part.is_dir() and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)


def swap_in(journal: Path, files: Sequence[tuple[Path, bytes]]) -> None:
    """Replace all `files` or none, even if the process is killed half-way (the journal's next
    `recover` finishes or undoes it); the caller holds the package's lock."""
    commit_files(journal, files)


@dataclass
class Enrichment:
    """The new contents of the two files an enrichment changes (None = unchanged)."""

    observations: bytes | None
    descriptor: bytes | None
    warnings: list[str]


def enrich(descriptor_bytes: bytes, descriptor: Mapping[str, Any], table: RawTable, observations_bytes: bytes | None,
           new: list[dict[str, str]], classified: set[str], deployment_ids: set[str], media_ids: set[str],
           where: str) -> Enrichment:
    """Compute (and validate) the new observations table and descriptor; raise before anything is written."""
    merged = merge_observations(table, new, classified, media_ids)
    all_names = {r.get("scientificName", "") for r in merged.rows} - set(MISSING)
    our_names = {r.get("scientificName", "") for r in merged.rows if is_ours(r)} - set(MISSING)
    new_descriptor = update_descriptor(descriptor, all_names, our_names, any(is_standin(r) for r in merged.rows))
    issues = check_new(descriptor, new_descriptor, merged, table.header, deployment_ids, media_ids, where)
    if issues:
        shown = "\n  ".join(str(i) for i in issues[:20])
        more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        raise PackageError(f"the updated package would not be valid Camtrap DP; nothing was written:\n  {shown}{more}")
    text = join_table(table, merged.texts).encode("utf-8")
    obs_out = None if text == observations_bytes else text
    desc_out = None if new_descriptor == descriptor else dump_descriptor(new_descriptor)
    if desc_out == descriptor_bytes:
        desc_out = None
    return Enrichment(obs_out, desc_out, merged.warnings + overlapping_events(merged.rows, merged.new_rows))
