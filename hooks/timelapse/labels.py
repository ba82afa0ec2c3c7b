"""The human labels a Timelapse .ddb holds in one of its data fields (--labels-field), as Manifest.human_labels.

The field's raw text goes into the manifest ("Red deer", "Cervus elaphus", "Empty"...): `deepfaune evaluate` and
the review page match it against the model's labels and the taxonomy table.  Empty values and the template's
default value (what Timelapse writes into every row nobody has touched) label nothing; a file listed on several
rows with different values is left unlabelled, and said.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from deepfaune_plugin.api import Problem

from deepfaune_plugin.hooks.timelapse.ddb import DATA_TABLE, DataRow, FieldSpec, TimelapseError, reading, table_columns

MAX_LABEL_CHARS = 200  # a species name; longer text is a note, not a label


def read_labels(ddb: Path, name: str, fields: Mapping[str, FieldSpec], rows: Mapping[str, Sequence[DataRow]],
                timeout: float) -> tuple[dict[str, str], list[Problem]]:
    """{relpath: the field's text} for the files of `rows` (relpath -> their DataTable rows)."""
    with reading(ddb, timeout) as conn:
        columns = table_columns(conn, DATA_TABLE)
        if name not in columns or name in ("Id", "File", "RelativePath", "DateTime", "DeleteFlag"):
            user = [c for c in columns if c in fields and c not in ("File", "RelativePath", "DateTime", "DeleteFlag")]
            raise TimelapseError(f"{ddb}: --labels-field {name}: no such data field (the template's fields: "
                                 f"{', '.join(user) or 'none'})")
        values = {int(i): v for i, v in conn.execute(f'SELECT Id, "{name}" FROM {DATA_TABLE}')}
    default = fields[name].default.strip() if name in fields else ""
    labels: dict[str, str] = {}
    disagree: list[str] = []
    for relpath, file_rows in rows.items():
        texts = {" ".join(str(values.get(r.id) or "").split()) for r in file_rows}
        texts = {t for t in texts if t and t != default and len(t) <= MAX_LABEL_CHARS}
        if len(texts) == 1:
            labels[relpath] = texts.pop()
        elif texts:
            disagree.append(relpath)
    problems = [Problem(disagree[0], f"{len(disagree)} file(s), e.g. this one, are on several {ddb.name} rows whose "
                                     f"{name} differ; left out of the evaluation", skipped=0)] if disagree else []
    return labels, problems
