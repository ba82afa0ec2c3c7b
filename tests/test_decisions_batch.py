"""The batched decisions (`decide_groups`, and `decide_run` built on it) against the straightforward ones
(`decide_group` for each pool, each image and each sequence decided on its own), on random seasons: every
field of every decision the same, bit for bit (issue 33 item 7: a re-decision of a season is fast *and*
DeepFaune's).  DeepFaune 1.4's own class table (38 species, the bird head, its temperatures)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import astuple
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.decisions import decide_group, decide_groups, decide_run, pooled_softmax
from deepfaune_plugin.models.cards import load_card
from deepfaune_plugin.sequences import assign_sequences, sequence_unit
from deepfaune_plugin.types import (ANIMAL, EMPTY, FAILED, PERSON, VEHICLE, Decision, Detection, MediaItem,
                                    RawResult)

CLASSES = load_card("1.4").class_table()
BIRD = CLASSES.labels("en").index("bird")
SPECIES = CLASSES.num_classes


def _logits(rng: np.random.Generator, kind: int) -> np.ndarray:
    """Random logits of several kinds: spread, ties (small integers: equal maxima), one clear winner, bird
    ahead, huge (exp overflows float32)."""
    if kind == 0:
        return rng.normal(0, 2.5, SPECIES).astype(np.float32)
    if kind == 1:
        return rng.integers(-2, 3, SPECIES).astype(np.float32)
    values = rng.normal(0, 1, SPECIES).astype(np.float32)
    if kind == 2:
        values[rng.integers(SPECIES)] += np.float32(rng.uniform(1, 9))
    elif kind == 3:
        values[BIRD] += np.float32(rng.uniform(2, 12))
    else:
        values[rng.integers(SPECIES)] = np.float32(rng.uniform(80, 300))
    return values


def _row(rng: np.random.Generator, relpath: str, date=None, frame=None) -> RawResult:
    """One file (or a video's frame): empty, person, vehicle, failed, or an animal with logits and bird logits."""
    kind = rng.choice(["animal"] * 6 + ["empty", "empty", "person", "vehicle", "failed"])
    if kind == "failed":
        return RawResult(relpath=relpath, failure="cannot identify image file", date=date, frame_number=frame)
    if kind == "empty":
        return RawResult(relpath=relpath, width=64, height=48, date=date, frame_number=frame)
    category = {"animal": ANIMAL, "person": PERSON, "vehicle": VEHICLE}[kind]
    dets = [Detection((1.0, 2.0, 30.0, 40.0), float(rng.uniform(0.2, 1)), category)]
    raw = RawResult(relpath=relpath, width=64, height=48, detections=dets, selected=0, date=date, frame_number=frame)
    if category == ANIMAL:
        raw.logits = _logits(rng, int(rng.integers(5)))
        raw.bird_logits = (rng.normal(0, 1.5, 8) * rng.choice([1, 4])).astype(np.float32)
        if rng.random() < 0.05:
            raw.bird_logits[int(rng.integers(8))] = np.float32(200)  # the bird head's exp overflows too
    return raw


def _season(seed: int, files: int) -> tuple[list[MediaItem], list[RawResult]]:
    """Folders of images taken in bursts (sequences of 1 to ~8, some undated) and a few videos of 12 frames."""
    rng = np.random.default_rng(seed)
    items, raws = [], []
    t = datetime(2024, 5, 1, 6)
    for i in range(files):
        folder = f"st{i // 97:02d}"
        if rng.random() < 0.04:
            relpath = f"{folder}/VID_{i:05d}.MP4"
            frames = [_row(rng, relpath, frame=f) for f in range(12)]
            if rng.random() < 0.5:  # a video whose frames are all animals: pooled like a sequence of 12
                frames = [f if f.category == ANIMAL and f.failure is None else _row(rng, relpath, frame=n)
                          for n, f in enumerate(frames)]
            key = next((f for f in frames if f.failure is None), frames[0])
            raw = RawResult(relpath=relpath, width=key.width, height=key.height, detections=key.detections,
                            selected=key.selected, logits=key.logits, bird_logits=key.bird_logits,
                            frames=frames, date=t)
            items.append(MediaItem(path=Path("/d") / relpath, relpath=relpath, group=folder))  # .MP4: a video
        else:
            t += timedelta(seconds=float(rng.choice([1, 2, 3, 30, 400])))
            relpath = f"{folder}/IMG_{i:05d}.JPG"
            raw = _row(rng, relpath, date=None if rng.random() < 0.03 else t)
            items.append(MediaItem(path=Path("/d") / relpath, relpath=relpath, group=folder))
        raws.append(raw)
    return items, raws


def _straightforward_run(items, raws, settings: RunSettings) -> list[Decision]:
    """decide_run as it was written first: each sequence and each image through decide_group on its own."""
    seqnums = assign_sequences([(sequence_unit(item), raw.date, item.relpath) for item, raw in zip(items, raws)],
                               settings.maxlag)
    members = defaultdict(list)
    for seqnum, raw in zip(seqnums, raws):
        members[seqnum].append(raw)

    def decide(group):
        return decide_group(group, CLASSES, settings.threshold, settings.lang, settings.exclude, settings.bird)

    per_sequence = {seqnum: decide(group) for seqnum, group in members.items()}
    out = []
    for item, raw, seqnum in zip(items, raws, seqnums):
        if raw.failure is not None:
            out.append(Decision(relpath=item.relpath, date=raw.date, seqnum=seqnum, predictionbase="", scorebase=0.0,
                                prediction="", score=0.0, top1="", count=0, humancount=0, category=EMPTY,
                                prediction_key=FAILED, top1_key=FAILED, failure=raw.failure, top1base_key=FAILED,
                                predictionbase_key=FAILED))
            continue
        base, seq = decide([raw]), per_sequence[seqnum]
        selected = raw.selected_detection
        out.append(Decision(
            relpath=item.relpath, date=raw.date, seqnum=seqnum, predictionbase=base.label, scorebase=base.score,
            prediction=seq.label, score=seq.score, top1=seq.top1, count=raw.count, humancount=raw.humancount,
            category=seq.category, prediction_key=seq.key, top1_key=seq.top1_key,
            box=selected.box if selected else None, box_conf=selected.conf if selected else None,
            raw_score=seq.raw_score, raw_scorebase=base.raw_score, categorybase=base.category,
            top1base_key=base.top1_key, predictionbase_key=base.key))
    out.sort(key=lambda d: (d.seqnum, d.relpath))
    return out


def _edge_thresholds(raws) -> list[float]:
    """Thresholds exactly at pools' own float32 scores (the `>=` boundary) and at 2-decimal steps."""
    scores = []
    for raw in raws[:400]:
        if raw.failure is None and raw.category == ANIMAL and raw.logits is not None and raw.logits.max() < 50:
            scores.append(float(pooled_softmax(raw.logits[None, :], CLASSES.temperature_single)[1]))
    return scores[:3] + [0.5, 0.8, 0.0, 1.0]


SETTINGS = [
    dict(threshold=0.8, lang="en"),
    dict(threshold=0.5, lang="fr", bird=True),
    dict(threshold=0.3, lang="en", exclude=("bird", "fox", "chamois"), maxlag=5),
    dict(threshold=0.95, lang="de", bird=True, exclude=("wild boar",), maxlag=0),
]


@pytest.mark.parametrize("seed", range(len(SETTINGS)))
def test_decide_run_is_the_straightforward_run_bit_for_bit(seed):
    items, raws = _season(seed, 3000)
    settings = RunSettings(**SETTINGS[seed])
    fast = decide_run(items, raws, CLASSES, settings)
    slow = _straightforward_run(items, raws, settings)
    assert len(fast) == len(slow) == 3000
    for a, b in zip(fast, slow):
        assert astuple(a) == astuple(b), a.relpath
    keys = {d.prediction_key for d in fast}
    # the season is varied enough that the comparison means something
    assert {"empty", "human", "vehicle", "undefined", FAILED} <= keys and len(keys) > 12
    if settings.bird:
        assert any(k.startswith("bird ") and not k.endswith("undefined") for k in keys)
        assert any(k == "bird undefined" for k in {d.top1_key for d in fast})


def test_decide_groups_is_decide_group_for_every_pool_at_edge_thresholds():
    items, raws = _season(7, 2500)
    seqnums = assign_sequences([(sequence_unit(i), r.date, i.relpath) for i, r in zip(items, raws)], 20)
    pools = defaultdict(list)
    for seqnum, raw in zip(seqnums, raws):
        pools[seqnum].append(raw)
    groups = list(pools.values()) + [[raw] for raw in raws]
    assert max(map(len, groups)) >= 6
    for threshold in _edge_thresholds(raws):
        for lang, bird, exclude in (("en", False, ()), ("it", True, ()), ("en", True, ("roe deer", "chamois"))):
            fast = decide_groups(groups, CLASSES, threshold, lang, exclude, bird)
            for group, got in zip(groups, fast):
                want = decide_group(group, CLASSES, threshold, lang, exclude, bird)
                assert astuple(got) == astuple(want), (threshold, lang, [r.relpath for r in group])


def test_decide_groups_refuses_as_decide_group_does():
    raw = RawResult(relpath="a.jpg", detections=[Detection((0, 0, 1, 1), 0.9, ANIMAL)], selected=0,
                    logits=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="a.jpg: logits has 5 values, the model has 38"):
        decide_groups([[raw]], CLASSES, 0.5, "en")
    raw.logits = np.zeros(SPECIES, np.float32)
    with pytest.raises(ValueError, match="unknown species 'unicorn'"):
        decide_groups([[raw]], CLASSES, 0.5, "en", ("unicorn",))
    with pytest.raises(ValueError, match="every species is excluded"):
        decide_groups([[raw]], CLASSES, 0.5, "en", tuple(CLASSES.labels("en")))
    with pytest.raises(ValueError, match="at least one row"):
        decide_groups([[]], CLASSES, 0.5, "en")
    assert decide_groups([], CLASSES, 0.5, "en") == []
