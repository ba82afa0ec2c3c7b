"""camtrapR's independence filter, delta times and n_images against hand-computed examples.

Each expectation below was worked out by hand from camtrapR's assessTemporalIndependence()
(recordTable.R / variousOtherHelperFunctions.R, camtrapR 2.x–3.0.x).
"""
from __future__ import annotations

from datetime import datetime

import pytest

from deepfaune_plugin.hooks.camtrapr.independence import (
    LAST_INDEPENDENT, LAST_RECORD, Record, assess, assess_station, r_round, remove_duplicates,
)


def t(h: int, m: int, s: int = 0, day: int = 1) -> datetime:
    return datetime(2024, 5, day, h, m, s)


def rows(result):
    """(time, delta secs, mins, hours, days, n_images) per kept record."""
    return [(r.record.time, r.delta_secs, r.delta_mins, r.delta_hours, r.delta_days, r.n_images) for r in result]


@pytest.mark.parametrize("x, digits, expected", [
    (0.05, 1, 0.0),    # binary 0.05 is a tie between 0.0 and 0.1 for R >= 4: even → 0.0 (Python says 0.1)
    (0.15, 1, 0.1),
    (0.25, 1, 0.2),    # exact tie → even
    (0.35, 1, 0.3),
    (0.55, 1, 0.6),
    (0.665, 1, 0.7),
    (39.916666666666664, 1, 39.9),
    (2.5, 0, 2.0),     # nearbyint: half to even
    (3.5, 0, 4.0),
    (1799.6, 0, 1800.0),
])
def test_r_round_matches_r4(x, digits, expected):
    assert r_round(x, digits) == expected


def test_python_round_would_differ_on_three_seconds():
    # 3 s = 0.05 min: the case where copying Python's round() would print 0.1 where camtrapR prints 0
    assert round(3 / 60, 1) == 0.1 and r_round(3 / 60, 1) == 0.0


FOX = [t(10, 0), t(10, 0), t(10, 10), t(10, 25), t(10, 50), t(12, 0)]  # first two: same second


def fox_records(station="A"):
    return [Record(station, "fox", when, payload=i) for i, when in enumerate(FOX)]


def test_last_independent_record_30_min():
    # 10:00 first (delta 0); 10:10 is 600 s after 10:00 → dependent; 10:25 is 1500 s after 10:00 → dependent;
    # 10:50 is 3000 s after 10:00 → independent; 12:00 is 4200 s after 10:50 → independent.
    # n_images of 10:00 = 10:00, 10:10, 10:25 (the same-second duplicate was dropped first).
    out = assess_station(fox_records(), min_delta_time=30, compared_to=LAST_INDEPENDENT)
    assert rows(out) == [
        (t(10, 0), 0, 0, 0, 0, 3),
        (t(10, 50), 3000, 50.0, 0.8, 0.0, 1),   # 50/60 = 0.833 → 0.8 h; 0.8/24 = 0.033 → 0.0 d
        (t(12, 0), 4200, 70.0, 1.2, 0.0, 1),    # 70/60 = 1.167 → 1.2 h; 1.2/24 = 0.05 → 0.0 d
    ]
    assert out[0].record.payload == 0  # the first of the two same-second images is the one kept


def test_last_record_30_min():
    # each gap to the previous image: 600, 900, 1500 (< 1800: dependent), then 4200 → independent
    out = assess_station(fox_records(), min_delta_time=30, compared_to=LAST_RECORD)
    assert rows(out) == [
        (t(10, 0), 0, 0, 0, 0, 4),
        (t(12, 0), 4200, 70.0, 1.2, 0.0, 1),
    ]


