"""Reading a Wildlife Insights project export: its CSV files, checked as untrusted input.

An export (the unzipped download of a project) holds `images*.csv` and `deployments*.csv`, often
`cameras*.csv` and `projects*.csv`, side by side. Values are kept as the file's text (no type guessing), so what a copy
carries over reads back the same.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from deepfaune_plugin.api import HostError

#: The tables of an export, by the prefix of their file names (camtrapR's readWildlifeInsights matches the same).
TABLES = ("images", "deployments", "cameras", "projects")
REQUIRED_TABLES = ("images", "deployments")
#: Largest CSV read (bytes): a million images' rows are about 400 MB; a table is held whole while it is read.
MAX_CSV_BYTES = 1024 ** 3
IMAGE_COLUMNS = ("deployment_id", "image_id", "timestamp")
#: The date forms Wildlife Insights writes (images' timestamp, deployments' start/end dates).
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


class ExportError(HostError):
    """A Wildlife Insights export that cannot be used: names the file and why."""


@dataclass
class Table:
    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    data: bytes = b""  # the file as read: a copy is checked against it before anything is written

    def column(self, name: str) -> list[str]:
        return [row.get(name, "") for row in self.rows]


@dataclass
class Export:
    root: Path
    tables: dict[str, Table] = field(default_factory=dict)

    @property
    def images(self) -> Table:
        return self.tables["images"]

    @property
    def deployments(self) -> Table:
        return self.tables["deployments"]


def table_files(root: Path) -> dict[str, list[Path]]:
    """The CSV files of `root` (not below it) by table: `images_2004252.csv` is an images table."""
    found: dict[str, list[Path]] = {name: [] for name in TABLES}
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.suffix.lower() != ".csv" or not path.is_file():
            continue
        for name in TABLES:
            if path.name.lower().startswith(name):
                found[name].append(path)
    return found


def is_export(root: Path) -> bool:
    found = table_files(Path(root))
    return all(found[name] for name in REQUIRED_TABLES)


def read_export(root: Path) -> Export:
    """Every table of the export at `root`, or ExportError naming what is missing, doubled or unreadable."""
    export = Export(root)
    for name, paths in table_files(root).items():
        if len(paths) > 1:
            raise ExportError(f"{root}: several {name} tables ({', '.join(p.name for p in paths)}); an export has "
                              f"one (move the others away)")
        if not paths:
            if name in REQUIRED_TABLES:
                raise ExportError(f"{root}: no {name}*.csv; a Wildlife Insights export has images*.csv and "
                                  "deployments*.csv")
            continue
        export.tables[name] = read_table(paths[0])
    missing = [c for c in IMAGE_COLUMNS if c not in export.images.header]
    if missing or not {"filename", "location"} & set(export.images.header):
        need = missing + ([] if {"filename", "location"} & set(export.images.header) else ["filename or location"])
        raise ExportError(f"{export.images.path}: no column {', '.join(need)}; Wildlife Insights' images table has "
                          "them")
    if "deployment_id" not in export.deployments.header:
        raise ExportError(f"{export.deployments.path}: no deployment_id column")
    return export


def read_table(path: Path) -> Table:
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise ExportError(f"{path}: {size} bytes, more than the {MAX_CSV_BYTES} bytes a Wildlife Insights table is "
                          "read up to")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ExportError(f"{path}: not UTF-8 text (byte {err.start}); Wildlife Insights writes UTF-8") from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        rows = []
        for number, values in enumerate(reader, 2):
            if not any(values):
                continue
            if len(values) > len(header):
                raise ExportError(f"{path}: line {number} has {len(values)} fields, the header {len(header)}")
            rows.append(dict(zip(header, values + [""] * (len(header) - len(values)))))
    except csv.Error as err:  # a field over csv's limit (128 kB), a broken quote
        raise ExportError(f"{path}: not a readable CSV ({err})") from None
    if not header:
        raise ExportError(f"{path}: empty file")
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise ExportError(f"{path}: column {', '.join(doubled)} appears more than once")
    return Table(path, header, rows, data)


def parse_date(text: str) -> datetime | None:
    """A Wildlife Insights date as local wall-clock time (the cameras' clock), or None when it is not one."""
    text = text.strip()
    for form in DATE_FORMATS:
        try:
            return datetime.strptime(text, form)
        except ValueError:
            continue
    return None


def csv_bytes(header: list[str], rows: list[dict[str, str]]) -> bytes:
    """A table as Wildlife Insights writes it: UTF-8, comma-separated, quoted where needed."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
