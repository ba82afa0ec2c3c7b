"""Issue 32 (repeats in review): the places `--drop-repeats` set aside are shown per station in `deepfaune
review`; a person's Restore is kept in the result store and the next export gives the place's boxes back to
the animals (classified as DeepFaune would), a Confirm leaves the outputs as they were; without the option the
review has no repeats at all."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import resolve_host
from deepfaune_plugin.review.server import ReviewApp, ReviewServer
from deepfaune_plugin.review.session import ReviewError, ReviewSession
from deepfaune_plugin.store import ResultStore, StoreError
from deepfaune_plugin.testing import registry_with, run_cli
from test_repeats import BoxesBackend, _station
from test_review_app import CODE, TOKEN, Client

IMAGES = 12
DEER = range(3, 8)  # a red deer walks through these images (never 10 at one place)
DROP = ["--drop-repeats", "--repeat-min-images", "10"]


def season(tmp_path: Path, *options: str):
    """12 images of one station with the "branch" (read as a wild boar, the most confident box) in all, run once
    into a result store; returns (source, registry, store, backend)."""
    src = tmp_path / "src"
    backend = BoxesBackend(_station(src, IMAGES, DEER))
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "boxes", "--store", store, "-q", "--no-report", "--lang", "en",
                   *options], registry)
    assert ran.code == 0, ran.stderr
    return src, registry, store, backend


def open_review(src, registry, store, backend, tmp_path, reviewer="Ana", drop=True) -> ReviewSession:
    settings = RunSettings(backend="boxes", lang="en", drop_repeats=drop, repeat_min_images=10)
    return ReviewSession.open(src, resolve_host(registry, "auto", src), backend, settings,
                              ResultStore(store, shared=True), {"output": None}, tmp_path / "thumbs", reviewer,
                              True, log=lambda msg: None)


def export(src, registry, store) -> dict[str, dict]:
    """`deepfaune review --export` (the run's options, --drop-repeats included, taken from its record)."""
    ran = run_cli(["review", src, "--export", "--backend", "boxes", "--store", store, "-q", "--no-report",
                   "--lang", "en"], registry)
    assert ran.code == 0, ran.stderr
    with open(src / "deepfaune.csv", newline="", encoding="utf-8") as fh:
        return {row["filename"]: row for row in csv.DictReader(fh)}


def test_the_review_lists_the_place_and_restore_gives_its_boxes_back_in_the_export(tmp_path):
    src, registry, store, backend = season(tmp_path, *DROP)
    before = export(src, registry, store)
    assert {(r["predictionbase"], r["warning"]) for r in before.values()} == {
        ("empty", "1 animal box set aside as a repeat"), ("red deer", "1 animal box set aside as a repeat")}
    session = open_review(src, registry, store, backend, tmp_path)
    try:
        shown = session.repeats()
        assert shown["on"] is True
        [place] = shown["groups"]
        assert (place["station"], place["f"], place["n"], place["b"], place["decision"]) == (
            "st1", "st1/img00.jpg", IMAGES, [0.125, 0.125, 0.375, 0.375], None)
        assert place["fid"] is not None and len(place["files"]) == IMAGES
        after = session.set_repeat(place["id"], "restore")
        assert (after["groups"][0]["decision"], after["groups"][0]["by"], after["groups"][0]["mine"]) == (
            "restore", "Ana", "restore")
    finally:
        session.store.close()
    rows = export(src, registry, store)
    for k in range(IMAGES):  # the branch counts again: DeepFaune's box, its label, no warning
        row = rows[f"st1/img{k:02d}.jpg"]
        assert (row["predictionbase"], row["warning"], float(row["bbox_x"])) == ("wild boar", "", 0.125)


def test_confirm_keeps_the_place_aside_and_a_later_restore_by_another_reviewer_wins(tmp_path):
    src, registry, store, backend = season(tmp_path, *DROP)
    before = export(src, registry, store)
    session = open_review(src, registry, store, backend, tmp_path)
    try:
        place = session.repeats()["groups"][0]["id"]
        assert session.set_repeat(place, "confirm")["groups"][0]["decision"] == "confirm"
    finally:
        session.store.close()
    assert export(src, registry, store) == before  # confirmed: the outputs as they were
    other = open_review(src, registry, store, backend, tmp_path, reviewer="Ben")
    try:
        [g] = other.repeats()["groups"]
        assert (g["decision"], g["by"], g["mine"]) == ("confirm", "Ana", None)
        with pytest.raises(ReviewError, match="no place set aside as a repeat is called 'nope'"):
            other.set_repeat("nope", "restore")
        other.set_repeat(place, "restore")
        kept = other.store.repeat_decisions()
        assert sorted((d.reviewer, d.decision) for d in kept) == [("Ana", "confirm"), ("Ben", "restore")]
    finally:
        other.store.close()
    assert export(src, registry, store)["st1/img00.jpg"]["predictionbase"] == "wild boar"


def test_the_api_lists_and_takes_decisions(tmp_path):
    src, registry, store, backend = season(tmp_path, *DROP)
    session = open_review(src, registry, store, backend, tmp_path)
    server = ReviewServer(ReviewApp(session, TOKEN, code=CODE)).start()
    try:
        client = Client(server)
        cookie = {"Cookie": f"{server.app.cookie}={TOKEN}"}
        status, _, data = client.request("GET", "/api/repeats", headers=cookie)
        assert status == 200
        place = json.loads(data)["groups"][0]["id"]
        status, _, data = client.request("POST", "/api/repeat", {"place": place, "decision": "sideways"},
                                         headers={"X-Review-Token": TOKEN})
        assert status == 400
        status, _, data = client.request("POST", "/api/repeat", {"place": place, "decision": "restore"},
                                         headers={"X-Review-Token": TOKEN})
        assert status == 200 and json.loads(data)["groups"][0]["decision"] == "restore"
        status, _, data = client.request("POST", "/api/repeat", {"place": place, "decision": None},
                                         headers={"X-Review-Token": TOKEN})
        assert json.loads(data)["groups"][0]["decision"] is None
    finally:
        server.stop()
        session.store.close()


def test_without_drop_repeats_the_review_has_no_repeats(tmp_path):
    src, registry, store, backend = season(tmp_path)
    session = open_review(src, registry, store, backend, tmp_path, drop=False)
    try:
        assert session.repeats() == {"on": False, "iou": 0.85, "min_images": 10, "groups": []}
    finally:
        session.store.close()


def test_a_malformed_decision_in_the_store_is_refused_by_name(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    try:
        store.set_repeat_decision("st1", (0.1, 0.1, 0.2, 0.2), "restore", "Ana")
        store.db.execute("UPDATE repeat_decisions SET box='[0.1, 7]'")
        with pytest.raises(StoreError, match="the repeat decision at station 'st1' has a malformed box"):
            store.repeat_decisions()
        with pytest.raises(ValueError, match="not 'maybe'"):
            store.set_repeat_decision("st1", (0.1, 0.1, 0.2, 0.2), "maybe", "Ana")
    finally:
        store.close()


def test_a_restored_place_beside_a_confirmed_one_is_classified_as_deepfaune_would(tmp_path):
    """The branch (DeepFaune's box) confirmed, a second fixed box ("the rock") restored: the rock is the box left,
    which no output classified yet; the export classifies it in detector mode "existing" (the label of the box
    there), never a label taken from the branch."""
    from deepfaune_plugin.api import EXISTING_DETECTIONS

    src = tmp_path / "src"
    scenes = _station(src, IMAGES, DEER)
    for entries in scenes.values():
        entries.append(((40.0, 40.0, 56.0, 56.0), 0.8, "chamois"))
    backend = BoxesBackend(scenes)
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    assert run_cli(["run", src, "--backend", "boxes", "--store", store, "-q", "--no-report", "--lang", "en",
                    *DROP], registry).code == 0
    session = open_review(src, registry, store, backend, tmp_path)
    try:
        places = {tuple(g["b"]): g["id"] for g in session.repeats()["groups"]}
        assert sorted(places) == [(0.125, 0.125, 0.375, 0.375), (0.625, 0.625, 0.875, 0.875)]
        session.set_repeat(places[(0.125, 0.125, 0.375, 0.375)], "confirm")
        session.set_repeat(places[(0.625, 0.625, 0.875, 0.875)], "restore")
    finally:
        session.store.close()
    backend.opened.clear()
    rows = export(src, registry, store)
    assert EXISTING_DETECTIONS in backend.opened  # the rock's box went through the classifier on its own
    for k in range(IMAGES):
        row = rows[f"st1/img{k:02d}.jpg"]
        assert (row["predictionbase"], row["warning"], row["bbox_x"]) == (
            "chamois", "1 animal box set aside as a repeat", "0.625"), row


def test_decisions_are_people_s_data_counted_and_kept_by_store_clear(tmp_path):
    from deepfaune_plugin.store import clear_results, store_info

    path = tmp_path / "s.sqlite"
    store = ResultStore(path)
    try:
        store.set_repeat_decision("st1", (0.125, 0.125, 0.375, 0.375), "confirm", "Ana")
        store.set_repeat_decision("st1", (0.125, 0.125, 0.375, 0.375), "restore", "Ana")  # her own, replaced
        store.set_repeat_decision("st1", (0.125, 0.125, 0.375, 0.375), "confirm", "Ben")
        assert store_info(path).labels == 2
        clear_results(store)
        assert sorted((d.reviewer, d.decision, d.box) for d in store.repeat_decisions()) == [
            ("Ana", "restore", (0.125, 0.125, 0.375, 0.375)), ("Ben", "confirm", (0.125, 0.125, 0.375, 0.375))]
        store.set_repeat_decision("st1", (0.125, 0.125, 0.375, 0.375), None, "Ben")
        assert [d.reviewer for d in store.repeat_decisions()] == ["Ana"]
    finally:
        store.close()


def _shown(session: ReviewSession) -> dict[str, str]:
    return {f["f"]: f["machine"]["label"] for s in session.page(0, size=200)["sequences"] for f in s["files"]}


def test_the_review_shows_the_season_as_the_run_decided_it_repeats_aside_then_restored(tmp_path):
    src, registry, store, backend = season(tmp_path, *DROP)
    table = export(src, registry, store)
    session = open_review(src, registry, store, backend, tmp_path)
    try:  # the branch aside, the deer's box (classified by the run in detector mode "existing") read back
        assert _shown(session) == {rel: row["predictionbase"] for rel, row in table.items()}
        assert _shown(session)["st1/img05.jpg"] == "red deer" and _shown(session)["st1/img00.jpg"] == "empty"
        session.set_repeat(session.repeats()["groups"][0]["id"], "restore")
    finally:
        session.store.close()
    again = open_review(src, registry, store, backend, tmp_path)
    try:
        assert set(_shown(again).values()) == {"wild boar"}
        assert again.repeats()["groups"][0]["decision"] == "restore"  # still listed, to be confirmed instead
    finally:
        again.store.close()
