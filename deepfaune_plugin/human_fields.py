"""What people record besides a label (count, sex, life stage, behaviour, individual, comment): the values a
person may give, checked the one way wherever they come from (the review app, an imported CSV), and the line
each host says about which of them it could write.

The vocabulary is Camtrap DP 1.0.2's (sex: female, male; lifeStage: adult, subadult, juvenile; count an integer
of at least 1), the strictest host: a value every host can hold, so nothing accepted here is refused at export.
"""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import DeepfauneError
from .types import HUMAN_FIELDS, Decision, HumanFields

if TYPE_CHECKING:
    from .taxonomy import LabelReader

SEXES = ("female", "male")
LIFE_STAGES = ("adult", "subadult", "juvenile")
MAX_COUNT = 100_000  # animals in one picture: a herd or a flock, never more
MAX_TEXT = 1_000  # characters of a behaviour, an individual's name or a comment
MAX_SPECIES = 50  # species counted in one picture
#: How each field is called in a CSV header, any case, besides its own name.
ALIASES = {"count": ("count", "n"), "sex": ("sex",), "life_stage": ("life_stage", "lifestage", "life stage", "age"),
           "behaviour": ("behaviour", "behavior"), "individual": ("individual", "individualid", "individual_id"),
           "comment": ("comment", "comments", "observationcomments"),
           "species_counts": ("species_counts", "species counts", "counts")}


class FieldValueError(DeepfauneError, ValueError):
    """A value a person gave that the field cannot take; the message names the field and the values allowed."""


def field_value(name: str, text: object, labels: LabelReader | None = None) -> int | str | None:
    """`text` as field `name` keeps it (None / "" for nothing given), or FieldValueError saying why not.
    `labels`: the one label rule of the model, which reads the names of `species_counts`."""
    if name not in HUMAN_FIELDS:
        raise FieldValueError(f"{name!r} is no field a person records; fields: {', '.join(HUMAN_FIELDS)}")
    if text is None or (isinstance(text, str) and not text.strip()):
        return None if name == "count" else ""
    if name == "species_counts":
        return species_counts_value(str(text), labels)
    if name == "count":
        value = text if isinstance(text, int) and not isinstance(text, bool) else str(text).strip()
        if isinstance(value, str):
            if not value.isascii() or not value.isdigit():
                raise FieldValueError(f"count {value[:40]!r}: a whole number of animals of at least 1 is expected")
            value = int(value)
        if not 1 <= value <= MAX_COUNT:
            raise FieldValueError(f"count {value}: a whole number from 1 to {MAX_COUNT:,} is expected")
        return value
    words = " ".join(str(text).split())  # one line, whatever the cell held
    if len(words) > MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in words):
        raise FieldValueError(f"{name}: {len(words):,} characters or control characters; at most {MAX_TEXT:,} "
                              "printable characters are kept")
    allowed = {"sex": SEXES, "life_stage": LIFE_STAGES}.get(name)
    if allowed is not None:
        if words.casefold() not in allowed:
            raise FieldValueError(f"{name} {words[:40]!r}: one of {', '.join(allowed)} is expected")
        return words.casefold()
    return words


def species_counts_value(text: str, labels: LabelReader | None) -> str:
    """A count per species ("fox:2;renard:1 | blaireau", any language of the model or a scientific name, by the
    one label rule): the keys with their counts as kept, "fox:3;badger:1" (a species named twice adds up)."""
    if labels is None:
        raise FieldValueError("species counts are read by the model's labels, which are not known here")
    counts, unknown = labels.species_list(text)
    if unknown:
        raise FieldValueError(f"species counts {unknown[0][:60]!r}: a label of the model and a whole number of "
                              "animals from 1 are expected (fox:2;badger:1)")
    if "empty" in counts:
        raise FieldValueError("species counts: 'empty' counts no animal")
    if len(counts) > MAX_SPECIES:
        raise FieldValueError(f"species counts: {len(counts)} species; at most {MAX_SPECIES} in one picture")
    return ";".join(f"{key}:{n}" for key, n in counts.items())


def parse_fields(values: Mapping[str, object], labels: LabelReader | None = None) -> HumanFields:
    """HumanFields from `values` (field name -> text or number; missing names are not recorded)."""
    unknown = sorted(set(values) - set(HUMAN_FIELDS))
    if unknown:
        raise FieldValueError(f"{unknown[0]!r} is no field a person records; fields: {', '.join(HUMAN_FIELDS)}")
    checked: dict[str, Any] = {name: field_value(name, values[name], labels) for name in values}
    return HumanFields(**checked)


def merged(old: HumanFields, new: Mapping[str, object], labels: LabelReader | None = None) -> HumanFields:
    """`old` with the fields named in `new` replaced (a value "" or None forgets that field)."""
    given = parse_fields(new, labels)
    return HumanFields(**{f.name: getattr(given if f.name in new else old, f.name) for f in dataclass_fields(old)})


def fields_given(decisions: Iterable[Decision]) -> dict[str, int]:
    """Field name -> how many files hold a person's value for it (in HUMAN_FIELDS order)."""
    counts = dict.fromkeys(HUMAN_FIELDS, 0)
    for d in decisions:
        if d.human is not None:
            for name in d.human.fields.given():
                counts[name] += 1
    return {name: n for name, n in counts.items() if n}


def fields_note(host: str, given: Mapping[str, int], held: Mapping[str, str],
                hint: Mapping[str, str] | None = None) -> list[str]:
    """What `host` says of people's fields at export: which it wrote where (`held`: field -> where), and each
    field it could not hold, with how many files lose it and what to do (`hint`: field -> advice). Nothing a
    person recorded is dropped without a word."""
    if not given:
        return []
    lines = []
    kept = [f"{name.replace('_', ' ')} ({held[name]})" for name in given if name in held]
    if kept:
        lines.append(f"{host}: people's {', '.join(kept)} written")
    for name, n in given.items():
        if name not in held:
            advice = (hint or {}).get(name, "")
            lines.append(f"{host}: no place for {name.replace('_', ' ')} ({n} file(s)): not written"
                         + (f" ({advice})" if advice else ""))
    return lines
