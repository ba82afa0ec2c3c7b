"""Make Timelapse files the way Timelapse does, for tests and demonstrations.

Timelapse creates `TimelapseData.ddb` when an image set is first loaded: it copies the
template's tables (TemplateTable, TemplateInfo, FolderDataTemplateTable, FolderDataInfo), then
creates `DataTable` (Id + one column per DataLabel: DATETIME for DateTime, TEXT otherwise, each
with the control's default), `ImageSetTable` (one row), `MarkersTable` (one TEXT column per
Counter) and the folder-level tables `Level1..n` (Timelapse 2.5 FileDatabase.OnDatabaseCreatedAsync).
No recognition table exists until the first recognition import.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from deepfaune_plugin.hooks.timelapse.ddb import posix_to_windows

TEMPLATE_COPIED = ("TemplateTable", "TemplateInfo", "FolderDataTemplateTable", "FolderDataInfo")
DEFAULT_SORT_TERMS = (
    '[ { "DataLabel":"RelativePath", "DisplayLabel":"RelativePath", "ControlType":"RelativePath", '
    '"IsAscending":"true" }, { "DataLabel":"DateTime", "DisplayLabel":"DateTime", "ControlType":"DateTime", '
    '"IsAscending":"true" } ]'
)


@dataclass(frozen=True)
class Control:
    data_label: str
    type: str
    default: str = ""
    choices: Sequence[str] = ()
    label: str | None = None


STANDARD_CONTROLS = (
    Control("File", "File"),
    Control("RelativePath", "RelativePath"),
    Control("DateTime", "DateTime", "2024-01-01 12:00:00"),
    Control("DeleteFlag", "DeleteFlag", "false", label="Delete?"),
)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def choice_list(choices: Sequence[str], include_empty: bool = True) -> str:
    body = ", ".join(json.dumps(c, ensure_ascii=False) for c in choices)
    return '{"IncludeEmptyChoice":%s ,"ChoiceListNonEmpty":[%s%s]}' % (
        "true" if include_empty else "false", body, ", " if choices else "")


def write_template(path: Path, controls: Iterable[Control], standard: str = "", version: str = "2.3.2.2") -> Path:
    """A minimal 2.3+ template (.tdb): the four standard controls, then `controls`."""
    path = Path(path)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(
            "CREATE TABLE TemplateTable ( Id INTEGER PRIMARY KEY AUTOINCREMENT, ControlOrder INTEGER, "
            "SpreadsheetOrder INTEGER, Type TEXT, DefaultValue TEXT, Label TEXT, DataLabel TEXT, Tooltip TEXT, "
            "Visible TEXT, List TEXT, ExportToCSV TEXT DEFAULT 'True', TXTBOXWIDTH TEXT, Copyable TEXT );"
            "CREATE TABLE FolderDataTemplateTable ( Id INTEGER PRIMARY KEY AUTOINCREMENT, ControlOrder INTEGER, "
            "SpreadsheetOrder INTEGER, Level INTEGER, Type TEXT, DefaultValue TEXT, Label TEXT, DataLabel TEXT, "
            "Tooltip TEXT, Visible TEXT, List TEXT, ExportToCSV TEXT DEFAULT 'True' );"
            "CREATE TABLE FolderDataInfo ( Id INTEGER PRIMARY KEY AUTOINCREMENT, Level INTEGER, Guid TEXT, Alias TEXT );"
            "CREATE TABLE TemplateInfo ( VersionCompatabily TEXT DEFAULT '2.3.0.0', Standard TEXT DEFAULT '' );"
        )
        for order, c in enumerate([*STANDARD_CONTROLS, *controls], start=1):
            listing = choice_list(c.choices) if c.type in ("FixedChoice", "MultiChoice") else ""
            conn.execute(
                "INSERT INTO TemplateTable (ControlOrder, SpreadsheetOrder, Type, DefaultValue, Label, DataLabel, "
                "Tooltip, Visible, List, ExportToCSV, TXTBOXWIDTH, Copyable) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (order, order, c.type, c.default, c.label or c.data_label, c.data_label, "", "true", listing,
                 "true", "100", "false" if c.type in ("File", "RelativePath", "DateTime", "DeleteFlag") else "true"),
            )
        conn.execute("INSERT INTO TemplateInfo (VersionCompatabily, Standard) VALUES (?, ?)", (version, standard))
        conn.commit()
    finally:
        conn.close()
    return path


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> None:
    row = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if row is None:
        return
    dst.execute(row[0])
    rows = src.execute(f'SELECT * FROM "{table}"').fetchall()
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        dst.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)


def create_ddb(tdb: Path, ddb: Path, files: Iterable[tuple[str, datetime | None]] = (),
               version: str = "2.5.0.6") -> Path:
    """A .ddb made from template `tdb`, with one DataTable row per (POSIX relpath, date) in `files`."""
    tdb, ddb = Path(tdb), Path(ddb)
    src = sqlite3.connect(tdb.resolve().as_uri() + "?mode=ro", uri=True)
    dst = sqlite3.connect(ddb)
    try:
        for table in TEMPLATE_COPIED:
            _copy_table(src, dst, table)
        controls = src.execute(
            "SELECT DataLabel, Type, DefaultValue FROM TemplateTable ORDER BY ControlOrder").fetchall()
        standard_row = src.execute("SELECT Standard FROM TemplateInfo").fetchone() if _has(src, "TemplateInfo") else None
        columns = ["Id INTEGER PRIMARY KEY AUTOINCREMENT"]
        for label, type_, default in controls:
            if label == "DateTime":
                columns.append(f"DateTime DATETIME DEFAULT {_quote(default or '2024-01-01 12:00:00')}")
            elif type_ in ("IntegerPositive", "IntegerAny", "DecimalPositive", "DecimalAny"):
                columns.append(f"{label} TEXT DEFAULT ''")
            else:
                columns.append(f"{label} TEXT DEFAULT {_quote(default or '')}")
        dst.execute(f"CREATE TABLE DataTable ( {', '.join(columns)} )")
        dst.execute(
            "CREATE TABLE ImageSetTable ( Id INTEGER PRIMARY KEY AUTOINCREMENT, RootFolder TEXT DEFAULT '', "
            "Log TEXT DEFAULT '', Row TEXT, VersionCompatabily TEXT, BackwardsCompatibility TEXT, "
            f"SortTerms TEXT DEFAULT {_quote(DEFAULT_SORT_TERMS)}, SearchTerms TEXT DEFAULT '{{}}', "
            "QuickPasteTerms TEXT, BBDisplayThreshold REAL DEFAULT '-1', Standard TEXT DEFAULT '' )"
        )
        dst.execute(
            "INSERT INTO ImageSetTable (RootFolder, Log, Row, VersionCompatabily, BackwardsCompatibility, SortTerms, "
            "SearchTerms, QuickPasteTerms, Standard) VALUES (?,?,?,?,?,?,?,?,?)",
            (ddb.parent.name, "", "-1", version, "2.3.2.9", DEFAULT_SORT_TERMS, "{}", "[]",
             standard_row[0] if standard_row else ""),
        )
        counters = [label for label, type_, _ in controls if type_ == "Counter"]
        dst.execute("CREATE TABLE MarkersTable ( " + ", ".join(
            ["Id INTEGER PRIMARY KEY AUTOINCREMENT", *[f"{c} TEXT DEFAULT ''" for c in counters]]) + " )")
        if _has(src, "FolderDataTemplateTable"):
            levels: dict[int, list[str]] = {}
            for level, label in src.execute(
                    "SELECT Level, DataLabel FROM FolderDataTemplateTable ORDER BY Level, ControlOrder"):
                levels.setdefault(int(level), []).append(label)
            for level, labels in levels.items():
                dst.execute(f"CREATE TABLE Level{level} ( Id INTEGER PRIMARY KEY AUTOINCREMENT, "
                            f"FolderDataPath TEXT DEFAULT '', " + ", ".join(f"{c} TEXT DEFAULT ''" for c in labels)
                            + " )")
        defaults = {label: default for label, _, default in controls}
        for relpath, date in files:
            folder, _, name = relpath.rpartition("/")
            values = dict(defaults)
            values.update(File=name, RelativePath=posix_to_windows(folder),
                          DateTime=(date or datetime(2024, 1, 1, 12)).strftime("%Y-%m-%d %H:%M:%S"))
            names = list(values)
            dst.execute(f"INSERT INTO DataTable ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        [values[n] for n in names])
            dst.execute("INSERT INTO MarkersTable DEFAULT VALUES")
        dst.execute("CREATE INDEX IndexRelativePath ON DataTable (RelativePath)")
        dst.execute("CREATE INDEX IndexFile ON DataTable (File)")
        dst.execute("CREATE INDEX IndexRelativePathFile ON DataTable (RelativePath, File)")
        dst.commit()
    finally:
        src.close()
        dst.close()
    return ddb


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone() is not None
