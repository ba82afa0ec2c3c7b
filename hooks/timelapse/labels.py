"""The human labels a Timelapse .ddb holds in one of its data fields (--labels-field), as Manifest.human_labels.

The field's raw text goes into the manifest ("Red deer", "Cervus elaphus", "Empty"...): `deepfaune evaluate` and
the review page match it against the model's labels and the taxonomy table.  Empty values and the template's
default value (what Timelapse writes into every row nobody has touched) label nothing, and neither does a value
DeepFaune wrote there itself (`run --write-ddb --field`): the ledger beside the .ddb says, per row, what it wrote,
and a row still holding exactly that is DeepFaune's answer, not a person's (a person who changed it made it
theirs).  Without a ledger for a .ddb DeepFaune has written into (a backup it made in Backups/, or its
recognitions in the .ddb, say so) its values cannot be told from people's: none is taken, and that is said.
A file listed on several rows with different values gets them all: the label rule says whether they name one
class.
"""
from __future__ import annotations

import glob
import sqlite3
from pathlib import Path
from typing import Mapping, Sequence

from deepfaune_plugin.api import Problem

from deepfaune_plugin.hooks.timelapse.ddb import (DATA_TABLE, DataRow, FieldSpec, TimelapseError, reading,
                                                  table_columns, table_names)
from deepfaune_plugin.hooks.timelapse.existing import deepfaune_wrote_here
from deepfaune_plugin.hooks.timelapse.ledger import LEDGER_NAME, has_ledger, read_ledger

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
        witness = None if has_ledger(ddb) else _deepfaune_wrote(ddb, conn)
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
    if witness and labels:
        return {}, [Problem(ddb.name, f"DeepFaune has written into this database ({witness}) and {LEDGER_NAME}, "
                                      f"which says what it put in {name}, is missing: its values cannot be told from "
                                      f"people's, so none of the {len(labels)} file(s) labelled in {name} is taken "
                                      f"for a label. Put {LEDGER_NAME} back beside the .ddb, or give the labels with "
                                      "--labels FILE", skipped=0)]
    problems = [Problem(written[0], f"{len(written)} file(s), e.g. this one, hold in {name} only what DeepFaune "
                                    f"wrote there ({LEDGER_NAME} says so): its own answer, not a person's label; "
                                    "left out of the evaluation", skipped=0)] if written else []
    return labels, problems


def _deepfaune_wrote(ddb: Path, conn: sqlite3.Connection) -> str | None:
    """What shows that DeepFaune wrote into `ddb` (--write-ddb), where its ledger does not: a backup it made
    before writing, or its recognitions in the .ddb; None if nothing does."""
    backups = ddb.parent / "Backups"
    if backups.is_dir() and not backups.is_symlink():
        for backup in backups.glob(f"{glob.escape(ddb.stem)}.*.before-deepfaune*{glob.escape(ddb.suffix)}"):
            return f"Backups/{backup.name}"
    detector = None
    try:
        if "Info" in table_names(conn):
            row = conn.execute("SELECT * FROM Info LIMIT 1").fetchone()
            names = [d[0] for d in conn.execute("SELECT * FROM Info LIMIT 0").description]
            detector = dict(zip(names, row)).get("detector") if row else None
        return deepfaune_wrote_here(conn, detector)
    except sqlite3.Error:
        return None
