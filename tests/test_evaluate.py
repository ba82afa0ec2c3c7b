"""Issue 18 item 3 (first part): `deepfaune evaluate` against a labels CSV, numbers checked by hand, and the
threshold sweep re-decides stored outputs without running the backend."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfaune_plugin.api import BackendDescription
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.testing import LogitsBackend, logits_for, registry_with, run_cli


class StoredLogits(LogitsBackend):
    """The testing backend, with a description so that its outputs go to the result store."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opened = 0

    def describe(self, settings):
        return BackendDescription(load_card(settings.model_version).class_table(), "stored-logits-v1")

    def open(self, settings):
        self.opened += 1
        return super().open(settings)


def fox_at(p: float) -> list[float]:
    """Logits DeepFaune 1.4 decides as fox with probability `p` (one image: temperature 1.10, 38 classes)."""
    values = [0.0] * 38
    values[list(load_card("1.4").class_table().labels("en")).index("fox")] = 1.10 * math.log(p * 37 / (1 - p))
    return values


@pytest.fixture
def season(tmp_path: Path):
    src = tmp_path / "season"
    for station in "abcd":
        (src / station).mkdir(parents=True)
        cv2.imwrite(str(src / station / "IMG_0001.JPG"), np.full((60, 80, 3), ord(station), np.uint8))
    backend = StoredLogits({"a/IMG_0001.JPG": logits_for("1.4", "fox", high=20.0),  # fox, sure
                            "b/IMG_0001.JPG": fox_at(0.72),  # fox at 0.72: undefined from 0.75 up
                            "c/IMG_0001.JPG": "empty",
                            "d/IMG_0001.JPG": logits_for("1.4", "wolf", high=20.0)})
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["relpath", "label"])
        w.writerows([("a/IMG_0001.JPG", "fox"), ("b/IMG_0001.JPG", "Loup"), ("c/IMG_0001.JPG", "vide"),
                     ("d/IMG_0001.JPG", "renard"), ("e/IMG_0009.JPG", "fox"), ("a/IMG_0001.JPG ", "")])
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report"], registry)
    assert ran.code == 0, ran.stderr
    return src, labels, registry, store, backend, tmp_path / "evaluation"


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_gives_coverage_accuracy_and_per_class_figures_checked_by_hand(season):
    src, labels, registry, store, backend, out = season
    opened = backend.opened
    done = run_cli(["evaluate", src, "--labels", labels, "--backend", "logits", "--store", store,
                    "--target", "0.6", "--output", out], registry)
    assert done.code == 0, done.stderr
    assert backend.opened == opened  # no model was loaded: stored outputs only
    sweep = {(r["level"], float(r["threshold"])): r for r in rows(out / "thresholds.csv")}
    # 4 labelled files: a fox (right), b fox at 0.72 for a wolf (wrong while labelled), c empty (right),
    # d wolf for a fox (wrong); each file is its own sequence
    at_50, at_75 = sweep[("sequence", 0.5)], sweep[("sequence", 0.75)]
    assert (at_50["labelled"], at_50["covered"], at_50["correct"], at_50["accuracy"]) == ("4", "4", "2", "0.5")
    assert (at_75["labelled"], at_75["covered"], at_75["correct"], at_75["coverage"]) == ("4", "3", "2", "0.75")
    assert at_75["accuracy"] == "0.6667" and sweep[("image", 0.75)]["accuracy"] == "0.6667"
    assert sorted({t for _, t in sweep}) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert "threshold 0.75 reaches 66.7% accuracy per sequence (target 60%), labelling 75.0% of the labelled" \
           in done.stdout
    classes = {(r["level"], r["label"]): r for r in rows(out / "classes.csv")}
    fox, wolf, empty = (classes[("sequence", k)] for k in ("fox", "wolf", "empty"))  # at 0.8
    assert (fox["support"], fox["predicted"], fox["correct"], fox["precision"], fox["recall"]) == \
        ("2", "1", "1", "1.0", "0.5")
    assert (wolf["support"], wolf["predicted"], wolf["correct"], wolf["precision"], wolf["recall"]) == \
        ("1", "1", "0", "0.0", "0.0")
    assert (empty["support"], empty["precision"], empty["recall"]) == ("1", "1.0", "1.0")
    confusion = {(r["human"], r["deepfaune"]): r["files"] for r in rows(out / "confusion.csv") if r["level"] == "image"}
    assert confusion == {("fox", "fox"): "1", ("fox", "wolf"): "1", ("wolf", "undefined"): "1", ("empty", "empty"): "1"}
    assert "1 labelled file(s) are not among the evaluated files (e.g. e/IMG_0009.JPG)" in done.stderr


