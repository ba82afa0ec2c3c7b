"""Boxes another detector already found (MegaDetector...), used the way DeepFaune 1.4.1 uses a MegaDetector file.

DeepFaune can classify the boxes of a MegaDetector batch-output file instead of running a
detector (detectTools.DetectorJSON behind predictTools.PredictorJSON).  Its rules, kept here:

- a box counts only when its confidence is strictly above 0.4 (``MDV5_THRES``), whatever the
  other detector's own thresholds were;
- the image's box is the most confident box *of any category* (the first on ties): unlike
  DeepFaune's own detector path, an animal does not win over a more confident person or vehicle;
- categories 1 animal, 2 person, 3 vehicle are DeepFaune's own;
- the crop box in pixels is x1 = int(x·W), y1 = int(y·H), x2 = x1 + int(w·W), y2 = y1 + int(h·H)
  (double precision, truncated; note x2 is *not* int((x + w)·W)), then the usual square crop.

Deliberate differences: DeepFaune's JSON path counts every box above 0.4 as an animal and
reports no person; here count and humancount are the animal and person boxes above 0.4, as
DeepFaune's own detector path counts them.  It also decodes the file with IMREAD_UNCHANGED;
backends crop from the pixels their detector path sees (IMREAD_COLOR): identical for ordinary
8-bit colour JPEGs, upright (as MegaDetector saw them) for EXIF-rotated photos, and usable for
greyscale ones, which stop DeepFaune's JSON path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..types import Detection, KnownBox

JSON_THRESHOLD = 0.4  # DeepFaune's MDV5_THRES: boxes at or below it are ignored
SOURCE = "existing"  # Detection.source of a box the host supplied


@dataclass(frozen=True)
class KnownSelection:
    """What DeepFaune keeps of an image's known boxes.

    `detections` are the boxes above the threshold by descending confidence (stable, so the
    host's order breaks ties), in pixels, unrounded: normalising them again gives the host's
    box back.  `selected` is 0 when any box is kept; `crop` is DeepFaune's integer box of it.
    """

    detections: list[Detection]
    selected: int | None
    crop: tuple[int, int, int, int] | None


def crop_box(box: KnownBox, width: int, height: int) -> tuple[int, int, int, int]:
    """DeepFaune's pixel box for a normalised box (DetectorJSON.convertJSONboxToBox), before squaring."""
    x1 = int(box.x * width)
    y1 = int(box.y * height)
    return x1, y1, x1 + int(box.w * width), y1 + int(box.h * height)


def pixel_box(box: KnownBox, width: int, height: int) -> tuple[float, float, float, float]:
    """The box in original-image pixels, unrounded and clipped to the image (for outputs, not the crop)."""
    x1, y1 = box.x * width, box.y * height
    x2, y2 = x1 + box.w * width, y1 + box.h * height
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def select_known(boxes: Sequence[KnownBox], width: int, height: int,
                 threshold: float = JSON_THRESHOLD) -> KnownSelection:
    """DeepFaune's JSON rules applied to one image's boxes (any order; ties go to the earlier box)."""
    kept = [b for b in boxes if b.conf > threshold]
    kept.sort(key=lambda b: -b.conf)  # stable: the first most confident box stays first, as numpy.argmax
    detections = [Detection(pixel_box(b, width, height), float(b.conf), int(b.category), SOURCE) for b in kept]
    if not kept:
        return KnownSelection(detections, None, None)
    return KnownSelection(detections, 0, crop_box(kept[0], width, height))
