"""Reading a Timelapse data file (.ddb): its schema check, its file rows and its user fields.

Facts from Timelapse's own source (2.3 to 2.5; Database/FileDatabase.cs, Constant.cs): the
`DataTable` has an `Id` primary key plus one column per template DataLabel; `File` is the file
name, `RelativePath` the folder below the root with Windows `\\` separators ('' for the root),
`DateTime` local time "yyyy-MM-dd HH:mm:ss" (older 2.x files used "yyyy-MM-ddTHH:mm:ss.fffZ").
Databases made before 2.3 carried Folder/Date/Time/UtcOffset/ImageQuality columns and a
UTC DateTime: they are refused, never written.
"""
from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

from deepfaune_plugin.api import HostError, parse_json

DEFAULT_DDB = "TimelapseData.ddb"
DEFAULT_TDB = "TimelapseTemplate.tdb"
DATA_TABLE = "DataTable"
TEMPLATE_TABLE = "TemplateTable"
IMAGE_SET_TABLE = "ImageSetTable"
STANDARD_TYPES = ("File", "RelativePath", "DateTime", "DeleteFlag")
#: Columns only a pre-2.3 DataTable has (Timelapse's ControlDeprecated constants).
LEGACY_COLUMNS = ("Folder", "Date", "Time", "UtcOffset", "ImageQuality")
MINIMUM_VERSION = (2, 3, 0, 0)
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")


class TimelapseError(HostError):
    """A Timelapse database that cannot be used (wrong version, not a Timelapse file, locked...)."""


@dataclass(frozen=True)
class FieldSpec:
    """One data field of the template: what `--field` may write into."""

    data_label: str
    type: str
    choices: tuple[str, ...] = ()
    include_empty: bool = True
    default: str = ""  # TemplateTable.DefaultValue: what Timelapse writes into every row nobody has touched
    label: str = ""  # TemplateTable.Label, the name shown in Timelapse


@dataclass(frozen=True)
class DataRow:
    id: int
    file: str
    relative_path: str  # as stored: Windows separators
    date_time: datetime | None

    @property
    def relpath(self) -> str:
        """POSIX path relative to the root: the manifest identity."""
        folder = windows_to_posix(self.relative_path)
        return self.file if not folder else f"{folder}/{self.file}"


@dataclass
class DdbContents:
    path: Path
    version: str
    rows: list[DataRow]
    fields: dict[str, FieldSpec] = field(default_factory=dict)


def windows_to_posix(relative_path: str | None) -> str:
    if not relative_path:
        return ""
    return PureWindowsPath(relative_path).as_posix().strip("/")


def posix_to_windows(relative_path: str) -> str:
    """Timelapse's `Path.GetDirectoryName` on Windows: '/' becomes '\\', '' stays ''."""
    if relative_path in ("", "."):
        return ""
    return str(PureWindowsPath(PurePosixPath(relative_path)))


def parse_ddb_datetime(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
    return None


def version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "").strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def connect_readonly(path: Path, timeout: float = 5.0) -> sqlite3.Connection:
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout)


@contextlib.contextmanager
def reading(path: Path, timeout: float, failure: str = "cannot read") -> Iterator[sqlite3.Connection]:
    """A read-only connection whose SQLite errors become TimelapseErrors naming the file (and the wait, if locked)."""
    try:
        conn = connect_readonly(path, timeout)
    except sqlite3.Error as err:
        raise TimelapseError(f"{path}: cannot open ({err})") from err
    try:
        yield conn
    except sqlite3.OperationalError as err:
        if "locked" in str(err) or "busy" in str(err):
            raise TimelapseError(locked_message(path, timeout, err)) from err
        raise TimelapseError(f"{path}: {failure} ({err})") from err
    finally:
        conn.close()


