"""Issue 33 item 1: a count per species for a picture that shows several (`--every-animal` finds them): kept with
a person's label in the result store (HumanFields.species_counts, a store of before still read), given in the
review's fields form or an imported CSV in any language of the model, and written where each host holds it:
Camtrap DP one human observation per species with its count (valid against the 1.0.2 profile), camtrapR one
record per species, the folder table a `species_counts` column only when some file has one."""
from __future__ import annotations

import csv
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.api import MediaItem
from deepfaune_plugin.human_fields import FieldValueError, field_value
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.table import read_table
from deepfaune_plugin.taxonomy import LabelReader
from deepfaune_plugin.types import HumanFields, HumanLabel
from camtrapdp_helpers import frictionless_validate, make_package, read_rows
from camtrapdp_helpers import registry as camtrapdp_registry
from fakes import registry_with_fake
from imagegen import make_jpeg
from test_human_fields import camtrapr_season, review, write_csv
from test_review_writeback import T0, go

LABELS = LabelReader(load_card("1.4").class_table())


def test_counts_per_species_read_by_the_one_label_rule():
    assert field_value("species_counts", "renard:2; Meles meles | fox", LABELS) == "fox:3;badger:1"
    assert HumanFields(species_counts="fox:3;badger:1").species() == {"fox": 3, "badger": 1}
    assert field_value("species_counts", " ", LABELS) == ""  # nothing given: not recorded
    for text, why in (("unicorn:2", "species counts 'unicorn:2': a label of the model"),
                      ("fox:0", "species counts 'fox:0': a label of the model"),
                      ("fox:two", "species counts 'fox:two'"), ("empty:1", "'empty' counts no animal")):
        with pytest.raises(FieldValueError, match=why):
            field_value("species_counts", text, LABELS)


def test_a_store_of_before_counts_per_species_is_read_and_takes_them(tmp_path: Path):
    photo = tmp_path / "a.jpg"
    make_jpeg(photo, 64, 48, date=T0, seed=1)
    item = MediaItem(photo, "a.jpg", "")
    store = tmp_path / "store.sqlite"
    db = ResultStore(store)
    db.put_human([(item, HumanLabel("fox", "Ana", T0, HumanFields(count=2, sex="male")))])
    db.close()
    raw = sqlite3.connect(store)  # the human table as it was before counts per species
    with raw:
        raw.execute("ALTER TABLE human DROP COLUMN species_counts")
    raw.close()
    db = ResultStore(store)
    try:
        label = db.human_labels([item])["a.jpg"]
        assert (label.key, label.reviewer, label.fields) == ("fox", "Ana", HumanFields(count=2, sex="male"))
        db.put_human([(item, HumanLabel("fox", "Ana", T0, HumanFields(count=2, species_counts="fox:2;badger:1")))])
        assert db.human_labels([item])["a.jpg"].fields.species() == {"fox": 2, "badger": 1}
    finally:
        db.close()


def test_the_fields_form_keeps_counts_per_species(tmp_path: Path):
    from reviewkit import make_season
    from test_review_app import open_session

    season = make_season(tmp_path)
    session = open_session(season, tmp_path)
    try:
        session.set_labels(["c/IMG_0001.JPG"], "fox")
        session.set_fields(["c/IMG_0001.JPG"], {"species_counts": "renard:2;blaireau"})
        mine = session.human["c/IMG_0001.JPG"]
        assert mine.fields.species_counts == "fox:2;badger:1" and mine.fields.count is None
        from deepfaune_plugin.review.session import ReviewError
        with pytest.raises(ReviewError, match="c/IMG_0001.JPG: species counts 'licorne:2'"):
            session.set_fields(["c/IMG_0001.JPG"], {"species_counts": "licorne:2"})
    finally:
        session.store.close()


