"""Issue 30 items 7, 11, 18: numbers of `deepfaune evaluate` that mislead.

7: what DeepFaune itself wrote into a source (a Timelapse field, a species tree it built, Camtrap DP rows) is
never a person's label; 11: one label rule for every source (languages, scientific names, accents, bird groups
merged before labels are compared, a file listed twice with different labels named); 18: a bad --output is
one line."""
from __future__ import annotations

import csv
import shutil
import sqlite3
import zlib
from pathlib import Path

import cv2

from deepfaune_plugin.hooks.camtrapdp.labels import human_labels
from deepfaune_plugin.hooks.camtrapdp.observations import MediaInfo
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli
from deepfaune_plugin.evaluate import read_labels, truth_keys
from test_evaluate import rows, run_then_evaluate, unique_image

CLASSES = load_card("1.4").class_table()


def images(root: Path, rels) -> Path:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), unique_image(zlib.crc32(rel.encode())))  # one content per file
    return root


# ---------------------------------------------------------------- item 7: DeepFaune's own values are no labels

def test_timelapse_field_deepfaune_wrote_is_not_a_label(tmp_path):
    """run --write-ddb --field Species writes fox, fox, wolf; a person then types "Loup" over a/2 (DeepFaune:
    fox). Only that one is a person's label: before, all 3 were, and DeepFaune scored 2 of 3 against itself."""
    from timelapse_build import Control, create_ddb, write_template

    rels = ("a/1.jpg", "a/2.jpg", "b/1.jpg")
    src = images(tmp_path / "set", rels)
    tdb = write_template(src / "TimelapseTemplate.tdb", [Control("Species", "Note")])
    ddb = create_ddb(tdb, src / "TimelapseData.ddb", [(rel, None) for rel in rels])
    backend = StoredLogitsBackend({"a/1.jpg": logits_for("1.4", "fox", high=20.0),
                                   "a/2.jpg": logits_for("1.4", "fox", high=20.0),
                                   "b/1.jpg": logits_for("1.4", "wolf", high=20.0)})
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", "--lang", "en",
                   "--per-image", "--write-ddb", "--field", "Species"], registry)
    assert ran.code == 0, ran.stderr
    with sqlite3.connect(ddb) as conn:
        assert [r[0] for r in conn.execute("SELECT Species FROM DataTable ORDER BY Id")] == ["fox", "fox", "wolf"]
        conn.execute("UPDATE DataTable SET Species = 'Loup' WHERE File = '2.jpg'")  # the person's correction
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--labels-field", "Species",
                    "--output", tmp_path / "evaluation"], registry)
    assert done.code == 0, done.stderr
    assert "2 file(s), e.g. this one, hold in Species only what DeepFaune wrote there" in done.stderr
    assert "1 file(s) carry a human label" in done.stderr and "1 labelled files of 3 evaluated" in done.stdout
    at_80 = {r["level"]: r for r in rows(tmp_path / "evaluation" / "thresholds.csv")
             if float(r["threshold"]) == 0.8}["image"]
    assert (at_80["labelled"], at_80["covered"], at_80["correct"]) == ("1", "1", "0")  # wolf said, fox seen
    # every value DeepFaune's: nothing to compare with, and the message says why
    with sqlite3.connect(ddb) as conn:
        conn.execute("UPDATE DataTable SET Species = 'fox' WHERE File = '2.jpg'")
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--labels-field", "Species",
                    "--output", tmp_path / "evaluation"], registry)
    assert done.code == 1 and "3 file(s), e.g. this one, hold in Species only what DeepFaune wrote" in done.stderr
    assert "the source holds no human labels (timelapse: none left once DeepFaune's own values" in done.stderr
    # the ledger gone (the .ddb copied alone): its backup in Backups/ and its recognitions say DeepFaune wrote
    # here, so no value of Species is taken for a person's (a/2 the person's too: it cannot be told)
    with sqlite3.connect(ddb) as conn:
        conn.execute("UPDATE DataTable SET Species = 'Loup' WHERE File = '2.jpg'")
    (src / ".deepfaune-timelapse.json").unlink()
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--labels-field", "Species",
                    "--output", tmp_path / "evaluation"], registry)
    assert done.code == 1 and "DeepFaune has written into this database (Backups/TimelapseData." in done.stderr
    assert "none of the 3 file(s) labelled in Species is taken for a label" in done.stderr
    shutil.rmtree(src / "Backups")  # only the .ddb left to say it
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--labels-field", "Species",
                    "--output", tmp_path / "evaluation"], registry)
    assert done.code == 1 and "none of the 3 file(s) labelled in Species is taken" in done.stderr, done.stderr