def test_evaluate_without_stored_outputs_says_to_run_first(season, tmp_path):
    src, labels, registry, _, backend, out = season
    from deepfaune_plugin.store import ResultStore
    ResultStore(tmp_path / "empty.sqlite").close()  # a store with nothing for these files
    done = run_cli(["evaluate", src, "--labels", labels, "--backend", "logits", "--store", tmp_path / "empty.sqlite",
                    "--output", out], registry)
    assert done.code == 1 and "none of its 4 files has stored outputs" in done.stderr
    assert "run `deepfaune run" in done.stderr and not out.exists()


def test_labels_that_are_no_class_are_named_and_a_bad_file_is_refused(season, tmp_path):
    src, _, registry, store, _, out = season
    odd = tmp_path / "odd.csv"
    odd.write_text("file,species\na/IMG_0001.JPG,unicorn\nc/IMG_0001.JPG,EMPTY\n", encoding="utf-8")
    done = run_cli(["evaluate", src, "--labels", odd, "--backend", "logits", "--store", store, "--output", out],
                   registry)
    assert done.code == 0 and "odd.csv line 2: 'unicorn' is no label of model 1.4" in done.stderr
    assert "1 labelled files of 4 evaluated" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("name,what\nx,y\n", encoding="utf-8")
    done = run_cli(["evaluate", src, "--labels", bad, "--backend", "logits", "--store", store, "--output", out],
                   registry)
    assert done.code == 1 and "bad.csv: needs a file column" in done.stderr


# ---------------------------------------------------------------- labels the source holds (issue 18 item 3, part 2)

import shutil  # noqa: E402
import sqlite3  # noqa: E402
from collections import Counter  # noqa: E402

from conftest import SHARED  # noqa: E402
from deepfaune_plugin.evaluate import Evaluation, truth_keys  # noqa: E402
from deepfaune_plugin.taxonomy import key_for_name  # noqa: E402
from deepfaune_plugin.testing import StoredLogitsBackend  # noqa: E402

FOX, BLANK, PERSON_MEDIA, CAR = "f011d0e6", "29aef5c3", "075f9dfd", "bfadfe88"  # media of the example package


def unique_image(n: int) -> np.ndarray:
    """An image of its own (the result store knows files by their content)."""
    return np.random.default_rng(n).integers(0, 256, (24, 32, 3), dtype=np.uint8)  # JPEG keeps noise apart


