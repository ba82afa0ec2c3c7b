"""Issue 32 item 5 (evaluate): `deepfaune evaluate --species-lists` scores each species' presence and MaxN from every
animal box (`--every-animal`) against the species list people gave each file; numbers checked by hand."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.taxonomy import LabelReader
from deepfaune_plugin.testing import StoredLogitsBackend, logits_for, registry_with, run_cli

CLASSES = load_card("1.4").class_table()


def sure(label: str) -> list[float]:
    return logits_for("1.4", label, high=20.0)


#: What the backend sees, one file per station (each its own sequence): a fox and a badger; one fox; nothing;
#: one fox (where people saw a wolf).
OUTCOMES = {"a/1.jpg": [sure("fox"), sure("badger")], "b/1.jpg": [sure("fox")], "c/1.jpg": "empty",
            "d/1.jpg": [sure("fox")]}
#: What people saw: a's list in two rows, b's as a cell with a count, d's as another model language's name.
LABELS = [("a/1.jpg", "fox"), ("a/1.jpg", "Blaireau"), ("b/1.jpg", "renard:2"), ("c/1.jpg", "empty"),
          ("d/1.jpg", "wolf")]


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def survey(tmp_path: Path):
    src = tmp_path / "src"
    for i, rel in enumerate(OUTCOMES):
        (src / rel).parent.mkdir(parents=True)
        cv2.imwrite(str(src / rel), np.full((60, 80, 3), 40 + i, np.uint8))
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("relpath", "label"), *LABELS])
    backend = StoredLogitsBackend(OUTCOMES)
    return src, labels, registry_with(backends=[backend]), tmp_path


def _run(src, registry, store, *extra):
    ran = run_cli(["run", src, "--backend", "logits", "--store", store, "-q", "--no-report", "-o",
                   store.parent / "out" / "deepfaune.csv", *extra], registry)
    assert ran.code == 0, ran.stderr


def _evaluate(src, labels, registry, store, out, *extra):
    return run_cli(["evaluate", src, "--labels", labels, "--backend", "logits", "--store", store, "--output", out,
                    *extra], registry)


def test_presence_and_maxn_per_species_checked_by_hand(survey):
    src, labels, registry, tmp = survey
    store = tmp / "results.sqlite"
    _run(src, registry, store, "--every-animal")
    done = _evaluate(src, labels, registry, store, tmp / "evaluation", "--species-lists")
    assert done.code == 0, done.stderr
    presence = {(r["level"], r["species"]): r for r in rows(tmp / "evaluation" / "presence.csv")}
    # fox: people in a, b; DeepFaune in a, b, d -> precision 2/3, recall 1; badger: a on both sides; wolf: d for
    # people only (recall 0, nothing predicted: no precision); each file is its own sequence, so the same per sequence
    for level in ("image", "sequence"):
        fox, badger, wolf = (presence[(level, k)] for k in ("fox", "badger", "wolf"))
        assert [fox[k] for k in ("labelled", "predicted", "correct", "precision", "recall")] == \
            ["2", "3", "2", "0.6667", "1.0"]
        assert [badger[k] for k in ("labelled", "predicted", "correct", "precision", "recall")] == \
            ["1", "1", "1", "1.0", "1.0"]
        assert [wolf[k] for k in ("labelled", "predicted", "correct", "precision", "recall")] == \
            ["1", "0", "0", "", "0.0"]
    assert {r["species"] for r in presence.values()} == {"fox", "badger", "wolf"}  # empty is no species
    assert {r["threshold"] for r in presence.values()} == {"0.8"}
    maxn = {r["species"]: r for r in rows(tmp / "evaluation" / "maxn.csv")}
    # fox: a 1 vs 1, b 1 vs 2 (error 1), d 1 vs 0 (error 1): 3 sequences, 1 exact, MAE 2/3; badger: a 1 vs 1;
    # wolf: d 0 vs 1; all 5 pairs: 2 exact, errors 1 + 1 + 1 = 3
    assert [maxn["fox"][k] for k in ("sequences", "exact", "exact_rate", "mae")] == ["3", "1", "0.3333", "0.6667"]
    assert [maxn["badger"][k] for k in ("sequences", "exact", "exact_rate", "mae")] == ["1", "1", "1.0", "0.0"]
    assert [maxn["wolf"][k] for k in ("sequences", "exact", "exact_rate", "mae")] == ["1", "0", "0.0", "1.0"]
    assert [maxn["(all species)"][k] for k in ("sequences", "exact", "exact_rate", "mae")] == ["5", "2", "0.4", "0.6"]
    assert "per species, every animal box at threshold 0.8: 4 labelled files in 4 sequences" in done.stdout
    # the single-label scores keep the files with one label: b (fox), c (empty), d (wolf)
    assert "3 labelled files of 4 evaluated" in done.stdout
    assert "1 file(s) list several labels: left out of the single-label scores" in done.stderr
    sweep = {(r["level"], r["threshold"]): r for r in rows(tmp / "evaluation" / "thresholds.csv")}
    assert (sweep[("image", "0.8")]["labelled"], sweep[("image", "0.8")]["correct"]) == ("3", "2")


def test_one_fox_counted_where_two_were_is_a_maxn_error_of_one(survey):
    src, _, registry, tmp = survey
    labels = tmp / "two.csv"
    labels.write_text("file,species\nb/1.jpg,Vulpes vulpes: 2\n", encoding="utf-8")
    store = tmp / "results.sqlite"
    _run(src, registry, store, "--every-animal")
    done = _evaluate(src, labels, registry, store, tmp / "evaluation", "--species-lists")
    assert done.code == 0, done.stderr
    maxn = {r["species"]: r for r in rows(tmp / "evaluation" / "maxn.csv")}
    assert [maxn["fox"][k] for k in ("sequences", "exact", "mae")] == ["1", "0", "1.0"]
    presence = rows(tmp / "evaluation" / "presence.csv")
    assert [(r["level"], r["recall"], r["precision"]) for r in presence] == [("image", "1.0", "1.0"),
                                                                             ("sequence", "1.0", "1.0")]


def test_without_every_animal_outputs_it_says_which_run_is_needed(survey):
    src, labels, registry, tmp = survey
    store = tmp / "results.sqlite"
    _run(src, registry, store)  # a default run: a's two boxes have no outputs of their own
    done = _evaluate(src, labels, registry, store, tmp / "evaluation", "--species-lists")
    assert done.code == 0, done.stderr
    # b, c and d hold one animal box at most: the stored entry serves; a does not
    assert "1 labelled file(s) have no per-box outputs stored (e.g. a/1.jpg)" in done.stderr
    assert not (tmp / "evaluation" / "presence.csv").exists() or \
        {r["species"] for r in rows(tmp / "evaluation" / "presence.csv")} == {"fox", "wolf"}
    only_a = tmp / "a.csv"
    only_a.write_text("relpath,label\na/1.jpg,fox;badger\n", encoding="utf-8")
    done = _evaluate(src, only_a, registry, store, tmp / "evaluation2", "--species-lists")
    assert done.code == 0, done.stderr
    assert "per-species scores need a run with --every-animal" in done.stdout
    assert not (tmp / "evaluation2" / "presence.csv").exists() and not (tmp / "evaluation2" / "maxn.csv").exists()


def test_without_the_flag_a_file_listed_twice_is_still_people_disagreeing(survey):
    src, labels, registry, tmp = survey
    store = tmp / "results.sqlite"
    _run(src, registry, store, "--every-animal")
    done = _evaluate(src, labels, registry, store, tmp / "evaluation")
    assert done.code == 0, done.stderr
    assert ("a/1.jpg: labels.csv lines 2, 3: listed 2 times with labels that disagree (Blaireau, fox); left out "
            "(several species in one file are read with --species-lists)") in done.stderr
    assert "b/1.jpg: labels.csv line 4: 'renard:2' is no label of model 1.4 (a list of species in one cell, or a count, is " \
           "read with --species-lists)" in done.stderr
    assert not (tmp / "evaluation" / "presence.csv").exists()
    assert "per species" not in done.stdout


def test_a_species_list_cell_is_read_by_the_one_label_rule():
    rule = LabelReader(CLASSES)
    assert rule.species_list("fox:2;badger") == ({"fox": 2, "badger": 1}, [])
    assert rule.species_list(" Renard | renard : 3 |Meles meles") == ({"fox": 4, "badger": 1}, [])
    assert rule.species_list("fox:two; unicorn; badger:0; wolf:99999") == ({}, ["fox:two", "unicorn", "badger:0",
                                                                                 "wolf:99999"])
    assert rule.species_list("empty") == ({"empty": 1}, [])
