"""Issue 33 items 1 and 4 on the Camtrap DP 1.0.2 example package itself (not a generated one): labels and what
people record, imported from a CSV and written back (`deepfaune review SRC --import c.csv --export`), land in
the human observations of the media named, beside the example's own observations and DeepFaune's, and the
package stays valid against the profile; a box a person draws in the review's box editor is the human
observation's bbox. Media the example gives by URL are made local (as tests/test_evaluate.py does) for two of
them; the rest stay remote and are skipped (no network), as a real run skips them."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.pipeline import resolve_host
from deepfaune_plugin.review.session import ReviewSession
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli
from camtrapdp_helpers import frictionless_validate, read_rows
from reviewkit import fox_at
from test_evaluate import BLANK, FOX, example_package

HERON = "media/20210531082538-RCNX0031.JPG"  # one of the example's own local photos (a grey heron)


def season(tmp_path: Path):
    pkg = example_package(tmp_path, {FOX, BLANK})
    backend = StoredLogitsBackend({f"media/{FOX}.jpg": logits_for("1.4", "fox", high=20.0)}, default=fox_at(0.72))
    registry = registry_with(backends=[backend])
    common = ["--backend", "logits", "--store", str(tmp_path / "store.sqlite"), "--lang", "en", "--no-report"]
    ran = run_cli(["run", pkg, *common], registry)
    assert ran.code == 3, ran.stderr  # the media still given by URL are skipped (no network): said, exit 3
    return pkg, registry, common, backend


def media_ids(pkg: Path) -> dict[str, str]:
    return {r["filePath"]: r["mediaID"] for r in read_rows(pkg / "media.csv")}


def test_import_then_export_on_the_example_package(tmp_path, shared):
    pytest.importorskip("frictionless")
    pkg, registry, common, backend = season(tmp_path)
    before = read_rows(pkg / "observations.csv")
    corrections = tmp_path / "c.csv"
    with open(corrections, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([
            ["file", "label", "count", "sex", "life_stage", "behaviour", "individual", "comment"],
            [HERON, "oiseau", "2", "female", "adult", "fishing", "", "two herons at the bank"],
            [f"media/{FOX}.jpg", "Vulpes vulpes", "1", "Male", "juvenile", "walking", "F-12", ""],
            [f"media/{BLANK}.jpg", "empty", "", "", "", "", "", ""]])
    ran = run_cli(["review", pkg, *common, "--reviewer", "Ana Lopez", "--import", corrections, "--export"], registry)
    assert ran.code in (0, 3), ran.stderr
    assert "c.csv: 3 label(s) imported (Ana Lopez: 3)" in ran.stderr
    assert "camtrapdp: people's count (count), sex (sex), life stage (lifeStage), behaviour (behavior), " \
           "individual (individualID), comment (observationComments) written" in ran.stderr
    assert backend.opened == 1  # the export ran no model
    ids = media_ids(pkg)
    rows = read_rows(pkg / "observations.csv")
    human = {r["mediaID"]: r for r in rows if r["classificationMethod"] == "human" and r["classifiedBy"] == "Ana Lopez"}
    assert sorted(human) == sorted([ids[HERON], FOX, BLANK])
    cols = ("observationType", "scientificName", "count", "sex", "lifeStage", "behavior", "individualID",
            "observationComments", "observationLevel")
    assert {m: tuple(human[m][c] for c in cols) for m in human} == {
        ids[HERON]: ("animal", "Aves", "2", "female", "adult", "fishing", "", "two herons at the bank", "media"),
        FOX: ("animal", "Vulpes vulpes", "1", "male", "juvenile", "walking", "F-12", "", "media"),
        BLANK: ("blank", "", "", "", "", "", "", "", "media")}
    assert all(r in rows for r in before)  # the example's own observations, all of them, as they were
    report = frictionless_validate(pkg, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_a_box_drawn_in_the_review_is_the_human_observations_bbox(tmp_path, shared):
    pytest.importorskip("frictionless")
    pkg, registry, common, backend = season(tmp_path)
    host = resolve_host(registry, "auto", pkg)
    session = ReviewSession.open(pkg, host, backend, RunSettings(backend="logits", lang="en"),
                                 ResultStore(tmp_path / "store.sqlite", shared=True), {"output": None},
                                 tmp_path / "thumbs", "Ana Lopez", True, log=lambda msg: None)
    try:  # what the box editor sends (/api/boxes): a large person and the heron, fractions of the picture
        session.set_boxes(HERON, [{"c": "person", "x": 0.0, "y": 0.0, "w": 0.5, "h": 1.0},
                                  {"c": "animal", "x": 0.25, "y": 0.5, "w": 0.25, "h": 0.25}])
        session.set_labels([HERON], "bird")
    finally:
        session.store.close()
    ran = run_cli(["review", pkg, *common, "--reviewer", "Ana Lopez", "--export"], registry)
    assert ran.code in (0, 3), ran.stderr
    rows = read_rows(pkg / "observations.csv")
    heron = media_ids(pkg)[HERON]
    human = [r for r in rows if r["mediaID"] == heron and r["classificationMethod"] == "human"
             and r["classifiedBy"] == "Ana Lopez"]
    # the label's box: the largest of its kind (the animal), not the larger person box
    assert [(r["scientificName"], r["bboxX"], r["bboxY"], r["bboxWidth"], r["bboxHeight"]) for r in human] == [
        ("Aves", "0.25", "0.5", "0.25", "0.25")]
    machine = [r for r in rows if r["mediaID"] == heron and r["classifiedBy"].startswith("DeepFaune")]
    assert machine and all(r["bboxX"] != "0.25" for r in machine)  # DeepFaune's own row keeps the detector's box
    report = frictionless_validate(pkg, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
