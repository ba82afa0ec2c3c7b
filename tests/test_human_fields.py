"""What people record besides a label (issue 33 items 1 and 4): count, sex, life stage, behaviour, individual and
comment, kept per reviewer in the result store, imported from a CSV (`deepfaune review SRC --import c.csv`), and
written by each host where it holds them: Camtrap DP's human observation (valid against the 1.0.2 profile), the
Timelapse fields named by --count-field..., camtrapR's record table and the folder table as columns."""
from __future__ import annotations

import csv
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.api import MediaItem
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.store import ResultStore, export_labels
from deepfaune_plugin.table import read_table
from deepfaune_plugin.testing import run_cli
from deepfaune_plugin.types import HumanFields, HumanLabel
from camtrapdp_helpers import frictionless_validate, make_package, read_rows
from camtrapdp_helpers import registry as camtrapdp_registry
from fakes import registry_with_fake
from imagegen import make_jpeg
from test_review_writeback import T0, field_by_file, go, timelapse_registry, timelapse_set
from timelapse_build import Control


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def review(src: Path, store: Path, registry, *more) -> tuple[int, str]:
    ran = run_cli(["review", src, "--backend", "fake", "--store", store, "--lang", "en", "--threshold", "0.8",
                   "--reviewer", "Ana", "--no-report", *more], registry)
    return ran.code, ran.stderr


HEADER = ["file", "label", "count", "sex", "life_stage", "behaviour", "individual", "comment", "reviewer"]


# ---------------------------------------------------------------- the store

def test_old_store_migrated_without_loss_and_two_reviewers_side_by_side(tmp_path: Path):
    photo = tmp_path / "a.jpg"
    make_jpeg(photo, 64, 48, date=T0, seed=1)
    store = tmp_path / "store.sqlite"
    ResultStore(store).close()
    db = sqlite3.connect(store)  # a store of before people's fields: one label per file
    with db:
        db.execute("DROP TABLE human")
        db.execute("CREATE TABLE human (content TEXT NOT NULL, size INTEGER NOT NULL, relpath TEXT NOT NULL, "
                   "label TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (content, size))")
    db.close()
    item = MediaItem(photo, "a.jpg", "")
    old = ResultStore(store)  # still of the old table here? set it through the old layout first
    old.close()
    db = sqlite3.connect(store)
    assert "count" in [r[1] for r in db.execute("PRAGMA table_info(human)")]  # migrated on open
    db.close()

    store_ = ResultStore(store)
    try:
        store_.put_human([(item, HumanLabel("fox", "Ana", datetime(2024, 5, 1, 9), HumanFields(count=2, sex="male")))])
        store_.put_human([(item, HumanLabel("badger", "Bob", datetime(2024, 5, 2, 9)))])
        label = store_.human_labels([item])["a.jpg"]
        assert (label.key, label.reviewer) == ("badger", "Bob")  # the latest decides
        assert [(o.key, o.reviewer, o.fields.count, o.fields.sex) for o in label.others] == [("fox", "Ana", 2, "male")]
        store_.set_human([(item, "fox")], "Ana")  # Ana relabels: her fields stay, Bob's label stays beside
        records = store_.human_records([item])["a.jpg"]
        assert sorted((h.reviewer, h.key, h.fields.count) for h in records) == [("Ana", "fox", 2), ("Bob", "badger", None)]
        store_.set_human([(item, None)], "Bob")  # Bob withdraws his: Ana's alone
        assert store_.human_labels([item])["a.jpg"].others == ()
    finally:
        store_.close()
    export_labels(store, tmp_path / "labels.csv")
    with open(tmp_path / "labels.csv", encoding="utf-8") as fh:
        saved = list(csv.DictReader(fh))
    assert [(r["relpath"], r["label"], r["reviewer"], r["count"], r["sex"]) for r in saved] == [
        ("a.jpg", "fox", "Ana", "2", "male")]


def test_old_labels_survive_the_migration(tmp_path: Path):
    store = tmp_path / "store.sqlite"
    ResultStore(store).close()
    db = sqlite3.connect(store)
    with db:
        db.execute("DROP TABLE human")
        db.execute("CREATE TABLE human (content TEXT NOT NULL, size INTEGER NOT NULL, relpath TEXT NOT NULL, "
                   "label TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (content, size))")
        db.execute("INSERT INTO human VALUES ('c1', 10, 'x.jpg', 'fox', 'Ana', '2024-05-01T09:00:00')")
    db.close()
    ResultStore(store).close()
    db = sqlite3.connect(store)
    assert db.execute("SELECT content, size, relpath, label, reviewer, at, count, sex FROM human").fetchall() == [
        ("c1", 10, "x.jpg", "fox", "Ana", "2024-05-01T09:00:00", None, "")]
    db.close()


