"""What a run leaves for people: a review page (deepfaune-report.html) and a run record (deepfaune-run.json)."""
from __future__ import annotations

from pathlib import Path

from .page import REPORT_NAME, THUMBS_DIR, write_report
from .record import RECORD_NAME, run_record, write_run_record

__all__ = ["REPORT_NAME", "RECORD_NAME", "THUMBS_DIR", "report_dir", "report_names", "run_record", "write_report",
           "write_run_record"]


def report_dir(summary) -> Path:
    """Where the page and the record go: beside the first output written, else the output asked for, else the source."""
    if summary.written:
        return Path(summary.written[0]).parent
    output = summary.results.output
    if output is not None:
        return Path(output).parent
    root = Path(summary.manifest.root)
    return root if root.is_dir() else root.parent


def report_names(output: Path | str | None) -> tuple[str, str]:
    """(page, record) file names for a run that wrote `output` (the --output asked for, or None).

    Two runs over one folder with their own outputs (`-o a.csv`, `-o b.xlsx`) keep their own page and
    record: `a-report.html` / `a-run.json` and `b-xlsx-report.html` / `b-xlsx-run.json`.  A table's
    suffix is kept in the name unless it is .csv, so `-o a.csv` and `-o a.xlsx` do not collide either,
    and the default table (deepfaune.csv) keeps the plain names.  No --output, or a folder: the plain names.
    """
    if output is None:
        return REPORT_NAME, RECORD_NAME
    path = Path(output)
    suffix = path.suffix.lower().lstrip(".")
    if not suffix or not path.stem or path.is_dir():
        return REPORT_NAME, RECORD_NAME
    stem = path.stem if suffix == "csv" else f"{path.stem}-{suffix}"
    return f"{stem}-report.html", f"{stem}-run.json"
