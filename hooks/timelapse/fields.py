"""What `--field NAME` puts into a Timelapse data field: the label in the run's language, or a scientific name.

A template made for Camtrap DP has a `scientificName` field; others hold a choice list of latin
names.  Writing "renard" there would be wrong in a way Timelapse cannot catch (a Note takes any
text), so the field's own description decides: a DataLabel or Label that says scientific/latin/
taxon, or a FixedChoice whose choices match more scientific names than labels of this run, gets
each file's scientific name (`taxonomy.taxon_for_key`: "fox" -> Vulpes vulpes, "human" -> Homo
sapiens, a bird group -> its order).  Labels without a taxon (empty, vehicle, undefined) have no
scientific name: those files' field is left as it is (a value DeepFaune wrote there before goes back to the
template's default).

A FixedChoice field of common names gets the choice that names the file's class in any language of the
model card ("blaireau" of a French run is the choice "Badger"), compared without case or accents, in the
language naming most of the choices first (a word of two languages is read in theirs); a label
that names no choice is reported (and a person's label refused, in host.py), never written as is.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from deepfaune_plugin.api import ClassTable, Decision, label_text, taxa, taxon_for_key

from deepfaune_plugin.hooks.timelapse.ddb import FieldSpec

SCIENTIFIC_HINTS = ("scientific", "latin", "taxon")


@dataclass
class FieldValues:
    """relpath -> value for the field, and what could not be given one (reported)."""

    scientific: bool
    values: dict[str, str] = field(default_factory=dict)
    no_taxon: dict[str, str] = field(default_factory=dict)  # relpath -> label without a scientific name
    no_choice: dict[str, str] = field(default_factory=dict)  # relpath -> label naming none of the choices


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


def folded(text: str) -> str:
    """`text` compared as a person reads it: no case, no accents, single spaces ("Chevreuil " is "chevreuil")."""
    decomposed = unicodedata.normalize("NFKD", " ".join(str(text).split()))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _names(classes: ClassTable, key: str, languages: Sequence[str]) -> list[str]:
    """The class `key` as the card writes it in each of `languages`, then the key itself."""
    if key in classes.non_animal:
        return [classes.non_animal[key][lang] for lang in languages if lang in classes.non_animal[key]] + [key]
    return [label_text(classes, key, lang) for lang in languages] + [key]


def choice_languages(spec: FieldSpec, classes: ClassTable, lang: str) -> list[str]:
    """The card's languages, those naming most of the field's choices first (ties: the run's `lang` first): a
    word of two languages ("nutria": the otter in Spanish, the coypu in English) is read in the choices' own."""
    choices = {folded(c) for c in spec.choices}
    languages = list(dict.fromkeys([lang, *classes.names, *(code for v in classes.non_animal.values() for code in v)]))

    def named(language: str) -> int:
        words = [*classes.names.get(language, ()), *(v.get(language, "") for v in classes.non_animal.values())]
        return sum(folded(w) in choices for w in words if w)

    return sorted(languages, key=named, reverse=True)  # stable: ties keep the run's language first


def choice_of(spec: FieldSpec, label: str, key: str, classes: ClassTable | None,
              languages: Sequence[str] = ()) -> str | None:
    """The choice of FixedChoice `spec` that names the class `key` in one of `languages` (choice_languages), else
    `label` itself; case and accents aside. None when no single choice does."""
    choices: dict[str, list[str]] = {}
    for choice in spec.choices:
        choices.setdefault(folded(choice), []).append(choice)
    for name in (_names(classes, key, languages) if classes is not None else [key]) + [label]:
        found = choices.get(folded(name), [])
        if len(found) == 1:
            return found[0]
    return None


def field_values(spec: FieldSpec, decisions: Iterable[Decision], classes: ClassTable | None = None,
                 lang: str = "en") -> FieldValues:
    """Each readable file's value for `spec`: its sequence-level label (a FixedChoice's choice naming it), or its
    scientific name.  A label naming no choice stays as it is in `values` (write_field reports it) and is
    listed in `no_choice`."""
    ok = [d for d in decisions if not d.failure]
    out = FieldValues(wants_scientific(spec, (d.prediction for d in ok)))
    fixed = spec.type == "FixedChoice" and not out.scientific
    languages = choice_languages(spec, classes, lang) if fixed and classes is not None else []
    for d in ok:
        if not out.scientific:
            choice = choice_of(spec, d.prediction, d.prediction_key, classes, languages) if fixed else None
            out.values[d.relpath] = choice or d.prediction
            if fixed and choice is None:
                out.no_choice[d.relpath] = d.prediction
            continue
        found = taxon_for_key(d.prediction_key)
        if found is None:
            out.no_taxon[d.relpath] = d.prediction
            out.values[d.relpath] = ""  # no value: only the one DeepFaune wrote there before is taken back
        else:
            out.values[d.relpath] = found.scientific_name
    return out
