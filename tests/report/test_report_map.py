"""The review page's map of the deployments: projection, scale bar, and the view's data (no browser: the
drawn map is checked in test_report_browser.py; the Camtrap DP coordinates in test_camtrapdp_map.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from deepfaune_plugin.report.view import build_view, km_per_degree, project_stations, scale_bar, station_map
from test_report import build_run

# a bounding box 0.2° of latitude by 0.4° of longitude about 60°N: 22.264 km square (cos 60° = 0.5)
THREE = {"A": (59.9, 10.0), "B": (60.1, 10.0), "C": (60.0, 10.4)}


def test_three_stations_are_fitted_to_the_map():
    """The 22.264 km square fits the 320 units of height inside the 40-unit margin of the 600 × 400 map:
    14.373 units a km, 160 units either side of the centre (300, 200); north is up (y grows southward)."""
    points, per_km = project_stations(THREE)
    assert per_km == pytest.approx(320 / 22.264)
    assert points == {"A": (140.0, 360.0), "B": (140.0, 40.0), "C": (460.0, 200.0)}
    assert scale_bar(per_km) == (10.0, 143.73)  # 10 km of 14.373 units: the longest round bar up to 150


def test_scale_bar_follows_latitude():
    """One degree of longitude is 111.32 km at the equator and 55.66 km at 60°: the same two stations 1° apart
    fill the map's width (520 units) both times, so the bar under 150 units is 20 km there and 10 km here."""
    assert km_per_degree(0) == (111.32, pytest.approx(111.32))
    assert km_per_degree(60) == (111.32, pytest.approx(55.66))
    for lat, km in ((0.0, 20.0), (60.0, 10.0)):
        points, per_km = project_stations({"W": (lat, 5.0), "E": (lat, 6.0)})
        assert points == {"W": (40.0, 200.0), "E": (560.0, 200.0)}
        assert per_km == pytest.approx(520 / km_per_degree(lat)[1])
        assert scale_bar(per_km) == (km, 93.42)  # 520 × 20 / 111.32 = 520 × 10 / 55.66
    assert scale_bar(7.0) == (20.0, 140.0) and scale_bar(30.0) == (5.0, 150.0) and scale_bar(31.0) == (2.0, 62.0)


def test_one_station_alone_gets_a_one_km_map():
    points, per_km = project_stations({"solo": (45.2, 5.7)})
    assert points == {"solo": (300.0, 200.0)} and per_km == 320.0  # 1 km over the 320 units of height
    assert scale_bar(per_km) == (0.2, 64.0)
    view = station_map({"solo": (45.2, 5.7)}, {"solo": 2}, {"solo": [("renard", 2)]}, ["solo", "other"])
    assert view["markers"] == [{"name": "solo", "lat": 45.2, "lon": 5.7, "x": 300.0, "y": 200.0, "animals": 2,
                                "r": 14.0, "species": [["renard", 2]]}]
    assert view["missing"] == ["other"]


def test_no_coordinates_no_map_and_bad_ones_are_left_out():
    assert station_map({}, {"a": 1}, {}, ["a"]) is None
    assert station_map({"a": (float("nan"), 5.0), "b": (91.0, 5.0), "c": (45.0, 181.0)}, {}, {}, ["a"]) is None
    view = station_map({"a": (45.0, 5.0), "b": (float("inf"), 5.0)}, {}, {}, ["a", "b"])
    assert [m["name"] for m in view["markers"]] == ["a"] and view["missing"] == ["b"]


def test_the_view_maps_the_manifests_stations(tmp_path: Path):
    """The season of test_report: cam1 has 3 animal sequences (2 of foxes, 1 undefined), cam2 a badger (and a
    person and an empty image, not animals), the top folder an undated fox and no coordinates."""
    summary = build_run(tmp_path)
    assert build_view(summary)["map"] is None  # a plain folder: no coordinates, no map
    summary.manifest.station_coordinates = {"cam1": (45.2, 5.7), "cam2": (45.25, 5.8)}
    view = build_view(summary)["map"]
    by_name = {m["name"]: m for m in view["markers"]}
    assert set(by_name) == {"cam1", "cam2"} and view["missing"] == [""]
    assert by_name["cam1"]["animals"] == 3 and by_name["cam2"]["animals"] == 1
    assert by_name["cam1"]["species"] == [["renard", 2], ["indéfini", 1]]
    assert by_name["cam2"]["species"] == [["blaireau", 1]]
    assert by_name["cam1"]["r"] == 14.0 and by_name["cam2"]["r"] == pytest.approx(5 + 9 * (1 / 3) ** 0.5, abs=0.05)
