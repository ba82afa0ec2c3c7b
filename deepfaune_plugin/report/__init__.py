"""What a run leaves for people: a review page (deepfaune-report.html) and a run record (deepfaune-run.json)."""
from __future__ import annotations

from pathlib import Path

from .page import REPORT_NAME, THUMBS_DIR, write_report
from .record import RECORD_NAME, run_record, write_run_record

__all__ = ["REPORT_NAME", "RECORD_NAME", "THUMBS_DIR", "report_dir", "run_record", "write_report", "write_run_record"]


def report_dir(summary) -> Path:
    """Where the page and the record go: beside the first output written, else the output asked for, else the source."""
    if summary.written:
        return Path(summary.written[0]).parent
    output = summary.results.output
    if output is not None:
        return Path(output).parent
    root = Path(summary.manifest.root)
    return root if root.is_dir() else root.parent