def example_package(tmp_path: Path, local: set[str] | None = None) -> Path:
    """A copy of the Camtrap DP 1.0.2 example package whose media `local` (all, for None) are given as local
    files media/<mediaID>.jpg instead of their URL (the example's own 10 local media stay as they are);
    its observations are the example's own."""
    example = SHARED / "data" / "camtrap-dp-1.0.2" / "example"
    if not (example / "datapackage.json").is_file():
        pytest.skip("../shared (the Camtrap DP example package) is not present beside the repository")
    pkg = tmp_path / "example"
    shutil.copytree(example, pkg)
    with open(pkg / "media.csv", newline="", encoding="utf-8") as fh:
        media = list(csv.DictReader(fh))
    for n, row in enumerate(media):
        if row["filePath"].startswith("http") and (local is None or row["mediaID"] in local):
            row["filePath"] = f"media/{row['mediaID']}.jpg"
            cv2.imwrite(str(pkg / row["filePath"]), unique_image(n))
    with open(pkg / "media.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(media[0]))
        w.writeheader()
        w.writerows(media)
    return pkg


def run_then_evaluate(src: Path, backend, tmp_path: Path, *evaluate_args, run_args=()):
    registry = registry_with(backends=[backend])
    store = tmp_path / "results.sqlite"
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", *run_args], registry)
    assert ran.code in (0, 3), ran.stderr  # 3: files skipped (the example's remote media)
    opened = backend.opened

    def refuse(settings):
        raise AssertionError("the evaluation must not run the model")

    backend.open = refuse  # the sweep re-decides stored outputs only
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", store, "--output", tmp_path / "evaluation",
                    *evaluate_args], registry)
    assert backend.opened == opened
    return done, tmp_path / "evaluation"


def test_camtrap_dp_human_observations_are_the_labels_checked_by_hand(tmp_path):
    """4 media of the example package people labelled: a fox (DeepFaune: fox), a blank (empty), a person
    (DeepFaune: fox at 0.72, undefined from 0.75 up) and a vehicle (DeepFaune: empty); each its own sequence.
    At 0.8: 4 labelled, 3 covered, 2 correct. The 10 local media have only another model's observations."""
    pkg = example_package(tmp_path, {FOX, BLANK, PERSON_MEDIA, CAR})
    backend = StoredLogitsBackend({f"media/{FOX}.jpg": logits_for("1.4", "fox", high=20.0),
                                   f"media/{PERSON_MEDIA}.jpg": fox_at(0.72), f"media/{CAR}.jpg": "empty"})
    done, out = run_then_evaluate(pkg, backend, tmp_path, "--target", "0.6")
    assert done.code == 0, done.stderr
    assert "4 file(s) carry a human label" in done.stderr and "4 labelled files of 14 evaluated" in done.stdout
    sweep = {(r["level"], float(r["threshold"])): r for r in rows(out / "thresholds.csv")}
    for level in ("image", "sequence"):
        at_80, at_50 = sweep[(level, 0.8)], sweep[(level, 0.5)]
        assert (at_80["labelled"], at_80["covered"], at_80["correct"]) == ("4", "3", "2")
        assert (at_80["coverage"], at_80["accuracy"]) == ("0.75", "0.6667")
        assert (at_50["covered"], at_50["correct"], at_50["coverage"], at_50["accuracy"]) == ("4", "2", "1.0", "0.5")
    assert sweep[("sequence", 0.7)]["covered"] == "4" and sweep[("sequence", 0.75)]["covered"] == "3"
    confusion = {(r["human"], r["deepfaune"]): r["files"] for r in rows(out / "confusion.csv")
                 if r["level"] == "sequence"}
    assert confusion == {("fox", "fox"): "1", ("empty", "empty"): "1", ("human", "undefined"): "1",
                         ("vehicle", "empty"): "1"}
    classes = {r["label"]: r for r in rows(out / "classes.csv") if r["level"] == "sequence"}
    assert (classes["empty"]["predicted"], classes["empty"]["precision"], classes["empty"]["recall"]) == \
        ("2", "0.5", "1.0")
    assert (classes["human"]["support"], classes["human"]["precision"], classes["human"]["recall"]) == \
        ("1", "", "0.0")
    assert "threshold 0.50 reaches" not in done.stdout and "threshold 0.75 reaches 66.7%" in done.stdout


