"""Videos in every host (Camtrap DP, camtrapR, Timelapse) and on the review page.

The videos are written here with OpenCV (tests/test_video.py: every frame carries its own number
in grey blocks along its bottom edge).  The fake backend (tests/fakes.py) gives a video
DeepFaune's sampled frames: its outcome in the even sampled frames, two boxes in the third, an
animal logit growing by 0.1 per sampled frame, so the key frame is the last even one.  Hence:

- fox_clip.mp4 (30 fps, 300 frames, container date): frames 0 10 20 30 40 50 60 70 127 184 241
  298; a fox in 0, 20 (twice), 40, 60, 127, 241; key frame 241; count 2.
- fox_walk.avi (15 fps, 15 frames, no container date: the file's date): frames 0 2 ... 14; a fox
  in 0, 4 (twice), 8, 12; key frame 12; count 2.
- person_short.mp4 (30 fps, 5 frames): frames 0 (eight times) 1 2 3 4; a person in 0, 1, 3.
- broken_clip.mp4 (random bytes) and empty_none.avi (no frame) fail.

Boxes: a fox at (80, 60)-(160, 120) of the 320x240 frame, i.e. [0.25, 0.25, 0.25, 0.25]; the
second one 112 px to the right, [0.6, 0.25, 0.25, 0.25], conf 0.8.
"""
from __future__ import annotations

import json
import os
import sys
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

from mdvalidate import megadetector_findings

import numpy as np
import pytest
from PIL import Image

from camtrapdp_helpers import frictionless_validate, read_rows, run_on
from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.decisions import decide_group
from deepfaune_plugin.engine.video import NO_FRAMES, UNDECODABLE
from deepfaune_plugin.hooks.timelapse import recognitions as ti
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from timelapse_build import Control, create_ddb, write_template
from deepfaune_plugin.hooks.timelapse.host import DEFAULT_JSON, TimelapseHost
from deepfaune_plugin.hooks.timelapse.md_json import truncate3
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.report.thumbs import Job, ThumbCache, cache_name
from fakes import registry_with_fake
from imagegen import RED, make_jpeg
from test_camtrapdp_create import DEPLOYMENTS, METADATA
from test_video import frame_number_of, set_mp4_creation_time, write_video

CLIP_DATE = datetime(2024, 5, 3, 6, 0, 7)
WALK_MTIME = datetime(2024, 5, 3, 6, 30, 0)
SHORT_DATE = datetime(2024, 5, 4, 7, 0, 0)
CLIP_FRAMES = [0, 10, 20, 30, 40, 50, 60, 70, 127, 184, 241, 298]
FOX = [0.25, 0.25, 0.25, 0.25]
FOX_2 = [0.6, 0.25, 0.25, 0.25]
QUIET = dict(progress=False, log=lambda msg: None, store=False, report=False)


