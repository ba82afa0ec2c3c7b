"""`--every-animal` written by the three data managers (issue 32, item 3), each the way it holds several animals:
Timelapse one classification per detection (recognition file and .ddb), Camtrap DP one media row per box and one
event row per species (count = MaxN), camtrapR one record per species per image (and one species folder each).
Without the option each host writes what it always wrote.

The fake backend (tests/fakes.py) plants the boxes: "fox+badger" is a fox box (DeepFaune's, the most confident)
and a badger box; "tiny" a box too small to classify. Images are 4000 x 3000.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.hooks.camtrapr.species import MANIFEST
from deepfaune_plugin.hooks.timelapse.host import DEFAULT_JSON, TimelapseHost
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from camtrapdp_helpers import OBS_ROWS, frictionless_validate, make_package, read_rows, run_on
from ddbquery import rows as ddb_rows
from fakes import registry_with_fake
from imagegen import make_jpeg
from mdvalidate import megadetector_findings
from timelapse_build import Control, create_ddb, write_template

T0 = datetime(2024, 5, 3, 6, 0, 0)
QUIET = dict(progress=False, log=lambda msg: None, store=False, report=False)
#: relpath -> what the fake backend finds there; a.jpg and b.jpg (2 s apart) are one sequence
OUTCOMES = {"cam1/a.jpg": "fox+badger", "cam1/b.jpg": "fox+fox+badger+tiny", "cam2/p.jpg": "person"}
DATES = {"cam1/a.jpg": T0, "cam1/b.jpg": T0 + timedelta(seconds=2), "cam2/p.jpg": T0}
FOX, BADGER = "35", "2"  # their classification categories (model 1.4, English)


def _registry(host=None):
    reg = registry_with_fake(lambda item: OUTCOMES.get(item.relpath, "empty"))
    if host is not None:
        reg.hosts[host.name] = Registered(host.name, host, host.name, "tests")
    return reg


# ---------------------------------------------------------------- Timelapse

def _image_set(root: Path) -> Path:
    for i, (rel, when) in enumerate(DATES.items()):
        make_jpeg(root / rel, width=160, height=120, date=when, seed=i)
    tdb = write_template(root / "TimelapseTemplate.tdb", [Control("Notes", "Note")])
    create_ddb(tdb, root / "TimelapseData.ddb", list(DATES.items()))
    return root


def _timelapse(root: Path, every: bool, **options):
    return run(root, RunSettings(backend="fake", lang="en", every_animal=every), host="timelapse",
               host_options=options, registry=_registry(TimelapseHost()), **QUIET)


def _classifications(recognitions: dict) -> dict[str, list]:
    return {image["file"]: [d.get("classifications") for d in image["detections"]] for image in recognitions["images"]}


def _without_times(recognitions: dict) -> dict:
    info = recognitions["info"]
    return {**recognitions, "info": {k: v for k, v in info.items() if not k.endswith("completion_time")}}


def test_timelapse_classifies_every_detection_and_the_ddb_holds_them(tmp_path: Path):
    root = _image_set(tmp_path / "set")
    _timelapse(root, every=False)
    plain = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))
    assert _classifications(plain) == {
        "cam1/a.jpg": [[[FOX, 0.983]], None],
        "cam1/b.jpg": [[[FOX, 0.983]], None, None, None],
        "cam2/p.jpg": [None]}
    _timelapse(root, every=True, write_ddb=True)
    every = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))
    # DeepFaune's own box keeps its sequence's answer (two images pooled: 0.983); each other animal box gets its
    # own, decided alone by the one-row temperature (logit 8: 0.974, fox or badger); the 20 x 16 px box none
    assert _classifications(every) == {
        "cam1/a.jpg": [[[FOX, 0.983]], [[BADGER, 0.974]]],
        "cam1/b.jpg": [[[FOX, 0.983]], [[FOX, 0.974]], [[BADGER, 0.974]], None],
        "cam2/p.jpg": [None]}
    # nothing else changed: drop the added classifications and it is the default file
    for image in every["images"]:
        for index, det in enumerate(image["detections"]):
            if index:
                det.pop("classifications", None)
    assert _without_times(every) == _without_times(plain)
    assert megadetector_findings(root / DEFAULT_JSON, root) == [[], []]
    # in the .ddb, as Timelapse's import stores them: each detection its classification
    got = ddb_rows(root / "TimelapseData.ddb", """
        SELECT d.File, CAST(x.classification AS TEXT), x.classification_conf FROM Detections x
        JOIN DataTable d ON d.Id = x.Id ORDER BY x.detectionID""")
    assert got == [("a.jpg", FOX, 0.983), ("a.jpg", BADGER, 0.974), ("b.jpg", FOX, 0.983), ("b.jpg", FOX, 0.974),
                   ("b.jpg", BADGER, 0.974), ("b.jpg", None, None), ("p.jpg", None, None)]


def test_timelapse_without_the_option_writes_the_same_bytes(tmp_path: Path):
    """The recognition file of a run without the option is byte for byte the one a run of the fake backend
    without per-box outputs writes (the per-box code adds nothing when RunResults.animals is None)."""
    from deepfaune_plugin.hooks.timelapse.md_json import build_recognitions

    root = _image_set(tmp_path / "set")
    summary = _timelapse(root, every=False)
    assert summary.results.animals is None
    every = _timelapse(root, every=True)
    # the same results with the boxes taken away give the default file again
    every.results.animals = None
    manifest = TimelapseHost().read(root, {})
    again = build_recognitions(manifest, every.results)
    plain = build_recognitions(manifest, summary.results)
    assert json.dumps(_without_times(again)) == json.dumps(_without_times(plain))


# ---------------------------------------------------------------- Camtrap DP

MEDIA = [("m01", "dep1", "a.jpg", 0), ("m02", "dep1", "b.jpg", 2), ("m03", "dep1", "fox_c.jpg", 600),
         ("m05", "dep2", "p.jpg", 0)]
PACKAGE_OUTCOMES = {"a.jpg": "fox+badger", "b.jpg": "fox+fox+badger+tiny", "fox_c.jpg": "fox", "p.jpg": "person"}


def _package_rule(item):
    return PACKAGE_OUTCOMES.get(item.path.name, "empty")


def _ours(path: Path) -> list[dict[str, str]]:
    return [r for r in read_rows(path) if r["classifiedBy"].startswith("DeepFaune")]


def test_camtrapdp_one_media_row_per_box_and_one_event_row_per_species(tmp_path: Path, shared: Path):
    package = make_package(tmp_path / "pkg", media=MEDIA)
    people = read_rows(package / "observations.csv")
    run_on(package, rule=_package_rule)
    plain = _ours(package / "observations.csv")
    assert [(r["observationLevel"], r["mediaID"], r["scientificName"], r["count"]) for r in plain] == [
        ("event", "", "Vulpes vulpes", "4"), ("media", "m01", "Vulpes vulpes", "2"),
        ("media", "m02", "Vulpes vulpes", "4"), ("event", "", "Vulpes vulpes", "1"),
        ("media", "m03", "Vulpes vulpes", "1"), ("event", "", "Homo sapiens", "1"),
        ("media", "m05", "Homo sapiens", "1")]
    _, logs = run_on(package, rule=_package_rule, every_animal=True)
    assert not [line for line in logs if "overlap" in line]  # an event's rows per species are one event
    rows = _ours(package / "observations.csv")
    got = [(r["observationID"].replace(r["eventID"][len("deepfaune-"):], "E"), r["observationLevel"], r["mediaID"],
            r["observationType"], r["scientificName"], r["count"], r["classificationProbability"],
            r["bboxX"], r["bboxWidth"]) for r in rows]
    assert got[:8] == [
        ("deepfaune-event-E-fox", "event", "", "animal", "Vulpes vulpes", "2", "0.97", "", ""),  # MaxN 2 (b.jpg)
        ("deepfaune-event-E-badger", "event", "", "animal", "Meles meles", "1", "0.97", "", ""),
        ("deepfaune-event-E-too_small", "event", "", "animal", "", "1", "", "", ""),
        ("deepfaune-m01-box1", "media", "m01", "animal", "Vulpes vulpes", "1", "0.97", "0.05", "0.2"),
        ("deepfaune-m01-box2", "media", "m01", "animal", "Meles meles", "1", "0.97", "0.275", "0.2"),
        ("deepfaune-m02-box1", "media", "m02", "animal", "Vulpes vulpes", "1", "0.97", "0.05", "0.2"),
        ("deepfaune-m02-box2", "media", "m02", "animal", "Vulpes vulpes", "1", "0.97", "0.275", "0.2"),
        ("deepfaune-m02-box3", "media", "m02", "animal", "Meles meles", "1", "0.97", "0.5", "0.2"),
    ]
    assert got[8][1:] == ("media", "m02", "animal", "", "1", "", "0.725", "0.005")
    assert rows[8]["observationComments"] == "DeepFaune: an animal box too small to classify"
    # one animal alone: the same shape, one event row and one media row, count 1; a person keeps its own rows
    assert [g[1:6] for g in got[9:]] == [("event", "", "animal", "Vulpes vulpes", "1"),
                                         ("media", "m03", "animal", "Vulpes vulpes", "1"),
                                         ("event", "", "human", "Homo sapiens", "1"),
                                         ("media", "m05", "human", "Homo sapiens", "1")]
    assert len({r["eventID"] for r in rows[:9]}) == 1
    # a person's rows untouched, in the same order
    kept = [r for r in read_rows(package / "observations.csv") if not r["classifiedBy"].startswith("DeepFaune")]
    assert kept == [r for r in people if not r["classifiedBy"].startswith("DeepFaune")]
    taxa = {t["scientificName"] for t in json.loads((package / "datapackage.json").read_text())["taxonomic"]}
    assert "Meles meles" in taxa
    report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    # a re-run replaces exactly our rows (an unchanged one changes no byte); without the option it is the
    # default table again
    before = (package / "observations.csv").read_bytes()
    run_on(package, rule=_package_rule, every_animal=True)
    assert (package / "observations.csv").read_bytes() == before
    run_on(package, rule=_package_rule)
    assert _ours(package / "observations.csv") == [{**r, "classificationTimestamp": mine["classificationTimestamp"]}
                                                   for r, mine in zip(plain, _ours(package / "observations.csv"))]
    assert len(read_rows(package / "observations.csv")) == len(OBS_ROWS.strip().split("\r\n")) + len(plain)


# ---------------------------------------------------------------- camtrapR

def _tree(root: Path) -> Path:
    for i, (rel, when) in enumerate(DATES.items()):
        make_jpeg(root / ("StationA" if rel.startswith("cam1") else "StationB") / Path(rel).name, width=64,
                  height=48, date=when, seed=i)
    return root


def _camtrapr(root: Path, every: bool, out: Path, **options):
    outcomes = {f"StationA/{Path(k).name}": v for k, v in OUTCOMES.items() if k.startswith("cam1")}
    outcomes["StationB/p.jpg"] = "person"
    reg = registry_with_fake(lambda item: outcomes.get(item.relpath, "empty"))
    reg.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    return run(root, RunSettings(backend="fake", lang="en", every_animal=every), host="camtrapr",
               host_options=options, output=out, registry=reg, **QUIET)


def _records(path: Path) -> list[tuple]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [(r["Station"], r["Species"], r["DateTimeOriginal"], r["FileName"], r["count"], r["score"],
                 r["n_images"]) for r in csv.DictReader(fh)]


def test_camtrapr_one_record_per_species_per_image_and_a_folder_for_each(tmp_path: Path):
    root = _tree(tmp_path / "inDir")
    _camtrapr(root, False, tmp_path / "plain.csv", species_folders=str(tmp_path / "plain_species"))
    assert _records(tmp_path / "plain.csv") == [
        ("StationA", "fox", "2024-05-03 06:00:00", "a.jpg", "2", "0.98", "1"),
        ("StationA", "fox", "2024-05-03 06:00:02", "b.jpg", "4", "0.98", "1")]
    _camtrapr(root, True, tmp_path / "every.csv", species_folders=str(tmp_path / "species"))
    # each image once per species it shows, its count that species' boxes; the tiny box is "undefined",
    # left out as an undefined answer is without --include undefined
    records = _records(tmp_path / "every.csv")
    assert records == [
        ("StationA", "badger", "2024-05-03 06:00:00", "a.jpg", "1", "0.97", "1"),
        ("StationA", "badger", "2024-05-03 06:00:02", "b.jpg", "1", "0.97", "1"),
        ("StationA", "fox", "2024-05-03 06:00:00", "a.jpg", "1", "0.97", "1"),
        ("StationA", "fox", "2024-05-03 06:00:02", "b.jpg", "2", "0.97", "1")]
    species = tmp_path / "species"
    files = sorted(p.relative_to(species).as_posix() for p in species.rglob("*.jpg"))
    assert files == ["StationA/badger/a.jpg", "StationA/badger/b.jpg", "StationA/fox/a.jpg", "StationA/fox/b.jpg"]
    assert (species / "StationA/fox/a.jpg").stat().st_ino == (species / "StationA/badger/a.jpg").stat().st_ino
    # what camtrapR's recordTable(IDfrom = "directory") reads from that tree (one record per file, the species
    # its folder, the image's date; removeDuplicateRecords drops only the same species at the same second) is
    # our record table
    from_folders = sorted((p.parts[-3], p.parts[-2], DATES[f"cam1/{p.name}"].strftime("%Y-%m-%d %H:%M:%S"), p.name)
                          for p in species.rglob("*.jpg"))
    assert from_folders == sorted(r[:4] for r in records)
    _camtrapr(root, True, tmp_path / "undefined.csv", include="undefined")
    assert [r[1:5] for r in _records(tmp_path / "undefined.csv") if r[1] == "undefined"] == [
        ("undefined", "2024-05-03 06:00:02", "b.jpg", "1")]


def test_camtrapr_without_the_option_writes_the_same_bytes(tmp_path: Path):
    root = _tree(tmp_path / "inDir")
    _camtrapr(root, False, tmp_path / "one.csv")
    _camtrapr(root, False, tmp_path / "two.csv")
    every = _camtrapr(root, True, tmp_path / "every.csv")
    assert every.results.animals
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()


def test_a_person_removing_one_species_copy_keeps_the_other(tmp_path: Path):
    root = _tree(tmp_path / "inDir")
    species = tmp_path / "species"
    _camtrapr(root, True, tmp_path / "every.csv", species_folders=str(species))
    (species / "StationA/badger/a.jpg").unlink()  # a person: there is no badger in a.jpg
    _camtrapr(root, True, tmp_path / "every.csv", species_folders=str(species))
    files = sorted(p.relative_to(species).as_posix() for p in species.rglob("*.jpg"))
    assert files == ["StationA/badger/b.jpg", "StationA/fox/a.jpg", "StationA/fox/b.jpg"]
    manifest = json.loads((species / MANIFEST).read_text(encoding="utf-8"))
    assert [f["path"] for f in manifest["files"] if f.get("corrected")] == ["StationA/fox/a.jpg"]
