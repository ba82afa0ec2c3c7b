"""What people record besides a label (count, sex, life stage, behaviour, individual, comment): the values a
person may give, checked the one way wherever they come from (the review app, an imported CSV), and the line
each host says about which of them it could write.

The vocabulary is Camtrap DP 1.0.2's (sex: female, male; lifeStage: adult, subadult, juvenile; count an integer
of at least 1), the strictest host: a value every host can hold, so nothing accepted here is refused at export.
"""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from typing import Any, Iterable, Mapping

from .errors import DeepfauneError
from .types import HUMAN_FIELDS, Decision, HumanFields

SEXES = ("female", "male")
LIFE_STAGES = ("adult", "subadult", "juvenile")
MAX_COUNT = 100_000  # animals in one picture: a herd or a flock, never more
MAX_TEXT = 1_000  # characters of a behaviour, an individual's name or a comment
#: How each field is called in a CSV header, any case, besides its own name.
ALIASES = {"count": ("count", "n"), "sex": ("sex",), "life_stage": ("life_stage", "lifestage", "life stage", "age"),
           "behaviour": ("behaviour", "behavior"), "individual": ("individual", "individualid", "individual_id"),
           "comment": ("comment", "comments", "observationcomments")}


class FieldValueError(DeepfauneError, ValueError):
    """A value a person gave that the field cannot take; the message names the field and the values allowed."""


def field_value(name: str, text: object) -> int | str | None:
    """`text` as field `name` keeps it (None / "" for nothing given), or FieldValueError saying why not."""
    if name not in HUMAN_FIELDS:
        raise FieldValueError(f"{name!r} is no field a person records; fields: {', '.join(HUMAN_FIELDS)}")
    if text is None or (isinstance(text, str) and not text.strip()):
        return None if name == "count" else ""
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


def parse_fields(values: Mapping[str, object]) -> HumanFields:
    """HumanFields from `values` (field name -> text or number; missing names are not recorded)."""
    unknown = sorted(set(values) - set(HUMAN_FIELDS))
    if unknown:
        raise FieldValueError(f"{unknown[0]!r} is no field a person records; fields: {', '.join(HUMAN_FIELDS)}")
    checked: dict[str, Any] = {name: field_value(name, values[name]) for name in values}
    return HumanFields(**checked)


def merged(old: HumanFields, new: Mapping[str, object]) -> HumanFields:
    """`old` with the fields named in `new` replaced (a value "" or None forgets that field)."""
    given = parse_fields(new)
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
