"""DeepFaune 1.4.1 decision logic on hand-written logits.

Class table: 4 species (badger, bird, fox, wild boar) in en/fr, the 8 bird subclasses and the
1.4 constants T = 1.10 (one animal row), 1.04 (several), 0.9 (bird head).  Expected scores
are worked out by hand in the comments (e = exp); reported scores are truncated, not rounded.
"""
from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.decisions import (
    FAILED, GroupDecision, decide_group, decide_run, excluded_indices, pooled_softmax, truncate2,
)
from deepfaune_plugin.types import (
    ANIMAL, EMPTY, PERSON, VEHICLE, ClassTable, Detection, MediaItem, RawResult,
)
from pathlib import Path

BIRDS_EN = ["anseriform", "otherbird", "columbiform", "corvid", "galliform", "passerine", "piciform", "raptor"]
BIRDS_FR = ["anseriforme", "autreoiseau", "columbiforme", "corvide", "galliforme", "passereau", "piciforme", "rapace"]
CLASSES = ClassTable(
    version="test-1.4",
    names={"en": ["badger", "bird", "fox", "wild boar"], "fr": ["blaireau", "oiseau", "renard", "sanglier"]},
    bird_names={"en": BIRDS_EN, "fr": BIRDS_FR},
    non_animal={
        "human": {"en": "human", "fr": "humain"},
        "vehicle": {"en": "vehicle", "fr": "vehicule"},
        "empty": {"en": "empty", "fr": "vide"},
        "undefined": {"en": "undefined", "fr": "indéfini"},
    },
    temperature_single=1.10, temperature_multi=1.04, temperature_bird=0.9,
)


def animal(logits, bird_logits=None, relpath="a.jpg", n_animals=1, date=None) -> RawResult:
    dets = [Detection((10.0, 20.0, 110.0, 220.0), 0.91, ANIMAL)] + \
           [Detection((0.0, 0.0, 5.0, 5.0), 0.7, ANIMAL)] * (n_animals - 1)
    return RawResult(relpath=relpath, width=640, height=480, detections=dets, selected=0,
                     logits=np.array(logits, dtype=np.float32),
                     bird_logits=None if bird_logits is None else np.array(bird_logits, dtype=np.float32),
                     date=date)


def other(category, relpath="o.jpg", date=None) -> RawResult:
    dets = [] if category == EMPTY else [Detection((1.0, 2.0, 3.0, 4.0), 0.8, category)]
    return RawResult(relpath=relpath, detections=dets, selected=None if category == EMPTY else 0, date=date)


def failed(relpath="bad.jpg") -> RawResult:
    return RawResult(relpath=relpath, failure="cannot identify image file")


def decide(rows, threshold=0.8, lang="fr", **kw) -> GroupDecision:
    return decide_group(rows, CLASSES, threshold, lang, **kw)


# --- one image ---------------------------------------------------------------------------------

def test_one_image_badger_defined():
    # [3,0,0,0]/1.10 -> e^2.7273 = 15.29; 15.29 / (15.29 + 3) = 0.83598 -> 0.83 >= 0.8
    d = decide([animal([3, 0, 0, 0])])
    assert (d.key, d.label, d.score, d.top1_key, d.top1, d.category) == ("badger", "blaireau", 0.83, "badger", "blaireau", ANIMAL)
    assert d.raw_score == pytest.approx(0.83598, abs=1e-5)


def test_one_image_below_threshold_is_undefined_but_keeps_top1():
    # [2,0,0,0]/1.10 -> e^1.8182 = 6.1606; 6.1606 / 9.1606 = 0.67251 -> 0.67 < 0.8
    d = decide([animal([2, 0, 0, 0])], lang="en")
    assert (d.key, d.label, d.score, d.top1_key, d.top1) == ("undefined", "undefined", 0.67, "badger", "badger")
    assert d.category == ANIMAL


# --- sequences: temperature ----------------------------------------------------------------------

