"""People's labels (`deepfaune review`) written back by every host, the way its users expect.

Each test runs a source with the fake backend (labels from file names: fox_* a fox at ~0.99) and a result store,
labels files in the store as `deepfaune review` does (`ResultStore.set_human`), runs again (every output is
stored, so no model runs) and reads what the host wrote: the result table's label and `reviewed` columns, the
Timelapse field and Reviewed flag (recognitions keep DeepFaune's own classification), Camtrap DP's machine rows
kept and a human row added (valid, never duplicated), camtrapR's species tree and record table.
"""
from __future__ import annotations

import csv
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from deepfaune_plugin.api import MediaItem, RunSettings
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.hooks.timelapse.host import TimelapseHost
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.table import read_table
from camtrapdp_helpers import frictionless_validate, make_package, read_rows
from camtrapdp_helpers import registry as camtrapdp_registry
from ddbquery import rows as ddb_rows
from fakes import registry_with_fake
from imagegen import make_jpeg
from timelapse_build import Control, create_ddb, write_template

T0 = datetime(2024, 5, 3, 6, 0, 0)


def label(store: Path, root: Path, labels: dict[str, str | None], reviewer: str = "Ana") -> None:
    """What `deepfaune review` records: relpath (below `root`) -> key, None withdrawing the label."""
    db = ResultStore(store)
    try:
        db.set_human([(MediaItem(path=root / rel, relpath=rel, group=""), key) for rel, key in labels.items()], reviewer)
    finally:
        db.close()


def go(source: Path, store: Path, registry, host: str = "auto", threshold: float = 0.8, output: Path | None = None,
       **options):
    return run(source, RunSettings(backend="fake", lang="en", threshold=threshold), host=host, host_options=options,
               output=output, registry=registry, progress=False, log=lambda msg: None, store=store, report=False)


# ---------------------------------------------------------------- the result table (folder host)

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "card"
    make_jpeg(root / "fox_1.jpg", 160, 120, date=T0, seed=1)
    make_jpeg(root / "fox_2.jpg", 160, 120, date=T0 + timedelta(seconds=5), seed=2)
    make_jpeg(root / "empty_1.jpg", 160, 120, date=T0 + timedelta(seconds=600), seed=3)
    return root


def test_result_table_has_the_persons_label_and_reviewer(folder: Path, tmp_path: Path):
    store, registry = tmp_path / "store.sqlite", registry_with_fake()
    go(folder, store, registry, host="folder")
    first = read_table(folder / "deepfaune.csv").set_index("filename")
    assert (first.loc["fox_2.jpg", "prediction"], first.loc["fox_2.jpg", "reviewed"]) == ("fox", "")
    label(store, folder, {"fox_2.jpg": "red deer", "empty_1.jpg": "human"})
    go(folder, store, registry, host="folder")
    table = read_table(folder / "deepfaune.csv").set_index("filename")
    assert table.loc["fox_2.jpg", ["predictionbase", "prediction", "top1"]].tolist() == ["red deer"] * 3
    assert float(table.loc["fox_2.jpg", "score"]) == 1.0 and table.loc["fox_2.jpg", "reviewed"] == "Ana"
    assert (table.loc["empty_1.jpg", "prediction"], table.loc["empty_1.jpg", "reviewed"]) == ("human", "Ana")
    assert (table.loc["fox_1.jpg", "prediction"], table.loc["fox_1.jpg", "reviewed"]) == ("fox", "")
    assert 0.9 < float(table.loc["fox_1.jpg", "score"]) < 1.0


def test_another_threshold_still_writes_the_persons_label(folder: Path, tmp_path: Path):
    store, registry = tmp_path / "store.sqlite", registry_with_fake()
    go(folder, store, registry, host="folder")
    label(store, folder, {"fox_2.jpg": "red deer"})
    go(folder, store, registry, host="folder", threshold=0.999)  # above the fake's ~0.99: DeepFaune's foxes go
    table = read_table(folder / "deepfaune.csv").set_index("filename")
    assert table.loc["fox_1.jpg", "prediction"] == "undefined"  # the new threshold did apply
    assert (table.loc["fox_2.jpg", "prediction"], table.loc["fox_2.jpg", "reviewed"]) == ("red deer", "Ana")


# ---------------------------------------------------------------- Timelapse

TL_FILES = [("cam1/fox_1.jpg", T0), ("cam1/fox_2.jpg", T0 + timedelta(seconds=5)),
            ("cam1/empty_1.jpg", T0 + timedelta(seconds=600))]


def timelapse_set(root: Path, template: Path | None, controls=()) -> Path:
    for i, (rel, when) in enumerate(TL_FILES):
        make_jpeg(root / rel, 160, 120, date=when, seed=i)
    tdb = root / "TimelapseTemplate.tdb"
    if template is not None:
        tdb.write_bytes(template.read_bytes())
    else:
        write_template(tdb, controls)
    return create_ddb(tdb, root / "TimelapseData.ddb", TL_FILES)


