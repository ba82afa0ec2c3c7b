"""The wildlife-insights host, run through the real command: what it writes, what it leaves alone, what it refuses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from deepfaune_plugin.testing import LogitsBackend, StoredLogitsBackend, logits_for, registry_with, run_cli
from wi_fixtures import IMAGES_HEADER, jpeg, make_export, read_csv, write_csv

import deepfaune_wildlife_insights.host as wi_host

RUN = ["--backend", "logits", "--lang", "en", "--no-store", "-q", "--no-report"]


def _run(source: Path, *extra, outcomes=None, default="empty"):
    backend = LogitsBackend(outcomes or {}, default=default)
    return run_cli(["run", source, "--host", "wildlife-insights", *RUN, *extra],
                   registry_with(wi_host, backends=[backend], installed=False))


def _by_id(path: Path) -> dict[str, dict[str, str]]:
    return {row["image_id"]: row for row in read_csv(path)}


def test_identifications_go_into_a_copy_the_wi_way_and_a_persons_rows_are_untouched(tmp_path):
    export = make_export(tmp_path)
    original = (export / "images_2004252.csv").read_bytes()
    result = _run(export, outcomes={"DEP1/a.jpg": logits_for("1.4", "fox"), "DEP1/b.jpg": "person",
                                    "DEP1/c.jpg": logits_for("1.4", "wild boar"),
                                    "DEP2/d.jpg": logits_for("1.4", "roe deer")})
    assert result.code == 0, result.stderr
    assert (export / "images_2004252.csv").read_bytes() == original  # the user's file is never changed
    out = _by_id(export / "deepfaune_images.csv")
    assert list(read_csv(export / "deepfaune_images.csv")[0]) == IMAGES_HEADER  # the WI columns, in WI's order
    fox = out["img-a"]
    # logit 8 against 37 zeros at DeepFaune 1.4's T = 1.1: 0.975, written truncated as DeepFaune's table does
    assert (fox["identified_by"], fox["wi_taxon_id"], fox["common_name"], fox["cv_confidence"]) == \
        ("DeepFaune 1.4", "ac0e8ba7-7261-4d17-8645-11ed3d02165a", "Red Fox", "0.97")
    assert (fox["class"], fox["order"], fox["family"], fox["genus"], fox["species"]) == \
        ("Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes")
    assert (fox["is_blank"], fox["number_of_objects"], fox["uncertainty"]) == ("0", "1", "")
    assert (fox["location"], fox["timestamp"], fox["license"]) == \
        ("gs://cameratraps/project_2004252/deployment_DEP1/img-a.jpg", "2021-08-26 10:00:00", "CC-BY-NC")
    human = out["img-b"]
    assert (human["genus"], human["species"], human["common_name"], human["wi_taxon_id"]) == \
        ("Homo", "sapiens", "Human", "")  # no published WI id for Homo sapiens: left empty
    # the badger a person identified stays exactly as it was, though DeepFaune says wild boar
    assert out["img-c"] == read_csv(export / "images_2004252.csv")[2]
    # Wildlife Insights' own AI said jaguar: a machine's row, replaced; roe deer has no published WI id
    deer = out["img-d"]
    assert (deer["identified_by"], deer["genus"], deer["species"], deer["common_name"], deer["wi_taxon_id"]) == \
        ("DeepFaune 1.4", "Capreolus", "capreolus", "roe deer", "")
    blank = out["img-e"]
    assert (blank["is_blank"], blank["common_name"], blank["genus"], blank["number_of_objects"]) == \
        ("1", "Blank", "", "")
    assert "wildlife-insights: 1 image a person identified left as they are" in result.stderr


def test_a_second_run_replaces_its_own_rows_and_keeps_the_file_whole(tmp_path):
    export = make_export(tmp_path)
    _run(export, outcomes={"DEP1/a.jpg": logits_for("1.4", "fox")})
    # the copy is not an images table of the export: the run reads the original again and writes a new copy
    result = _run(export, outcomes={"DEP1/a.jpg": logits_for("1.4", "cat")})
    assert result.code == 0, result.stderr
    out = _by_id(export / "deepfaune_images.csv")
    assert (out["img-a"]["common_name"], out["img-a"]["wi_taxon_id"]) == \
        ("Domestic Cat", "9212982e-8a58-4775-a6ac-e9a43110d8f5")
    assert len(out) == 5


def test_an_images_several_machine_rows_become_one_and_a_failed_file_keeps_its_rows(tmp_path):
    export = make_export(tmp_path)
    rows = read_csv(export / "images_2004252.csv")
    second = dict(rows[3], common_name="Ocelot", species="pardalis", genus="Leopardus")
    rows.insert(4, second)
    write_csv(export / "images_2004252.csv", IMAGES_HEADER, rows)
    result = _run(export, outcomes={"DEP2/d.jpg": logits_for("1.4", "badger"), "DEP1/a.jpg": "failure: truncated"})
    assert result.code in (0, 3), result.stderr
    out = read_csv(export / "deepfaune_images.csv")
    assert [r["image_id"] for r in out] == ["img-a", "img-b", "img-c", "img-d", "img-e"]
    assert out[3]["genus"] == "Meles"
    assert out[0] == rows[0]  # no answer for a.jpg: its row as it was


def test_media_found_in_another_folder_and_names_that_leave_it_refused(tmp_path):
    export = make_export(tmp_path)
    media = tmp_path / "photos"
    media.mkdir()
    (export / "DEP1").rename(media / "DEP1")  # as DEPLOYMENT_ID/FILENAME
    (export / "DEP2" / "d.jpg").rename(media / "d.jpg")  # flat: FILENAME alone
    jpeg(tmp_path / "secret.jpg")
    rows = read_csv(export / "images_2004252.csv")
    rows[4]["filename"], rows[4]["deployment_id"] = "../secret.jpg", ""
    write_csv(export / "images_2004252.csv", IMAGES_HEADER, rows)
    result = _run(export, "--wi-media", media, outcomes={"d.jpg": logits_for("1.4", "fox")})
    assert result.code == 3, result.stderr  # some images were skipped
    assert "images_2004252.csv" in result.stderr and "secret.jpg" in result.stderr
    out = _by_id(export / "deepfaune_images.csv")
    assert out["img-d"]["common_name"] == "Red Fox"
    assert out["img-e"]["identified_by"] == ""  # refused, never classified


def test_output_folder_is_a_complete_set_and_bad_outputs_are_refused_before_any_model_runs(tmp_path):
    export = make_export(tmp_path)
    result = _run(export, "--output", tmp_path / "with_deepfaune")
    assert result.code == 0, result.stderr
    made = tmp_path / "with_deepfaune"
    csvs = sorted(p.name for p in made.iterdir() if p.suffix == ".csv")  # beside them: the run's record
    assert csvs == ["cameras.csv", "deployments.csv", "images.csv", "projects.csv"]
    assert (made / "deployments.csv").read_bytes() == (export / "deployments.csv").read_bytes()
    assert not (export / "deepfaune_images.csv").exists()
    for bad, why in [(export / "images_2004252.csv", "the export's own table"),
                     (export / "images_new.csv", "not starting with 'images'"),
                     (export / "sub", "inside"), (made, "not an empty folder")]:
        refused = _run(export, "--output", bad)
        assert refused.code == 1 and why in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_an_export_with_two_images_tables_is_refused_naming_them(tmp_path):
    export = make_export(tmp_path)
    (export / "images_old.csv").write_bytes((export / "images_2004252.csv").read_bytes())
    result = _run(export)
    assert result.code == 1
    assert "several images tables (images_2004252.csv, images_old.csv)" in result.stderr


def test_a_malformed_table_is_refused_in_one_line(tmp_path):
    export = make_export(tmp_path)
    (export / "images_2004252.csv").write_bytes(b"deployment_id,image_id\n\xff\xfe,x\n")
    result = _run(export)
    assert result.code == 1 and "images_2004252.csv: not UTF-8 text" in result.stderr


def test_a_station_tree_becomes_a_bulk_upload_set(tmp_path):
    tree = tmp_path / "survey"
    jpeg(tree / "StationA" / "Cam1" / "1.jpg", date="2024:05:01 10:00:00")
    jpeg(tree / "StationA" / "Cam1" / "2.jpg", date="2024:05:03 18:30:00")
    jpeg(tree / "StationB" / "3.jpg", date="2024:05:02 06:00:00")
    jpeg(tree / "loose.jpg", date="2024:05:02 06:00:00")
    jpeg(tree / "StationB" / "nodate.jpg")
    refused = _run(tree)
    assert refused.code == 1 and "give --output NEWDIR" in refused.stderr
    result = _run(tree, "--output", tmp_path / "upload", "--wi-project-id", "deer 2024",
                  "--wi-location-prefix", "gs://bucket/p/",
                  outcomes={"StationA/Cam1/1.jpg": logits_for("1.4", "hedgehog")})
    assert result.code == 3, result.stderr  # loose.jpg is in no station folder, nodate.jpg has no timestamp
    assert "StationB/nodate.jpg: no EXIF date, so no Wildlife Insights timestamp; left out" in result.stderr
    upload = tmp_path / "upload"
    deployments = read_csv(upload / "deployments.csv")
    assert [(d["deployment_id"], d["placename"], d["camera_id"], d["start_date"], d["end_date"]) for d in deployments] \
        == [("StationA_Cam1", "StationA", "Cam1", "2024-05-01 10:00:00", "2024-05-03 18:30:00"),
            ("StationB", "StationB", "StationB", "2024-05-02 06:00:00", "2024-05-02 06:00:00")]
    assert read_csv(upload / "projects.csv")[0]["project_id"] == "deer_2024"
    assert {c["camera_id"] for c in read_csv(upload / "cameras.csv")} == {"Cam1", "StationB"}
    images = _by_id(upload / "images.csv")
    assert images["StationA/Cam1/1.jpg"]["location"] == "gs://bucket/p/StationA/Cam1/1.jpg"
    assert images["StationA/Cam1/1.jpg"]["wi_taxon_id"] == "0a11c18f-e253-4651-bb1b-4c642e8a03a7"
    assert images["StationB/3.jpg"]["is_blank"] == "1"
    assert "loose.jpg" not in images and "StationB/nodate.jpg" not in images


def test_a_table_over_the_size_limit_is_refused_naming_it(tmp_path, monkeypatch):
    import deepfaune_wildlife_insights.export as export_module

    export = make_export(tmp_path)
    monkeypatch.setattr(export_module, "MAX_CSV_BYTES", 1000)
    result = _run(export)
    assert result.code == 1
    size = (export / "images_2004252.csv").stat().st_size
    assert f"images_2004252.csv: {size} bytes, more than the 1000 bytes" in result.stderr


def test_nothing_is_written_when_the_images_table_changed_during_the_run(tmp_path):
    export = make_export(tmp_path)
    table = export / "images_2004252.csv"

    class EditingBackend(LogitsBackend):
        def open(self, settings):  # someone saves the table while the models run
            table.write_bytes(table.read_bytes() + b"2004252,DEP1,img-z,z.jpg,,0,,,,,,,,,,2021-08-27 10:00:00\n")
            return super().open(settings)

    result = run_cli(["run", export, "--host", "wildlife-insights", *RUN],
                     registry_with(wi_host, backends=[EditingBackend()], installed=False))
    assert result.code == 1
    assert "images_2004252.csv: changed while DeepFaune was running; nothing was written" in result.stderr
    assert not (export / "deepfaune_images.csv").exists()


def test_stand_in_models_through_the_installed_entry_point(tmp_path, standin_models):
    """`deepfaune run EXPORT --host wildlife-insights --models-dir STANDINS` as a user types it (the distribution
    installed with pip, found through its entry point)."""
    try:
        metadata.distribution("deepfaune-wildlife-insights")
    except metadata.PackageNotFoundError:
        pytest.skip("deepfaune-wildlife-insights is not installed (pip install ./plugins/deepfaune-wildlife-insights)")
    export = make_export(tmp_path)
    deepfaune = [sys.executable, "-m", "deepfaune_plugin.cli"]
    listed = subprocess.run([*deepfaune, "plugins", "--json"], capture_output=True, text=True, check=True)
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    assert rows[("host", "wildlife-insights")]["origin"] == "deepfaune-wildlife-insights 0.1.0"
    run = subprocess.run([*deepfaune, "run", str(export), "--host", "wildlife-insights", "--models-dir",
                          str(standin_models), "--no-store", "-q", "--no-report"], capture_output=True, text=True,
                         env=dict(os.environ))
    assert run.returncode == 0, run.stderr
    out = _by_id(export / "deepfaune_images.csv")
    # stand-in models: every identification says its labels are meaningless (issue 30.9), and stays DeepFaune's
    assert {out[i]["identified_by"] for i in ("img-a", "img-b", "img-d", "img-e")} == {
        "DeepFaune 1.4 (STAND-IN MODELS, random weights: the labels are meaningless)"}
    assert out["img-c"]["identified_by"] == "Elildo Carvalho"
    again = subprocess.run([*deepfaune, "run", str(export), "--host", "wildlife-insights", "--models-dir",
                            str(standin_models), "--no-store", "-q", "--no-report"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # its own marked rows are a machine's: replaced, not a person's
    assert _by_id(export / "deepfaune_images.csv") == out


def test_station_folders_that_would_share_an_id_are_refused_before_any_model_runs(tmp_path):
    tree = tmp_path / "survey"
    jpeg(tree / "St A" / "1.jpg", date="2024:05:01 10:00:00")
    jpeg(tree / "St_A" / "2.jpg", date="2024:05:01 11:00:00")
    result = _run(tree, "--output", tmp_path / "upload")
    assert result.code == 1
    assert "folders St A and St_A would both be deployment_id St_A; rename one" in result.stderr
    refused = _run(tree, "--output", tmp_path / "upload.csv")
    assert refused.code == 1 and "a bulk-upload set is a folder of four CSVs" in refused.stderr
    assert not (tmp_path / "upload").exists()


def test_an_absolute_or_remote_location_is_a_missing_image_not_an_unsafe_one(tmp_path):
    export = make_export(tmp_path)
    rows = read_csv(export / "images_2004252.csv")
    rows[0].update(filename="", location="/mnt/cards/DEP1/gone.jpg")
    rows[1].update(filename="", location="C:\\cards\\DEP1\\gone2.jpg")
    write_csv(export / "images_2004252.csv", IMAGES_HEADER, rows)
    result = _run(export)
    assert result.code == 3
    assert "2 images not found in" in result.stderr and "img-a, img-b" in result.stderr
    assert "outside" not in result.stderr


def test_a_label_given_in_deepfaune_review_is_written_as_the_reviewers_identification():
    from datetime import datetime
    from types import SimpleNamespace

    from deepfaune_plugin.api import ANIMAL, Decision
    from deepfaune_wildlife_insights.taxa import identification

    decision = Decision(relpath="DEP1/a.jpg", date=None, seqnum=1, predictionbase="badger", scorebase=1.0,
                        prediction="badger", score=1.0, top1="badger", count=1, humancount=0, category=ANIMAL,
                        prediction_key="badger", top1_key="badger",
                        human=SimpleNamespace(key="badger", reviewer="Ann Smith", at=datetime(2025, 1, 2, 3, 4)))
    row = identification(decision, "1.4", ("1", "0"))
    assert (row["identified_by"], row["cv_confidence"], row["genus"], row["species"], row["common_name"]) == \
        ("Ann Smith", "", "Meles", "meles", "badger")
    machine = identification(Decision(**{**decision.__dict__, "human": None, "score": 0.83}), "1.4", ("Yes", "No"))
    assert (machine["identified_by"], machine["cv_confidence"], machine["is_blank"]) == ("DeepFaune 1.4", "0.83", "No")


def test_evaluate_compares_with_what_people_identified_in_the_export(tmp_path):
    export = make_export(tmp_path)
    rows = read_csv(export / "images_2004252.csv")
    rows[0].update(identified_by="Ann", is_blank="1")  # a person said blank
    rows[1].update(identified_by="Ann", **{"class": "Mammalia"}, order="Carnivora", family="Canidae",
                   genus="Vulpes", species="vulpes", common_name="Red Fox")
    write_csv(export / "images_2004252.csv", IMAGES_HEADER, rows)
    manifest = wi_host.WildlifeInsightsHost().read(export, {"output": None})
    # d.jpg is Wildlife Insights' AI's, e.jpg nobody's: no truth for them
    assert manifest.human_labels == {"DEP1/a.jpg": "empty", "DEP1/b.jpg": "Vulpes vulpes",
                                     "DEP1/c.jpg": "Meles meles"}
    backend = StoredLogitsBackend({"DEP1/a.jpg": "empty", "DEP1/b.jpg": logits_for("1.4", "fox"),
                                   "DEP1/c.jpg": logits_for("1.4", "fox")}, default="empty")
    registry = registry_with(wi_host, backends=[backend], installed=False)
    common = ["--host", "wildlife-insights", "--backend", "logits", "--store", tmp_path / "store"]
    ran = run_cli(["run", export, *common, "--lang", "en", "-q", "--no-report"], registry)
    assert ran.code == 0, ran.stderr
    evaluated = run_cli(["evaluate", export, *common, "--output", tmp_path / "evaluation"], registry)
    assert evaluated.code == 0, evaluated.stderr
    assert backend.opened == 1  # re-decided from the store, no model run
    # blank and fox right, the person's badger called fox: 2 of 3 at every threshold
    assert "3 labelled files of 5 evaluated (model 1.4)" in evaluated.stdout
    assert "  0.80      100.0%            66.7%" in evaluated.stdout
    assert (tmp_path / "evaluation" / "confusion.csv").is_file()


def test_a_run_decided_by_an_adapted_head_names_it_in_identified_by(tmp_path, standin_models):
    """`deepfaune run EXPORT --adapted NAME`: DeepFaune's rows say which head decided (and are still DeepFaune's
    own: a later run replaces them); without --adapted they are as before."""
    import shutil

    from PIL import Image, ImageDraw

    models = Path(shutil.copytree(standin_models, tmp_path / "models"))  # the head is written into it
    export = make_export(tmp_path)
    for n, name in enumerate(("DEP1/a.jpg", "DEP1/b.jpg", "DEP2/d.jpg", "DEP2/e.jpg")):
        image = Image.new("RGB", (640, 480), (90, 120, 60))  # a red shape: an animal to the stand-in detector
        ImageDraw.Draw(image).rectangle((100 + 20 * n, 100, 300 + 20 * n, 300), fill=(255 - 50 * (n % 2), 0, 0))
        image.save(export / name, "JPEG")
    registry = registry_with(wi_host)
    common = ["--host", "wildlife-insights", "--models-dir", str(models), "--store", str(tmp_path / "s.sqlite")]
    assert run_cli(["run", export, *common, "-q", "--no-report"], registry).code == 0
    plain = (export / "deepfaune_images.csv").read_bytes()
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nDEP1/a.jpg,fox\nDEP1/b.jpg,badger\nDEP2/d.jpg,fox\nDEP2/e.jpg,badger\n",
                      encoding="utf-8")
    adapted = run_cli(["adapt", export, *common, "--labels", labels, "--name", "site1"], registry)
    assert adapted.code == 0, adapted.stderr
    assert run_cli(["run", export, *common, "-q", "--no-report", "--adapted", "site1"], registry).code == 0
    out = _by_id(export / "deepfaune_images.csv")
    mark = "(STAND-IN MODELS, random weights: the labels are meaningless)"
    assert {out[i]["identified_by"] for i in ("img-a", "img-b", "img-d", "img-e")} == {
        f"DeepFaune 1.4, adapted head site1 {mark}"}
    assert out["img-c"]["identified_by"] == "Elildo Carvalho"
    assert run_cli(["run", export, *common, "-q", "--no-report"], registry).code == 0
    assert (export / "deepfaune_images.csv").read_bytes() == plain