def test_camtrapdp_one_human_observation_per_species(tmp_path: Path, shared: Path):
    package = make_package(tmp_path / "pkg")
    store, registry = tmp_path / "store.sqlite", camtrapdp_registry()
    go(package, store, registry)
    corrections = write_csv(tmp_path / "c.csv", [
        ["file", "label", "species_counts", "sex"],
        ["media/dep1/fox_2.jpg", "fox", "renard:2; blaireau:1", "female"],
        ["media/dep1/fox_1.jpg", "fox", "", ""]])
    code, err = review(package, store, registry, "--import", corrections, "--export")
    assert code == 0, err
    assert "camtrapdp: people's sex (sex), species counts (one observation per species) written" in err
    rows = read_rows(package / "observations.csv")
    ours = sorted((r["observationID"], r["mediaID"], r["observationType"], r["scientificName"], r["count"], r["sex"])
                  for r in rows if r["classificationMethod"] == "human" and r["classifiedBy"] == "Ana")
    assert ours == [("deepfaune-review-m01", "m01", "animal", "Vulpes vulpes", "", ""),
                    ("deepfaune-review-m02", "m02", "animal", "Vulpes vulpes", "2", "female"),
                    ("deepfaune-review-m02-badger", "m02", "animal", "Meles meles", "1", "")]
    code, err = review(package, store, registry, "--export")  # a second write back replaces them, adds none
    assert code == 0, err
    again = [r for r in read_rows(package / "observations.csv") if r["classifiedBy"] == "Ana"]
    assert len(again) == 3
    pytest.importorskip("frictionless")
    report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_camtrapr_one_record_per_species(tmp_path: Path):
    tree, store, registry = camtrapr_season(tmp_path)
    before = (tree / "deepfaune_recordTable.csv").read_bytes()
    db = ResultStore(store)
    db.put_human([(MediaItem(tree / "StationA" / "fox_2.jpg", "StationA/fox_2.jpg", ""),
                   HumanLabel("fox", "Ana", T0, HumanFields(sex="male", species_counts="fox:2;badger:3")))])
    db.close()
    go(tree, store, registry, host="camtrapr")
    with open(tree / "deepfaune_recordTable.csv", encoding="utf-8", newline="") as fh:
        rows = [(r["FileName"], r["Species"], r["count"], r["sex"]) for r in csv.DictReader(fh)]
    assert sorted(rows) == [("fox_1.jpg", "fox", "1", ""), ("fox_2.jpg", "badger", "3", ""),
                            ("fox_2.jpg", "fox", "2", "male")]
    assert b"species_counts" not in (tree / "deepfaune_recordTable.csv").read_bytes()
    assert before.splitlines()[0] == (tree / "deepfaune_recordTable.csv").read_bytes().splitlines()[0].rsplit(
        b",sex")[0]


def test_folder_table_column_only_when_given(tmp_path: Path):
    root = tmp_path / "card"
    make_jpeg(root / "fox_1.jpg", 160, 120, date=T0, seed=1)
    make_jpeg(root / "fox_2.jpg", 160, 120, date=T0 + timedelta(seconds=5), seed=2)
    store, registry = tmp_path / "store.sqlite", registry_with_fake()
    go(root, store, registry, host="folder")
    db = ResultStore(store)
    db.put_human([(MediaItem(root / "fox_1.jpg", "fox_1.jpg", ""), HumanLabel("fox", "Ana", T0, HumanFields(count=2)))])
    db.close()
    go(root, store, registry, host="folder")
    assert "species_counts" not in read_table(root / "deepfaune.csv").columns
    db = ResultStore(store)
    db.put_human([(MediaItem(root / "fox_2.jpg", "fox_2.jpg", ""),
                   HumanLabel("fox", "Ana", T0, HumanFields(species_counts="fox:1;badger:2")))])
    db.close()
    go(root, store, registry, host="folder")
    table = read_table(root / "deepfaune.csv").set_index("filename")
    assert table.columns[-1] == "species_counts"
    assert table["species_counts"].to_dict() == {"fox_1.jpg": "", "fox_2.jpg": "fox:1;badger:2"}


def test_timelapse_counts_per_species_in_the_field_named(tmp_path: Path):
    from test_review_writeback import field_by_file, timelapse_registry, timelapse_set
    from timelapse_build import Control
    from deepfaune_plugin.testing import run_cli

    root = tmp_path / "set"
    ddb = timelapse_set(root, None, [Control("Species", "Note"), Control("Counts", "Note")])
    store, registry = tmp_path / "store.sqlite", timelapse_registry()
    go(root, store, registry, write_ddb=True, field="Species")
    corrections = write_csv(tmp_path / "c.csv", [["file", "label", "species_counts"],
                                                 ["cam1/fox_2.jpg", "fox", "fox:2;Meles meles:1"]])
    common = ["--backend", "fake", "--store", store, "--lang", "en", "--threshold", "0.8", "--no-report",
              "--write-ddb", "--field", "Species"]
    ran = run_cli(["review", root, *common, "--import", corrections, "--export"], registry)
    assert ran.code == 0, ran.stderr
    assert "timelapse: no place for species counts (1 file(s)): not written (name one with " \
           "--species-counts-field)" in ran.stderr
    ran = run_cli(["review", root, *common, "--species-counts-field", "Counts", "--export"], registry)
    assert ran.code == 0, ran.stderr
    assert field_by_file(ddb, "Counts") == {"fox_1.jpg": "", "fox_2.jpg": "fox:2;badger:1", "empty_1.jpg": ""}
    assert "timelapse: people's species counts (field Counts) written" in ran.stderr
