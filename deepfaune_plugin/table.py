"""DeepFaune's own result table (the GUI's CSV/XLSX export), plus our traceability columns."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .contracts import HEAD_COLUMN, STANDIN_COLUMN, STANDIN_VALUE, RunResults
from .atomic import StagedFile, atomic_output
from .boxes import normalised_box
from .bulk import without_gc
from .errors import HostError
from .exifdate import EXIF_DATE_FORMAT, format_date
from .human_fields import fields_given, fields_note
from .runlog import say
from .types import HUMAN_FIELDS, PERSON
from .xlsx import XlsxTable, write_xlsx

#: DeepFaune 1.4.1's columns, in its order.
DEEPFAUNE_COLUMNS = [
    "filename", "date", "seqnum", "predictionbase", "scorebase",
    "prediction", "score", "top1", "count", "humancount",
]
#: Ours, after DeepFaune's: the box DeepFaune kept (normalised x, y, w, h, top-left origin, as MegaDetector
#: and Camtrap DP write them), its confidence and detector, the person boxes (for blurring), failures, and
#: warnings, "; "-joined: about a file that was still used (a truncated JPEG decoded as far as it goes), and
#: what the decoder itself printed about a file ("decoder said: ...", also beside a failure), then where
#: `date` comes from: "exif", "host" (the data manager's own date), "container" (a video's creation
#: date) or "file date" (a video's modification time: a guess, kept out of the review page's charts), and
#: `reviewed`: who set the label in `deepfaune review` (empty where the label is DeepFaune's own).
EXTRA_COLUMNS = [
    "bbox_x", "bbox_y", "bbox_width", "bbox_height", "bbox_conf", "detector", "person_boxes", "failure", "warning",
    "date_source", "reviewed",
]
#: What a person recorded besides the label and count (a count given replaces `count`), after everything else,
#: only in a table where some file has such a value: a table without them stays byte for byte as before.
PEOPLE_COLUMNS = ("sex", "life_stage", "behaviour", "individual", "comment", "species_counts")
DATE_FORMAT = EXIF_DATE_FORMAT  # EXIF's own format, which DeepFaune writes back unchanged


def table_columns(standin: bool = False, head: str | None = None) -> list[str]:
    """The result table's columns; a run decided by an adapted head (`head`) has HEAD_COLUMN, a stand-in run's
    end with STANDIN_COLUMN (only theirs: a real run's table stays DeepFaune's, byte for byte)."""
    return DEEPFAUNE_COLUMNS + EXTRA_COLUMNS + ([HEAD_COLUMN] if head else []) + ([STANDIN_COLUMN] if standin else [])


def people_columns(decisions) -> list[str]:
    """The PEOPLE_COLUMNS some decision holds a person's value for."""
    given = {name for d in decisions if d.human is not None for name in d.human.fields.given()}
    return [c for c in PEOPLE_COLUMNS if c in given]


@without_gc()  # a chunk's rows at once (bulk.py)
def result_table(results: RunResults, columns: list[str] | None = None) -> pd.DataFrame:
    """DeepFaune's result table for `results`: one row per decision, DeepFaune's columns first (filename,
    date, seqnum, predictionbase, scorebase, prediction, score, top1, count, humancount), then ours (boxes,
    detector, failure, warning...), then `columns` of PEOPLE_COLUMNS (default: those some file has a value for).
    What the folder host writes; `write_table` writes it as CSV or XLSX."""
    recorded = people_columns(results.decisions) if columns is None else columns
    rows = []
    for d in results.decisions:
        raw = results.raw.get(d.relpath)
        row = {
            "filename": d.relpath,
            "date": format_date(d.date, DATE_FORMAT) if d.date else "",
            "seqnum": d.seqnum,
            "predictionbase": d.predictionbase,
            "scorebase": d.scorebase,
            "prediction": d.prediction,
            "score": d.score,
            "top1": d.top1,
            "count": d.count,
            "humancount": d.humancount,
            "bbox_x": None, "bbox_y": None, "bbox_width": None, "bbox_height": None,
            "bbox_conf": None, "detector": "", "person_boxes": "",
            "failure": d.failure or "",
            "warning": "; ".join(raw.warnings) if raw is not None else "",
            "date_source": raw.date_source if raw is not None and d.date else "",
            "reviewed": d.human.reviewer if d.human is not None else "",
            HEAD_COLUMN: results.head or "",
            STANDIN_COLUMN: STANDIN_VALUE,
            **{c: d.human.fields.text(c) if d.human is not None else "" for c in recorded},
        }
        if raw is not None and raw.width and raw.height:
            sel = raw.selected_detection
            if sel is not None:
                x, y, w, h = normalised_box(sel.box, raw.width, raw.height, decimals=6)
                row.update(bbox_x=x, bbox_y=y, bbox_width=w, bbox_height=h,
                           bbox_conf=round(sel.conf, 4), detector=sel.source)
            people = [normalised_box(det.box, raw.width, raw.height, decimals=6)
                      for det in raw.detections if det.category == PERSON]
            row["person_boxes"] = ";".join(",".join(f"{v:.6f}" for v in b) for b in people)
        rows.append(row)
    return pd.DataFrame(rows, columns=table_columns(results.standin, results.head) + recorded)


#: The result table's file types, by suffix.
TABLE_KINDS = {".csv": "csv", ".xlsx": "xlsx"}