def test_the_whole_example_package_against_its_human_observations(tmp_path):
    """Every media of the example local: people labelled 112 blank, 33 human, 20 vehicle, 11 bird (Aves) and
    6 fox media (counted from observations.csv) that a DeepFaune class names; a backend that sees empty
    everywhere but on the fox and human media: per image, coverage 1, accuracy (112 + 33 + 6) / 182."""
    pkg = example_package(tmp_path)
    with open(pkg / "observations.csv", newline="", encoding="utf-8") as fh:
        obs = [r for r in csv.DictReader(fh) if r["observationLevel"] == "media"]
    fox = {r["mediaID"] for r in obs if r["scientificName"] == "Vulpes vulpes"}
    people = {r["mediaID"] for r in obs if r["observationType"] == "human"}
    assert (len(fox), len(people)) == (6, 33)
    outcomes = {f"media/{m}.jpg": logits_for("1.4", "fox", high=20.0) for m in fox}
    outcomes.update({f"media/{m}.jpg": "person" for m in people})
    done, out = run_then_evaluate(pkg, StoredLogitsBackend(outcomes), tmp_path)
    assert done.code == 0, done.stderr
    assert "182 labelled files of 423 evaluated" in done.stdout
    at_80 = {r["level"]: r for r in rows(out / "thresholds.csv") if float(r["threshold"]) == 0.8}["image"]
    assert (at_80["labelled"], at_80["covered"], at_80["correct"], at_80["accuracy"]) == ("182", "182", "151", "0.8297")
    confusion = {(r["human"], r["deepfaune"]): int(r["files"]) for r in rows(out / "confusion.csv")
                 if r["level"] == "image"}
    assert confusion == {("empty", "empty"): 112, ("human", "human"): 33, ("fox", "fox"): 6,
                         ("vehicle", "empty"): 20, ("bird", "empty"): 11}
    # the names no DeepFaune class holds are said, with a file each: every file they label (117 media show only
    # mallards, 40 more a mallard beside a gadwall or a heron: issue 30.11, each name counts its files)
    assert "'Anas platyrhynchos' (157 file(s)" in done.stderr and "'Rattus norvegicus' (28 file(s)" in done.stderr
    assert "disagree" not in done.stderr


def test_a_source_without_human_labels_says_to_give_labels(tmp_path):
    """The example as published: its 10 local media carry only another model's (machine) observations."""
    pkg = example_package(tmp_path, set())
    done, _ = run_then_evaluate(pkg, StoredLogitsBackend(), tmp_path)
    assert done.code == 1
    assert "the source holds no human labels" in done.stderr and "--labels FILE" in done.stderr


def test_taxonomy_maps_the_example_packages_names(tmp_path):
    assert key_for_name("Vulpes vulpes")[0] == "fox"
    assert key_for_name("Homo sapiens")[0] == "human"
    assert key_for_name("Aves")[0] == "bird"  # bird, otherbird and raptor are all Aves: the plain class
    assert key_for_name("Anas platyrhynchos")[0] is None  # no Anas in the table, no class in the package
    # with the classification a `taxonomic` entry may give
    assert key_for_name("Anas platyrhynchos", {"class": "Aves", "order": "Anseriformes"})[0] == "anseriform"
    assert key_for_name("Ardea cinerea", {"class": "Aves", "order": "Pelecaniformes"})[0] == "bird"
    assert key_for_name("Martes foina", {"family": "Mustelidae", "class": "Mammalia"})[0] == "mustelid"
    assert key_for_name("Rattus norvegicus", {"class": "Mammalia", "order": "Rodentia"})[0] == "micromammal"
    assert key_for_name("Lynx pardinus")[0] == "lynx"  # the table's only Lynx
    assert key_for_name("Canis lupaster") == (None, "genus Canis holds several DeepFaune classes "
                                                    "(dog, golden jackal, wolf)")
    assert key_for_name("Panthera leo", {"class": "Mammalia", "order": "Carnivora"})[0] is None  # no micromammal
    # a package saying more about its names: the host uses it
    pkg = example_package(tmp_path, {FOX, "07840dcc"})  # 07840dcc: a mallard
    descriptor = json.loads((pkg / "datapackage.json").read_text(encoding="utf-8"))
    for entry in descriptor["taxonomic"]:
        if entry["scientificName"] == "Anas platyrhynchos":
            entry.update({"class": "Aves", "order": "Anseriformes", "family": "Anatidae"})
    (pkg / "datapackage.json").write_text(json.dumps(descriptor), encoding="utf-8")
    from deepfaune_plugin.hooks.camtrapdp.host import CamtrapDPHost

    manifest = CamtrapDPHost().read(pkg, {})
    manifest.host_state.lock.release()
    assert manifest.human_labels == {f"media/{FOX}.jpg": "fox", "media/07840dcc.jpg": "anseriform"}
    classes = load_card("1.4").class_table()
    assert truth_keys(manifest.human_labels, classes)[0] == {f"media/{FOX}.jpg": "fox", "media/07840dcc.jpg": "bird"}
    assert truth_keys({"a.jpg": "anseriform"}, classes, bird=True)[0] == {"a.jpg": "bird anseriform"}
    assert truth_keys({"a.jpg": "Cervus elaphus", "b.jpg": "Cerf", "c.jpg": "unicorn"}, classes)[0] == \
        {"a.jpg": "red deer", "b.jpg": "red deer"}