def test_species_tree_deepfaune_built_is_not_a_label(tmp_path):
    """run --species-folders OUT places 3 files by DeepFaune's answer; a person moves one fox into a badger
    folder. evaluate OUT --species-from-folders: 1 person's label (the moved file), 2 of DeepFaune's left out."""
    src = images(tmp_path / "inDir", ("st1/1.jpg", "st1/2.jpg", "st2/3.jpg"))
    backend = StoredLogitsBackend({"st1/1.jpg": logits_for("1.4", "fox", high=20.0),
                                   "st1/2.jpg": logits_for("1.4", "fox", high=20.0),
                                   "st2/3.jpg": logits_for("1.4", "wolf", high=20.0)})
    registry = registry_with(backends=[backend])
    store, out = tmp_path / "results.sqlite", tmp_path / "species"
    ran = run_cli(["run", src, "--host", "camtrapr", "--backend", "logits", "--store", store, "-q", "--no-report",
                   "--species-folders", out, "--maxlag", "0"], registry)
    assert ran.code == 0, ran.stderr
    placed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert placed == ["st1/renard/1.jpg", "st1/renard/2.jpg", "st2/loup/3.jpg"]
    (out / "st1" / "Blaireau").mkdir()
    shutil.move(out / "st1" / "renard" / "2.jpg", out / "st1" / "Blaireau" / "2.jpg")
    done = run_cli(["evaluate", out, "--host", "camtrapr", "--species-from-folders", "--backend", "logits",
                    "--store", store, "--output", tmp_path / "evaluation", "--maxlag", "0"], registry)
    assert done.code == 0, done.stderr
    assert "2 file(s), e.g. this one, are where DeepFaune placed them" in done.stderr
    assert "1 file(s) carry a human label" in done.stderr and "1 labelled files of 3 evaluated" in done.stdout
    confusion = {(r["human"], r["deepfaune"]): r["files"] for r in rows(tmp_path / "evaluation" / "confusion.csv")
                 if r["level"] == "image"}
    assert confusion == {("badger", "fox"): "1"}
    # a manifest that cannot be read: no folder is taken for a person's label
    (out / ".deepfaune_species_folders.json").write_text("{", encoding="utf-8")
    done = run_cli(["evaluate", out, "--host", "camtrapr", "--species-from-folders", "--backend", "logits",
                    "--store", store, "--output", tmp_path / "evaluation", "--maxlag", "0"], registry)
    assert done.code == 1 and "none of the 3 species folder label(s) is taken for a person's" in done.stderr


MEDIA = {f"media/{m}.jpg": MediaInfo(m, "dep1", f"2024-05-01T10:00:0{i}Z") for i, m in enumerate("abc")}
DEEPFAUNE = "DeepFaune 1.4 (deepfaune-plugin 1.0.0)"


def test_camtrap_dp_rows_deepfaune_wrote_stay_its_own_with_the_method_cleared():
    """A spreadsheet cleared classificationMethod on DeepFaune's machine rows: classifiedBy (or the
    deepfaune- observationID) still says whose they are. Before, both counted as people's labels."""
    rows_ = [{"observationID": "deepfaune-a", "mediaID": "a", "observationType": "animal",
              "scientificName": "Vulpes vulpes", "classificationMethod": "", "classifiedBy": DEEPFAUNE},
             {"observationID": "deepfaune-b", "mediaID": "b", "observationType": "blank", "classificationMethod": "",
              "classifiedBy": ""},
             {"observationID": "deepfaune-c", "mediaID": "c", "observationType": "animal",
              "scientificName": "Meles meles", "classificationMethod": "machine", "classifiedBy": DEEPFAUNE},
             {"observationID": "obs-7", "mediaID": "c", "observationType": "animal", "scientificName": "Vulpes vulpes",
              "classificationMethod": "human", "classifiedBy": "Ana"}]
    labels, notes = human_labels(rows_, MEDIA, {})
    assert labels == {"media/c.jpg": "fox"}
    assert [n.reason for n in notes] == ["2 file(s), e.g. this one, have only observations DeepFaune wrote "
                                         "(classifiedBy DeepFaune): its own answers, not people's labels; left out "
                                         "of the evaluation"]


# ---------------------------------------------------------------- item 11: one label rule, compared after mapping

def test_camtrap_dp_heron_and_mallard_on_one_event_are_both_bird():
    """An event-level observation of a heron (Aves: bird) and one of a mallard (Anseriformes: the anseriform
    group) over the same media: bird for all 3 without --bird; with it they disagree (said, left out)."""
    descriptor = {"taxonomic": [{"scientificName": "Ardea cinerea", "class": "Aves", "order": "Pelecaniformes"},
                                {"scientificName": "Anas platyrhynchos", "class": "Aves", "order": "Anseriformes"}]}
    event = {"deploymentID": "dep1", "eventStart": "2024-05-01T10:00:00Z", "eventEnd": "2024-05-01T10:00:09Z",
             "observationLevel": "event", "observationType": "animal", "classificationMethod": "human"}
    rows_ = [{**event, "observationID": "e1", "scientificName": "Ardea cinerea"},
             {**event, "observationID": "e2", "scientificName": "Anas platyrhynchos"}]
    labels, notes = human_labels(rows_, MEDIA, descriptor)
    assert notes == [] and labels["media/a.jpg"] == ("anseriform", "bird") and len(labels) == 3
    truth, problems = truth_keys(labels, CLASSES)
    assert truth == {rel: "bird" for rel in MEDIA} and problems == []
    truth, problems = truth_keys(labels, CLASSES, bird=True)
    assert truth == {} and [p.reason for p in problems] == [
        "3 file(s), e.g. this one (bird / bird anseriform), have human labels that disagree after mapping to the "
        "model's classes; left out"]