def test_three_animal_rows_use_the_sequence_temperature():
    rows = [animal([3, 0, 0, 0]), animal([2, 0, 0, 0]), animal([1, 0, 0, 0])]
    # mean logits [2,0,0,0]; /1.04 -> e^1.9231 = 6.8420; 6.8420 / 9.8420 = 0.69518 -> 0.69
    seq = decide(rows, threshold=0.5)
    # the same mean logits in one image use 1.10: 0.67251 -> 0.67 (hotter temperature, lower score)
    single = decide([animal([2, 0, 0, 0])], threshold=0.5)
    assert (seq.key, seq.score) == ("badger", 0.69)
    assert (single.key, single.score) == ("badger", 0.67)
    assert seq.raw_score == pytest.approx(0.695183, abs=1e-5)
    assert single.raw_score == pytest.approx(0.672512, abs=1e-5)


def test_mixed_sequence_pools_only_the_animal_rows():
    # animal + empty + human + vehicle: one animal row -> T = 1.10 and exactly the single-image answer
    rows = [other(EMPTY), animal([3, 0, 0, 0]), other(PERSON), other(VEHICLE), other(PERSON)]
    d = decide(rows)
    assert (d.key, d.label, d.score, d.category) == ("badger", "blaireau", 0.83, ANIMAL)
    assert d.raw_score == decide([animal([3, 0, 0, 0])]).raw_score


def test_two_animal_rows_among_others_use_the_multi_temperature():
    # animal rows [3,0,0,0] twice -> mean [3,0,0,0]/1.04 -> e^2.8846 = 17.898; 17.898/20.898 = 0.85645 -> 0.85
    rows = [animal([3, 0, 0, 0]), other(EMPTY), animal([3, 0, 0, 0])]
    d = decide(rows)
    assert (d.key, d.score) == ("badger", 0.85)


# --- excluded species ----------------------------------------------------------------------------

def test_excluded_species_renormalises_over_the_rest():
    logits = [2, 2.2, 0, 0]
    # all four: bird wins, e^2.0 / (e^1.8182 + e^2.0 + 2) = 7.3891 / 15.5497 = 0.47519 -> undefined, top1 bird
    d = decide([animal(logits)], threshold=0.7)
    assert (d.key, d.top1_key, d.score) == ("undefined", "bird", 0.47)
    # bird excluded: e^1.8182 / (e^1.8182 + 2) = 6.1606 / 8.1606 = 0.75492 -> 0.75 >= 0.7
    for name in ("oiseau", "bird", "OISEAU"):
        d = decide([animal(logits)], threshold=0.7, exclude=[name])
        assert (d.key, d.label, d.score) == ("badger", "blaireau", 0.75)
        assert d.raw_score == pytest.approx(0.754921, abs=1e-5)


def test_exclusion_names_prefer_the_run_language():
    table = ClassTable("t", {"en": ["otter", "nutria"], "es": ["nutria", "coipú"]}, None,
                       CLASSES.non_animal)
    assert excluded_indices(table, ["nutria"], "es") == [0]  # Spanish nutria is the otter
    assert excluded_indices(table, ["nutria"], "en") == [1]
    with pytest.raises(ValueError, match="unknown species"):
        excluded_indices(table, ["unicorn"], "en")


# --- human / vehicle / empty ---------------------------------------------------------------------

def test_human_vehicle_tie_is_human_and_majority_vehicle_is_vehicle():
    tie = decide([other(PERSON), other(VEHICLE), other(EMPTY)], lang="en")
    assert (tie.key, tie.label, tie.score, tie.top1, tie.category) == ("human", "human", 1.0, "human", PERSON)
    more = decide([other(PERSON), other(VEHICLE), other(VEHICLE)], lang="fr")
    assert (more.key, more.label, more.score, more.category) == ("vehicle", "vehicule", 1.0, VEHICLE)


def test_human_and_vehicle_are_never_undefined():
    assert decide([other(PERSON)], threshold=0.99).key == "human"


def test_all_empty_is_empty_with_score_one():
    d = decide([other(EMPTY), other(EMPTY)])
    assert (d.key, d.label, d.score, d.top1_key, d.top1, d.category) == ("empty", "vide", 1.0, "empty", "vide", EMPTY)


