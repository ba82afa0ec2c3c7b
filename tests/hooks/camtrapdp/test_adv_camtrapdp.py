"""Issue 30 items 19-21 (Camtrap DP): a package created from a Station/Camera tree, careless CSVs and metadata,
the official profile checked before anything is written."""
from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from camtrapdp_helpers import frictionless_validate, read_rows, run_on
from deepfaune_plugin.errors import DeepfauneError
from imagegen import make_jpeg

T0 = datetime(2024, 5, 3, 6, 0, 0)
#: the metadata as JSON (the other tests give YAML): both are read
METADATA = {"contributors": [{"title": "Jane Doe", "role": "principalInvestigator"}],
            "project": {"title": "Vercors survey", "samplingDesign": "opportunistic",
                        "captureMethod": ["activityDetection"]},
            "licenses": [{"name": "CC0-1.0", "scope": "data"},
                         {"path": "http://creativecommons.org/licenses/by/4.0/", "scope": "media"}]}
DEPLOYMENTS = """station,latitude,longitude,deploymentStart,deploymentEnd
StationA,45.2,5.7,2024-05-01T08:00:00+02:00,2024-05-20T17:00:00+02:00
StationB,45.3,5.8,2024-05-02T08:00:00+02:00,2024-05-31T17:00:00+02:00
StationC,45.4,5.9,2024-05-02T08:00:00+02:00,2024-05-31T17:00:00+02:00
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "inDir"
    make_jpeg(src / "StationA" / "CamNorth" / "fox_1.jpg", width=160, height=120, date=T0, seed=1)
    make_jpeg(src / "StationA" / "CamNorth" / "fox_2.jpg", width=160, height=120, date=T0 + timedelta(seconds=3),
              seed=2)
    make_jpeg(src / "StationB" / "fox_3.jpg", width=160, height=120, date=T0, seed=3)
    make_jpeg(src / "StationC" / "Cam1" / "fox_4.jpg", width=160, height=120, date=T0, seed=4)
    make_jpeg(src / "StationC" / "Cam2" / "fox_5.jpg", width=160, height=120, date=T0, seed=5)
    (tmp_path / "meta.json").write_text(json.dumps(METADATA), encoding="utf-8")
    (tmp_path / "deployments.csv").write_text(DEPLOYMENTS, encoding="utf-8")
    return src


def options(tmp_path: Path, **extra):
    return {"deployments_csv": str(tmp_path / "deployments.csv"), "package_metadata": str(tmp_path / "meta.json"),
            **extra}


def test_item19_camera_folder_is_the_deployment_camera(tree: Path, tmp_path: Path, shared: Path):
    """Station/Camera/files: the camera folder is the deployment's cameraID (camtrapR's cameraID = "directory");
    a station with two camera folders has no one camera: left empty, and said."""
    out = tmp_path / "pkg"
    summary, logs = run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert {r["deploymentID"]: r["cameraID"] for r in read_rows(out / "deployments.csv")} == {
        "StationA": "CamNorth", "StationB": "", "StationC": ""}
    assert any("StationC/: station has several camera folders (Cam1, Cam2); one deployment holds them all, so its "
               "cameraID is left empty" in line for line in logs)
    assert summary.complete  # a note, not a skipped file
    pytest.importorskip("frictionless")
    report = frictionless_validate(out, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_item19_camera_id_given_in_the_csv_wins(tree: Path, tmp_path: Path):
    (tmp_path / "deployments.csv").write_text(
        DEPLOYMENTS.replace("deploymentEnd\n", "deploymentEnd,cameraID\n", 1).replace("+02:00\n", "+02:00,\n")
        .replace("StationA,45.2,5.7,2024-05-01T08:00:00+02:00,2024-05-20T17:00:00+02:00,",
                 "StationA,45.2,5.7,2024-05-01T08:00:00+02:00,2024-05-20T17:00:00+02:00,SN-4411"), encoding="utf-8")
    out = tmp_path / "pkg"
    run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert {r["deploymentID"]: r["cameraID"] for r in read_rows(out / "deployments.csv")}["StationA"] == "SN-4411"


def test_item21_one_license_refused_before_anything_runs(tree: Path, tmp_path: Path):
    """Camtrap DP's profile: licenses, when given, holds at least 2 (a data and a media license). Before: written,
    exit 3, and frictionless said "licenses is too short"."""
    meta = dict(METADATA, licenses=[{"name": "CC0-1.0", "scope": "data"}])
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    out = tmp_path / "pkg"
    with pytest.raises(DeepfauneError) as info:
        run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert str(info.value) == (
        f"{tmp_path / 'meta.json'}: licenses: needs at least 2 entries, has 1 (Camtrap DP: If provided, Camtrap DP "
        "further requires at least a license for the content of the package and one for the media files); "
        "nothing was written")
    assert not out.exists()
    # two licenses of one scope pass the schema's count, not its words
    meta["licenses"] = [{"name": "CC0-1.0", "scope": "data"}, {"name": "CC-BY-4.0", "scope": "data"}]
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(DeepfauneError, match=r"licenses: needs a license with scope media"):
        run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert not out.exists()


def test_item21_profile_ships_inside_the_package():
    """The profile is read from the installed package (package data), never from ../shared or the network."""
    from importlib import resources

    from deepfaune_plugin.hooks.camtrapdp import profile

    folder = resources.files("deepfaune_plugin.hooks.camtrapdp").joinpath("schemas")
    assert folder.joinpath("camtrap-dp-profile.json").is_file()
    assert "MIT License" in folder.joinpath("LICENSE-camtrap-dp.txt").read_text(encoding="utf-8")
    assert "shared" not in Path(str(folder)).parts
    assert list(profile.profile_errors({"licenses": []}))[:2] == [
        ("contributors", "required property is missing"), ("created", "required property is missing")]


def test_item21_enrichment_checks_the_profile_before_writing(tmp_path: Path, monkeypatch):
    """An enrichment whose new datapackage.json would break the profile writes nothing (here the descriptor
    update is made to drop a license, which only the profile's schema catches)."""
    from camtrapdp_helpers import make_package, tree_digest
    from deepfaune_plugin.hooks.camtrapdp import write

    pkg = make_package(tmp_path / "pkg")
    before = tree_digest(pkg)
    real = write.update_descriptor

    def dropping_a_license(descriptor, *args):
        new = real(descriptor, *args)
        return {**new, "licenses": new.get("licenses", [{"name": "CC0-1.0", "scope": "data"}])[:1]}

    monkeypatch.setattr(write, "update_descriptor", dropping_a_license)
    with pytest.raises(DeepfauneError, match=r"datapackage.json licenses: needs at least 2 entries, has 1"):
        run_on(pkg)
    assert tree_digest(pkg) == before


# ---------------------------------------------------------------- item 20: careless CSVs, a validated row of ours


def test_item20_utf16_tables_refused_saying_what_to_do(tree: Path, tmp_path: Path):
    """Excel's "Unicode text" is UTF-16: said, with what to do, for the deployments CSV and a package's tables
    (before: the deployments CSV failed as "not UTF-8 text ('utf-8' codec can't decode byte 0xff...")."""
    (tmp_path / "deployments.csv").write_bytes(DEPLOYMENTS.encode("utf-16"))
    with pytest.raises(DeepfauneError) as info:
        run_on(tree, host="camtrapdp", options=options(tmp_path), output=tmp_path / "pkg")
    assert str(info.value) == f"--deployments-csv: {tmp_path / 'deployments.csv'}: UTF-16 text; save it as UTF-8"

    from camtrapdp_helpers import make_package, tree_digest

    pkg = make_package(tmp_path / "package")
    obs = pkg / "observations.csv"
    obs.write_bytes(obs.read_bytes().decode("utf-8").encode("utf-16-le"))  # no byte-order mark
    before = tree_digest(pkg)
    with pytest.raises(DeepfauneError, match=r"^observations.csv: UTF-16 text; save it as UTF-8$"):
        run_on(pkg)
    assert tree_digest(pkg) == before


def test_item20_end_date_alone_takes_the_start_offset(tree: Path, tmp_path: Path):
    """docs: the offset is the utcOffset column, else --utc-offset, else the one written on deploymentStart; an
    end given as a date alone takes it (before: refused "has no UTC offset")."""
    (tmp_path / "deployments.csv").write_text(
        "station,latitude,longitude,deploymentStart,deploymentEnd\n"
        "StationA,45.2,5.7,2024-05-01T08:00:00-05:00,2024-05-20\n"
        "StationB,45.3,5.8,2024-05-02T08:00:00+02:00,2024-05-31\n"
        "StationC,45.4,5.9,2024-05-02T08:00:00Z,2024-05-31T12:00:00+01:00\n", encoding="utf-8")
    out = tmp_path / "pkg"
    run_on(tree, host="camtrapdp", options=options(tmp_path), output=out)
    assert [(r["deploymentID"], r["deploymentEnd"]) for r in read_rows(out / "deployments.csv")] == [
        ("StationA", "2024-05-20T23:59:59-05:00"), ("StationB", "2024-05-31T23:59:59+02:00"),
        ("StationC", "2024-05-31T12:00:00+01:00")]
    media = {r["fileName"]: r["timestamp"] for r in read_rows(out / "media.csv")}
    assert media["fox_1.jpg"] == "2024-05-03T06:00:00-05:00"  # the camera clock's offset, from the start


def test_item20_our_row_validated_elsewhere_is_kept_and_ours_gets_a_new_id(tmp_path: Path, shared: Path):
    """A DeepFaune row validated in another tool (classificationMethod human, our observationID kept) is a
    person's row: kept byte for byte; ours for that media goes under "<id>-2", the same every run (before: every
    later run refused, "duplicate" observationID, without saying the clash was with DeepFaune's own IDs)."""
    from camtrapdp_helpers import OBS_HEADER, make_package

    pkg = make_package(tmp_path / "pkg")
    run_on(pkg)
    obs = pkg / "observations.csv"
    text = obs.read_bytes().decode("utf-8")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    ours = [line for line in lines if line.startswith("deepfaune-m02,")]
    assert len(ours) == 1 and ",machine,DeepFaune " in ours[0]
    header = OBS_HEADER.split(",")
    fields = next(csv.reader([ours[0]]))
    fields[header.index("classificationMethod")] = "human"  # validated: method and who change, our ID kept
    fields[header.index("classifiedBy")] = "Ann Smith"
    validated = ",".join(fields)
    obs.write_bytes(text.replace(ours[0], validated).encode("utf-8"))

    summary, logs = run_on(pkg)
    assert summary.written  # not blocked
    assert any("1 observation(s) with DeepFaune's own observationID (deepfaune-m02) are no longer DeepFaune's"
               in line for line in logs)
    after = obs.read_bytes().decode("utf-8")
    assert validated in after  # the person's row, untouched
    rows = {r["observationID"]: r for r in read_rows(obs)}
    assert rows["deepfaune-m02"]["classifiedBy"] == "Ann Smith"
    assert rows["deepfaune-m02-2"]["mediaID"] == "m02" and rows["deepfaune-m02-2"]["classificationMethod"] == "machine"
    # an unchanged re-run finds its "-2" row again: no byte changes
    run_on(pkg)
    assert obs.read_bytes().decode("utf-8") == after
    pytest.importorskip("frictionless")
    report = frictionless_validate(pkg, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