# ---------------------------------------------------------------- --import, Camtrap DP

def test_import_then_export_writes_camtrapdp_fields_valid(tmp_path: Path, shared: Path):
    package = make_package(tmp_path / "pkg")
    store, registry = tmp_path / "store.sqlite", camtrapdp_registry()
    go(package, store, registry)
    corrections = write_csv(tmp_path / "c.csv", [
        HEADER,
        ["media/dep1/fox_2.jpg", "Cervus elaphus", "3", "Female", "juvenile", "grazing", "RD-7", "two calves", ""],
        ["media/dep1/fox_1.jpg", "renard", "1", "male", "adult", "", "", "", "Bob"],
        ["media/dep1/nowhere.jpg", "fox", "1", "", "", "", "", "", ""],
        ["media/dep1/fox_3.jpg", "fox", "2", "both", "", "", "", "", ""],
        ["media/dep1/empty_1.jpg", "unicorn", "", "", "", "", "", "", ""],
        ["media/dep1/fox_3.jpg", "fox", "0", "", "", "", "", "", ""],
    ])
    code, err = review(package, store, registry, "--import", corrections, "--export")
    assert code == 3, err  # refused rows: the import was incomplete
    assert "c.csv: 2 label(s) imported (Ana: 1, Bob: 1); 4 row(s) refused" in err
    assert "c.csv line 4 (media/dep1/nowhere.jpg): not a media file of the source" in err
    assert "c.csv line 5 (media/dep1/fox_3.jpg): sex 'both': one of female, male is expected" in err
    assert "c.csv line 6 (media/dep1/empty_1.jpg): label 'unicorn' is no label of model" in err
    assert "c.csv line 7 (media/dep1/fox_3.jpg): count 0: a whole number from 1 to 100,000 is expected" in err
    assert "camtrapdp: people's count (count), sex (sex), life stage (lifeStage), behaviour (behavior), " \
           "individual (individualID), comment (observationComments) written" in err
    rows = read_rows(package / "observations.csv")
    human = {r["mediaID"]: r for r in rows if r["observationID"].startswith("deepfaune-review-")}
    assert sorted(human) == ["m01", "m02"]
    assert {k: human["m02"][k] for k in ("scientificName", "count", "sex", "lifeStage", "behavior", "individualID",
                                         "observationComments", "classifiedBy")} == {
        "scientificName": "Cervus elaphus", "count": "3", "sex": "female", "lifeStage": "juvenile",
        "behavior": "grazing", "individualID": "RD-7", "observationComments": "two calves", "classifiedBy": "Ana"}
    assert (human["m01"]["scientificName"], human["m01"]["count"], human["m01"]["sex"], human["m01"]["classifiedBy"]) \
        == ("Vulpes vulpes", "1", "male", "Bob")
    machine = next(r for r in rows if r["observationID"] == "deepfaune-m02")
    assert machine["sex"] == "" and machine["classificationMethod"] == "machine"  # DeepFaune's row as it was
    pytest.importorskip("frictionless")
    report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