def _stamp(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


@pytest.fixture(scope="module")
def season(tmp_path_factory) -> Path:
    """inDir/Station/files: the four videos above, a zero-frame AVI, and a fox image."""
    root = tmp_path_factory.mktemp("season") / "inDir"
    set_mp4_creation_time(write_video(root / "StationA" / "fox_clip.mp4", 30, 300), CLIP_DATE)
    _stamp(write_video(root / "StationA" / "fox_walk.avi", 15, 15), WALK_MTIME)
    make_jpeg(root / "StationA" / "fox_1.jpg", 160, 120, date=datetime(2024, 5, 3, 5, 0, 0), blobs=[(RED, (10, 10, 50, 50))])
    set_mp4_creation_time(write_video(root / "StationB" / "person_short.mp4", 30, 5), SHORT_DATE)
    broken = root / "StationB" / "broken_clip.mp4"
    broken.write_bytes(np.random.default_rng(3).integers(0, 256, 20_000, np.uint8).tobytes())
    _stamp(broken, datetime(2024, 5, 5, 8, 0, 0))
    _stamp(write_video(root / "StationB" / "empty_none.avi", 15, 0), datetime(2024, 5, 5, 9, 0, 0))
    return root


def copy_of(season: Path, tmp_path: Path) -> Path:
    target = tmp_path / "inDir"
    shutil.copytree(season, target)  # copy2: the file dates stay
    return target


# ------------------------------------------------------------------------------------------------
# Camtrap DP
# ------------------------------------------------------------------------------------------------
def test_camtrapdp_package_lists_videos_with_their_mediatype(season: Path, tmp_path: Path, shared: Path):
    src = copy_of(season, tmp_path)
    for name in ("broken_a.mov", "broken_b.m4v", "broken_c.mpeg", "broken_d.mkv"):
        (src / "StationB" / name).write_bytes(b"not a video")
        _stamp(src / "StationB" / name, datetime(2024, 5, 6, 10, 0, 0))
    (tmp_path / "meta.yaml").write_text(METADATA, encoding="utf-8")
    (tmp_path / "deployments.csv").write_text(DEPLOYMENTS, encoding="utf-8")
    out = tmp_path / "package"
    options = {"deployments_csv": str(tmp_path / "deployments.csv"), "package_metadata": str(tmp_path / "meta.yaml"),
               "utc_offset": "+02:00"}
    _, logs = run_on(src, host="camtrapdp", options=options, output=out)
    assert "warning: StationA/fox_walk.avi: video without a creation date in its container; its timestamp is the " \
           "file's modification time (check it)" in logs
    assert not any("fox_clip.mp4" in line for line in logs)  # its container has a date

    media = {r["filePath"]: r for r in read_rows(out / "media.csv")}
    assert {p: (m["fileMediatype"], m["timestamp"]) for p, m in media.items()} == {
        "media/StationA/fox_1.jpg": ("image/jpeg", "2024-05-03T05:00:00+02:00"),
        "media/StationA/fox_clip.mp4": ("video/mp4", "2024-05-03T06:00:07+02:00"),  # the movie header's date
        "media/StationA/fox_walk.avi": ("video/x-msvideo", "2024-05-03T06:30:00+02:00"),  # the file's date
        "media/StationB/broken_a.mov": ("video/quicktime", "2024-05-06T10:00:00+02:00"),
        "media/StationB/broken_b.m4v": ("video/x-m4v", "2024-05-06T10:00:00+02:00"),
        "media/StationB/broken_c.mpeg": ("video/mpeg", "2024-05-06T10:00:00+02:00"),
        "media/StationB/broken_clip.mp4": ("video/mp4", "2024-05-05T08:00:00+02:00"),
        "media/StationB/broken_d.mkv": ("video/x-matroska", "2024-05-06T10:00:00+02:00"),
        "media/StationB/empty_none.avi": ("video/x-msvideo", "2024-05-05T09:00:00+02:00"),
        "media/StationB/person_short.mp4": ("video/mp4", "2024-05-04T07:00:00+02:00"),
    }
    by_media = {m["mediaID"]: p.rsplit("/", 1)[1] for p, m in media.items()}
    observations = read_rows(out / "observations.csv")
    rows = {by_media[r["mediaID"]]: r for r in observations if r["observationLevel"] == "media"}
    fields = ("observationType", "scientificName", "count", "bboxX", "eventStart", "eventEnd")
    assert tuple(rows["fox_clip.mp4"][f] for f in fields) == (
        "animal", "Vulpes vulpes", "2", "", "2024-05-03T06:00:07+02:00", "2024-05-03T06:00:07+02:00")
    assert tuple(rows["fox_walk.avi"][f] for f in fields[:4]) == ("animal", "Vulpes vulpes", "2", "")
    assert tuple(rows["person_short.mp4"][f] for f in fields[:4]) == ("human", "Homo sapiens", "1", "")
    assert rows["fox_1.jpg"]["bboxX"] == "0.25"  # an image keeps its box; a video's box is one frame's
    assert rows["broken_clip.mp4"]["observationType"] == rows["empty_none.avi"]["observationType"] == "unclassified"
    assert rows["broken_clip.mp4"]["observationComments"] == f"DeepFaune could not process this file: {UNDECODABLE}"
    assert rows["empty_none.avi"]["observationComments"] == f"DeepFaune could not process this file: {NO_FRAMES}"
    # every video is an event of its own, even beside an image of the same minute
    events = [r for r in observations if r["observationLevel"] == "event"]
    assert len(events) == len(media) and len({r["eventID"] for r in observations}) == len(media)
    assert (out / "media" / "StationA" / "fox_clip.mp4").read_bytes() == (src / "StationA" / "fox_clip.mp4").read_bytes()

    # the new package, read back as a package: videos found by their media rows, same observations
    summary, _ = run_on(out)
    assert summary.manifest.host == "camtrapdp" and len(summary.manifest.items) == 10 and summary.written == []

    pytest.importorskip("frictionless")
    report = frictionless_validate(out, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


# ------------------------------------------------------------------------------------------------
# camtrapR
# ------------------------------------------------------------------------------------------------
def _camtrapr_registry():
    registry = registry_with_fake()
    registry.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    return registry


def test_camtrapr_record_rows_per_video(season: Path, tmp_path: Path, capsys):
    out = tmp_path / "recordTable.csv"
    summary = run(season, RunSettings(backend="fake", lang="en"), host="camtrapr",
                  host_options={"include": "human", "file_formats": "jpg,mp4,avi"},
                  output=out, registry=_camtrapr_registry(), **dict(QUIET, log=lambda msg: print(msg, file=sys.stderr)))
    assert sorted(i.relpath for i in summary.manifest.items) == [
        "StationA/fox_1.jpg", "StationA/fox_clip.mp4", "StationA/fox_walk.avi", "StationB/broken_clip.mp4",
        "StationB/empty_none.avi", "StationB/person_short.mp4"]
    rows = {r["FileName"]: r for r in read_rows(out)}
    assert sorted(rows) == ["fox_1.jpg", "fox_clip.mp4", "fox_walk.avi", "person_short.mp4"]  # failures: no record
    fields = ("Station", "Species", "DateTimeOriginal", "delta.time.secs", "n_images", "count")
    assert tuple(rows["fox_1.jpg"][f] for f in fields) == ("StationA", "fox", "2024-05-03 05:00:00", "0", "1", "1")
    assert tuple(rows["fox_clip.mp4"][f] for f in fields) == ("StationA", "fox", "2024-05-03 06:00:07", "3607", "1", "2")
    assert tuple(rows["fox_walk.avi"][f] for f in fields) == ("StationA", "fox", "2024-05-03 06:30:00", "1793", "1", "2")
    assert tuple(rows["person_short.mp4"][f] for f in fields) == ("StationB", "human", "2024-05-04 07:00:00", "0", "1",
                                                                  "0")
    assert rows["fox_clip.mp4"]["Directory"] == Path(os.path.abspath(season / "StationA")).as_posix()
    assert len({rows[f]["seqnum"] for f in ("fox_1.jpg", "fox_clip.mp4", "fox_walk.avi")}) == 3
    err = capsys.readouterr().err
    assert ("warning: 1 video(s) carry no creation date (1 AVI: the format has none): their DateTimeOriginal is "
            "the file's modification time, which copying may have changed: StationA/fox_walk.avi") in err


def test_camtrapr_record_table_source_gives_videos_its_date(season: Path, tmp_path: Path, capsys):
    table = tmp_path / "records.csv"
    table.write_text('"","Station","Species","DateTimeOriginal","Directory","FileName"\n'
                     f'"1","StationA","fox","2024-05-03 06:31:00","{season / "StationA"}","fox_walk.avi"\n'
                     f'"2","StationA","fox","2024-05-03 06:00:00","{season / "StationA"}","fox_clip.mp4"\n',
                     encoding="utf-8")
    out = tmp_path / "again.csv"
    summary = run(table, RunSettings(backend="fake", lang="en"), host="auto", output=out,
                  registry=_camtrapr_registry(), **QUIET)
    assert summary.manifest.problems == []
    rows = {r["FileName"]: r["DateTimeOriginal"] for r in read_rows(out)}
    # the AVI carries no date: the table's wins over the file's; the MP4's container date wins over the table's
    assert rows == {"fox_walk.avi": "2024-05-03 06:31:00", "fox_clip.mp4": "2024-05-03 06:00:07"}
    assert summary.results.raw["fox_walk.avi"].date_source == "host"  # relpaths below the common folder
    assert "carry no creation date" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Review page thumbnails
# ------------------------------------------------------------------------------------------------
def test_video_thumbnail_shows_the_key_frame(season: Path, tmp_path: Path):
    summary = run(season, RunSettings(backend="fake", lang="en"), host="folder", output=tmp_path / "t.csv",
                  registry=registry_with_fake(), **QUIET)
    items = {i.relpath: i for i in summary.manifest.items}
    cache = ThumbCache(tmp_path / "thumbs", workers=1)
    for rel, key in (("StationA/fox_clip.mp4", 241), ("StationA/fox_walk.avi", 12), ("StationB/person_short.mp4", 0)):
        raw = summary.results.raw[rel]
        job = Job.of(items[rel], raw)
        assert raw.frame_number == job.frame == key
        thumb, preview = cache.make(job)
        assert preview is None
        pixels = np.asarray(Image.open(thumb).convert("RGB"))
        assert pixels.shape == (240, 320, 3) and frame_number_of(pixels) == key  # the frame the box is in
        if job.box and job.category == 1:  # the fox box (80, 60)-(160, 120) drawn in orange on that frame
            r, g, b = (int(v) for v in pixels[90, 81])
            assert r > 200 and 100 < g < 200 and b < 90
    clip = Job.of(items["StationA/fox_clip.mp4"], summary.results.raw["StationA/fox_clip.mp4"])
    first = Job(clip.relpath, clip.path, clip.width, clip.height, clip.box, clip.category, clip.people, True, 0)
    assert cache_name(first, "t", False) != cache_name(clip, "t", False)
    thumb, _ = cache.make(first)
    assert frame_number_of(np.asarray(Image.open(thumb).convert("RGB"))) == 0
    broken = Job.of(items["StationB/broken_clip.mp4"], summary.results.raw["StationB/broken_clip.mp4"])
    assert broken.frame == 0 and cache.make(broken) == (None, None)


# ------------------------------------------------------------------------------------------------
# Timelapse
# ------------------------------------------------------------------------------------------------
TIMELAPSE_FILES = [("StationA/fox_1.jpg", datetime(2024, 5, 3, 5, 0, 0)), ("StationA/fox_clip.mp4", CLIP_DATE),
                   ("StationA/fox_walk.avi", WALK_MTIME), ("StationB/broken_clip.mp4", datetime(2024, 5, 5, 8)),
                   ("StationB/person_short.mp4", SHORT_DATE)]


@pytest.fixture(scope="module")
def timelapse_run(season: Path, tmp_path_factory):
    root = tmp_path_factory.mktemp("timelapse") / "set"
    shutil.copytree(season, root)
    tdb = write_template(root / "TimelapseTemplate.tdb", [Control("Species", "Note")])
    create_ddb(tdb, root / "TimelapseData.ddb", TIMELAPSE_FILES)
    registry = registry_with_fake()
    registry.hosts["timelapse"] = Registered("timelapse", TimelapseHost(), "timelapse", "tests")
    summary = run(root, RunSettings(backend="fake", lang="en"), host="auto", host_options={"write_ddb": True},
                  registry=registry, **QUIET)
    recognitions = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))
    return root, summary, {im["file"]: im for im in recognitions["images"]}


