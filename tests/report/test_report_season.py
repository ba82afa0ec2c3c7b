"""Issue 16 item 4: the review page and the run record as a season needs them, from the user's command.

One page and record per output (two runs over one folder keep theirs), videos that play in the full view,
activity by time of day, a species × station table (sequences, independent events, trap-days, rate), and
a video dated only by its file time flagged (`date_source`) and kept out of the charts.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from camtrapdp_helpers import make_package
from deepfaune_plugin.cli import main
from deepfaune_plugin.report import report_names
from deepfaune_plugin.report.view import build_view, independent_events
from fakes import registry_with_fake
from imagegen import make_jpeg
from test_report import build_run
from test_video import RED_BGR, write_video

T0 = datetime(2024, 5, 3, 6, 0, 0)


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="df-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def fake_run(*args, registry=None) -> int:
    return main(["run", *map(str, args), "--backend", "fake", "-q", "--no-store"],
                registry=registry or registry_with_fake())


def _season(root: Path) -> Path:
    make_jpeg(root / "cam1" / "fox_1.jpg", date=T0)
    make_jpeg(root / "cam1" / "badger_1.jpg", date=T0 + timedelta(hours=15), seed=1)
    return root


def test_item16_4_two_outputs_from_one_folder_keep_their_own_page_and_record(tmp_path: Path):
    src, out = _season(tmp_path / "season"), tmp_path / "results"
    assert fake_run(src, "-o", out / "a.csv") == 0
    first_page = (out / "a-report.html").read_bytes()
    assert fake_run(src, "-o", out / "b.xlsx", "--threshold", "0.5") == 0
    assert fake_run(src, "-o", out / "a.xlsx") == 0  # same stem, other format: a name of its own too
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a-report.html", "a-run.json", "a-xlsx-report.html", "a-xlsx-run.json", "a.csv", "a.xlsx",
        "b-xlsx-report.html", "b-xlsx-run.json", "b.xlsx"]
    assert (out / "a-report.html").read_bytes() == first_page  # the later runs left it alone
    for stem, table in (("a", "a.csv"), ("b-xlsx", "b.xlsx"), ("a-xlsx", "a.xlsx")):
        record = json.loads((out / f"{stem}-run.json").read_text(encoding="utf-8"))
        assert [Path(o["path"]).name for o in record["outputs"]] == [table]
        data = page_data(out / f"{stem}-report.html")
        assert data["record"] == f"{stem}-run.json" and [o["name"] for o in data["outputs"]] == [table]
    assert json.loads((out / "b-xlsx-run.json").read_text())["settings"]["threshold"] == 0.5
    # the default output keeps the plain names
    assert fake_run(src) == 0
    assert (src / "deepfaune-report.html").is_file() and (src / "deepfaune-run.json").is_file()


@pytest.mark.parametrize("output, names", [
    (None, ("deepfaune-report.html", "deepfaune-run.json")),
    ("x/deepfaune.csv", ("deepfaune-report.html", "deepfaune-run.json")),
    ("x/Season 2024.CSV", ("Season 2024-report.html", "Season 2024-run.json")),
    ("x/b.xlsx", ("b-xlsx-report.html", "b-xlsx-run.json")),
    ("x/recognition.json", ("recognition-json-report.html", "recognition-json-run.json")),
    ("x/new-package", ("deepfaune-report.html", "deepfaune-run.json")),  # a folder (a Camtrap DP package)
])
def test_report_names_follow_the_output(output, names):
    assert report_names(output) == names


def test_independent_events_count_from_the_last_independent_sequence():
    minutes = [0, 20, 31, 62, 62.5]
    # 0 starts one; 20 is within 30 min of it; 31 is 31 min after 0 (camtrapR's lastIndependentRecord; against
    # the last record it would be 11 min and not count); 62 is 31 min after 31; 62.5 is within
    assert independent_events([m * 60 for m in minutes]) == 3
    assert independent_events([0, 30 * 60]) == 1  # exactly minDeltaTime apart: not independent (camtrapR: >)
    assert independent_events([]) == 0


def test_item16_4_time_of_day_and_species_by_station(tmp_path: Path):
    """test_report's season: a fox burst, a lone fox and an undefined fox at cam1 (06:00 on three days), a
    badger (06:00), a person (07:00) and an empty image (08:00) at cam2, an undated fox at the top level."""
    view = build_view(build_run(tmp_path))
    hours = view["activity"]["hours"]
    assert len(hours) == 24 and [b["h"] for b in hours] == list(range(24))
    assert {b["h"]: b["n"] for b in hours if b["n"]} == {6: 4, 7: 1, 8: 1}
    assert hours[6]["cats"] == {"animal": 4} and hours[7]["cats"] == {"person": 1}
    table = view["species_stations"]
    assert table["gap_minutes"] == 30
    rows = [(r["label"], r["station"], r["sequences"], r["events"], r["undated"], r["trap_days"], r["rate"])
            for r in table["rows"]]
    assert rows == [  # species first, then undefined and human; empty images are no detection
        ("blaireau", "cam2", 1, 1, 0, None, None),
        ("renard", "", 1, 0, 1, None, None),  # undated: a sequence, but no event can be timed
        ("renard", "cam1", 2, 2, 0, None, None),  # a day apart: two independent events
        ("indéfini", "cam1", 1, 1, 0, None, None),
        ("humain", "cam2", 1, 1, 0, None, None),
    ]


def test_item16_4_camtrapdp_deployments_give_trap_days_and_rate(tmp_path: Path):
    """Deployments of 30 days each (2024-05-01 to 05-31).  dep1: a fox burst at 06:00, a fox at 06:40 (40 min
    after: independent) and one at 06:50 (10 min after that: not); dep2: a badger."""
    media = [("m1", "dep1", "fox_1.jpg", 0), ("m2", "dep1", "fox_2.jpg", 2), ("m3", "dep1", "fox_3.jpg", 2400),
             ("m4", "dep1", "fox_4.jpg", 3000), ("m5", "dep2", "badger_1.jpg", 0), ("m6", "dep2", "empty_1.jpg", 60)]
    package = make_package(tmp_path / "pkg", media=media, obs_rows="")
    assert fake_run(package) == 0
    rows = {(r["label"], r["station"]): (r["sequences"], r["events"], r["trap_days"], r["rate"])
            for r in page_data(package / "deepfaune-report.html")["species_stations"]["rows"]}
    assert rows == {("renard", "dep1"): (3, 2, 30.0, 6.67),  # 2 events / 30 days × 100
                    ("blaireau", "dep2"): (1, 1, 30.0, 3.33)}


def test_item16_4_a_video_plays_and_a_file_dated_one_stays_out_of_the_charts(tmp_path: Path):
    src = tmp_path / "season"
    make_jpeg(src / "cam1" / "fox_1.jpg", date=T0)
    clip = write_video(src / "cam1" / "fox_clip.mp4", 25, 30,  # OpenCV's writer sets no creation time
                       blobs=lambda i: [(RED_BGR, (60, 40, 200, 160))])
    when = (T0 + timedelta(hours=5)).timestamp()
    os.utime(clip, (when, when))
    out = tmp_path / "out" / "season.csv"
    assert fake_run(src, "-o", out) == 0
    table = pd.read_csv(out, keep_default_na=False).set_index("filename")
    assert table.loc["cam1/fox_clip.mp4", "date_source"] == "file date"
    assert table.loc["cam1/fox_clip.mp4", "date"] == "2024:05:03 11:00:00"
    assert table.loc["cam1/fox_1.jpg", "date_source"] == "exif"
    data = page_data(tmp_path / "out" / "season-report.html")
    files = {f["f"]: (f, s) for s in data["sequences"] for f in s["files"]}
    video, video_seq = files["cam1/fox_clip.mp4"]
    photo, photo_seq = files["cam1/fox_1.jpg"]
    # the full view plays the video itself (a link from the page's folder), and says which frame the box is from
    assert video["v"] == 1 and video["h"] == "../season/cam1/fox_clip.mp4" and isinstance(video["fn"], int)
    assert video["ds"] == "file date" and video_seq["fd"] == 1
    assert "v" not in photo and photo["ds"] == "exif" and "fd" not in photo_seq
    activity = data["activity"]
    assert activity["file_dated"] == 1 and activity["undated"] == 0
    assert [(b["t"], b["n"]) for b in activity["bins"]] == [("2024-05-03", 1)]  # the photo only
    assert {b["h"]: b["n"] for b in activity["hours"] if b["n"]} == {6: 1}  # not the clip's 11:00
    (row,) = data["species_stations"]["rows"]
    assert (row["label"], row["sequences"], row["events"], row["undated"]) == ("renard", 2, 1, 1)


def test_item16_4_blurred_video_full_view_is_a_still(tmp_path: Path):
    """With --blur-humans a video with people gets a blurred still, never the video itself."""
    src = tmp_path / "season"
    write_video(src / "cam1" / "person_clip.avi", 25, 30, blobs=lambda i: [(RED_BGR, (60, 40, 200, 160))])
    assert fake_run(src, "--blur-humans") == 0
    (seq,) = page_data(src / "deepfaune-report.html")["sequences"]
    (entry,) = seq["files"]
    assert "v" not in entry and re.fullmatch(r"\.deepfaune-thumbs/p-[0-9a-f]{24}\.jpg", entry["h"])


def test_item16_4_sort_finds_the_source_through_a_record_named_after_the_table(tmp_path: Path, capsys):
    src, out = _season(tmp_path / "season"), tmp_path / "results"
    assert fake_run(src, "-o", out / "a.csv") == 0
    assert fake_run(src, "-o", out / "b.csv") == 0  # another record beside it, for another table
    assert main(["sort", str(out / "a.csv"), "--dest", str(tmp_path / "sorted")]) == 0, capsys.readouterr().err
    (dated,) = (tmp_path / "sorted").iterdir()
    assert sorted(p.relative_to(dated).as_posix() for p in dated.rglob("*.jpg")) == [
        "blaireau/cam1/badger_1.jpg", "renard/cam1/fox_1.jpg"]
