"""The Timelapse host end to end, on .ddb files built from each real template and from one made here.

The fake backend decides each file's outcome from its name (tests/fakes.py): fox/badger files
hold one animal box (1000, 750, 2000, 1500) in a 4000x3000 frame, conf 0.88; person files a
person box (400, 300, 1200, 2100), conf 0.91; empty files nothing; "broken" files fail.
"""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from mdvalidate import megadetector_findings

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.hooks.timelapse import recognitions as timelapse_import
from timelapse_build import Control, create_ddb, write_template
from deepfaune_plugin.hooks.timelapse.host import DEFAULT_JSON, TimelapseHost
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from ddbquery import dump, rows
from fakes import registry_with_fake
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)
SPECIES = ("fox", "red deer", "badger", "bird")
#: (relpath, DataTable DateTime, EXIF date or None).  cam1: fox_1, fox_2 (5 s) and empty_3 (8 s) chain into
#: one sequence by their EXIF dates; badger_4 has no EXIF and its .ddb date is 60 s later: a sequence of its
#: own, placed by the .ddb date.  cam2 holds a person at the same time (other folder: other sequence).
FILES = [
    ("cam1/fox_1.jpg", T0, T0),
    ("cam1/fox_2.jpg", T0 + timedelta(seconds=5), T0 + timedelta(seconds=5)),
    ("cam1/empty_3.jpg", T0 + timedelta(seconds=8), T0 + timedelta(seconds=8)),
    ("cam1/badger_4.jpg", T0 + timedelta(seconds=68), None),
    ("cam2/sub/person_1.jpg", T0, T0),
    ("broken_1.jpg", T0, None),
]
BUILT = "built"
REAL = ("AlbertaMetadataStandardsTemplate.tdb", "CamtrapDPTemplate.tdb")
QUIET = dict(progress=False, log=lambda msg: None, store=False, report=False)  # no cache, no review page


def _registry():
    registry = registry_with_fake()
    registry.hosts["timelapse"] = Registered("timelapse", TimelapseHost(), "timelapse", "tests")
    return registry


def _template(kind: str, root: Path, shared_dir: Path | None) -> Path:
    if kind == BUILT:
        return write_template(root / "TimelapseTemplate.tdb", [
            Control("Species", "FixedChoice", choices=("fox", "red deer", "human", "empty")),
            Control("Notes", "Note"),
            Control("Count", "Counter", "0"),
            Control("Checked", "Flag", "false"),
        ])
    target = root / "TimelapseTemplate.tdb"
    target.write_bytes((shared_dir / "data" / "timelapse" / kind).read_bytes())
    return target