def test_timelapse_json_lists_every_frame_box(timelapse_run):
    _, summary, images = timelapse_run
    assert sorted(images) == sorted(rel for rel, _ in TIMELAPSE_FILES)
    fox = truncate3(decide_group([summary.results.raw["StationA/fox_clip.mp4"]], summary.results.classes, 0.8,
                                 "en").raw_score)
    # the video's pooled answer by hand: six fox frames, mean logit 8.5, softmax at T = 1.04 over 30+ classes
    n = summary.results.classes.num_classes
    assert fox == pytest.approx(1 / (1 + (n - 1) * np.exp(-8.5 / 1.04)), abs=1e-3)
    clip = images["StationA/fox_clip.mp4"]
    assert (clip["frame_rate"], clip["frames_processed"]) == (30.0, CLIP_FRAMES)
    classified = {"classifications": [["35", fox]]}
    assert clip["detections"] == [
        {"category": "1", "conf": 0.88, "bbox": FOX, **classified, "frame_number": 0},
        {"category": "1", "conf": 0.88, "bbox": FOX, **classified, "frame_number": 20},
        {"category": "1", "conf": 0.8, "bbox": FOX_2, "frame_number": 20},  # not the selected box
        *({"category": "1", "conf": 0.88, "bbox": FOX, **classified, "frame_number": n} for n in (40, 60, 127, 241)),
    ]
    walk = images["StationA/fox_walk.avi"]
    assert (walk["frame_rate"], walk["frames_processed"]) == (15.0, [0, 2, 4, 6, 8, 10, 12, 14])
    assert [d["frame_number"] for d in walk["detections"]] == [0, 4, 4, 8, 12]
    short = images["StationB/person_short.mp4"]
    assert (short["frame_rate"], short["frames_processed"]) == (30.0, [0, 1, 2, 3, 4])  # frame 0 once, not 8 times
    assert [(d["category"], d["frame_number"], "classifications" in d) for d in short["detections"]] == [
        ("2", 0, False), ("2", 1, False), ("2", 3, False)]
    assert short["detections"][0]["bbox"] == [0.1, 0.1, 0.2, 0.6]
    assert images["StationB/broken_clip.mp4"] == {"file": "StationB/broken_clip.mp4", "failure": UNDECODABLE,
                                                  "detections": None, "frame_rate": 0.0, "frames_processed": []}
    image = images["StationA/fox_1.jpg"]
    assert "frame_rate" not in image and "frame_number" not in image["detections"][0]


