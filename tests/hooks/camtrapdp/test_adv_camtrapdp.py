"""Issue 30 items 19-21 (Camtrap DP): a package created from a Station/Camera tree, careless CSVs and metadata,
the official profile checked before anything is written."""
from __future__ import annotations

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
