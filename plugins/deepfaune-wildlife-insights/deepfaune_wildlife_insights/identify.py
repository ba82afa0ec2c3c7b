"""DeepFaune's identifications written into a copy of an export's images table, the Wildlife Insights way.

One image may have several rows (one per identification). An image any row of which a person identified is
left exactly as it is; the rows of an image nobody identified, or only a machine (Wildlife Insights'
"Computer vision", an earlier DeepFaune run), become one row holding DeepFaune's identification.
"""
from __future__ import annotations

from typing import Iterable

from deepfaune_plugin.api import Decision

from .taxa import CLEARED_COLUMNS, IDENTIFICATION_COLUMNS, TAXON_COLUMNS, identification, is_machine

#: The spellings of is_blank seen in Wildlife Insights files: downloads write 1/0, older templates Yes/No.
BLANK_SPELLINGS = (("1", "0"), ("Yes", "No"), ("TRUE", "FALSE"), ("true", "false"))


def blank_spelling(values: Iterable[str]) -> tuple[str, str]:
    seen = {v.strip() for v in values if v.strip()}
    for yes, no in BLANK_SPELLINGS:
        if seen and seen <= {yes, no}:
            return yes, no
    return BLANK_SPELLINGS[0]


def identified_by_a_person(row: dict[str, str]) -> bool:
    """True when a person made this row's identification: a name in identified_by that is not a machine's,
    or an identification with no author at all (a bulk upload from other software: someone made it)."""
    author = row.get("identified_by", "").strip()
    if author:
        return not is_machine(author)
    has_taxon = any(row.get(c, "").strip() for c in TAXON_COLUMNS)
    return has_taxon or row.get("is_blank", "").strip().casefold() in ("1", "yes", "true")


def header_with_identifications(header: list[str]) -> list[str]:
    return header + [c for c in IDENTIFICATION_COLUMNS if c not in header]


def identified_rows(header: list[str], rows: list[dict[str, str]], decisions: dict[str, Decision],
                    version: str) -> tuple[list[dict[str, str]], int, int]:
    """(rows of the copy, images identified, images a person had identified and left as they were).

    `decisions` is by image_id; rows keep their order, an identified image's rows become one at its first.
    """
    blank = blank_spelling(row.get("is_blank", "") for row in rows)
    by_image: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_image.setdefault(row.get("image_id", ""), []).append(row)
    persons = {image_id for image_id, group in by_image.items() if any(identified_by_a_person(r) for r in group)}
    out: list[dict[str, str]] = []
    done: set[str] = set()
    written = 0
    for row in rows:
        image_id = row.get("image_id", "")
        if image_id in done:
            continue  # a machine's further row of an image DeepFaune identified
        decision = decisions.get(image_id)
        new = identification(decision, version, blank) if decision is not None else None
        if new is None or image_id in persons:
            out.append(row)  # the very row of the file (a person's, or one DeepFaune has no answer for)
            continue
        merged = {**row, **dict.fromkeys((c for c in CLEARED_COLUMNS if c in row), ""), **new}
        out.append({c: merged.get(c, "") for c in header})
        done.add(image_id)
        written += 1
    kept = len(persons & decisions.keys())
    return out, written, kept


#: Species cells that name no species (Wildlife Insights writes "Unknown" for a genus-level identification).
_NO_SPECIES = {"", "unknown", "sp", "sp.", "spp", "spp."}


def person_labels(rows: list[dict[str, str]]) -> dict[str, str]:
    """image_id -> what a person said the image shows, for `deepfaune evaluate` and the review page: "empty" for a
    blank, "vehicle", else the lowest scientific name the row gives ("Meles meles", "Mustelidae"), which the
    evaluation takes to a DeepFaune class through the taxonomy table. Images whose people's rows disagree (two
    species) are left out."""
    found: dict[str, set[str]] = {}
    for row in rows:
        if not identified_by_a_person(row):
            continue
        label = _label(row)
        if label:
            found.setdefault(row.get("image_id", ""), set()).add(label)
    return {image_id: labels.pop() for image_id, labels in found.items() if image_id and len(labels) == 1}


def _label(row: dict[str, str]) -> str:
    if row.get("is_blank", "").strip().casefold() in ("1", "yes", "true"):
        return "empty"
    if row.get("common_name", "").strip().casefold() == "vehicle":
        return "vehicle"
    genus, species = row.get("genus", "").strip(), row.get("species", "").strip()
    if genus and species.casefold() not in _NO_SPECIES:
        return f"{genus} {species}"
    return genus or row.get("family", "").strip() or row.get("order", "").strip() or row.get("class", "").strip()