def make_image_set(root: Path, kind: str = BUILT, shared_dir: Path | None = None, files=FILES) -> Path:
    """An image set as Timelapse leaves it after loading: images, template and TimelapseData.ddb."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (rel, _, exif) in enumerate(files):
        path = root / rel
        if "broken" in rel:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\xff\xd8 truncated")
        else:
            make_jpeg(path, width=160, height=120, date=exif, seed=i)
    tdb = _template(kind, root, shared_dir)
    return create_ddb(tdb, root / "TimelapseData.ddb", [(rel, ddb_date) for rel, ddb_date, _ in files])


@pytest.fixture(params=[BUILT, *REAL])
def image_set(request, tmp_path: Path) -> Path:
    shared_dir = None
    if request.param != BUILT:
        shared_dir = request.getfixturevalue("shared")
    make_image_set(tmp_path / "set", request.param, shared_dir)
    return tmp_path / "set"


def run_timelapse(root: Path, settings: RunSettings | None = None, **options):
    return run(root, settings or RunSettings(backend="fake", lang="en"), host="auto", host_options=options,
               registry=_registry(), **QUIET)


def assert_healthy(ddb: Path) -> None:
    assert rows(ddb, "PRAGMA integrity_check") == [("ok",)]
    assert rows(ddb, "PRAGMA foreign_key_check") == []


def detections_by_file(ddb: Path) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for rel, name, *det in rows(ddb, """
            SELECT d.RelativePath, d.File, CAST(x.category AS TEXT), x.conf, x.bbox,
                   CAST(x.classification AS TEXT), x.classification_conf
            FROM Detections x JOIN DataTable d ON d.Id = x.Id ORDER BY x.detectionID"""):
        out.setdefault(f"{rel}\\{name}" if rel else name, []).append(tuple(det))
    return out


# --- reading -------------------------------------------------------------------------------------

def test_manifest_is_the_ddb_rows_with_missing_files_reported(tmp_path: Path):
    files = [*FILES, ("cam1/gone.jpg", T0, None)]
    make_image_set(tmp_path / "set", files=[f for f in files])
    (tmp_path / "set" / "cam1" / "gone.jpg").unlink()
    (tmp_path / "set" / "cam1" / "not_in_ddb.jpg").write_bytes(b"")  # on disk but unknown to Timelapse
    host = TimelapseHost()
    assert host.detect(tmp_path / "set") and host.detect(tmp_path / "set" / "TimelapseData.ddb")
    manifest = host.read(tmp_path / "set", {})
    assert [it.relpath for it in manifest.items] == sorted(rel for rel, _, _ in FILES)
    assert [(p.relpath, p.reason) for p in manifest.problems] == [
        ("cam1/gone.jpg", "listed in TimelapseData.ddb but missing on disk")]
    badger = next(it for it in manifest.items if it.relpath == "cam1/badger_4.jpg")
    assert badger.group == "cam1" and badger.timestamp == T0 + timedelta(seconds=68)
    person = next(it for it in manifest.items if it.relpath == "cam2/sub/person_1.jpg")
    assert person.group == "cam2/sub" and person.host_key == (5,)
    assert next(it for it in manifest.items if it.relpath == "broken_1.jpg").group == "."


def test_auto_detection_prefers_timelapse_over_plain_folder(tmp_path: Path):
    make_image_set(tmp_path / "set")
    summary = run_timelapse(tmp_path / "set")
    assert summary.manifest.host == "timelapse"
    assert summary.written == [tmp_path / "set" / DEFAULT_JSON]


def test_output_names_the_json_or_adds_deepfaune_table(tmp_path: Path):
    make_image_set(tmp_path / "set")
    registry, settings = _registry(), RunSettings(backend="fake", lang="en")
    out = run(tmp_path / "set", settings, output=tmp_path / "r.json", registry=registry, **QUIET)
    assert out.written == [tmp_path / "r.json"] and not (tmp_path / "set" / DEFAULT_JSON).exists()
    out = run(tmp_path / "set", settings, output=tmp_path / "t.csv", registry=registry, **QUIET)
    assert out.written == [tmp_path / "set" / DEFAULT_JSON, tmp_path / "t.csv"]
    assert (tmp_path / "t.csv").read_text(encoding="utf-8").startswith("filename,date,seqnum,")


def test_sequences_within_relative_path_and_ddb_date_when_no_exif(tmp_path: Path):
    make_image_set(tmp_path / "set")
    summary = run_timelapse(tmp_path / "set")
    by = {d.relpath: d for d in summary.results.decisions}
    assert by["cam1/fox_1.jpg"].seqnum == by["cam1/fox_2.jpg"].seqnum == by["cam1/empty_3.jpg"].seqnum
    assert by["cam1/badger_4.jpg"].seqnum != by["cam1/fox_1.jpg"].seqnum
    assert summary.results.raw["cam1/badger_4.jpg"].date == T0 + timedelta(seconds=68)
    assert summary.results.raw["cam1/badger_4.jpg"].date_source == "host"
    assert summary.results.raw["cam1/fox_2.jpg"].date_source == "exif"
    assert by["cam2/sub/person_1.jpg"].seqnum not in {by["cam1/fox_1.jpg"].seqnum, by["cam1/badger_4.jpg"].seqnum}
    assert by["cam1/empty_3.jpg"].prediction == "fox"  # the sequence's answer reaches its empty image


def test_pre_2_3_database_is_refused_and_untouched(tmp_path: Path):
    root = tmp_path / "old"
    root.mkdir()
    make_jpeg(root / "fox_1.jpg")
    ddb = root / "TimelapseData.ddb"
    conn = sqlite3.connect(ddb)
    conn.executescript(
        "CREATE TABLE TemplateTable (Id INTEGER PRIMARY KEY, ControlOrder INTEGER, SpreadsheetOrder INTEGER, "
        "Type TEXT, DefaultValue TEXT, Label TEXT, DataLabel TEXT, Tooltip TEXT, Visible TEXT, List TEXT);"
        "CREATE TABLE DataTable (Id INTEGER PRIMARY KEY AUTOINCREMENT, File TEXT, RelativePath TEXT, Folder TEXT, "
        "Date TEXT, Time TEXT, DateTime DATETIME, UtcOffset REAL, ImageQuality TEXT, DeleteFlag TEXT);"
        "CREATE TABLE ImageSetTable (Id INTEGER PRIMARY KEY, VersionCompatabily TEXT);"
        "INSERT INTO ImageSetTable VALUES (1, '2.2.5.0');"
        "INSERT INTO DataTable (File, RelativePath, Folder, DateTime) VALUES ('fox_1.jpg', '', 'old', "
        "'2024-05-03T04:00:00.000Z');")
    conn.commit()
    conn.close()
    before = ddb.read_bytes()
    with pytest.raises(DeepfauneError, match=r"Timelapse 2\.2\.5\.0.*UtcOffset.*only reads and writes Timelapse 2\.3\+"):
        run_timelapse(root, write_ddb=True)
    assert ddb.read_bytes() == before
    assert not (root / "Backups").exists() and not (root / DEFAULT_JSON).exists()


@pytest.mark.parametrize("options, message", [
    ({"field": "Species"}, "add --write-ddb"),
    ({"write_ddb": True, "field": "species_typo"}, "no such data field"),
    ({"write_ddb": True, "field": "Count"}, "a Counter field cannot hold a species label"),
    ({"write_ddb": True, "ddb_wait": "soon"}, "expected a number of seconds"),
    ({"output": Path("results.txt")}, "name a .json file"),
    ({"ddb": "other.ddb"}, "no such Timelapse data file"),
])
def test_bad_options_fail_before_any_inference(tmp_path: Path, options, message):
    make_image_set(tmp_path / "set")
    with pytest.raises(DeepfauneError, match=message):
        TimelapseHost().read(tmp_path / "set", options)


# --- the recognition file ------------------------------------------------------------------------

def _check_md_format(d: dict, root: Path) -> None:
    """What megadetector's validate_batch_results checks (format 1.6), written out."""
    assert isinstance(d["info"]["format_version"], str) and float(d["info"]["format_version"]) == 1.6
    for cats in (d["detection_categories"], d["classification_categories"]):
        for key, name in cats.items():
            assert isinstance(key, str) and int(key) >= 0 and isinstance(name, str) and name.strip()
    assert not set(d["detection_categories"].values()) & set(d["classification_categories"].values())
    assert len(set(d["classification_categories"].values())) == len(d["classification_categories"])
    assert set(d) <= {"info", "images", "detection_categories", "classification_categories",
                      "classification_category_descriptions"}
    for im in d["images"]:
        assert (root / im["file"]).is_file() and "\\" not in im["file"]
        if "failure" in im:
            assert isinstance(im["failure"], str) and im["detections"] is None
            continue
        for det in im["detections"]:
            assert det["category"] in d["detection_categories"] and isinstance(det["conf"], float)
            assert len(det["bbox"]) == 4 and all(0.0 <= v <= 1.0 for v in det["bbox"])
            for cat, conf in det.get("classifications", []):
                assert cat in d["classification_categories"] and isinstance(conf, float)
            assert det.get("classifications", []) is not None