# --- bird head -----------------------------------------------------------------------------------

def test_bird_subclass():
    # species [0,4,0,0]/1.10 -> e^3.6364 = 37.950; 37.950/40.950 = 0.92674 >= 0.8 -> bird head
    # bird logits: passerine 3.5, others 0, /0.9 -> e^3.8889 = 48.856; 48.856 / 55.856 = 0.87468 -> 0.87
    bird_logits = [0, 0, 0, 0, 0, 3.5, 0, 0]
    d = decide([animal([0, 4, 0, 0], bird_logits)], bird=True)
    assert (d.key, d.label, d.score, d.top1_key, d.top1) == (
        "bird passerine", "oiseau passereau", 0.87, "bird passerine", "oiseau passereau")
    assert decide([animal([0, 4, 0, 0], bird_logits)], bird=True, lang="en").label == "bird passerine"


def test_bird_undefined_when_the_bird_head_is_unsure():
    # bird head: passerine 1.0 -> e^1.1111 = 3.0377; 3.0377 / 10.0377 = 0.30263 < 0.8
    # -> "bird undefined", keeping the species score 0.92674 -> 0.92
    d = decide([animal([0, 4, 0, 0], [0, 0, 0, 0, 0, 1.0, 0, 0])], bird=True)
    assert (d.key, d.label, d.score, d.top1_key) == ("bird undefined", "oiseau indéfini", 0.92, "bird undefined")


def test_bird_option_renames_bird_even_below_threshold_and_off_keeps_plain_bird():
    # species [0,2,0,0] -> 0.67251 < 0.8: undefined, bird head not consulted, top1 "oiseau indéfini"
    row = animal([0, 2, 0, 0], [0, 0, 0, 0, 0, 9.0, 0, 0])
    on = decide([row], bird=True)
    assert (on.key, on.top1_key, on.top1, on.score) == ("undefined", "bird undefined", "oiseau indéfini", 0.67)
    off = decide([animal([0, 4, 0, 0], [0, 0, 0, 0, 0, 9.0, 0, 0])])
    assert (off.key, off.label, off.score) == ("bird", "oiseau", 0.92)


def test_bird_option_needs_a_bird_head():
    no_head = ClassTable("1.3", CLASSES.names, None, CLASSES.non_animal)
    with pytest.raises(ValueError, match="no bird head"):
        decide_group([animal([0, 4, 0, 0])], no_head, 0.8, "fr", bird=True)


# --- threshold and truncation --------------------------------------------------------------------

def test_threshold_boundary():
    # badger and fox tie at 1, bird and boar at -100 (exp underflows to ~1e-40, lost in the sum):
    # e^0.9091 / (2 e^0.9091) = 0.5 exactly; argmax takes the first of the tie (badger)
    row = animal([1, -100, 1, -100])
    assert decide([row], threshold=0.5).raw_score == 0.5
    assert (decide([row], threshold=0.5).key, decide([row], threshold=0.5).score) == ("badger", 0.5)
    # next float32 above 0.5 is 0.50000006: undefined
    assert decide([row], threshold=0.50000006).key == "undefined"
    # the comparison is float32 (DeepFaune on NumPy >= 2): 0.5 + 1e-12 is 0.5 in float32, so still defined
    assert decide([row], threshold=0.5 + 1e-12).key == "badger"


def test_truncation_not_rounding():
    # [3.6242,0,0,0]/1.10 -> e^3.2947 = 26.970; 26.970 / 29.970 = 0.89990 -> 0.89 (rounding would say 0.90)
    d = decide([animal([3.6242, 0, 0, 0])])
    assert d.raw_score == pytest.approx(0.8999, abs=2e-5)
    assert (d.key, d.score) == ("badger", 0.89)
    assert truncate2(0.8999) == 0.89
    assert truncate2(1.0) == 1.0
    # float32 product as in DeepFaune: float32(0.29) = 0.28999999 but 0.28999999 * 100 rounds to 29.0 in float32
    assert truncate2(np.float32(0.29)) == 0.29
    assert int(float(np.float32(0.29)) * 100) == 28  # what float64 arithmetic would have reported


