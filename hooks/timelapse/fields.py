"""What `--field NAME` puts into a Timelapse data field: the label in the run's language, or a scientific name.

A template made for Camtrap DP has a `scientificName` field; others hold a choice list of latin
names.  Writing "renard" there would be wrong in a way Timelapse cannot catch (a Note takes any
text), so the field's own description decides: a DataLabel or Label that says scientific/latin/
taxon, or a FixedChoice whose choices match more scientific names than labels of this run, gets
each file's scientific name (`taxonomy.taxon_for_key`: "fox" -> Vulpes vulpes, "human" -> Homo
sapiens, a bird group -> its order).  Labels without a taxon (empty, vehicle, undefined) have no
scientific name: those files' field is left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from deepfaune_plugin.api import Decision, taxa, taxon_for_key

from deepfaune_plugin.hooks.timelapse.ddb import FieldSpec

SCIENTIFIC_HINTS = ("scientific", "latin", "taxon")


@dataclass
class FieldValues:
    """relpath -> value for the field, and what could not be given one (reported)."""

    scientific: bool
    values: dict[str, str] = field(default_factory=dict)
    no_taxon: dict[str, str] = field(default_factory=dict)  # relpath -> label without a scientific name


def wants_scientific(spec: FieldSpec, labels: Iterable[str]) -> bool:
    """True when the field holds scientific names (see the module docstring); `labels`: the run's labels."""
    names = f"{spec.data_label} {spec.label}".casefold()
    if any(hint in names for hint in SCIENTIFIC_HINTS):
        return True
    if spec.type != "FixedChoice" or not spec.choices:
        return False
    choices = {c.casefold() for c in spec.choices}
    scientific = sum(t.scientific_name.casefold() in choices for t in taxa().values())
    common = sum(label.casefold() in choices for label in set(labels))
    return scientific > common


def field_values(spec: FieldSpec, decisions: Iterable[Decision]) -> FieldValues:
    """Each readable file's value for `spec`: its sequence-level label, or its scientific name."""
    ok = [d for d in decisions if not d.failure]
    out = FieldValues(wants_scientific(spec, (d.prediction for d in ok)))
    for d in ok:
        if not out.scientific:
            out.values[d.relpath] = d.prediction
            continue
        found = taxon_for_key(d.prediction_key)
        if found is None:
            out.no_taxon[d.relpath] = d.prediction
        else:
            out.values[d.relpath] = found.scientific_name
    return out