def test_recognition_file_content(image_set: Path):
    summary = run_timelapse(image_set)
    d = json.loads((image_set / DEFAULT_JSON).read_text(encoding="utf-8"))
    _check_md_format(d, image_set)
    info = d["info"]
    assert info["detector_metadata"]["typical_detection_threshold"] == 0.6
    assert info["detector_metadata"]["conservative_detection_threshold"] == 0.5
    assert info["classifier_metadata"]["typical_classification_threshold"] == 0.8
    assert d["detection_categories"] == {"1": "animal", "2": "person", "3": "vehicle"}
    cats = d["classification_categories"]
    assert len(cats) == 38 and cats["35"] == "fox" and cats["2"] == "badger"
    assert d["classification_category_descriptions"]["35"].split(";")[1:] == [
        "mammalia", "carnivora", "canidae", "vulpes", "vulpes", "fox"]
    images = {im["file"]: im for im in d["images"]}
    assert list(images) == sorted(images)
    assert images["broken_1.jpg"] == {"file": "broken_1.jpg", "failure": "not an image (unrecognised format)",
                                      "detections": None}
    assert images["cam1/empty_3.jpg"]["detections"] == []
    fox = images["cam1/fox_1.jpg"]["detections"]
    assert [(x["category"], x["conf"], x["bbox"]) for x in fox] == [("1", 0.88, [0.25, 0.25, 0.25, 0.25])]
    seq = next(d for d in summary.results.decisions if d.relpath == "cam1/fox_1.jpg")
    # a sequence of two fox rows (logit 8 vs 37 zeros), T = 1.04: p = e^(8/1.04) / (e^(8/1.04) + 37) = 0.98339...
    assert fox[0]["classifications"] == [["35", 0.983]] and seq.score == 0.98
    # badger alone, T = 1.10: p = e^(8/1.1) / (e^(8/1.1) + 37) = 0.97495...
    assert images["cam1/badger_4.jpg"]["detections"][0]["classifications"] == [["2", 0.974]]
    person = images["cam2/sub/person_1.jpg"]["detections"]
    assert [(x["category"], x["conf"], x["bbox"]) for x in person] == [("2", 0.91, [0.1, 0.1, 0.2, 0.6])]
    assert "classifications" not in person[0]


def test_per_image_level_uses_each_image_alone(tmp_path: Path):
    make_image_set(tmp_path / "set")
    run_timelapse(tmp_path / "set", per_image=True)
    d = json.loads((tmp_path / "set" / DEFAULT_JSON).read_text(encoding="utf-8"))
    images = {im["file"]: im for im in d["images"]}
    assert images["cam1/fox_1.jpg"]["detections"][0]["classifications"] == [["35", 0.974]]  # alone: T = 1.10


def test_recognition_file_passes_megadetector_validator(tmp_path: Path):
    """megadetector is optional: set MEGADETECTOR_PYTHON to a Python that has it, or install it here."""
    make_image_set(tmp_path / "set")
    run_timelapse(tmp_path / "set")
    path = tmp_path / "set" / DEFAULT_JSON
    assert megadetector_findings(path, tmp_path / "set") == [[], []]


# --- writing the .ddb ----------------------------------------------------------------------------

