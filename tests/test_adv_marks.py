"""Issue 30, items 9, 15 and 20: what a careless reader or a careless run meets in the files we write.

9: a run on stand-in models (random weights) says so in every file it writes, once its log is gone: the folder
host's table (a `models` column, only then: a real run's table stays byte for byte DeepFaune's), camtrapR's
record table and species-folder manifest, Camtrap DP's observations and datapackage.json, Timelapse's
recognitions.  15: a label written back into a Timelapse FixedChoice field is mapped to its choices in any
language, a person's label no choice names refuses the write, and a withdrawn label leaves DeepFaune's value.
20: a refused .ddb write leaves no new deepfaune-recognitions.json behind it.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from deepfaune_plugin.api import STANDIN_COLUMN, STANDIN_MARK, STANDIN_VALUE, MediaItem, RunSettings
from deepfaune_plugin.errors import DeepfauneError
from deepfaune_plugin.hooks.camtrapdp.host import CamtrapDPHost
from deepfaune_plugin.hooks.camtrapr.host import CamtrapRHost
from deepfaune_plugin.hooks.camtrapr.species import MANIFEST as SPECIES_MANIFEST
from deepfaune_plugin.hooks.timelapse.host import DEFAULT_JSON, TimelapseHost
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.plugins import Registered
from deepfaune_plugin.store import ResultStore
from deepfaune_plugin.table import DEEPFAUNE_COLUMNS, EXTRA_COLUMNS
from camtrapdp_helpers import frictionless_validate, make_package, read_rows
from ddbquery import rows as ddb_rows
from fakes import registry_with_fake
from imagegen import make_jpeg
from timelapse_build import Control, create_ddb, write_template

T0 = datetime(2024, 5, 3, 6, 0, 0)
QUIET = dict(progress=False, log=lambda msg: None, report=False)


def registry(standin: bool):
    reg = registry_with_fake(standin=standin)
    reg.hosts["camtrapr"] = Registered("camtrapr", CamtrapRHost(), "camtrapr", "tests")
    reg.hosts.pop("camtrapdp", None)
    reg.hosts["camtrapdp"] = Registered("camtrapdp", CamtrapDPHost(), "camtrapdp", "tests")
    reg.hosts["timelapse"] = Registered("timelapse", TimelapseHost(), "timelapse", "tests")
    return reg


def go(source: Path, standin: bool, host: str = "auto", output: Path | None = None, lang: str = "en",
       store: Path | bool = False, log=None, **options):
    return run(source, RunSettings(backend="fake", lang=lang), host=host, host_options=options, output=output,
               registry=registry(standin), store=store, **{**QUIET, **({"log": log} if log else {})})


def folder(root: Path) -> Path:
    make_jpeg(root / "fox_1.jpg", 160, 120, date=T0, seed=1)
    make_jpeg(root / "fox_2.jpg", 160, 120, date=T0 + timedelta(seconds=5), seed=2)
    make_jpeg(root / "empty_1.jpg", 160, 120, date=T0 + timedelta(seconds=600), seed=3)
    (root / "broken_1.jpg").write_bytes(b"not a jpeg")
    return root


# ---------------------------------------------------------------- 9: the folder host's table

def test_real_table_is_deepfaunes_and_a_standin_table_only_adds_the_column(tmp_path: Path):
    src = folder(tmp_path / "card")
    go(src, False, host="folder", output=tmp_path / "real.csv")
    go(src, True, host="folder", output=tmp_path / "standin.csv")
    real = (tmp_path / "real.csv").read_text(encoding="utf-8").splitlines()
    standin = (tmp_path / "standin.csv").read_text(encoding="utf-8").splitlines()
    assert real[0] == ",".join(DEEPFAUNE_COLUMNS + EXTRA_COLUMNS)  # a real run: no column of ours added
    assert len(real) == len(standin) == 5
    assert standin == [real[0] + f",{STANDIN_COLUMN}"] + [line + f",{STANDIN_VALUE}" for line in real[1:]]


def test_standin_xlsx_has_the_column_in_every_row(tmp_path: Path):
    from deepfaune_plugin.table import read_table

    src = folder(tmp_path / "card")
    go(src, True, host="folder", output=tmp_path / "standin.xlsx")
    go(src, False, host="folder", output=tmp_path / "real.xlsx")
    table = read_table(tmp_path / "standin.xlsx")
    assert list(table.columns)[-1] == STANDIN_COLUMN and set(table[STANDIN_COLUMN]) == {STANDIN_VALUE}
    assert STANDIN_COLUMN not in read_table(tmp_path / "real.xlsx").columns


# ---------------------------------------------------------------- 9: camtrapR

def station_tree(root: Path) -> Path:
    make_jpeg(root / "StationA" / "fox_1.jpg", 64, 48, date=T0, seed=1)
    make_jpeg(root / "StationA" / "fox_2.jpg", 64, 48, date=T0 + timedelta(seconds=2400), seed=2)
    return root


def record_table(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_camtrapr_record_table_and_species_manifest_are_marked(tmp_path: Path):
    tree, out = station_tree(tmp_path / "inDir"), tmp_path / "species"
    go(tree, True, host="camtrapr", species_folders=str(out))
    rows = record_table(tree / "deepfaune_recordTable.csv")
    assert len(rows) == 2 and {r[STANDIN_COLUMN] for r in rows} == {STANDIN_VALUE}
    manifest = json.loads((out / SPECIES_MANIFEST).read_text(encoding="utf-8"))
    assert manifest["models"] == STANDIN_VALUE and STANDIN_MARK in manifest["warning"]
    go(tree, False, host="camtrapr", species_folders=str(out))  # the real models afterwards: no mark left
    with open(tree / "deepfaune_recordTable.csv", encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    assert header[-1] == "count" and STANDIN_COLUMN not in header
    manifest = json.loads((out / SPECIES_MANIFEST).read_text(encoding="utf-8"))
    assert "models" not in manifest and "warning" not in manifest
    assert sorted(p.name for p in (out / "StationA" / "fox").iterdir()) == ["fox_1.jpg", "fox_2.jpg"]


# ---------------------------------------------------------------- 9: Camtrap DP

#: The datapackage.json property saying that some observations come from stand-in models.
STANDIN_PROPERTY = "deepfauneStandInModels"


def test_camtrapdp_observations_and_descriptor_are_marked_then_cleared(tmp_path: Path, shared: Path):
    package = make_package(tmp_path / "pkg")
    before = read_rows(package / "observations.csv")
    go(package, True)
    rows = read_rows(package / "observations.csv")
    ours = [r for r in rows if r["observationID"].startswith("deepfaune-")]
    assert ours and all(r["classifiedBy"].startswith("DeepFaune 1.4 (deepfaune-plugin ")
                        and r["classifiedBy"].endswith(f"; {STANDIN_MARK})") for r in ours)
    assert all(r["observationComments"].startswith(f"DeepFaune {STANDIN_MARK}") for r in ours)
    assert [r for r in rows if not r["observationID"].startswith("deepfaune-")] == [
        r for r in before if not r["observationID"].startswith("deepfaune-")]  # other people's rows untouched
    descriptor = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    assert STANDIN_MARK in descriptor[STANDIN_PROPERTY]
    if importlib.util.find_spec("frictionless") is not None:  # the marked package is still valid Camtrap DP
        report = frictionless_validate(package, shared / "data" / "camtrap-dp-1.0.2", tmp_path)
        assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    go(package, False)  # the real models: the stand-in rows are ours, replaced, and the mark goes
    rows = read_rows(package / "observations.csv")
    ours = [r for r in rows if r["observationID"].startswith("deepfaune-")]
    assert len(rows) == len(before) + len(ours) - sum(r["observationID"].startswith("deepfaune-") for r in before)
    assert not any(STANDIN_MARK in r["classifiedBy"] or STANDIN_MARK in r["observationComments"] for r in rows)
    assert STANDIN_PROPERTY not in json.loads((package / "datapackage.json").read_text(encoding="utf-8"))


def test_camtrapdp_package_made_from_a_folder_is_marked(tmp_path: Path):
    tree = station_tree(tmp_path / "inDir")
    (tmp_path / "meta.yaml").write_text(
        "contributors:\n  - {title: Jane Doe, role: principalInvestigator}\nproject:\n  title: Vercors survey\n"
        "  samplingDesign: opportunistic\n  captureMethod: activityDetection\n", encoding="utf-8")
    (tmp_path / "deployments.csv").write_text("station;latitude;longitude;deploymentStart;deploymentEnd\n"
                                              "StationA;45.2;5.7;2024-05-01;2024-05-20\n", encoding="utf-8")
    options = {"deployments_csv": str(tmp_path / "deployments.csv"), "package_metadata": str(tmp_path / "meta.yaml"),
               "utc_offset": "+02:00"}
    go(tree, True, host="camtrapdp", output=tmp_path / "pkg", **options)
    rows = read_rows(tmp_path / "pkg" / "observations.csv")
    assert len(rows) == 4 and all(r["classifiedBy"].endswith(f"; {STANDIN_MARK})") for r in rows)
    descriptor = json.loads((tmp_path / "pkg" / "datapackage.json").read_text(encoding="utf-8"))
    assert STANDIN_MARK in descriptor[STANDIN_PROPERTY]
    go(tree, False, host="camtrapdp", output=tmp_path / "real", **options)
    assert STANDIN_PROPERTY not in json.loads((tmp_path / "real" / "datapackage.json").read_text(encoding="utf-8"))
    assert "STAND-IN" not in (tmp_path / "real" / "observations.csv").read_text(encoding="utf-8")


def test_camtrapdp_a_persons_own_descriptor_note_is_kept(tmp_path: Path):
    package = make_package(tmp_path / "pkg")
    descriptor = json.loads((package / "datapackage.json").read_text(encoding="utf-8"))
    descriptor[STANDIN_PROPERTY] = "my own note"
    (package / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    go(package, False)
    assert json.loads((package / "datapackage.json").read_text(encoding="utf-8"))[STANDIN_PROPERTY] == "my own note"


# ---------------------------------------------------------------- 9: Timelapse

def timelapse_set(root: Path, controls) -> Path:
    files = [("cam1/fox_1.jpg", T0), ("cam1/fox_2.jpg", T0 + timedelta(seconds=5)),
             ("cam1/empty_1.jpg", T0 + timedelta(seconds=600))]
    for i, (rel, when) in enumerate(files):
        make_jpeg(root / rel, 160, 120, date=when, seed=i)
    tdb = write_template(root / "TimelapseTemplate.tdb", controls)
    return create_ddb(tdb, root / "TimelapseData.ddb", files)


def test_timelapse_recognitions_info_and_table_are_marked(tmp_path: Path):
    root = tmp_path / "set"
    ddb = timelapse_set(root, [Control("Species", "Note")])
    go(root, True, output=tmp_path / "table.csv", write_ddb=True)
    info = json.loads((root / DEFAULT_JSON).read_text(encoding="utf-8"))["info"]
    assert STANDIN_MARK in info["classifier"] and STANDIN_MARK in info["detector"]
    assert all(STANDIN_MARK in text for text in ddb_rows(ddb, "SELECT classifier FROM Info")[0])
    assert set(record_table(tmp_path / "table.csv")[0]) >= {STANDIN_COLUMN}
    go(root, False, output=tmp_path / "table.csv", write_ddb=True)
    assert "STAND-IN" not in (root / DEFAULT_JSON).read_text(encoding="utf-8")
    assert STANDIN_COLUMN not in record_table(tmp_path / "table.csv")[0]


# ---------------------------------------------------------------- 15: write-back into a FixedChoice field

def label(store: Path, root: Path, labels: dict[str, str | None]) -> None:
    db = ResultStore(store)
    try:
        db.set_human([(MediaItem(path=root / rel, relpath=rel, group=""), key) for rel, key in labels.items()], "Ana")
    finally:
        db.close()


def field_by_file(ddb: Path, column: str) -> dict[str, str]:
    return {f: v for f, v in ddb_rows(ddb, f'SELECT File, "{column}" FROM DataTable')}


ENGLISH_CHOICES = ("Fox", "Red deer", "Badger", "Chacal Dore", "Empty", "Human")


def test_french_labels_fill_english_choices_and_a_withdrawal_restores_deepfaunes(tmp_path: Path):
    root, store = tmp_path / "set", tmp_path / "store.sqlite"
    ddb = timelapse_set(root, [Control("Species", "FixedChoice", choices=ENGLISH_CHOICES),
                               Control("Reviewed", "Flag", "false")])
    go(root, False, lang="fr", store=store, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "Fox", "fox_2.jpg": "Fox", "empty_1.jpg": "Empty"}
    label(store, root, {"cam1/fox_2.jpg": "badger", "cam1/fox_1.jpg": "golden jackal"})  # "chacal doré" in French
    go(root, False, lang="fr", store=store, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "Chacal Dore", "fox_2.jpg": "Badger", "empty_1.jpg": "Empty"}
    assert field_by_file(ddb, "Reviewed") == {"fox_1.jpg": "true", "fox_2.jpg": "true", "empty_1.jpg": "false"}
    label(store, root, {"cam1/fox_2.jpg": None, "cam1/fox_1.jpg": None})
    go(root, False, lang="fr", store=store, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "Fox", "fox_2.jpg": "Fox", "empty_1.jpg": "Empty"}
    assert set(field_by_file(ddb, "Reviewed").values()) == {"false"}


def test_a_word_of_two_languages_is_read_in_the_choices_own(tmp_path: Path):
    root, store = tmp_path / "set", tmp_path / "store.sqlite"
    ddb = timelapse_set(root, [Control("Species", "FixedChoice", choices=("Otter", "Nutria", "Fox", "Empty"))])
    label(store, root, {"cam1/fox_2.jpg": "otter"})  # "nutria" in Spanish; English "nutria" is the coypu
    go(root, False, lang="es", store=store, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "Fox", "fox_2.jpg": "Otter", "empty_1.jpg": "Empty"}


def test_withdrawn_label_goes_when_deepfaunes_own_has_no_choice(tmp_path: Path):
    root, store = tmp_path / "set", tmp_path / "store.sqlite"
    ddb = timelapse_set(root, [Control("Species", "FixedChoice", choices=("Red deer", "Empty")),
                               Control("Reviewed", "Flag", "false")])
    go(root, False, store=store, write_ddb=True, field="Species")
    assert field_by_file(ddb, "Species")["fox_2.jpg"] == ""  # "fox" is no choice: left as it was
    label(store, root, {"cam1/fox_2.jpg": "red deer"})
    go(root, False, store=store, write_ddb=True, field="Species")
    assert (field_by_file(ddb, "Species")["fox_2.jpg"], field_by_file(ddb, "Reviewed")["fox_2.jpg"]) == (
        "Red deer", "true")
    label(store, root, {"cam1/fox_2.jpg": None})
    go(root, False, store=store, write_ddb=True, field="Species")
    assert (field_by_file(ddb, "Species")["fox_2.jpg"], field_by_file(ddb, "Reviewed")["fox_2.jpg"]) == ("", "false")


def test_a_label_without_a_taxon_takes_back_the_scientific_name_we_wrote(tmp_path: Path, shared: Path):
    files = [("cam1/fox_1.jpg", T0), ("cam1/fox_2.jpg", T0 + timedelta(seconds=5))]
    root, store = tmp_path / "set", tmp_path / "store.sqlite"
    for i, (rel, when) in enumerate(files):
        make_jpeg(root / rel, 160, 120, date=when, seed=i)
    tdb = root / "TimelapseTemplate.tdb"
    tdb.write_bytes((shared / "data" / "timelapse" / "CamtrapDPTemplate.tdb").read_bytes())
    ddb = create_ddb(tdb, root / "TimelapseData.ddb", files)
    default = field_by_file(ddb, "scientificName")["fox_2.jpg"]
    label(store, root, {"cam1/fox_2.jpg": "red deer"})
    go(root, False, store=store, write_ddb=True, field="scientificName")
    assert field_by_file(ddb, "scientificName") == {"fox_1.jpg": "Vulpes vulpes", "fox_2.jpg": "Cervus elaphus"}
    label(store, root, {"cam1/fox_2.jpg": "empty"})  # no taxon: the field cannot say it, nor keep the deer
    go(root, False, store=store, write_ddb=True, field="scientificName")
    assert field_by_file(ddb, "scientificName") == {"fox_1.jpg": "Vulpes vulpes", "fox_2.jpg": default}


def test_a_persons_label_no_choice_names_refuses_and_changes_nothing(tmp_path: Path, capsys):
    root, store = tmp_path / "set", tmp_path / "store.sqlite"
    ddb = timelapse_set(root, [Control("Species", "FixedChoice", choices=("Fox", "Empty")),
                               Control("Reviewed", "Flag", "false")])
    go(root, False, lang="fr", store=store, write_ddb=True, field="Species")
    data, recognitions = ddb.read_bytes(), (root / DEFAULT_JSON).read_bytes()
    label(store, root, {"cam1/fox_2.jpg": "badger"})
    with pytest.raises(DeepfauneError) as err:
        go(root, False, lang="fr", store=store, write_ddb=True, field="Species")
    message = str(err.value)
    assert "--field Species" in message and "'blaireau'" in message and "Fox, Empty" in message
    assert "nothing was changed" in message and "\n" not in message
    assert ddb.read_bytes() == data and (root / DEFAULT_JSON).read_bytes() == recognitions
    assert field_by_file(ddb, "Reviewed")["fox_2.jpg"] == "false"


def test_machine_labels_without_a_choice_are_reported_with_the_choices(tmp_path: Path):
    root = tmp_path / "set"
    ddb = timelapse_set(root, [Control("Species", "FixedChoice", choices=("Empty", "Human"))])
    said: list[str] = []
    go(root, False, lang="de", write_ddb=True, field="Species", log=said.append)
    err = "\n".join(said)
    assert "field Species: 2 file(s) not given their label, which is not one of the field's choices (Empty, Human)" \
        in err
    assert field_by_file(ddb, "Species") == {"fox_1.jpg": "", "fox_2.jpg": "", "empty_1.jpg": "Empty"}


# ---------------------------------------------------------------- 20: a refused write leaves no recognition file

def test_refused_ddb_write_writes_no_recognition_file(tmp_path: Path):
    root = tmp_path / "set"
    ddb = timelapse_set(root, [Control("Species", "Note")])
    conn = sqlite3.connect(ddb)
    with conn:
        conn.execute("CREATE TRIGGER no_edits BEFORE UPDATE ON DataTable BEGIN SELECT RAISE(ABORT, 'read-only'); END")
    conn.close()
    data = ddb.read_bytes()
    with pytest.raises(DeepfauneError, match="nothing was changed"):
        go(root, False, output=tmp_path / "table.csv", write_ddb=True, field="Species")
    assert not (root / DEFAULT_JSON).exists() and not (tmp_path / "table.csv").exists()
    assert ddb.read_bytes() == data
    assert not [p.name for p in root.iterdir() if p.name.startswith(f".{DEFAULT_JSON}")]  # no staged leftover


# ---------------------------------------------------------------- 9: `deepfaune sort` of a stand-in table

@pytest.mark.parametrize("standin", [True, False])
def test_sorted_folder_mapping_carries_the_mark_and_still_undoes(tmp_path: Path, standin: bool):
    from deepfaune_plugin.sorting import MAPPING_COLUMNS, sort_files, undo_sort

    src = folder(tmp_path / "card")
    go(src, standin, host="folder")
    report = sort_files(src / "deepfaune.csv", dest=tmp_path / "sorted", mode="move")
    mapping = record_table(report.mapping)
    assert len(mapping) == 3  # the unreadable file is not sorted
    if standin:
        assert list(mapping[0]) == [*MAPPING_COLUMNS, STANDIN_COLUMN]
        assert {r[STANDIN_COLUMN] for r in mapping} == {STANDIN_VALUE}
    else:
        assert list(mapping[0]) == list(MAPPING_COLUMNS)
    assert undo_sort(report.mapping).restored == 3 and (src / "fox_1.jpg").is_file()
