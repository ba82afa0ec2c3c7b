"""camtrapR's own recordTable(IDfrom = "directory") over the species folders a run built agrees with the run's
record table, row for row (issue 32: `--every-animal --species-folders`, an image in each species folder it
shows).

camtrapR itself is not installed: its other dependencies (secr, shiny, leaflet, ...) are not where the tests
run, but recordTable() needs only base R, data.table and ExifTool, so its two files, R/recordTable.R and
R/variousOtherHelperFunctions.R, are sourced from a camtrapR source tree named by $CAMTRAPR_SOURCE (a checkout
of github.com/jniedballa/camtrapR). Skipped without Rscript (with data.table), exiftool or $CAMTRAPR_SOURCE.

The species of a record is its species folder there, its date the image's EXIF date as exiftool reads it;
independence (minDeltaTime, deltaTimeComparedTo, camerasIndependent, removeDuplicateRecords = TRUE) and n_images
are camtrapR's own, compared with ours on: images of two species, images of one species only, repeats within
minDeltaTime, an undated image, the same species at the same second, cameras pooled or independent.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from fakes import registry_with_fake
from imagegen import make_jpeg

CAMTRAPR_FILES = ("R/recordTable.R", "R/variousOtherHelperFunctions.R")


def _camtrapr_source() -> Path | None:
    source = os.environ.get("CAMTRAPR_SOURCE")
    if not source or not all((Path(source) / f).is_file() for f in CAMTRAPR_FILES):
        return None
    return Path(source)


def _r_ready() -> bool:
    if shutil.which("Rscript") is None or shutil.which("exiftool") is None or _camtrapr_source() is None:
        return False
    check = subprocess.run(["Rscript", "-e", 'q(status = !requireNamespace("data.table", quietly = TRUE))'],
                           capture_output=True)
    return check.returncode == 0


pytestmark = pytest.mark.skipif(not _r_ready(), reason="needs Rscript with data.table, exiftool and "
                                                       "$CAMTRAPR_SOURCE (a camtrapR source tree)")

#: recordTable() as camtrapR has it, its columns written one tab-separated line per row: the date-time with its
#: seconds (write.csv would drop ":00" seconds when every time has them), numbers as as.character() gives them.
R_RECORD_TABLE = r"""
args <- commandArgs(trailingOnly = TRUE)
source(file.path(args[1], "R", "variousOtherHelperFunctions.R"))
source(file.path(args[1], "R", "recordTable.R"))
call <- list(inDir = args[2], IDfrom = "directory", minDeltaTime = as.integer(args[3]), timeZone = "UTC",
             removeDuplicateRecords = TRUE, writecsv = FALSE)
if (args[3] != "0") call$deltaTimeComparedTo <- args[4]
if (args[5] != "none") { call$cameraID <- "directory"; call$camerasIndependent <- as.logical(args[5]) }
rt <- suppressMessages(do.call(recordTable, call))
cols <- intersect(c("Station", "Camera", "Species", "DateTimeOriginal", "Date", "Time", "delta.time.secs",
                    "delta.time.mins", "delta.time.hours", "delta.time.days", "Directory", "FileName", "n_images"),
                  colnames(rt))