def test_write_ddb_stores_rows_as_timelapse_import_does(image_set: Path):
    ddb = image_set / "TimelapseData.ddb"
    original = dump(ddb)
    summary = run_timelapse(image_set, write_ddb=True)
    assert summary.written == [image_set / DEFAULT_JSON, ddb]
    assert_healthy(ddb)
    backups = list((image_set / "Backups").glob("TimelapseData.*.before-deepfaune.ddb"))
    assert len(backups) == 1 and dump(backups[0]) == original
    # timelapse trims boxes: x, y - 0.002 and w, h + 0.004, rounded to 3 decimals
    fox = ("1", 0.88, "0.248, 0.248, 0.254, 0.254", "35")
    assert detections_by_file(ddb) == {
        "cam1\\fox_1.jpg": [(*fox, 0.983)],
        "cam1\\fox_2.jpg": [(*fox, 0.983)],
        "cam1\\empty_3.jpg": [("0", 0.0, "", None, None)],
        "cam1\\badger_4.jpg": [("1", 0.88, "0.248, 0.248, 0.254, 0.254", "2", 0.974)],
        "cam2\\sub\\person_1.jpg": [("2", 0.91, "0.098, 0.098, 0.204, 0.604", None, None)],
    }  # broken_1.jpg failed: no row, as Timelapse does for a failure entry
    # keys are written as text into STRING columns: SQLite keeps them as integers, so compare as text
    assert rows(ddb, "SELECT DISTINCT typeof(category) FROM Detections") == [("integer",)]
    assert rows(ddb, "SELECT CAST(category AS TEXT), label FROM DetectionCategories ORDER BY category") == [
        ("0", "Empty"), ("1", "animal"), ("2", "person"), ("3", "vehicle")]
    assert rows(ddb, "SELECT label, description FROM ClassificationCategories WHERE classification = '35'")[0][1] \
        .endswith(";mammalia;carnivora;canidae;vulpes;vulpes;fox")
    assert rows(ddb, "SELECT COUNT(*) FROM ClassificationCategories") == [(38,)]
    info = rows(ddb, "SELECT infoID, megadetector_version, typical_detection_threshold, "
                     "conservative_detection_threshold, typical_classification_threshold FROM Info")
    assert info == [(1, "deepfaune-1.4-DFbsMDS", 0.6, 0.5, 0.8)]
    assert rows(ddb, "SELECT COUNT(*) FROM DetectionsVideo") == [(0,)]
    # nothing outside the recognition tables changed
    recog = ("Info", "DetectionCategories", "ClassificationCategories", "Detections", "DetectionsVideo",
             "Classifications", "IndexDetectionID", "IndexDetectionVideoID")
    assert [s for s in dump(ddb) if not any(t in s for t in recog)] == [s for s in original if not any(t in s for t in recog)]


def test_rerun_replaces_instead_of_duplicating(tmp_path: Path):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    run_timelapse(tmp_path / "set", write_ddb=True)
    first = detections_by_file(ddb)
    run_timelapse(tmp_path / "set", write_ddb=True)
    assert detections_by_file(ddb) == first
    assert rows(ddb, "SELECT COUNT(*) FROM Detections") == [(5,)]
    assert rows(ddb, "SELECT COUNT(*) FROM ClassificationCategories") == [(38,)]
    assert len(list((tmp_path / "set" / "Backups").iterdir())) == 2
    assert_healthy(ddb)
    # a re-run in French: same categories renumbered by label, so French labels are appended, nothing duplicated
    run_timelapse(tmp_path / "set", RunSettings(backend="fake", lang="fr"), write_ddb=True)
    assert rows(ddb, "SELECT COUNT(*) FROM Detections") == [(5,)]
    labels = dict(rows(ddb, "SELECT CAST(classification AS TEXT), label FROM ClassificationCategories"))
    fox_id = rows(ddb, "SELECT CAST(classification AS TEXT) FROM Detections x JOIN DataTable d ON d.Id = x.Id "
                       "WHERE d.File = 'fox_1.jpg'")[0][0]
    assert labels[fox_id] == "renard" and labels["35"] == "fox" and labels["23"] == "lynx"  # 'lynx' is shared
    assert_healthy(ddb)


def _add_megadetector_recognitions(ddb: Path) -> None:
    """What a MegaDetector import left: its categories (vehicle as 4, MDv4 style) and boxes on two files."""
    conn = sqlite3.connect(ddb)
    with conn:
        for sql in timelapse_import.RECOGNITION_DDL.values():
            conn.execute(sql)
        conn.execute("INSERT INTO Info (infoID, detector, megadetector_version) VALUES (1, 'md_v4.1.0.pb', 'v4.1.0')")
        conn.executemany("INSERT INTO DetectionCategories VALUES (?, ?)",
                         [("0", "Empty"), ("1", "animal"), ("2", "person"), ("4", "vehicle")])
        conn.executemany("INSERT INTO ClassificationCategories (classification, label) VALUES (?, ?)",
                         [("1", "deer"), ("2", "fox")])
        ids = dict(rows(ddb, "SELECT File, Id FROM DataTable"))
        conn.executemany("INSERT INTO Detections (detectionID, category, conf, bbox, classification, "
                         "classification_conf, Id) VALUES (?, ?, ?, ?, ?, ?, ?)", [
                             (1, "1", 0.7, "0.1, 0.1, 0.2, 0.2", "1", 0.9, ids["fox_1.jpg"]),
                             (7, "4", 0.95, "0.5, 0.5, 0.2, 0.2", None, None, ids["broken_1.jpg"])])
    conn.close()