def test_timelapse_labels_field(tmp_path):
    from timelapse_build import Control, create_ddb, write_template

    src = tmp_path / "set"
    for rel in ("a/1.jpg", "a/2.jpg", "b/1.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), unique_image(sum(map(ord, rel))))
    tdb = write_template(src / "TimelapseTemplate.tdb", [Control("Species", "Note", default="none")])
    ddb = create_ddb(tdb, src / "TimelapseData.ddb", [("a/1.jpg", None), ("a/2.jpg", None), ("b/1.jpg", None)])
    with sqlite3.connect(ddb) as conn:
        conn.execute("UPDATE DataTable SET Species = 'Renard' WHERE File = '1.jpg' AND RelativePath = 'a'")
        conn.execute("UPDATE DataTable SET Species = 'Vulpes vulpes' WHERE RelativePath = 'b'")
    backend = StoredLogitsBackend({"a/1.jpg": logits_for("1.4", "fox", high=20.0),
                                   "b/1.jpg": logits_for("1.4", "wolf", high=20.0)})
    done, out = run_then_evaluate(src, backend, tmp_path, "--labels-field", "Species")
    assert done.code == 0, done.stderr
    # a/2.jpg keeps the template's default: no label; a/1 fox for fox (right), b/1 wolf for fox (wrong)
    at_80 = {r["level"]: r for r in rows(out / "thresholds.csv") if float(r["threshold"]) == 0.8}["image"]
    assert (at_80["labelled"], at_80["covered"], at_80["correct"]) == ("2", "2", "1")
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", tmp_path / "results.sqlite",
                    "--labels-field", "Genus", "--output", out], registry_with(backends=[backend]))
    assert done.code == 1 and "--labels-field Genus: no such data field" in done.stderr and "Species" in done.stderr
    done = run_cli(["evaluate", src, "--backend", "logits", "--store", tmp_path / "results.sqlite",
                    "--output", out], registry_with(backends=[backend]))
    assert done.code == 1 and "--labels-field" in done.stderr


