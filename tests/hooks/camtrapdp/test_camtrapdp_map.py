"""The Camtrap DP host's station coordinates (deployments latitude/longitude), which the review page maps."""
from __future__ import annotations

import csv
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from camtrapdp_helpers import make_package, run_on
from deepfaune_plugin.hooks.camtrapdp.host import CamtrapDPHost
from deepfaune_plugin.hooks.camtrapdp.schema import deployment_coordinates
from imagegen import make_jpeg


def read(source: Path, options=None):
    manifest = CamtrapDPHost().read(source, options or {})
    lock = getattr(manifest.host_state, "lock", None)
    if lock is not None:
        lock.release()
    return manifest


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="df-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_deployments_give_the_station_coordinates(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    manifest = read(package)
    assert manifest.station_coordinates == {"dep1": (45.2, 5.7), "dep2": (45.3, 5.8)}
    assert {item.station for item in manifest.items} == {"dep1", "dep2"}  # the same names as the stations
    assert not [p for p in manifest.problems if p.relpath == "deployments.csv"]


def test_the_review_page_maps_the_deployments(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    run_on(package, report=True)
    view = page_data(package / "deepfaune-report.html")["map"]
    # 0.1° × 0.1° about 45.25°N: 11.132 km tall, 7.837 km wide (cos 45.25° = 0.70401); 320 / 11.132 = 28.746
    # units a km, so y = 200 ± 160 and x = 300 ± 3.9186 × 28.746 = 300 ± 112.64
    assert [(m["name"], m["lat"], m["lon"], m["x"], m["y"]) for m in view["markers"]] == [
        ("dep1", 45.2, 5.7, 187.4, 360.0), ("dep2", 45.3, 5.8, 412.6, 40.0)]
    assert view["scale"] == {"km": 5.0, "px": 143.73} and view["missing"] == []
    assert [m["animals"] for m in view["markers"]] == [1, 0]  # a fox burst at dep1; a person at dep2


@pytest.mark.parametrize("latitude", ["95", "-inf", "north", ""])
def test_a_bad_latitude_row_is_left_off_the_map_with_a_note(tmp_path: Path, latitude: str):
    package = make_package(tmp_path / "pkg")
    path = package / "deployments.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("dep2,,,45.3,", f"dep2,,,{latitude},"), encoding="utf-8")
    assert f"dep2,,,{latitude},5.8" in path.read_text(encoding="utf-8")
    manifest = read(package)
    assert manifest.station_coordinates == {"dep1": (45.2, 5.7)}
    (note,) = [p for p in manifest.problems if p.relpath == "deployments.csv"]
    assert note.skipped == 0  # a note: every media is still classified
    assert note.reason.startswith("row 2 (deploymentID 'dep2'): latitude ") and "[-90, 90]" in note.reason
    assert len(manifest.items) == 6


def test_coordinates_are_checked_for_range_and_number():
    rows = [{"deploymentID": "a", "latitude": "-90", "longitude": "180"},
            {"deploymentID": "b", "latitude": "10", "longitude": "-180.5"},
            {"deploymentID": "c", "latitude": "NaN", "longitude": "nan"},
            {"deploymentID": "d", "latitude": " 1e1 ", "longitude": "2"}]
    coords, refused = deployment_coordinates(rows)
    assert coords == {"a": (-90.0, 180.0), "d": (10.0, 2.0)}
    assert refused == ["row 2 (deploymentID 'b'): longitude '-180.5' is not a number in [-180, 180]; not on the map",
                       "row 3 (deploymentID 'c'): latitude 'NaN' is not a number in [-90, 90]; longitude 'nan' is "
                       "not a number in [-180, 180]; not on the map"]


def test_a_new_package_from_a_station_tree_has_its_coordinates(tmp_path: Path):
    src = tmp_path / "inDir"
    make_jpeg(src / "StationA" / "fox_1.jpg", width=160, height=120, date=datetime(2024, 5, 3, 6))
    (tmp_path / "deployments.csv").write_text("station;latitude;longitude;deploymentStart;deploymentEnd\n"
                                              "StationA;45.2;5.7;2024-05-01T08:00:00+02:00;2024-05-20T17:00:00+02:00\n",
                                              encoding="utf-8")
    (tmp_path / "meta.yaml").write_text("contributors:\n  - {title: Jane Doe, role: principalInvestigator}\n"
                                        "project:\n  title: T\n  samplingDesign: opportunistic\n"
                                        "  captureMethod: activityDetection\n", encoding="utf-8")
    manifest = read(src, {"deployments_csv": str(tmp_path / "deployments.csv"), "output": str(tmp_path / "new"),
                          "package_metadata": str(tmp_path / "meta.yaml")})
    assert manifest.station_coordinates == {"StationA": (45.2, 5.7)}


def test_example_package_coordinates(shared: Path, tmp_path: Path):
    source = shared / "data" / "camtrap-dp-1.0.2" / "example"
    if not (source / "datapackage.json").is_file():
        pytest.skip("the Camtrap DP example package is not in ../shared")
    target = tmp_path / "example"
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    with open(source / "deployments.csv", newline="", encoding="utf-8") as fh:
        rows = {r["deploymentID"]: r for r in csv.DictReader(fh)}
    manifest = read(target)
    assert set(manifest.station_coordinates) == set(rows) and len(rows) == 4
    assert manifest.station_coordinates["62c200a9"] == (float(rows["62c200a9"]["latitude"]),
                                                        float(rows["62c200a9"]["longitude"])) == (50.699, 4.013)
    assert {item.station for item in manifest.items} == {"62c200a9"}  # its 10 local media: one deployment