#: What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list). A file named
#: `=HYPERLINK("http://x")+1.jpg` must reach Excel or LibreOffice as text, never as something it runs.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """A text cell that a spreadsheet would take for a formula, with a leading apostrophe (shown as text, as
    OWASP recommends); numbers, including negative ones written as text, stay as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def unescape_formula(value):
    """The cell as it was before `escape_formula` (for tables we read back: sort, resume)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1] in "".join(FORMULA_START):
        return value[1:]
    return value


def _text_columns(table: pd.DataFrame) -> list:
    return [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with every text cell escaped (XLSX needs none: we write its cells as strings, never formulas)."""
    text = _text_columns(table)
    if not text:
        return table
    safe = table.copy()
    for column in text:
        safe[column] = safe[column].map(escape_formula)
    return safe


class TableTypeError(HostError, ValueError):
    """An output name that is no result table (a folder, x.txt): a HostError, as `Host.open_writer` promises, and
    still the ValueError it was for callers that catch that."""


def _table_kind(path: Path) -> str:
    """The table kind ("csv" or "xlsx") the name asks for.  Anything else is refused before a model runs,
    with the choices: a table silently written as CSV under another name (x.txt, a folder's) surprises later."""
    if path.is_dir():
        raise TableTypeError(f"{path}: is a folder; --output names the result file, e.g. {path / 'deepfaune.csv'}")
    suffix = path.suffix.lower()
    if suffix in TABLE_KINDS:
        return TABLE_KINDS[suffix]
    if not suffix:
        raise TableTypeError(f"{path}: the name has no file type; use .csv or .xlsx (e.g. {path}.csv)")
    raise TableTypeError(f"{path}: unsupported output type {suffix!r}; use .csv or .xlsx")


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """Write CSV, or XLSX when the path says so; atomically, so a crash leaves the previous file intact."""
    path = Path(path)
    kind = _table_kind(path)
    with atomic_output(path) as tmp:
        if kind == "xlsx":
            write_xlsx(table, tmp, sheet="deepfaune")
        else:
            csv_safe(table).to_csv(tmp, index=False, encoding="utf-8")
    return path


class TableWriter:
    """The result table written block by block as a run goes (a CSV appends each block, byte for byte what
    one `write_table` of the whole table gives); it replaces the previous table only on `close`.  An XLSX
    streams its rows too (XlsxWriter's constant-memory mode), in a staged file committed on `close`."""

    def __init__(self, path: Path):
        self.target = Path(path)
        self.kind = _table_kind(self.target)  # refused before any model runs
        self.staged: StagedFile | None = StagedFile(self.target)
        self.out = self.staged.open_text() if self.kind == "csv" else None
        self.sheet = XlsxTable(self.staged.tmp, sheet="deepfaune") if self.kind == "xlsx" else None
        self.rows = 0
        self.people: list[str] = []  # PEOPLE_COLUMNS written so far
        self.given: dict[str, int] = {}  # how many files hold a person's count, sex...: said on close

    def add(self, batch: RunResults) -> None:
        found = set(self.people) | set(people_columns(batch.decisions))
        wider = [c for c in PEOPLE_COLUMNS if c in found]
        if wider != self.people and self.rows:
            self._widen(wider)
        self.people = wider
        for name, n in fields_given(batch.decisions).items():
            self.given[name] = self.given.get(name, 0) + n
        table = result_table(batch, self.people)
        if self.sheet is not None:
            self.sheet.add(table)
        else:
            csv_safe(table).to_csv(self.out, header=self.rows == 0, index=False)
        self.rows += len(table)

    def _widen(self, columns: list[str]) -> None:
        """The rows written so far given the people's columns that a later block brought (empty for them): rare,
        only once a file with such a value comes, so it costs a rewrite of the staged table, never a held copy."""
        assert self.staged is not None
        if self.sheet is not None:
            from .xlsx import read_xlsx

            self.sheet.close()
            table = read_xlsx(self.staged.tmp)
            self.sheet = XlsxTable(self.staged.tmp, sheet="deepfaune")
            self.sheet.add(table.reindex(columns=[*table.columns, *(c for c in columns if c not in table.columns)],
                                         fill_value=""))
            return
        import csv

        assert self.out is not None
        self.out.close()
        with open(self.staged.tmp, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        added = [c for c in columns if c not in rows[0]]
        with open(self.staged.tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator=os.linesep)
            writer.writerow(rows[0] + added)
            writer.writerows(row + [""] * len(added) for row in rows[1:])
        self.out = self.staged.open_text()

    def close(self, results: RunResults) -> list[Path]:
        if self.sheet is not None:
            if self.rows == 0:
                self.sheet.add(_empty_table(results.standin, results.head))
            self.sheet.close()
        elif self.out is not None:
            if self.rows == 0:
                _empty_table(results.standin, results.head).to_csv(self.out, index=False)
            self.out.close()
        staged, self.staged = self.staged, None
        assert staged is not None, "close() after close() or abort()"
        for line in fields_note(self.target.name, self.given, {name: f"{name} column" for name in HUMAN_FIELDS}):
            say(line)
        return [staged.commit()]

    def abort(self) -> None:
        if self.out is not None:
            self.out.close()
        if self.sheet is not None:
            self.sheet.close()  # frees its temporary row files; the staged file is discarded below
        if self.staged is not None:
            self.staged.discard()
            self.staged = None


def _empty_table(standin: bool = False, head: str | None = None) -> pd.DataFrame:
    return pd.DataFrame([], columns=table_columns(standin, head))


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        from .xlsx import read_xlsx

        return read_xlsx(path)
    table = pd.read_csv(path, keep_default_na=False, dtype={"filename": str, "person_boxes": str, "failure": str,
                                                             "warning": str, "date_source": str,
                                                             "reviewed": str, STANDIN_COLUMN: str, HEAD_COLUMN: str,
                                                             **dict.fromkeys(PEOPLE_COLUMNS, str)})
    for column in _text_columns(table):
        table[column] = table[column].map(unescape_formula)
    return table