def test_timelapse_ddb_holds_detections_video_rows(timelapse_run):
    root, _, images = timelapse_run
    fox = images["StationA/fox_clip.mp4"]["detections"][0]["classifications"][0][1]
    conn = sqlite3.connect(root / "TimelapseData.ddb")
    try:
        got = conn.execute("""
            SELECT d.File, v.frame_number, v.frame_rate, CAST(x.category AS TEXT), x.conf, x.bbox,
                   CAST(x.classification AS TEXT), x.classification_conf
            FROM Detections x JOIN DataTable d ON d.Id = x.Id LEFT JOIN DetectionsVideo v ON v.detectionID = x.detectionID
            ORDER BY x.detectionID""").fetchall()
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    box, box2 = "0.248, 0.248, 0.254, 0.254", "0.598, 0.248, 0.254, 0.254"  # Timelapse's trim: -0.002, +0.004
    by_file: dict[str, list[tuple]] = {}
    for name, *rest in got:
        by_file.setdefault(name, []).append(tuple(rest))
    assert by_file["fox_clip.mp4"] == [
        (0, 30.0, "1", 0.88, box, "35", fox), (20, 30.0, "1", 0.88, box, "35", fox), (20, 30.0, "1", 0.8, box2, None, None),
        *((n, 30.0, "1", 0.88, box, "35", fox) for n in (40, 60, 127, 241))]
    assert [r[:3] for r in by_file["fox_walk.avi"]] == [(0, 15.0, "1"), (4, 15.0, "1"), (4, 15.0, "1"), (8, 15.0, "1"),
                                                       (12, 15.0, "1")]
    assert [r[:3] for r in by_file["person_short.mp4"]] == [(0, 30.0, "2"), (1, 30.0, "2"), (3, 30.0, "2")]
    assert [r[:6] for r in by_file["fox_1.jpg"]] == [(None, None, "1", 0.88, box, "35")]  # no DetectionsVideo row
    assert "broken_clip.mp4" not in by_file  # a failure: no row, as Timelapse does