rt$DateTimeOriginal <- format(rt$DateTimeOriginal, "%Y-%m-%d %H:%M:%S", tz = "UTC")
rt$Date <- format(rt$Date, "%Y-%m-%d")
out <- file(args[6], "w", encoding = "UTF-8")
writeLines(paste(cols, collapse = "\t"), out)
for (i in seq_len(nrow(rt))) writeLines(paste(sapply(cols, function(c) as.character(rt[i, c])), collapse = "\t"), out)
close(out)
"""

T0 = datetime(2024, 5, 3, 6, 0, 0)


def _minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


#: relpath (under a station, and a camera in the camera tree) -> (what the fake backend finds, its EXIF date).
#: "fox+badger" is a fox box and a badger box (camtrapR: the image in both species folders).
STATION_A = {
    "a.jpg": ("fox+badger", _minutes(0)),
    "b.jpg": ("fox", _minutes(2)),               # one species only, 2 min after a: a repeat within 5 min
    "c.jpg": ("fox+badger", _minutes(4)),        # both repeats of a, within 5 min
    "d.jpg": ("fox", _minutes(6)),               # 6 min after a (independent of a), 2 min after c (not of c)
    "e.jpg": ("badger", _minutes(6.5)),          # likewise for the badger
    "f.jpg": ("fox+fox+badger+tiny", _minutes(20)),  # two foxes, a badger, a box too small (no record)
    "g.jpg": ("fox", _minutes(20)),              # a fox at the same second as f: removeDuplicateRecords
    "h.jpg": ("badger+fox", _minutes(21.05)),    # 63 s: delta minutes rounded as R rounds
    "p.jpg": ("person", _minutes(3)),            # a person: no record, no species folder
    "u.jpg": ("fox+badger", None),               # no date: no record (camtrapR omits it too)
}
STATION_B = {
    "q.jpg": ("badger", _minutes(0)),
    "r.jpg": ("badger+fox", _minutes(1)),
    "s.jpg": ("fox", _minutes(61)),
}


def _tree(root: Path, cameras: bool) -> dict[str, str]:
    """A station tree; with cameras, StationA's images split over Cam1 and Cam2 (c, d and g on Cam2)."""
    outcomes = {}
    for station, images in (("StationA", STATION_A), ("StationB", STATION_B)):
        for n, (name, (outcome, when)) in enumerate(sorted(images.items())):
            folder = station
            if cameras:
                folder += "/Cam2" if name in ("c.jpg", "d.jpg", "g.jpg") else "/Cam1"
            make_jpeg(root / folder / name, width=64, height=48, date=when, seed=n)
            outcomes[f"{folder}/{name}"] = outcome
    return outcomes


def _deepfaune(root: Path, outcomes: dict[str, str], out: Path, species: Path, every: bool, **options) -> None:
    reg = registry_with_fake(lambda item: outcomes.get(item.relpath, "empty"))
    reg.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    run(root, RunSettings(backend="fake", lang="en", every_animal=every), host="camtrapr",
        host_options={"species_folders": str(species), **options}, output=out, registry=reg, progress=False,
        log=lambda msg: None, store=False, report=False)