def test_megadetector_recognitions_are_merged_as_timelapse_would(tmp_path: Path):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    _add_megadetector_recognitions(ddb)
    summary = run_timelapse(tmp_path / "set", write_ddb=True)
    report = summary.manifest.host_state.report
    assert report.merged and report.failed_kept == ["broken_1.jpg"]
    got = detections_by_file(ddb)
    assert got["broken_1.jpg"] == [("4", 0.95, "0.5, 0.5, 0.2, 0.2", None, None)]  # failed here: MD's boxes kept
    # fox_1 was re-detected: MD's row replaced; DeepFaune's "fox" reuses MD's category 2, new labels get 3, 4...
    assert got["cam1\\fox_1.jpg"] == [("1", 0.88, "0.248, 0.248, 0.254, 0.254", "2", 0.983)]
    cats = dict(rows(ddb, "SELECT CAST(classification AS TEXT), label FROM ClassificationCategories"))
    assert cats["1"] == "deer" and cats["2"] == "fox" and len(cats) == 2 + 37
    # our "3" vehicle is renumbered to the database's "4" vehicle (matched by label)
    assert rows(ddb, "SELECT CAST(category AS TEXT), label FROM DetectionCategories ORDER BY category") == [
        ("0", "Empty"), ("1", "animal"), ("2", "person"), ("4", "vehicle")]
    assert rows(ddb, "SELECT MIN(detectionID) FROM Detections WHERE detectionID <> 7") == [(8,)]
    # Info: MD's version and ours compare ordinally; 'v' - 'd' != -1, so Timelapse keeps the database's info
    assert rows(ddb, "SELECT detector, megadetector_version, typical_detection_threshold FROM Info") == [
        ("md_v4.1.0.pb", "v4.1.0", 0.2)]
    assert_healthy(ddb)


def test_interrupted_write_leaves_the_ddb_unchanged(tmp_path: Path, monkeypatch):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    before = dump(ddb)
    real = timelapse_import._populate_detections

    def crash(conn, *args):
        real(conn, *args)  # the rows are in, the transaction is not committed
        raise KeyboardInterrupt

    monkeypatch.setattr(timelapse_import, "_populate_detections", crash)
    with pytest.raises(KeyboardInterrupt):
        run_timelapse(tmp_path / "set", write_ddb=True, field="Species")
    assert dump(ddb) == before
    assert_healthy(ddb)
    assert list((tmp_path / "set" / "Backups").iterdir()) == []  # no backup left for a write that did not happen