def test_camtrapr_species_folders(tmp_path):
    src = tmp_path / "inDir"
    for rel in ("st1/cam1/Fox/1.jpg", "st1/cam1/Badger/1.jpg", "st2/Fox/9.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), unique_image(sum(map(ord, rel))))
    backend = StoredLogitsBackend({"st1/cam1/Fox/1.jpg": logits_for("1.4", "fox", high=20.0),
                                   "st1/cam1/Badger/1.jpg": logits_for("1.4", "fox", high=20.0),
                                   "st2/Fox/9.jpg": fox_at(0.72)})
    done, out = run_then_evaluate(src, backend, tmp_path, "--host", "camtrapr", "--species-from-folders",
                                  run_args=("--host", "camtrapr", "--species-from-folders"))
    assert done.code == 0, done.stderr
    at_80 = {r["level"]: r for r in rows(out / "thresholds.csv") if float(r["threshold"]) == 0.8}["sequence"]
    assert (at_80["labelled"], at_80["covered"], at_80["correct"]) == ("3", "2", "1")
    from deepfaune_plugin.hooks.camtrapr.source import read_tree

    tree = read_tree(src, species_from_folders=True)
    assert {i.relpath: i.camera for i in tree.items} == {"st1/cam1/Badger/1.jpg": "cam1", "st1/cam1/Fox/1.jpg": "cam1",
                                                         "st2/Fox/9.jpg": None}
    assert read_tree(src).human_labels == {}  # without the option, Fox is a camera folder


def test_evaluation_adds_up_block_by_block():
    """The accumulator over two blocks equals the existing one-pass sweep over both."""
    from deepfaune_plugin.evaluate import sweep
    from deepfaune_plugin.types import MediaItem, RawResult

    classes = load_card("1.4").class_table()
    items = [MediaItem(path=Path(f"{g}/{n}.jpg"), relpath=f"{g}/{n}.jpg", group=g) for g in "ab" for n in (1, 2)]
    raws = [RawResult(relpath=i.relpath) for i in items]
    truth = {"a/1.jpg": "empty", "b/2.jpg": "fox"}
    from deepfaune_plugin.api import RunSettings

    settings = RunSettings(lang="en")
    ev = Evaluation(truth, classes, settings)
    ev.add(items[:2], raws[:2])
    ev.add(items[2:], {r.relpath: r for r in raws[2:]})
    assert [(s.level, s.threshold, s.labelled, s.covered, s.correct) for s in ev.scores()] == \
        [(s.level, s.threshold, s.labelled, s.covered, s.correct) for s in sweep(items, raws, classes, settings, truth)]
    assert ev.confusion["image"] == Counter({("empty", "empty"): 1, ("fox", "empty"): 1})


def test_the_runs_review_page_carries_the_evaluation(tmp_path):
    """`deepfaune run` on the package: the page's evaluation, added up chunk by chunk, has the numbers
    `deepfaune evaluate` gives (the 4 media checked by hand above)."""
    from test_report_season import page_data

    pkg = example_package(tmp_path, {FOX, BLANK, PERSON_MEDIA, CAR})
    backend = StoredLogitsBackend({f"media/{FOX}.jpg": logits_for("1.4", "fox", high=20.0),
                                   f"media/{PERSON_MEDIA}.jpg": fox_at(0.72), f"media/{CAR}.jpg": "empty"})
    ran = run_cli(["run", pkg, "--backend", "logits", "--no-store", "-q", "--lang", "en"],
                  registry_with(backends=[backend]))
    assert ran.code in (0, 3), ran.stderr
    evaluation = page_data(pkg / "deepfaune-report.html")["evaluation"]
    assert (evaluation["labelled"], evaluation["files"], evaluation["threshold"]) == (4, 14, 0.8)
    sweep = {(s["level"], s["t"]): s for s in evaluation["sweep"]}
    assert [(s["covered"], s["correct"], s["coverage"], s["accuracy"]) for s in
            (sweep[("sequence", 0.8)], sweep[("image", 0.5)])] == [(3, 2, 0.75, 0.6667), (4, 2, 1.0, 0.5)]
    assert {(c["human"], c["deepfaune"]): c["n"] for c in evaluation["confusion"]["sequence"]} == \
        {("fox", "fox"): 1, ("empty", "empty"): 1, ("human", "undefined"): 1, ("vehicle", "empty"): 1}
    # a source without human labels: no evaluation on its page
    plain = tmp_path / "plain"
    (plain / "a").mkdir(parents=True)
    cv2.imwrite(str(plain / "a" / "1.jpg"), unique_image(1))
    assert run_cli(["run", plain, "--backend", "logits", "--no-store", "-q"], registry_with(backends=[backend])).code == 0
    assert "evaluation" not in page_data(plain / "deepfaune-report.html")
