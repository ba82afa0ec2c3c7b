"""Pieces of the MegaDetector file for Timelapse: the class a box gets, and the detector thresholds."""
from __future__ import annotations

import pytest

from deepfaune_plugin.hooks.timelapse.md_json import box_classification, detection_thresholds
from deepfaune_plugin.types import ANIMAL, EMPTY, PERSON, Decision

BY_KEY = {"badger": "1", "bird": "2", "fox": "3", "bird passerine": "5"}


def decision(**answer) -> Decision:
    fields = dict(relpath="a.jpg", date=None, seqnum=1, predictionbase="", scorebase=0.0, prediction="", score=0.0,
                  top1="", count=1, humancount=0, category=EMPTY, prediction_key="", top1_key="")
    return Decision(**{**fields, **answer})


def test_the_sequence_answer_labels_the_box_by_default():
    d = decision(category=ANIMAL, top1_key="fox", raw_score=0.9876543,
                 categorybase=ANIMAL, top1base_key="badger", raw_scorebase=0.51)
    assert box_classification(d, "sequence", BY_KEY) == ("3", 0.987)  # truncated, not rounded
    assert box_classification(d, "image", BY_KEY) == ("1", 0.51)


def test_undefined_keeps_its_best_guess_and_bird_undefined_is_bird():
    # below the threshold: the key is "undefined" but top1 stays the best class, with its own probability
    d = decision(category=ANIMAL, prediction_key="undefined", top1_key="bird undefined", raw_score=0.7999999)
    assert box_classification(d, "sequence", BY_KEY) == ("2", 0.799)
    assert box_classification(decision(category=ANIMAL, top1_key="bird passerine", raw_score=0.95),
                              "sequence", BY_KEY) == ("5", 0.95)


def test_no_class_for_people_empty_failed_or_unknown_keys():
    assert box_classification(decision(category=PERSON, top1_key="human", raw_score=1.0), "sequence", BY_KEY) is None
    assert box_classification(decision(top1_key="failed"), "sequence", BY_KEY) is None
    assert box_classification(decision(category=ANIMAL, top1_key="lynx", raw_score=0.9), "sequence", BY_KEY) is None
    # the file's own answer is a person although its sequence is a fox
    d = decision(category=ANIMAL, top1_key="fox", raw_score=0.9, categorybase=PERSON, top1base_key="human")
    assert box_classification(d, "image", BY_KEY) is None


@pytest.mark.parametrize("version, mode, thresholds", [
    ("1.4", "DF", (0.6, 0.6)),
    ("1.4", "MDS", (0.5, 0.5)),
    ("1.4", "DFbsMDS", (0.6, 0.5)),
    ("1.4", "DFMDS", (0.6, 0.5)),
    ("1.4", "existing", (0.6, 0.5)),  # no detector of the card ran: all of them
    ("1.5", "DFbsMDS", (0.6, 0.5)),
    ("1.3", "DF", (0.6, 0.6)),
    ("1.3", "existing", (0.6, 0.6)),  # 1.3 has no MegaDetector
])
def test_detection_thresholds_come_from_the_model_card(version, mode, thresholds):
    assert detection_thresholds(version, mode) == thresholds
