"""Issue 18 item 3 (first part): `deepfaune evaluate` against a labels CSV, numbers checked by hand, and the
threshold sweep re-decides stored outputs without running the backend."""
from __future__ import annotations

import csv
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