def _camtrapr(tmp_path: Path, species: Path, min_delta: int, compared_to: str, cameras: str) -> list[dict]:
    script, out = tmp_path / "record_table.R", tmp_path / "camtrapr.tsv"
    script.write_text(R_RECORD_TABLE, encoding="utf-8")
    res = subprocess.run(["Rscript", str(script), str(_camtrapr_source()), str(species), str(min_delta),
                          compared_to, cameras, str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    with open(out, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _ours(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


SAME_SECOND = ("f.jpg", "g.jpg")  # foxes at StationA at the same second
COMPARED = ["Station", "Camera", "Species", "DateTimeOriginal", "Date", "Time", "delta.time.secs", "delta.time.mins",
            "delta.time.hours", "delta.time.days", "FileName", "n_images"]


def _agree(theirs: list[dict], ours: list[dict], species: Path) -> None:
    """Row for row. Directory is the species folder in camtrapR's (it read the species tree) and the image's own
    folder in ours (the table points at the originals). Of the foxes of f.jpg and g.jpg (the same second) each
    keeps one: camtrapR the one exiftool lists first, in the order the file system gives (exiftool does not sort
    a folder), so its FileName (and Camera, when they lie in two cameras) may be either."""
    assert len(theirs) == len(ours), ([r["FileName"] for r in theirs], [r["FileName"] for r in ours])
    for r, o in zip(theirs, ours):
        same_second = o["Species"] == "fox" and o["FileName"] in SAME_SECOND
        cols = [c for c in COMPARED if (c in r or c in o) and not (same_second and c in ("Camera", "FileName"))]
        assert {c: r.get(c) for c in cols} == {c: o.get(c) for c in cols}, (r, o)
        if same_second:
            assert r["FileName"] in SAME_SECOND
        folder = species / r["Station"] / r.get("Camera", "") / r["Species"]
        assert Path(r["Directory"]) == Path(os.path.normpath(folder)), (r["Directory"], folder)


@pytest.mark.parametrize("min_delta, compared_to", [(0, "lastIndependentRecord"), (5, "lastIndependentRecord"),
                                                    (5, "lastRecord")])
def test_record_table_of_the_species_folders_is_ours(tmp_path: Path, min_delta: int, compared_to: str):
    root, species, table = tmp_path / "inDir", tmp_path / "species", tmp_path / "deepfaune_recordTable.csv"
    outcomes = _tree(root, cameras=False)
    _deepfaune(root, outcomes, table, species, every=True, min_delta_time=min_delta,
               delta_time_compared_to=compared_to)
    ours, theirs = _ours(table), _camtrapr(tmp_path, species, min_delta, compared_to, "none")
    _agree(theirs, ours, species)
    # what was compared: a.jpg and c.jpg each a fox and a badger record (0 min), f.jpg a fox record (count 2)
    got = [(r["Station"], r["Species"], r["FileName"], r["delta.time.secs"], r["n_images"], r["count"]) for r in ours]
    expected = {
        0: [("StationA", "badger", "a.jpg", "0", "1", "1"), ("StationA", "badger", "c.jpg", "240", "1", "1"),
            ("StationA", "badger", "e.jpg", "150", "1", "1"), ("StationA", "badger", "f.jpg", "810", "1", "1"),
            ("StationA", "badger", "h.jpg", "63", "1", "1"), ("StationA", "fox", "a.jpg", "0", "1", "1"),
            ("StationA", "fox", "b.jpg", "120", "1", "1"), ("StationA", "fox", "c.jpg", "120", "1", "1"),
            ("StationA", "fox", "d.jpg", "120", "1", "1"), ("StationA", "fox", "f.jpg", "840", "1", "2"),
            ("StationA", "fox", "h.jpg", "63", "1", "1"), ("StationB", "badger", "q.jpg", "0", "1", "1"),
            ("StationB", "badger", "r.jpg", "60", "1", "1"), ("StationB", "fox", "r.jpg", "0", "1", "1"),
            ("StationB", "fox", "s.jpg", "3600", "1", "1")],
        # lastIndependentRecord: d is 6 min after a (kept), e 6.5 min; h is 63 s after f: not kept
        "lastIndependentRecord": [
            ("StationA", "badger", "a.jpg", "0", "2", "1"), ("StationA", "badger", "e.jpg", "390", "1", "1"),
            ("StationA", "badger", "f.jpg", "810", "2", "1"), ("StationA", "fox", "a.jpg", "0", "3", "1"),
            ("StationA", "fox", "d.jpg", "360", "1", "1"), ("StationA", "fox", "f.jpg", "840", "2", "2"),
            ("StationB", "badger", "q.jpg", "0", "2", "1"), ("StationB", "fox", "r.jpg", "0", "1", "1"),
            ("StationB", "fox", "s.jpg", "3600", "1", "1")],
        # lastRecord: each repeat 2 min after the one before, so a's event runs on until f
        "lastRecord": [
            ("StationA", "badger", "a.jpg", "0", "3", "1"), ("StationA", "badger", "f.jpg", "810", "2", "1"),
            ("StationA", "fox", "a.jpg", "0", "4", "1"), ("StationA", "fox", "f.jpg", "840", "2", "2"),
            ("StationB", "badger", "q.jpg", "0", "2", "1"), ("StationB", "fox", "r.jpg", "0", "1", "1"),
            ("StationB", "fox", "s.jpg", "3600", "1", "1")],
    }[compared_to if min_delta else 0]
    assert [g if g[2] != "g.jpg" else (*g[:2], "f.jpg", *g[3:]) for g in got] == expected


@pytest.mark.parametrize("independent", [False, True])
def test_record_table_of_camera_species_folders_is_ours(tmp_path: Path, independent: bool):
    root, species, table = tmp_path / "inDir", tmp_path / "species", tmp_path / "deepfaune_recordTable.csv"
    outcomes = _tree(root, cameras=True)
    options = {"cameras_independent": True} if independent else {}
    _deepfaune(root, outcomes, table, species, every=True, min_delta_time=5, **options)
    ours = _ours(table)
    _agree(_camtrapr(tmp_path, species, 5, "lastIndependentRecord", str(independent).upper()), ours, species)
    got = [(r["Camera"], r["Species"], r["FileName"], r["n_images"]) for r in ours if r["Station"] == "StationA"]
    if independent:  # c.jpg is Cam2's first badger and fox; g.jpg, Cam2's fox at f's second, is independent of
        # c (16 min) and cuts f's event short: h.jpg (Cam1) lies after g in the table, so f counts 1 (camtrapR too)
        assert got == [("Cam1", "badger", "a.jpg", "1"), ("Cam2", "badger", "c.jpg", "1"),
                       ("Cam1", "badger", "e.jpg", "1"), ("Cam1", "badger", "f.jpg", "2"),
                       ("Cam1", "fox", "a.jpg", "2"), ("Cam2", "fox", "c.jpg", "2"), ("Cam1", "fox", "f.jpg", "1"),
                       ("Cam2", "fox", "g.jpg", "1")]
    else:
        assert got == [("Cam1", "badger", "a.jpg", "2"), ("Cam1", "badger", "e.jpg", "1"),
                       ("Cam1", "badger", "f.jpg", "2"), ("Cam1", "fox", "a.jpg", "3"), ("Cam2", "fox", "d.jpg", "1"),
                       ("Cam1", "fox", "f.jpg", "2")]


def test_without_every_animal_the_species_folders_agree_too(tmp_path: Path):
    root, species, table = tmp_path / "inDir", tmp_path / "species", tmp_path / "deepfaune_recordTable.csv"
    outcomes = _tree(root, cameras=False)
    _deepfaune(root, outcomes, table, species, every=False, min_delta_time=5)
    ours = _ours(table)
    _agree(_camtrapr(tmp_path, species, 5, "lastIndependentRecord", "none"), ours, species)
    assert {r["Species"] for r in ours} == {"fox", "badger"}


def test_a_name_twice_in_a_species_folder_is_the_placed_name_in_camtrapr(tmp_path: Path):
    """Cameras that restart numbering (100RECNX/IMG_0001.JPG, 101RECNX/IMG_0001.JPG) put one name twice in a
    species folder: the second copy is IMG_0001_2.JPG, the FileName camtrapR reports; ours stays the original's,
    beside its Directory. Every other column agrees."""
    root, species, table = tmp_path / "inDir", tmp_path / "species", tmp_path / "deepfaune_recordTable.csv"
    make_jpeg(root / "StationA/Cam1/100RECNX/IMG_0001.jpg", width=64, height=48, date=_minutes(0), seed=1)
    make_jpeg(root / "StationA/Cam1/101RECNX/IMG_0001.jpg", width=64, height=48, date=_minutes(10), seed=2)
    outcomes = {"StationA/Cam1/100RECNX/IMG_0001.jpg": "fox+badger", "StationA/Cam1/101RECNX/IMG_0001.jpg": "fox"}
    _deepfaune(root, outcomes, table, species, every=True, min_delta_time=5)
    ours, theirs = _ours(table), _camtrapr(tmp_path, species, 5, "lastIndependentRecord", "FALSE")
    assert [(r["Species"], r["DateTimeOriginal"], r["FileName"], r["Directory"].rsplit("/", 1)[-1]) for r in ours] == [
        ("badger", "2024-05-03 06:00:00", "IMG_0001.jpg", "100RECNX"),
        ("fox", "2024-05-03 06:00:00", "IMG_0001.jpg", "100RECNX"),
        ("fox", "2024-05-03 06:10:00", "IMG_0001.jpg", "101RECNX")]
    assert [r["FileName"] for r in theirs] == ["IMG_0001.jpg", "IMG_0001.jpg", "IMG_0001_2.jpg"]
    cols = [c for c in COMPARED if c != "FileName"]
    assert [{c: r[c] for c in cols} for r in theirs] == [{c: r[c] for c in cols} for r in ours]


def test_station_folders_with_any_name_are_the_same_stations_in_camtrapr(tmp_path: Path):
    """Station folder names that Windows would refuse, or hidden ones, are stations as they are: recordTable()
    over the species tree gives the record table's Station (the tree keeps the names; camtrapR lists '.hidden')."""
    root, species, table = tmp_path / "inDir", tmp_path / "species", tmp_path / "deepfaune_recordTable.csv"
    outcomes = {}
    for n, station in enumerate(["Site:1", ".hidden", "Zulu?"]):
        make_jpeg(root / station / "a.jpg", width=64, height=48, date=_minutes(n), seed=n)
        outcomes[f"{station}/a.jpg"] = "fox+badger"
    _deepfaune(root, outcomes, table, species, every=True)
    ours = _ours(table)
    _agree(_camtrapr(tmp_path, species, 0, "lastIndependentRecord", "none"), ours, species)
    assert [(r["Station"], r["Species"]) for r in ours] == [
        (".hidden", "badger"), (".hidden", "fox"), ("Site:1", "badger"), ("Site:1", "fox"), ("Zulu?", "badger"),
        ("Zulu?", "fox")]