def test_labels_file_reads_every_language_scientific_names_and_accents(tmp_path):
    """A --labels file goes through the same rule as a source's labels; a file listed twice with labels that
    disagree is named and left out (before: the last row won silently), twice with one class is one label."""
    labels = tmp_path / "labels.csv"
    labels.write_text("relpath,label\n"
                      "a.jpg,micromammifère\nb.jpg,Micromammifere\nc.jpg,Vulpes vulpes\nd.jpg,Gänsevögel\n"
                      "e.jpg, Red_Deer \nf.jpg,renard\nf.jpg,fox\ng.jpg,fox\ng.jpg,Loup\nh.jpg,unicorn\n"
                      "i.jpg,bird passerine\n",
                      encoding="utf-8")
    truth, problems = read_labels(labels, CLASSES)
    assert truth == {"a.jpg": "micromammal", "b.jpg": "micromammal", "c.jpg": "fox", "d.jpg": "bird",
                     "e.jpg": "red deer", "f.jpg": "fox", "i.jpg": "bird"}
    assert [(p.relpath, p.reason) for p in problems] == [
        ("h.jpg", "labels.csv line 11: 'unicorn' is no label of model 1.4"),
        ("g.jpg", "labels.csv lines 9, 10: listed 2 times with labels that disagree (Loup, fox); left out (several "
                  "species in one file are read with --species-lists)")]
    with_bird = read_labels(labels, CLASSES, bird=True)[0]
    assert (with_bird["d.jpg"], with_bird["i.jpg"]) == ("bird anseriform", "bird passerine")


def test_timelapse_rows_of_one_file_agree_after_mapping(tmp_path):
    """A file on two .ddb rows, "Renard" on one and "Vulpes vulpes" on the other: one label, fox (before:
    left out as disagreeing); "Renard" and "Loup" disagree, said with the classes."""
    from timelapse_build import Control, create_ddb, write_template

    src = images(tmp_path / "set", ("a/1.jpg", "b/1.jpg"))
    tdb = write_template(src / "TimelapseTemplate.tdb", [Control("Species", "Note")])
    ddb = create_ddb(tdb, src / "TimelapseData.ddb", [("a/1.jpg", None), ("a/1.jpg", None), ("b/1.jpg", None),
                                                      ("b/1.jpg", None)])
    with sqlite3.connect(ddb) as conn:
        for rid, text in ((1, "Renard"), (2, "Vulpes vulpes"), (3, "Renard"), (4, "Loup")):
            conn.execute("UPDATE DataTable SET Species = ? WHERE Id = ?", (text, rid))
    backend = StoredLogitsBackend({"a/1.jpg": logits_for("1.4", "fox", high=20.0)})
    done, out = run_then_evaluate(src, backend, tmp_path, "--labels-field", "Species")
    assert done.code == 0, done.stderr
    assert "1 file(s), e.g. this one (fox / wolf), have human labels that disagree" in done.stderr
    at_80 = {r["level"]: r for r in rows(out / "thresholds.csv") if float(r["threshold"]) == 0.8}["image"]
    assert (at_80["labelled"], at_80["covered"], at_80["correct"]) == ("1", "1", "1")


# ---------------------------------------------------------------- item 18: --output

def test_output_naming_a_file_or_an_impossible_path_is_one_line(tmp_path):
    src = images(tmp_path / "season", ("a/1.jpg",))
    labels = tmp_path / "labels.csv"
    labels.write_text("relpath,label\na/1.jpg,fox\n", encoding="utf-8")
    backend = StoredLogitsBackend({"a/1.jpg": logits_for("1.4", "fox", high=20.0)})
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    assert run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report"], registry).code == 0
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    blocked = tmp_path / "blocked"
    (blocked / "thresholds.csv").mkdir(parents=True)  # a folder where a CSV goes
    for output, message in ((a_file, f"--output {a_file}: is a file, not a folder"),
                            (a_file / "sub", f"--output {a_file / 'sub'}: cannot be made, {a_file} is a file"),
                            (blocked, f"{blocked / 'thresholds.csv'}: cannot write the evaluation there")):
        done = run_cli(["evaluate", src, "--labels", labels, "--backend", "logits", "--store", store,
                        "--output", output], registry)
        assert done.code == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert a_file.read_text(encoding="utf-8") == "mine"
