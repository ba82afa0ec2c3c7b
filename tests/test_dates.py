"""Issue 19 item 2: one owner for dates.  A file's own date is read once, when it is computed, and kept in the
result store; a resumed run dates every file without opening it, and the host's date still applies."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from imagegen import make_jpeg

import deepfaune_plugin.dates as dates
from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.types import EXIF_DATE, FILE_DATE, HOST_DATE, MediaItem, RawResult


def _count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    exif, video = dates.read_exif_date_safely, dates.video_date
    monkeypatch.setattr(dates, "read_exif_date_safely", lambda path: reads.append(str(path)) or exif(path))
    monkeypatch.setattr(dates, "video_date", lambda path: reads.append(str(path)) or video(path))
    return reads


def test_a_resumed_run_reads_no_file_for_its_dates(tmp_path: Path, standin_models: Path, monkeypatch):
    season = tmp_path / "season"
    make_jpeg(season / "cam1" / "dated.jpg", date=datetime(2024, 6, 1, 5, 30))
    make_jpeg(season / "cam1" / "undated.jpg")  # no EXIF: before the fix, every run read it again
    store = tmp_path / "results.db"
    settings = RunSettings(models_dir=standin_models)  # a backend that describes itself: results are stored
    common = dict(progress=False, log=lambda msg: None, store=store, report=False)
    first = run(season, settings, **common)
    assert {d.relpath: d.date for d in first.results.decisions} == {
        "cam1/dated.jpg": datetime(2024, 6, 1, 5, 30), "cam1/undated.jpg": None}

    reads = _count_reads(monkeypatch)
    again = run(season, settings, **common)
    assert again.results.backend_info["reused"] == 2
    assert reads == []
    assert {d.relpath: d.date for d in again.results.decisions} == {
        "cam1/dated.jpg": datetime(2024, 6, 1, 5, 30), "cam1/undated.jpg": None}


def test_resolve_puts_the_host_date_over_a_file_time_but_not_over_exif(tmp_path: Path, monkeypatch):
    reads = _count_reads(monkeypatch)
    host = datetime(2024, 5, 3, 6, 0)
    video = MediaItem(path=tmp_path / "clip.avi", relpath="clip.avi", group="", timestamp=host)
    filed = RawResult("clip.avi", date=datetime(2026, 1, 1, 12, 0), date_source=FILE_DATE)
    assert (dates.resolve(video, filed).date, filed.date_source) == (host, HOST_DATE)
    image = MediaItem(path=tmp_path / "a.jpg", relpath="a.jpg", group="", timestamp=host)
    exif = RawResult("a.jpg", date=datetime(2024, 5, 3, 5, 59), date_source=EXIF_DATE)
    assert (dates.resolve(image, exif).date, exif.date_source) == (datetime(2024, 5, 3, 5, 59), EXIF_DATE)
    assert reads == []
