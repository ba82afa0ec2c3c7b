"""The Camtrap DP host creating a new package from a folder / camtrapR station tree (--output NEWDIR)."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from camtrapdp_helpers import RUN_RECORDS, frictionless_validate, read_rows, run_on, tree_digest
from deepfaune_plugin.errors import DeepfauneError
from fakes import outcome_from_name
from imagegen import make_jpeg
from killpoints import FORK_ONLY, fork_run

T0 = datetime(2024, 5, 3, 6, 0, 0)
METADATA = """contributors:
  - {title: Jane Doe, role: principalInvestigator}
project:
  title: Vercors survey
  samplingDesign: opportunistic
  captureMethod: activityDetection
licenses:
  - {name: CC0-1.0, scope: data}
  - {path: "http://creativecommons.org/licenses/by/4.0/", scope: media}
"""
DEPLOYMENTS = """station;latitude;longitude;deploymentStart;deploymentEnd;cameraModel
StationA;45.2;5.7;2024-05-01T08:00:00+02:00;2024-05-20T17:00:00+02:00;Browning
StationB;45.3;5.8;2024-05-02;2024-05-31;
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "inDir"
    for i, gap in enumerate((0, 3, 6)):
        make_jpeg(src / "StationA" / f"fox_{i}.jpg", width=160, height=120, date=T0 + timedelta(seconds=gap), seed=i)
    make_jpeg(src / "StationB" / "Cam1" / "person_1.jpg", width=160, height=120, date=T0, seed=5)
    make_jpeg(src / "StationB" / "Cam1" / "fox_nodate.jpg", width=160, height=120, seed=6)
    make_jpeg(src / "loose_fox.jpg", width=160, height=120, date=T0, seed=7)
    (tmp_path / "meta.yaml").write_text(METADATA, encoding="utf-8")
    (tmp_path / "deployments.csv").write_text(DEPLOYMENTS, encoding="utf-8")
    return src


def options(tmp_path: Path, **extra):
    return {"deployments_csv": str(tmp_path / "deployments.csv"), "package_metadata": str(tmp_path / "meta.yaml"),
            "utc_offset": "+02:00", **extra}


def test_new_package_from_a_station_tree(tree: Path, tmp_path: Path, shared: Path):
    before = tree_digest(tree)
    out = tmp_path / "new-package"
    summary, logs = run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert tree_digest(tree) == before  # the source is only read
    assert sorted(p.name for p in summary.written) == ["datapackage.json", "deployments.csv", "media.csv",
                                                       "observations.csv"]
    assert "warning: loose_fox.jpg: not in a station folder (expected SOURCE/Station/[Camera/]file); skipped" in logs
    assert any("StationB/Cam1/fox_nodate.jpg: no EXIF date" in line for line in logs)

    deployments = {r["deploymentID"]: r for r in read_rows(out / "deployments.csv")}
    assert deployments["StationA"]["latitude"] == "45.2" and deployments["StationA"]["cameraModel"] == "Browning"
    assert deployments["StationA"]["deploymentStart"] == "2024-05-01T08:00:00+02:00"
    # dates alone get the --utc-offset; an end date means the end of that day
    assert (deployments["StationB"]["deploymentStart"], deployments["StationB"]["deploymentEnd"]) == (
        "2024-05-02T00:00:00+02:00", "2024-05-31T23:59:59+02:00")
    media = {r["filePath"]: r for r in read_rows(out / "media.csv")}
    assert sorted(media) == ["media/StationA/fox_0.jpg", "media/StationA/fox_1.jpg", "media/StationA/fox_2.jpg",
                             "media/StationB/Cam1/person_1.jpg"]
    fox1 = media["media/StationA/fox_1.jpg"]
    assert (fox1["timestamp"], fox1["deploymentID"], fox1["fileMediatype"], fox1["captureMethod"]) == (
        "2024-05-03T06:00:03+02:00", "StationA", "image/jpeg", "activityDetection")
    assert (out / "media" / "StationA" / "fox_1.jpg").read_bytes() == (tree / "StationA" / "fox_1.jpg").read_bytes()

    observations = read_rows(out / "observations.csv")
    fox_rows = [r for r in observations if r["scientificName"] == "Vulpes vulpes"]
    assert [r["observationLevel"] for r in fox_rows] == ["event", "media", "media", "media"]
    assert {r["mediaID"] for r in fox_rows[1:]} == {m["mediaID"] for p, m in media.items() if "fox" in p}

    dp = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    assert dp["profile"].endswith("/camtrap-dp/1.0.2/camtrap-dp-profile.json")
    assert dp["spatial"] == {"type": "MultiPoint", "coordinates": [[5.7, 45.2], [5.8, 45.3]]}
    assert dp["temporal"] == {"start": "2024-05-01", "end": "2024-05-31"}
    assert dp["project"]["captureMethod"] == ["activityDetection"]
    assert dp["project"]["observationLevel"] == ["media", "event"] and dp["project"]["individualAnimals"] is False
    assert dp["name"] == "new-package" and dp["licenses"][0]["name"] == "CC0-1.0"
    assert {t["scientificName"] for t in dp["taxonomic"]} == {"Vulpes vulpes", "Homo sapiens"}

    pytest.importorskip("frictionless")
    report = frictionless_validate(out, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_created_package_can_then_be_enriched_again(tree: Path, tmp_path: Path):
    out = tmp_path / "pkg"
    run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    first = tree_digest(out)
    summary, _ = run_on(out)  # auto-detected as a package now; same results → nothing to write
    assert summary.manifest.host == "camtrapdp" and summary.written == []
    assert tree_digest(out) == first


@pytest.mark.parametrize("change, message", [
    (lambda t: t.__setitem__("deployments_csv", None), "give --deployments-csv FILE"),
    (lambda t: t.__setitem__("package_metadata", None), "needs --package-metadata FILE"),
    (lambda t: Path(t["deployments_csv"]).write_text("station,latitude,longitude,deploymentStart,deploymentEnd\n"
                                                     "StationA,45.2,5.7,2024-05-01,2024-05-20\n"),
     "no row for station folder(s) StationB; every station needs its coordinates"),
    (lambda t: Path(t["deployments_csv"]).write_text("station,latitude,deploymentStart,deploymentEnd\n"),
     "column(s) longitude missing; coordinates and deployment dates are never guessed"),
    (lambda t: Path(t["deployments_csv"]).write_text("station,latitude,longitude,deploymentStart,deploymentEnd\n"
                                                     "StationA,45.2,5.7,2024-05-01,2024-05-20\n"
                                                     "StationB,95,5.8,2024-05-01,2024-05-20\n"),
     "station 'StationB' latitude: 95 is above the maximum 90"),
    (lambda t: t.__setitem__("utc_offset", None), "has no UTC offset; add one"),
    (lambda t: t.__setitem__("utc_offset", "CET"), "'CET' is not a UTC offset"),
    (lambda t: Path(t["package_metadata"]).write_text("contributors: [{title: Jane}]\nproject: {samplingDesign: random,"
                                                      " captureMethod: [activityDetection]}\n"),
     "'random' is not one of simpleRandom"),
])
def test_create_refuses_to_guess(tree: Path, tmp_path: Path, change, message):
    opts = options(tmp_path)
    change(opts)
    out = tmp_path / "out"
    with pytest.raises(DeepfauneError) as info:
        run_on(tree, host="camtrapdp", options=opts, output=out)
    assert message in str(info.value)
    assert not out.exists()


def test_output_must_be_new(tree: Path, tmp_path: Path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DeepfauneError, match="already exists and is not empty"):
        run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".busy")]  # no leftover work folder