def test_timelapse_sorts_a_videos_boxes_as_dotnet_does(tmp_path: Path):
    """More than 16 boxes: .NET's List.Sort is an introsort, not stable; the detectionIDs follow its order."""
    tdb = write_template(tmp_path / "TimelapseTemplate.tdb", [])
    ddb = create_ddb(tdb, tmp_path / "TimelapseData.ddb", [("v.mp4", None)])
    boxes = [{"category": "1", "conf": round(0.5 + i / 100, 2), "bbox": [0.1, 0.1, 0.2, 0.2], "frame_number": 7}
             for i in range(17)]
    report = ti.write_ddb(ddb, {"info": {"detector": "d"}, "detection_categories": {"1": "animal"},
                                "images": [{"file": "v.mp4", "frame_rate": 25.0, "detections": boxes}]})
    assert report.detections == 17
    conn = sqlite3.connect(ddb)
    try:
        confs = [r[0] for r in conn.execute("SELECT conf FROM Detections ORDER BY detectionID")]
        assert conn.execute("SELECT DISTINCT frame_number, frame_rate FROM DetectionsVideo").fetchall() == [(7, 25.0)]
    finally:
        conn.close()
    # traced by hand through ArraySortHelper.IntroSort: median of three, pivot at 15, swaps from both ends
    order = [0, 14, 13, 12, 11, 10, 9, 15, 8, 6, 5, 4, 3, 2, 1, 7, 16]
    assert confs == [round(0.5 + i / 100, 2) for i in order]
    assert ti.dotnet_sort(list(range(16)), lambda i: 0) == list(range(16))  # up to 16: insertion sort, stable
    assert ti.dotnet_sort([3, 1, 2, 1, 0] * 5, lambda i: i) == sorted([3, 1, 2, 1, 0] * 5)


def test_timelapse_recognitions_pass_megadetector_validator(timelapse_run):
    """megadetector is optional: set MEGADETECTOR_PYTHON to a Python that has it."""
    root, _, _ = timelapse_run
    assert megadetector_findings(root / DEFAULT_JSON, root) == [[], []]