def test_killed_process_leaves_the_ddb_unchanged(tmp_path: Path):
    """A process that dies mid-transaction: SQLite's journal restores the file on the next open."""
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    run_timelapse(tmp_path / "set")
    recognitions = tmp_path / "set" / DEFAULT_JSON
    before = dump(ddb)
    script = (
        "import json, os, sys\n"
        "from deepfaune_plugin.hooks.timelapse import recognitions as t\n"
        "real = t._populate_detections\n"
        "def die(conn, *a):\n"
        "    real(conn, *a)\n"
        "    os._exit(9)\n"
        "t._populate_detections = die\n"
        "t.write_ddb(sys.argv[1], json.load(open(sys.argv[2])))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(ddb), str(recognitions)], capture_output=True, timeout=60)
    assert out.returncode == 9, out.stderr
    assert dump(ddb) == before
    assert_healthy(ddb)


@pytest.mark.parametrize("lock", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])  # another program writing / committing
def test_locked_database_waits_then_fails_clearly(tmp_path: Path, lock: str):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    before = dump(ddb)
    holder = sqlite3.connect(ddb, isolation_level=None)
    holder.execute(lock)
    start = time.monotonic()
    try:
        with pytest.raises(DeepfauneError, match=r"stayed locked for 0\.5 s.*Nothing was changed"):
            run_timelapse(tmp_path / "set", write_ddb=True, ddb_wait=0.5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - start >= 0.5
    assert dump(ddb) == before
    assert not (tmp_path / "set" / "Backups").exists() or not list((tmp_path / "set" / "Backups").iterdir())


def test_locked_database_is_written_once_released(tmp_path: Path):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    holder = sqlite3.connect(ddb, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(0.5, lambda: (holder.execute("ROLLBACK"), holder.close()))
    timer.start()
    try:
        run_timelapse(tmp_path / "set", write_ddb=True, ddb_wait=20)
    finally:
        timer.join()
    assert rows(ddb, "SELECT COUNT(*) FROM Detections") == [(5,)]


def test_item15_6_a_second_ddb_write_refuses_naming_the_lock(tmp_path: Path):
    """Two --write-ddb runs at once: the second stops before writing anything and says who holds the lock."""
    root = tmp_path / "set"
    make_image_set(root)
    ddb = root / "TimelapseData.ddb"
    lock_file = root / ".TimelapseData.ddb.deepfaune.lock"
    before = dump(ddb)
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom deepfaune_plugin.transaction import "
                               "FolderLock\nlock = FolderLock(sys.argv[1], 'x')\nprint('held', flush=True)\n"
                               "sys.stdin.readline()", str(lock_file)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DeepfauneError, match=rf"{re.escape(str(lock_file))}") as info:
            run_timelapse(root, write_ddb=True, ddb_wait=0)
        assert f"process {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    assert dump(ddb) == before and not (root / "deepfaune-recognitions.json").exists()
    run_timelapse(root, write_ddb=True, ddb_wait=0)  # the killed holder's lock is stale: taken over
    assert rows(ddb, "SELECT COUNT(*) FROM Detections") == [(5,)] and not lock_file.exists()


# --- the user field ------------------------------------------------------------------------------

def test_field_gets_the_sequence_label_and_never_forces_a_choice(tmp_path: Path):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    conn = sqlite3.connect(ddb)
    with conn:
        conn.execute("UPDATE DataTable SET Species = 'red deer' WHERE File = 'fox_2.jpg'")  # a person's entry
    conn.close()
    summary = run_timelapse(tmp_path / "set", write_ddb=True, field="Species")
    values = dict(rows(ddb, "SELECT File, Species FROM DataTable"))
    assert values == {"fox_1.jpg": "fox", "fox_2.jpg": "red deer", "empty_3.jpg": "fox", "badger_4.jpg": "",
                      "person_1.jpg": "human", "broken_1.jpg": ""}
    report = summary.manifest.host_state.report
    assert report.field_rejected == [("cam1/badger_4.jpg", "badger")]  # not one of the choices: reported
    assert report.field_kept == [("cam1/fox_2.jpg", "red deer")]
    assert any("badger" in note for note in summary.manifest.host_state.notes)


def test_field_rerun_refreshes_its_own_values_and_keeps_a_persons(tmp_path: Path):
    make_image_set(tmp_path / "set")
    ddb = tmp_path / "set" / "TimelapseData.ddb"
    run_timelapse(tmp_path / "set", write_ddb=True, field="Notes")
    assert dict(rows(ddb, "SELECT File, Notes FROM DataTable"))["badger_4.jpg"] == "badger"
    conn = sqlite3.connect(ddb)
    with conn:
        conn.execute("UPDATE DataTable SET Notes = 'two foxes' WHERE File = 'fox_2.jpg'")  # corrected by a person
    conn.close()
    run_timelapse(tmp_path / "set", RunSettings(backend="fake", lang="fr"), write_ddb=True, field="Notes")
    values = dict(rows(ddb, "SELECT File, Notes FROM DataTable"))
    assert values == {"fox_1.jpg": "renard", "fox_2.jpg": "two foxes", "empty_3.jpg": "renard",
                      "badger_4.jpg": "blaireau", "person_1.jpg": "humain", "broken_1.jpg": ""}
    ledger = json.loads((tmp_path / "set" / ".deepfaune-timelapse.json").read_text(encoding="utf-8"))
    assert ledger["TimelapseData.ddb"]["Notes"] == {"1": "renard", "3": "renard", "4": "blaireau", "5": "humain"}


def test_field_into_real_templates(tmp_path: Path, shared: Path):
    alberta = make_image_set(tmp_path / "a", REAL[0], shared)
    run_timelapse(tmp_path / "a", write_ddb=True, field="species")  # FixedChoice of upper-case names
    values = dict(rows(alberta, "SELECT File, species FROM DataTable"))
    assert values["badger_4.jpg"] == "BADGER" and values["person_1.jpg"] == "HUMAN" and values["fox_1.jpg"] == ""
    camtrap = make_image_set(tmp_path / "c", REAL[1], shared)
    run_timelapse(tmp_path / "c", write_ddb=True, field="mediaComments")  # a MultiLine field
    assert dict(rows(camtrap, "SELECT File, mediaComments FROM DataTable"))["fox_1.jpg"] == "fox"
    assert_healthy(alberta)
    assert_healthy(camtrap)


def test_real_backend_on_standin_models(tmp_path: Path, standin_models: Path):
    """The DeepFaune backend itself (stand-in weights): boxes from the detector reach Timelapse's tables."""
    from imagegen import GREEN, RED

    root = tmp_path / "set"
    make_jpeg(root / "cam1" / "IMG_0001.JPG", width=800, height=600, date=T0, blobs=[(RED, (300, 200, 600, 450))])
    make_jpeg(root / "cam1" / "IMG_0002.JPG", width=800, height=600, date=T0 + timedelta(seconds=4),
              blobs=[(GREEN, (100, 100, 300, 500))], seed=1)
    tdb = _template(BUILT, root, None)
    ddb = create_ddb(tdb, root / "TimelapseData.ddb", [("cam1/IMG_0001.JPG", T0), ("cam1/IMG_0002.JPG", T0)])
    registry = _registry()
    run(root, RunSettings(models_dir=standin_models, lang="en"), host="timelapse",
        host_options={"write_ddb": True}, registry=registry, **QUIET)
    d = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))
    _check_md_format(d, root)
    assert "STAND-IN" in d["info"]["classifier"]
    (animal,) = {im["file"]: im for im in d["images"]}["cam1/IMG_0001.JPG"]["detections"]
    x, y, w, h = animal["bbox"]
    assert animal["category"] == "1" and 300 < (x + w / 2) * 800 < 600 and 200 < (y + h / 2) * 600 < 450  # on the blob
    assert len(animal["classifications"]) == 1
    (person,) = {im["file"]: im for im in d["images"]}["cam1/IMG_0002.JPG"]["detections"]
    assert person["category"] == "2" and "classifications" not in person
    got = detections_by_file(ddb)
    assert [r[0] for r in got["cam1\\IMG_0001.JPG"]] == ["1"] and [r[0] for r in got["cam1\\IMG_0002.JPG"]] == ["2"]
    assert_healthy(ddb)