def test_pooled_softmax_matches_float32_reference_and_survives_overflow():
    rows = np.array([[3, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32)
    best, score = pooled_softmax(rows, 1.04)
    assert best == 0 and score.dtype == np.float32
    assert float(score) == pytest.approx(math.exp(2 / 1.04) / (math.exp(2 / 1.04) + 3), rel=1e-6)
    best, score = pooled_softmax(np.array([[200.0, 0.0]], dtype=np.float32), 1.0)  # e^200 overflows float32
    assert (best, float(score)) == (0, 1.0)


# --- failures ------------------------------------------------------------------------------------

def test_failed_rows_are_ignored_and_all_failed_is_failed():
    assert decide([failed(), animal([3, 0, 0, 0])]).key == "badger"
    assert decide([failed(), other(PERSON)]).key == "human"
    d = decide([failed(), failed()])
    assert (d.key, d.label, d.score, d.failed) == (FAILED, "", 0.0, True)
    with pytest.raises(ValueError):
        decide([])


# --- a whole run ---------------------------------------------------------------------------------

def _item(relpath: str) -> MediaItem:
    return MediaItem(path=Path("/data") / relpath, relpath=relpath, group=relpath.rsplit("/", 1)[0])


def test_decide_run_sequences_sorting_and_failures():
    t = datetime(2024, 5, 1, 6, 0, 0)
    s = lambda sec: t.replace(second=sec)
    raws = [
        animal([3, 0, 0, 0], relpath="B/img2.jpg", date=s(5), n_animals=2),   # B: one sequence of 3
        other(PERSON, relpath="B/img3.jpg", date=s(12)),
        animal([1, 0, 0, 0], relpath="B/img1.jpg", date=s(0)),
        other(EMPTY, relpath="A/x.jpg", date=s(0)),                            # A first (name order)
        failed(relpath="A/y.jpg"),                                             # undated -> alone
    ]
    items = [_item(r.relpath) for r in raws]
    out = decide_run(items, raws, CLASSES, RunSettings(threshold=0.6, maxlag=10, lang="en"))
    assert [(d.relpath, d.seqnum) for d in out] == [
        ("A/x.jpg", 1), ("A/y.jpg", 2), ("B/img1.jpg", 3), ("B/img2.jpg", 3), ("B/img3.jpg", 3)]
    by = {d.relpath: d for d in out}
    # B: animal rows [3,0,0,0] and [1,0,0,0] -> mean [2,0,0,0] /1.04 -> 0.69518 -> 0.69 >= 0.6
    for rel in ("B/img1.jpg", "B/img2.jpg", "B/img3.jpg"):
        assert (by[rel].prediction, by[rel].score, by[rel].top1, by[rel].prediction_key) == ("badger", 0.69, "badger", "badger")
    # per image: img2 alone 0.83598 -> 0.83; img1 alone [1,0,0,0]/1.1: e^0.9091=2.4821, 2.4821/5.4821=0.45277 -> undefined 0.45
    assert (by["B/img2.jpg"].predictionbase, by["B/img2.jpg"].scorebase) == ("badger", 0.83)
    assert (by["B/img1.jpg"].predictionbase, by["B/img1.jpg"].scorebase) == ("undefined", 0.45)
    assert (by["B/img3.jpg"].predictionbase, by["B/img3.jpg"].humancount, by["B/img3.jpg"].count) == ("human", 1, 0)
    assert (by["B/img2.jpg"].count, by["B/img2.jpg"].box, by["B/img2.jpg"].box_conf) == (2, (10.0, 20.0, 110.0, 220.0), 0.91)
    assert (by["A/x.jpg"].prediction, by["A/x.jpg"].category, by["A/x.jpg"].box) == ("empty", EMPTY, None)
    bad = by["A/y.jpg"]
    assert (bad.prediction, bad.score, bad.predictionbase, bad.prediction_key, bad.failure) == (
        "", 0.0, "", FAILED, "cannot identify image file")



def test_decide_run_keeps_the_unrounded_scores_and_each_images_own_answer():
    t = datetime(2024, 5, 1, 6, 0, 0)
    raws = [animal([3, 0, 0, 0], relpath="B/img2.jpg", date=t), animal([1, 0, 0, 0], relpath="B/img1.jpg", date=t),
            other(PERSON, relpath="B/img3.jpg", date=t), failed(relpath="B/bad.jpg")]
    out = decide_run([_item(r.relpath) for r in raws], raws, CLASSES, RunSettings(threshold=0.6, lang="en"))
    by = {d.relpath: d for d in out}
    # the sequence: mean [2,0,0,0] /1.04 -> e^1.9231 = 6.8415; 6.8415 / 9.8415 = 0.69518 (float32), reported 0.69
    for rel in ("B/img1.jpg", "B/img2.jpg", "B/img3.jpg"):
        assert (by[rel].score, by[rel].raw_score) == (0.69, decide(raws[:3], threshold=0.6).raw_score)
        assert by[rel].raw_score == pytest.approx(0.69518, abs=1e-5)
    # each image alone: img2 0.83598 badger; img1 0.45277 undefined (best guess badger); img3 human 1.0
    assert (by["B/img2.jpg"].categorybase, by["B/img2.jpg"].top1base_key) == (ANIMAL, "badger")
    assert by["B/img2.jpg"].raw_scorebase == pytest.approx(0.83598, abs=1e-5)
    assert (by["B/img1.jpg"].predictionbase, by["B/img1.jpg"].categorybase, by["B/img1.jpg"].top1base_key) == (
        "undefined", ANIMAL, "badger")
    assert by["B/img1.jpg"].raw_scorebase == pytest.approx(0.45277, abs=1e-5)
    assert (by["B/img3.jpg"].categorybase, by["B/img3.jpg"].top1base_key, by["B/img3.jpg"].raw_scorebase) == (
        PERSON, "human", 1.0)
    bad = by["B/bad.jpg"]
    assert (bad.raw_score, bad.raw_scorebase, bad.categorybase, bad.top1base_key) == (0.0, 0.0, EMPTY, FAILED)

def test_decide_run_failed_file_inside_a_sequence_does_not_vote():
    t = datetime(2024, 5, 1, 6, 0, 0)
    raws = [other(PERSON, relpath="C/1.jpg", date=t), failed(relpath="C/2.jpg")]
    raws[1].date = t  # a broken image whose EXIF was still readable: same sequence, no vote
    out = decide_run([_item(r.relpath) for r in raws], raws, CLASSES, RunSettings(lang="fr"))
    assert [(d.seqnum, d.prediction) for d in out] == [(1, "humain"), (1, "")]


def test_decide_run_needs_a_raw_result_per_item():
    with pytest.raises(ValueError, match="no raw result"):
        decide_run([_item("A/1.jpg")], [], CLASSES, RunSettings())


def test_the_run_checks_language_and_exclusions_by_the_rules_the_decisions_apply():
    """Issue 19: one rule. " CHAMOIS " is excluded by the decisions (case and spaces folded); the run's check
    used another rule (lower(), no strip) and refused it before any file was decided."""
    from dataclasses import replace

    from deepfaune_plugin.errors import RunError
    from deepfaune_plugin.inference import check_settings
    from deepfaune_plugin.models.cards import load_card

    classes = load_card("1.4").class_table()
    check_settings(RunSettings(lang="en", exclude=(" CHAMOIS ",)), classes)
    assert excluded_indices(classes, (" CHAMOIS ",), "en") == [list(classes.labels("en")).index("chamois")]
    with pytest.raises(RunError, match=r"--exclude: unknown species 'unicorn' for model 1\.4"):
        check_settings(RunSettings(lang="en", exclude=("unicorn",)), classes)
    no_german_birds = replace(classes, bird_names={k: v for k, v in classes.bird_names.items() if k != "de"})
    check_settings(RunSettings(lang="de", bird=False), no_german_birds)
    with pytest.raises(RunError, match="--bird: language 'de' has no bird labels for model 1.4"):
        check_settings(RunSettings(lang="de", bird=True), no_german_birds)