def test_import_refuses_a_file_without_columns_and_keeps_nothing(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    store, registry = tmp_path / "store.sqlite", camtrapdp_registry()
    go(package, store, registry)
    code, err = review(package, store, registry, "--import", write_csv(tmp_path / "c.csv", [["name", "x"], ["a", "b"]]),
                       "--export")
    assert code != 0 and "needs a file column (file, relpath, filename, path) and a label column" in err


def test_two_reviewers_conflict_is_said_and_latest_written(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    store, registry = tmp_path / "store.sqlite", camtrapdp_registry()
    go(package, store, registry)
    corrections = write_csv(tmp_path / "c.csv", [
        ["file", "label", "reviewer", "at"],
        ["media/dep1/fox_2.jpg", "badger", "Bob", "2024-05-01T09:00:00"],
        ["media/dep1/fox_2.jpg", "red deer", "Ana", "2024-05-02T09:00:00"],
    ])
    code, err = review(package, store, registry, "--import", corrections, "--export")
    assert code == 0, err
    assert ("1 file(s) labelled differently by several reviewers; the latest label is written, e.g. "
            "media/dep1/fox_2.jpg: red deer by Ana (Bob: badger)") in err
    human = [r for r in read_rows(package / "observations.csv") if r["observationID"] == "deepfaune-review-m02"]
    assert [(r["scientificName"], r["classifiedBy"]) for r in human] == [("Cervus elaphus", "Ana")]


# ---------------------------------------------------------------- Timelapse

def test_timelapse_count_and_sex_fields_in_the_ddb(tmp_path: Path):
    root = tmp_path / "set"
    ddb = timelapse_set(root, None, [Control("Species", "Note"), Control("Count", "Counter", "0"),
                                     Control("Sex", "FixedChoice", choices=("Female", "Male", "Unknown")),
                                     Control("Reviewed", "Flag", "false")])
    store, registry = tmp_path / "store.sqlite", timelapse_registry()
    go(root, store, registry, write_ddb=True, field="Species")
    corrections = write_csv(tmp_path / "c.csv", [
        ["file", "label", "count", "sex", "behaviour"],
        ["cam1/fox_2.jpg", "fox", "2", "male", "running"], ["cam1/empty_1.jpg", "blaireau", "1", "", ""]])
    ran = run_cli(["review", root, "--backend", "fake", "--store", store, "--lang", "en", "--threshold", "0.8",
                   "--no-report", "--write-ddb", "--field", "Species", "--count-field", "Count", "--sex-field", "Sex",
                   "--import", corrections, "--export"], registry)
    assert ran.code == 0, ran.stderr
    assert field_by_file(ddb, "Count") == {"fox_1.jpg": "0", "fox_2.jpg": "2", "empty_1.jpg": "1"}
    assert field_by_file(ddb, "Sex") == {"fox_1.jpg": "", "fox_2.jpg": "Male", "empty_1.jpg": ""}
    assert field_by_file(ddb, "Species")["empty_1.jpg"] == "badger"
    assert "timelapse: people's count (field Count), sex (field Sex) written" in ran.stderr
    assert "timelapse: no place for behaviour (1 file(s)): not written (name one with --behaviour-field)" in ran.stderr
    ran = run_cli(["review", root, "--backend", "fake", "--store", store, "--no-report", "--write-ddb",
                   "--field", "Species", "--count-field", "Species", "--export"], registry)
    assert ran.code != 0 and "--count-field Species is also the --field or --reviewed-field" in ran.stderr
    ran = run_cli(["review", root, "--backend", "fake", "--store", store, "--no-report", "--write-ddb",
                   "--count-field", "Sex", "--export"], registry)  # the export's record still says --sex-field Sex
    assert ran.code == 1 and "--sex-field Sex is also the --count-field: choose another field" in ran.stderr
    for record in root.glob("*run.json"):  # no record to take options from: only those given count
        record.unlink()
    ran = run_cli(["review", root, "--backend", "fake", "--store", store, "--no-report", "--write-ddb",
                   "--count-field", "Sex", "--export"], registry)  # a count naming none of the choices: said
    assert "field Sex: 2 file(s) not given the count a person recorded, which is not one of the field's choices " \
           "(Female, Male, Unknown): 1, 2" in ran.stderr
    ran = run_cli(["review", root, "--backend", "fake", "--store", store, "--no-report", "--write-ddb",
                   "--count-field", "Reviewed", "--export"], registry)
    assert "--count-field Reviewed: a Flag field cannot hold a count" in ran.stderr


# ---------------------------------------------------------------- camtrapR and the folder table

def test_folder_table_columns_only_with_values(tmp_path: Path):
    root = tmp_path / "card"
    make_jpeg(root / "fox_1.jpg", 160, 120, date=T0, seed=1)
    make_jpeg(root / "fox_2.jpg", 160, 120, date=T0 + timedelta(seconds=5), seed=2)
    store, registry = tmp_path / "store.sqlite", registry_with_fake()
    go(root, store, registry, host="folder")
    plain = (root / "deepfaune.csv").read_bytes()
    db = ResultStore(store)
    db.put_human([(MediaItem(root / "fox_1.jpg", "fox_1.jpg", ""), HumanLabel("fox", "Ana", T0))])
    db.close()
    go(root, store, registry, host="folder")
    assert "sex" not in read_table(root / "deepfaune.csv").columns  # a label alone: no people's columns
    db = ResultStore(store)
    db.put_human([(MediaItem(root / "fox_2.jpg", "fox_2.jpg", ""),
                   HumanLabel("fox", "Ana", T0, HumanFields(count=4, sex="female", comment="=cmd")))])
    db.close()
    go(root, store, registry, host="folder")
    table = read_table(root / "deepfaune.csv").set_index("filename")
    assert list(table.columns[-2:]) == ["sex", "comment"]
    assert (table.loc["fox_2.jpg", "count"], table.loc["fox_2.jpg", "sex"], table.loc["fox_2.jpg", "comment"]) == (
        4, "female", "=cmd")
    assert table.loc["fox_1.jpg", "sex"] == ""
    assert plain.splitlines()[0] == (root / "deepfaune.csv").read_bytes().splitlines()[0].rsplit(b",sex,comment")[0]


def test_folder_table_widened_when_a_later_chunk_brings_fields(tmp_path: Path, monkeypatch):
    import deepfaune_plugin.pipeline as pipeline

    monkeypatch.setattr(pipeline, "CHUNK_FILES", 1)
    root = tmp_path / "card"
    for i in range(3):
        make_jpeg(root / f"fox_{i}.jpg", 160, 120, date=T0 + timedelta(hours=i), seed=i)
    store, registry = tmp_path / "store.sqlite", registry_with_fake()
    go(root, store, registry, host="folder")
    db = ResultStore(store)
    db.put_human([(MediaItem(root / "fox_2.jpg", "fox_2.jpg", ""),
                   HumanLabel("fox", "Ana", T0, HumanFields(behaviour="digging")))])
    db.close()
    go(root, store, registry, host="folder")
    table = read_table(root / "deepfaune.csv").set_index("filename")
    assert table["behaviour"].to_dict() == {"fox_0.jpg": "", "fox_1.jpg": "", "fox_2.jpg": "digging"}


def camtrapr_season(tmp_path: Path):
    """A camtrapR tree of two fox pictures 40 min apart (two records), run once: (tree, store, registry)."""
    tree = tmp_path / "inDir"
    make_jpeg(tree / "StationA" / "fox_1.jpg", 64, 48, date=T0, seed=1)
    make_jpeg(tree / "StationA" / "fox_2.jpg", 64, 48, date=T0 + timedelta(seconds=2400), seed=2)
    registry = registry_with_fake()
    registry.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    store = tmp_path / "store.sqlite"
    go(tree, store, registry, host="camtrapr")
    return tree, store, registry


def test_camtrapr_record_table_columns(tmp_path: Path):
    tree, store, registry = camtrapr_season(tmp_path)
    db = ResultStore(store)
    db.put_human([(MediaItem(tree / "StationA" / "fox_2.jpg", "StationA/fox_2.jpg", ""),
                   HumanLabel("fox", "Ana", T0, HumanFields(count=2, sex="male", individual="F3")))])
    db.close()
    go(tree, store, registry, host="camtrapr")
    with open(tree / "deepfaune_recordTable.csv", encoding="utf-8", newline="") as fh:
        rows = {r["FileName"]: r for r in csv.DictReader(fh)}
    assert [(r["count"], r["sex"], r["individual"]) for r in (rows["fox_1.jpg"], rows["fox_2.jpg"])] == [
        ("1", "", ""), ("2", "male", "F3")]


@pytest.mark.parametrize("last", ["Ana", "Zoe"])
def test_of_two_labels_given_in_the_same_second_the_one_written_last_decides(tmp_path: Path, monkeypatch, last):
    """`at` keeps seconds: two reviewers labelling one file within a second tied, and the name sorting last won
    (Bob over Ana: .ci/run on a fast machine read wolf where Ana had just said squirrel). The label written last
    decides, whoever gave it; and a reviewer changing their own label makes it the latest again."""
    import deepfaune_plugin.store as store_module

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 12, 7, 12, 0, 0)

    monkeypatch.setattr(store_module, "datetime", Frozen)
    photo = tmp_path / "a.jpg"
    make_jpeg(photo, 160, 120, date=T0, seed=1)
    item = MediaItem(path=photo, relpath="a.jpg", group=".")
    store = ResultStore(tmp_path / "s.sqlite")
    first = "Bob" if last != "Bob" else "Ana"
    store.set_human([(item, "wolf")], first)
    store.set_human([(item, "squirrel")], last)
    labels = store.human_records([item])["a.jpg"]
    assert [(h.reviewer, h.key) for h in labels] == [(last, "squirrel"), (first, "wolf")]
    store.set_human([(item, "badger")], first)  # the first reviewer changes their mind: now the latest
    assert [(h.reviewer, h.key) for h in store.human_records([item])["a.jpg"]] == [(first, "badger"),
                                                                                  (last, "squirrel")]
    store.close()
