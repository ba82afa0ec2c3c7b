"""The human labels a Timelapse .ddb holds in one of its data fields (--labels-field), as Manifest.human_labels.

The field's raw text goes into the manifest ("Red deer", "Cervus elaphus", "Empty"...): `deepfaune evaluate` and
the review page match it against the model's labels and the taxonomy table.  Empty values and the template's
default value (what Timelapse writes into every row nobody has touched) label nothing, and neither does a value
DeepFaune wrote there itself (`run --write-ddb --field`): the ledger beside the .ddb says, per row, what it wrote,
and a row still holding exactly that is DeepFaune's answer, not a person's (a person who changed it made it
theirs).  A file listed on several rows with different values gets them all: the label rule says whether they
name one class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from deepfaune_plugin.api import Problem

from deepfaune_plugin.hooks.timelapse.ddb import DATA_TABLE, DataRow, FieldSpec, TimelapseError, reading, table_columns
from deepfaune_plugin.hooks.timelapse.ledger import LEDGER_NAME, read_ledger

MAX_LABEL_CHARS = 200  # a species name; longer text is a note, not a label


def read_labels(ddb: Path, name: str, fields: Mapping[str, FieldSpec], rows: Mapping[str, Sequence[DataRow]],
                timeout: float) -> tuple[dict[str, str | tuple[str, ...]], list[Problem]]:
    """{relpath: the field's text, or its texts on several rows} for the files of `rows` (relpath -> their
    DataTable rows), without the values DeepFaune wrote (said, with their count)."""
    with reading(ddb, timeout) as conn:
        columns = table_columns(conn, DATA_TABLE)
        if name not in columns or name in ("Id", "File", "RelativePath", "DateTime", "DeleteFlag"):
            user = [c for c in columns if c in fields and c not in ("File", "RelativePath", "DateTime", "DeleteFlag")]
            raise TimelapseError(f"{ddb}: --labels-field {name}: no such data field (the template's fields: "
                                 f"{', '.join(user) or 'none'})")
        values = {int(i): v for i, v in conn.execute(f'SELECT Id, "{name}" FROM {DATA_TABLE}')}
    default = fields[name].default.strip() if name in fields else ""
    ours = {rid: " ".join(str(v).split()) for rid, v in read_ledger(ddb, name).items()}
    labels: dict[str, str | tuple[str, ...]] = {}
    written: list[str] = []  # files whose only values are DeepFaune's own
    for relpath, file_rows in rows.items():
        texts, by_us = set(), False
        for r in file_rows:
            text = " ".join(str(values.get(r.id) or "").split())
            if not text or text == default or len(text) > MAX_LABEL_CHARS:
                continue
            if ours.get(r.id) == text:
                by_us = True
                continue
            texts.add(text)
        if len(texts) == 1:
            labels[relpath] = texts.pop()
        elif texts:
            labels[relpath] = tuple(sorted(texts))
        elif by_us:
            written.append(relpath)
    problems = [Problem(written[0], f"{len(written)} file(s), e.g. this one, hold in {name} only what DeepFaune "
                                    f"wrote there ({LEDGER_NAME} says so): its own answer, not a person's label; "
                                    "left out of the evaluation", skipped=0)] if written else []
    return labels, problems