def test_default_output_is_a_sibling_and_link_media(tree: Path, tmp_path: Path):
    summary, _ = run_on(tree, host="camtrapdp", options=options(tmp_path, link_media=True))
    out = tmp_path / "inDir-camtrapdp"
    assert summary.written[0].parent == out
    assert (out / "media" / "StationA" / "fox_0.jpg").stat().st_ino == (tree / "StationA" / "fox_0.jpg").stat().st_ino


@FORK_ONLY
def test_item15_5_a_creation_killed_anywhere_leaves_no_half_package(tree: Path, tmp_path: Path):
    """Killed before any file step, a new package is absent or whole; the next run clears the half-built one."""
    from deepfaune_plugin.hooks.camtrapdp import create as camtrapdp_create
    from deepfaune_plugin.transaction import FolderLock

    def create(out: Path):
        return lambda: run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)

    killed, total = fork_run(create(tmp_path / "reference"), camtrapdp_create, "write_package", None)
    assert not killed
    def listing(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.name not in RUN_RECORDS)

    whole = listing(tmp_path / "reference")
    out = tmp_path / "new"
    absent = 0
    for kill_at in range(1, total + 1):
        assert fork_run(create(out), camtrapdp_create, "write_package", kill_at)[0], f"step {kill_at} not reached"
        with FolderLock(tmp_path / ".new.deepfaune.lock", "x"):
            camtrapdp_create.clear_leftovers(out)  # what the next creation does first
        if out.exists():
            assert listing(out) == whole, f"killed before step {kill_at}"
            json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
            shutil.rmtree(out)
        else:
            absent += 1
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".new")] == []
    assert total > 20 and 0 < absent < total


def test_item16_3_created_package_fills_location_id(tree: Path, tmp_path: Path):
    """camtrapR's readcamtrapDP() stops on an empty locationID: each deployment's location is its station unless
    the deployments CSV names one."""
    from deepfaune_plugin.cli import main
    from camtrapdp_helpers import registry

    (tmp_path / "deployments.csv").write_text(
        DEPLOYMENTS.replace("cameraModel\n", "cameraModel;locationID\n", 1)
        .replace("Browning\n", "Browning;loc-07\n").replace(";2024-05-31;\n", ";2024-05-31;;\n"), encoding="utf-8")
    out = tmp_path / "pkg"
    assert main(["run", str(tree), "--host", "camtrapdp", "--backend", "fake", "-q", "--no-store", "--no-report",
                 "--output", str(out), "--deployments-csv", str(tmp_path / "deployments.csv"),
                 "--package-metadata", str(tmp_path / "meta.yaml"), "--utc-offset", "+02:00"],
                registry=registry(outcome_from_name)) == 3  # the tree holds an unreadable file
    rows = {r["deploymentID"]: r["locationID"] for r in read_rows(out / "deployments.csv")}
    assert rows == {"StationA": "loc-07", "StationB": "StationB"}
