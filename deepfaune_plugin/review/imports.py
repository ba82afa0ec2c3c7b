"""`deepfaune review SOURCE --import corrections.csv`: labels made in a spreadsheet, or by another reviewer, kept
in the result store the same as labels given in the app.

The CSV is a user's file: read within a size and a row limit (`api.read_user_text`), each row's file must name a
media file of SOURCE (by its path below the source, as every table of ours writes it), each label is read by the
one label rule (`taxonomy.LabelReader`: any language of the model, scientific names), each value is checked as
the app checks it (`human_fields.field_value`). A row that fails is refused, with its line and why; the others
are imported, all in one transaction. A reviewer's label replaces only that reviewer's earlier label of the file:
two reviewers' labels are kept side by side (the latest decides the outputs, the conflict is said).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..corrections import label_choices
from ..errors import DeepfauneError
from ..human_fields import ALIASES, FieldValueError, field_value
from ..taxonomy import LabelReader
from ..types import HUMAN_FIELDS, ClassTable, HumanFields, HumanLabel, MediaItem
from ..untrusted import read_user_text

MAX_IMPORT_BYTES = 64 * 1024 * 1024  # a season's labels: a few MB
MAX_IMPORT_ROWS = 2_000_000
MAX_SHOWN = 10  # refused rows listed by line; the rest counted
FILE_COLUMNS = ("file", "relpath", "filename", "path")  # "relpath": the CSV `deepfaune store clear` saves
LABEL_COLUMNS = ("label", "species")


class CorrectionsError(DeepfauneError):
    """The corrections file cannot be read at all (no file or label column, too large, not text)."""


@dataclass
class Imported:
    """What an import read: the labels to keep, and each refused row's line ("line N (file): why")."""

    labels: list[tuple[MediaItem, HumanLabel]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def summary(self, name: str) -> list[str]:
        """The lines said after an import: how many kept (by reviewer), how many refused and why."""
        by: dict[str, int] = {}
        for _, h in self.labels:
            by[h.reviewer] = by.get(h.reviewer, 0) + 1
        lines = [f"{name}: {len(self.labels)} label(s) imported"
                 + (f" ({', '.join(f'{r}: {n}' for r, n in sorted(by.items()))})" if by else "")
                 + (f"; {len(self.refused)} row(s) refused" if self.refused else "")]
        lines += [f"  {line}" for line in self.refused[:MAX_SHOWN]]
        if len(self.refused) > MAX_SHOWN:
            lines.append(f"  and {len(self.refused) - MAX_SHOWN} more refused row(s)")
        return lines


def _column(header: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((header[n] for n in names if n in header), None)


def _relpath(text: str) -> str:
    rel = text.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel


def check_reviewer(name: str) -> str:
    """A reviewer's name as kept with a label: 1 to 200 printable characters."""
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FieldValueError(f"reviewer {name[:40]!r}: a name of 1 to 200 printable characters is expected")
    return name


def read_corrections(path: Path, items: Mapping[str, MediaItem], classes: ClassTable, reviewer: str,
                     bird: bool = False, now: datetime | None = None) -> Imported:
    """The labels of the CSV at `path` for the media `items` (relpath -> item) of the source; `reviewer`: the name
    of rows without a reviewer column or value."""
    path = Path(path)
    try:
        text = read_user_text(path, MAX_IMPORT_BYTES)
    except DeepfauneError as err:
        raise CorrectionsError(str(err)) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        names = reader.fieldnames or []
    except csv.Error as err:
        raise CorrectionsError(f"{path}: not a CSV table ({err})") from None
    header = {" ".join(n.split()).casefold(): n for n in names if n}
    file_col, label_col = _column(header, FILE_COLUMNS), _column(header, LABEL_COLUMNS)
    if file_col is None or label_col is None:
        raise CorrectionsError(f"{path}: needs a file column ({', '.join(FILE_COLUMNS)}) and a label column "
                           f"({', '.join(LABEL_COLUMNS)}); found {', '.join(names) or 'none'}")
    columns = {name: _column(header, ALIASES[name]) for name in HUMAN_FIELDS}
    reviewer_col, at_col = _column(header, ("reviewer", "classifiedby")), _column(header, ("at",))
    rule, known = LabelReader(classes, bird), set(label_choices(classes))
    when = (now or datetime.now()).replace(microsecond=0)
    out = Imported()
    seen: dict[tuple[str, str], int] = {}  # (relpath, reviewer) -> the line that gave it
    try:
        for n, row in enumerate(reader, start=2):
            if n > MAX_IMPORT_ROWS + 1:
                raise CorrectionsError(f"{path}: more than {MAX_IMPORT_ROWS:,} rows; split it")
            rel = _relpath(row.get(file_col) or "")
            where = f"{path.name} line {n}" + (f" ({rel[:200]})" if rel else "")
            try:
                if not rel and not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # a blank line
                if None in row:
                    raise FieldValueError(f"{len(row[None])} cell(s) more than the header has columns")
                if rel not in items:
                    raise FieldValueError("not a media file of the source (give its path below the source, "
                                          "as deepfaune's tables write it)")
                given = (row.get(label_col) or "").strip()
                key = rule.key(given) if given else None
                if not given:
                    raise FieldValueError("no label")
                if key is None or key not in known:
                    raise FieldValueError(f"label {given[:60]!r} is no label of model {classes.version} "
                                          "(any language of the model, or a scientific name)")
                values: dict[str, Any] = {name: field_value(name, row.get(col) or "", rule)
                                          for name, col in columns.items() if col is not None}
                fields = HumanFields(**values)
                named = (row.get(reviewer_col) or "").strip() if reviewer_col else ""
                who = check_reviewer(named) if named else reviewer
                at = _date(row.get(at_col) or "") if at_col else None
                if (rel, who) in seen:
                    raise FieldValueError(f"{rel} is labelled by {who} on line {seen[(rel, who)]} already")
            except FieldValueError as err:
                out.refused.append(f"{where}: {err}")
                continue
            seen[(rel, who)] = n
            out.labels.append((items[rel], HumanLabel(key, who, at or when, fields)))
    except csv.Error as err:
        raise CorrectionsError(f"{path}: not a readable CSV table near line {reader.line_num} ({err})") from None
    return out


def _date(text: str) -> datetime | None:
    """When a label was given, as the store's own CSV writes it (ISO 8601); none: now."""
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(microsecond=0)
    except ValueError:
        raise FieldValueError(f"at {text[:40]!r}: a date as 2024-05-03T06:00:00 is expected") from None
