"""The result table as an XLSX sheet, written by XlsxWriter (a well-kept library) in constant memory.

Why XlsxWriter and not our own XML: it writes real date cells (Excel, LibreOffice and R's readxl see the `date`
column as dates, which our hand-written inline strings hid from them), streams rows to disk as blocks come
(100,000 rows: 523 -> 98 MiB peak, benchmarks/RESULTS.md), and its options let us refuse what a spreadsheet
would run: no text cell ever becomes a formula, a number or a link.  Reading back (sort, resume) stays a small
reader of our own sheets, so reading needs no spreadsheet dependency.
"""
from __future__ import annotations

import math
import re
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import xlsxwriter

from .exifdate import EXIF_DATE_FORMAT

_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: Columns holding EXIF-format dates ("YYYY:MM:DD HH:MM:SS"): written as date cells, read back as that text.
DATE_COLUMNS = ("date",)
#: How a date cell shows: ISO 8601, to the second, as DeepFaune's text had it.
DATE_CELL_FORMAT = "yyyy-mm-dd hh:mm:ss"
#: Day 0 of Excel's 1900 date system as it counts (its serial 60 is the 29 February 1900 that never was).
_EXCEL_EPOCH = datetime(1899, 12, 30)
#: The timestamp XlsxWriter gives every part of the zip.
_ZIP_EPOCH = datetime(1980, 1, 1)
#: The first date a 1900-system sheet holds as a date cell; an earlier one stays text.
_FIRST_DATE = datetime(1900, 3, 1)


def _excel_date(text: object) -> datetime | None:
    """The date an EXIF-format cell holds, or None where it holds none that a sheet can show as a date."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.strptime(text, EXIF_DATE_FORMAT)
    except ValueError:
        return None
    return value if value >= _FIRST_DATE else None


class XlsxTable:
    """One sheet written row block by row block, in the order given; rows go to disk as they come."""

    def __init__(self, path: Path | str, sheet: str = "Sheet1"):
        self.book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True,        # rows stream to a temporary file: memory does not grow with the table
            "strings_to_formulas": False,   # "=HYPERLINK(...)" in a file name stays text
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "nan_inf_to_errors": False,
        })
        # The same results give the same bytes (resume, chunking): the sheet says nothing of when it was written
        # (deepfaune-run.json does), so its creation date is the fixed one XlsxWriter gives its zip entries.
        self.book.set_properties({"created": _ZIP_EPOCH})
        self.sheet = self.book.add_worksheet(sheet)
        self.date_format = self.book.add_format({"num_format": DATE_CELL_FORMAT})
        self.columns: list[str] | None = None
        self.row = 0

    def add(self, table: pd.DataFrame) -> None:
        if self.columns is None:
            self.columns = [str(c) for c in table.columns]
            for c, name in enumerate(self.columns):
                self._write(0, c, name, name)
            self.row = 1
        dates = {c for c, name in enumerate(self.columns) if name in DATE_COLUMNS}
        for values in table.astype(object).itertuples(index=False, name=None):
            for c, value in enumerate(values):
                if c in dates and (when := _excel_date(value)) is not None:
                    self.sheet.write_datetime(self.row, c, when, self.date_format)
                else:
                    self._write(self.row, c, value, self.columns[c])
            self.row += 1

    def _write(self, row: int, col: int, value: object, column: str) -> None:
        if value is None or value is pd.NA or value == "" or (isinstance(value, float) and math.isnan(value)):
            return  # an absent cell: what a spreadsheet and readxl take for an empty one
        if hasattr(value, "item"):  # numpy scalar
            value = value.item()
        if isinstance(value, bool):
            self.sheet.write_boolean(row, col, value)
        elif isinstance(value, (int, float)):
            if math.isinf(value):
                self.sheet.write_string(row, col, str(value))
            else:
                self.sheet.write_number(row, col, value)
        else:
            self.sheet.write_string(row, col, _ILLEGAL_XML.sub("", str(value)))

    def close(self) -> None:
        self.book.close()


def write_xlsx(table: pd.DataFrame, path: Path, sheet: str = "Sheet1") -> None:
    out = XlsxTable(path, sheet)
    out.add(table)
    out.close()


def read_xlsx(path: Path) -> pd.DataFrame:
    """Read back a sheet written by `XlsxTable` (inline strings, numbers, booleans, date cells in DATE_COLUMNS
    given back as EXIF-format text, the result table's own form)."""
    import xml.etree.ElementTree as ET

    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("xl/worksheets/sheet1.xml"))
    ns = {"m": _NS}
    grid: list[dict[int, object]] = []
    for row in root.iterfind("m:sheetData/m:row", ns):
        values: dict[int, object] = {}
        for cell in row.iterfind("m:c", ns):
            match = re.match(r"[A-Z]+", cell.get("r") or "")
            if match is None:
                continue
            col = _column_index(match.group())
            kind = cell.get("t")
            if kind == "inlineStr":
                values[col] = "".join(t.text or "" for t in cell.iterfind(".//m:t", ns))
            elif kind == "str":
                values[col] = cell.findtext("m:v", default="", namespaces=ns)
            else:
                v = cell.findtext("m:v", default="", namespaces=ns)
                values[col] = bool(int(v)) if kind == "b" else (
                    float(v) if "." in v or "e" in v.lower() else int(v))
        grid.append(values)
    header = [str(grid[0][i]) for i in sorted(grid[0])] if grid else []
    data = [[r.get(i, "") for i in range(len(header))] for r in grid[1:]]
    table = pd.DataFrame(data, columns=header)
    for name in DATE_COLUMNS:
        if name in table.columns:
            table[name] = table[name].map(_date_text)
    return table


def _date_text(value: object) -> object:
    """A date cell's serial number as the EXIF-format text the table holds; text cells as they are."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    when = _EXCEL_EPOCH + timedelta(days=float(value))
    return (when + timedelta(microseconds=500_000)).replace(microsecond=0).strftime(EXIF_DATE_FORMAT)


def _column_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1