def table_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def check_schema(conn: sqlite3.Connection, path: Path) -> str:
    """The database's Timelapse version, or a TimelapseError saying why it cannot be used."""
    try:
        tables = table_names(conn)
    except sqlite3.OperationalError:
        raise  # locked: the caller says for how long it waited
    except sqlite3.DatabaseError as err:
        raise TimelapseError(f"{path}: not a readable SQLite database ({err})") from err
    if DATA_TABLE not in tables or TEMPLATE_TABLE not in tables:
        raise TimelapseError(f"{path}: not a Timelapse data file (no {DATA_TABLE}/{TEMPLATE_TABLE} table)")
    columns = table_columns(conn, DATA_TABLE)
    missing = [c for c in ("Id", "File", "RelativePath", "DateTime") if c not in columns]
    if missing:
        raise TimelapseError(f"{path}: {DATA_TABLE} lacks {', '.join(missing)}; not a Timelapse 2.3+ data file")
    version = ""
    if IMAGE_SET_TABLE in tables and "VersionCompatabily" in table_columns(conn, IMAGE_SET_TABLE):
        row = conn.execute(f"SELECT VersionCompatabily FROM {IMAGE_SET_TABLE} LIMIT 1").fetchone()
        version = (row[0] or "") if row else ""
    legacy = [c for c in LEGACY_COLUMNS if c in columns]
    parsed = version_tuple(version)
    if legacy or (parsed and parsed < MINIMUM_VERSION):
        raise TimelapseError(
            f"{path}: made by Timelapse {version or 'before 2.3'} (old format"
            f"{': ' + ', '.join(legacy) + ' columns' if legacy else ''}). DeepFaune only reads and writes "
            "Timelapse 2.3+ files: open the image set once in a current Timelapse, which upgrades it, then run "
            "again. Nothing was changed."
        )
    return version


def read_fields(conn: sqlite3.Connection) -> dict[str, FieldSpec]:
    fields: dict[str, FieldSpec] = {}
    for data_label, type_, list_text, default, label in conn.execute(
        f"SELECT DataLabel, Type, List, DefaultValue, Label FROM {TEMPLATE_TABLE} ORDER BY ControlOrder"
    ):
        choices, include_empty = parse_choice_list(list_text)
        fields[data_label] = FieldSpec(data_label, type_, choices, include_empty, "" if default is None else
                                       str(default), label or "")
    return fields


def parse_choice_list(text: str | None) -> tuple[tuple[str, ...], bool]:
    """Timelapse's choice list JSON {"IncludeEmptyChoice":..,"ChoiceListNonEmpty":[..]} (tolerates trailing commas)."""
    if not text or not text.strip():
        return (), True
    cleaned = text.replace(", ]", "]").replace(",]", "]")
    try:
        data = parse_json(cleaned, "choice list")  # a template's text: within the depth limit too
    except ValueError:
        # Very old templates stored choices as "a|b|c".
        return tuple(c for c in text.split("|") if c), True
    if not isinstance(data, dict):
        return (), True
    choices = tuple(str(c) for c in data.get("ChoiceListNonEmpty") or ())
    return choices, bool(data.get("IncludeEmptyChoice", True))


def read_rows(conn: sqlite3.Connection) -> list[DataRow]:
    rows = conn.execute(
        f"SELECT Id, File, RelativePath, DateTime FROM {DATA_TABLE} ORDER BY RelativePath, File, Id"
    )
    return [DataRow(int(i), f or "", rp or "", parse_ddb_datetime(dt)) for i, f, rp, dt in rows]


def read_ddb(path: Path, timeout: float = 5.0) -> DdbContents:
    """Everything the host needs from a .ddb, read without writing anything."""
    path = Path(path)
    if not path.is_file():
        raise TimelapseError(f"{path}: no such Timelapse data file")
    with reading(path, timeout) as conn:
        version = check_schema(conn, path)
        return DdbContents(path=path, version=version, rows=read_rows(conn), fields=read_fields(conn))



def locked_message(path: Path, waited: float, err: Exception) -> str:
    return (f"{path}: the database stayed locked for {waited:g} s ({err}); is Timelapse saving to it? "
            "Close the image set in Timelapse (or wait longer with --ddb-wait) and run again. Nothing was changed.")


def _in_folder(folder: Path, default: str) -> Path | None:
    """`default` in `folder`, else the folder's only file with its suffix (Timelapse lets users rename them)."""
    if not folder.is_dir():
        return None
    if (folder / default).is_file():
        return folder / default
    found = sorted(p for p in folder.glob(f"*{Path(default).suffix}") if p.is_file())
    return found[0] if len(found) == 1 else None


def find_template(folder: Path) -> Path | None:
    """The Timelapse template (.tdb) of an image set's root folder: TimelapseTemplate.tdb, or its only .tdb."""
    return _in_folder(Path(folder), DEFAULT_TDB)


def find_ddb(source: Path) -> Path | None:
    """The .ddb a source designates: the file itself, TimelapseData.ddb in a folder, or a folder's only .ddb."""
    source = Path(source)
    if source.is_file():
        return source if source.suffix.lower() == ".ddb" else None
    return _in_folder(source, DEFAULT_DDB)