def timelapse_registry():
    registry = registry_with_fake()
    registry.hosts["timelapse"] = Registered("timelapse", TimelapseHost(), "timelapse", "tests")
    return registry


def field_by_file(ddb: Path, column: str) -> dict[str, str]:
    return {f: v for f, v in ddb_rows(ddb, f'SELECT File, "{column}" FROM DataTable')}


def classifications(ddb: Path) -> dict[str, tuple[str, float]]:
    """File -> (classification label, confidence) of its classified box, as Timelapse shows them."""
    return {f: (lab, conf) for f, lab, conf in ddb_rows(ddb, """
        SELECT d.File, c.label, x.classification_conf FROM Detections x JOIN DataTable d ON d.Id = x.Id
        JOIN ClassificationCategories c ON CAST(c.classification AS TEXT) = CAST(x.classification AS TEXT)""")}


def test_timelapse_field_and_reviewed_flag(tmp_path: Path, capsys):
    root = tmp_path / "set"
    ddb = timelapse_set(root, None, [Control("Species", "FixedChoice", choices=("fox", "red deer", "human", "empty")),
                                     Control("Reviewed", "Flag", "false")])
    store, registry = tmp_path / "store.sqlite", timelapse_registry()
    go(root, store, registry, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "fox", "fox_2.jpg": "fox", "empty_1.jpg": "empty"}
    assert set(field_by_file(ddb, "Reviewed").values()) == {"false"}
    machine = classifications(ddb)
    label(store, root, {"cam1/fox_2.jpg": "red deer"})
    go(root, store, registry, write_ddb=True, field="Species")  # the flag found by its name
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "fox", "fox_2.jpg": "red deer", "empty_1.jpg": "empty"}
    assert field_by_file(ddb, "Reviewed") == {"fox_1.jpg": "false", "fox_2.jpg": "true", "empty_1.jpg": "false"}
    assert classifications(ddb) == machine  # the recognitions stay DeepFaune's: no fake 1.0 "red deer"
    assert machine["fox_2.jpg"][0] == "fox" and machine["fox_2.jpg"][1] < 1.0
    assert len(list((root / "Backups").iterdir())) == 2  # each write backed up first
    label(store, root, {"cam1/fox_2.jpg": None})  # withdrawn: DeepFaune's label and flag again
    go(root, store, registry, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species")["fox_2.jpg"] == "fox"
    assert set(field_by_file(ddb, "Reviewed").values()) == {"false"}


def test_timelapse_flag_a_person_set_is_kept(tmp_path: Path):
    root = tmp_path / "set"
    ddb = timelapse_set(root, None, [Control("Species", "Note"), Control("Reviewed", "Flag", "false")])
    store, registry = tmp_path / "store.sqlite", timelapse_registry()
    go(root, store, registry, write_ddb=True, field="Species")
    conn = sqlite3.connect(ddb)  # a person checks fox_1 in Timelapse
    with conn:
        conn.execute("UPDATE DataTable SET Reviewed = 'true' WHERE File = 'fox_1.jpg'")
    conn.close()
    label(store, root, {"cam1/fox_2.jpg": "red deer"})
    go(root, store, registry, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Reviewed") == {"fox_1.jpg": "true", "fox_2.jpg": "true", "empty_1.jpg": "false"}
    label(store, root, {"cam1/fox_2.jpg": None})
    go(root, store, registry, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Reviewed") == {"fox_1.jpg": "true", "fox_2.jpg": "false", "empty_1.jpg": "false"}


def test_timelapse_real_template_reviewed_field_option(tmp_path: Path, shared: Path, capsys):
    root = tmp_path / "set"
    ddb = timelapse_set(root, shared / "data" / "timelapse" / "CamtrapDPTemplate.tdb")
    store, registry = tmp_path / "store.sqlite", timelapse_registry()
    go(root, store, registry, write_ddb=True, field="scientificName")
    label(store, root, {"cam1/fox_2.jpg": "red deer"})
    capsys.readouterr()
    run(root, RunSettings(backend="fake", lang="en"), host="auto", registry=registry, progress=False, store=store,
        report=False, host_options=dict(write_ddb=True, field="scientificName"))
    err = capsys.readouterr().err
    assert err.count("no Flag field named Reviewed") == 1  # this template has none: said once
    assert field_by_file(ddb, "scientificName")["fox_2.jpg"] == "Cervus elaphus"
    assert set(field_by_file(ddb, "favorite").values()) == {"false"}
    go(root, store, registry, write_ddb=True, field="scientificName", reviewed_field="favorite")
    assert field_by_file(ddb, "favorite") == {"fox_1.jpg": "false", "fox_2.jpg": "true", "empty_1.jpg": "false"}
    assert field_by_file(ddb, "scientificName")["fox_1.jpg"] == "Vulpes vulpes"
    with pytest.raises(Exception, match="not a Flag"):
        go(root, store, registry, write_ddb=True, reviewed_field="scientificName")


# ---------------------------------------------------------------- Camtrap DP

def _ours_for(rows, media_id: str) -> list[dict[str, str]]:
    return [r for r in rows if r["mediaID"] == media_id and r["observationID"].startswith("deepfaune-")]


def test_camtrapdp_machine_row_kept_human_row_added(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    store, registry = tmp_path / "store.sqlite", camtrapdp_registry()
    go(package, store, registry)
    before = read_rows(package / "observations.csv")
    label(store, package, {"media/dep1/fox_2.jpg": "red deer"})
    go(package, store, registry)
    rows = read_rows(package / "observations.csv")
    machine, human = _ours_for(rows, "m02")
    assert (machine["observationID"], machine["classificationMethod"], machine["scientificName"]) == (
        "deepfaune-m02", "machine", "Vulpes vulpes")
    assert 0.9 < float(machine["classificationProbability"]) < 1.0
    assert machine == next(r for r in before if r["observationID"] == "deepfaune-m02")  # unchanged
    assert human["observationID"] == "deepfaune-review-m02" and human["eventID"] == machine["eventID"]
    assert (human["classificationMethod"], human["classifiedBy"], human["observationType"], human["scientificName"],
            human["classificationProbability"], human["observationTags"], human["observationLevel"]) == (
        "human", "Ana", "animal", "Cervus elaphus", "", "deepfaune:review", "media")
    at = datetime.fromisoformat(human["classificationTimestamp"].replace("Z", "+00:00"))
    assert at.tzinfo is not None and abs(datetime.now(timezone.utc) - at) < timedelta(minutes=5)
    assert [r for r in rows if r["observationID"].startswith("h-")] == [
        r for r in before if r["observationID"].startswith("h-")]  # Jane Doe's rows untouched
    assert len(rows) == len(before) + 1
    text = (package / "observations.csv").read_bytes()
    go(package, store, registry)  # a re-export replaces our human row, never adds another
    assert (package / "observations.csv").read_bytes() == text
    label(store, package, {"media/dep1/fox_2.jpg": None})
    go(package, store, registry)
    assert read_rows(package / "observations.csv") == before  # withdrawn: its row goes


def test_camtrapdp_package_with_human_rows_is_valid(tmp_path: Path, shared: Path):
    pytest.importorskip("frictionless")
    package = make_package(tmp_path / "pkg")
    store, registry = tmp_path / "store.sqlite", camtrapdp_registry()
    go(package, store, registry)
    label(store, package, {"media/dep1/fox_2.jpg": "red deer", "media/dep1/empty_1.jpg": "human"})
    go(package, store, registry)
    rows = read_rows(package / "observations.csv")
    assert [r["observationType"] for r in rows if r["observationID"] == "deepfaune-review-m04"] == ["human"]
    report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])


# ---------------------------------------------------------------- camtrapR

def test_camtrapr_species_tree_follows_the_label(tmp_path: Path):
    tree = tmp_path / "inDir"
    make_jpeg(tree / "StationA" / "fox_1.jpg", 64, 48, date=T0, seed=1)
    make_jpeg(tree / "StationA" / "fox_2.jpg", 64, 48, date=T0 + timedelta(seconds=5), seed=2)
    make_jpeg(tree / "StationA" / "fox_3.jpg", 64, 48, date=T0 + timedelta(seconds=2400), seed=3)
    registry = registry_with_fake()
    registry.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    store, out = tmp_path / "store.sqlite", tmp_path / "species"
    go(tree, store, registry, host="camtrapr", species_folders=str(out))
    assert sorted(p.name for p in (out / "StationA" / "fox").iterdir()) == ["fox_1.jpg", "fox_2.jpg", "fox_3.jpg"]
    (out / "StationA" / "fox" / "notes.txt").write_text("check fox_3", encoding="utf-8")  # a person's own file
    label(store, tree, {"StationA/fox_2.jpg": "red deer"})
    go(tree, store, registry, host="camtrapr", species_folders=str(out))
    assert sorted(p.name for p in (out / "StationA" / "fox").iterdir()) == ["fox_1.jpg", "fox_3.jpg", "notes.txt"]
    assert [p.name for p in (out / "StationA" / "red deer").iterdir()] == ["fox_2.jpg"]
    assert os.path.samefile(out / "StationA" / "red deer" / "fox_2.jpg", tree / "StationA" / "fox_2.jpg") or \
        (out / "StationA" / "red deer" / "fox_2.jpg").read_bytes() == (tree / "StationA" / "fox_2.jpg").read_bytes()
    assert (out / "StationA" / "fox" / "notes.txt").read_text(encoding="utf-8") == "check fox_3"
    with open(tree / "deepfaune_recordTable.csv", encoding="utf-8", newline="") as fh:
        species = {r["FileName"]: r["Species"] for r in csv.DictReader(fh)}
    assert species == {"fox_1.jpg": "fox", "fox_2.jpg": "red deer", "fox_3.jpg": "fox"}