def test_relative_paths_leaving_the_root_are_refused(tmp_path: Path):
    """A DataTable row pointing outside the image set (.. or an absolute path) is refused, never read."""
    import sqlite3

    root = tmp_path / "set"
    make_image_set(root)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((root / "cam1" / "fox_1.jpg").read_bytes())
    conn = sqlite3.connect(root / "TimelapseData.ddb")
    with conn:
        conn.execute("UPDATE DataTable SET RelativePath = '..', File = 'secret.jpg' WHERE File = 'fox_1.jpg'")
    conn.close()
    summary = run_timelapse(root)
    refused = {p.relpath: p.reason for p in summary.problems}
    assert refused["../secret.jpg"].startswith("refused: ")
    assert "../secret.jpg" not in {d.relpath for d in summary.results.decisions}


# --- issue 16 item 2: Timelapse as its users work ---------------------------------------------------------

#: A folder as the camera cards left it: Timelapse has not opened it yet (no .ddb)
CARD_FILES = ["cam1/fox_1.jpg", "cam1/fox_2.JPG", "cam1/sub dir/badger_3.jpeg", "cam2/person_1.jpg", "empty_1.jpg"]


def _card_folder(root: Path, template: Path | None = None) -> Path:
    for i, rel in enumerate(CARD_FILES):
        make_jpeg(root / rel, width=160, height=120, date=T0 + timedelta(seconds=i * 60), seed=i)
    make_jpeg(root / "cam1" / "fox_9.png", width=160, height=120, date=T0, seed=9)  # Timelapse does not load it
    if template is not None:
        (root / "TimelapseTemplate.tdb").write_bytes(template.read_bytes())
    return root


def _cli(*argv: str) -> int:
    from deepfaune_plugin.cli import main

    return main(["run", *argv, "--backend", "fake", "--lang", "en", "-q", "--no-store", "--no-report"],
                registry=_registry())


@pytest.mark.parametrize("with_template", [True, False])
def test_item16_2_folder_without_ddb_gives_the_recognition_file(tmp_path: Path, shared: Path, with_template, capsys):
    tdb = shared / "data" / "timelapse" / "CamtrapDPTemplate.tdb"
    root = _card_folder(tmp_path / "season", tdb if with_template else None)
    # with a template, --host auto knows the folder is a Timelapse image set; without, the user says so
    assert _cli(str(root), *(() if with_template else ("--host", "timelapse"))) == 0
    recognitions = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))
    assert [i["file"] for i in recognitions["images"]] == sorted(CARD_FILES)
    assert {i["file"]: [d["category"] for d in i["detections"]] for i in recognitions["images"]} == {
        "cam1/fox_1.jpg": ["1"], "cam1/fox_2.JPG": ["1"], "cam1/sub dir/badger_3.jpeg": ["1"],
        "cam2/person_1.jpg": ["2"], "empty_1.jpg": []}
    err = capsys.readouterr().err
    assert f"next, in Timelapse: open the image set {root}" in err and "Import recognition data" in err
    assert ("TimelapseTemplate.tdb" in err) == with_template
    # Timelapse then loads the folder (a .ddb from the template) and imports the file: every path matches a row
    ddb = create_ddb(tdb, tmp_path / "TimelapseData.ddb", [(rel, T0) for rel in CARD_FILES])
    report = timelapse_import.write_ddb(ddb, recognitions)
    assert report.unmatched == [] and report.images == len(CARD_FILES)


def test_item16_2_folder_recognition_file_passes_megadetectors_validator(tmp_path: Path):
    root = _card_folder(tmp_path / "season")
    assert _cli(str(root), "--host", "timelapse", "--output", str(tmp_path / "elsewhere.json")) == 0
    assert megadetector_findings(tmp_path / "elsewhere.json", root) == [[], []]


def test_item16_2_write_ddb_before_timelapse_opened_the_folder_is_refused(tmp_path: Path, capsys):
    root = _card_folder(tmp_path / "season")
    assert _cli(str(root), "--host", "timelapse", "--write-ddb") == 1
    assert "--write-ddb needs the image set's TimelapseData.ddb" in capsys.readouterr().err
    assert not (root / DEFAULT_JSON).exists()


