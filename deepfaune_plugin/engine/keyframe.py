"""A video's raw result from its frames' results, as DeepFaune's PredictorVideo makes it.

A video is classified by pooling its frames (decisions.py does that, frames counted as a sequence's
images); this module only picks the key frame that stands for the video in the table: its box, sizes,
logits and frame number. It belongs with video reading, not with the decisions, because it depends on the
frames only, never on the threshold, language or excluded species.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..types import ANIMAL, EMPTY, PERSON, VEHICLE, RawResult


def key_frame(frames: Sequence[RawResult]) -> int | None:
    """Index into `frames` of a video's key frame (PredictorVideo's `keyframes`), None if all are empty.

    Among the non-empty frames: a video with no animal frame takes its first person frame (first
    vehicle frame when vehicles outnumber people, as the pooled answer does); otherwise the frame
    holding the largest animal logit, non-animal frames counting as logits of 0 (DeepFaune's
    argmax over the animal columns of those rows, first one on ties).  It depends on the frames
    only, never on the threshold, language or excluded species.
    """
    nonempty = [i for i, f in enumerate(frames) if f.failure is None and f.category != EMPTY]
    if not nonempty:
        return None
    if not any(frames[i].category == ANIMAL for i in nonempty):
        humans = sum(frames[i].category == PERSON for i in nonempty)
        vehicles = sum(frames[i].category == VEHICLE for i in nonempty)
        wanted = PERSON if humans >= vehicles else VEHICLE
        return next(i for i in nonempty if frames[i].category == wanted)
    best, best_value = nonempty[0], None
    for i in nonempty:
        logits = frames[i].logits if frames[i].category == ANIMAL else None
        value = np.float32(0.0) if logits is None else np.max(np.asarray(logits, dtype=np.float32))
        if best_value is None or value > best_value:
            best, best_value = i, value
    return best


def video_result(relpath: str, frames: list[RawResult], frame_rate: float | None,
                 notes: Sequence[str] = ()) -> RawResult:
    """A video's result from its frames' results: the key frame's box and sizes stand for the video."""
    key = key_frame(frames)
    sized = next((f for f in frames if f.failure is None), None)
    raw = RawResult(relpath=relpath, frames=frames, frame_rate=frame_rate, warnings=list(notes))
    if sized is not None:
        raw.width, raw.height = sized.width, sized.height
    if key is not None:
        chosen = frames[key]
        raw.detections, raw.selected = list(chosen.detections), chosen.selected
        raw.logits, raw.bird_logits, raw.frame_number = chosen.logits, chosen.bird_logits, chosen.frame_number
    return raw
