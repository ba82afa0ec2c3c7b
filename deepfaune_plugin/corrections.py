"""People's labels (`deepfaune review`) laid over DeepFaune's decisions, the one place that does it.

Every run lays them over its decisions before any writer sees them, so re-running the models, a new
threshold or another host never replaces what a person decided, and every output (the host's files, the
review page, the counts) says the same. The person's label fills the label fields in the run's language,
with scores 1.0; `Decision.machine` keeps DeepFaune's own answer for the formats that write both.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

from .decisions import class_keys
from .errors import DeepfauneError
from .types import (ANIMAL, EMPTY, HUMAN_BOX_SOURCE, PERSON, VEHICLE, ClassTable, Decision, Detection, HumanBoxes,
                    HumanLabel, RawResult)

#: The label keys that are no animal class, and their categories.
NON_ANIMAL = {"empty": EMPTY, "human": PERSON, "vehicle": VEHICLE}


def category_of(key: str) -> int:
    return NON_ANIMAL.get(key, ANIMAL)


def label_choices(classes: ClassTable) -> list[str]:
    """Every key a person may give: the card's classes (and bird subclasses, as "bird <subclass>" like
    DeepFaune's bird option), then empty, human, vehicle."""
    keys = class_keys(classes)
    if classes.bird_names:
        birds = classes.bird_names.get("en") or next(iter(classes.bird_names.values()))
        keys += [f"{classes.bird_class} {b}" for b in birds]
    return keys + list(NON_ANIMAL)


def label_text(classes: ClassTable, key: str, lang: str) -> str:
    """`key` as the run's language writes it (the key itself where the card has no such label)."""
    if key in NON_ANIMAL:
        return classes.non_animal.get(key, {}).get(lang, key)
    english = class_keys(classes)
    if key in english:
        names = classes.names.get(lang)
        return names[english.index(key)] if names else key
    if classes.bird_names and key.startswith(classes.bird_class + " "):
        birds_en = list(classes.bird_names.get("en") or next(iter(classes.bird_names.values())))
        sub = key[len(classes.bird_class) + 1:]
        if sub in birds_en and lang in classes.bird_names:
            return f"{label_text(classes, classes.bird_class, lang)} {classes.bird_names[lang][birds_en.index(sub)]}"
    return key


class UnknownLabel(DeepfauneError):
    """A person's label that the run's model has no class for (given with another model version, or a store
    edited by hand): written out as it is, it would be a label no table of this model knows."""


def check_labels(labels: Mapping[str, HumanLabel], classes: ClassTable) -> None:
    """Refuse, before anything is written, a person's label that is not one of `classes`' keys."""
    known = set(label_choices(classes))
    for relpath, human in labels.items():
        if human.key not in known:
            raise UnknownLabel(f"{relpath}: the label {human.key!r} a person gave in `deepfaune review` is not a "
                               f"class of DeepFaune {classes.version}; run with the --model-version it was given "
                               "for, or label the file again in `deepfaune review`")


def overlay(decisions: Sequence[Decision], labels: Mapping[str, HumanLabel], classes: ClassTable,
            lang: str) -> list[Decision]:
    """`decisions` with each labelled file's label replaced by the person's (failed files stay failed: there
    is no file a label could be written for)."""
    if not labels:
        return list(decisions)
    out = []
    for d in decisions:
        human = labels.get(d.relpath)
        if human is None or d.failure is not None:
            out.append(d)
            continue
        text = label_text(classes, human.key, lang)
        category = category_of(human.key)
        given = human.fields.count  # a count the person gave replaces DeepFaune's count of animals or of people
        count = given if given is not None and category == ANIMAL else d.count
        humancount = given if given is not None and category == PERSON else d.humancount
        out.append(replace(d, prediction=text, prediction_key=human.key, predictionbase=text,
                           predictionbase_key=human.key, top1=text, top1_key=human.key, top1base_key=human.key,
                           score=1.0, scorebase=1.0, raw_score=1.0, raw_scorebase=1.0, category=category,
                           categorybase=category, human=human, machine=d, count=count,
                           humancount=humancount))
    return out


def overlay_boxes(decisions: Sequence[Decision], raws: Mapping[str, RawResult], boxes: Mapping[str, HumanBoxes]
                  ) -> tuple[list[Decision], dict[str, RawResult]]:
    """`decisions` and `raws` with the boxes people drew replacing the detector's for their files (after
    `overlay`: the person's label picks which box is the label's), so every writer sees them: the result table's
    bbox and person_boxes (and so `deepfaune sort --blur-humans`), Timelapse's detections, Camtrap DP's human
    rows, the thumbnails. A person's box has confidence 1.0 and source "human". Without boxes nothing changes
    (the same objects come back). `Decision.machine` keeps DeepFaune's own box."""
    if not boxes:
        return list(decisions), dict(raws)
    out_raws = dict(raws)
    out = []
    for d in decisions:
        drawn, raw = boxes.get(d.relpath), raws.get(d.relpath)
        if drawn is None or raw is None or raw.failure is not None or d.failure is not None or not (
                raw.width > 0 and raw.height > 0):
            out.append(d)
            continue
        people = replace_boxes(raw, drawn, d.categorybase)
        out_raws[d.relpath] = people
        sel = people.selected_detection
        given = d.human.fields.count if d.human is not None else None
        out.append(replace(d, box=sel.box if sel is not None else None, box_conf=1.0 if sel is not None else None,
                           count=given if given is not None and d.category == ANIMAL else people.count,
                           humancount=given if given is not None and d.category == PERSON else people.humancount,
                           machine=d.machine or d))
    return out, out_raws


def replace_boxes(raw: RawResult, drawn: HumanBoxes, category: int) -> RawResult:
    """`raw` with the person's boxes (pixels of `raw`'s image) as its detections (a video: its key frame's); the
    label's box is the largest of the file's own category, else the largest animal box, else none."""
    w, h = raw.width, raw.height
    dets = [Detection((x * w, y * h, (x + bw) * w, (y + bh) * h), 1.0, c, HUMAN_BOX_SOURCE)
            for c, (x, y, bw, bh) in drawn.boxes]

    def largest(cat: int) -> int | None:
        found = [i for i, det in enumerate(dets) if det.category == cat]
        return max(found, key=lambda i: (dets[i].box[2] - dets[i].box[0]) * (dets[i].box[3] - dets[i].box[1]),
                   default=None)

    selected = largest(category) if category != EMPTY else None
    selected = largest(ANIMAL) if selected is None else selected
    frames = [replace(f, detections=list(dets), selected=selected, animals=None)
              if f.frame_number == raw.frame_number and f.failure is None else f for f in raw.frames]
    return replace(raw, detections=dets, selected=selected, frames=frames, animals=None)


def conflicts(labels: Mapping[str, HumanLabel]) -> dict[str, HumanLabel]:
    """The files whose reviewers disagree (`HumanLabel.others`), by relpath: the latest label decides."""
    return {rel: h for rel, h in labels.items() if h.others}


def conflict_note(found: Mapping[str, HumanLabel]) -> str | None:
    """One line saying that reviewers disagree on some files and which label was written, or None."""
    if not found:
        return None
    rel, h = sorted(found.items())[0]
    said = "; ".join(f"{o.reviewer}: {o.key}" for o in h.others)
    return (f"{len(found)} file(s) labelled differently by several reviewers; the latest label is written, e.g. "
            f"{rel}: {h.key} by {h.reviewer} ({said}); `deepfaune review` shows them side by side")