def test_item16_2_field_fills_template_defaults_and_keeps_what_a_person_typed(tmp_path: Path, capsys):
    root = tmp_path / "set"
    root.mkdir()
    files = [("cam1/fox_1.jpg", T0, T0), ("cam1/badger_2.jpg", T0 + timedelta(minutes=5), T0 + timedelta(minutes=5)),
             ("cam2/fox_3.jpg", T0, T0)]
    for i, (rel, _, exif) in enumerate(files):
        make_jpeg(root / rel, width=160, height=120, date=exif, seed=i)
    tdb = write_template(root / "TimelapseTemplate.tdb", [
        Control("Species", "FixedChoice", "unknown", choices=("fox", "badger", "unknown")),
        Control("Notes", "Note", "to check")])
    ddb = create_ddb(tdb, root / "TimelapseData.ddb", [(rel, when) for rel, when, _ in files])
    sqlite3.connect(ddb).execute("UPDATE DataTable SET Species = 'badger' WHERE File = 'fox_3.jpg'").connection.commit()
    assert _cli(str(root), "--write-ddb", "--field", "Species") == 0
    assert rows(ddb, "SELECT File, Species FROM DataTable ORDER BY Id") == [
        ("fox_1.jpg", "fox"), ("badger_2.jpg", "badger"), ("fox_3.jpg", "badger")]  # the person's value kept
    assert "1 value(s) typed by a person kept, e.g. cam2/fox_3.jpg: 'badger'" in capsys.readouterr().err
    assert _cli(str(root), "--write-ddb", "--field", "Notes") == 0  # a Note whose default is not empty
    assert [r[0] for r in rows(ddb, "SELECT Notes FROM DataTable ORDER BY Id")] == ["fox", "badger", "fox"]


def test_item16_2_scientific_name_fields_get_scientific_names(tmp_path: Path, shared: Path, capsys):
    root = tmp_path / "set"
    make_image_set(root, "CamtrapDPTemplate.tdb", shared)
    assert _cli(str(root), "--write-ddb", "--field", "scientificName") == 3  # the image set holds a broken file
    assert dict(rows(root / "TimelapseData.ddb", "SELECT File, scientificName FROM DataTable")) == {
        "fox_1.jpg": "Vulpes vulpes", "fox_2.jpg": "Vulpes vulpes", "empty_3.jpg": "Vulpes vulpes",  # its sequence
        "badger_4.jpg": "Meles meles", "person_1.jpg": "Homo sapiens", "broken_1.jpg": ""}
    # a choice list of latin names, whatever the field is called
    root2 = tmp_path / "set2"
    make_image_set(root2, files=FILES[:2])
    tdb = write_template(tmp_path / "latin.tdb", [Control("Espece", "FixedChoice",
                                                          choices=("Vulpes vulpes", "Meles meles", "Sus scrofa"))])
    (root2 / "TimelapseData.ddb").unlink()
    ddb = create_ddb(tdb, root2 / "TimelapseData.ddb", [(rel, when) for rel, when, _ in FILES[:2]])
    assert _cli(str(root2), "--write-ddb", "--field", "Espece") == 0
    assert [r[0] for r in rows(ddb, "SELECT Espece FROM DataTable ORDER BY Id")] == ["Vulpes vulpes"] * 2


def test_item16_2_recognition_file_for_an_opened_image_set_says_what_to_do_next(tmp_path: Path, capsys):
    root = tmp_path / "set"
    make_image_set(root)
    assert _cli(str(root)) == 3  # the image set holds a broken file
    err = capsys.readouterr().err
    assert (f"next, in Timelapse: open the image set {root} (it already knows this image set), then File > Import "
            f"recognition data... and choose {root / DEFAULT_JSON}") in err
    assert _cli(str(root), "--write-ddb") == 3 and "Import recognition data" not in capsys.readouterr().err


@pytest.mark.parametrize("sabotage,fragment", [
    ("CREATE TRIGGER no_edits BEFORE UPDATE ON DataTable BEGIN SELECT RAISE(ABORT, 'read-only set'); END",
     "read-only set"),
    ("DROP TABLE IF EXISTS Detections; CREATE VIEW Detections AS SELECT 1 AS detectionID", "not views"),
])
def test_item15_15_a_ddb_that_refuses_the_update_is_a_message_and_nothing_changes(tmp_path: Path, capsys, sabotage,
                                                                                   fragment):
    root = tmp_path / "set"
    make_image_set(root)
    ddb = root / "TimelapseData.ddb"
    conn = sqlite3.connect(ddb)
    conn.executescript(sabotage)
    conn.close()
    before = dump(ddb)
    code = _cli(str(root), "--write-ddb", "--field", "Species")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert fragment in err and "nothing was changed" in err
    assert dump(ddb) == before
    assert not list((root / "Backups").glob("*.before-deepfaune.ddb"))  # no backup of a change that did not happen
