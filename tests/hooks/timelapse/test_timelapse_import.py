"""Timelapse's recognition import, reproduced number for number (no model, no pipeline)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from deepfaune_plugin.hooks.timelapse import recognitions as ti
from timelapse_build import Control, create_ddb, write_template
from deepfaune_plugin.hooks.timelapse.ddb import (TimelapseError, find_ddb, parse_choice_list, posix_to_windows,
                                                  read_ddb, windows_to_posix)


# --- .NET number behaviour ----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.0005, 0.0),    # 0.5 after scaling: half to even
    (0.0015, 0.002),  # 1.5 → 2
    (0.0025, 0.002),  # 2.5 → 2 (Python's round(0.0025, 3) gives 0.003)
    (0.1235, 0.124),  # 123.5 after the (inexact) product → 124 (Python's round gives 0.123)
    (0.87649, 0.876),
])
def test_dotnet_round_scales_then_rounds_half_to_even(value, expected):
    assert ti.dotnet_round(value, 3) == expected


def test_dotnet_texts():
    assert ti.bbox_text([0.0, 1.0, 0.254, 0.1]) == "0, 1, 0.254, 0.1"
    assert ti.bbox_text(None) == "" and ti.bbox_text([0.1, 0.2]) == ""
    assert ti.dotnet_float_text(np.float32(0.877)) == "0.877"  # the single's shortest text, not 0.8769999...
    assert ti.dotnet_float_text(1.0) == "1" and ti.dotnet_float_text(0.0) == "0"


def test_compare_ordinal_and_the_version_quirk():
    assert ti.compare_ordinal("v5a.0.0", "v5b.0.0") == -1
    assert ti.compare_ordinal("v4", "v6") == -2
    assert ti.compare_ordinal("v5", "v5.1") == -2  # a prefix: difference of lengths
    assert ti.newer_version_preferred("v5a.0.0", "v5b.0.0") is True
    assert ti.newer_version_preferred("v4.1.0", "v6") is False  # Timelapse tests CompareOrdinal(...) == -1
    assert ti.newer_version_preferred("vUnknown", "v4") is True
    assert ti.newer_version_preferred("v4", "") is False
    assert ti.newer_version_preferred("v4", "v4") is True


def test_split_file_gives_timelapse_relative_paths():
    assert ti.split_file("cam1/sub/x.JPG") == ("x.JPG", "cam1\\sub")
    assert ti.split_file("x.jpg") == ("x.jpg", "")
    assert posix_to_windows("a/b") == "a\\b" and posix_to_windows("") == ""
    assert windows_to_posix("a\\b") == "a/b" and windows_to_posix("") == ""


# --- trimming ------------------------------------------------------------------------------------

def _file(detections, conservative=0.5, typical_classification=0.8):
    return {
        "info": {"detector_metadata": {"conservative_detection_threshold": conservative},
                 "classifier_metadata": {"typical_classification_threshold": typical_classification}},
        "images": [{"file": "a.jpg", "detections": detections}, {"file": "b.jpg", "failure": "x", "detections": None}],
    }


def test_trim_boxes_confidences_and_classifications():
    source = _file([
        {"category": "1", "conf": 0.8765, "bbox": [0.25, 0.001, 0.5, 0.9975],
         "classifications": [["3", 0.6], ["5", 0.9], ["7", 0.31], ["9", 0.0025]]},
        {"category": "2", "conf": 0.19, "bbox": [0.1, 0.1, 0.1, 0.1]},  # under 0.5 / 2.5 = 0.2: dropped
        {"category": "1", "conf": 0.2, "bbox": [0.1, 0.1, 0.1, 0.1], "classifications": [["7", 0.32]]},
    ])
    trimmed = ti.trim_recognitions(source)
    assert source["images"][0]["detections"][0]["conf"] == 0.8765  # the input is not modified
    first, last = trimmed["images"][0]["detections"]
    # float32(0.8765) = 0.87650001..., so the half goes up: 0.877 (0.8765 as a double would give 0.876)
    assert first["conf"] == float(np.float32(0.877))
    # x, y - 0.002 (negative → 0), w, h + 0.004; 0.9975 + 0.004 = 1.0015 → 1.002 (1001.5 → even)
    assert first["bbox"] == [0.248, 0.0, 0.504, 1.002]
    assert first["classifications"] == [["5", 0.9]]  # only the best one
    # 0.32 is under float32(0.8) / 2.5 = 0.3200000048: no classification left, the detection stays
    assert last["conf"] == float(np.float32(0.2)) and last["classifications"] == []
    assert trimmed["images"][1]["detections"] is None


def test_trim_minimums_default_to_0_03():
    trimmed = ti.trim_recognitions({"images": [{"file": "a.jpg", "detections": [
        {"category": "1", "conf": 0.029, "bbox": [0, 0, 1, 1]},
        {"category": "1", "conf": 0.03, "bbox": [0, 0, 1, 1], "classifications": [["1", 0.03], ["2", 0.02]]}]}]})
    (kept,) = trimmed["images"][0]["detections"]
    assert kept["classifications"] == [["1", 0.03]]


# --- merging --------------------------------------------------------------------------------------

def test_remap_categories_by_label():
    db = {"1": "deer", "2": "fox"}
    assert ti.remap_categories(db, {"1": "fox", "2": "badger"}) == ({"2": "fox", "3": "badger"}, {"1": "2", "2": "3"})
    assert ti.remap_categories(db, {"1": "deer", "2": "fox"}) is None  # same numbers: nothing to do
    assert ti.remap_categories({}, {"1": "fox"}) is None
    assert ti.merge_dictionaries({"1": "a"}, {"2": "b"}) == {"1": "a", "2": "b"}
    assert ti.merge_dictionaries({"1": "a"}, {"1": "b"}) is None
    assert ti.merge_descriptions({"1": "x", "2": ""}, {"1": "", "2": "y", "3": "z"}) == {"1": "x", "2": "y", "3": "z"}


def test_merge_info_takes_smaller_thresholds():
    db = {"megadetector_version": "v5a.0.0", "detector": "md", "typical_detection_threshold": 0.2,
          "conservative_detection_threshold": 0.05, "typical_classification_threshold": 0.75}
    new = {"megadetector_version": "v5b.0.0", "detector": "new", "typical_detection_threshold": 0.6,
           "conservative_detection_threshold": 0.5, "typical_classification_threshold": 0.8}
    merged = ti.merge_info(db, new)
    assert merged["detector"] == "new" and merged["megadetector_version"] == "v5b.0.0"
    assert merged["typical_detection_threshold"] == float(np.float32(0.2))
    assert merged["conservative_detection_threshold"] == float(np.float32(0.05))
    assert merged["typical_classification_threshold"] == float(np.float32(0.75))


# --- into a database -----------------------------------------------------------------------------

@pytest.fixture
def ddb(tmp_path: Path) -> Path:
    tdb = write_template(tmp_path / "t.tdb", [Control("Species", "Note")])
    return create_ddb(tdb, tmp_path / "TimelapseData.ddb", [
        ("a.jpg", None), ("v/clip.mp4", None), ("v/noframe.avi", None), ("p.png", None), ("a.jpg", None)])


def _query(path: Path, sql: str):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_videos_duplicates_and_non_jpg_follow_timelapse(ddb: Path):
    box = {"category": "1", "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.1]}
    recognizer = {
        "info": {"detector": "d", "detector_metadata": {"conservative_detection_threshold": 0.5}},
        "detection_categories": {"1": "animal"},
        "images": [
            {"file": "a.jpg", "detections": [box]},
            {"file": "v/clip.mp4", "frame_rate": 30.0, "detections": [{**box, "frame_number": 12}]},
            {"file": "v/noframe.avi", "detections": [{**box, "frame_number": 3}]},  # no frame rate: dropped
            {"file": "p.png", "detections": [box]},  # not a JPG and no frame rate: dropped too
            {"file": "elsewhere/x.jpg", "detections": [box]},
        ],
    }
    report = ti.write_ddb(ddb, recognizer)
    assert report.unmatched == ["elsewhere/x.jpg"] and report.images == 4 and report.rows == 5
    got = _query(ddb, "SELECT x.detectionID, d.Id, d.File, CAST(x.category AS TEXT), x.conf, x.bbox "
                      "FROM Detections x JOIN DataTable d ON d.Id = x.Id ORDER BY x.detectionID")
    assert got == [
        (1, 1, "a.jpg", "1", 0.9, "0.498, 0.498, 0.104, 0.104"),
        (2, 5, "a.jpg", "1", 0.9, "0.498, 0.498, 0.104, 0.104"),  # a duplicate row gets the same boxes
        (3, 2, "clip.mp4", "1", 0.9, "0.498, 0.498, 0.104, 0.104"),
        # noframe.avi and p.png: their detections are dropped (no frame rate) and, as in Timelapse's
        # PopulateTables, no Empty row replaces them (the file counted as having detections)
    ]
    assert _query(ddb, "SELECT frame_number, frame_rate, detectionID FROM DetectionsVideo") == [(12, 30.0, 3)]
    assert _query(ddb, "SELECT CAST(category AS TEXT), label FROM DetectionCategories") == [("0", "Empty"), ("1", "animal")]
    assert _query(ddb, "SELECT typical_detection_threshold, conservative_detection_threshold, "
                       "typical_classification_threshold, megadetector_version FROM Info") == [(0.2, 0.5, 0.5, "vUnknown")]
    assert _query(ddb, "PRAGMA foreign_key_check") == []


def test_old_style_classifications_are_refused(ddb: Path):
    conn = sqlite3.connect(ddb)
    with conn:
        conn.execute(ti.RECOGNITION_DDL["Classifications"])
        conn.execute("INSERT INTO Classifications VALUES (1, '1', 0.9, 1)")
    conn.close()
    before = ddb.read_bytes()
    with pytest.raises(TimelapseError, match="pre-2.3.2.9 layout"):
        ti.write_ddb(ddb, {"info": {}, "images": []})
    assert ddb.read_bytes() == before


# --- reading --------------------------------------------------------------------------------------

def test_choice_lists_and_finding_the_ddb(tmp_path: Path, ddb: Path):
    assert parse_choice_list('{"IncludeEmptyChoice":true ,"ChoiceListNonEmpty":["a", "b c", ]}') == (("a", "b c"), True)
    assert parse_choice_list('{"IncludeEmptyChoice":false ,"ChoiceListNonEmpty":[]}') == ((), False)
    assert parse_choice_list("") == ((), True)
    assert find_ddb(tmp_path) == ddb and find_ddb(ddb) == ddb and find_ddb(tmp_path / "t.tdb") is None
    (tmp_path / "other.ddb").write_bytes(b"")
    assert find_ddb(tmp_path) == ddb  # TimelapseData.ddb wins
    ddb.rename(tmp_path / "mine.ddb")
    assert find_ddb(tmp_path) is None  # two other .ddb files: ambiguous
    contents = read_ddb(tmp_path / "mine.ddb")
    assert [r.relpath for r in contents.rows] == ["a.jpg", "a.jpg", "p.png", "v/clip.mp4", "v/noframe.avi"]
    assert contents.fields["Species"].type == "Note" and contents.version == "2.5.0.6"


def test_not_a_timelapse_file(tmp_path: Path):
    path = tmp_path / "x.ddb"
    sqlite3.connect(path).execute("CREATE TABLE t (a)").connection.commit()
    with pytest.raises(TimelapseError, match="not a Timelapse data file"):
        read_ddb(path)
    path.write_bytes(b"not sqlite at all, just text padding " * 40)
    with pytest.raises(TimelapseError, match="not a readable SQLite database"):
        read_ddb(path)