def test_zero_min_delta_keeps_every_record_but_same_second_duplicates():
    recs = [Record("A", "fox", w) for w in (t(10, 0), t(10, 0), t(10, 0, 3), t(10, 0, 45), t(11, 30, 0))]
    out = assess_station(recs, min_delta_time=0)
    assert rows(out) == [
        (t(10, 0), 0, 0, 0, 0, 1),
        (t(10, 0, 3), 3, 0.0, 0.0, 0.0, 1),     # 3/60 = 0.05 → 0 as in R
        (t(10, 0, 45), 42, 0.7, 0.0, 0.0, 1),
        (t(11, 30), 5355, 89.2, 1.5, 0.1, 1),   # 89.25 → 89.2 (0.25 tie → even); 89.2/60 = 1.487 → 1.5; 1.5/24 → 0.1
    ]


def test_threshold_is_inclusive():
    recs = [Record("A", "fox", w) for w in (t(10, 0), t(10, 29, 59), t(10, 30), t(11, 0))]
    out = assess_station(recs, min_delta_time=30, compared_to=LAST_INDEPENDENT)
    # 10:29:59 is 1799 s after 10:00 (dependent); 10:30 is exactly 1800 s → independent; 11:00 → 1800 s → independent
    assert [(r.record.time, r.delta_secs, r.n_images) for r in out] == [
        (t(10, 0), 0, 2), (t(10, 30), 1800, 1), (t(11, 0), 1800, 1)]


def test_species_and_stations_are_separate_and_ordered_like_camtrapr():
    recs = [
        Record("B", "fox", t(9, 0)),
        Record("A", "fox", t(10, 0)), Record("A", "badger", t(10, 5)), Record("A", "fox", t(10, 20)),
        Record("A", "badger", t(12, 0)),
    ]
    out = assess(recs, min_delta_time=60, compared_to=LAST_INDEPENDENT)
    # station A first; inside a station: species (alphabetical), then time; the badger at 10:05 does not
    # break the fox event, and each species' first record has delta 0
    assert [(r.record.station, r.record.species, r.record.time, r.delta_secs, r.n_images) for r in out] == [
        ("A", "badger", t(10, 5), 0, 1),
        ("A", "badger", t(12, 0), 6900, 1),
        ("A", "fox", t(10, 0), 0, 2),
        ("B", "fox", t(9, 0), 0, 1),
    ]


def test_cameras_independent_and_camtrapr_n_images_quirk():
    recs = [Record("S", "fox", t(10, 0), camera="A"), Record("S", "fox", t(10, 1), camera="B"),
            Record("S", "fox", t(10, 2), camera="A")]
    together = assess_station(recs, min_delta_time=60, cameras_independent=False)
    assert [(r.record.camera, r.delta_secs, r.n_images) for r in together] == [("A", 0, 3)]
    apart = assess_station(recs, min_delta_time=60, cameras_independent=True)
    # B's first record is independent (delta 0). camtrapR counts A's event only up to the next independent
    # row of the table (B at 10:01), so the dependent A image at 10:02 is in no event: n_images 1 and 1.
    assert [(r.record.camera, r.record.time, r.delta_secs, r.n_images) for r in apart] == [
        ("A", t(10, 0), 0, 1), ("B", t(10, 1), 0, 1)]


def test_same_second_at_two_cameras_is_a_duplicate_only_when_cameras_are_pooled():
    recs = [Record("S", "fox", t(10, 0), camera="B"), Record("S", "fox", t(10, 0), camera="A")]
    assert [r.camera for r in remove_duplicates(recs, cameras_independent=False)] == ["B"]
    assert [r.camera for r in remove_duplicates(recs, cameras_independent=True)] == ["A", "B"]


def test_long_gap_rounding_chain():
    # 1 day 12 h 3 min 30 s = 129810 s → 2163.5 min → 36.1 h (36.058) → 1.5 d (1.504)
    recs = [Record("A", "fox", t(0, 0)), Record("A", "fox", t(12, 3, 30, day=2))]
    assert rows(assess_station(recs))[1][1:5] == (129810, 2163.5, 36.1, 1.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="deltaTimeComparedTo"):
        assess_station(fox_records(), 30, "lastIndependent")
    with pytest.raises(ValueError, match="minDeltaTime"):
        assess_station(fox_records(), -1)
